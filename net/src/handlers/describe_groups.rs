//! DescribeGroups: state, protocol and members; member metadata and
//! assignments while the group is stable, as Kafka shows them.

use std::rc::Rc;

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::describe_groups_response::{DescribedGroup, DescribedGroupMember};
use kafka_protocol::messages::{DescribeGroupsRequest, DescribeGroupsResponse, ResponseKind};
use kafka_protocol::protocol::StrBytes;

use super::group_service;
use crate::authz::{authorized_operations, Resource};
use crate::ctx::Ctx;
use crate::groups::{Op, Reply};
use crate::request::{answer_later, body, Request, Serving};

pub(crate) fn serve(ctx: Rc<Ctx>, req: Request) -> Serving {
    answer_later(async move {
        let r = body!(req, DescribeGroups);
        let resp = handle(&ctx, r, req.reply.version).await;
        req.reply.answer(ResponseKind::DescribeGroups(resp))
    })
}

async fn handle(ctx: &Rc<Ctx>, req: DescribeGroupsRequest, version: i16) -> DescribeGroupsResponse {
    let mut resp = DescribeGroupsResponse::default();
    let ops = req
        .groups
        .iter()
        .map(|g| Op::Describe {
            group: g.to_string(),
        })
        .collect();
    let replies = group_service::run_groups(ctx, ops).await;
    for (id, reply) in req.groups.iter().zip(replies) {
        let mut g = DescribedGroup::default();
        g.group_id = id.clone();
        if version >= 3 {
            g.authorized_operations =
                authorized_operations(Resource::Group, req.include_authorized_operations);
        }
        match reply {
            Reply::Describe(Some(d)) => {
                g.group_state = StrBytes::from_static_str(d.state);
                g.protocol_type = StrBytes::from_string(d.protocol_type);
                g.protocol_data = StrBytes::from_string(d.protocol);
                g.members = d
                    .members
                    .into_iter()
                    .map(|m| {
                        let mut dm = DescribedGroupMember::default();
                        dm.member_id = StrBytes::from_string(m.member_id);
                        if version >= 4 {
                            dm.group_instance_id = m.instance_id.map(StrBytes::from_string);
                        }
                        dm.client_id = StrBytes::from_string(m.client_id);
                        dm.client_host = StrBytes::from_string(m.client_host);
                        dm.member_metadata = m.metadata;
                        dm.member_assignment = m.assignment;
                        dm
                    })
                    .collect();
            }
            Reply::Describe(None) => {
                g.group_state = StrBytes::from_static_str("Dead");
                // v6 reports unknown groups as such (KIP-1043); earlier
                // versions show them as Dead without an error.
                if version >= 6 {
                    g.error_code = ResponseError::GroupIdNotFound.code();
                    g.error_message = Some(StrBytes::from_string(format!(
                        "group {} not found",
                        id.as_str()
                    )));
                }
            }
            Reply::Error(code) => g.error_code = code,
            _ => g.error_code = ResponseError::UnknownServerError.code(),
        }
        resp.groups.push(g);
    }
    resp
}
