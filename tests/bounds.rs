//! Memory follows from configuration, not from what clients ask: a fetch
//! asking for 2 GiB gets at most `fetch.max.bytes`.

mod support;

use std::io::{Read, Write};
use std::net::TcpStream;

use bytes::{Buf, Bytes, BytesMut};
use kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic};
use kafka_protocol::messages::{
    ApiKey, FetchRequest, FetchResponse, RequestHeader, ResponseHeader, TopicName,
};
use kafka_protocol::protocol::{Decodable, Encodable, StrBytes};
use rdkafka::config::ClientConfig;
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
use support::{free_port, Broker, TIMEOUT};

/// Produces `count` values of 1000 bytes to partition 0 of `topic`
/// (`linger.ms=5`, plus `extra` settings) and waits for all of them.
fn fill(bootstrap: &str, topic: &str, count: usize, extra: &[(&str, &str)]) {
    let mut config = ClientConfig::new();
    config
        .set("bootstrap.servers", bootstrap)
        .set("linger.ms", "5");
    for (k, v) in extra {
        config.set(*k, *v);
    }
    let p: BaseProducer = config.create().unwrap();
    let value = vec![b'v'; 1000];
    for _ in 0..count {
        while p
            .send(
                BaseRecord::<(), [u8]>::to(topic)
                    .partition(0)
                    .payload(&value[..]),
            )
            .is_err()
        {
            p.poll(std::time::Duration::from_millis(5));
        }
    }
    p.flush(TIMEOUT).unwrap();
}

#[test]
fn given_a_fetch_asking_for_2gib_the_response_is_bounded_by_fetch_max_bytes() {
    let dir = tempfile::tempdir().unwrap();
    let broker = Broker::start_with(
        dir.path(),
        free_port(),
        free_port(),
        &["--fetch-max-bytes", "100000"],
    );
    // 2 MB in batches of about 16 KiB.
    fill(&broker.bootstrap, "big", 2000, &[("batch.size", "16384")]);

    let version = 11;
    let mut partition = FetchPartition::default();
    partition.partition = 0;
    partition.fetch_offset = 0;
    partition.partition_max_bytes = i32::MAX;
    let mut topic = FetchTopic::default();
    topic.topic = TopicName(StrBytes::from_static_str("big"));
    topic.partitions = vec![partition];
    let mut req = FetchRequest::default();
    req.max_wait_ms = 100;
    req.max_bytes = i32::MAX;
    req.topics = vec![topic];
    let mut header = RequestHeader::default();
    header.request_api_key = ApiKey::Fetch as i16;
    header.request_api_version = version;
    header.correlation_id = 1;
    let mut body = BytesMut::new();
    header
        .encode(&mut body, ApiKey::Fetch.request_header_version(version))
        .unwrap();
    req.encode(&mut body, version).unwrap();
    let mut s = TcpStream::connect(&broker.bootstrap).unwrap();
    s.write_all(&(body.len() as i32).to_be_bytes()).unwrap();
    s.write_all(&body).unwrap();
    let mut size = [0u8; 4];
    s.read_exact(&mut size).unwrap();
    let mut frame = vec![0u8; i32::from_be_bytes(size) as usize];
    s.read_exact(&mut frame).unwrap();
    let mut frame = Bytes::from(frame);
    ResponseHeader::decode(&mut frame, ApiKey::Fetch.response_header_version(version)).unwrap();
    let resp = FetchResponse::decode(&mut frame, version).unwrap();
    let records = resp.responses[0].partitions[0]
        .records
        .clone()
        .unwrap_or_default();
    assert!(!records.is_empty());
    // At most fetch.max.bytes, plus at most one batch that alone was larger.
    assert!(records.len() <= 100_000 + 20_000, "{} bytes", records.len());
    assert_eq!(frame.remaining(), 0);
    broker.stop();
}

