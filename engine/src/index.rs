//! The sparse indexes beside each segment, in Kafka's file formats.
//!
//! ## `.index` (offset index), 8 bytes an entry, big-endian
//! ```text
//! 0 4 relativeOffset  offset - segment base offset
//! 4 4 position        byte position of that batch in the .log file
//! ```
//! One entry for the first batch after every `index.interval.bytes` of log.
//! Invariant: relative offsets and positions strictly increase, and every
//! position lies inside the log file.
//!
//! ## `.timeindex` (time index), 12 bytes an entry, big-endian
//! ```text
//! 0 8 timestamp       largest timestamp seen in the segment so far
//! 8 4 relativeOffset  last offset of the batch that carried it
//! ```
//! Appended with the offset index entry when the largest timestamp has grown,
//! and once more when the segment is closed, so that the last entry of a
//! closed segment holds its largest timestamp (which retention reads).
//! Invariant: timestamps strictly increase, relative offsets never decrease.
//!
//! Both are rebuildable from the log: an index that fails these checks on
//! load is thrown away and rebuilt by scanning the segment.

/// One fixed-size entry of an index file.
pub trait Entry: Copy + std::fmt::Debug + PartialEq {
    /// Bytes of one entry on disk.
    const LEN: usize;
    /// The key lookups search by.
    fn key(&self) -> i64;
    fn encode(&self, out: &mut Vec<u8>);
    fn decode(b: &[u8]) -> Self;
    /// True when `next` may follow `self` in a well-formed index.
    fn may_precede(&self, next: &Self) -> bool;
    /// The relative offset the entry points at.
    fn relative_offset(&self) -> u32;
}

/// `.index` entry: relative offset → byte position.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct OffsetEntry {
    pub relative_offset: u32,
    pub position: u32,
}
const _: () = assert!(std::mem::size_of::<OffsetEntry>() == <OffsetEntry as Entry>::LEN);

impl Entry for OffsetEntry {
    const LEN: usize = 8;
    fn key(&self) -> i64 {
        i64::from(self.relative_offset)
    }
    fn encode(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.relative_offset.to_be_bytes());
        out.extend_from_slice(&self.position.to_be_bytes());
    }
    fn decode(b: &[u8]) -> Self {
        Self {
            relative_offset: u32::from_be_bytes(b[0..4].try_into().expect("4 bytes")),
            position: u32::from_be_bytes(b[4..8].try_into().expect("4 bytes")),
        }
    }
    fn may_precede(&self, next: &Self) -> bool {
        self.relative_offset < next.relative_offset && self.position < next.position
    }
    fn relative_offset(&self) -> u32 {
        self.relative_offset
    }
}

/// `.timeindex` entry: timestamp → relative offset.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TimeEntry {
    pub timestamp: i64,
    pub relative_offset: u32,
}
// On disk a timestamp and a relative offset; in memory the struct is padded.
const _: () =
    assert!(std::mem::size_of::<i64>() + std::mem::size_of::<u32>() == <TimeEntry as Entry>::LEN);

impl Entry for TimeEntry {
    const LEN: usize = 12;
    fn key(&self) -> i64 {
        self.timestamp
    }
    fn encode(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.timestamp.to_be_bytes());
        out.extend_from_slice(&self.relative_offset.to_be_bytes());
    }
    fn decode(b: &[u8]) -> Self {
        Self {
            timestamp: i64::from_be_bytes(b[0..8].try_into().expect("8 bytes")),
            relative_offset: u32::from_be_bytes(b[8..12].try_into().expect("4 bytes")),
        }
    }
    fn may_precede(&self, next: &Self) -> bool {
        self.timestamp < next.timestamp && self.relative_offset <= next.relative_offset
    }
    fn relative_offset(&self) -> u32 {
        self.relative_offset
    }
}

/// An index held in memory, with how much of it is already on disk.
#[derive(Clone, Debug)]
pub struct Index<E: Entry> {
    entries: Vec<E>,
    entries_max: usize,
    /// Entries `..persisted` are in the file.
    persisted: usize,
}

impl<E: Entry> Index<E> {
    pub fn new(entries_max: usize) -> Self {
        Self {
            entries: Vec::new(),
            entries_max,
            persisted: 0,
        }
    }

    /// Decodes an index file. `valid` checks each entry against the log it
    /// indexes. Returns why the file is not a well-formed index, so that the
    /// caller can rebuild it.
    pub fn decode(
        bytes: &[u8],
        entries_max: usize,
        valid: impl Fn(&E) -> bool,
    ) -> Result<Self, String> {
        if bytes.len() % E::LEN != 0 {
            return Err(format!(
                "size {} is not a multiple of {}",
                bytes.len(),
                E::LEN
            ));
        }
        let mut entries: Vec<E> = Vec::with_capacity((bytes.len() / E::LEN).min(entries_max));
        for chunk in bytes.chunks_exact(E::LEN) {
            let e = E::decode(chunk);
            if !valid(&e) {
                return Err(format!("entry {e:?} points outside the log"));
            }
            if let Some(prev) = entries.last() {
                if !prev.may_precede(&e) {
                    return Err(format!("entry {e:?} does not follow {prev:?}"));
                }
            }
            if entries.len() == entries_max {
                return Err(format!("more than {entries_max} entries"));
            }
            entries.push(e);
        }
        let persisted = entries.len();
        Ok(Self {
            entries,
            entries_max,
            persisted,
        })
    }

