//! The metadata records and the state machine that applies them.

use std::collections::BTreeMap;

use rkyv::{Archive, Deserialize, Serialize};
use sluice_engine::config::LogConfig;

use super::placement::{self, Candidate};
use super::{ErrorCode, MetaError};

/// No leader (Kafka's -1).
pub const NO_LEADER: i32 = -1;
/// Largest producer-id block one request may take.
pub const PRODUCER_ID_BLOCK_MAX: i32 = 10_000;
/// Longest topic name Kafka accepts.
pub const TOPIC_NAME_LEN_MAX: usize = 249;
/// Most partitions one topic may have (bounds what a command can allocate).
pub const PARTITIONS_MAX: i32 = 100_000;

/// A listener a broker serves on.
#[derive(
    Archive,
    Serialize,
    Deserialize,
    serde::Serialize,
    serde::Deserialize,
    Clone,
    Debug,
    PartialEq,
    Eq,
)]
pub struct Endpoint {
    pub listener: String,
    pub host: String,
    pub port: u16,
    pub security_protocol: String,
}

/// A registered broker.
#[derive(
    Archive,
    Serialize,
    Deserialize,
    serde::Serialize,
    serde::Deserialize,
    Clone,
    Debug,
    PartialEq,
    Eq,
)]
pub struct Broker {
    pub id: i32,
    /// Chosen by the broker process at start: a new one means a restart.
    pub incarnation: [u8; 16],
    /// Log index of the registration.
    pub epoch: u64,
    pub endpoints: Vec<Endpoint>,
    pub rack: Option<String>,
    /// Missed its heartbeats (or has not yet caught up): leads nothing and
    /// is in no ISR it could be removed from.
    pub fenced: bool,
}

/// One partition's replication state.
#[derive(
    Archive,
    Serialize,
    Deserialize,
    serde::Serialize,
    serde::Deserialize,
    Clone,
    Debug,
    PartialEq,
    Eq,
)]
pub struct PartitionState {
    pub replicas: Vec<i32>,
    pub isr: Vec<i32>,
    pub leader: i32,
    pub leader_epoch: i32,
    pub partition_epoch: i32,
}

#[derive(
    Archive,
    Serialize,
    Deserialize,
    serde::Serialize,
    serde::Deserialize,
    Clone,
    Debug,
    PartialEq,
    Eq,
)]
pub struct Topic {
    pub id: [u8; 16],
    pub name: String,
    pub partitions: Vec<PartitionState>,
    /// Topic-level overrides, Kafka names; validated by `LogConfig`.
    pub configs: BTreeMap<String, String>,
}

/// What a config change applies to.
#[derive(
    Archive,
    Serialize,
    Deserialize,
    serde::Serialize,
    serde::Deserialize,
    Clone,
    Debug,
    PartialEq,
    Eq,
)]
pub enum ConfigResource {
    Topic(String),
    /// Cluster-wide broker defaults (Kafka's broker resource with an empty
    /// name): `num.partitions`, `default.replication.factor`, and `log.*`
    /// defaults for topics.
    Cluster,
}

/// One incremental config change (IncrementalAlterConfigs).
#[derive(
    Archive,
    Serialize,
    Deserialize,
    serde::Serialize,
    serde::Deserialize,
    Clone,
    Debug,
    PartialEq,
    Eq,
)]
pub enum ConfigOp {
    Set(String, String),
    Delete(String),
}

