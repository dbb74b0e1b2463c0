//! DeleteRecords: moves each partition's log start offset forward (-1: to
//! the high watermark); whole segments below it are deleted.

use kafka_protocol::messages::delete_records_response::{
    DeleteRecordsPartitionResult, DeleteRecordsTopicResult,
};
use kafka_protocol::messages::{DeleteRecordsRequest, DeleteRecordsResponse};

use super::{log_config, partition_error, topic_name};
use crate::router::{PartOp, PartReply};
use crate::Ctx;

pub async fn handle(ctx: &Ctx, req: DeleteRecordsRequest) -> DeleteRecordsResponse {
    let state = ctx.image.load_full();
    let mut ops = Vec::new();
    let mut slots = Vec::new();
    let mut resp = DeleteRecordsResponse::default();
    for (ti, t) in req.topics.into_iter().enumerate() {
        let name = t.name.0.to_string();
        let mut tr = DeleteRecordsTopicResult::default();
        tr.name = topic_name(&name);
        for (pi, p) in t.partitions.into_iter().enumerate() {
            let mut pr = DeleteRecordsPartitionResult::default();
            pr.partition_index = p.partition_index;
            pr.low_watermark = -1;
            match partition_error(&state, ctx.config.broker_id, &name, p.partition_index) {
                Some(code) => pr.error_code = code,
                None => {
                    ops.push((
                        sluice_engine::TopicPartition::new(name.clone(), p.partition_index),
                        PartOp::DeleteRecords {
                            config: log_config(&state, &name),
                            offset: p.offset,
                        },
                    ));
                    slots.push((ti, pi));
                }
            }
            tr.partitions.push(pr);
        }
        resp.topics.push(tr);
    }
    for ((ti, pi), reply) in slots.into_iter().zip(ctx.router.run(ops).await) {
        let pr = &mut resp.topics[ti].partitions[pi];
        match reply {
            PartReply::Offsets(Ok((_, low))) => pr.low_watermark = low,
            PartReply::Offsets(Err(code)) | PartReply::Done(Err(code)) => pr.error_code = code,
            _ => pr.error_code = crate::router::UNKNOWN_SERVER_ERROR,
        }
    }
    resp
}
