//! DeleteGroups: an empty group's offsets and metadata are tombstoned.

use kafka_protocol::messages::delete_groups_response::DeletableGroupResult;
use kafka_protocol::messages::{DeleteGroupsRequest, DeleteGroupsResponse};

use crate::groups::codes::UNKNOWN_SERVER_ERROR;
use crate::groups::{partition_for, route, Op, Reply};
use crate::Ctx;

pub async fn handle(ctx: &Ctx, req: DeleteGroupsRequest) -> DeleteGroupsResponse {
    let replies = match route::offsets_partitions(ctx).await {
        Ok(count) => {
            let ops = req
                .groups_names
                .iter()
                .map(|g| {
                    (
                        partition_for(g, count),
                        Op::Delete {
                            group: g.to_string(),
                        },
                    )
                })
                .collect();
            route::run(ctx, ops).await
        }
        Err(code) => req
            .groups_names
            .iter()
            .map(|_| Reply::Error(code))
            .collect(),
    };
    let mut resp = DeleteGroupsResponse::default();
    for (id, reply) in req.groups_names.iter().zip(replies) {
        let mut r = DeletableGroupResult::default();
        r.group_id = id.clone();
        r.error_code = match reply {
            Reply::Delete(code) | Reply::Error(code) => code,
            _ => UNKNOWN_SERVER_ERROR,
        };
        resp.results.push(r);
    }
    resp
}
