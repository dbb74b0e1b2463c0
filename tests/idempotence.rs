//! Idempotent producers against the real broker: raw-protocol answers to
//! retries, gaps, stale epochs and unknown producers; librdkafka producers
//! with enable.idempotence=true whose connections are cut at random; and a
//! kill -9 in the middle of a stream. Each check: every message exactly
//! once, in order per partition.

mod support;

use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use kafka_protocol::messages::create_topics_request::CreatableTopic;
use kafka_protocol::messages::list_offsets_request::{ListOffsetsPartition, ListOffsetsTopic};
use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
use kafka_protocol::messages::{
    describe_producers_request, ApiKey, CreateTopicsRequest, DescribeProducersRequest,
    InitProducerIdRequest, ListOffsetsRequest, ProduceRequest, RequestKind, ResponseKind,
    TopicName, TransactionalId,
};
use kafka_protocol::protocol::StrBytes;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::producer::{BaseRecord, DefaultProducerContext, Producer, ThreadedProducer};
use rdkafka::{Message, Offset, TopicPartitionList};
use sluice_engine::batch::build;
use support::{call, free_port, Broker, TIMEOUT};

fn name(s: &str) -> TopicName {
    TopicName(StrBytes::from_string(s.to_string()))
}

fn create_topic(s: &mut TcpStream, topic: &str, partitions: i32) {
    let mut t = CreatableTopic::default();
    t.name = name(topic);
    t.num_partitions = partitions;
    t.replication_factor = 1;
    let mut req = CreateTopicsRequest::default();
    req.topics = vec![t];
    req.timeout_ms = 10_000;
    let ResponseKind::CreateTopics(r) =
        call(s, ApiKey::CreateTopics, 5, RequestKind::CreateTopics(req))
    else {
        panic!("not a CreateTopics response");
    };
    assert_eq!(r.topics[0].error_code, 0, "{:?}", r.topics[0].error_message);
}

/// InitProducerId; `current` is the id and epoch to bump, if any.
fn init_producer_id(
    s: &mut TcpStream,
    transactional: Option<&str>,
    current: Option<(i64, i16)>,
) -> (i16, i64, i16) {
    let mut req = InitProducerIdRequest::default();
    req.transactional_id = transactional.map(|t| TransactionalId(StrBytes::from_string(t.into())));
    req.transaction_timeout_ms = 60_000;
    let (pid, epoch) = current.unwrap_or((-1, -1));
    req.producer_id = kafka_protocol::messages::ProducerId(pid);
    req.producer_epoch = epoch;
    let ResponseKind::InitProducerId(r) = call(
        s,
        ApiKey::InitProducerId,
        4,
        RequestKind::InitProducerId(req),
    ) else {
        panic!("not an InitProducerId response");
    };
    (r.error_code, r.producer_id.0, r.producer_epoch)
}

/// Produces one batch of `count` records; returns (error code, base offset).
fn produce(
    s: &mut TcpStream,
    topic: &str,
    pid: i64,
    epoch: i16,
    seq: i32,
    count: usize,
) -> (i16, i64) {
    let mut batch = build::simple(count, 10, b'i', sluice_engine::types::now_ms());
    build::set_producer(&mut batch, pid, epoch, seq);
    let mut p = PartitionProduceData::default();
    p.index = 0;
    p.records = Some(batch.into());
    let mut t = TopicProduceData::default();
    t.name = name(topic);
    t.partition_data = vec![p];
    let mut req = ProduceRequest::default();
    req.acks = -1;
    req.timeout_ms = 10_000;
    req.topic_data = vec![t];
    let ResponseKind::Produce(r) = call(s, ApiKey::Produce, 9, RequestKind::Produce(req)) else {
        panic!("not a Produce response");
    };
    let pr = &r.responses[0].partition_responses[0];
    (pr.error_code, pr.base_offset)
}

fn log_end(s: &mut TcpStream, topic: &str) -> i64 {
    let mut p = ListOffsetsPartition::default();
    p.partition_index = 0;
    p.timestamp = -1;
    let mut t = ListOffsetsTopic::default();
    t.name = name(topic);
    t.partitions = vec![p];
    let mut req = ListOffsetsRequest::default();
    req.replica_id = kafka_protocol::messages::BrokerId(-1);
    req.topics = vec![t];
    let ResponseKind::ListOffsets(r) =
        call(s, ApiKey::ListOffsets, 7, RequestKind::ListOffsets(req))
    else {
        panic!("not a ListOffsets response");
    };
    r.topics[0].partitions[0].offset
}

