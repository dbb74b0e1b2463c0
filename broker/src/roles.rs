//! A partition's role on this broker, leader or follower, and what each
//! does for replication.
//!
//! The partition manager gives a partition its role from the metadata
//! image ([`ReplicatedPartition::become_leader`],
//! [`ReplicatedPartition::become_follower`]); a role carries the leader
//! epoch it was given at, and everything a peer sends is checked against
//! it (KIP-320: an older epoch is FENCED_LEADER_EPOCH, a newer one
//! UNKNOWN_LEADER_EPOCH).
//!
//! **As leader** of a partition with followers, its log runs in the
//! engine's `CommitMode::Replicated`: the high watermark moves only when
//! [`isr::Leader`] says every in-sync replica has the data durably. A
//! follower's fetch ([`ReplicatedPartition::serve_follower`]) reports its
//! position, may move the high watermark, and reads everything written
//! from its offset, unless its last epoch diverges from this log (then it
//! gets the divergence point instead, KIP-320). A leader with no
//! followers runs in `CommitMode::Durable`, as a single replica.
//!
//! **As follower**, its log runs in `CommitMode::Replicated` too, its high
//! watermark the leader's (bounded by its own log). Before fetching from a
//! new leader it reconciles ([`ReplicatedPartition::reconcile`]): it
//! truncates exactly the suffix the new leader's log does not share
//! (`truncation`). Then it appends what the fetcher brings
//! ([`ReplicatedPartition::apply_fetched`]) with the leader's offsets.

use bytes::Bytes;
use sluice_engine::partition::{Chunk, CommitMode, ReadOptions, ReadUpper};
use sluice_engine::{EngineError, LeaderEpoch, Offset};

use crate::isr::{self, Assignment, IsrChange};
use crate::replicated_partition::ReplicatedPartition;
use crate::truncation::{self, Step};

/// Tasks waiting for a partition's role to change, by key; each removes
/// its entry when dropped, so the table holds only live waits.
#[derive(Debug, Default)]
pub struct Watchers {
    next: u64,
    wakers: std::collections::BTreeMap<u64, std::task::Waker>,
}

/// A wait until the partition no longer leads at `epoch`.
struct RoleChange<'a> {
    p: &'a ReplicatedPartition,
    epoch: Option<LeaderEpoch>,
    key: Option<u64>,
}

impl std::future::Future for RoleChange<'_> {
    type Output = ();

    fn poll(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<()> {
        let this = &mut *self;
        let mut w = this.p.watchers.borrow_mut();
        if this.p.leading() != this.epoch {
            if let Some(k) = this.key.take() {
                w.wakers.remove(&k);
            }
            return std::task::Poll::Ready(());
        }
        let key = *this.key.get_or_insert_with(|| {
            w.next += 1;
            w.next
        });
        w.wakers.insert(key, cx.waker().clone());
        std::task::Poll::Pending
    }
}

impl Drop for RoleChange<'_> {
    fn drop(&mut self) {
        if let Some(k) = self.key.take() {
            if let Ok(mut w) = self.p.watchers.try_borrow_mut() {
                w.wakers.remove(&k);
            }
        }
    }
}

/// What a partition is on this broker.
#[derive(Debug, Default)]
pub enum Role {
    /// Not served: no metadata for it yet, or no leader.
    #[default]
    None,
    Leader {
        epoch: LeaderEpoch,
        /// The followers and the ISR; `None` for a single replica.
        isr: Option<isr::Leader>,
    },
    Follower {
        leader: i32,
        epoch: LeaderEpoch,
        /// Truncated to what the leader's log shares; fetching may start.
        reconciled: bool,
    },
}

