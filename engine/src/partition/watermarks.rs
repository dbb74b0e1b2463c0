//! The positions of a partition's log, how the high watermark moves, and
//! the waits on them.
//!
//! ## Positions
//! `log_start ≤ high_watermark ≤ durable ≤ written ≤ log_end`, each a
//! [`Mark`] (an offset, and the byte position in its segment where the
//! batch at that offset starts) except the two ends:
//! * `written`: everything below is in the segment files;
//! * `durable`: everything below is acknowledged by the flush policy:
//!   fdatasync'ed under the default (`flush.messages=1`), written under a
//!   relaxed one. Producers with `acks=1`, and a leader's own copy, wait for
//!   it ([`Partition::wait_durable`]);
//! * `high_watermark`: committed. Consumers read below it
//!   ([`ReadUpper::HighWatermark`](super::ReadUpper)), retention and
//!   DeleteRecords stay below it, and producers with `acks=all` wait for
//!   it ([`Partition::wait_acked`]).
//!
//! Under [`CommitMode::Durable`] (a single replica, the default) the high
//! watermark is the durable position, moved in the same step. Under
//! [`CommitMode::Replicated`] it moves only when the replication layer
//! says every in-sync replica holds the data
//! ([`Partition::advance_high_watermark`]), and never past the durable
//! position: a leader never counts as committed what its own flush policy
//! has not acknowledged. It never moves back, except by truncation: a follower truncating
//! its log lowers its high watermark to the new log end (Kafka does the
//! same; a follower's high watermark is only what its leader last told it).
//!
//! ## Finding the byte position of an offset
//! The high watermark's mark says where reads stop. Appends know where each
//! batch ends, so the state keeps the ends of the batches above the high
//! watermark ([`BatchEnds`]) and an advance takes its mark from there,
//! without I/O. Their number is bounded ([`BATCH_ENDS_MAX`]): beyond it
//! every other end is dropped, so while followers lag by more batches than
//! that, the high watermark moves to the latest end kept at or below the
//! offset asked for — always a batch boundary, sometimes an earlier one —
//! and to the durable position itself once they reach it.
//!
//! ## Waits
//! Every step that moves a position, truncates, fails or closes the log
//! calls [`wake`] with the state borrowed, so no wait misses the change it
//! waits for. A waiter whose condition holds leaves the tables when it is
//! woken; a high watermark wait also leaves them when it is dropped.

use std::collections::{BTreeMap, VecDeque};
use std::future::Future;
use std::rc::Rc;
use std::task::{Poll, Waker};

use super::{Inner, Mark, Partition, State};
use crate::error::{EngineError, Result};
use crate::types::Offset;

/// How a partition's high watermark moves.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum CommitMode {
    /// A single replica: the high watermark is the durable position.
    #[default]
    Durable,
    /// Replicated: the high watermark moves only by
    /// [`Partition::advance_high_watermark`], never past the durable
    /// position.
    Replicated,
}

/// The most batch ends kept above the high watermark, per partition
/// (24 bytes each).
pub(super) const BATCH_ENDS_MAX: usize = 1024;
const _: () = assert!(BATCH_ENDS_MAX % 2 == 0 && BATCH_ENDS_MAX >= 2);

/// The ends of batches above the high watermark, ascending by offset: each
/// is the mark of the batch boundary after a batch (its last offset + 1,
/// the segment it is in, the position where it ends). At most
/// [`BATCH_ENDS_MAX`]; when full, every other one is dropped, newest kept.
#[derive(Debug, Default)]
pub(super) struct BatchEnds {
    ends: VecDeque<Mark>,
}

impl BatchEnds {
    /// Notes the end of a batch just appended, after every end noted.
    pub(super) fn push(&mut self, end: Mark) {
        debug_assert!(self.ends.back().is_none_or(|b| b.offset < end.offset));
        if self.ends.len() == BATCH_ENDS_MAX {
            let mut i = 0;
            self.ends.retain(|_| {
                i += 1;
                i % 2 == 0
            });
        }
        self.ends.push_back(end);
    }

    /// The latest end at or below `offset`.
    pub(super) fn floor(&self, offset: Offset) -> Option<Mark> {
        let n = self.ends.partition_point(|m| m.offset <= offset);
        n.checked_sub(1).map(|i| self.ends[i])
    }

