//! Latency histograms, throughput over time, and how they are reported
//! (OMB's percentiles; a human table and JSON).

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use serde_json::{json, Value};

use crate::meta::round3;

/// The percentiles OMB reports, with their labels (max is added apart).
pub const PERCENTILES: [(f64, &str); 6] = [
    (50.0, "p50"),
    (75.0, "p75"),
    (95.0, "p95"),
    (99.0, "p99"),
    (99.9, "p99.9"),
    (99.99, "p99.99"),
];

/// A latency histogram in microseconds, 1 µs to 1 hour, 3 significant digits.
pub fn latency_histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 3_600_000_000, 3).expect("valid histogram bounds")
}

/// Records `d` (clamped to the histogram's range) in microseconds.
pub fn record(h: &mut Histogram<u64>, d: Duration) {
    h.saturating_record((d.as_micros() as u64).max(1));
}

/// A latency summary in milliseconds: every OMB percentile and the max.
pub fn latency_json(h: &Histogram<u64>) -> Value {
    let mut m = serde_json::Map::new();
    m.insert("count".into(), json!(h.len()));
    if !h.is_empty() {
        m.insert("mean_ms".into(), json!(round3(h.mean() / 1000.0)));
        for (p, label) in PERCENTILES {
            m.insert(
                format!("{label}_ms"),
                json!(round3(h.value_at_percentile(p) as f64 / 1000.0)),
            );
        }
        m.insert("max_ms".into(), json!(round3(h.max() as f64 / 1000.0)));
    }
    Value::Object(m)
}

/// One table row: `label`, then each percentile and the max, in ms.
pub fn latency_row(label: &str, h: &Histogram<u64>) -> String {
    let mut row = format!("| {label} | {} |", h.len());
    if h.is_empty() {
        row.push_str(&" - |".repeat(PERCENTILES.len() + 1));
        return row;
    }
    for (p, _) in PERCENTILES {
        row.push_str(&format!(
            " {:.3} |",
            h.value_at_percentile(p) as f64 / 1000.0
        ));
    }
    row.push_str(&format!(" {:.3} |", h.max() as f64 / 1000.0));
    row
}

/// The header of [`latency_row`]'s table.
pub fn latency_header() -> String {
    let labels: Vec<&str> = PERCENTILES.iter().map(|(_, l)| *l).collect();
    format!(
        "| latency (ms) | count | {} | max |\n|---|---|{}---|",
        labels.join(" | "),
        "---|".repeat(PERCENTILES.len())
    )
}

/// Points of the percentile curve: (percentile, latency in ms), from p0 to
/// the max, denser in the tail (as HdrHistogram's percentile output).
pub fn percentile_curve(h: &Histogram<u64>) -> Vec<(f64, f64)> {
    if h.is_empty() {
        return Vec::new();
    }
    h.iter_quantiles(4)
        .map(|v| (v.percentile(), v.value_iterated_to() as f64 / 1000.0))
        .filter(|(p, _)| *p < 100.0)
        .collect()
}

/// Messages and bytes per 1 s bucket since `start`, and the longest
/// latency noted in each (a stall of tens of milliseconds hides in a
/// run's percentiles and its throughput per second, not in this); a fixed
/// number of buckets (events after the last one are counted in it).
pub struct Series {
    start: Instant,
    messages: Vec<AtomicU64>,
    bytes: Vec<AtomicU64>,
    max_us: Vec<AtomicU64>,
}

impl Series {
    pub fn new(start: Instant, seconds: usize) -> Self {
        let n = seconds.max(1);
        Self {
            start,
            messages: (0..n).map(|_| AtomicU64::new(0)).collect(),
            bytes: (0..n).map(|_| AtomicU64::new(0)).collect(),
            max_us: (0..n).map(|_| AtomicU64::new(0)).collect(),
        }
    }

    fn bucket(&self, at: Instant) -> usize {
        (at.saturating_duration_since(self.start).as_secs() as usize).min(self.messages.len() - 1)
    }

    pub fn add(&self, at: Instant, messages: u64, bytes: u64) {
        let i = self.bucket(at);
        self.messages[i].fetch_add(messages, Ordering::Relaxed);
        self.bytes[i].fetch_add(bytes, Ordering::Relaxed);
    }

    /// Notes a latency `d` measured at `at`, kept if it is its second's longest.
    pub fn note_latency(&self, at: Instant, d: Duration) {
        let us = u64::try_from(d.as_micros()).unwrap_or(u64::MAX);
        self.max_us[self.bucket(at)].fetch_max(us, Ordering::Relaxed);
    }

