//! Brokers: registration, fencing and unfencing, and the broker-epoch check
//! other commands from a broker go through.
//!
//! ## Invariants
//! * a broker's epoch is the log index of its registration, so a broker that
//!   registers again (a new incarnation) has a larger epoch;
//! * a (re-)registered broker starts fenced and is unfenced once it
//!   heartbeats, as in KRaft; another incarnation may take over an id only
//!   while the registered one is fenced;
//! * a fenced broker leads nothing and is in no ISR it could be removed from
//!   (it stays in an ISR only as its last member).

use super::{refuse, Broker, Endpoint, MetadataState, Outcome, NO_LEADER};
use crate::metadata::{ErrorCode, MetaError};

impl MetadataState {
    pub(super) fn register_broker(
        &mut self,
        index: u64,
        id: i32,
        incarnation: [u8; 16],
        endpoints: &[Endpoint],
        rack: &Option<String>,
    ) -> Result<Outcome, MetaError> {
        if id < 0 {
            return refuse(
                ErrorCode::InvalidRequest,
                format!("broker id {id} is negative"),
            );
        }
        if let Some(b) = self.brokers.get(&id) {
            if b.incarnation != incarnation && !b.fenced {
                return refuse(
                    ErrorCode::DuplicateBrokerRegistration,
                    format!("broker {id} is registered by another live process"),
                );
            }
        }
        // A (re-)registered broker starts fenced; it is unfenced
        // once it heartbeats, as in KRaft.
        self.fence(id);
        self.brokers.insert(
            id,
            Broker {
                id,
                incarnation,
                epoch: index,
                endpoints: endpoints.to_vec(),
                rack: rack.clone(),
                fenced: true,
            },
        );
        Ok(Outcome::BrokerRegistered { epoch: index })
    }

    pub(super) fn fence_broker(&mut self, id: i32, epoch: u64) -> Result<Outcome, MetaError> {
        self.check_broker_epoch(id, epoch)?;
        self.fence(id);
        Ok(Outcome::Done)
    }

    pub(super) fn unfence_broker(&mut self, id: i32, epoch: u64) -> Result<Outcome, MetaError> {
        self.check_broker_epoch(id, epoch)?;
        self.unfence(id);
        Ok(Outcome::Done)
    }

    pub(super) fn unregister_broker(&mut self, id: i32) -> Result<Outcome, MetaError> {
        if !self.brokers.contains_key(&id) {
            return refuse(
                ErrorCode::BrokerIdNotRegistered,
                format!("broker {id} is not registered"),
            );
        }
        self.fence(id);
        self.brokers.remove(&id);
        Ok(Outcome::Done)
    }

    pub(super) fn check_broker_epoch(&self, id: i32, epoch: u64) -> Result<(), MetaError> {
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

    pub(super) fn live_brokers(&self) -> Vec<&Broker> {
        self.brokers.values().filter(|b| !b.fenced).collect()
    }

    /// Takes a broker out of leadership and out of every ISR it is not the
    /// last member of; partitions it led get the next live ISR member, or,
    /// when none is live and the topic allows an unclean election
    /// (`unclean.leader.election.enable`), any live replica, which becomes
    /// the whole ISR (Kafka's unclean election: what only the old ISR had
    /// is lost, knowingly).
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
        let cluster_unclean = unclean(&self.cluster_configs);
        for t in self.topics.values_mut() {
            let allow_unclean = t
                .configs
                .get(UNCLEAN)
                .map_or(cluster_unclean, |v| v == "true");
            for p in &mut t.partitions {
                let mut changed = false;
                if p.isr.len() > 1 && p.isr.contains(&id) {
                    p.isr.retain(|&r| r != id);
                    changed = true;
                }
                if p.leader == id {
                    let clean = p
                        .replicas
                        .iter()
                        .copied()
                        .find(|r| *r != id && p.isr.contains(r) && live.contains(r));
                    let unclean = || {
                        p.replicas
                            .iter()
                            .copied()
                            .find(|r| *r != id && live.contains(r))
                    };
                    p.leader = match clean {
                        Some(r) => r,
                        None if allow_unclean => match unclean() {
                            Some(r) => {
                                p.isr = vec![r];
                                r
                            }
                            None => NO_LEADER,
                        },
                        None => NO_LEADER,
                    };
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
    /// it is in, and, where the topic allows an unclean election, those
    /// whose ISR has no live member it is a replica of.
    fn unfence(&mut self, id: i32) {
        if let Some(b) = self.brokers.get_mut(&id) {
            b.fenced = false;
        }
        let live: Vec<i32> = self
            .brokers
            .values()
            .filter(|b| !b.fenced)
            .map(|b| b.id)
            .collect();
        let cluster_unclean = unclean(&self.cluster_configs);
        for t in self.topics.values_mut() {
            let allow_unclean = t
                .configs
                .get(UNCLEAN)
                .map_or(cluster_unclean, |v| v == "true");
            for p in &mut t.partitions {
                if p.leader != NO_LEADER {
                    continue;
                }
                if p.isr.contains(&id) {
                    p.leader = id;
                } else if allow_unclean
                    && p.replicas.contains(&id)
                    && !p.isr.iter().any(|r| live.contains(r))
                {
                    p.leader = id;
                    p.isr = vec![id];
                } else {
                    continue;
                }
                p.leader_epoch += 1;
                p.partition_epoch += 1;
            }
        }
    }
}

/// The topic (or cluster-wide) config that allows an unclean election.
const UNCLEAN: &str = "unclean.leader.election.enable";

/// Whether `configs` allow an unclean leader election.
fn unclean(configs: &std::collections::BTreeMap<String, String>) -> bool {
    configs.get(UNCLEAN).is_some_and(|v| v == "true")
}
