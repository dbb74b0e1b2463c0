//! Creating partitions, many at once (engine/DESIGN.md, Creating
//! partitions).
//!
//! A new partition is a directory holding the empty files of its first
//! segment (`.log`, `.index`, `.timeindex`, based at offset 0) and, when
//! its leader epoch is known, its leader epoch checkpoint naming that
//! epoch from offset 0, so that the first append at that epoch writes no
//! checkpoint. All directories and files of a group are created first,
//! then every checkpoint's data, every new directory and the log directory
//! are fsync'ed together, so a group of N partitions costs one round of
//! concurrent fsyncs, not N rounds of four.
//!
//! Invariants:
//! * a created partition is handed out (and can take appends) only once
//!   its directory's entry in the log directory, its files' entries in its
//!   directory and its checkpoint's data are durable;
//! * a crash at any point leaves, for each partition, a subset of its
//!   directory and files, and every subset opens: no directory is no
//!   partition, a directory without a `.log` gets a new first segment at
//!   open, index files without their log are removed at open, an empty
//!   `.log` is an empty active segment, an empty checkpoint (written in
//!   place, not renamed, its data not yet synced) reads as no epochs;
//! * a created partition's writer starts parked (`park`): the first group
//!   the flusher writes opens it, so an idle partition holds no descriptor.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::rc::Rc;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use super::park::Parked;
use super::{open, LogDir, Partition, ShardContext};
use crate::checkpoint::{self, LeaderEpochs};
use crate::config::LogConfig;
use crate::error::{EngineError, Result};
use crate::io::{self, Durable};
use crate::producers::ProducerTable;
use crate::segment::{self, Segment};
use crate::types::{LeaderEpoch, Offset, TopicPartition};

/// fsyncs in flight at once while a group is made durable (each holds a
/// descriptor while it runs).
pub const SYNCS_IN_FLIGHT: usize = 64;

/// A created partition, or why it could not be.
pub type Created = (TopicPartition, Result<Partition>);

/// A partition to create.
pub struct NewPartition {
    pub tp: TopicPartition,
    pub config: LogConfig,
    /// The epoch of its first leader, when the metadata gives one: its
    /// leader epoch checkpoint is written with it.
    pub leader_epoch: Option<LeaderEpoch>,
}

impl Partition {
    /// Creates the partitions `new` in `log_dir` (none may exist there),
    /// all at once: their directories, empty first segments and
    /// checkpoints, then one round of concurrent fsyncs of every
    /// checkpoint, every new directory and the log directory. `Err` when
    /// that round failed (the log directory is then offline and none is
    /// created); else each partition, or why its files could not be made.
    pub async fn create_many(
        log_dir: &Arc<LogDir>,
        new: Vec<NewPartition>,
        shard: &Rc<ShardContext>,
        now_ms: i64,
    ) -> Result<Vec<Created>> {
        if log_dir.is_offline() {
            return Err(EngineError::DirOffline(log_dir.path.clone()));
        }
        let plan: Vec<(PathBuf, LeaderEpochs)> = new
            .iter()
            .map(|n| {
                let mut epochs = LeaderEpochs::default();
                if let Some(e) = n.leader_epoch {
                    epochs.assign(e, Offset::ZERO);
                }
                (log_dir.path.join(n.tp.dir_name()), epochs)
            })
            .collect();
        let to_make: Vec<(PathBuf, Option<String>)> = plan
            .iter()
            .map(|(d, e)| (d.clone(), (!e.entries().is_empty()).then(|| e.encode())))
            .collect();
        let made: Vec<Result<()>> = checkpoint::blocking(move || {
            to_make
                .iter()
                .map(|(d, e)| make_files(d, e.as_deref()))
                .collect()
        })
        .await;
        let mut to_sync = Vec::new();
        for ((dir, epochs), made) in plan.iter().zip(&made) {
            if made.is_ok() {
                if !epochs.entries().is_empty() {
                    to_sync.push(Durable::Data(dir.join(checkpoint::LEADER_EPOCH_FILE)));
                }
                to_sync.push(Durable::Names(dir.clone()));
            }
        }
        to_sync.push(Durable::Names(log_dir.path.clone()));
        if let Err(e) = io::sync_many(&to_sync, SYNCS_IN_FLIGHT).await {
            log_dir.offline.store(true, Ordering::Release);
            return Err(e);
        }
        let mut out = Vec::with_capacity(new.len());
        for ((n, (dir, epochs)), made) in new.into_iter().zip(plan).zip(made) {
            let created = made.map(|()| {
                log_dir.partitions.fetch_add(1, Ordering::AcqRel);
                empty(&dir, log_dir, &n, epochs, shard, now_ms)
            });
            out.push((n.tp, created));
        }
        Ok(out)
    }
}

/// Makes a partition's directory, the empty files of its first segment and
/// its leader epoch checkpoint (`epochs`, if any; the caller syncs its
/// data). Blocking.
fn make_files(dir: &Path, epochs: Option<&str>) -> Result<()> {
    std::fs::create_dir(dir).map_err(|e| EngineError::io(dir, e))?;
    if let Some(text) = epochs {
        let path = dir.join(checkpoint::LEADER_EPOCH_FILE);
        let mut f = std::fs::File::create_new(&path).map_err(|e| EngineError::io(&path, e))?;
        f.write_all(text.as_bytes())
            .map_err(|e| EngineError::io(&path, e))?;
    }
    for ext in [
        segment::LOG_EXT,
        segment::INDEX_EXT,
        segment::TIME_INDEX_EXT,
    ] {
        let path = dir.join(segment::file_name(Offset::ZERO, ext));
        std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&path)
            .map_err(|e| EngineError::io(&path, e))?;
    }
    Ok(())
}

/// The handle of a partition whose files were just made durable: one
/// empty segment at offset 0, its writer parked.
fn empty(
    dir: &Path,
    log_dir: &Arc<LogDir>,
    new: &NewPartition,
    epochs: LeaderEpochs,
    shard: &Rc<ShardContext>,
    now_ms: i64,
) -> Partition {
    let config = new.config.clone();
    let seg = Rc::new(Segment::new(dir, Offset::ZERO, &config, now_ms, &shard.fds));
    let recovered = open::Recovered {
        segments: [(Offset::ZERO, seg.clone())].into_iter().collect(),
        writer: None,
        parked: Some(Parked::new_segment(seg)),
        log_start: Offset::ZERO,
        epochs,
        epochs_changed: false,
        producers: ProducerTable::default(),
    };
    let tp = new.tp.clone();
    let p = open::assemble(dir, log_dir, tp, config, shard.clone(), recovered, now_ms);
    debug_assert!(p.is_parked());
    p
}
