//! The protocol server's data path, driven over raw sockets: pipelined
//! requests answered in order with produces applied in order, long polls
//! woken by produces, and fetches of file data sent with sendfile.

mod support;

use std::io::Write;
use std::net::TcpStream;
use std::time::{Duration, Instant};

use bytes::Bytes;
use kafka_protocol::messages::{
    ApiKey, FetchResponse, MetadataRequest, ProduceResponse, RequestKind,
};
use kafka_protocol::protocol::Decodable;
use sluice_engine::TopicPartition;
use support::raw::{batch, call, create, fetch, fetched_values, frame, produce, read_response};
use support::Broker;

const PRODUCE_V: i16 = 9;
const FETCH_V: i16 = 11;
const METADATA_V: i16 = 9;

fn connect(broker: &Broker) -> TcpStream {
    let s = TcpStream::connect(&broker.bootstrap).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
    s
}

/// Reads the whole partition from `from` with plain fetches.
fn read_all(s: &mut TcpStream, name: &str, from: i64, count: usize) -> Vec<(i64, Vec<u8>)> {
    let mut out = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(60);
    while out.len() < count {
        let next = out.last().map_or(from, |(o, _)| o + 1);
        let req = fetch(name, 0, next, 500, 1 << 20);
        let body = call(s, ApiKey::Fetch, FETCH_V, RequestKind::Fetch(req));
        let resp = FetchResponse::decode(&mut body.clone(), FETCH_V).unwrap();
        assert_eq!(resp.responses[0].partitions[0].error_code, 0);
        out.extend(fetched_values(&resp));
        assert!(Instant::now() < deadline, "read {} of {count}", out.len());
    }
    out
}

/// Offsets 1..=count of `name` hold "<prefix>0", "<prefix>1", ... in order.
fn assert_stored_in_order(s: &mut TcpStream, name: &str, prefix: &str, count: usize) {
    let values = read_all(s, name, 1, count);
    for (i, (offset, v)) in values.iter().enumerate() {
        assert_eq!(*offset, i as i64 + 1);
        assert_eq!(v, format!("{prefix}{i}").as_bytes());
    }
}

#[test]
fn given_pipelined_produces_mixed_with_other_requests_responses_and_appends_follow_request_order() {
    let dir = tempfile::tempdir().unwrap();
    // Two shards and a topic owned by each: whichever shard serves the
    // connection, one topic is appended to in place and one across shards.
    let broker = Broker::start_with(
        dir.path(),
        support::free_port(),
        support::free_port(),
        &["--shards", "2"],
    );
    let on_shard = |shard: usize| {
        (0..)
            .map(|i| format!("pipe-{i}"))
            .find(|t| sluice_net::owner(&TopicPartition::new(t.clone(), 0), 2) == shard)
            .unwrap()
    };
    let topics = [on_shard(0), on_shard(1)];
    let mut s = connect(&broker);
    for t in &topics {
        create(&mut s, t);
    }
    create(&mut s, "idle");
    let n = 400;
    // (correlation, what it is); every request goes out before any answer
    // is read, from another thread so neither side's buffers fill up.
    let mut plan = Vec::new();
    let mut bytes = Vec::new();
    let mut produced = [0usize; 2];
    for c in 0..n {
        let (key, version, body, to) = match c % 20 {
            5 => (
                ApiKey::Metadata,
                METADATA_V,
                RequestKind::Metadata(MetadataRequest::default()),
                None,
            ),
            // A long poll at the end of an idle log, among produces.
            13 => (
                ApiKey::Fetch,
                FETCH_V,
                RequestKind::Fetch(fetch("idle", 0, 1, 300, 1 << 20)),
                None,
            ),
            _ => {
                let t = (c as usize / 3) % 2;
                let value = format!("m{}", produced[t]).into_bytes();
                produced[t] += 1;
                let body = produce(&topics[t], 0, -1, batch(&[value]));
                (ApiKey::Produce, PRODUCE_V, body, Some(t))
            }
        };
        plan.push((c, key, version, to));
        bytes.extend(frame(key, version, c, body));
    }
    let mut w = s.try_clone().unwrap();
    let writer = std::thread::spawn(move || w.write_all(&bytes).unwrap());
    let mut bases = [Vec::new(), Vec::new()];
    for (c, key, version, to) in &plan {
        let (got, body) = read_response(&mut s, *key, *version);
        assert_eq!(got, *c, "responses out of request order");
        if let Some(t) = to {
            let r = ProduceResponse::decode(&mut body.clone(), *version).unwrap();
            let p = &r.responses[0].partition_responses[0];
            assert_eq!(p.error_code, 0);
            bases[*t].push(p.base_offset);
        }
    }
    writer.join().unwrap();
    // Offset 0 holds "first"; the pipelined produces follow in request order.
    for t in 0..2 {
        let want: Vec<i64> = (1..=produced[t] as i64).collect();
        assert_eq!(bases[t], want, "{}", topics[t]);
        assert_stored_in_order(&mut s, &topics[t], "m", produced[t]);
    }
    broker.stop();
}

