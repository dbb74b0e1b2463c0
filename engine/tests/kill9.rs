//! kill -9 of a real process mid-stream: a child process appends batches
//! and prints each one once it is acknowledged; the parent kills it with
//! SIGKILL at a random moment, reopens the log and checks that every
//! acknowledged batch is there, byte for byte, and nothing else is served.
//!
//! The child is this same test binary, started with `SLUICE_KILL9_DIR` set.
//! With `SLUICE_KILL9_LARGE` set it appends large batches with megabytes in
//! flight, so that the flusher prepares groups while the group before is
//! written. With `SLUICE_KILL9_RECYCLE` set the log keeps `retention.bytes`,
//! so that rolls write into the files of segments retention removed; then
//! every acknowledged batch from the log start on must be there.

mod common;

use std::io::{BufRead, BufReader, Write};
use std::process::{Command, Stdio};

use common::*;
use sluice_engine::batch;
use sluice_engine::config::LogConfig;
use sluice_engine::{LeaderEpoch, Offset};

const DIR_ENV: &str = "SLUICE_KILL9_DIR";
const LARGE_ENV: &str = "SLUICE_KILL9_LARGE";
const RECYCLE_ENV: &str = "SLUICE_KILL9_RECYCLE";

#[derive(Clone, Copy, PartialEq, Eq)]
enum Mode {
    Small,
    Large,
    Recycle,
}

impl Mode {
    fn from_env() -> Mode {
        if std::env::var(LARGE_ENV).is_ok() {
            Mode::Large
        } else if std::env::var(RECYCLE_ENV).is_ok() {
            Mode::Recycle
        } else {
            Mode::Small
        }
    }
}

fn config(mode: Mode) -> LogConfig {
    match mode {
        Mode::Small => LogConfig {
            segment_bytes: 64 << 10,
            ..LogConfig::default()
        },
        Mode::Large => LogConfig {
            segment_bytes: 16 << 20,
            ..LogConfig::default()
        },
        Mode::Recycle => LogConfig {
            segment_bytes: 64 << 10,
            retention_bytes: 192 << 10,
            ..LogConfig::default()
        },
    }
}

/// Records in the batch with tag `i`.
fn count_for(i: u64, mode: Mode) -> usize {
    match mode {
        Mode::Large => 16,
        _ => 1 + (i % 5) as usize,
    }
}

/// The batch with tag `i`, as the child appends it: up to 15 KB, or in
/// `Mode::Large` 128–270 KB.
fn batch_for(i: u64, mode: Mode) -> bytes::BytesMut {
    let value = match mode {
        Mode::Large => 8_000 + (i as usize * 37) % 9_000,
        _ => 200 + (i as usize * 37) % 3000,
    };
    make_batch(i, count_for(i, mode), value, i as i64)
}

/// Child mode: append with up to 16 batches (200 large ones) in flight,
/// print "acked <tag> <base> <count>" as each is acknowledged, until
/// killed; the count is of groups prepared ahead so far, or in
/// `Mode::Recycle` of segments written into reused files.
#[test]
fn child_appends_until_killed() {
    let Ok(dir) = std::env::var(DIR_ENV) else {
        return; // only meaningful as the child of the test below
    };
    let mode = Mode::from_env();
    let large = mode == Mode::Large;
    // Large batches keep tens of megabytes in flight, so that appends go on
    // while groups are written.
    let window = if large { 200 } else { 16 };
    run(move || async move {
        let ctx = shard();
        let p = open(std::path::Path::new(&dir), config(mode), &ctx).await;
        let mut inflight = std::collections::VecDeque::new();
        let mut out = std::io::stdout();
        for i in 0u64.. {
            let info = p
                .append(batch_for(i, mode), LeaderEpoch(0), 2_000)
                .await
                .unwrap();
            inflight.push_back((i, info));
            if large {
                futures_lite::future::yield_now().await;
            }
            if inflight.len() >= window {
                let (tag, info) = inflight.pop_front().unwrap();
                p.wait_acked(info.last_offset).await.unwrap();
                let stats = p.flush_stats();
                let count = match mode {
                    Mode::Recycle => stats.segments_recycled,
                    _ => stats.prepared_ahead,
                };
                writeln!(out, "acked {tag} {} {count}", info.base_offset.0).unwrap();
                out.flush().unwrap();
            }
        }
    });
}

