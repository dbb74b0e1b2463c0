//! Creating many partitions at once: their files made durable together,
//! writers parked until the first append, and every state a crash during
//! creation can leave opens.

mod common;

use std::os::unix::fs::MetadataExt;
use std::rc::Rc;
use std::sync::Arc;

use common::*;
use sluice_engine::config::LogConfig;
use sluice_engine::partition::{LogDir, NewPartition, Partition, ShardContext};
use sluice_engine::{LeaderEpoch, Offset, TopicPartition};

const FIRST: [&str; 3] = [
    "00000000000000000000.log",
    "00000000000000000000.index",
    "00000000000000000000.timeindex",
];

#[test]
fn given_many_new_partitions_they_are_created_at_once_parked_and_take_appends() {
    run(|| async {
        let dir = tempfile::tempdir().unwrap();
        let ctx = Rc::new(ShardContext::new(1 << 20, 64 << 20));
        let log_dir = Arc::new(LogDir::new(dir.path().to_path_buf()));
        // Half with their first leader's epoch, as the broker creates them;
        // half without, as a produce that races the broker does.
        let new: Vec<_> = (0..300)
            .map(|i| NewPartition {
                tp: TopicPartition::new("many", i),
                config: LogConfig::default(),
                leader_epoch: (i % 2 == 0).then_some(LeaderEpoch(0)),
            })
            .collect();
        let created = Partition::create_many(&log_dir, new, &ctx, 1_000)
            .await
            .expect("created");
        assert_eq!(created.len(), 300);
        let parts: Vec<Partition> = created
            .into_iter()
            .map(|(_, p)| p.expect("each created"))
            .collect();
        assert_eq!(ctx.fds.open(), 0, "no descriptor held before an append");
        for (i, p) in parts.iter().enumerate() {
            assert!(p.is_parked());
            let files: Vec<_> = FIRST.iter().map(|f| p.dir().join(f)).collect();
            assert!(files.iter().all(|f| f.exists()), "{i}: {files:?}");
            let checkpoint = p.dir().join("leader-epoch-checkpoint");
            let inode = checkpoint.metadata().ok().map(|m| m.ino());
            assert_eq!(
                inode.is_some(),
                i % 2 == 0,
                "{i}: a checkpoint iff an epoch"
            );
            append(p, make_batch(i as u64, 2, 50, 1_000), 2_000).await;
            let after = checkpoint.metadata().unwrap().ino();
            if let Some(inode) = inode {
                assert_eq!(after, inode, "{i}: not written again by the first append");
            }
            assert_eq!(std::fs::read_to_string(&checkpoint).unwrap(), "0\n1\n0 0\n");
        }
        for (i, p) in parts.iter().enumerate() {
            let got = read_all(p, Offset(0)).await;
            assert_eq!(got.len(), 1, "partition {i}");
            assert_eq!(p.watermarks().high_watermark, Offset(2));
            p.close().await.unwrap();
        }
        // Opened again: the same batch.
        let p = Partition::open(
            log_dir.clone(),
            TopicPartition::new("many", 7),
            LogConfig::default(),
            ctx.clone(),
            1_000,
        )
        .await
        .unwrap();
        assert_eq!(p.watermarks().log_end, Offset(2));
    });
}

/// What a crash can leave of a partition being created: a subset of its
/// directory and files, in any order the file system made them durable.
#[test]
fn given_any_part_of_a_creation_left_by_a_crash_the_partition_opens_and_takes_appends() {
    const CHECKPOINT: &str = "leader-epoch-checkpoint";
    let leftovers: [&[&str]; 7] = [
        &[],
        &[FIRST[1]],
        &[FIRST[1], FIRST[2]],
        &[FIRST[0]],
        &[FIRST[0], FIRST[2]],
        &[CHECKPOINT],
        &[CHECKPOINT, FIRST[0], FIRST[1], FIRST[2]],
    ];
    for left in leftovers {
        let left: Vec<String> = left.iter().map(|s| s.to_string()).collect();
        run(move || async move {
            let dir = tempfile::tempdir().unwrap();
            let part = dir.path().join("t-0");
            std::fs::create_dir(&part).unwrap();
            for f in &left {
                std::fs::File::create(part.join(f)).unwrap();
            }
            let ctx = shard();
            let p = open(dir.path(), LogConfig::default(), &ctx).await;
            assert_eq!(p.watermarks().log_end, Offset(0), "{left:?}");
            append(&p, make_batch(1, 3, 10, 1_000), 2_000).await;
            assert_eq!(read_all(&p, Offset(0)).await.len(), 1, "{left:?}");
            p.close().await.unwrap();
            let p = open(dir.path(), LogConfig::default(), &ctx).await;
            assert_eq!(p.watermarks().log_end, Offset(3), "{left:?}");
        });
    }
}
