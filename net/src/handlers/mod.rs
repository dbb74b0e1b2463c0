//! One module per Kafka API.

pub mod alter_configs;
pub mod api_versions;
pub mod create_partitions;
pub mod create_topics;
pub mod delete_groups;
pub mod delete_records;
pub mod delete_topics;
pub mod describe_cluster;
pub mod describe_configs;
pub mod describe_groups;
pub mod describe_log_dirs;
pub mod describe_producers;
pub mod fetch;
pub mod find_coordinator;
pub mod heartbeat;
pub mod init_producer_id;
pub mod join_group;
pub mod leave_group;
pub mod list_groups;
pub mod list_offsets;
pub mod metadata;
pub mod offset_commit;
pub mod offset_delete;
pub mod offset_fetch;
pub mod offset_for_leader_epoch;
pub mod produce;
pub mod sync_group;

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::TopicName;
use kafka_protocol::protocol::StrBytes;
use sluice_engine::config::LogConfig;
use sluice_replication::metadata::MetadataState;
use sluice_replication::metadata::{Command, MetaError, Outcome};
use sluice_replication::raft::client::Client;

/// Refuses an administrative change to an internal topic (Kafka's
/// `Topic.isInternal`). Kafka refuses DeleteRecords on them with
/// INVALID_TOPIC_EXCEPTION; Sluice refuses DeleteTopics and
/// CreatePartitions the same way, because deleting `__consumer_offsets`
/// loses every committed offset and adding partitions to it moves groups
/// to partitions that do not hold their offsets.
pub fn internal_topic_refusal(name: &str, what: &str) -> Option<(i16, String)> {
    is_internal(name).then(|| {
        (
            ResponseError::InvalidTopicException.code(),
            format!("cannot {what} internal topic {name}"),
        )
    })
}

/// Kafka's internal topics: only the broker itself writes them.
pub fn is_internal(name: &str) -> bool {
    name == crate::groups::OFFSETS_TOPIC || name == "__transaction_state"
}

/// Proposes a command to the coordinator quorum off the shard's reactor
/// thread. A refusal comes back as Kafka's error code and message.
pub async fn propose(ctx: &crate::Ctx, command: Command) -> Result<Outcome, (i16, String)> {
    let coordinators = ctx.config.coordinators.clone();
    let outcome = glommio::executor()
        .spawn_blocking(move || Client::new(coordinators).propose(command))
        .await
        .map_err(|e| (ResponseError::RequestTimedOut.code(), e.to_string()))?;
    match outcome {
        Outcome::Refused(MetaError { code, message }) => Err((code as i16, message)),
        other => Ok(other),
    }
}

/// Runs one operation per partition on the shard that owns it. A partition
/// given an error code up front is answered with it and nothing runs for
/// it. Replies come back in the order of `parts`.
pub async fn run_partitions(
    ctx: &crate::Ctx,
    parts: Vec<(
        sluice_engine::TopicPartition,
        Result<crate::router::PartOp, i16>,
    )>,
) -> Vec<Result<crate::router::PartReply, i16>> {
    let mut out: Vec<Option<Result<crate::router::PartReply, i16>>> =
        Vec::with_capacity(parts.len());
    let mut ops = Vec::new();
    let mut slots = Vec::new();
    for (tp, op) in parts {
        match op {
            Ok(op) => {
                slots.push(out.len());
                ops.push((tp, op));
                out.push(None);
            }
            Err(code) => out.push(Some(Err(code))),
        }
    }
    for (slot, reply) in slots.into_iter().zip(ctx.router.run(ops).await) {
        out[slot] = Some(match reply {
            crate::router::PartReply::Done(Err(code)) => Err(code),
            r => Ok(r),
        });
    }
    out.into_iter()
        .map(|r| r.unwrap_or(Err(ResponseError::UnknownServerError.code())))
        .collect()
}

/// Waits (briefly) until this broker's image has applied `f`'s condition.
pub async fn until_image(ctx: &crate::Ctx, f: impl Fn(&MetadataState) -> bool) -> bool {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while !f(&ctx.image.load()) {
        if std::time::Instant::now() > deadline {
            return false;
        }
        glommio::timer::sleep(std::time::Duration::from_millis(5)).await;
    }
    true
}

pub fn topic_name(s: &str) -> TopicName {
    TopicName(StrBytes::from_string(s.to_string()))
}

/// The log config of a topic: engine defaults, this broker's static
/// settings, cluster-wide dynamic defaults (both by Kafka's broker names,
/// `log.retention.ms` and friends), then the topic's own overrides.
pub fn log_config(state: &MetadataState, topic: &str) -> LogConfig {
    let mut c = LogConfig::default();
    let statics = crate::static_configs();
    let _ = c.apply_broker_defaults(|k| statics.get(k).map(String::as_str));
    let _ = c.apply_broker_defaults(|k| state.cluster_configs.get(k).map(String::as_str));
    if let Some(t) = state.topics.get(topic) {
        for (k, v) in &t.configs {
            let _ = c.set(k, v);
        }
    }
    c
}

/// Why `partition` of `topic` cannot be served by `broker`, if it cannot.
pub fn partition_error(
    state: &MetadataState,
    broker: i32,
    topic: &str,
    partition: i32,
) -> Option<i16> {
    let Some(t) = state.topics.get(topic) else {
        return Some(ResponseError::UnknownTopicOrPartition.code());
    };
    let Some(p) = usize::try_from(partition)
        .ok()
        .and_then(|i| t.partitions.get(i))
    else {
        return Some(ResponseError::UnknownTopicOrPartition.code());
    };
    if p.leader < 0 {
        return Some(ResponseError::LeaderNotAvailable.code());
    }
    if p.leader != broker {
        return Some(ResponseError::NotLeaderOrFollower.code());
    }
    None
}
