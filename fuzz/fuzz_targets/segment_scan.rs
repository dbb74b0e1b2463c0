//! Fuzzes segment recovery (`scan::scan`) on damaged segment files.
//!
//! The input is a small program. It first describes a sequence of valid
//! batches with consecutive offsets (from 0), which are concatenated into a
//! segment, then a list of mutations applied to that segment: truncation, bit
//! flips, overwrites with input bytes, zero padding, copies of one range of
//! the file over another (a stale or misdirected block write), and rewritten
//! base offsets (the field the CRC does not cover). The result is written to
//! a file and scanned from position 0 (first offset 0), and the report and
//! the batches visited are checked:
//!
//! (a) a visited batch whose bytes are the original bytes at its position is
//!     one of the original batches, at that position, with its length; a
//!     visited batch whose bytes changed still passes `batch::check_stored`;
//! (b) visited base offsets increase strictly: the first batch at position 0
//!     has offset 0 (the scan runs with `First::At(0)`), a batch right after
//!     another starts exactly one past its last offset, and one after a
//!     corrupt range at least one past it;
//! (c) `valid_end <= file len`; the visited batches and the corrupt ranges
//!     tile `[0, valid_end)` in order, so the corrupt ranges are non-empty,
//!     disjoint, ascending and below `valid_end`, and each is followed by a
//!     visited batch; `torn_bytes` and `next_offset` agree;
//! (d) every original batch that lies wholly in the unchanged prefix of the
//!     file is visited, at its position; and when the file is the original
//!     segment followed by nothing but zeros, the scan visits every batch and
//!     ends exactly at the end of the original segment.
//!
//! Program layout (every number little-endian; the program stops early when
//! the input runs out):
//! ```text
//! u8 batches (mod 65)
//! batches × { u8 records (1 + n mod 4) | u16 value_len (mod 2049) | u8 fill }
//! up to 16 × { u8 op (mod 6) | operands }
//!   0 truncate  u24 at
//!   1 flip      u24 at | u8 bit (mod 8)
//!   2 overwrite u24 at | u8 n (mod 65) | n bytes
//!   3 zeros     u16 n (mod 8193)
//!   4 copy      u24 from | u24 to | u16 n
//!   5 offset    u8 batch (mod batches) | 8 bytes: its new base offset (BE)
//! ```

#![no_main]

use std::path::PathBuf;
use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use sluice_engine::batch::{self, build};
use sluice_engine::scan::{self, First, ScanReport, Scanned};

const BATCHES_MAX: u8 = 64;
const RECORDS_MAX: usize = 4;
const VALUE_LEN_MAX: usize = 2048;
const OPS_MAX: usize = 16;
const OVERWRITE_MAX: usize = 64;
const ZEROS_MAX: usize = 8192;

/// One glommio executor and one scratch segment file per fuzzing process.
struct Env {
    ex: glommio::LocalExecutor,
    path: PathBuf,
}

thread_local! {
    static ENV: Env = {
        let ex = glommio::LocalExecutorBuilder::default()
            .make()
            .expect("glommio executor");
        let dir = tempfile::Builder::new()
            .prefix("sluice-fuzz-")
            .tempdir()
            .expect("temp dir")
            .keep();
        // libFuzzer ends with exit(), which runs no destructors: remove the
        // directory at exit instead. After a crash it stays, with the file.
        if SCRATCH.set(dir.clone()).is_ok() {
            // SAFETY: registers a plain `extern "C" fn()` that only touches
            // a static.
            unsafe { libc::atexit(remove_scratch) };
        }
        Env { ex, path: dir.join("00000000000000000000.log") }
    };
}

static SCRATCH: OnceLock<PathBuf> = OnceLock::new();

extern "C" fn remove_scratch() {
    if let Some(dir) = SCRATCH.get() {
        let _ = std::fs::remove_dir_all(dir);
    }
}

/// Reads the program; past its end every read is `None`.
struct Program<'a> {
    data: &'a [u8],
    at: usize,
}

impl<'a> Program<'a> {
    fn bytes(&mut self, n: usize) -> Option<&'a [u8]> {
        let b = self.data.get(self.at..self.at.checked_add(n)?)?;
        self.at += n;
        Some(b)
    }
    fn u8(&mut self) -> Option<u8> {
        Some(self.bytes(1)?[0])
    }
    fn u16(&mut self) -> Option<usize> {
        let b = self.bytes(2)?;
        Some(usize::from(u16::from_le_bytes([b[0], b[1]])))
    }
    fn u24(&mut self) -> Option<usize> {
        let b = self.bytes(3)?;
        Some(usize::from(b[0]) | usize::from(b[1]) << 8 | usize::from(b[2]) << 16)
    }
}