#[test]
fn retries_gaps_stale_epochs_and_unknown_producers_get_kafkas_answers() {
    let dir = tempfile::tempdir().unwrap();
    let (port, coordinator) = (free_port(), free_port());
    let broker = Broker::start_on(dir.path(), port, coordinator);
    let mut s = TcpStream::connect(&broker.bootstrap).unwrap();
    create_topic(&mut s, "idem", 1);

    let (code, pid, epoch) = init_producer_id(&mut s, None, None);
    assert_eq!((code, epoch), (0, 0));
    let (_, other, _) = init_producer_id(&mut s, None, None);
    assert_ne!(pid, other, "every InitProducerId gets a new id");

    assert_eq!(produce(&mut s, "idem", pid, 0, 0, 3), (0, 0));
    assert_eq!(produce(&mut s, "idem", pid, 0, 3, 2), (0, 3));
    // The same batch again: acknowledged with its first offsets, not written.
    assert_eq!(produce(&mut s, "idem", pid, 0, 0, 3), (0, 0));
    assert_eq!(produce(&mut s, "idem", pid, 0, 3, 2), (0, 3));
    assert_eq!(log_end(&mut s, "idem"), 5);
    // A gap: OUT_OF_ORDER_SEQUENCE_NUMBER.
    assert_eq!(produce(&mut s, "idem", pid, 0, 9, 1).0, 45);
    // Re-init with the current id bumps the epoch; the new epoch starts at
    // sequence 0, and the old epoch is then stale.
    assert_eq!(init_producer_id(&mut s, None, Some((pid, 0))), (0, pid, 1));
    assert_eq!(produce(&mut s, "idem", pid, 1, 3, 1).0, 45);
    assert_eq!(produce(&mut s, "idem", pid, 1, 0, 1), (0, 5));
    assert_eq!(produce(&mut s, "idem", pid, 0, 5, 1).0, 47);
    // A producer the partition has never seen, mid-sequence.
    assert_eq!(produce(&mut s, "idem", other + 1000, 0, 7, 1).0, 59);
    assert_eq!(log_end(&mut s, "idem"), 6);
    // Transactions are not served yet: a fatal, explained error.
    assert_eq!(init_producer_id(&mut s, Some("tx-1"), None).0, 53);

    // DescribeProducers shows the producer and its last sequence. A
    // partition named again, in the same entry or another one for the same
    // topic, is answered once; a partition that does not exist gets an error.
    let mut t = describe_producers_request::TopicRequest::default();
    t.name = name("idem");
    t.partition_indexes = vec![0, 0, 7];
    let mut req = DescribeProducersRequest::default();
    req.topics = vec![t.clone(), t];
    let ResponseKind::DescribeProducers(r) = call(
        &mut s,
        ApiKey::DescribeProducers,
        0,
        RequestKind::DescribeProducers(req),
    ) else {
        panic!("not a DescribeProducers response");
    };
    assert_eq!(r.topics.len(), 1, "one answer per topic");
    let answered: Vec<(i32, i16)> = r.topics[0]
        .partitions
        .iter()
        .map(|p| (p.partition_index, p.error_code))
        .collect();
    assert_eq!(answered, vec![(0, 0), (7, 3)], "one answer per partition");
    let producers = &r.topics[0].partitions[0].active_producers;
    assert_eq!(producers.len(), 1);
    assert_eq!(
        (
            producers[0].producer_id.0,
            producers[0].producer_epoch,
            producers[0].last_sequence
        ),
        (pid, 1, 0)
    );

    // After a restart the state is still there, and new ids are new.
    drop(s);
    broker.stop();
    let broker = Broker::start_on(dir.path(), port, coordinator);
    let mut s = TcpStream::connect(&broker.bootstrap).unwrap();
    assert_eq!(
        produce(&mut s, "idem", pid, 1, 0, 1),
        (0, 5),
        "a retry after restart"
    );
    assert_eq!(produce(&mut s, "idem", pid, 1, 1, 1), (0, 6));
    let (_, after, _) = init_producer_id(&mut s, None, None);
    assert!(
        after > other,
        "ids are unique across restarts: {after} after {other}"
    );
    broker.stop();
}

/// A connection through the proxy, with a flag its forwarders clear when
/// it ends, so that only open connections are cut and counted.
type Proxied = (TcpStream, Arc<AtomicBool>);

/// A TCP proxy that cuts every connection through it at random moments.
struct CuttingProxy {
    addr: String,
    cutting: Arc<AtomicBool>,
    cuts: Arc<AtomicUsize>,
}

