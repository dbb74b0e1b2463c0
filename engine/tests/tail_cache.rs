//! The broker's tail cache (`tail.cache.bytes`) is split evenly among the
//! shards: each serves from memory only as much of its newest data as its
//! share holds, and reads the files for anything older.

mod common;

use std::rc::Rc;
use std::sync::{mpsc, Arc};
use std::time::Duration;

use sluice_engine::config::LogConfig;
use sluice_engine::partition::{Chunk, ReadOptions, ReadUpper};
use sluice_engine::shard::{shard_of, Engine, EngineConfig, ShardEnv, ShardMain};
use sluice_engine::{Offset, TopicPartition};

/// Bytes of the batches each shard appends: 96 of 64 records of 1000 bytes.
const WRITTEN: usize = 96 * 64 * 1000;

/// Per shard: (bytes cached, whether a read of offset 0 came from memory).
fn run(shards: usize, tail_cache_bytes: usize) -> Vec<(usize, bool)> {
    let dir = tempfile::tempdir().unwrap();
    let (tx, rx) = mpsc::channel();
    let main: ShardMain = Arc::new(move |env: Rc<ShardEnv>| {
        let tx = tx.clone();
        Box::pin(async move {
            let tp = (0..)
                .map(|i| TopicPartition::new("cached", i))
                .find(|tp| shard_of(tp, env.shards) == env.shard)
                .unwrap();
            let p = env.open(&tp, LogConfig::default()).await.unwrap();
            for i in 0..96 {
                common::append(&p, common::make_batch(i, 64, 1000, 1_000), 1_000).await;
            }
            let r = p
                .read(
                    Offset(0),
                    ReadOptions {
                        max_bytes: 1 << 20,
                        min_one: true,
                        upper: ReadUpper::HighWatermark,
                    },
                )
                .await
                .unwrap();
            let from_memory = matches!(r.chunks.first(), Some(Chunk::Memory(_)));
            tx.send((env.ctx.cache.bytes(), from_memory)).unwrap();
        })
    });
    let engine = Engine::start_with(
        EngineConfig {
            log_dirs: vec![dir.path().to_path_buf()],
            shards,
            tail_cache_bytes,
            ..EngineConfig::default()
        },
        Some(main),
    )
    .unwrap();
    let got = (0..shards)
        .map(|_| rx.recv_timeout(Duration::from_secs(120)).unwrap())
        .collect();
    engine.stop();
    got
}

#[test]
fn each_shard_keeps_its_share_of_the_tail_cache_and_reads_older_data_from_the_files() {
    // 8 MiB for the broker: 4 MiB a shard, less than each one wrote.
    for (cached, from_memory) in run(2, 8 << 20) {
        assert!(cached <= 4 << 20, "{cached} bytes cached");
        assert!(cached > 3 << 20, "{cached} bytes cached");
        assert!(!from_memory, "offset 0 was evicted");
    }
    // Shares larger than what each shard wrote keep all of it.
    for (cached, from_memory) in run(2, 4 * WRITTEN) {
        assert!(cached >= WRITTEN, "{cached} bytes cached");
        assert!(from_memory, "offset 0 is still cached");
    }
}