/// Why a replica refuses a peer's request; each is a Kafka error code.
#[derive(Debug, thiserror::Error)]
pub enum ReplicaError {
    #[error("this broker does not lead the partition")]
    NotLeader,
    #[error("this broker does not follow the partition from that leader")]
    NotFollower,
    #[error("leader epoch {asked} is older than the current {current}")]
    FencedLeaderEpoch { asked: i32, current: i32 },
    #[error("leader epoch {asked} is newer than the known {current}")]
    UnknownLeaderEpoch { asked: i32, current: i32 },
    #[error("the ISR has {isr} members, min.insync.replicas is {needed}")]
    NotEnoughReplicas { isr: usize, needed: usize },
    #[error("offset {offset} is outside the leader's log [{log_start}, {log_end}]")]
    OutOfRange {
        offset: i64,
        log_start: i64,
        log_end: i64,
    },
    #[error(transparent)]
    Engine(#[from] EngineError),
}

impl ReplicaError {
    /// The Kafka error code a peer gets.
    pub fn code(&self) -> i16 {
        match self {
            Self::NotLeader | Self::NotFollower => 6,
            Self::FencedLeaderEpoch { .. } => 74,
            Self::UnknownLeaderEpoch { .. } => 75,
            Self::OutOfRange { .. } => 1,
            Self::NotEnoughReplicas { .. } => 19,
            Self::Engine(e) => e.kafka_code() as i16,
        }
    }
}

/// A follower's fetch, as its leader's partition receives it.
#[derive(Clone, Copy, Debug)]
pub struct FollowerFetch {
    pub replica: i32,
    pub current_leader_epoch: LeaderEpoch,
    pub fetch_offset: Offset,
    pub durable_offset: Offset,
    /// The epoch of the follower's last batch (-1: none).
    pub last_fetched_epoch: LeaderEpoch,
    pub max_bytes: usize,
}

/// A leader's answer to one partition of a follower's fetch.
#[derive(Debug)]
pub struct LeaderAnswer {
    pub chunks: Vec<Chunk>,
    pub leader_epoch: i32,
    pub high_watermark: Offset,
    pub log_start: Offset,
    pub log_end: Offset,
    /// Where the follower's last epoch ends in this log, when its log
    /// diverges (KIP-320): it truncates there before fetching on.
    pub diverging: Option<(i32, Offset)>,
}

/// Where a follower is, as its fetcher needs it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FetchPosition {
    pub leader: i32,
    pub leader_epoch: LeaderEpoch,
    pub log_end: Offset,
    pub durable: Offset,
    /// The epoch of its last batch (-1: none).
    pub last_epoch: LeaderEpoch,
    pub reconciled: bool,
}

/// What a leader told its follower with the records.
#[derive(Clone, Copy, Debug)]
pub struct LeaderView {
    pub leader_epoch: LeaderEpoch,
    pub high_watermark: Offset,
    pub log_start: Offset,
    pub diverging: Option<(LeaderEpoch, Offset)>,
}

/// Checks `asked` against the role's epoch `current` (KIP-320).
fn check_epoch(asked: LeaderEpoch, current: LeaderEpoch) -> Result<(), ReplicaError> {
    use std::cmp::Ordering::*;
    match asked.0.cmp(&current.0) {
        Equal => Ok(()),
        Less => Err(ReplicaError::FencedLeaderEpoch {
            asked: asked.0,
            current: current.0,
        }),
        Greater => Err(ReplicaError::UnknownLeaderEpoch {
            asked: asked.0,
            current: current.0,
        }),
    }
}

