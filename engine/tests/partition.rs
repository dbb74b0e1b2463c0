mod common;

use common::*;
use sluice_engine::config::LogConfig;
use sluice_engine::Offset;

#[test]
fn given_appends_when_reopened_should_read_back_every_batch() {
    run(|| async {
        let dir = tempfile::tempdir().unwrap();
        let ctx = shard();
        let config = LogConfig {
            segment_bytes: 20_000,
            ..LogConfig::default()
        };
        let p = open(dir.path(), config.clone(), &ctx).await;
        let mut expect = Vec::new();
        for i in 0..100u64 {
            let (base, last) = append(&p, make_batch(i, 3, 300, 1_000 + i as i64), 2_000).await;
            assert_eq!(base, Offset(3 * i as i64));
            assert_eq!(last, Offset(3 * i as i64 + 2));
            expect.push(base.0);
        }
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
