//! InitProducerId: ids for idempotent producers (KIP-98).
//!
//! Ids come from blocks the metadata coordinator allocates
//! (`AllocateProducerIds`), so they are unique across brokers and restarts.
//! Each shard takes its own block of [`BLOCK`] ids when it runs out: no
//! state is shared between shards.
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
//! ResponseError::TransactionalIdAuthorizationFailed.code(), an error clients treat as fatal
//! and report, rather than one they would retry forever.

use kafka_protocol::error::ResponseError;
use std::cell::Cell;

use kafka_protocol::messages::{InitProducerIdRequest, InitProducerIdResponse, ProducerId};
use sluice_replication::metadata::{Command, Outcome};

use super::propose;
use crate::Ctx;

/// Ids a shard takes from the coordinator at a time (Kafka's block size).
pub const BLOCK: i32 = 1000;

/// A shard's block of producer ids.
pub struct ProducerIds {
    /// Next id to hand out, and the end of the block.
    block: Cell<(i64, i64)>,
    /// One allocation at a time.
    lock: glommio::sync::Semaphore,
}

impl Default for ProducerIds {
    fn default() -> Self {
        Self {
            block: Cell::new((0, 0)),
            lock: glommio::sync::Semaphore::new(1),
        }
    }
}

impl ProducerIds {
    /// The next id, allocating a block from the coordinator when this
    /// shard's is used up.
    pub async fn next(&self, ctx: &Ctx) -> Result<i64, i16> {
        let _one = self
            .lock
            .acquire_permit(1)
            .await
            .map_err(|_| ResponseError::CoordinatorNotAvailable.code())?;
        let (mut next, mut end) = self.block.get();
        if next >= end {
            let epoch = ctx
                .image
                .load()
                .brokers
                .get(&ctx.config.broker_id)
                .map(|b| b.epoch)
                .ok_or(ResponseError::CoordinatorNotAvailable.code())?;
            let command = Command::AllocateProducerIds {
                broker: ctx.config.broker_id,
                broker_epoch: epoch,
                count: BLOCK,
            };
            match propose(ctx, command).await {
                Ok(Outcome::ProducerIds { first, count }) => {
                    (next, end) = (first, first + i64::from(count));
                }
                Ok(other) => {
                    tracing::warn!(?other, "unexpected answer to AllocateProducerIds");
                    return Err(ResponseError::CoordinatorNotAvailable.code());
                }
                Err((code, message)) => {
                    tracing::warn!(code, %message, "cannot allocate producer ids");
                    return Err(ResponseError::CoordinatorNotAvailable.code());
                }
            }
        }
        self.block.set((next + 1, end));
        Ok(next)
    }
}

pub async fn handle(ctx: &Ctx, req: InitProducerIdRequest) -> InitProducerIdResponse {
    let mut resp = InitProducerIdResponse::default();
    resp.producer_id = ProducerId(-1);
    resp.producer_epoch = -1;
    if req.transactional_id.is_some() {
        resp.error_code = ResponseError::TransactionalIdAuthorizationFailed.code();
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
    match ctx.producer_ids.next(ctx).await {
        Ok(id) => {
            resp.producer_id = ProducerId(id);
            resp.producer_epoch = 0;
        }
        Err(code) => resp.error_code = code,
    }
    resp
}
