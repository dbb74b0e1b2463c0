//! kill -9 of a real process mid-stream: a child process appends batches
//! and prints each one once it is acknowledged; the parent kills it with
//! SIGKILL at a random moment, reopens the log and checks that every
//! acknowledged batch is there, byte for byte, and nothing else is served.
//!
//! The child is this same test binary, started with `SLUICE_KILL9_DIR` set.

mod common;

use std::io::{BufRead, BufReader, Write};
use std::process::{Command, Stdio};

use common::*;
use sluice_engine::batch;
use sluice_engine::config::LogConfig;
use sluice_engine::{LeaderEpoch, Offset};

const DIR_ENV: &str = "SLUICE_KILL9_DIR";

fn config() -> LogConfig {
    LogConfig {
        segment_bytes: 64 << 10,
        ..LogConfig::default()
    }
}

/// The batch with tag `i`, as the child appends it.
fn batch_for(i: u64) -> bytes::BytesMut {
    make_batch(
        i,
        1 + (i % 5) as usize,
        200 + (i as usize * 37) % 3000,
        i as i64,
    )
}

/// Child mode: append with up to 16 batches in flight, print
/// "acked <tag> <base>" as each is acknowledged, until killed.
#[test]
fn child_appends_until_killed() {
    let Ok(dir) = std::env::var(DIR_ENV) else {
        return; // only meaningful as the child of the test below
    };
    run(move || async move {
        let ctx = shard();
        let p = open(std::path::Path::new(&dir), config(), &ctx).await;
        let mut inflight = std::collections::VecDeque::new();
        let mut out = std::io::stdout();
        for i in 0u64.. {
            let info = p.append(batch_for(i), LeaderEpoch(0), 2_000).await.unwrap();
            inflight.push_back((i, info));
            if inflight.len() >= 16 {
                let (tag, info) = inflight.pop_front().unwrap();
                p.wait_acked(info.last_offset).await.unwrap();
                writeln!(out, "acked {tag} {}", info.base_offset.0).unwrap();
                out.flush().unwrap();
            }
        }
    });
}

#[test]
fn given_kill_9_mid_stream_every_acknowledged_batch_survives() {
    if std::env::var(DIR_ENV).is_ok() {
        return;
    }
    for round in 0..3u64 {
        let dir = tempfile::tempdir().unwrap();
        let mut child = Command::new(std::env::current_exe().unwrap())
            .args([
                "--exact",
                "child_appends_until_killed",
                "--nocapture",
                "--test-threads=1",
            ])
            .env(DIR_ENV, dir.path())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let mut acked = Vec::new();
        let stop_after = 200 + round * 350;
        let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
        for line in lines.by_ref() {
            let line = line.unwrap();
            let Some(rest) = line.strip_prefix("acked ") else {
                continue;
            };
            let (tag, base) = rest.split_once(' ').unwrap();
            acked.push((tag.parse::<u64>().unwrap(), base.parse::<i64>().unwrap()));
            if acked.len() as u64 >= stop_after {
                break;
            }
        }
        unsafe { libc::kill(child.id() as i32, libc::SIGKILL) };
        child.wait().unwrap();
        // Lines the child printed before it died were acknowledged too.
        for line in lines.map_while(Result::ok) {
            if let Some(rest) = line.strip_prefix("acked ") {
                let (tag, base) = rest.split_once(' ').unwrap();
                acked.push((tag.parse().unwrap(), base.parse().unwrap()));
            }
        }
        assert!(acked.len() as u64 >= stop_after);
        let path = dir.path().to_path_buf();
        run(move || async move {
            let ctx = shard();
            let p = open(&path, config(), &ctx).await;
            let served = read_all(&p, Offset(0)).await;
            // Everything served is exactly what was appended at its offset,
            // in order: tag i at the i-th position.
            for (i, (base, bytes)) in served.iter().enumerate() {
                let mut want = batch_for(i as u64).to_vec();
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
