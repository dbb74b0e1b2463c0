//! sluice-bench's raw client (`sluice-bench run --client raw`) against the
//! real `sluice` binary: what it reports as published is what the broker
//! stored, and the bench's librdkafka consumer reads all of it back.

mod support;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use sluice_bench::kafka::{self, Clients, Stats};
use sluice_bench::raw::{self, PacedJob};

#[test]
fn the_paced_raw_producer_stores_what_it_reports_and_the_consumer_reads_it_back() {
    let dir = tempfile::tempdir().unwrap();
    let broker = support::Broker::start(dir.path());
    support::create_topic(&broker.bootstrap, "paced", 3);
    let start = Instant::now();
    let stats = Arc::new(Stats::new(start, 600));
    let stop = Arc::new(AtomicBool::new(false));
    let value_len = 1024;
    let job = PacedJob {
        addr: broker.bootstrap.clone(),
        topic: "paced".into(),
        partitions: 3,
        acks: -1,
        linger: Duration::from_millis(1),
        batch_bytes: 64 << 10,
        in_flight: 5,
        rate: 20_000.0,
        payloads: Arc::new(vec![vec![7u8; value_len]]),
        stop: stop.clone(),
    };
    let producer = {
        let stats = stats.clone();
        std::thread::spawn(move || raw::produce_paced(job, stats))
    };
    std::thread::sleep(Duration::from_millis(1500));
    stop.store(true, Ordering::Relaxed);
    producer.join().unwrap().unwrap();
    let [published, published_bytes, _, _] = stats.counters();
    assert!(published > 1000, "published {published}");
    assert_eq!(published_bytes, published * value_len as u64);
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
    let stop = Arc::new(AtomicBool::new(false));
    let consumer = {
        let (stats, stop) = (stats.clone(), stop.clone());
        std::thread::spawn(move || kafka::consume(&clients, "paced", &[0, 1, 2], stop, stats))
    };
    let deadline = Instant::now() + support::TIMEOUT;
    while stats.counters()[2] < published && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    stop.store(true, Ordering::Relaxed);
    consumer.join().unwrap().unwrap();
    let [_, _, consumed, consumed_bytes] = stats.counters();
    assert_eq!(
        consumed, published,
        "every acknowledged message is read back"
    );
    assert_eq!(consumed_bytes, published_bytes);
    // Each value carries its send time: the consumer measured every one.
    assert_eq!(stats.end_to_end.lock().unwrap().len(), published);
    assert!(stats.first_error().is_none(), "{:?}", stats.first_error());
}