/// A change proposed to the quorum.
#[derive(
    Archive,
    Serialize,
    Deserialize,
    serde::Serialize,
    serde::Deserialize,
    Clone,
    Debug,
    PartialEq,
    Eq,
)]
pub enum Command {
    RegisterBroker {
        id: i32,
        incarnation: [u8; 16],
        endpoints: Vec<Endpoint>,
        rack: Option<String>,
    },
    /// Proposed by the coordinator leader when a broker's session expired.
    FenceBroker {
        id: i32,
        epoch: u64,
    },
    /// Proposed when a registered broker heartbeats while fenced.
    UnfenceBroker {
        id: i32,
        epoch: u64,
    },
    UnregisterBroker {
        id: i32,
    },
    CreateTopic {
        name: String,
        id: [u8; 16],
        /// -1: `num.partitions`.
        partitions: i32,
        /// -1: `default.replication.factor`.
        replication_factor: i16,
        /// Manual replica lists, one per partition; empty for automatic.
        assignment: Vec<Vec<i32>>,
        configs: Vec<(String, String)>,
    },
    DeleteTopic {
        name: String,
    },
    /// Grows a topic to `count` partitions.
    CreatePartitions {
        name: String,
        count: i32,
        assignment: Vec<Vec<i32>>,
    },
    AlterConfigs {
        resource: ConfigResource,
        ops: Vec<ConfigOp>,
    },
    /// A partition leader changes its ISR (KIP-497 AlterPartition).
    AlterPartition {
        topic: String,
        partition: i32,
        broker: i32,
        broker_epoch: u64,
        leader_epoch: i32,
        partition_epoch: i32,
        isr: Vec<i32>,
    },
    AllocateProducerIds {
        broker: i32,
        broker_epoch: u64,
        count: i32,
    },
}

/// The answer to an applied command.
#[derive(
    Archive,
    Serialize,
    Deserialize,
    serde::Serialize,
    serde::Deserialize,
    Clone,
    Debug,
    PartialEq,
    Eq,
)]
pub enum Outcome {
    Done,
    BrokerRegistered {
        epoch: u64,
    },
    TopicCreated {
        id: [u8; 16],
        partitions: i32,
        replication_factor: i16,
    },
    ProducerIds {
        first: i64,
        count: i32,
    },
    Refused(MetaError),
}

/// The whole cluster metadata.
#[derive(
    Archive,
    Serialize,
    Deserialize,
    serde::Serialize,
    serde::Deserialize,
    Clone,
    Debug,
    Default,
    PartialEq,
    Eq,
)]
pub struct MetadataState {
    pub brokers: BTreeMap<i32, Broker>,
    pub topics: BTreeMap<String, Topic>,
    pub cluster_configs: BTreeMap<String, String>,
    pub next_producer_id: i64,
    /// Log index of the last command applied.
    pub last_applied: u64,
    /// Per proposing client: its last sequence number, the log index it was
    /// applied at and its outcome, so that a proposal retried after a
    /// failover is applied once and answered again (at most
    /// [`SESSIONS_MAX`] clients; the least recently seen is forgotten).
    pub sessions: BTreeMap<u64, Session>,
}

/// Most client sessions the state remembers.
pub const SESSIONS_MAX: usize = 4096;

#[derive(
    Archive,
    Serialize,
    Deserialize,
    serde::Serialize,
    serde::Deserialize,
    Clone,
    Debug,
    PartialEq,
    Eq,
)]
pub struct Session {
    pub seq: u64,
    pub index: u64,
    pub outcome: Outcome,
}

/// A command with the identity of who proposed it: the unit of the Raft log.
#[derive(
    Archive,
    Serialize,
    Deserialize,
    serde::Serialize,
    serde::Deserialize,
    Clone,
    Debug,
    PartialEq,
    Eq,
)]
pub struct Proposal {
    /// Random per client process; 0 for proposals that need no
    /// deduplication (the coordinator's own fencing).
    pub client: u64,
    pub seq: u64,
    pub command: Command,
}

