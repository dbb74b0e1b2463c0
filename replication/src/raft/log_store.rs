//! The coordinator's durable Raft log and vote.
//!
//! ## Files in the coordinator directory
//! * `raft.log`: records, each `length u32 LE | CRC-32C u32 LE | payload`,
//!   the payload a postcard-encoded `Entry`. Appends are fsync'ed before
//!   openraft is told they are durable. On open, records are read until the
//!   first one whose length or CRC is wrong; everything from there is a torn
//!   tail and is cut off (an append that was never acknowledged).
//! * `raft.purged`: the id of the last purged entry (atomic file, same
//!   record framing). Purging rewrites `raft.log` without the purged prefix
//!   once that prefix is more than half of it.
//! * `raft.vote`: the current vote (atomic file, same record framing).
//!
//! Invariant: entries in memory and in `raft.log` are the same contiguous
//! run of indexes, all after the purged id.
//!
//! Memory: the whole unpurged log is held in memory; the state machine's
//! snapshots and openraft's purging keep it to a few thousand entries.

use std::collections::BTreeMap;
use std::fmt::Debug;
use std::fs::{File, OpenOptions};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::ops::RangeBounds;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use openraft::storage::{LogFlushed, LogState, RaftLogStorage};
use openraft::{Entry, LogId, OptionalSend, RaftLogReader, StorageError, StorageIOError, Vote};

use super::TypeConfig;

/// Largest record accepted when reading back (a bound before allocating).
pub const RECORD_BYTES_MAX: usize = 64 << 20;

type NodeId = u64;

fn io_err(e: impl std::fmt::Display) -> StorageError<NodeId> {
    StorageIOError::write_logs(&io::Error::other(e.to_string())).into()
}

/// Frames a payload as one record.
pub fn frame(payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(8 + payload.len());
    out.extend_from_slice(&(payload.len() as u32).to_le_bytes());
    out.extend_from_slice(&crc32c::crc32c(payload).to_le_bytes());
    out.extend_from_slice(payload);
    out
}

/// Reads the records of `bytes` until the first bad one; returns each
/// payload with the byte position after it.
pub fn unframe(bytes: &[u8]) -> Vec<(&[u8], usize)> {
    let mut out = Vec::new();
    let mut at = 0usize;
    while bytes.len() - at >= 8 {
        let len = u32::from_le_bytes(bytes[at..at + 4].try_into().expect("4 bytes")) as usize;
        let crc = u32::from_le_bytes(bytes[at + 4..at + 8].try_into().expect("4 bytes"));
        if len > RECORD_BYTES_MAX || bytes.len() - at - 8 < len {
            break;
        }
        let payload = &bytes[at + 8..at + 8 + len];
        if crc32c::crc32c(payload) != crc {
            break;
        }
        at += 8 + len;
        out.push((payload, at));
    }
    out
}

/// Writes one framed record to `path` atomically and durably.
fn write_record_file(path: &Path, payload: &[u8]) -> io::Result<()> {
    let tmp = path.with_extension("tmp");
    let mut f = File::create(&tmp)?;
    f.write_all(&frame(payload))?;
    f.sync_all()?;
    std::fs::rename(&tmp, path)?;
    File::open(path.parent().unwrap_or(Path::new(".")))?.sync_all()
}

fn read_record_file(path: &Path) -> io::Result<Option<Vec<u8>>> {
    match std::fs::read(path) {
        Ok(bytes) => Ok(unframe(&bytes).first().map(|(p, _)| p.to_vec())),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e),
    }
}

struct Inner {
    dir: PathBuf,
    file: File,
    /// Entry index → (entry, byte position of its record).
    entries: BTreeMap<u64, (Entry<TypeConfig>, u64)>,
    file_len: u64,
    purged: Option<LogId<NodeId>>,
    vote: Option<Vote<NodeId>>,
}

/// The log store; clones share it (one is the reader openraft asks for).
#[derive(Clone)]
pub struct LogStore {
    inner: Arc<Mutex<Inner>>,
}

