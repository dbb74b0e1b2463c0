//! LeaveGroup: one member (v0-2) or a batch of member identities (v3+,
//! KIP-345), each answered with its own code.

use std::rc::Rc;

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::leave_group_response::MemberResponse;
use kafka_protocol::messages::{LeaveGroupRequest, LeaveGroupResponse, ResponseKind};

use super::group_service;
use crate::ctx::Ctx;
use crate::groups::{Op, Reply};
use crate::request::{answer_later, body, Request, Serving};

pub(crate) fn serve(ctx: Rc<Ctx>, req: Request) -> Serving {
    answer_later(async move {
        let r = body!(req, LeaveGroup);
        let resp = handle(&ctx, r, req.reply.version).await;
        req.reply.answer(ResponseKind::LeaveGroup(resp))
    })
}

async fn handle(ctx: &Rc<Ctx>, req: LeaveGroupRequest, version: i16) -> LeaveGroupResponse {
    let group = req.group_id.0.to_string();
    let members: Vec<(String, Option<String>)> = if version >= 3 {
        req.members
            .iter()
            .map(|m| {
                (
                    m.member_id.to_string(),
                    m.group_instance_id.as_ref().map(|s| s.to_string()),
                )
            })
            .collect()
    } else {
        vec![(req.member_id.to_string(), None)]
    };
    let mut resp = LeaveGroupResponse::default();
    let codes = if group.is_empty() {
        Err(ResponseError::InvalidGroupId.code())
    } else {
        let op = Op::Leave {
            group: group.clone(),
            members: members.clone(),
        };
        match group_service::run_one(ctx, op).await {
            Reply::Leave(codes) => Ok(codes),
            Reply::Error(code) => Err(code),
            _ => Err(ResponseError::UnknownServerError.code()),
        }
    };
    match codes {
        Err(code) => resp.error_code = code,
        Ok(codes) if version >= 3 => {
            resp.members = members
                .into_iter()
                .zip(codes)
                .map(|((id, instance), code)| {
                    let mut m = MemberResponse::default();
                    m.member_id = id.into();
                    m.group_instance_id = instance.map(Into::into);
                    m.error_code = code;
                    m
                })
                .collect();
        }
        Ok(codes) => resp.error_code = codes.first().copied().unwrap_or(0),
    }
    resp
}
