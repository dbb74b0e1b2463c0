//! Retention, DeleteRecords, and the removal of segment files
//! (engine/DESIGN.md, Retention).
//!
//! Invariants:
//! * only whole closed segments wholly below the high watermark are
//!   removed, oldest first; the log start never goes back, and never past
//!   the high watermark;
//! * a segment leaves the log (no new read finds it) before its files are
//!   renamed `<name>.deleted` and the directory fsync'ed; the files are
//!   deleted `file.delete.delay.ms` later, so reads in flight finish;
//! * a shard deletes one file at a time, each shrunk step by step before it
//!   is unlinked.

use std::path::{Path, PathBuf};
use std::rc::Rc;
use std::sync::Arc;
use std::time::Duration;

use glommio::sync::Semaphore;

use super::{Partition, RetentionOutcome, State};
use crate::checkpoint;
use crate::config::{CleanupPolicy, LogConfig};
use crate::error::{EngineError, Result};
use crate::segment::Segment;
use crate::types::Offset;

/// Suffix of segment files removed from the log and waiting to be deleted.
pub(super) const DELETED_EXT: &str = "deleted";
/// A removed log file is shrunk by this much at a time before it is unlinked.
pub const DELETE_STEP: u64 = 8 << 20;
/// The pause between two shrinking steps.
pub const DELETE_PAUSE: Duration = Duration::from_millis(10);

impl Partition {
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
            st.check_positions();
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
            let doomed = expired(&mut st, now_ms);
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

    /// Takes the files of `segments` out of the log and deletes them
    /// `file.delete.delay.ms` later (see [`remove_segment_files`]).
    pub(super) async fn remove_files(&self, segments: &[Rc<Segment>]) -> Result<()> {
        let delay = Duration::from_millis(self.inner.state.borrow().config.file_delete_delay_ms);
        remove_segment_files(&self.inner.dir, segments, delay, &self.inner.shard.deleting).await
    }
}

/// The oldest segments retention removes now, in order; asks for the
/// active segment to be rolled when all of it has expired.
fn expired(st: &mut State, now_ms: i64) -> Vec<Rc<Segment>> {
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
        if !removable(st, &seg, next_base, total, now_ms) {
            break;
        }
        total -= seg.meta.borrow().size;
        doomed.push(seg);
    }
    doomed
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
pub(super) fn removable(
    st: &State,
    seg: &Segment,
    next_base: Offset,
    total: u64,
    now_ms: i64,
) -> bool {
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
pub(super) fn take_out(st: &mut State, doomed: &[Rc<Segment>]) {
    for seg in doomed {
        st.segments.remove(&seg.base);
    }
    if let Some(first) = st.segments.keys().next().copied() {
        st.log_start = st.log_start.max(first);
    }
    let start = st.log_start.0;
    st.producers.evict_below(start);
    st.check_positions();
}

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
pub(super) fn delete_later(paths: Vec<PathBuf>, delay: Duration, deleting: &Rc<Semaphore>) {
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
pub(super) fn suffixed(path: &Path, ext: &str) -> PathBuf {
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
