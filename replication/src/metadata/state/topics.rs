//! Topics: creating them (names checked as Kafka checks them, replicas
//! placed automatically or given by hand), deleting them, and adding
//! partitions.
//!
//! ## Invariants
//! * a topic's name is one Kafka accepts (`Topic.validate`) and does not
//!   collide with another's once '.' and '_' are taken as equal;
//! * a topic's id is not zero and no other topic has it;
//! * a partition's replicas are distinct brokers, registered when they were
//!   placed, and all partitions of a topic have the same replication factor;
//! * a topic has between 1 and [`PARTITIONS_MAX`] partitions, and their
//!   number only grows;
//! * a new partition's ISR is its live replicas (all of them when none is
//!   live), led by the first live one; both its epochs start at 0.

use super::{refuse, MetadataState, Outcome, PartitionState, Topic, NO_LEADER};
use crate::metadata::placement::{self, Candidate};
use crate::metadata::{ErrorCode, MetaError};

/// Longest topic name Kafka accepts.
pub const TOPIC_NAME_LEN_MAX: usize = 249;
/// Most partitions one topic may have (bounds what a command can allocate).
pub const PARTITIONS_MAX: i32 = 100_000;

/// Checks a topic name as Kafka does (`Topic.validate`).
pub fn validate_topic_name(name: &str) -> Result<(), MetaError> {
    let bad = |why: &str| {
        Err(MetaError::new(
            ErrorCode::InvalidTopic,
            format!("topic name {name:?} {why}"),
        ))
    };
    if name.is_empty() {
        return bad("is empty");
    }
    if name == "." || name == ".." {
        return bad("cannot be '.' or '..'");
    }
    if name.len() > TOPIC_NAME_LEN_MAX {
        return bad("is longer than 249 characters");
    }
    if !name
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'_' || b == b'-')
    {
        return bad("may contain only ASCII letters, digits, '.', '_' and '-'");
    }
    Ok(())
}

/// Names that differ only in '.' versus '_' collide in Kafka's metric names.
fn collision_key(name: &str) -> String {
    name.replace('.', "_")
}

impl MetadataState {
    pub(super) fn create_topic(
        &mut self,
        name: &str,
        id: [u8; 16],
        partitions: i32,
        replication_factor: i16,
        assignment: &[Vec<i32>],
        configs: &[(String, String)],
    ) -> Result<Outcome, MetaError> {
        validate_topic_name(name)?;
        if self.topics.contains_key(name) {
            return refuse(
                ErrorCode::TopicAlreadyExists,
                format!("topic {name} already exists"),
            );
        }
        let key = collision_key(name);
        if let Some(other) = self.topics.keys().find(|t| collision_key(t) == key) {
            return refuse(
                ErrorCode::InvalidTopic,
                format!("topic {name} collides with existing topic {other}"),
            );
        }
        if id == [0; 16] || self.topics.values().any(|t| t.id == id) {
            return refuse(ErrorCode::InvalidRequest, "the topic id is zero or taken");
        }
        let configs = Self::validate_configs(configs)?;
        let replicas = if assignment.is_empty() {
            let count = if partitions == -1 {
                self.int_config("num.partitions", 1) as i32
            } else {
                partitions
            };
            let rf = if replication_factor == -1 {
                self.int_config("default.replication.factor", 1) as i16
            } else {
                replication_factor
            };
            self.auto_assign(count, rf)?
        } else {
            if partitions != -1 || replication_factor != -1 {
                return refuse(
                    ErrorCode::InvalidRequest,
                    "give either an assignment or partitions and replication factor",
                );
            }
            self.check_assignment(assignment, None)?;
            assignment.to_vec()
        };
        let rf = replicas[0].len() as i16;
        let count = replicas.len() as i32;
        let parts = replicas
            .into_iter()
            .map(|r| self.new_partition(r))
            .collect();
        self.topics.insert(
            name.to_string(),
            Topic {
                id,
                name: name.to_string(),
                partitions: parts,
                configs,
            },
        );
        Ok(Outcome::TopicCreated {
            id,
            partitions: count,
            replication_factor: rf,
        })
    }

    pub(super) fn delete_topic(&mut self, name: &str) -> Result<Outcome, MetaError> {
        if self.topics.remove(name).is_none() {
            return refuse(
                ErrorCode::UnknownTopicOrPartition,
                format!("topic {name} does not exist"),
            );
        }
        Ok(Outcome::Done)
    }

