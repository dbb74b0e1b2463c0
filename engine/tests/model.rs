//! Property test: random sequences of appends, reads, reads by time,
//! truncations, DeleteRecords, retention and reopenings against a plain
//! in-memory model of the log. Small segments and index intervals make
//! every sequence roll segments and use the indexes.

mod common;

use common::*;
use proptest::prelude::*;
use sluice_engine::batch;
use sluice_engine::config::LogConfig;
use sluice_engine::partition::{ReadOptions, ReadUpper};
use sluice_engine::{EngineError, Offset};

#[derive(Clone, Debug)]
enum Op {
    Append {
        count: usize,
        value_len: usize,
        ts: i64,
    },
    Read {
        at: u16,
    },
    ReadByTime {
        ts: i64,
    },
    Truncate {
        at: u16,
    },
    DeleteRecords {
        at: u16,
    },
    Retention {
        bytes: Option<u32>,
    },
    Reopen,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        6 => (1usize..6, 0usize..1500, 0i64..1000).prop_map(|(count, value_len, ts)| Op::Append { count, value_len, ts }),
        3 => any::<u16>().prop_map(|at| Op::Read { at }),
        2 => (-10i64..1100).prop_map(|ts| Op::ReadByTime { ts }),
        1 => any::<u16>().prop_map(|at| Op::Truncate { at }),
        1 => any::<u16>().prop_map(|at| Op::DeleteRecords { at }),
        1 => proptest::option::of(0u32..20_000).prop_map(|bytes| Op::Retention { bytes }),
        1 => Just(Op::Reopen),
    ]
}

/// The model: every batch in the log, as stored, and the log start.
#[derive(Default)]
struct Model {
    batches: Vec<(i64, i64, i64, Vec<u8>)>, // base, last, timestamp, bytes
    log_start: i64,
}

impl Model {
    fn end(&self) -> i64 {
        self.batches.last().map_or(self.log_start, |b| b.1 + 1)
    }
    fn pick(&self, at: u16) -> i64 {
        let span = (self.end() - self.log_start + 1).max(1);
        self.log_start + i64::from(at) % span
    }
    fn from(&self, from: i64) -> Vec<(i64, Vec<u8>)> {
        self.batches
            .iter()
            .filter(|b| b.1 >= from)
            .map(|b| (b.0, b.3.clone()))
            .collect()
    }
}

/// A shard whose segment descriptor budget is `fds_max`, if given.
fn budgeted(fds_max: Option<usize>) -> std::rc::Rc<sluice_engine::partition::ShardContext> {
    let ctx = shard();
    if let Some(n) = fds_max {
        ctx.fds.set_max(n);
    }
    ctx
}

