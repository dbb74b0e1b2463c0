//! The group coordinator: Kafka's classic consumer group protocol and
//! committed offsets.
//!
//! ## Where a group lives
//! A group belongs to partition `abs(javaHashCode(group)) % N` of the
//! internal topic `__consumer_offsets` (N = `offsets.topic.num.partitions`,
//! fixed when the topic is created, as in Kafka), and lives on the shard
//! that owns that partition. The group handlers send [`Op`]s to the owner
//! (`handlers::group_service`), batched per shard like all partition work. Only the owner touches a group: no lock,
//! nothing shared between shards.
//!
//! ## Durability
//! Commits and group metadata are records of `__consumer_offsets` in
//! Kafka's formats ([`records`]), one v2 batch per write, appended through
//! the engine. An OffsetCommit is answered after its batch is acknowledged
//! (`wait_acked`, i.e. fsynced by default) and only then applied to the
//! in-memory state; a SyncGroup that completes a rebalance is answered
//! after the group's metadata is stored. Deletions write tombstones.
//!
//! ## Keeping the log short, and loading
//! `upkeep` rewrites a partition's live state so that its log follows its
//! live state rather than its history, until compaction exists; `load`
//! reads a partition's groups back when this broker becomes its leader.
//!
//! ## Bounds
//! * Members per group: `group.max.size` (Kafka: unlimited; here 1000 by
//!   default, GROUP_MAX_SIZE_REACHED beyond it).
//! * Groups per shard: `groups_per_shard_max`; a new group beyond it is
//!   refused with COORDINATOR_NOT_AVAILABLE (Kafka has no such bound).
//! * Committed offsets per group: `group_offsets_max`; a commit of a new
//!   partition beyond it gets INVALID_COMMIT_OFFSET_SIZE.
//! * Waiting JoinGroup and SyncGroup requests: one per member.
//!
//! ## Expiry
//! Every `offsets.retention.check.interval.ms` offsets older than
//! `offsets.retention.minutes` are dropped by Kafka's rule
//! ([`state::Group::expire_offsets`]) with tombstones, and empty groups
//! without offsets are forgotten.

mod load;
pub(crate) mod records;
pub(crate) mod state;
mod upkeep;

use std::cell::RefCell;
use std::collections::HashMap;
use std::rc::Rc;
use std::sync::Arc;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use futures_channel::oneshot;
use kafka_protocol::error::ResponseError;
use records::{GroupValue, Key, MemberValue, OffsetValue};
use sluice_broker::partition_manager::PartitionManager;
use sluice_broker::replicated_partition::Acks;
use sluice_broker::roles::ReplicaError;
use sluice_engine::batch::build::{batch, Record};
use sluice_engine::types::now_ms;
use sluice_engine::{LeaderEpoch, TopicPartition};
use sluice_replication::raft::subscriber::Image;
use state::{Committed, Effect, Group, GroupState, JoinRequest, JoinResult, Limits, SyncResult};
use upkeep::Upkeep;

use crate::config::BrokerConfig;

/// The internal topic.
pub(crate) const OFFSETS_TOPIC: &str = "__consumer_offsets";
/// Bytes of records per batch written (below the default max.message.bytes).
const WRITE_BATCH_BYTES_MAX: usize = 512 << 10;
/// How often the timers run.
const TICK_MS: u64 = 50;

/// Java's `String.hashCode` over UTF-16 code units.
pub(crate) fn java_hash(s: &str) -> i32 {
    s.encode_utf16()
        .fold(0i32, |h, u| h.wrapping_mul(31).wrapping_add(i32::from(u)))
}

/// The `__consumer_offsets` partition of a group: Kafka's
/// `Utils.abs(hashCode) % partitions`, where `abs(i32::MIN)` is 0.
pub(crate) fn partition_for(group: &str, partitions: i32) -> i32 {
    let h = java_hash(group);
    let abs = if h == i32::MIN { 0 } else { h.abs() };
    abs % partitions.max(1)
}

