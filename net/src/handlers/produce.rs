//! Produce: each partition's batches are validated and appended by the
//! shard that owns the partition; with acks=1 or all the answer waits until
//! they are acknowledged (fsync'ed by default, see engine/DESIGN.md); with
//! acks=0 no answer is sent at all, as Kafka does.
//!
//! A produce runs in two steps so that a connection can pipeline them:
//! [`submit`] appends (offsets are assigned, or the work is queued to the
//! owning shard) and is awaited in request order; [`Submitted::finish`]
//! waits for the acknowledgements and may overlap later requests. See
//! `sluice_broker::router` for the ordering this guarantees. On the owner,
//! [`append`] is the start phase (offsets assigned, in arrival order) and
//! its output the finish phase (the acknowledgement).

use std::collections::HashSet;
use std::future::Future;
use std::pin::Pin;
use std::rc::Rc;

use bytes::{Bytes, BytesMut};
use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::produce_response::{
    NodeEndpoint, PartitionProduceResponse, TopicProduceResponse,
};
use kafka_protocol::messages::BrokerId;
use kafka_protocol::messages::{ProduceRequest, ProduceResponse, RequestKind, ResponseKind};
use kafka_protocol::protocol::StrBytes;
use sluice_broker::replicated_partition::Acks;
use sluice_broker::router::Submitted as Routed;
use sluice_engine::{LeaderEpoch, TopicPartition};
use sluice_replication::metadata::MetadataState;

use super::{engine_code, new_leader, partition_error, topic_name};
use crate::ctx::Ctx;
use crate::request::{mismatch, Answering, Request, Serving};

#[allow(clippy::async_yields_async)] // the first phase yields the second
pub(crate) fn serve(ctx: Rc<Ctx>, req: Request) -> Serving {
    Box::pin(async move {
        let Request {
            reply,
            header,
            body,
            ..
        } = req;
        // Nothing but the records may hold the frame's bytes while they are
        // appended (see `split_batches`).
        drop(header);
        let RequestKind::Produce(r) = body else {
            return Box::pin(async move { Err(mismatch(reply.key)) }) as Answering;
        };
        let acks = r.acks;
        let submitted = submit(&ctx, r, reply.version).await;
        Box::pin(async move {
            let resp = submitted.finish().await;
            if acks == 0 {
                return Ok(None);
            }
            reply.answer(ResponseKind::Produce(resp))
        }) as Answering
    })
}

/// One partition's records, as its owner receives them.
struct Append {
    records: Bytes,
    acks: Acks,
    /// The leader epoch of the image the request was checked against.
    leader_epoch: i32,
}

/// A partition's answer.
struct Produced {
    base_offset: i64,
    log_append_time: i64,
    log_start: i64,
}

type Acknowledged = Pin<Box<dyn Future<Output = Result<Produced, i16>>>>;

/// On the partition's owner, in arrival order: validates and appends the
/// batches (offsets assigned); the output waits for their acknowledgement.
async fn append(ctx: Rc<Ctx>, tp: TopicPartition, a: Append) -> Acknowledged {
    let now = sluice_engine::types::now_ms();
    let appended = async {
        let batches = split_batches(a.records)?;
        let p = ctx
            .partitions
            .open(&tp)
            .await
            .map_err(|e| engine_code(&e))?;
        let mut first = None;
        let mut last = None;
        for b in batches {
            // The batch is taken over without a copy when nothing else
            // holds the request's bytes: a request of one batch for one
            // partition, once decoded.
            let b = b.try_into_mut().unwrap_or_else(|b| BytesMut::from(&b[..]));
            let info = p
                .append(b, LeaderEpoch(a.leader_epoch), a.acks, now)
                .await
                .map_err(|e| e.code())?;
            first.get_or_insert(info);
            last = Some(info.last_offset);
        }
        let info = first.expect("at least one batch");
        Ok::<_, i16>((p, last.expect("at least one batch"), info))
    }
    .await;
    let acks = a.acks;
    Box::pin(async move {
        let (p, last, info) = appended?;
        p.acknowledged(acks, last).await.map_err(|e| e.code())?;
        Ok(Produced {
            base_offset: info.base_offset.0,
            log_append_time: info.log_append_time,
            log_start: p.log().watermarks().log_start.0,
        })
    })
}

/// A produce whose appends are submitted.
struct Submitted {
    /// The image the request was checked against.
    state: std::sync::Arc<MetadataState>,
    resp: ProduceResponse,
    slots: Vec<(usize, usize)>,
    work: Routed<Result<Produced, i16>>,
    version: i16,
}

