//! OffsetForLeaderEpoch (KIP-101, KIP-320): the end offset of a leader
//! epoch, from the partition's leader epoch cache, so that a client or
//! follower can find where its copy diverged.

use std::rc::Rc;

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::offset_for_leader_epoch_response::{
    EpochEndOffset, OffsetForLeaderTopicResult,
};
use kafka_protocol::messages::{
    OffsetForLeaderEpochRequest, OffsetForLeaderEpochResponse, ResponseKind,
};
use sluice_engine::{LeaderEpoch, TopicPartition};

use super::{engine_code, partition_error, topic_name};
use crate::ctx::Ctx;
use crate::request::{answer_later, body, Request, Serving};

pub(crate) fn serve(ctx: Rc<Ctx>, req: Request) -> Serving {
    answer_later(async move {
        let r = body!(req, OffsetForLeaderEpoch);
        req.reply
            .answer(ResponseKind::OffsetForLeaderEpoch(handle(&ctx, r).await))
    })
}

/// On the partition's owner: the epoch asked for, or the largest below it,
/// and its end offset; (-1, -1) for an epoch older than the log.
async fn epoch_end(ctx: Rc<Ctx>, tp: TopicPartition, epoch: i32) -> Result<(i32, i64), i16> {
    let p = ctx
        .partitions
        .open(&tp)
        .await
        .map_err(|e| engine_code(&e))?;
    Ok(match p.log().end_offset_for_epoch(LeaderEpoch(epoch)) {
        Some((e, end)) => (e.0, end.0),
        None => (-1, -1),
    })
}

async fn handle(ctx: &Rc<Ctx>, req: OffsetForLeaderEpochRequest) -> OffsetForLeaderEpochResponse {
    let state = ctx.image.load_full();
    let mut parts = Vec::new();
    for t in &req.topics {
        let name = t.topic.0.to_string();
        for p in &t.partitions {
            let error =
                partition_error(&state, ctx.config.broker_id, &name, p.partition).or_else(|| {
                    let current = state.topics[&name].partitions[p.partition as usize].leader_epoch;
                    super::epoch_error(p.current_leader_epoch, current)
                });
            let op = match error {
                Some(code) => Err(code),
                None => Ok(p.leader_epoch),
            };
            parts.push((TopicPartition::new(name.clone(), p.partition), op));
        }
    }
    let mut replies = ctx.on_owners(parts, epoch_end).await.into_iter();
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
                Some(Ok((epoch, end))) => {
                    pr.leader_epoch = epoch;
                    pr.end_offset = end;
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