impl CuttingProxy {
    fn start(port: u16, upstream: String) -> Self {
        let listener = TcpListener::bind(("127.0.0.1", port)).unwrap();
        let live: Arc<Mutex<Vec<Proxied>>> = Arc::default();
        let cutting = Arc::new(AtomicBool::new(true));
        let cuts = Arc::new(AtomicUsize::new(0));
        let l = live.clone();
        std::thread::spawn(move || {
            for client in listener.incoming() {
                let Ok(client) = client else { continue };
                let Ok(server) = TcpStream::connect(&upstream) else {
                    continue;
                };
                let _ = client.set_nodelay(true);
                let _ = server.set_nodelay(true);
                let open = Arc::new(AtomicBool::new(true));
                l.lock()
                    .unwrap()
                    .push((client.try_clone().unwrap(), open.clone()));
                for (mut from, mut to) in [
                    (client.try_clone().unwrap(), server.try_clone().unwrap()),
                    (server, client),
                ] {
                    let open = open.clone();
                    std::thread::spawn(move || {
                        let mut buf = vec![0u8; 64 << 10];
                        while let Ok(n) = from.read(&mut buf) {
                            if n == 0 || to.write_all(&buf[..n]).is_err() {
                                break;
                            }
                        }
                        open.store(false, Ordering::Release);
                        let _ = to.shutdown(Shutdown::Both);
                        let _ = from.shutdown(Shutdown::Both);
                    });
                }
            }
        });
        let (c, n) = (cutting.clone(), cuts.clone());
        std::thread::spawn(move || {
            let mut rng = 0x9e37_79b9_7f4a_7c15u64;
            loop {
                rng ^= rng << 13;
                rng ^= rng >> 7;
                rng ^= rng << 17;
                std::thread::sleep(Duration::from_millis(50 + rng % 250));
                if !c.load(Ordering::Acquire) {
                    continue;
                }
                let mut conns = live.lock().unwrap();
                conns.retain(|(_, open)| open.load(Ordering::Acquire));
                if conns.is_empty() {
                    continue;
                }
                let at = (rng % conns.len() as u64) as usize;
                let (victim, _) = conns.swap_remove(at);
                let _ = victim.shutdown(Shutdown::Both);
                n.fetch_add(1, Ordering::AcqRel);
            }
        });
        CuttingProxy {
            addr: format!("127.0.0.1:{port}"),
            cutting,
            cuts,
        }
    }
}

fn idempotent_producer(bootstrap: &str) -> ThreadedProducer<DefaultProducerContext> {
    ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("enable.idempotence", "true")
        .set("linger.ms", "5")
        .set("batch.num.messages", "2000")
        .set("message.timeout.ms", "600000")
        .set("request.timeout.ms", "10000")
        .set("reconnect.backoff.ms", "20")
        .set("reconnect.backoff.max.ms", "500")
        .create()
        .unwrap()
}

/// Sends messages "<producer>:<n>" keyed by n for n in `range`.
fn send_all(
    p: &ThreadedProducer<DefaultProducerContext>,
    topic: &str,
    who: usize,
    range: std::ops::Range<usize>,
) {
    for n in range {
        let payload = format!("{who}:{n}");
        let key = n.to_string();
        let mut record = BaseRecord::<String, String>::to(topic)
            .payload(&payload)
            .key(&key);
        loop {
            match p.send(record) {
                Ok(()) => break,
                Err((_, r)) => {
                    record = r;
                    std::thread::sleep(Duration::from_millis(2));
                }
            }
        }
    }
}

/// Reads every partition of `topic` to `expect` messages in total and checks
/// that each "<producer>:<n>" appears exactly once and, per partition and
/// producer, in increasing order.
fn check_exactly_once(
    bootstrap: &str,
    topic: &str,
    partitions: i32,
    producers: usize,
    per_producer: usize,
) {
    let c: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("group.id", "unused")
        .set("enable.auto.commit", "false")
        .set("fetch.max.bytes", "10485760")
        .create()
        .unwrap();
    let mut tpl = TopicPartitionList::new();
    for p in 0..partitions {
        tpl.add_partition_offset(topic, p, Offset::Beginning)
            .unwrap();
    }
    c.assign(&tpl).unwrap();
    let expect = producers * per_producer;
    let mut seen: HashMap<(usize, usize), i64> = HashMap::with_capacity(expect);
    let mut last: HashMap<(i32, usize), usize> = HashMap::new();
    let mut total = 0usize;
    let deadline = Instant::now() + Duration::from_secs(300);
    while total < expect && Instant::now() < deadline {
        let Some(m) = c.poll(Duration::from_millis(200)) else {
            continue;
        };
        let m = m.unwrap();
        let text = std::str::from_utf8(m.payload().unwrap()).unwrap();
        let (who, n) = text.split_once(':').unwrap();
        let (who, n): (usize, usize) = (who.parse().unwrap(), n.parse().unwrap());
        if let Some(first) = seen.insert((who, n), m.offset()) {
            panic!("{text} appears twice: offsets {first} and {}", m.offset());
        }
        if let Some(prev) = last.insert((m.partition(), who), n) {
            assert!(
                n > prev,
                "partition {}: {who}:{n} after {who}:{prev}",
                m.partition()
            );
        }
        total += 1;
    }
    assert_eq!(total, expect, "messages read back");
    // Nothing more: no duplicate waits beyond the expected count.
    let end = Instant::now() + Duration::from_secs(2);
    while Instant::now() < end {
        if let Some(m) = c.poll(Duration::from_millis(100)) {
            let m = m.unwrap();
            panic!(
                "unexpected extra message {:?}",
                std::str::from_utf8(m.payload().unwrap())
            );
        }
    }
}

