//! The raw-protocol producer: pre-encoded Produce requests (v7, one v2
//! batch for one partition each), pipelined on one connection with up to
//! `window` requests unanswered. It sends the same bytes to a Kafka broker
//! and to the null sink ([`crate::limits::NullSink`]), so the two can be
//! compared with the client's cost taken out.

use std::io::{Read, Write};
use std::net::{Shutdown, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc};
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use hdrhistogram::Histogram;
use kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic};
use kafka_protocol::messages::list_offsets_request::{ListOffsetsPartition, ListOffsetsTopic};
use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
use kafka_protocol::messages::{
    BrokerId, FetchRequest, FetchResponse, ListOffsetsRequest, ListOffsetsResponse, ProduceRequest,
    ProduceResponse, RequestHeader, TopicName,
};
use kafka_protocol::protocol::{Decodable, Encodable, HeaderVersion, StrBytes};

use sluice_engine::batch::{self, build};

use crate::kafka::{lock, Stats};
use crate::report::{latency_histogram, record};

/// The Produce version the raw producer speaks (not flexible: header v1).
pub const PRODUCE_VERSION: i16 = 7;

/// Where the correlation id sits in a framed request: after the size (4),
/// the API key (2) and the version (2).
const CORRELATION_AT: usize = 8;

/// The largest response frame accepted.
const MAX_RESPONSE: usize = 64 << 20;

/// A Produce request for `batch` on `topic`/`partition`, framed (size
/// prefix included).
pub fn produce_request(
    topic: &str,
    partition: i32,
    acks: i16,
    batch: Bytes,
    correlation: i32,
) -> Result<Vec<u8>, String> {
    let body = ProduceRequest::default()
        .with_acks(acks)
        .with_timeout_ms(30_000)
        .with_topic_data(vec![TopicProduceData::default()
            .with_name(TopicName(StrBytes::from_string(topic.to_string())))
            .with_partition_data(vec![PartitionProduceData::default()
                .with_index(partition)
                .with_records(Some(batch))])]);
    frame_request(0, PRODUCE_VERSION, correlation, &body)
}

/// Encodes into `req` (cleared first) a Produce request: `prefix`, a
/// [`produce_request`] with empty records (records are the last field of
/// v7, with one topic and one partition), given `correlation`, then one
/// batch of unkeyed records with `values`, each [`stamp`]ed with `now_us`.
/// Each value is copied once, and `req` is reused from request to request.
///
/// [`stamp`]: crate::kafka::stamp
pub fn encode_produce<'a>(
    req: &mut Vec<u8>,
    prefix: &[u8],
    correlation: i32,
    values: impl Iterator<Item = &'a [u8]>,
    now_us: u64,
) {
    req.clear();
    req.extend_from_slice(prefix);
    req[CORRELATION_AT..CORRELATION_AT + 4].copy_from_slice(&correlation.to_be_bytes());
    let mut w = build::Writer::begin(req);
    for value in values {
        let at = w.record(req, None, Some(value), &[]);
        crate::kafka::stamp(&mut req[at..at + value.len()], now_us);
    }
    w.finish(req, (now_us / 1000) as i64);
    let records = (req.len() - prefix.len()) as i32;
    req[prefix.len() - 4..prefix.len()].copy_from_slice(&records.to_be_bytes());
    let size = (req.len() - 4) as i32;
    req[..4].copy_from_slice(&size.to_be_bytes());
}

/// A request of API `key` at `version` (header and size prefix included).
fn frame_request<B: Encodable + HeaderVersion>(
    key: i16,
    version: i16,
    correlation: i32,
    body: &B,
) -> Result<Vec<u8>, String> {
    let header = RequestHeader::default()
        .with_request_api_key(key)
        .with_request_api_version(version)
        .with_correlation_id(correlation)
        .with_client_id(Some(StrBytes::from_static_str("sluice-bench")));
    let mut buf = BytesMut::new();
    buf.extend_from_slice(&[0; 4]);
    header
        .encode(&mut buf, B::header_version(version))
        .map_err(|e| format!("encode the request header: {e}"))?;
    body.encode(&mut buf, version)
        .map_err(|e| format!("encode request {key}: {e}"))?;
    let size = (buf.len() - 4) as u32;
    buf[..4].copy_from_slice(&size.to_be_bytes());
    Ok(buf.to_vec())
}

