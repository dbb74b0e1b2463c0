//! Produce and fetch throughput of a running broker over the Kafka
//! protocol, on one connection, with exact control of requests in flight.
//!
//! ```text
//! sluice-kafka-load produce <addr> <topic> <total MiB> <records per request> <in flight>
//! sluice-kafka-load fetch   <addr> <topic> <partition max bytes>
//! sluice-kafka-load idle    <addr> <topic> <connections> <seconds>
//! ```
//!
//! * produce: 1 KiB records (uncompressed v2 batches), acks=all, to
//!   partition 0; keeps `<in flight>` requests unanswered on one
//!   connection. Prints MiB/s of batches acknowledged, and the latency of
//!   each request (send to answer).
//! * fetch: reads partition 0 from offset 0 to the high watermark it had
//!   when the run started, one fetch at a time. Prints MiB/s of record
//!   bytes received.
//! * idle: `<connections>` consumers long-poll partition 0 at its end
//!   (max_wait 500 ms, min_bytes 1) for `<seconds>`, as idle consumers do;
//!   measure the broker's CPU time meanwhile (`kafka-load.sh` does).
//!
//! The topic must exist (or be auto-created by the first produce).

use std::io::{Read, Write};
use std::net::TcpStream;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use bytes::{Buf, BufMut, Bytes, BytesMut};
use kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic};
use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
use kafka_protocol::messages::{
    ApiKey, BrokerId, FetchRequest, FetchResponse, ProduceRequest, ProduceResponse, RequestHeader,
    ResponseHeader, TopicName,
};
use kafka_protocol::protocol::{Decodable, Encodable, StrBytes};

const PRODUCE_V: i16 = 9;
const FETCH_V: i16 = 11;
const RECORD_BYTES: usize = 1024;

fn usage() -> ! {
    eprintln!(
        "usage: sluice-kafka-load produce <addr> <topic> <total MiB> <records per request> <in flight>\n       sluice-kafka-load fetch <addr> <topic> <partition max bytes>\n       sluice-kafka-load idle <addr> <topic> <connections> <seconds>"
    );
    std::process::exit(2)
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let arg = |i: usize| args.get(i).cloned().unwrap_or_else(|| usage());
    let num = |i: usize| arg(i).parse::<usize>().unwrap_or_else(|_| usage());
    match arg(1).as_str() {
        "produce" => produce(&arg(2), &arg(3), num(4), num(5), num(6)),
        "fetch" => fetch(&arg(2), &arg(3), num(4)),
        "idle" => idle(&arg(2), &arg(3), num(4), num(5)),
        _ => usage(),
    }
}

fn frame(key: ApiKey, version: i16, correlation: i32, body: impl Encodable) -> Vec<u8> {
    let mut header = RequestHeader::default();
    header.request_api_key = key as i16;
    header.request_api_version = version;
    header.correlation_id = correlation;
    header.client_id = Some(StrBytes::from_static_str("sluice-kafka-load"));
    let mut b = BytesMut::new();
    header
        .encode(&mut b, key.request_header_version(version))
        .expect("encodable header");
    body.encode(&mut b, version).expect("encodable request");
    let mut out = BytesMut::with_capacity(b.len() + 4);
    out.put_i32(b.len() as i32);
    out.put_slice(&b);
    out.to_vec()
}

fn read_frame(s: &mut TcpStream, key: ApiKey, version: i16) -> (i32, Bytes) {
    let mut size = [0u8; 4];
    s.read_exact(&mut size).expect("a response");
    let mut buf = vec![0u8; i32::from_be_bytes(size) as usize];
    s.read_exact(&mut buf).expect("a whole response");
    let mut buf = Bytes::from(buf);
    let h = ResponseHeader::decode(&mut buf, key.response_header_version(version))
        .expect("a response header");
    (h.correlation_id, buf)
}

fn topic_name(topic: &str) -> TopicName {
    TopicName(StrBytes::from_string(topic.to_string()))
}

