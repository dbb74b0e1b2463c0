//! Partitions at scale, against the real binary: a topic's partitions
//! exist on disk when CreateTopics answers, and a broker whose segment
//! descriptor budget is far below what its partitions' files would hold
//! still takes and serves a record on every partition.

mod support;

use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
use support::{create_topic, free_port, Broker, TIMEOUT};

const PARTITIONS: i32 = 300;
/// Each of the 2 shards keeps at most 64 segment descriptors; without the
/// budget each partition that took a record would hold 4.
const FDS_MAX: usize = 128;

fn open_fds(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .expect("/proc")
        .count()
}

#[test]
fn create_topics_answers_once_partitions_exist_and_descriptors_stay_within_the_budget() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let fds_max = format!("log.segment.fds.max={FDS_MAX}");
    let broker = Broker::start_with(
        &data,
        free_port(),
        free_port(),
        &["--shards", "2", "--override", &fds_max],
    );
    let idle = open_fds(broker.pid());

    create_topic(&broker.bootstrap, "wide", PARTITIONS);
    // No wait: the answer came after the files were made durable.
    for i in 0..PARTITIONS {
        let log = data.join(format!("wide-{i}/00000000000000000000.log"));
        assert!(log.exists(), "{} when CreateTopics answered", log.display());
    }
    let created = open_fds(broker.pid());
    assert!(
        created < idle + 32,
        "{created} descriptors open after creating {PARTITIONS} partitions ({idle} before)"
    );

    let p: BaseProducer = ClientConfig::new()
        .set("bootstrap.servers", &broker.bootstrap)
        .set("acks", "all")
        .create()
        .unwrap();
    for i in 0..PARTITIONS {
        p.send(BaseRecord::<(), str>::to("wide").partition(i).payload("x"))
            .map_err(|(e, _)| e)
            .unwrap();
    }
    p.flush(TIMEOUT).unwrap();
    let c: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", &broker.bootstrap)
        .set("group.id", "scale")
        .create()
        .unwrap();
    for i in 0..PARTITIONS {
        assert_eq!(
            c.fetch_watermarks("wide", i, TIMEOUT).unwrap(),
            (0, 1),
            "partition {i}"
        );
    }
    let used = open_fds(broker.pid());
    assert!(
        used < idle + FDS_MAX + 64,
        "{used} descriptors open with a budget of {FDS_MAX} ({idle} before)"
    );
}
