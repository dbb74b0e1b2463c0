//! One segment of a partition log: `<base offset, 20 digits>.log` with its
//! `.index` and `.timeindex` (formats in `batch` and `index`).
//!
//! Invariants of a segment:
//! * every batch in `.log` has offsets in `[base, base + 2^32)`, in
//!   increasing order, and the first is at or after `base`;
//! * `meta.size` is the logical length of `.log`: batches appended so far,
//!   whether or not the partition's flusher has written them yet;
//! * a *closed* segment is never written again; its files are exactly as
//!   long as their data and were fsync'ed when it closed;
//! * bytes that recovery did not scan (all of a closed segment, the part of
//!   the active one before its last index entry) are verified — every
//!   batch's CRC and offset continuity, and every index entry against the
//!   batch boundaries found — before they are first served; corrupt ranges
//!   found then are never served;
//! * its files are open only while charged to the shard's descriptor
//!   budget (`fds`): opened on demand, closed when the budget needs room
//!   and no read holds them (engine/DESIGN.md, Descriptors).

use std::cell::{Cell, RefCell};
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::rc::{Rc, Weak};
use std::sync::Arc;

use glommio::io::DmaFile;
use glommio::sync::Semaphore;

use crate::batch::{BatchHeader, HEADER_LEN};
use crate::config::LogConfig;
use crate::error::{EngineError, Result};
use crate::fds::{Charge, FdBudget, Holder};
use crate::index::{Entry, Index, OffsetEntry, TimeEntry};
use crate::io::{self, AppendFile};
use crate::scan::{self, Scanned};
use crate::types::Offset;

pub const LOG_EXT: &str = "log";
pub const INDEX_EXT: &str = "index";
pub const TIME_INDEX_EXT: &str = "timeindex";

/// `<base offset, 20 digits>.<ext>`, as Kafka names segment files.
pub fn file_name(base: Offset, ext: &str) -> String {
    format!("{:020}.{ext}", base.0)
}

/// The open files of a segment.
pub struct SegmentFiles {
    /// O_DIRECT, for appends and for header reads.
    pub dma: Rc<DmaFile>,
    /// Buffered and read-only: the descriptor the network layer `sendfile`s
    /// from. Held by reads in flight, so a segment deleted meanwhile stays
    /// readable until they finish.
    pub read: Arc<std::fs::File>,
    /// The two descriptors, in the shard's budget.
    _fds: Charge,
}

impl SegmentFiles {
    /// Whether anything besides the segment holds a descriptor: a read in
    /// flight, a response waiting to `sendfile`, the active segment's writer.
    fn in_use(&self) -> bool {
        Rc::strong_count(&self.dma) > 1 || Arc::strong_count(&self.read) > 1
    }
}

/// What is known of a segment's contents, kept in memory.
#[derive(Debug)]
pub struct SegmentMeta {
    pub index: Index<OffsetEntry>,
    pub time_index: Index<TimeEntry>,
    /// Logical bytes of `.log`.
    pub size: u64,
    /// One past the last offset in the segment (the base when empty).
    pub next_offset: Offset,
    /// Largest batch timestamp and the last offset of the batch carrying it;
    /// -1 when empty.
    pub max_timestamp: i64,
    pub offset_of_max_timestamp: Offset,
    pub bytes_since_index: u64,
    /// When the segment was created (for `segment.ms`).
    pub created_ms: i64,
    pub closed: bool,
    /// Whether bytes `..verify_end` were checked since the process started.
    /// Bytes past it were checked by recovery or written by this process.
    pub verified: bool,
    pub verify_end: u64,
    /// Byte ranges that hold corruption; never served.
    pub corrupt: Vec<Range<u64>>,
}

impl SegmentMeta {
    fn new(base: Offset, config: &LogConfig, now_ms: i64) -> Self {
        Self {
            index: Index::new(config.index_entries_max()),
            // One more than the offset index: room for the closing entry.
            time_index: Index::new(config.index_entries_max() + 1),
            size: 0,
            next_offset: base,
            max_timestamp: -1,
            offset_of_max_timestamp: base,
            bytes_since_index: 0,
            created_ms: now_ms,
            closed: false,
            verified: true,
            verify_end: 0,
            corrupt: Vec::new(),
        }
    }

