//! JoinGroup: admitting members to the group.
//!
//! A new member is given an id, `<client id>-<uuid>`. A dynamic member on
//! JoinGroup v4+ must then join again with it (KIP-394:
//! MEMBER_ID_REQUIRED); until it does, the id is pending: it counts against
//! `members_max` and lapses after the member's session timeout. A static
//! member (KIP-345) that joins without a member id while the group knows
//! its instance has restarted: it takes a new id and the old one is fenced.
//! A member of the group joins the running rebalance or starts one (see
//! `rebalance`).

use bytes::Bytes;
use kafka_protocol::error::ResponseError;

use super::{Effect, Group, GroupState, JoinRequest, JoinResult, Limits, Member};

/// A new member id, `<client id>-<uuid>` as Kafka makes them, unique
/// within the process. The client id is cut (at a character boundary) so
/// that the id fits the records of `__consumer_offsets`.
fn next_member_id(client_id: &str) -> String {
    use std::sync::atomic::{AtomicU64, Ordering};
    static SEQ: AtomicU64 = AtomicU64::new(0);
    let seq = SEQ.fetch_add(1, Ordering::Relaxed);
    let uuid = uuid::Uuid::from_u64_pair(start_nanos(), seq).to_string();
    let mut keep = client_id
        .len()
        .min(crate::groups::records::STORED_STRING_LEN_MAX - 1 - uuid.len());
    while !client_id.is_char_boundary(keep) {
        keep -= 1;
    }
    format!("{}-{uuid}", &client_id[..keep])
}

fn start_nanos() -> u64 {
    use std::sync::OnceLock;
    static START: OnceLock<u64> = OnceLock::new();
    *START.get_or_init(|| {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as u64)
    })
}

/// A JoinGroup answered now with `error`, addressed to `member`.
fn join_error(member: &str, error: i16) -> (String, Vec<Effect>) {
    (
        member.to_string(),
        vec![Effect::Join(
            member.to_string(),
            JoinResult::error(error, member),
        )],
    )
}

impl Group {
    /// JoinGroup. The caller's own answer, if due now, is among the
    /// effects, addressed to the returned member id; otherwise the caller
    /// waits for an effect addressed to it.
    pub(crate) fn join(
        &mut self,
        req: JoinRequest,
        limits: &Limits,
        now_ms: i64,
    ) -> (String, Vec<Effect>) {
        if req.spec.session_timeout_ms < limits.session_timeout_ms_min
            || req.spec.session_timeout_ms > limits.session_timeout_ms_max
        {
            return join_error(&req.member_id, ResponseError::InvalidSessionTimeout.code());
        }
        if self.state == GroupState::Dead {
            return join_error(
                &req.member_id,
                ResponseError::CoordinatorNotAvailable.code(),
            );
        }
        if !self.compatible(&req.spec.protocol_type, &req.spec.protocols) {
            return join_error(
                &req.member_id,
                ResponseError::InconsistentGroupProtocol.code(),
            );
        }
        if req.member_id.is_empty() {
            return self.join_new(req, limits, now_ms);
        }
        if self.pending.remove(&req.member_id).is_some() {
            let id = req.member_id.clone();
            self.add_member(id.clone(), req, now_ms);
            return (id.clone(), self.member_joined(&id, now_ms));
        }
        if let Err(e) = self.check_member(&req.member_id, req.spec.instance_id.as_deref()) {
            return join_error(&req.member_id, e);
        }
        self.rejoin(req, now_ms)
    }

    /// JoinGroup from a member of the group: it joins a running rebalance;
    /// with unchanged protocols it gets the current generation's answer
    /// again (the leader of a stable group excepted); otherwise it starts a
    /// rebalance.
    fn rejoin(&mut self, req: JoinRequest, now_ms: i64) -> (String, Vec<Effect>) {
        let id = req.member_id.clone();
        let same = {
            let m = &self.members[&id];
            m.spec.protocols == req.spec.protocols
        };
        match self.state {
            GroupState::PreparingRebalance => {
                self.update_member(&id, req, now_ms);
                (id.clone(), self.member_joined(&id, now_ms))
            }
            GroupState::CompletingRebalance if same => {
                // The join response again: the member list for the leader only.
                let mut result = self.join_result(&id);
                if self.leader.as_deref() != Some(id.as_str()) {
                    result.members.clear();
                }
                (id.clone(), vec![Effect::Join(id, result)])
            }
            GroupState::Stable if same && self.leader.as_deref() != Some(id.as_str()) => {
                let mut result = self.join_result(&id);
                result.members.clear();
                self.members.get_mut(&id).expect("member").last_heartbeat_ms = now_ms;
                (id.clone(), vec![Effect::Join(id, result)])
            }
            GroupState::CompletingRebalance | GroupState::Stable => {
                self.update_member(&id, req, now_ms);
                let mut effects = self.prepare_rebalance(now_ms);
                effects.extend(self.member_joined(&id, now_ms));
                (id, effects)
            }
            GroupState::Empty | GroupState::Dead => {
                join_error(&id, ResponseError::UnknownMemberId.code())
            }
        }
    }