    /// Forgets the ends at or below `offset` (the high watermark).
    pub(super) fn drop_through(&mut self, offset: Offset) {
        while self.ends.front().is_some_and(|m| m.offset <= offset) {
            self.ends.pop_front();
        }
    }

    /// Forgets the ends above `offset` (a truncation's new log end).
    pub(super) fn drop_above(&mut self, offset: Offset) {
        while self.ends.back().is_some_and(|m| m.offset > offset) {
            self.ends.pop_back();
        }
    }

    pub(super) fn len(&self) -> usize {
        self.ends.len()
    }
}

/// Which position a producer waits for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Position {
    Durable,
    Committed,
}

/// A producer waiting for `last` to be below a position.
pub(super) struct Waiter {
    on: Position,
    last: Offset,
    waker: Waker,
}

impl State {
    /// Checks `log_start ≤ high_watermark ≤ durable ≤ written ≤ log_end`
    /// and that the high watermark is the durable position under
    /// [`CommitMode::Durable`]. Called wherever they change.
    pub(super) fn check_positions(&self) {
        assert!(
            self.positions_hold(),
            "partition positions out of order: log_start {:?} high_watermark {:?} durable {:?} written {:?} log_end {:?} ({:?})",
            self.log_start,
            self.hw.offset,
            self.durable.offset,
            self.written.offset,
            self.log_end,
            self.commit,
        );
    }

    /// Whether the order [`Self::check_positions`] checks holds.
    pub(super) fn positions_hold(&self) -> bool {
        self.log_start <= self.hw.offset
            && self.hw.offset <= self.durable.offset
            && self.durable.offset <= self.written.offset
            && self.written.offset <= self.log_end
            && (self.commit == CommitMode::Replicated || self.hw.offset == self.durable.offset)
            && self.ends.len() <= BATCH_ENDS_MAX
    }

    /// The flush policy acknowledged everything below `mark`: the durable
    /// position moves forward to it and, under [`CommitMode::Durable`],
    /// the high watermark with it.
    pub(super) fn make_durable(&mut self, mark: Mark) {
        if mark.offset > self.durable.offset {
            self.durable = mark;
        }
        if self.commit == CommitMode::Durable {
            self.commit_to(self.durable);
        }
        self.check_positions();
    }

    /// Moves the high watermark forward to `mark`, never back.
    fn commit_to(&mut self, mark: Mark) {
        if mark.offset > self.hw.offset {
            self.hw = mark;
            self.ends.drop_through(mark.offset);
        }
    }

    /// After a truncation whose new log end is the batch boundary at
    /// `mark`: every position at or above it comes down to it.
    pub(super) fn truncated_to(&mut self, mark: Mark) {
        self.log_end = mark.offset;
        self.written = mark;
        if self.durable.offset >= mark.offset {
            self.durable = mark;
        }
        if self.hw.offset >= mark.offset {
            self.hw = mark;
        }
        self.ends.drop_above(mark.offset);
        self.synced = self.synced.min(mark.offset);
        self.log_start = self.log_start.min(mark.offset);
        self.check_positions();
    }

    fn position(&self, on: Position) -> Offset {
        match on {
            Position::Durable => self.durable.offset,
            Position::Committed => self.hw.offset,
        }
    }
}

/// The position a [`PositionWait`] waits on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Watch {
    /// Consumers' long polls.
    HighWatermark,
    /// Followers' long polls: anything written past their offset.
    LogEnd,
}

/// A wait for the high watermark or the log end to pass an offset, from
/// [`Partition::wait_high_watermark_above`] and
/// [`Partition::wait_log_end_above`]. Each keeps one entry in its table
/// while it waits and removes it when dropped, so the tables hold only
/// live waits.
pub struct PositionWait {
    inner: Rc<Inner>,
    offset: Offset,
    watch: Watch,
    key: Option<u64>,
}

/// A wait for the high watermark (the name consumers of it know).
pub type HighWatermarkWait = PositionWait;

impl PositionWait {
    fn table(st: &mut State, watch: Watch) -> &mut BTreeMap<u64, Waker> {
        match watch {
            Watch::HighWatermark => &mut st.hw_waiters,
            Watch::LogEnd => &mut st.end_waiters,
        }
    }
}

