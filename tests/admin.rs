//! Topic and config administration through librdkafka's admin client,
//! against the real binary.

mod support;

use std::time::Duration;

use rdkafka::admin::{
    AdminClient, AdminOptions, AlterConfig, NewPartitions, NewTopic, ResourceSpecifier,
    TopicReplication,
};
use rdkafka::client::DefaultClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::RDKafkaErrorCode;
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
use rdkafka::{Offset, TopicPartitionList};
use support::{admin_client, free_port, Broker, TIMEOUT};

fn config_value(
    rt: &tokio::runtime::Runtime,
    admin: &AdminClient<DefaultClientContext>,
    topic: &str,
    key: &str,
) -> Option<String> {
    let r = rt
        .block_on(admin.describe_configs(&[ResourceSpecifier::Topic(topic)], &AdminOptions::new()))
        .unwrap();
    let res = r.into_iter().next().unwrap().expect("describe configs");
    res.get(key).and_then(|e| e.value.clone())
}

#[test]
fn given_an_admin_client_topics_and_configs_are_created_described_altered_and_deleted() {
    let dir = tempfile::tempdir().unwrap();
    let broker = Broker::start(dir.path());
    let (rt, admin, opts) = admin_client(&broker.bootstrap);

    // Create, with a config; creating it again is refused.
    let topic =
        NewTopic::new("orders", 3, TopicReplication::Fixed(1)).set("retention.ms", "3600000");
    let r = rt.block_on(admin.create_topics(&[topic], &opts)).unwrap();
    assert!(r[0].is_ok(), "{r:?}");
    let again = NewTopic::new("orders", 3, TopicReplication::Fixed(1));
    let r = rt.block_on(admin.create_topics(&[again], &opts)).unwrap();
    assert_eq!(
        r[0].as_ref().unwrap_err().1,
        RDKafkaErrorCode::TopicAlreadyExists
    );
    let too_many = NewTopic::new("wide", 1, TopicReplication::Fixed(3));
    let r = rt
        .block_on(admin.create_topics(&[too_many], &opts))
        .unwrap();
    assert_eq!(
        r[0].as_ref().unwrap_err().1,
        RDKafkaErrorCode::InvalidReplicationFactor
    );
    let bad = NewTopic::new("badcfg", 1, TopicReplication::Fixed(1)).set("retention.ms", "soon");
    let r = rt.block_on(admin.create_topics(&[bad], &opts)).unwrap();
    assert_eq!(
        r[0].as_ref().unwrap_err().1,
        RDKafkaErrorCode::InvalidConfig
    );

    // Describe: the override and a default.
    assert_eq!(
        config_value(&rt, &admin, "orders", "retention.ms").as_deref(),
        Some("3600000")
    );
    assert_eq!(
        config_value(&rt, &admin, "orders", "segment.bytes").as_deref(),
        Some("1073741824")
    );

    // Alter (AlterConfigs replaces the overrides).
    let alter = AlterConfig::new(ResourceSpecifier::Topic("orders")).set("retention.ms", "7200000");
    let r = rt.block_on(admin.alter_configs(&[alter], &opts)).unwrap();
    assert!(r[0].is_ok(), "{r:?}");
    assert_eq!(
        config_value(&rt, &admin, "orders", "retention.ms").as_deref(),
        Some("7200000")
    );

    // Add partitions.
    let r = rt
        .block_on(admin.create_partitions(&[NewPartitions::new("orders", 5)], &opts))
        .unwrap();
    assert!(r[0].is_ok(), "{r:?}");
    let c: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", &broker.bootstrap)
        .set("group.id", "a")
        .create()
        .unwrap();
    let md = c.fetch_metadata(Some("orders"), TIMEOUT).unwrap();
    assert_eq!(md.topics()[0].partitions().len(), 5);

    // DeleteRecords moves the log start offset.
    let p: BaseProducer = ClientConfig::new()
        .set("bootstrap.servers", &broker.bootstrap)
        .create()
        .unwrap();
    for _ in 0..10 {
        p.send(
            BaseRecord::<(), str>::to("orders")
                .partition(0)
                .payload("x"),
        )
        .map_err(|(e, _)| e)
        .unwrap();
    }
    p.flush(TIMEOUT).unwrap();
    let mut tpl = TopicPartitionList::new();
    tpl.add_partition_offset("orders", 0, Offset::Offset(4))
        .unwrap();
    let r = rt.block_on(admin.delete_records(&tpl, &opts)).unwrap();
    assert_eq!(
        r.find_partition("orders", 0).unwrap().offset(),
        Offset::Offset(4)
    );
    assert_eq!(c.fetch_watermarks("orders", 0, TIMEOUT).unwrap(), (4, 10));

    // Delete the topic.
    let r = rt
        .block_on(admin.delete_topics(&["orders"], &opts))
        .unwrap();
    assert!(r[0].is_ok(), "{r:?}");
    std::thread::sleep(Duration::from_millis(200));
    let md = c.fetch_metadata(None, TIMEOUT).unwrap();
    assert!(
        md.topics().iter().all(|t| t.name() != "orders"),
        "deleted topic still listed"
    );
    let r = rt
        .block_on(admin.delete_topics(&["orders"], &opts))
        .unwrap();
    assert_eq!(
        r[0].as_ref().unwrap_err().1,
        RDKafkaErrorCode::UnknownTopicOrPartition
    );
    broker.stop();
}

