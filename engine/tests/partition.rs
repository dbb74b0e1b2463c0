mod common;

use common::*;
use sluice_engine::config::LogConfig;
use sluice_engine::io::BLOCK;
use sluice_engine::partition::Partition;
use sluice_engine::Offset;

/// Segments of 20 000 bytes, which a few of `append_tagged`'s batches roll.
fn small_segments() -> LogConfig {
    LogConfig {
        segment_bytes: 20_000,
        ..LogConfig::default()
    }
}

/// Appends one batch of 3 records of 300 bytes per tag; returns each
/// batch's base and last offsets.
async fn append_tagged(p: &Partition, tags: std::ops::Range<u64>) -> Vec<(i64, i64)> {
    let mut offsets = Vec::new();
    for i in tags {
        let (base, last) = append(p, make_batch(i, 3, 300, 1_000 + i as i64), 2_000).await;
        offsets.push((base.0, last.0));
    }
    offsets
}

#[test]
fn given_appends_when_reopened_should_read_back_every_batch() {
    run(|| async {
        let dir = tempfile::tempdir().unwrap();
        let ctx = shard();
        let config = small_segments();
        let p = open(dir.path(), config.clone(), &ctx).await;
        let offsets = append_tagged(&p, 0..100).await;
        let want: Vec<(i64, i64)> = (0..100).map(|i| (3 * i, 3 * i + 2)).collect();
        assert_eq!(offsets, want);
        let expect: Vec<i64> = offsets.iter().map(|o| o.0).collect();
        assert!(p.segment_bases().len() > 3, "segments rolled by size");
        let got: Vec<i64> = read_all(&p, Offset(0)).await.iter().map(|b| b.0).collect();
        assert_eq!(got, expect);
        p.close().await.unwrap();
        let ctx2 = shard();
        let q = open(dir.path(), config, &ctx2).await;
        assert_eq!(q.watermarks().log_end, Offset(300));
        assert_eq!(q.watermarks().high_watermark, Offset(300));
        let got: Vec<i64> = read_all(&q, Offset(0)).await.iter().map(|b| b.0).collect();
        assert_eq!(got, expect);
        let got: Vec<i64> = read_all(&q, Offset(151))
            .await
            .iter()
            .map(|b| b.0)
            .collect();
        assert_eq!(got[0], 150);
    });
}

/// The bytes of a partition directory's `.log` files, together.
fn log_bytes(dir: &std::path::Path) -> u64 {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap())
        .filter(|e| e.file_name().to_string_lossy().ends_with(".log"))
        .map(|e| e.metadata().unwrap().len())
        .sum()
}

#[test]
fn given_a_clean_close_every_log_is_as_long_as_its_batches_and_appends_go_on_after_reopen() {
    run(|| async {
        let dir = tempfile::tempdir().unwrap();
        let ctx = shard();
        let config = small_segments();
        let p = open(dir.path(), config.clone(), &ctx).await;
        let part = p.dir().to_path_buf();
        // 30 batches: two segments, the active one ending inside a block.
        let mut expect: Vec<i64> = append_tagged(&p, 0..30).await.iter().map(|o| o.0).collect();
        let size = p.size_bytes();
        assert_ne!(size % BLOCK, 0, "the data must not end on a block");
        assert!(
            log_bytes(&part) > size,
            "the active log is padded while it is active"
        );
        assert!(p.segment_bases().len() >= 2, "segments rolled by size");
        p.close().await.unwrap();
        assert_eq!(log_bytes(&part), size);

        let ctx2 = shard();
        let q = open(dir.path(), config.clone(), &ctx2).await;
        assert_eq!(q.size_bytes(), size);
        expect.extend(append_tagged(&q, 30..40).await.iter().map(|o| o.0));
        let got: Vec<i64> = read_all(&q, Offset(0)).await.iter().map(|b| b.0).collect();
        assert_eq!(got, expect);
        let size = q.size_bytes();
        q.close().await.unwrap();
        assert_eq!(log_bytes(&part), size);

        let ctx3 = shard();
        let r = open(dir.path(), config, &ctx3).await;
        let got: Vec<i64> = read_all(&r, Offset(0)).await.iter().map(|b| b.0).collect();
        assert_eq!(got, expect);
    });
}

