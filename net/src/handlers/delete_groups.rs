//! DeleteGroups: an empty group's offsets and metadata are tombstoned.

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::delete_groups_response::DeletableGroupResult;
use kafka_protocol::messages::{DeleteGroupsRequest, DeleteGroupsResponse};

use crate::groups::{route, Op, Reply};
use crate::Ctx;

pub async fn handle(ctx: &Ctx, req: DeleteGroupsRequest) -> DeleteGroupsResponse {
    let ops = req
        .groups_names
        .iter()
        .map(|g| Op::Delete {
            group: g.to_string(),
        })
        .collect();
    let replies = route::run_groups(ctx, ops).await;
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
