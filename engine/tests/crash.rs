//! Crash tests: what a kill -9 or a power cut can leave on disk, made by
//! hand, then recovery checked by a checker, not by eye.
//!
//! * Cut: the active segment is cut at a random byte past everything that
//!   was acknowledged (a power cut loses only unacknowledged writes), and
//!   maybe followed by zeros or garbage (a torn write). Recovery must keep
//!   every acknowledged batch, serve nothing half-written, and keep
//!   appending after it.
//! * Stale tail: the active segment's file goes on, past everything
//!   written, with an older segment's batches, whole and intact (as a
//!   file reused for a new segment would). Their offsets are below the
//!   segment's: recovery must end the log where the written data ends.
//! * Flip: random bits are flipped anywhere in the segment files and
//!   indexes. Recovery and reads must never serve a batch that differs from
//!   the one appended at its offset, and must keep serving every
//!   acknowledged batch whose bytes were not touched.
//!
//! The base offset and leader epoch fields are outside the CRC in Kafka's
//! format; the base offset is checked by offset continuity, the leader
//! epoch cannot be checked from the batch alone and is left out of the flip
//! ranges of the checker's comparison (bytes 12..16 of a batch).

mod common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use common::*;
use proptest::prelude::*;
use sluice_engine::batch;
use sluice_engine::config::LogConfig;
use sluice_engine::partition::{Chunk, Partition, ReadOptions, ReadUpper};
use sluice_engine::{EngineError, LeaderEpoch, Offset};

/// What was appended: base offset → (bytes as stored, acknowledged?).
type Appended = BTreeMap<i64, (Vec<u8>, bool)>;

fn config() -> LogConfig {
    LogConfig {
        segment_bytes: 16_000,
        index_interval_bytes: 1000,
        ..LogConfig::default()
    }
}

/// Appends `acked` acknowledged batches, then `inflight` more whose
/// acknowledgement is not awaited, and drops the partition without closing
/// it, as a killed process would.
async fn fill(dir: &Path, acked: usize, inflight: usize) -> Appended {
    let ctx = shard();
    let p = open(dir, config(), &ctx).await;
    let mut out = Appended::new();
    for i in 0..acked + inflight {
        let b = make_batch(i as u64, 1 + i % 4, 50 + (i * 131) % 900, i as i64);
        let mut stored = b.to_vec();
        let info = p.append(b, LeaderEpoch(0), 2_000).await.unwrap();
        batch::assign(&mut stored, info.base_offset.0, 0);
        let is_acked = i < acked;
        if is_acked {
            p.wait_acked(info.last_offset).await.unwrap();
        }
        out.insert(info.base_offset.0, (stored, is_acked));
    }
    out
}