/// A group operation, run on the shard owning the group's partition.
#[derive(Debug)]
pub(crate) enum Op {
    Join {
        group: String,
        request: JoinRequest,
    },
    Sync {
        group: String,
        member_id: String,
        instance_id: Option<String>,
        generation: i32,
        protocol_type: Option<String>,
        protocol: Option<String>,
        assignments: Vec<(String, Bytes)>,
    },
    Heartbeat {
        group: String,
        member_id: String,
        instance_id: Option<String>,
        generation: i32,
    },
    Leave {
        group: String,
        /// (member id, instance id).
        members: Vec<(String, Option<String>)>,
    },
    Commit {
        group: String,
        member_id: String,
        instance_id: Option<String>,
        generation: i32,
        offsets: Vec<CommitOffset>,
    },
    /// Committed offsets: of the given partitions, or all.
    Fetch {
        group: String,
        partitions: Option<Vec<(String, i32)>>,
    },
    /// Every group of this `__consumer_offsets` partition.
    List,
    Describe {
        group: String,
    },
    Delete {
        group: String,
    },
    DeleteOffsets {
        group: String,
        partitions: Vec<(String, i32)>,
    },
}

impl Op {
    /// The group an operation is for; `None` for a listing.
    pub(crate) fn group(&self) -> Option<&str> {
        match self {
            Op::Join { group, .. }
            | Op::Sync { group, .. }
            | Op::Heartbeat { group, .. }
            | Op::Leave { group, .. }
            | Op::Commit { group, .. }
            | Op::Fetch { group, .. }
            | Op::Describe { group }
            | Op::Delete { group }
            | Op::DeleteOffsets { group, .. } => Some(group),
            Op::List => None,
        }
    }
}

#[derive(Clone, Debug)]
pub(crate) struct CommitOffset {
    pub topic: String,
    pub partition: i32,
    pub offset: i64,
    pub leader_epoch: i32,
    pub metadata: Option<String>,
}

/// A member as DescribeGroups shows it.
#[derive(Clone, Debug)]
pub(crate) struct DescribedMember {
    pub member_id: String,
    pub instance_id: Option<String>,
    pub client_id: String,
    pub client_host: String,
    pub metadata: Bytes,
    pub assignment: Bytes,
}

#[derive(Clone, Debug)]
pub(crate) struct Described {
    pub state: &'static str,
    pub protocol_type: String,
    pub protocol: String,
    pub members: Vec<DescribedMember>,
}

