//! One module per Kafka API.

pub mod api_versions;
pub mod create_topics;
pub mod delete_topics;
pub mod fetch;
pub mod list_offsets;
pub mod metadata;
pub mod produce;

use kafka_protocol::messages::TopicName;
use kafka_protocol::protocol::StrBytes;
use sluice_engine::config::LogConfig;
use sluice_replication::metadata::MetadataState;

pub const UNKNOWN_TOPIC_OR_PARTITION: i16 = 3;
pub const LEADER_NOT_AVAILABLE: i16 = 5;
pub const NOT_LEADER_OR_FOLLOWER: i16 = 6;
pub const REQUEST_TIMED_OUT: i16 = 7;
pub const INVALID_TOPIC: i16 = 17;
pub const INVALID_REQUIRED_ACKS: i16 = 21;
pub const UNSUPPORTED_VERSION: i16 = 35;

pub fn topic_name(s: &str) -> TopicName {
    TopicName(StrBytes::from_string(s.to_string()))
}

/// The log config of a topic: engine defaults, cluster defaults
/// (`log.*`), then the topic's own overrides.
pub fn log_config(state: &MetadataState, topic: &str) -> LogConfig {
    let mut c = LogConfig::default();
    for (k, v) in &state.cluster_configs {
        if let Some(key) = k.strip_prefix("log.") {
            let _ = c.set(key, v);
        }
    }
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
        return Some(UNKNOWN_TOPIC_OR_PARTITION);
    };
    let Some(p) = usize::try_from(partition)
        .ok()
        .and_then(|i| t.partitions.get(i))
    else {
        return Some(UNKNOWN_TOPIC_OR_PARTITION);
    };
    if p.leader < 0 {
        return Some(LEADER_NOT_AVAILABLE);
    }
    if p.leader != broker {
        return Some(NOT_LEADER_OR_FOLLOWER);
    }
    None
}
