//! The durable position and the high watermark (committed), apart:
//! `log_start ≤ high_watermark ≤ durable ≤ log_end`; in the default commit
//! mode the high watermark is the durable position, in the replicated mode
//! it moves only when advanced, never past the durable position, and
//! consumers never read at or above it.

mod common;

use std::path::Path;
use std::rc::Rc;
use std::time::Duration;

use common::*;
use futures_lite::future::poll_once;
use proptest::prelude::*;
use sluice_engine::batch::{self, BatchHeader};
use sluice_engine::config::LogConfig;
use sluice_engine::partition::{CommitMode, Partition, ShardContext, Watermarks};
use sluice_engine::{EngineError, LeaderEpoch, Offset};

/// Checks the order of the positions, and what the commit mode implies.
fn check_order(p: &Partition) -> Watermarks {
    let w = p.watermarks();
    assert!(w.log_start <= w.high_watermark, "{w:?}");
    assert!(w.high_watermark <= w.durable, "{w:?}");
    assert!(w.durable <= w.log_end, "{w:?}");
    if p.commit_mode() == CommitMode::Durable {
        assert_eq!(w.high_watermark, w.durable, "the default mode");
    }
    w
}

/// Opens the partition in `dir` in the replicated commit mode.
async fn open_replicated(dir: &Path, config: LogConfig, ctx: &Rc<ShardContext>) -> Partition {
    let p = open(dir, config, ctx).await;
    p.set_commit_mode(CommitMode::Replicated);
    p
}

async fn append_only(p: &Partition, tag: u64, count: usize) -> (Offset, Offset) {
    let info = p
        .append(make_batch(tag, count, 100, 1_000), LeaderEpoch(0), 2_000)
        .await
        .expect("append");
    (info.base_offset, info.last_offset)
}

/// Reads as a consumer from `from` until nothing more comes, checking that
/// no byte returned belongs to a batch at or above the high watermark the
/// read reports. Returns (base, last) of each whole batch.
async fn consume(p: &Partition, from: Offset, max_bytes: usize) -> Vec<(i64, i64)> {
    let mut out = Vec::new();
    let mut next = from;
    loop {
        let r = consumer_read(p, next, max_bytes).await;
        let hw = r.watermarks.high_watermark.0;
        let bytes = chunk_bytes(&r.chunks);
        if bytes.is_empty() {
            return out;
        }
        let mut at = 0;
        let before = out.len();
        while at + batch::HEADER_LEN <= bytes.len() {
            let h = BatchHeader::parse(&bytes[at..]).expect("a batch starts here");
            assert!(
                h.last_offset() < hw,
                "a consumer read returned batch {}..={} at or above the high watermark {hw}",
                h.base_offset,
                h.last_offset()
            );
            let len = h.total_len().expect("len");
            if at + len > bytes.len() {
                break;
            }
            if h.last_offset() >= next.0 {
                out.push((h.base_offset, h.last_offset()));
            }
            at += len;
        }
        assert!(
            out.len() > before,
            "a read returned no whole batch at {next:?}"
        );
        next = Offset(out.last().expect("a batch").1 + 1);
    }
}

#[test]
fn given_the_default_mode_the_high_watermark_is_the_durable_position() {
    run(|| async {
        for relaxed in [false, true] {
            let dir = tempfile::tempdir().unwrap();
            let ctx = shard();
            let mut config = LogConfig::default();
            if relaxed {
                config.set("flush.messages", "1000").unwrap();
            }
            let p = open(dir.path(), config, &ctx).await;
            assert_eq!(p.commit_mode(), CommitMode::Durable);
            for tag in 0..40 {
                let (_, last) = append_only(&p, tag, 3).await;
                check_order(&p);
                if tag % 4 == 0 {
                    p.wait_acked(last).await.unwrap();
                    let w = check_order(&p);
                    assert!(w.durable > last);
                }
            }
            let end = p.watermarks().log_end;
            p.wait_durable(Offset(end.0 - 1)).await.unwrap();
            let w = check_order(&p);
            assert_eq!(w.high_watermark, end);
            p.close().await.unwrap();
        }
    });
}

