//! The OMB-style run over the Kafka protocol, with librdkafka producers and
//! consumers (as OMB's Kafka driver uses the Java client).
//!
//! * Producers send on a schedule: message *i* of a producer is due at
//!   `start + i / rate`. *Publish delay* is from when it was due to when
//!   `send()` accepted it (coordinated omission: a stalled producer shows
//!   up here); *publish latency* is from `send()` to its delivery report.
//!   With rate 0 every message is due when the previous one was accepted.
//! * Each payload starts with the send time (µs since the epoch, little
//!   endian); a consumer's *end-to-end latency* is its receive time minus
//!   that (one host, one clock).
//! * Consumers are assigned partitions (each subscription reads every
//!   partition, split among its consumers) from the beginning; no group.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use futures_lite::future::block_on;
use hdrhistogram::Histogram;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::{ClientContext, DefaultClientContext};
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::Message;
use rdkafka::producer::{BaseRecord, DeliveryResult, Producer, ProducerContext, ThreadedProducer};
use rdkafka::{Offset, TopicPartitionList};

use crate::report::{latency_histogram, record, Series};
use crate::workload::{KeyDistributor, Workload};

/// Everything shared by the producer and consumer threads of a run.
pub struct Stats {
    pub published: AtomicU64,
    pub published_bytes: AtomicU64,
    pub consumed: AtomicU64,
    pub consumed_bytes: AtomicU64,
    pub errors: AtomicU64,
    /// Times a consumer found its offset removed by retention and went on
    /// from the log start.
    pub consumer_resets: AtomicU64,
    /// Messages those consumers skipped.
    pub skipped: AtomicU64,
    pub first_error: Mutex<Option<String>>,
    pub publish_latency: Mutex<Histogram<u64>>,
    pub publish_delay: Mutex<Histogram<u64>>,
    pub end_to_end: Mutex<Histogram<u64>>,
    pub publish_series: Series,
    pub consume_series: Series,
}

/// Locks a mutex, also when a panicking thread poisoned it.
pub(crate) fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Stats {
    pub fn new(start: Instant, seconds: usize) -> Self {
        Self {
            published: AtomicU64::new(0),
            published_bytes: AtomicU64::new(0),
            consumed: AtomicU64::new(0),
            consumed_bytes: AtomicU64::new(0),
            errors: AtomicU64::new(0),
            consumer_resets: AtomicU64::new(0),
            skipped: AtomicU64::new(0),
            first_error: Mutex::new(None),
            publish_latency: Mutex::new(latency_histogram()),
            publish_delay: Mutex::new(latency_histogram()),
            end_to_end: Mutex::new(latency_histogram()),
            publish_series: Series::new(start, seconds),
            consume_series: Series::new(start, seconds),
        }
    }

    pub(crate) fn error(&self, e: String) {
        self.errors.fetch_add(1, Ordering::Relaxed);
        lock(&self.first_error).get_or_insert(e);
    }

    /// Clears the latency histograms (the end of the warm-up).
    pub fn reset_latencies(&self) {
        lock(&self.publish_latency).reset();
        lock(&self.publish_delay).reset();
        lock(&self.end_to_end).reset();
    }

    /// (published, published bytes, consumed, consumed bytes).
    pub fn counters(&self) -> [u64; 4] {
        [
            self.published.load(Ordering::Relaxed),
            self.published_bytes.load(Ordering::Relaxed),
            self.consumed.load(Ordering::Relaxed),
            self.consumed_bytes.load(Ordering::Relaxed),
        ]
    }

    pub fn histograms(&self) -> [Histogram<u64>; 3] {
        [
            lock(&self.publish_latency).clone(),
            lock(&self.publish_delay).clone(),
            lock(&self.end_to_end).clone(),
        ]
    }

    pub fn first_error(&self) -> Option<String> {
        lock(&self.first_error).clone()
    }
}

struct ProducerCtx {
    stats: Arc<Stats>,
}

impl ClientContext for ProducerCtx {}

impl ProducerContext for ProducerCtx {
    type DeliveryOpaque = Box<Instant>;

    fn delivery(&self, result: &DeliveryResult<'_>, sent: Box<Instant>) {
        match result {
            Ok(m) => {
                let now = Instant::now();
                record(&mut lock(&self.stats.publish_latency), now - *sent);
                self.stats.publish_series.note_latency(now, now - *sent);
                let bytes = m.payload().map_or(0, <[u8]>::len) as u64;
                self.stats.published.fetch_add(1, Ordering::Relaxed);
                self.stats
                    .published_bytes
                    .fetch_add(bytes, Ordering::Relaxed);
                self.stats.publish_series.add(now, 1, bytes);
            }
            Err((e, _)) => self.stats.error(format!("delivery: {e}")),
        }
    }
}

/// Client settings of a run.
#[derive(Clone)]
pub struct Clients {
    pub bootstrap: String,
    /// librdkafka producer properties, in order (later ones win).
    pub producer: Vec<(String, String)>,
    pub consumer: Vec<(String, String)>,
}