#[test]
fn given_closed_partition_when_flushed_or_appended_should_answer_closed() {
    run(|| async {
        let dir = tempfile::tempdir().unwrap();
        let ctx = shard();
        let mut config = LogConfig::default();
        config.set("flush.messages", "1000").unwrap();
        config.set("flush.ms", "20").unwrap();
        let p = open(dir.path(), config.clone(), &ctx).await;
        let (_, last) = append(&p, make_batch(1, 2, 10, 5), 2_000).await;
        p.close().await.unwrap();
        glommio::timer::sleep(std::time::Duration::from_millis(60)).await;
        assert!(matches!(
            p.flush().await,
            Err(sluice_engine::EngineError::Closed)
        ));
        let e = p
            .append(make_batch(2, 1, 1, 1), sluice_engine::LeaderEpoch(0), 2_000)
            .await
            .unwrap_err();
        assert!(matches!(e, sluice_engine::EngineError::Closed), "{e}");
        let q = open(dir.path(), config, &shard()).await;
        assert_eq!(q.watermarks().log_end, last.next());
    });
}

#[test]
fn under_the_default_policy_an_append_is_acknowledged_only_once_fsynced() {
    run(|| async {
        let dir = tempfile::tempdir().unwrap();
        let ctx = shard();
        let p = open(dir.path(), LogConfig::default(), &ctx).await;
        // Many appends in flight at once, so that groups are written while
        // earlier ones are being fsynced.
        let mut waits = Vec::new();
        for i in 0..400u64 {
            let info = p
                .append(
                    make_batch(i, 2, 2000, 1_000),
                    sluice_engine::LeaderEpoch(0),
                    2_000,
                )
                .await
                .unwrap();
            let q = p.clone();
            waits.push(glommio::spawn_local(async move {
                q.wait_acked(info.last_offset).await.unwrap();
                assert!(
                    q.synced_offset() > info.last_offset,
                    "offset {:?} acknowledged before it was fsynced (synced to {:?})",
                    info.last_offset,
                    q.synced_offset()
                );
            }));
            if i % 7 == 0 {
                futures_lite::future::yield_now().await;
            }
        }
        for w in waits {
            w.await;
        }
        assert_eq!(p.synced_offset(), Offset(800));
    });
}

/// Under load the flusher takes the next group and copies it into its write
/// buffer while the group before is in flight. Such a group starts with the
/// last partial block of the one before, may span segment rolls, and every
/// batch reads back whole and in order, before and after a reopen.
#[test]
fn groups_prepared_while_the_group_before_is_written_land_whole_and_in_order() {
    run(|| async {
        let dir = tempfile::tempdir().unwrap();
        let ctx = shard();
        let config = LogConfig {
            segment_bytes: 3 << 20,
            ..LogConfig::default()
        };
        let p = open(dir.path(), config.clone(), &ctx).await;
        let mut sent = Vec::new();
        let mut last = Offset(0);
        for i in 0..240u64 {
            // About 256 KiB, never a whole number of blocks.
            let b = make_batch(i, 64, 4_000 + (i % 7) as usize, 1_000);
            sent.push(b.to_vec());
            let info = p
                .append(b, sluice_engine::LeaderEpoch(0), 2_000)
                .await
                .unwrap();
            assert_eq!(info.base_offset, Offset(64 * i as i64));
            last = info.last_offset;
            if i % 24 == 0 {
                futures_lite::future::yield_now().await;
            }
        }
        p.wait_acked(last).await.unwrap();
        let stats = p.flush_stats();
        assert!(
            stats.prepared_ahead > 0,
            "no group was prepared ahead: {stats:?}"
        );
        assert!(p.segment_bases().len() > 10, "segments rolled");
        let check = |got: Vec<(i64, Vec<u8>)>| {
            assert_eq!(got.len(), sent.len());
            for (i, ((base, bytes), want)) in got.iter().zip(&sent).enumerate() {
                assert_eq!(*base, 64 * i as i64);
                // The base offset and the partition leader epoch are the
                // log's to assign; everything else is stored as sent.
                assert!(
                    bytes[8..12] == want[8..12] && bytes[16..] == want[16..],
                    "batch {i} differs"
                );
            }
        };
        check(read_all(&p, Offset(0)).await);
        p.close().await.unwrap();
        let q = open(dir.path(), config, &shard()).await;
        assert_eq!(q.watermarks().log_end, last.next());
        check(read_all(&q, Offset(0)).await);
    });
}

