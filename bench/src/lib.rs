//! Benchmarks for Sluice; see bench/README.md.
//!
//! Shared by the criterion benches (`benches/`) and the binaries: batch
//! construction, where benchmark data goes, and the windowed append driver
//! that runs on a glommio executor (here); run metadata ([`meta`]); the
//! OMB-style load generator of `sluice-bench` ([`workload`], [`kafka`],
//! [`report`], [`chart`]); the raw-protocol producer ([`raw`]) and the
//! physical limits it is compared with ([`limits`]); waiting for the disks
//! to go quiet before a measured phase ([`settle`]).

pub mod chart;
pub mod kafka;
pub mod limits;
pub mod meta;
pub mod raw;
pub mod report;
pub mod settle;
pub mod workload;

use std::cell::{Cell, RefCell};
use std::future::Future;
use std::path::{Path, PathBuf};
use std::rc::Rc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::BytesMut;
use glommio::sync::Semaphore;
use hdrhistogram::Histogram;
use sluice_engine::batch::{build, HEADER_LEN};
use sluice_engine::config::LogConfig;
use sluice_engine::partition::{LogDir, Partition, ShardContext};
use sluice_engine::{LeaderEpoch, TopicPartition};

/// Value bytes of one benchmark record ("1 KiB records").
pub const RECORD_VALUE_BYTES: usize = 1024;

/// Timestamp stamped on every benchmark record; the default topic config
/// accepts any CreateTime timestamp.
pub const TIMESTAMP_MS: i64 = 1_700_000_000_000;

/// An uncompressed v2 batch of keyless records with `value_len`-byte values,
/// holding as many records as fit in `target_bytes` (the whole batch,
/// header included, is at most `target_bytes`; at least one record).
///
/// A "1 MiB batch" therefore stays under the default `max.message.bytes`
/// (1 048 588), as a real producer's `batch.size` would.
pub fn batch_up_to(target_bytes: usize, value_len: usize) -> Vec<u8> {
    let one = build::simple(1, value_len, 0xab, TIMESTAMP_MS).len() - HEADER_LEN;
    let mut count = ((target_bytes.saturating_sub(HEADER_LEN)) / one).max(1);
    loop {
        let b = build::simple(count, value_len, 0xab, TIMESTAMP_MS);
        if b.len() <= target_bytes || count == 1 {
            return b;
        }
        count -= 1;
    }
}

/// Records in a batch built by [`build::simple`] / [`batch_up_to`].
pub fn records_in(batch: &[u8]) -> usize {
    sluice_engine::batch::BatchHeader::parse(batch).map_or(0, |h| h.records_count.max(0) as usize)
}

/// Where benchmark partitions are created: `$SLUICE_BENCH_DIR`, else
/// `<workspace>/target/bench-data` (on the same disk as the workspace, never
/// a tmpfs `/tmp`). Created if missing.
pub fn bench_root() -> PathBuf {
    let root = std::env::var_os("SLUICE_BENCH_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("..")
                .join("target")
                .join("bench-data")
        });
    std::fs::create_dir_all(&root).expect("create the benchmark data directory");
    root.canonicalize().unwrap_or(root)
}

/// The default durable config (`flush.messages=1`: every group is
/// fdatasync'ed before it is acknowledged).
pub fn durable_config() -> LogConfig {
    LogConfig::default()
}

/// A relaxed config: `flush.messages` so large that appends are acknowledged
/// once written, with no fdatasync (Kafka's default behaviour).
pub fn relaxed_config() -> LogConfig {
    let mut c = LogConfig::default();
    c.set("flush.messages", "9223372036854775807")
        .expect("flush.messages is a valid key");
    c
}

/// Default tail cache of the benchmark shard, in bytes.
pub const TAIL_CACHE_BYTES: usize = 64 << 20;
/// Write buffer of the benchmark shard (appends wait for room beyond it).
pub const WRITE_BUFFER_BYTES: u64 = 64 << 20;

/// The benchmark shard: a [`WRITE_BUFFER_BYTES`] write buffer and a tail
/// cache of `tail_cache_bytes` (see [`TAIL_CACHE_BYTES`]).
pub fn shard_context(tail_cache_bytes: usize) -> Rc<ShardContext> {
    Rc::new(ShardContext::new(tail_cache_bytes, WRITE_BUFFER_BYTES))
}

