//! How the group handlers reach the group coordinator (`crate::groups`):
//! finds a group's `__consumer_offsets` partition, creating the topic on
//! first need, and runs the group's operation on the shard that owns that
//! partition. The coordinator itself never routes: it serves the
//! operations that reach its shard. The transaction coordinator will
//! follow the same shape.

use std::rc::Rc;

use kafka_protocol::error::ResponseError;
use sluice_engine::TopicPartition;
use sluice_replication::metadata::MetadataState;

use crate::admin::{create_topic, until_image, NewTopic};
use crate::ctx::Ctx;
use crate::groups::records::STORED_STRING_LEN_MAX;
use crate::groups::{partition_for, Op, Reply, OFFSETS_TOPIC};

/// `offsets.topic.replication.factor`, at most the live brokers. Kafka's
/// KRaft mode refuses to create the topic until that many brokers are up,
/// and every group request waits meanwhile; Sluice creates it with the
/// brokers it has and says so, so that a cluster smaller than the setting
/// (the single-node default among them) serves groups at once. A topic's
/// replication factor can be raised later by reassignment.
fn offsets_replication_factor(ctx: &Ctx) -> i16 {
    let want = ctx.config.offsets_topic_replication_factor.max(1);
    let live = ctx
        .image
        .load()
        .brokers
        .values()
        .filter(|b| !b.fenced)
        .count()
        .max(1);
    let rf = (want as usize).min(live) as i16;
    if rf < want {
        tracing::warn!(
            wanted = want,
            live,
            "creating __consumer_offsets with fewer replicas than offsets.topic.replication.factor: not that many live brokers"
        );
    }
    rf
}

/// The partition count of `__consumer_offsets`, created as an internal,
/// compacted topic with `offsets.topic.num.partitions` partitions if it
/// does not exist yet.
pub(crate) async fn offsets_partitions(ctx: &Ctx) -> Result<i32, i16> {
    if let Some(t) = ctx.image.load().topics.get(OFFSETS_TOPIC) {
        return Ok(t.partitions.len() as i32);
    }
    let topic = NewTopic {
        name: OFFSETS_TOPIC.to_string(),
        partitions: ctx.config.offsets_topic_num_partitions,
        replication_factor: offsets_replication_factor(ctx),
        assignment: Vec::new(),
        configs: vec![
            ("cleanup.policy".to_string(), "compact".to_string()),
            (
                "segment.bytes".to_string(),
                ctx.config.offsets_topic_segment_bytes.to_string(),
            ),
        ],
    };
    match create_topic(&ctx.config, &ctx.image, topic, false).await {
        Ok(_) => {}
        // Created meanwhile by another request: as good.
        Err((code, _)) if code == ResponseError::TopicAlreadyExists.code() => {}
        Err((code, message)) => {
            tracing::warn!(code, message, "could not create __consumer_offsets");
            return Err(ResponseError::CoordinatorNotAvailable.code());
        }
    }
    let ready = until_image(&ctx.image, |s| s.topics.contains_key(OFFSETS_TOPIC)).await;
    match ctx.image.load().topics.get(OFFSETS_TOPIC) {
        Some(t) if ready => Ok(t.partitions.len() as i32),
        _ => Err(ResponseError::CoordinatorNotAvailable.code()),
    }
}

/// On the partition's owner: runs one group operation.
async fn run_on_owner(ctx: Rc<Ctx>, tp: TopicPartition, op: Op) -> Result<Reply, i16> {
    Ok(ctx.groups.run(tp.partition.0, op).await)
}

async fn run_parts(ctx: &Rc<Ctx>, parts: Vec<(TopicPartition, Result<Op, i16>)>) -> Vec<Reply> {
    ctx.on_owners(parts, run_on_owner)
        .await
        .into_iter()
        .map(|r| r.unwrap_or_else(Reply::Error))
        .collect()
}

/// Runs operations, each on its `__consumer_offsets` partition's shard;
/// answers in order.
pub(crate) async fn run(ctx: &Rc<Ctx>, ops: Vec<(i32, Op)>) -> Vec<Reply> {
    let parts = ops
        .into_iter()
        .map(|(p, op)| (TopicPartition::new(OFFSETS_TOPIC, p), Ok(op)))
        .collect();
    run_parts(ctx, parts).await
}

/// Runs operations for groups, each on its group's partition, the topic
/// created if needed; answers in order. A group id too long for the
/// records of `__consumer_offsets` is refused with INVALID_GROUP_ID.
pub(crate) async fn run_groups(ctx: &Rc<Ctx>, ops: Vec<Op>) -> Vec<Reply> {
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
                (tp, Ok(op))
            }
        })
        .collect();
    run_parts(ctx, parts).await
}

/// Runs one operation for a group.
pub(crate) async fn run_one(ctx: &Rc<Ctx>, op: Op) -> Reply {
    run_groups(ctx, vec![op])
        .await
        .pop()
        .unwrap_or(Reply::Error(ResponseError::UnknownServerError.code()))
}

/// Whether a topic partition exists, for commits of unknown partitions.
pub(crate) fn partition_exists(state: &MetadataState, topic: &str, partition: i32) -> bool {
    state.topics.get(topic).is_some_and(|t| {
        usize::try_from(partition)
            .ok()
            .is_some_and(|i| i < t.partitions.len())
    })
}