/// Retention takes segments out of the log at once, but their files stay,
/// renamed `*.deleted`, for `file.delete.delay.ms`; then a log file larger
/// than a deletion step is shrunk and unlinked. Leftovers of a stop before
/// that are removed at the next open.
#[test]
fn retention_renames_removed_segments_and_deletes_them_after_the_delay() {
    run(|| async {
        let dir = tempfile::tempdir().unwrap();
        let pdir = dir.path().join("t-0");
        let ctx = shard();
        let mut config = LogConfig {
            segment_bytes: 10 << 20,
            ..LogConfig::default()
        };
        config.set("file.delete.delay.ms", "300").unwrap();
        let p = open(dir.path(), config.clone(), &ctx).await;
        for i in 0..500u64 {
            append(&p, make_batch(i, 16, 4000, 1_000), 2_000).await;
        }
        let bases = p.segment_bases();
        assert!(bases.len() >= 3, "segments rolled: {bases:?}");
        config
            .set("retention.bytes", &(10 << 20).to_string())
            .unwrap();
        p.set_config(config.clone());
        let outcome = p.enforce_retention(2_000).await.unwrap();
        assert!(outcome.segments_deleted >= 1, "{outcome:?}");
        assert!(outcome.bytes_deleted > 8 << 20, "a file larger than a step");
        let removed = &bases[..outcome.segments_deleted];
        let deleted_files = || -> Vec<String> {
            let mut names: Vec<String> = std::fs::read_dir(&pdir)
                .unwrap()
                .map(|e| e.unwrap().file_name().into_string().unwrap())
                .filter(|n| n.ends_with(".deleted"))
                .collect();
            names.sort();
            names
        };
        for base in removed {
            let log = format!("{:020}.log", base.0);
            assert!(!pdir.join(&log).exists(), "{log} left the log at once");
            assert!(pdir.join(format!("{log}.deleted")).exists(), "{log} kept");
        }
        assert_eq!(deleted_files().len(), 3 * removed.len(), "log and indexes");
        // Still there within the delay.
        glommio::timer::sleep(std::time::Duration::from_millis(100)).await;
        assert_eq!(deleted_files().len(), 3 * removed.len());
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
        while !deleted_files().is_empty() {
            assert!(
                std::time::Instant::now() < deadline,
                "{:?}",
                deleted_files()
            );
            glommio::timer::sleep(std::time::Duration::from_millis(20)).await;
        }
        assert_eq!(p.watermarks().log_start, bases[outcome.segments_deleted]);

        // A stop within the delay leaves the renamed files; open removes them.
        // The largest value Kafka accepts: nothing overflows, the files wait.
        config
            .set("file.delete.delay.ms", &i64::MAX.to_string())
            .unwrap();
        config.set("retention.bytes", "1").unwrap();
        p.set_config(config.clone());
        let outcome = p.enforce_retention(2_000).await.unwrap();
        assert!(outcome.segments_deleted >= 1, "{outcome:?}");
        p.close().await.unwrap();
        assert!(!deleted_files().is_empty());
        let q = open(dir.path(), config, &shard()).await;
        assert!(deleted_files().is_empty(), "{:?}", deleted_files());
        assert_eq!(q.watermarks().log_end, Offset(500 * 16));
    });
}