fn segment_files(dir: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(dir.join("t-0"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| {
            matches!(
                p.extension().and_then(|e| e.to_str()),
                Some("log" | "index" | "timeindex")
            )
        })
        .collect();
    v.sort();
    v
}

/// The `.log` files of the partition, oldest first.
fn log_files(dir: &Path) -> Vec<PathBuf> {
    segment_files(dir)
        .into_iter()
        .filter(|p| p.extension().unwrap() == "log")
        .collect()
}

/// The base offset a segment file is named after.
fn base_of(path: &Path) -> i64 {
    path.file_stem().unwrap().to_str().unwrap().parse().unwrap()
}

/// Reads the first whole batch at or after `from`, or the error.
async fn first_batch(p: &Partition, from: i64) -> Result<Option<Vec<u8>>, EngineError> {
    let r = p
        .read(
            Offset(from),
            ReadOptions {
                max_bytes: 1,
                min_one: true,
                upper: ReadUpper::HighWatermark,
            },
        )
        .await?;
    let mut bytes = Vec::new();
    for c in r.chunks {
        match c {
            Chunk::Memory(b) => bytes.extend_from_slice(&b),
            Chunk::File(f) => {
                use std::os::unix::fs::FileExt;
                let mut buf = vec![0u8; f.len as usize];
                f.file.read_exact_at(&mut buf, f.position).unwrap();
                bytes.extend_from_slice(&buf);
            }
        }
    }
    let Some(h) = batch::BatchHeader::parse(&bytes) else {
        return Ok(None);
    };
    Ok(Some(bytes[..h.total_len().unwrap()].to_vec()))
}

fn same_batch(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a[..12] == b[..12] && a[16..] == b[16..]
}

/// The checker: every served batch is one that was appended at its offset;
/// every acknowledged batch in `must_serve` is served; appends go on.
async fn check(dir: &Path, appended: &Appended, must_serve: impl Fn(i64) -> bool) {
    let ctx = shard();
    let p = open(dir, config(), &ctx).await;
    let end = p.watermarks().log_end.0;
    for (&base, (_, acked)) in appended {
        if base >= end {
            assert!(
                !acked || !must_serve(base),
                "acknowledged batch {base} lost (log end {end})"
            );
            continue;
        }
        match first_batch(&p, base).await {
            Ok(Some(got)) => {
                let h = batch::BatchHeader::parse(&got).unwrap();
                let want = &appended
                    .get(&h.base_offset)
                    .expect("served an offset never appended")
                    .0;
                assert!(
                    same_batch(&got, want),
                    "served batch at {} differs",
                    h.base_offset
                );
                if *acked && must_serve(base) {
                    assert_eq!(h.base_offset, base, "acknowledged batch {base} skipped");
                }
            }
            Ok(None) => panic!("nothing served at {base} below log end {end}"),
            Err(EngineError::Corrupt { .. }) => {
                assert!(
                    !(*acked && must_serve(base)),
                    "untouched batch {base} reported corrupt"
                )
            }
            Err(e) => panic!("read at {base}: {e}"),
        }
    }
    let info = p
        .append(make_batch(999, 2, 10, 5), LeaderEpoch(0), 2_000)
        .await
        .unwrap();
    assert_eq!(info.base_offset.0, end);
    p.wait_acked(info.last_offset).await.unwrap();
    p.close().await.unwrap();
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]

    #[test]
    fn given_power_cut_at_any_byte_after_acknowledged_data_recovery_keeps_every_acknowledged_batch(
        acked in 1usize..60,
        inflight in 0usize..10,
        cut in any::<u32>(),
        tail in 0u8..3,
        noise in proptest::collection::vec(any::<u8>(), 0..9000),
    ) {
        run(move || async move {
            let dir = tempfile::tempdir().unwrap();
            let appended = fill(dir.path(), acked, inflight).await;
            // Acknowledged bytes of the active segment stay; the rest may go.
            let log = segment_files(dir.path()).into_iter().rfind(|p| p.extension().unwrap() == "log").unwrap();
            let base = base_of(&log);
            let acked_in_log: usize = appended.range(base..).filter(|(_, (_, a))| *a).map(|(_, (b, _))| b.len()).sum();
            let mut bytes = std::fs::read(&log).unwrap();
            let keep = acked_in_log + (cut as usize) % (bytes.len() - acked_in_log + 1);
            bytes.truncate(keep);
            match tail {
                0 => {}
                1 => bytes.resize(keep + noise.len(), 0),
                _ => bytes.extend_from_slice(&noise),
            }
            std::fs::write(&log, &bytes).unwrap();
            check(dir.path(), &appended, |_| true).await;
        });
    }

    #[test]
    fn given_an_older_segments_intact_batches_after_the_written_data_recovery_ends_the_log_there(
        acked in 40usize..80,
        at_batch in any::<bool>(),
        from in any::<u32>(),
    ) {
        run(move || async move {
            let dir = tempfile::tempdir().unwrap();
            let appended = fill(dir.path(), acked, 0).await;
            let logs = log_files(dir.path());
            assert!(logs.len() >= 2, "one segment only");
            let (oldest, active) = (&logs[0], &logs[logs.len() - 1]);
            let base = base_of(active);
            let written: usize = appended.range(base..).map(|(_, (b, _))| b.len()).sum();
            let stale = std::fs::read(oldest).unwrap();
            // From a batch boundary of the old file (a whole stale batch
            // right where the next one would start), or from any byte.
            let start = if at_batch {
                let starts: Vec<usize> = appended
                    .range(..base)
                    .scan(0usize, |pos, (_, (b, _))| {
                        let at = *pos;
                        *pos += b.len();
                        Some(at)
                    })
                    .filter(|&at| at < stale.len())
                    .collect();
                starts[from as usize % starts.len()]
            } else {
                from as usize % stale.len()
            };
            let mut bytes = std::fs::read(active).unwrap();
            bytes.truncate(written);
            bytes.extend_from_slice(&stale[start..]);
            std::fs::write(active, &bytes).unwrap();
            let end = appended.keys().next_back().map(|&b| {
                b + i64::from(batch::BatchHeader::parse(&appended[&b].0).unwrap().last_offset_delta) + 1
            }).unwrap();
            {
                let ctx = shard();
                let p = open(dir.path(), config(), &ctx).await;
                assert_eq!(p.watermarks().log_end.0, end, "the log ends where the writes did");
                p.close().await.unwrap();
            }
            assert_eq!(std::fs::metadata(active).unwrap().len(), written as u64, "the stale rest is cut off");
            check(dir.path(), &appended, |_| true).await;
        });
    }

    #[test]
    fn given_a_rolled_segment_in_a_reused_file_whose_close_was_cut_short_recovery_ends_it_at_its_batches(
        acked in 60usize..100,
        from in any::<u32>(),
        stale_len in 0usize..40_000,
        keep_indexes in any::<bool>(),
    ) {
        run(move || async move {
            let dir = tempfile::tempdir().unwrap();
            let appended = fill(dir.path(), acked, 0).await;
            let logs = log_files(dir.path());
            assert!(logs.len() >= 3, "{} segments", logs.len());
            let rolled = &logs[logs.len() - 2];
            let base = base_of(rolled);
            let own = std::fs::read(rolled).unwrap();
            // A spare holds an older segment's batches, all below `base`;
            // the writes covered its start, the close never cut the rest.
            let older: Vec<u8> = appended.range(..base).flat_map(|(_, (b, _))| b.clone()).collect();
            let start = from as usize % older.len();
            let mut bytes = own.clone();
            bytes.extend(older[start..].iter().chain(std::iter::repeat(&0u8)).take(stale_len));
            bytes.resize(bytes.len().next_multiple_of(4096), 0);
            std::fs::write(rolled, &bytes).unwrap();
            if !keep_indexes {
                // Index files are written whole at the close, fsync'ed before the cut.
                for ext in ["index", "timeindex"] {
                    std::fs::write(rolled.with_extension(ext), b"").unwrap();
                }
            }
            {
                let ctx = shard();
                let p = open(dir.path(), config(), &ctx).await;
                let end = appended.keys().next_back().map(|&b| {
                    b + i64::from(batch::BatchHeader::parse(&appended[&b].0).unwrap().last_offset_delta) + 1
                }).unwrap();
                assert_eq!(p.watermarks().log_end.0, end);
                p.close().await.unwrap();
            }
            assert!(std::fs::read(rolled).unwrap() == own, "the stale rest is cut off");
            check(dir.path(), &appended, |_| true).await;
        });
    }

    #[test]
    fn given_random_bit_flips_recovery_never_serves_damaged_data(
        acked in 5usize..60,
        flips in proptest::collection::vec((any::<u32>(), any::<u32>(), 0u8..8), 1..6),
    ) {
        run(move || async move {
            let dir = tempfile::tempdir().unwrap();
            let appended = fill(dir.path(), acked, 0).await;
            let files = segment_files(dir.path());
            // Batches whose bytes a flip touches (outside the leader epoch).
            let mut touched = std::collections::BTreeSet::new();
            for (f, at, bit) in flips {
                let path = &files[f as usize % files.len()];
                let mut bytes = std::fs::read(path).unwrap();
                if bytes.is_empty() {
                    continue;
                }
                let at = at as usize % bytes.len();
                bytes[at] ^= 1 << bit;
                std::fs::write(path, &bytes).unwrap();
                if path.extension().unwrap() == "log" {
                    let base = base_of(path);
                    let mut pos = 0usize;
                    for (&b, (stored, _)) in appended.range(base..) {
                        if at >= pos && at < pos + stored.len() && !(12..16).contains(&(at - pos)) {
                            touched.insert(b);
                        }
                        pos += stored.len();
                    }
                }
            }
            check(dir.path(), &appended, |b| !touched.contains(&b)).await;
        });
    }
}
