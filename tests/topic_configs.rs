//! Kafka's topic and broker configs against the real binary: every topic
//! config Kafka 4.1 defines is accepted with Kafka's validation and
//! described with its default, source and synonyms; dynamic broker configs
//! are accepted cluster-wide; `compression.type` and compacted topics'
//! keys take effect on produce.

mod support;

use std::collections::BTreeMap;
use std::net::TcpStream;
use std::time::Duration;

use kafka_protocol::messages::describe_configs_request::DescribeConfigsResource;
use kafka_protocol::messages::incremental_alter_configs_request::{
    AlterConfigsResource, AlterableConfig,
};
use kafka_protocol::messages::{
    ApiKey, DescribeConfigsRequest, DescribeConfigsResponse, IncrementalAlterConfigsRequest,
    RequestKind, ResponseKind,
};
use kafka_protocol::protocol::StrBytes;
use rdkafka::admin::{NewTopic, TopicReplication};
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::Message;
use rdkafka::producer::{FutureProducer, FutureRecord};
use support::{admin_client, Broker, TIMEOUT};

const RESOURCE_TOPIC: i8 = 2;
const RESOURCE_BROKER: i8 = 4;
const SOURCE_TOPIC: i8 = 1;
const SOURCE_DYNAMIC_DEFAULT_BROKER: i8 = 3;
const SOURCE_DEFAULT: i8 = 5;
const INVALID_CONFIG: i16 = 40;

/// Every topic config of Kafka 4.1: its default there, a valid value other
/// than the default, and an invalid value of its type or range.
const KAFKA_TOPIC_CONFIGS: &[(&str, &str, &str, &str)] = &[
    ("cleanup.policy", "delete", "compact,delete", "keep"),
    ("compression.gzip.level", "-1", "9", "10"),
    ("compression.lz4.level", "9", "17", "0"),
    ("compression.type", "producer", "zstd", "brotli"),
    ("compression.zstd.level", "3", "-5", "23"),
    ("delete.retention.ms", "86400000", "1000", "-1"),
    ("file.delete.delay.ms", "60000", "0", "soon"),
    // Sluice departs: every append is fdatasync'ed (Kafka: Long.MAX).
    ("flush.messages", "1", "100", "0"),
    ("flush.ms", "9223372036854775807", "1000", "-1"),
    (
        "follower.replication.throttled.replicas",
        "",
        "0:1,1:1",
        "0-1",
    ),
    ("index.interval.bytes", "4096", "8192", "-1"),
    ("leader.replication.throttled.replicas", "", "*", "x:1"),
    ("local.retention.bytes", "-2", "1048576", "-3"),
    ("local.retention.ms", "-2", "3600000", "-3"),
    (
        "max.compaction.lag.ms",
        "9223372036854775807",
        "86400000",
        "0",
    ),
    ("max.message.bytes", "1048588", "2000000", "3000000000"),
    ("message.timestamp.after.max.ms", "3600000", "60000", "-1"),
    (
        "message.timestamp.before.max.ms",
        "9223372036854775807",
        "60000",
        "-1",
    ),
    (
        "message.timestamp.type",
        "CreateTime",
        "LogAppendTime",
        "AppendTime",
    ),
    ("min.cleanable.dirty.ratio", "0.5", "0.25", "1.5"),
    ("min.compaction.lag.ms", "0", "1000", "-1"),
    ("min.insync.replicas", "1", "2", "0"),
    ("preallocate", "false", "true", "yes"),
    ("remote.log.copy.disable", "false", "true", "1"),
    ("remote.log.delete.on.disable", "false", "true", "0"),
    ("remote.storage.enable", "false", "false", "maybe"),
    ("retention.bytes", "-1", "1073741824", "1GB"),
    ("retention.ms", "604800000", "3600000", "-2"),
    ("segment.bytes", "1073741824", "536870912", "10"),
    ("segment.index.bytes", "10485760", "1048576", "3"),
    ("segment.jitter.ms", "0", "1000", "-1"),
    ("segment.ms", "604800000", "3600000", "0"),
    ("unclean.leader.election.enable", "false", "true", "no"),
];

