//! InitProducerId: ids for idempotent producers (KIP-98).
//!
//! Ids come from blocks the metadata coordinator allocates
//! (`AllocateProducerIds`), so they are unique across brokers and restarts.
//! Each shard takes its own block of ids when it runs out
//! (`producer_ids`): no state is shared between shards.
//!
//! A producer without a transactional id gets a new id with epoch 0. One
//! that sends the id and epoch it has (v3+, KIP-360) gets the same id with
//! the epoch bumped, which resets its sequences on every partition; when
//! the epoch is exhausted, or the id was never handed out, it gets a new id
//! instead. (Kafka answers every idempotent producer with a new id; the bump
//! keeps `DescribeProducers` and the partitions' tables to one entry per
//! producer.)
//!
//! Transactions are not built yet: a transactional id is answered with
//! TRANSACTIONAL_ID_AUTHORIZATION_FAILED, an error clients treat as fatal
//! and report, rather than one they would retry forever.

use std::rc::Rc;

use kafka_protocol::messages::{
    InitProducerIdRequest, InitProducerIdResponse, ProducerId, ResponseKind,
};

use super::refuse_transactions;
use crate::ctx::Ctx;
use crate::request::{answer_later, body, Request, Serving};

pub(crate) fn serve(ctx: Rc<Ctx>, req: Request) -> Serving {
    answer_later(async move {
        let r = body!(req, InitProducerId);
        let resp = handle(&ctx, r).await;
        req.reply.answer(ResponseKind::InitProducerId(resp))
    })
}

async fn handle(ctx: &Rc<Ctx>, req: InitProducerIdRequest) -> InitProducerIdResponse {
    let mut resp = InitProducerIdResponse::default();
    resp.producer_id = ProducerId(-1);
    resp.producer_epoch = -1;
    if let Some(id) = &req.transactional_id {
        resp.error_code = refuse_transactions("InitProducerId", id);
        return resp;
    }
    let allocated = ctx.image.load().next_producer_id;
    if (0..allocated).contains(&req.producer_id.0)
        && (0..i16::MAX - 1).contains(&req.producer_epoch)
    {
        resp.producer_id = req.producer_id;
        resp.producer_epoch = req.producer_epoch + 1;
        return resp;
    }
    match ctx.producer_ids.next(&ctx.config, &ctx.image).await {
        Ok(id) => {
            resp.producer_id = ProducerId(id);
            resp.producer_epoch = 0;
        }
        Err(code) => resp.error_code = code,
    }
    resp
}