/// Partitions of one shard whose segments are removed together have their
/// files deleted one at a time: never are two log files being shrunk at
/// once.
#[test]
fn removed_segments_of_a_shard_are_deleted_one_file_at_a_time() {
    run(|| async {
        let dir = tempfile::tempdir().unwrap();
        let ctx = shard();
        let log_dir = std::sync::Arc::new(sluice_engine::partition::LogDir::new(
            dir.path().to_path_buf(),
        ));
        let mut config = LogConfig {
            segment_bytes: 24 << 20,
            ..LogConfig::default()
        };
        config.set("file.delete.delay.ms", "0").unwrap();
        let mut parts = Vec::new();
        for id in 0..3 {
            let p = sluice_engine::partition::Partition::open(
                log_dir.clone(),
                sluice_engine::TopicPartition::new("t", id),
                config.clone(),
                ctx.clone(),
                1_000,
            )
            .await
            .unwrap();
            for i in 0..120u64 {
                append(&p, make_batch(i, 64, 4000, 1_000), 2_000).await;
            }
            assert!(p.segment_bases().len() >= 2);
            parts.push(p);
        }
        config.set("retention.bytes", "1").unwrap();
        // Log files by name (suffix `suffix`) and size, across the partitions.
        let sizes = |suffix: &str| -> Vec<(String, u64)> {
            let mut out = Vec::new();
            for id in 0..3 {
                for e in std::fs::read_dir(dir.path().join(format!("t-{id}"))).unwrap() {
                    let e = e.unwrap();
                    let name = e.path().to_string_lossy().into_owned();
                    if let (Some(stem), Ok(m)) = (name.strip_suffix(suffix), e.metadata()) {
                        out.push((stem.to_string(), m.len()));
                    }
                }
            }
            out
        };
        let full: std::collections::HashMap<_, _> = sizes(".log").into_iter().collect();
        for p in &parts {
            p.set_config(config.clone());
            p.enforce_retention(2_000).await.unwrap();
        }
        assert!(sizes(".log.deleted").len() >= 3, "{full:?}");
        assert!(full.values().filter(|&&len| len > 16 << 20).count() >= 3);
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
        let mut seen_shrinking = 0;
        loop {
            let now = sizes(".log.deleted");
            if now.is_empty() {
                break;
            }
            let shrinking = now.iter().filter(|(p, len)| full[p] > *len).count();
            assert!(shrinking <= 1, "several files shrinking at once: {now:?}");
            seen_shrinking += shrinking;
            assert!(std::time::Instant::now() < deadline, "{now:?}");
            glommio::timer::sleep(std::time::Duration::from_millis(1)).await;
        }
        assert!(seen_shrinking > 0, "never saw a file being shrunk");
    });
}

