//! The seam where a partition's log meets replication: a partition as this
//! broker holds it, leader (today, always) or follower (with replication).
//!
//! It owns what replication changes about a partition's log:
//! * **appends as leader**, stamped with the leader epoch the request was
//!   checked against;
//! * **what an acknowledgement waits for**: `acks=1` the leader's own
//!   durable copy (the engine's durable position), `acks=all` the high
//!   watermark (committed). Today every partition has a single replica and
//!   its log runs in the engine's `CommitMode::Durable`, where the high
//!   watermark is the durable position; with replication a partition runs
//!   in `CommitMode::Replicated` and its leader advances the high watermark
//!   as the in-sync replicas catch up;
//! * **consumer reads**, which stop at the high watermark.
//!
//! Everything else about the log (watermarks, sizes, producers, indexes)
//! is read through [`ReplicatedPartition::log`].

use bytes::BytesMut;
use sluice_engine::partition::{
    AppendInfo, HighWatermarkWait, Partition, ReadOptions, ReadOutcome, ReadUpper,
};
use sluice_engine::{LeaderEpoch, Offset, Result};

/// Kafka's `acks` of a produce.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Acks {
    /// `acks=0`: nobody waits.
    None,
    /// `acks=1`: the leader's copy.
    Leader,
    /// `acks=all` (-1): every in-sync replica's copy, i.e. the high watermark.
    All,
}

impl Acks {
    /// Kafka's value; `None` for anything but 0, 1 and -1.
    pub fn from_kafka(acks: i16) -> Option<Self> {
        match acks {
            0 => Some(Self::None),
            1 => Some(Self::Leader),
            -1 => Some(Self::All),
            _ => None,
        }
    }
}

/// A partition held by this broker.
#[derive(Clone)]
pub struct ReplicatedPartition {
    log: Partition,
}

impl ReplicatedPartition {
    pub(crate) fn new(log: Partition) -> Self {
        Self { log }
    }

    /// The partition's log, for what replication does not change.
    pub fn log(&self) -> &Partition {
        &self.log
    }

    /// Validates and appends one batch produced by a client, as leader at
    /// `leader_epoch`; returns once its offsets are assigned. Await
    /// [`ReplicatedPartition::acknowledged`] for its acknowledgement.
    pub async fn append(
        &self,
        batch: BytesMut,
        leader_epoch: LeaderEpoch,
        now_ms: i64,
    ) -> Result<AppendInfo> {
        self.log.append(batch, leader_epoch, now_ms).await
    }

    /// Resolves once the batch ending at `last` is acknowledged as `acks`
    /// asks: by the leader's durable copy, or by the high watermark.
    pub async fn acknowledged(&self, acks: Acks, last: Offset) -> Result<()> {
        match acks {
            Acks::None => Ok(()),
            Acks::Leader => self.log.wait_durable(last).await,
            Acks::All => self.log.wait_acked(last).await,
        }
    }

    /// A consumer's read from `from`: whole batches below the high
    /// watermark, at least one even if larger than `max_bytes` (KIP-74).
    pub async fn read_committed(&self, from: Offset, max_bytes: usize) -> Result<ReadOutcome> {
        let opts = ReadOptions {
            max_bytes,
            min_one: true,
            upper: ReadUpper::HighWatermark,
        };
        self.log.read(from, opts).await
    }

    /// Resolves once the high watermark is above `offset` (a long poll).
    pub fn wait_high_watermark_above(&self, offset: Offset) -> HighWatermarkWait {
        self.log.wait_high_watermark_above(offset)
    }
}
