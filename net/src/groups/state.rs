//! One consumer group's state machine (Kafka's classic group protocol),
//! free of I/O and clocks: every operation takes `now_ms` and returns the
//! answers it produced, so tests drive it step by step.
//!
//! ## States (Kafka's `GroupState`)
//! ```text
//! Empty ──join──► PreparingRebalance ──all joined / timeout──► CompletingRebalance
//!   ▲                    ▲    │                                      │ leader's SyncGroup
//!   └── last member gone ┘    └──────────── no member left ─────────►│
//!                        ▲                                           ▼
//!                        └──── join with new protocols, leave, ── Stable
//!                              session timeout
//! ```
//!
//! ## Invariants
//! * `leader` is a member whenever the group has members.
//! * A member awaits at most one JoinGroup and one SyncGroup answer; the
//!   answers are returned as [`Effect`]s addressed by member id and the
//!   caller (the coordinator) delivers them.
//! * `static_members` maps each `group.instance.id` to the member id that
//!   currently holds it, and only to members of the group (KIP-345).
//! * Members and pending member ids are at most `members_max`; committed
//!   offsets at most `offsets_max`.
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

use std::collections::{BTreeMap, HashMap};

use bytes::Bytes;
use kafka_protocol::error::ResponseError;

/// Kafka's group states, named as DescribeGroups and ListGroups show them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum GroupState {
    Empty,
    PreparingRebalance,
    CompletingRebalance,
    Stable,
    Dead,
}

impl GroupState {
    pub fn name(self) -> &'static str {
        match self {
            GroupState::Empty => "Empty",
            GroupState::PreparingRebalance => "PreparingRebalance",
            GroupState::CompletingRebalance => "CompletingRebalance",
            GroupState::Stable => "Stable",
            GroupState::Dead => "Dead",
        }
    }
}

/// Limits and timeouts from the broker's configuration.
#[derive(Clone, Debug)]
pub struct Limits {
    /// `group.min.session.timeout.ms`.
    pub session_timeout_ms_min: i32,
    /// `group.max.session.timeout.ms`.
    pub session_timeout_ms_max: i32,
    /// `group.initial.rebalance.delay.ms`.
    pub initial_rebalance_delay_ms: i32,
    /// `group.max.size`.
    pub members_max: usize,
    /// Committed offsets one group may hold.
    pub offsets_max: usize,
    /// `offset.metadata.max.bytes`.
    pub metadata_bytes_max: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            session_timeout_ms_min: 6_000,
            session_timeout_ms_max: 1_800_000,
            initial_rebalance_delay_ms: 3_000,
            members_max: 1_000,
            offsets_max: 100_000,
            metadata_bytes_max: 4_096,
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Member {
    pub id: String,
    pub spec: MemberSpec,
    pub assignment: Bytes,
    pub awaiting_join: bool,
    pub awaiting_sync: bool,
    pub last_heartbeat_ms: i64,
}

impl Member {
    /// Answers the JoinGroup and SyncGroup this member waits on with
    /// `error`.
    fn answer_waits(&self, error: i16) -> Vec<Effect> {
        let mut effects = Vec::new();
        if self.awaiting_join {
            effects.push(Effect::Join(
                self.id.clone(),
                JoinResult::error(error, &self.id),
            ));
        }
        if self.awaiting_sync {
            effects.push(Effect::Sync(self.id.clone(), SyncResult::error(error)));
        }
        effects
    }

    fn metadata(&self, protocol: &str) -> Bytes {
        self.spec
            .protocols
            .iter()
            .find(|(n, _)| n == protocol)
            .map(|(_, m)| m.clone())
            .unwrap_or_default()
    }
}

/// A committed offset, as stored.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Committed {
    pub offset: i64,
    pub leader_epoch: i32,
    pub metadata: String,
    pub commit_timestamp_ms: i64,
}

