//! The metadata records and the state they build: [`Command`]s, wrapped in
//! [`Proposal`]s, are the entries of the Raft log, [`Outcome`]s their
//! answers, and [`MetadataState`] the whole state a snapshot holds.
//!
//! Every type here is serialized: rkyv-encoded in snapshot files
//! (`metadata::snapshot`), postcard-encoded (through serde) in the Raft log
//! on disk and in the messages between coordinators and brokers. Both
//! encodings are positional, so the order of fields and of enum variants is
//! the format: reordering them breaks every log and snapshot already
//! written.

use std::collections::BTreeMap;

use rkyv::{Archive, Deserialize, Serialize};

use crate::metadata::MetaError;

/// No leader (Kafka's -1).
pub const NO_LEADER: i32 = -1;

/// A listener a broker serves on.
#[derive(
    Archive,
    Serialize,
    Deserialize,
    serde::Serialize,
    serde::Deserialize,
    Clone,
    Debug,
    PartialEq,
    Eq,
)]
pub struct Endpoint {
    pub listener: String,
    pub host: String,
    pub port: u16,
    pub security_protocol: String,
}

/// A registered broker.
#[derive(
    Archive,
    Serialize,
    Deserialize,
    serde::Serialize,
    serde::Deserialize,
    Clone,
    Debug,
    PartialEq,
    Eq,
)]
pub struct Broker {
    pub id: i32,
    /// Chosen by the broker process at start: a new one means a restart.
    pub incarnation: [u8; 16],
    /// Log index of the registration.
    pub epoch: u64,
    pub endpoints: Vec<Endpoint>,
    pub rack: Option<String>,
    /// Missed its heartbeats (or has not yet caught up): leads nothing and
    /// is in no ISR it could be removed from.
    pub fenced: bool,
}

/// The listener clients use (`listeners`), registered first.
pub const CLIENT_LISTENER: &str = "PLAINTEXT";
/// The listener followers fetch from (`replication.listener`).
pub const REPLICATION_LISTENER: &str = "REPLICATION";

impl Broker {
    /// Its endpoint of `listener`, if it registered one.
    pub fn endpoint(&self, listener: &str) -> Option<&Endpoint> {
        self.endpoints.iter().find(|e| e.listener == listener)
    }

    /// The endpoint Kafka clients connect to.
    pub fn client_endpoint(&self) -> Option<&Endpoint> {
        self.endpoint(CLIENT_LISTENER)
            .or_else(|| self.endpoints.first())
    }
}

/// One partition's replication state.
#[derive(
    Archive,
    Serialize,
    Deserialize,
    serde::Serialize,
    serde::Deserialize,
    Clone,
    Debug,
    PartialEq,
    Eq,
)]
pub struct PartitionState {
    pub replicas: Vec<i32>,
    pub isr: Vec<i32>,
    pub leader: i32,
    pub leader_epoch: i32,
    pub partition_epoch: i32,
}

#[derive(
    Archive,
    Serialize,
    Deserialize,
    serde::Serialize,
    serde::Deserialize,
    Clone,
    Debug,
    PartialEq,
    Eq,
)]
pub struct Topic {
    pub id: [u8; 16],
    pub name: String,
    pub partitions: Vec<PartitionState>,
    /// Topic-level overrides, Kafka names; validated by `LogConfig`.
    pub configs: BTreeMap<String, String>,
}

/// What a config change applies to.
#[derive(
    Archive,
    Serialize,
    Deserialize,
    serde::Serialize,
    serde::Deserialize,
    Clone,
    Debug,
    PartialEq,
    Eq,
)]
pub enum ConfigResource {
    Topic(String),
    /// Cluster-wide broker defaults (Kafka's broker resource with an empty
    /// name): `num.partitions`, `default.replication.factor`, and `log.*`
    /// defaults for topics.
    Cluster,
}

/// One incremental config change (IncrementalAlterConfigs).
#[derive(
    Archive,
    Serialize,
    Deserialize,
    serde::Serialize,
    serde::Deserialize,
    Clone,
    Debug,
    PartialEq,
    Eq,
)]
pub enum ConfigOp {
    Set(String, String),
    Delete(String),
}

