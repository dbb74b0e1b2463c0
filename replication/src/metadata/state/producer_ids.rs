//! Producer ids for idempotent producers (KIP-98), handed out to brokers in
//! blocks (`AllocateProducerIds`, as in KIP-730).
//!
//! ## Invariants
//! * blocks never overlap: `next_producer_id` only grows, by the size of
//!   each block handed out;
//! * a block holds between 1 and [`PRODUCER_ID_BLOCK_MAX`] ids and goes
//!   only to a registered broker at its current epoch.

use super::{refuse, MetadataState, Outcome};
use crate::metadata::{ErrorCode, MetaError};

/// Largest producer-id block one request may take.
pub const PRODUCER_ID_BLOCK_MAX: i32 = 10_000;

impl MetadataState {
    pub(super) fn allocate_producer_ids(
        &mut self,
        broker: i32,
        broker_epoch: u64,
        count: i32,
    ) -> Result<Outcome, MetaError> {
        self.check_broker_epoch(broker, broker_epoch)?;
        if count <= 0 || count > PRODUCER_ID_BLOCK_MAX {
            return refuse(
                ErrorCode::InvalidRequest,
                format!("producer id block of {count}"),
            );
        }
        let first = self.next_producer_id;
        self.next_producer_id += i64::from(count);
        Ok(Outcome::ProducerIds { first, count })
    }
}
