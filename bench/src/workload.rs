//! Workload and driver files: OpenMessaging Benchmark's flat `key: value`
//! YAML (see `workloads/README.md` for the fields).
//!
//! Only the subset OMB's workload files use is read: one `key: value` per
//! line, `#` comments, values optionally in single or double quotes. Nested
//! maps and lists are refused rather than misread.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

/// Parses flat `key: value` YAML into a map (later keys win).
pub fn parse_flat_yaml(text: &str) -> Result<BTreeMap<String, String>, String> {
    let mut map = BTreeMap::new();
    for (n, raw) in text.lines().enumerate() {
        let line = strip_comment(raw);
        if line.trim().is_empty() || line.trim() == "---" {
            continue;
        }
        if line.starts_with(char::is_whitespace) || line.trim_start().starts_with('-') {
            return Err(format!(
                "line {}: nested values and lists are not supported: {raw}",
                n + 1
            ));
        }
        let (key, value) = line
            .split_once(':')
            .ok_or_else(|| format!("line {}: expected `key: value`: {raw}", n + 1))?;
        map.insert(key.trim().to_string(), unquote(value.trim()));
    }
    Ok(map)
}

/// The line without a `#` comment that is outside quotes.
fn strip_comment(line: &str) -> &str {
    let mut quote = None;
    for (i, c) in line.char_indices() {
        match (quote, c) {
            (None, '"' | '\'') => quote = Some(c),
            (Some(q), _) if q == c => quote = None,
            (None, '#') if i == 0 || line[..i].ends_with(char::is_whitespace) => return &line[..i],
            _ => {}
        }
    }
    line
}

fn unquote(v: &str) -> String {
    for q in ['"', '\''] {
        if v.len() >= 2 && v.starts_with(q) && v.ends_with(q) {
            return v[1..v.len() - 1].to_string();
        }
    }
    v.to_string()
}

/// How messages get keys (OMB's `keyDistributor`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum KeyDistributor {
    /// Null keys: the client's partitioner picks partitions (sticky).
    NoKey,
    /// Cycle through a pool of 10 000 random keys.
    RoundRobin,
    /// A random key of the pool for each message.
    Random,
}

impl KeyDistributor {
    /// OMB's names; like OMB, an unknown name is `NO_KEY`.
    pub fn parse(s: &str) -> Self {
        match s {
            "KEY_ROUND_ROBIN" => Self::RoundRobin,
            "RANDOM_NANO" => Self::Random,
            _ => Self::NoKey,
        }
    }
}

/// Producer settings: the Sluice extension fields of a workload, or a
/// driver file's. `None` leaves the client's default.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ProducerSettings {
    pub acks: Option<String>,
    pub batch_size_bytes: Option<u64>,
    pub linger_ms: Option<u64>,
    pub compression: Option<String>,
    pub idempotence: Option<bool>,
}

impl ProducerSettings {
    fn from_map(m: &BTreeMap<String, String>) -> Result<Self, String> {
        Ok(Self {
            acks: m.get("acks").cloned(),
            batch_size_bytes: opt(m, "batchSizeBytes")?,
            linger_ms: opt(m, "lingerMs")?,
            compression: m.get("compression").cloned(),
            idempotence: opt(m, "idempotence")?,
        })
    }

    /// `self` with the fields `over` sets replaced.
    pub fn overlay(&self, over: &Self) -> Self {
        Self {
            acks: over.acks.clone().or_else(|| self.acks.clone()),
            batch_size_bytes: over.batch_size_bytes.or(self.batch_size_bytes),
            linger_ms: over.linger_ms.or(self.linger_ms),
            compression: over
                .compression
                .clone()
                .or_else(|| self.compression.clone()),
            idempotence: over.idempotence.or(self.idempotence),
        }
    }

