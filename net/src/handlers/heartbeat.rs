//! Heartbeat: keeps a member's session and tells it when to rejoin.

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::{HeartbeatRequest, HeartbeatResponse};

use crate::groups::{route, Op, Reply};
use crate::Ctx;

pub async fn handle(ctx: &Ctx, req: HeartbeatRequest) -> HeartbeatResponse {
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
        match route::run_one(ctx, op).await {
            Reply::Heartbeat(code) | Reply::Error(code) => code,
            _ => ResponseError::UnknownServerError.code(),
        }
    };
    resp
}
