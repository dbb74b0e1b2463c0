//! A partition's log: an ordered run of segments, appended to by one shard.
//!
//! ## Appends and group commit
//! [`Partition::append`] validates a batch, assigns its offsets, indexes it
//! in memory, puts it in the tail cache and queues it for the partition's
//! flusher, all without waiting for I/O. The flusher first yields once, so
//! that everything appended to the partition in the same scheduler tick
//! joins it, then writes the whole queue with one block-aligned write per
//! segment, appends the index entries for it, and — under the default
//! policy — fdatasyncs once, writing the next group while that fdatasync
//! runs. While it writes, new appends queue up and form the next group;
//! under load that group is copied into its write buffer before the write
//! in flight completes (see [`Partition::write_last`]).
//! [`Partition::wait_acked`] resolves once a batch is acknowledged.
//!
//! ## Watermarks
//! `log_start ≤ high_watermark ≤ written_end ≤ log_end`.
//! * `log_end`: next offset to assign (LEO);
//! * `written_end`: everything below is in the segment files;
//! * `high_watermark`: everything below is acknowledged: fsync'ed under the
//!   default policy (`flush.messages=1`), written under a relaxed one. On a
//!   single node this is the high watermark Kafka clients see; replication
//!   will lower it to what the in-sync replicas hold. Consumers read below it.
//! * `last_stable`: equals the high watermark until transactions exist.
//!
//! Long-poll readers wait with [`Partition::wait_high_watermark_above`]:
//! the flusher wakes them whenever it moves the high watermark.
//!
//! ## Failure
//! A failed write or fsync poisons the partition: the error is kept, every
//! waiter and every later operation fails with it, nothing is retried (the
//! kernel may already have dropped the dirty pages), and the partition's log
//! directory is marked offline.

use std::cell::RefCell;
use std::collections::{BTreeMap, VecDeque};
use std::future::Future;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::rc::Rc;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::task::{Poll, Waker};
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use glommio::sync::Semaphore;

use crate::batch::{self, TimestampType};
use crate::cache::{Cached, PartitionCache, TailCache};
use crate::checkpoint::{self, LeaderEpochs};
use crate::config::{CleanupPolicy, LogConfig};
use crate::error::{EngineError, Result};
use crate::io::{self, PreparedWrite};
use crate::producers::{self, ProducerEntry, ProducerTable, Verdict};
use crate::segment::{self, Segment, SegmentWriter};
use crate::types::{LeaderEpoch, Offset, TopicPartition};

/// A log directory (`log.dirs` entry) shared by all shards.
#[derive(Debug)]
pub struct LogDir {
    pub path: PathBuf,
    /// Partitions placed in it, across shards.
    pub partitions: std::sync::atomic::AtomicUsize,
    /// Set on the first I/O error in it; its partitions then refuse service.
    pub offline: std::sync::atomic::AtomicBool,
}

impl LogDir {
    pub fn new(path: PathBuf) -> Self {
        Self {
            path,
            partitions: 0.into(),
            offline: false.into(),
        }
    }

    pub fn is_offline(&self) -> bool {
        self.offline.load(Ordering::Acquire)
    }
}

/// Default [`ShardContext::write_bytes_max`].
pub const WRITE_BYTES_MAX: usize = 32 << 20;

/// What the partitions of one shard share.
pub struct ShardContext {
    pub cache: TailCache,
    /// Bytes appended but not yet written, across the shard's partitions
    /// (`write_buffer_bytes_max`); appends wait for room.
    pub write_buffer: Semaphore,
    pub write_buffer_bytes_max: u64,
    /// The most bytes the flusher puts in one write (and one fdatasync).
    /// Groups only grow this large when that much is waiting; each costs
    /// about 0.6 ms of CPU with no I/O in flight (bench/README.md), so large
    /// groups keep the disk busy: with 1 MiB batches, 32 MiB groups ran a
    /// median 11 % faster than 4 MiB ones (18 paired rounds, 2026-11-30).
    pub write_bytes_max: usize,
    /// Removed segment files are shrunk and deleted one at a time per
    /// shard, so that a retention pass over many partitions trims the disk
    /// no faster than one deletion does (see `remove_segment_files`).
    pub deleting: Rc<Semaphore>,
}

impl ShardContext {
    pub fn new(tail_cache_bytes_max: usize, write_buffer_bytes_max: u64) -> Self {
        Self {
            cache: TailCache::new(tail_cache_bytes_max),
            write_buffer: Semaphore::new(write_buffer_bytes_max),
            write_buffer_bytes_max,
            write_bytes_max: WRITE_BYTES_MAX,
            deleting: Rc::new(Semaphore::new(1)),
        }
    }
}

/// The offsets a partition reports.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Watermarks {
    pub log_start: Offset,
    pub log_end: Offset,
    pub high_watermark: Offset,
    pub last_stable: Offset,
}

/// What a partition's flusher has done since it was opened.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FlushStats {
    /// Groups written (each one write per segment it touches).
    pub groups: u64,
    /// Of those, groups taken and copied into their write buffer while the
    /// group before was in flight.
    pub prepared_ahead: u64,
    /// Segments rolled into the file of a segment retention removed (see
    /// [`Partition::recycle`]) rather than into a new file.
    pub segments_recycled: u64,
}

/// The result of a successful append.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AppendInfo {
    pub base_offset: Offset,
    pub last_offset: Offset,
    /// The broker's append time for LogAppendTime topics, else -1.
    pub log_append_time: i64,
    pub log_start: Offset,
}

/// How far a read may go.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ReadUpper {
    /// Consumers: acknowledged data only.
    HighWatermark,
    /// Followers: everything written.
    Written,
}

#[derive(Clone, Copy, Debug)]
pub struct ReadOptions {
    pub max_bytes: usize,
    /// Return the first batch even if it is larger than `max_bytes`
    /// (KIP-74), so that a consumer always makes progress.
    pub min_one: bool,
    pub upper: ReadUpper,
}

/// Bytes of a segment file, for `sendfile`. `Send`, so that a shard can
/// hand it to the shard that writes the response; the open descriptor
/// keeps the bytes readable even if retention deletes the file meanwhile.
#[derive(Clone, Debug)]
pub struct FileRegion {
    pub file: Arc<std::fs::File>,
    pub position: u64,
    pub len: u64,
}

/// A piece of a read.
#[derive(Clone, Debug)]
pub enum Chunk {
    Memory(Bytes),
    File(FileRegion),
}