#[test]
fn given_replicated_mode_fsync_alone_does_not_move_the_high_watermark_and_an_advance_does() {
    run(|| async {
        let dir = tempfile::tempdir().unwrap();
        let ctx = shard();
        let p = open_replicated(dir.path(), LogConfig::default(), &ctx).await;
        let (_, first) = append_only(&p, 1, 3).await;
        append_only(&p, 2, 3).await;
        let (_, third) = append_only(&p, 3, 3).await;
        let mut acked = Box::pin(p.wait_acked(first));
        let mut durable = Box::pin(p.wait_durable(third));
        assert!(
            poll_once(&mut durable).await.is_none(),
            "durable before the flusher ran"
        );
        durable.await.unwrap();
        let w = check_order(&p);
        assert_eq!(w.durable, Offset(9));
        assert_eq!(w.high_watermark, Offset(0), "moved by the fsync");
        glommio::timer::sleep(Duration::from_millis(20)).await;
        assert!(poll_once(&mut acked).await.is_none(), "acked uncommitted");
        assert!(consume(&p, Offset(0), 1 << 20).await.is_empty());

        assert_eq!(p.advance_high_watermark(Offset(3)).unwrap(), Offset(3));
        acked.await.unwrap();
        assert_eq!(consume(&p, Offset(0), 1 << 20).await, vec![(0, 2)]);
        assert_eq!(
            p.advance_high_watermark(Offset(0)).unwrap(),
            Offset(3),
            "moved back"
        );

        // Past the durable position: it stops there.
        let (base, fourth) = append_only(&p, 4, 3).await;
        assert_eq!(p.advance_high_watermark(Offset(1_000)).unwrap(), base);
        check_order(&p);
        p.wait_durable(fourth).await.unwrap();
        assert_eq!(p.watermarks().high_watermark, base);
        assert_eq!(p.advance_high_watermark(Offset(1_000)).unwrap(), Offset(12));
        p.wait_acked(fourth).await.unwrap();
        let read = consume(&p, Offset(0), 1 << 20).await;
        assert_eq!(read, vec![(0, 2), (3, 5), (6, 8), (9, 11)]);

        let (_, fifth) = append_only(&p, 5, 3).await;
        p.wait_durable(fifth).await.unwrap();
        assert_eq!(p.watermarks().high_watermark, Offset(12));
        // Back to the default mode: the high watermark follows again.
        p.set_commit_mode(CommitMode::Durable);
        assert_eq!(check_order(&p).high_watermark, Offset(15));
        p.close().await.unwrap();
    });
}

#[test]
fn a_high_watermark_wait_is_woken_when_the_high_watermark_is_advanced() {
    run(|| async {
        let dir = tempfile::tempdir().unwrap();
        let ctx = shard();
        let p = open_replicated(dir.path(), LogConfig::default(), &ctx).await;
        let (_, last) = append_only(&p, 1, 2).await;
        let mut wait = Box::pin(p.wait_high_watermark_above(Offset(0)));
        assert!(poll_once(&mut wait).await.is_none());
        p.wait_durable(last).await.unwrap();
        assert!(poll_once(&mut wait).await.is_none(), "woken for durable");
        let q = p.clone();
        glommio::spawn_local(async move {
            glommio::timer::sleep(Duration::from_millis(5)).await;
            q.advance_high_watermark(Offset(2)).unwrap();
        })
        .detach();
        wait.await;
        assert_eq!(p.watermarks().high_watermark, Offset(2));
        p.close().await.unwrap();
    });
}

/// Small segments and no tail cache: reads go to the files, across rolls.
fn files_only() -> (Rc<ShardContext>, LogConfig) {
    let ctx = Rc::new(ShardContext::new(0, 64 << 20));
    let config = LogConfig {
        segment_bytes: 8_000,
        index_interval_bytes: 1_000,
        ..LogConfig::default()
    };
    (ctx, config)
}