    /// Accounts for a batch of `len` bytes stored at `position`, adding index
    /// entries as Kafka does: an offset entry for the batch's last offset
    /// once more than `index.interval.bytes` were written since the last one,
    /// and a time entry alongside it when the largest timestamp grew.
    pub fn note_batch(
        &mut self,
        base: Offset,
        position: u64,
        h: &BatchHeader,
        len: u64,
        interval: u64,
    ) {
        if h.max_timestamp > self.max_timestamp {
            self.max_timestamp = h.max_timestamp;
            self.offset_of_max_timestamp = Offset(h.last_offset());
        }
        // Appends keep offsets and positions inside u32 (see `must_roll`);
        // a segment recovered from elsewhere may not, and then simply goes
        // unindexed past that point (lookups scan further).
        let rel = |o: i64| u32::try_from(o - base.0).ok();
        if self.bytes_since_index > interval {
            let entry = (
                rel(h.last_offset()),
                u32::try_from(position).ok(),
                rel(self.offset_of_max_timestamp.0),
            );
            if let (Some(relative_offset), Some(position), Some(max_rel)) = entry {
                if self.index.push(OffsetEntry {
                    relative_offset,
                    position,
                }) {
                    self.time_index.push(TimeEntry {
                        timestamp: self.max_timestamp,
                        relative_offset: max_rel,
                    });
                }
            }
            self.bytes_since_index = 0;
        }
        self.bytes_since_index += len;
        self.size = self.size.max(position + len);
        self.next_offset = Offset(h.last_offset() + 1);
    }

    /// True when a batch of `len` bytes ending at `last_offset` cannot join
    /// this segment.
    pub fn must_roll(
        &self,
        base: Offset,
        len: u64,
        last_offset: i64,
        config: &LogConfig,
        now_ms: i64,
    ) -> bool {
        if self.size == 0 {
            return false;
        }
        self.size + len > config.segment_bytes
            || self.size + len > u32::MAX as u64
            || now_ms - self.created_ms >= config.segment_ms
            || self.index.is_full()
            || last_offset - base.0 > u32::MAX as i64
    }

    /// The range of corruption containing `pos`, if any.
    pub fn corrupt_at(&self, pos: u64) -> Option<Range<u64>> {
        self.corrupt.iter().find(|r| r.contains(&pos)).cloned()
    }
}

/// A segment; shared by the partition, its flusher and reads in flight.
pub struct Segment {
    pub base: Offset,
    pub log_path: PathBuf,
    pub index_path: PathBuf,
    pub time_index_path: PathBuf,
    /// Open while charged to `fds`; `None` when closed to make room.
    files: RefCell<Option<SegmentFiles>>,
    fds: Rc<FdBudget>,
    /// Its place in the budget's order of use.
    fds_key: Cell<Option<u64>>,
    pub meta: RefCell<SegmentMeta>,
    verify_lock: Semaphore,
}

/// A segment's descriptors, held while they are used: a holder keeps the
/// budget from closing them.
#[derive(Clone)]
pub struct FileHandles {
    pub dma: Rc<DmaFile>,
    pub read: Arc<std::fs::File>,
}

impl Segment {
    /// A new, empty segment whose files are not created yet; they will be
    /// charged to `fds`.
    pub fn new(
        dir: &Path,
        base: Offset,
        config: &LogConfig,
        now_ms: i64,
        fds: &Rc<FdBudget>,
    ) -> Self {
        Self {
            base,
            log_path: dir.join(file_name(base, LOG_EXT)),
            index_path: dir.join(file_name(base, INDEX_EXT)),
            time_index_path: dir.join(file_name(base, TIME_INDEX_EXT)),
            files: RefCell::new(None),
            fds: fds.clone(),
            fds_key: Cell::new(None),
            meta: RefCell::new(SegmentMeta::new(base, config, now_ms)),
            verify_lock: Semaphore::new(1),
        }
    }

    /// Whether the files are open now.
    pub fn files_open(&self) -> bool {
        self.files.borrow().is_some()
    }

    /// Whether anything besides the segment holds one of its descriptors.
    pub(crate) fn files_in_use(&self) -> bool {
        self.files
            .borrow()
            .as_ref()
            .is_some_and(SegmentFiles::in_use)
    }

