//! The small text files beside a partition's segments, in Kafka's formats.
//!
//! ## `leader-epoch-checkpoint` (Kafka's format, KIP-101)
//! ```text
//! 0                  version
//! 2                  number of entries
//! 0 0                epoch, start offset of the first batch written in it
//! 3 1200
//! ```
//! Invariant: epochs and start offsets strictly increase.
//!
//! ## `log-start-offset-checkpoint`
//! Kafka keeps one such file per log directory; Sluice keeps one per
//! partition so that a shard never writes a file another shard owns. Same
//! checkpoint format: version 0, 1 entry, `<topic> <partition> <offset>`.
//!
//! ## `partition.metadata` (Kafka's format, KIP-516)
//! ```text
//! version: 0
//! topic_id: <topic id, URL-safe base64 without padding>
//! ```
//!
//! All are replaced atomically: written to `<name>.tmp`, fsync'ed, renamed
//! over the old file, and the directory fsync'ed.

use std::io::Write;
use std::path::Path;

use crate::error::{EngineError, Result};
use crate::types::{LeaderEpoch, Offset, TopicPartition};

pub const LEADER_EPOCH_FILE: &str = "leader-epoch-checkpoint";
pub const LOG_START_FILE: &str = "log-start-offset-checkpoint";
pub const PARTITION_METADATA_FILE: &str = "partition.metadata";

fn corrupt(path: &Path, why: impl Into<String>) -> EngineError {
    EngineError::Corrupt {
        path: path.to_path_buf(),
        position: 0,
        why: why.into(),
    }
}

/// Writes `contents` to `path` atomically and durably. Blocking: call it
/// through `spawn_blocking` on a shard.
pub fn write_atomic(path: &Path, contents: &[u8]) -> Result<()> {
    let tmp = path.with_extension("tmp");
    let io = |p: &Path, e: std::io::Error| EngineError::io(p, e);
    let mut f = std::fs::File::create(&tmp).map_err(|e| io(&tmp, e))?;
    f.write_all(contents).map_err(|e| io(&tmp, e))?;
    f.sync_all().map_err(|e| io(&tmp, e))?;
    std::fs::rename(&tmp, path).map_err(|e| io(path, e))?;
    sync_dir_blocking(path.parent().unwrap_or(Path::new(".")))
}

/// fsyncs a directory, so that names created, renamed or removed in it stay
/// so after a crash. Blocking: the counterpart of `io::sync_dir` for code
/// already running on the blocking pool.
pub fn sync_dir_blocking(dir: &Path) -> Result<()> {
    std::fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| EngineError::io(dir, e))
}

/// Runs a blocking file operation off the shard's reactor thread.
pub async fn blocking<R: Send + 'static>(f: impl FnOnce() -> R + Send + 'static) -> R {
    glommio::executor().spawn_blocking(f).await
}

/// The leader epoch of each range of offsets (Kafka's leader epoch cache).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct LeaderEpochs {
    entries: Vec<(LeaderEpoch, Offset)>,
}

impl LeaderEpochs {
    pub fn entries(&self) -> &[(LeaderEpoch, Offset)] {
        &self.entries
    }

    pub fn latest(&self) -> Option<LeaderEpoch> {
        self.entries.last().map(|e| e.0)
    }

    /// Records that offsets from `start` on were written in `epoch`; returns
    /// whether that changed anything. Older epochs are ignored.
    pub fn assign(&mut self, epoch: LeaderEpoch, start: Offset) -> bool {
        if epoch.0 < 0 {
            return false;
        }
        match self.entries.last() {
            Some(&(e, _)) if epoch <= e => false,
            Some(&(_, s)) if start <= s => {
                // A new epoch starting where the last one did replaces it.
                self.entries.pop();
                self.entries.push((epoch, start));
                true
            }
            _ => {
                self.entries.push((epoch, start));
                true
            }
        }
    }

