//! kill -9 of a real process mid-stream: a child process appends batches
//! and prints each one once it is acknowledged; the parent kills it with
//! SIGKILL at a random moment, reopens the log and checks that every
//! acknowledged batch is there, byte for byte, and nothing else is served.
//!
//! The child is this same test binary, started with `SLUICE_KILL9_DIR` set.
//! With `SLUICE_KILL9_LARGE` set it appends large batches with megabytes in
//! flight, so that the flusher prepares groups while the group before is
//! written.

mod common;

use std::io::{BufRead, BufReader, Write};
use std::process::{Command, Stdio};

use common::*;
use sluice_engine::batch;
use sluice_engine::config::LogConfig;
use sluice_engine::{LeaderEpoch, Offset};

const DIR_ENV: &str = "SLUICE_KILL9_DIR";
const LARGE_ENV: &str = "SLUICE_KILL9_LARGE";

fn config(large: bool) -> LogConfig {
    LogConfig {
        segment_bytes: if large { 16 << 20 } else { 64 << 10 },
        ..LogConfig::default()
    }
}

/// The batch with tag `i`, as the child appends it: up to 15 KB, or with
/// `large` 128–270 KB.
fn batch_for(i: u64, large: bool) -> bytes::BytesMut {
    let (count, value) = if large {
        (16, 8_000 + (i as usize * 37) % 9_000)
    } else {
        (1 + (i % 5) as usize, 200 + (i as usize * 37) % 3000)
    };
    make_batch(i, count, value, i as i64)
}

/// Child mode: append with up to 16 batches (200 large ones) in flight,
/// print "acked <tag> <base> <groups prepared ahead so far>" as each is
/// acknowledged, until killed.
#[test]
fn child_appends_until_killed() {
    let Ok(dir) = std::env::var(DIR_ENV) else {
        return; // only meaningful as the child of the test below
    };
    let large = std::env::var(LARGE_ENV).is_ok();
    // Large batches keep tens of megabytes in flight, so that appends go on
    // while groups are written.
    let window = if large { 200 } else { 16 };
    run(move || async move {
        let ctx = shard();
        let p = open(std::path::Path::new(&dir), config(large), &ctx).await;
        let mut inflight = std::collections::VecDeque::new();
        let mut out = std::io::stdout();
        for i in 0u64.. {
            let info = p
                .append(batch_for(i, large), LeaderEpoch(0), 2_000)
                .await
                .unwrap();
            inflight.push_back((i, info));
            if large {
                futures_lite::future::yield_now().await;
            }
            if inflight.len() >= window {
                let (tag, info) = inflight.pop_front().unwrap();
                p.wait_acked(info.last_offset).await.unwrap();
                let ahead = p.flush_stats().prepared_ahead;
                writeln!(out, "acked {tag} {} {ahead}", info.base_offset.0).unwrap();
                out.flush().unwrap();
            }
        }
    });
}

#[test]
fn given_kill_9_mid_stream_every_acknowledged_batch_survives() {
    kill_rounds(false);
}

#[test]
fn given_kill_9_while_large_groups_are_written_every_acknowledged_batch_survives() {
    kill_rounds(true);
}

/// Three rounds of: start a child, let it get some way, kill -9 it, check.
fn kill_rounds(large: bool) {
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
        if large {
            command.env(LARGE_ENV, "1");
        }
        let mut child = command.spawn().unwrap();
        let mut acked = Vec::new();
        let mut prepared_ahead = 0;
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
            let (tag, base, ahead) = parse_acked(rest);
            acked.push((tag, base));
            prepared_ahead = prepared_ahead.max(ahead);
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
        if large {
            assert!(prepared_ahead > 0, "no group was prepared ahead");
        }
        let path = dir.path().to_path_buf();
        run(move || async move {
            let ctx = shard();
            let p = open(&path, config(large), &ctx).await;
            let served = read_all(&p, Offset(0)).await;
            // Everything served is exactly what was appended at its offset,
            // in order: tag i at the i-th position.
            for (i, (base, bytes)) in served.iter().enumerate() {
                let mut want = batch_for(i as u64, large).to_vec();
                batch::assign(&mut want, *base, 0);
                assert_eq!(bytes, &want, "batch {i} at offset {base}");
            }
            for (tag, base) in &acked {
                let got = served.get(*tag as usize).map(|b| b.0);
                assert_eq!(got, Some(*base), "acknowledged batch {tag} lost");
            }
            p.close().await.unwrap();
        });
    }
}

/// "<tag> <base> <prepared ahead>" of an "acked" line.
fn parse_acked(rest: &str) -> (u64, i64, u64) {
    let mut f = rest.split(' ').map(|f| f.parse::<i64>().unwrap());
    let mut next = || f.next().expect("three fields");
    (next() as u64, next(), next() as u64)
}
