//! The engine's cost per partition as the partition count grows, without
//! a network or a client: creation (`Partition::create_many`, 1024 at a
//! time as a shard does) and then one acknowledged append to every
//! partition, all in flight at once as a producer's would be, on one shard
//! under a descriptor budget. Ignored by default (it takes a while and
//! wants a release build):
//!
//! ```text
//! SLUICE_SCALE_PARTITIONS=1000,10000,50000 cargo test --release \
//!     -p sluice-engine --test scale -- --ignored --nocapture
//! ```

mod common;

use std::rc::Rc;
use std::sync::Arc;
use std::time::Instant;

use common::*;
use sluice_engine::config::LogConfig;
use sluice_engine::partition::{LogDir, NewPartition, Partition, ShardContext};
use sluice_engine::shard::CREATE_BATCH_MAX;
use sluice_engine::{LeaderEpoch, TopicPartition};

/// One shard's budget on a machine whose `ulimit -n` is 20,000, with 2
/// shards (half of the limit, split).
const FDS_MAX: usize = 5_000;

fn counts() -> Vec<u32> {
    std::env::var("SLUICE_SCALE_PARTITIONS")
        .ok()
        .map(|v| v.split(',').filter_map(|n| n.trim().parse().ok()).collect())
        .unwrap_or_else(|| vec![1_000])
}

fn open_fds() -> usize {
    std::fs::read_dir("/proc/self/fd").expect("/proc").count()
}

async fn measure(n: u32) {
    let dir = tempfile::tempdir().unwrap();
    let ctx = Rc::new(ShardContext::new(64 << 20, 64 << 20));
    ctx.fds.set_max(FDS_MAX);
    let log_dir = Arc::new(LogDir::new(dir.path().to_path_buf()));
    let t0 = Instant::now();
    let mut parts: Vec<Partition> = Vec::new();
    let mut next = 0;
    while next < n {
        let end = (next + CREATE_BATCH_MAX as u32).min(n);
        let batch = (next..end)
            .map(|i| NewPartition {
                tp: TopicPartition::new(format!("t{}", i / 500), (i % 500) as i32),
                config: LogConfig::default(),
                leader_epoch: Some(LeaderEpoch(0)),
            })
            .collect();
        let created = Partition::create_many(&log_dir, batch, &ctx, 1_000)
            .await
            .expect("created");
        parts.extend(created.into_iter().map(|(_, p)| p.expect("each")));
        next = end;
    }
    let created = t0.elapsed();
    let t1 = Instant::now();
    let mut last = Vec::with_capacity(parts.len());
    for (i, p) in parts.iter().enumerate() {
        let info = p
            .append(make_batch(i as u64, 1, 100, 1_000), LeaderEpoch(0), 2_000)
            .await
            .expect("append");
        last.push(info.last_offset);
    }
    for (p, o) in parts.iter().zip(last) {
        p.wait_acked(o).await.expect("acked");
    }
    let acked = t1.elapsed();
    // Closed descriptors go back at the reactor's next turn.
    glommio::timer::sleep(std::time::Duration::from_millis(200)).await;
    let per = |d: std::time::Duration| d.as_secs_f64() * 1e3 / f64::from(n);
    println!(
        "| {n} | {:.3} | {:.3} | {:.3} | {} | {} | {} |",
        per(created),
        per(acked),
        per(created + acked),
        open_fds(),
        ctx.fds.open(),
        ctx.fds.closed(),
    );
    assert!(ctx.fds.open() <= FDS_MAX + 64, "{}", ctx.fds.open());
}

#[test]
#[ignore]
fn cost_per_partition_from_creation_to_the_first_acknowledged_append() {
    println!("| partitions | create ms/partition | first append ms/partition | total ms/partition | fds of the process | fds in the budget | holders closed |");
    println!("|---|---|---|---|---|---|---|");
    for n in counts() {
        run(move || measure(n));
    }
}