/// What the raw producer sends.
pub struct RawConfig {
    pub addr: String,
    pub topic: String,
    pub partitions: u32,
    /// -1 for all, 1 for the leader.
    pub acks: i16,
    /// One v2 record batch, sent as is in every request.
    pub batch: Vec<u8>,
    pub window: usize,
    pub duration: Duration,
}

/// What it measured.
pub struct RawRun {
    pub requests: u64,
    /// Record batch bytes acknowledged (not counting request framing).
    pub bytes: u64,
    pub elapsed: Duration,
    /// Request to response, µs.
    pub latency: Histogram<u64>,
}

impl RawRun {
    pub fn mib_per_s(&self) -> f64 {
        self.bytes as f64 / (1u64 << 20) as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }
}

/// Reads one response frame's body.
fn read_frame(s: &mut TcpStream) -> Result<Vec<u8>, String> {
    let mut size = [0u8; 4];
    s.read_exact(&mut size)
        .map_err(|e| format!("read a response: {e}"))?;
    let size = u32::from_be_bytes(size) as usize;
    if !(4..=MAX_RESPONSE).contains(&size) {
        return Err(format!("bad response size {size}"));
    }
    let mut body = vec![0u8; size];
    s.read_exact(&mut body)
        .map_err(|e| format!("read a response: {e}"))?;
    Ok(body)
}

/// The body of a response frame after its correlation id, which must be
/// `correlation` (frames are at least 4 bytes: [`read_frame`]).
fn after_correlation(body: &[u8], correlation: i32) -> Result<Bytes, String> {
    let got = i32::from_be_bytes([body[0], body[1], body[2], body[3]]);
    if got != correlation {
        return Err(format!("response {got} where {correlation} was expected"));
    }
    Ok(Bytes::copy_from_slice(&body[4..]))
}

/// Checks a response: its correlation id, and for a broker's Produce
/// response (anything longer than the null sink's bare correlation id),
/// every partition's error code.
fn check_response(body: &[u8], correlation: i32) -> Result<(), String> {
    let mut rest = after_correlation(body, correlation)?;
    if rest.is_empty() {
        return Ok(());
    }
    let r = ProduceResponse::decode(&mut rest, PRODUCE_VERSION)
        .map_err(|e| format!("decode a Produce response: {e}"))?;
    for t in &r.responses {
        for p in &t.partition_responses {
            if p.error_code != 0 {
                return Err(format!(
                    "partition {} of {}: error code {}",
                    p.index, t.name.0, p.error_code
                ));
            }
        }
    }
    Ok(())
}

/// Sends for `cfg.duration`, partitions in turn, then waits for every
/// response. Throughput counts from the first send to the last response.
pub fn run(cfg: &RawConfig) -> Result<RawRun, String> {
    let requests: Vec<Vec<u8>> = (0..cfg.partitions.max(1))
        .map(|p| {
            produce_request(
                &cfg.topic,
                p as i32,
                cfg.acks,
                Bytes::copy_from_slice(&cfg.batch),
                0,
            )
        })
        .collect::<Result<_, _>>()?;
    let mut out =
        TcpStream::connect(&cfg.addr).map_err(|e| format!("connect {}: {e}", cfg.addr))?;
    out.set_nodelay(true).map_err(|e| e.to_string())?;
    let mut input = out.try_clone().map_err(|e| e.to_string())?;
    let (tx, rx) = mpsc::sync_channel::<(i32, Instant)>(cfg.window.max(1));
    let reader = std::thread::spawn(move || -> Result<(u64, Histogram<u64>, Instant), String> {
        let mut h = latency_histogram();
        let mut n = 0;
        let mut last = Instant::now();
        for (correlation, sent) in rx {
            let body = read_frame(&mut input)?;
            check_response(&body, correlation)?;
            last = Instant::now();
            record(&mut h, last - sent);
            n += 1;
        }
        Ok((n, h, last))
    });
    let start = Instant::now();
    let mut sent = 0u64;
    let mut write_error = None;
    let mut requests = requests;
    while start.elapsed() < cfg.duration {
        let i = (sent % requests.len() as u64) as usize;
        let correlation = sent as i32;
        let req = &mut requests[i];
        req[CORRELATION_AT..CORRELATION_AT + 4].copy_from_slice(&correlation.to_be_bytes());
        if tx.send((correlation, Instant::now())).is_err() {
            break;
        }
        if let Err(e) = out.write_all(req) {
            write_error = Some(format!("send a request: {e}"));
            break;
        }
        sent += 1;
    }
    drop(tx);
    if write_error.is_some() {
        // Unblocks the reader, which may wait for a response never sent.
        out.shutdown(Shutdown::Both).map_err(|e| e.to_string())?;
    }
    let (n, latency, last) = reader
        .join()
        .map_err(|_| "the response reader panicked".to_string())??;
    if let Some(e) = write_error {
        return Err(e);
    }
    Ok(RawRun {
        requests: n,
        bytes: n * cfg.batch.len() as u64,
        elapsed: last.saturating_duration_since(start),
        latency,
    })
}

