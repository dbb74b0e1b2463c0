//! Producer snapshots (`<offset>.snapshot`, format in [`crate::producers`])
//! and the producer table at open.
//!
//! The table is a pure function of the log; snapshots only shorten the
//! replay of batch headers at open. Invariants:
//! * a snapshot named `o` describes the producers after every batch below
//!   `o`; one written at a roll is dropped if a truncation or a close comes
//!   before it is written (`State::truncations`);
//! * snapshots are written and removed with the partition's io lock held,
//!   at most [`producers::SNAPSHOTS_KEPT`] are kept, and none above the log
//!   end: an open deletes those (they describe batches a crash cut off), a
//!   truncation those above its new end.

use std::collections::BTreeMap;
use std::path::Path;
use std::rc::Rc;

use super::Partition;
use crate::checkpoint;
use crate::error::{EngineError, Result};
use crate::producers::{self, ProducerTable};
use crate::segment::Segment;
use crate::types::Offset;

impl Partition {
    /// Writes a producer snapshot in the background, unless the partition
    /// closes or is truncated first.
    pub(super) fn schedule_snapshot(&self, offset: Offset, snapshot: Vec<u8>, truncations: u64) {
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
    pub(super) async fn store_snapshot(&self, offset: Offset, snapshot: Vec<u8>) -> Result<()> {
        let dir = self.inner.dir.clone();
        checkpoint::blocking(move || -> Result<()> {
            checkpoint::write_atomic(&dir.join(producers::snapshot_name(offset.0)), &snapshot)?;
            let offsets = list_snapshots(&dir)?;
            let old = offsets.len().saturating_sub(producers::SNAPSHOTS_KEPT);
            remove_snapshots(&dir, &offsets[..old])
        })
        .await
    }

    /// Deletes the snapshots above `end`, the log end after a truncation.
    pub(super) async fn remove_snapshots_above(&self, end: Offset) -> Result<()> {
        let dir = self.inner.dir.clone();
        checkpoint::blocking(move || {
            let stale: Vec<i64> = list_snapshots(&dir)?
                .into_iter()
                .filter(|o| *o > end.0)
                .collect();
            remove_snapshots(&dir, &stale)
        })
        .await
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
pub(super) async fn load_producers(
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
    let below_end: Vec<i64> = offsets.into_iter().filter(|o| *o <= log_end.0).collect();
    let (from, mut table) = match newest_snapshot(dir, &below_end).await? {
        Some(found) => found,
        None => {
            let from = *segments
                .keys()
                .nth_back(1)
                .unwrap_or_else(|| segments.keys().next().expect("a segment"));
            (from.0, ProducerTable::default())
        }
    };
    replay(segments, from, log_end, &mut table).await?;
    table.evict_below(log_start.0);
    Ok(table)
}

/// The newest of the snapshots at `offsets` (ascending) that decodes, as
/// the offset it was taken at and its table; damaged ones are skipped.
async fn newest_snapshot(dir: &Path, offsets: &[i64]) -> Result<Option<(i64, ProducerTable)>> {
    for &o in offsets.iter().rev() {
        let path = dir.join(producers::snapshot_name(o));
        let p = path.clone();
        let bytes = checkpoint::blocking(move || std::fs::read(&p))
            .await
            .map_err(|e| EngineError::io(&path, e))?;
        match ProducerTable::decode_snapshot(&bytes, producers::PRODUCERS_MAX) {
            Ok(found) => return Ok(Some(found)),
            Err(why) => {
                tracing::warn!(path = %path.display(), %why, "damaged producer snapshot: not used")
            }
        }
    }
    Ok(None)
}

/// Records in `table` the header of every batch whose last offset is at
/// least `from`, up to `log_end`.
async fn replay(
    segments: &BTreeMap<Offset, Rc<Segment>>,
    from: i64,
    log_end: Offset,
    table: &mut ProducerTable,
) -> Result<()> {
    let bases: Vec<Offset> = segments.keys().copied().collect();
    for (i, base) in bases.iter().enumerate() {
        let next = bases.get(i + 1).map_or(log_end, |b| *b);
        if next.0 <= from {
            continue;
        }
        let seg = &segments[base];
        // Only at open, while the partition's own writer is held.
        let dma = seg.handles_recovering().await?.dma;
        let (size, start) = {
            let m = seg.meta.borrow();
            let rel = (from - base.0).clamp(0, i64::from(u32::MAX));
            let start = m.index.floor(rel).map_or(0, |e| u64::from(e.position));
            (m.size, start)
        };
        crate::scan::scan(
            &dma,
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
    Ok(())
}
