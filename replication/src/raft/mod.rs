//! The metadata quorum on openraft: durable log and vote (`log_store`),
//! the state machine with snapshots on disk (`state_machine`), and the
//! transport between coordinator nodes (`network`).
//!
//! openraft runs on its own thread with a tokio current-thread runtime. A
//! broker, embedded or remote, reaches the quorum only through the TCP
//! client (`client`): proposals go from a blocking thread off the shard's
//! reactor, and the metadata comes back through the subscriber thread
//! (`subscriber`), which publishes an immutable image every shard reads
//! without locks. No shard talks to openraft directly.

pub mod client;
pub mod log_store;
pub mod network;
pub mod node;
pub mod state_machine;
pub mod subscriber;

use std::io::Cursor;

use crate::metadata::{Outcome, Proposal};

openraft::declare_raft_types!(
    /// openraft's types for the metadata quorum.
    pub TypeConfig:
        D = Proposal,
        R = Outcome,
        NodeId = u64,
        Node = openraft::BasicNode,
        SnapshotData = Cursor<Vec<u8>>,
);