    /// Forgets epochs that start at or after `end` (the log was truncated).
    pub fn truncate_from(&mut self, end: Offset) -> bool {
        let n = self.entries.partition_point(|&(_, s)| s < end);
        let changed = n != self.entries.len();
        self.entries.truncate(n);
        changed
    }

    /// The end offset of `epoch` given the log end (OffsetForLeaderEpoch):
    /// the start of the next larger epoch, or `log_end` for the latest one.
    /// `None` when `epoch` is older than every entry.
    pub fn end_offset(&self, epoch: LeaderEpoch, log_end: Offset) -> Option<(LeaderEpoch, Offset)> {
        let i = self.entries.partition_point(|&(e, _)| e <= epoch);
        if i == 0 {
            return None;
        }
        let found = self.entries[i - 1].0;
        let end = self.entries.get(i).map_or(log_end, |&(_, s)| s);
        Some((found, end))
    }

    pub fn encode(&self) -> String {
        let mut s = format!("0\n{}\n", self.entries.len());
        for (e, o) in &self.entries {
            s.push_str(&format!("{} {}\n", e.0, o.0));
        }
        s
    }

    pub fn decode(path: &Path, text: &str) -> Result<Self> {
        let mut lines = text.lines();
        let version = lines.next().ok_or_else(|| corrupt(path, "empty"))?;
        if version.trim() != "0" {
            return Err(corrupt(path, format!("unknown version {version}")));
        }
        let count: usize = lines
            .next()
            .and_then(|l| l.trim().parse().ok())
            .ok_or_else(|| corrupt(path, "bad entry count"))?;
        let mut out = LeaderEpochs::default();
        for _ in 0..count {
            let line = lines.next().ok_or_else(|| corrupt(path, "missing entry"))?;
            let mut parts = line.split_whitespace();
            let (Some(e), Some(o), None) = (parts.next(), parts.next(), parts.next()) else {
                return Err(corrupt(path, format!("bad entry {line:?}")));
            };
            let e: i32 = e.parse().map_err(|_| corrupt(path, "bad epoch"))?;
            let o: i64 = o.parse().map_err(|_| corrupt(path, "bad offset"))?;
            if let Some(&(pe, po)) = out.entries.last() {
                if e <= pe.0 || o < po.0 {
                    return Err(corrupt(path, format!("entry {line:?} out of order")));
                }
            }
            out.entries.push((LeaderEpoch(e), Offset(o)));
        }
        Ok(out)
    }
}

/// Encodes the log start offset checkpoint of one partition.
pub fn encode_log_start(tp: &TopicPartition, offset: Offset) -> String {
    format!("0\n1\n{} {} {}\n", tp.topic, tp.partition.0, offset.0)
}

/// Decodes a log start offset checkpoint written by [`encode_log_start`].
pub fn decode_log_start(path: &Path, text: &str) -> Result<Offset> {
    let lines: Vec<&str> = text.lines().collect();
    if lines.len() != 3 || lines[0] != "0" || lines[1] != "1" {
        return Err(corrupt(path, "not a one-entry version 0 checkpoint"));
    }
    let offset = lines[2]
        .rsplit(' ')
        .next()
        .and_then(|o| o.parse::<i64>().ok())
        .filter(|&o| o >= 0)
        .ok_or_else(|| corrupt(path, "bad offset"))?;
    Ok(Offset(offset))
}

/// A topic's unique id (KIP-516), assigned by the metadata coordinator.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct TopicId(pub [u8; 16]);

const B64: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

impl TopicId {
    /// URL-safe base64 without padding, as Kafka prints a `Uuid`.
    pub fn encode(&self) -> String {
        let mut out = String::with_capacity(22);
        let mut bits = 0u32;
        let mut n = 0;
        for &b in &self.0 {
            bits = (bits << 8) | u32::from(b);
            n += 8;
            while n >= 6 {
                n -= 6;
                out.push(B64[((bits >> n) & 63) as usize] as char);
            }
        }
        if n > 0 {
            out.push(B64[((bits << (6 - n)) & 63) as usize] as char);
        }
        out
    }

