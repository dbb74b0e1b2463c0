//! `sluice_net::decode_request` on a Produce request (v7, one partition,
//! one uncompressed batch of 1 KiB records): header, body and the batch's
//! framing, as a broker's connection task decodes every request. The
//! records are not copied, so the time is per request, whatever its size.

use std::hint::black_box;
use std::time::Duration;

use bytes::Bytes;
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use sluice_bench::{batch_up_to, raw, RECORD_VALUE_BYTES};

fn decode(c: &mut Criterion) {
    let mut g = c.benchmark_group("request_decode");
    g.sample_size(10)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2));
    for (name, target) in [("produce_16KiB", 16 << 10), ("produce_1MiB", 1 << 20)] {
        let batch = Bytes::from(batch_up_to(target, RECORD_VALUE_BYTES));
        let framed = raw::produce_request("bench-topic", 0, -1, batch, 1).expect("encode");
        // The broker decodes the frame without its size prefix.
        let frame = Bytes::from(framed).slice(4..);
        sluice_net::decode_request(frame.clone()).expect("a valid request");
        // The records stay a slice of the frame: the cost is per request.
        g.throughput(Throughput::Elements(1));
        g.bench_with_input(BenchmarkId::new("decode", name), &frame, |b, f| {
            b.iter(|| sluice_net::decode_request(black_box(f.clone())).unwrap())
        });
    }
    g.finish();
}

criterion_group!(benches, decode);
criterion_main!(benches);