    fn new_partition(&self, replicas: Vec<i32>) -> PartitionState {
        let live: Vec<i32> = replicas
            .iter()
            .copied()
            .filter(|r| self.brokers.get(r).is_some_and(|b| !b.fenced))
            .collect();
        let isr = if live.is_empty() {
            replicas.clone()
        } else {
            live
        };
        let leader = isr
            .iter()
            .copied()
            .find(|r| self.brokers.get(r).is_some_and(|b| !b.fenced))
            .unwrap_or(NO_LEADER);
        PartitionState {
            replicas,
            isr,
            leader,
            leader_epoch: 0,
            partition_epoch: 0,
        }
    }

    fn auto_assign(&self, count: i32, rf: i16) -> Result<Vec<Vec<i32>>, MetaError> {
        if count <= 0 || count > PARTITIONS_MAX {
            return Err(MetaError::new(
                ErrorCode::InvalidPartitions,
                format!("number of partitions {count} must be between 1 and {PARTITIONS_MAX}"),
            ));
        }
        let live = self.live_brokers();
        if rf <= 0 {
            return Err(MetaError::new(
                ErrorCode::InvalidReplicationFactor,
                format!("replication factor {rf} must be at least 1"),
            ));
        }
        if rf as usize > live.len() {
            return Err(MetaError::new(
                ErrorCode::InvalidReplicationFactor,
                format!(
                    "replication factor {rf} is larger than the {} live broker{}",
                    live.len(),
                    if live.len() == 1 { "" } else { "s" }
                ),
            ));
        }
        let candidates: Vec<Candidate> = live
            .iter()
            .map(|b| {
                let (mut replicas, mut leaders) = (0, 0);
                for t in self.topics.values() {
                    for p in &t.partitions {
                        replicas += usize::from(p.replicas.contains(&b.id));
                        leaders += usize::from(p.replicas.first() == Some(&b.id));
                    }
                }
                Candidate {
                    id: b.id,
                    rack: b.rack.clone(),
                    replicas,
                    leaders,
                }
            })
            .collect();
        Ok(placement::place(&candidates, count as usize, rf as usize))
    }

    /// Checks manual replica lists; `rf` is the topic's when it exists.
    fn check_assignment(
        &self,
        assignment: &[Vec<i32>],
        rf: Option<usize>,
    ) -> Result<(), MetaError> {
        let bad = |m: String| Err(MetaError::new(ErrorCode::InvalidReplicaAssignment, m));
        if assignment.len() > PARTITIONS_MAX as usize {
            return bad(format!("more than {PARTITIONS_MAX} partitions"));
        }
        let rf = rf.or_else(|| assignment.first().map(Vec::len)).unwrap_or(0);
        for (i, replicas) in assignment.iter().enumerate() {
            if replicas.is_empty() || replicas.len() != rf {
                return bad(format!(
                    "partition {i} has {} replicas, not {rf}",
                    replicas.len()
                ));
            }
            let mut sorted = replicas.clone();
            sorted.sort_unstable();
            sorted.dedup();
            if sorted.len() != replicas.len() {
                return bad(format!("partition {i} lists a broker twice"));
            }
            if let Some(r) = replicas.iter().find(|r| !self.brokers.contains_key(r)) {
                return bad(format!("broker {r} in partition {i} is not registered"));
            }
        }
        Ok(())
    }

    pub(super) fn create_partitions(
        &mut self,
        name: &str,
        count: i32,
        assignment: &[Vec<i32>],
    ) -> Result<Outcome, MetaError> {
        let Some(topic) = self.topics.get(name) else {
            return refuse(
                ErrorCode::UnknownTopicOrPartition,
                format!("topic {name} does not exist"),
            );
        };
        let have = topic.partitions.len() as i32;
        if count <= have || count > PARTITIONS_MAX {
            return refuse(
                ErrorCode::InvalidPartitions,
                format!("topic {name} has {have} partitions; the new count {count} must be larger (and at most {PARTITIONS_MAX})"),
            );
        }
        let rf = topic.partitions[0].replicas.len();
        let extra = (count - have) as usize;
        let replicas = if assignment.is_empty() {
            self.auto_assign(extra as i32, rf as i16)?
        } else {
            if assignment.len() != extra {
                return refuse(
                    ErrorCode::InvalidReplicaAssignment,
                    format!(
                        "{} replica lists for {extra} new partitions",
                        assignment.len()
                    ),
                );
            }
            self.check_assignment(assignment, Some(rf))?;
            assignment.to_vec()
        };
        let parts: Vec<PartitionState> = replicas
            .into_iter()
            .map(|r| self.new_partition(r))
            .collect();
        self.topics
            .get_mut(name)
            .expect("checked")
            .partitions
            .extend(parts);
        Ok(Outcome::Done)
    }
}