    /// The open files, if they are, marked as just used.
    fn held(self: &Rc<Self>) -> Option<FileHandles> {
        let h = self.files.borrow().as_ref().map(|f| FileHandles {
            dma: f.dma.clone(),
            read: f.read.clone(),
        })?;
        self.fds
            .touch(&self.fds_key, Rc::downgrade(self) as Weak<dyn Holder>);
        Some(h)
    }

    /// The segment's descriptors, opened (read-only) if they were closed to
    /// make room. Reads hold them while they use them. A segment that
    /// retention removed while a read held it is found under its
    /// `.deleted` name until it is deleted.
    pub async fn handles(self: &Rc<Self>) -> Result<FileHandles> {
        self.open_handles(true).await
    }

    /// [`Segment::handles`] for recovery, whose partition is not in the
    /// budget's order yet (its writer cannot be parked): never waits for
    /// room, which its own descriptors could keep from coming.
    pub(crate) async fn handles_recovering(self: &Rc<Self>) -> Result<FileHandles> {
        self.open_handles(false).await
    }

    async fn open_handles(self: &Rc<Self>, wait: bool) -> Result<FileHandles> {
        if let Some(h) = self.held() {
            return Ok(h);
        }
        let charge = if wait {
            self.fds.charge_waiting(2).await
        } else {
            self.fds.charge(2)
        };
        let dma = match io::open_read(&self.log_path).await {
            Err(EngineError::Io { source, .. })
                if source.kind() == std::io::ErrorKind::NotFound =>
            {
                let deleted = crate::partition::deleted_name(&self.log_path);
                io::open_read(&deleted).await?
            }
            other => other?,
        };
        // Another task may have opened them meanwhile: theirs are kept.
        if let Some(h) = self.held() {
            return Ok(h);
        }
        self.install(Rc::new(dma), charge)
    }

    /// Makes `dma` (its path is `dma.path()`) the segment's open log, with
    /// a buffered read descriptor of the same file, charged as `fds`.
    fn install(self: &Rc<Self>, dma: Rc<DmaFile>, fds: Charge) -> Result<FileHandles> {
        let path = dma
            .path()
            .map(|p| p.to_path_buf())
            .unwrap_or_else(|| self.log_path.clone());
        let read = Arc::new(std::fs::File::open(&path).map_err(|e| EngineError::io(&path, e))?);
        *self.files.borrow_mut() = Some(SegmentFiles {
            dma,
            read,
            _fds: fds,
        });
        Ok(self.held().expect("just installed"))
    }

    /// Opens the log for writing (creating it with `create`) and makes it
    /// the segment's open log, its two descriptors charged as `fds`.
    async fn open_for_writing(self: &Rc<Self>, create: bool, fds: Charge) -> Result<Rc<DmaFile>> {
        let dma = Rc::new(io::open(&self.log_path, create).await?);
        self.install(dma.clone(), fds)?;
        Ok(dma)
    }

    async fn dma(self: &Rc<Self>) -> Result<Rc<DmaFile>> {
        Ok(self.handles().await?.dma)
    }

    /// Reads the header of the batch at `pos`, if a whole header is there.
    pub async fn header_at(self: &Rc<Self>, pos: u64) -> Result<Option<BatchHeader>> {
        let dma = self.dma().await?;
        header_in(&dma, &self.log_path, pos).await
    }

    /// Reads `len` bytes at `pos` of the log.
    pub async fn read_bytes(self: &Rc<Self>, pos: u64, len: usize) -> Result<Vec<u8>> {
        let dma = self.dma().await?;
        io::read_at(&dma, &self.log_path, pos, len).await
    }