fn produce(addr: &str, topic: &str, total_mib: usize, per_request: usize, in_flight: usize) {
    let batch = sluice_engine::batch::build::simple(
        per_request,
        RECORD_BYTES,
        0xab,
        sluice_bench::TIMESTAMP_MS,
    );
    let mut pd = PartitionProduceData::default();
    pd.index = 0;
    pd.records = Some(Bytes::from(batch.clone()));
    let mut td = TopicProduceData::default();
    td.name = topic_name(topic);
    td.partition_data = vec![pd];
    let mut req = ProduceRequest::default();
    req.acks = -1;
    req.timeout_ms = 30_000;
    req.topic_data = vec![td];
    let template = frame(ApiKey::Produce, PRODUCE_V, 0, req);
    let requests = (total_mib << 20).div_ceil(batch.len());

    let mut s = TcpStream::connect(addr).expect("connect");
    s.set_nodelay(true).expect("nodelay");
    let mut reader = s.try_clone().expect("clone");
    // One token per request allowed in flight; the reader returns them.
    let (tokens_tx, tokens_rx) = mpsc::sync_channel::<()>(in_flight);
    for _ in 0..in_flight {
        tokens_tx.send(()).expect("room");
    }
    let (sent_tx, sent_rx) = mpsc::channel::<Instant>();
    let start = Instant::now();
    let reads = std::thread::spawn(move || {
        let mut latencies = Vec::with_capacity(requests);
        for i in 0..requests {
            let (c, body) = read_frame(&mut reader, ApiKey::Produce, PRODUCE_V);
            assert_eq!(c, i as i32, "answers out of order");
            let r = ProduceResponse::decode(&mut body.clone(), PRODUCE_V).expect("decodes");
            let code = r.responses[0].partition_responses[0].error_code;
            assert_eq!(code, 0, "produce failed with error {code}");
            latencies.push(sent_rx.recv().expect("sent").elapsed());
            let _ = tokens_tx.send(());
        }
        latencies
    });
    let mut f = template;
    for i in 0..requests {
        tokens_rx.recv().expect("a token");
        f[8..12].copy_from_slice(&(i as i32).to_be_bytes());
        sent_tx.send(Instant::now()).expect("reader alive");
        s.write_all(&f).expect("send");
    }
    let mut latencies = reads.join().expect("reader");
    let secs = start.elapsed().as_secs_f64();
    let bytes = (requests * batch.len()) as f64;
    latencies.sort();
    let pct = |p: f64| latencies[((latencies.len() - 1) as f64 * p) as usize];
    println!(
        "produce: {requests} requests of {per_request} x {RECORD_BYTES} B, {in_flight} in flight: {:.1} MiB/s, {:.0} records/s, latency p50 {:?} p99 {:?}",
        bytes / secs / (1 << 20) as f64,
        (requests * per_request) as f64 / secs,
        pct(0.5),
        pct(0.99),
    );
}

fn fetch_once(s: &mut TcpStream, topic: &str, offset: i64, max_bytes: usize) -> FetchResponse {
    let mut p = FetchPartition::default();
    p.partition = 0;
    p.fetch_offset = offset;
    p.partition_max_bytes = max_bytes as i32;
    let mut t = FetchTopic::default();
    t.topic = topic_name(topic);
    t.partitions = vec![p];
    let mut req = FetchRequest::default();
    req.replica_id = BrokerId(-1);
    req.max_wait_ms = 500;
    req.min_bytes = 1;
    req.max_bytes = max_bytes as i32;
    req.topics = vec![t];
    s.write_all(&frame(ApiKey::Fetch, FETCH_V, 0, req))
        .expect("send");
    let (_, mut body) = read_frame(s, ApiKey::Fetch, FETCH_V);
    FetchResponse::decode(&mut body, FETCH_V).expect("decodes")
}

/// The offset after the last whole batch in `records`.
fn next_offset(mut records: Bytes) -> Option<i64> {
    let mut next = None;
    while records.len() >= 61 {
        let base = records.get_i64();
        let len = records.get_i32() as usize;
        if records.len() < len {
            break;
        }
        // last offset delta: 4 (epoch) 1 (magic) 4 (crc) 2 (attributes)
        let delta = i32::from_be_bytes(records[11..15].try_into().expect("4 bytes"));
        next = Some(base + i64::from(delta) + 1);
        records.advance(len);
    }
    next
}

fn fetch(addr: &str, topic: &str, max_bytes: usize) {
    let mut s = TcpStream::connect(addr).expect("connect");
    s.set_nodelay(true).expect("nodelay");
    s.set_read_timeout(Some(Duration::from_secs(60)))
        .expect("timeout");
    let first = fetch_once(&mut s, topic, 0, 1);
    let hw = first.responses[0].partitions[0].high_watermark;
    let start = Instant::now();
    let (mut offset, mut bytes, mut fetches) = (0i64, 0usize, 0usize);
    while offset < hw {
        let r = fetch_once(&mut s, topic, offset, max_bytes);
        let p = &r.responses[0].partitions[0];
        assert_eq!(p.error_code, 0, "fetch failed");
        let records = p.records.clone().unwrap_or_default();
        bytes += records.len();
        fetches += 1;
        offset = next_offset(records).expect("a whole batch per fetch");
    }
    let secs = start.elapsed().as_secs_f64();
    println!(
        "fetch: {hw} records, {fetches} fetches of up to {max_bytes} B: {:.1} MiB/s",
        bytes as f64 / secs / (1 << 20) as f64
    );
}

fn idle(addr: &str, topic: &str, connections: usize, seconds: usize) {
    let until = Instant::now() + Duration::from_secs(seconds as u64);
    let polls: Vec<_> = (0..connections)
        .map(|_| {
            let (addr, topic) = (addr.to_string(), topic.to_string());
            std::thread::spawn(move || {
                let mut s = TcpStream::connect(&addr).expect("connect");
                let end =
                    fetch_once(&mut s, &topic, 0, 1).responses[0].partitions[0].high_watermark;
                let mut answers = 0usize;
                while Instant::now() < until {
                    fetch_once(&mut s, &topic, end, 1 << 20);
                    answers += 1;
                }
                answers
            })
        })
        .collect();
    let answers: usize = polls.into_iter().map(|p| p.join().expect("poller")).sum();
    println!("idle: {connections} consumers for {seconds} s, {answers} empty answers");
}
