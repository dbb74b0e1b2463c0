//! The state machine: how a [`Proposal`] is applied to the
//! [`MetadataState`], and which module owns each command.
//!
//! [`MetadataState::apply`] is the one way in. It skips a log index already
//! applied, then hands the command to the module that owns its part of the
//! state, each stating the invariants it keeps:
//! * `brokers`: registering, fencing, unfencing and unregistering brokers;
//! * `topics`: creating and deleting topics, adding partitions, placing
//!   replicas;
//! * `configs`: topic overrides and cluster-wide defaults;
//! * `partitions`: a partition's leader, ISR and epochs, and the leader's
//!   ISR change (AlterPartition);
//! * `producer_ids`: producer-id blocks.
//!
//! The serialized types are in `types`.
//!
//! ## Invariants
//! * `last_applied` never decreases, and a command is applied at most once
//!   per log index;
//! * a refused command changes nothing but `last_applied`: every handler
//!   makes all its checks before its first change;
//! * a retry of a client's last proposal is answered with the outcome it
//!   had, not applied again, and an older proposal is refused, for the
//!   [`SESSIONS_MAX`] clients seen most recently (client 0, the
//!   coordinator's own fencing, is not deduplicated).

use crate::metadata::{ErrorCode, MetaError};

mod brokers;
mod configs;
mod partitions;
mod producer_ids;
mod topics;
mod types;

pub use producer_ids::PRODUCER_ID_BLOCK_MAX;
pub use topics::{validate_topic_name, PARTITIONS_MAX, TOPIC_NAME_LEN_MAX};
pub use types::*;

fn refuse(code: ErrorCode, message: impl Into<String>) -> Result<Outcome, MetaError> {
    Err(MetaError::new(code, message))
}

impl MetadataState {
    /// Applies the command at log index `index`. A command at an index
    /// already applied is ignored, so replaying a log prefix is harmless.
    pub fn apply(&mut self, index: u64, command: &Command) -> Outcome {
        if index <= self.last_applied {
            return Outcome::Done;
        }
        self.last_applied = index;
        match self.apply_inner(index, command) {
            Ok(o) => o,
            Err(e) => Outcome::Refused(e),
        }
    }

    /// Applies a proposal: a retry of the client's last proposal is not
    /// applied again but answered with the outcome it had.
    pub fn apply_proposal(&mut self, index: u64, p: &Proposal) -> Outcome {
        if p.client != 0 {
            if let Some(s) = self.sessions.get(&p.client) {
                if p.seq == s.seq {
                    let outcome = s.outcome.clone();
                    self.last_applied = self.last_applied.max(index);
                    return outcome;
                }
                if p.seq < s.seq {
                    self.last_applied = self.last_applied.max(index);
                    return Outcome::Refused(MetaError::new(
                        ErrorCode::InvalidRequest,
                        format!(
                            "request {} of client {} is older than its last, {}",
                            p.seq, p.client, s.seq
                        ),
                    ));
                }
            }
        }
        let outcome = self.apply(index, &p.command);
        if p.client != 0 {
            self.sessions.insert(
                p.client,
                Session {
                    seq: p.seq,
                    index,
                    outcome: outcome.clone(),
                },
            );
            if self.sessions.len() > SESSIONS_MAX {
                let oldest = self
                    .sessions
                    .iter()
                    .min_by_key(|(c, s)| (s.index, **c))
                    .map(|(c, _)| *c)
                    .expect("not empty");
                self.sessions.remove(&oldest);
            }
        }
        outcome
    }

    /// Checks a command against the state without applying it (for
    /// `validate_only` requests and to refuse early, before proposing).
    pub fn check(&self, command: &Command) -> Result<(), MetaError> {
        let mut copy = self.clone();
        match copy.apply_inner(self.last_applied + 1, command) {
            Ok(_) => Ok(()),
            Err(e) => Err(e),
        }
    }

    /// Hands the command to the function that applies it.
    fn apply_inner(&mut self, index: u64, command: &Command) -> Result<Outcome, MetaError> {
        match command {
            Command::RegisterBroker {
                id,
                incarnation,
                endpoints,
                rack,
            } => self.register_broker(index, *id, *incarnation, endpoints, rack),
            Command::FenceBroker { id, epoch } => self.fence_broker(*id, *epoch),
            Command::UnfenceBroker { id, epoch } => self.unfence_broker(*id, *epoch),
            Command::UnregisterBroker { id } => self.unregister_broker(*id),
            Command::CreateTopic {
                name,
                id,
                partitions,
                replication_factor,
                assignment,
                configs,
            } => self.create_topic(
                name,
                *id,
                *partitions,
                *replication_factor,
                assignment,
                configs,
            ),
            Command::DeleteTopic { name } => self.delete_topic(name),
            Command::CreatePartitions {
                name,
                count,
                assignment,
            } => self.create_partitions(name, *count, assignment),
            Command::AlterConfigs { resource, ops } => self.alter_configs(resource, ops),
            Command::AlterPartition {
                topic,
                partition,
                broker,
                broker_epoch,
                leader_epoch,
                partition_epoch,
                isr,
            } => self.alter_partition(
                topic,
                *partition,
                *broker,
                *broker_epoch,
                *leader_epoch,
                *partition_epoch,
                isr,
            ),
            Command::AllocateProducerIds {
                broker,
                broker_epoch,
                count,
            } => self.allocate_producer_ids(*broker, *broker_epoch, *count),
        }
    }
}