    fn join_new(
        &mut self,
        req: JoinRequest,
        limits: &Limits,
        now_ms: i64,
    ) -> (String, Vec<Effect>) {
        if let Some(instance) = req.spec.instance_id.clone() {
            if let Some(old) = self.static_members.get(&instance).cloned() {
                return self.replace_static(&old, req, now_ms);
            }
        }
        if self.members.len() + self.pending.len() >= limits.members_max {
            return join_error("", ResponseError::GroupMaxSizeReached.code());
        }
        let id = next_member_id(&req.spec.client_id);
        if req.require_known_member_id && req.spec.instance_id.is_none() {
            self.pending
                .insert(id.clone(), now_ms + i64::from(req.spec.session_timeout_ms));
            return join_error(&id, ResponseError::MemberIdRequired.code());
        }
        self.add_member(id.clone(), req, now_ms);
        (id.clone(), self.member_joined(&id, now_ms))
    }

    /// A static member rejoined without its member id (it restarted): it
    /// takes a new member id, the old one is fenced (KIP-345). A stable
    /// group with unchanged protocols gives it its old assignment without a
    /// rebalance.
    fn replace_static(
        &mut self,
        old: &str,
        req: JoinRequest,
        now_ms: i64,
    ) -> (String, Vec<Effect>) {
        let id = next_member_id(&req.spec.client_id);
        let mut effects = Vec::new();
        let Some(mut m) = self.members.remove(old) else {
            return join_error(&id, ResponseError::UnknownMemberId.code());
        };
        effects.extend(m.answer_waits(ResponseError::FencedInstanceId.code()));
        let same = m.spec.protocols == req.spec.protocols;
        m.id = id.clone();
        m.awaiting_join = false;
        m.awaiting_sync = false;
        m.last_heartbeat_ms = now_ms;
        m.spec = req.spec.clone();
        self.members.insert(id.clone(), m);
        if let Some(instance) = &req.spec.instance_id {
            self.static_members.insert(instance.clone(), id.clone());
        }
        if self.leader.as_deref() == Some(old) {
            self.leader = Some(id.clone());
        }
        if self.state == GroupState::Stable && same {
            let mut result = self.join_result(&id);
            if self.leader.as_deref() == Some(id.as_str()) {
                result.skip_assignment = true;
            } else {
                result.members.clear();
            }
            effects.push(Effect::Join(id.clone(), result));
            effects.push(Effect::Store);
            return (id, effects);
        }
        self.update_member(&id, req, now_ms);
        if self.state != GroupState::PreparingRebalance {
            effects.extend(self.prepare_rebalance(now_ms));
        }
        effects.extend(self.member_joined(&id, now_ms));
        (id, effects)
    }

    fn add_member(&mut self, id: String, req: JoinRequest, now_ms: i64) {
        if self.members.is_empty() {
            self.protocol_type = Some(req.spec.protocol_type.clone());
        }
        if let Some(instance) = &req.spec.instance_id {
            self.static_members.insert(instance.clone(), id.clone());
        }
        self.members.insert(
            id.clone(),
            Member {
                id: id.clone(),
                spec: req.spec,
                assignment: Bytes::new(),
                awaiting_join: false,
                awaiting_sync: false,
                last_heartbeat_ms: now_ms,
            },
        );
        if self.leader.is_none() {
            self.leader = Some(id);
        }
    }

    fn update_member(&mut self, id: &str, req: JoinRequest, now_ms: i64) {
        if let Some(m) = self.members.get_mut(id) {
            m.spec = req.spec;
            m.last_heartbeat_ms = now_ms;
        }
    }

    /// Whether the member may join given the group's protocols.
    fn compatible(&self, protocol_type: &str, protocols: &[(String, Bytes)]) -> bool {
        if protocol_type.is_empty() || protocols.is_empty() {
            return false;
        }
        if self.members.is_empty() {
            return true;
        }
        self.protocol_type.as_deref() == Some(protocol_type)
            && protocols.iter().any(|(name, _)| {
                self.members
                    .values()
                    .all(|m| m.spec.protocols.iter().any(|(n, _)| n == name))
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn given_a_client_id_too_long_for_the_records_the_member_id_still_fits_and_is_unique() {
        let max = crate::groups::records::STORED_STRING_LEN_MAX;
        // 'é' is two bytes: the cut lands at a character boundary.
        let client = "é".repeat(max);
        let (a, b) = (next_member_id(&client), next_member_id(&client));
        assert!(a.len() <= max && b.len() <= max, "{} bytes", a.len());
        assert_ne!(a, b);
        assert!(a.starts_with("éé"));
        assert!(next_member_id("rdkafka").starts_with("rdkafka-"));
    }
}
