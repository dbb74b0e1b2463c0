//! DeleteRecords: moves each partition's log start offset forward (-1: to
//! the high watermark); whole segments below it are deleted.

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::delete_records_response::{
    DeleteRecordsPartitionResult, DeleteRecordsTopicResult,
};
use kafka_protocol::messages::{DeleteRecordsRequest, DeleteRecordsResponse};

use super::{log_config, partition_error, run_partitions, topic_name};
use crate::router::{PartOp, PartReply};
use crate::Ctx;

pub async fn handle(ctx: &Ctx, req: DeleteRecordsRequest) -> DeleteRecordsResponse {
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
                None => Ok(PartOp::DeleteRecords {
                    config: log_config(&state, &name),
                    offset: p.offset,
                }),
            };
            parts.push((
                sluice_engine::TopicPartition::new(name.clone(), p.partition_index),
                op,
            ));
        }
    }
    let mut replies = run_partitions(ctx, parts).await.into_iter();
    let mut resp = DeleteRecordsResponse::default();
    for t in req.topics {
        let mut tr = DeleteRecordsTopicResult::default();
        tr.name = topic_name(&t.name.0);
        for p in t.partitions {
            let mut pr = DeleteRecordsPartitionResult::default();
            pr.partition_index = p.partition_index;
            pr.low_watermark = -1;
            match replies.next() {
                Some(Ok(PartReply::Offsets(Ok((_, low))))) => pr.low_watermark = low,
                Some(Ok(PartReply::Offsets(Err(code)))) | Some(Err(code)) => pr.error_code = code,
                _ => pr.error_code = ResponseError::UnknownServerError.code(),
            }
            tr.partitions.push(pr);
        }
        resp.topics.push(tr);
    }
    resp
}
