//! Rolls: the close of a segment the log rolled away from, and the files of
//! the segment it rolls to — new ones, or a spare log file recycled from a
//! segment retention removed (engine/DESIGN.md, Recycled segment files).
//!
//! Invariants:
//! * one rolled segment is closed at a time, in the background; nothing
//!   written after a roll is acknowledged as durable before that close and
//!   the directory's fsync complete ([`Partition::settled`]), and
//!   truncation and close wait for them;
//! * a partition holds at most one spare; it is prepared (renamed, rounded
//!   up to whole blocks, fdatasync'ed, its index files retired) before any
//!   roll or close goes on (`Inner::preparing`);
//! * a spare is only taken from a segment no read holds, and only used by a
//!   segment based at or above `Spare::stale_below`, so recovery tells the
//!   stale batches in it by offset.

use std::rc::Rc;
use std::time::Duration;

use super::retention::{delete_later, removable, suffixed, take_out};
use super::Partition;
use crate::checkpoint;
use crate::error::{EngineError, Result};
use crate::io;
use crate::segment::{Segment, SegmentWriter};
use crate::types::Offset;

/// Suffix of the log file kept for the next roll ([`Partition::recycle`]).
pub(super) const SPARE_EXT: &str = "spare";

/// A log file taken from a segment retention removed, kept for the next
/// roll (see [`Partition::recycle`]).
pub(super) struct Spare {
    path: std::path::PathBuf,
    /// One past the last offset of the batches still in it: a segment
    /// based below this may not use it, since recovery tells its own
    /// batches from stale ones by offset.
    stale_below: Offset,
}

impl Partition {
    /// Closes a segment the log rolled away from, in the background, and
    /// makes the new segment's name durable: the flusher goes on writing
    /// the new segment meanwhile (a close is three truncations and
    /// fdatasyncs, about 1.3 ms, and the directory's fsync about 0.3 ms).
    /// Nothing written after the roll is acknowledged as durable before
    /// they complete ([`Self::settled`]); truncation and close wait for
    /// them too. A failure poisons the partition. One close runs at a time.
    pub(super) async fn close_rolled(&self, rolled: SegmentWriter) {
        let Ok(permit) = self.inner.closing.acquire_static_permit(1).await else {
            unreachable!("the closing semaphore is never closed");
        };
        let p = self.clone();
        glommio::spawn_local(async move {
            let dir = p.inner.dir.clone();
            let (closed, named) =
                futures_lite::future::zip(rolled.close(), io::sync_dir(&dir)).await;
            if let Err(e) = closed.and(named) {
                let mut st = p.inner.state.borrow_mut();
                p.fail(&mut st, &e);
            }
            drop(permit);
        })
        .detach();
    }