impl Future for PositionWait {
    type Output = ();

    fn poll(mut self: std::pin::Pin<&mut Self>, cx: &mut std::task::Context<'_>) -> Poll<()> {
        let this = &mut *self;
        let mut st = this.inner.state.borrow_mut();
        let position = match this.watch {
            Watch::HighWatermark => st.hw.offset,
            Watch::LogEnd => st.log_end,
        };
        if position > this.offset || st.failure.is_some() || st.closed {
            if let Some(k) = this.key.take() {
                Self::table(&mut st, this.watch).remove(&k);
            }
            return Poll::Ready(());
        }
        let key = *this.key.get_or_insert_with(|| {
            st.hw_waiter_next += 1;
            st.hw_waiter_next
        });
        Self::table(&mut st, this.watch).insert(key, cx.waker().clone());
        Poll::Pending
    }
}

impl Drop for PositionWait {
    fn drop(&mut self) {
        if let Some(k) = self.key.take() {
            if let Ok(mut st) = self.inner.state.try_borrow_mut() {
                Self::table(&mut st, self.watch).remove(&k);
            }
        }
    }
}

/// Wakes the followers waiting for the log end to grow (an append).
pub(super) fn wake_log_end(st: &mut State) {
    for w in std::mem::take(&mut st.end_waiters).into_values() {
        w.wake();
    }
}

/// Wakes the waits whose position may have moved: flushes, high watermark
/// waits when the high watermark moved, producers whose position passed
/// their batch or whose batch was truncated away; everything once the log
/// failed or closed.
pub(super) fn wake(st: &mut State) {
    for w in st.sync_waiters.drain(..) {
        w.wake();
    }
    let ended = st.failure.is_some() || st.closed;
    if ended || st.hw.offset != st.hw_announced {
        st.hw_announced = st.hw.offset;
        for w in std::mem::take(&mut st.hw_waiters).into_values() {
            w.wake();
        }
    }
    if ended {
        wake_log_end(st);
    }
    let (durable, hw, end) = (st.durable.offset, st.hw.offset, st.log_end);
    st.waiters.retain(|w| {
        let passed = match w.on {
            Position::Durable => w.last < durable,
            Position::Committed => w.last < hw,
        };
        let done = ended || passed || w.last >= end;
        if done {
            w.waker.wake_by_ref();
        }
        !done
    });
}

impl Partition {
    /// Resolves when offset `last` is committed (below the high watermark):
    /// what a produce request with `acks=all` waits for. Under
    /// [`CommitMode::Durable`] that is [`Self::wait_durable`]. Fails if the
    /// partition is poisoned or closes first, or the offset was truncated
    /// away.
    pub fn wait_acked(&self, last: Offset) -> impl Future<Output = Result<()>> {
        self.wait_for(Position::Committed, last)
    }

    /// Resolves when offset `last` is durable (acknowledged by the flush
    /// policy): what a produce request with `acks=1` waits for, and a
    /// leader for its own copy. Fails as [`Self::wait_acked`] does.
    pub fn wait_durable(&self, last: Offset) -> impl Future<Output = Result<()>> {
        self.wait_for(Position::Durable, last)
    }

    fn wait_for(&self, on: Position, last: Offset) -> impl Future<Output = Result<()>> {
        let inner = self.inner.clone();
        futures_lite::future::poll_fn(move |cx| {
            let mut st = inner.state.borrow_mut();
            if st.failure.is_some() {
                return Poll::Ready(Err(EngineError::Poisoned(inner.dir.clone())));
            }
            if st.position(on) > last {
                return Poll::Ready(Ok(()));
            }
            if st.log_end <= last {
                return Poll::Ready(Err(EngineError::Truncated));
            }
            if st.closed && st.pending.is_empty() && !st.flushing {
                return Poll::Ready(Err(EngineError::Closed));
            }
            st.waiters.push(Waiter {
                on,
                last,
                waker: cx.waker().clone(),
            });
            Poll::Pending
        })
    }