fn connect(bootstrap: &str) -> TcpStream {
    let s = TcpStream::connect(bootstrap).unwrap();
    s.set_read_timeout(Some(TIMEOUT)).unwrap();
    s
}

/// IncrementalAlterConfigs SET of `pairs` on one resource: its error code
/// and message.
fn set_configs(s: &mut TcpStream, kind: i8, name: &str, pairs: &[(&str, &str)]) -> (i16, String) {
    let mut r = AlterConfigsResource::default();
    r.resource_type = kind;
    r.resource_name = StrBytes::from_string(name.to_string());
    r.configs = pairs
        .iter()
        .map(|(k, v)| {
            let mut c = AlterableConfig::default();
            c.name = StrBytes::from_string(k.to_string());
            c.config_operation = 0;
            c.value = Some(StrBytes::from_string(v.to_string()));
            c
        })
        .collect();
    let mut req = IncrementalAlterConfigsRequest::default();
    req.resources = vec![r];
    let ResponseKind::IncrementalAlterConfigs(resp) = support::call(
        s,
        ApiKey::IncrementalAlterConfigs,
        1,
        RequestKind::IncrementalAlterConfigs(req),
    ) else {
        panic!("not an IncrementalAlterConfigs response")
    };
    let r = &resp.responses[0];
    let message = r.error_message.as_deref().unwrap_or_default();
    (r.error_code, message.to_string())
}

/// AlterConfigs (which replaces a resource's overrides) with `pairs`: its
/// error code and message. librdkafka's admin client through rust-rdkafka
/// does not report AlterConfigs' per-resource errors.
fn replace_configs(s: &mut TcpStream, topic: &str, pairs: &[(&str, &str)]) -> (i16, String) {
    use kafka_protocol::messages::alter_configs_request as alter;
    let mut r = alter::AlterConfigsResource::default();
    r.resource_type = RESOURCE_TOPIC;
    r.resource_name = StrBytes::from_string(topic.to_string());
    r.configs = pairs
        .iter()
        .map(|(k, v)| {
            let mut c = alter::AlterableConfig::default();
            c.name = StrBytes::from_string(k.to_string());
            c.value = Some(StrBytes::from_string(v.to_string()));
            c
        })
        .collect();
    let mut req = kafka_protocol::messages::AlterConfigsRequest::default();
    req.resources = vec![r];
    let ResponseKind::AlterConfigs(resp) =
        support::call(s, ApiKey::AlterConfigs, 1, RequestKind::AlterConfigs(req))
    else {
        panic!("not an AlterConfigs response")
    };
    let r = &resp.responses[0];
    let message = r.error_message.as_deref().unwrap_or_default();
    (r.error_code, message.to_string())
}

/// One described config: value, source, synonyms (name, value, source).
type Described = (Option<String>, i8, Vec<(String, String, i8)>);

/// DescribeConfigs v4 with synonyms, as `kafka-configs --describe --all`.
fn describe(s: &mut TcpStream, kind: i8, name: &str) -> (i16, BTreeMap<String, Described>) {
    let mut r = DescribeConfigsResource::default();
    r.resource_type = kind;
    r.resource_name = StrBytes::from_string(name.to_string());
    r.configuration_keys = None;
    let mut req = DescribeConfigsRequest::default();
    req.resources = vec![r];
    req.include_synonyms = true;
    let ResponseKind::DescribeConfigs(resp) = support::call(
        s,
        ApiKey::DescribeConfigs,
        4,
        RequestKind::DescribeConfigs(req),
    ) else {
        panic!("not a DescribeConfigs response")
    };
    let resp: DescribeConfigsResponse = resp;
    let r = &resp.results[0];
    let configs = r
        .configs
        .iter()
        .map(|c| {
            let synonyms = c
                .synonyms
                .iter()
                .map(|s| {
                    let v = s.value.as_deref().unwrap_or_default().to_string();
                    (s.name.to_string(), v, s.source)
                })
                .collect();
            let value = c.value.as_ref().map(|v| v.to_string());
            (c.name.to_string(), (value, c.config_source, synonyms))
        })
        .collect();
    (r.error_code, configs)
}

