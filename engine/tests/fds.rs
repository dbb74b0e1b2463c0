//! The shard's segment descriptor budget: files of idle partitions and
//! segments are closed least recently used and opened again on demand,
//! and every append and read still lands on the right bytes.

mod common;

use std::rc::Rc;
use std::sync::Arc;

use common::*;
use sluice_engine::batch;
use sluice_engine::config::LogConfig;
use sluice_engine::partition::{LogDir, Partition, ShardContext};
use sluice_engine::{Offset, TopicPartition};

/// Descriptors the shard may keep open for segment files.
const BUDGET: usize = 24;
/// Partitions, each with several segments: far more files than the budget.
const PARTITIONS: u64 = 40;
const ROUNDS: u64 = 6;
/// Descriptors beside the budget: in use by a read or a write at the
/// moment, a directory being synced, a checkpoint being written.
const SLACK: usize = 12;

fn open_fds() -> usize {
    std::fs::read_dir("/proc/self/fd").expect("/proc").count()
}

fn tag(partition: u64, round: u64) -> u64 {
    partition * 1_000 + round
}

/// The tags of the records in `batches`, in order.
fn tags(batches: &[(i64, Vec<u8>)]) -> Vec<u64> {
    let mut out = Vec::new();
    for (_, b) in batches {
        for r in batch::records(b).expect("uncompressed") {
            let v = r.value.expect("a value");
            out.push(u64::from_be_bytes(v[..8].try_into().unwrap()));
        }
    }
    out
}

/// Opens the partitions, appends rounds of batches to all of them and reads
/// every partition back; returns the most descriptors seen open beyond
/// `before`.
async fn exercise(dir: &std::path::Path, ctx: &Rc<ShardContext>, before: usize) -> usize {
    let config = LogConfig {
        // Two batches per segment: every partition rolls each round.
        segment_bytes: 8_000,
        ..LogConfig::default()
    };
    let log_dir = Arc::new(LogDir::new(dir.to_path_buf()));
    let mut peak = 0;
    let mut parts: Vec<Partition> = Vec::new();
    for i in 0..PARTITIONS {
        let tp = TopicPartition::new("t", i as i32);
        let p = Partition::open(log_dir.clone(), tp, config.clone(), ctx.clone(), 1_000)
            .await
            .expect("open");
        parts.push(p);
        peak = peak.max(open_fds().saturating_sub(before));
    }
    for round in 0..ROUNDS {
        for (i, p) in parts.iter().enumerate() {
            let b = make_batch(tag(i as u64, round), 3, 1_000, 1_000 + round as i64);
            append(p, b, 2_000).await;
            peak = peak.max(open_fds().saturating_sub(before));
        }
    }
    for (i, p) in parts.iter().enumerate() {
        let got = read_all(p, Offset(0)).await;
        let want: Vec<u64> = (0..ROUNDS).flat_map(|r| [tag(i as u64, r); 3]).collect();
        assert_eq!(tags(&got), want, "partition {i}");
        peak = peak.max(open_fds().saturating_sub(before));
    }
    for p in &parts {
        p.close().await.expect("close");
    }
    peak
}

#[test]
fn given_more_segment_files_than_the_budget_open_descriptors_stay_bounded_and_reads_are_right() {
    run(|| async {
        let dir = tempfile::tempdir().unwrap();
        // No tail cache: every read goes to the files.
        let ctx = Rc::new(ShardContext::new(0, 64 << 20));
        ctx.fds.set_max(BUDGET);
        let before = open_fds();
        let peak = exercise(dir.path(), &ctx, before).await;
        assert!(
            peak <= BUDGET + SLACK,
            "{peak} descriptors open for a budget of {BUDGET}"
        );
        assert!(ctx.fds.closed() > 0, "the budget closed idle files");
        assert!(ctx.fds.open() <= BUDGET);

        // Opened again (recovered) under the same budget: still bounded,
        // still the same bytes.
        let ctx = Rc::new(ShardContext::new(0, 64 << 20));
        ctx.fds.set_max(BUDGET);
        let config = LogConfig {
            segment_bytes: 8_000,
            ..LogConfig::default()
        };
        let log_dir = Arc::new(LogDir::new(dir.path().to_path_buf()));
        let mut peak = 0;
        for i in 0..PARTITIONS {
            let tp = TopicPartition::new("t", i as i32);
            let p = Partition::open(log_dir.clone(), tp, config.clone(), ctx.clone(), 1_000)
                .await
                .expect("reopen");
            let got = read_all(&p, Offset(0)).await;
            let want: Vec<u64> = (0..ROUNDS).flat_map(|r| [tag(i, r); 3]).collect();
            assert_eq!(tags(&got), want, "partition {i} after reopening");
            peak = peak.max(open_fds().saturating_sub(before));
        }
        assert!(
            peak <= BUDGET + SLACK,
            "{peak} descriptors open after reopening, for a budget of {BUDGET}"
        );
    });
}

#[test]
fn given_an_unbounded_budget_files_stay_open() {
    run(|| async {
        let dir = tempfile::tempdir().unwrap();
        let ctx = Rc::new(ShardContext::new(0, 64 << 20));
        let p = open(dir.path(), LogConfig::default(), &ctx).await;
        append(&p, make_batch(1, 3, 100, 1_000), 2_000).await;
        assert!(!p.is_parked());
        assert_eq!(ctx.fds.open(), 4, "log, read descriptor, two indexes");
        assert_eq!(ctx.fds.closed(), 0);
        p.close().await.unwrap();
    });
}
