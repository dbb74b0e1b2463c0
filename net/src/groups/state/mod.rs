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
//!
//! ## Where each part lives
//! * `types`: the requests, answers and [`Effect`]s of the operations, the
//!   [`Limits`], and what the group keeps of each member;
//! * `join`: JoinGroup, admitting new, pending (KIP-394) and static
//!   (KIP-345) members;
//! * `rebalance`: a rebalance's join phase, and how it completes;
//! * `sync`: SyncGroup, the leader's assignments;
//! * `liveness`: heartbeats, LeaveGroup, and the timers;
//! * `offsets`: committed offsets, their bound and their expiry.

use std::collections::{BTreeMap, HashMap};

use kafka_protocol::error::ResponseError;

mod join;
mod liveness;
mod offsets;
mod rebalance;
mod sync;
mod types;

pub(crate) use types::*;

/// One group: its members, its generation and its committed offsets.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Group {
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

impl Group {
    pub(crate) fn new(id: &str, initial_delay_ms: i32, now_ms: i64) -> Self {
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

    /// Whether the group can be forgotten: empty, with no offsets.
    pub(crate) fn is_disposable(&self) -> bool {
        self.state == GroupState::Empty && self.offsets.is_empty() && self.pending.is_empty()
    }
}

#[cfg(test)]
mod tests;