/// A paced raw producer: what a Kafka client with `linger.ms` does, at a
/// fraction of its CPU cost. Every `linger` it gathers the messages due at
/// `rate` into one v2 batch (at most `batch_bytes`) for the next partition
/// in turn, and sends it with up to `in_flight` requests unanswered on one
/// connection; with `rate` 0 it sends full batches as fast as the window
/// allows. Records carry no key; each value starts with the send time in
/// microseconds since the epoch, as the librdkafka producer's do, so the
/// consumer measures end-to-end latency. It talks to `addr` alone: every
/// partition must be led by that broker.
pub struct PacedJob {
    pub addr: String,
    pub topic: String,
    pub partitions: u32,
    /// -1 for all, 1 for the leader.
    pub acks: i16,
    pub linger: Duration,
    pub batch_bytes: usize,
    pub in_flight: usize,
    pub rate: f64,
    pub payloads: Arc<Vec<Vec<u8>>>,
    pub stop: Arc<AtomicBool>,
}

/// A request on the wire: its correlation id, and which messages it holds.
struct Sent {
    correlation: i32,
    /// Index of its first message, and how many.
    first: u64,
    count: u64,
    bytes: u64,
    /// When it was sent (the latency of a message sent at full rate).
    at: Instant,
}

/// Runs a [`PacedJob`] until `job.stop`, recording into `stats` as the
/// librdkafka producer does: publish latency from the moment a message was
/// due (its place in the schedule; at full rate, the send) to its
/// acknowledgement, and publish delay, how late its batch went out against
/// the schedule.
pub fn produce_paced(job: PacedJob, stats: Arc<Stats>) -> Result<(), String> {
    let mut out =
        TcpStream::connect(&job.addr).map_err(|e| format!("connect {}: {e}", job.addr))?;
    out.set_nodelay(true).map_err(|e| e.to_string())?;
    let mut input = out.try_clone().map_err(|e| e.to_string())?;
    let (tx, rx) = mpsc::sync_channel::<Sent>(job.in_flight.max(1));
    let start = Instant::now();
    let rate = job.rate;
    let reader_stats = stats.clone();
    let reader = std::thread::spawn(move || -> Result<(), String> {
        let stats = reader_stats;
        for sent in rx {
            let body = read_frame(&mut input)?;
            check_response(&body, sent.correlation)?;
            let now = Instant::now();
            let mut h = lock(&stats.publish_latency);
            let mut longest = Duration::ZERO;
            for i in sent.first..sent.first + sent.count {
                let due = if rate > 0.0 {
                    start + Duration::from_secs_f64(i as f64 / rate)
                } else {
                    sent.at
                };
                let took = now.saturating_duration_since(due);
                longest = longest.max(took);
                record(&mut h, took);
            }
            drop(h);
            stats.publish_series.note_latency(now, longest);
            stats.published.fetch_add(sent.count, Ordering::Relaxed);
            stats
                .published_bytes
                .fetch_add(sent.bytes, Ordering::Relaxed);
            stats.publish_series.add(now, sent.count, sent.bytes);
        }
        Ok(())
    });
    let value_len = job.payloads.first().map_or(0, Vec::len);
    let per_batch = (job.batch_bytes / (value_len + 16).max(1)).max(1) as u64;
    let mut next = 0u64;
    let mut batches = 0u64;
    let mut scheduled = start;
    let mut failed = None;
    let linger = job.linger.max(Duration::from_micros(100));
    // Each request is encoded into `req`, reused: its partition's prefix,
    // then the batch a record at a time, each value copied once.
    let prefixes: Vec<Vec<u8>> = (0..job.partitions.max(1))
        .map(|p| produce_request(&job.topic, p as i32, job.acks, Bytes::new(), 0))
        .collect::<Result<_, _>>()?;
    let mut req = Vec::with_capacity(job.batch_bytes + prefixes[0].len() + 64);
    while !job.stop.load(Ordering::Relaxed) {
        let now = Instant::now();
        if rate > 0.0 && now < scheduled {
            std::thread::sleep(scheduled - now);
            continue;
        }
        // The next gathering one linger from now: ticks missed while the
        // window was full are not made up for.
        scheduled = now + linger;
        let due = if rate > 0.0 {
            (rate * now.duration_since(start).as_secs_f64()) as u64
        } else {
            next + per_batch
        };
        while next < due && failed.is_none() {
            let count = (due - next).min(per_batch);
            let now_us = crate::kafka::now_micros();
            let partition = (batches % prefixes.len() as u64) as usize;
            let correlation = batches as i32;
            let values = (next..next + count)
                .map(|i| &job.payloads[(i % job.payloads.len() as u64) as usize][..]);
            encode_produce(&mut req, &prefixes[partition], correlation, values, now_us);
            let at = Instant::now();
            if rate > 0.0 {
                // How much later than a linger after it was due each message
                // goes out: the client falling behind its schedule.
                let mut d = lock(&stats.publish_delay);
                for i in next..next + count {
                    let due = start + Duration::from_secs_f64(i as f64 / rate) + linger;
                    record(&mut d, at.saturating_duration_since(due));
                }
            }
            let sent = Sent {
                correlation,
                first: next,
                count,
                bytes: count * value_len as u64,
                at,
            };
            if tx.send(sent).is_err() {
                failed = Some("the response reader stopped".to_string());
                break;
            }
            if let Err(e) = out.write_all(&req) {
                failed = Some(format!("send a request: {e}"));
                break;
            }
            next += count;
            batches += 1;
        }
        if failed.is_some() {
            break;
        }
    }
    drop(tx);
    if failed.is_some() {
        // Unblocks the reader, which may wait for a response never sent.
        let _ = out.shutdown(Shutdown::Both);
    }
    let read = reader
        .join()
        .map_err(|_| "the response reader panicked".to_string())?;
    match (failed, read) {
        (Some(e), _) | (None, Err(e)) => {
            stats.error(e.clone());
            Err(e)
        }
        (None, Ok(())) => Ok(()),
    }
}

