//! OffsetDelete: drops committed offsets of topics the group's members
//! do not subscribe to (GROUP_SUBSCRIBED_TO_TOPIC for the others).

use std::rc::Rc;

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::offset_delete_response::{
    OffsetDeleteResponsePartition, OffsetDeleteResponseTopic,
};
use kafka_protocol::messages::{OffsetDeleteRequest, OffsetDeleteResponse, ResponseKind};

use super::group_service;
use crate::ctx::Ctx;
use crate::groups::{Op, Reply};
use crate::request::{answer_later, body, Request, Serving};

pub(crate) fn serve(ctx: Rc<Ctx>, req: Request) -> Serving {
    answer_later(async move {
        let r = body!(req, OffsetDelete);
        let resp = handle(&ctx, r).await;
        req.reply.answer(ResponseKind::OffsetDelete(resp))
    })
}

async fn handle(ctx: &Rc<Ctx>, req: OffsetDeleteRequest) -> OffsetDeleteResponse {
    let group = req.group_id.0.to_string();
    let partitions: Vec<(String, i32)> = req
        .topics
        .iter()
        .flat_map(|t| {
            t.partitions
                .iter()
                .map(|p| (t.name.to_string(), p.partition_index))
        })
        .collect();
    let mut resp = OffsetDeleteResponse::default();
    let (error, codes) = if group.is_empty() {
        (ResponseError::InvalidGroupId.code(), Vec::new())
    } else {
        let op = Op::DeleteOffsets {
            group: group.clone(),
            partitions,
        };
        match group_service::run_one(ctx, op).await {
            Reply::DeleteOffsets(code, codes) => (code, codes),
            Reply::Error(code) => (code, Vec::new()),
            _ => (ResponseError::UnknownServerError.code(), Vec::new()),
        }
    };
    resp.error_code = error;
    if error != 0 {
        return resp;
    }
    let mut codes = codes.into_iter();
    for t in &req.topics {
        let mut rt = OffsetDeleteResponseTopic::default();
        rt.name = t.name.clone();
        for p in &t.partitions {
            let mut rp = OffsetDeleteResponsePartition::default();
            rp.partition_index = p.partition_index;
            rp.error_code = codes
                .next()
                .unwrap_or(ResponseError::UnknownServerError.code());
            rt.partitions.push(rp);
        }
        resp.topics.push(rt);
    }
    resp
}