    pub fn decode(s: &str) -> Option<Self> {
        if s.len() != 22 {
            return None;
        }
        let mut out = [0u8; 16];
        let mut bits = 0u32;
        let mut n = 0;
        let mut i = 0;
        for c in s.bytes() {
            let v = B64.iter().position(|&b| b == c)? as u32;
            bits = (bits << 6) | v;
            n += 6;
            if n >= 8 {
                n -= 8;
                if i < 16 {
                    out[i] = (bits >> n) as u8;
                    i += 1;
                }
            }
        }
        (i == 16).then_some(TopicId(out))
    }
}

pub fn encode_partition_metadata(id: &TopicId) -> String {
    format!("version: 0\ntopic_id: {}\n", id.encode())
}

pub fn decode_partition_metadata(path: &Path, text: &str) -> Result<TopicId> {
    let mut version = None;
    let mut id = None;
    for line in text.lines() {
        if let Some(v) = line.strip_prefix("version: ") {
            version = Some(v.trim());
        } else if let Some(v) = line.strip_prefix("topic_id: ") {
            id = TopicId::decode(v.trim());
        }
    }
    match (version, id) {
        (Some("0"), Some(id)) => Ok(id),
        _ => Err(corrupt(path, "not a version 0 partition.metadata")),
    }
}

/// Reads a file if it exists.
pub fn read_optional(path: &Path) -> Result<Option<String>> {
    match std::fs::read_to_string(path) {
        Ok(s) => Ok(Some(s)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(EngineError::io(path, e)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn leader_epochs_round_trip_and_answer_end_offsets() {
        let mut le = LeaderEpochs::default();
        assert!(le.assign(LeaderEpoch(0), Offset(0)));
        assert!(!le.assign(LeaderEpoch(0), Offset(5)));
        assert!(le.assign(LeaderEpoch(3), Offset(10)));
        assert!(le.assign(LeaderEpoch(5), Offset(20)));
        let p = Path::new("x");
        assert_eq!(LeaderEpochs::decode(p, &le.encode()).unwrap(), le);
        assert_eq!(
            le.end_offset(LeaderEpoch(0), Offset(30)),
            Some((LeaderEpoch(0), Offset(10)))
        );
        assert_eq!(
            le.end_offset(LeaderEpoch(4), Offset(30)),
            Some((LeaderEpoch(3), Offset(20)))
        );
        assert_eq!(
            le.end_offset(LeaderEpoch(9), Offset(30)),
            Some((LeaderEpoch(5), Offset(30)))
        );
        le.truncate_from(Offset(15));
        assert_eq!(le.latest(), Some(LeaderEpoch(3)));
        assert!(LeaderEpochs::decode(p, "0\n2\n3 10\n1 20\n").is_err());
        assert!(LeaderEpochs::decode(p, "1\n0\n").is_err());
    }

    #[test]
    fn log_start_and_topic_id_round_trip() {
        let tp = TopicPartition::new("a b", 3);
        let p = Path::new("x");
        assert_eq!(
            decode_log_start(p, &encode_log_start(&tp, Offset(77))).unwrap(),
            Offset(77)
        );
        assert!(decode_log_start(p, "0\n1\nt 0 -5\n").is_err());
        let id = TopicId([0xfb; 16]);
        let s = id.encode();
        assert_eq!(s.len(), 22);
        assert_eq!(TopicId::decode(&s), Some(id));
        let text = encode_partition_metadata(&id);
        assert_eq!(decode_partition_metadata(p, &text).unwrap(), id);
        // Kafka prints the all-zero Uuid as AAAAAAAAAAAAAAAAAAAAAA.
        assert_eq!(TopicId([0; 16]).encode(), "AAAAAAAAAAAAAAAAAAAAAA");
    }
}
