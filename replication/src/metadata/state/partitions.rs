//! A partition's replication state — its leader, ISR and epochs — and the
//! change its leader proposes to the ISR (KIP-497 AlterPartition).
//!
//! ## Invariants
//! Every command that touches a partition keeps these: this module's ISR
//! change, `brokers` (fencing moves leaders and shrinks ISRs, unfencing
//! gives leaderless partitions a leader) and `topics` (new partitions).
//! * the ISR is a non-empty subset of the replicas;
//! * the leader is -1 (none) or a member of the ISR that is not fenced;
//! * `leader_epoch` grows by one at every leader change, `partition_epoch`
//!   at every change of leader or ISR (KIP-497), and neither ever decreases.

use super::{refuse, MetadataState, Outcome, PartitionState};
use crate::metadata::{ErrorCode, MetaError};

impl MetadataState {
    /// Replaces the ISR of `topic`-`partition` with `isr`, proposed by its
    /// leader `broker` at the epochs it knows.
    #[allow(clippy::too_many_arguments)] // the fields of Command::AlterPartition
    pub(super) fn alter_partition(
        &mut self,
        topic: &str,
        partition: i32,
        broker: i32,
        broker_epoch: u64,
        leader_epoch: i32,
        partition_epoch: i32,
        isr: &[i32],
    ) -> Result<Outcome, MetaError> {
        self.check_broker_epoch(broker, broker_epoch)?;
        // Which of the proposed members are live, decided before the
        // partition is borrowed for the change.
        let live: Vec<i32> = isr
            .iter()
            .copied()
            .filter(|r| self.brokers.get(r).is_some_and(|b| !b.fenced))
            .collect();
        let p = self.partition_mut(topic, partition)?;
        if p.leader != broker {
            return refuse(
                ErrorCode::NotLeaderOrFollower,
                format!("broker {broker} does not lead {topic}-{partition}"),
            );
        }
        if leader_epoch != p.leader_epoch {
            return refuse(
                ErrorCode::FencedLeaderEpoch,
                format!("leader epoch {leader_epoch} is not {}", p.leader_epoch),
            );
        }
        if partition_epoch != p.partition_epoch {
            return refuse(
                ErrorCode::InvalidUpdateVersion,
                format!(
                    "partition epoch {partition_epoch} is not {}",
                    p.partition_epoch
                ),
            );
        }
        let mut new_isr = isr.to_vec();
        new_isr.sort_unstable();
        new_isr.dedup();
        let eligible = new_isr
            .iter()
            .all(|r| p.replicas.contains(r) && live.contains(r));
        if !new_isr.contains(&broker) || !eligible || new_isr.len() != isr.len() {
            return refuse(
                ErrorCode::IneligibleReplica,
                format!("ISR {isr:?} is not a set of live replicas including the leader"),
            );
        }
        p.isr = isr.to_vec();
        p.partition_epoch += 1;
        Ok(Outcome::Done)
    }

    fn partition_mut(
        &mut self,
        topic: &str,
        partition: i32,
    ) -> Result<&mut PartitionState, MetaError> {
        self.topics
            .get_mut(topic)
            .and_then(|t| {
                usize::try_from(partition)
                    .ok()
                    .and_then(|p| t.partitions.get_mut(p))
            })
            .ok_or_else(|| {
                MetaError::new(
                    ErrorCode::UnknownTopicOrPartition,
                    format!("{topic}-{partition} does not exist"),
                )
            })
    }
}
