//! Nothing a client sends crashes or wedges the broker: 10,000 random and
//! mutated frames, then a normal client is served and the broker's memory
//! is back near where it was.

mod support;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use kafka_protocol::messages::join_group_request::JoinGroupRequestProtocol;
use kafka_protocol::messages::{
    ApiKey, ApiVersionsRequest, FetchRequest, GroupId, JoinGroupRequest, ListGroupsRequest,
    MetadataRequest, OffsetCommitRequest, OffsetFetchRequest, ProduceRequest, RequestKind,
};
use kafka_protocol::protocol::StrBytes;
use rdkafka::config::ClientConfig;
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
use support::{frame, Broker, TIMEOUT};

/// xorshift64*: deterministic, so a failure replays.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545F4914F6CDD1D)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
}

/// A `kB` figure of `/proc/PID/status`, e.g. `VmRSS` or `VmHWM` (peak).
fn status_kib(pid: u32, field: &str) -> u64 {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    s.lines()
        .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
        .and_then(|v| v.trim().trim_end_matches(" kB").trim().parse().ok())
        .unwrap()
}

fn rss_kib(pid: u32) -> u64 {
    status_kib(pid, "VmRSS")
}

fn valid_frames() -> Vec<Vec<u8>> {
    let mut v = vec![
        frame(
            ApiKey::ApiVersions,
            3,
            RequestKind::ApiVersions(ApiVersionsRequest::default()),
        ),
        frame(
            ApiKey::Metadata,
            9,
            RequestKind::Metadata(MetadataRequest::default()),
        ),
        frame(
            ApiKey::Fetch,
            11,
            RequestKind::Fetch(FetchRequest::default()),
        ),
    ];
    let mut produce = ProduceRequest::default();
    produce.acks = 1;
    v.push(frame(ApiKey::Produce, 7, RequestKind::Produce(produce)));
    // Group requests, so that mutations reach the group coordinator.
    let mut join = JoinGroupRequest::default();
    join.group_id = GroupId(StrBytes::from_static_str("fuzz-group"));
    join.session_timeout_ms = 10_000;
    join.protocol_type = StrBytes::from_static_str("consumer");
    join.protocols = vec![JoinGroupRequestProtocol::default()];
    v.push(frame(ApiKey::JoinGroup, 5, RequestKind::JoinGroup(join)));
    let mut commit = OffsetCommitRequest::default();
    commit.group_id = GroupId(StrBytes::from_static_str("fuzz-group"));
    commit.generation_id_or_member_epoch = -1;
    v.push(frame(
        ApiKey::OffsetCommit,
        8,
        RequestKind::OffsetCommit(commit),
    ));
    v.push(frame(
        ApiKey::OffsetFetch,
        8,
        RequestKind::OffsetFetch(OffsetFetchRequest::default()),
    ));
    v.push(frame(
        ApiKey::ListGroups,
        4,
        RequestKind::ListGroups(ListGroupsRequest::default()),
    ));
    v
}

/// Sends bytes on a fresh connection and reads whatever comes back, briefly.
fn throw(addr: &str, bytes: &[u8]) {
    let Ok(mut s) = TcpStream::connect(addr) else {
        return;
    };
    let _ = s.set_read_timeout(Some(Duration::from_millis(50)));
    let _ = s.write_all(bytes);
    let _ = s.shutdown(std::net::Shutdown::Write);
    let mut sink = [0u8; 4096];
    while let Ok(n) = s.read(&mut sink) {
        if n == 0 {
            break;
        }
    }
}