#[test]
fn given_more_uncommitted_batches_than_are_kept_the_high_watermark_stays_on_batch_boundaries() {
    run(|| async {
        let dir = tempfile::tempdir().unwrap();
        let (ctx, config) = files_only();
        let p = open_replicated(dir.path(), config, &ctx).await;
        let mut last = Offset(0);
        for tag in 0..3_000 {
            last = append_only(&p, tag, 3).await.1;
        }
        p.wait_durable(last).await.unwrap();
        assert_eq!(p.watermarks().high_watermark, Offset(0));
        let mut asked = 0i64;
        let mut prev = Offset(0);
        for step in [1i64, 7, 300, 1_201, 3_333, 2, 5_000] {
            asked += step;
            let hw = p.advance_high_watermark(Offset(asked)).unwrap();
            assert!(hw.0 <= asked, "past the offset asked for");
            assert!(hw >= prev, "moved back");
            assert_eq!(hw.0 % 3, 0, "not a batch boundary: {hw:?}");
            check_order(&p);
            let read = consume(&p, Offset(0), 64 << 10).await;
            assert_eq!(read.last().map_or(0, |b| b.1 + 1), hw.0);
            assert_eq!(read.len() as i64, hw.0 / 3, "a batch below it missing");
            prev = hw;
        }
        assert_eq!(
            p.advance_high_watermark(Offset(9_000)).unwrap(),
            Offset(9_000)
        );
        p.close().await.unwrap();
    });
}

#[test]
fn given_replicated_mode_a_truncation_below_the_high_watermark_lowers_it_to_the_new_end() {
    run(|| async {
        let dir = tempfile::tempdir().unwrap();
        let (ctx, config) = files_only();
        let p = open_replicated(dir.path(), config, &ctx).await;
        let mut last = Offset(0);
        for tag in 0..60 {
            last = append_only(&p, tag, 3).await.1;
        }
        p.wait_durable(last).await.unwrap();
        assert_eq!(p.advance_high_watermark(Offset(150)).unwrap(), Offset(150));
        let waiting = p.wait_acked(Offset(170));
        let truncated = glommio::spawn_local(waiting);
        glommio::timer::sleep(Duration::from_millis(5)).await;
        p.truncate_to(Offset(100)).await.unwrap();
        assert!(matches!(truncated.await, Err(EngineError::Truncated)));
        let w = check_order(&p);
        assert_eq!(
            (w.log_end, w.durable, w.high_watermark),
            (Offset(99), Offset(99), Offset(99))
        );
        assert_eq!(consume(&p, Offset(0), 4_096).await.len(), 33);

        let (_, last) = append_only(&p, 100, 3).await;
        p.wait_durable(last).await.unwrap();
        assert_eq!(p.watermarks().high_watermark, Offset(99));
        assert_eq!(p.advance_high_watermark(Offset(102)).unwrap(), Offset(102));
        assert_eq!(
            consume(&p, Offset(90), 4_096).await.last(),
            Some(&(99, 101))
        );
        p.close().await.unwrap();
    });
}

#[derive(Clone, Debug)]
enum Op {
    Append {
        count: usize,
        value_len: usize,
        wait: bool,
    },
    WaitDurable,
    Advance {
        at: u16,
    },
    Truncate {
        at: u16,
    },
    DeleteRecords {
        at: u16,
    },
    Mode {
        replicated: bool,
    },
    Read {
        at: u16,
    },
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        6 => (1usize..5, 0usize..1200, any::<bool>())
            .prop_map(|(count, value_len, wait)| Op::Append { count, value_len, wait }),
        2 => Just(Op::WaitDurable),
        4 => any::<u16>().prop_map(|at| Op::Advance { at }),
        1 => any::<u16>().prop_map(|at| Op::Truncate { at }),
        1 => any::<u16>().prop_map(|at| Op::DeleteRecords { at }),
        1 => any::<bool>().prop_map(|replicated| Op::Mode { replicated }),
        2 => any::<u16>().prop_map(|at| Op::Read { at }),
    ]
}

/// The log as batches (base, last) above the log start.
#[derive(Default)]
struct Model {
    batches: Vec<(i64, i64)>,
    log_start: i64,
}

impl Model {
    fn end(&self) -> i64 {
        self.batches.last().map_or(self.log_start, |b| b.1 + 1)
    }

    /// An offset in `[lo, hi + 2]`.
    fn pick(lo: i64, hi: i64, at: u16) -> i64 {
        lo + i64::from(at) % (hi - lo + 3)
    }

    /// The high watermark an advance to `to` gives: the durable position
    /// at or past it, else the latest batch end at or below it, never less
    /// than `hw`.
    fn advanced(&self, w: &Watermarks, to: i64) -> i64 {
        if to >= w.durable.0 {
            return w.durable.0;
        }
        let end = self
            .batches
            .iter()
            .map(|b| b.1 + 1)
            .filter(|e| *e <= to)
            .max()
            .unwrap_or(0);
        end.max(w.high_watermark.0)
    }
}

