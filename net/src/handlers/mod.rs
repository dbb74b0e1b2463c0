//! One module per Kafka API, each holding its whole API: decoding what it
//! needs of the request, the work on the shards that own its partitions
//! (through `Ctx::on_owners`), and its response. Each offers `serve`, its
//! entry in the dispatch table.

pub(crate) mod alter_configs;
pub(crate) mod create_partitions;
pub(crate) mod create_topics;
pub(crate) mod delete_groups;
pub(crate) mod delete_records;
pub(crate) mod delete_topics;
pub(crate) mod describe_cluster;
pub(crate) mod describe_configs;
pub(crate) mod describe_groups;
pub(crate) mod describe_log_dirs;
pub(crate) mod describe_producers;
pub(crate) mod fetch;
pub(crate) mod find_coordinator;
pub(crate) mod group_service;
pub(crate) mod heartbeat;
pub(crate) mod init_producer_id;
pub(crate) mod join_group;
pub(crate) mod leave_group;
pub(crate) mod list_groups;
pub(crate) mod list_offsets;
pub(crate) mod metadata;
pub(crate) mod offset_commit;
pub(crate) mod offset_delete;
pub(crate) mod offset_fetch;
pub(crate) mod offset_for_leader_epoch;
pub(crate) mod produce;
pub(crate) mod sync_group;

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::TopicName;
use kafka_protocol::protocol::StrBytes;
use sluice_engine::EngineError;
use sluice_replication::metadata::MetadataState;

/// Refuses an administrative change to an internal topic (Kafka's
/// `Topic.isInternal`). Kafka refuses DeleteRecords on them with
/// INVALID_TOPIC_EXCEPTION; Sluice refuses DeleteTopics and
/// CreatePartitions the same way, because deleting `__consumer_offsets`
/// loses every committed offset and adding partitions to it moves groups
/// to partitions that do not hold their offsets.
pub(crate) fn internal_topic_refusal(name: &str, what: &str) -> Option<(i16, String)> {
    is_internal(name).then(|| {
        (
            ResponseError::InvalidTopicException.code(),
            format!("cannot {what} internal topic {name}"),
        )
    })
}

/// Kafka's internal topics: only the broker itself writes them.
pub(crate) fn is_internal(name: &str) -> bool {
    name == crate::groups::OFFSETS_TOPIC || name == "__transaction_state"
}

/// The Kafka error code a client gets for an engine error.
pub(crate) fn engine_code(e: &EngineError) -> i16 {
    e.kafka_code() as i16
}

/// The message of a refused transactional request.
pub(crate) const TRANSACTIONS_UNSUPPORTED: &str =
    "transactions are not supported by this broker yet (Sluice)";

thread_local! {
    /// When this shard last logged a refused transactional request.
    static TRANSACTIONS_LOGGED: std::cell::Cell<Option<std::time::Instant>> =
        const { std::cell::Cell::new(None) };
}

/// Refuses a request of the transactional protocol (a transaction
/// coordinator, a transactional producer id) until transactions exist:
/// TRANSACTIONAL_ID_AUTHORIZATION_FAILED, which every client treats as
/// fatal and reports with the broker's message where the response carries
/// one. (UNSUPPORTED_VERSION would say it better, but librdkafka retries it,
/// as it retries COORDINATOR_NOT_AVAILABLE, until its timeout.) One broker
/// log line per shard per minute says why.
pub(crate) fn refuse_transactions(api: &str, transactional_id: &str) -> i16 {
    let now = std::time::Instant::now();
    let due = TRANSACTIONS_LOGGED.with(|last| {
        let due = last
            .get()
            .is_none_or(|t| now.duration_since(t) >= std::time::Duration::from_secs(60));
        if due {
            last.set(Some(now));
        }
        due
    });
    if due {
        tracing::warn!(
            api,
            transactional_id,
            "refused a transactional request: {TRANSACTIONS_UNSUPPORTED}"
        );
    }
    ResponseError::TransactionalIdAuthorizationFailed.code()
}

/// The error for a client's `current_leader_epoch` (KIP-320) against the
/// partition's: older is FENCED_LEADER_EPOCH, newer UNKNOWN_LEADER_EPOCH,
/// -1 (not given) or equal none.
pub(crate) fn epoch_error(asked: i32, current: i32) -> Option<i16> {
    match asked {
        e if e >= 0 && e < current => Some(ResponseError::FencedLeaderEpoch.code()),
        e if e > current => Some(ResponseError::UnknownLeaderEpoch.code()),
        _ => None,
    }
}

/// Where a client refused with NOT_LEADER_OR_FOLLOWER or
/// FENCED_LEADER_EPOCH should go instead (KIP-951): the partition's
/// current leader, its epoch and its client endpoint.
pub(crate) struct NewLeader {
    pub id: i32,
    pub epoch: i32,
    pub host: String,
    pub port: i32,
    pub rack: Option<String>,
}

/// The new leader of `topic`'s `partition` for an answer with `error`, if
/// the error calls for one and the image knows a live leader.
pub(crate) fn new_leader(
    state: &MetadataState,
    topic: &str,
    partition: i32,
    error: i16,
) -> Option<NewLeader> {
    let moved = error == ResponseError::NotLeaderOrFollower.code()
        || error == ResponseError::FencedLeaderEpoch.code();
    if !moved {
        return None;
    }
    let p = state
        .topics
        .get(topic)?
        .partitions
        .get(usize::try_from(partition).ok()?)?;
    let b = state.brokers.get(&p.leader).filter(|b| !b.fenced)?;
    let e = b.client_endpoint()?;
    Some(NewLeader {
        id: p.leader,
        epoch: p.leader_epoch,
        host: e.host.clone(),
        port: i32::from(e.port),
        rack: b.rack.clone(),
    })
}

pub(crate) fn topic_name(s: &str) -> TopicName {
    TopicName(StrBytes::from_string(s.to_string()))
}

/// Why `partition` of `topic` cannot be served by `broker`, if it cannot.
pub(crate) fn partition_error(
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
