//! SyncGroup: the leader's assignments are stored, then every member gets
//! its own; followers wait on the coordinator shard for the leader.

use std::rc::Rc;

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::{ResponseKind, SyncGroupRequest, SyncGroupResponse};
use kafka_protocol::protocol::StrBytes;

use super::group_service;
use crate::ctx::Ctx;
use crate::groups::state::SyncResult;
use crate::groups::{Op, Reply};
use crate::request::{answer_later, body, Request, Serving};

pub(crate) fn serve(ctx: Rc<Ctx>, req: Request) -> Serving {
    answer_later(async move {
        let r = body!(req, SyncGroup);
        let resp = handle(&ctx, r, req.reply.version).await;
        req.reply.answer(ResponseKind::SyncGroup(resp))
    })
}

async fn handle(ctx: &Rc<Ctx>, req: SyncGroupRequest, version: i16) -> SyncGroupResponse {
    let group = req.group_id.0.to_string();
    let result = if group.is_empty() {
        SyncResult::error(ResponseError::InvalidGroupId.code())
    } else {
        let op = Op::Sync {
            group: group.clone(),
            member_id: req.member_id.to_string(),
            instance_id: req.group_instance_id.as_ref().map(|s| s.to_string()),
            generation: req.generation_id,
            protocol_type: req.protocol_type.as_ref().map(|s| s.to_string()),
            protocol: req.protocol_name.as_ref().map(|s| s.to_string()),
            assignments: req
                .assignments
                .iter()
                .map(|a| (a.member_id.to_string(), a.assignment.clone()))
                .collect(),
        };
        match group_service::run_one(ctx, op).await {
            Reply::Sync(r) => r,
            Reply::Error(code) => SyncResult::error(code),
            _ => SyncResult::error(ResponseError::UnknownServerError.code()),
        }
    };
    let mut resp = SyncGroupResponse::default();
    resp.error_code = result.error;
    resp.assignment = result.assignment;
    if version >= 5 {
        resp.protocol_type = result.protocol_type.map(StrBytes::from_string);
        resp.protocol_name = result.protocol.map(StrBytes::from_string);
    }
    resp
}