/// The Fetch version the raw consumer speaks (not flexible: header v1).
pub const FETCH_VERSION: i16 = 11;

/// A Fetch request for `partitions` (index, offset) of `topic`, framed.
fn fetch_request(
    topic: &str,
    partitions: &[(i32, i64)],
    correlation: i32,
) -> Result<Vec<u8>, String> {
    let body = FetchRequest::default()
        .with_replica_id(BrokerId(-1))
        .with_max_wait_ms(100)
        .with_min_bytes(1)
        .with_max_bytes(FETCH_MAX_BYTES)
        .with_topics(vec![FetchTopic::default()
            .with_topic(TopicName(StrBytes::from_string(topic.to_string())))
            .with_partitions(
                partitions
                    .iter()
                    .map(|&(index, offset)| {
                        FetchPartition::default()
                            .with_partition(index)
                            .with_fetch_offset(offset)
                            .with_partition_max_bytes(FETCH_PARTITION_MAX_BYTES)
                    })
                    .collect(),
            )]);
    frame_request(1, FETCH_VERSION, correlation, &body)
}

/// Fetch limits of the raw consumer: the Java consumer's defaults.
const FETCH_MAX_BYTES: i32 = 50 << 20;
const FETCH_PARTITION_MAX_BYTES: i32 = 1 << 20;

/// The ListOffsets version the raw consumer speaks (not flexible: header v1).
const LIST_OFFSETS_VERSION: i16 = 5;

/// Kafka's OFFSET_OUT_OF_RANGE.
const OFFSET_OUT_OF_RANGE: i16 = 1;

