//! A partition's log: an ordered run of segments, appended to by one shard.
//!
//! This module owns the handle ([`Partition`]), the types the engine's
//! users see, and the partition's state (`State`) with its invariants.
//! The work is split by concern:
//!
//! * `create`: new partitions, many at once, their durability grouped;
//! * `open`: opening (recovery of every segment) and closing;
//! * `append`: validating a batch and queueing it for the flusher;
//! * `flush`: the flusher — group commit, writes, fdatasyncs;
//! * `roll`: closing rolled segments, spare (recycled) segment files;
//! * `watermarks`: the durable position and the high watermark, the waits;
//! * `read`: reads by offset and by time;
//! * `retention`: retention, DeleteRecords, removal of segment files;
//! * `truncate`: cutting a divergent suffix off the log;
//! * `snapshots`: producer snapshots, and the producer table at open;
//! * `park`: closing an idle partition's writer to free its descriptors,
//!   and opening it again.
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
//! in flight completes (see `Partition::write_last`).
//! [`Partition::wait_durable`] resolves once a batch is acknowledged by the
//! flush policy, [`Partition::wait_acked`] once it is committed.
//!
//! ## Watermarks
//! `log_start ≤ high_watermark ≤ durable ≤ written_end ≤ log_end`.
//! * `log_end`: next offset to assign (LEO);
//! * `written_end`: everything below is in the segment files;
//! * `durable`: everything below is acknowledged by the flush policy:
//!   fsync'ed under the default (`flush.messages=1`), written under a
//!   relaxed one;
//! * `high_watermark`: committed; consumers read below it. With one
//!   replica ([`CommitMode::Durable`], the default) it is `durable`;
//!   replicated ([`CommitMode::Replicated`]) it moves when the replication
//!   layer reports what every in-sync replica holds
//!   ([`Partition::advance_high_watermark`]), never past `durable`;
//! * `last_stable`: equals the high watermark until transactions exist.
//!
//! `watermarks` has the rules. Long-poll readers wait with
//! [`Partition::wait_high_watermark_above`]: whatever moves the high
//! watermark wakes them.
//!
//! ## Failure
//! A failed write or fsync poisons the partition: the error is kept, every
//! waiter and every later operation fails with it, nothing is retried (the
//! kernel may already have dropped the dirty pages), and the partition's log
//! directory is marked offline.

mod append;
mod create;
mod flush;
mod open;
mod park;
mod read;
mod retention;
mod roll;
mod snapshots;
mod truncate;
mod watermarks;

use std::cell::{Cell, RefCell};
use std::collections::{BTreeMap, VecDeque};
use std::path::{Path, PathBuf};
use std::rc::Rc;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::task::Waker;
use std::time::Instant;

use bytes::Bytes;
use glommio::sync::Semaphore;

use crate::cache::{PartitionCache, TailCache};
use crate::checkpoint::{self, LeaderEpochs};
use crate::config::LogConfig;
use crate::error::{EngineError, Result};
use crate::fds::FdBudget;
use crate::producers::{ProducerEntry, ProducerTable};
use crate::segment::{Segment, SegmentWriter};
use crate::types::{Offset, TopicPartition};

use append::Pending;
use park::Parked;
use roll::Spare;
use watermarks::{BatchEnds, Waiter};

pub use create::{Created, NewPartition, SYNCS_IN_FLIGHT};
pub use retention::{DELETE_PAUSE, DELETE_STEP};
pub use watermarks::{CommitMode, HighWatermarkWait, PositionWait};

/// `path` under the name retention gives a removed segment's files until
/// they are deleted.
pub(crate) fn deleted_name(path: &Path) -> PathBuf {
    retention::suffixed(path, retention::DELETED_EXT)
}

