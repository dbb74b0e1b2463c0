//! ListOffsets: earliest (-2), latest (-1), max timestamp (-3, KIP-734) or
//! the first offset at or after a timestamp.

use std::rc::Rc;

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::list_offsets_response::{
    ListOffsetsPartitionResponse, ListOffsetsTopicResponse,
};
use kafka_protocol::messages::{ListOffsetsRequest, ListOffsetsResponse, ResponseKind};
use sluice_engine::TopicPartition;

use super::{engine_code, partition_error, topic_name};
use crate::ctx::Ctx;
use crate::request::{answer_later, body, Request, Serving};

pub(crate) fn serve(ctx: Rc<Ctx>, req: Request) -> Serving {
    answer_later(async move {
        let r = body!(req, ListOffsets);
        let resp = handle(&ctx, r, req.reply.version).await;
        req.reply.answer(ResponseKind::ListOffsets(resp))
    })
}

/// On the partition's owner: (timestamp, offset) for `timestamp`, or
/// (-1, -1) when no record is at or after it.
async fn offsets(ctx: Rc<Ctx>, tp: TopicPartition, timestamp: i64) -> Result<(i64, i64), i16> {
    let p = ctx
        .partitions
        .open(&tp)
        .await
        .map_err(|e| engine_code(&e))?;
    let log = p.log();
    let w = log.watermarks();
    Ok(match timestamp {
        -2 => (-1, w.log_start.0),
        -1 => (-1, w.high_watermark.0),
        -3 => log
            .max_timestamp()
            .map_or((-1, w.high_watermark.0), |(o, t)| (t, o.0)),
        ts => match log
            .offset_for_timestamp(ts)
            .await
            .map_err(|e| engine_code(&e))?
        {
            Some((o, t)) => (t, o.0),
            None => (-1, -1),
        },
    })
}

async fn handle(ctx: &Rc<Ctx>, req: ListOffsetsRequest, version: i16) -> ListOffsetsResponse {
    let state = ctx.image.load_full();
    let mut parts = Vec::new();
    // Kafka answers a partition asked twice with INVALID_REQUEST.
    let mut seen = std::collections::HashSet::new();
    for t in &req.topics {
        let name = t.name.0.as_str();
        // Only a known topic's name (at most 249 bytes) is copied per
        // partition; an unknown one is answered in place.
        let known = state.topics.contains_key(name);
        for p in &t.partitions {
            let op = if !seen.insert((name, p.partition_index)) {
                Err(ResponseError::InvalidRequest.code())
            } else {
                match partition_error(&state, ctx.config.broker_id, name, p.partition_index) {
                    Some(code) => Err(code),
                    None => Ok(p.timestamp),
                }
            };
            let tp_name = if known {
                name.to_string()
            } else {
                String::new()
            };
            parts.push((TopicPartition::new(tp_name, p.partition_index), op));
        }
    }
    let mut replies = ctx.on_owners(parts, offsets).await.into_iter();
    let mut resp = ListOffsetsResponse::default();
    for t in req.topics {
        let name = t.name.0.to_string();
        let mut tr = ListOffsetsTopicResponse::default();
        tr.name = topic_name(&name);
        for p in t.partitions {
            let mut pr = ListOffsetsPartitionResponse::default();
            pr.partition_index = p.partition_index;
            pr.timestamp = -1;
            pr.offset = -1;
            match replies.next() {
                Some(Ok((ts, offset))) => {
                    pr.timestamp = ts;
                    pr.offset = offset;
                    if version >= 4 {
                        pr.leader_epoch =
                            state.topics[&name].partitions[p.partition_index as usize].leader_epoch;
                    }
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
