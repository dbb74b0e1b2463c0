//! Reading a segment file batch by batch, checking each one: the scan that
//! recovery, index rebuilding and closed-segment verification share.
//!
//! A scan walks from a batch boundary to the end of the file. Each batch must
//! have a sane length, magic 2, a matching CRC-32C (computed in pieces, so a
//! batch of any size is checked in bounded memory), consistent counts, and a
//! base offset exactly one past the last offset of the batch before it (the
//! CRC does not cover the base offset; continuity does). Compaction, when it
//! comes, leaves gaps, and will relax this to "greater than".
//!
//! At the first batch that fails, the scan looks further on for the next
//! position where a whole valid batch with a later offset starts:
//! * found: the bytes in between are **corruption** (a flipped bit, a bad
//!   sector) inside data that was once written whole. They are reported as a
//!   corrupt range, never served, and the scan goes on, so the batches after
//!   them are kept.
//! * not found: everything from the failing batch on is a **torn tail**: the
//!   unfinished end of a write that was under way at a crash, or block
//!   padding. Recovery cuts it off.
//!
//! Memory: one read buffer of [`CHUNK_BYTES`].

use std::ops::Range;
use std::path::Path;

use glommio::io::DmaFile;

use crate::batch::{self, BatchHeader, CRC_START, HEADER_LEN, MAGIC_V2};
use crate::error::Result;
use crate::io::read_at;

/// Bytes read from the file at a time.
pub const CHUNK_BYTES: usize = 1 << 20;

/// A batch found by a scan.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Scanned {
    pub position: u64,
    pub len: u64,
    pub header: BatchHeader,
}

/// What a scan found besides the batches it visited.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ScanReport {
    /// End of the last valid batch: where a torn tail starts, or the end of
    /// the file.
    pub valid_end: u64,
    /// Byte ranges of corruption with valid batches after them.
    pub corrupt: Vec<Range<u64>>,
    /// Bytes past `valid_end` that hold no valid batch.
    pub torn_bytes: u64,
    /// One past the last offset of the last valid batch, if any was seen.
    pub next_offset: Option<i64>,
}

/// A window over the file, refilled in [`CHUNK_BYTES`] reads.
struct Reader<'a> {
    file: &'a DmaFile,
    path: &'a Path,
    file_len: u64,
    start: u64,
    buf: Vec<u8>,
}

impl<'a> Reader<'a> {
    /// The bytes `[pos, pos + len)`, fewer at the end of the file.
    /// `len` must not exceed [`CHUNK_BYTES`].
    async fn get(&mut self, pos: u64, len: usize) -> Result<&[u8]> {
        debug_assert!(len <= CHUNK_BYTES);
        let end = (pos + len as u64).min(self.file_len);
        let have = pos >= self.start && end <= self.start + self.buf.len() as u64;
        if !have {
            let want = (self.file_len - pos).min(CHUNK_BYTES as u64) as usize;
            self.buf = read_at(self.file, self.path, pos, want).await?;
            self.start = pos;
        }
        let from = (pos - self.start) as usize;
        let to = ((end - self.start) as usize).min(self.buf.len()).max(from);
        Ok(&self.buf[from..to])
    }
}

/// Where the first batch of a scan must start.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum First {
    /// At exactly this offset (a scan from the start of a segment).
    At(i64),
    /// At this offset or later (a scan from an index entry).
    AtLeast(i64),
    /// With every offset below this one: a stale batch, left by an older
    /// segment in a reused file, that resync steps over whole.
    Below(i64),
}

/// Scans `file` (logically `file_len` bytes) from `from`, which must be a
/// batch boundary, calling `visit` for every valid batch in order.
pub async fn scan(
    file: &DmaFile,
    path: &Path,
    from: u64,
    file_len: u64,
    first: First,
    mut visit: impl FnMut(&Scanned),
) -> Result<ScanReport> {
    let mut r = Reader {
        file,
        path,
        file_len,
        start: 0,
        buf: Vec::new(),
    };
    let mut report = ScanReport::default();
    let mut pos = from;
    let mut expect = first;
    while pos < file_len {
        if let Some(s) = check_at(&mut r, pos, expect).await? {
            visit(&s);
            let next_min = s.header.last_offset() + 1;
            expect = First::At(next_min);
            report.next_offset = Some(next_min);
            pos += s.len;
            continue;
        }
        let min = match expect {
            First::At(o) | First::AtLeast(o) | First::Below(o) => o,
        };
        match resync(&mut r, pos + 1, min).await? {
            Some(q) => {
                report.corrupt.push(pos..q);
                pos = q;
                expect = First::AtLeast(min);
            }
            None => break,
        }
    }
    report.valid_end = pos;
    report.torn_bytes = file_len - pos;
    Ok(report)
}