/// A ListOffsets request for the earliest offset of `partitions` of `topic`,
/// framed.
fn earliest_request(topic: &str, partitions: &[i32], correlation: i32) -> Result<Vec<u8>, String> {
    let body = ListOffsetsRequest::default()
        .with_replica_id(BrokerId(-1))
        .with_topics(vec![ListOffsetsTopic::default()
            .with_name(TopicName(StrBytes::from_string(topic.to_string())))
            .with_partitions(
                partitions
                    .iter()
                    .map(|&p| {
                        ListOffsetsPartition::default()
                            .with_partition_index(p)
                            .with_timestamp(-2)
                    })
                    .collect(),
            )]);
    frame_request(2, LIST_OFFSETS_VERSION, correlation, &body)
}

/// The raw consumer: reads `partitions` of `topic` from offset 0 on one
/// connection to `addr` (which must lead them all) until `stop`, one Fetch
/// at a time, and records what the librdkafka consumer records: messages,
/// value bytes, and end-to-end latency from the send time at the start of
/// each value. It walks the records of each batch itself, without copying
/// them; compressed batches are refused.
///
/// A consumer that falls behind by more than the topic's retention is
/// answered OFFSET_OUT_OF_RANGE: it goes on from the log start, as a Kafka
/// consumer with `auto.offset.reset=earliest`, and counts the reset and the
/// messages it skipped ([`Stats::consumer_resets`], [`Stats::skipped`]).
pub fn consume_raw(
    addr: &str,
    topic: &str,
    partitions: &[i32],
    stop: Arc<AtomicBool>,
    stats: Arc<Stats>,
) -> Result<(), String> {
    let result = consume_raw_inner(addr, topic, partitions, &stop, &stats);
    if let Err(e) = &result {
        stats.error(e.clone());
    }
    result
}

/// One request and its response on `s`: the response body after the
/// correlation id.
fn exchange(s: &mut TcpStream, req: &[u8], correlation: i32) -> Result<Bytes, String> {
    s.write_all(req)
        .map_err(|e| format!("send a request: {e}"))?;
    after_correlation(&read_frame(s)?, correlation)
}

fn consume_raw_inner(
    addr: &str,
    topic: &str,
    partitions: &[i32],
    stop: &AtomicBool,
    stats: &Stats,
) -> Result<(), String> {
    let mut s = TcpStream::connect(addr).map_err(|e| format!("connect {addr}: {e}"))?;
    s.set_nodelay(true).map_err(|e| e.to_string())?;
    let mut offsets: Vec<(i32, i64)> = partitions.iter().map(|&p| (p, 0)).collect();
    let mut correlation = 0i32;
    let mut out_of_range = Vec::new();
    while !stop.load(Ordering::Relaxed) {
        correlation = correlation.wrapping_add(1);
        let req = fetch_request(topic, &offsets, correlation)?;
        let mut rest = exchange(&mut s, &req, correlation)?;
        let r = FetchResponse::decode(&mut rest, FETCH_VERSION)
            .map_err(|e| format!("decode a Fetch response: {e}"))?;
        for t in &r.responses {
            for p in &t.partitions {
                if p.error_code == OFFSET_OUT_OF_RANGE {
                    out_of_range.push(p.partition_index);
                    continue;
                }
                if p.error_code != 0 {
                    return Err(format!(
                        "fetch partition {}: error code {}",
                        p.partition_index, p.error_code
                    ));
                }
                let Some(slot) = offsets.iter_mut().find(|(i, _)| *i == p.partition_index) else {
                    continue;
                };
                if let Some(records) = &p.records {
                    slot.1 = consume_batches(records, slot.1, stats)?;
                }
            }
        }
        if !out_of_range.is_empty() {
            correlation = correlation.wrapping_add(1);
            let req = earliest_request(topic, &out_of_range, correlation)?;
            let earliest = exchange(&mut s, &req, correlation)?;
            reset_to_earliest(earliest, &mut offsets, stats)?;
            out_of_range.clear();
        }
    }
    Ok(())
}

