//! OffsetForLeaderEpoch (KIP-101, KIP-320): the end offset of a leader
//! epoch, from the partition's leader epoch cache, so that a client or
//! follower can find where its copy diverged.

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::offset_for_leader_epoch_response::{
    EpochEndOffset, OffsetForLeaderTopicResult,
};
use kafka_protocol::messages::{OffsetForLeaderEpochRequest, OffsetForLeaderEpochResponse};

use super::{log_config, partition_error, run_partitions, topic_name};
use crate::router::{PartOp, PartReply};
use crate::Ctx;

pub async fn handle(ctx: &Ctx, req: OffsetForLeaderEpochRequest) -> OffsetForLeaderEpochResponse {
    let state = ctx.image.load_full();
    let mut parts = Vec::new();
    for t in &req.topics {
        let name = t.topic.0.to_string();
        for p in &t.partitions {
            let error =
                partition_error(&state, ctx.config.broker_id, &name, p.partition).or_else(|| {
                    let current = state.topics[&name].partitions[p.partition as usize].leader_epoch;
                    match p.current_leader_epoch {
                        e if e >= 0 && e < current => Some(ResponseError::FencedLeaderEpoch.code()),
                        e if e > current => Some(ResponseError::UnknownLeaderEpoch.code()),
                        _ => None,
                    }
                });
            let op = match error {
                Some(code) => Err(code),
                None => Ok(PartOp::EpochEnd {
                    config: log_config(&state, &name),
                    epoch: p.leader_epoch,
                }),
            };
            parts.push((
                sluice_engine::TopicPartition::new(name.clone(), p.partition),
                op,
            ));
        }
    }
    let mut replies = run_partitions(ctx, parts).await.into_iter();
    let mut resp = OffsetForLeaderEpochResponse::default();
    for t in req.topics {
        let mut tr = OffsetForLeaderTopicResult::default();
        tr.topic = topic_name(&t.topic.0);
        for p in t.partitions {
            let mut pr = EpochEndOffset::default();
            pr.partition = p.partition;
            pr.leader_epoch = -1;
            pr.end_offset = -1;
            match replies.next() {
                Some(Ok(PartReply::Offsets(Ok((epoch, end))))) => {
                    pr.leader_epoch = epoch as i32;
                    pr.end_offset = end;
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