/// The valid batch starting at `pos`, if there is one.
async fn check_at(r: &mut Reader<'_>, pos: u64, expect: First) -> Result<Option<Scanned>> {
    let head = r.get(pos, HEADER_LEN).await?;
    let Some(header) = BatchHeader::parse(head) else {
        return Ok(None);
    };
    let Some(len) = header.total_len() else {
        return Ok(None);
    };
    let fits = (len as u64) <= r.file_len - pos;
    // Stored offsets are never negative and a batch's range never
    // overflows; after corruption, a batch found further on must still lie
    // within one segment's span (relative offsets are u32) of where the log
    // was. The base offset is outside the CRC, so these checks matter.
    let last_next = header
        .base_offset
        .checked_add(i64::from(header.last_offset_delta))
        .and_then(|l| l.checked_add(1));
    let offset_ok = header.base_offset >= 0
        && last_next.is_some()
        && match expect {
            First::At(o) => header.base_offset == o,
            First::AtLeast(o) => {
                header.base_offset >= o && last_next.is_some_and(|n| n - o <= i64::from(u32::MAX))
            }
            First::Below(o) => last_next.is_some_and(|n| n <= o),
        };
    if !fits
        || !offset_ok
        || batch::check_length(&header, len, usize::MAX).is_err()
        || batch::check_counts(&header, len, usize::MAX).is_err()
    {
        return Ok(None);
    }
    let mut crc = 0u32;
    let mut at = pos + CRC_START as u64;
    let end = pos + len as u64;
    while at < end {
        let n = ((end - at) as usize).min(CHUNK_BYTES);
        let piece = r.get(at, n).await?;
        if piece.len() != n {
            return Ok(None);
        }
        crc = crc32c::crc32c_append(crc, piece);
        at += n as u64;
    }
    if batch::check_crc(&header, crc).is_err() {
        return Ok(None);
    }
    Ok(Some(Scanned {
        position: pos,
        len: len as u64,
        header,
    }))
}