/// Defaults that mirror OMB's Java client: a 32 MiB producer buffer
/// (`buffer.memory`) rather than librdkafka's 1 GiB queue.
pub const PRODUCER_DEFAULTS: [(&str, &str); 2] = [
    ("queue.buffering.max.kbytes", "32768"),
    ("queue.buffering.max.messages", "1000000"),
];

fn config(bootstrap: &str, props: &[(String, String)]) -> ClientConfig {
    let mut c = ClientConfig::new();
    c.set("bootstrap.servers", bootstrap);
    for (k, v) in props {
        c.set(k, v);
    }
    c
}

/// Creates `name` with `partitions` partitions and topic `configs`.
pub fn create_topic(
    bootstrap: &str,
    name: &str,
    partitions: u32,
    replication: i32,
    configs: &[(&str, String)],
) -> Result<(), String> {
    let admin: AdminClient<DefaultClientContext> = config(bootstrap, &[])
        .create()
        .map_err(|e| format!("admin client: {e}"))?;
    let mut topic = NewTopic::new(
        name,
        partitions as i32,
        TopicReplication::Fixed(replication),
    );
    for (k, v) in configs {
        topic = topic.set(k, v);
    }
    let opts = AdminOptions::new().operation_timeout(Some(Duration::from_secs(30)));
    for r in
        block_on(admin.create_topics(&[topic], &opts)).map_err(|e| format!("create {name}: {e}"))?
    {
        r.map_err(|(n, code)| format!("create {n}: {code}"))?;
    }
    Ok(())
}

/// Deletes `name` (the run's data goes with it).
pub fn delete_topic(bootstrap: &str, name: &str) -> Result<(), String> {
    let admin: AdminClient<DefaultClientContext> = config(bootstrap, &[])
        .create()
        .map_err(|e| format!("admin client: {e}"))?;
    let opts = AdminOptions::new().operation_timeout(Some(Duration::from_secs(30)));
    for r in
        block_on(admin.delete_topics(&[name], &opts)).map_err(|e| format!("delete {name}: {e}"))?
    {
        r.map_err(|(n, code)| format!("delete {n}: {code}"))?;
    }
    Ok(())
}

/// A pool of payloads of the workload's size: the payload file's bytes, or
/// random ones (`randomBytesRatio` of each random, the rest zeros).
pub fn payloads(w: &Workload, base: &std::path::Path) -> Result<Vec<Vec<u8>>, String> {
    let mut x = 0x2545_f491_4f6c_dd1du64;
    let mut random = |len: usize| -> Vec<u8> {
        (0..len)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                x as u8
            })
            .collect()
    };
    if !w.use_randomized_payloads {
        if let Some(f) = &w.payload_file {
            let p = base.join(f);
            if let Ok(bytes) = std::fs::read(&p) {
                if bytes.len() != w.message_size {
                    return Err(format!(
                        "{} has {} bytes, messageSize is {}",
                        p.display(),
                        bytes.len(),
                        w.message_size
                    ));
                }
                return Ok(vec![bytes]);
            }
            eprintln!(
                "[bench] no payload file {}: using random payloads of {} bytes",
                p.display(),
                w.message_size
            );
        }
        return Ok(vec![random(w.message_size)]);
    }
    let random_len = (w.message_size as f64 * w.random_bytes_ratio.clamp(0.0, 1.0)) as usize;
    Ok((0..w.randomized_payload_pool_size.max(1))
        .map(|_| {
            let mut p = random(random_len);
            p.resize(w.message_size, 0);
            p
        })
        .collect())
}

/// OMB's key pool: 10 000 random 7-character keys.
fn key_pool() -> Vec<String> {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let mut x = 0x9e37_79b9_7f4a_7c15u64;
    (0..10_000)
        .map(|_| {
            (0..7)
                .map(|_| {
                    x = x.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1);
                    ALPHABET[(x >> 58) as usize] as char
                })
                .collect()
        })
        .collect()
}

/// Writes the send time `now_us` (µs since the epoch) at the start of a
/// message value, for the consumer's end-to-end latency; values shorter
/// than 8 bytes carry none.
pub(crate) fn stamp(value: &mut [u8], now_us: u64) {
    if let Some(head) = value.get_mut(..8) {
        head.copy_from_slice(&now_us.to_le_bytes());
    }
}

/// The end-to-end latency of a value [`stamp`]ed by a producer, read at
/// `now_us`.
pub(crate) fn end_to_end(value: &[u8], now_us: u64) -> Option<Duration> {
    let head = value.get(..8)?;
    let sent = u64::from_le_bytes(head.try_into().expect("8 bytes"));
    Some(Duration::from_micros(now_us.saturating_sub(sent)))
}

pub(crate) fn now_micros() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or(Duration::ZERO)
        .as_micros() as u64
}

