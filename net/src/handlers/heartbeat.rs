//! Heartbeat: keeps a member's session and tells it when to rejoin.

use std::rc::Rc;

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::{HeartbeatRequest, HeartbeatResponse, ResponseKind};

use super::group_service;
use crate::ctx::Ctx;
use crate::groups::{Op, Reply};
use crate::request::{answer_later, body, Request, Serving};

pub(crate) fn serve(ctx: Rc<Ctx>, req: Request) -> Serving {
    answer_later(async move {
        let r = body!(req, Heartbeat);
        let resp = handle(&ctx, r).await;
        req.reply.answer(ResponseKind::Heartbeat(resp))
    })
}

async fn handle(ctx: &Rc<Ctx>, req: HeartbeatRequest) -> HeartbeatResponse {
    let group = req.group_id.0.to_string();
    let mut resp = HeartbeatResponse::default();
    resp.error_code = if group.is_empty() {
        ResponseError::InvalidGroupId.code()
    } else {
        let op = Op::Heartbeat {
            group: group.clone(),
            member_id: req.member_id.to_string(),
            instance_id: req.group_instance_id.as_ref().map(|s| s.to_string()),
            generation: req.generation_id,
        };
        match group_service::run_one(ctx, op).await {
            Reply::Heartbeat(code) | Reply::Error(code) => code,
            _ => ResponseError::UnknownServerError.code(),
        }
    };
    resp
}