#[test]
fn given_10000_random_and_mutated_frames_the_broker_keeps_serving_in_bounded_memory() {
    let dir = tempfile::tempdir().unwrap();
    let broker = Broker::start(dir.path());
    let pid = broker.pid();
    let valid = valid_frames();
    let mut rng = Rng(0x5151_1ce5_0000_0001);
    // Warm up, then measure: the first requests allocate caches for good.
    for f in &valid {
        throw(&broker.bootstrap, f);
    }
    let before = rss_kib(pid);
    for i in 0..10_000u64 {
        let bytes: Vec<u8> = match i % 4 {
            // Pure noise, sometimes with a plausible size prefix.
            0 => {
                let len = rng.below(300) as usize;
                let mut b: Vec<u8> = (0..len).map(|_| rng.next() as u8).collect();
                if len >= 4 && rng.below(2) == 0 {
                    b[..4].copy_from_slice(&((len - 4) as i32).to_be_bytes());
                }
                b
            }
            // A valid request with bytes flipped.
            1 | 2 => {
                let mut b = valid[rng.below(valid.len() as u64) as usize].clone();
                for _ in 0..1 + rng.below(4) {
                    let at = 4 + rng.below((b.len() - 4) as u64) as usize;
                    b[at] = rng.next() as u8;
                }
                b
            }
            // Huge or negative sizes and counts: refused before allocating.
            _ => {
                let mut b = valid[rng.below(valid.len() as u64) as usize].clone();
                let at = rng.below((b.len() - 3) as u64) as usize;
                let v = [i32::MAX, i32::MIN, -1, 0x7fff_0000][rng.below(4) as usize];
                b[at..at + 4].copy_from_slice(&v.to_be_bytes());
                b
            }
        };
        throw(&broker.bootstrap, &bytes);
    }
    // Still serving a normal client.
    let p: BaseProducer = ClientConfig::new()
        .set("bootstrap.servers", &broker.bootstrap)
        .create()
        .unwrap();
    p.send(BaseRecord::<(), str>::to("after-fuzz").payload("still here"))
        .map_err(|(e, _)| e)
        .unwrap();
    p.flush(TIMEOUT).unwrap();
    assert_eq!(p.in_flight_count(), 0);
    let after = rss_kib(pid);
    assert!(
        after < before + 64 * 1024,
        "memory grew from {before} KiB to {after} KiB"
    );
    broker.stop();
}

fn peak_rss_kib(pid: u32) -> u64 {
    status_kib(pid, "VmHWM")
}

/// A 30,000-byte topic name the broker does not know, with 60,000
/// partitions, in a Fetch and a ListOffsets of about 1 MB each: copied per
/// partition that would be 1.8 GB. Each partition gets
/// UNKNOWN_TOPIC_OR_PARTITION and the broker's peak memory barely moves.
#[test]
fn given_a_long_unknown_topic_name_with_many_partitions_it_is_not_copied_per_partition() {
    use kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic};
    use kafka_protocol::messages::list_offsets_request::{ListOffsetsPartition, ListOffsetsTopic};
    use kafka_protocol::messages::{FetchRequest, ListOffsetsRequest, ResponseKind, TopicName};
    let dir = tempfile::tempdir().unwrap();
    let broker = Broker::start(dir.path());
    let pid = broker.pid();
    let before = peak_rss_kib(pid);
    let name = || TopicName(StrBytes::from_string("x".repeat(30_000)));
    let mut s = TcpStream::connect(&broker.bootstrap).unwrap();
    s.set_read_timeout(Some(TIMEOUT)).unwrap();

    let mut t = FetchTopic::default();
    t.topic = name();
    t.partitions = (0..60_000)
        .map(|i| {
            let mut p = FetchPartition::default();
            p.partition = i;
            p
        })
        .collect();
    let mut fetch = FetchRequest::default();
    fetch.max_wait_ms = 0;
    fetch.topics = vec![t];
    let ResponseKind::Fetch(r) = support::call(&mut s, ApiKey::Fetch, 4, RequestKind::Fetch(fetch))
    else {
        panic!("not a Fetch response")
    };
    let codes: Vec<i16> = r
        .responses
        .iter()
        .flat_map(|t| t.partitions.iter().map(|p| p.error_code))
        .collect();
    assert_eq!(codes.len(), 60_000);
    assert!(codes.iter().all(|c| *c == 3), "UNKNOWN_TOPIC_OR_PARTITION");

    let mut t = ListOffsetsTopic::default();
    t.name = name();
    t.partitions = (0..60_000)
        .map(|i| {
            let mut p = ListOffsetsPartition::default();
            p.partition_index = i;
            p
        })
        .collect();
    let mut list = ListOffsetsRequest::default();
    list.topics = vec![t];
    let ResponseKind::ListOffsets(r) = support::call(
        &mut s,
        ApiKey::ListOffsets,
        1,
        RequestKind::ListOffsets(list),
    ) else {
        panic!("not a ListOffsets response")
    };
    assert!(r.topics[0].partitions.iter().all(|p| p.error_code == 3));
    let after = peak_rss_kib(pid);
    assert!(
        after < before + 256 * 1024,
        "peak memory grew from {before} KiB to {after} KiB"
    );
    broker.stop();
}