fn refuse(code: ErrorCode, message: impl Into<String>) -> Result<Outcome, MetaError> {
    Err(MetaError::new(code, message))
}

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

    fn int_config(&self, key: &str, default: i64) -> i64 {
        self.cluster_configs
            .get(key)
            .and_then(|v| v.parse().ok())
            .unwrap_or(default)
    }

    fn live_brokers(&self) -> Vec<&Broker> {
        self.brokers.values().filter(|b| !b.fenced).collect()
    }

    fn apply_inner(&mut self, index: u64, command: &Command) -> Result<Outcome, MetaError> {
        match command {
            Command::RegisterBroker {
                id,
                incarnation,
                endpoints,
                rack,
            } => {
                if *id < 0 {
                    return refuse(
                        ErrorCode::InvalidRequest,
                        format!("broker id {id} is negative"),
                    );
                }
                if let Some(b) = self.brokers.get(id) {
                    if b.incarnation != *incarnation && !b.fenced {
                        return refuse(
                            ErrorCode::DuplicateBrokerRegistration,
                            format!("broker {id} is registered by another live process"),
                        );
                    }
                }
                // A (re-)registered broker starts fenced; it is unfenced
                // once it heartbeats, as in KRaft.
                self.fence(*id);
                self.brokers.insert(
                    *id,
                    Broker {
                        id: *id,
                        incarnation: *incarnation,
                        epoch: index,
                        endpoints: endpoints.clone(),
                        rack: rack.clone(),
                        fenced: true,
                    },
                );
                Ok(Outcome::BrokerRegistered { epoch: index })
            }
            Command::FenceBroker { id, epoch } => {
                self.check_broker_epoch(*id, *epoch)?;
                self.fence(*id);
                Ok(Outcome::Done)
            }
            Command::UnfenceBroker { id, epoch } => {
                self.check_broker_epoch(*id, *epoch)?;
                self.unfence(*id);
                Ok(Outcome::Done)
            }
            Command::UnregisterBroker { id } => {
                if !self.brokers.contains_key(id) {
                    return refuse(
                        ErrorCode::BrokerIdNotRegistered,
                        format!("broker {id} is not registered"),
                    );
                }
                self.fence(*id);
                self.brokers.remove(id);
                Ok(Outcome::Done)
            }
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
            Command::DeleteTopic { name } => {
                if self.topics.remove(name).is_none() {
                    return refuse(
                        ErrorCode::UnknownTopicOrPartition,
                        format!("topic {name} does not exist"),
                    );
                }
                Ok(Outcome::Done)
            }
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
            } => {
                self.check_broker_epoch(*broker, *broker_epoch)?;
                // Which of the proposed members are live, decided before the
                // partition is borrowed for the change.
                let live: Vec<i32> = isr
                    .iter()
                    .copied()
                    .filter(|r| self.brokers.get(r).is_some_and(|b| !b.fenced))
                    .collect();
                let p = self.partition_mut(topic, *partition)?;
                if p.leader != *broker {
                    return refuse(
                        ErrorCode::NotLeaderOrFollower,
                        format!("broker {broker} does not lead {topic}-{partition}"),
                    );
                }
                if *leader_epoch != p.leader_epoch {
                    return refuse(
                        ErrorCode::FencedLeaderEpoch,
                        format!("leader epoch {leader_epoch} is not {}", p.leader_epoch),
                    );
                }
                if *partition_epoch != p.partition_epoch {
                    return refuse(
                        ErrorCode::InvalidUpdateVersion,
                        format!(
                            "partition epoch {partition_epoch} is not {}",
                            p.partition_epoch
                        ),
                    );
                }
                let mut new_isr = isr.clone();
                new_isr.sort_unstable();
                new_isr.dedup();
                let eligible = new_isr
                    .iter()
                    .all(|r| p.replicas.contains(r) && live.contains(r));
                if !new_isr.contains(broker) || !eligible || new_isr.len() != isr.len() {
                    return refuse(
                        ErrorCode::IneligibleReplica,
                        format!("ISR {isr:?} is not a set of live replicas including the leader"),
                    );
                }
                p.isr = isr.clone();
                p.partition_epoch += 1;
                Ok(Outcome::Done)
            }
            Command::AllocateProducerIds {
                broker,
                broker_epoch,
                count,
            } => {
                self.check_broker_epoch(*broker, *broker_epoch)?;
                if *count <= 0 || *count > PRODUCER_ID_BLOCK_MAX {
                    return refuse(
                        ErrorCode::InvalidRequest,
                        format!("producer id block of {count}"),
                    );
                }
                let first = self.next_producer_id;
                self.next_producer_id += i64::from(*count);
                Ok(Outcome::ProducerIds {
                    first,
                    count: *count,
                })
            }
        }
    }

    fn check_broker_epoch(&self, id: i32, epoch: u64) -> Result<(), MetaError> {
        match self.brokers.get(&id) {
            None => Err(MetaError::new(
                ErrorCode::BrokerIdNotRegistered,
                format!("broker {id} is not registered"),
            )),
            Some(b) if b.epoch != epoch => Err(MetaError::new(
                ErrorCode::StaleBrokerEpoch,
                format!("broker {id} epoch {epoch} is not the current {}", b.epoch),
            )),
            Some(_) => Ok(()),
        }
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

    /// Takes a broker out of leadership and out of every ISR it is not the
    /// last member of; partitions it led get the next live ISR member.
    fn fence(&mut self, id: i32) {
        let live: Vec<i32> = self
            .brokers
            .values()
            .filter(|b| !b.fenced && b.id != id)
            .map(|b| b.id)
            .collect();
        if let Some(b) = self.brokers.get_mut(&id) {
            b.fenced = true;
        }
        for t in self.topics.values_mut() {
            for p in &mut t.partitions {
                let mut changed = false;
                if p.isr.len() > 1 && p.isr.contains(&id) {
                    p.isr.retain(|&r| r != id);
                    changed = true;
                }
                if p.leader == id {
                    let next = p
                        .replicas
                        .iter()
                        .copied()
                        .find(|r| *r != id && p.isr.contains(r) && live.contains(r))
                        .unwrap_or(NO_LEADER);
                    p.leader = next;
                    p.leader_epoch += 1;
                    changed = true;
                }
                if changed {
                    p.partition_epoch += 1;
                }
            }
        }
    }

    /// A broker back in service leads the leaderless partitions whose ISR
    /// it is in.
    fn unfence(&mut self, id: i32) {
        if let Some(b) = self.brokers.get_mut(&id) {
            b.fenced = false;
        }
        for t in self.topics.values_mut() {
            for p in &mut t.partitions {
                if p.leader == NO_LEADER && p.isr.contains(&id) {
                    p.leader = id;
                    p.leader_epoch += 1;
                    p.partition_epoch += 1;
                }
            }
        }
    }

    fn validate_configs(
        configs: &[(String, String)],
    ) -> Result<BTreeMap<String, String>, MetaError> {
        let mut log = LogConfig::default();
        let mut out = BTreeMap::new();
        for (k, v) in configs {
            log.set(k, v)
                .map_err(|e| MetaError::new(ErrorCode::InvalidConfig, e.to_string()))?;
            out.insert(k.clone(), v.clone());
        }
        Ok(out)
    }

    fn create_topic(
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

    fn create_partitions(
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

    fn alter_configs(
        &mut self,
        resource: &ConfigResource,
        ops: &[ConfigOp],
    ) -> Result<Outcome, MetaError> {
        let current = match resource {
            ConfigResource::Topic(name) => match self.topics.get(name) {
                Some(t) => t.configs.clone(),
                None => {
                    return refuse(
                        ErrorCode::UnknownTopicOrPartition,
                        format!("topic {name} does not exist"),
                    )
                }
            },
            ConfigResource::Cluster => self.cluster_configs.clone(),
        };
        let mut next = current;
        for op in ops {
            match op {
                ConfigOp::Set(k, v) => {
                    next.insert(k.clone(), v.clone());
                }
                ConfigOp::Delete(k) => {
                    next.remove(k);
                }
            }
        }
        match resource {
            ConfigResource::Topic(name) => {
                let pairs: Vec<(String, String)> = next.clone().into_iter().collect();
                Self::validate_configs(&pairs)?;
                self.topics.get_mut(name).expect("checked").configs = next;
            }
            ConfigResource::Cluster => {
                for (k, v) in &next {
                    validate_cluster_config(k, v)?;
                }
                self.cluster_configs = next;
            }
        }
        Ok(Outcome::Done)
    }
}

/// Cluster-wide keys: the defaults for new topics.
fn validate_cluster_config(key: &str, value: &str) -> Result<(), MetaError> {
    let invalid = |why: &str| {
        Err(MetaError::new(
            ErrorCode::InvalidConfig,
            format!("{key}={value}: {why}"),
        ))
    };
    match key {
        "num.partitions" | "default.replication.factor" => match value.parse::<i32>() {
            Ok(v) if v >= 1 => Ok(()),
            _ => invalid("must be a positive integer"),
        },
        _ => {
            // log.retention.ms and friends: Kafka's broker-level names.
            match LogConfig::default().set_broker(key, value) {
                Ok(true) => Ok(()),
                Ok(false) => invalid("unknown cluster config"),
                Err(e) => Err(MetaError::new(ErrorCode::InvalidConfig, e.to_string())),
            }
        }
    }
}