    /// Finds the first batch below byte `limit` whose last offset is at least
    /// `target`, starting from the index. Returns its position and header, or
    /// `None` when no such batch is below `limit`. Errors when `target` lies
    /// in a corrupt range.
    pub async fn find(
        self: &Rc<Self>,
        target: Offset,
        limit: u64,
    ) -> Result<Option<(u64, BatchHeader)>> {
        let dma = self.dma().await?;
        let mut pos = {
            let meta = self.meta.borrow();
            let rel = (target.0 - self.base.0).clamp(0, u32::MAX as i64);
            meta.index.floor(rel).map_or(0, |e| u64::from(e.position))
        };
        let mut prev_end = self.base.0;
        while pos < limit {
            let corrupt = self.meta.borrow().corrupt_at(pos);
            if let Some(range) = corrupt {
                let next = header_in(&dma, &self.log_path, range.end).await?;
                let next_base = next.map_or(i64::MAX, |h| h.base_offset);
                if range.end >= limit || (target.0 >= prev_end && target.0 < next_base) {
                    return Err(self.corrupt_error(range.start, "offset lies in corrupt data"));
                }
                pos = range.end;
                continue;
            }
            let Some(h) = header_in(&dma, &self.log_path, pos).await? else {
                return Err(self.corrupt_error(pos, "no batch header where the index points"));
            };
            let Some(len) = h.total_len() else {
                return Err(self.corrupt_error(pos, "batch length out of range"));
            };
            if h.last_offset() >= target.0 {
                return Ok(Some((pos, h)));
            }
            prev_end = h.last_offset() + 1;
            pos += len as u64;
        }
        Ok(None)
    }

    pub fn corrupt_error(&self, position: u64, why: &str) -> EngineError {
        EngineError::Corrupt {
            path: self.log_path.clone(),
            position,
            why: why.to_string(),
        }
    }

    /// Checks the bytes recovery did not scan, once, before they are first
    /// served: batches (CRC, continuity) and index entries (each must name a
    /// batch boundary found; entries from the first one that does not are
    /// dropped from memory, which only makes lookups scan further).
    pub async fn verify(self: &Rc<Self>) -> Result<()> {
        if self.meta.borrow().verified {
            return Ok(());
        }
        let _permit = self
            .verify_lock
            .acquire_permit(1)
            .await
            .map_err(|_| EngineError::Closed)?;
        let end = {
            let m = self.meta.borrow();
            if m.verified {
                return Ok(());
            }
            m.verify_end
        };
        let mut boundaries = std::collections::HashMap::new();
        let mut timestamps = std::collections::HashMap::new();
        let dma = self.dma().await?;
        let report = scan::scan(
            &dma,
            &self.log_path,
            0,
            end,
            scan::First::At(self.base.0),
            |s| {
                boundaries.insert(s.position, s.header.last_offset());
                timestamps.insert(s.header.last_offset(), s.header.max_timestamp);
            },
        )
        .await?;
        let verified_next = report.next_offset.unwrap_or(self.base.0);
        let mut meta = self.meta.borrow_mut();
        let mut corrupt = report.corrupt;
        if report.valid_end < end {
            corrupt.push(report.valid_end..end);
        }
        for r in &corrupt {
            tracing::error!(
                path = %self.log_path.display(),
                start = r.start,
                end = r.end,
                "corrupt bytes in the log: not served"
            );
        }
        corrupt.append(&mut meta.corrupt);
        corrupt.sort_by_key(|r| r.start);
        meta.corrupt = corrupt;
        let base = self.base.0;
        let bad_index = |e: &OffsetEntry| {
            let pos = u64::from(e.position);
            pos < end && boundaries.get(&pos) != Some(&(base + i64::from(e.relative_offset)))
        };
        if let Some(i) = meta.index.position_of(bad_index) {
            tracing::warn!(path = %self.index_path.display(), entry = i, "index entry names no batch: dropped");
            meta.index.truncate_at(i);
        }
        // A time entry names the batch that carried its timestamp.
        let bad_time = |e: &TimeEntry| {
            let o = base + i64::from(e.relative_offset);
            o < verified_next && timestamps.get(&o) != Some(&e.timestamp)
        };
        if let Some(i) = meta.time_index.position_of(bad_time) {
            tracing::warn!(path = %self.time_index_path.display(), entry = i, "time index entry names no batch: dropped");
            meta.time_index.truncate_at(i);
        }
        meta.verified = true;
        Ok(())
    }

