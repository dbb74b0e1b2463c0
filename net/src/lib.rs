//! The Kafka protocol server.
//!
//! A request flows through these modules once each, in this order:
//! * `server`: each shard's start and listener;
//! * `connection`: reading requests ahead (pipelining) and writing the
//!   responses in request order;
//! * [`dispatch`]: decoding, and the table of APIs (versions, how each may
//!   overlap others on its connection, its handler);
//! * `handlers`: one module per API, holding its whole API, the part that
//!   runs on the shard owning a partition included (run there through
//!   `sluice_broker::router`);
//! * `response`: encoding, with fetched records placed for `sendfile`.
//!
//! Beside them: `ctx` (what a shard's handlers share), `request` (a
//! request as handlers get it), `admin` (changes proposed to the
//! coordinator quorum), `groups` (the group coordinator, a service the
//! group handlers call), `fetch_session` (KIP-227 sessions) and
//! `producer_ids`.
//!
//! ## Bad input
//! * A frame size below 4 or above `socket.request.max.bytes` closes the
//!   connection before anything is allocated for it.
//! * An unknown API key, or a version this broker does not serve, closes the
//!   connection, except for ApiVersions (KIP-511, see [`dispatch`]).
//! * A body that does not decode closes the connection. Element counts are
//!   bounded by the frame before decoding allocates (see
//!   vendor/kafka-protocol/SLUICE-PATCHES.md).
//! * Record batches are validated by the engine before they are stored.
//! * Connections idle for `connections.max.idle.ms` are closed, at most
//!   `connections_max` are served per shard, and at most
//!   [`PIPELINE_DEPTH`] requests per connection are read ahead of their
//!   responses, their bytes held within `queued.max.request.bytes`.
//!
//! This crate offers [`shard_main`] (the per-shard task a broker runs),
//! [`BrokerConfig`], and, for tools, fuzzers and benchmarks,
//! [`decode_request`], [`read_replication_frame`], the [`dispatch`] table
//! and [`owner`].

#![warn(unreachable_pub)]

mod admin;
mod authz;
mod config;
mod connection;
mod ctx;
pub mod dispatch;
mod fetch_session;
mod frame;
mod groups;
mod handlers;
mod producer_ids;
mod replication;
mod request;
mod response;
mod server;

pub use config::BrokerConfig;
pub use connection::PIPELINE_DEPTH;
pub use dispatch::{decode_request, Decoded};
pub use server::{shard_main, Listening};

/// Reads a replication protocol frame (the bytes after its length field)
/// as a leader or follower would, for fuzzers: never panics, and an error
/// is what closes the connection.
pub fn read_replication_frame(frame: bytes::Bytes) -> Result<(), String> {
    replication::protocol::read_any(frame)
        .map(drop)
        .map_err(|e| e.to_string())
}

/// The shard that owns a partition, for tools and tests.
pub fn owner(tp: &sluice_engine::TopicPartition, shards: usize) -> usize {
    sluice_engine::shard::shard_of(tp, shards)
}
