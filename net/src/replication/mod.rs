//! Partition replication between brokers, on the network side: the wire
//! protocol followers and leaders speak (`protocol`).
//!
//! The state it drives (follower positions, the high watermark, the ISR)
//! belongs to the broker layer (`sluice_broker::replicated_partition`).

pub(crate) mod fetcher;
pub(crate) mod protocol;
pub(crate) mod server;
