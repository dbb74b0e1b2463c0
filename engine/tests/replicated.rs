//! A follower's log: batches copied from the leader's log keep the
//! leader's offsets and epochs, must start at the log end, are checked as
//! stored batches, and wake the leader's followers waiting on its log end.

mod common;

use bytes::Bytes;
use common::*;
use futures_lite::future::poll_once;
use sluice_engine::config::LogConfig;
use sluice_engine::{EngineError, LeaderEpoch, Offset};

#[test]
fn given_the_leaders_batches_a_follower_stores_them_with_the_leaders_offsets_and_epochs() {
    let leader_dir = tempfile::tempdir().unwrap();
    let follower_dir = tempfile::tempdir().unwrap();
    let (l, f) = (
        leader_dir.path().to_path_buf(),
        follower_dir.path().to_path_buf(),
    );
    run(move || async move {
        let ctx = shard();
        let leader = open(&l, LogConfig::default(), &ctx).await;
        let follower = open(&f, LogConfig::default(), &ctx).await;
        for (tag, epoch) in [(1u64, 3), (2, 3), (3, 5)] {
            let info = leader
                .append(make_batch(tag, 4, 50, 1_000), LeaderEpoch(epoch), 1_000)
                .await
                .unwrap();
            leader.wait_acked(info.last_offset).await.unwrap();
        }
        let batches = read_all(&leader, Offset::ZERO).await;
        // A follower waiting for the log end is woken by the append.
        let mut waiting = Box::pin(follower.wait_log_end_above(Offset::ZERO));
        assert!(poll_once(&mut waiting).await.is_none());
        // Out of place: the second batch first.
        let second = Bytes::from(batches[1].1.clone());
        let err = follower.append_replicated(second, 1_000).await.unwrap_err();
        assert!(matches!(err, EngineError::NotAtLogEnd { .. }), "{err}");
        // A damaged batch.
        let mut bad = batches[0].1.clone();
        let at = bad.len() - 1;
        bad[at] ^= 1;
        assert!(follower
            .append_replicated(Bytes::from(bad), 1_000)
            .await
            .is_err());
        for (_, b) in &batches {
            let info = follower
                .append_replicated(Bytes::from(b.clone()), 1_000)
                .await
                .unwrap();
            follower.wait_durable(info.last_offset).await.unwrap();
        }
        assert!(poll_once(&mut waiting).await.is_some());
        assert_eq!(follower.watermarks().log_end, leader.watermarks().log_end);
        assert_eq!(follower.leader_epochs(), leader.leader_epochs());
        assert_eq!(
            follower.end_offset_for_epoch(LeaderEpoch(3)),
            Some((LeaderEpoch(3), Offset(8)))
        );
        // Byte for byte the leader's batches, once committed on the follower.
        follower.set_commit_mode(sluice_engine::partition::CommitMode::Replicated);
        follower.advance_high_watermark(Offset(12)).unwrap();
        let copied = read_all(&follower, Offset::ZERO).await;
        assert_eq!(copied, batches);
    });
}