    /// Opens a segment found on disk. `active` is the partition's last
    /// segment, which is recovered (scanned from its last index entry, a
    /// torn tail cut off); a closed one only has its indexes checked, and
    /// rebuilt by a full scan if they are missing or damaged. Returns the
    /// segment and, for the active one, its writer, plus the leader epochs
    /// of the batches recovery scanned.
    pub async fn open(
        dir: &Path,
        base: Offset,
        config: &LogConfig,
        active: bool,
        now_ms: i64,
        fds: &Rc<FdBudget>,
    ) -> Result<(Rc<Segment>, Option<SegmentWriter>, Vec<(i32, i64)>)> {
        let seg = Rc::new(Segment::new(dir, base, config, now_ms, fds));
        let dma = if active {
            seg.open_for_writing(false, fds.charge(2)).await?
        } else {
            seg.handles_recovering().await?.dma
        };
        let file_len = dma
            .file_size()
            .await
            .map_err(|e| EngineError::io(&seg.log_path, e.into()))?;
        let modified_ms = std::fs::metadata(&seg.log_path)
            .and_then(|m| m.modified())
            .ok()
            .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
            .map_or(now_ms, |d| d.as_millis() as i64);
        seg.meta.borrow_mut().created_ms = modified_ms.min(now_ms);

        let entries_max = config.index_entries_max();
        let ix = load_index::<OffsetEntry>(&seg.index_path, entries_max, |e| {
            u64::from(e.position) < file_len
        })
        .await;
        let tx = load_index::<TimeEntry>(&seg.time_index_path, entries_max + 1, |_| true).await;
        let mut loaded = match (ix, tx) {
            (Ok(ix), Ok(tx)) => Some((ix, tx)),
            (Err(why), _) | (_, Err(why)) => {
                tracing::warn!(path = %seg.index_path.display(), %why, "rebuilding indexes");
                None
            }
        };
        if let Some((ix, _)) = &loaded {
            if !seg.index_entry_valid(ix.last().copied()).await? {
                tracing::warn!(path = %seg.index_path.display(), "index does not match the log: rebuilding");
                loaded = None;
            }
        }
        let mut epochs = Vec::new();
        let interval = config.index_interval_bytes;
        let scan_from = match loaded {
            Some((ix, tx)) if !active => {
                // A closed segment: its last time entry holds its largest
                // timestamp; its size is the file's.
                let mut meta = seg.meta.borrow_mut();
                if let Some(t) = tx.last() {
                    meta.max_timestamp = t.timestamp;
                    meta.offset_of_max_timestamp = Offset(base.0 + i64::from(t.relative_offset));
                }
                meta.next_offset =
                    Offset(base.0 + ix.last().map_or(0, |e| i64::from(e.relative_offset) + 1));
                meta.index = ix;
                meta.time_index = tx;
                meta.size = file_len;
                meta.closed = true;
                meta.verified = false;
                meta.verify_end = file_len;
                None
            }
            Some((mut ix, mut tx)) => {
                // The active segment: rescan from the last entry's batch.
                let from = ix.last().map_or(0, |e| u64::from(e.position));
                if let Some(rel) = ix.last().map(|e| e.relative_offset) {
                    ix.truncate_where(|e| e.relative_offset < rel);
                    // Time entries up to the dropped entry's batch stay: the
                    // one written with it holds the largest timestamp of
                    // every batch before the scan starts.
                    tx.truncate_where(|e| e.relative_offset <= rel);
                }
                let mut meta = seg.meta.borrow_mut();
                if let Some(t) = tx.last() {
                    meta.max_timestamp = t.timestamp;
                    meta.offset_of_max_timestamp = Offset(base.0 + i64::from(t.relative_offset));
                }
                // The entry just dropped is added again when its batch is
                // scanned: a full interval has passed before it.
                meta.bytes_since_index = if from > 0 { interval + 1 } else { 0 };
                meta.index = ix;
                meta.time_index = tx;
                meta.verified = from == 0;
                meta.verify_end = from;
                Some(from)
            }
            None => {
                let mut meta = seg.meta.borrow_mut();
                meta.index = Index::new(entries_max);
                meta.time_index = Index::new(entries_max + 1);
                Some(0)
            }
        };

        let Some(mut from) = scan_from else {
            return Ok((seg, None, epochs));
        };
        let report = loop {
            let seg2 = seg.clone();
            let first = if from == 0 {
                scan::First::At(base.0)
            } else {
                scan::First::AtLeast(base.0)
            };
            let report = scan::scan(&dma, &seg.log_path, from, file_len, first, |s: &Scanned| {
                seg2.meta
                    .borrow_mut()
                    .note_batch(base, s.position, &s.header, s.len, interval);
                epochs.push((s.header.partition_leader_epoch, s.header.base_offset));
            })
            .await?;
            if from == 0 || report.next_offset.is_some() {
                break report;
            }
            // The batch the index points at is itself torn or corrupt: its
            // first offset is unknown, so recover the whole segment.
            tracing::warn!(path = %seg.log_path.display(), "no valid batch after the last index entry: rescanning");
            from = 0;
            epochs.clear();
            *seg.meta.borrow_mut() = SegmentMeta::new(base, config, now_ms);
        };
        {
            let mut meta = seg.meta.borrow_mut();
            meta.corrupt = report.corrupt.clone();
            meta.size = report.valid_end;
            for r in &report.corrupt {
                tracing::error!(path = %seg.log_path.display(), start = r.start, end = r.end,
                    "corrupt bytes inside the log: kept but never served");
            }
        }
        if !active {
            {
                let mut meta = seg.meta.borrow_mut();
                if report.valid_end < file_len {
                    meta.corrupt.push(report.valid_end..file_len);
                    meta.size = file_len;
                }
                meta.closed = true;
            }
            // Rebuilt indexes of a closed segment are written out whole.
            seg.rewrite_indexes().await?;
            return Ok((seg, None, epochs));
        }
        // Up to the end of the last block is the active segment's padding
        // (see io.rs); anything beyond it is an unfinished write.
        let padding = io::BLOCK - report.valid_end % io::BLOCK;
        if report.torn_bytes > padding % io::BLOCK {
            tracing::info!(path = %seg.log_path.display(), at = report.valid_end,
                bytes = report.torn_bytes, "cutting off a torn tail");
        } else if report.torn_bytes > 0 {
            tracing::debug!(path = %seg.log_path.display(), bytes = report.torn_bytes, "dropping block padding");
        }
        let index_fds = fds.charge(2);
        let mut writer =
            SegmentWriter::attach(seg.clone(), dma, report.valid_end, index_fds).await?;
        // Cut the torn tail (and block padding) so that later appends never
        // sit after garbage, and make what recovery kept durable.
        writer.log.finish().await?;
        seg.rewrite_indexes_with(&mut writer).await?;
        Ok((seg, Some(writer), epochs))
    }

