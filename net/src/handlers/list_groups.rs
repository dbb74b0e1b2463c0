//! ListGroups: the groups of every `__consumer_offsets` partition this
//! broker coordinates, filtered by state (v4+) and type (v5+).

use std::rc::Rc;

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::list_groups_response::ListedGroup;
use kafka_protocol::messages::{ListGroupsRequest, ListGroupsResponse, ResponseKind};
use kafka_protocol::protocol::StrBytes;

use super::group_service;
use crate::ctx::Ctx;
use crate::groups::{Op, Reply, OFFSETS_TOPIC};
use crate::request::{answer_later, body, Request, Serving};

pub(crate) fn serve(ctx: Rc<Ctx>, req: Request) -> Serving {
    answer_later(async move {
        let r = body!(req, ListGroups);
        let resp = handle(&ctx, r, req.reply.version).await;
        req.reply.answer(ResponseKind::ListGroups(resp))
    })
}

async fn handle(ctx: &Rc<Ctx>, req: ListGroupsRequest, version: i16) -> ListGroupsResponse {
    let mut resp = ListGroupsResponse::default();
    let count = ctx
        .image
        .load()
        .topics
        .get(OFFSETS_TOPIC)
        .map_or(0, |t| t.partitions.len() as i32);
    let states: Vec<String> = if version >= 4 {
        req.states_filter.iter().map(|s| s.to_lowercase()).collect()
    } else {
        Vec::new()
    };
    let types: Vec<String> = if version >= 5 {
        req.types_filter.iter().map(|s| s.to_lowercase()).collect()
    } else {
        Vec::new()
    };
    let ops = (0..count).map(|p| (p, Op::List)).collect();
    let mut error = 0;
    for reply in group_service::run(ctx, ops).await {
        match reply {
            Reply::List(groups) => {
                for (id, protocol_type, state) in groups {
                    if !states.is_empty() && !states.contains(&state.to_lowercase()) {
                        continue;
                    }
                    if !types.is_empty() && !types.iter().any(|t| t == "classic") {
                        continue;
                    }
                    let mut g = ListedGroup::default();
                    g.group_id = StrBytes::from_string(id).into();
                    g.protocol_type = StrBytes::from_string(protocol_type);
                    if version >= 4 {
                        g.group_state = StrBytes::from_static_str(state);
                    }
                    if version >= 5 {
                        g.group_type = StrBytes::from_static_str("classic");
                    }
                    resp.groups.push(g);
                }
            }
            // Partitions other brokers lead hold other brokers' groups.
            Reply::Error(code) if code == ResponseError::NotCoordinator.code() => {}
            Reply::Error(code) if code == ResponseError::CoordinatorLoadInProgress.code() => {
                error = code
            }
            Reply::Error(code) if error == 0 => error = code,
            _ => {}
        }
    }
    resp.error_code = error;
    resp
}