/// A change proposed to the quorum.
#[derive(
    Archive,
    Serialize,
    Deserialize,
    serde::Serialize,
    serde::Deserialize,
    Clone,
    Debug,
    PartialEq,
    Eq,
)]
pub enum Command {
    RegisterBroker {
        id: i32,
        incarnation: [u8; 16],
        endpoints: Vec<Endpoint>,
        rack: Option<String>,
    },
    /// Proposed by the coordinator leader when a broker's session expired.
    FenceBroker {
        id: i32,
        epoch: u64,
    },
    /// Proposed when a registered broker heartbeats while fenced.
    UnfenceBroker {
        id: i32,
        epoch: u64,
    },
    UnregisterBroker {
        id: i32,
    },
    CreateTopic {
        name: String,
        id: [u8; 16],
        /// -1: `num.partitions`.
        partitions: i32,
        /// -1: `default.replication.factor`.
        replication_factor: i16,
        /// Manual replica lists, one per partition; empty for automatic.
        assignment: Vec<Vec<i32>>,
        configs: Vec<(String, String)>,
    },
    DeleteTopic {
        name: String,
    },
    /// Grows a topic to `count` partitions.
    CreatePartitions {
        name: String,
        count: i32,
        assignment: Vec<Vec<i32>>,
    },
    AlterConfigs {
        resource: ConfigResource,
        ops: Vec<ConfigOp>,
    },
    /// A partition leader changes its ISR (KIP-497 AlterPartition).
    AlterPartition {
        topic: String,
        partition: i32,
        broker: i32,
        broker_epoch: u64,
        leader_epoch: i32,
        partition_epoch: i32,
        isr: Vec<i32>,
    },
    AllocateProducerIds {
        broker: i32,
        broker_epoch: u64,
        count: i32,
    },
}

/// The answer to an applied command.
#[derive(
    Archive,
    Serialize,
    Deserialize,
    serde::Serialize,
    serde::Deserialize,
    Clone,
    Debug,
    PartialEq,
    Eq,
)]
pub enum Outcome {
    Done,
    BrokerRegistered {
        epoch: u64,
    },
    TopicCreated {
        id: [u8; 16],
        partitions: i32,
        replication_factor: i16,
    },
    ProducerIds {
        first: i64,
        count: i32,
    },
    Refused(MetaError),
}

/// The whole cluster metadata.
#[derive(
    Archive,
    Serialize,
    Deserialize,
    serde::Serialize,
    serde::Deserialize,
    Clone,
    Debug,
    Default,
    PartialEq,
    Eq,
)]
pub struct MetadataState {
    pub brokers: BTreeMap<i32, Broker>,
    pub topics: BTreeMap<String, Topic>,
    pub cluster_configs: BTreeMap<String, String>,
    pub next_producer_id: i64,
    /// Log index of the last command applied.
    pub last_applied: u64,
    /// Per proposing client: its last sequence number, the log index it was
    /// applied at and its outcome, so that a proposal retried after a
    /// failover is applied once and answered again (at most
    /// [`SESSIONS_MAX`] clients; the least recently seen is forgotten).
    pub sessions: BTreeMap<u64, Session>,
}

/// Most client sessions the state remembers.
pub const SESSIONS_MAX: usize = 4096;

#[derive(
    Archive,
    Serialize,
    Deserialize,
    serde::Serialize,
    serde::Deserialize,
    Clone,
    Debug,
    PartialEq,
    Eq,
)]
pub struct Session {
    pub seq: u64,
    pub index: u64,
    pub outcome: Outcome,
}

/// A command with the identity of who proposed it: the unit of the Raft log.
#[derive(
    Archive,
    Serialize,
    Deserialize,
    serde::Serialize,
    serde::Deserialize,
    Clone,
    Debug,
    PartialEq,
    Eq,
)]
pub struct Proposal {
    /// Random per client process; 0 for proposals that need no
    /// deduplication (the coordinator's own fencing).
    pub client: u64,
    pub seq: u64,
    pub command: Command,
}
