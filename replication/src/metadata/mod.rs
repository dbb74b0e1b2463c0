//! Cluster metadata: the records the coordinator quorum agrees on, and the
//! state machine that applies them.
//!
//! The coordinator plays the role KRaft controllers play for Kafka. Every
//! change to cluster metadata is a [`Command`] appended to the Raft log; the
//! [`MetadataState`] is a pure function of that log: applying the same
//! commands at the same log indexes to the same state always gives the same
//! state and the same [`Outcome`]s. Nothing in `apply` reads a clock, a
//! random source or the environment — a command carries every value it
//! needs (a new topic's id, for instance, is chosen by the proposer).
//!
//! ## Invariants of the state
//! Each is written down, and kept, where that part of the state changes
//! (the modules of `state`): broker epochs and fencing in `brokers`;
//! topic names, replica lists and replication factors in `topics`; leaders,
//! ISRs and their epochs in `partitions`; configs in `configs`;
//! producer-id blocks, which never overlap, in `producer_ids`.
//!
//! ## How brokers learn metadata
//! A broker receives the state as a snapshot, then every command applied
//! after it, applying them to its own copy with the same code; each applied
//! batch yields a new immutable image that the broker swaps in for its
//! shards in one step (see the coordinator client).

mod placement;
pub mod snapshot;
mod state;

pub use state::*;

/// Kafka error codes the coordinator answers with.
#[derive(
    rkyv::Archive,
    rkyv::Serialize,
    rkyv::Deserialize,
    serde::Serialize,
    serde::Deserialize,
    Clone,
    Copy,
    Debug,
    PartialEq,
    Eq,
    Hash,
)]
#[repr(i16)]
pub enum ErrorCode {
    UnknownTopicOrPartition = 3,
    NotLeaderOrFollower = 6,
    InvalidTopic = 17,
    TopicAlreadyExists = 36,
    InvalidPartitions = 37,
    InvalidReplicationFactor = 38,
    InvalidReplicaAssignment = 39,
    InvalidConfig = 40,
    InvalidRequest = 42,
    FencedLeaderEpoch = 74,
    StaleBrokerEpoch = 77,
    InvalidUpdateVersion = 96,
    DuplicateBrokerRegistration = 101,
    BrokerIdNotRegistered = 102,
    IneligibleReplica = 107,
}

/// A refused command: the Kafka error and a message for the client.
#[derive(
    rkyv::Archive,
    rkyv::Serialize,
    rkyv::Deserialize,
    serde::Serialize,
    serde::Deserialize,
    Clone,
    Debug,
    PartialEq,
    Eq,
    thiserror::Error,
)]
#[error("{code:?}: {message}")]
pub struct MetaError {
    pub code: ErrorCode,
    pub message: String,
}

impl MetaError {
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        Self {
            code,
            message: message.into(),
        }
    }
}
