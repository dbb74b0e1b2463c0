//! DeleteRecords: moves each partition's log start offset forward (-1: to
//! the high watermark); whole segments below it are deleted.

use std::rc::Rc;

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::delete_records_response::{
    DeleteRecordsPartitionResult, DeleteRecordsTopicResult,
};
use kafka_protocol::messages::{DeleteRecordsRequest, DeleteRecordsResponse, ResponseKind};
use sluice_engine::{Offset, TopicPartition};

use super::{engine_code, partition_error, topic_name};
use crate::ctx::Ctx;
use crate::request::{answer_later, body, Request, Serving};

pub(crate) fn serve(ctx: Rc<Ctx>, req: Request) -> Serving {
    answer_later(async move {
        let r = body!(req, DeleteRecords);
        req.reply
            .answer(ResponseKind::DeleteRecords(handle(&ctx, r).await))
    })
}

/// On the partition's owner: moves the log start to `offset`; the new one.
async fn delete(ctx: Rc<Ctx>, tp: TopicPartition, offset: i64) -> Result<i64, i16> {
    let p = ctx
        .partitions
        .open(&tp)
        .await
        .map_err(|e| engine_code(&e))?;
    let now = sluice_engine::types::now_ms();
    let start = p
        .log()
        .delete_records(Offset(offset), now)
        .await
        .map_err(|e| engine_code(&e))?;
    Ok(start.0)
}

async fn handle(ctx: &Rc<Ctx>, req: DeleteRecordsRequest) -> DeleteRecordsResponse {
    let state = ctx.image.load_full();
    let mut parts = Vec::new();
    for t in &req.topics {
        let name = t.name.0.to_string();
        for p in &t.partitions {
            let refused = super::internal_topic_refusal(&name, "delete records of").map(|r| r.0);
            let op = match refused
                .or_else(|| partition_error(&state, ctx.config.broker_id, &name, p.partition_index))
            {
                Some(code) => Err(code),
                None => Ok(p.offset),
            };
            parts.push((TopicPartition::new(name.clone(), p.partition_index), op));
        }
    }
    let mut replies = ctx.on_owners(parts, delete).await.into_iter();
    let mut resp = DeleteRecordsResponse::default();
    for t in req.topics {
        let mut tr = DeleteRecordsTopicResult::default();
        tr.name = topic_name(&t.name.0);
        for p in t.partitions {
            let mut pr = DeleteRecordsPartitionResult::default();
            pr.partition_index = p.partition_index;
            pr.low_watermark = -1;
            match replies.next() {
                Some(Ok(low)) => pr.low_watermark = low,
                Some(Err(code)) => pr.error_code = code,
                None => pr.error_code = ResponseError::UnknownServerError.code(),
            }
            tr.partitions.push(pr);
        }
        resp.topics.push(tr);
    }
    resp
}
