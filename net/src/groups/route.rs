//! The request side: finds a group's `__consumer_offsets` partition,
//! creating the topic on first need, and runs group operations on the
//! shards that own them.

use kafka_protocol::error::ResponseError;
use sluice_engine::TopicPartition;
use sluice_replication::metadata::MetadataState;

use super::records::STORED_STRING_LEN_MAX;
use super::{partition_for, Op, Reply, OFFSETS_TOPIC};
use crate::router::{PartOp, PartReply};
use crate::Ctx;

/// The partition count of `__consumer_offsets`, created as an internal,
/// compacted topic with `offsets.topic.num.partitions` partitions if it
/// does not exist yet.
pub async fn offsets_partitions(ctx: &Ctx) -> Result<i32, i16> {
    if let Some(t) = ctx.image.load().topics.get(OFFSETS_TOPIC) {
        return Ok(t.partitions.len() as i32);
    }
    let configs = vec![
        ("cleanup.policy".to_string(), "compact".to_string()),
        (
            "segment.bytes".to_string(),
            ctx.config.offsets_topic_segment_bytes.to_string(),
        ),
    ];
    let created = crate::handlers::create_topics::create(
        ctx,
        OFFSETS_TOPIC,
        ctx.config.offsets_topic_num_partitions,
        -1,
        Vec::new(),
        configs,
        false,
    )
    .await;
    match created {
        // Created meanwhile by another request: as good.
        Ok(_) => {}
        Err((code, _)) if code == ResponseError::TopicAlreadyExists.code() => {}
        Err((code, message)) => {
            tracing::warn!(code, message, "could not create __consumer_offsets");
            return Err(ResponseError::CoordinatorNotAvailable.code());
        }
    }
    let ready = crate::handlers::until_image(ctx, |s| s.topics.contains_key(OFFSETS_TOPIC)).await;
    match ctx.image.load().topics.get(OFFSETS_TOPIC) {
        Some(t) if ready => Ok(t.partitions.len() as i32),
        _ => Err(ResponseError::CoordinatorNotAvailable.code()),
    }
}

/// Runs operations, each on its `__consumer_offsets` partition's shard;
/// answers in order.
pub async fn run(ctx: &Ctx, ops: Vec<(i32, Op)>) -> Vec<Reply> {
    let parts = ops
        .into_iter()
        .map(|(p, op)| (TopicPartition::new(OFFSETS_TOPIC, p), Ok(PartOp::Group(op))))
        .collect();
    run_parts(ctx, parts).await
}

async fn run_parts(ctx: &Ctx, parts: Vec<(TopicPartition, Result<PartOp, i16>)>) -> Vec<Reply> {
    crate::handlers::run_partitions(ctx, parts)
        .await
        .into_iter()
        .map(|r| match r {
            Ok(PartReply::Group(reply)) => reply,
            Err(code) => Reply::Error(code),
            Ok(_) => Reply::Error(ResponseError::UnknownServerError.code()),
        })
        .collect()
}

/// Runs operations for groups, each on its group's partition, the topic
/// created if needed; answers in order. A group id too long for the
/// records of `__consumer_offsets` is refused with ResponseError::InvalidGroupId.code().
pub async fn run_groups(ctx: &Ctx, ops: Vec<Op>) -> Vec<Reply> {
    let count = match offsets_partitions(ctx).await {
        Ok(n) => n,
        Err(code) => return ops.iter().map(|_| Reply::Error(code)).collect(),
    };
    let parts = ops
        .into_iter()
        .map(|op| {
            let group = op.group().unwrap_or_default();
            let tp = TopicPartition::new(OFFSETS_TOPIC, partition_for(group, count));
            if group.len() > STORED_STRING_LEN_MAX {
                (tp, Err(ResponseError::InvalidGroupId.code()))
            } else {
                (tp, Ok(PartOp::Group(op)))
            }
        })
        .collect();
    run_parts(ctx, parts).await
}

/// Runs one operation for a group.
pub async fn run_one(ctx: &Ctx, op: Op) -> Reply {
    run_groups(ctx, vec![op])
        .await
        .pop()
        .unwrap_or(Reply::Error(ResponseError::UnknownServerError.code()))
}

/// Whether a topic partition exists, for commits of unknown partitions.
pub fn partition_exists(state: &MetadataState, topic: &str, partition: i32) -> bool {
    state.topics.get(topic).is_some_and(|t| {
        usize::try_from(partition)
            .ok()
            .is_some_and(|i| i < t.partitions.len())
    })
}