    /// (second, longest latency in ms) for the first `seconds` buckets.
    pub fn max_latency_ms(&self, seconds: usize) -> Vec<(f64, f64)> {
        (0..seconds.min(self.max_us.len()))
            .map(|i| {
                (
                    i as f64,
                    self.max_us[i].load(Ordering::Relaxed) as f64 / 1000.0,
                )
            })
            .collect()
    }

    /// (second, msg/s, MiB/s) for the first `seconds` buckets.
    pub fn points(&self, seconds: usize) -> Vec<(f64, f64, f64)> {
        (0..seconds.min(self.messages.len()))
            .map(|i| {
                (
                    i as f64,
                    self.messages[i].load(Ordering::Relaxed) as f64,
                    self.bytes[i].load(Ordering::Relaxed) as f64 / (1u64 << 20) as f64,
                )
            })
            .collect()
    }
}

/// msg/s and MiB/s of `messages` and `bytes` over `secs`.
pub fn rate_json(messages: u64, bytes: u64, secs: f64) -> Value {
    let secs = secs.max(1e-9);
    json!({
        "messages": messages,
        "bytes": bytes,
        "seconds": round3(secs),
        "msg_per_s": (messages as f64 / secs).round(),
        "mib_per_s": round3(bytes as f64 / (1u64 << 20) as f64 / secs),
    })
}

/// The test phase's longest publish latency per second, summarised: the
/// median second's and the worst one's, with when it was (seconds from
/// the start of the warm-up).
pub fn longest_per_second(per_second: &[(f64, f64)], test_start_s: f64) -> Option<String> {
    let mut test: Vec<(f64, f64)> = per_second
        .iter()
        .copied()
        .filter(|(t, _)| *t >= test_start_s.ceil())
        .collect();
    test.sort_by(|a, b| a.1.total_cmp(&b.1));
    let (at, worst) = *test.last()?;
    let median = test[test.len() / 2].1;
    Some(format!(
        "publish latency, longest in each second of the test: median {median:.3} ms, \
         worst {worst:.3} ms (second {at} of the run)"
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn summary_has_every_percentile() {
        let mut h = latency_histogram();
        for us in 1..=10_000u64 {
            record(&mut h, Duration::from_micros(us));
        }
        let j = latency_json(&h);
        assert_eq!(j["count"], 10_000);
        let p50 = j["p50_ms"].as_f64().unwrap();
        assert!((4.9..5.1).contains(&p50), "{p50}");
        assert!(j["p99.99_ms"].as_f64().unwrap() <= j["max_ms"].as_f64().unwrap());
        let row = latency_row("publish", &h);
        assert_eq!(
            row.matches('|').count(),
            latency_header()
                .lines()
                .next()
                .unwrap()
                .matches('|')
                .count()
        );
        let curve = percentile_curve(&h);
        assert!(curve
            .windows(2)
            .all(|w| w[0].0 <= w[1].0 && w[0].1 <= w[1].1));
    }

    #[test]
    fn series_buckets_by_second() {
        let start = Instant::now();
        let s = Series::new(start, 3);
        s.add(start, 1, 1 << 20);
        s.add(start + Duration::from_millis(1500), 2, 0);
        s.add(start + Duration::from_secs(60), 4, 0);
        let p = s.points(3);
        assert_eq!(p[0], (0.0, 1.0, 1.0));
        assert_eq!(p[1].1, 2.0);
        assert_eq!(p[2].1, 4.0);
    }

    #[test]
    fn series_keeps_each_seconds_longest_latency() {
        let start = Instant::now();
        let s = Series::new(start, 3);
        s.note_latency(start, Duration::from_millis(2));
        s.note_latency(
            start + Duration::from_millis(500),
            Duration::from_millis(70),
        );
        s.note_latency(start + Duration::from_millis(900), Duration::from_millis(3));
        s.note_latency(start + Duration::from_secs(60), Duration::from_micros(1500));
        assert_eq!(
            s.max_latency_ms(3),
            vec![(0.0, 70.0), (1.0, 0.0), (2.0, 1.5)]
        );
    }

    #[test]
    fn the_longest_second_of_the_test_is_named_and_the_warm_up_left_out() {
        let per_second = [
            (0.0, 900.0),
            (1.0, 2.0),
            (2.0, 3.0),
            (3.0, 70.0),
            (4.0, 1.0),
        ];
        let line = longest_per_second(&per_second, 0.5).unwrap();
        assert!(line.contains("median 3.000 ms"), "{line}");
        assert!(
            line.contains("worst 70.000 ms (second 3 of the run)"),
            "{line}"
        );
        assert_eq!(longest_per_second(&per_second, 5.0), None);
    }
}