    /// The librdkafka producer properties these settings stand for.
    pub fn properties(&self) -> Vec<(&'static str, String)> {
        let mut p = Vec::new();
        if let Some(a) = &self.acks {
            p.push(("acks", a.clone()));
        }
        if let Some(b) = self.batch_size_bytes {
            p.push(("batch.size", b.to_string()));
        }
        if let Some(l) = self.linger_ms {
            p.push(("linger.ms", l.to_string()));
        }
        if let Some(c) = &self.compression {
            p.push(("compression.type", c.clone()));
        }
        if let Some(i) = self.idempotence {
            p.push(("enable.idempotence", i.to_string()));
        }
        p
    }
}

/// One workload file.
#[derive(Clone, Debug, PartialEq)]
pub struct Workload {
    pub name: String,
    pub topics: u32,
    pub partitions_per_topic: u32,
    pub message_size: usize,
    pub payload_file: Option<String>,
    pub use_randomized_payloads: bool,
    pub random_bytes_ratio: f64,
    pub randomized_payload_pool_size: usize,
    pub key_distributor: KeyDistributor,
    pub subscriptions_per_topic: u32,
    pub consumer_per_subscription: u32,
    pub producers_per_topic: u32,
    /// Messages per second over all producers; 0 is as fast as they can.
    pub producer_rate: f64,
    pub consumer_backlog_bytes: u64,
    pub backlog_drain_ratio: f64,
    pub warmup: Duration,
    pub test: Duration,
    pub producer: ProducerSettings,
}

fn opt<T: std::str::FromStr>(m: &BTreeMap<String, String>, key: &str) -> Result<Option<T>, String> {
    m.get(key)
        .map(|v| v.parse().map_err(|_| format!("{key}: cannot parse {v:?}")))
        .transpose()
}

fn req<T: std::str::FromStr>(m: &BTreeMap<String, String>, key: &str) -> Result<T, String> {
    opt(m, key)?.ok_or_else(|| format!("{key} is missing"))
}

fn minutes(m: &BTreeMap<String, String>, key: &str, default: f64) -> Result<Duration, String> {
    let v: f64 = opt(m, key)?.unwrap_or(default);
    Duration::try_from_secs_f64(v * 60.0).map_err(|e| format!("{key}: {e}"))
}

impl Workload {
    pub fn parse(text: &str) -> Result<Self, String> {
        let m = parse_flat_yaml(text)?;
        let w = Self {
            name: m.get("name").cloned().unwrap_or_else(|| "unnamed".into()),
            topics: req(&m, "topics")?,
            partitions_per_topic: req(&m, "partitionsPerTopic")?,
            message_size: req(&m, "messageSize")?,
            payload_file: m.get("payloadFile").cloned(),
            use_randomized_payloads: opt(&m, "useRandomizedPayloads")?.unwrap_or(false),
            random_bytes_ratio: opt(&m, "randomBytesRatio")?.unwrap_or(1.0),
            randomized_payload_pool_size: opt(&m, "randomizedPayloadPoolSize")?.unwrap_or(1000),
            key_distributor: KeyDistributor::parse(
                m.get("keyDistributor").map_or("NO_KEY", String::as_str),
            ),
            subscriptions_per_topic: req(&m, "subscriptionsPerTopic")?,
            consumer_per_subscription: req(&m, "consumerPerSubscription")?,
            producers_per_topic: req(&m, "producersPerTopic")?,
            producer_rate: req(&m, "producerRate")?,
            consumer_backlog_bytes: (opt::<f64>(&m, "consumerBacklogSizeGB")?.unwrap_or(0.0)
                * (1u64 << 30) as f64) as u64,
            backlog_drain_ratio: opt(&m, "backlogDrainRatio")?.unwrap_or(1.0),
            warmup: minutes(&m, "warmupDurationMinutes", 1.0)?,
            test: minutes(&m, "testDurationMinutes", 1.0)?,
            producer: ProducerSettings::from_map(&m)?,
        };
        if w.topics == 0 || w.partitions_per_topic == 0 || w.producers_per_topic == 0 {
            return Err("topics, partitionsPerTopic and producersPerTopic must be positive".into());
        }
        if w.consumer_backlog_bytes > 0 && w.producer_rate <= 0.0 {
            return Err("a consumer backlog needs a producerRate (as in OMB)".into());
        }
        if w.producer.idempotence == Some(true) && w.producer.acks.as_deref() == Some("1") {
            return Err("idempotence needs acks=all".into());
        }
        Ok(w)
    }

