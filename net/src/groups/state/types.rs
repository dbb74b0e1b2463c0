//! The values a group's operations take and return (requests, answers,
//! [`Effect`]s), its [`Limits`], and what it keeps of each member.

use bytes::Bytes;

/// Kafka's group states, named as DescribeGroups and ListGroups show them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum GroupState {
    Empty,
    PreparingRebalance,
    CompletingRebalance,
    Stable,
    Dead,
}

impl GroupState {
    pub(crate) fn name(self) -> &'static str {
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
pub(crate) struct Limits {
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
pub(crate) struct Member {
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
    pub(super) fn answer_waits(&self, error: i16) -> Vec<Effect> {
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

    pub(super) fn metadata(&self, protocol: &str) -> Bytes {
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
pub(crate) struct Committed {
    pub offset: i64,
    pub leader_epoch: i32,
    pub metadata: String,
    pub commit_timestamp_ms: i64,
}

/// A JoinGroup answer.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct JoinResult {
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
    pub(crate) fn error(error: i16, member_id: &str) -> Self {
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
pub(crate) struct SyncResult {
    pub error: i16,
    pub protocol_type: Option<String>,
    pub protocol: Option<String>,
    pub assignment: Bytes,
}

impl SyncResult {
    pub(crate) fn error(error: i16) -> Self {
        Self {
            error,
            ..Self::default()
        }
    }
}

/// What an operation caused besides its immediate answer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Effect {
    /// Answer the JoinGroup this member awaits.
    Join(String, JoinResult),
    /// Answer the SyncGroup this member awaits.
    Sync(String, SyncResult),
    /// The group's metadata changed: store it.
    Store,
}

/// What a member says of itself in its JoinGroup.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct MemberSpec {
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
pub(crate) struct JoinRequest {
    pub member_id: String,
    pub spec: MemberSpec,
    /// v4+: a member without an id is first given one (KIP-394).
    pub require_known_member_id: bool,
}
