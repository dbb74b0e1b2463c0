//! Helpers shared by the engine's integration tests.
#![allow(dead_code)]

use std::future::Future;
use std::path::Path;
use std::rc::Rc;
use std::sync::Arc;

use bytes::BytesMut;
use sluice_engine::batch::{self, build};
use sluice_engine::config::LogConfig;
use sluice_engine::partition::{
    Chunk, LogDir, Partition, ReadOptions, ReadOutcome, ReadUpper, ShardContext,
};
use sluice_engine::{LeaderEpoch, Offset, TopicPartition};

/// Runs `f` on a fresh glommio executor, as a shard would.
pub fn run<F: Future<Output = ()> + 'static>(f: impl FnOnce() -> F + Send + 'static) {
    glommio::LocalExecutorBuilder::default()
        .spawn(f)
        .expect("executor")
        .join()
        .expect("executor thread");
}

pub fn shard() -> Rc<ShardContext> {
    Rc::new(ShardContext::new(1 << 20, 64 << 20))
}

pub async fn open(dir: &Path, config: LogConfig, ctx: &Rc<ShardContext>) -> Partition {
    open_at(dir, config, ctx, 1_000).await
}

/// `open` with the clock at `now_ms`.
pub async fn open_at(
    dir: &Path,
    config: LogConfig,
    ctx: &Rc<ShardContext>,
    now_ms: i64,
) -> Partition {
    Partition::open(
        Arc::new(LogDir::new(dir.to_path_buf())),
        TopicPartition::new("t", 0),
        config,
        ctx.clone(),
        now_ms,
    )
    .await
    .expect("open")
}

/// A batch of `count` records whose values encode `tag`.
pub fn make_batch(tag: u64, count: usize, value_len: usize, ts: i64) -> BytesMut {
    let records: Vec<build::Record> = (0..count)
        .map(|i| build::Record {
            key: Some(format!("k{tag}-{i}").into_bytes()),
            value: Some({
                let mut v = tag.to_be_bytes().to_vec();
                v.resize(value_len.max(8), (tag % 251) as u8);
                v
            }),
            headers: vec![],
        })
        .collect();
    BytesMut::from(&build::batch(&records, ts)[..])
}

pub async fn append(p: &Partition, b: BytesMut, now: i64) -> (Offset, Offset) {
    let info = p.append(b, LeaderEpoch(0), now).await.expect("append");
    p.wait_acked(info.last_offset).await.expect("ack");
    (info.base_offset, info.last_offset)
}

/// Reads every acknowledged batch from `from` to the high watermark and
/// returns (base offset, bytes) per whole batch, checking each one.
pub async fn read_all(p: &Partition, from: Offset) -> Vec<(i64, Vec<u8>)> {
    let mut out = Vec::new();
    let mut next = from;
    loop {
        let r = consumer_read(p, next, 64 << 10).await;
        let bytes = chunk_bytes(&r.chunks);
        if bytes.is_empty() {
            return out;
        }
        let mut at = 0;
        let mut progressed = false;
        while at + batch::HEADER_LEN <= bytes.len() {
            let h = batch::BatchHeader::parse(&bytes[at..]).expect("header");
            let len = h.total_len().expect("len");
            if at + len > bytes.len() {
                break; // a partial batch at the end of a file region
            }
            let b = &bytes[at..at + len];
            batch::check_stored(b).expect("served batches are intact");
            if h.last_offset() >= next.0 {
                out.push((h.base_offset, b.to_vec()));
                next = Offset(h.last_offset() + 1);
                progressed = true;
            }
            at += len;
        }
        assert!(progressed, "a read returned no whole batch at {next:?}");
    }
}

/// One read as a consumer's: up to the high watermark, at least one batch.
pub async fn consumer_read(p: &Partition, from: Offset, max_bytes: usize) -> ReadOutcome {
    let opts = ReadOptions {
        max_bytes,
        min_one: true,
        upper: ReadUpper::HighWatermark,
    };
    p.read(from, opts).await.expect("read")
}

/// The bytes a read returned, from memory and from the files.
pub fn chunk_bytes(chunks: &[Chunk]) -> Vec<u8> {
    let mut bytes = Vec::new();
    for c in chunks {
        match c {
            Chunk::Memory(b) => bytes.extend_from_slice(b),
            Chunk::File(f) => {
                use std::os::unix::fs::FileExt;
                let mut buf = vec![0u8; f.len as usize];
                f.file.read_exact_at(&mut buf, f.position).expect("pread");
                bytes.extend_from_slice(&buf);
            }
        }
    }
    bytes
}