/// A JoinGroup answer.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct JoinResult {
    pub error: i16,
    pub generation: i32,
    pub protocol_type: Option<String>,
    pub protocol: Option<String>,
    pub leader: String,
    pub member_id: String,
    /// (member id, instance id, metadata): for the leader only.
    pub members: Vec<(String, Option<String>, Bytes)>,
    /// The leader must not compute assignments: a static leader rejoined
    /// a stable group (KIP-814; JoinGroup v9+, older versions get no
    /// member list instead).
    pub skip_assignment: bool,
}

impl JoinResult {
    pub fn error(error: i16, member_id: &str) -> Self {
        Self {
            error,
            generation: -1,
            member_id: member_id.to_string(),
            ..Self::default()
        }
    }
}

/// A SyncGroup answer.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SyncResult {
    pub error: i16,
    pub protocol_type: Option<String>,
    pub protocol: Option<String>,
    pub assignment: Bytes,
}

impl SyncResult {
    pub fn error(error: i16) -> Self {
        Self {
            error,
            ..Self::default()
        }
    }
}

/// What an operation caused besides its immediate answer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Effect {
    /// Answer the JoinGroup this member awaits.
    Join(String, JoinResult),
    /// Answer the SyncGroup this member awaits.
    Sync(String, SyncResult),
    /// The group's metadata changed: store it.
    Store,
}

/// What a member says of itself in its JoinGroup.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct MemberSpec {
    /// `group.instance.id` of a static member (KIP-345).
    pub instance_id: Option<String>,
    pub client_id: String,
    pub client_host: String,
    pub session_timeout_ms: i32,
    pub rebalance_timeout_ms: i32,
    pub protocol_type: String,
    /// (protocol name, metadata) in the member's order of preference.
    pub protocols: Vec<(String, Bytes)>,
}

/// A JoinGroup request's fields.
#[derive(Clone, Debug, Default)]
pub struct JoinRequest {
    pub member_id: String,
    pub spec: MemberSpec,
    /// v4+: a member without an id is first given one (KIP-394).
    pub require_known_member_id: bool,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Group {
    pub id: String,
    pub state: GroupState,
    pub generation: i32,
    pub protocol_type: Option<String>,
    pub protocol: Option<String>,
    pub leader: Option<String>,
    pub members: BTreeMap<String, Member>,
    /// group.instance.id → member id.
    pub static_members: HashMap<String, String>,
    /// Member ids handed out with MEMBER_ID_REQUIRED, and until when they
    /// may join with them.
    pub pending: HashMap<String, i64>,
    pub offsets: BTreeMap<(String, i32), Committed>,
    /// When the group entered its current state.
    pub state_since_ms: i64,
    /// When the running rebalance's join phase ends at the latest.
    pub join_deadline_ms: Option<i64>,
    /// Rebalance start, for the initial delay's cap; set while the
    /// initial delay runs.
    pub initial_started_ms: Option<i64>,
    /// When members that did not send SyncGroup are dropped.
    pub sync_deadline_ms: Option<i64>,
    /// `group.initial.rebalance.delay.ms`.
    pub initial_delay_ms: i32,
}

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
        .min(super::records::STORED_STRING_LEN_MAX - 1 - uuid.len());
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

impl Group {
    pub fn new(id: &str, initial_delay_ms: i32, now_ms: i64) -> Self {
        Self {
            id: id.to_string(),
            state: GroupState::Empty,
            generation: 0,
            protocol_type: None,
            protocol: None,
            leader: None,
            members: BTreeMap::new(),
            static_members: HashMap::new(),
            pending: HashMap::new(),
            offsets: BTreeMap::new(),
            state_since_ms: now_ms,
            join_deadline_ms: None,
            initial_started_ms: None,
            sync_deadline_ms: None,
            initial_delay_ms,
        }
    }