    /// Resolves once no rolled segment is being closed; `Err` if a close
    /// failed (the partition is poisoned).
    pub(super) fn settled(&self) -> impl std::future::Future<Output = Result<()>> + 'static {
        let inner = self.inner.clone();
        async move {
            drop(inner.closing.acquire_permit(1).await);
            match inner.state.borrow().failure {
                Some(_) => Err(EngineError::Poisoned(inner.dir.clone())),
                None => Ok(()),
            }
        }
    }

    /// The files of `seg`, the segment the log rolls to: in the spare's log
    /// file when there is one it may use ([`SegmentWriter::create_from`]),
    /// else new ones. A spare still being prepared is waited for. It is
    /// taken out of the log as soon as the log outgrows retention by its
    /// oldest segment, so the wait is long only when a segment fills faster
    /// than a rename and two fsyncs complete (tiny segments); then it keeps
    /// every roll on a reused file and the log within retention, where a
    /// new file would leave the next removable segment waiting for the
    /// spare to be used.
    pub(super) async fn create_segment(&self, seg: Rc<Segment>) -> Result<SegmentWriter> {
        drop(self.inner.preparing.acquire_permit(1).await);
        let spare = {
            let mut st = self.inner.state.borrow_mut();
            if st.failure.is_some() {
                return Err(EngineError::Poisoned(self.inner.dir.clone()));
            }
            st.spare.take()
        };
        let writer = match spare {
            Some(spare) if seg.base >= spare.stale_below => {
                let w = SegmentWriter::create_from(seg, &spare.path).await?;
                self.inner.state.borrow_mut().flush_stats.segments_recycled += 1;
                w
            }
            unusable => {
                if let Some(spare) = unusable {
                    delete_later(vec![spare.path], Duration::ZERO, &self.inner.shard.deleting);
                }
                SegmentWriter::create_unnamed(seg).await?
            }
        };
        Ok(writer)
    }

    /// Recycles a segment file, as databases recycle their log files: while
    /// the partition has no spare, after each group the flusher writes, if
    /// retention would remove the oldest segment now and no read holds it or
    /// its file, takes it out of the log (as retention does) and keeps its
    /// log file as the spare the next roll writes into. Retention's rules
    /// are the periodic check's, applied to the oldest segment as soon as
    /// they hold; each group costs a sum over the segments only when
    /// `retention.bytes` is set.
    ///
    /// The file is prepared in the background ([`Self::prepare_spare`]);
    /// a close, and a roll, wait for that.
    pub(super) fn recycle(&self) {
        let Ok(permit) = self.inner.preparing.try_acquire_static_permit(1) else {
            return;
        };
        let Some(seg) = self.take_recyclable() else {
            return;
        };
        let start = self.watermarks().log_start;
        self.inner.shard.cache.drop_below(&self.inner.cache, start);
        let p = self.clone();
        glommio::spawn_local(async move {
            let prepared = p.prepare_spare(&seg).await;
            let mut st = p.inner.state.borrow_mut();
            match prepared {
                Ok(spare) => st.spare = Some(spare),
                Err(e) => p.fail(&mut st, &e),
            }
            drop(permit);
        })
        .detach();
    }

    /// Takes the oldest segment out of the log if it may become the spare:
    /// the partition has none, is open and well, no read holds the segment
    /// and retention would remove it now.
    fn take_recyclable(&self) -> Option<Rc<Segment>> {
        let mut st = self.inner.state.borrow_mut();
        let mut bases = st.segments.keys();
        let (Some(&base), Some(&next_base)) = (bases.next(), bases.next()) else {
            return None;
        };
        let seg = st.segments[&base].clone();
        // Held by the map and here only: no read is under way in it,
        // and no response still has its file to send from.
        let unread = Rc::strong_count(&seg) == 2 && !seg.files_in_use();
        if st.spare.is_some() || st.closed || st.failure.is_some() || !unread {
            return None;
        }
        let total = if st.config.retention_bytes >= 0 {
            st.segments.values().map(|s| s.meta.borrow().size).sum()
        } else {
            0
        };
        if !removable(&st, &seg, next_base, total, st.now_ms) {
            return None;
        }
        take_out(&mut st, std::slice::from_ref(&seg));
        Some(seg)
    }

    /// Turns the log file of `seg`, just taken out of the log, into a spare:
    /// renamed `<name>.spare` (a restart that finds it removes it), its
    /// length rounded up to whole blocks and made durable before it is
    /// used, so that a rolled segment whose close a crash cut short is still
    /// a whole number of blocks long, which is how recovery tells it
    /// (`close_unfinished`). Its index files are retired as retention's
    /// are. A file no read holds is reused at once: the
    /// `file.delete.delay.ms` of the files retention deletes is a grace
    /// period for reads, which here are known to be done.
    async fn prepare_spare(&self, seg: &Rc<Segment>) -> Result<Spare> {
        let path = suffixed(&seg.log_path, SPARE_EXT);
        let (from, to) = (seg.log_path.clone(), path.clone());
        checkpoint::blocking(move || -> Result<()> {
            let io_err = |e| EngineError::io(&to, e);
            std::fs::rename(&from, &to).map_err(|e| EngineError::io(&from, e))?;
            let f = std::fs::OpenOptions::new()
                .write(true)
                .open(&to)
                .map_err(io_err)?;
            let len = f.metadata().map_err(io_err)?.len();
            f.set_len(len.next_multiple_of(io::BLOCK)).map_err(io_err)?;
            f.sync_data().map_err(io_err)
        })
        .await?;
        // The log file is gone from its place: this retires the index
        // files and makes both renames durable.
        self.remove_files(std::slice::from_ref(seg)).await?;
        Ok(Spare {
            path,
            stale_below: seg.meta.borrow().next_offset,
        })
    }
}
