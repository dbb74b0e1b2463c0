//! SyncGroup: the leader hands out the assignments.
//!
//! After the join phase (CompletingRebalance) the members send SyncGroup
//! and wait; the leader's carries every member's assignment. With it the
//! group is Stable, is stored, and every waiting member gets its
//! assignment. A SyncGroup in a stable group gets the member's assignment
//! again. Members that do not send SyncGroup in time are dropped by the
//! timers (see `liveness`).

use std::collections::HashMap;

use bytes::Bytes;
use kafka_protocol::error::ResponseError;

use super::{Effect, Group, GroupState, SyncResult};

impl Group {
    /// SyncGroup. The caller's answer is among the effects, or comes later.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn sync(
        &mut self,
        member_id: &str,
        instance_id: Option<&str>,
        generation: i32,
        protocol_type: Option<&str>,
        protocol: Option<&str>,
        assignments: Vec<(String, Bytes)>,
        now_ms: i64,
    ) -> Vec<Effect> {
        let reply = |e: i16| vec![Effect::Sync(member_id.to_string(), SyncResult::error(e))];
        if self.state == GroupState::Dead {
            return reply(ResponseError::CoordinatorNotAvailable.code());
        }
        if let Err(e) = self.check_member(member_id, instance_id) {
            return reply(e);
        }
        if generation != self.generation {
            return reply(ResponseError::IllegalGeneration.code());
        }
        if protocol_type.is_some_and(|t| Some(t) != self.protocol_type.as_deref())
            || protocol.is_some_and(|p| Some(p) != self.protocol.as_deref())
        {
            return reply(ResponseError::InconsistentGroupProtocol.code());
        }
        match self.state {
            GroupState::Empty => reply(ResponseError::UnknownMemberId.code()),
            GroupState::PreparingRebalance => reply(ResponseError::RebalanceInProgress.code()),
            GroupState::Stable => {
                let m = self.members.get_mut(member_id).expect("checked");
                m.last_heartbeat_ms = now_ms;
                vec![Effect::Sync(
                    member_id.to_string(),
                    self.sync_result(member_id),
                )]
            }
            GroupState::CompletingRebalance => {
                {
                    let m = self.members.get_mut(member_id).expect("checked");
                    m.awaiting_sync = true;
                    m.last_heartbeat_ms = now_ms;
                }
                if self.leader.as_deref() != Some(member_id) {
                    return Vec::new();
                }
                let mut given: HashMap<String, Bytes> = assignments.into_iter().collect();
                for m in self.members.values_mut() {
                    m.assignment = given.remove(&m.id).unwrap_or_default();
                }
                self.set_state(GroupState::Stable, now_ms);
                self.sync_deadline_ms = None;
                let mut effects = vec![Effect::Store];
                let waiting: Vec<String> = self
                    .members
                    .values()
                    .filter(|m| m.awaiting_sync)
                    .map(|m| m.id.clone())
                    .collect();
                for id in waiting {
                    self.members.get_mut(&id).expect("member").awaiting_sync = false;
                    effects.push(Effect::Sync(id.clone(), self.sync_result(&id)));
                }
                effects
            }
            GroupState::Dead => reply(ResponseError::CoordinatorNotAvailable.code()),
        }
    }

    fn sync_result(&self, id: &str) -> SyncResult {
        SyncResult {
            error: 0,
            protocol_type: self.protocol_type.clone(),
            protocol: self.protocol.clone(),
            assignment: self
                .members
                .get(id)
                .map(|m| m.assignment.clone())
                .unwrap_or_default(),
        }
    }
}
