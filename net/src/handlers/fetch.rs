//! Fetch: reads from each partition's owner up to the high watermark,
//! within the request's and each partition's byte limits, waiting up to
//! `max_wait_ms` for `min_bytes`. Sessions (KIP-227) are not kept yet: the
//! answer's session id 0 tells clients to send full requests.

use std::time::{Duration, Instant};

use kafka_protocol::messages::fetch_response::{FetchableTopicResponse, PartitionData};
use kafka_protocol::messages::{FetchRequest, FetchResponse};

use super::{log_config, partition_error, topic_name};
use crate::router::{PartOp, PartReply};
use crate::Ctx;

/// The longest a fetch waits for data, whatever the client asks.
const WAIT_MS_MAX: i32 = 30_000;

pub async fn handle(ctx: &Ctx, req: FetchRequest, version: i16) -> FetchResponse {
    let deadline =
        Instant::now() + Duration::from_millis(req.max_wait_ms.clamp(0, WAIT_MS_MAX) as u64);
    let min_bytes = req.min_bytes.max(0) as usize;
    // fetch.max.bytes bounds what one response holds, whatever is asked.
    let cap = ctx.config.fetch_max_bytes;
    let limit = || {
        if req.max_bytes <= 0 {
            cap
        } else {
            (req.max_bytes as usize).min(cap)
        }
    };
    let mut max_total = limit();
    loop {
        let resp = fetch_once(ctx, &req, version, &mut max_total).await;
        let bytes: usize = resp
            .responses
            .iter()
            .flat_map(|t| t.partitions.iter())
            .map(|p| p.records.as_ref().map_or(0, |r| r.len()))
            .sum();
        let errors = resp
            .responses
            .iter()
            .flat_map(|t| t.partitions.iter())
            .any(|p| p.error_code != 0);
        if bytes >= min_bytes.max(1) || errors || Instant::now() >= deadline {
            return resp;
        }
        max_total = limit();
        glommio::timer::sleep(Duration::from_millis(2)).await;
    }
}

async fn fetch_once(
    ctx: &Ctx,
    req: &FetchRequest,
    version: i16,
    max_total: &mut usize,
) -> FetchResponse {
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
                        sluice_engine::TopicPartition::new(name.clone(), p.partition),
                        PartOp::Fetch {
                            config: log_config(&state, &name),
                            offset: p.fetch_offset,
                            max_bytes: (p.partition_max_bytes.max(0) as usize).min(*max_total),
                        },
                    ));
                    slots.push((ti, pi));
                }
            }
            tr.partitions.push(pd);
        }
        resp.responses.push(tr);
    }
    for ((ti, pi), reply) in slots.into_iter().zip(ctx.router.run(ops).await) {
        let pd = &mut resp.responses[ti].partitions[pi];
        match reply {
            PartReply::Fetch(Ok(f)) => {
                pd.high_watermark = f.high_watermark;
                pd.last_stable_offset = f.last_stable;
                if version >= 5 {
                    pd.log_start_offset = f.log_start;
                }
                *max_total = max_total.saturating_sub(f.records.len());
                pd.records = Some(f.records);
            }
            PartReply::Fetch(Err(code)) | PartReply::Done(Err(code)) => pd.error_code = code,
            _ => pd.error_code = crate::router::UNKNOWN_SERVER_ERROR,
        }
    }
    resp
}
