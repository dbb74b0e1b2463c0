//! ListOffsets: earliest (-2), latest (-1), max timestamp (-3, KIP-734) or
//! the first offset at or after a timestamp.

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::list_offsets_response::{
    ListOffsetsPartitionResponse, ListOffsetsTopicResponse,
};
use kafka_protocol::messages::{ListOffsetsRequest, ListOffsetsResponse};

use super::{log_config, partition_error, run_partitions, topic_name};
use crate::router::{PartOp, PartReply};
use crate::Ctx;

pub async fn handle(ctx: &Ctx, req: ListOffsetsRequest, version: i16) -> ListOffsetsResponse {
    let state = ctx.image.load_full();
    let mut parts = Vec::new();
    // Kafka answers a partition asked twice with ResponseError::InvalidRequest.code().
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
                    None => Ok(PartOp::ListOffsets {
                        config: log_config(&state, name),
                        timestamp: p.timestamp,
                    }),
                }
            };
            let tp_name = if known {
                name.to_string()
            } else {
                String::new()
            };
            parts.push((
                sluice_engine::TopicPartition::new(tp_name, p.partition_index),
                op,
            ));
        }
    }
    let mut replies = run_partitions(ctx, parts).await.into_iter();
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
                Some(Ok(PartReply::Offsets(Ok((ts, offset))))) => {
                    pr.timestamp = ts;
                    pr.offset = offset;
                    if version >= 4 {
                        pr.leader_epoch =
                            state.topics[&name].partitions[p.partition_index as usize].leader_epoch;
                    }
                }
                Some(Ok(PartReply::Offsets(Err(code)))) | Some(Err(code)) => pr.error_code = code,
                _ => pr.error_code = ResponseError::UnknownServerError.code(),
            }
            tr.partitions.push(pr);
        }
        resp.topics.push(tr);
    }
    resp
}