    /// True when the index entry points at a batch whose last offset is the
    /// entry's offset.
    async fn index_entry_valid(self: &Rc<Self>, e: Option<OffsetEntry>) -> Result<bool> {
        let Some(e) = e else { return Ok(true) };
        let h = self.header_at(u64::from(e.position)).await?;
        Ok(h.is_some_and(|h| h.last_offset() == self.base.0 + i64::from(e.relative_offset)))
    }

    /// Writes both index files of a closed segment from memory.
    async fn rewrite_indexes(&self) -> Result<()> {
        let (ix, tx) = {
            let m = self.meta.borrow();
            (m.index.encode_from(0), m.time_index.encode_from(0))
        };
        for (path, bytes) in [(&self.index_path, ix), (&self.time_index_path, tx)] {
            let p = path.clone();
            crate::checkpoint::blocking(move || crate::checkpoint::write_atomic(&p, &bytes))
                .await?;
        }
        let mut m = self.meta.borrow_mut();
        let (n, t) = (m.index.len(), m.time_index.len());
        m.index.set_persisted(n);
        m.time_index.set_persisted(t);
        Ok(())
    }

    /// Replaces both index files of the active segment with what memory
    /// holds, through its writer.
    async fn rewrite_indexes_with(&self, w: &mut SegmentWriter) -> Result<()> {
        w.index.truncate(0).await?;
        w.time_index.truncate(0).await?;
        {
            let mut m = self.meta.borrow_mut();
            m.index.set_persisted(0);
            m.time_index.set_persisted(0);
        }
        let next = self.meta.borrow().next_offset;
        let written = w.log.len();
        w.persist_indexes(next, written).await
    }
}

impl Holder for Segment {
    /// Closes the files unless something holds one of their descriptors.
    fn release(self: Rc<Self>) -> bool {
        let Ok(mut files) = self.files.try_borrow_mut() else {
            return false;
        };
        if files.as_ref().is_some_and(SegmentFiles::in_use) {
            return false;
        }
        *files = None;
        true
    }

    fn lru_key(&self) -> &Cell<Option<u64>> {
        &self.fds_key
    }
}

impl Drop for Segment {
    fn drop(&mut self) {
        self.fds.forget(&self.fds_key);
    }
}

