//! Incremental fetch sessions (KIP-227) over the raw protocol: a full
//! fetch makes a session, incremental ones carry only what changed,
//! forgotten partitions leave it, and wrong ids or epochs are refused.

mod support;

use std::net::TcpStream;
use std::time::Duration;

use kafka_protocol::messages::fetch_request::ForgottenTopic;
use kafka_protocol::messages::{
    ApiKey, FetchRequest, FetchResponse, MetadataRequest, MetadataResponse, ProduceResponse,
    RequestKind,
};
use kafka_protocol::protocol::Decodable;
use support::raw::{batch, call, create, fetch, produce, topic};
use support::Broker;

const FETCH_V: i16 = 11;
const PRODUCE_V: i16 = 9;
const FETCH_SESSION_ID_NOT_FOUND: i16 = 70;
const INVALID_FETCH_SESSION_EPOCH: i16 = 71;
const UNKNOWN_TOPIC_ID: i16 = 100;

fn send_one(s: &mut TcpStream, name: &str, value: &[u8]) -> i16 {
    let body = call(
        s,
        ApiKey::Produce,
        PRODUCE_V,
        produce(name, 0, -1, batch(&[value.to_vec()])),
    );
    let r = ProduceResponse::decode(&mut body.clone(), PRODUCE_V).unwrap();
    r.responses[0].partition_responses[0].error_code
}

/// A fetch of partition 0 of each `(topic, offset)`, in a session.
fn session_fetch(
    s: &mut TcpStream,
    id: i32,
    epoch: i32,
    parts: &[(&str, i64)],
    forget: &[&str],
) -> FetchResponse {
    let mut req = FetchRequest::default();
    for (name, offset) in parts {
        let one = fetch(name, 0, *offset, 0, 1 << 20);
        req.topics.extend(one.topics);
    }
    req.replica_id = kafka_protocol::messages::BrokerId(-1);
    req.max_wait_ms = 0;
    req.min_bytes = 0;
    req.max_bytes = 1 << 20;
    req.session_id = id;
    req.session_epoch = epoch;
    req.forgotten_topics_data = forget
        .iter()
        .map(|name| {
            let mut f = ForgottenTopic::default();
            f.topic = topic(name);
            f.partitions = vec![0];
            f
        })
        .collect();
    let body = call(s, ApiKey::Fetch, FETCH_V, RequestKind::Fetch(req));
    FetchResponse::decode(&mut body.clone(), FETCH_V).unwrap()
}

/// The topics an answer names, in order.
fn named(r: &FetchResponse) -> Vec<String> {
    r.responses.iter().map(|t| t.topic.0.to_string()).collect()
}

#[test]
fn given_a_session_incremental_fetches_carry_only_changes_and_bad_ids_or_epochs_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let broker = Broker::start(dir.path());
    let mut s = TcpStream::connect(&broker.bootstrap).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
    // Two one-partition topics, each holding "first" at offset 0.
    create(&mut s, "sa");
    create(&mut s, "sb");

    // Full fetch: a new session, every partition in the answer.
    let full = session_fetch(&mut s, 0, 0, &[("sa", 0), ("sb", 0)], &[]);
    assert_eq!(full.error_code, 0);
    let id = full.session_id;
    assert_ne!(id, 0, "no session was made");
    assert_eq!(named(&full), ["sa", "sb"]);

    // Incremental, offsets moved past the data, nothing new: empty.
    let r = session_fetch(&mut s, id, 1, &[("sa", 1), ("sb", 1)], &[]);
    assert_eq!((r.error_code, r.session_id), (0, id));
    assert!(
        r.responses.is_empty(),
        "unchanged partitions sent: {:?}",
        named(&r)
    );

    // New data in sa: only sa comes back, with it.
    assert_eq!(send_one(&mut s, "sa", b"second"), 0);
    let r = session_fetch(&mut s, id, 2, &[], &[]);
    assert_eq!(named(&r), ["sa"]);
    assert_eq!(r.responses[0].partitions[0].high_watermark, 2);
    assert!(!r.responses[0].partitions[0]
        .records
        .clone()
        .unwrap_or_default()
        .is_empty());

    // Forget sb; new data in both: only sa is answered.
    let r = session_fetch(&mut s, id, 3, &[("sa", 2)], &["sb"]);
    assert!(r.responses.is_empty(), "{:?}", named(&r));
    assert_eq!(send_one(&mut s, "sa", b"third"), 0);
    assert_eq!(send_one(&mut s, "sb", b"second"), 0);
    let r = session_fetch(&mut s, id, 4, &[], &[]);
    assert_eq!(named(&r), ["sa"]);

    // A stale epoch, and an id this broker never gave.
    let r = session_fetch(&mut s, id, 4, &[], &[]);
    assert_eq!(
        (r.error_code, r.session_id),
        (INVALID_FETCH_SESSION_EPOCH, 0)
    );
    assert!(r.responses.is_empty());
    let r = session_fetch(&mut s, id ^ 0x7fff_ff00, 5, &[], &[]);
    assert_eq!(r.error_code, FETCH_SESSION_ID_NOT_FOUND);

    // The session still works at the epoch it expects; closing it (epoch
    // -1) answers in full without a session.
    let r = session_fetch(&mut s, id, 5, &[], &[]);
    assert_eq!(r.error_code, 0);
    let r = session_fetch(&mut s, id, -1, &[("sa", 0), ("sb", 0)], &[]);
    assert_eq!((r.error_code, r.session_id), (0, 0));
    assert_eq!(named(&r), ["sa", "sb"]);
    let r = session_fetch(&mut s, id, 6, &[], &[]);
    assert_eq!(r.error_code, FETCH_SESSION_ID_NOT_FOUND);
    broker.stop();
}

#[test]
fn given_fetch_v13_topics_are_named_by_id_and_an_unknown_id_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let broker = Broker::start(dir.path());
    let mut s = TcpStream::connect(&broker.bootstrap).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
    create(&mut s, "byid");
    let mut all = MetadataRequest::default();
    all.topics = None;
    let body = call(&mut s, ApiKey::Metadata, 12, RequestKind::Metadata(all));
    let meta = MetadataResponse::decode(&mut body.clone(), 12).unwrap();
    let id = meta
        .topics
        .iter()
        .find(|t| t.name.as_ref().is_some_and(|n| n.0.as_str() == "byid"))
        .unwrap()
        .topic_id;
    assert!(!id.is_nil());
    let version = 16;
    let mut req = fetch("", 0, 0, 0, 1 << 20);
    req.topics[0].topic_id = id;
    let mut unknown = fetch("", 0, 0, 0, 1 << 20).topics.remove(0);
    unknown.topic_id = uuid::Uuid::from_u128(42);
    req.topics.push(unknown);
    let body = call(&mut s, ApiKey::Fetch, version, RequestKind::Fetch(req));
    let r = FetchResponse::decode(&mut body.clone(), version).unwrap();
    assert_eq!(r.responses.len(), 2);
    assert_eq!(r.responses[0].topic_id, id);
    assert_eq!(r.responses[0].partitions[0].error_code, 0);
    assert_eq!(
        support::raw::fetched_values(&r),
        vec![(0, b"first".to_vec())]
    );
    assert_eq!(r.responses[1].topic_id, uuid::Uuid::from_u128(42));
    assert_eq!(r.responses[1].partitions[0].error_code, UNKNOWN_TOPIC_ID);
    broker.stop();
}