#[test]
fn every_kafka_topic_config_is_accepted_described_and_refused_when_invalid_naming_the_key() {
    let dir = tempfile::tempdir().unwrap();
    let broker = Broker::start(dir.path());
    let (rt, admin, opts) = admin_client(&broker.bootstrap);
    let mut s = connect(&broker.bootstrap);

    // A topic with defaults: all 33 of Kafka's, each with Kafka's default
    // (flush.messages aside), source DEFAULT_CONFIG.
    let plain = NewTopic::new("plain", 1, TopicReplication::Fixed(1));
    let r = rt.block_on(admin.create_topics(&[plain], &opts)).unwrap();
    assert!(r[0].is_ok(), "{r:?}");
    let (code, described) = describe(&mut s, RESOURCE_TOPIC, "plain");
    assert_eq!(code, 0);
    assert_eq!(
        described.keys().collect::<Vec<_>>(),
        KAFKA_TOPIC_CONFIGS
            .iter()
            .map(|c| c.0)
            .collect::<Vec<_>>()
            .iter()
            .collect::<Vec<_>>(),
        "kafka-configs --describe --all lists Kafka's 33 topic configs"
    );
    for (key, default, _, _) in KAFKA_TOPIC_CONFIGS {
        let (value, source, _) = &described[*key];
        assert_eq!(value.as_deref(), Some(*default), "{key}");
        assert_eq!(*source, SOURCE_DEFAULT, "{key}");
    }
    // Synonyms as Kafka lists them.
    let syn = |d: &BTreeMap<String, Described>, k: &str| d[k].2.clone();
    let default_syn = |k: &str, v: &str| (k.to_string(), v.to_string(), SOURCE_DEFAULT);
    assert_eq!(
        syn(&described, "segment.bytes"),
        vec![default_syn("log.segment.bytes", "1073741824")]
    );
    assert_eq!(
        syn(&described, "compression.type"),
        vec![default_syn("compression.type", "producer")]
    );
    assert_eq!(
        syn(&described, "retention.ms"),
        vec![],
        "log.retention.ms is not set"
    );
    assert_eq!(syn(&described, "remote.storage.enable"), vec![]);

    // Every config set to a valid value at creation, read back.
    let mut all = NewTopic::new("all", 1, TopicReplication::Fixed(1));
    for (key, _, valid, _) in KAFKA_TOPIC_CONFIGS {
        all = all.set(key, valid);
    }
    let r = rt.block_on(admin.create_topics(&[all], &opts)).unwrap();
    assert!(r[0].is_ok(), "{r:?}");
    let (_, described) = describe(&mut s, RESOURCE_TOPIC, "all");
    for (key, _, valid, _) in KAFKA_TOPIC_CONFIGS {
        let (value, source, synonyms) = &described[*key];
        assert_eq!(value.as_deref(), Some(*valid), "{key}");
        assert_eq!(*source, SOURCE_TOPIC, "{key}");
        assert_eq!(
            synonyms[0],
            (key.to_string(), valid.to_string(), SOURCE_TOPIC)
        );
    }

    // An invalid value of each: INVALID_CONFIG naming the key, through
    // CreateTopics, IncrementalAlterConfigs and AlterConfigs.
    for (key, _, _, invalid) in KAFKA_TOPIC_CONFIGS {
        let bad = NewTopic::new("bad", 1, TopicReplication::Fixed(1)).set(key, invalid);
        let r = rt.block_on(admin.create_topics(&[bad], &opts)).unwrap();
        assert_eq!(
            r[0].as_ref().unwrap_err().1,
            RDKafkaErrorCode::InvalidConfig,
            "create with {key}={invalid}"
        );
        let (code, message) = set_configs(&mut s, RESOURCE_TOPIC, "plain", &[(key, invalid)]);
        assert_eq!(code, INVALID_CONFIG, "{key}={invalid}: {message}");
        assert!(message.contains(key), "{key}: {message:?} names the key");
        let (code, message) = replace_configs(&mut s, "plain", &[(key, invalid)]);
        assert_eq!(code, INVALID_CONFIG, "alter {key}={invalid}: {message}");
        assert!(message.contains(key), "{key}: {message:?} names the key");
    }
    // Kafka's cross-key rule, and tiered storage it does not have.
    let (code, message) = set_configs(
        &mut s,
        RESOURCE_TOPIC,
        "plain",
        &[
            ("min.compaction.lag.ms", "10"),
            ("max.compaction.lag.ms", "5"),
        ],
    );
    assert_eq!(code, INVALID_CONFIG, "{message}");
    let (code, message) = set_configs(
        &mut s,
        RESOURCE_TOPIC,
        "plain",
        &[("remote.storage.enable", "true")],
    );
    assert_eq!(code, INVALID_CONFIG);
    assert!(message.contains("remote.storage.enable"), "{message}");

    // Every valid value through AlterConfigs and IncrementalAlterConfigs.
    let pairs: Vec<(&str, &str)> = KAFKA_TOPIC_CONFIGS.iter().map(|c| (c.0, c.2)).collect();
    let (code, message) = replace_configs(&mut s, "plain", &pairs);
    assert_eq!(code, 0, "{message}");
    assert_eq!(set_configs(&mut s, RESOURCE_TOPIC, "plain", &[]).0, 0);
    // IncrementalAlterConfigs.
    let pairs: Vec<(&str, &str)> = KAFKA_TOPIC_CONFIGS.iter().map(|c| (c.0, c.2)).collect();
    assert_eq!(set_configs(&mut s, RESOURCE_TOPIC, "plain", &pairs).0, 0);
    let (_, described) = describe(&mut s, RESOURCE_TOPIC, "plain");
    for (key, _, valid, _) in KAFKA_TOPIC_CONFIGS {
        assert_eq!(described[*key].0.as_deref(), Some(*valid), "{key}");
    }
    broker.stop();
}

