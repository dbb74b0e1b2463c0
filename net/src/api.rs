//! The APIs and versions this broker serves (answered to ApiVersions).
//!
//! Produce is advertised from version 0 although only 3 and later are
//! served, as Kafka 4 does (KAFKA-18659): librdkafka takes a minimum above
//! 0 to mean the broker cannot take its compressed produce. Fetch 13 to 17
//! name topics by id (KIP-516); Produce 13, which does too, is not
//! advertised yet.

use kafka_protocol::messages::ApiKey;

/// (API, lowest served version, highest served version, lowest advertised).
pub const SERVED: &[(ApiKey, i16, i16, i16)] = &[
    (ApiKey::Produce, 3, 12, 0),
    (ApiKey::Fetch, 4, 17, 4),
    (ApiKey::ListOffsets, 1, 9, 1),
    (ApiKey::Metadata, 1, 12, 1),
    (ApiKey::ApiVersions, 0, 4, 0),
    (ApiKey::CreateTopics, 2, 7, 2),
    (ApiKey::DeleteTopics, 1, 6, 1),
    (ApiKey::DeleteRecords, 0, 2, 0),
    (ApiKey::OffsetForLeaderEpoch, 2, 4, 2),
    (ApiKey::DescribeConfigs, 1, 4, 1),
    (ApiKey::AlterConfigs, 0, 2, 0),
    (ApiKey::IncrementalAlterConfigs, 0, 1, 0),
    (ApiKey::CreatePartitions, 0, 3, 0),
    (ApiKey::DescribeLogDirs, 1, 4, 1),
    (ApiKey::DescribeCluster, 0, 1, 0),
    (ApiKey::InitProducerId, 0, 5, 0),
    (ApiKey::DescribeProducers, 0, 0, 0),
    (ApiKey::FindCoordinator, 0, 6, 0),
    (ApiKey::JoinGroup, 0, 9, 0),
    (ApiKey::SyncGroup, 0, 5, 0),
    (ApiKey::Heartbeat, 0, 4, 0),
    (ApiKey::LeaveGroup, 0, 5, 0),
    (ApiKey::OffsetCommit, 2, 9, 2),
    (ApiKey::OffsetFetch, 1, 9, 1),
    (ApiKey::ListGroups, 0, 5, 0),
    (ApiKey::DescribeGroups, 0, 6, 0),
    (ApiKey::DeleteGroups, 0, 2, 0),
    (ApiKey::OffsetDelete, 0, 0, 0),
];

/// The served range of an API, if it is served at all.
pub fn served(key: ApiKey) -> Option<(i16, i16)> {
    SERVED.iter().find(|s| s.0 == key).map(|s| (s.1, s.2))
}
