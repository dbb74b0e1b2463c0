//! Appends: a batch is validated, checked against the idempotent producers,
//! given its offsets, indexed in memory, put in the tail cache and queued
//! for the flusher, all without waiting for I/O.
//!
//! Invariants:
//! * the producer check, the offset assignment and the queueing happen in
//!   one borrow of the state, so the appends and checks of a partition are
//!   totally ordered and offsets are contiguous: a batch's base offset is
//!   the log end before it;
//! * a batch goes to the active segment, or to a new one rolled at its base
//!   offset; its position in the segment (`SegmentMeta::size` before it) is
//!   where the flusher writes it;
//! * every queued batch holds `units` of the shard's write buffer until it
//!   is written or the log fails (a duplicate gives its room back at once).

use std::rc::Rc;

use bytes::{Bytes, BytesMut};

use super::{flush, watermarks, AppendInfo, Mark, Partition, State};
use crate::batch::{self, BatchHeader, TimestampType};
use crate::cache::Cached;
use crate::error::{EngineError, Result};
use crate::producers::Verdict;
use crate::segment::Segment;
use crate::types::{LeaderEpoch, Offset};

/// A batch appended and not yet taken by the flusher.
pub(super) struct Pending {
    pub(super) segment: Rc<Segment>,
    pub(super) bytes: Bytes,
    pub(super) last: Offset,
    pub(super) records: u64,
    /// Its room in the shard's write buffer.
    pub(super) units: u64,
}

impl Partition {
    /// Validates and appends one batch produced by a client, assigning its
    /// offsets. Returns once the batch is queued for writing; await
    /// [`Partition::wait_durable`] with its last offset for durability,
    /// [`Partition::wait_acked`] for commitment.
    pub async fn append(
        &self,
        batch: BytesMut,
        leader_epoch: LeaderEpoch,
        now_ms: i64,
    ) -> Result<AppendInfo> {
        let (limits, ts_type) = {
            let st = self.inner.state.borrow();
            self.check_usable(&st)?;
            (st.config.limits(), st.config.timestamp_type)
        };
        let header = batch::validate(&batch, &limits, now_ms)?;
        let ctx = &self.inner.shard;
        let units = (batch.len() as u64).min(ctx.write_buffer_bytes_max);
        ctx.write_buffer
            .acquire(units)
            .await
            .map_err(|_| EngineError::Closed)?;
        let mut st = self.inner.state.borrow_mut();
        if let Some(duplicate) = self.admit(&st, &header, units)? {
            return Ok(duplicate);
        }
        let base = st.log_end;
        let (bytes, log_append_time) = stamp(batch, base, leader_epoch, ts_type, now_ms);
        let last = Offset(base.0 + i64::from(header.last_offset_delta));
        st.now_ms = st.now_ms.max(now_ms);
        let segment = self.segment_for(&mut st, base, last, bytes.len() as u64, now_ms);
        let end = note_batch(&mut st, &segment, &bytes, leader_epoch, base);
        st.ends.push(Mark {
            offset: last.next(),
            segment: segment.base,
            position: end,
        });
        ctx.cache.insert(
            &self.inner.cache,
            Cached {
                base,
                last,
                bytes: bytes.clone(),
            },
        );
        self.enqueue(
            &mut st,
            Pending {
                segment,
                bytes,
                last,
                records: header.records_count as u64,
                units,
            },
        );
        Ok(AppendInfo {
            base_offset: base,
            last_offset: last,
            log_append_time,
            log_start: st.log_start,
        })
    }

    /// Appends a batch copied from the partition's leader, with the offsets
    /// and leader epoch the leader gave it (a follower's append). It is
    /// checked as it lies in the leader's log (frame, CRC, counts), not
    /// against this broker's clock, limits or idempotent producers (the
    /// leader applied those; the producer state is still recorded, so a
    /// follower that becomes leader knows it); it must start at the log
    /// end. Await [`Partition::wait_durable`] with its last offset.
    pub async fn append_replicated(&self, batch: Bytes, now_ms: i64) -> Result<AppendInfo> {
        self.check_usable(&self.inner.state.borrow())?;
        let header = batch::check_stored(&batch)?;
        let ctx = &self.inner.shard;
        let units = (batch.len() as u64).min(ctx.write_buffer_bytes_max);
        ctx.write_buffer
            .acquire(units)
            .await
            .map_err(|_| EngineError::Closed)?;
        let mut st = self.inner.state.borrow_mut();
        let base = st.log_end;
        if let Err(e) = self.check_usable(&st) {
            ctx.write_buffer.signal(units);
            return Err(e);
        }
        if header.base_offset != base.0 {
            ctx.write_buffer.signal(units);
            return Err(EngineError::NotAtLogEnd {
                base_offset: header.base_offset,
                log_end: base,
            });
        }
        let last = Offset(header.last_offset());
        let epoch = LeaderEpoch(header.partition_leader_epoch);
        st.now_ms = st.now_ms.max(now_ms);
        let segment = self.segment_for(&mut st, base, last, batch.len() as u64, now_ms);
        let end = note_batch(&mut st, &segment, &batch, epoch, base);
        st.ends.push(Mark {
            offset: last.next(),
            segment: segment.base,
            position: end,
        });
        ctx.cache.insert(
            &self.inner.cache,
            Cached {
                base,
                last,
                bytes: batch.clone(),
            },
        );
        self.enqueue(
            &mut st,
            Pending {
                segment,
                bytes: batch,
                last,
                records: header.records_count as u64,
                units,
            },
        );
        Ok(AppendInfo {
            base_offset: base,
            last_offset: last,
            log_append_time: -1,
            log_start: st.log_start,
        })
    }