    pub fn is_full(&self) -> bool {
        self.entries.len() >= self.entries_max
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    pub fn last(&self) -> Option<&E> {
        self.entries.last()
    }

    /// Appends an entry if it keeps the index well-formed and the index has
    /// room; returns whether it did.
    pub fn push(&mut self, e: E) -> bool {
        if self.is_full() || self.entries.last().is_some_and(|l| !l.may_precede(&e)) {
            return false;
        }
        self.entries.push(e);
        true
    }

    /// The last entry whose key is at most `key`.
    pub fn floor(&self, key: i64) -> Option<&E> {
        let i = self.entries.partition_point(|e| e.key() <= key);
        i.checked_sub(1).map(|i| &self.entries[i])
    }

    /// The first entry whose key is at least `key`.
    pub fn ceiling(&self, key: i64) -> Option<&E> {
        let i = self.entries.partition_point(|e| e.key() < key);
        self.entries.get(i)
    }

    /// Drops every entry that `keep` rejects from the first such entry on.
    pub fn truncate_where(&mut self, keep: impl Fn(&E) -> bool) {
        let n = self.entries.partition_point(keep);
        self.entries.truncate(n);
        self.persisted = self.persisted.min(n);
    }

    /// The index of the first entry `bad` accepts.
    pub fn position_of(&self, bad: impl Fn(&E) -> bool) -> Option<usize> {
        self.entries.iter().position(bad)
    }

    /// Keeps entries `..n` only.
    pub fn truncate_at(&mut self, n: usize) {
        self.entries.truncate(n);
        self.persisted = self.persisted.min(n);
    }

    /// The file's bytes from entry `from` on.
    pub fn encode_from(&self, from: usize) -> Vec<u8> {
        self.encode_range(from, self.entries.len())
    }

    /// The file's bytes of entries `from..to`.
    pub fn encode_range(&self, from: usize, to: usize) -> Vec<u8> {
        let to = to.max(from);
        let mut out = Vec::with_capacity((to - from) * E::LEN);
        for e in &self.entries[from..to] {
            e.encode(&mut out);
        }
        out
    }

    /// Entries already in the file.
    pub fn persisted(&self) -> usize {
        self.persisted
    }

    /// Records that entries `..n` are in the file.
    pub fn set_persisted(&mut self, n: usize) {
        assert!(n <= self.entries.len());
        self.persisted = n;
    }

    /// Number of entries whose relative offset is below `rel`.
    pub fn count_below(&self, rel: u32) -> usize {
        self.entries.partition_point(|e| e.relative_offset() < rel)
    }
}

impl Index<OffsetEntry> {
    /// Number of entries pointing below byte `position`.
    pub fn count_below_position(&self, position: u64) -> usize {
        self.entries
            .partition_point(|e| u64::from(e.position) < position)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn oe(r: u32, p: u32) -> OffsetEntry {
        OffsetEntry {
            relative_offset: r,
            position: p,
        }
    }

    #[test]
    fn floor_and_ceiling_find_neighbours() {
        let mut ix = Index::new(10);
        assert!(ix.floor(5).is_none());
        for (r, p) in [(3, 100), (7, 5000), (12, 9000)] {
            assert!(ix.push(oe(r, p)));
        }
        assert!(!ix.push(oe(12, 9500)), "offsets must increase");
        assert_eq!(ix.floor(2), None);
        assert_eq!(ix.floor(3), Some(&oe(3, 100)));
        assert_eq!(ix.floor(11), Some(&oe(7, 5000)));
        assert_eq!(ix.floor(99), Some(&oe(12, 9000)));
        assert_eq!(ix.ceiling(8), Some(&oe(12, 9000)));
        assert_eq!(ix.ceiling(13), None);
    }

    #[test]
    fn encoded_index_decodes_to_the_same_entries_in_kafka_byte_order() {
        let mut ix = Index::new(10);
        ix.push(oe(1, 4096));
        ix.push(oe(2, 8200));
        let bytes = ix.encode_from(0);
        assert_eq!(&bytes[..8], &[0, 0, 0, 1, 0, 0, 0x10, 0]);
        let back = Index::<OffsetEntry>::decode(&bytes, 10, |_| true).unwrap();
        assert_eq!(back.entries, ix.entries);
        assert_eq!(back.persisted(), 2);
        let mut t = Index::new(4);
        t.push(TimeEntry {
            timestamp: 10,
            relative_offset: 0,
        });
        t.push(TimeEntry {
            timestamp: 11,
            relative_offset: 0,
        });
        let tb = t.encode_from(0);
        assert_eq!(tb.len(), 24);
        let back = Index::<TimeEntry>::decode(&tb, 4, |_| true).unwrap();
        assert_eq!(back.entries, t.entries);
    }

    #[test]
    fn damaged_index_files_are_rejected() {
        let mut ix = Index::new(10);
        ix.push(oe(1, 4096));
        ix.push(oe(2, 8200));
        let good = ix.encode_from(0);
        assert!(Index::<OffsetEntry>::decode(&good[..12], 10, |_| true).is_err());
        let mut swapped = good[8..].to_vec();
        swapped.extend_from_slice(&good[..8]);
        assert!(Index::<OffsetEntry>::decode(&swapped, 10, |_| true).is_err());
        assert!(Index::<OffsetEntry>::decode(&good, 10, |e| e.position < 8000).is_err());
        assert!(Index::<OffsetEntry>::decode(&good, 1, |_| true).is_err());
    }

    #[test]
    fn truncation_forgets_persisted_entries_past_the_cut() {
        let mut ix = Index::new(10);
        for i in 1..=5 {
            ix.push(oe(i, i * 100));
        }
        ix.set_persisted(5);
        ix.truncate_where(|e| e.position < 300);
        assert_eq!(ix.len(), 2);
        assert_eq!(ix.persisted(), 2);
        assert_eq!(ix.count_below(2), 1);
    }
}
