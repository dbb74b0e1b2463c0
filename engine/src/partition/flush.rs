//! The flusher: group commit (engine/DESIGN.md, Durability).
//!
//! One flusher task per partition runs while there is work. It takes the
//! queued batches as a group, writes the group (one block-aligned write per
//! segment it touches, rolling segments on the way), appends the index
//! entries for it, and — when the policy wants one — fdatasyncs, writing
//! the next group while that fdatasync runs.
//!
//! Invariants:
//! * one write is in flight at a time, so the file never has a hole in
//!   front of written data; the io lock is held from one write to the next
//!   (also while the next group is prepared ahead), so no truncation or
//!   close comes between;
//! * at most one fdatasync is in flight; each is issued after its group's
//!   write completed, so it covers that group and every one before, and
//!   they complete in order;
//! * a group is durable (the durable position moves past it) once it is
//!   written under a relaxed policy, once its fdatasync and every rolled
//!   segment's close before it completed under the default one; the high
//!   watermark follows only in the default commit mode (see `watermarks`);
//! * a group's room in the shard's write buffer is given back once it is
//!   written, or the log fails.

use std::future::Future;
use std::pin::Pin;
use std::rc::Rc;
use std::task::Poll;
use std::time::{Duration, Instant};

use glommio::sync::Permit;

use super::append::Pending;
use super::{watermarks, Mark, Partition, ShardContext, State};
use crate::error::{EngineError, Result};
use crate::io::PreparedWrite;
use crate::segment::{Segment, SegmentWriter};

/// The flusher takes the next group while one is written only when at least
/// this much waits: below it the copy is short, and a group taken early
/// leaves out what arrives during the write.
pub(super) const AHEAD_BYTES_MIN: usize = 1 << 20;
/// How long the flusher lets the executor run after starting a write before
/// it prepares the next group (see [`Partition::write_last`]).
const SUBMIT_WAIT: Duration = Duration::from_micros(10);

/// An fdatasync in flight, with the written mark it makes durable.
type Syncing = (glommio::Task<Result<()>>, Mark);

/// A group of pending batches on its way to disk.
struct Work {
    group: Vec<Pending>,
    sync: bool,
    epochs: Option<String>,
    writer: Option<SegmentWriter>,
    /// The write of the group's first run, prepared while the group before
    /// was in flight.
    prepared: Option<PreparedWrite>,
    /// Taken while the group before was in flight.
    ahead: bool,
}

impl Work {
    /// One past the last batch of the run from `i` that goes to the same
    /// segment: a run is written with one write.
    fn run_end(&self, i: usize) -> usize {
        let seg = &self.group[i].segment;
        i + self.group[i..]
            .iter()
            .take_while(|p| Rc::ptr_eq(&p.segment, seg))
            .count()
    }

    /// The bytes of batches `i..j`.
    fn chunks(&self, i: usize, j: usize) -> Vec<&[u8]> {
        self.group[i..j].iter().map(|p| &p.bytes[..]).collect()
    }

    /// Gives the group's room in the shard's write buffer back.
    fn release(&self, shard: &ShardContext) {
        shard
            .write_buffer
            .signal(self.group.iter().map(|p| p.units).sum());
    }
}

/// Whether the flusher, writing to `seg`, should take the next group now
/// (see [`AHEAD_BYTES_MIN`]): it starts in `seg` and is large enough.
fn ahead_due(st: &State, seg: &Rc<Segment>) -> bool {
    st.failure.is_none()
        && st.pending_bytes >= AHEAD_BYTES_MIN
        && st
            .pending
            .front()
            .is_some_and(|p| Rc::ptr_eq(&p.segment, seg))
}

impl Partition {
    /// Starts the flusher unless it runs.
    pub(super) fn schedule_flush(&self, st: &mut State) {
        if st.flushing {
            return;
        }
        st.flushing = true;
        let p = self.clone();
        glommio::spawn_local(async move { p.flush_loop().await }).detach();
    }