    /// Checks a batch against the partition's state and its idempotent
    /// producers. `Ok(Some(_))` answers a retry of a kept batch with its
    /// original offsets; a duplicate or a refusal gives the batch's `units`
    /// of write buffer back.
    fn admit(&self, st: &State, header: &BatchHeader, units: u64) -> Result<Option<AppendInfo>> {
        let verdict = self
            .check_usable(st)
            .and_then(|()| Ok(st.producers.check(header)?));
        let buffer = &self.inner.shard.write_buffer;
        match verdict {
            Ok(Verdict::Append) => Ok(None),
            Ok(Verdict::Duplicate(b)) => {
                buffer.signal(units);
                Ok(Some(AppendInfo {
                    base_offset: Offset(b.first_offset),
                    last_offset: Offset(b.last_offset),
                    log_append_time: -1,
                    log_start: st.log_start,
                }))
            }
            Err(e) => {
                buffer.signal(units);
                Err(e)
            }
        }
    }

    /// The segment a batch of `len` bytes at `base..=last` goes to: the
    /// active one, or a new one at `base` when it must roll (a snapshot of
    /// the producers as of `base` is then written in the background).
    fn segment_for(
        &self,
        st: &mut State,
        base: Offset,
        last: Offset,
        len: u64,
        now_ms: i64,
    ) -> Rc<Segment> {
        let active = st.active().clone();
        let roll = st.roll_requested
            || active
                .meta
                .borrow()
                .must_roll(active.base, len, last.0, &st.config, now_ms);
        if !roll {
            return active;
        }
        // The producers as they are after every batch below `base`.
        let snapshot = st.producers.encode_snapshot(base.0);
        self.schedule_snapshot(base, snapshot, st.truncations);
        let seg = Rc::new(Segment::new(
            &self.inner.dir,
            base,
            &st.config,
            now_ms,
            &self.inner.shard.fds,
        ));
        st.segments.insert(base, seg.clone());
        st.roll_requested = false;
        seg
    }

    /// Queues a batch for the flusher; the log end moves past it.
    fn enqueue(&self, st: &mut State, p: Pending) {
        st.log_end = p.last.next();
        watermarks::wake_log_end(st);
        debug_assert!(st.positions_hold());
        st.pending_bytes += p.bytes.len();
        st.pending.push_back(p);
        // Only appends make a next group due (`ahead_due`).
        if st.pending_bytes >= flush::AHEAD_BYTES_MIN {
            if let Some(w) = st.ahead_waker.take() {
                w.wake();
            }
        }
        self.schedule_flush(st);
    }
}

/// Gives a validated batch its offsets from `base`, its leader epoch and,
/// for a LogAppendTime topic, the append time. Returns the stored bytes and
/// the append time (-1 unless LogAppendTime).
fn stamp(
    mut batch: BytesMut,
    base: Offset,
    leader_epoch: LeaderEpoch,
    ts_type: TimestampType,
    now_ms: i64,
) -> (Bytes, i64) {
    batch::assign(&mut batch, base.0, leader_epoch.0);
    let log_append_time = if ts_type == TimestampType::LogAppendTime {
        batch::set_log_append_time(&mut batch, now_ms);
        now_ms
    } else {
        -1
    };
    (batch.freeze(), log_append_time)
}

/// Accounts for a stored batch at the end of `segment`: its producer, its
/// index entries, its leader epoch. Returns the position where it ends.
fn note_batch(
    st: &mut State,
    segment: &Segment,
    bytes: &Bytes,
    leader_epoch: LeaderEpoch,
    base: Offset,
) -> u64 {
    let stored = BatchHeader::parse(bytes).expect("validated");
    st.producers.record(&stored);
    let end = {
        let mut m = segment.meta.borrow_mut();
        let position = m.size;
        m.note_batch(
            segment.base,
            position,
            &stored,
            bytes.len() as u64,
            st.config.index_interval_bytes,
        );
        position + bytes.len() as u64
    };
    if st.epochs.assign(leader_epoch, base) {
        st.epochs_dirty = true;
    }
    end
}
