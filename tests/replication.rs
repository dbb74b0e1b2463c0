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