#[test]
fn dynamic_broker_configs_are_accepted_and_described_with_kafkas_sources_and_synonyms() {
    let dir = tempfile::tempdir().unwrap();
    let broker = Broker::start(dir.path());
    let mut s = connect(&broker.bootstrap);
    support::create_topic(&broker.bootstrap, "t", 1);

    // Kafka's dynamically updatable broker configs, those Sluice does not
    // act on included, at the cluster default and per broker.
    let cluster = [
        ("log.cleaner.threads", "2"),
        ("num.io.threads", "16"),
        ("num.network.threads", "4"),
        ("log.retention.ms", "7200000"),
        ("log.cleaner.min.cleanable.ratio", "0.3"),
        ("compression.type", "lz4"),
        ("max.connections.per.ip", "100"),
    ];
    let (code, message) = set_configs(&mut s, RESOURCE_BROKER, "", &cluster);
    assert_eq!(code, 0, "{message}");
    let (code, message) = set_configs(
        &mut s,
        RESOURCE_BROKER,
        "1",
        &[("background.threads", "12")],
    );
    assert_eq!(code, 0, "{message}");
    for (key, invalid) in [
        ("log.cleaner.threads", "-1"),
        ("num.io.threads", "many"),
        ("log.cleaner.min.cleanable.ratio", "2"),
        ("log.retention.ms", "-5"),
    ] {
        let (code, message) = set_configs(&mut s, RESOURCE_BROKER, "", &[(key, invalid)]);
        assert_eq!(code, INVALID_CONFIG, "{key}={invalid}");
        assert!(message.contains(key), "{message:?} names {key}");
    }

    // The broker lists its configs with their sources; the cluster default
    // lists what is set there.
    let (code, described) = describe(&mut s, RESOURCE_BROKER, "1");
    assert_eq!(code, 0);
    for (key, value) in cluster.iter().chain(&[("background.threads", "12")]) {
        let (v, source, synonyms) = &described[*key];
        assert_eq!(v.as_deref(), Some(*value), "{key}");
        assert_eq!(*source, SOURCE_DYNAMIC_DEFAULT_BROKER, "{key}");
        assert_eq!(
            synonyms[0],
            (
                key.to_string(),
                value.to_string(),
                SOURCE_DYNAMIC_DEFAULT_BROKER
            )
        );
    }
    assert_eq!(
        described["log.retention.ms"].2,
        vec![
            (
                "log.retention.ms".into(),
                "7200000".into(),
                SOURCE_DYNAMIC_DEFAULT_BROKER
            ),
            ("log.retention.hours".into(), "168".into(), SOURCE_DEFAULT),
        ]
    );
    assert_eq!(
        described["log.message.timestamp.after.max.ms"].0.as_deref(),
        Some("3600000"),
        "Kafka 4.x's default"
    );
    let (_, defaults) = describe(&mut s, RESOURCE_BROKER, "");
    assert_eq!(defaults.len(), cluster.len() + 1, "{:?}", defaults.keys());
    let (code, _) = describe(&mut s, RESOURCE_BROKER, "7");
    assert_eq!(code, 42, "INVALID_REQUEST for another broker's id");

    // A topic takes the cluster defaults, with Kafka's synonyms.
    let (_, topic) = describe(&mut s, RESOURCE_TOPIC, "t");
    let (v, source, synonyms) = &topic["retention.ms"];
    assert_eq!(v.as_deref(), Some("7200000"));
    assert_eq!(*source, SOURCE_DYNAMIC_DEFAULT_BROKER);
    assert_eq!(synonyms[0].0, "log.retention.ms");
    assert_eq!(topic["compression.type"].0.as_deref(), Some("lz4"));
    assert_eq!(topic["min.cleanable.dirty.ratio"].0.as_deref(), Some("0.3"));
    broker.stop();
}