/// Index entries reach the index files a block at a time, not after every
/// group: the entries of the active segment's tail live only in memory. A
/// crash there loses no entry: recovery scans the active segment from its
/// last entry on disk and finds the rest again.
#[test]
fn index_entries_are_written_a_block_at_a_time_and_found_again_after_a_crash() {
    run(|| async {
        let dir = tempfile::tempdir().unwrap();
        let ctx = shard();
        let config = LogConfig {
            // One offset and one time entry per batch.
            index_interval_bytes: 1,
            ..LogConfig::default()
        };
        let p = open(dir.path(), config.clone(), &ctx).await;
        let files = dir.path().join("t-0");
        let index = files.join("00000000000000000000.index");
        let time_index = files.join("00000000000000000000.timeindex");
        // Entries on disk: those not all zero (a file is padded to a block).
        let on_disk = |path: &std::path::Path, len: usize| {
            let bytes = std::fs::read(path).unwrap();
            bytes
                .chunks(len)
                .filter(|e| e.iter().any(|&b| b != 0))
                .count()
        };
        // 100 offset entries (800 bytes) and 100 time entries (1200):
        // neither fills a block.
        for i in 0..100u64 {
            append(&p, make_batch(i, 1, 100, 1_000 + i as i64), 2_000).await;
        }
        assert_eq!(
            on_disk(&index, 8),
            0,
            "offset entries written before a block filled"
        );
        assert_eq!(
            on_disk(&time_index, 12),
            0,
            "time entries written before a block filled"
        );
        for i in 100..600u64 {
            append(&p, make_batch(i, 1, 100, 1_000 + i as i64), 2_000).await;
        }
        // 600 entries: 512 offset entries fill the first block, 341 time
        // entries theirs; at most a block's worth waits in memory.
        let ix = on_disk(&index, 8);
        let tx = on_disk(&time_index, 12);
        assert!((512..600).contains(&ix), "{ix} offset entries on disk");
        assert!((341..600).contains(&tx), "{tx} time entries on disk");
        // A crash now: what the disk holds, with the partition still open.
        let copy = tempfile::tempdir().unwrap();
        std::fs::create_dir(copy.path().join("t-0")).unwrap();
        for e in std::fs::read_dir(&files).unwrap() {
            let e = e.unwrap();
            std::fs::copy(e.path(), copy.path().join("t-0").join(e.file_name())).unwrap();
        }
        let q = open(copy.path(), config, &shard()).await;
        assert_eq!(q.watermarks().log_end, Offset(600));
        for i in [0i64, 300, 550, 599] {
            let found = q.offset_for_timestamp(1_000 + i).await.unwrap();
            assert_eq!(
                found.map(|(o, _)| o),
                Some(Offset(i)),
                "timestamp {}",
                1_000 + i
            );
        }
        let all = read_all(&q, Offset(550)).await;
        assert_eq!(all.first().map(|(b, _)| *b), Some(550));
        assert_eq!(all.len(), 50);
        p.close().await.unwrap();
    });
}

/// A rolled segment is closed in the background while the flusher goes on
/// writing the next one, but nothing appended after the roll is
/// acknowledged before that close completes: by every acknowledgement,
/// each segment before the active one is cut to its data and its offset
/// index written whole.
#[test]
fn nothing_after_a_roll_is_acknowledged_before_the_rolled_segment_is_closed() {
    run(|| async {
        let dir = tempfile::tempdir().unwrap();
        let ctx = shard();
        let config = LogConfig {
            segment_bytes: 16_000,
            index_interval_bytes: 1,
            ..LogConfig::default()
        };
        let p = open(dir.path(), config, &ctx).await;
        let files = dir.path().join("t-0");
        // Base offset → stored length, per batch of one record.
        let mut lengths = std::collections::BTreeMap::new();
        for i in 0..40u64 {
            let b = make_batch(i, 1, 5_000, 1_000);
            let len = b.len() as u64;
            let (base, _) = append(&p, b, 2_000).await;
            lengths.insert(base.0, len);
            let bases = p.segment_bases();
            for pair in bases.windows(2) {
                let (from, to) = (pair[0].0, pair[1].0);
                let name = format!("{from:020}");
                let data: u64 = lengths.range(from..to).map(|(_, l)| l).sum();
                let log = std::fs::metadata(files.join(format!("{name}.log"))).unwrap();
                assert_eq!(log.len(), data, "segment {from} after batch {i}");
                let index = std::fs::metadata(files.join(format!("{name}.index"))).unwrap();
                // An entry for every batch but the first, at position 0.
                let entries = (to - from - 1) as u64;
                assert_eq!(index.len(), 8 * entries, "index of {from} after batch {i}");
            }
        }
        assert!(p.segment_bases().len() > 10, "segments rolled");
        p.close().await.unwrap();
    });
}