/// A listed group: id, protocol type, state.
pub(crate) type Listed = (String, String, &'static str);

/// A SyncGroup's fields, as [`Op::Sync`] carries them.
struct Sync {
    member_id: String,
    instance_id: Option<String>,
    generation: i32,
    protocol_type: Option<String>,
    protocol: Option<String>,
    assignments: Vec<(String, Bytes)>,
}

/// The answer to an [`Op`].
#[derive(Debug)]
pub(crate) enum Reply {
    /// The whole operation failed (NOT_COORDINATOR, loading, ...).
    Error(i16),
    Join(JoinResult),
    Sync(SyncResult),
    Heartbeat(i16),
    /// One code per member of the request.
    Leave(Vec<i16>),
    /// One code per offset of the request.
    Commit(Vec<i16>),
    Fetch(Vec<(String, i32, Option<Committed>)>),
    List(Vec<Listed>),
    /// `None`: no such group.
    Describe(Option<Described>),
    Delete(i16),
    /// The group's code, then one per partition.
    DeleteOffsets(i16, Vec<i16>),
}

enum Part {
    Loading,
    Loaded(HashMap<String, Group>),
}

/// One shard's groups.
pub(crate) struct Coordinator {
    /// The shard's partitions, `__consumer_offsets`' among them.
    partitions: Rc<PartitionManager>,
    config: Arc<BrokerConfig>,
    image: Image,
    limits: Limits,
    parts: RefCell<HashMap<i32, Part>>,
    /// The leader epoch each partition's groups were loaded under.
    loaded_at: RefCell<HashMap<i32, i32>>,
    upkeep: RefCell<HashMap<i32, Upkeep>>,
    joins: RefCell<HashMap<(String, String), oneshot::Sender<JoinResult>>>,
    syncs: RefCell<HashMap<(String, String), oneshot::Sender<SyncResult>>>,
}

impl Coordinator {
    /// The shard's coordinator, with its timers running.
    pub(crate) fn start(
        partitions: Rc<PartitionManager>,
        config: Arc<BrokerConfig>,
        image: Image,
    ) -> Rc<Self> {
        let limits = Limits {
            session_timeout_ms_min: config.group_min_session_timeout_ms,
            session_timeout_ms_max: config.group_max_session_timeout_ms,
            initial_rebalance_delay_ms: config.group_initial_rebalance_delay_ms,
            members_max: config.group_max_size,
            offsets_max: config.group_offsets_max,
            metadata_bytes_max: config.offset_metadata_max_bytes,
        };
        let c = Rc::new(Self {
            partitions,
            config,
            image,
            limits,
            parts: RefCell::new(HashMap::new()),
            loaded_at: RefCell::new(HashMap::new()),
            upkeep: RefCell::new(HashMap::new()),
            joins: RefCell::new(HashMap::new()),
            syncs: RefCell::new(HashMap::new()),
        });
        glommio::spawn_local(c.clone().timers()).detach();
        c
    }

    fn tp(p: i32) -> TopicPartition {
        TopicPartition::new(OFFSETS_TOPIC, p)
    }

    /// Runs one operation on group partition `p`.
    pub(crate) async fn run(self: &Rc<Self>, p: i32, op: Op) -> Reply {
        if let Err(code) = self.ready(p) {
            return Reply::Error(code);
        }
        let now = now_ms();
        match op {
            Op::Join { group, request } => Reply::Join(self.join(p, group, request).await),
            Op::Sync {
                group,
                member_id,
                instance_id,
                generation,
                protocol_type,
                protocol,
                assignments,
            } => {
                let sync = Sync {
                    member_id,
                    instance_id,
                    generation,
                    protocol_type,
                    protocol,
                    assignments,
                };
                Reply::Sync(self.sync(p, group, sync, now).await)
            }
            Op::Heartbeat {
                group,
                member_id,
                instance_id,
                generation,
            } => Reply::Heartbeat(
                self.with_group(p, &group, |g| {
                    g.heartbeat(&member_id, instance_id.as_deref(), generation, now)
                })
                .unwrap_or(ResponseError::UnknownMemberId.code()),
            ),
            Op::Leave { group, members } => Reply::Leave(self.leave(p, &group, members, now).await),
            Op::Commit {
                group,
                member_id,
                instance_id,
                generation,
                offsets,
            } => Reply::Commit(
                self.commit(p, group, member_id, instance_id, generation, offsets)
                    .await,
            ),
            Op::Fetch { group, partitions } => {
                Reply::Fetch(self.fetch_offsets(p, &group, partitions))
            }
            Op::List => Reply::List(self.list(p)),
            Op::Describe { group } => Reply::Describe(self.with_group(p, &group, describe)),
            Op::Delete { group } => Reply::Delete(self.delete(p, &group).await),
            Op::DeleteOffsets { group, partitions } => {
                let (code, codes) = self.delete_offsets(p, &group, partitions).await;
                Reply::DeleteOffsets(code, codes)
            }
        }
    }

    /// SyncGroup: waits until the rebalance's assignment is stored.
    async fn sync(&self, p: i32, group: String, s: Sync, now: i64) -> SyncResult {
        let effects = self.with_group(p, &group, |g| {
            g.sync(
                &s.member_id,
                s.instance_id.as_deref(),
                s.generation,
                s.protocol_type.as_deref(),
                s.protocol.as_deref(),
                s.assignments,
                now,
            )
        });
        let Some(effects) = effects else {
            return SyncResult::error(ResponseError::UnknownMemberId.code());
        };
        let (tx, rx) = oneshot::channel();
        self.syncs
            .borrow_mut()
            .insert((group.clone(), s.member_id), tx);
        self.deliver(p, &group, effects).await;
        rx.await
            .unwrap_or_else(|_| SyncResult::error(ResponseError::RebalanceInProgress.code()))
    }

    /// LeaveGroup: one code per (member id, instance id).
    async fn leave(
        &self,
        p: i32,
        group: &str,
        members: Vec<(String, Option<String>)>,
        now: i64,
    ) -> Vec<i16> {
        let mut codes = Vec::with_capacity(members.len());
        for (member, instance) in members {
            let out = self.with_group(p, group, |g| g.leave(&member, instance.as_deref(), now));
            match out {
                Some((code, effects)) => {
                    codes.push(code);
                    self.deliver(p, group, effects).await;
                }
                None => codes.push(ResponseError::UnknownMemberId.code()),
            }
        }
        codes
    }

    /// OffsetFetch: the committed offsets of `partitions`, or all.
    fn fetch_offsets(
        &self,
        p: i32,
        group: &str,
        partitions: Option<Vec<(String, i32)>>,
    ) -> Vec<(String, i32, Option<Committed>)> {
        self.with_group(p, group, |g| match &partitions {
            None => g
                .offsets
                .iter()
                .map(|((t, i), c)| (t.clone(), *i, Some(c.clone())))
                .collect(),
            Some(list) => list
                .iter()
                .map(|(t, i)| (t.clone(), *i, g.offsets.get(&(t.clone(), *i)).cloned()))
                .collect(),
        })
        .unwrap_or_else(|| {
            partitions
                .unwrap_or_default()
                .into_iter()
                .map(|(t, i)| (t, i, None))
                .collect()
        })
    }

    /// ListGroups: the live groups of partition `p`.
    fn list(&self, p: i32) -> Vec<Listed> {
        match self.parts.borrow().get(&p) {
            Some(Part::Loaded(groups)) => groups
                .values()
                .filter(|g| g.state != GroupState::Dead)
                .map(|g| {
                    (
                        g.id.clone(),
                        g.protocol_type.clone().unwrap_or_default(),
                        g.state.name(),
                    )
                })
                .collect(),
            _ => Vec::new(),
        }
    }

    /// Whether this shard coordinates partition `p` and has loaded it;
    /// starts loading it if not.
    fn ready(self: &Rc<Self>, p: i32) -> Result<(), i16> {
        let state = self.image.load();
        let Some(topic) = state.topics.get(OFFSETS_TOPIC) else {
            return Err(ResponseError::CoordinatorNotAvailable.code());
        };
        let Some(part) = usize::try_from(p)
            .ok()
            .and_then(|i| topic.partitions.get(i))
        else {
            return Err(ResponseError::NotCoordinator.code());
        };
        if part.leader != self.config.broker_id {
            self.parts.borrow_mut().remove(&p);
            return Err(ResponseError::NotCoordinator.code());
        }
        // Groups loaded under an earlier leadership may be stale: another
        // broker coordinated them meanwhile. They are loaded again.
        let epoch = part.leader_epoch;
        if self.loaded_at.borrow().get(&p).is_some_and(|e| *e != epoch) {
            self.parts.borrow_mut().remove(&p);
        }
        self.loaded_at.borrow_mut().insert(p, epoch);
        match self.parts.borrow().get(&p) {
            Some(Part::Loaded(_)) => return Ok(()),
            Some(Part::Loading) => return Err(ResponseError::CoordinatorLoadInProgress.code()),
            None => {}
        }
        self.parts.borrow_mut().insert(p, Part::Loading);
        glommio::spawn_local(self.clone().load(p)).detach();
        Err(ResponseError::CoordinatorLoadInProgress.code())
    }

    fn groups_count(&self) -> usize {
        self.parts
            .borrow()
            .values()
            .map(|p| match p {
                Part::Loaded(g) => g.len(),
                Part::Loading => 0,
            })
            .sum()
    }

    /// Runs `f` on an existing group.
    fn with_group<T>(&self, p: i32, group: &str, f: impl FnOnce(&mut Group) -> T) -> Option<T> {
        match self.parts.borrow_mut().get_mut(&p) {
            Some(Part::Loaded(groups)) => groups.get_mut(group).map(f),
            _ => None,
        }
    }

    /// Runs `f` on a group, created empty if absent and the shard has room.
    fn with_new_group<T>(
        &self,
        p: i32,
        group: &str,
        f: impl FnOnce(&mut Group) -> T,
    ) -> Result<T, i16> {
        let full = self.groups_count() >= self.config.groups_per_shard_max;
        match self.parts.borrow_mut().get_mut(&p) {
            Some(Part::Loaded(groups)) => {
                if !groups.contains_key(group) {
                    if full {
                        return Err(ResponseError::CoordinatorNotAvailable.code());
                    }
                    groups.insert(
                        group.to_string(),
                        Group::new(group, self.limits.initial_rebalance_delay_ms, now_ms()),
                    );
                }
                Ok(f(groups.get_mut(group).expect("inserted")))
            }
            _ => Err(ResponseError::CoordinatorLoadInProgress.code()),
        }
    }

    async fn join(&self, p: i32, group: String, request: JoinRequest) -> JoinResult {
        let now = now_ms();
        let member = request.member_id.clone();
        let limits = self.limits.clone();
        let joined = self.with_new_group(p, &group, |g| g.join(request, &limits, now));
        let (id, effects) = match joined {
            Ok(j) => j,
            Err(code) => return JoinResult::error(code, &member),
        };
        // A refused first join leaves no group behind.
        if let Some(Part::Loaded(groups)) = self.parts.borrow_mut().get_mut(&p) {
            if groups
                .get(&group)
                .is_some_and(|g| g.generation == 0 && g.is_disposable())
            {
                groups.remove(&group);
            }
        }
        let (tx, rx) = oneshot::channel();
        self.joins
            .borrow_mut()
            .insert((group.clone(), id.clone()), tx);
        self.deliver(p, &group, effects).await;
        rx.await
            .unwrap_or_else(|_| JoinResult::error(ResponseError::RebalanceInProgress.code(), &id))
    }

    /// Stores what needs storing, then answers the waiting requests.
    async fn deliver(&self, p: i32, group: &str, effects: Vec<Effect>) {
        let mut failed = None;
        if effects.contains(&Effect::Store) {
            let gate = self.gate(p);
            let _open = gate.read().await;
            let value = self.with_group(p, group, group_value).flatten();
            let record = (
                Key::Group(group.to_string()).encode(),
                value.map(|v| v.encode()),
            );
            if let Err(code) = self.write(p, vec![record]).await {
                failed = Some(code);
            }
        }
        for e in effects {
            match e {
                Effect::Join(member, result) => {
                    if let Some(tx) = self.joins.borrow_mut().remove(&(group.to_string(), member)) {
                        let _ = tx.send(result);
                    }
                }
                Effect::Sync(member, mut result) => {
                    if let (Some(code), 0) = (failed, result.error) {
                        result = SyncResult::error(code);
                    }
                    if let Some(tx) = self.syncs.borrow_mut().remove(&(group.to_string(), member)) {
                        let _ = tx.send(result);
                    }
                }
                Effect::Store => {}
            }
        }
    }

    /// Appends records (key, value or tombstone) to partition `p` and
    /// waits until they are acknowledged. Errors are the group APIs'
    /// codes, mapped as Kafka's GroupMetadataManager maps them.
    async fn write(&self, p: i32, records: Vec<(Vec<u8>, Option<Vec<u8>>)>) -> Result<(), i16> {
        let bytes = records.iter().map(|(k, v)| record_bytes(k, v)).sum();
        let written = self.append(p, records).await;
        if written.is_ok() {
            self.appended(p, bytes);
        }
        written.map_err(|e| {
            tracing::warn!(partition = p, error = %e, "could not write to __consumer_offsets");
            match ResponseError::try_from_code(e.code()) {
                Some(ResponseError::NotLeaderOrFollower) => ResponseError::NotCoordinator.code(),
                Some(
                    ResponseError::MessageTooLarge
                    | ResponseError::RecordListTooLarge
                    | ResponseError::InvalidFetchSize,
                ) => ResponseError::InvalidCommitOffsetSize.code(),
                _ => ResponseError::CoordinatorNotAvailable.code(),
            }
        })
    }

    async fn append(
        &self,
        p: i32,
        records: Vec<(Vec<u8>, Option<Vec<u8>>)>,
    ) -> Result<(), ReplicaError> {
        if records.is_empty() {
            return Ok(());
        }
        let state = self.image.load_full();
        let epoch = state
            .topics
            .get(OFFSETS_TOPIC)
            .and_then(|t| t.partitions.get(p as usize))
            .map_or(0, |part| part.leader_epoch);
        let partition = self.partitions.open(&Self::tp(p)).await?;
        let now = now_ms();
        let mut last = None;
        let mut chunk: Vec<Record> = Vec::new();
        let mut bytes = 0usize;
        let mut records = records.into_iter().peekable();
        while let Some((key, value)) = records.next() {
            bytes += key.len() + value.as_ref().map_or(0, Vec::len);
            chunk.push(Record {
                key: Some(key),
                value,
                headers: Vec::new(),
            });
            if bytes >= WRITE_BATCH_BYTES_MAX || records.peek().is_none() {
                let b = BytesMut::from(&batch(&chunk, now)[..]);
                let info = partition
                    .append(b, LeaderEpoch(epoch), Acks::All, now)
                    .await?;
                last = Some(info.last_offset);
                chunk.clear();
                bytes = 0;
            }
        }
        if let Some(last) = last {
            partition.acknowledged(Acks::All, last).await?;
        }
        Ok(())
    }

    async fn commit(
        &self,
        p: i32,
        group: String,
        member_id: String,
        instance_id: Option<String>,
        generation: i32,
        offsets: Vec<CommitOffset>,
    ) -> Vec<i16> {
        let gate = self.gate(p);
        let _open = gate.read().await;
        let n = offsets.len();
        let exists = self.with_group(p, &group, |_| ()).is_some();
        // A commit for an unknown group: an admin's or a standalone
        // consumer's (generation -1) creates it; anyone else's is from a
        // generation that is gone.
        let checked = if !exists && generation >= 0 {
            Err(ResponseError::IllegalGeneration.code())
        } else {
            self.with_new_group(p, &group, |g| {
                g.check_commit(&member_id, instance_id.as_deref(), generation)
                    .map(|()| {
                        if let Some(m) = g.members.get_mut(&member_id) {
                            m.last_heartbeat_ms = now_ms();
                        }
                        let known: Vec<bool> = offsets
                            .iter()
                            .map(|o| g.offsets.contains_key(&(o.topic.clone(), o.partition)))
                            .collect();
                        (g.offsets.len(), known)
                    })
            })
            .and_then(|r| r)
        };
        let (held, known) = match checked {
            Ok(c) => c,
            Err(code) => return vec![code; n],
        };
        let now = now_ms();
        let mut codes = vec![0; n];
        let mut room = self.limits.offsets_max.saturating_sub(held);
        let mut records = Vec::new();
        let mut accepted = Vec::new();
        for (i, o) in offsets.iter().enumerate() {
            let metadata = o.metadata.clone().unwrap_or_default();
            if metadata.len() > self.limits.metadata_bytes_max {
                codes[i] = ResponseError::OffsetMetadataTooLarge.code();
                continue;
            }
            if !known[i] {
                if room == 0 {
                    codes[i] = ResponseError::InvalidCommitOffsetSize.code();
                    continue;
                }
                room -= 1;
            }
            let c = Committed {
                offset: o.offset,
                leader_epoch: o.leader_epoch,
                metadata,
                commit_timestamp_ms: now,
            };
            records.push(offset_record(&group, &o.topic, o.partition, Some(&c)));
            accepted.push((i, c));
        }
        if let Err(code) = self.write(p, records).await {
            for (i, _) in &accepted {
                codes[*i] = code;
            }
            return codes;
        }
        let limits = self.limits.clone();
        let applied = self.with_new_group(p, &group, |g| {
            for (i, c) in accepted {
                let o = &offsets[i];
                if !g.commit(&o.topic, o.partition, c, &limits) {
                    codes[i] = ResponseError::InvalidCommitOffsetSize.code();
                }
            }
        });
        if let Err(code) = applied {
            return vec![code; n];
        }
        codes
    }

    async fn delete(&self, p: i32, group: &str) -> i16 {
        let gate = self.gate(p);
        let _open = gate.read().await;
        let found = self.with_group(p, group, |g| match g.state {
            GroupState::Dead => Err(ResponseError::GroupIdNotFound.code()),
            GroupState::Empty => Ok(g.offsets.keys().cloned().collect::<Vec<_>>()),
            _ => Err(ResponseError::NonEmptyGroup.code()),
        });
        let keys = match found {
            None => return ResponseError::GroupIdNotFound.code(),
            Some(Err(code)) => return code,
            Some(Ok(keys)) => keys,
        };
        let mut records: Vec<_> = keys
            .iter()
            .map(|(t, i)| offset_record(group, t, *i, None))
            .collect();
        records.push((Key::Group(group.to_string()).encode(), None));
        if let Err(code) = self.write(p, records).await {
            return code;
        }
        if let Some(Part::Loaded(groups)) = self.parts.borrow_mut().get_mut(&p) {
            // Still empty: a member that joined meanwhile keeps the group.
            if groups
                .get(group)
                .is_some_and(|g| g.state == GroupState::Empty)
            {
                groups.remove(group);
            }
        }
        0
    }

    async fn delete_offsets(
        &self,
        p: i32,
        group: &str,
        partitions: Vec<(String, i32)>,
    ) -> (i16, Vec<i16>) {
        let gate = self.gate(p);
        let _open = gate.read().await;
        let n = partitions.len();
        let checked = self.with_group(p, group, |g| {
            if g.state == GroupState::Dead {
                return Err(ResponseError::GroupIdNotFound.code());
            }
            if g.state == GroupState::Empty {
                return Ok(None);
            }
            match g.subscribed_topics() {
                Some(s) => Ok(Some(s)),
                None => Err(ResponseError::NonEmptyGroup.code()),
            }
        });
        let subscribed = match checked {
            None => return (ResponseError::GroupIdNotFound.code(), Vec::new()),
            Some(Err(code)) => return (code, Vec::new()),
            Some(Ok(s)) => s,
        };
        let mut codes = vec![0; n];
        let mut records = Vec::new();
        let mut gone = Vec::new();
        for (i, (topic, partition)) in partitions.iter().enumerate() {
            if subscribed.as_ref().is_some_and(|s| s.contains(topic)) {
                codes[i] = ResponseError::GroupSubscribedToTopic.code();
                continue;
            }
            records.push(offset_record(group, topic, *partition, None));
            gone.push((topic.clone(), *partition));
        }
        if let Err(code) = self.write(p, records).await {
            return (code, Vec::new());
        }
        self.with_group(p, group, |g| {
            for k in &gone {
                g.offsets.remove(k);
            }
        });
        (0, codes)
    }

    /// The timers: group timeouts, loading of partitions this shard
    /// coordinates, offset expiry.
    async fn timers(self: Rc<Self>) {
        let mut last_expiry = now_ms();
        let stop = self.partitions.env().stop.clone();
        while !stop.load(std::sync::atomic::Ordering::Acquire) {
            glommio::timer::sleep(Duration::from_millis(TICK_MS)).await;
            self.load_owned();
            self.start_due_rewrites();
            let now = now_ms();
            let mut due = Vec::new();
            for (p, part) in self.parts.borrow_mut().iter_mut() {
                if let Part::Loaded(groups) = part {
                    for g in groups.values_mut() {
                        let effects = g.tick(now);
                        if !effects.is_empty() {
                            due.push((*p, g.id.clone(), effects));
                        }
                    }
                }
            }
            for (p, group, effects) in due {
                self.deliver(p, &group, effects).await;
            }
            if now - last_expiry >= self.config.offsets_retention_check_interval_ms as i64 {
                last_expiry = now;
                self.expire(now).await;
            }
        }
    }

    async fn expire(&self, now: i64) {
        let retention_ms = self.config.offsets_retention_minutes.saturating_mul(60_000);
        let mut due = Vec::new();
        for (p, part) in self.parts.borrow_mut().iter_mut() {
            if let Part::Loaded(groups) = part {
                for g in groups.values_mut() {
                    let gone = g.expire_offsets(retention_ms, now);
                    let mut records: Vec<_> = gone
                        .iter()
                        .map(|(t, i)| offset_record(&g.id, t, *i, None))
                        .collect();
                    if g.is_disposable() && g.protocol_type.is_some() {
                        records.push((Key::Group(g.id.clone()).encode(), None));
                    }
                    if !records.is_empty() {
                        due.push((*p, records));
                    }
                }
                groups.retain(|_, g| !g.is_disposable());
            }
        }
        for (p, records) in due {
            let gate = self.gate(p);
            let _open = gate.read().await;
            if let Err(code) = self.write(p, records).await {
                tracing::warn!(
                    partition = p,
                    code,
                    "could not write expired offsets' tombstones"
                );
            }
        }
    }
}

/// The bytes a record's key and value take.
fn record_bytes(key: &[u8], value: &Option<Vec<u8>>) -> u64 {
    (key.len() + value.as_ref().map_or(0, Vec::len)) as u64
}

/// An offset commit record; `None`: its tombstone.
fn offset_record(
    group: &str,
    topic: &str,
    partition: i32,
    c: Option<&Committed>,
) -> (Vec<u8>, Option<Vec<u8>>) {
    let key = Key::Offset {
        group: group.to_string(),
        topic: topic.to_string(),
        partition,
    };
    let value = c.map(|c| {
        OffsetValue {
            offset: c.offset,
            leader_epoch: c.leader_epoch,
            metadata: c.metadata.clone(),
            commit_timestamp_ms: c.commit_timestamp_ms,
        }
        .encode()
    });
    (key.encode(), value)
}

/// The stored form of a group's metadata; `None` for a group that is gone.
fn group_value(g: &mut Group) -> Option<GroupValue> {
    if g.state == GroupState::Dead {
        return None;
    }
    let protocol = g.protocol.clone().unwrap_or_default();
    Some(GroupValue {
        protocol_type: g.protocol_type.clone().unwrap_or_default(),
        generation: g.generation,
        protocol: g.protocol.clone(),
        leader: g.leader.clone(),
        state_timestamp_ms: g.state_since_ms,
        members: g
            .members
            .values()
            .map(|m| MemberValue {
                member_id: m.id.clone(),
                instance_id: m.spec.instance_id.clone(),
                client_id: m.spec.client_id.clone(),
                client_host: m.spec.client_host.clone(),
                rebalance_timeout_ms: m.spec.rebalance_timeout_ms,
                session_timeout_ms: m.spec.session_timeout_ms,
                subscription: m
                    .spec
                    .protocols
                    .iter()
                    .find(|(n, _)| *n == protocol)
                    .map(|(_, b)| b.clone())
                    .unwrap_or_default(),
                assignment: m.assignment.clone(),
            })
            .collect(),
    })
}

fn describe(g: &mut Group) -> Described {
    let stable = g.state == GroupState::Stable;
    let protocol = g.protocol.clone().unwrap_or_default();
    Described {
        state: g.state.name(),
        protocol_type: g.protocol_type.clone().unwrap_or_default(),
        protocol: protocol.clone(),
        members: g
            .members
            .values()
            .map(|m| DescribedMember {
                member_id: m.id.clone(),
                instance_id: m.spec.instance_id.clone(),
                client_id: m.spec.client_id.clone(),
                client_host: m.spec.client_host.clone(),
                // Kafka shows metadata and assignments of stable groups only.
                metadata: if stable {
                    m.spec
                        .protocols
                        .iter()
                        .find(|(n, _)| *n == protocol)
                        .map(|(_, b)| b.clone())
                        .unwrap_or_default()
                } else {
                    Bytes::new()
                },
                assignment: if stable {
                    m.assignment.clone()
                } else {
                    Bytes::new()
                },
            })
            .collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    #[test]
    fn given_group_ids_the_partition_matches_kafka() {
        assert_eq!(java_hash(""), 0);
        assert_eq!(java_hash("a"), 97);
        assert_eq!(java_hash("ab"), 97 * 31 + 98);
        // Non-BMP characters count as two UTF-16 code units, as in Java.
        assert_eq!(java_hash("😀"), 0xD83D * 31 + 0xDE00);
        // "polygenelubricants".hashCode() == Integer.MIN_VALUE: abs → 0.
        assert_eq!(java_hash("polygenelubricants"), i32::MIN);
        assert_eq!(partition_for("polygenelubricants", 50), 0);
        for g in ["g", "group-1", "Ünïcödé", "x".repeat(300).as_str()] {
            let p = partition_for(g, 50);
            assert!((0..50).contains(&p));
        }
    }
}
