//! Produce: each partition's batches are validated and appended by the
//! shard that owns the partition; with acks=1 or all the answer waits until
//! they are acknowledged (fsync'ed by default, see engine/DESIGN.md); with
//! acks=0 no answer is sent at all, as Kafka does.
//!
//! A produce runs in two steps so that a connection can pipeline them:
//! [`submit`] appends (offsets are assigned, or the work is queued to the
//! owning shard) and is awaited in request order; [`Submitted::finish`]
//! waits for the acknowledgements and may overlap later requests. See
//! `router` for the ordering this guarantees.

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::produce_response::{PartitionProduceResponse, TopicProduceResponse};
use kafka_protocol::messages::{ProduceRequest, ProduceResponse};

use std::collections::HashSet;

use super::{log_config, partition_error, topic_name};
use crate::router::{PartOp, PartReply};
use crate::Ctx;

pub async fn handle(ctx: &Ctx, req: ProduceRequest, version: i16) -> ProduceResponse {
    submit(ctx, req, version).await.finish().await
}

/// A produce whose appends are submitted.
pub struct Submitted {
    resp: ProduceResponse,
    slots: Vec<(usize, usize)>,
    work: crate::router::Submitted,
    version: i16,
}

/// Validates the request and submits its appends, in partition order.
pub async fn submit(ctx: &Ctx, req: ProduceRequest, version: i16) -> Submitted {
    let state = ctx.image.load_full();
    let acks = req.acks;
    let mut ops = Vec::new();
    let mut slots = Vec::new();
    let mut resp = ProduceResponse::default();
    // Partitions already in this request. A partition named again is
    // refused with ResponseError::InvalidRequest.code(): its data would otherwise be appended
    // twice in one request, and appends (each with its own copy of the
    // topic's config) stay bounded by the partitions that exist, not by
    // how often a request repeats one.
    let mut seen: HashSet<(String, i32)> = HashSet::new();
    for (ti, t) in req.topic_data.into_iter().enumerate() {
        let name = t.name.0.to_string();
        let mut tr = TopicProduceResponse::default();
        tr.name = topic_name(&name);
        let config = log_config(&state, &name);
        let leader_epoch = |p: i32| {
            state
                .topics
                .get(&name)
                .and_then(|x| x.partitions.get(p as usize))
                .map_or(-1, |x| x.leader_epoch)
        };
        for (pi, p) in t.partition_data.into_iter().enumerate() {
            let mut pr = PartitionProduceResponse::default();
            pr.index = p.index;
            pr.base_offset = -1;
            pr.log_append_time_ms = -1;
            pr.log_start_offset = -1;
            let error = if !(-1..=1).contains(&acks) {
                Some(ResponseError::InvalidRequiredAcks.code())
            } else if super::is_internal(&name) {
                // Only the broker writes there, as in Kafka.
                Some(ResponseError::InvalidTopicException.code())
            } else {
                partition_error(&state, ctx.config.broker_id, &name, p.index).or_else(|| {
                    (!seen.insert((name.clone(), p.index)))
                        .then_some(ResponseError::InvalidRequest.code())
                })
            };
            match (error, p.records) {
                (Some(code), _) => pr.error_code = code,
                (None, None) => pr.error_code = ResponseError::CorruptMessage.code(),
                (None, Some(records)) => {
                    ops.push((
                        sluice_engine::TopicPartition::new(name.clone(), p.index),
                        PartOp::Produce {
                            config: config.clone(),
                            records,
                            acks,
                            leader_epoch: leader_epoch(p.index),
                        },
                    ));
                    slots.push((ti, pi));
                }
            }
            tr.partition_responses.push(pr);
        }
        resp.responses.push(tr);
    }
    Submitted {
        resp,
        slots,
        work: ctx.router.submit(ops).await,
        version,
    }
}

impl Submitted {
    /// Waits for the appends to be acknowledged; the answer.
    pub async fn finish(self) -> ProduceResponse {
        let Submitted {
            mut resp,
            slots,
            work,
            version,
        } = self;
        let replies = work.replies().await;
        for ((ti, pi), reply) in slots.into_iter().zip(replies) {
            let pr = &mut resp.responses[ti].partition_responses[pi];
            match reply {
                PartReply::Produce(Ok(p)) => {
                    pr.base_offset = p.base_offset;
                    pr.log_append_time_ms = p.log_append_time;
                    if version >= 5 {
                        pr.log_start_offset = p.log_start;
                    }
                }
                PartReply::Produce(Err(code)) | PartReply::Done(Err(code)) => pr.error_code = code,
                _ => pr.error_code = ResponseError::UnknownServerError.code(),
            }
        }
        resp
    }
}