/// Validates the request and submits its appends, in partition order.
async fn submit(ctx: &Rc<Ctx>, req: ProduceRequest, version: i16) -> Submitted {
    let state = ctx.image.load_full();
    let acks = req.acks;
    let mut ops = Vec::new();
    let mut slots = Vec::new();
    let mut resp = ProduceResponse::default();
    // Partitions already in this request. A partition named again is
    // refused with INVALID_REQUEST: its data would otherwise be appended
    // twice in one request, and appends stay bounded by the partitions
    // that exist, not by how often a request repeats one.
    let mut seen: HashSet<(String, i32)> = HashSet::new();
    for (ti, t) in req.topic_data.into_iter().enumerate() {
        let name = t.name.0.to_string();
        let mut tr = TopicProduceResponse::default();
        tr.name = topic_name(&name);
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
            let error = match Acks::from_kafka(acks) {
                None => Some(ResponseError::InvalidRequiredAcks.code()),
                // Only the broker writes there, as in Kafka.
                Some(_) if super::is_internal(&name) => {
                    Some(ResponseError::InvalidTopicException.code())
                }
                Some(_) => {
                    partition_error(&state, ctx.config.broker_id, &name, p.index).or_else(|| {
                        (!seen.insert((name.clone(), p.index)))
                            .then_some(ResponseError::InvalidRequest.code())
                    })
                }
            };
            match (error, p.records, Acks::from_kafka(acks)) {
                (Some(code), _, _) => pr.error_code = code,
                (None, None, _) | (None, _, None) => {
                    pr.error_code = ResponseError::CorruptMessage.code()
                }
                (None, Some(records), Some(acks)) => {
                    let append = Append {
                        records,
                        acks,
                        leader_epoch: leader_epoch(p.index),
                    };
                    ops.push((TopicPartition::new(name.clone(), p.index), append));
                    slots.push((ti, pi));
                }
            }
            tr.partition_responses.push(pr);
        }
        resp.responses.push(tr);
    }
    Submitted {
        state,
        resp,
        slots,
        work: ctx.router.submit(ctx, ops, append).await,
        version,
    }
}

impl Submitted {
    /// Waits for the appends to be acknowledged; the answer.
    async fn finish(self) -> ProduceResponse {
        let Submitted {
            state,
            mut resp,
            slots,
            work,
            version,
        } = self;
        let replies = work.replies().await;
        for ((ti, pi), reply) in slots.into_iter().zip(replies) {
            let pr = &mut resp.responses[ti].partition_responses[pi];
            match reply {
                Some(Ok(p)) => {
                    pr.base_offset = p.base_offset;
                    pr.log_append_time_ms = p.log_append_time;
                    if version >= 5 {
                        pr.log_start_offset = p.log_start;
                    }
                }
                Some(Err(code)) => pr.error_code = code,
                None => pr.error_code = ResponseError::UnknownServerError.code(),
            }
        }
        point_to_leaders(&state, version, &mut resp);
        resp
    }
}

/// Names the current leader of each partition refused with
/// NOT_LEADER_OR_FOLLOWER, and its endpoint (KIP-951, v10+), so that the
/// client retries there without a metadata round trip.
fn point_to_leaders(state: &MetadataState, version: i16, resp: &mut ProduceResponse) {
    if version < 10 {
        return;
    }
    let mut endpoints = std::collections::BTreeMap::new();
    for t in &mut resp.responses {
        for pr in &mut t.partition_responses {
            let Some(l) = new_leader(state, t.name.0.as_str(), pr.index, pr.error_code) else {
                continue;
            };
            pr.current_leader.leader_id = BrokerId(l.id);
            pr.current_leader.leader_epoch = l.epoch;
            endpoints.insert(l.id, l);
        }
    }
    resp.node_endpoints = endpoints
        .into_values()
        .map(|l| {
            let mut e = NodeEndpoint::default();
            e.node_id = BrokerId(l.id);
            e.host = StrBytes::from_string(l.host);
            e.port = l.port;
            e.rack = l.rack.map(StrBytes::from_string);
            e
        })
        .collect();
}

/// Splits produced records into batches: `baseOffset(8) batchLength(4) …`.
/// The last batch is `records` itself, so that a single batch is the only
/// holder of its bytes.
fn split_batches(mut records: Bytes) -> Result<Vec<Bytes>, i16> {
    let corrupt = ResponseError::CorruptMessage.code();
    let mut out = Vec::new();
    while !records.is_empty() {
        if records.len() < sluice_engine::batch::LOG_OVERHEAD {
            return Err(corrupt);
        }
        let len = i32::from_be_bytes(records[8..12].try_into().expect("4 bytes"));
        let total = usize::try_from(len)
            .ok()
            .and_then(|l| l.checked_add(sluice_engine::batch::LOG_OVERHEAD))
            .filter(|t| *t <= records.len())
            .ok_or(corrupt)?;
        if total == records.len() {
            out.push(records);
            break;
        }
        out.push(records.split_to(total));
    }
    if out.is_empty() {
        return Err(corrupt);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use sluice_engine::batch::build;

    fn batch(n: usize) -> Vec<u8> {
        build::simple(n, 100, 1, 0)
    }

    #[test]
    fn a_single_batch_is_handed_on_as_the_only_holder_of_its_bytes() {
        let one = batch(3);
        let got = split_batches(Bytes::from(one.clone())).unwrap();
        assert_eq!(got.len(), 1);
        let b = got.into_iter().next().unwrap();
        let b = b.try_into_mut().expect("nothing else holds the bytes");
        assert_eq!(&b[..], &one[..]);
    }

    #[test]
    fn records_split_into_their_batches_or_are_corrupt() {
        let corrupt = ResponseError::CorruptMessage.code();
        let (a, b) = (batch(1), batch(4));
        let both = [a.clone(), b.clone()].concat();
        let got = split_batches(Bytes::from(both.clone())).unwrap();
        assert_eq!(got, vec![Bytes::from(a), Bytes::from(b)]);
        assert_eq!(split_batches(Bytes::new()), Err(corrupt));
        for cut in [1, 11, both.len() - 1] {
            assert_eq!(
                split_batches(Bytes::copy_from_slice(&both[..cut])),
                Err(corrupt),
                "{cut}"
            );
        }
        let mut negative = both;
        negative[8..12].copy_from_slice(&(-1i32).to_be_bytes());
        assert_eq!(split_batches(Bytes::from(negative)), Err(corrupt));
    }
}
