//! Consumer groups through the real `sluice` binary, driven by librdkafka
//! (the rdkafka crate): assignments shared out and moved on leave and on
//! crash, at-least-once processing with commits after processing, offsets
//! kept across a broker restart, listing and describing groups with lag,
//! and the reset-offsets flow of kafka-consumer-groups.sh.

mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicU8, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use kafka_protocol::messages::find_coordinator_request::FindCoordinatorRequest;
use kafka_protocol::messages::join_group_request::JoinGroupRequestProtocol;
use kafka_protocol::messages::leave_group_request::MemberIdentity;
use kafka_protocol::messages::offset_commit_request::{
    OffsetCommitRequestPartition, OffsetCommitRequestTopic,
};
use kafka_protocol::messages::offset_delete_request::{
    OffsetDeleteRequestPartition, OffsetDeleteRequestTopic,
};
use kafka_protocol::messages::offset_fetch_request::{
    OffsetFetchRequestGroup, OffsetFetchRequestTopics,
};
use kafka_protocol::messages::sync_group_request::SyncGroupRequestAssignment;
use kafka_protocol::messages::{
    ApiKey, ConsumerProtocolSubscription, DeleteGroupsRequest, GroupId, HeartbeatRequest,
    JoinGroupRequest, LeaveGroupRequest, OffsetCommitRequest, OffsetDeleteRequest,
    OffsetFetchRequest, RequestKind, ResponseKind, SyncGroupRequest, TopicName,
};
use kafka_protocol::protocol::{Encodable, StrBytes};
use rdkafka::admin::{AdminClient, AdminOptions};
use rdkafka::client::DefaultClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer, ConsumerContext, Rebalance};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::Message;
use rdkafka::producer::{
    BaseRecord, DefaultProducerContext, FutureProducer, FutureRecord, Producer, ThreadedProducer,
};
use rdkafka::{ClientContext, Offset, TopicPartitionList};
use support::{call, create_topic, free_port, Broker, TIMEOUT};

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
    /// Rebalances that ended with an assignment.
    rebalances: AtomicUsize,
    assignment: Mutex<BTreeSet<i32>>,
    /// (partition, offset, value) in processing order.
    consumed: Mutex<Vec<(i32, i64, String)>>,
}

/// Counts the member's rebalances.
struct Counting(Arc<Seen>);

impl ClientContext for Counting {}