    fn set_state(&mut self, state: GroupState, now_ms: i64) {
        self.state = state;
        self.state_since_ms = now_ms;
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

    /// Checks a request's member and instance ids: FENCED_INSTANCE_ID if
    /// the instance id is held by another member, UNKNOWN_MEMBER_ID if
    /// the member is not in the group.
    fn check_member(&self, member_id: &str, instance_id: Option<&str>) -> Result<(), i16> {
        if let Some(instance) = instance_id {
            match self.static_members.get(instance) {
                Some(holder) if holder != member_id => {
                    return Err(ResponseError::FencedInstanceId.code())
                }
                None => return Err(ResponseError::UnknownMemberId.code()),
                _ => {}
            }
        }
        if !self.members.contains_key(member_id) {
            return Err(ResponseError::UnknownMemberId.code());
        }
        Ok(())
    }

    /// JoinGroup. The caller's own answer, if due now, is among the
    /// effects, addressed to the returned member id; otherwise the caller
    /// waits for an effect addressed to it.
    pub fn join(
        &mut self,
        req: JoinRequest,
        limits: &Limits,
        now_ms: i64,
    ) -> (String, Vec<Effect>) {
        let reply = |member: &str, error: i16| {
            (
                member.to_string(),
                vec![Effect::Join(
                    member.to_string(),
                    JoinResult::error(error, member),
                )],
            )
        };
        if req.spec.session_timeout_ms < limits.session_timeout_ms_min
            || req.spec.session_timeout_ms > limits.session_timeout_ms_max
        {
            return reply(&req.member_id, ResponseError::InvalidSessionTimeout.code());
        }
        if self.state == GroupState::Dead {
            return reply(
                &req.member_id,
                ResponseError::CoordinatorNotAvailable.code(),
            );
        }
        if !self.compatible(&req.spec.protocol_type, &req.spec.protocols) {
            return reply(
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
            return reply(&req.member_id, e);
        }
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
                reply(&id, ResponseError::UnknownMemberId.code())
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
            return (
                String::new(),
                vec![Effect::Join(
                    String::new(),
                    JoinResult::error(ResponseError::GroupMaxSizeReached.code(), ""),
                )],
            );
        }
        let id = next_member_id(&req.spec.client_id);
        if req.require_known_member_id && req.spec.instance_id.is_none() {
            self.pending
                .insert(id.clone(), now_ms + i64::from(req.spec.session_timeout_ms));
            return (
                id.clone(),
                vec![Effect::Join(
                    id.clone(),
                    JoinResult::error(ResponseError::MemberIdRequired.code(), &id),
                )],
            );
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
            return (
                id.clone(),
                vec![Effect::Join(
                    id.clone(),
                    JoinResult::error(ResponseError::UnknownMemberId.code(), &id),
                )],
            );
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

    /// A member (re)joined: mark it, start a rebalance if none runs, and
    /// complete the join phase if everyone is in.
    fn member_joined(&mut self, id: &str, now_ms: i64) -> Vec<Effect> {
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

    fn all_joined(&self) -> bool {
        self.pending.is_empty() && self.members.values().all(|m| m.awaiting_join)
    }

    /// Starts a rebalance: members awaiting SyncGroup are told
    /// REBALANCE_IN_PROGRESS and assignments are dropped.
    fn prepare_rebalance(&mut self, now_ms: i64) -> Vec<Effect> {
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
    fn complete_join(&mut self, now_ms: i64) -> Vec<Effect> {
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
    fn join_result(&self, id: &str) -> JoinResult {
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

    fn remove_member(&mut self, id: &str) -> Option<Member> {
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

    /// SyncGroup. The caller's answer is among the effects, or comes later.
    #[allow(clippy::too_many_arguments)]
    pub fn sync(
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

    /// Heartbeat: 0, or the error telling the member to rejoin.
    pub fn heartbeat(
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
    pub fn leave(
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

    /// Checks an OffsetCommit's member and generation (Kafka's
    /// validateOffsetCommit): a commit with generation -1 and no member is
    /// an admin's (or a standalone consumer's) and is taken only while the
    /// group is empty.
    pub fn check_commit(
        &self,
        member_id: &str,
        instance_id: Option<&str>,
        generation: i32,
    ) -> Result<(), i16> {
        if self.state == GroupState::Dead {
            return Err(ResponseError::CoordinatorNotAvailable.code());
        }
        if generation < 0 && self.state == GroupState::Empty {
            return Ok(());
        }
        self.check_member(member_id, instance_id)?;
        if generation != self.generation {
            return Err(ResponseError::IllegalGeneration.code());
        }
        if self.state == GroupState::CompletingRebalance {
            return Err(ResponseError::RebalanceInProgress.code());
        }
        Ok(())
    }

    /// Records a commit checked by [`Group::check_commit`]; false if the
    /// group holds `offsets_max` other offsets already.
    pub fn commit(&mut self, topic: &str, partition: i32, c: Committed, limits: &Limits) -> bool {
        let key = (topic.to_string(), partition);
        if !self.offsets.contains_key(&key) && self.offsets.len() >= limits.offsets_max {
            return false;
        }
        self.offsets.insert(key, c);
        true
    }

    /// Runs the timers. Returns the effects and whether the group changed.
    pub fn tick(&mut self, now_ms: i64) -> Vec<Effect> {
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

    /// The topics the members subscribe to, if the group uses the consumer
    /// protocol and its members' subscriptions can be read.
    pub fn subscribed_topics(&self) -> Option<std::collections::HashSet<String>> {
        use kafka_protocol::messages::ConsumerProtocolSubscription;
        use kafka_protocol::protocol::Decodable;
        if self.protocol_type.as_deref() != Some("consumer") || self.members.is_empty() {
            return None;
        }
        let protocol = self.protocol.clone()?;
        let mut topics = std::collections::HashSet::new();
        for m in self.members.values() {
            let mut meta = m.metadata(&protocol);
            if meta.len() < 2 {
                return None;
            }
            let version = i16::from_be_bytes([meta[0], meta[1]]);
            bytes::Buf::advance(&mut meta, 2);
            let s = ConsumerProtocolSubscription::decode(&mut meta, version.clamp(0, 3)).ok()?;
            topics.extend(s.topics.into_iter().map(|t| t.to_string()));
        }
        Some(topics)
    }

    /// Drops offsets older than the retention (Kafka's rule, KIP-211):
    /// for an empty group, counted from when it became empty (or from the
    /// commit, for a group that never had members); for a consumer group
    /// with members, only offsets of topics no member subscribes to, from
    /// their commit. Returns the dropped keys.
    pub fn expire_offsets(&mut self, retention_ms: i64, now_ms: i64) -> Vec<(String, i32)> {
        let subscribed = match self.state {
            GroupState::Empty => None,
            _ => match self.subscribed_topics() {
                Some(s) => Some(s),
                None => return Vec::new(),
            },
        };
        let since = self.protocol_type.as_ref().map(|_| self.state_since_ms);
        let gone: Vec<(String, i32)> = self
            .offsets
            .iter()
            .filter(|((topic, _), c)| {
                let base = match (&subscribed, since) {
                    (Some(s), _) if s.contains(topic) => return false,
                    (Some(_), _) | (None, None) => c.commit_timestamp_ms,
                    (None, Some(since)) => since,
                };
                base.saturating_add(retention_ms) <= now_ms
            })
            .map(|(k, _)| k.clone())
            .collect();
        for k in &gone {
            self.offsets.remove(k);
        }
        gone
    }

    /// Whether the group can be forgotten: empty, with no offsets.
    pub fn is_disposable(&self) -> bool {
        self.state == GroupState::Empty && self.offsets.is_empty() && self.pending.is_empty()
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

    const SESSION_MS: i32 = 10_000;
    const REBALANCE_MS: i32 = 30_000;

    fn limits() -> Limits {
        Limits {
            initial_rebalance_delay_ms: 0,
            ..Limits::default()
        }
    }

    fn request(member: &str, instance: Option<&str>) -> JoinRequest {
        JoinRequest {
            member_id: member.into(),
            spec: MemberSpec {
                instance_id: instance.map(Into::into),
                client_id: "client".into(),
                client_host: "/127.0.0.1".into(),
                session_timeout_ms: SESSION_MS,
                rebalance_timeout_ms: REBALANCE_MS,
                protocol_type: "consumer".into(),
                protocols: vec![
                    ("range".into(), Bytes::from_static(b"r")),
                    ("roundrobin".into(), Bytes::from_static(b"rr")),
                ],
            },
            require_known_member_id: true,
        }
    }

    fn join_result(effects: &[Effect], member: &str) -> Option<JoinResult> {
        effects.iter().find_map(|e| match e {
            Effect::Join(m, r) if m == member => Some(r.clone()),
            _ => None,
        })
    }

    fn sync_result(effects: &[Effect], member: &str) -> Option<SyncResult> {
        effects.iter().find_map(|e| match e {
            Effect::Sync(m, r) if m == member => Some(r.clone()),
            _ => None,
        })
    }

    /// KIP-394: the first JoinGroup gets a member id, the second joins.
    fn join_new(g: &mut Group, now: i64) -> String {
        let (id, effects) = g.join(request("", None), &limits(), now);
        let r = join_result(&effects, &id).expect("answered");
        assert_eq!(r.error, ResponseError::MemberIdRequired.code());
        assert_eq!(r.member_id, id);
        let (same, effects) = g.join(request(&id, None), &limits(), now);
        assert_eq!(same, id);
        assert!(
            join_result(&effects, &id).is_none(),
            "waits for the rebalance"
        );
        id
    }

    /// Two members joined generation 1: (leader, follower).
    fn joined_pair(g: &mut Group) -> (String, String) {
        let a = join_new(g, 0);
        let b = join_new(g, 0);
        let effects = g.tick(1);
        let ra = join_result(&effects, &a).expect("a answered");
        let rb = join_result(&effects, &b).expect("b answered");
        assert_eq!((ra.error, rb.error), (0, 0));
        assert_eq!(ra.generation, 1);
        assert_eq!(ra.protocol.as_deref(), Some("range"));
        let leader = ra.leader.clone();
        assert_eq!(leader, rb.leader);
        let (lead_r, follow_r) = if leader == a { (&ra, &rb) } else { (&rb, &ra) };
        assert_eq!(lead_r.members.len(), 2, "the leader sees every member");
        assert!(follow_r.members.is_empty(), "a follower sees none");
        if leader == a {
            (a, b)
        } else {
            (b, a)
        }
    }

    /// Two members joined and synced: a stable generation.
    fn stable_pair(g: &mut Group) -> (String, String) {
        let (lead, follow) = joined_pair(g);
        assert!(g
            .sync(&follow, None, 1, None, None, Vec::new(), 2)
            .is_empty());
        let assignments = vec![
            (lead.clone(), Bytes::from_static(b"p0-2")),
            (follow.clone(), Bytes::from_static(b"p3-5")),
        ];
        let effects = g.sync(&lead, None, 1, None, None, assignments, 2);
        assert!(effects.contains(&Effect::Store));
        assert_eq!(sync_result(&effects, &lead).unwrap().assignment, "p0-2");
        assert_eq!(sync_result(&effects, &follow).unwrap().assignment, "p3-5");
        assert_eq!(g.state, GroupState::Stable);
        (lead, follow)
    }

    #[test]
    fn given_two_members_when_both_join_and_the_leader_syncs_then_each_gets_its_assignment() {
        let mut g = Group::new("g", 0, 0);
        let (lead, follow) = stable_pair(&mut g);
        assert_eq!(g.heartbeat(&lead, None, 1, 3), 0);
        assert_eq!(g.heartbeat(&follow, None, 1, 3), 0);
        // A follower's late SyncGroup is answered from the stored assignment.
        let effects = g.sync(&follow, None, 1, None, None, Vec::new(), 4);
        assert_eq!(sync_result(&effects, &follow).unwrap().assignment, "p3-5");
    }

    #[test]
    fn given_a_stable_group_wrong_ids_get_kafkas_errors() {
        let mut g = Group::new("g", 0, 0);
        let (lead, _) = stable_pair(&mut g);
        assert_eq!(
            g.heartbeat("nobody", None, 1, 3),
            ResponseError::UnknownMemberId.code()
        );
        assert_eq!(
            g.heartbeat(&lead, None, 7, 3),
            ResponseError::IllegalGeneration.code()
        );
        let effects = g.sync(&lead, None, 0, None, None, Vec::new(), 3);
        assert_eq!(
            sync_result(&effects, &lead).unwrap().error,
            ResponseError::IllegalGeneration.code()
        );
        let effects = g.sync(
            &lead,
            None,
            1,
            Some("consumer"),
            Some("sticky"),
            Vec::new(),
            3,
        );
        assert_eq!(
            sync_result(&effects, &lead).unwrap().error,
            ResponseError::InconsistentGroupProtocol.code()
        );
        assert_eq!(
            g.check_commit("nobody", None, 1),
            Err(ResponseError::UnknownMemberId.code())
        );
        assert_eq!(
            g.check_commit(&lead, None, 2),
            Err(ResponseError::IllegalGeneration.code())
        );
        assert_eq!(g.check_commit(&lead, None, 1), Ok(()));
        // An admin's commit (generation -1) is refused while members are in.
        assert_eq!(
            g.check_commit("", None, -1),
            Err(ResponseError::UnknownMemberId.code())
        );
    }

    #[test]
    fn given_a_join_request_with_bad_timeouts_or_protocols_it_is_refused() {
        let mut g = Group::new("g", 0, 0);
        let mut r = request("", None);
        r.spec.session_timeout_ms = 1;
        let (id, effects) = g.join(r, &limits(), 0);
        assert_eq!(
            join_result(&effects, &id).unwrap().error,
            ResponseError::InvalidSessionTimeout.code()
        );
        let mut r = request("", None);
        r.spec.protocols.clear();
        let (id, effects) = g.join(r, &limits(), 0);
        assert_eq!(
            join_result(&effects, &id).unwrap().error,
            ResponseError::InconsistentGroupProtocol.code()
        );
        stable_pair(&mut g);
        let mut r = request("", None);
        r.spec.protocols = vec![("cooperative-sticky".into(), Bytes::new())];
        let (id, effects) = g.join(r, &limits(), 5);
        assert_eq!(
            join_result(&effects, &id).unwrap().error,
            ResponseError::InconsistentGroupProtocol.code()
        );
        let (id, effects) = g.join(request("made-up", None), &limits(), 5);
        assert_eq!(
            join_result(&effects, &id).unwrap().error,
            ResponseError::UnknownMemberId.code()
        );
    }

    #[test]
    fn given_a_full_group_a_new_member_gets_group_max_size_reached() {
        let mut g = Group::new("g", 0, 0);
        let small = Limits {
            members_max: 1,
            ..limits()
        };
        let (_, effects) = g.join(request("", None), &small, 0);
        assert!(
            matches!(&effects[0], Effect::Join(_, r) if r.error == ResponseError::MemberIdRequired.code())
        );
        let (id, effects) = g.join(request("", None), &small, 0);
        assert_eq!(
            join_result(&effects, &id).unwrap().error,
            ResponseError::GroupMaxSizeReached.code()
        );
    }

    #[test]
    fn given_a_member_leaves_then_the_other_rejoins_and_gets_a_new_generation() {
        let mut g = Group::new("g", 0, 0);
        let (lead, follow) = stable_pair(&mut g);
        let (code, effects) = g.leave(&follow, None, 10);
        assert_eq!(code, 0);
        assert!(effects.iter().all(|e| !matches!(e, Effect::Join(..))));
        assert_eq!(g.state, GroupState::PreparingRebalance);
        assert_eq!(
            g.heartbeat(&lead, None, 1, 11),
            ResponseError::RebalanceInProgress.code()
        );
        let (_, effects) = g.join(request(&lead, None), &limits(), 12);
        let r = join_result(&effects, &lead).expect("the only member completes the join");
        assert_eq!(
            (r.error, r.generation, r.leader.as_str()),
            (0, 2, lead.as_str())
        );
        assert_eq!(r.members.len(), 1);
        assert_eq!(
            g.leave(&follow, None, 13).0,
            ResponseError::UnknownMemberId.code()
        );
    }

    #[test]
    fn given_a_member_stops_heartbeating_after_its_session_timeout_it_is_removed() {
        let mut g = Group::new("g", 0, 0);
        let (lead, follow) = stable_pair(&mut g);
        let now = i64::from(SESSION_MS) - 1;
        assert_eq!(g.heartbeat(&lead, None, 1, now), 0);
        assert!(g.tick(now).is_empty());
        let effects = g.tick(i64::from(SESSION_MS) + 2);
        assert!(!g.members.contains_key(&follow));
        assert!(effects.iter().all(|e| !matches!(e, Effect::Join(..))));
        assert_eq!(g.state, GroupState::PreparingRebalance);
        // The survivor rejoins; the expired member is gone for good.
        let (_, effects) = g.join(request(&lead, None), &limits(), 20_000);
        assert_eq!(join_result(&effects, &lead).unwrap().generation, 2);
        assert_eq!(
            g.heartbeat(&follow, None, 2, 20_001),
            ResponseError::UnknownMemberId.code()
        );
    }

    #[test]
    fn given_a_member_does_not_rejoin_within_the_rebalance_timeout_it_is_dropped() {
        let mut g = Group::new("g", 0, 0);
        let (lead, follow) = stable_pair(&mut g);
        // The leader rejoins with new metadata: a rebalance starts.
        let mut r = request(&lead, None);
        r.spec.protocols[0].1 = Bytes::from_static(b"changed");
        let (_, effects) = g.join(r, &limits(), 100);
        assert!(join_result(&effects, &lead).is_none());
        // The follower keeps heartbeating but never rejoins.
        for t in (1_000..30_000).step_by(1_000) {
            assert_eq!(
                g.heartbeat(&follow, None, 1, t),
                ResponseError::RebalanceInProgress.code()
            );
            assert!(g.tick(t).is_empty());
        }
        let effects = g.tick(100 + i64::from(REBALANCE_MS));
        let r = join_result(&effects, &lead).expect("completed by the timeout");
        assert_eq!((r.generation, r.members.len()), (2, 1));
        assert!(!g.members.contains_key(&follow));
    }

    #[test]
    fn given_a_static_member_restarts_it_gets_its_assignment_and_its_old_id_is_fenced() {
        let mut g = Group::new("g", 0, 0);
        let (a, effects) = g.join(request("", Some("host-1")), &limits(), 0);
        assert!(
            effects.is_empty(),
            "a static member joins without ResponseError::MemberIdRequired.code()"
        );
        let b = join_new(&mut g, 0);
        let effects = g.tick(1);
        let leader = join_result(&effects, &a).unwrap().leader;
        let assignments = vec![
            (a.clone(), Bytes::from_static(b"A")),
            (b.clone(), Bytes::from_static(b"B")),
        ];
        g.sync(&leader, None, 1, None, None, assignments, 2);
        assert_eq!(g.state, GroupState::Stable);
        // host-1 restarts and joins without a member id.
        let (a2, effects) = g.join(request("", Some("host-1")), &limits(), 3);
        assert_ne!(a2, a);
        let r = join_result(&effects, &a2).expect("answered at once");
        assert_eq!((r.error, r.generation), (0, 1), "no rebalance");
        // host-1 joined first and leads: it must not reassign (KIP-814).
        assert_eq!(r.leader, a2);
        assert!(r.skip_assignment);
        assert_eq!(g.state, GroupState::Stable);
        let effects = g.sync(&a2, Some("host-1"), 1, None, None, Vec::new(), 4);
        assert_eq!(sync_result(&effects, &a2).unwrap().assignment, "A");
        assert_eq!(
            g.heartbeat(&a, Some("host-1"), 1, 5),
            ResponseError::FencedInstanceId.code()
        );
        assert_eq!(
            g.check_commit(&a, Some("host-1"), 1),
            Err(ResponseError::FencedInstanceId.code())
        );
        assert_eq!(
            g.leave(&a, Some("host-1"), 6).0,
            ResponseError::FencedInstanceId.code()
        );
        assert_eq!(g.leave("", Some("host-1"), 6).0, 0);
        assert!(!g.static_members.contains_key("host-1"));
    }

    #[test]
    fn given_the_initial_delay_members_joining_during_it_share_the_first_generation() {
        let mut g = Group::new("g", 3_000, 0);
        let a = join_new(&mut g, 0);
        assert!(g.tick(1_000).is_empty());
        let b = join_new(&mut g, 2_000);
        // Extended by b's arrival: not over at the first deadline.
        assert!(g.tick(3_500).is_empty());
        let effects = g.tick(5_000);
        assert_eq!(join_result(&effects, &a).unwrap().generation, 1);
        assert_eq!(join_result(&effects, &b).unwrap().generation, 1);
    }

    #[test]
    fn given_a_rebalance_a_member_waiting_for_sync_is_told_to_rejoin() {
        let mut g = Group::new("g", 0, 0);
        let (leader, follow) = joined_pair(&mut g);
        assert!(g
            .sync(&follow, None, 1, None, None, Vec::new(), 2)
            .is_empty());
        assert_eq!(
            g.check_commit(&follow, None, 1),
            Err(ResponseError::RebalanceInProgress.code())
        );
        // The leader leaves before sending its assignments.
        let (code, effects) = g.leave(&leader, None, 4);
        assert_eq!(code, 0);
        assert_eq!(
            sync_result(&effects, &follow).unwrap().error,
            ResponseError::RebalanceInProgress.code()
        );
        assert_eq!(g.state, GroupState::PreparingRebalance);
    }

    #[test]
    fn given_a_member_rejoins_while_the_leader_assigns_it_gets_the_same_answer_again() {
        let mut g = Group::new("g", 0, 0);
        let (leader, follow) = joined_pair(&mut g);
        let (_, effects) = g.join(request(&follow, None), &limits(), 2);
        let r = join_result(&effects, &follow).expect("answered at once");
        assert_eq!((r.error, r.generation), (0, 1));
        assert!(r.members.is_empty(), "only the leader gets the member list");
        let (_, effects) = g.join(request(&leader, None), &limits(), 3);
        assert_eq!(join_result(&effects, &leader).unwrap().members.len(), 2);
        assert_eq!(g.state, GroupState::CompletingRebalance);
    }

    #[test]
    fn given_an_empty_group_offsets_expire_after_the_retention_since_it_emptied() {
        let mut g = Group::new("g", 0, 0);
        let (lead, follow) = stable_pair(&mut g);
        let c = |ts| Committed {
            offset: 5,
            leader_epoch: 0,
            metadata: String::new(),
            commit_timestamp_ms: ts,
        };
        assert!(g.commit("t", 0, c(10), &limits()));
        assert!(
            g.expire_offsets(100, 1_000_000).is_empty(),
            "a live group keeps them"
        );
        g.leave(&follow, None, 20);
        let (_, effects) = g.leave(&lead, None, 1_000);
        assert!(effects.contains(&Effect::Store));
        assert_eq!(g.state, GroupState::Empty);
        assert_eq!(
            g.check_commit("", None, -1),
            Ok(()),
            "an admin may reset offsets"
        );
        assert!(g.expire_offsets(100, 1_099).is_empty());
        assert_eq!(g.expire_offsets(100, 1_100), vec![("t".to_string(), 0)]);
        assert!(g.is_disposable());
    }

    #[test]
    fn given_the_offsets_bound_a_new_partition_is_refused_and_a_known_one_updated() {
        let mut g = Group::new("g", 0, 0);
        let one = Limits {
            offsets_max: 1,
            ..limits()
        };
        let c = Committed {
            offset: 1,
            leader_epoch: -1,
            metadata: String::new(),
            commit_timestamp_ms: 0,
        };
        assert!(g.commit("t", 0, c.clone(), &one));
        assert!(!g.commit("t", 1, c.clone(), &one));
        assert!(g.commit("t", 0, c, &one));
    }
}
