//! `Partition::append` + `wait_acked` of 1 KiB-record batches (16 KiB and
//! 1 MiB) with up to 64 appends in flight, under the default durable policy
//! (group commit with fdatasync) and a relaxed one (acknowledged once
//! written). Each measurement runs on its own glommio executor against a
//! fresh partition under `$SLUICE_BENCH_DIR` (default
//! `target/bench-data`); building the batches, opening and closing the
//! partition are outside the timed part.

use std::time::Duration;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use sluice_bench::{
    append_windowed, batch_up_to, copies, durable_config, fresh_dir, open_partition,
    relaxed_config, run_on_executor, shard_context, RECORD_VALUE_BYTES, TAIL_CACHE_BYTES,
};
use sluice_engine::config::LogConfig;

const WINDOW: usize = 64;

/// Appends `iters` copies of `template` to a fresh partition; the time from
/// the first append to the last acknowledgement.
fn measure(template: &[u8], config: &LogConfig, iters: u64) -> Duration {
    let batches = copies(template, iters as usize);
    let config = config.clone();
    let dir = fresh_dir("append-bench");
    let path = dir.path().to_path_buf();
    let elapsed = run_on_executor(move || async move {
        let ctx = shard_context(TAIL_CACHE_BYTES);
        let p = open_partition(&path, config, &ctx)
            .await
            .map_err(|e| e.to_string())?;
        let run = append_windowed(&p, batches, WINDOW, false)
            .await
            .map_err(|e| e.to_string())?;
        p.close().await.map_err(|e| e.to_string())?;
        Ok::<_, String>(run.elapsed)
    });
    drop(dir);
    elapsed.unwrap_or_else(|e| panic!("append benchmark failed: {e}"))
}

fn append(c: &mut Criterion) {
    let mut g = c.benchmark_group("append");
    g.sample_size(10)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(4));
    for (policy, config) in [("durable", durable_config()), ("relaxed", relaxed_config())] {
        for (size, target) in [("16KiB", 16 << 10), ("1MiB", 1 << 20)] {
            let template = batch_up_to(target, RECORD_VALUE_BYTES);
            g.throughput(Throughput::Bytes(template.len() as u64));
            g.bench_function(BenchmarkId::new(policy, size), |b| {
                b.iter_custom(|iters| measure(&template, &config, iters))
            });
        }
    }
    g.finish();
}

criterion_group!(benches, append);
criterion_main!(benches);
