//! A shard's block of idempotent producer ids (KIP-98).
//!
//! Ids come from blocks the metadata coordinator allocates
//! (`AllocateProducerIds`), so they are unique across brokers and restarts.
//! Each shard takes its own block of [`BLOCK`] ids when it runs out: no
//! state is shared between shards.

use std::cell::Cell;

use kafka_protocol::error::ResponseError;
use sluice_replication::metadata::{Command, Outcome};

use crate::admin::propose;
use sluice_replication::raft::subscriber::Image;

use crate::config::BrokerConfig;

/// Ids a shard takes from the coordinator at a time (Kafka's block size).
pub(crate) const BLOCK: i32 = 1000;

/// A shard's block of producer ids.
pub(crate) struct ProducerIds {
    /// Next id to hand out, and the end of the block.
    block: Cell<(i64, i64)>,
    /// One allocation at a time.
    lock: glommio::sync::Semaphore,
}

impl Default for ProducerIds {
    fn default() -> Self {
        Self {
            block: Cell::new((0, 0)),
            lock: glommio::sync::Semaphore::new(1),
        }
    }
}

impl ProducerIds {
    /// The next id, allocating a block from the coordinator when this
    /// shard's is used up.
    pub(crate) async fn next(&self, config: &BrokerConfig, image: &Image) -> Result<i64, i16> {
        let _one = self
            .lock
            .acquire_permit(1)
            .await
            .map_err(|_| ResponseError::CoordinatorNotAvailable.code())?;
        let (mut next, mut end) = self.block.get();
        if next >= end {
            let epoch = image
                .load()
                .brokers
                .get(&config.broker_id)
                .map(|b| b.epoch)
                .ok_or(ResponseError::CoordinatorNotAvailable.code())?;
            let command = Command::AllocateProducerIds {
                broker: config.broker_id,
                broker_epoch: epoch,
                count: BLOCK,
            };
            match propose(config, command).await {
                Ok(Outcome::ProducerIds { first, count }) => {
                    (next, end) = (first, first + i64::from(count));
                }
                Ok(other) => {
                    tracing::warn!(?other, "unexpected answer to AllocateProducerIds");
                    return Err(ResponseError::CoordinatorNotAvailable.code());
                }
                Err((code, message)) => {
                    tracing::warn!(code, %message, "cannot allocate producer ids");
                    return Err(ResponseError::CoordinatorNotAvailable.code());
                }
            }
        }
        self.block.set((next + 1, end));
        Ok(next)
    }
}