/// A log directory (`log.dirs` entry) shared by all shards.
#[derive(Debug)]
pub struct LogDir {
    pub path: PathBuf,
    /// Partitions placed in it, across shards.
    pub(crate) partitions: std::sync::atomic::AtomicUsize,
    /// Set on the first I/O error in it; its partitions then refuse service.
    pub(crate) offline: std::sync::atomic::AtomicBool,
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

/// The most bytes the flusher puts in one write unless a shard sets its
/// own (`ShardContext::write_bytes_max`).
pub const WRITE_BYTES_MAX: usize = 32 << 20;

/// What the partitions of one shard share.
pub struct ShardContext {
    pub cache: TailCache,
    /// Bytes appended but not yet written, across the shard's partitions
    /// (`write_buffer_bytes_max`); appends wait for room.
    pub(crate) write_buffer: Semaphore,
    pub(crate) write_buffer_bytes_max: u64,
    /// The most bytes the flusher puts in one write (and one fdatasync).
    /// Groups only grow this large when that much is waiting; each costs
    /// about 0.6 ms of CPU with no I/O in flight (bench/README.md), so large
    /// groups keep the disk busy: with 1 MiB batches, 32 MiB groups ran a
    /// median 11 % faster than 4 MiB ones (18 paired rounds, 2026-11-30).
    pub(crate) write_bytes_max: usize,
    /// Removed segment files are shrunk and deleted one at a time per
    /// shard, so that a retention pass over many partitions trims the disk
    /// no faster than one deletion does (see `remove_segment_files`).
    pub(crate) deleting: Rc<Semaphore>,
    /// The shard's budget of open segment file descriptors (unbounded
    /// unless set, see `crate::fds`).
    pub fds: Rc<FdBudget>,
}

impl ShardContext {
    pub fn new(tail_cache_bytes_max: usize, write_buffer_bytes_max: u64) -> Self {
        Self {
            cache: TailCache::new(tail_cache_bytes_max),
            write_buffer: Semaphore::new(write_buffer_bytes_max),
            write_buffer_bytes_max,
            write_bytes_max: WRITE_BYTES_MAX,
            deleting: Rc::new(Semaphore::new(1)),
            fds: FdBudget::new(usize::MAX),
        }
    }
}

/// The offsets a partition reports:
/// `log_start ≤ high_watermark ≤ durable ≤ log_end`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Watermarks {
    pub log_start: Offset,
    pub log_end: Offset,
    /// Committed: consumers read below it (see [`CommitMode`]).
    pub high_watermark: Offset,
    pub last_stable: Offset,
    /// Acknowledged by the flush policy: fdatasync'ed under the default
    /// `flush.messages=1`, written under a relaxed policy.
    pub durable: Offset,
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
    /// `Partition::recycle`) rather than into a new file.
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
    /// Consumers: committed data only (below the high watermark).
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

/// What [`Partition::enforce_retention`] removed.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RetentionOutcome {
    pub segments_deleted: usize,
    pub bytes_deleted: u64,
}

/// A batch boundary: an offset, and the byte position in its segment where
/// the batch at that offset starts (where reads bounded by it stop).
#[derive(Clone, Copy, Debug)]
struct Mark {
    offset: Offset,
    segment: Offset,
    position: u64,
}

