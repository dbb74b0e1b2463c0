//! Opening a partition (recovery) and closing it.
//!
//! Recovery (engine/DESIGN.md, Recovery): closed segments have their
//! indexes checked, the active one is scanned and a torn tail cut off, a
//! rolled segment whose close a crash cut short is recovered and closed
//! again, and leftovers of interrupted operations are removed.
//!
//! Invariants at the end of an open:
//! * there is at least one segment, and a writer for the last one;
//! * everything recovery kept is durable, so the written mark, the durable
//!   position and the high watermark are the log end, in the default commit
//!   mode (a replica switches to `CommitMode::Replicated` after the open);
//! * `log_start` lies in `[first segment's base, log_end]`.
//!
//! A close leaves every segment in Kafka's layout (each log exactly as long
//! as its batches), the indexes complete and fsync'ed, and a producer
//! snapshot at the log end.

use std::cell::{Cell, RefCell};
use std::collections::{BTreeMap, VecDeque};
use std::path::Path;
use std::rc::Rc;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use glommio::sync::Semaphore;

use super::create::NewPartition;
use super::park::Parked;
use super::retention::DELETED_EXT;
use super::roll::SPARE_EXT;
use super::snapshots::load_producers;
use super::watermarks::{self, BatchEnds, CommitMode};
use super::{FlushStats, Inner, LogDir, Mark, Partition, ShardContext, State};
use crate::cache::PartitionCache;
use crate::checkpoint::{self, LeaderEpochs};
use crate::config::LogConfig;
use crate::error::{EngineError, Result};
use crate::fds::FdBudget;
use crate::io;
use crate::producers::ProducerTable;
use crate::segment::{self, Segment, SegmentWriter};
use crate::types::{LeaderEpoch, Offset, TopicPartition};

