//! Several log directories: an I/O error in one takes that directory's
//! partitions offline, while partitions in the other keep serving.
//!
//! The failing directory is a 256 KiB tmpfs mounted by the test (root is
//! needed, as for the rest of the suite's fault tests) and filled until a
//! write fails with ENOSPC.

mod common;

use std::path::Path;
use std::process::Command;
use std::rc::Rc;
use std::sync::Arc;

use common::*;
use sluice_engine::config::LogConfig;
use sluice_engine::partition::{LogDir, Partition};
use sluice_engine::{EngineError, LeaderEpoch, Offset, TopicPartition};

struct Mount(std::path::PathBuf);

impl Drop for Mount {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.0).status();
    }
}

fn mount_small_tmpfs(at: &Path) -> Mount {
    std::fs::create_dir_all(at).unwrap();
    let ok = Command::new("mount")
        .args(["-t", "tmpfs", "-o", "size=256k", "tmpfs"])
        .arg(at)
        .status()
        .expect("run mount");
    assert!(ok.success(), "mounting a tmpfs needs root");
    Mount(at.to_path_buf())
}

#[test]
fn given_io_error_in_one_log_dir_its_partitions_go_offline_and_the_other_dir_keeps_serving() {
    let root = tempfile::tempdir().unwrap();
    let small = root.path().join("small");
    let _mount = mount_small_tmpfs(&small);
    let big = root.path().join("big");
    std::fs::create_dir_all(&big).unwrap();
    run(move || async move {
        let ctx = shard();
        let small_dir = Arc::new(LogDir::new(small));
        let big_dir = Arc::new(LogDir::new(big));
        let open = |dir: &Arc<LogDir>, p: i32, ctx: &Rc<_>| {
            Partition::open(
                dir.clone(),
                TopicPartition::new("t", p),
                LogConfig::default(),
                Rc::clone(ctx),
                0,
            )
        };
        let failing = open(&small_dir, 0, &ctx).await.unwrap();
        let healthy = open(&big_dir, 1, &ctx).await.unwrap();
        let mut error = None;
        for i in 0..200u64 {
            let appended = failing
                .append(make_batch(i, 4, 4000, 10), LeaderEpoch(0), 2_000)
                .await;
            let acked = match appended {
                Ok(info) => failing.wait_acked(info.last_offset).await,
                Err(e) => Err(e),
            };
            if let Err(e) = acked {
                error = Some(e);
                break;
            }
        }
        let error = error.expect("a 256 KiB directory fills up");
        assert!(
            matches!(
                error,
                EngineError::Poisoned(_) | EngineError::DirOffline(_) | EngineError::Io { .. }
            ),
            "{error}"
        );
        assert!(small_dir.is_offline());
        assert!(!big_dir.is_offline());
        // The failing partition refuses service, with a storage error.
        let again = failing
            .append(make_batch(1, 1, 1, 1), LeaderEpoch(0), 2_000)
            .await
            .unwrap_err();
        assert_eq!(
            again.kafka_code(),
            sluice_engine::KafkaCode::KafkaStorageError
        );
        // The other directory keeps serving appends and reads.
        for i in 0..10 {
            append(&healthy, make_batch(i, 2, 100, 5), 2_000).await;
        }
        assert_eq!(read_all(&healthy, Offset(0)).await.len(), 10);
        healthy.close().await.unwrap();
    });
}