/// Reads the header of the batch at `pos` of `file`, if a whole header is
/// there.
async fn header_in(file: &DmaFile, path: &Path, pos: u64) -> Result<Option<BatchHeader>> {
    let head = io::read_at(file, path, pos, HEADER_LEN).await?;
    Ok(BatchHeader::parse(&head))
}

/// Reads an index file; `Ok(empty)` when it does not exist. Zero entries
/// at the end are the block padding of an index that was being appended.
async fn load_index<E: Entry>(
    path: &Path,
    entries_max: usize,
    valid: impl Fn(&E) -> bool,
) -> Result<Index<E>, String> {
    if !path.exists() {
        return Ok(Index::new(entries_max));
    }
    let mut bytes = io::read_all(path).await.map_err(|e| e.to_string())?;
    let whole = bytes.len() - bytes.len() % E::LEN;
    bytes.truncate(whole);
    while bytes.len() >= E::LEN && bytes[bytes.len() - E::LEN..].iter().all(|&b| b == 0) {
        bytes.truncate(bytes.len() - E::LEN);
    }
    Index::decode(&bytes, entries_max, valid)
}

/// The files of the active segment, appended to by the partition's flusher
/// alone.
pub struct SegmentWriter {
    pub seg: Rc<Segment>,
    pub log: AppendFile,
    pub index: AppendFile,
    pub time_index: AppendFile,
    /// The index files' two descriptors, in the shard's budget (the log's
    /// are the segment's).
    _fds: Charge,
}

impl SegmentWriter {
    /// Creates the files of a new segment and makes their names durable.
    pub async fn create(seg: Rc<Segment>, dir: &Path) -> Result<Self> {
        let w = Self::create_unnamed(seg).await?;
        io::sync_dir(dir).await?;
        Ok(w)
    }

    /// Creates the files of a new segment; their names are durable only
    /// once the caller fsyncs the directory.
    pub async fn create_unnamed(seg: Rc<Segment>) -> Result<Self> {
        Self::start(seg, true).await
    }

    /// Creates the files of a new segment with its log in `spare`: an older
    /// segment's log file, a whole number of blocks long, renamed to the
    /// segment's name and written from its start (writes into blocks
    /// already written change no metadata, so their fdatasyncs are shorter).
    /// The stale batches past what is written all have offsets below `base`:
    /// recovery ends the segment where its own batches end, and the close
    /// cuts the rest off. The name is durable only once the caller fsyncs
    /// the directory.
    pub async fn create_from(seg: Rc<Segment>, spare: &Path) -> Result<Self> {
        let (from, to) = (spare.to_path_buf(), seg.log_path.clone());
        crate::checkpoint::blocking(move || {
            std::fs::rename(&from, &to).map_err(|e| EngineError::io(&from, e))
        })
        .await?;
        Self::start(seg, false).await
    }

    /// Opens the log of a segment to be written from its start (creating
    /// it with `create`) and its index files.
    async fn start(seg: Rc<Segment>, create: bool) -> Result<Self> {
        let dma = seg.open_for_writing(create, seg.fds.charge(2)).await?;
        let index_fds = seg.fds.charge(2);
        Self::attach(seg, dma, 0, index_fds).await
    }

    /// Makes a closed segment the active one again (truncation cut into it).
    pub async fn reopen(seg: Rc<Segment>) -> Result<Self> {
        let len = seg.meta.borrow().size;
        let dma = seg.open_for_writing(false, seg.fds.charge(2)).await?;
        let index_fds = seg.fds.charge(2);
        Self::attach(seg, dma, len, index_fds).await
    }

    /// Opens the writer of the active segment again, whose log holds
    /// `log_len` bytes of data (its writer was closed to make room for
    /// other descriptors, after everything was written and synced). Waits
    /// for room in the descriptor budget: the writer holds nothing yet.
    pub async fn reopen_at(seg: Rc<Segment>, log_len: u64) -> Result<Self> {
        let mut fds = seg.fds.charge_waiting(4).await;
        let log_fds = fds.split(2);
        let dma = seg.open_for_writing(false, log_fds).await?;
        Self::attach(seg, dma, log_len, fds).await
    }

