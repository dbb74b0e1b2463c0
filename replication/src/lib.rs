//! The metadata coordinator: a Raft quorum (openraft) holding the cluster
//! metadata, and how brokers reach it.
//!
//! It offers [`metadata`] (the state machine: brokers, topics, partitions
//! with their leaders and ISRs, configs, producer-id blocks; its commands
//! and their validation) and [`raft`] (a coordinator node, the client
//! brokers and tools use to propose and to read status, and the subscriber
//! that follows the metadata into an image). Partition replication between
//! brokers will live beside it, on the broker layer (`sluice-broker`).

pub mod metadata;
pub mod raft;
