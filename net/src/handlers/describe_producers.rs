//! DescribeProducers (KIP-664): the idempotent producers each partition
//! remembers, for operators.
//!
//! A partition named more than once (in one topic entry or in several
//! entries for the same topic) is answered once: a partition may list up
//! to 4096 producers, so answering every repetition would let one request
//! build a response far larger than the broker's memory. Clients key the
//! answers by topic and partition, so the repetitions carry nothing.

use std::collections::{BTreeMap, BTreeSet};
use std::rc::Rc;

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::describe_producers_response::{
    PartitionResponse, ProducerState, TopicResponse,
};
use kafka_protocol::messages::{
    DescribeProducersRequest, DescribeProducersResponse, ProducerId, ResponseKind,
};
use sluice_engine::producers::ProducerEntry;
use sluice_engine::TopicPartition;

use super::{engine_code, partition_error, topic_name};
use crate::ctx::Ctx;
use crate::request::{answer_later, body, Request, Serving};

pub(crate) fn serve(ctx: Rc<Ctx>, req: Request) -> Serving {
    answer_later(async move {
        let r = body!(req, DescribeProducers);
        req.reply
            .answer(ResponseKind::DescribeProducers(handle(&ctx, r).await))
    })
}

/// On the partition's owner: the idempotent producers it remembers.
async fn producers(ctx: Rc<Ctx>, tp: TopicPartition, (): ()) -> Result<Vec<ProducerEntry>, i16> {
    let p = ctx
        .partitions
        .open(&tp)
        .await
        .map_err(|e| engine_code(&e))?;
    Ok(p.log().producers())
}

async fn handle(ctx: &Rc<Ctx>, req: DescribeProducersRequest) -> DescribeProducersResponse {
    let state = ctx.image.load_full();
    // Topics in request order, each with its distinct partitions.
    let mut order: Vec<String> = Vec::new();
    let mut asked: BTreeMap<String, BTreeSet<i32>> = BTreeMap::new();
    for t in &req.topics {
        let name = t.name.0.to_string();
        let set = asked.entry(name.clone()).or_insert_with(|| {
            order.push(name);
            BTreeSet::new()
        });
        set.extend(t.partition_indexes.iter().copied());
    }
    let mut parts = Vec::new();
    for name in &order {
        for &p in &asked[name] {
            let op = match partition_error(&state, ctx.config.broker_id, name, p) {
                Some(code) => Err(code),
                None => Ok(()),
            };
            parts.push((TopicPartition::new(name.clone(), p), op));
        }
    }
    let mut replies = ctx.on_owners(parts, producers).await.into_iter();
    let mut resp = DescribeProducersResponse::default();
    for name in order {
        let mut tr = TopicResponse::default();
        tr.name = topic_name(&name);
        for &p in &asked[&name] {
            let mut pr = PartitionResponse::default();
            pr.partition_index = p;
            match replies.next() {
                Some(Ok(entries)) => {
                    pr.active_producers = entries
                        .into_iter()
                        .map(|e| {
                            let mut s = ProducerState::default();
                            s.producer_id = ProducerId(e.producer_id);
                            s.producer_epoch = i32::from(e.epoch);
                            s.last_sequence = e.last_sequence();
                            s.last_timestamp = e.last_timestamp;
                            s.coordinator_epoch = -1;
                            s.current_txn_start_offset = -1;
                            s
                        })
                        .collect();
                }
                Some(Err(code)) => pr.error_code = code,
                None => pr.error_code = ResponseError::UnknownServerError.code(),
            }
            tr.partitions.push(pr);
        }
        resp.topics.push(tr);
    }
    resp
}
