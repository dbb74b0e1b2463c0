//! The metadata coordinator (a Raft quorum holding cluster metadata) and,
//! later, partition replication; they share the inter-node transport.

pub mod metadata;
pub mod raft;
