//! OffsetForLeaderEpoch (KIP-101, KIP-320): the end offset of a leader
//! epoch, from the partition's leader epoch cache, so that a client or
//! follower can find where its copy diverged.

use kafka_protocol::messages::offset_for_leader_epoch_response::{
    EpochEndOffset, OffsetForLeaderTopicResult,
};
use kafka_protocol::messages::{OffsetForLeaderEpochRequest, OffsetForLeaderEpochResponse};

use super::{log_config, partition_error, topic_name, FENCED_LEADER_EPOCH, UNKNOWN_LEADER_EPOCH};
use crate::router::{PartOp, PartReply};
use crate::Ctx;

pub async fn handle(ctx: &Ctx, req: OffsetForLeaderEpochRequest) -> OffsetForLeaderEpochResponse {
    let state = ctx.image.load_full();
    let mut ops = Vec::new();
    let mut slots = Vec::new();
    let mut resp = OffsetForLeaderEpochResponse::default();
    for (ti, t) in req.topics.into_iter().enumerate() {
        let name = t.topic.0.to_string();
        let mut tr = OffsetForLeaderTopicResult::default();
        tr.topic = topic_name(&name);
        for (pi, p) in t.partitions.into_iter().enumerate() {
            let mut pr = EpochEndOffset::default();
            pr.partition = p.partition;
            pr.leader_epoch = -1;
            pr.end_offset = -1;
            let error =
                partition_error(&state, ctx.config.broker_id, &name, p.partition).or_else(|| {
                    let current = state.topics[&name].partitions[p.partition as usize].leader_epoch;
                    match p.current_leader_epoch {
                        e if e >= 0 && e < current => Some(FENCED_LEADER_EPOCH),
                        e if e > current => Some(UNKNOWN_LEADER_EPOCH),
                        _ => None,
                    }
                });
            match error {
                Some(code) => pr.error_code = code,
                None => {
                    ops.push((
                        sluice_engine::TopicPartition::new(name.clone(), p.partition),
                        PartOp::EpochEnd {
                            config: log_config(&state, &name),
                            epoch: p.leader_epoch,
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
            PartReply::Offsets(Ok((epoch, end))) => {
                pr.leader_epoch = epoch as i32;
                pr.end_offset = end;
            }
            PartReply::Offsets(Err(code)) | PartReply::Done(Err(code)) => pr.error_code = code,
            _ => pr.error_code = crate::router::UNKNOWN_SERVER_ERROR,
        }
    }
    resp
}
