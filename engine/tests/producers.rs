//! Idempotent producer state in a partition: retries are recognised across
//! restarts, clean or not, and snapshots that cannot be trusted are not
//! used.

mod common;

use bytes::BytesMut;
use common::*;
use sluice_engine::batch::build;
use sluice_engine::config::LogConfig;
use sluice_engine::error::KafkaCode;
use sluice_engine::partition::Partition;
use sluice_engine::{EngineError, LeaderEpoch, Offset};

fn idempotent(pid: i64, epoch: i16, seq: i32, count: usize) -> BytesMut {
    let mut b = build::simple(count, 100, (seq % 200) as u8, 1_000);
    build::set_producer(&mut b, pid, epoch, seq);
    BytesMut::from(&b[..])
}

async fn produce(
    p: &Partition,
    pid: i64,
    epoch: i16,
    seq: i32,
    count: usize,
) -> Result<(i64, i64), EngineError> {
    let info = p
        .append(idempotent(pid, epoch, seq, count), LeaderEpoch(0), 2_000)
        .await?;
    p.wait_acked(info.last_offset).await?;
    Ok((info.base_offset.0, info.last_offset.0))
}

fn code(r: Result<(i64, i64), EngineError>) -> KafkaCode {
    r.expect_err("refused").kafka_code()
}

fn small_segments() -> LogConfig {
    LogConfig {
        segment_bytes: 4_000,
        ..LogConfig::default()
    }
}

/// Producer 13 writes once, first; then three producers write 20 batches
/// of 2 records each, interleaved, over several segments.
async fn fill(p: &Partition) -> Vec<(i64, i32, (i64, i64))> {
    let mut sent = vec![(13, 0, produce(p, 13, 0, 0, 2).await.unwrap())];
    for i in 0..20 {
        for pid in [10, 11, 12] {
            let at = produce(p, pid, 0, i * 2, 2).await.unwrap();
            sent.push((pid, i * 2, at));
        }
    }
    sent
}

/// Every producer's last batch is a retry, with its original offsets; the
/// next sequence is appended; a gap is refused.
async fn check_state(p: &Partition, sent: &[(i64, i32, (i64, i64))]) {
    let end = p.watermarks().log_end;
    // Producer 13's batch is only in a segment replay does not read: what
    // is known of it comes from a snapshot.
    for pid in [10, 11, 12, 13] {
        let (_, seq, at) = *sent.iter().rev().find(|s| s.0 == pid).unwrap();
        assert_eq!(
            produce(p, pid, 0, seq, 2).await.unwrap(),
            at,
            "producer {pid}"
        );
    }
    assert_eq!(p.watermarks().log_end, end, "retries are not written");
    assert_eq!(
        code(produce(p, 10, 0, 45, 1).await),
        KafkaCode::OutOfOrderSequenceNumber
    );
    let next = produce(p, 10, 0, 40, 1).await.unwrap();
    assert_eq!(next.0, end.0);
}

#[test]
fn retries_are_recognised_after_a_clean_restart() {
    run(|| async {
        let dir = tempfile::tempdir().unwrap();
        let p = open(dir.path(), small_segments(), &shard()).await;
        let sent = fill(&p).await;
        assert!(p.segment_bases().len() > 3);
        p.close().await.unwrap();
        let q = open(dir.path(), small_segments(), &shard()).await;
        assert_eq!(q.producers().len(), 4);
        check_state(&q, &sent).await;
    });
}

#[test]
fn retries_are_recognised_after_a_crash_from_snapshots_and_the_log() {
    run(|| async {
        let dir = tempfile::tempdir().unwrap();
        let p = open(dir.path(), small_segments(), &shard()).await;
        let sent = fill(&p).await;
        // No close: the state comes from the last roll's snapshot plus the
        // batches after it.
        glommio::timer::sleep(std::time::Duration::from_millis(50)).await;
        let snapshots = std::fs::read_dir(dir.path().join("t-0"))
            .unwrap()
            .filter(|e| {
                e.as_ref()
                    .unwrap()
                    .path()
                    .extension()
                    .is_some_and(|x| x == "snapshot")
            })
            .count();
        assert!((1..=2).contains(&snapshots), "{snapshots} snapshots kept");
        drop(p);
        let q = open(dir.path(), small_segments(), &shard()).await;
        check_state(&q, &sent).await;
    });
}

