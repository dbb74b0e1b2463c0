//! The Sluice storage engine: Kafka partition logs, one shard per core.
//!
//! See `engine/DESIGN.md` for the assumptions about the disk and kernel, the
//! formats and the durability policy; each format's layout is at the top of
//! the module that owns it.

pub mod batch;
pub mod cache;
pub mod checkpoint;
pub mod codec;
pub mod config;
pub mod error;
pub mod fds;
pub mod framed;
pub mod index;
pub mod io;
pub mod partition;
pub mod producers;
pub mod scan;
pub mod segment;
pub mod shard;
#[cfg(test)]
mod test_support;
pub mod types;

pub use error::{EngineError, KafkaCode, Result};
pub use types::{LeaderEpoch, Offset, PartitionId, TimestampMs, TopicPartition};