impl ReplicatedPartition {
    /// Resolves once the partition no longer leads at `epoch` (`None`:
    /// once it leads at all).
    pub(crate) fn role_change(
        &self,
        epoch: Option<LeaderEpoch>,
    ) -> impl std::future::Future<Output = ()> + '_ {
        RoleChange {
            p: self,
            epoch,
            key: None,
        }
    }

    /// Sets the role and wakes whoever waits for it to change.
    fn set_role(&self, role: Role) {
        *self.role.borrow_mut() = role;
        let wakers = std::mem::take(&mut self.watchers.borrow_mut().wakers);
        for w in wakers.into_values() {
            w.wake();
        }
    }

    /// The leader epoch this broker leads the partition at, if it does.
    pub fn leading(&self) -> Option<LeaderEpoch> {
        match &*self.role.borrow() {
            Role::Leader { epoch, .. } => Some(*epoch),
            _ => None,
        }
    }

    /// The ISR as this leader last saw it committed (`None`: not leading
    /// with followers).
    pub fn isr(&self) -> Option<Vec<i32>> {
        match &*self.role.borrow() {
            Role::Leader { isr: Some(l), .. } => Some(l.isr().to_vec()),
            _ => None,
        }
    }

    /// Makes this broker the leader at `epoch`. `assignment` names the
    /// replicas and the ISR when there are followers (`None`: a single
    /// replica). Metadata for the epoch it already leads at only updates
    /// the ISR.
    pub fn become_leader(
        &self,
        epoch: LeaderEpoch,
        assignment: Option<Assignment>,
        lag_max_ms: i64,
        now_ms: i64,
    ) {
        let mut role = self.role.borrow_mut();
        if let Role::Leader {
            epoch: current,
            isr,
        } = &mut *role
        {
            if *current == epoch {
                if let (Some(l), Some(a)) = (isr, assignment) {
                    l.isr_committed(a.isr, a.partition_epoch, self.log.watermarks().durable);
                }
                return;
            }
        }
        let w = self.log.watermarks();
        let isr = assignment
            .map(|a| isr::Leader::new(a, w.log_end, w.high_watermark, lag_max_ms, now_ms));
        let tp = self.log.topic_partition();
        if isr.is_some() {
            self.log.set_commit_mode(CommitMode::Replicated);
            tracing::info!(partition = %tp, epoch = epoch.0, "leading");
        } else {
            // A single replica: nothing for anyone to watch.
            self.log.set_commit_mode(CommitMode::Durable);
            tracing::debug!(partition = %tp, epoch = epoch.0, "leading, a single replica");
        }
        drop(role);
        self.set_role(Role::Leader { epoch, isr });
    }

    /// Makes this broker a follower of `leader` at `epoch`; it reconciles
    /// with the leader's log before fetching.
    pub fn become_follower(&self, leader: i32, epoch: LeaderEpoch) {
        let role = self.role.borrow();
        if let Role::Follower {
            leader: l,
            epoch: e,
            ..
        } = &*role
        {
            if *l == leader && *e == epoch {
                return;
            }
        }
        self.log.set_commit_mode(CommitMode::Replicated);
        tracing::info!(partition = %self.log.topic_partition(), leader, epoch = epoch.0, "following");
        drop(role);
        self.set_role(Role::Follower {
            leader,
            epoch,
            reconciled: false,
        });
    }

    /// Serves nothing (no leader in the metadata, or no longer a replica).
    pub fn step_down(&self) {
        if !matches!(*self.role.borrow(), Role::None) {
            self.set_role(Role::None);
        }
    }

    /// Answers a follower's fetch of this partition (module docs).
    pub async fn serve_follower(
        &self,
        f: FollowerFetch,
        now_ms: i64,
    ) -> Result<LeaderAnswer, ReplicaError> {
        let epoch = self.leading().ok_or(ReplicaError::NotLeader)?;
        check_epoch(f.current_leader_epoch, epoch)?;
        let w = self.log.watermarks();
        if f.fetch_offset > w.log_end || f.fetch_offset < w.log_start {
            return Err(ReplicaError::OutOfRange {
                offset: f.fetch_offset.0,
                log_start: w.log_start.0,
                log_end: w.log_end.0,
            });
        }
        let diverging = self.divergence(f.last_fetched_epoch, f.fetch_offset);
        if diverging.is_none() {
            self.follower_fetched(&f, now_ms)?;
        }
        let chunks = match diverging {
            Some(_) => Vec::new(),
            None => {
                let opts = ReadOptions {
                    max_bytes: f.max_bytes,
                    min_one: true,
                    upper: ReadUpper::Written,
                };
                self.log.read(f.fetch_offset, opts).await?.chunks
            }
        };
        let w = self.log.watermarks();
        Ok(LeaderAnswer {
            chunks,
            leader_epoch: epoch.0,
            high_watermark: w.high_watermark,
            log_start: w.log_start,
            log_end: w.log_end,
            diverging: diverging.map(|(e, o)| (e.0, o)),
        })
    }

    /// Where a follower whose last batch is of `last_epoch` and whose log
    /// ends at `fetch_offset` diverges from this log, if it does.
    fn divergence(
        &self,
        last_epoch: LeaderEpoch,
        fetch_offset: Offset,
    ) -> Option<(LeaderEpoch, Offset)> {
        if last_epoch.0 < 0 {
            return None;
        }
        match self.log.end_offset_for_epoch(last_epoch) {
            Some((e, end)) if e == last_epoch && end >= fetch_offset => None,
            Some((e, end)) => Some((e, end)),
            None => Some((LeaderEpoch(-1), self.log.watermarks().log_start)),
        }
    }

    /// Records a follower's position; moves the high watermark if the ISR
    /// now has more.
    fn follower_fetched(&self, f: &FollowerFetch, now_ms: i64) -> Result<(), ReplicaError> {
        let w = self.log.watermarks();
        let hw = match &mut *self.role.borrow_mut() {
            Role::Leader { isr: Some(l), .. } => l.fetched(
                f.replica,
                f.fetch_offset,
                f.durable_offset,
                w.log_end,
                w.durable,
                now_ms,
            ),
            _ => None,
        };
        if let Some(hw) = hw {
            self.log.advance_high_watermark(hw)?;
        }
        Ok(())
    }

    /// The leader's durable position moved: the high watermark may follow.
    pub fn leader_durable(&self) -> Result<(), ReplicaError> {
        let durable = self.log.watermarks().durable;
        let hw = match &mut *self.role.borrow_mut() {
            Role::Leader { isr: Some(l), .. } => l.advance(durable),
            _ => None,
        };
        if let Some(hw) = hw {
            self.log.advance_high_watermark(hw)?;
        }
        Ok(())
    }

    /// The ISR change this leader should propose now, with the leader
    /// epoch to propose it at.
    pub fn isr_change_due(&self, now_ms: i64) -> Option<(LeaderEpoch, IsrChange)> {
        match &mut *self.role.borrow_mut() {
            Role::Leader {
                epoch,
                isr: Some(l),
            } => l.isr_change_due(now_ms).map(|c| (*epoch, c)),
            _ => None,
        }
    }

    /// The coordinator refused the proposed ISR change.
    pub fn isr_refused(&self) {
        if let Role::Leader { isr: Some(l), .. } = &mut *self.role.borrow_mut() {
            l.isr_refused();
        }
    }

    /// Where `epoch` ends in this leader's log (OffsetForLeaderEpoch over
    /// the replication protocol): the largest epoch at most it and its end
    /// offset, or (-1, -1).
    pub fn epoch_end(
        &self,
        current: LeaderEpoch,
        epoch: LeaderEpoch,
    ) -> Result<(LeaderEpoch, Offset), ReplicaError> {
        let leading = self.leading().ok_or(ReplicaError::NotLeader)?;
        check_epoch(current, leading)?;
        Ok(self
            .log
            .end_offset_for_epoch(epoch)
            .unwrap_or((LeaderEpoch(-1), Offset(-1))))
    }

    /// Where this follower is, if it follows.
    pub fn fetch_position(&self) -> Option<FetchPosition> {
        let (leader, leader_epoch, reconciled) = match &*self.role.borrow() {
            Role::Follower {
                leader,
                epoch,
                reconciled,
            } => (*leader, *epoch, *reconciled),
            _ => return None,
        };
        let w = self.log.watermarks();
        Some(FetchPosition {
            leader,
            leader_epoch,
            log_end: w.log_end,
            durable: w.durable,
            last_epoch: self.log.leader_epochs().latest().unwrap_or(LeaderEpoch(-1)),
            reconciled,
        })
    }

    /// One round of reconciliation with the leader at `leader_epoch`,
    /// given its answer for this log's latest epoch (`answer_epoch` -1:
    /// the leader has none): truncates, and is reconciled when the logs
    /// agree.
    pub async fn reconcile(
        &self,
        leader_epoch: LeaderEpoch,
        answer_epoch: LeaderEpoch,
        answer_end: Offset,
    ) -> Result<(), ReplicaError> {
        if !self.follows_at(leader_epoch) {
            return Err(ReplicaError::NotFollower);
        }
        let w = self.log.watermarks();
        let answer = (answer_epoch.0 >= 0).then_some((answer_epoch, answer_end));
        let epochs = self.log.leader_epochs();
        let (to, done) = match truncation::step(&epochs, w.log_start, w.log_end, answer) {
            Step::Done(o) => (o, true),
            Step::Again(o) => (o, false),
        };
        if to < w.log_end {
            tracing::info!(
                partition = %self.log.topic_partition(),
                from = w.log_end.0,
                to = to.0,
                "truncating the suffix the leader's log does not share"
            );
            self.log.truncate_to(to).await?;
        }
        // An empty log has no epoch to ask about: nothing can diverge.
        let done = done || self.log.leader_epochs().latest().is_none();
        if done {
            if let Role::Follower {
                reconciled, epoch, ..
            } = &mut *self.role.borrow_mut()
            {
                if *epoch == leader_epoch {
                    *reconciled = true;
                }
            }
        }
        Ok(())
    }

    fn follows_at(&self, leader_epoch: LeaderEpoch) -> bool {
        matches!(&*self.role.borrow(), Role::Follower { epoch, .. } if *epoch == leader_epoch)
    }

    /// Applies a fetch's answer for this follower: truncates where the
    /// leader says the logs diverge, else appends the records with the
    /// leader's offsets and takes the leader's high watermark up to what
    /// this log has. Returns the last offset appended, if any.
    pub async fn apply_fetched(
        &self,
        pos: &FetchPosition,
        leader: &LeaderView,
        records: Bytes,
    ) -> Result<Option<Offset>, ReplicaError> {
        if !self.follows_at(pos.leader_epoch) {
            return Ok(None);
        }
        if let Some((epoch, end)) = leader.diverging {
            self.reconcile(pos.leader_epoch, epoch, end).await?;
            return Ok(None);
        }
        let mut last = None;
        let mut rest = records;
        let now = sluice_engine::types::now_ms();
        while !rest.is_empty() {
            let len = sluice_engine::batch::BatchHeader::parse(&rest)
                .and_then(|h| h.total_len())
                .filter(|l| *l <= rest.len());
            // A record set may end inside a batch; the rest comes next time.
            let Some(len) = len else { break };
            let batch = rest.split_to(len);
            let info = self.log.append_replicated(batch, now).await?;
            last = Some(info.last_offset);
        }
        let end = self.log.watermarks().log_end;
        self.log
            .advance_high_watermark(leader.high_watermark.min(end))?;
        Ok(last)
    }
}
