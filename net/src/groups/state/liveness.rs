//! How members stay and go: heartbeats, LeaveGroup, and the timers.
//!
//! A heartbeat keeps a member's session; while the group prepares a
//! rebalance it answers REBALANCE_IN_PROGRESS so that the member rejoins. A
//! member that leaves or whose session expires is removed, what it waits
//! for is answered UNKNOWN_MEMBER_ID, and the group rebalances without it.
//!
//! ## Timers
//! `tick(now)` runs them: a member's session expires `session.timeout.ms`
//! after its last heartbeat (not while it awaits a JoinGroup or SyncGroup
//! answer, as in Kafka); a rebalance completes when every member has
//! rejoined or when the largest rebalance timeout passes, dropping members
//! that did not rejoin; a group that was empty waits
//! `group.initial.rebalance.delay.ms` for more members, extended by each
//! new member up to the rebalance timeout; members that do not send
//! SyncGroup within their rebalance timeout after a join completes are
//! dropped and the group rebalances again.

use kafka_protocol::error::ResponseError;

use super::{Effect, Group, GroupState, Member};

impl Group {
    /// Heartbeat: 0, or the error telling the member to rejoin.
    pub(crate) fn heartbeat(
        &mut self,
        member_id: &str,
        instance_id: Option<&str>,
        generation: i32,
        now_ms: i64,
    ) -> i16 {
        match self.state {
            GroupState::Dead => return ResponseError::CoordinatorNotAvailable.code(),
            GroupState::Empty => return ResponseError::UnknownMemberId.code(),
            _ => {}
        }
        if let Err(e) = self.check_member(member_id, instance_id) {
            return e;
        }
        if generation != self.generation {
            return ResponseError::IllegalGeneration.code();
        }
        self.members
            .get_mut(member_id)
            .expect("checked")
            .last_heartbeat_ms = now_ms;
        if self.state == GroupState::PreparingRebalance {
            return ResponseError::RebalanceInProgress.code();
        }
        0
    }

    /// LeaveGroup for one member identity (v3+ batches them). An empty
    /// member id with an instance id removes whoever holds the instance.
    pub(crate) fn leave(
        &mut self,
        member_id: &str,
        instance_id: Option<&str>,
        now_ms: i64,
    ) -> (i16, Vec<Effect>) {
        if self.state == GroupState::Dead {
            return (ResponseError::CoordinatorNotAvailable.code(), Vec::new());
        }
        let id = match instance_id {
            Some(instance) => match self.static_members.get(instance) {
                Some(holder) if member_id.is_empty() || holder == member_id => holder.clone(),
                Some(_) => return (ResponseError::FencedInstanceId.code(), Vec::new()),
                None => return (ResponseError::UnknownMemberId.code(), Vec::new()),
            },
            None => member_id.to_string(),
        };
        if self.pending.remove(&id).is_some() {
            return (0, Vec::new());
        }
        if !self.members.contains_key(&id) {
            return (ResponseError::UnknownMemberId.code(), Vec::new());
        }
        (0, self.member_gone(&id, now_ms))
    }

    /// Runs the timers. Returns the effects and whether the group changed.
    pub(crate) fn tick(&mut self, now_ms: i64) -> Vec<Effect> {
        let mut effects = Vec::new();
        self.pending.retain(|_, until| *until > now_ms);
        let expired: Vec<String> = self
            .members
            .values()
            .filter(|m| {
                !m.awaiting_join
                    && !m.awaiting_sync
                    && m.last_heartbeat_ms + i64::from(m.spec.session_timeout_ms) <= now_ms
            })
            .map(|m| m.id.clone())
            .collect();
        for id in expired {
            effects.extend(self.member_gone(&id, now_ms));
        }
        if self.state == GroupState::PreparingRebalance
            && (self.join_deadline_ms.is_some_and(|d| d <= now_ms)
                || (self.initial_started_ms.is_none() && self.all_joined()))
        {
            effects.extend(self.complete_join(now_ms));
        }
        if self.state == GroupState::CompletingRebalance
            && self.sync_deadline_ms.is_some_and(|d| d <= now_ms)
        {
            let late: Vec<String> = self
                .members
                .values()
                .filter(|m| !m.awaiting_sync)
                .map(|m| m.id.clone())
                .collect();
            self.sync_deadline_ms = None;
            for id in late {
                effects.extend(self.member_gone(&id, now_ms));
            }
        }
        effects
    }

    pub(super) fn remove_member(&mut self, id: &str) -> Option<Member> {
        let m = self.members.remove(id)?;
        if let Some(instance) = &m.spec.instance_id {
            if self.static_members.get(instance).map(String::as_str) == Some(id) {
                self.static_members.remove(instance);
            }
        }
        if self.leader.as_deref() == Some(id) {
            self.leader = self.members.keys().next().cloned();
        }
        Some(m)
    }

    /// A member is gone (left or expired): answer what it waits for and
    /// rebalance the rest.
    fn member_gone(&mut self, id: &str, now_ms: i64) -> Vec<Effect> {
        let Some(m) = self.remove_member(id) else {
            return Vec::new();
        };
        let mut effects = m.answer_waits(ResponseError::UnknownMemberId.code());
        match self.state {
            GroupState::Stable | GroupState::CompletingRebalance => {
                effects.extend(self.prepare_rebalance(now_ms));
                if self.members.is_empty() {
                    effects.extend(self.complete_join(now_ms));
                }
            }
            GroupState::PreparingRebalance
                if (self.initial_started_ms.is_none() || self.members.is_empty())
                    && self.all_joined() =>
            {
                effects.extend(self.complete_join(now_ms));
            }
            _ => {}
        }
        effects
    }
}
