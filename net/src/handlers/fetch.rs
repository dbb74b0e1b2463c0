//! Fetch: reads from each partition's owner up to the high watermark,
//! within the request's and each partition's byte limits, waiting up to
//! `max_wait_ms` for `min_bytes`. Sessions (KIP-227) are not kept yet: the
//! answer's session id 0 tells clients to send full requests.
//!
//! The records are not copied into the response: each partition's record
//! chunks (tail-cache batches or a segment file region) travel beside it
//! and `response::encode_fetch` puts them in place for `sendfile`.
//!
//! ## Long poll
//! When a read returns less than `min_bytes`, the fetch registers with the
//! high watermark of each partition it read (on the partitions' owners,
//! `Router::wait_for_data`) and sleeps until one of them has data past the
//! offset it asked for, or `max_wait_ms` passes. Nothing polls: a waiting
//! consumer costs no CPU, and a produce wakes it once the data is
//! acknowledged.

use std::time::{Duration, Instant};

use kafka_protocol::messages::fetch_response::{FetchableTopicResponse, PartitionData};
use kafka_protocol::messages::{FetchRequest, FetchResponse};
use sluice_engine::partition::Chunk;
use sluice_engine::TopicPartition;

use super::{log_config, partition_error, topic_name};
use crate::router::{PartOp, PartReply};
use crate::Ctx;

/// The longest a fetch waits for data, whatever the client asks.
const WAIT_MS_MAX: i32 = 30_000;

/// A fetch response whose records travel beside it: `records` holds the
/// chunks of each partition whose `records` is the placeholder, in order.
pub struct FetchAnswer {
    pub response: FetchResponse,
    pub records: Vec<Vec<Chunk>>,
}

pub async fn handle(ctx: &Ctx, req: FetchRequest, version: i16) -> FetchAnswer {
    let deadline =
        Instant::now() + Duration::from_millis(req.max_wait_ms.clamp(0, WAIT_MS_MAX) as u64);
    let min_bytes = req.min_bytes.max(0) as usize;
    // fetch.max.bytes bounds what one response holds, whatever is asked.
    let cap = ctx.config.fetch_max_bytes;
    let limit = if req.max_bytes <= 0 {
        cap
    } else {
        (req.max_bytes as usize).min(cap)
    };
    loop {
        let (answer, bytes, waits) = fetch_once(ctx, &req, version, limit).await;
        let errors = answer
            .response
            .responses
            .iter()
            .flat_map(|t| t.partitions.iter())
            .any(|p| p.error_code != 0);
        if bytes >= min_bytes.max(1) || errors || Instant::now() >= deadline || waits.is_empty() {
            return answer;
        }
        ctx.router.wait_for_data(waits, deadline).await;
    }
}

/// One read of every partition: the answer, its record bytes, and where
/// to wait for more.
async fn fetch_once(
    ctx: &Ctx,
    req: &FetchRequest,
    version: i16,
    limit: usize,
) -> (FetchAnswer, usize, Vec<(TopicPartition, i64)>) {
    let state = ctx.image.load_full();
    let mut ops = Vec::new();
    let mut slots = Vec::new();
    let mut resp = FetchResponse::default();
    for (ti, t) in req.topics.iter().enumerate() {
        let name = t.topic.0.to_string();
        let mut tr = FetchableTopicResponse::default();
        tr.topic = topic_name(&name);
        tr.topic_id = t.topic_id;
        for (pi, p) in t.partitions.iter().enumerate() {
            let mut pd = PartitionData::default();
            pd.partition_index = p.partition;
            pd.high_watermark = -1;
            pd.last_stable_offset = -1;
            pd.log_start_offset = -1;
            pd.preferred_read_replica = kafka_protocol::messages::BrokerId(-1);
            match partition_error(&state, ctx.config.broker_id, &name, p.partition) {
                Some(code) => pd.error_code = code,
                None => {
                    ops.push((
                        TopicPartition::new(name.clone(), p.partition),
                        p.fetch_offset,
                        p.partition_max_bytes.max(0) as usize,
                        log_config(&state, &name),
                    ));
                    slots.push((ti, pi));
                }
            }
            tr.partitions.push(pd);
        }
        resp.responses.push(tr);
    }
    let (keys, ops): (Vec<_>, Vec<_>) = ops
        .into_iter()
        .map(|(tp, offset, max_bytes, config)| {
            let op = PartOp::Fetch {
                config,
                offset,
                max_bytes: max_bytes.min(limit),
            };
            ((tp.clone(), offset), (tp, op))
        })
        .unzip();
    let replies = ctx.router.run(ops).await;
    // The partitions are read at once; what goes past the response's limit
    // is dropped here (nothing was copied), as if read one after another.
    let mut left = limit;
    let mut records = Vec::new();
    let mut total = 0usize;
    let mut waits = Vec::new();
    for (((ti, pi), (tp, offset)), reply) in slots.into_iter().zip(keys).zip(replies) {
        let pd = &mut resp.responses[ti].partitions[pi];
        match reply {
            PartReply::Fetch(Ok(f)) => {
                pd.high_watermark = f.high_watermark;
                pd.last_stable_offset = f.last_stable;
                if version >= 5 {
                    pd.log_start_offset = f.log_start;
                }
                let chunks = within(f.chunks, &mut left, total == 0);
                let bytes: usize = chunks.iter().map(|c| c.len() as usize).sum();
                total += bytes;
                if f.bytes == 0 {
                    waits.push((tp, offset));
                }
                pd.records = Some(crate::response::records_placeholder());
                records.push(chunks);
            }
            PartReply::Fetch(Err(code)) | PartReply::Done(Err(code)) => pd.error_code = code,
            _ => pd.error_code = crate::router::UNKNOWN_SERVER_ERROR,
        }
    }
    let answer = FetchAnswer {
        response: resp,
        records,
    };
    (answer, total, waits)
}

/// The chunks that fit in `left` bytes (which shrinks by them); the first
/// chunk of the response goes whole when `first` (KIP-74). A file region
/// may be cut anywhere: a response may end inside a batch.
fn within(chunks: Vec<Chunk>, left: &mut usize, mut first: bool) -> Vec<Chunk> {
    let mut out = Vec::with_capacity(chunks.len());
    for c in chunks {
        let len = c.len() as usize;
        if len <= *left || first {
            *left = left.saturating_sub(len);
            out.push(c);
        } else if let (Chunk::File(mut f), true) = (c, *left > 0) {
            f.len = *left as u64;
            *left = 0;
            out.push(Chunk::File(f));
            break;
        } else {
            break;
        }
        first = false;
    }
    out
}