/// A crash can cut the background close of a rolled segment short: its log
/// still padded to whole blocks, its index files incomplete. Recovery finds
/// it by its whole-block length, recovers it as it recovers an active
/// segment and closes it again: cut to its data, indexes whole, every batch
/// served.
#[test]
fn a_rolled_segment_whose_close_was_cut_short_is_recovered_and_closed() {
    run(|| async {
        let dir = tempfile::tempdir().unwrap();
        let config = LogConfig {
            segment_bytes: 16_000,
            index_interval_bytes: 1,
            ..LogConfig::default()
        };
        let p = open(dir.path(), config.clone(), &shard()).await;
        let mut sent = Vec::new();
        for i in 0..12u64 {
            let b = make_batch(i, 1, 5_000, 1_000 + i as i64);
            sent.push(b.len() as u64);
            append(&p, b, 2_000).await;
        }
        let bases = p.segment_bases();
        assert!(bases.len() >= 3, "segments rolled: {bases:?}");
        p.close().await.unwrap();
        // The state of a close cut short: the one before the active segment
        // padded to the next block, its indexes partly written.
        let (from, to) = (bases[bases.len() - 2].0, bases[bases.len() - 1].0);
        let files = dir.path().join("t-0");
        let name = format!("{from:020}");
        let log = files.join(format!("{name}.log"));
        let data: u64 = sent[from as usize..to as usize].iter().sum();
        assert_eq!(std::fs::metadata(&log).unwrap().len(), data);
        assert_ne!(data % 4096, 0, "the test needs a data end inside a block");
        std::fs::OpenOptions::new()
            .write(true)
            .open(&log)
            .unwrap()
            .set_len(data.div_ceil(4096) * 4096)
            .unwrap();
        for ext in ["index", "timeindex"] {
            let f = files.join(format!("{name}.{ext}"));
            std::fs::OpenOptions::new()
                .write(true)
                .open(f)
                .unwrap()
                .set_len(0)
                .unwrap();
        }
        let q = open(dir.path(), config, &shard()).await;
        assert_eq!(std::fs::metadata(&log).unwrap().len(), data, "padding cut");
        let entries = (to - from - 1) as u64;
        let index = std::fs::metadata(files.join(format!("{name}.index"))).unwrap();
        assert_eq!(index.len(), 8 * entries, "offset index whole");
        assert_eq!(q.watermarks().log_end, Offset(12));
        let all = read_all(&q, Offset(0)).await;
        assert_eq!(
            all.iter().map(|(b, _)| *b).collect::<Vec<_>>(),
            (0..12).collect::<Vec<_>>()
        );
        let last_ts = 1_000 + to - 1;
        let found = q.offset_for_timestamp(last_ts).await.unwrap();
        assert_eq!(found.map(|(o, _)| o), Some(Offset(to - 1)));
        q.close().await.unwrap();
    });
}

/// A shard without a tail cache, so that every read comes from the segment
/// files, and small segments of which the log keeps three (`retention.bytes`):
/// every roll after the fourth takes a removed segment's file.
fn recycling() -> (
    std::rc::Rc<sluice_engine::partition::ShardContext>,
    LogConfig,
) {
    let ctx = sluice_engine::partition::ShardContext::new(0, 64 << 20);
    let config = LogConfig {
        retention_bytes: 60_000,
        ..small_segments()
    };
    (std::rc::Rc::new(ctx), config)
}

/// The `.log` and `.spare` files of a partition directory.
fn log_files(dir: &std::path::Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".log") || n.ends_with(".spare"))
        .collect();
    v.sort();
    v
}