    /// Resolves once the high watermark is above `offset` (a read from
    /// `offset` would return data), or the partition fails or closes.
    /// Nothing polls: whatever moves the high watermark wakes it.
    pub fn wait_high_watermark_above(&self, offset: Offset) -> HighWatermarkWait {
        PositionWait {
            inner: self.inner.clone(),
            offset,
            watch: Watch::HighWatermark,
            key: None,
        }
    }

    /// Resolves once the log end is above `offset` (a follower's read from
    /// `offset` would return data), or the partition fails or closes.
    /// Appends wake it.
    pub fn wait_log_end_above(&self, offset: Offset) -> PositionWait {
        PositionWait {
            inner: self.inner.clone(),
            offset,
            watch: Watch::LogEnd,
            key: None,
        }
    }

    pub fn commit_mode(&self) -> CommitMode {
        self.inner.state.borrow().commit
    }

    /// Sets how the high watermark moves. Entering
    /// [`CommitMode::Replicated`] leaves it where it is (at the durable
    /// position); entering [`CommitMode::Durable`] moves it up to the
    /// durable position.
    pub fn set_commit_mode(&self, mode: CommitMode) {
        let mut st = self.inner.state.borrow_mut();
        st.commit = mode;
        if mode == CommitMode::Durable {
            let durable = st.durable;
            st.commit_to(durable);
        }
        st.check_positions();
        wake(&mut st);
    }

    /// Under [`CommitMode::Replicated`]: moves the high watermark forward to
    /// `offset`, a batch boundary every in-sync replica holds (a batch's
    /// last offset + 1, or the log end), and returns the new high
    /// watermark. It never passes the durable position (it stops there)
    /// and never moves back. The partition keeps the ends of up to
    /// `BATCH_ENDS_MAX` (1024) batches above the high watermark (every other one dropped beyond
    /// that); an offset not among them moves it to the latest one kept
    /// below it, still a batch boundary. Under [`CommitMode::Durable`]
    /// nothing changes: the high watermark is already the durable
    /// position. Fails if the partition refuses service (poisoned, closed,
    /// its directory offline).
    pub fn advance_high_watermark(&self, offset: Offset) -> Result<Offset> {
        let mut st = self.inner.state.borrow_mut();
        self.check_usable(&st)?;
        if st.commit == CommitMode::Replicated {
            let mark = if offset >= st.durable.offset {
                Some(st.durable)
            } else {
                st.ends.floor(offset)
            };
            if let Some(mark) = mark {
                st.commit_to(mark);
            }
            st.check_positions();
            wake(&mut st);
        }
        Ok(st.hw.offset)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn end(offset: i64) -> Mark {
        Mark {
            offset: Offset(offset),
            segment: Offset(0),
            position: offset as u64 * 100,
        }
    }

    #[test]
    fn batch_ends_give_the_latest_end_at_or_below_an_offset() {
        let mut ends = BatchEnds::default();
        for o in [3, 5, 9] {
            ends.push(end(o));
        }
        assert_eq!(ends.floor(Offset(2)).map(|m| m.offset), None);
        assert_eq!(ends.floor(Offset(5)).map(|m| m.offset), Some(Offset(5)));
        assert_eq!(ends.floor(Offset(8)).map(|m| m.offset), Some(Offset(5)));
        assert_eq!(ends.floor(Offset(100)).map(|m| m.offset), Some(Offset(9)));
        ends.drop_through(Offset(5));
        assert_eq!(ends.floor(Offset(8)).map(|m| m.offset), None);
        ends.drop_above(Offset(8));
        assert_eq!(ends.len(), 0);
    }

    #[test]
    fn given_more_batch_ends_than_the_bound_every_other_is_dropped_and_the_newest_kept() {
        let mut ends = BatchEnds::default();
        let n = 3 * BATCH_ENDS_MAX as i64;
        for o in 1..=n {
            ends.push(end(o));
            assert!(ends.len() <= BATCH_ENDS_MAX);
            assert_eq!(ends.floor(Offset(o)).map(|m| m.offset), Some(Offset(o)));
        }
        // Every end kept is one that was pushed, with its own position.
        for o in 1..=n {
            if let Some(m) = ends.floor(Offset(o)) {
                assert!(m.offset <= Offset(o));
                assert_eq!(m.position, m.offset.0 as u64 * 100);
            }
        }
    }
}