/// The codec of each batch of partition 0 of `topic` as stored (a raw
/// fetch: the batches as the broker keeps them).
fn stored_codecs(bootstrap: &str, topic: &str) -> Vec<i16> {
    let mut s = connect(bootstrap);
    let req = support::raw::fetch(topic, 0, 0, 0, 1 << 20);
    let ResponseKind::Fetch(resp) =
        support::call(&mut s, ApiKey::Fetch, 4, RequestKind::Fetch(req))
    else {
        panic!("not a Fetch response")
    };
    let mut records = resp.responses[0].partitions[0]
        .records
        .clone()
        .unwrap_or_default();
    let mut codecs = Vec::new();
    while records.len() >= 61 {
        let len = i32::from_be_bytes(records[8..12].try_into().unwrap()) as usize;
        codecs.push(i16::from_be_bytes([records[21], records[22]]) & 7);
        let _ = records.split_to(12 + len);
    }
    codecs
}

fn producer(bootstrap: &str, codec: &str) -> FutureProducer {
    ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("compression.codec", codec)
        .set("linger.ms", "5")
        .create()
        .unwrap()
}

/// Produces `values` (keyed `k<i>` when `keyed`) as one batch; the
/// delivery results.
fn produce(
    p: &FutureProducer,
    topic: &str,
    values: &[String],
    keyed: bool,
) -> Vec<Result<(), KafkaError>> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let keys: Vec<String> = (0..values.len()).map(|i| format!("k{i}")).collect();
    let sends: Vec<_> = values
        .iter()
        .zip(&keys)
        .map(|(v, k)| {
            let mut r = FutureRecord::to(topic).partition(0).payload(v);
            if keyed {
                r = r.key(k);
            }
            p.send_result(r).map_err(|(e, _)| e).unwrap()
        })
        .collect();
    sends
        .into_iter()
        .map(|f| rt.block_on(f).unwrap().map(|_| ()).map_err(|(e, _)| e))
        .collect()
}