#[test]
fn given_retention_by_size_rolls_write_into_removed_segments_files_and_serve_only_their_own_batches(
) {
    run(|| async {
        let dir = tempfile::tempdir().unwrap();
        let (ctx, config) = recycling();
        let p = open(dir.path(), config.clone(), &ctx).await;
        let part = p.dir().to_path_buf();
        let mut offsets = Vec::new();
        let mut bases = std::collections::BTreeSet::new();
        // Retention applies as soon as its rule holds, not only at rolls:
        // segments end short of `segment.bytes`, so at a roll the log is
        // often just short of `retention.bytes` plus its oldest segment,
        // and then over it for a whole segment.
        let batch = make_batch(0, 3, 300, 0).len() as u64;
        let most = config.retention_bytes as u64 + config.segment_bytes + batch;
        for tags in (0..300).step_by(7) {
            offsets.extend(append_tagged(&p, tags..(tags + 7).min(300)).await);
            bases.extend(p.segment_bases());
            assert!(p.size_bytes() <= most, "{} bytes kept", p.size_bytes());
        }
        // Every roll from the fifth on (the log keeps three segments and
        // the active one) writes into a spare.
        let rolls = bases.len() as u64 - 1;
        let recycled = p.flush_stats().segments_recycled;
        assert!(
            recycled + 4 >= rolls,
            "{recycled} of {rolls} rolls took a spare"
        );
        let start = p.watermarks().log_start.0;
        assert!(start > 0, "retention removed the oldest segments");
        assert!(
            p.size_bytes() >= config.retention_bytes as u64,
            "the log keeps retention.bytes"
        );
        let check = |got: Vec<(i64, Vec<u8>)>| {
            let want: Vec<(i64, Vec<u8>)> = offsets
                .iter()
                .enumerate()
                .filter(|(_, o)| o.0 >= start)
                .map(|(i, o)| {
                    let mut b = make_batch(i as u64, 3, 300, 1_000 + i as i64).to_vec();
                    sluice_engine::batch::assign(&mut b, o.0, 0);
                    (o.0, b)
                })
                .collect();
            assert!(
                got == want,
                "served {} batches, {} kept",
                got.len(),
                want.len()
            );
        };
        check(read_all(&p, Offset(start)).await);
        let size = p.size_bytes();
        p.close().await.unwrap();
        // A clean close cuts the stale rest of the active segment's file.
        let logs: u64 = log_files(&part)
            .iter()
            .filter(|n| n.ends_with(".log"))
            .map(|n| std::fs::metadata(part.join(n)).unwrap().len())
            .sum();
        assert_eq!(logs, size, "every log exactly as long as its batches");

        let q = open(dir.path(), config, &shard()).await;
        assert_eq!(q.watermarks().log_start.0, start);
        check(read_all(&q, Offset(start)).await);
        let want: Vec<String> = q
            .segment_bases()
            .iter()
            .map(|b| format!("{:020}.log", b.0))
            .collect();
        assert_eq!(log_files(&part), want, "the spare is removed at open");
        q.close().await.unwrap();
    });
}

#[test]
fn given_a_read_holding_the_oldest_segments_file_retention_never_writes_into_it() {
    run(|| async {
        let dir = tempfile::tempdir().unwrap();
        let (ctx, config) = recycling();
        let p = open(dir.path(), config, &ctx).await;
        append_tagged(&p, 0..20).await;
        // A fetch response not yet sent: it holds the first segment's file.
        let held = p
            .read(
                Offset(0),
                sluice_engine::partition::ReadOptions {
                    max_bytes: 1 << 20,
                    min_one: true,
                    upper: sluice_engine::partition::ReadUpper::HighWatermark,
                },
            )
            .await
            .unwrap();
        let [sluice_engine::partition::Chunk::File(region)] = &held.chunks[..] else {
            panic!("a read from the file");
        };
        let read_region = || {
            use std::os::unix::fs::FileExt;
            let mut buf = vec![0u8; region.len as usize];
            region
                .file
                .read_exact_at(&mut buf, region.position)
                .unwrap();
            buf
        };
        let before = read_region();
        append_tagged(&p, 20..300).await;
        assert!(
            before == read_region(),
            "the held file still has its batches"
        );
        assert_eq!(p.flush_stats().segments_recycled, 0);
        // Once the response is gone, rolls take removed segments' files.
        drop(held);
        append_tagged(&p, 300..360).await;
        assert!(p.watermarks().log_start.0 > 0, "retention went on");
        assert!(
            p.flush_stats().segments_recycled > 0,
            "files are reused again"
        );
        p.close().await.unwrap();
    });
}
