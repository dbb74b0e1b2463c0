//! A broker's settings for the protocol server, with Kafka's names.
//!
//! Nothing here is process-global: every shard gets the same `Arc` of one
//! [`BrokerConfig`], and two brokers in one process (tests) keep their own.

use std::collections::BTreeMap;
use std::net::SocketAddr;

/// Broker settings, with Kafka's names in the comments.
#[derive(Clone, Debug)]
pub struct BrokerConfig {
    /// `broker.id`.
    pub broker_id: i32,
    /// `listeners`.
    pub listen: SocketAddr,
    /// `advertised.listeners`: the host and port clients are told.
    pub advertised: (String, u16),
    /// `replication.listener`: where followers fetch from (its port is
    /// known when the broker starts, never 0 here).
    pub replication_listen: SocketAddr,
    /// `replica.lag.time.max.ms`: an in-sync follower not caught up for
    /// this long leaves the ISR.
    pub replica_lag_time_max_ms: u64,
    /// `socket.request.max.bytes`.
    pub socket_request_max_bytes: usize,
    /// `queued.max.request.bytes`: request bytes held at once by one shard,
    /// across its connections; a connection waits for room before reading
    /// a request's body.
    pub queued_max_request_bytes: usize,
    /// `fetch.max.bytes`: the most one fetch response carries, whatever the
    /// client asks (one batch larger than it still goes out whole, KIP-74).
    pub fetch_max_bytes: usize,
    /// `connections.max.idle.ms`.
    pub connections_max_idle_ms: u64,
    /// `max.incremental.fetch.session.cache.slots`, split over the shards.
    pub fetch_session_cache_slots: usize,
    /// Most connections one shard serves.
    pub connections_max: usize,
    /// `auto.create.topics.enable`.
    pub auto_create_topics: bool,
    /// The coordinator quorum's addresses.
    pub coordinators: Vec<String>,
    /// `num.partitions` / `default.replication.factor` for topics created
    /// without them, unless set cluster-wide; -1 leaves it to the
    /// coordinator's default.
    pub num_partitions: i32,
    pub default_replication_factor: i16,
    /// Static broker-level log defaults by Kafka's names (`message.max.bytes`,
    /// `log.retention.hours`, ...), from the config file or command line;
    /// cluster-wide dynamic configs override them.
    pub static_configs: BTreeMap<String, String>,
    pub cluster_id: String,
    /// `offsets.topic.num.partitions`: partitions of `__consumer_offsets`
    /// when it is created.
    pub offsets_topic_num_partitions: i32,
    /// `offsets.topic.replication.factor`: replicas of each partition of
    /// `__consumer_offsets` when it is created, at most the live brokers.
    pub offsets_topic_replication_factor: i16,
    /// `offsets.retention.minutes`.
    pub offsets_retention_minutes: i64,
    /// `offsets.topic.segment.bytes`: `segment.bytes` of `__consumer_offsets`
    /// when it is created, and how much a partition of it may grow before
    /// its live state is rewritten (see `groups`).
    pub offsets_topic_segment_bytes: i64,
    /// `offsets.retention.check.interval.ms`.
    pub offsets_retention_check_interval_ms: u64,
    /// `offset.metadata.max.bytes`.
    pub offset_metadata_max_bytes: usize,
    /// `group.initial.rebalance.delay.ms`.
    pub group_initial_rebalance_delay_ms: i32,
    /// `group.min.session.timeout.ms`.
    pub group_min_session_timeout_ms: i32,
    /// `group.max.session.timeout.ms`.
    pub group_max_session_timeout_ms: i32,
    /// `group.max.size` (Kafka: unlimited; bounded here).
    pub group_max_size: usize,
    /// Groups one shard coordinates at most.
    pub groups_per_shard_max: usize,
    /// Committed offsets one group holds at most.
    pub group_offsets_max: usize,
}

impl BrokerConfig {
    pub fn new(broker_id: i32, listen: SocketAddr, coordinators: Vec<String>) -> Self {
        Self {
            broker_id,
            listen,
            advertised: (listen.ip().to_string(), listen.port()),
            replication_listen: SocketAddr::new(listen.ip(), 0),
            replica_lag_time_max_ms: 30_000,
            socket_request_max_bytes: 104_857_600,
            queued_max_request_bytes: 256 << 20,
            fetch_max_bytes: 57_671_680,
            connections_max_idle_ms: 600_000,
            fetch_session_cache_slots: 1000,
            connections_max: 10_000,
            auto_create_topics: true,
            coordinators,
            cluster_id: "sluice".into(),
            num_partitions: -1,
            default_replication_factor: -1,
            static_configs: Default::default(),
            offsets_topic_num_partitions: 50,
            offsets_topic_replication_factor: 3,
            offsets_retention_minutes: 10_080,
            offsets_topic_segment_bytes: 104_857_600,
            offsets_retention_check_interval_ms: 600_000,
            offset_metadata_max_bytes: 4_096,
            group_initial_rebalance_delay_ms: 3_000,
            group_min_session_timeout_ms: 6_000,
            group_max_session_timeout_ms: 1_800_000,
            group_max_size: 1_000,
            groups_per_shard_max: 100_000,
            group_offsets_max: 100_000,
        }
    }
}