/// Moves each partition answered in the ListOffsets response `body` to its
/// log start, counting the messages skipped. A log start not past the
/// fetch offset means the fetch offset was past the log end: an error.
fn reset_to_earliest(
    mut body: Bytes,
    offsets: &mut [(i32, i64)],
    stats: &Stats,
) -> Result<(), String> {
    let r = ListOffsetsResponse::decode(&mut body, LIST_OFFSETS_VERSION)
        .map_err(|e| format!("decode a ListOffsets response: {e}"))?;
    for p in r.topics.iter().flat_map(|t| &t.partitions) {
        if p.error_code != 0 {
            return Err(format!(
                "earliest offset of partition {}: error code {}",
                p.partition_index, p.error_code
            ));
        }
        let Some(slot) = offsets.iter_mut().find(|(i, _)| *i == p.partition_index) else {
            continue;
        };
        if p.offset <= slot.1 {
            return Err(format!(
                "partition {}: offset {} out of range, but the log starts at {}",
                p.partition_index, slot.1, p.offset
            ));
        }
        eprintln!(
            "[bench] raw consumer: partition {} offset {} was removed by retention; \
             going on from the log start {}",
            p.partition_index, slot.1, p.offset
        );
        stats.consumer_resets.fetch_add(1, Ordering::Relaxed);
        stats
            .skipped
            .fetch_add((p.offset - slot.1) as u64, Ordering::Relaxed);
        slot.1 = p.offset;
    }
    Ok(())
}

/// Records the messages of the whole batches in `records` at or after
/// `from`, and returns the offset to fetch next.
fn consume_batches(records: &[u8], from: i64, stats: &Stats) -> Result<i64, String> {
    let mut next = from;
    let mut at = 0usize;
    while records.len() - at >= batch::HEADER_LEN {
        let Some(h) = batch::BatchHeader::parse(&records[at..]) else {
            return Err(format!("a batch header at {at} does not parse"));
        };
        let len = 12 + h.batch_length.max(0) as usize;
        if records.len() - at < len {
            break; // a partial batch at the end of the response
        }
        let whole = &records[at..at + len];
        at += len;
        let last = h.base_offset + i64::from(h.last_offset_delta);
        if last < next {
            continue; // before the fetch offset
        }
        let views = batch::records(whole)
            .ok_or_else(|| format!("the batch at offset {} cannot be read", h.base_offset))?;
        let now = Instant::now();
        let now_us = crate::kafka::now_micros();
        let mut n = 0u64;
        let mut bytes = 0u64;
        let mut e2e = lock(&stats.end_to_end);
        for r in &views {
            if h.base_offset + i64::from(r.offset_delta) < next {
                continue;
            }
            let value = r.value.unwrap_or(&[]);
            if let Some(d) = crate::kafka::end_to_end(value, now_us) {
                record(&mut e2e, d);
            }
            n += 1;
            bytes += value.len() as u64;
        }
        drop(e2e);
        stats.consumed.fetch_add(n, Ordering::Relaxed);
        stats.consumed_bytes.fetch_add(bytes, Ordering::Relaxed);
        stats.consume_series.add(now, n, bytes);
        next = last + 1;
    }
    Ok(next)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_request_decodes_as_the_broker_decodes_it() {
        let batch = crate::batch_up_to(16 << 10, 1024);
        let frame = produce_request("t", 3, -1, Bytes::from(batch), 42).unwrap();
        let size = u32::from_be_bytes(frame[..4].try_into().unwrap()) as usize;
        assert_eq!(size, frame.len() - 4);
        assert_eq!(
            &frame[CORRELATION_AT..CORRELATION_AT + 4],
            &42i32.to_be_bytes()
        );
        match sluice_net::decode_request(Bytes::copy_from_slice(&frame[4..])).unwrap() {
            sluice_net::Decoded::Request { header, .. } => assert_eq!(header.correlation_id, 42),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn a_request_encoded_in_place_is_the_request_built_from_its_batch() {
        let prefix = produce_request("topic", 3, -1, Bytes::new(), 0).unwrap();
        let values: Vec<Vec<u8>> = [0usize, 5, 8, 1024, 20_000]
            .iter()
            .map(|&n| (0..n).map(|i| i as u8).collect())
            .collect();
        let now_us = 1_700_000_000_123_456;
        let mut req = vec![1, 2, 3];
        for round in 0..2 {
            encode_produce(
                &mut req,
                &prefix,
                42 + round,
                values.iter().map(|v| &v[..]),
                now_us,
            );
            let records: Vec<build::Record> = values
                .iter()
                .map(|v| {
                    let mut v = v.clone();
                    crate::kafka::stamp(&mut v, now_us);
                    build::Record {
                        key: None,
                        value: Some(v),
                        headers: Vec::new(),
                    }
                })
                .collect();
            let batch = build::batch(&records, (now_us / 1000) as i64);
            let built = produce_request("topic", 3, -1, Bytes::from(batch), 42 + round).unwrap();
            assert_eq!(req, built, "round {round}");
        }
    }
}
