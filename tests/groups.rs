//! Consumer groups through the real `sluice` binary, driven by librdkafka
//! (the rdkafka crate): assignments shared out and moved on leave and on
//! crash, at-least-once processing with commits after processing, offsets
//! kept across a broker restart, listing and describing groups with lag,
//! and the reset-offsets flow of kafka-consumer-groups.sh.

mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use rdkafka::admin::{AdminClient, AdminOptions};
use rdkafka::client::DefaultClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer};
use rdkafka::message::Message;
use rdkafka::producer::{BaseRecord, DefaultProducerContext, Producer, ThreadedProducer};
use rdkafka::{Offset, TopicPartitionList};
use support::{create_topic, free_port, Broker, TIMEOUT};

/// Short group timers so that rebalances and crashes resolve quickly.
const BROKER_ARGS: &[&str] = &[
    "--group-initial-rebalance-delay-ms",
    "300",
    "--group-min-session-timeout-ms",
    "1000",
];
const SESSION_TIMEOUT_MS: &str = "3000";

fn wait_until(what: &str, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + TIMEOUT;
    while !f() {
        assert!(Instant::now() < deadline, "timed out waiting until {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn consumer_config(bootstrap: &str, group: &str) -> ClientConfig {
    let mut c = ClientConfig::new();
    c.set("bootstrap.servers", bootstrap)
        .set("group.id", group)
        .set("enable.auto.commit", "false")
        .set("auto.offset.reset", "earliest")
        .set("session.timeout.ms", SESSION_TIMEOUT_MS)
        .set("heartbeat.interval.ms", "300")
        .set("topic.metadata.refresh.interval.ms", "1000");
    c
}

/// Produces `values`, value i to partition i % `partitions`, and waits
/// until all are acknowledged.
fn produce(bootstrap: &str, topic: &str, partitions: i32, values: &[String]) {
    let p: ThreadedProducer<DefaultProducerContext> = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("enable.idempotence", "false")
        .set("linger.ms", "5")
        .create()
        .unwrap();
    for (i, v) in values.iter().enumerate() {
        let record = BaseRecord::<(), str>::to(topic)
            .partition(i as i32 % partitions)
            .payload(v.as_str());
        p.send(record).map_err(|(e, _)| e).unwrap();
    }
    p.flush(TIMEOUT).unwrap();
}

fn values(prefix: &str, n: usize) -> Vec<String> {
    (0..n).map(|i| format!("{prefix}-{i}")).collect()
}

/// What one consumer saw.
#[derive(Default)]
struct Seen {
    assignment: Mutex<BTreeSet<i32>>,
    /// (partition, offset, value) in processing order.
    consumed: Mutex<Vec<(i32, i64, String)>>,
}

const RUN: u8 = 0;
/// Close: leave the group (LeaveGroup), as a clean shutdown does.
const CLOSE: u8 = 1;
/// Crash: vanish without leaving or committing.
const CRASH: u8 = 2;

/// A group member on its own thread: processes each message, then
/// commits it (at least once, none skipped).
struct Member {
    seen: Arc<Seen>,
    control: Arc<AtomicU8>,
    thread: Option<JoinHandle<()>>,
}

impl Member {
    fn start(bootstrap: &str, group: &str, topic: &str) -> Member {
        let consumer: BaseConsumer = consumer_config(bootstrap, group).create().unwrap();
        consumer.subscribe(&[topic]).unwrap();
        let seen = Arc::new(Seen::default());
        let control = Arc::new(AtomicU8::new(RUN));
        let (s, c) = (seen.clone(), control.clone());
        let thread = std::thread::spawn(move || loop {
            match c.load(Ordering::Acquire) {
                CLOSE => {
                    // Dropping a group consumer closes it: LeaveGroup.
                    drop(consumer);
                    return;
                }
                CRASH => {
                    // Destroyed without consumer_close(): no LeaveGroup, no
                    // commit; its connections just drop, as a killed
                    // process's do. The handle is gone, so the wrapper
                    // must not destroy it again.
                    unsafe {
                        rdkafka::bindings::rd_kafka_destroy_flags(
                            consumer.client().native_ptr(),
                            rdkafka::bindings::RD_KAFKA_DESTROY_F_NO_CONSUMER_CLOSE,
                        )
                    };
                    std::mem::forget(consumer);
                    return;
                }
                _ => {}
            }
            if let Some(m) = consumer.poll(Duration::from_millis(100)) {
                let m = m.unwrap();
                let value = String::from_utf8(m.payload().unwrap().to_vec()).unwrap();
                s.consumed
                    .lock()
                    .unwrap()
                    .push((m.partition(), m.offset(), value));
                // Commit after processing. A commit refused because a
                // rebalance took the partition away is fine: the next owner
                // processes the message again.
                let _ = consumer.commit_message(&m, CommitMode::Sync);
            }
            let assigned = consumer
                .assignment()
                .unwrap()
                .elements()
                .iter()
                .map(|e| e.partition())
                .collect();
            *s.assignment.lock().unwrap() = assigned;
        });
        Member {
            seen,
            control,
            thread: Some(thread),
        }
    }

    fn assignment(&self) -> BTreeSet<i32> {
        self.seen.assignment.lock().unwrap().clone()
    }

    fn stop(&mut self, how: u8) {
        self.control.store(how, Ordering::Release);
        if let Some(t) = self.thread.take() {
            t.join().unwrap();
        }
    }
}

impl Drop for Member {
    fn drop(&mut self) {
        self.stop(CLOSE);
    }
}

/// Whether the members' assignments are disjoint and cover `0..partitions`.
fn shared_out(members: &[&Member], partitions: i32) -> bool {
    let mut all = Vec::new();
    for m in members {
        let a = m.assignment();
        if a.is_empty() {
            return false;
        }
        all.extend(a);
    }
    all.sort();
    all == (0..partitions).collect::<Vec<_>>()
}

fn consumed_values(members: &[&Member]) -> BTreeSet<String> {
    members
        .iter()
        .flat_map(|m| {
            m.seen
                .consumed
                .lock()
                .unwrap()
                .iter()
                .map(|(_, _, v)| v.clone())
                .collect::<Vec<_>>()
        })
        .collect()
}

fn all_consumed(members: &[&Member], want: &[String]) -> bool {
    let got = consumed_values(members);
    want.iter().all(|v| got.contains(v))
}

#[test]
fn given_three_consumers_on_six_partitions_partitions_are_shared_out_and_move_on_leave_and_crash() {
    let dir = tempfile::tempdir().unwrap();
    let broker = Broker::start_with(dir.path(), free_port(), free_port(), BROKER_ARGS);
    let b = broker.bootstrap.as_str();
    create_topic(b, "orders", 6);
    let mut m0 = Member::start(b, "shared", "orders");
    let mut m1 = Member::start(b, "shared", "orders");
    let m2 = Member::start(b, "shared", "orders");
    wait_until("three members share the six partitions", || {
        shared_out(&[&m0, &m1, &m2], 6)
    });
    for m in [&m0, &m1, &m2] {
        assert_eq!(m.assignment().len(), 2, "range gives two partitions each");
    }
    let mut want = values("first", 300);
    produce(b, "orders", 6, &want);
    wait_until("every message is processed", || {
        all_consumed(&[&m0, &m1, &m2], &want)
    });

    // One leaves: its partitions move to the other two.
    m0.stop(CLOSE);
    wait_until("two members share the six partitions", || {
        shared_out(&[&m1, &m2], 6)
    });
    let second = values("second", 300);
    produce(b, "orders", 6, &second);
    want.extend(second);
    wait_until("every message is processed after the leave", || {
        all_consumed(&[&m0, &m1, &m2], &want)
    });

    // One crashes: after its session timeout its partitions move.
    let before = m1.assignment();
    m1.stop(CRASH);
    let crashed = Instant::now();
    wait_until("the survivor owns all six partitions", || {
        shared_out(&[&m2], 6)
    });
    assert!(
        crashed.elapsed() >= Duration::from_millis(1_000),
        "partitions of {before:?} moved before any session could expire"
    );
    let third = values("third", 300);
    produce(b, "orders", 6, &third);
    want.extend(third);
    wait_until("every message is processed after the crash", || {
        all_consumed(&[&m0, &m1, &m2], &want)
    });
    // At least once, none skipped: every value produced was processed.
    let got = consumed_values(&[&m0, &m1, &m2]);
    assert_eq!(got, want.into_iter().collect::<BTreeSet<_>>());
}

/// Committed offsets of `group` for `partitions` of `topic`, read with
/// OffsetFetch by a consumer that does not join the group.
fn committed(bootstrap: &str, group: &str, topic: &str, partitions: i32) -> BTreeMap<i32, i64> {
    let c: BaseConsumer = consumer_config(bootstrap, group).create().unwrap();
    let mut tpl = TopicPartitionList::new();
    for p in 0..partitions {
        tpl.add_partition(topic, p);
    }
    c.committed_offsets(tpl, TIMEOUT)
        .unwrap()
        .elements()
        .iter()
        .map(|e| {
            let offset = match e.offset() {
                Offset::Offset(o) => o,
                _ => -1,
            };
            (e.partition(), offset)
        })
        .collect()
}

/// Consumes with a group member until `n` messages came, then a little
/// longer to catch extra ones; commits and leaves.
fn consume_n(bootstrap: &str, group: &str, topic: &str, n: usize) -> Vec<String> {
    let c: BaseConsumer = consumer_config(bootstrap, group).create().unwrap();
    c.subscribe(&[topic]).unwrap();
    let mut got = Vec::new();
    let deadline = Instant::now() + TIMEOUT;
    let mut quiet_until = None;
    loop {
        if let Some(m) = c.poll(Duration::from_millis(100)) {
            let m = m.unwrap();
            got.push(String::from_utf8(m.payload().unwrap().to_vec()).unwrap());
        }
        if got.len() >= n && quiet_until.is_none() {
            quiet_until = Some(Instant::now() + Duration::from_secs(1));
        }
        if quiet_until.is_some_and(|q| Instant::now() > q) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "got {} of {n} messages",
            got.len()
        );
    }
    c.commit_consumer_state(CommitMode::Sync).unwrap();
    got
}

#[test]
fn given_committed_offsets_when_the_broker_restarts_consumers_resume_from_them() {
    let dir = tempfile::tempdir().unwrap();
    let (port, cport) = (free_port(), free_port());
    let broker = Broker::start_with(dir.path(), port, cport, BROKER_ARGS);
    let b = broker.bootstrap.clone();
    create_topic(&b, "resume", 3);
    let old = values("old", 60);
    produce(&b, "resume", 3, &old);
    let got = consume_n(&b, "resumers", "resume", 60);
    assert_eq!(got.len(), 60);
    let before = committed(&b, "resumers", "resume", 3);
    assert_eq!(before, BTreeMap::from([(0, 20), (1, 20), (2, 20)]));

    broker.stop();
    let broker = Broker::start_with(dir.path(), port, cport, BROKER_ARGS);
    let b = broker.bootstrap.clone();
    let mut after = BTreeMap::new();
    wait_until("the restarted broker serves the group's offsets", || {
        after = committed(&b, "resumers", "resume", 3);
        after == before
    });
    let new = values("new", 30);
    produce(&b, "resume", 3, &new);
    let got = consume_n(&b, "resumers", "resume", 30);
    assert_eq!(
        got.iter().cloned().collect::<BTreeSet<_>>(),
        new.into_iter().collect()
    );
    assert_eq!(got.len(), 30, "nothing before the committed offsets again");
}

#[test]
fn given_a_group_it_is_listed_described_with_lag_reset_to_earliest_and_deleted() {
    let dir = tempfile::tempdir().unwrap();
    let broker = Broker::start_with(dir.path(), free_port(), free_port(), BROKER_ARGS);
    let b = broker.bootstrap.as_str();
    create_topic(b, "ledger", 2);
    let first = values("ledger", 40);
    produce(b, "ledger", 2, &first);

    // A live member: the group is Stable and shows its assignment.
    let member = Member::start(b, "auditors", "ledger");
    wait_until("the member owns both partitions", || {
        shared_out(&[&member], 2)
    });
    let admin: BaseConsumer = consumer_config(b, "admin-probe").create().unwrap();
    let mut described = None;
    wait_until("the group is described as Stable", || {
        let list = admin.fetch_group_list(Some("auditors"), TIMEOUT).unwrap();
        let g = &list.groups()[0];
        let stable = g.state() == "Stable" && g.members().len() == 1;
        if stable {
            described = Some((
                g.protocol_type().to_string(),
                g.protocol().to_string(),
                g.members()[0].client_host().to_string(),
                g.members()[0].assignment().map(<[u8]>::to_vec),
            ));
        }
        stable
    });
    let (protocol_type, protocol, host, assignment) = described.unwrap();
    assert_eq!(protocol_type, "consumer");
    assert_eq!(protocol, "range");
    assert_eq!(host, "/127.0.0.1");
    let assignment = assignment.expect("a stable member's assignment is shown");
    assert!(
        assignment.windows(6).any(|w| w == b"ledger"),
        "the assignment names the topic: {assignment:?}"
    );
    wait_until("the member processed and committed everything", || {
        all_consumed(&[&member], &first)
            && committed(b, "auditors", "ledger", 2) == BTreeMap::from([(0, 20), (1, 20)])
    });

    // A reset while a member is in is refused, as Kafka refuses it.
    let reset = |to: i64| {
        let c: BaseConsumer = consumer_config(b, "auditors").create().unwrap();
        let mut tpl = TopicPartitionList::new();
        for p in 0..2 {
            tpl.add_partition_offset("ledger", p, Offset::Offset(to))
                .unwrap();
        }
        c.commit(&tpl, CommitMode::Sync)
    };
    assert!(reset(0).is_err(), "offsets reset under a live member");

    // Lag: log end offset minus committed offset.
    drop(member);
    produce(b, "ledger", 2, &values("late", 10));
    let lag = |c: &BaseConsumer| -> i64 {
        let committed = committed(b, "auditors", "ledger", 2);
        (0..2)
            .map(|p| {
                let (_, end) = c.fetch_watermarks("ledger", p, TIMEOUT).unwrap();
                end - committed[&p]
            })
            .sum()
    };
    assert_eq!(lag(&admin), 10);

    // Listed, and Empty once the member left.
    let list = admin.fetch_group_list(None, TIMEOUT).unwrap();
    let g = list
        .groups()
        .iter()
        .find(|g| g.name() == "auditors")
        .expect("listed");
    assert_eq!(g.state(), "Empty");

    // Reset to earliest while empty, then a consumer reads everything again.
    reset(0).unwrap();
    assert_eq!(
        committed(b, "auditors", "ledger", 2),
        BTreeMap::from([(0, 0), (1, 0)])
    );
    assert_eq!(lag(&admin), 50);
    let again = consume_n(b, "auditors", "ledger", 50);
    let again: BTreeSet<String> = again.into_iter().collect();
    assert!(first.iter().all(|v| again.contains(v)));
    assert_eq!(again.len(), 50);
    assert_eq!(lag(&admin), 0);

    // Deleted while empty: gone from the list, offsets gone.
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let client: AdminClient<DefaultClientContext> = ClientConfig::new()
        .set("bootstrap.servers", b)
        .create()
        .unwrap();
    let deleted = rt
        .block_on(client.delete_groups(&["auditors"], &AdminOptions::new()))
        .unwrap();
    assert!(deleted[0].is_ok(), "{deleted:?}");
    let deleted = rt
        .block_on(client.delete_groups(&["auditors"], &AdminOptions::new()))
        .unwrap();
    assert!(deleted[0].is_err(), "a deleted group is not found again");
    let list = admin.fetch_group_list(None, TIMEOUT).unwrap();
    assert!(list.groups().iter().all(|g| g.name() != "auditors"));
    assert_eq!(
        committed(b, "auditors", "ledger", 2),
        BTreeMap::from([(0, -1), (1, -1)])
    );
}