/// A batch of the segment as it was built.
#[derive(Debug)]
struct Original {
    position: u64,
    len: u64,
    base_offset: i64,
}

fn build_segment(p: &mut Program) -> (Vec<u8>, Vec<Original>) {
    let mut bytes = Vec::new();
    let mut batches = Vec::new();
    let n = p.u8().map_or(0, |n| n % (BATCHES_MAX + 1));
    let mut offset = 0i64;
    for i in 0..n {
        let (Some(records), Some(value_len), Some(fill)) = (p.u8(), p.u16(), p.u8()) else {
            break;
        };
        let records = 1 + usize::from(records) % RECORDS_MAX;
        let value_len = value_len % (VALUE_LEN_MAX + 1);
        let mut b = build::simple(records, value_len, fill, 1_700_000_000_000 + i64::from(i));
        batch::assign(&mut b, offset, 0);
        batches.push(Original {
            position: bytes.len() as u64,
            len: b.len() as u64,
            base_offset: offset,
        });
        bytes.extend_from_slice(&b);
        offset += records as i64;
    }
    (bytes, batches)
}

fn mutate(p: &mut Program, bytes: &mut Vec<u8>, batches: &[Original]) {
    for _ in 0..OPS_MAX {
        let Some(op) = p.u8() else { return };
        let len = bytes.len();
        match op % 6 {
            0 => {
                let Some(at) = p.u24() else { return };
                bytes.truncate(at % (len + 1));
            }
            1 => {
                let (Some(at), Some(bit)) = (p.u24(), p.u8()) else {
                    return;
                };
                if len > 0 {
                    bytes[at % len] ^= 1 << (bit % 8);
                }
            }
            2 => {
                let (Some(at), Some(n)) = (p.u24(), p.u8()) else {
                    return;
                };
                let n = usize::from(n) % (OVERWRITE_MAX + 1);
                let Some(src) = p.bytes(n) else { return };
                let at = at % (len + 1);
                let n = n.min(len - at);
                bytes[at..at + n].copy_from_slice(&src[..n]);
            }
            3 => {
                let Some(n) = p.u16() else { return };
                bytes.resize(len + n % (ZEROS_MAX + 1), 0);
            }
            4 => {
                let (Some(from), Some(to), Some(n)) = (p.u24(), p.u24(), p.u16()) else {
                    return;
                };
                if len > 0 {
                    let (from, to) = (from % len, to % len);
                    let n = n.min(len - from).min(len - to);
                    bytes.copy_within(from..from + n, to);
                }
            }
            _ => {
                // The base offset is the one field the CRC does not cover.
                let (Some(k), Some(offset)) = (p.u8(), p.bytes(8)) else {
                    return;
                };
                if !batches.is_empty() {
                    let at = batches[usize::from(k) % batches.len()].position as usize;
                    if at + 8 <= len {
                        bytes[at..at + 8].copy_from_slice(offset);
                    }
                }
            }
        }
    }
}

static ZEROS: [u8; 4096] = [0; 4096];

/// The length of the longest common prefix of `a` and `b`.
fn common_prefix(a: &[u8], b: &[u8]) -> usize {
    const CHUNK: usize = 4096;
    let n = a.len().min(b.len());
    let mut at = 0;
    while at + CHUNK <= n && a[at..at + CHUNK] == b[at..at + CHUNK] {
        at += CHUNK;
    }
    at + a[at..n]
        .iter()
        .zip(&b[at..n])
        .take_while(|(x, y)| x == y)
        .count()
}

/// Writes `bytes` to the scratch segment file and scans all of it.
fn scan_file(bytes: &[u8]) -> (Vec<Scanned>, ScanReport) {
    ENV.with(|env| {
        std::fs::write(&env.path, bytes).expect("write segment");
        env.ex.run(async {
            let file = sluice_engine::io::open_read(&env.path)
                .await
                .expect("open segment");
            let mut seen = Vec::new();
            let len = bytes.len() as u64;
            let report = scan::scan(&file, &env.path, 0, len, First::At(0), |s| seen.push(*s))
                .await
                .expect("scan I/O");
            file.close().await.expect("close segment");
            (seen, report)
        })
    })
}