    /// Writes queued groups one after the other. A group that must be
    /// fsync'ed is acknowledged when its fdatasync completes, and the next
    /// group is written while that fdatasync runs: the disk is kept busy
    /// with writes during flushes. One fdatasync is in flight at a time; each
    /// is issued after its group's write completed, so it covers that group
    /// and every group before it.
    ///
    /// One write is in flight at a time, so the file never has a hole in
    /// front of written data. While a large group is written, the next one
    /// is taken and copied into its write buffer ([`Self::write_group`]), so
    /// that it goes out as soon as the write before it completes; the io
    /// lock is held from one to the other, so no truncation or close comes
    /// between.
    async fn flush_loop(&self) {
        let mut syncing: Option<Syncing> = None;
        let mut ahead: Option<(Work, Permit<'_>)> = None;
        loop {
            let Some((mut work, permit)) = self.next_work(ahead.take()).await else {
                match syncing.take() {
                    Some((task, mark)) => {
                        let synced = task.await;
                        self.synced(mark, synced);
                        continue;
                    }
                    None => {
                        let mut st = self.inner.state.borrow_mut();
                        st.flushing = false;
                        watermarks::wake(&mut st);
                        // Its writer may be parked now, for an open that
                        // waits for room.
                        self.inner.shard.fds.notify();
                        return;
                    }
                }
            };
            let mut prepared_next = None;
            let result = self.write_group(&mut work, &mut prepared_next).await;
            let sync = work.sync;
            let Ok(mark) = self.written(work, result) else {
                if let Some(next) = prepared_next {
                    next.release(&self.inner.shard);
                }
                return;
            };
            ahead = prepared_next.map(|next| (next, permit));
            if sync {
                if let Some((task, m)) = syncing.take() {
                    let synced = task.await;
                    self.synced(m, synced);
                }
                syncing = self.start_sync(mark);
            }
        }
    }

    /// The next group to write, with the io lock: the one prepared while
    /// the group before was written, if any, else one taken off the queue
    /// once everything appended in this tick has joined it. `None` when
    /// there is nothing to do (or the partition is closed or poisoned).
    async fn next_work<'a>(
        &'a self,
        ahead: Option<(Work, Permit<'a>)>,
    ) -> Option<(Work, Permit<'a>)> {
        if let Some((mut work, permit)) = ahead {
            let mut st = self.inner.state.borrow_mut();
            if st.failure.is_none() && st.writer.is_some() {
                work.writer = st.writer.take();
                return Some((work, permit));
            }
            // Poisoned while the group before was written.
            work.release(&self.inner.shard);
        }
        // Let everything appended in this tick join the group.
        futures_lite::future::yield_now().await;
        let permit = self.inner.io_lock.acquire_permit(1).await.ok()?;
        if self.inner.state.borrow().parked.is_some() && self.unpark().await.is_err() {
            return None;
        }
        self.take_work().map(|w| (w, permit))
    }

    /// Issues the fdatasync of everything written up to `mark`; it also
    /// waits for the close of a rolled segment the group may have started
    /// in, whose tail is made durable in the background.
    fn start_sync(&self, mark: Mark) -> Option<Syncing> {
        let flush = {
            let st = self.inner.state.borrow();
            st.writer.as_ref().map(|w| w.log.sync_later())
        }?;
        let settled = self.settled();
        let both = async move {
            let (flushed, settled) = futures_lite::future::zip(flush, settled).await;
            flushed.and(settled)
        };
        Some((glommio::spawn_local(both), mark))
    }

    /// Takes the next group off the queue, with the writer. `None` when
    /// there is nothing to do (or the partition is closed or poisoned).
    fn take_work(&self) -> Option<Work> {
        let mut st = self.inner.state.borrow_mut();
        let sync_due = st.sync_requested
            || (st.unsynced_messages > 0
                && st
                    .first_unsynced
                    .is_some_and(|t| t.elapsed() >= Duration::from_millis(st.config.flush_ms)));
        // No writer: the partition was closed (a late flush.ms timer may
        // still ask for a sync) or is poisoned.
        if st.failure.is_some() || st.writer.is_none() || (st.pending.is_empty() && !sync_due) {
            return None;
        }
        let writer = st.writer.take();
        Some(self.take_group(&mut st, writer))
    }

    /// While the group before is written to `seg`: takes the next group if
    /// [`ahead_due`]. Its writer is handed over once the write before
    /// completes.
    fn take_ahead(&self, seg: &Rc<Segment>) -> Option<Work> {
        let mut st = self.inner.state.borrow_mut();
        ahead_due(&st, seg).then(|| self.take_group(&mut st, None))
    }

    /// Takes up to `write_bytes_max` of pending batches as one group, and
    /// decides whether its write is to be fdatasync'ed.
    fn take_group(&self, st: &mut State, writer: Option<SegmentWriter>) -> Work {
        let cap = self.inner.shard.write_bytes_max;
        let mut group = Vec::new();
        let mut bytes = 0usize;
        while let Some(p) = st.pending.front() {
            if !group.is_empty() && bytes + p.bytes.len() > cap {
                break;
            }
            bytes += p.bytes.len();
            group.push(st.pending.pop_front().expect("front exists"));
        }
        st.pending_bytes -= bytes;
        let records: u64 = group.iter().map(|p| p.records).sum();
        if records > 0 && st.first_unsynced.is_none() {
            st.first_unsynced = Some(Instant::now());
        }
        st.unsynced_messages += records;
        let sync = st.sync_requested
            || st.config.sync_every_append()
            || st.unsynced_messages >= st.config.flush_messages
            || st
                .first_unsynced
                .is_some_and(|t| t.elapsed() >= Duration::from_millis(st.config.flush_ms));
        st.sync_requested = false;
        if sync {
            // This group's fdatasync covers every message written so far.
            st.unsynced_messages = 0;
            st.first_unsynced = None;
        }
        let epochs = st.epochs_dirty.then(|| st.epochs.encode());
        st.epochs_dirty = false;
        Work {
            group,
            sync,
            epochs,
            writer,
            prepared: None,
            ahead: false,
        }
    }

    /// Writes a group: one write per segment it touches, rolling segments
    /// on the way, then its index entries. The fdatasync, if the policy
    /// wants one, is the flusher's next step. While the last write is in
    /// flight, the next group may be taken and its first write prepared
    /// into `next`. Returns the log's written length in the group's last
    /// segment.
    async fn write_group(&self, work: &mut Work, next: &mut Option<Work>) -> Result<u64> {
        let n = work.group.len();
        let mut i = 0;
        let mut position = 0;
        while i < n {
            let seg = work.group[i].segment.clone();
            let j = work.run_end(i);
            let mut writer = work.writer.take().expect("writer present");
            if !Rc::ptr_eq(&writer.seg, &seg) {
                let rolled =
                    std::mem::replace(&mut writer, self.create_segment(seg.clone()).await?);
                self.close_rolled(rolled).await;
            }
            // Only the group's first run is ever prepared ahead, in the
            // segment the writer was on.
            let prepared = work
                .prepared
                .take()
                .or_else(|| writer.log.prepare(&work.chunks(i, j)));
            let result = match prepared {
                Some(w) if j == n => self.write_last(&mut writer, w, next).await,
                Some(w) => writer.log.write(w).await,
                None => Ok(writer.log.len()),
            };
            let result = match result {
                Ok(end) => {
                    position = end;
                    writer
                        .persist_index_blocks(work.group[j - 1].last.next(), end)
                        .await
                }
                Err(e) => Err(e),
            };
            work.writer = Some(writer);
            result?;
            i = j;
        }
        if let Some(text) = &work.epochs {
            self.store_epochs(text.clone()).await?;
        }
        self.recycle();
        Ok(position)
    }

    /// Writes a group's last run. Once enough waits behind it in the same
    /// segment ([`ahead_due`]), the next group is taken and copied into its
    /// own write buffer while this write is in flight (a 32 MiB copy takes
    /// about 3 ms, an eighth of the write), so the flusher can issue it as
    /// soon as this one completes.
    async fn write_last(
        &self,
        writer: &mut SegmentWriter,
        w: PreparedWrite,
        next: &mut Option<Work>,
    ) -> Result<u64> {
        let mut write = glommio::spawn_local(writer.log.write(w));
        let seg = writer.seg.clone();
        let arrived = futures_lite::future::poll_fn(|cx| {
            if let Poll::Ready(r) = Pin::new(&mut write).poll(cx) {
                return Poll::Ready(Some(r));
            }
            let mut st = self.inner.state.borrow_mut();
            if ahead_due(&st, &seg) {
                return Poll::Ready(None);
            }
            st.ahead_waker = Some(cx.waker().clone());
            Poll::Pending
        })
        .await;
        if let Some(r) = arrived {
            return r;
        }
        // Let the rest of this tick's appends join, and let the executor
        // hand the write to the kernel: glommio submits queued I/O only when
        // its task queues run dry or the task queue is preempted.
        glommio::timer::sleep(SUBMIT_WAIT).await;
        if let Some(mut work) = self.take_ahead(&seg) {
            let prepared = writer.log.prepare(&work.chunks(0, work.run_end(0)));
            work.prepared = prepared;
            work.ahead = true;
            *next = Some(work);
        }
        write.await
    }

    /// After a group's write: the written mark moves; under a relaxed
    /// policy the group is durable (acknowledged by the policy) now. Returns the written mark, or
    /// `Err` when the partition is now poisoned.
    fn written(&self, work: Work, result: Result<u64>) -> std::result::Result<Mark, ()> {
        let mut st = self.inner.state.borrow_mut();
        work.release(&self.inner.shard);
        let position = match result {
            Ok(position) => position,
            Err(e) => {
                self.fail(&mut st, &e);
                return Err(());
            }
        };
        let writer = work.writer.expect("writer present");
        st.flush_stats.groups += 1;
        st.flush_stats.prepared_ahead += u64::from(work.ahead);
        if let Some(last) = work.group.last() {
            st.written = Mark {
                offset: last.last.next(),
                segment: writer.seg.base,
                position,
            };
        }
        st.writer = Some(writer);
        self.touch_writer();
        if !st.config.sync_every_append() {
            // Acknowledged once written (see engine/DESIGN.md, Durability).
            let written = st.written;
            st.make_durable(written);
        } else {
            st.check_positions();
        }
        watermarks::wake(&mut st);
        self.arm_sync_timer(&mut st);
        Ok(st.written)
    }

    /// Under `flush.ms`: asks for an fdatasync `flush.ms` after messages
    /// were left unsynced, unless a timer already will.
    fn arm_sync_timer(&self, st: &mut State) {
        if st.unsynced_messages == 0 || st.sync_timer || st.config.flush_ms >= i64::MAX as u64 {
            return;
        }
        st.sync_timer = true;
        let delay = Duration::from_millis(st.config.flush_ms);
        let p = self.clone();
        glommio::spawn_local(async move {
            glommio::timer::sleep(delay).await;
            let mut st = p.inner.state.borrow_mut();
            st.sync_timer = false;
            if st.unsynced_messages > 0 {
                st.sync_requested = true;
                p.schedule_flush(&mut st);
            }
        })
        .detach();
    }

    /// After an fdatasync issued once everything up to `mark` was written:
    /// that much is durable.
    fn synced(&self, mark: Mark, result: Result<()>) {
        let mut st = self.inner.state.borrow_mut();
        if let Err(e) = result {
            self.fail(&mut st, &e);
            return;
        }
        // A truncation since may have cut below the mark.
        let mark = if mark.offset > st.written.offset {
            st.written
        } else {
            mark
        };
        st.synced = st.synced.max(mark.offset);
        st.make_durable(mark);
        watermarks::wake(&mut st);
    }

    /// Writes and fsyncs everything appended so far, whatever the policy.
    pub async fn flush(&self) -> Result<()> {
        let target = {
            let mut st = self.inner.state.borrow_mut();
            if st.failure.is_some() {
                return Err(EngineError::Poisoned(self.inner.dir.clone()));
            }
            if st.closed {
                return Err(EngineError::Closed);
            }
            if st.synced >= st.log_end {
                return Ok(());
            }
            st.sync_requested = true;
            self.schedule_flush(&mut st);
            st.log_end
        };
        let inner = self.inner.clone();
        futures_lite::future::poll_fn(move |cx| {
            let mut st = inner.state.borrow_mut();
            if st.failure.is_some() {
                return Poll::Ready(Err(EngineError::Poisoned(inner.dir.clone())));
            }
            if st.synced >= target {
                return Poll::Ready(Ok(()));
            }
            if st.log_end < target {
                return Poll::Ready(Err(EngineError::Truncated));
            }
            st.sync_waiters.push(cx.waker().clone());
            Poll::Pending
        })
        .await
    }
}
