//! DeleteGroups: an empty group's offsets and metadata are tombstoned.

use std::rc::Rc;

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::delete_groups_response::DeletableGroupResult;
use kafka_protocol::messages::{DeleteGroupsRequest, DeleteGroupsResponse, ResponseKind};

use super::group_service;
use crate::ctx::Ctx;
use crate::groups::{Op, Reply};
use crate::request::{answer_later, body, Request, Serving};

pub(crate) fn serve(ctx: Rc<Ctx>, req: Request) -> Serving {
    answer_later(async move {
        let r = body!(req, DeleteGroups);
        let resp = handle(&ctx, r).await;
        req.reply.answer(ResponseKind::DeleteGroups(resp))
    })
}

async fn handle(ctx: &Rc<Ctx>, req: DeleteGroupsRequest) -> DeleteGroupsResponse {
    let ops = req
        .groups_names
        .iter()
        .map(|g| Op::Delete {
            group: g.to_string(),
        })
        .collect();
    let replies = group_service::run_groups(ctx, ops).await;
    let mut resp = DeleteGroupsResponse::default();
    for (id, reply) in req.groups_names.iter().zip(replies) {
        let mut r = DeletableGroupResult::default();
        r.group_id = id.clone();
        r.error_code = match reply {
            Reply::Delete(code) | Reply::Error(code) => code,
            _ => ResponseError::UnknownServerError.code(),
        };
        resp.results.push(r);
    }
    resp
}
