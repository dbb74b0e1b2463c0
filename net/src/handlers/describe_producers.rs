//! DescribeProducers (KIP-664): the idempotent producers each partition
//! remembers, for operators.

use kafka_protocol::messages::describe_producers_response::{
    PartitionResponse, ProducerState, TopicResponse,
};
use kafka_protocol::messages::{DescribeProducersRequest, DescribeProducersResponse, ProducerId};

use super::{log_config, partition_error, run_partitions, topic_name};
use crate::router::{PartOp, PartReply};
use crate::Ctx;

pub async fn handle(ctx: &Ctx, req: DescribeProducersRequest) -> DescribeProducersResponse {
    let state = ctx.image.load_full();
    let mut parts = Vec::new();
    for t in &req.topics {
        let name = t.name.0.to_string();
        for &p in &t.partition_indexes {
            let op = match partition_error(&state, ctx.config.broker_id, &name, p) {
                Some(code) => Err(code),
                None => Ok(PartOp::Producers {
                    config: log_config(&state, &name),
                }),
            };
            parts.push((sluice_engine::TopicPartition::new(name.clone(), p), op));
        }
    }
    let mut replies = run_partitions(ctx, parts).await.into_iter();
    let mut resp = DescribeProducersResponse::default();
    for t in req.topics {
        let mut tr = TopicResponse::default();
        tr.name = topic_name(&t.name.0);
        for p in t.partition_indexes {
            let mut pr = PartitionResponse::default();
            pr.partition_index = p;
            match replies.next() {
                Some(Ok(PartReply::Producers(Ok(entries)))) => {
                    pr.active_producers = entries
                        .into_iter()
                        .map(|e| {
                            let mut s = ProducerState::default();
                            s.producer_id = ProducerId(e.producer_id);
                            s.producer_epoch = i32::from(e.epoch);
                            s.last_sequence = e.last_sequence();
                            s.last_timestamp = e.last_timestamp;
                            s.coordinator_epoch = -1;
                            s.current_txn_start_offset = -1;
                            s
                        })
                        .collect();
                }
                Some(Ok(PartReply::Producers(Err(code)))) | Some(Err(code)) => pr.error_code = code,
                _ => pr.error_code = crate::router::UNKNOWN_SERVER_ERROR,
            }
            tr.partitions.push(pr);
        }
        resp.topics.push(tr);
    }
    resp
}