    /// Wraps an open active segment whose log is `log_len` bytes, opening
    /// its index files at the lengths memory says are persisted.
    async fn attach(seg: Rc<Segment>, dma: Rc<DmaFile>, log_len: u64, fds: Charge) -> Result<Self> {
        let log = AppendFile::new(dma, seg.log_path.clone(), log_len).await?;
        let (ix_len, tx_len) = {
            let m = seg.meta.borrow();
            (
                (m.index.persisted() * OffsetEntry::LEN) as u64,
                (m.time_index.persisted() * TimeEntry::LEN) as u64,
            )
        };
        let ix = Rc::new(io::open(&seg.index_path, true).await?);
        let index = AppendFile::new(ix, seg.index_path.clone(), ix_len).await?;
        let tx = Rc::new(io::open(&seg.time_index_path, true).await?);
        let time_index = AppendFile::new(tx, seg.time_index_path.clone(), tx_len).await?;
        Ok(Self {
            seg,
            log,
            index,
            time_index,
            _fds: fds,
        })
    }

    /// Appends every index entry that describes data already in the log;
    /// `written_next` is one past the last offset written to it and
    /// `written` the log's length up to there (a prepared write may be in
    /// flight beyond it).
    pub async fn persist_indexes(&mut self, written_next: Offset, written: u64) -> Result<()> {
        self.persist_index_entries(written_next, written, 0).await
    }

    /// After a group's write: appends an index file's new entries only once
    /// they fill a block. These appends are not fdatasync'ed (a segment's
    /// index files are at its close) and recovery scans the active segment
    /// from its last entry on disk, so entries held back or lost cost a
    /// longer scan after a crash, not data; written each group, the
    /// two small index writes took about 150 µs of every acknowledgement.
    pub async fn persist_index_blocks(&mut self, written_next: Offset, written: u64) -> Result<()> {
        self.persist_index_entries(written_next, written, io::BLOCK as usize)
            .await
    }

    /// Appends an index file's entries describing written data when they
    /// make at least `min_bytes`.
    async fn persist_index_entries(
        &mut self,
        written_next: Offset,
        written: u64,
        min_bytes: usize,
    ) -> Result<()> {
        let base = self.seg.base.0;
        let (ix, ix_n, tx, tx_n) = {
            let m = self.seg.meta.borrow();
            let ix_n = m.index.count_below_position(written);
            let ix = m.index.encode_range(m.index.persisted(), ix_n);
            // A time entry is written once the offset it names is written.
            let rel_end = (written_next.0 - base).clamp(0, u32::MAX as i64) as u32;
            let tx_n = m.time_index.count_below(rel_end);
            let tx = m.time_index.encode_range(m.time_index.persisted(), tx_n);
            (ix, ix_n, tx, tx_n)
        };
        if !ix.is_empty() && ix.len() >= min_bytes {
            self.index.append(&[&ix]).await?;
            self.seg.meta.borrow_mut().index.set_persisted(ix_n);
        }
        if !tx.is_empty() && tx.len() >= min_bytes {
            self.time_index.append(&[&tx]).await?;
            self.seg.meta.borrow_mut().time_index.set_persisted(tx_n);
        }
        Ok(())
    }

    /// Closes the segment for good (on roll): a last time index entry with
    /// the largest timestamp, index files written whole, padding dropped,
    /// everything fsync'ed.
    pub async fn close(mut self) -> Result<()> {
        {
            let mut m = self.seg.meta.borrow_mut();
            let base = self.seg.base.0;
            let (ts, off) = (m.max_timestamp, m.offset_of_max_timestamp.0);
            let rel = u32::try_from(off - base).ok();
            if let Some(relative_offset) = rel.filter(|_| ts >= 0) {
                if m.time_index.last().is_none_or(|t| t.timestamp < ts) {
                    m.time_index.push(TimeEntry {
                        timestamp: ts,
                        relative_offset,
                    });
                }
            }
        }
        let next = self.seg.meta.borrow().next_offset;
        self.persist_indexes(next, self.log.len()).await?;
        // The index files first, together; the log last: once the log is
        // cut to its data, the indexes are complete and durable, which is
        // how recovery tells a finished close from one cut short (a log of
        // whole blocks, see `Partition::open`).
        let (indexed, time_indexed) =
            futures_lite::future::zip(self.index.finish(), self.time_index.finish()).await;
        indexed.and(time_indexed)?;
        self.log.finish().await?;
        self.seg.meta.borrow_mut().closed = true;
        Ok(())
    }
}