#[test]
fn idempotent_producers_whose_connections_are_cut_write_every_message_exactly_once() {
    let dir = tempfile::tempdir().unwrap();
    let proxy_port = free_port();
    let broker_port = free_port();
    let advertised = format!("127.0.0.1:{proxy_port}");
    let broker = Broker::start_with(
        dir.path(),
        broker_port,
        free_port(),
        &["--advertised-listeners", &advertised],
    );
    let proxy = CuttingProxy::start(proxy_port, broker.bootstrap.clone());
    {
        let mut s = TcpStream::connect(&broker.bootstrap).unwrap();
        create_topic(&mut s, "cut", 6);
    }
    const PRODUCERS: usize = 4;
    const PER_PRODUCER: usize = 250_000;
    let threads: Vec<_> = (0..PRODUCERS)
        .map(|who| {
            let addr = proxy.addr.clone();
            std::thread::spawn(move || {
                let p = idempotent_producer(&addr);
                send_all(&p, "cut", who, 0..PER_PRODUCER);
                p.flush(Duration::from_secs(600)).unwrap();
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    proxy.cutting.store(false, Ordering::Release);
    let cuts = proxy.cuts.load(Ordering::Acquire);
    assert!(cuts >= 5, "only {cuts} connections were cut");
    check_exactly_once(&broker.bootstrap, "cut", 6, PRODUCERS, PER_PRODUCER);
    broker.stop();
}

#[test]
fn after_a_kill_9_mid_stream_the_producer_continues_without_duplicates() {
    let dir = tempfile::tempdir().unwrap();
    let (port, coordinator) = (free_port(), free_port());
    // Small segments, so that recovery starts from a roll's producer
    // snapshot and replays the log after it.
    let small = ["--override", "log.segment.bytes=262144"];
    let broker = Broker::start_with(dir.path(), port, coordinator, &small);
    {
        let mut s = TcpStream::connect(&broker.bootstrap).unwrap();
        create_topic(&mut s, "crash", 3);
    }
    let bootstrap = broker.bootstrap.clone();
    const TOTAL: usize = 200_000;
    let sent = Arc::new(AtomicUsize::new(0));
    let s2 = sent.clone();
    let producer = std::thread::spawn(move || {
        let p = idempotent_producer(&bootstrap);
        for chunk in (0..TOTAL).step_by(1000) {
            send_all(&p, "crash", 0, chunk..chunk + 1000);
            s2.store(chunk + 1000, Ordering::Release);
            std::thread::sleep(Duration::from_millis(2));
        }
        p.flush(Duration::from_secs(600)).unwrap();
    });
    // Kill once a third was sent and a roll's producer snapshot is on disk
    // (written in the background after the roll).
    let snapshot_written = || {
        walk(dir.path())
            .iter()
            .any(|p| p.extension().is_some_and(|e| e == "snapshot"))
    };
    let deadline = Instant::now() + TIMEOUT;
    while (sent.load(Ordering::Acquire) < TOTAL / 3 || !snapshot_written())
        && Instant::now() < deadline
    {
        std::thread::sleep(Duration::from_millis(5));
    }
    assert!(
        snapshot_written(),
        "no producer snapshot was written before the kill"
    );
    drop(broker); // SIGKILL
    let broker = Broker::start_with(dir.path(), port, coordinator, &small);
    producer.join().unwrap();
    check_exactly_once(&broker.bootstrap, "crash", 3, 1, TOTAL);
    broker.stop();
}

/// Every file below `dir`.
fn walk(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut files = Vec::new();
    for e in std::fs::read_dir(dir).unwrap() {
        let path = e.unwrap().path();
        if path.is_dir() {
            files.extend(walk(&path));
        } else {
            files.push(path);
        }
    }
    files
}