#[test]
fn given_kill_9_mid_stream_every_acknowledged_batch_survives() {
    kill_rounds(Mode::Small);
}

#[test]
fn given_kill_9_while_large_groups_are_written_every_acknowledged_batch_survives() {
    kill_rounds(Mode::Large);
}

#[test]
fn given_kill_9_while_rolls_reuse_removed_segments_files_every_acknowledged_batch_survives() {
    kill_rounds(Mode::Recycle);
}

/// Three rounds of: start a child, let it get some way, kill -9 it, check.
fn kill_rounds(mode: Mode) {
    let large = mode == Mode::Large;
    if std::env::var(DIR_ENV).is_ok() {
        return;
    }
    for round in 0..3u64 {
        let dir = tempfile::tempdir().unwrap();
        let mut command = Command::new(std::env::current_exe().unwrap());
        command
            .args([
                "--exact",
                "child_appends_until_killed",
                "--nocapture",
                "--test-threads=1",
            ])
            .env(DIR_ENV, dir.path())
            .stdout(Stdio::piped())
            .stderr(Stdio::null());
        match mode {
            Mode::Small => {}
            Mode::Large => {
                command.env(LARGE_ENV, "1");
            }
            Mode::Recycle => {
                command.env(RECYCLE_ENV, "1");
            }
        }
        let mut child = command.spawn().unwrap();
        let mut acked = Vec::new();
        let mut counted = 0;
        let stop_after = if large {
            100 + round * 150
        } else {
            200 + round * 350
        };
        let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
        for line in lines.by_ref() {
            let line = line.unwrap();
            let Some(rest) = line.strip_prefix("acked ") else {
                continue;
            };
            let (tag, base, count) = parse_acked(rest);
            acked.push((tag, base));
            counted = counted.max(count);
            if acked.len() as u64 >= stop_after {
                break;
            }
        }
        unsafe { libc::kill(child.id() as i32, libc::SIGKILL) };
        child.wait().unwrap();
        // Lines the child printed before it died were acknowledged too.
        for line in lines.map_while(Result::ok) {
            if let Some(rest) = line.strip_prefix("acked ") {
                let (tag, base, _) = parse_acked(rest);
                acked.push((tag, base));
            }
        }
        assert!(acked.len() as u64 >= stop_after);
        match mode {
            Mode::Small => {}
            Mode::Large => assert!(counted > 0, "no group was prepared ahead"),
            Mode::Recycle => assert!(counted > 0, "no segment went into a reused file"),
        }
        let path = dir.path().to_path_buf();
        run(move || async move {
            let ctx = shard();
            let p = open(&path, config(mode), &ctx).await;
            let start = p.watermarks().log_start.0;
            if mode != Mode::Recycle {
                assert_eq!(start, 0, "nothing is removed without retention");
            }
            // Tag i's base offset is the records of tags before it.
            let mut tag_at = std::collections::HashMap::new();
            let mut next = 0i64;
            for tag in 0..=acked.len() as u64 + 10_000 {
                tag_at.insert(next, tag);
                next += count_for(tag, mode) as i64;
            }
            let served = read_all(&p, Offset(start)).await;
            // Everything served is exactly what was appended at its offset,
            // in order: consecutive tags from the one at the log start.
            let first = *tag_at.get(&start).expect("the log starts at a batch");
            for (i, (base, bytes)) in served.iter().enumerate() {
                let tag = first + i as u64;
                let mut want = batch_for(tag, mode).to_vec();
                batch::assign(&mut want, *base, 0);
                assert_eq!(bytes, &want, "batch {tag} at offset {base}");
            }
            for (tag, base) in &acked {
                if *base < start {
                    continue;
                }
                let got = tag.checked_sub(first).and_then(|k| served.get(k as usize));
                assert_eq!(
                    got.map(|b| b.0),
                    Some(*base),
                    "acknowledged batch {tag} lost"
                );
            }
            p.close().await.unwrap();
        });
    }
}

/// "<tag> <base> <count>" of an "acked" line.
fn parse_acked(rest: &str) -> (u64, i64, u64) {
    let mut f = rest.split(' ').map(|f| f.parse::<i64>().unwrap());
    let mut next = || f.next().expect("three fields");
    (next() as u64, next(), next() as u64)
}
