//! OffsetCommit: answered once the commit is durable in
//! `__consumer_offsets`. Generation -1 with no member id is an admin's or
//! a standalone consumer's commit, taken while the group is empty (how
//! offsets are reset, as kafka-consumer-groups.sh does).

use std::rc::Rc;

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::offset_commit_response::{
    OffsetCommitResponsePartition, OffsetCommitResponseTopic,
};
use kafka_protocol::messages::{OffsetCommitRequest, OffsetCommitResponse, ResponseKind};

use super::group_service;
use crate::ctx::Ctx;
use crate::groups::{CommitOffset, Op, Reply};
use crate::request::{answer_later, body, Request, Serving};

pub(crate) fn serve(ctx: Rc<Ctx>, req: Request) -> Serving {
    answer_later(async move {
        let r = body!(req, OffsetCommit);
        let resp = handle(&ctx, r).await;
        req.reply.answer(ResponseKind::OffsetCommit(resp))
    })
}

async fn handle(ctx: &Rc<Ctx>, req: OffsetCommitRequest) -> OffsetCommitResponse {
    let group = req.group_id.0.to_string();
    let state = ctx.image.load_full();
    // Per partition: the index into `offsets`, or an error decided here.
    let mut slots: Vec<Vec<Result<usize, i16>>> = Vec::with_capacity(req.topics.len());
    let mut offsets = Vec::new();
    for t in &req.topics {
        let mut s = Vec::with_capacity(t.partitions.len());
        for p in &t.partitions {
            if group_service::partition_exists(&state, &t.name, p.partition_index) {
                s.push(Ok(offsets.len()));
                offsets.push(CommitOffset {
                    topic: t.name.to_string(),
                    partition: p.partition_index,
                    offset: p.committed_offset,
                    leader_epoch: p.committed_leader_epoch,
                    metadata: p.committed_metadata.as_ref().map(|m| m.to_string()),
                });
            } else {
                s.push(Err(ResponseError::UnknownTopicOrPartition.code()));
            }
        }
        slots.push(s);
    }
    let n = offsets.len();
    let codes = if n == 0 {
        Vec::new()
    } else {
        let op = Op::Commit {
            group: group.clone(),
            member_id: req.member_id.to_string(),
            instance_id: req.group_instance_id.as_ref().map(|s| s.to_string()),
            generation: req.generation_id_or_member_epoch,
            offsets,
        };
        match group_service::run_one(ctx, op).await {
            Reply::Commit(codes) => codes,
            Reply::Error(code) => vec![code; n],
            _ => vec![ResponseError::UnknownServerError.code(); n],
        }
    };
    let mut resp = OffsetCommitResponse::default();
    for (t, s) in req.topics.iter().zip(slots) {
        let mut rt = OffsetCommitResponseTopic::default();
        rt.name = t.name.clone();
        for (p, slot) in t.partitions.iter().zip(s) {
            let mut rp = OffsetCommitResponsePartition::default();
            rp.partition_index = p.partition_index;
            rp.error_code = match slot {
                Ok(i) => codes
                    .get(i)
                    .copied()
                    .unwrap_or(ResponseError::UnknownServerError.code()),
                Err(code) => code,
            };
            rt.partitions.push(rp);
        }
        resp.topics.push(rt);
    }
    resp
}