impl Chunk {
    /// Its length in bytes.
    pub fn len(&self) -> u64 {
        match self {
            Chunk::Memory(b) => b.len() as u64,
            Chunk::File(f) => f.len,
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// The result of a read: whole batches from memory, or one region of one
/// segment file that starts at a batch boundary and may end inside a batch,
/// as Kafka's fetch responses may.
#[derive(Clone, Debug)]
pub struct ReadOutcome {
    pub chunks: Vec<Chunk>,
    pub bytes: u64,
    pub watermarks: Watermarks,
}

/// A wait for the high watermark, from
/// [`Partition::wait_high_watermark_above`].
pub struct HighWatermarkWait {
    inner: Rc<Inner>,
    offset: Offset,
    key: Option<u64>,
}

impl Future for HighWatermarkWait {
    type Output = ();

    fn poll(mut self: std::pin::Pin<&mut Self>, cx: &mut std::task::Context<'_>) -> Poll<()> {
        let this = &mut *self;
        let mut st = this.inner.state.borrow_mut();
        if st.hw.offset > this.offset || st.failure.is_some() || st.closed {
            if let Some(k) = this.key.take() {
                st.hw_waiters.remove(&k);
            }
            return Poll::Ready(());
        }
        let key = *this.key.get_or_insert_with(|| {
            st.hw_waiter_next += 1;
            st.hw_waiter_next
        });
        st.hw_waiters.insert(key, cx.waker().clone());
        Poll::Pending
    }
}

impl Drop for HighWatermarkWait {
    fn drop(&mut self) {
        if let Some(k) = self.key.take() {
            if let Ok(mut st) = self.inner.state.try_borrow_mut() {
                st.hw_waiters.remove(&k);
            }
        }
    }
}

/// What [`Partition::enforce_retention`] removed.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RetentionOutcome {
    pub segments_deleted: usize,
    pub bytes_deleted: u64,
}

struct Pending {
    segment: Rc<Segment>,
    bytes: Bytes,
    last: Offset,
    records: u64,
    units: u64,
}

/// Where the high watermark is: its offset and the byte position in its
/// segment that reads stop at.
#[derive(Clone, Copy, Debug)]
struct Mark {
    offset: Offset,
    segment: Offset,
    position: u64,
}

struct State {
    config: LogConfig,
    segments: BTreeMap<Offset, Rc<Segment>>,
    log_start: Offset,
    log_end: Offset,
    written: Mark,
    hw: Mark,
    pending: VecDeque<Pending>,
    /// Bytes of the batches in `pending`.
    pending_bytes: usize,
    writer: Option<SegmentWriter>,
    flushing: bool,
    /// The flusher, while a write is in flight, waiting for appends that
    /// could make up the next group (see [`Partition::write_last`]).
    ahead_waker: Option<Waker>,
    flush_stats: FlushStats,
    unsynced_messages: u64,
    first_unsynced: Option<Instant>,
    sync_requested: bool,
    sync_timer: bool,
    waiters: Vec<(Offset, Waker)>,
    /// Readers waiting for the high watermark to pass an offset (long-poll
    /// fetches), by key; each removes its entry when dropped, so the table
    /// holds only live waits.
    hw_waiters: BTreeMap<u64, Waker>,
    hw_waiter_next: u64,
    failure: Option<String>,
    /// Everything below is fdatasync'ed; and who waits for that to grow.
    synced: Offset,
    sync_waiters: Vec<Waker>,
    epochs: LeaderEpochs,
    epochs_dirty: bool,
    roll_requested: bool,
    closed: bool,
    /// Idempotent producers (see [`crate::producers`]).
    producers: ProducerTable,
    /// Truncations so far: a snapshot taken before one is stale after it.
    truncations: u64,
    /// A removed segment's log file, ready for the next roll to write into.
    spare: Option<Spare>,
    /// The clock of the latest append (or of the open): the flusher's
    /// retention of the oldest segment ([`Partition::recycle`]) judges time
    /// by it.
    now_ms: i64,
}

/// A log file taken from a segment retention removed, kept for the next
/// roll (see [`Partition::recycle`]).
struct Spare {
    path: PathBuf,
    /// One past the last offset of the batches still in it: a segment
    /// based below this may not use it, since recovery tells its own
    /// batches from stale ones by offset.
    stale_below: Offset,
}

struct Inner {
    tp: TopicPartition,
    dir: PathBuf,
    log_dir: Arc<LogDir>,
    shard: Rc<ShardContext>,
    state: RefCell<State>,
    /// Serialises the flusher, truncation and close.
    io_lock: Semaphore,
    /// Held by the close of a rolled segment while it runs in the
    /// background ([`Partition::close_rolled`]).
    closing: Rc<Semaphore>,
    /// Held while a spare is prepared in the background
    /// ([`Partition::recycle`]).
    preparing: Rc<Semaphore>,
    cache: Rc<RefCell<PartitionCache>>,
}

/// A handle to a partition log, cheap to clone within its shard.
#[derive(Clone)]
pub struct Partition {
    inner: Rc<Inner>,
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

/// A clone-free view for waking waiters.
fn wake_acked(st: &mut State) {
    for w in st.sync_waiters.drain(..) {
        w.wake();
    }
    for w in std::mem::take(&mut st.hw_waiters).into_values() {
        w.wake();
    }
    let hw = st.hw.offset;
    let failed = st.failure.is_some();
    st.waiters.retain(|(last, w)| {
        let done = failed || *last < hw;
        if done {
            w.wake_by_ref();
        }
        !done
    });
}

impl Partition {
    /// Opens the partition in `log_dir`, creating it if it does not exist,
    /// and recovers it: checks the indexes of closed segments, scans the
    /// active one, cuts a torn tail. Everything recovery keeps is fsync'ed,
    /// so the high watermark starts at the log end.
    pub async fn open(
        log_dir: Arc<LogDir>,
        tp: TopicPartition,
        config: LogConfig,
        shard: Rc<ShardContext>,
        now_ms: i64,
    ) -> Result<Partition> {
        if log_dir.is_offline() {
            return Err(EngineError::DirOffline(log_dir.path.clone()));
        }
        let dir = log_dir.path.join(tp.dir_name());
        let result = Self::open_in(&dir, &log_dir, tp, config, shard, now_ms).await;
        if let Err(e) = &result {
            if matches!(e, EngineError::Io { .. }) {
                log_dir.offline.store(true, Ordering::Release);
            }
        }
        result
    }

    async fn open_in(
        dir: &Path,
        log_dir: &Arc<LogDir>,
        tp: TopicPartition,
        config: LogConfig,
        shard: Rc<ShardContext>,
        now_ms: i64,
    ) -> Result<Partition> {
        let created = !dir.exists();
        if created {
            std::fs::create_dir_all(dir).map_err(|e| EngineError::io(dir, e))?;
            crate::io::sync_dir(&log_dir.path).await?;
        }
        let bases = list_segments(dir)?;
        let log_start_path = dir.join(checkpoint::LOG_START_FILE);
        let log_start_cp = match checkpoint::read_optional(&log_start_path)? {
            Some(t) => checkpoint::decode_log_start(&log_start_path, &t)?,
            None => Offset::ZERO,
        };
        let epochs_path = dir.join(checkpoint::LEADER_EPOCH_FILE);
        let mut epochs = match checkpoint::read_optional(&epochs_path)? {
            Some(t) => LeaderEpochs::decode(&epochs_path, &t)?,
            None => LeaderEpochs::default(),
        };

        let mut segments = BTreeMap::new();
        let mut writer = None;
        for (i, &base) in bases.iter().enumerate() {
            let active = i + 1 == bases.len();
            if i + 2 == bases.len() && close_unfinished(dir, base)? {
                // Rolled away from, its close (in the background) cut short:
                // recovered as an active segment is, then closed.
                let (seg, w, seen) = Segment::open(dir, base, &config, true, now_ms).await?;
                for (e, o) in seen {
                    epochs.assign(LeaderEpoch(e), Offset(o));
                }
                if let Some(w) = w {
                    w.close().await?;
                }
                segments.insert(base, seg);
                continue;
            }
            let (seg, w, seen) = Segment::open(dir, base, &config, active, now_ms).await?;
            if active {
                epochs.truncate_from(seg.meta.borrow().next_offset);
                for (e, o) in seen {
                    epochs.assign(LeaderEpoch(e), Offset(o));
                }
            }
            segments.insert(base, seg);
            writer = w;
        }
        if writer.is_none() {
            let base = bases.last().map_or(log_start_cp, |_| {
                let last = segments.values().next_back().expect("a segment");
                last.meta.borrow().next_offset
            });
            let seg = Rc::new(Segment::new(dir, base, &config, now_ms));
            writer = Some(SegmentWriter::create(seg.clone(), dir).await?);
            segments.insert(base, seg);
        }
        let first_base = *segments.keys().next().expect("a segment");
        let active = segments.values().next_back().expect("a segment").clone();
        let (log_end, active_size) = {
            let m = active.meta.borrow();
            (m.next_offset, m.size)
        };
        let log_start = log_start_cp.max(first_base).min(log_end);
        let mark = Mark {
            offset: log_end,
            segment: active.base,
            position: active_size,
        };
        let mut producers = load_producers(dir, &segments, log_start, log_end).await?;
        // Producers that expired while the partition was closed stay
        // forgotten, as if the retention pass had run before the close.
        producers.expire(now_ms, config.producer_id_expiration_ms);
        let epochs_text = epochs.encode();
        checkpoint::blocking(move || {
            checkpoint::write_atomic(&epochs_path, epochs_text.as_bytes())
        })
        .await?;
        if created {
            log_dir.partitions.fetch_add(1, Ordering::AcqRel);
        }
        Ok(Partition {
            inner: Rc::new(Inner {
                tp,
                dir: dir.to_path_buf(),
                log_dir: log_dir.clone(),
                shard,
                state: RefCell::new(State {
                    config,
                    segments,
                    log_start,
                    log_end,
                    written: mark,
                    hw: mark,
                    pending: VecDeque::new(),
                    pending_bytes: 0,
                    writer,
                    flushing: false,
                    ahead_waker: None,
                    flush_stats: FlushStats::default(),
                    unsynced_messages: 0,
                    first_unsynced: None,
                    sync_requested: false,
                    sync_timer: false,
                    waiters: Vec::new(),
                    hw_waiters: BTreeMap::new(),
                    hw_waiter_next: 0,
                    failure: None,
                    synced: log_end,
                    sync_waiters: Vec::new(),
                    epochs,
                    epochs_dirty: false,
                    roll_requested: false,
                    closed: false,
                    producers,
                    truncations: 0,
                    spare: None,
                    now_ms,
                }),
                io_lock: Semaphore::new(1),
                closing: Rc::new(Semaphore::new(1)),
                preparing: Rc::new(Semaphore::new(1)),
                cache: Rc::new(RefCell::new(PartitionCache::default())),
            }),
        })
    }

    pub fn topic_partition(&self) -> &TopicPartition {
        &self.inner.tp
    }

    pub fn dir(&self) -> &Path {
        &self.inner.dir
    }

    pub fn config(&self) -> LogConfig {
        self.inner.state.borrow().config.clone()
    }

    /// Replaces the topic config; takes effect for later appends and checks.
    pub fn set_config(&self, config: LogConfig) {
        self.inner.state.borrow_mut().config = config;
    }

    pub fn flush_stats(&self) -> FlushStats {
        self.inner.state.borrow().flush_stats
    }

    /// Everything below this offset is fdatasync'ed.
    pub fn synced_offset(&self) -> Offset {
        self.inner.state.borrow().synced
    }

    pub fn watermarks(&self) -> Watermarks {
        let st = self.inner.state.borrow();
        Watermarks {
            log_start: st.log_start,
            log_end: st.log_end,
            high_watermark: st.hw.offset,
            last_stable: st.hw.offset,
        }
    }

    /// Bytes of all segments.
    pub fn size_bytes(&self) -> u64 {
        let st = self.inner.state.borrow();
        st.segments.values().map(|s| s.meta.borrow().size).sum()
    }

    pub fn segment_bases(&self) -> Vec<Offset> {
        self.inner.state.borrow().segments.keys().copied().collect()
    }

    pub fn leader_epochs(&self) -> LeaderEpochs {
        self.inner.state.borrow().epochs.clone()
    }

    /// Why the partition refuses service, if it does.
    fn check_usable(&self, st: &State) -> Result<()> {
        if st.failure.is_some() {
            return Err(EngineError::Poisoned(self.inner.dir.clone()));
        }
        if self.inner.log_dir.is_offline() {
            return Err(EngineError::DirOffline(self.inner.log_dir.path.clone()));
        }
        if st.closed {
            return Err(EngineError::Closed);
        }
        Ok(())
    }

    /// Validates and appends one batch produced by a client, assigning its
    /// offsets. Returns once the batch is queued for writing; await
    /// [`Partition::wait_acked`] with its last offset for durability.
    pub async fn append(
        &self,
        mut batch: BytesMut,
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
        let verdict = self
            .check_usable(&st)
            .and_then(|()| Ok(st.producers.check(&header)?));
        match verdict {
            Ok(Verdict::Append) => {}
            Ok(Verdict::Duplicate(b)) => {
                ctx.write_buffer.signal(units);
                return Ok(AppendInfo {
                    base_offset: Offset(b.first_offset),
                    last_offset: Offset(b.last_offset),
                    log_append_time: -1,
                    log_start: st.log_start,
                });
            }
            Err(e) => {
                ctx.write_buffer.signal(units);
                return Err(e);
            }
        }
        let base = st.log_end;
        batch::assign(&mut batch, base.0, leader_epoch.0);
        let log_append_time = if ts_type == TimestampType::LogAppendTime {
            batch::set_log_append_time(&mut batch, now_ms);
            now_ms
        } else {
            -1
        };
        let bytes = batch.freeze();
        let last = Offset(base.0 + i64::from(header.last_offset_delta));
        let len = bytes.len() as u64;
        st.now_ms = st.now_ms.max(now_ms);
        let mut active = st.segments.values().next_back().expect("a segment").clone();
        let roll = st.roll_requested
            || active
                .meta
                .borrow()
                .must_roll(active.base, len, last.0, &st.config, now_ms);
        if roll {
            // The producers as they are after every batch below `base`.
            let snapshot = st.producers.encode_snapshot(base.0);
            self.schedule_snapshot(base, snapshot, st.truncations);
            let seg = Rc::new(Segment::new(&self.inner.dir, base, &st.config, now_ms));
            st.segments.insert(base, seg.clone());
            st.roll_requested = false;
            active = seg;
        }
        {
            let stored = batch::BatchHeader::parse(&bytes).expect("validated");
            st.producers.record(&stored);
            let mut m = active.meta.borrow_mut();
            let position = m.size;
            m.note_batch(
                active.base,
                position,
                &stored,
                len,
                st.config.index_interval_bytes,
            );
        }
        if st.epochs.assign(leader_epoch, base) {
            st.epochs_dirty = true;
        }
        ctx.cache.insert(
            &self.inner.cache,
            Cached {
                base,
                last,
                bytes: bytes.clone(),
            },
        );
        st.pending_bytes += bytes.len();
        st.pending.push_back(Pending {
            segment: active,
            bytes,
            last,
            records: header.records_count as u64,
            units,
        });
        st.log_end = last.next();
        let info = AppendInfo {
            base_offset: base,
            last_offset: last,
            log_append_time,
            log_start: st.log_start,
        };
        // Only appends make a next group due (`ahead_due`).
        if st.pending_bytes >= AHEAD_BYTES_MIN {
            if let Some(w) = st.ahead_waker.take() {
                w.wake();
            }
        }
        self.schedule_flush(&mut st);
        Ok(info)
    }

    /// Resolves when offset `last` is acknowledged (below the high
    /// watermark); fails if the partition is poisoned or the offset was
    /// truncated away first.
    pub fn wait_acked(&self, last: Offset) -> impl Future<Output = Result<()>> {
        let inner = self.inner.clone();
        futures_lite::future::poll_fn(move |cx| {
            let mut st = inner.state.borrow_mut();
            if st.failure.is_some() {
                return Poll::Ready(Err(EngineError::Poisoned(inner.dir.clone())));
            }
            if st.hw.offset > last {
                return Poll::Ready(Ok(()));
            }
            if st.log_end <= last {
                return Poll::Ready(Err(EngineError::Truncated));
            }
            if st.closed && st.pending.is_empty() && !st.flushing {
                return Poll::Ready(Err(EngineError::Closed));
            }
            st.waiters.push((last, cx.waker().clone()));
            Poll::Pending
        })
    }

    /// The idempotent producers this partition knows, by producer id.
    pub fn producers(&self) -> Vec<ProducerEntry> {
        self.inner.state.borrow().producers.entries()
    }

    /// Writes a producer snapshot in the background, unless the partition
    /// closes or is truncated first.
    fn schedule_snapshot(&self, offset: Offset, snapshot: Vec<u8>, truncations: u64) {
        let p = self.clone();
        glommio::spawn_local(async move {
            // glommio polls a new task at once; the caller holds the state.
            futures_lite::future::yield_now().await;
            let Ok(_permit) = p.inner.io_lock.acquire_permit(1).await else {
                return;
            };
            {
                let st = p.inner.state.borrow();
                if st.closed || st.failure.is_some() || st.truncations != truncations {
                    return;
                }
            }
            if let Err(e) = p.store_snapshot(offset, snapshot).await {
                tracing::error!(partition = %p.inner.tp, error = %e, "cannot write a producer snapshot");
                p.poison(&e);
            }
        })
        .detach();
    }

    /// Writes the snapshot file for `offset` and removes all but the newest
    /// [`producers::SNAPSHOTS_KEPT`]. Call with the I/O lock held.
    async fn store_snapshot(&self, offset: Offset, snapshot: Vec<u8>) -> Result<()> {
        let dir = self.inner.dir.clone();
        checkpoint::blocking(move || -> Result<()> {
            checkpoint::write_atomic(&dir.join(producers::snapshot_name(offset.0)), &snapshot)?;
            let offsets = list_snapshots(&dir)?;
            let old = offsets.len().saturating_sub(producers::SNAPSHOTS_KEPT);
            remove_snapshots(&dir, &offsets[..old])
        })
        .await
    }

    /// Resolves once the high watermark is above `offset` (a read from
    /// `offset` would return data), or the partition fails or closes.
    /// Nothing polls: the flusher wakes it when the high watermark moves.
    pub fn wait_high_watermark_above(&self, offset: Offset) -> HighWatermarkWait {
        HighWatermarkWait {
            inner: self.inner.clone(),
            offset,
            key: None,
        }
    }

    fn schedule_flush(&self, st: &mut State) {
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
        let mut syncing: Option<(glommio::Task<Result<()>>, Mark)> = None;
        let mut ahead: Option<(Work, glommio::sync::Permit<'_>)> = None;
        loop {
            let next = match ahead.take() {
                Some((mut work, permit)) => {
                    let mut st = self.inner.state.borrow_mut();
                    // Poisoned while the group before was written.
                    if st.failure.is_some() || st.writer.is_none() {
                        work.release(&self.inner.shard);
                        continue;
                    }
                    work.writer = st.writer.take();
                    Some((work, permit))
                }
                None => {
                    // Let everything appended in this tick join the group.
                    futures_lite::future::yield_now().await;
                    match self.inner.io_lock.acquire_permit(1).await {
                        Ok(permit) => self.take_work().map(|w| (w, permit)),
                        Err(_) => None,
                    }
                }
            };
            let Some((mut work, permit)) = next else {
                match syncing.take() {
                    Some((task, mark)) => {
                        let synced = task.await;
                        self.synced(mark, synced);
                        continue;
                    }
                    None => {
                        let mut st = self.inner.state.borrow_mut();
                        st.flushing = false;
                        wake_acked(&mut st);
                        return;
                    }
                }
            };
            let mut prepared_next = None;
            let result = self.write_group(&mut work, &mut prepared_next).await;
            let sync = work.sync;
            let mark = match self.written(work, result) {
                Ok(mark) => mark,
                Err(()) => {
                    if let Some(next) = prepared_next {
                        next.release(&self.inner.shard);
                    }
                    return;
                }
            };
            ahead = prepared_next.map(|next| (next, permit));
            if sync {
                if let Some((task, m)) = syncing.take() {
                    let synced = task.await;
                    self.synced(m, synced);
                }
                let flush = {
                    let st = self.inner.state.borrow();
                    st.writer.as_ref().map(|w| w.log.sync_later())
                };
                if let Some(flush) = flush {
                    // The group may have started in a segment whose close
                    // (its tail made durable) runs in the background.
                    let settled = self.settled();
                    let both = async move {
                        let (flushed, settled) = futures_lite::future::zip(flush, settled).await;
                        flushed.and(settled)
                    };
                    syncing = Some((glommio::spawn_local(both), mark));
                }
            }
        }
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
            let path = self.inner.dir.join(checkpoint::LEADER_EPOCH_FILE);
            let text = text.clone();
            checkpoint::blocking(move || checkpoint::write_atomic(&path, text.as_bytes())).await?;
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

    /// Closes a segment the log rolled away from, in the background, and
    /// makes the new segment's name durable: the flusher goes on writing
    /// the new segment meanwhile (a close is three truncations and
    /// fdatasyncs, about 1.3 ms, and the directory's fsync about 0.3 ms).
    /// Nothing written after the roll is acknowledged as durable before
    /// they complete ([`Self::settled`]); truncation and close wait for
    /// them too. A failure poisons the partition. One close runs at a time.
    async fn close_rolled(&self, rolled: SegmentWriter) {
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

    /// The files of `seg`, the segment the log rolls to: in the spare's log
    /// file when there is one it may use ([`SegmentWriter::create_from`]),
    /// else new ones. A spare still being prepared is waited for. It is
    /// taken out of the log as soon as the log outgrows retention by its
    /// oldest segment, so the wait is long only when a segment fills faster
    /// than a rename and two fsyncs complete (tiny segments); then it keeps
    /// every roll on a reused file and the log within retention, where a
    /// new file would leave the next removable segment waiting for the
    /// spare to be used.
    async fn create_segment(&self, seg: Rc<Segment>) -> Result<SegmentWriter> {
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
    fn recycle(&self) {
        let Ok(permit) = self.inner.preparing.try_acquire_static_permit(1) else {
            return;
        };
        let seg = {
            let mut st = self.inner.state.borrow_mut();
            let mut bases = st.segments.keys();
            let (Some(&base), Some(&next_base)) = (bases.next(), bases.next()) else {
                return;
            };
            let seg = st.segments[&base].clone();
            // Held by the map and here only: no read is under way in it,
            // and no response still has its file to send from.
            let unread = Rc::strong_count(&seg) == 2
                && seg.files().is_some_and(|f| Arc::strong_count(&f.read) == 1);
            if st.spare.is_some() || st.closed || st.failure.is_some() || !unread {
                return;
            }
            let total = if st.config.retention_bytes >= 0 {
                st.segments.values().map(|s| s.meta.borrow().size).sum()
            } else {
                0
            };
            if !removable(&st, &seg, next_base, total, st.now_ms) {
                return;
            }
            take_out(&mut st, std::slice::from_ref(&seg));
            seg
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

    /// Turns the log file of `seg`, just taken out of the log, into a spare:
    /// renamed `<name>.spare` (a restart that finds it removes it), its
    /// length rounded up to whole blocks and made durable before it is
    /// used, so that a rolled segment whose close a crash cut short is still
    /// a whole number of blocks long, which is how recovery tells it
    /// ([`close_unfinished`]). Its index files are retired as retention's
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

    /// Resolves once no rolled segment is being closed; `Err` if a close
    /// failed (the partition is poisoned).
    fn settled(&self) -> impl Future<Output = Result<()>> + 'static {
        let inner = self.inner.clone();
        async move {
            drop(inner.closing.acquire_permit(1).await);
            match inner.state.borrow().failure {
                Some(_) => Err(EngineError::Poisoned(inner.dir.clone())),
                None => Ok(()),
            }
        }
    }

    /// After a group's write: the written mark moves; under a relaxed
    /// policy the group is acknowledged now. Returns the written mark, or
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
        if !st.config.sync_every_append() {
            // Acknowledged once written (see engine/DESIGN.md, Durability).
            st.hw = st.written;
        }
        wake_acked(&mut st);
        if st.unsynced_messages > 0 && !st.sync_timer && st.config.flush_ms < i64::MAX as u64 {
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
        Ok(st.written)
    }

    /// After an fdatasync issued once everything up to `mark` was written:
    /// that much is durable, and acknowledged.
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
        if mark.offset > st.hw.offset {
            st.hw = mark;
        }
        wake_acked(&mut st);
    }

    /// Takes the files of `segments` out of the log and deletes them
    /// `file.delete.delay.ms` later (see [`remove_segment_files`]).
    async fn remove_files(&self, segments: &[Rc<Segment>]) -> Result<()> {
        let delay = Duration::from_millis(self.inner.state.borrow().config.file_delete_delay_ms);
        remove_segment_files(&self.inner.dir, segments, delay, &self.inner.shard.deleting).await
    }

    fn fail(&self, st: &mut State, e: &EngineError) {
        tracing::error!(partition = %self.inner.tp, error = %e,
            "write or fsync failed: the log is poisoned and its directory taken offline");
        st.failure = Some(e.to_string());
        self.inner.log_dir.offline.store(true, Ordering::Release);
        // Never written: give their room in the shard's write buffer back.
        let units: u64 = st.pending.drain(..).map(|p| p.units).sum();
        st.pending_bytes = 0;
        self.inner.shard.write_buffer.signal(units);
        wake_acked(st);
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

    /// Reads from `from`: from the tail cache when it holds `from`, else one
    /// region of the segment file holding it.
    pub async fn read(&self, from: Offset, opts: ReadOptions) -> Result<ReadOutcome> {
        let (upper, watermarks, cached) = {
            let st = self.inner.state.borrow();
            self.check_usable(&st)?;
            let upper = match opts.upper {
                ReadUpper::HighWatermark => st.hw,
                ReadUpper::Written => st.written,
            };
            let watermarks = Watermarks {
                log_start: st.log_start,
                log_end: st.log_end,
                high_watermark: st.hw.offset,
                last_stable: st.hw.offset,
            };
            if from < st.log_start || from > st.log_end {
                return Err(EngineError::OffsetOutOfRange {
                    offset: from,
                    log_start: st.log_start,
                    log_end: st.log_end,
                });
            }
            let cached = if from >= upper.offset {
                Some(Vec::new())
            } else {
                self.read_cache(from, upper.offset, &opts)
            };
            (upper, watermarks, cached)
        };
        if let Some(chunks) = cached {
            let bytes = chunks.iter().map(|c| c.len() as u64).sum();
            return Ok(ReadOutcome {
                chunks: chunks.into_iter().map(Chunk::Memory).collect(),
                bytes,
                watermarks,
            });
        }
        let region = self.read_file(from, upper, &opts).await?;
        let bytes = region.as_ref().map_or(0, |r| r.len);
        Ok(ReadOutcome {
            chunks: region.into_iter().map(Chunk::File).collect(),
            bytes,
            watermarks,
        })
    }

    fn read_cache(&self, from: Offset, upper: Offset, opts: &ReadOptions) -> Option<Vec<Bytes>> {
        let cache = self.inner.cache.borrow();
        let iter = cache.from(from)?;
        let mut out = Vec::new();
        let mut total = 0usize;
        for c in iter {
            if c.last >= upper {
                break;
            }
            let first = out.is_empty();
            if total + c.bytes.len() > opts.max_bytes && !(first && opts.min_one) {
                break;
            }
            total += c.bytes.len();
            out.push(c.bytes.clone());
        }
        Some(out)
    }

    async fn read_file(
        &self,
        from: Offset,
        upper: Mark,
        opts: &ReadOptions,
    ) -> Result<Option<FileRegion>> {
        let segments: Vec<Rc<Segment>> = {
            let st = self.inner.state.borrow();
            let start = st
                .segments
                .range(..=from)
                .next_back()
                .map_or(from, |(b, _)| *b);
            st.segments
                .range(start..=upper.segment)
                .map(|(_, s)| s.clone())
                .collect()
        };
        for seg in segments {
            let limit = if seg.base == upper.segment {
                upper.position
            } else {
                seg.meta.borrow().size
            };
            seg.verify().await?;
            let Some((pos, header)) = seg.find(from, limit).await? else {
                continue;
            };
            let first_len = header.total_len().expect("found batches have a length") as u64;
            let want = if opts.min_one {
                first_len.max(opts.max_bytes as u64)
            } else {
                opts.max_bytes as u64
            };
            let mut end = (pos + want).min(limit);
            if let Some(r) = seg
                .meta
                .borrow()
                .corrupt
                .iter()
                .find(|r| r.start >= pos && r.start < end)
            {
                end = r.start;
            }
            if end <= pos {
                return Ok(None);
            }
            let files = seg.files().expect("a segment with data has files");
            return Ok(Some(FileRegion {
                file: files.read.clone(),
                position: pos,
                len: end - pos,
            }));
        }
        Ok(None)
    }

    /// The earliest offset whose timestamp is at least `ts`, with that
    /// timestamp (ListOffsets by time). For a compressed batch the answer is
    /// the batch's first offset and largest timestamp.
    pub async fn offset_for_timestamp(&self, ts: i64) -> Result<Option<(Offset, i64)>> {
        let (segments, upper, log_start) = {
            let st = self.inner.state.borrow();
            self.check_usable(&st)?;
            (
                st.segments.values().cloned().collect::<Vec<_>>(),
                st.hw,
                st.log_start,
            )
        };
        for seg in segments {
            if seg.base > upper.offset {
                break;
            }
            let (max_ts, start_rel) = {
                let m = seg.meta.borrow();
                let start = m.time_index.floor(ts).map_or(0, |e| e.relative_offset);
                (m.max_timestamp, start)
            };
            if max_ts < ts {
                continue;
            }
            seg.verify().await?;
            let limit = if seg.base == upper.segment {
                upper.position
            } else {
                seg.meta.borrow().size
            };
            let mut target = Offset((seg.base.0 + i64::from(start_rel)).max(log_start.0));
            while let Some((pos, h)) = seg.find(target, limit).await? {
                let len = h.total_len().expect("found batches have a length");
                if h.max_timestamp >= ts && h.last_offset() >= log_start.0 {
                    let bytes = seg.read_bytes(pos, len).await?;
                    let found = batch::record_timestamps(&bytes)
                        .and_then(|recs| {
                            recs.into_iter()
                                .map(|(d, t)| (h.base_offset + i64::from(d), t))
                                .find(|&(o, t)| t >= ts && o >= log_start.0)
                        })
                        .unwrap_or((h.base_offset.max(log_start.0), h.max_timestamp));
                    let found = if h.timestamp_type() == TimestampType::LogAppendTime {
                        (h.base_offset.max(log_start.0), h.max_timestamp)
                    } else {
                        found
                    };
                    return Ok(Some((Offset(found.0), found.1)));
                }
                target = Offset(h.last_offset() + 1);
            }
        }
        Ok(None)
    }

    /// The offset of the batch holding the largest timestamp, with that
    /// timestamp (ListOffsets with MAX_TIMESTAMP, KIP-734).
    pub fn max_timestamp(&self) -> Option<(Offset, i64)> {
        let st = self.inner.state.borrow();
        st.segments
            .values()
            .filter_map(|s| {
                let m = s.meta.borrow();
                (m.max_timestamp >= 0 && m.offset_of_max_timestamp < st.hw.offset)
                    .then_some((m.offset_of_max_timestamp, m.max_timestamp))
            })
            .max_by_key(|&(o, t)| (t, std::cmp::Reverse(o)))
    }

    /// The end offset of a leader epoch (OffsetForLeaderEpoch).
    pub fn end_offset_for_epoch(&self, epoch: LeaderEpoch) -> Option<(LeaderEpoch, Offset)> {
        let st = self.inner.state.borrow();
        st.epochs.end_offset(epoch, st.log_end)
    }

    /// Moves the log start offset forward (DeleteRecords). `-1` means the
    /// high watermark. Offsets past the high watermark are out of range.
    /// Returns the new log start offset.
    pub async fn delete_records(&self, offset: Offset, now_ms: i64) -> Result<Offset> {
        let (target, text) = {
            let mut st = self.inner.state.borrow_mut();
            self.check_usable(&st)?;
            let target = if offset.0 == -1 { st.hw.offset } else { offset };
            if target.0 < 0 || target > st.hw.offset {
                return Err(EngineError::OffsetOutOfRange {
                    offset,
                    log_start: st.log_start,
                    log_end: st.hw.offset,
                });
            }
            if target <= st.log_start {
                return Ok(st.log_start);
            }
            st.log_start = target;
            st.producers.evict_below(target.0);
            (target, checkpoint::encode_log_start(&self.inner.tp, target))
        };
        self.inner.shard.cache.drop_below(&self.inner.cache, target);
        let path = self.inner.dir.join(checkpoint::LOG_START_FILE);
        let written =
            checkpoint::blocking(move || checkpoint::write_atomic(&path, text.as_bytes())).await;
        if let Err(e) = written {
            self.poison(&e);
            return Err(e);
        }
        self.enforce_retention(now_ms).await?;
        Ok(self.watermarks().log_start)
    }

    fn poison(&self, e: &EngineError) {
        let mut st = self.inner.state.borrow_mut();
        self.fail(&mut st, e);
    }

    /// Deletes whole closed segments by `retention.ms`, `retention.bytes` and
    /// the log start offset, oldest first, and asks for the active segment to
    /// be rolled once all of it has expired. Reads in flight keep deleted
    /// files open until they finish.
    pub async fn enforce_retention(&self, now_ms: i64) -> Result<RetentionOutcome> {
        let doomed: Vec<Rc<Segment>> = {
            let mut st = self.inner.state.borrow_mut();
            self.check_usable(&st)?;
            let expiration = st.config.producer_id_expiration_ms;
            st.producers.expire(now_ms, expiration);
            let mut total: u64 = st.segments.values().map(|s| s.meta.borrow().size).sum();
            let bases: Vec<Offset> = st.segments.keys().copied().collect();
            let mut doomed = Vec::new();
            for (i, base) in bases.iter().enumerate() {
                let seg = st.segments[base].clone();
                let Some(&next_base) = bases.get(i + 1) else {
                    // The active segment: roll it if it has expired whole.
                    let m = seg.meta.borrow();
                    let expired = deletes(&st.config)
                        && st.config.retention_ms >= 0
                        && m.size > 0
                        && now_ms - m.max_timestamp > st.config.retention_ms;
                    drop(m);
                    if expired {
                        st.roll_requested = true;
                    }
                    break;
                };
                if !removable(&st, &seg, next_base, total, now_ms) {
                    break;
                }
                total -= seg.meta.borrow().size;
                doomed.push(seg);
            }
            take_out(&mut st, &doomed);
            doomed
        };
        if doomed.is_empty() {
            return Ok(RetentionOutcome::default());
        }
        let start = self.watermarks().log_start;
        self.inner.shard.cache.drop_below(&self.inner.cache, start);
        let mut outcome = RetentionOutcome::default();
        for seg in &doomed {
            outcome.segments_deleted += 1;
            outcome.bytes_deleted += seg.meta.borrow().size;
        }
        let removed = self.remove_files(&doomed).await;
        if let Err(e) = removed {
            self.poison(&e);
            return Err(e);
        }
        Ok(outcome)
    }

    /// Removes every batch whose last offset is at or after `offset`
    /// (a follower truncating a divergent suffix). The log end becomes the
    /// base offset of the first batch removed.
    pub async fn truncate_to(&self, offset: Offset) -> Result<()> {
        self.flush().await?;
        let _permit = self
            .inner
            .io_lock
            .acquire_permit(1)
            .await
            .map_err(|_| EngineError::Closed)?;
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
            let dir = self.inner.dir.clone();
            result = checkpoint::blocking(move || {
                let stale: Vec<i64> = list_snapshots(&dir)?
                    .into_iter()
                    .filter(|o| *o > end.0)
                    .collect();
                remove_snapshots(&dir, &stale)
            })
            .await;
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
        let mut writer = self
            .inner
            .state
            .borrow_mut()
            .writer
            .take()
            .expect("writer checked in");
        if !Rc::ptr_eq(&writer.seg, &seg) {
            // The cut is in an older segment: drop the newer ones and make
            // the cut one active again.
            drop(writer);
            writer = SegmentWriter::reopen(seg.clone()).await?;
        }
        {
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
        // Batches after the last index entry left are not in the time index:
        // read their headers for the largest timestamp.
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
            st.log_end = new_end;
            let mark = Mark {
                offset: new_end,
                segment: seg.base,
                position: cut,
            };
            st.written = mark;
            if st.hw.offset > new_end {
                st.hw = mark;
            }
            st.synced = st.synced.min(new_end);
            st.log_start = st.log_start.min(new_end);
            st.epochs.truncate_from(new_end);
            st.writer = Some(writer);
            wake_acked(&mut st);
            st.epochs.encode()
        };
        self.inner.shard.cache.truncate(&self.inner.cache, new_end);
        self.remove_files(&removed).await?;
        let path = self.inner.dir.join(checkpoint::LEADER_EPOCH_FILE);
        checkpoint::blocking(move || checkpoint::write_atomic(&path, text.as_bytes())).await
    }

    /// Replaces every segment with one empty segment at `start`.
    async fn restart_at(&self, start: Offset, old: Vec<Rc<Segment>>) -> Result<()> {
        let config = self.inner.state.borrow().config.clone();
        let seg = Rc::new(Segment::new(
            &self.inner.dir,
            start,
            &config,
            crate::types::now_ms(),
        ));
        drop(self.inner.state.borrow_mut().writer.take());
        self.remove_files(&old).await?;
        let writer = SegmentWriter::create(seg.clone(), &self.inner.dir).await?;
        let text = {
            let mut st = self.inner.state.borrow_mut();
            st.segments.clear();
            st.segments.insert(start, seg);
            let mark = Mark {
                offset: start,
                segment: start,
                position: 0,
            };
            st.log_end = start;
            st.written = mark;
            st.hw = mark;
            st.synced = start;
            st.epochs.truncate_from(start);
            st.writer = Some(writer);
            wake_acked(&mut st);
            st.epochs.encode()
        };
        self.inner.shard.cache.clear(&self.inner.cache);
        let path = self.inner.dir.join(checkpoint::LEADER_EPOCH_FILE);
        checkpoint::blocking(move || checkpoint::write_atomic(&path, text.as_bytes())).await
    }

    /// Writes and fsyncs everything, persists the indexes, cuts the active
    /// log to its data and refuses further operations.
    pub async fn close(&self) -> Result<()> {
        let flushed = self.flush().await;
        let _permit = self
            .inner
            .io_lock
            .acquire_permit(1)
            .await
            .map_err(|_| EngineError::Closed)?;
        let settled = self.settled().await;
        // A spare being prepared is in the directory before it closes.
        drop(self.inner.preparing.acquire_permit(1).await);
        let writer = {
            let mut st = self.inner.state.borrow_mut();
            st.closed = true;
            wake_acked(&mut st);
            st.writer.take()
        };
        self.inner.shard.cache.clear(&self.inner.cache);
        flushed?;
        settled?;
        if let Some(mut w) = writer {
            let next = w.seg.meta.borrow().next_offset;
            let written = w.log.len();
            w.persist_indexes(next, written).await?;
            w.index.sync().await?;
            w.time_index.sync().await?;
            // The active log loses its block padding too, so that a
            // partition closed cleanly is in Kafka's layout: every log
            // exactly as long as its batches.
            w.log.finish().await?;
        }
        let (end, snapshot) = {
            let st = self.inner.state.borrow();
            (st.log_end, st.producers.encode_snapshot(st.log_end.0))
        };
        self.store_snapshot(end, snapshot).await
    }
}

/// Whether the log deletes by retention (`cleanup.policy` has `delete`).
fn deletes(config: &LogConfig) -> bool {
    matches!(
        config.cleanup_policy,
        CleanupPolicy::Delete | CleanupPolicy::CompactDelete
    )
}

/// Whether retention removes `seg`, the oldest segment, followed by the one
/// based at `next_base`, from a log of `total` bytes: it must be closed and
/// below the high watermark, and below the log start or past
/// `retention.ms` or `retention.bytes` (the log keeps at least
/// `retention.bytes` without it, as in Kafka).
fn removable(st: &State, seg: &Segment, next_base: Offset, total: u64, now_ms: i64) -> bool {
    let (size, max_ts, closed) = {
        let m = seg.meta.borrow();
        (m.size, m.max_timestamp, m.closed)
    };
    if !closed || next_base > st.hw.offset {
        return false;
    }
    let c = &st.config;
    let below_start = next_base <= st.log_start;
    let by_time = deletes(c) && c.retention_ms >= 0 && now_ms - max_ts > c.retention_ms;
    let by_size = deletes(c) && c.retention_bytes >= 0 && total - size >= c.retention_bytes as u64;
    below_start || by_time || by_size
}

/// Takes `doomed`, the oldest segments, out of the log: the log start moves
/// past them and producers last seen below it are forgotten.
fn take_out(st: &mut State, doomed: &[Rc<Segment>]) {
    for seg in doomed {
        st.segments.remove(&seg.base);
    }
    if let Some(first) = st.segments.keys().next().copied() {
        st.log_start = st.log_start.max(first);
    }
    let start = st.log_start.0;
    st.producers.evict_below(start);
}

/// Whether the close of the segment at `base`, rolled away from, may not
/// have completed: its log is still a whole number of blocks long. A close
/// cuts the log to its data after its index files are complete and
/// durable ([`SegmentWriter::close`]), and data rarely ends on a block
/// boundary; a closed segment that does is recovered and closed again,
/// which changes nothing. Before its close, a segment's log is a whole
/// number of blocks long whether it is a new file (grown by block-aligned
/// writes) or a spare (rounded up before use, [`Partition::recycle`]).
fn close_unfinished(dir: &Path, base: Offset) -> Result<bool> {
    let path = dir.join(segment::file_name(base, segment::LOG_EXT));
    let len = std::fs::metadata(&path)
        .map_err(|e| EngineError::io(&path, e))?
        .len();
    Ok(len % io::BLOCK == 0)
}

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

/// The flusher takes the next group while one is written only when at least
/// this much waits: below it the copy is short, and a group taken early
/// leaves out what arrives during the write.
const AHEAD_BYTES_MIN: usize = 1 << 20;
/// How long the flusher lets the executor run after starting a write before
/// it prepares the next group (see [`Partition::write_last`]).
const SUBMIT_WAIT: Duration = Duration::from_micros(10);

/// Suffix of segment files removed from the log and waiting to be deleted.
const DELETED_EXT: &str = "deleted";
/// Suffix of the log file kept for the next roll ([`Partition::recycle`]).
const SPARE_EXT: &str = "spare";
/// A removed log file is shrunk by this much at a time before it is unlinked.
pub const DELETE_STEP: u64 = 8 << 20;
/// The pause between two shrinking steps.
pub const DELETE_PAUSE: Duration = Duration::from_millis(10);

/// Takes the files of `segments` out of the log, as Kafka does: each is
/// renamed `<name>.deleted` at once (already gone ones are fine) and the
/// directory fsync'ed, so that a restart never sees them again (leftovers
/// are removed at open); they are deleted `delay` later, off the caller.
/// Until then reads in flight keep reading them.
///
/// Deleting is gradual: a log file is shrunk [`DELETE_STEP`] bytes at a time,
/// [`DELETE_PAUSE`] apart, then unlinked. One unlink of a 256 MiB file on
/// ext4 mounted with `discard` trims all of it at once; here that held other
/// files' fdatasyncs back 20–35 ms, and a retention pass over 16 partitions
/// stalled appends for up to half a second. In 8 MiB steps the longest
/// fdatasync seen beside it was under 4 ms. Files are deleted one at a time
/// per shard (`deleting`), so partitions whose segments expire together do
/// not trim the disk all at once.
async fn remove_segment_files(
    dir: &Path,
    segments: &[Rc<Segment>],
    delay: Duration,
    deleting: &Rc<Semaphore>,
) -> Result<()> {
    let paths: Vec<PathBuf> = segments
        .iter()
        .flat_map(|s| {
            [
                s.log_path.clone(),
                s.index_path.clone(),
                s.time_index_path.clone(),
            ]
        })
        .collect();
    let dir = dir.to_path_buf();
    let retired = checkpoint::blocking(move || -> Result<Vec<PathBuf>> {
        let mut retired = Vec::new();
        for p in paths {
            let to = suffixed(&p, DELETED_EXT);
            match std::fs::rename(&p, &to) {
                Ok(()) => retired.push(to),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(EngineError::io(&p, e)),
            }
        }
        checkpoint::sync_dir_blocking(&dir)?;
        Ok(retired)
    })
    .await?;
    delete_later(retired, delay, deleting);
    Ok(())
}

/// Deletes the files at `paths` ([`delete_gradually`]) `delay` from now, in
/// the background, one at a time per shard (`deleting`).
fn delete_later(paths: Vec<PathBuf>, delay: Duration, deleting: &Rc<Semaphore>) {
    if paths.is_empty() {
        return;
    }
    let deleting = deleting.clone();
    glommio::spawn_local(async move {
        glommio::timer::sleep(delay).await;
        for p in paths {
            // The semaphore is never closed.
            let Ok(_turn) = deleting.acquire_permit(1).await else {
                return;
            };
            if let Err(e) = delete_gradually(&p).await {
                tracing::warn!(path = %p.display(), error = %e,
                    "could not delete a removed segment file; it is removed at the next open");
            }
        }
    })
    .detach();
}

/// `path` with `.<ext>` appended to its name.
fn suffixed(path: &Path, ext: &str) -> PathBuf {
    let mut name = path.as_os_str().to_os_string();
    name.push(".");
    name.push(ext);
    PathBuf::from(name)
}

/// Shrinks `path` step by step, then unlinks it. A file already gone is
/// fine (its partition was deleted, or a later removal replaced it).
async fn delete_gradually(path: &Path) -> std::io::Result<()> {
    let not_found = |e: &std::io::Error| e.kind() == std::io::ErrorKind::NotFound;
    let p = path.to_path_buf();
    let opened = checkpoint::blocking(move || {
        let f = std::fs::OpenOptions::new().write(true).open(&p)?;
        let len = f.metadata()?.len();
        Ok::<_, std::io::Error>((f, len))
    })
    .await;
    let (file, mut len) = match opened {
        Ok(v) => v,
        Err(e) if not_found(&e) => return Ok(()),
        Err(e) => return Err(e),
    };
    let file = Arc::new(file);
    while len > DELETE_STEP {
        len -= DELETE_STEP;
        let f = file.clone();
        checkpoint::blocking(move || f.set_len(len)).await?;
        glommio::timer::sleep(DELETE_PAUSE).await;
    }
    let p = path.to_path_buf();
    match checkpoint::blocking(move || std::fs::remove_file(p)).await {
        Err(e) if !not_found(&e) => Err(e),
        _ => Ok(()),
    }
}

/// Offsets of the producer snapshots in a partition directory, ascending.
fn list_snapshots(dir: &Path) -> Result<Vec<i64>> {
    let mut offsets = Vec::new();
    let entries = std::fs::read_dir(dir).map_err(|e| EngineError::io(dir, e))?;
    for entry in entries {
        let entry = entry.map_err(|e| EngineError::io(dir, e))?;
        let name = entry.file_name();
        let Some((stem, producers::SNAPSHOT_EXT)) = name.to_str().and_then(|n| n.rsplit_once('.'))
        else {
            continue;
        };
        if let (20, Ok(o)) = (stem.len(), stem.parse::<i64>()) {
            offsets.push(o);
        }
    }
    offsets.sort_unstable();
    Ok(offsets)
}

/// Deletes the producer snapshots at `offsets` and fsyncs the directory.
fn remove_snapshots(dir: &Path, offsets: &[i64]) -> Result<()> {
    if offsets.is_empty() {
        return Ok(());
    }
    for o in offsets {
        let p = dir.join(producers::snapshot_name(*o));
        match std::fs::remove_file(&p) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(EngineError::io(&p, e)),
        }
    }
    checkpoint::sync_dir_blocking(dir)
}

/// Rebuilds a partition's producer table on open: the newest valid
/// snapshot at or below `log_end` (newer ones describe batches a crash cut
/// off and are deleted), then the headers of every batch after it. With no
/// usable snapshot, replay starts at the second-to-last segment.
async fn load_producers(
    dir: &Path,
    segments: &BTreeMap<Offset, Rc<Segment>>,
    log_start: Offset,
    log_end: Offset,
) -> Result<ProducerTable> {
    let offsets = list_snapshots(dir)?;
    let stale: Vec<i64> = offsets.iter().copied().filter(|o| *o > log_end.0).collect();
    if !stale.is_empty() {
        let d = dir.to_path_buf();
        checkpoint::blocking(move || remove_snapshots(&d, &stale)).await?;
    }
    let mut loaded = None;
    for &o in offsets.iter().rev().filter(|o| **o <= log_end.0) {
        let path = dir.join(producers::snapshot_name(o));
        let p = path.clone();
        let bytes = checkpoint::blocking(move || std::fs::read(&p))
            .await
            .map_err(|e| EngineError::io(&path, e))?;
        match ProducerTable::decode_snapshot(&bytes, producers::PRODUCERS_MAX) {
            Ok(found) => {
                loaded = Some(found);
                break;
            }
            Err(why) => {
                tracing::warn!(path = %path.display(), %why, "damaged producer snapshot: not used")
            }
        }
    }
    let bases: Vec<Offset> = segments.keys().copied().collect();
    let (from, mut table) = loaded.unwrap_or_else(|| {
        let from = bases[bases.len().saturating_sub(2)];
        (from.0, ProducerTable::default())
    });
    for (i, base) in bases.iter().enumerate() {
        let next = bases.get(i + 1).map_or(log_end, |b| *b);
        if next.0 <= from {
            continue;
        }
        let seg = &segments[base];
        let Some(files) = seg.files() else { continue };
        let (size, start) = {
            let m = seg.meta.borrow();
            let rel = (from - base.0).clamp(0, i64::from(u32::MAX));
            let start = m.index.floor(rel).map_or(0, |e| u64::from(e.position));
            (m.size, start)
        };
        crate::scan::scan(
            &files.dma,
            &seg.log_path,
            start,
            size,
            crate::scan::First::AtLeast(base.0),
            |s| {
                if s.header.last_offset() >= from {
                    table.record(&s.header);
                }
            },
        )
        .await?;
    }
    table.evict_below(log_start.0);
    Ok(table)
}

/// Base offsets of the segments in a partition directory, ascending.
/// Removes leftovers of interrupted operations (`*.tmp`, `*.deleted`), a
/// spare log file (`*.spare`) and index files whose log is gone.
fn list_segments(dir: &Path) -> Result<Vec<Offset>> {
    let mut bases = Vec::new();
    let mut orphans = Vec::new();
    let entries = std::fs::read_dir(dir).map_err(|e| EngineError::io(dir, e))?;
    for entry in entries {
        let entry = entry.map_err(|e| EngineError::io(dir, e))?;
        let name = entry.file_name();
        let Some(name) = name.to_str() else { continue };
        let Some((stem, ext)) = name.rsplit_once('.') else {
            continue;
        };
        match ext {
            segment::LOG_EXT => {
                if let Ok(b) = stem.parse::<i64>() {
                    if stem.len() == 20 {
                        bases.push(Offset(b));
                    }
                }
            }
            segment::INDEX_EXT | segment::TIME_INDEX_EXT
                if !dir.join(format!("{stem}.{}", segment::LOG_EXT)).exists() =>
            {
                orphans.push(entry.path());
            }
            "tmp" | DELETED_EXT | SPARE_EXT => orphans.push(entry.path()),
            _ => {}
        }
    }
    for p in orphans {
        std::fs::remove_file(&p).map_err(|e| EngineError::io(&p, e))?;
    }
    bases.sort();
    Ok(bases)
}
