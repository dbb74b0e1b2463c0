//! `batch::validate` on uncompressed batches of 1 KiB records: CRC-32C of
//! the whole batch plus the walk over every record.

use std::hint::black_box;
use std::time::Duration;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use sluice_bench::{batch_up_to, RECORD_VALUE_BYTES, TIMESTAMP_MS};
use sluice_engine::batch;
use sluice_engine::config::LogConfig;

fn validation(c: &mut Criterion) {
    let limits = LogConfig::default().limits();
    let mut g = c.benchmark_group("batch_validation");
    g.sample_size(10)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2));
    for (name, target) in [("16KiB", 16 << 10), ("1MiB", 1 << 20)] {
        let b = batch_up_to(target, RECORD_VALUE_BYTES);
        batch::validate(&b, &limits, TIMESTAMP_MS).expect("a valid batch");
        g.throughput(Throughput::Bytes(b.len() as u64));
        g.bench_with_input(BenchmarkId::new("validate", name), &b, |bench, b| {
            bench.iter(|| batch::validate(black_box(b), &limits, TIMESTAMP_MS).unwrap())
        });
    }
    g.finish();
}

criterion_group!(benches, validation);
criterion_main!(benches);