/// A partition's state, borrowed by one step at a time (never across an
/// await).
///
/// Invariants:
/// * `log_start ≤ hw.offset ≤ durable.offset ≤ written.offset ≤ log_end`,
///   and `hw == durable` under [`CommitMode::Durable`] (see `watermarks`);
/// * `ends` holds ends of batches above `hw`, at most `BATCH_ENDS_MAX`;
/// * `synced ≤ written.offset`: only what is written is fdatasync'ed;
/// * `segments` is not empty; its last segment is the active one, the one
///   `writer` writes (the writer is out with the flusher while it writes,
///   closed while `parked`, and gone once the partition is closed or
///   poisoned); pending batches may already be in a segment after it,
///   which the flusher rolls to;
/// * `parked` only while nothing is pending or unsynced and the flusher is
///   not running; it is then the writer's segment and its written length;
/// * `pending` holds the batches appended but not yet taken by the flusher,
///   in offset order, and `pending_bytes` their bytes; each holds `units`
///   of the shard's write buffer until it is written or the log fails;
/// * once `failure` is set it stays set, and nothing is written again.
struct State {
    config: LogConfig,
    segments: BTreeMap<Offset, Rc<Segment>>,
    log_start: Offset,
    log_end: Offset,
    written: Mark,
    /// Acknowledged by the flush policy.
    durable: Mark,
    /// The high watermark: committed.
    hw: Mark,
    commit: CommitMode,
    /// Ends of the batches above the high watermark, for
    /// [`Partition::advance_high_watermark`].
    ends: BatchEnds,
    pending: VecDeque<Pending>,
    /// Bytes of the batches in `pending`.
    pending_bytes: usize,
    writer: Option<SegmentWriter>,
    /// The writer, closed to free its descriptors (see `park`).
    parked: Option<Parked>,
    flushing: bool,
    /// The flusher, while a write is in flight, waiting for appends that
    /// could make up the next group (see `Partition::write_last`).
    ahead_waker: Option<Waker>,
    flush_stats: FlushStats,
    unsynced_messages: u64,
    first_unsynced: Option<Instant>,
    sync_requested: bool,
    sync_timer: bool,
    /// Producers waiting for their batch to be durable or committed.
    waiters: Vec<Waiter>,
    /// Readers waiting for the high watermark to pass an offset (long-poll
    /// fetches), by key; each removes its entry when dropped, so the table
    /// holds only live waits.
    hw_waiters: BTreeMap<u64, Waker>,
    /// Followers waiting for the log end to pass an offset, by key (from
    /// the same counter as `hw_waiters`).
    end_waiters: BTreeMap<u64, Waker>,
    hw_waiter_next: u64,
    /// The high watermark `hw_waiters` were last woken for.
    hw_announced: Offset,
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
    /// retention of the oldest segment (`Partition::recycle`) judges time
    /// by it.
    now_ms: i64,
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
    /// background (`Partition::close_rolled`).
    closing: Rc<Semaphore>,
    /// Held while a spare is prepared in the background
    /// (`Partition::recycle`).
    preparing: Rc<Semaphore>,
    cache: Rc<RefCell<PartitionCache>>,
    /// The writer's place in the shard's descriptor budget.
    fds_key: Cell<Option<u64>>,
}

/// A handle to a partition log, cheap to clone within its shard.
#[derive(Clone)]
pub struct Partition {
    inner: Rc<Inner>,
}

impl Partition {
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
        self.inner.state.borrow().watermarks()
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

    /// The idempotent producers this partition knows, by producer id.
    pub fn producers(&self) -> Vec<ProducerEntry> {
        self.inner.state.borrow().producers.entries()
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

    /// Poisons the log (see Failure in the module doc).
    fn fail(&self, st: &mut State, e: &EngineError) {
        tracing::error!(partition = %self.inner.tp, error = %e,
            "write or fsync failed: the log is poisoned and its directory taken offline");
        st.failure = Some(e.to_string());
        self.inner.log_dir.offline.store(true, Ordering::Release);
        // Never written: give their room in the shard's write buffer back.
        let units: u64 = st.pending.drain(..).map(|p| p.units).sum();
        st.pending_bytes = 0;
        self.inner.shard.write_buffer.signal(units);
        watermarks::wake(st);
    }

    /// Takes the io lock, which serialises the flusher, truncation and
    /// close.
    async fn lock_io(&self) -> Result<glommio::sync::Permit<'_>> {
        self.inner
            .io_lock
            .acquire_permit(1)
            .await
            .map_err(|_| EngineError::Closed)
    }

    fn poison(&self, e: &EngineError) {
        let mut st = self.inner.state.borrow_mut();
        self.fail(&mut st, e);
    }

    /// Writes the leader epoch checkpoint (`text`, from
    /// [`LeaderEpochs::encode`]) atomically.
    async fn store_epochs(&self, text: String) -> Result<()> {
        let path = self.inner.dir.join(checkpoint::LEADER_EPOCH_FILE);
        checkpoint::blocking(move || checkpoint::write_atomic(&path, text.as_bytes())).await
    }
}

impl State {
    fn watermarks(&self) -> Watermarks {
        debug_assert!(self.positions_hold(), "checked where they change");
        Watermarks {
            log_start: self.log_start,
            log_end: self.log_end,
            high_watermark: self.hw.offset,
            last_stable: self.hw.offset,
            durable: self.durable.offset,
        }
    }

    /// The active segment: the last one.
    fn active(&self) -> &Rc<Segment> {
        self.segments.values().next_back().expect("a segment")
    }
}
