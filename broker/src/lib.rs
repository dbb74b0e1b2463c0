//! What a Sluice broker is, between the Kafka protocol server (`net`) and
//! the storage engine (`engine`).
//!
//! It offers:
//! * [`membership`]: registration with the coordinator quorum, heartbeats,
//!   the broker epoch and controlled shutdown;
//! * [`partition_manager`]: per shard, the partitions this broker holds,
//!   following the metadata image (creation when assigned, opening, config
//!   changes, deletion), and the wait for a new topic's partitions;
//! * [`replicated_partition`]: the seam where a partition becomes leader
//!   or follower: leader epochs on appends, what `acks` waits for, reads
//!   up to the high watermark;
//! * [`topic_config`]: each topic's effective log config, once per image;
//! * [`router`]: cross-shard transport, "run this on the shard that owns
//!   that partition".
//!
//! Dependencies point one way: `net` → `broker` → `engine`, `replication`.

pub mod coordinator;
pub mod isr;
pub mod membership;
pub mod partition_manager;
pub mod replicated_partition;
pub mod roles;
pub mod router;
pub mod topic_config;
pub mod truncation;
