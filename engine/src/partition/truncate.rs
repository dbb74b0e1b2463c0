//! Truncation: a follower cutting a divergent suffix off its log.
//!
//! Invariants:
//! * a truncation runs with the io lock held, after a flush and once no
//!   rolled segment is being closed: nothing is in flight;
//! * the log end becomes the base offset of the first batch removed; the
//!   written mark, and the durable position and the high watermark where
//!   they were at or above it, move to that batch boundary — a follower's
//!   high watermark is what its leader last told it, and Kafka lowers it
//!   to the log end on truncation too; offsets never go back below the log
//!   start (the log restarts empty there instead, as Kafka's
//!   `truncateFullyAndStartAt`);
//! * the segment holding the cut becomes the active one, its files cut and
//!   fdatasync'ed, its in-memory indexes and largest timestamp those of the
//!   batches left; later segments leave the log as retention's do;
//! * producer state forgets the batches cut off, leader epochs start at or
//!   below the new end, and snapshots above it are deleted.
//!
//! Any failure poisons the log.

use std::rc::Rc;

use super::{watermarks, Mark, Partition};
use crate::error::Result;
use crate::segment::{Segment, SegmentWriter};
use crate::types::Offset;

impl Partition {
    /// Removes every batch whose last offset is at or after `offset`
    /// (a follower truncating a divergent suffix). The log end becomes the
    /// base offset of the first batch removed.
    pub async fn truncate_to(&self, offset: Offset) -> Result<()> {
        self.flush().await?;
        let _permit = self.lock_io().await?;
        self.settled().await?;
        let mut result = self.truncate_locked(offset).await;
        if result.is_ok() {
            // Producer state forgets the batches cut off; snapshots of it
            // above the new end are stale.
            let end = {
                let mut st = self.inner.state.borrow_mut();
                let end = st.log_end;
                st.producers.truncate_from(end.0);
                st.truncations += 1;
                end
            };
            result = self.remove_snapshots_above(end).await;
        }
        if let Err(e) = &result {
            self.poison(e);
        }
        result
    }

    async fn truncate_locked(&self, offset: Offset) -> Result<()> {
        let (segments, log_end) = {
            let st = self.inner.state.borrow();
            self.check_usable(&st)?;
            (
                st.segments.values().cloned().collect::<Vec<_>>(),
                st.log_end,
            )
        };
        if offset >= log_end {
            return Ok(());
        }
        self.unpark().await?;
        // The segment holding the cut, and those after it.
        let keep_idx = segments.iter().rposition(|s| s.base <= offset).unwrap_or(0);
        let seg = segments[keep_idx].clone();
        let size = seg.meta.borrow().size;
        let (cut, new_end) = match seg.find(offset, size).await? {
            Some((pos, h)) => (pos, Offset(h.base_offset)),
            None => (size, seg.meta.borrow().next_offset),
        };
        let log_start = self.inner.state.borrow().log_start;
        if new_end < log_start {
            // Offsets never go back below the log start: nothing at or past
            // it is left, so start over there (Kafka's truncateFullyAndStartAt).
            return self.restart_at(log_start, segments).await;
        }
        let mut writer = self.writer_at(&seg).await?;
        cut_meta(&seg, cut, new_end);
        rescan_max_timestamp(&seg, cut).await?;
        writer.log.truncate(cut).await?;
        let (ix_n, tx_n) = {
            let m = seg.meta.borrow();
            (m.index.persisted(), m.time_index.persisted())
        };
        writer.index.truncate((ix_n * 8) as u64).await?;
        writer.time_index.truncate((tx_n * 12) as u64).await?;
        let removed: Vec<Rc<Segment>> = segments[keep_idx + 1..].to_vec();
        let text = {
            let mut st = self.inner.state.borrow_mut();
            for s in &removed {
                st.segments.remove(&s.base);
            }
            st.truncated_to(Mark {
                offset: new_end,
                segment: seg.base,
                position: cut,
            });
            st.epochs.truncate_from(new_end);
            st.writer = Some(writer);
            watermarks::wake(&mut st);
            st.epochs.encode()
        };
        self.inner.shard.cache.truncate(&self.inner.cache, new_end);
        self.remove_files(&removed).await?;
        self.store_epochs(text).await
    }