/// Runs `f` on a fresh glommio executor thread and returns its output.
pub fn run_on_executor<T, F>(f: impl FnOnce() -> F + Send + 'static) -> T
where
    T: Send + 'static,
    F: Future<Output = T> + 'static,
{
    glommio::LocalExecutorBuilder::default()
        .name("sluice-bench")
        .io_memory(sluice_engine::io::io_memory(WRITE_BUFFER_BYTES))
        .spawn(f)
        .expect("spawn a glommio executor")
        .join()
        .expect("the glommio executor thread")
}

/// Opens (creating) partition `bench-0` in `dir`.
pub async fn open_partition(
    dir: &Path,
    config: LogConfig,
    ctx: &Rc<ShardContext>,
) -> sluice_engine::Result<Partition> {
    Partition::open(
        Arc::new(LogDir::new(dir.to_path_buf())),
        TopicPartition::new("bench", 0),
        config,
        ctx.clone(),
        sluice_engine::types::now_ms(),
    )
    .await
}

/// What [`append_windowed`] measured.
pub struct AppendRun {
    /// From the first append call until the last batch was acknowledged.
    pub elapsed: Duration,
    pub batches: u64,
    pub bytes: u64,
    /// Groups acknowledged: distinct high watermarks seen by the waiters
    /// (one per group commit that held at least one batch).
    pub groups: u64,
    /// Append latency in nanoseconds: from the `append()` call until
    /// `wait_acked()` resolved; `None` unless asked for.
    pub latency_ns: Option<Histogram<u64>>,
}

impl AppendRun {
    pub fn mib_per_s(&self) -> f64 {
        self.bytes as f64 / (1u64 << 20) as f64 / self.elapsed.as_secs_f64()
    }
}

/// Appends `batches` (consumed in order) to `p` as one producer that keeps
/// up to `window` appends unacknowledged: each append's acknowledgement is
/// awaited by its own task, and a new append starts only when fewer than
/// `window` are in flight. Batches are built by the caller before the clock
/// starts, so the time is the engine's: validation, offset assignment,
/// queueing, the block-aligned writes and (by policy) the fdatasyncs.
pub async fn append_windowed(
    p: &Partition,
    batches: Vec<BytesMut>,
    window: usize,
    record_latency: bool,
) -> sluice_engine::Result<AppendRun> {
    assert!(window > 0, "window must be positive");
    let window_sem = Rc::new(Semaphore::new(window as u64));
    let histogram = record_latency.then(|| {
        Rc::new(RefCell::new(
            Histogram::<u64>::new_with_bounds(1_000, 600_000_000_000, 3).expect("histogram"),
        ))
    });
    let failure: Rc<RefCell<Option<sluice_engine::EngineError>>> = Rc::new(RefCell::new(None));
    let last_hw = Rc::new(Cell::new(i64::MIN));
    let groups = Rc::new(Cell::new(0u64));
    let count = batches.len() as u64;
    let bytes: u64 = batches.iter().map(|b| b.len() as u64).sum();

    let start = Instant::now();
    for batch in batches {
        window_sem
            .acquire(1)
            .await
            .expect("the window semaphore is never closed");
        if let Some(e) = failure.borrow_mut().take() {
            return Err(e);
        }
        let t0 = Instant::now();
        let info = p
            .append(batch, LeaderEpoch(0), sluice_engine::types::now_ms())
            .await?;
        let acked = p.wait_acked(info.last_offset);
        let (sem, hist, fail, p2) = (
            window_sem.clone(),
            histogram.clone(),
            failure.clone(),
            p.clone(),
        );
        let (last_hw, groups) = (last_hw.clone(), groups.clone());
        glommio::spawn_local(async move {
            match acked.await {
                Ok(()) => {
                    if let Some(h) = &hist {
                        let ns = t0.elapsed().as_nanos() as u64;
                        h.borrow_mut().saturating_record(ns.max(1_000));
                    }
                    let hw = p2.watermarks().high_watermark.0;
                    if hw != last_hw.get() {
                        last_hw.set(hw);
                        groups.set(groups.get() + 1);
                    }
                }
                Err(e) => {
                    fail.borrow_mut().get_or_insert(e);
                }
            }
            sem.signal(1);
        })
        .detach();
    }
    // Every permit back: every append acknowledged.
    window_sem
        .acquire(window as u64)
        .await
        .expect("the window semaphore is never closed");
    let elapsed = start.elapsed();
    if let Some(e) = failure.borrow_mut().take() {
        return Err(e);
    }
    Ok(AppendRun {
        elapsed,
        batches: count,
        bytes,
        groups: groups.get(),
        latency_ns: histogram.map(|h| h.borrow().clone()),
    })
}

/// `n` copies of `template`, each separately mutable (as a produce request's
/// batch is), carved out of one allocation that is freed when the last copy
/// is dropped.
///
/// One allocation rather than `n`: glibc serves every large allocation made
/// before the first free with its own mmap, so `n` separate 1 MiB buffers
/// would each be munmap'ed on the executor thread as the engine drops them
/// (about a fifth of its CPU time in a profile), a cost of how the benchmark
/// pre-builds its input, not of the engine; a broker reusing its heap does
/// not pay it.
pub fn copies(template: &[u8], n: usize) -> Vec<BytesMut> {
    let mut all = BytesMut::with_capacity(template.len() * n);
    (0..n)
        .map(|_| {
            all.extend_from_slice(template);
            all.split()
        })
        .collect()
}

/// A fresh, empty directory under [`bench_root`], removed on drop.
pub fn fresh_dir(prefix: &str) -> tempfile::TempDir {
    tempfile::Builder::new()
        .prefix(prefix)
        .tempdir_in(bench_root())
        .expect("create a benchmark directory")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn batches_fit_their_target_and_validate() {
        for target in [16 << 10, 1 << 20] {
            let b = batch_up_to(target, RECORD_VALUE_BYTES);
            assert!(b.len() <= target);
            assert!(b.len() > target - 1100, "{} of {target}", b.len());
            let limits = LogConfig::default().limits();
            sluice_engine::batch::validate(&b, &limits, TIMESTAMP_MS).unwrap();
        }
        assert!(batch_up_to(1 << 20, RECORD_VALUE_BYTES).len() <= 1_048_588);
    }
}
