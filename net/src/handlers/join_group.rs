//! JoinGroup: runs on the group's coordinator shard and waits there until
//! the rebalance's join phase completes (Kafka holds the answer the same
//! way; clients give it the rebalance timeout).

use std::rc::Rc;

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::join_group_response::JoinGroupResponseMember;
use kafka_protocol::messages::{JoinGroupRequest, JoinGroupResponse, RequestHeader, ResponseKind};
use kafka_protocol::protocol::StrBytes;

use super::group_service;
use crate::ctx::Ctx;
use crate::groups::records::STORED_STRING_LEN_MAX;
use crate::groups::state::{JoinRequest, JoinResult, MemberSpec};
use crate::groups::{Op, Reply};
use crate::request::{answer_later, body, Request, Serving};

pub(crate) fn serve(ctx: Rc<Ctx>, req: Request) -> Serving {
    answer_later(async move {
        let r = body!(req, JoinGroup);
        let resp = handle(&ctx, r, &req.header, &req.client_host, req.reply.version).await;
        req.reply.answer(ResponseKind::JoinGroup(resp))
    })
}

async fn handle(
    ctx: &Rc<Ctx>,
    req: JoinGroupRequest,
    header: &RequestHeader,
    client_host: &str,
    version: i16,
) -> JoinGroupResponse {
    let group = req.group_id.0.to_string();
    // Every string stored in the group's record must fit it (its strings
    // have i16 lengths; flexible versions allow longer ones).
    let too_long = |s: &str| s.len() > STORED_STRING_LEN_MAX;
    let mut result = if group.is_empty() || req.group_instance_id.as_deref().is_some_and(too_long) {
        JoinResult::error(ResponseError::InvalidGroupId.code(), &req.member_id)
    } else if too_long(&req.protocol_type) || req.protocols.iter().any(|p| too_long(&p.name)) {
        JoinResult::error(
            ResponseError::InconsistentGroupProtocol.code(),
            &req.member_id,
        )
    } else {
        let spec = MemberSpec {
            instance_id: req.group_instance_id.as_ref().map(|s| s.to_string()),
            client_id: header
                .client_id
                .as_ref()
                .map(|s| s.to_string())
                .unwrap_or_default(),
            client_host: client_host.to_string(),
            session_timeout_ms: req.session_timeout_ms,
            rebalance_timeout_ms: if version >= 1 {
                req.rebalance_timeout_ms
            } else {
                req.session_timeout_ms
            },
            protocol_type: req.protocol_type.to_string(),
            protocols: req
                .protocols
                .iter()
                .map(|p| (p.name.to_string(), p.metadata.clone()))
                .collect(),
        };
        let request = JoinRequest {
            member_id: req.member_id.to_string(),
            spec,
            require_known_member_id: version >= 4,
        };
        match group_service::run_one(ctx, Op::Join { group, request }).await {
            Reply::Join(r) => r,
            Reply::Error(code) => JoinResult::error(code, &req.member_id),
            _ => JoinResult::error(ResponseError::UnknownServerError.code(), &req.member_id),
        }
    };
    let mut resp = JoinGroupResponse::default();
    resp.error_code = result.error;
    resp.generation_id = result.generation;
    resp.member_id = StrBytes::from_string(result.member_id);
    resp.leader = StrBytes::from_string(result.leader);
    if version >= 7 {
        resp.protocol_type = result.protocol_type.map(StrBytes::from_string);
        resp.protocol_name = result.protocol.map(StrBytes::from_string);
    } else {
        resp.protocol_name = Some(StrBytes::from_string(result.protocol.unwrap_or_default()));
    }
    if result.skip_assignment {
        if version >= 9 {
            resp.skip_assignment = true;
        } else {
            result.members.clear();
        }
    }
    if result.error == 0 {
        resp.members = result
            .members
            .into_iter()
            .map(|(id, instance, metadata)| {
                let mut m = JoinGroupResponseMember::default();
                m.member_id = StrBytes::from_string(id);
                if version >= 5 {
                    m.group_instance_id = instance.map(StrBytes::from_string);
                }
                m.metadata = metadata;
                m
            })
            .collect();
    }
    resp
}