    /// The writer of `seg`, the segment holding the cut, taken from the
    /// state: the active one's, or the cut is in an older segment, which
    /// becomes active again (the newer ones are dropped).
    async fn writer_at(&self, seg: &Rc<Segment>) -> Result<SegmentWriter> {
        let writer = self
            .inner
            .state
            .borrow_mut()
            .writer
            .take()
            .expect("writer checked in");
        if Rc::ptr_eq(&writer.seg, seg) {
            return Ok(writer);
        }
        drop(writer);
        SegmentWriter::reopen(seg.clone()).await
    }

    /// Replaces every segment with one empty segment at `start`.
    async fn restart_at(&self, start: Offset, old: Vec<Rc<Segment>>) -> Result<()> {
        let config = self.inner.state.borrow().config.clone();
        let seg = Rc::new(Segment::new(
            &self.inner.dir,
            start,
            &config,
            crate::types::now_ms(),
            &self.inner.shard.fds,
        ));
        {
            let mut st = self.inner.state.borrow_mut();
            drop(st.writer.take());
            st.parked = None;
        }
        self.remove_files(&old).await?;
        let writer = SegmentWriter::create(seg.clone(), &self.inner.dir).await?;
        let text = {
            let mut st = self.inner.state.borrow_mut();
            st.segments.clear();
            st.segments.insert(start, seg);
            st.truncated_to(Mark {
                offset: start,
                segment: start,
                position: 0,
            });
            // The new segment is empty, and its name durable.
            st.synced = start;
            st.epochs.truncate_from(start);
            st.writer = Some(writer);
            watermarks::wake(&mut st);
            st.epochs.encode()
        };
        self.inner.shard.cache.clear(&self.inner.cache);
        self.store_epochs(text).await
    }
}

/// Cuts the in-memory view of `seg` at byte `cut`, the start of the batch
/// based at `new_end` (or the segment's end): its indexes, size, next
/// offset, corrupt ranges and verified part. Its largest timestamp becomes
/// the last time index entry's; [`rescan_max_timestamp`] adds the batches
/// after the last offset index entry.
fn cut_meta(seg: &Segment, cut: u64, new_end: Offset) {
    let mut m = seg.meta.borrow_mut();
    m.index.truncate_where(|e| u64::from(e.position) < cut);
    let rel = u32::try_from(new_end.0 - seg.base.0).unwrap_or(u32::MAX);
    m.time_index.truncate_where(|e| e.relative_offset < rel);
    m.size = cut;
    m.next_offset = new_end;
    m.closed = false;
    m.corrupt.retain(|r| r.start < cut);
    for r in &mut m.corrupt {
        r.end = r.end.min(cut);
    }
    m.verify_end = m.verify_end.min(cut);
    let (ts, off) = m.time_index.last().map_or((-1, seg.base), |t| {
        (
            t.timestamp,
            Offset(seg.base.0 + i64::from(t.relative_offset)),
        )
    });
    m.max_timestamp = ts;
    m.offset_of_max_timestamp = off;
    m.bytes_since_index = 0;
}

/// Batches after the last index entry left are not in the time index:
/// reads their headers, up to `cut`, for the largest timestamp, and counts
/// their bytes since the last index entry.
async fn rescan_max_timestamp(seg: &Rc<Segment>, cut: u64) -> Result<()> {
    let mut pos = seg
        .meta
        .borrow()
        .index
        .last()
        .map_or(0, |e| u64::from(e.position));
    while pos < cut {
        let Some(h) = seg.header_at(pos).await? else {
            break;
        };
        let len = h.total_len().unwrap_or(usize::MAX) as u64;
        let mut m = seg.meta.borrow_mut();
        if h.max_timestamp > m.max_timestamp {
            m.max_timestamp = h.max_timestamp;
            m.offset_of_max_timestamp = Offset(h.last_offset());
        }
        m.bytes_since_index += len;
        pos = pos.saturating_add(len);
    }
    Ok(())
}