/// What recovery found: the segments, with a writer for the last one
/// (open, or parked for a partition just created).
pub(super) struct Recovered {
    pub(super) segments: BTreeMap<Offset, Rc<Segment>>,
    pub(super) writer: Option<SegmentWriter>,
    pub(super) parked: Option<Parked>,
    pub(super) log_start: Offset,
    pub(super) epochs: LeaderEpochs,
    /// Whether `epochs` differ from the checkpoint on disk.
    pub(super) epochs_changed: bool,
    pub(super) producers: ProducerTable,
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
        if !dir.exists() {
            let new = NewPartition {
                tp,
                config,
                leader_epoch: None,
            };
            let created = Self::create_many(log_dir, vec![new], &shard, now_ms).await?;
            let (_, p) = created.into_iter().next().expect("one asked for");
            // Opened to be used at once (a produce, a test): its writer
            // too, so that the first group goes out without waiting for it.
            let p = p?;
            {
                let _io = p.lock_io().await?;
                p.unpark().await?;
            }
            return Ok(p);
        }
        let recovered = recover(dir, &config, now_ms, &shard.fds).await?;
        if recovered.epochs_changed {
            // Unchanged, the checkpoint is not written again: an open costs
            // no fsync then.
            let epochs_path = dir.join(checkpoint::LEADER_EPOCH_FILE);
            let epochs_text = recovered.epochs.encode();
            checkpoint::blocking(move || {
                checkpoint::write_atomic(&epochs_path, epochs_text.as_bytes())
            })
            .await?;
        }
        Ok(assemble(dir, log_dir, tp, config, shard, recovered, now_ms))
    }

    /// Writes and fsyncs everything, persists the indexes, cuts the active
    /// log to its data and refuses further operations.
    pub async fn close(&self) -> Result<()> {
        let flushed = self.flush().await;
        let _permit = self.lock_io().await?;
        let settled = self.settled().await;
        // A parked writer is opened again to finish the active segment.
        let unparked = self.unpark().await;
        // A spare being prepared is in the directory before it closes.
        drop(self.inner.preparing.acquire_permit(1).await);
        let writer = {
            let mut st = self.inner.state.borrow_mut();
            st.closed = true;
            watermarks::wake(&mut st);
            st.writer.take()
        };
        self.inner.shard.cache.clear(&self.inner.cache);
        flushed?;
        settled?;
        unparked?;
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

/// The handle of a partition opened in `dir` with what recovery found.
pub(super) fn assemble(
    dir: &Path,
    log_dir: &Arc<LogDir>,
    tp: TopicPartition,
    config: LogConfig,
    shard: Rc<ShardContext>,
    recovered: Recovered,
    now_ms: i64,
) -> Partition {
    let p = Partition {
        inner: Rc::new(Inner {
            tp,
            dir: dir.to_path_buf(),
            log_dir: log_dir.clone(),
            shard,
            state: RefCell::new(new_state(config, recovered, now_ms)),
            io_lock: Semaphore::new(1),
            closing: Rc::new(Semaphore::new(1)),
            preparing: Rc::new(Semaphore::new(1)),
            cache: Rc::new(RefCell::new(PartitionCache::default())),
            fds_key: Cell::new(None),
        }),
    };
    if p.inner.state.borrow().writer.is_some() {
        p.touch_writer();
    }
    p
}

/// Recovers the partition in `dir`: its checkpoints, its segments, a
/// writer for the active one (a new segment if there is none) and its
/// producers.
async fn recover(
    dir: &Path,
    config: &LogConfig,
    now_ms: i64,
    fds: &Rc<FdBudget>,
) -> Result<Recovered> {
    let bases = list_segments(dir)?;
    let log_start_path = dir.join(checkpoint::LOG_START_FILE);
    let log_start_cp = match checkpoint::read_optional(&log_start_path)? {
        Some(t) => checkpoint::decode_log_start(&log_start_path, &t)?,
        None => Offset::ZERO,
    };
    let epochs_path = dir.join(checkpoint::LEADER_EPOCH_FILE);
    let mut epochs = match checkpoint::read_optional(&epochs_path)? {
        // Written at creation without a rename (`create`): a crash before
        // its fsync may leave it empty, and then no batch depends on it.
        Some(t) if t.is_empty() => LeaderEpochs::default(),
        Some(t) => LeaderEpochs::decode(&epochs_path, &t)?,
        None => LeaderEpochs::default(),
    };
    let epochs_read = epochs.clone();
    let (mut segments, writer) =
        open_segments(dir, &bases, config, &mut epochs, now_ms, fds).await?;
    let writer = match writer {
        Some(w) => w,
        None => {
            let base = segments
                .values()
                .next_back()
                .map_or(log_start_cp, |last| last.meta.borrow().next_offset);
            let seg = Rc::new(Segment::new(dir, base, config, now_ms, fds));
            let w = SegmentWriter::create(seg.clone(), dir).await?;
            segments.insert(base, seg);
            w
        }
    };
    let first_base = *segments.keys().next().expect("a segment");
    let log_end = writer.seg.meta.borrow().next_offset;
    let log_start = log_start_cp.max(first_base).min(log_end);
    let mut producers = load_producers(dir, &segments, log_start, log_end).await?;
    // Producers that expired while the partition was closed stay
    // forgotten, as if the retention pass had run before the close.
    producers.expire(now_ms, config.producer_id_expiration_ms);
    Ok(Recovered {
        segments,
        writer: Some(writer),
        parked: None,
        log_start,
        // A missing checkpoint reads as no epochs.
        epochs_changed: epochs != epochs_read,
        epochs,
        producers,
    })
}

/// Opens the segments based at `bases`, recovering the last one (and the
/// one before it if its close was cut short), and notes the leader epochs
/// of the batches recovery scanned. Returns the segments and the active
/// one's writer.
async fn open_segments(
    dir: &Path,
    bases: &[Offset],
    config: &LogConfig,
    epochs: &mut LeaderEpochs,
    now_ms: i64,
    fds: &Rc<FdBudget>,
) -> Result<(BTreeMap<Offset, Rc<Segment>>, Option<SegmentWriter>)> {
    let mut segments = BTreeMap::new();
    let mut writer = None;
    for (i, &base) in bases.iter().enumerate() {
        let active = i + 1 == bases.len();
        if i + 2 == bases.len() && close_unfinished(dir, base)? {
            // Rolled away from, its close (in the background) cut short:
            // recovered as an active segment is, then closed.
            let (seg, w, seen) = Segment::open(dir, base, config, true, now_ms, fds).await?;
            for (e, o) in seen {
                epochs.assign(LeaderEpoch(e), Offset(o));
            }
            if let Some(w) = w {
                w.close().await?;
            }
            segments.insert(base, seg);
            continue;
        }
        let (seg, w, seen) = Segment::open(dir, base, config, active, now_ms, fds).await?;
        if active {
            epochs.truncate_from(seg.meta.borrow().next_offset);
            for (e, o) in seen {
                epochs.assign(LeaderEpoch(e), Offset(o));
            }
        }
        segments.insert(base, seg);
        writer = w;
    }
    Ok((segments, writer))
}

/// The state of a partition just recovered: everything in it is durable.
fn new_state(config: LogConfig, r: Recovered, now_ms: i64) -> State {
    let active = r.segments.values().next_back().expect("a segment");
    let (log_end, active_size) = {
        let m = active.meta.borrow();
        (m.next_offset, m.size)
    };
    let mark = Mark {
        offset: log_end,
        segment: active.base,
        position: active_size,
    };
    State {
        config,
        segments: r.segments,
        log_start: r.log_start,
        log_end,
        written: mark,
        durable: mark,
        hw: mark,
        commit: CommitMode::Durable,
        ends: BatchEnds::default(),
        pending: VecDeque::new(),
        pending_bytes: 0,
        writer: r.writer,
        parked: r.parked,
        flushing: false,
        ahead_waker: None,
        flush_stats: FlushStats::default(),
        unsynced_messages: 0,
        first_unsynced: None,
        sync_requested: false,
        sync_timer: false,
        waiters: Vec::new(),
        hw_waiters: BTreeMap::new(),
        end_waiters: BTreeMap::new(),
        hw_waiter_next: 0,
        hw_announced: log_end,
        failure: None,
        synced: log_end,
        sync_waiters: Vec::new(),
        epochs: r.epochs,
        epochs_dirty: false,
        roll_requested: false,
        closed: false,
        producers: r.producers,
        truncations: 0,
        spare: None,
        now_ms,
    }
}

/// Whether the close of the segment at `base`, rolled away from, may not
/// have completed: its log is still a whole number of blocks long. A close
/// cuts the log to its data after its index files are complete and
/// durable ([`SegmentWriter::close`]), and data rarely ends on a block
/// boundary; a closed segment that does is recovered and closed again,
/// which changes nothing. Before its close, a segment's log is a whole
/// number of blocks long whether it is a new file (grown by block-aligned
/// writes) or a spare (rounded up before use, `Partition::recycle`).
fn close_unfinished(dir: &Path, base: Offset) -> Result<bool> {
    let path = dir.join(segment::file_name(base, segment::LOG_EXT));
    let len = std::fs::metadata(&path)
        .map_err(|e| EngineError::io(&path, e))?
        .len();
    Ok(len % io::BLOCK == 0)
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