#[test]
fn given_acks_0_produces_in_a_pipeline_they_are_stored_in_request_order_and_unanswered() {
    let dir = tempfile::tempdir().unwrap();
    let broker = Broker::start(dir.path());
    let mut s = connect(&broker);
    create(&mut s, "fire");
    let n = 300;
    let mut bytes = Vec::new();
    for c in 0..n {
        let value = format!("f{c}").into_bytes();
        bytes.extend(frame(
            ApiKey::Produce,
            PRODUCE_V,
            c,
            produce("fire", 0, 0, batch(&[value])),
        ));
    }
    bytes.extend(frame(
        ApiKey::Metadata,
        METADATA_V,
        n,
        RequestKind::Metadata(MetadataRequest::default()),
    ));
    s.write_all(&bytes).unwrap();
    // The first answer is the Metadata's: acks=0 produces get none.
    let (got, _) = read_response(&mut s, ApiKey::Metadata, METADATA_V);
    assert_eq!(got, n);
    assert_stored_in_order(&mut s, "fire", "f", n as usize);
    broker.stop();
}

#[test]
fn given_a_long_poll_a_produce_wakes_it_and_an_idle_one_waits_its_max_wait() {
    let dir = tempfile::tempdir().unwrap();
    let broker = Broker::start(dir.path());
    let mut s = connect(&broker);
    create(&mut s, "poll");
    // Waits at the end of the log (offset 1) for up to 10 s.
    let mut waiter = connect(&broker);
    let started = Instant::now();
    waiter
        .write_all(&frame(
            ApiKey::Fetch,
            FETCH_V,
            7,
            RequestKind::Fetch(fetch("poll", 0, 1, 10_000, 1 << 20)),
        ))
        .unwrap();
    std::thread::sleep(Duration::from_millis(300));
    let body = call(
        &mut s,
        ApiKey::Produce,
        PRODUCE_V,
        produce("poll", 0, -1, batch(&[b"wake".to_vec()])),
    );
    let r = ProduceResponse::decode(&mut body.clone(), PRODUCE_V).unwrap();
    assert_eq!(r.responses[0].partition_responses[0].base_offset, 1);
    let (c, body) = read_response(&mut waiter, ApiKey::Fetch, FETCH_V);
    let waited = started.elapsed();
    assert_eq!(c, 7);
    let resp = FetchResponse::decode(&mut body.clone(), FETCH_V).unwrap();
    assert_eq!(fetched_values(&resp), vec![(1, b"wake".to_vec())]);
    // Liveness, not speed: woken by the produce, well before the max wait.
    assert!(waited < Duration::from_secs(8), "woke after {waited:?}");

    // Nothing arrives: the answer comes at the max wait, empty.
    let started = Instant::now();
    let body = call(
        &mut waiter,
        ApiKey::Fetch,
        FETCH_V,
        RequestKind::Fetch(fetch("poll", 0, 2, 1_000, 1 << 20)),
    );
    let waited = started.elapsed();
    let resp = FetchResponse::decode(&mut body.clone(), FETCH_V).unwrap();
    assert!(fetched_values(&resp).is_empty());
    assert_eq!(resp.responses[0].partitions[0].high_watermark, 2);
    assert!(
        waited >= Duration::from_millis(900),
        "answered after {waited:?}"
    );
    broker.stop();
}

#[test]
fn given_a_backlog_read_from_files_a_slow_reader_gets_every_byte_in_one_large_response() {
    let dir = tempfile::tempdir().unwrap();
    let (port, cport) = (support::free_port(), support::free_port());
    let broker = Broker::start_on(dir.path(), port, cport);
    let mut s = connect(&broker);
    create(&mut s, "backlog");
    // About 12 MiB in 64 KiB batches.
    let values: Vec<Vec<u8>> = (0..192usize)
        .map(|i| (0..64 * 1024).map(|j| (i * 31 + j) as u8).collect())
        .collect();
    for chunk in values.chunks(4) {
        let body = call(
            &mut s,
            ApiKey::Produce,
            PRODUCE_V,
            produce("backlog", 0, -1, batch(&[chunk.concat()])),
        );
        let r = ProduceResponse::decode(&mut body.clone(), PRODUCE_V).unwrap();
        assert_eq!(r.responses[0].partition_responses[0].error_code, 0);
    }
    drop(s);
    // After a restart the tail cache is empty: reads come from the files.
    broker.stop();
    let broker = Broker::start_on(dir.path(), port, cport);
    let mut s = connect(&broker);
    s.write_all(&frame(
        ApiKey::Fetch,
        FETCH_V,
        3,
        RequestKind::Fetch(fetch("backlog", 0, 1, 500, 32 << 20)),
    ))
    .unwrap();
    // Read nothing for a while: the socket fills, sendfile must wait.
    std::thread::sleep(Duration::from_millis(500));
    let (c, body): (i32, Bytes) = read_response(&mut s, ApiKey::Fetch, FETCH_V);
    assert_eq!(c, 3);
    let resp = FetchResponse::decode(&mut body.clone(), FETCH_V).unwrap();
    let got = fetched_values(&resp);
    let want: Vec<(i64, Vec<u8>)> = values
        .chunks(4)
        .enumerate()
        .map(|(i, c)| (i as i64 + 1, c.concat()))
        .collect();
    assert_eq!(got.len(), want.len());
    assert!(got == want, "bytes differ");
    broker.stop();
}

