//! The real `sluice` binary driven by librdkafka (the rdkafka crate).

mod support;

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::{DeliveryResult, Header, Headers, Message, OwnedHeaders};
use rdkafka::producer::{BaseRecord, Producer, ProducerContext, ThreadedProducer};
use rdkafka::{ClientContext, Offset, TopicPartitionList};
use support::{create_topic, Broker, TIMEOUT};

/// Counts deliveries and failures.
#[derive(Clone, Default)]
struct Deliveries {
    ok: Arc<AtomicUsize>,
    failed: Arc<AtomicUsize>,
}

impl ClientContext for Deliveries {}

impl ProducerContext for Deliveries {
    type DeliveryOpaque = ();
    fn delivery(&self, result: &DeliveryResult<'_>, _: ()) {
        match result {
            Ok(_) => self.ok.fetch_add(1, Ordering::Relaxed),
            Err(_) => self.failed.fetch_add(1, Ordering::Relaxed),
        };
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
struct Msg {
    key: Option<Vec<u8>>,
    value: Vec<u8>,
    headers: Vec<(String, Vec<u8>)>,
    partition: i32,
}

fn producer(
    bootstrap: &str,
    compression: &str,
    acks: &str,
) -> (ThreadedProducer<Deliveries>, Deliveries) {
    let d = Deliveries::default();
    let p = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("compression.type", compression)
        .set("acks", acks)
        .set("linger.ms", "5")
        .set("enable.idempotence", "false")
        .create_with_context(d.clone())
        .expect("producer");
    (p, d)
}

fn value(i: usize, len: usize) -> Vec<u8> {
    let mut v = format!("value-{i}-").into_bytes();
    while v.len() < len {
        v.push(b'a' + (v.len() % 26) as u8);
    }
    v
}

/// Produces `msgs` (in order) and waits until every one is acknowledged.
fn produce_all(p: &ThreadedProducer<Deliveries>, d: &Deliveries, topic: &str, msgs: &[Msg]) {
    for m in msgs {
        let mut headers = OwnedHeaders::new();
        for (k, v) in &m.headers {
            headers = headers.insert(Header {
                key: k,
                value: Some(v),
            });
        }
        let mut rec = BaseRecord::<Vec<u8>, Vec<u8>>::to(topic)
            .payload(&m.value)
            .headers(headers);
        if let Some(k) = &m.key {
            rec = rec.key(k);
        }
        if m.partition >= 0 {
            rec = rec.partition(m.partition);
        }
        let mut rec = rec;
        loop {
            match p.send(rec) {
                Ok(()) => break,
                Err((_, r)) => {
                    rec = r;
                    std::thread::sleep(Duration::from_millis(5));
                }
            }
        }
    }
    p.flush(TIMEOUT).expect("flush");
    let deadline = Instant::now() + TIMEOUT;
    while d.ok.load(Ordering::Relaxed) + d.failed.load(Ordering::Relaxed) < msgs.len() {
        assert!(Instant::now() < deadline, "deliveries did not finish");
        std::thread::sleep(Duration::from_millis(10));
    }
    assert_eq!(d.failed.load(Ordering::Relaxed), 0, "some produces failed");
}

/// Reads `count` messages from the start of each of `partitions` of `topic`.
fn consume(bootstrap: &str, topic: &str, partitions: i32, count: usize) -> Vec<Msg> {
    let c: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("group.id", "unused-no-commits")
        .set("enable.auto.commit", "false")
        .set("check.crcs", "true")
        .create()
        .expect("consumer");
    let mut tpl = TopicPartitionList::new();
    for p in 0..partitions {
        tpl.add_partition_offset(topic, p, Offset::Beginning)
            .unwrap();
    }
    c.assign(&tpl).unwrap();
    let mut out = Vec::with_capacity(count);
    let deadline = Instant::now() + TIMEOUT;
    while out.len() < count {
        assert!(
            Instant::now() < deadline,
            "consumed only {} of {count}",
            out.len()
        );
        let Some(m) = c.poll(Duration::from_millis(200)) else {
            continue;
        };
        let m = m.expect("consume error");
        let headers = m
            .headers()
            .map(|h| {
                h.iter()
                    .map(|x| (x.key.to_string(), x.value.unwrap_or_default().to_vec()))
                    .collect()
            })
            .unwrap_or_default();
        out.push(Msg {
            key: m.key().map(<[u8]>::to_vec),
            value: m.payload().unwrap_or_default().to_vec(),
            headers,
            partition: m.partition(),
        });
    }
    out
}

#[test]
fn given_100k_messages_in_each_compression_they_come_back_byte_for_byte() {
    let dir = tempfile::tempdir().unwrap();
    let broker = Broker::start(dir.path());
    for compression in ["none", "gzip", "snappy", "lz4", "zstd"] {
        let topic = format!("roundtrip-{compression}");
        let msgs: Vec<Msg> = (0..100_000)
            .map(|i| Msg {
                key: (i % 3 != 0).then(|| format!("key-{}", i % 1000).into_bytes()),
                value: value(i, 100),
                headers: if i % 2 == 0 {
                    vec![
                        ("h1".into(), format!("hv-{i}").into_bytes()),
                        ("empty".into(), Vec::new()),
                    ]
                } else {
                    Vec::new()
                },
                partition: 0,
            })
            .collect();
        let (p, d) = producer(&broker.bootstrap, compression, "all");
        produce_all(&p, &d, &topic, &msgs);
        let got = consume(&broker.bootstrap, &topic, 1, msgs.len());
        assert_eq!(got.len(), msgs.len());
        for (i, (g, m)) in got.iter().zip(&msgs).enumerate() {
            assert_eq!(g, m, "{compression}: message {i} differs");
        }
    }
    broker.stop();
}

#[test]
fn given_a_six_partition_topic_keyed_messages_stay_in_their_partition_in_order() {
    let dir = tempfile::tempdir().unwrap();
    let broker = Broker::start(dir.path());
    create_topic(&broker.bootstrap, "keyed", 6);
    let msgs: Vec<Msg> = (0..6_000)
        .map(|i| Msg {
            key: Some(format!("customer-{}", i % 37).into_bytes()),
            value: value(i, 50),
            headers: Vec::new(),
            partition: -1,
        })
        .collect();
    let (p, d) = producer(&broker.bootstrap, "lz4", "1");
    produce_all(&p, &d, "keyed", &msgs);
    let got = consume(&broker.bootstrap, "keyed", 6, msgs.len());
    let mut partition_of: BTreeMap<Vec<u8>, i32> = BTreeMap::new();
    let mut per_key: BTreeMap<Vec<u8>, Vec<Vec<u8>>> = BTreeMap::new();
    for g in &got {
        let k = g.key.clone().unwrap();
        let p = *partition_of.entry(k.clone()).or_insert(g.partition);
        assert_eq!(p, g.partition, "a key moved between partitions");
        per_key.entry(k).or_default().push(g.value.clone());
    }
    let used: std::collections::BTreeSet<i32> = partition_of.values().copied().collect();
    assert!(used.len() > 1, "keys spread over partitions: {used:?}");
    for (k, values) in per_key {
        let want: Vec<Vec<u8>> = msgs
            .iter()
            .filter(|m| m.key.as_ref() == Some(&k))
            .map(|m| m.value.clone())
            .collect();
        assert_eq!(
            values,
            want,
            "order within key {:?}",
            String::from_utf8_lossy(&k)
        );
    }
    broker.stop();
}

#[test]
fn given_timestamps_list_offsets_finds_the_first_message_at_or_after_each() {
    let dir = tempfile::tempdir().unwrap();
    let broker = Broker::start(dir.path());
    let (p, d) = producer(&broker.bootstrap, "none", "all");
    let base = 1_700_000_000_000i64;
    for i in 0..100i64 {
        p.send(
            BaseRecord::<(), str>::to("times")
                .payload("x")
                .partition(0)
                .timestamp(base + i * 1000),
        )
        .map_err(|(e, _)| e)
        .unwrap();
    }
    p.flush(TIMEOUT).unwrap();
    assert_eq!(d.failed.load(Ordering::Relaxed), 0);
    let c: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", &broker.bootstrap)
        .set("group.id", "t")
        .create()
        .unwrap();
    for (ts, want) in [
        (base - 5, 0),
        (base + 42_000, 42),
        (base + 42_500, 43),
        (base + 99_000, 99),
    ] {
        let mut tpl = TopicPartitionList::new();
        tpl.add_partition_offset("times", 0, Offset::Offset(ts))
            .unwrap();
        let r = c.offsets_for_times(tpl, TIMEOUT).unwrap();
        let got = r.find_partition("times", 0).unwrap().offset();
        assert_eq!(got, Offset::Offset(want), "timestamp {ts}");
    }
    let (low, high) = c.fetch_watermarks("times", 0, TIMEOUT).unwrap();
    assert_eq!((low, high), (0, 100));
    broker.stop();
}

#[test]
fn given_a_restart_every_acknowledged_message_and_topic_is_still_there() {
    let dir = tempfile::tempdir().unwrap();
    let (port, cport) = (support::free_port(), support::free_port());
    let broker = Broker::start_on(dir.path(), port, cport);
    create_topic(&broker.bootstrap, "durable", 3);
    let msgs: Vec<Msg> = (0..3_000)
        .map(|i| Msg {
            key: None,
            value: value(i, 200),
            headers: Vec::new(),
            partition: (i % 3) as i32,
        })
        .collect();
    let (p, d) = producer(&broker.bootstrap, "zstd", "all");
    produce_all(&p, &d, "durable", &msgs);
    drop(p);
    broker.stop();
    let broker = Broker::start_on(dir.path(), port, cport);
    let mut got = consume(&broker.bootstrap, "durable", 3, msgs.len());
    let mut want = msgs.clone();
    got.sort_by(|a, b| a.value.cmp(&b.value));
    want.sort_by(|a, b| a.value.cmp(&b.value));
    assert_eq!(got, want);
    broker.stop();
}
