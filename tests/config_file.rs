//! `sluice start --config server.properties`: Kafka's broker keys from a
//! file, `--override` over the file, flags over both.

mod support;

use std::time::Duration;

use rdkafka::admin::{AdminClient, AdminOptions, ConfigSource, ResourceSpecifier};
use rdkafka::client::DefaultClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::producer::{BaseRecord, DefaultProducerContext, Producer, ThreadedProducer};
use support::{free_port, Broker, TIMEOUT};

#[test]
fn a_server_properties_file_sets_partitions_batch_limits_and_retention() {
    let dir = tempfile::tempdir().unwrap();
    let props = dir.path().with_extension("properties");
    std::fs::write(
        &props,
        "# written for Kafka\n\
         zookeeper.connect=localhost:2181\n\
         num.partitions=3\n\
         message.max.bytes=5000\n\
         log.retention.hours=1\n\
         log.segment.bytes=1048576\n\
         listeners=PLAINTEXT://127.0.0.1:1\n",
    )
    .unwrap();
    let config = props.display().to_string();
    let broker = Broker::start_with(
        dir.path(),
        free_port(),
        free_port(),
        &["--config", &config, "--override", "num.partitions=4"],
    );
    let p: ThreadedProducer<DefaultProducerContext> = ClientConfig::new()
        .set("bootstrap.servers", &broker.bootstrap)
        .set("message.max.bytes", "100000")
        .create()
        .unwrap();
    // Auto-created with num.partitions from --override (over the file's 3).
    p.send(BaseRecord::<(), [u8]>::to("cfg").payload(&b"small"[..]))
        .map_err(|e| e.0)
        .unwrap();
    p.flush(TIMEOUT).unwrap();
    let md = p.client().fetch_metadata(Some("cfg"), TIMEOUT).unwrap();
    assert_eq!(md.topics()[0].partitions().len(), 4);

    // message.max.bytes=5000 refuses a larger batch.
    let big = vec![b'x'; 20_000];
    let future_p: rdkafka::producer::FutureProducer = ClientConfig::new()
        .set("bootstrap.servers", &broker.bootstrap)
        .set("message.max.bytes", "100000")
        .set("compression.type", "none")
        .create()
        .unwrap();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let delivery = rt.block_on(
        future_p.send(
            rdkafka::producer::FutureRecord::<(), [u8]>::to("cfg")
                .partition(0)
                .payload(&big[..]),
            Duration::from_secs(30),
        ),
    );
    match delivery.map(|_| ()).map_err(|e| e.0) {
        Err(KafkaError::MessageProduction(RDKafkaErrorCode::MessageSizeTooLarge)) => {}
        other => panic!("a 20 kB batch over message.max.bytes=5000: {other:?}"),
    }

    // The topic's retention comes from log.retention.hours. Kafka reports
    // its source as DEFAULT_CONFIG: a topic config's broker synonyms are
    // listed only from the first one named like its main broker key
    // (log.retention.ms), which is not set.
    let admin: AdminClient<DefaultClientContext> = ClientConfig::new()
        .set("bootstrap.servers", &broker.bootstrap)
        .create()
        .unwrap();
    let r = rt
        .block_on(admin.describe_configs(&[ResourceSpecifier::Topic("cfg")], &AdminOptions::new()))
        .unwrap();
    let res = r.into_iter().next().unwrap().expect("describe configs");
    let retention = res.get("retention.ms").expect("retention.ms");
    assert_eq!(retention.value.as_deref(), Some("3600000"));
    assert_eq!(retention.source, ConfigSource::Default);
    let segment = res.get("segment.bytes").unwrap();
    assert_eq!(segment.source, ConfigSource::StaticBroker);
    assert_eq!(
        res.get("segment.bytes").unwrap().value.as_deref(),
        Some("1048576")
    );
    broker.stop();
}