/// A new connection to `bootstrap` gets an ApiVersions answer (within the
/// tests' read timeout).
fn assert_served(bootstrap: &str) {
    use kafka_protocol::messages::{ApiVersionsRequest, RequestKind, ResponseKind};
    let mut other = TcpStream::connect(bootstrap).unwrap();
    other.set_read_timeout(Some(TIMEOUT)).unwrap();
    let answer = support::call(
        &mut other,
        ApiKey::ApiVersions,
        3,
        RequestKind::ApiVersions(ApiVersionsRequest::default()),
    );
    assert!(matches!(answer, ResponseKind::ApiVersions(_)));
}

/// A client that asks for far more than the socket buffers hold and never
/// reads must not stop its shard: the only shard here keeps serving other
/// clients, and the stalled connection is closed once it has made no
/// progress for `connections.max.idle.ms`.
#[test]
fn given_a_client_that_stops_reading_its_shard_serves_others_and_closes_it_when_idle() {
    use kafka_protocol::messages::RequestKind;
    let dir = tempfile::tempdir().unwrap();
    let broker = Broker::start_with(
        dir.path(),
        free_port(),
        free_port(),
        &["--shards", "1", "--connections-max-idle-ms", "1000"],
    );
    fill(&broker.bootstrap, "big", 4000, &[]);

    // 16 fetches of the whole 4 MB, pipelined, never read: 64 MB of
    // responses against a few MB of socket buffers.
    let mut stalled = TcpStream::connect(&broker.bootstrap).unwrap();
    for correlation in 0..16 {
        let fetch = support::raw::fetch("big", 0, 0, 0, 64 << 20);
        stalled
            .write_all(&support::raw::frame(
                ApiKey::Fetch,
                11,
                correlation,
                RequestKind::Fetch(fetch),
            ))
            .unwrap();
    }
    std::thread::sleep(std::time::Duration::from_millis(300));
    assert_served(&broker.bootstrap);

    // Past the idle limit the broker gives up on the stalled connection:
    // reading it ends before all 64 MB came.
    std::thread::sleep(std::time::Duration::from_millis(2_500));
    stalled.set_read_timeout(Some(TIMEOUT)).unwrap();
    let mut got = 0usize;
    let mut buf = vec![0u8; 1 << 20];
    loop {
        match stalled.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => got += n,
        }
    }
    assert!(got < 16 * 4_000_000, "read {got} bytes: never closed");
    broker.stop();
}

/// A client that declares a large request and sends its body a byte at a
/// time holds that much of the shard's request budget; once the body has
/// not arrived within `connections.max.idle.ms` the connection is closed
/// and the budget is free for others.
#[test]
fn given_a_client_trickling_a_request_body_its_budget_comes_back_after_the_idle_limit() {
    let dir = tempfile::tempdir().unwrap();
    let broker = Broker::start_with(
        dir.path(),
        free_port(),
        free_port(),
        &[
            "--shards",
            "1",
            "--connections-max-idle-ms",
            "1000",
            "--queued-max-request-bytes",
            "1048576",
        ],
    );
    let mut trickler = TcpStream::connect(&broker.bootstrap).unwrap();
    trickler.write_all(&1_048_576i32.to_be_bytes()).unwrap();
    let t = trickler.try_clone().unwrap();
    let dripping = std::thread::spawn(move || {
        let mut t = t;
        // Far longer than the idle limit, one byte at a time; stops when
        // the broker closes the connection.
        for _ in 0..100 {
            if t.write_all(b"x").is_err() {
                return true;
            }
            std::thread::sleep(std::time::Duration::from_millis(100));
        }
        false
    });
    std::thread::sleep(std::time::Duration::from_millis(200));
    // This request needs budget the trickler holds: it is answered once
    // the trickler is cut off.
    assert_served(&broker.bootstrap);
    assert!(dripping.join().unwrap(), "the trickler was never cut off");
    broker.stop();
}