/// The first position at or after `from` where a valid batch with a base
/// offset of at least `offset_min` starts.
///
/// A valid batch with offsets below `offset_min` is stepped over whole: a
/// reused segment file holds an older segment's batches past what was
/// written into it, and a byte-by-byte search through a 256 MiB stale rest
/// took 3 s. Stepping over it misses nothing: a later batch written over
/// any part of it would have broken its CRC.
async fn resync(r: &mut Reader<'_>, from: u64, offset_min: i64) -> Result<Option<u64>> {
    let mut pos = from;
    while pos + HEADER_LEN as u64 <= r.file_len {
        // Cheap filters first: the magic byte and a header that parses.
        let base = {
            let head = r.get(pos, HEADER_LEN).await?;
            (head.len() == HEADER_LEN && head[16] as i8 == MAGIC_V2)
                .then(|| BatchHeader::parse(head).map(|h| h.base_offset))
                .flatten()
        };
        pos += match base {
            Some(b) if b >= offset_min => {
                let found = check_at(r, pos, First::AtLeast(offset_min)).await?;
                if found.is_some() {
                    return Ok(Some(pos));
                }
                1
            }
            Some(_) => check_at(r, pos, First::Below(offset_min))
                .await?
                .map_or(1, |stale| stale.len),
            None => 1,
        };
    }
    Ok(None)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::batch::build;

    use crate::test_support::run;

    /// A file of `n` batches with offsets 0, 3, 6, … (3 records each).
    fn file_of(n: usize) -> (Vec<u8>, Vec<u64>) {
        let mut bytes = Vec::new();
        let mut positions = Vec::new();
        for i in 0..n {
            let mut b = build::simple(3, 100 + i * 37, i as u8, 1000 + i as i64);
            batch::assign(&mut b, 3 * i as i64, 0);
            positions.push(bytes.len() as u64);
            bytes.extend_from_slice(&b);
        }
        (bytes, positions)
    }

    /// Scans `bytes` as a segment whose first batch has offset `first`.
    async fn scan_bytes(bytes: Vec<u8>, first: i64) -> (Vec<i64>, ScanReport) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.log");
        std::fs::write(&path, &bytes).unwrap();
        let f = crate::io::open_read(&path).await.unwrap();
        let mut seen = Vec::new();
        let rep = scan(&f, &path, 0, bytes.len() as u64, First::At(first), |s| {
            seen.push(s.header.base_offset)
        })
        .await
        .unwrap();
        (seen, rep)
    }

    #[test]
    fn given_intact_file_should_visit_every_batch() {
        run(|| async {
            let (bytes, _) = file_of(20);
            let len = bytes.len() as u64;
            let (seen, rep) = scan_bytes(bytes, 0).await;
            assert_eq!(seen, (0..20).map(|i| 3 * i).collect::<Vec<_>>());
            assert_eq!(rep.valid_end, len);
            assert_eq!(rep.next_offset, Some(60));
            assert!(rep.corrupt.is_empty());
        });
    }

    #[test]
    fn given_torn_tail_and_padding_should_end_at_last_whole_batch() {
        run(|| async {
            let (mut bytes, pos) = file_of(10);
            bytes.truncate(pos[9] as usize + 70);
            bytes.resize(bytes.len() + 5000, 0);
            let (seen, rep) = scan_bytes(bytes, 0).await;
            assert_eq!(seen.len(), 9);
            assert_eq!(rep.valid_end, pos[9]);
            assert!(rep.corrupt.is_empty());
        });
    }

    #[test]
    fn given_flipped_base_offset_which_the_crc_does_not_cover_should_report_corruption() {
        run(|| async {
            let (mut bytes, pos) = file_of(10);
            bytes[pos[6] as usize + 7] ^= 0x08;
            let (seen, rep) = scan_bytes(bytes, 0).await;
            assert_eq!(seen.len(), 9);
            assert_eq!(rep.corrupt, vec![pos[6]..pos[7]]);
        });
    }

    #[test]
    fn given_corruption_then_a_batch_with_offsets_near_i64_max_should_not_overflow() {
        // Found by fuzz/segment_scan: resync accepted a batch whose base
        // offset (outside the CRC) was i64::MAX and computed past it.
        run(|| async {
            let (mut bytes, pos) = file_of(3);
            bytes[pos[1] as usize + 40] ^= 0x01;
            let at = pos[2] as usize;
            bytes[at..at + 8].copy_from_slice(&i64::MAX.to_be_bytes());
            let (seen, rep) = scan_bytes(bytes, 0).await;
            assert_eq!(seen, vec![0]);
            assert_eq!(rep.valid_end, pos[1]);
        });
    }

    #[test]
    fn given_an_older_segments_batches_between_two_of_the_segments_own_resync_steps_over_them() {
        run(|| async {
            // Offsets 0.. as a reused file's stale rest, after a torn batch
            // of the segment's own (offsets 300..), and one more of its own
            // after them: only corruption lies between the two.
            let (stale, _) = file_of(6);
            let own = |tag: usize, base: i64| {
                let mut b = build::simple(3, 120, tag as u8, 5000);
                batch::assign(&mut b, base, 0);
                b
            };
            let mut bytes = own(1, 300);
            let torn_at = bytes.len();
            bytes.extend_from_slice(&own(2, 303)[..40]);
            bytes.extend_from_slice(&stale);
            let later_at = bytes.len() as u64;
            bytes.extend_from_slice(&own(3, 306));
            let len = bytes.len() as u64;
            let (seen, rep) = scan_bytes(bytes, 300).await;
            assert_eq!(seen, vec![300, 306]);
            assert_eq!(rep.corrupt, vec![torn_at as u64..later_at]);
            assert_eq!(rep.valid_end, len);
        });
    }

    #[test]
    fn given_flipped_bit_mid_file_should_report_corruption_and_keep_later_batches() {
        run(|| async {
            let (mut bytes, pos) = file_of(10);
            bytes[pos[4] as usize + 8] ^= 0x40; // the length field of batch 4
            let len = bytes.len() as u64;
            let (seen, rep) = scan_bytes(bytes, 0).await;
            assert_eq!(seen.len(), 9);
            assert!(!seen.contains(&12));
            assert_eq!(rep.corrupt, vec![pos[4]..pos[5]]);
            assert_eq!(rep.valid_end, len);
        });
    }
}