/// With `retained`, the log keeps that many bytes (`retention.bytes`), so
/// that rolls take the files of the segments it removes: the log start may
/// then move after any operation, to a batch boundary. With `fds_max`, the
/// shard keeps that many segment descriptors open at most, so files are
/// closed and opened again, and the writer parked, between operations.
fn check_sequence(
    ops: Vec<Op>,
    segment_bytes: u64,
    interval: u64,
    retained: Option<u32>,
    fds_max: Option<usize>,
) {
    run(move || async move {
        let dir = tempfile::tempdir().unwrap();
        let mut config = LogConfig {
            segment_bytes,
            index_interval_bytes: interval,
            ..LogConfig::default()
        };
        config.set("retention.ms", "-1").unwrap();
        if let Some(b) = retained {
            config.set("retention.bytes", &b.to_string()).unwrap();
        }
        let mut ctx = budgeted(fds_max);
        let mut p = open(dir.path(), config.clone(), &ctx).await;
        let mut m = Model::default();
        let mut tag = 0u64;
        for op in ops {
            match op {
                Op::Append {
                    count,
                    value_len,
                    ts,
                } => {
                    tag += 1;
                    let b = make_batch(tag, count, value_len, ts);
                    let mut stored = b.to_vec();
                    let (base, last) = append(&p, b, 2_000).await;
                    assert_eq!(base.0, m.end());
                    assert_eq!(last.0, base.0 + count as i64 - 1);
                    batch::assign(&mut stored, base.0, 0);
                    m.batches.push((base.0, last.0, ts, stored));
                }
                Op::Read { at } => {
                    let from = m.pick(at);
                    assert_eq!(
                        read_all(&p, Offset(from)).await,
                        m.from(from),
                        "read from {from}"
                    );
                }
                Op::ReadByTime { ts } => {
                    let want = m
                        .batches
                        .iter()
                        .find(|b| b.1 >= m.log_start && b.2 >= ts)
                        .map(|b| (Offset(b.0.max(m.log_start)), b.2));
                    assert_eq!(p.offset_for_timestamp(ts).await.unwrap(), want, "time {ts}");
                }
                Op::Truncate { at } => {
                    let to = m.pick(at);
                    p.truncate_to(Offset(to)).await.unwrap();
                    m.batches.retain(|b| b.1 < to);
                }
                Op::DeleteRecords { at } => {
                    let to = m.pick(at);
                    let start = p.delete_records(Offset(to), 2_000).await.unwrap();
                    let want = Offset(to.max(m.log_start));
                    if retained.is_some() {
                        // Retention runs after it, and may remove more.
                        assert!(start >= want, "{start:?} < {want:?}");
                    } else {
                        assert_eq!(start, want);
                    }
                    m.log_start = start.0;
                    m.batches.retain(|b| b.1 >= m.log_start);
                }
                Op::Retention { bytes } => {
                    let mut c = config.clone();
                    if let Some(b) = bytes {
                        c.set("retention.bytes", &b.to_string()).unwrap();
                    }
                    p.set_config(c);
                    p.enforce_retention(2_000).await.unwrap();
                    p.set_config(config.clone());
                    let start = p.watermarks().log_start.0;
                    assert!(start >= m.log_start);
                    if let Some(b) = bytes {
                        // Only whole closed segments go: what is left is
                        // at most the limit plus the active segment.
                        let active = segment_bytes + 20_000;
                        assert!(p.size_bytes() <= u64::from(b) + active);
                    }
                    m.log_start = start;
                    m.batches.retain(|b| b.1 >= start);
                }
                Op::Reopen => {
                    p.close().await.unwrap();
                    ctx = budgeted(fds_max);
                    p = open(dir.path(), config.clone(), &ctx).await;
                }
            }
            let w = p.watermarks();
            if retained.is_some() && w.log_start.0 > m.log_start {
                assert!(
                    m.batches.iter().any(|b| b.0 == w.log_start.0) || w.log_start.0 == m.end(),
                    "retention moved the log start to {}, not a batch",
                    w.log_start.0
                );
                m.log_start = w.log_start.0;
                m.batches.retain(|b| b.1 >= m.log_start);
            }
            assert_eq!(w.log_end.0, m.end(), "log end");
            assert_eq!(w.high_watermark, w.log_end, "everything acknowledged");
            assert_eq!(w.log_start.0, m.log_start.min(m.end()), "log start");
            let below = p
                .read(
                    Offset(m.log_start - 1),
                    ReadOptions {
                        max_bytes: 1,
                        min_one: true,
                        upper: ReadUpper::HighWatermark,
                    },
                )
                .await;
            if m.log_start > 0 {
                assert!(matches!(below, Err(EngineError::OffsetOutOfRange { .. })));
            }
        }
        assert_eq!(read_all(&p, Offset(m.log_start)).await, m.from(m.log_start));
        p.close().await.unwrap();
    });
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 40, ..ProptestConfig::default() })]

    #[test]
    fn given_random_operations_the_log_matches_the_model(
        ops in proptest::collection::vec(op(), 1..60),
        segment_bytes in 500u64..12_000,
        interval in 0u64..3000,
        retained in proptest::option::of(200u32..4000),
    ) {
        check_sequence(ops, segment_bytes, interval, retained, None);
    }

    #[test]
    fn given_random_operations_and_a_budget_of_two_descriptors_the_log_matches_the_model(
        ops in proptest::collection::vec(op(), 1..60),
        segment_bytes in 500u64..12_000,
        interval in 0u64..3000,
        retained in proptest::option::of(200u32..4000),
    ) {
        check_sequence(ops, segment_bytes, interval, retained, Some(2));
    }

    #[test]
    fn given_random_operations_and_the_smallest_budget_that_waits_the_log_matches_the_model(
        ops in proptest::collection::vec(op(), 1..60),
        segment_bytes in 500u64..12_000,
        interval in 0u64..3000,
        retained in proptest::option::of(200u32..4000),
    ) {
        let fds_max = sluice_engine::fds::WAITING_BUDGET_MIN;
        check_sequence(ops, segment_bytes, interval, retained, Some(fds_max));
    }
}