fuzz_target!(|data: &[u8]| {
    let mut p = Program { data, at: 0 };
    let (original, batches) = build_segment(&mut p);
    let mut bytes = original.clone();
    mutate(&mut p, &mut bytes, &batches);

    let (seen, report) = scan_file(&bytes);
    let file_len = bytes.len() as u64;
    // Bytes [0, unchanged) are the original segment's. (Slice comparisons,
    // not byte loops: they keep the checker cheap under the fuzzer's
    // comparison tracing.)
    let unchanged = common_prefix(&bytes, &original);
    let changed = |from: u64, to: u64| -> bool {
        let (from, to) = (from as usize, to as usize);
        to > original.len() || bytes[from..to] != original[from..to]
    };

    // (a) Every visited batch is an original one or passes check_stored.
    for s in &seen {
        let end = s.position.checked_add(s.len).expect("batch end overflows");
        assert!(
            end <= file_len,
            "batch {s:?} runs past the file ({file_len} bytes)"
        );
        let b = &bytes[s.position as usize..end as usize];
        assert_eq!(
            batch::BatchHeader::parse(b).as_ref(),
            Some(&s.header),
            "visited header is not the file's bytes"
        );
        assert_eq!(s.header.total_len(), Some(s.len as usize));
        if changed(s.position, end) {
            let stored = batch::check_stored(b);
            assert_eq!(
                stored.as_ref().ok(),
                Some(&s.header),
                "scan visited a changed batch that check_stored refuses: {s:?}: {stored:?}"
            );
        } else {
            assert!(
                batches
                    .iter()
                    .any(|o| o.position == s.position && o.len == s.len),
                "scan visited unchanged bytes that are no original batch: {s:?}"
            );
        }
    }

    // (b) Base offsets increase strictly from the first offset (0): a batch
    // right after another continues its offsets exactly, one after a corrupt
    // range may leave a gap.
    let mut next_min: i128 = 0;
    let mut end = 0u64;
    for s in &seen {
        let base = i128::from(s.header.base_offset);
        if s.position == end {
            assert_eq!(base, next_min, "offsets not continuous at {s:?}");
        } else {
            assert!(
                base >= next_min,
                "base offset {base} below {next_min}: {s:?}"
            );
        }
        next_min = base + i128::from(s.header.last_offset_delta) + 1;
        end = s.position + s.len;
    }
    let next_offset = report.next_offset.map(i128::from);
    if seen.is_empty() {
        assert_eq!(next_offset, None, "next_offset without a batch: {report:?}");
    } else {
        assert_eq!(
            next_offset,
            Some(next_min),
            "next_offset is not past the last batch"
        );
    }

    // (c) The report describes the file.
    assert!(
        report.valid_end <= file_len,
        "valid_end past the file: {report:?}"
    );
    assert_eq!(report.torn_bytes, file_len - report.valid_end);
    let mut at = 0u64;
    let (mut v, mut c) = (0, 0);
    while at < report.valid_end {
        if c < report.corrupt.len() && report.corrupt[c].start == at {
            let r = &report.corrupt[c];
            assert!(r.start < r.end, "empty corrupt range {r:?}");
            assert!(
                seen.get(v).is_some_and(|s| s.position == r.end),
                "corrupt range {r:?} is not followed by a visited batch"
            );
            at = r.end;
            c += 1;
        } else if v < seen.len() && seen[v].position == at {
            at += seen[v].len;
            v += 1;
        } else {
            panic!("byte {at} is neither in a visited batch nor in a corrupt range: {report:?}");
        }
    }
    assert_eq!(
        at, report.valid_end,
        "the last batch or range ends past valid_end"
    );
    assert_eq!(v, seen.len(), "batches visited past valid_end");
    assert_eq!(c, report.corrupt.len(), "corrupt ranges past valid_end");

    // (d) The unchanged prefix is recovered whole.
    for (i, o) in batches.iter().enumerate() {
        if o.position + o.len > unchanged as u64 {
            break;
        }
        let s = seen.get(i);
        assert!(
            s.is_some_and(|s| s.position == o.position
                && s.len == o.len
                && s.header.base_offset == o.base_offset),
            "original batch {i} {o:?} in the unchanged prefix ({unchanged} bytes) not visited \
             in place: {s:?}"
        );
    }
    let zero_tail = bytes.len() >= original.len()
        && unchanged == original.len()
        && bytes[original.len()..]
            .chunks(ZEROS.len())
            .all(|c| c == &ZEROS[..c.len()]);
    if zero_tail {
        assert_eq!(seen.len(), batches.len(), "not every batch visited");
        assert!(
            report.corrupt.is_empty(),
            "corruption in an intact segment: {report:?}"
        );
        assert_eq!(
            report.valid_end,
            original.len() as u64,
            "intact segment cut"
        );
    }
});