#[test]
fn given_connections_closed_mid_pipeline_their_request_bytes_come_back() {
    let dir = tempfile::tempdir().unwrap();
    // Room for about ten 100 KiB requests across the broker's shards.
    let broker = Broker::start_with(
        dir.path(),
        support::free_port(),
        support::free_port(),
        &["--queued-max-request-bytes", "1048576"],
    );
    let mut s = connect(&broker);
    create(&mut s, "abandon");
    create(&mut s, "quiet");
    let big = batch(&[vec![7u8; 100 * 1024]]);
    for _ in 0..30 {
        // Produces and long polls, never read, then the connection drops.
        let mut bytes = Vec::new();
        for c in 0..24 {
            let (key, version, body) = if c % 6 == 5 {
                let f = fetch("quiet", 0, 1, 1_000, 1 << 20);
                (ApiKey::Fetch, FETCH_V, RequestKind::Fetch(f))
            } else {
                let p = produce("abandon", 0, -1, big.clone());
                (ApiKey::Produce, PRODUCE_V, p)
            };
            bytes.extend(frame(key, version, c, body));
        }
        let mut gone = connect(&broker);
        gone.set_write_timeout(Some(Duration::from_millis(200)))
            .unwrap();
        let _ = gone.write_all(&bytes);
        drop(gone);
    }
    // All the room must come back: a fresh client's large requests are
    // served (a leak would leave them waiting for room forever).
    let mut fresh = connect(&broker);
    fresh
        .set_read_timeout(Some(Duration::from_secs(20)))
        .unwrap();
    for _ in 0..8 {
        let body = call(
            &mut fresh,
            ApiKey::Produce,
            PRODUCE_V,
            produce("abandon", 0, -1, big.clone()),
        );
        let r = ProduceResponse::decode(&mut body.clone(), PRODUCE_V).unwrap();
        assert_eq!(r.responses[0].partition_responses[0].error_code, 0);
    }
    broker.stop();
}

#[test]
fn given_a_bad_request_behind_good_ones_the_good_ones_are_answered_then_the_connection_closes() {
    let dir = tempfile::tempdir().unwrap();
    let broker = Broker::start(dir.path());
    let mut s = connect(&broker);
    create(&mut s, "before-bad");
    let mut bytes = Vec::new();
    for c in 0..3 {
        let body = produce("before-bad", 0, -1, batch(&[b"ok".to_vec()]));
        bytes.extend(frame(ApiKey::Produce, PRODUCE_V, c, body));
    }
    // An unknown API key: not decodable, the connection must close.
    bytes.extend([0, 0, 0, 8, 0x7f, 0x7f, 0, 0, 0, 0, 0, 9]);
    s.write_all(&bytes).unwrap();
    for c in 0..3 {
        let (got, body) = read_response(&mut s, ApiKey::Produce, PRODUCE_V);
        assert_eq!(got, c);
        let r = ProduceResponse::decode(&mut body.clone(), PRODUCE_V).unwrap();
        assert_eq!(
            r.responses[0].partition_responses[0].base_offset,
            1 + c as i64
        );
    }
    let mut rest = Vec::new();
    let read = std::io::Read::read_to_end(&mut s, &mut rest);
    assert!(
        rest.is_empty() && read.as_ref().is_ok_and(|n| *n == 0),
        "{read:?}, {} bytes",
        rest.len()
    );
    broker.stop();
}

/// A partition named twice in one produce is appended once: the second
/// naming is refused with INVALID_REQUEST.
#[test]
fn given_a_produce_naming_a_partition_twice_the_second_is_refused_and_nothing_is_doubled() {
    let dir = tempfile::tempdir().unwrap();
    let broker = Broker::start(dir.path());
    let mut s = connect(&broker);
    create(&mut s, "twice");
    let RequestKind::Produce(mut req) = produce("twice", 0, -1, batch(&[b"a".to_vec()])) else {
        unreachable!()
    };
    let again = req.topic_data[0].partition_data[0].clone();
    req.topic_data[0].partition_data.push(again);
    let body = call(&mut s, ApiKey::Produce, 9, RequestKind::Produce(req));
    let resp = ProduceResponse::decode(&mut body.clone(), 9).unwrap();
    let codes: Vec<i16> = resp.responses[0]
        .partition_responses
        .iter()
        .map(|p| p.error_code)
        .collect();
    assert_eq!(codes, vec![0, 42], "INVALID_REQUEST for the repetition");
    // "first" from create, then one "a".
    let values = read_all(&mut s, "twice", 0, 2);
    assert_eq!(values.len(), 2, "{values:?}");
    broker.stop();
}
