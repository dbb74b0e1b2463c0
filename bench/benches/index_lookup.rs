//! `Index<OffsetEntry>::floor` on a 100 000-entry offset index, random keys.

use std::hint::black_box;
use std::time::Duration;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use sluice_engine::index::{Index, OffsetEntry};

const ENTRIES: u32 = 100_000;
/// Offsets between two entries: one entry per ~4 KiB of 1 KiB records.
const OFFSET_STRIDE: u32 = 4;
const POSITION_STRIDE: u32 = 4096 + 64;

/// xorshift64*: deterministic keys without a `rand` dependency.
fn keys(n: usize, below: u64) -> Vec<i64> {
    let mut x = 0x9e37_79b9_7f4a_7c15u64;
    (0..n)
        .map(|_| {
            x ^= x >> 12;
            x ^= x << 25;
            x ^= x >> 27;
            (x.wrapping_mul(0x2545_f491_4f6c_dd1d) % below) as i64
        })
        .collect()
}

fn lookup(c: &mut Criterion) {
    let mut ix = Index::<OffsetEntry>::new(ENTRIES as usize);
    for i in 0..ENTRIES {
        assert!(ix.push(OffsetEntry {
            relative_offset: i * OFFSET_STRIDE + 3,
            position: i * POSITION_STRIDE,
        }));
    }
    assert_eq!(ix.len(), ENTRIES as usize);
    // Keys over the whole range, including a few below the first entry.
    let keys = keys(1 << 16, u64::from(ENTRIES * OFFSET_STRIDE + 8));
    let mask = keys.len() - 1;

    let mut g = c.benchmark_group("index_lookup");
    g.sample_size(10)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2))
        .throughput(Throughput::Elements(1));
    g.bench_function("floor_100k_random", |b| {
        let mut i = 0usize;
        b.iter(|| {
            let k = keys[i & mask];
            i = i.wrapping_add(1);
            black_box(ix.floor(black_box(k)))
        })
    });
    g.finish();
}

criterion_group!(benches, lookup);
criterion_main!(benches);