#[test]
fn a_damaged_snapshot_or_one_past_the_log_end_is_not_used() {
    run(|| async {
        let dir = tempfile::tempdir().unwrap();
        let p = open(dir.path(), small_segments(), &shard()).await;
        let sent = fill(&p).await;
        let end = p.watermarks().log_end.0;
        p.close().await.unwrap();
        let newest = dir.path().join(format!("t-0/{end:020}.snapshot"));
        let mut bytes = std::fs::read(&newest).unwrap();
        let n = bytes.len();
        bytes[n - 3] ^= 0x40;
        std::fs::write(&newest, &bytes).unwrap();
        // A snapshot from a future the crash cut off, claiming nothing.
        let future = dir.path().join(format!("t-0/{:020}.snapshot", end + 100));
        std::fs::write(
            &future,
            sluice_engine::producers::ProducerTable::default().encode_snapshot(end + 100),
        )
        .unwrap();
        let q = open(dir.path(), small_segments(), &shard()).await;
        assert!(!future.exists(), "a snapshot past the log end is deleted");
        check_state(&q, &sent).await;
    });
}

#[test]
fn epochs_and_unknown_producers_are_checked_and_retention_forgets_producers() {
    run(|| async {
        let dir = tempfile::tempdir().unwrap();
        let p = open(dir.path(), small_segments(), &shard()).await;
        produce(&p, 5, 0, 0, 3).await.unwrap();
        assert_eq!(
            code(produce(&p, 6, 0, 7, 1).await),
            KafkaCode::UnknownProducerId
        );
        produce(&p, 5, 1, 0, 1).await.unwrap();
        assert_eq!(
            code(produce(&p, 5, 0, 3, 1).await),
            KafkaCode::InvalidProducerEpoch
        );
        let (_, last) = produce(&p, 5, 1, 1, 1).await.unwrap();
        p.delete_records(Offset(last + 1), 2_000).await.unwrap();
        assert!(
            p.producers().is_empty(),
            "every batch of producer 5 is gone"
        );
        assert_eq!(
            code(produce(&p, 5, 1, 2, 1).await),
            KafkaCode::UnknownProducerId
        );
        produce(&p, 5, 1, 0, 1).await.unwrap();
        // Idle producers expire.
        let mut c = p.config();
        c.producer_id_expiration_ms = 10;
        p.set_config(c);
        p.enforce_retention(1_000_000).await.unwrap();
        assert!(p.producers().is_empty());
    });
}

/// A producer idle for `producer.id.expiration.ms` while the partition was
/// closed is forgotten when it opens again; one idle for less is kept.
#[test]
fn producers_that_expired_while_closed_are_forgotten_on_open() {
    run(|| async {
        let dir = tempfile::tempdir().unwrap();
        let ctx = shard();
        let p = open(dir.path(), small_segments(), &ctx).await;
        // The batch's timestamp is 1 000 ms.
        produce(&p, 5, 0, 0, 1).await.unwrap();
        p.close().await.unwrap();
        drop(p);
        let expiry = small_segments().producer_id_expiration_ms;
        let q = open_at(dir.path(), small_segments(), &ctx, 1_000 + expiry - 1).await;
        assert_eq!(q.producers().len(), 1, "not idle long enough to expire");
        q.close().await.unwrap();
        drop(q);
        let q = open_at(dir.path(), small_segments(), &ctx, 1_000 + expiry).await;
        assert!(q.producers().is_empty(), "expired while closed");
        assert_eq!(
            code(produce(&q, 5, 0, 1, 1).await),
            KafkaCode::UnknownProducerId
        );
    });
}
