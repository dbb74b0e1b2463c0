//! sluice-bench's raw clients (`sluice-bench run --client raw`) against the
//! real `sluice` binary: what the raw producer reports as published is what
//! the broker stored, and both the bench's librdkafka consumer and its raw
//! consumer read all of it back, and the raw consumer goes on from the log
//! start when retention removed what it was to read next.

mod support;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, Consumer as _};
use sluice_bench::kafka::{self, Clients, Stats};
use sluice_bench::raw::{self, PacedJob};

#[test]
fn the_paced_raw_producer_stores_what_it_reports_and_the_consumer_reads_it_back() {
    let dir = tempfile::tempdir().unwrap();
    let broker = support::Broker::start(dir.path());
    support::create_topic(&broker.bootstrap, "paced", 3);
    let start = Instant::now();
    let stats = produce_paced_for(
        &broker.bootstrap,
        "paced",
        3,
        64 << 10,
        20_000.0,
        Duration::from_millis(1500),
    );
    let [published, published_bytes, _, _] = stats.counters();
    assert!(published > 1000, "published {published}");
    assert_eq!(published_bytes, published * VALUE_LEN as u64);
    // One latency per message; a delay per message sent (all answered).
    assert_eq!(stats.publish_latency.lock().unwrap().len(), published);
    assert_eq!(stats.publish_delay.lock().unwrap().len(), published);
    // Paced: no more than the schedule allows (20 000/s for 1.5 s, plus
    // the warm-up of a linger).
    let allowed = (20_000.0 * start.elapsed().as_secs_f64()) as u64;
    assert!(published <= allowed, "{published} > {allowed}");

    let clients = Clients {
        bootstrap: broker.bootstrap.clone(),
        producer: Vec::new(),
        consumer: Vec::new(),
    };
    // Both consumers, each on fresh counters, read every message once, and
    // each value carries its send time: every one gets an end-to-end latency.
    let librdkafka: Consumer =
        Box::new(move |stop, stats| kafka::consume(&clients, "paced", &[0, 1, 2], stop, stats));
    let addr = broker.bootstrap.clone();
    let raw_consumer: Consumer =
        Box::new(move |stop, stats| raw::consume_raw(&addr, "paced", &[0, 1, 2], stop, stats));
    for (name, consume) in [("librdkafka", librdkafka), ("raw", raw_consumer)] {
        let stats = read_back(consume, published);
        let [_, _, consumed, consumed_bytes] = stats.counters();
        assert_eq!(
            consumed, published,
            "{name}: every acknowledged message, once"
        );
        assert_eq!(consumed_bytes, published_bytes, "{name}");
        assert_eq!(stats.end_to_end.lock().unwrap().len(), published, "{name}");
        assert!(
            stats.first_error().is_none(),
            "{name}: {:?}",
            stats.first_error()
        );
    }
}

#[test]
fn the_raw_consumer_behind_the_retention_goes_on_from_the_log_start_and_counts_what_it_skipped() {
    let dir = tempfile::tempdir().unwrap();
    let (port, coordinator) = (support::free_port(), support::free_port());
    let broker = support::Broker::start_with(
        dir.path(),
        port,
        coordinator,
        &["--retention-check-interval-ms", "100"],
    );
    let small = [
        ("segment.bytes", "16384".to_string()),
        ("retention.bytes", "16384".to_string()),
    ];
    kafka::create_topic(&broker.bootstrap, "short", 1, 1, &small).unwrap();
    let stats = produce_paced_for(
        &broker.bootstrap,
        "short",
        1,
        8 << 10,
        4_000.0,
        Duration::from_millis(500),
    );
    let published = stats.counters()[0];

    // Retention removes all but the last segments: offset 0 is gone. It
    // may take more than one pass (every 100 ms): wait until two reads of
    // the log start, 300 ms apart, agree.
    let watermarks: BaseConsumer = rdkafka::ClientConfig::new()
        .set("bootstrap.servers", &broker.bootstrap)
        .create()
        .unwrap();
    let deadline = Instant::now() + support::TIMEOUT;
    let mut seen = -1;
    let start = loop {
        let (low, high) = watermarks
            .fetch_watermarks("short", 0, support::TIMEOUT)
            .unwrap();
        assert_eq!(high as u64, published);
        if (low > 0 && low == seen) || Instant::now() > deadline {
            break low;
        }
        seen = low;
        std::thread::sleep(Duration::from_millis(300));
    };
    assert!(start > 0, "retention removed nothing");

    let addr = broker.bootstrap.clone();
    let stats = read_back(
        Box::new(move |stop, stats| raw::consume_raw(&addr, "short", &[0], stop, stats)),
        published - start as u64,
    );
    assert!(stats.first_error().is_none(), "{:?}", stats.first_error());
    assert_eq!(stats.consumer_resets.load(Ordering::Relaxed), 1);
    assert_eq!(stats.skipped.load(Ordering::Relaxed), start as u64);
    assert_eq!(stats.counters()[2], published - start as u64);
}

/// Bytes of each value the paced producer sends.
const VALUE_LEN: usize = 1024;

/// Runs the raw paced producer (acks=all, `linger.ms=1`, values of
/// [`VALUE_LEN`] bytes) on `topic` for `run_for`, and returns what it
/// recorded.
fn produce_paced_for(
    bootstrap: &str,
    topic: &str,
    partitions: u32,
    batch_bytes: usize,
    rate: f64,
    run_for: Duration,
) -> Arc<Stats> {
    let stats = Arc::new(Stats::new(Instant::now(), 600));
    let stop = Arc::new(AtomicBool::new(false));
    let job = PacedJob {
        addr: bootstrap.to_string(),
        topic: topic.into(),
        partitions,
        acks: -1,
        linger: Duration::from_millis(1),
        batch_bytes,
        in_flight: 5,
        rate,
        payloads: Arc::new(vec![vec![7u8; VALUE_LEN]]),
        stop: stop.clone(),
    };
    let producer = {
        let stats = stats.clone();
        std::thread::spawn(move || raw::produce_paced(job, stats))
    };
    std::thread::sleep(run_for);
    stop.store(true, Ordering::Relaxed);
    producer.join().unwrap().unwrap();
    stats
}

type Consumer = Box<dyn FnOnce(Arc<AtomicBool>, Arc<Stats>) -> Result<(), String> + Send>;

/// Runs `consume` until it has read `published` messages (or the test's
/// timeout), and a moment more, in which nothing else may arrive.
fn read_back(consume: Consumer, published: u64) -> Arc<Stats> {
    let stats = Arc::new(Stats::new(Instant::now(), 600));
    let stop = Arc::new(AtomicBool::new(false));
    let consumer = {
        let (stats, stop) = (stats.clone(), stop.clone());
        std::thread::spawn(move || consume(stop, stats))
    };
    let deadline = Instant::now() + support::TIMEOUT;
    while stats.counters()[2] < published && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    std::thread::sleep(Duration::from_millis(300));
    stop.store(true, Ordering::Relaxed);
    consumer.join().unwrap().unwrap();
    stats
}