fn consume(bootstrap: &str, topic: &str, count: usize) -> Vec<String> {
    let c: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("group.id", format!("read-{topic}"))
        .set("auto.offset.reset", "earliest")
        .create()
        .unwrap();
    c.subscribe(&[topic]).unwrap();
    let mut out = Vec::new();
    let deadline = std::time::Instant::now() + TIMEOUT;
    while out.len() < count && std::time::Instant::now() < deadline {
        if let Some(m) = c.poll(Duration::from_millis(200)) {
            let m = m.unwrap();
            out.push(String::from_utf8(m.payload().unwrap().to_vec()).unwrap());
        }
    }
    out
}

#[test]
fn compression_type_keeps_the_producers_codec_or_recompresses_with_the_topics() {
    let dir = tempfile::tempdir().unwrap();
    let broker = Broker::start(dir.path());
    let (rt, admin, opts) = admin_client(&broker.bootstrap);
    let values: Vec<String> = (0..50)
        .map(|i| format!("value {i} {}", "x".repeat(200)))
        .collect();
    // (topic's compression.type, producer's codec, codec stored: attributes bits)
    for (i, (topic_codec, producer_codec, stored)) in [
        ("producer", "lz4", 3),
        ("producer", "none", 0),
        ("zstd", "gzip", 4),
        ("gzip", "snappy", 1),
        ("snappy", "none", 2),
        ("lz4", "zstd", 3),
        ("uncompressed", "snappy", 0),
    ]
    .into_iter()
    .enumerate()
    {
        let topic = format!("c{i}");
        let t = NewTopic::new(&topic, 1, TopicReplication::Fixed(1))
            .set("compression.type", topic_codec);
        let r = rt.block_on(admin.create_topics(&[t], &opts)).unwrap();
        assert!(r[0].is_ok(), "{r:?}");
        let p = producer(&broker.bootstrap, producer_codec);
        for r in produce(&p, &topic, &values, true) {
            r.unwrap();
        }
        let codecs = stored_codecs(&broker.bootstrap, &topic);
        assert!(!codecs.is_empty());
        assert!(
            codecs.iter().all(|c| *c == stored),
            "{topic_codec} from {producer_codec}: stored {codecs:?}"
        );
        assert_eq!(
            consume(&broker.bootstrap, &topic, values.len()),
            values,
            "{topic_codec}"
        );
    }
    broker.stop();
}

#[test]
fn given_a_compacted_topic_keyless_records_are_refused_with_invalid_record() {
    let dir = tempfile::tempdir().unwrap();
    let broker = Broker::start(dir.path());
    let (rt, admin, opts) = admin_client(&broker.bootstrap);
    for policy in ["compact", "compact,delete"] {
        let topic = format!("keys-{}", policy.len());
        let t = NewTopic::new(&topic, 1, TopicReplication::Fixed(1)).set("cleanup.policy", policy);
        let r = rt.block_on(admin.create_topics(&[t], &opts)).unwrap();
        assert!(r[0].is_ok(), "{r:?}");
        for codec in ["none", "lz4"] {
            let p = producer(&broker.bootstrap, codec);
            let values = vec!["a".to_string(), "b".to_string()];
            for r in produce(&p, &topic, &values, true) {
                r.unwrap();
            }
            for r in produce(&p, &topic, &values, false) {
                assert_eq!(
                    r.unwrap_err(),
                    KafkaError::MessageProduction(RDKafkaErrorCode::InvalidRecord),
                    "{policy} {codec}"
                );
            }
        }
        assert_eq!(
            stored_codecs(&broker.bootstrap, &topic).len(),
            2,
            "only the keyed batches"
        );
    }
    // Raw: an uncompressed keyless batch gets INVALID_RECORD (87).
    let mut s = connect(&broker.bootstrap);
    let req = support::raw::produce("keys-7", 0, 1, support::raw::batch(&[b"v".to_vec()]));
    let ResponseKind::Produce(resp) = support::call(&mut s, ApiKey::Produce, 7, req) else {
        panic!("not a Produce response")
    };
    assert_eq!(resp.responses[0].partition_responses[0].error_code, 87);
    broker.stop();
}
