//! Replication between real brokers (`sluice broker`, one process each)
//! joined to one coordinator (`sluice coordinator`), driven by librdkafka:
//! a topic with three replicas keeps every acknowledged record when its
//! leader is killed with SIGKILL, the survivors elect a new leader from the
//! ISR, and the old leader comes back as a follower, truncates what the
//! new leader's log does not share, catches up and rejoins the ISR.

mod support;

use std::collections::BTreeSet;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use rdkafka::admin::{NewTopic, TopicReplication};
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::producer::{BaseRecord, FutureProducer, FutureRecord, Producer, ThreadedProducer};
use rdkafka::{Message, Offset, TopicPartitionList};
use support::{admin_client, free_port, Broker, TIMEOUT};

/// `broker.session.timeout.ms` for the coordinator and the brokers: short,
/// so that a killed leader is fenced quickly.
const SESSION_MS: &str = "3000";

struct Proc(Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A one-node coordinator quorum; its address.
fn coordinator(dir: &std::path::Path) -> (Proc, String) {
    let addr = format!("127.0.0.1:{}", free_port());
    let child = Command::new(env!("CARGO_BIN_EXE_sluice"))
        .args(["coordinator", "--node-id", "1", "--peers"])
        .arg(format!("1={addr}"))
        .arg("--data-dir")
        .arg(dir.join("coordinator"))
        .args(["--session-timeout-ms", SESSION_MS])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    while std::net::TcpStream::connect(&addr).is_err() {
        assert!(Instant::now() < deadline, "the coordinator did not listen");
        std::thread::sleep(Duration::from_millis(20));
    }
    (Proc(child), addr)
}

fn broker(dir: &std::path::Path, id: i32, coordinator: &str) -> Broker {
    Broker::join_with(
        &dir.join(format!("b{id}")),
        id,
        coordinator,
        &["--broker-session-timeout-ms", SESSION_MS, "--shards", "2"],
    )
}

/// The partition's leader and ISR as `bootstrap` reports them.
fn leader_and_isr(bootstrap: &str, topic: &str) -> (i32, Vec<i32>) {
    let c: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .create()
        .unwrap();
    let md = c.fetch_metadata(Some(topic), TIMEOUT).unwrap();
    let p = &md.topics()[0].partitions()[0];
    let mut isr = p.isr().to_vec();
    isr.sort_unstable();
    (p.leader(), isr)
}

/// Waits until `f` holds of the partition's (leader, ISR).
fn wait_for(
    bootstrap: &str,
    topic: &str,
    what: &str,
    f: impl Fn(i32, &[i32]) -> bool,
) -> (i32, Vec<i32>) {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let (leader, isr) = leader_and_isr(bootstrap, topic);
        if f(leader, &isr) {
            return (leader, isr);
        }
        assert!(
            Instant::now() < deadline,
            "{what}: leader {leader}, ISR {isr:?}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Produces `values` with acks=all, idempotently; the values acknowledged.
fn produce(bootstrap: &str, topic: &str, values: impl Iterator<Item = String>) -> BTreeSet<String> {
    let acked = std::sync::Arc::new(std::sync::Mutex::new(BTreeSet::new()));
    struct Ctx(std::sync::Arc<std::sync::Mutex<BTreeSet<String>>>);
    impl rdkafka::ClientContext for Ctx {}
    impl rdkafka::producer::ProducerContext for Ctx {
        type DeliveryOpaque = ();
        fn delivery(&self, r: &rdkafka::message::DeliveryResult<'_>, _: ()) {
            if let Ok(m) = r {
                let v = String::from_utf8_lossy(m.payload().unwrap_or_default()).into_owned();
                self.0.lock().unwrap().insert(v);
            }
        }
    }
    let producer: ThreadedProducer<Ctx> = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("acks", "all")
        .set("enable.idempotence", "true")
        .set("linger.ms", "5")
        .set("message.timeout.ms", "60000")
        .create_with_context(Ctx(acked.clone()))
        .unwrap();
    for v in values {
        let mut record = BaseRecord::<(), String>::to(topic).payload(&v).partition(0);
        loop {
            match producer.send(record) {
                Ok(()) => break,
                Err((_, r)) => {
                    record = r;
                    std::thread::sleep(Duration::from_millis(5));
                }
            }
        }
    }
    producer.flush(Duration::from_secs(90)).unwrap();
    let acked = acked.lock().unwrap().clone();
    acked
}

/// Every value in the partition, from its start, read through `bootstrap`.
fn consume_all(bootstrap: &str, topic: &str, at_least: usize) -> Vec<String> {
    let c: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("group.id", "unused")
        .set("enable.auto.commit", "false")
        .create()
        .unwrap();
    let mut tpl = TopicPartitionList::new();
    tpl.add_partition_offset(topic, 0, Offset::Beginning)
        .unwrap();
    c.assign(&tpl).unwrap();
    let mut got = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(60);
    while got.len() < at_least && Instant::now() < deadline {
        if let Some(Ok(m)) = c.poll(Duration::from_millis(200)) {
            got.push(String::from_utf8_lossy(m.payload().unwrap_or_default()).into_owned());
        }
    }
    // Anything more than expected shows as a duplicate below.
    while let Some(Ok(m)) = c.poll(Duration::from_millis(500)) {
        got.push(String::from_utf8_lossy(m.payload().unwrap_or_default()).into_owned());
    }
    got
}

#[test]
fn given_three_replicas_no_acknowledged_record_is_lost_when_the_leader_is_killed() {
    let dir = tempfile::tempdir().unwrap();
    let (_quorum, quorum) = coordinator(dir.path());
    let mut brokers: Vec<Option<Broker>> = (1..=3)
        .map(|id| Some(broker(dir.path(), id, &quorum)))
        .collect();
    let bootstrap = |brokers: &[Option<Broker>]| {
        brokers
            .iter()
            .flatten()
            .map(|b| b.bootstrap.clone())
            .collect::<Vec<_>>()
            .join(",")
    };
    let all = bootstrap(&brokers);
    let (rt, admin, opts) = admin_client(&all);
    let topic =
        NewTopic::new("replicated", 1, TopicReplication::Fixed(3)).set("min.insync.replicas", "2");
    let r = rt.block_on(admin.create_topics(&[topic], &opts)).unwrap();
    assert!(r[0].is_ok(), "{r:?}");
    let (leader, _) = wait_for(&all, "replicated", "three in sync", |l, isr| {
        l > 0 && isr == [1, 2, 3]
    });

    let first = produce(&all, "replicated", (0..2000).map(|i| format!("a{i}")));
    assert_eq!(
        first.len(),
        2000,
        "every record of a healthy cluster is acknowledged"
    );

    // SIGKILL the leader; the survivors elect one of themselves.
    brokers[leader as usize - 1] = None;
    let survivors = bootstrap(&brokers);
    let (new_leader, _) = wait_for(&survivors, "replicated", "a new leader", |l, _| {
        l > 0 && l != leader
    });
    let second = produce(&survivors, "replicated", (0..1000).map(|i| format!("b{i}")));
    assert_eq!(
        second.len(),
        1000,
        "two of three in sync satisfy min.insync.replicas"
    );

    // The old leader comes back as a follower and rejoins the ISR.
    brokers[leader as usize - 1] = Some(broker(dir.path(), leader, &quorum));
    let all = bootstrap(&brokers);
    wait_for(
        &all,
        "replicated",
        "the old leader back in sync",
        |l, isr| l == new_leader && isr == [1, 2, 3],
    );

    let got = consume_all(&all, "replicated", first.len() + second.len());
    let unique: BTreeSet<String> = got.iter().cloned().collect();
    assert_eq!(
        unique.len(),
        got.len(),
        "duplicates in {} records",
        got.len()
    );
    let lost: Vec<&String> = first
        .union(&second)
        .filter(|v| !unique.contains(*v))
        .collect();
    assert!(
        lost.is_empty(),
        "{} acknowledged records lost: {:?}",
        lost.len(),
        &lost[..lost.len().min(10)]
    );
    drop(rt);
}

/// With the ISR below min.insync.replicas, acks=all is refused at once
/// with NOT_ENOUGH_REPLICAS; acks=1 is still served.
#[test]
fn given_too_few_in_sync_replicas_acks_all_is_refused_with_not_enough_replicas() {
    let dir = tempfile::tempdir().unwrap();
    let (_quorum, quorum) = coordinator(dir.path());
    let b1 = broker(dir.path(), 1, &quorum);
    let b2 = broker(dir.path(), 2, &quorum);
    let all = format!("{},{}", b1.bootstrap, b2.bootstrap);
    let (rt, admin, opts) = admin_client(&all);
    let topic =
        NewTopic::new("strict", 1, TopicReplication::Fixed(2)).set("min.insync.replicas", "2");
    let r = rt.block_on(admin.create_topics(&[topic], &opts)).unwrap();
    assert!(r[0].is_ok(), "{r:?}");
    let (leader, _) = wait_for(&all, "strict", "two in sync", |l, isr| {
        l > 0 && isr == [1, 2]
    });
    let (keep, kill) = if leader == 1 { (b1, b2) } else { (b2, b1) };
    drop(kill);
    let only = keep.bootstrap.clone();
    wait_for(&only, "strict", "the ISR shrunk", |_, isr| isr.len() == 1);
    let err = produce_one(&rt, &only, "strict", "all").unwrap_err();
    assert!(err.contains("NotEnoughReplicas"), "{err}");
    produce_one(&rt, &only, "strict", "1").expect("acks=1 needs only the leader");
}

/// One record with `acks`, no retries: the broker's answer.
fn produce_one(
    rt: &tokio::runtime::Runtime,
    bootstrap: &str,
    topic: &str,
    acks: &str,
) -> Result<(), String> {
    let p: FutureProducer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("acks", acks)
        .set("retries", "0")
        .set("message.timeout.ms", "20000")
        .create()
        .unwrap();
    let record = FutureRecord::<(), str>::to(topic).payload("x").partition(0);
    rt.block_on(p.send(record, Duration::from_secs(20)))
        .map(|_| ())
        .map_err(|(e, _)| format!("{e:?}"))
}

/// A follower asked to produce points at the leader (KIP-951), and a
/// fetch with a stale or future `current_leader_epoch` is refused as
/// KIP-320 says.
#[test]
fn given_a_non_leader_it_names_the_leader_and_epochs_are_checked_on_fetch() {
    use kafka_protocol::messages::{ApiKey, RequestKind, ResponseKind};
    let dir = tempfile::tempdir().unwrap();
    let (_quorum, quorum) = coordinator(dir.path());
    let brokers: Vec<Broker> = (1..=2).map(|id| broker(dir.path(), id, &quorum)).collect();
    let all = format!("{},{}", brokers[0].bootstrap, brokers[1].bootstrap);
    let (rt, admin, opts) = admin_client(&all);
    let topic = NewTopic::new("pointed", 1, TopicReplication::Fixed(2));
    let r = rt.block_on(admin.create_topics(&[topic], &opts)).unwrap();
    assert!(r[0].is_ok(), "{r:?}");
    let (leader, _) = wait_for(&all, "pointed", "two in sync", |l, isr| {
        l > 0 && isr == [1, 2]
    });
    let follower = &brokers[if leader == 1 { 1 } else { 0 }];
    let mut s = std::net::TcpStream::connect(&follower.bootstrap).unwrap();
    s.set_read_timeout(Some(TIMEOUT)).unwrap();
    let records = support::raw::batch(&[b"v".to_vec()]);
    let ResponseKind::Produce(r) = support::call(
        &mut s,
        ApiKey::Produce,
        10,
        support::raw::produce("pointed", 0, -1, records),
    ) else {
        panic!("not a produce response");
    };
    let p = &r.responses[0].partition_responses[0];
    assert_eq!(p.error_code, 6, "NOT_LEADER_OR_FOLLOWER");
    assert_eq!(p.current_leader.leader_id.0, leader);
    let leading = &brokers[leader as usize - 1].bootstrap;
    let port: i32 = leading.rsplit_once(':').unwrap().1.parse().unwrap();
    assert!(
        r.node_endpoints
            .iter()
            .any(|e| e.node_id.0 == leader && e.port == port),
        "{:?}",
        r.node_endpoints
    );
    // The leader steps down; the new leader fetches at its own epoch, and
    // refuses the old one (FENCED_LEADER_EPOCH) and one never given
    // (UNKNOWN_LEADER_EPOCH).
    let old_epoch = p.current_leader.leader_epoch;
    let mut brokers: Vec<Option<Broker>> = brokers.into_iter().map(Some).collect();
    brokers[leader as usize - 1].take().unwrap().stop();
    let survivor = brokers.iter().flatten().next().unwrap().bootstrap.clone();
    let (new_leader, _) = wait_for(&survivor, "pointed", "a new leader", |l, _| {
        l > 0 && l != leader
    });
    let mut s = std::net::TcpStream::connect(&survivor).unwrap();
    s.set_read_timeout(Some(TIMEOUT)).unwrap();
    let epoch = old_epoch + 1;
    for (asked, want) in [(epoch, 0), (old_epoch, 74), (epoch + 1, 75)] {
        let mut req = support::raw::fetch("pointed", 0, 0, 0, 1 << 20);
        req.topics[0].partitions[0].current_leader_epoch = asked;
        let ResponseKind::Fetch(f) =
            support::call(&mut s, ApiKey::Fetch, 12, RequestKind::Fetch(req))
        else {
            panic!("not a fetch response");
        };
        let pd = &f.responses[0].partitions[0];
        assert_eq!(pd.error_code, want, "epoch {asked} at broker {new_leader}");
    }
}

/// A leader stopped with SIGTERM hands its partitions over first: an
/// idempotent acks=all producer writing through the stop sees no failed
/// record, and every record is there afterwards.
#[test]
fn given_a_leader_stopped_with_sigterm_producers_see_no_failure() {
    let dir = tempfile::tempdir().unwrap();
    let (_quorum, quorum) = coordinator(dir.path());
    let mut brokers: Vec<Option<Broker>> = (1..=3)
        .map(|id| Some(broker(dir.path(), id, &quorum)))
        .collect();
    let all: String = brokers
        .iter()
        .flatten()
        .map(|b| b.bootstrap.clone())
        .collect::<Vec<_>>()
        .join(",");
    let (rt, admin, opts) = admin_client(&all);
    let topic =
        NewTopic::new("handover", 1, TopicReplication::Fixed(3)).set("min.insync.replicas", "2");
    let r = rt.block_on(admin.create_topics(&[topic], &opts)).unwrap();
    assert!(r[0].is_ok(), "{r:?}");
    let (leader, _) = wait_for(&all, "handover", "three in sync", |l, isr| {
        l > 0 && isr == [1, 2, 3]
    });
    let writer = {
        let all = all.clone();
        std::thread::spawn(move || produce_paced(&all, "handover", 3000))
    };
    std::thread::sleep(Duration::from_millis(1000));
    brokers[leader as usize - 1].take().unwrap().stop();
    let (acked, failed) = writer.join().unwrap();
    assert_eq!(failed, 0, "records failed across the handover");
    assert_eq!(acked.len(), 3000);
    let survivors: String = brokers
        .iter()
        .flatten()
        .map(|b| b.bootstrap.clone())
        .collect::<Vec<_>>()
        .join(",");
    let got: BTreeSet<String> = consume_all(&survivors, "handover", acked.len())
        .into_iter()
        .collect();
    let lost: Vec<&String> = acked.iter().filter(|v| !got.contains(*v)).collect();
    assert!(lost.is_empty(), "{} lost", lost.len());
}

/// Produces `n` records one millisecond apart with an idempotent acks=all
/// producer; the values acknowledged and the count of records that failed.
fn produce_paced(bootstrap: &str, topic: &str, n: usize) -> (BTreeSet<String>, usize) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let p: FutureProducer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("acks", "all")
        .set("enable.idempotence", "true")
        .set("linger.ms", "1")
        .set("message.timeout.ms", "60000")
        .create()
        .unwrap();
    let mut pending = Vec::new();
    for i in 0..n {
        let value = format!("h{i}");
        let record = FutureRecord::<(), String>::to(topic)
            .payload(&value)
            .partition(0);
        let f = p.send_result(record).map_err(|(e, _)| e).unwrap();
        pending.push((value, f));
        std::thread::sleep(Duration::from_millis(1));
    }
    let mut acked = BTreeSet::new();
    let mut failed = 0;
    for (value, f) in pending {
        match rt.block_on(f) {
            Ok(Ok(_)) => {
                acked.insert(value);
            }
            _ => failed += 1,
        }
    }
    (acked, failed)
}

/// `__consumer_offsets` is replicated (offsets.topic.replication.factor,
/// 3 by default): when the group's coordinator is killed with SIGKILL, a
/// survivor leads its partition, loads the group and answers its
/// committed offsets.
#[test]
fn given_the_group_coordinator_killed_committed_offsets_survive() {
    use kafka_protocol::messages::{ApiKey, FindCoordinatorRequest, RequestKind, ResponseKind};
    let dir = tempfile::tempdir().unwrap();
    let (_quorum, quorum) = coordinator(dir.path());
    let mut brokers: Vec<Option<Broker>> = (1..=3)
        .map(|id| Some(broker(dir.path(), id, &quorum)))
        .collect();
    let list = |brokers: &[Option<Broker>]| {
        brokers
            .iter()
            .flatten()
            .map(|b| b.bootstrap.clone())
            .collect::<Vec<_>>()
            .join(",")
    };
    let all = list(&brokers);
    let (rt, admin, opts) = admin_client(&all);
    let topic = NewTopic::new("events", 1, TopicReplication::Fixed(3));
    let r = rt.block_on(admin.create_topics(&[topic], &opts)).unwrap();
    assert!(r[0].is_ok(), "{r:?}");
    wait_for(&all, "events", "three in sync", |l, isr| {
        l > 0 && isr == [1, 2, 3]
    });
    produce(&all, "events", (0..100).map(|i| format!("e{i}")));

    // A group consumes everything and commits.
    let c: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", &all)
        .set("group.id", "survivors")
        .set("enable.auto.commit", "false")
        .set("auto.offset.reset", "earliest")
        .create()
        .unwrap();
    c.subscribe(&["events"]).unwrap();
    let mut seen = 0;
    let deadline = Instant::now() + Duration::from_secs(60);
    while seen < 100 && Instant::now() < deadline {
        if let Some(Ok(_)) = c.poll(Duration::from_millis(200)) {
            seen += 1;
        }
    }
    assert_eq!(seen, 100);
    c.commit_consumer_state(rdkafka::consumer::CommitMode::Sync)
        .unwrap();
    drop(c);

    // Which broker coordinates the group; kill it.
    let mut req = FindCoordinatorRequest::default();
    req.key = kafka_protocol::protocol::StrBytes::from_static_str("survivors");
    let first = brokers.iter().flatten().next().unwrap().bootstrap.clone();
    let mut s = std::net::TcpStream::connect(first).unwrap();
    s.set_read_timeout(Some(TIMEOUT)).unwrap();
    let ResponseKind::FindCoordinator(f) = support::call(
        &mut s,
        ApiKey::FindCoordinator,
        2,
        RequestKind::FindCoordinator(req),
    ) else {
        panic!("not a FindCoordinator response");
    };
    assert_eq!(f.error_code, 0);
    let victim = f.node_id.0;
    brokers[victim as usize - 1] = None;

    // The group's offsets, from whichever survivor now coordinates it.
    let survivors = list(&brokers);
    let c: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", &survivors)
        .set("group.id", "survivors")
        .create()
        .unwrap();
    let mut tpl = TopicPartitionList::new();
    tpl.add_partition("events", 0);
    let deadline = Instant::now() + Duration::from_secs(60);
    let committed = loop {
        match c.committed_offsets(tpl.clone(), Duration::from_secs(10)) {
            Ok(t) => {
                let o = t.find_partition("events", 0).unwrap().offset();
                if o == Offset::Offset(100) || Instant::now() > deadline {
                    break o;
                }
            }
            Err(e) => assert!(Instant::now() < deadline, "{e}"),
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    assert_eq!(
        committed,
        Offset::Offset(100),
        "coordinator {victim} was killed"
    );
}
