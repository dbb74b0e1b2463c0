//! ListOffsets: earliest (-2), latest (-1), max timestamp (-3, KIP-734) or
//! the first offset at or after a timestamp.

use kafka_protocol::messages::list_offsets_response::{
    ListOffsetsPartitionResponse, ListOffsetsTopicResponse,
};
use kafka_protocol::messages::{ListOffsetsRequest, ListOffsetsResponse};

use super::{log_config, partition_error, topic_name};
use crate::router::{PartOp, PartReply};
use crate::Ctx;

pub async fn handle(ctx: &Ctx, req: ListOffsetsRequest, version: i16) -> ListOffsetsResponse {
    let state = ctx.image.load_full();
    let mut ops = Vec::new();
    let mut slots = Vec::new();
    let mut resp = ListOffsetsResponse::default();
    for (ti, t) in req.topics.into_iter().enumerate() {
        let name = t.name.0.to_string();
        let mut tr = ListOffsetsTopicResponse::default();
        tr.name = topic_name(&name);
        for (pi, p) in t.partitions.into_iter().enumerate() {
            let mut pr = ListOffsetsPartitionResponse::default();
            pr.partition_index = p.partition_index;
            pr.timestamp = -1;
            pr.offset = -1;
            match partition_error(&state, ctx.config.broker_id, &name, p.partition_index) {
                Some(code) => pr.error_code = code,
                None => {
                    if version >= 4 {
                        pr.leader_epoch =
                            state.topics[&name].partitions[p.partition_index as usize].leader_epoch;
                    }
                    ops.push((
                        sluice_engine::TopicPartition::new(name.clone(), p.partition_index),
                        PartOp::ListOffsets {
                            config: log_config(&state, &name),
                            timestamp: p.timestamp,
                        },
                    ));
                    slots.push((ti, pi));
                }
            }
            tr.partitions.push(pr);
        }
        resp.topics.push(tr);
    }
    for ((ti, pi), reply) in slots.into_iter().zip(ctx.router.run(ops).await) {
        let pr = &mut resp.topics[ti].partitions[pi];
        match reply {
            PartReply::Offsets(Ok((ts, offset))) => {
                pr.timestamp = ts;
                pr.offset = offset;
            }
            PartReply::Offsets(Err(code)) | PartReply::Done(Err(code)) => pr.error_code = code,
            _ => pr.error_code = crate::router::UNKNOWN_SERVER_ERROR,
        }
    }
    resp
}