impl LogStore {
    /// Opens the log in `dir`, cutting off a torn tail.
    pub fn open(dir: &Path) -> io::Result<Self> {
        std::fs::create_dir_all(dir)?;
        let path = dir.join("raft.log");
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)?;
        let mut bytes = Vec::new();
        file.read_to_end(&mut bytes)?;
        let mut entries = BTreeMap::new();
        let mut start = 0u64;
        let mut good_end = 0u64;
        for (payload, end) in unframe(&bytes) {
            let Ok(entry) = postcard::from_bytes::<Entry<TypeConfig>>(payload) else {
                break;
            };
            entries.insert(entry.log_id.index, (entry, start));
            start = end as u64;
            good_end = end as u64;
        }
        if good_end < bytes.len() as u64 {
            tracing::warn!(path = %path.display(), at = good_end, "cutting a torn tail off the Raft log");
            file.set_len(good_end)?;
            file.sync_all()?;
        }
        let purged = read_record_file(&dir.join("raft.purged"))?
            .map(|p| postcard::from_bytes(&p).map_err(io::Error::other))
            .transpose()?;
        let vote = read_record_file(&dir.join("raft.vote"))?
            .map(|p| postcard::from_bytes(&p).map_err(io::Error::other))
            .transpose()?;
        Ok(Self {
            inner: Arc::new(Mutex::new(Inner {
                dir: dir.to_path_buf(),
                file,
                entries,
                file_len: good_end,
                purged,
                vote,
            })),
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Index of the last entry, if any.
    pub fn last_index(&self) -> Option<u64> {
        let g = self.lock();
        g.entries
            .keys()
            .next_back()
            .copied()
            .or(g.purged.map(|p| p.index))
    }
}

impl Inner {
    fn append(&mut self, entries: Vec<Entry<TypeConfig>>) -> io::Result<()> {
        let mut buf = Vec::new();
        let mut placed = Vec::new();
        for e in entries {
            let payload = postcard::to_allocvec(&e).map_err(io::Error::other)?;
            placed.push((e, self.file_len + buf.len() as u64));
            buf.extend_from_slice(&frame(&payload));
        }
        self.file.seek(SeekFrom::Start(self.file_len))?;
        self.file.write_all(&buf)?;
        self.file.sync_data()?;
        self.file_len += buf.len() as u64;
        for (e, pos) in placed {
            self.entries.insert(e.log_id.index, (e, pos));
        }
        Ok(())
    }

    fn truncate(&mut self, from: u64) -> io::Result<()> {
        let Some((_, pos)) = self.entries.get(&from).map(|(e, p)| (e.log_id, *p)) else {
            return Ok(());
        };
        self.file.set_len(pos)?;
        self.file.sync_all()?;
        self.file_len = pos;
        self.entries.split_off(&from);
        Ok(())
    }

    fn purge(&mut self, upto: LogId<NodeId>) -> io::Result<()> {
        let payload = postcard::to_allocvec(&upto).map_err(io::Error::other)?;
        write_record_file(&self.dir.join("raft.purged"), &payload)?;
        self.purged = Some(upto);
        let keep = self.entries.split_off(&(upto.index + 1));
        let dropped_bytes = keep.values().next().map_or(self.file_len, |(_, p)| *p);
        self.entries = keep;
        if dropped_bytes * 2 > self.file_len {
            self.rewrite()?;
        }
        Ok(())
    }

    /// Rewrites the log file with only the entries held in memory.
    fn rewrite(&mut self) -> io::Result<()> {
        let path = self.dir.join("raft.log");
        let tmp = self.dir.join("raft.log.tmp");
        let mut buf = Vec::new();
        let mut positions = Vec::new();
        for (idx, (e, _)) in &self.entries {
            positions.push((*idx, buf.len() as u64));
            buf.extend_from_slice(&frame(&postcard::to_allocvec(e).map_err(io::Error::other)?));
        }
        let mut f = File::create(&tmp)?;
        f.write_all(&buf)?;
        f.sync_all()?;
        std::fs::rename(&tmp, &path)?;
        File::open(&self.dir)?.sync_all()?;
        self.file = OpenOptions::new().read(true).write(true).open(&path)?;
        self.file_len = buf.len() as u64;
        for (idx, pos) in positions {
            if let Some(slot) = self.entries.get_mut(&idx) {
                slot.1 = pos;
            }
        }
        Ok(())
    }
}

impl RaftLogReader<TypeConfig> for LogStore {
    async fn try_get_log_entries<RB: RangeBounds<u64> + Clone + Debug + OptionalSend>(
        &mut self,
        range: RB,
    ) -> Result<Vec<Entry<TypeConfig>>, StorageError<NodeId>> {
        let g = self.lock();
        Ok(g.entries
            .range(range)
            .map(|(_, (e, _))| e.clone())
            .collect())
    }
}

impl RaftLogStorage<TypeConfig> for LogStore {
    type LogReader = LogStore;

    async fn get_log_state(&mut self) -> Result<LogState<TypeConfig>, StorageError<NodeId>> {
        let g = self.lock();
        let last = g
            .entries
            .values()
            .next_back()
            .map(|(e, _)| e.log_id)
            .or(g.purged);
        Ok(LogState {
            last_purged_log_id: g.purged,
            last_log_id: last,
        })
    }

    async fn get_log_reader(&mut self) -> Self::LogReader {
        self.clone()
    }

    async fn save_vote(&mut self, vote: &Vote<NodeId>) -> Result<(), StorageError<NodeId>> {
        let mut g = self.lock();
        let payload = postcard::to_allocvec(vote).map_err(io_err)?;
        write_record_file(&g.dir.join("raft.vote"), &payload).map_err(io_err)?;
        g.vote = Some(*vote);
        Ok(())
    }

    async fn read_vote(&mut self) -> Result<Option<Vote<NodeId>>, StorageError<NodeId>> {
        Ok(self.lock().vote)
    }

    async fn append<I>(
        &mut self,
        entries: I,
        callback: LogFlushed<TypeConfig>,
    ) -> Result<(), StorageError<NodeId>>
    where
        I: IntoIterator<Item = Entry<TypeConfig>> + OptionalSend,
        I::IntoIter: OptionalSend,
    {
        let entries: Vec<_> = entries.into_iter().collect();
        let result = self.lock().append(entries);
        match result {
            Ok(()) => {
                callback.log_io_completed(Ok(()));
                Ok(())
            }
            Err(e) => {
                // A failed fsync poisons the log: report it and stop.
                callback.log_io_completed(Err(io::Error::other(e.to_string())));
                Err(io_err(e))
            }
        }
    }

    async fn truncate(&mut self, log_id: LogId<NodeId>) -> Result<(), StorageError<NodeId>> {
        self.lock().truncate(log_id.index).map_err(io_err)
    }

    async fn purge(&mut self, log_id: LogId<NodeId>) -> Result<(), StorageError<NodeId>> {
        self.lock().purge(log_id).map_err(io_err)
    }
}