/// One producer's job.
pub struct ProducerJob {
    pub topic: String,
    /// Messages per second for this producer; 0 for as fast as possible.
    pub rate: f64,
    pub keys: KeyDistributor,
    pub payloads: Arc<Vec<Vec<u8>>>,
    pub stop: Arc<AtomicBool>,
}

/// How long a producer waits before retrying when the client's queue is full.
const QUEUE_FULL_WAIT: Duration = Duration::from_micros(200);

/// Runs a producer until `job.stop`; then flushes it. Delivery reports are
/// served by the client's own polling thread (`ThreadedProducer`), as soon
/// as they arrive: polling them from the sending loop let them queue up
/// (one report event per call) and inflated the publish latency.
pub fn produce(clients: &Clients, job: ProducerJob, stats: Arc<Stats>) -> Result<(), String> {
    let producer: ThreadedProducer<ProducerCtx> = config(&clients.bootstrap, &clients.producer)
        .create_with_context(ProducerCtx {
            stats: stats.clone(),
        })
        .map_err(|e| format!("producer: {e}"))?;
    let keys = key_pool();
    let mut buf = Vec::new();
    let start = Instant::now();
    let mut i = 0u64;
    while !job.stop.load(Ordering::Relaxed) {
        let due = if job.rate > 0.0 {
            let due = start + Duration::from_secs_f64(i as f64 / job.rate);
            let now = Instant::now();
            if now < due {
                // Sleep, never spin (a spinning producer takes a core from
                // the broker); the messages due meanwhile go out back to back.
                std::thread::sleep((due - now).min(Duration::from_millis(1)));
                continue;
            }
            due
        } else {
            Instant::now()
        };
        buf.clear();
        buf.extend_from_slice(&job.payloads[(i % job.payloads.len() as u64) as usize]);
        stamp(&mut buf, now_micros());
        let key = match job.keys {
            KeyDistributor::NoKey => None,
            KeyDistributor::RoundRobin => Some(&keys[(i % keys.len() as u64) as usize]),
            KeyDistributor::Random => Some(&keys[(now_micros() % keys.len() as u64) as usize]),
        };
        let mut sent = Instant::now();
        let mut rec = BaseRecord::with_opaque_to(&job.topic, Box::new(sent)).payload(&buf[..]);
        if let Some(k) = key {
            rec = rec.key(k.as_bytes());
        }
        loop {
            match producer.send(rec) {
                Ok(()) => break,
                Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), r)) => {
                    std::thread::sleep(QUEUE_FULL_WAIT);
                    sent = Instant::now();
                    rec = r;
                    rec.delivery_opaque = Box::new(sent);
                }
                Err((e, _)) => {
                    stats.error(format!("send: {e}"));
                    break;
                }
            }
        }
        record(
            &mut lock(&stats.publish_delay),
            sent.saturating_duration_since(due),
        );
        i += 1;
    }
    producer
        .flush(Duration::from_secs(30))
        .map_err(|e| format!("flush: {e}"))
}

/// Runs a consumer of `partitions` of `topic` from the beginning until
/// `stop`.
pub fn consume(
    clients: &Clients,
    topic: &str,
    partitions: &[i32],
    stop: Arc<AtomicBool>,
    stats: Arc<Stats>,
) -> Result<(), String> {
    let mut props = vec![
        // librdkafka wants a group id even to assign partitions; this one
        // never joins a group and never commits.
        ("group.id".to_string(), "sluice-bench".to_string()),
        ("enable.auto.commit".to_string(), "false".to_string()),
    ];
    props.extend(clients.consumer.iter().cloned());
    let consumer: BaseConsumer = config(&clients.bootstrap, &props)
        .create()
        .map_err(|e| format!("consumer: {e}"))?;
    let mut tpl = TopicPartitionList::new();
    for p in partitions {
        tpl.add_partition_offset(topic, *p, Offset::Beginning)
            .map_err(|e| e.to_string())?;
    }
    consumer.assign(&tpl).map_err(|e| format!("assign: {e}"))?;
    while !stop.load(Ordering::Relaxed) {
        match consumer.poll(Duration::from_millis(100)) {
            Some(Ok(m)) => {
                let now = Instant::now();
                let payload = m.payload().unwrap_or(&[]);
                if let Some(d) = end_to_end(payload, now_micros()) {
                    record(&mut lock(&stats.end_to_end), d);
                }
                stats.consumed.fetch_add(1, Ordering::Relaxed);
                stats
                    .consumed_bytes
                    .fetch_add(payload.len() as u64, Ordering::Relaxed);
                stats.consume_series.add(now, 1, payload.len() as u64);
            }
            Some(Err(e)) => stats.error(format!("consume: {e}")),
            None => {}
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_distinct_enough() {
        let k = key_pool();
        assert_eq!(k.len(), 10_000);
        let distinct: std::collections::BTreeSet<_> = k.iter().collect();
        assert!(distinct.len() > 9_900);
    }
}