impl ConsumerContext for Counting {
    fn post_rebalance(&self, _: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        if let Rebalance::Assign(_) = rebalance {
            self.0.rebalances.fetch_add(1, Ordering::AcqRel);
        }
    }
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
        Self::start_with(bootstrap, group, topic, &[])
    }

    /// A member with extra client settings.
    fn start_with(bootstrap: &str, group: &str, topic: &str, extra: &[(&str, &str)]) -> Member {
        let mut config = consumer_config(bootstrap, group);
        for (k, v) in extra {
            config.set(*k, *v);
        }
        let seen = Arc::new(Seen::default());
        let consumer: BaseConsumer<Counting> =
            config.create_with_context(Counting(seen.clone())).unwrap();
        consumer.subscribe(&[topic]).unwrap();
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
    // The crashed member's last heartbeat was at most one heartbeat
    // interval (300 ms) before the crash; its session cannot expire sooner
    // than the session timeout after that.
    let session_ms: u64 = SESSION_TIMEOUT_MS.parse().unwrap();
    assert!(
        crashed.elapsed() >= Duration::from_millis(session_ms - 300),
        "partitions of {before:?} moved before the session could expire"
    );
    let third = values("third", 300);
    produce(b, "orders", 6, &third);
    want.extend(third);
    wait_until("every message is processed after the crash", || {
        all_consumed(&[&m0, &m1, &m2], &want)
    });
    // At least once, none skipped: every value produced was processed.
    let got = consumed_values(&[&m0, &m1, &m2]);
    assert_eq!(got, want.iter().cloned().collect::<BTreeSet<_>>());
    // The commits were kept: a partition's new owner starts after what was
    // committed, so at most the message being processed when its owner
    // left or crashed comes again (one per partition and move), not the
    // partition from the start.
    let processed: usize = [&m0, &m1, &m2]
        .iter()
        .map(|m| m.seen.consumed.lock().unwrap().len())
        .sum();
    assert!(
        processed - want.len() <= 2 * 6,
        "{} messages processed twice: commits were lost",
        processed - want.len()
    );
    let all: BTreeMap<i32, i64> = (0..6).map(|p| (p, 150)).collect();
    wait_until("every message's commit is there", || {
        committed(b, "shared", "orders", 6) == all
    });
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

/// Answers one raw request, retrying while the group's partition loads.
fn ask(s: &mut std::net::TcpStream, key: ApiKey, version: i16, body: RequestKind) -> ResponseKind {
    const COORDINATOR_LOAD_IN_PROGRESS: i16 = 14;
    let deadline = Instant::now() + TIMEOUT;
    loop {
        let r = call(s, key, version, body.clone());
        let loading = match &r {
            ResponseKind::JoinGroup(j) => j.error_code == COORDINATOR_LOAD_IN_PROGRESS,
            ResponseKind::DeleteGroups(d) => d
                .results
                .iter()
                .any(|g| g.error_code == COORDINATOR_LOAD_IN_PROGRESS),
            _ => false,
        };
        if !loading || Instant::now() > deadline {
            return r;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// A consumer protocol subscription to `topic`, as JoinGroup carries it.
fn subscription(topic: &str) -> bytes::Bytes {
    use bytes::BufMut;
    let mut s = ConsumerProtocolSubscription::default();
    s.topics = vec![StrBytes::from_string(topic.to_string())];
    let mut b = bytes::BytesMut::new();
    b.put_i16(0);
    s.encode(&mut b, 0).unwrap();
    b.freeze()
}

/// JoinGroup v5 for `group`, rebalance timeout `rebalance_ms`, subscribed
/// to `t` with the range assignor; waits for the join phase to end.
fn raw_join(
    s: &mut std::net::TcpStream,
    group: &str,
    member: &str,
    rebalance_ms: i32,
) -> kafka_protocol::messages::JoinGroupResponse {
    let mut j = JoinGroupRequest::default();
    j.group_id = GroupId(StrBytes::from_string(group.to_string()));
    j.member_id = StrBytes::from_string(member.to_string());
    j.session_timeout_ms = 10_000;
    j.rebalance_timeout_ms = rebalance_ms;
    j.protocol_type = StrBytes::from_static_str("consumer");
    let mut p = JoinGroupRequestProtocol::default();
    p.name = StrBytes::from_static_str("range");
    p.metadata = subscription("t");
    j.protocols = vec![p];
    match ask(s, ApiKey::JoinGroup, 5, RequestKind::JoinGroup(j)) {
        ResponseKind::JoinGroup(j) => j,
        other => panic!("not a JoinGroup response: {other:?}"),
    }
}

/// A new member: asks for its id (KIP-394), then joins with it.
fn raw_join_new(
    s: &mut std::net::TcpStream,
    group: &str,
    rebalance_ms: i32,
) -> kafka_protocol::messages::JoinGroupResponse {
    let r = raw_join(s, group, "", rebalance_ms);
    assert_eq!(r.error_code, 79, "MEMBER_ID_REQUIRED");
    raw_join(s, group, &r.member_id, rebalance_ms)
}

fn raw_heartbeat(s: &mut std::net::TcpStream, group: &str, member: &str, generation: i32) -> i16 {
    let mut h = HeartbeatRequest::default();
    h.group_id = GroupId(StrBytes::from_string(group.to_string()));
    h.generation_id = generation;
    h.member_id = StrBytes::from_string(member.to_string());
    match ask(s, ApiKey::Heartbeat, 4, RequestKind::Heartbeat(h)) {
        ResponseKind::Heartbeat(h) => h.error_code,
        other => panic!("not a Heartbeat response: {other:?}"),
    }
}

/// `max.poll.interval.ms` is the rebalance timeout: a member that keeps
/// its session alive with heartbeats but does not rejoin a rebalance
/// within it is removed, and the rebalance completes without it.
#[test]
fn given_a_member_that_heartbeats_but_does_not_rejoin_it_is_removed_after_the_rebalance_timeout() {
    const REBALANCE_MS: i32 = 1_500;
    let dir = tempfile::tempdir().unwrap();
    let broker = Broker::start_with(dir.path(), free_port(), free_port(), BROKER_ARGS);
    create_topic(&broker.bootstrap, "t", 1);
    let connect = || {
        let s = std::net::TcpStream::connect(&broker.bootstrap).unwrap();
        s.set_read_timeout(Some(TIMEOUT)).unwrap();
        s
    };
    let mut a = connect();
    let first = raw_join_new(&mut a, "slow", REBALANCE_MS);
    assert_eq!((first.error_code, first.generation_id), (0, 1));
    let stuck = first.member_id.to_string();
    let mut sync = SyncGroupRequest::default();
    sync.group_id = GroupId(StrBytes::from_static_str("slow"));
    sync.generation_id = 1;
    sync.member_id = first.member_id.clone();
    let ResponseKind::SyncGroup(r) =
        ask(&mut a, ApiKey::SyncGroup, 5, RequestKind::SyncGroup(sync))
    else {
        panic!("not a SyncGroup response")
    };
    assert_eq!(r.error_code, 0);

    // A second member joins: a rebalance starts, and its JoinGroup waits.
    let mut b = connect();
    let joining = std::thread::spawn(move || {
        let started = Instant::now();
        let r = raw_join_new(&mut b, "slow", REBALANCE_MS);
        (r, started.elapsed())
    });
    let deadline = Instant::now() + TIMEOUT;
    let mut told = false;
    while !joining.is_finished() {
        // The stuck member is told to rejoin, and never does.
        match raw_heartbeat(&mut a, "slow", &stuck, 1) {
            0 => {}
            27 => told = true,
            25 => break,
            other => panic!("heartbeat answered {other}"),
        }
        assert!(Instant::now() < deadline, "the rebalance never completed");
        std::thread::sleep(Duration::from_millis(100));
    }
    let (r, waited) = joining.join().unwrap();
    assert!(told, "REBALANCE_IN_PROGRESS was never answered");
    assert_eq!(r.error_code, 0);
    assert_eq!(r.generation_id, 2);
    assert_eq!(r.leader, r.member_id, "the newcomer leads");
    let members: Vec<&str> = r.members.iter().map(|m| m.member_id.as_str()).collect();
    assert_eq!(
        members,
        vec![r.member_id.as_str()],
        "the stuck member is gone"
    );
    assert!(
        waited >= Duration::from_millis(REBALANCE_MS as u64),
        "completed after {waited:?}, before the rebalance timeout"
    );
    assert_eq!(
        raw_heartbeat(&mut a, "slow", &stuck, 1),
        25,
        "UNKNOWN_MEMBER_ID"
    );
    broker.stop();
}

#[test]
fn given_raw_group_requests_the_broker_answers_with_kafkas_error_codes() {
    let dir = tempfile::tempdir().unwrap();
    let broker = Broker::start_with(dir.path(), free_port(), free_port(), BROKER_ARGS);
    create_topic(&broker.bootstrap, "t", 1);
    let mut s = std::net::TcpStream::connect(&broker.bootstrap).unwrap();
    s.set_read_timeout(Some(TIMEOUT)).unwrap();
    let group = || GroupId(StrBytes::from_static_str("raw"));

    // FindCoordinator v4 batches keys (KIP-699); this broker answers.
    let mut fc = FindCoordinatorRequest::default();
    fc.coordinator_keys = vec![
        StrBytes::from_static_str("raw"),
        StrBytes::from_static_str("x"),
    ];
    let ResponseKind::FindCoordinator(r) = ask(
        &mut s,
        ApiKey::FindCoordinator,
        4,
        RequestKind::FindCoordinator(fc),
    ) else {
        panic!("not a FindCoordinator response")
    };
    assert_eq!(r.coordinators.len(), 2);
    for c in &r.coordinators {
        assert_eq!((c.error_code, c.node_id.0), (0, 1), "{c:?}");
        assert_eq!(format!("{}:{}", c.host.as_str(), c.port), broker.bootstrap);
    }

    let join = |member: &str, session_ms: i32, group_id: GroupId| {
        let mut j = JoinGroupRequest::default();
        j.group_id = group_id;
        j.member_id = StrBytes::from_string(member.to_string());
        j.session_timeout_ms = session_ms;
        j.rebalance_timeout_ms = 10_000;
        j.protocol_type = StrBytes::from_static_str("consumer");
        let mut p = JoinGroupRequestProtocol::default();
        p.name = StrBytes::from_static_str("range");
        p.metadata = subscription("t");
        j.protocols = vec![p];
        RequestKind::JoinGroup(j)
    };
    let joined = |r: ResponseKind| match r {
        ResponseKind::JoinGroup(j) => j,
        other => panic!("not a JoinGroup response: {other:?}"),
    };
    let r = joined(ask(
        &mut s,
        ApiKey::JoinGroup,
        5,
        join("", 5_000, GroupId::default()),
    ));
    assert_eq!(r.error_code, 24, "INVALID_GROUP_ID");
    // Flexible versions allow ids longer than the records of
    // __consumer_offsets can hold: refused, not cut.
    let long = || GroupId(StrBytes::from_string("g".repeat(40_000)));
    let r = joined(ask(&mut s, ApiKey::JoinGroup, 9, join("", 5_000, long())));
    assert_eq!(r.error_code, 24, "INVALID_GROUP_ID for a 40,000-byte id");
    let mut commit = OffsetCommitRequest::default();
    commit.group_id = long();
    commit.generation_id_or_member_epoch = -1;
    let mut ct = OffsetCommitRequestTopic::default();
    ct.name = TopicName(StrBytes::from_static_str("t"));
    ct.partitions = vec![OffsetCommitRequestPartition::default()];
    commit.topics = vec![ct];
    let ResponseKind::OffsetCommit(r) = ask(
        &mut s,
        ApiKey::OffsetCommit,
        8,
        RequestKind::OffsetCommit(commit),
    ) else {
        panic!("not an OffsetCommit response")
    };
    assert_eq!(r.topics[0].partitions[0].error_code, 24, "INVALID_GROUP_ID");
    let r = joined(ask(&mut s, ApiKey::JoinGroup, 5, join("", 10, group())));
    assert_eq!(r.error_code, 26, "INVALID_SESSION_TIMEOUT");
    // KIP-394: a new member is first given its id.
    let r = joined(ask(&mut s, ApiKey::JoinGroup, 5, join("", 5_000, group())));
    assert_eq!(r.error_code, 79, "MEMBER_ID_REQUIRED");
    let member = r.member_id.to_string();
    assert!(
        member.starts_with("raw-"),
        "the client id, then a UUID: {member}"
    );
    let r = joined(ask(
        &mut s,
        ApiKey::JoinGroup,
        5,
        join(&member, 5_000, group()),
    ));
    assert_eq!(r.error_code, 0);
    assert_eq!((r.generation_id, r.leader.as_str()), (1, member.as_str()));
    assert_eq!(r.members.len(), 1);
    assert_eq!(r.protocol_name.as_deref(), Some("range"));

    let sync = |generation: i32| {
        let mut r = SyncGroupRequest::default();
        r.group_id = group();
        r.generation_id = generation;
        r.member_id = StrBytes::from_string(member.clone());
        let mut a = SyncGroupRequestAssignment::default();
        a.member_id = r.member_id.clone();
        a.assignment = bytes::Bytes::from_static(b"all of t");
        r.assignments = vec![a];
        RequestKind::SyncGroup(r)
    };
    let ResponseKind::SyncGroup(r) = ask(&mut s, ApiKey::SyncGroup, 5, sync(2)) else {
        panic!("not a SyncGroup response")
    };
    assert_eq!(r.error_code, 22, "ILLEGAL_GENERATION");
    let ResponseKind::SyncGroup(r) = ask(&mut s, ApiKey::SyncGroup, 5, sync(1)) else {
        panic!("not a SyncGroup response")
    };
    assert_eq!((r.error_code, &r.assignment[..]), (0, &b"all of t"[..]));
    assert_eq!(r.protocol_name.as_deref(), Some("range"));

    let heartbeat = |member: &str| {
        let mut h = HeartbeatRequest::default();
        h.group_id = group();
        h.generation_id = 1;
        h.member_id = StrBytes::from_string(member.to_string());
        RequestKind::Heartbeat(h)
    };
    let ResponseKind::Heartbeat(r) = ask(&mut s, ApiKey::Heartbeat, 4, heartbeat("stranger"))
    else {
        panic!("not a Heartbeat response")
    };
    assert_eq!(r.error_code, 25, "UNKNOWN_MEMBER_ID");
    let ResponseKind::Heartbeat(r) = ask(&mut s, ApiKey::Heartbeat, 4, heartbeat(&member)) else {
        panic!("not a Heartbeat response")
    };
    assert_eq!(r.error_code, 0);

    // A member's commit keeps metadata and leader epoch.
    let commit = |member: &str, generation: i32| {
        let mut c = OffsetCommitRequest::default();
        c.group_id = group();
        c.generation_id_or_member_epoch = generation;
        c.member_id = StrBytes::from_string(member.to_string());
        let mut p = OffsetCommitRequestPartition::default();
        p.committed_offset = 42;
        p.committed_leader_epoch = 3;
        p.committed_metadata = Some(StrBytes::from_static_str("meta"));
        let mut t = OffsetCommitRequestTopic::default();
        t.name = TopicName(StrBytes::from_static_str("t"));
        t.partitions = vec![p];
        c.topics = vec![t];
        RequestKind::OffsetCommit(c)
    };
    let commit_code = |r: ResponseKind| match r {
        ResponseKind::OffsetCommit(c) => c.topics[0].partitions[0].error_code,
        other => panic!("not an OffsetCommit response: {other:?}"),
    };
    assert_eq!(
        commit_code(ask(&mut s, ApiKey::OffsetCommit, 8, commit(&member, 1))),
        0
    );
    // An admin's reset is refused while the group has a member.
    assert_eq!(
        commit_code(ask(&mut s, ApiKey::OffsetCommit, 8, commit("", -1))),
        25
    );

    // OffsetFetch v8 batches groups; a group without commits has -1.
    let mut f = OffsetFetchRequest::default();
    for id in ["raw", "nobody"] {
        let mut g = OffsetFetchRequestGroup::default();
        g.group_id = GroupId(StrBytes::from_static_str(id));
        let mut t = OffsetFetchRequestTopics::default();
        t.name = TopicName(StrBytes::from_static_str("t"));
        t.partition_indexes = vec![0];
        g.topics = Some(vec![t]);
        f.groups.push(g);
    }
    let ResponseKind::OffsetFetch(r) =
        ask(&mut s, ApiKey::OffsetFetch, 8, RequestKind::OffsetFetch(f))
    else {
        panic!("not an OffsetFetch response")
    };
    let p = &r.groups[0].topics[0].partitions[0];
    assert_eq!((p.committed_offset, p.committed_leader_epoch), (42, 3));
    assert_eq!(p.metadata.as_deref(), Some("meta"));
    assert_eq!(r.groups[1].topics[0].partitions[0].committed_offset, -1);

    // Members subscribe to t: its offsets cannot be deleted, nor the group.
    let mut d = OffsetDeleteRequest::default();
    d.group_id = group();
    let mut t = OffsetDeleteRequestTopic::default();
    t.name = TopicName(StrBytes::from_static_str("t"));
    t.partitions = vec![OffsetDeleteRequestPartition::default()];
    d.topics = vec![t];
    let ResponseKind::OffsetDelete(r) = ask(
        &mut s,
        ApiKey::OffsetDelete,
        0,
        RequestKind::OffsetDelete(d),
    ) else {
        panic!("not an OffsetDelete response")
    };
    assert_eq!(
        r.topics[0].partitions[0].error_code, 86,
        "GROUP_SUBSCRIBED_TO_TOPIC"
    );
    let delete = || {
        let mut d = DeleteGroupsRequest::default();
        d.groups_names = vec![group(), GroupId(StrBytes::from_static_str("never"))];
        RequestKind::DeleteGroups(d)
    };
    let ResponseKind::DeleteGroups(r) = ask(&mut s, ApiKey::DeleteGroups, 2, delete()) else {
        panic!("not a DeleteGroups response")
    };
    assert_eq!(r.results[0].error_code, 68, "NON_EMPTY_GROUP");
    assert_eq!(r.results[1].error_code, 69, "GROUP_ID_NOT_FOUND");

    // LeaveGroup v3 answers per member; then the empty group can go.
    let mut l = LeaveGroupRequest::default();
    l.group_id = group();
    let mut who = MemberIdentity::default();
    who.member_id = StrBytes::from_string(member.clone());
    l.members = vec![who.clone(), {
        who.member_id = StrBytes::from_static_str("stranger");
        who
    }];
    let ResponseKind::LeaveGroup(r) =
        ask(&mut s, ApiKey::LeaveGroup, 3, RequestKind::LeaveGroup(l))
    else {
        panic!("not a LeaveGroup response")
    };
    let codes: Vec<i16> = r.members.iter().map(|m| m.error_code).collect();
    assert_eq!((r.error_code, codes), (0, vec![0, 25]));
    let ResponseKind::DeleteGroups(r) = ask(&mut s, ApiKey::DeleteGroups, 2, delete()) else {
        panic!("not a DeleteGroups response")
    };
    assert_eq!(r.results[0].error_code, 0);

    // Clients cannot write into the group coordinator's topic.
    let producer: FutureProducer = ClientConfig::new()
        .set("bootstrap.servers", &broker.bootstrap)
        .set("enable.idempotence", "false")
        .set("message.send.max.retries", "0")
        .create()
        .unwrap();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let record = FutureRecord::<(), str>::to("__consumer_offsets")
        .partition(0)
        .payload("forged");
    let sent = rt.block_on(producer.send(record, TIMEOUT));
    assert!(
        matches!(
            &sent,
            Err((
                KafkaError::MessageProduction(RDKafkaErrorCode::InvalidTopic),
                _
            ))
        ),
        "{sent:?}"
    );
}

#[test]
fn given_offsets_of_an_empty_group_past_their_retention_they_expire_for_good() {
    let dir = tempfile::tempdir().unwrap();
    let (port, cport) = (free_port(), free_port());
    // Retention 0: offsets of empty groups expire at the next check.
    let args = [
        "--offsets-retention-minutes",
        "0",
        "--offsets-retention-check-interval-ms",
        "200",
    ];
    let broker = Broker::start_with(dir.path(), port, cport, &args);
    let b = broker.bootstrap.clone();
    create_topic(&b, "fleeting", 1);
    produce(&b, "fleeting", 1, &values("f", 5));
    let c: BaseConsumer = consumer_config(&b, "forgetful").create().unwrap();
    let mut tpl = TopicPartitionList::new();
    tpl.add_partition_offset("fleeting", 0, Offset::Offset(3))
        .unwrap();
    c.commit(&tpl, CommitMode::Sync).unwrap();
    wait_until("the offset expires", || {
        committed(&b, "forgetful", "fleeting", 1)[&0] == -1
    });
    let list = c.fetch_group_list(None, TIMEOUT).unwrap();
    assert!(list.groups().iter().all(|g| g.name() != "forgetful"));
    // The expiry was written: a restarted broker, with the default
    // retention, does not bring the offset back.
    drop(c);
    broker.stop();
    let broker = Broker::start_with(dir.path(), port, cport, BROKER_ARGS);
    let c: BaseConsumer = consumer_config(&broker.bootstrap, "forgetful")
        .create()
        .unwrap();
    let mut tpl = TopicPartitionList::new();
    tpl.add_partition("fleeting", 0);
    let got = c.committed_offsets(tpl, TIMEOUT).unwrap();
    assert_eq!(got.elements()[0].offset(), Offset::Invalid);
}

/// The group's generation-independent view: state and member count.
fn group_state(bootstrap: &str, group: &str) -> (String, usize) {
    let c: BaseConsumer = consumer_config(bootstrap, "state-probe").create().unwrap();
    let list = c.fetch_group_list(Some(group), TIMEOUT).unwrap();
    let g = &list.groups()[0];
    (g.state().to_string(), g.members().len())
}

#[test]
fn given_a_static_member_restarts_within_its_session_it_gets_its_partitions_back_without_a_rebalance(
) {
    let dir = tempfile::tempdir().unwrap();
    let broker = Broker::start_with(dir.path(), free_port(), free_port(), BROKER_ARGS);
    let b = broker.bootstrap.as_str();
    create_topic(b, "fixed", 4);
    let statics = [
        ("group.instance.id", "host-a"),
        ("session.timeout.ms", "20000"),
    ];
    let mut a = Member::start_with(b, "static", "fixed", &statics);
    let other = Member::start(b, "static", "fixed");
    wait_until("two members share four partitions", || {
        shared_out(&[&a, &other], 4)
    });
    let (a_before, other_before) = (a.assignment(), other.assignment());
    let rebalances = other.seen.rebalances.load(Ordering::Acquire);
    // A static member leaves no LeaveGroup behind when it closes (KIP-345).
    a.stop(CLOSE);
    assert_eq!(group_state(b, "static"), ("Stable".to_string(), 2));
    let a2 = Member::start_with(b, "static", "fixed", &statics);
    wait_until("the restarted member has its partitions again", || {
        a2.assignment() == a_before
    });
    assert_eq!(other.assignment(), other_before);
    assert_eq!(group_state(b, "static"), ("Stable".to_string(), 2));
    assert_eq!(
        other.seen.rebalances.load(Ordering::Acquire),
        rebalances,
        "the other member went through no rebalance"
    );
    let want = values("s", 40);
    produce(b, "fixed", 4, &want);
    wait_until("every message is processed", || {
        all_consumed(&[&a2, &other], &want)
    });
}

#[test]
fn given_each_client_side_assignor_partitions_are_shared_out_and_move_on_leave() {
    let dir = tempfile::tempdir().unwrap();
    let broker = Broker::start_with(dir.path(), free_port(), free_port(), BROKER_ARGS);
    let b = broker.bootstrap.as_str();
    for assignor in ["roundrobin", "cooperative-sticky"] {
        let topic = format!("by-{assignor}");
        create_topic(b, &topic, 4);
        let strategy = [("partition.assignment.strategy", assignor)];
        let mut m0 = Member::start_with(b, assignor, &topic, &strategy);
        let m1 = Member::start_with(b, assignor, &topic, &strategy);
        wait_until(
            &format!("{assignor}: two members share four partitions"),
            || shared_out(&[&m0, &m1], 4),
        );
        assert_eq!(m0.assignment().len(), 2, "{assignor}");
        m0.stop(CLOSE);
        wait_until(&format!("{assignor}: the survivor owns all"), || {
            shared_out(&[&m1], 4)
        });
        let want = values(assignor, 40);
        produce(b, &topic, 4, &want);
        wait_until(&format!("{assignor}: every message is processed"), || {
            all_consumed(&[&m0, &m1], &want)
        });
    }
}

/// A plausible request of a group API in `version`, naming group `group`.
fn sweep_request(key: ApiKey, version: i16, group: &str) -> Option<RequestKind> {
    let id = || GroupId(StrBytes::from_string(group.to_string()));
    let name = || StrBytes::from_string(group.to_string());
    Some(match key {
        ApiKey::FindCoordinator => {
            let mut r = FindCoordinatorRequest::default();
            if version >= 4 {
                r.coordinator_keys = vec![name()];
            } else {
                r.key = name();
            }
            RequestKind::FindCoordinator(r)
        }
        ApiKey::JoinGroup => {
            let mut r = JoinGroupRequest::default();
            r.group_id = id();
            r.session_timeout_ms = 10_000;
            r.rebalance_timeout_ms = 10_000;
            r.protocol_type = StrBytes::from_static_str("consumer");
            let mut p = JoinGroupRequestProtocol::default();
            p.name = StrBytes::from_static_str("range");
            r.protocols = vec![p];
            RequestKind::JoinGroup(r)
        }
        ApiKey::SyncGroup => {
            let mut r = SyncGroupRequest::default();
            r.group_id = id();
            r.member_id = StrBytes::from_static_str("nobody");
            RequestKind::SyncGroup(r)
        }
        ApiKey::Heartbeat => {
            let mut r = HeartbeatRequest::default();
            r.group_id = id();
            RequestKind::Heartbeat(r)
        }
        ApiKey::LeaveGroup => {
            let mut r = LeaveGroupRequest::default();
            r.group_id = id();
            if version >= 3 {
                r.members = vec![MemberIdentity::default()];
            }
            RequestKind::LeaveGroup(r)
        }
        ApiKey::OffsetCommit => {
            let mut r = OffsetCommitRequest::default();
            r.group_id = id();
            r.generation_id_or_member_epoch = -1;
            RequestKind::OffsetCommit(r)
        }
        ApiKey::OffsetFetch => {
            let mut r = OffsetFetchRequest::default();
            if version >= 8 {
                let mut g = OffsetFetchRequestGroup::default();
                g.group_id = id();
                r.groups = vec![g];
            } else {
                r.group_id = id();
                r.topics = Some(Vec::new());
            }
            RequestKind::OffsetFetch(r)
        }
        ApiKey::ListGroups => RequestKind::ListGroups(Default::default()),
        ApiKey::DescribeGroups => {
            let mut r = kafka_protocol::messages::DescribeGroupsRequest::default();
            r.groups = vec![id()];
            RequestKind::DescribeGroups(r)
        }
        ApiKey::DeleteGroups => {
            let mut r = DeleteGroupsRequest::default();
            r.groups_names = vec![id()];
            RequestKind::DeleteGroups(r)
        }
        ApiKey::OffsetDelete => {
            let mut r = OffsetDeleteRequest::default();
            r.group_id = id();
            RequestKind::OffsetDelete(r)
        }
        _ => return None,
    })
}

#[test]
fn given_every_served_version_of_the_group_apis_the_broker_answers_it() {
    let dir = tempfile::tempdir().unwrap();
    let broker = Broker::start_with(dir.path(), free_port(), free_port(), BROKER_ARGS);
    let mut s = std::net::TcpStream::connect(&broker.bootstrap).unwrap();
    s.set_read_timeout(Some(TIMEOUT)).unwrap();
    let mut answered = 0;
    for api in sluice_net::dispatch::TABLE {
        let key = api.key;
        for version in api.min..=api.max {
            // A group of its own per request: no rebalance waits on another.
            let group = format!("sweep-{key:?}-{version}");
            let Some(body) = sweep_request(key, version, &group) else {
                continue;
            };
            // An answer that does not encode in its version would close
            // the connection instead.
            let r = ask(&mut s, key, version, body);
            assert!(format!("{r:?}").starts_with(&format!("{key:?}(")), "{r:?}");
            answered += 1;
        }
    }
    assert_eq!(answered, 7 + 10 + 6 + 5 + 6 + 8 + 9 + 6 + 7 + 3 + 1);
}

/// Log start offsets of every `__consumer_offsets` partition.
fn offsets_topic_starts(s: &mut std::net::TcpStream) -> Vec<i64> {
    use kafka_protocol::messages::list_offsets_request::{ListOffsetsPartition, ListOffsetsTopic};
    let mut t = ListOffsetsTopic::default();
    t.name = TopicName(StrBytes::from_static_str("__consumer_offsets"));
    t.partitions = (0..50)
        .map(|i| {
            let mut p = ListOffsetsPartition::default();
            p.partition_index = i;
            p.timestamp = -2;
            p
        })
        .collect();
    let mut req = kafka_protocol::messages::ListOffsetsRequest::default();
    req.topics = vec![t];
    match ask(s, ApiKey::ListOffsets, 1, RequestKind::ListOffsets(req)) {
        ResponseKind::ListOffsets(r) => r.topics[0]
            .partitions
            .iter()
            .map(|p| {
                assert_eq!(p.error_code, 0);
                p.offset
            })
            .collect(),
        other => panic!("not a ListOffsets response: {other:?}"),
    }
}

/// The engine does not compact yet: the group coordinator rewrites a
/// partition's live state once its log has grown by more than
/// `offsets.topic.segment.bytes`, and moves the log start past the old
/// records. Offsets committed thousands of times stay what was last
/// committed, before and after a restart, while the log's old records go.
#[test]
fn given_many_commits_the_offsets_log_is_rewritten_and_the_last_commit_survives_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let (port, cport) = (free_port(), free_port());
    let mut args = BROKER_ARGS.to_vec();
    args.extend(["--override", "offsets.topic.segment.bytes=16384"]);
    let broker = Broker::start_with(dir.path(), port, cport, &args);
    create_topic(&broker.bootstrap, "t", 2);
    let mut s = std::net::TcpStream::connect(&broker.bootstrap).unwrap();
    s.set_read_timeout(Some(TIMEOUT)).unwrap();
    let commit = |group: &str, offset: i64| {
        let mut c = OffsetCommitRequest::default();
        c.group_id = GroupId(StrBytes::from_string(group.to_string()));
        c.generation_id_or_member_epoch = -1;
        let mut t = OffsetCommitRequestTopic::default();
        t.name = TopicName(StrBytes::from_static_str("t"));
        t.partitions = (0..2)
            .map(|i| {
                let mut p = OffsetCommitRequestPartition::default();
                p.partition_index = i;
                p.committed_offset = offset + i64::from(i);
                p.committed_metadata = Some(StrBytes::from_static_str("some metadata"));
                p
            })
            .collect();
        c.topics = vec![t];
        RequestKind::OffsetCommit(c)
    };
    // Two groups; the second commits once, early, and must survive the
    // rewrites the first one's commits cause. Commits are retried while
    // the group's partition is still loading.
    let mut commit_ok = |group: &str, offset: i64| {
        wait_until("a commit is taken", || {
            match ask(&mut s, ApiKey::OffsetCommit, 8, commit(group, offset)) {
                ResponseKind::OffsetCommit(r) => match r.topics[0].partitions[0].error_code {
                    0 => true,
                    14 => false,
                    other => panic!("commit answered {other}"),
                },
                other => panic!("not an OffsetCommit response: {other:?}"),
            }
        })
    };
    commit_ok("quiet", 7);
    for offset in 1..=1_500 {
        commit_ok("busy", offset);
    }
    wait_until("a rewrite moved some partition's log start", || {
        offsets_topic_starts(&mut s).iter().any(|o| *o > 0)
    });
    let want = |first: i64| BTreeMap::from([(0, first), (1, first + 1)]);
    assert_eq!(committed(&broker.bootstrap, "busy", "t", 2), want(1_500));
    assert_eq!(committed(&broker.bootstrap, "quiet", "t", 2), want(7));

    broker.stop();
    let broker = Broker::start_with(dir.path(), port, cport, &args);
    let b = broker.bootstrap.clone();
    wait_until("the restarted broker loads both groups' offsets", || {
        committed(&b, "busy", "t", 2) == want(1_500) && committed(&b, "quiet", "t", 2) == want(7)
    });
    broker.stop();
}