    pub fn load(path: &Path) -> Result<Self, String> {
        let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
        Self::parse(&text).map_err(|e| format!("{}: {e}", path.display()))
    }
}

/// A driver file (OMB's `driver-kafka/*.yaml`, flattened): `bootstrap`, the
/// producer settings under the workload extension names, and any librdkafka
/// property as `producer.NAME: value` / `consumer.NAME: value`.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Driver {
    pub bootstrap: Option<String>,
    pub producer: ProducerSettings,
    pub producer_properties: Vec<(String, String)>,
    pub consumer_properties: Vec<(String, String)>,
    pub replication_factor: Option<i32>,
}

impl Driver {
    pub fn parse(text: &str) -> Result<Self, String> {
        let m = parse_flat_yaml(text)?;
        let prefixed = |p: &str| {
            m.iter()
                .filter_map(|(k, v)| k.strip_prefix(p).map(|k| (k.to_string(), v.clone())))
                .collect()
        };
        Ok(Self {
            bootstrap: m.get("bootstrap").cloned(),
            producer: ProducerSettings::from_map(&m)?,
            producer_properties: prefixed("producer."),
            consumer_properties: prefixed("consumer."),
            replication_factor: opt(&m, "replicationFactor")?,
        })
    }

    pub fn load(path: &Path) -> Result<Self, String> {
        let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
        Self::parse(&text).map_err(|e| format!("{}: {e}", path.display()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_shipped_workloads() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("workloads");
        let mut n = 0;
        for e in std::fs::read_dir(dir).unwrap() {
            let p = e.unwrap().path();
            if p.extension().is_some_and(|x| x == "yaml") {
                Workload::load(&p).unwrap();
                n += 1;
            }
        }
        assert!(n >= 9);
    }

    #[test]
    fn parses_fields_comments_and_quotes() {
        let w = Workload::parse(
            "# c\nname: a # b\ntopics: 1\npartitionsPerTopic: 16\nmessageSize: 1024\n\
             keyDistributor: \"RANDOM_NANO\"\nsubscriptionsPerTopic: 1\n\
             consumerPerSubscription: 1\nproducersPerTopic: 2\nproducerRate: 0\n\
             warmupDurationMinutes: 0.5\ntestDurationMinutes: 1\nacks: \"all\"\n\
             payloadFile: 'x#y'\n",
        )
        .unwrap();
        assert_eq!(w.name, "a");
        assert_eq!(w.key_distributor, KeyDistributor::Random);
        assert_eq!(w.warmup, Duration::from_secs(30));
        assert_eq!(w.producer.acks.as_deref(), Some("all"));
        assert_eq!(w.payload_file.as_deref(), Some("x#y"));
        assert_eq!(w.producers_per_topic, 2);
    }

    #[test]
    fn refuses_nesting_and_bad_numbers() {
        assert!(parse_flat_yaml("a:\n  b: 1\n").is_err());
        assert!(parse_flat_yaml("- 1\n").is_err());
        assert!(Workload::parse("topics: x\n").is_err());
    }

    #[test]
    fn driver_properties_and_overlay() {
        let d = Driver::parse(
            "bootstrap: h:1\nacks: all\nlingerMs: 5\nproducer.queue.buffering.max.kbytes: 1\n",
        )
        .unwrap();
        assert_eq!(d.bootstrap.as_deref(), Some("h:1"));
        assert_eq!(
            d.producer_properties,
            vec![("queue.buffering.max.kbytes".into(), "1".into())]
        );
        let over = ProducerSettings {
            acks: Some("1".into()),
            ..Default::default()
        };
        let merged = d.producer.overlay(&over);
        assert_eq!(merged.acks.as_deref(), Some("1"));
        assert_eq!(merged.linger_ms, Some(5));
    }
}