#[test]
fn given_an_explicit_replica_assignment_topics_and_partitions_are_created_or_refused_as_kafka_does()
{
    let dir = tempfile::tempdir().unwrap();
    // Static defaults must not stand in for the -1s of an assignment.
    let defaults = ["--num-partitions", "2", "--default-replication-factor", "1"];
    let broker = Broker::start_with(dir.path(), free_port(), free_port(), &defaults);
    let (rt, admin, opts) = admin_client(&broker.bootstrap);
    let create = |topic: NewTopic| {
        let r = rt.block_on(admin.create_topics(&[topic], &opts)).unwrap();
        r.into_iter().next().unwrap().map_err(|e| e.1)
    };
    // On the wire librdkafka sends num_partitions = replication_factor =
    // -1 with the assignment, as every Kafka client does.
    let assigned: &[&[i32]] = &[&[1], &[1], &[1]];
    let topic = NewTopic::new("placed", 3, TopicReplication::Variable(assigned));
    assert_eq!(create(topic), Ok("placed".to_string()));
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", &broker.bootstrap)
        .create()
        .unwrap();
    let md = consumer.fetch_metadata(Some("placed"), TIMEOUT).unwrap();
    assert_eq!(md.topics()[0].partitions().len(), 3);
    // Refused as Kafka refuses: an unknown broker, a broker twice, unequal
    // replica lists.
    for bad in [&[&[7][..]][..], &[&[1, 1][..]], &[&[1][..], &[][..]]] {
        let topic = NewTopic::new(
            "misplaced",
            bad.len() as i32,
            TopicReplication::Variable(bad),
        );
        assert_eq!(
            create(topic),
            Err(RDKafkaErrorCode::InvalidReplicaAssignment),
            "{bad:?}"
        );
    }
    // New partitions with their assignment.
    let grow = NewPartitions::new("placed", 5).assign(&[&[1], &[1]]);
    let r = rt
        .block_on(admin.create_partitions(&[grow], &opts))
        .unwrap();
    assert!(r[0].is_ok(), "{r:?}");
    broker.stop();
}

#[test]
fn given_the_offsets_topic_admins_cannot_delete_it_grow_it_or_trim_it() {
    let dir = tempfile::tempdir().unwrap();
    let broker = Broker::start(dir.path());
    let (rt, admin, opts) = admin_client(&broker.bootstrap);
    let kept = NewTopic::new("kept", 1, TopicReplication::Fixed(1));
    let r = rt.block_on(admin.create_topics(&[kept], &opts)).unwrap();
    assert!(r[0].is_ok(), "{r:?}");
    // A commit makes the group coordinator create __consumer_offsets.
    let c: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", &broker.bootstrap)
        .set("group.id", "keeper")
        .create()
        .unwrap();
    let mut tpl = TopicPartitionList::new();
    tpl.add_partition_offset("kept", 0, Offset::Offset(0))
        .unwrap();
    c.commit(&tpl, rdkafka::consumer::CommitMode::Sync)
        .expect("commit");
    let offsets = "__consumer_offsets";
    let md = c.fetch_metadata(Some(offsets), TIMEOUT).unwrap();
    assert_eq!(md.topics()[0].partitions().len(), 50);

    let r = rt.block_on(admin.delete_topics(&[offsets], &opts)).unwrap();
    assert_eq!(r[0].as_ref().unwrap_err().1, RDKafkaErrorCode::InvalidTopic);
    let r = rt
        .block_on(admin.create_partitions(&[NewPartitions::new(offsets, 60)], &opts))
        .unwrap();
    assert_eq!(r[0].as_ref().unwrap_err().1, RDKafkaErrorCode::InvalidTopic);
    let mut trim = TopicPartitionList::new();
    trim.add_partition_offset(offsets, 0, Offset::End).unwrap();
    let r = rt.block_on(admin.delete_records(&trim, &opts)).unwrap();
    assert_eq!(
        r.find_partition(offsets, 0).unwrap().error(),
        Err(rdkafka::error::KafkaError::OffsetFetch(
            RDKafkaErrorCode::InvalidTopic
        ))
    );

    let md = c.fetch_metadata(Some(offsets), TIMEOUT).unwrap();
    assert_eq!(md.topics()[0].partitions().len(), 50, "still all there");
    let committed = c
        .committed_offsets(
            {
                let mut t = TopicPartitionList::new();
                t.add_partition("kept", 0);
                t
            },
            TIMEOUT,
        )
        .unwrap();
    assert_eq!(
        committed.find_partition("kept", 0).unwrap().offset(),
        Offset::Offset(0)
    );
    broker.stop();
}