fn check_sequence(ops: Vec<Op>) {
    run(move || async move {
        let dir = tempfile::tempdir().unwrap();
        let (ctx, mut config) = files_only();
        config.set("retention.ms", "-1").unwrap();
        let p = open(dir.path(), config, &ctx).await;
        let mut m = Model::default();
        let mut tag = 0;
        for op in ops {
            let before = check_order(&p);
            let replicated = p.commit_mode() == CommitMode::Replicated;
            // What the high watermark must be after the step, when known.
            let mut want_hw = replicated.then_some(before.high_watermark.0);
            match op {
                Op::Append {
                    count,
                    value_len,
                    wait,
                } => {
                    tag += 1;
                    let b = make_batch(tag, count, value_len, 1_000);
                    let info = p.append(b, LeaderEpoch(0), 2_000).await.unwrap();
                    assert_eq!(info.base_offset.0, m.end());
                    m.batches.push((info.base_offset.0, info.last_offset.0));
                    if wait {
                        p.wait_durable(info.last_offset).await.unwrap();
                    }
                }
                Op::WaitDurable => {
                    if m.end() > before.durable.0 {
                        p.wait_durable(Offset(m.end() - 1)).await.unwrap();
                    }
                }
                Op::Advance { at } => {
                    let w = p.watermarks();
                    let to = Model::pick(w.log_start.0, w.log_end.0, at);
                    let got = p.advance_high_watermark(Offset(to)).unwrap();
                    let want = if replicated {
                        m.advanced(&w, to)
                    } else {
                        w.high_watermark.0
                    };
                    assert_eq!(got.0, want, "advance to {to} from {w:?}");
                    want_hw = replicated.then_some(want);
                }
                Op::Truncate { at } => {
                    let to = Model::pick(m.log_start, m.end(), at).min(m.end());
                    p.truncate_to(Offset(to)).await.unwrap();
                    // A batch across the log start goes whole, and the log
                    // starts over empty at the log start.
                    m.batches.retain(|b| b.1 < to);
                    want_hw = want_hw.map(|hw| hw.min(m.end()));
                }
                Op::DeleteRecords { at } => {
                    let hw = before.high_watermark.0;
                    let to = Model::pick(m.log_start, hw, at).min(hw);
                    let start = p.delete_records(Offset(to), 2_000).await.unwrap();
                    assert_eq!(start.0, to.max(m.log_start));
                    m.log_start = start.0;
                    m.batches.retain(|b| b.1 >= start.0);
                }
                Op::Mode { replicated: r } => {
                    let mode = if r {
                        CommitMode::Replicated
                    } else {
                        CommitMode::Durable
                    };
                    p.set_commit_mode(mode);
                    want_hw = r.then_some(before.high_watermark.0);
                }
                Op::Read { at } => {
                    let hw = before.high_watermark.0;
                    let from = Model::pick(m.log_start, hw, at).min(hw);
                    let got = consume(&p, Offset(from), 2_000).await;
                    // In the default mode the flusher may move the high
                    // watermark while the reads go on.
                    let upto = got.last().map_or(hw, |b| b.1 + 1).max(hw);
                    let want: Vec<(i64, i64)> = m
                        .batches
                        .iter()
                        .copied()
                        .filter(|b| b.1 >= from && b.1 < upto)
                        .collect();
                    assert_eq!(got, want, "from {from}");
                    assert!(replicated || upto <= p.watermarks().high_watermark.0);
                }
            }
            let w = check_order(&p);
            assert_eq!(w.log_end.0, m.end(), "log end");
            assert_eq!(w.log_start.0, m.log_start, "log start");
            if let Some(hw) = want_hw {
                assert_eq!(w.high_watermark.0, hw, "high watermark after {w:?}");
            }
        }
        p.close().await.unwrap();
    });
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 32, ..ProptestConfig::default() })]

    #[test]
    fn given_random_appends_advances_and_truncations_the_positions_stay_in_order(
        ops in proptest::collection::vec(op(), 1..60),
    ) {
        check_sequence(ops);
    }
}
