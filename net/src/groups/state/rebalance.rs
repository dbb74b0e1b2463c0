//! A rebalance: its join phase, and how it completes.
//!
//! A rebalance (PreparingRebalance) is started by a join that needs one
//! (see `join`) and when a member is gone from a group in
//! CompletingRebalance or Stable (see `liveness`); one started from
//! CompletingRebalance tells the members awaiting SyncGroup
//! REBALANCE_IN_PROGRESS and drops the assignments. Its join phase ends
//! when every member has rejoined and no member id is pending, or at its
//! deadline: the largest rebalance timeout or, for a group that was empty,
//! `group.initial.rebalance.delay.ms`, extended by each new member up to
//! the rebalance timeout (Kafka's InitialDelayedJoin), which joins do not
//! cut short.
//! Then the members that did not rejoin are dropped, the generation is
//! bumped, the protocol is chosen by the members' vote, and every member
//! gets its JoinGroup answer, the leader with the member list.

use bytes::Bytes;
use kafka_protocol::error::ResponseError;

use super::{Effect, Group, GroupState, JoinResult, SyncResult};

impl Group {
    /// A member (re)joined: mark it, start a rebalance if none runs, and
    /// complete the join phase if everyone is in.
    pub(super) fn member_joined(&mut self, id: &str, now_ms: i64) -> Vec<Effect> {
        let mut effects = Vec::new();
        if matches!(
            self.state,
            GroupState::Empty | GroupState::Stable | GroupState::CompletingRebalance
        ) {
            effects.extend(self.prepare_rebalance(now_ms));
        }
        if let Some(m) = self.members.get_mut(id) {
            m.awaiting_join = true;
            m.last_heartbeat_ms = now_ms;
        }
        if let Some(started) = self.initial_started_ms {
            // Each new member during the initial delay extends it, up to
            // the rebalance timeout (Kafka's InitialDelayedJoin).
            let cap = started + i64::from(self.rebalance_timeout_max());
            let target = (now_ms + i64::from(self.initial_delay_ms.max(0))).min(cap);
            self.join_deadline_ms = self.join_deadline_ms.max(Some(target));
        } else if self.all_joined() {
            effects.extend(self.complete_join(now_ms));
        }
        effects
    }

    fn rebalance_timeout_max(&self) -> i32 {
        self.members
            .values()
            .map(|m| m.spec.rebalance_timeout_ms)
            .max()
            .unwrap_or(0)
    }

    pub(super) fn all_joined(&self) -> bool {
        self.pending.is_empty() && self.members.values().all(|m| m.awaiting_join)
    }

    /// Starts a rebalance: members awaiting SyncGroup are told
    /// REBALANCE_IN_PROGRESS and assignments are dropped.
    pub(super) fn prepare_rebalance(&mut self, now_ms: i64) -> Vec<Effect> {
        let mut effects = Vec::new();
        if self.state == GroupState::CompletingRebalance {
            for m in self.members.values_mut() {
                m.assignment = Bytes::new();
                if m.awaiting_sync {
                    m.awaiting_sync = false;
                    effects.push(Effect::Sync(
                        m.id.clone(),
                        SyncResult::error(ResponseError::RebalanceInProgress.code()),
                    ));
                }
            }
        }
        let initial = self.state == GroupState::Empty;
        self.set_state(GroupState::PreparingRebalance, now_ms);
        self.sync_deadline_ms = None;
        if initial {
            self.initial_started_ms = Some(now_ms);
            self.join_deadline_ms = Some(now_ms + i64::from(self.initial_delay_ms.max(0)));
        } else {
            self.initial_started_ms = None;
            self.join_deadline_ms = Some(now_ms + i64::from(self.rebalance_timeout_max()));
        }
        effects
    }

    /// The join phase is over: drop members that did not rejoin, bump the
    /// generation, pick the protocol and answer every waiting member.
    pub(super) fn complete_join(&mut self, now_ms: i64) -> Vec<Effect> {
        let mut effects = Vec::new();
        let gone: Vec<String> = self
            .members
            .values()
            .filter(|m| !m.awaiting_join)
            .map(|m| m.id.clone())
            .collect();
        for id in gone {
            self.remove_member(&id);
        }
        self.pending.clear();
        self.join_deadline_ms = None;
        self.initial_started_ms = None;
        self.generation = self.generation.wrapping_add(1).max(1);
        if self.members.is_empty() {
            self.protocol = None;
            self.set_state(GroupState::Empty, now_ms);
            effects.push(Effect::Store);
            return effects;
        }
        self.protocol = self.select_protocol();
        if self
            .leader
            .as_ref()
            .is_none_or(|l| !self.members.contains_key(l))
        {
            self.leader = self.members.keys().next().cloned();
        }
        self.set_state(GroupState::CompletingRebalance, now_ms);
        self.sync_deadline_ms = Some(now_ms + i64::from(self.rebalance_timeout_max()));
        let ids: Vec<String> = self.members.keys().cloned().collect();
        for id in ids {
            let mut result = self.join_result(&id);
            if self.leader.as_deref() != Some(id.as_str()) {
                result.members.clear();
            }
            let m = self.members.get_mut(&id).expect("member");
            m.awaiting_join = false;
            m.last_heartbeat_ms = now_ms;
            effects.push(Effect::Join(id, result));
        }
        effects
    }

    /// The current generation's JoinGroup answer, with the member list.
    pub(super) fn join_result(&self, id: &str) -> JoinResult {
        let protocol = self.protocol.clone().unwrap_or_default();
        JoinResult {
            error: 0,
            generation: self.generation,
            protocol_type: self.protocol_type.clone(),
            protocol: self.protocol.clone(),
            leader: self.leader.clone().unwrap_or_default(),
            member_id: id.to_string(),
            members: self
                .members
                .values()
                .map(|m| {
                    (
                        m.id.clone(),
                        m.spec.instance_id.clone(),
                        m.metadata(&protocol),
                    )
                })
                .collect(),
            skip_assignment: false,
        }
    }

    /// The protocol every member supports that most members prefer
    /// (Kafka's vote: each member votes for its first supported candidate).
    fn select_protocol(&self) -> Option<String> {
        let first = self.members.values().next()?;
        let candidates: Vec<&String> = first
            .spec
            .protocols
            .iter()
            .map(|(n, _)| n)
            .filter(|n| {
                self.members
                    .values()
                    .all(|m| m.spec.protocols.iter().any(|(x, _)| x == *n))
            })
            .collect();
        let mut votes: Vec<(usize, &String)> = candidates.iter().map(|c| (0, *c)).collect();
        for m in self.members.values() {
            if let Some((vote, _)) = m
                .spec
                .protocols
                .iter()
                .find(|(n, _)| candidates.contains(&n))
                .and_then(|(n, _)| votes.iter_mut().find(|(_, c)| *c == n))
            {
                *vote += 1;
            }
        }
        // The first candidate wins ties, by the first member's preference.
        let best = votes.iter().map(|(v, _)| *v).max()?;
        votes
            .into_iter()
            .find(|(v, _)| *v == best)
            .map(|(_, c)| c.clone())
    }
}
