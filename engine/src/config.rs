//! Per-topic log configuration, with Kafka's names and, except where noted,
//! Kafka's defaults.
//!
//! Where Sluice differs from Kafka:
//! * `flush.messages` defaults to 1: an append is acknowledged only after the
//!   data is fdatasync'ed (group commit makes that one fsync for everything
//!   appended together). Kafka defaults to never fsyncing and relying on
//!   replication; setting `flush.messages` higher (or `flush.ms`) on a topic
//!   gives Kafka's behaviour back. See `engine/DESIGN.md`, "Durability".
//! * `cleanup.policy=compact` is accepted and stored, but compaction itself is
//!   not built yet: until it is, a compact-only log is kept whole (retention
//!   by time and size applies only to policies that include `delete`), so no
//!   key's latest value is ever lost.

use crate::batch::{Limits, TimestampType};
use crate::error::{EngineError, Result};

/// `cleanup.policy`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CleanupPolicy {
    Delete,
    Compact,
    CompactDelete,
}

/// Everything the engine needs to know about one topic's log.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LogConfig {
    /// `segment.bytes`: roll the active segment when it would grow past this.
    pub segment_bytes: u64,
    /// `segment.ms`: roll the active segment when it is this old.
    pub segment_ms: i64,
    /// `segment.index.bytes`: the offset index of one segment is at most this
    /// large; a full index rolls the segment.
    pub segment_index_bytes: u64,
    /// `retention.ms`: delete closed segments whose newest record is older;
    /// -1 keeps them forever.
    pub retention_ms: i64,
    /// `retention.bytes`: delete the oldest closed segments while the log is
    /// larger; -1 for no limit.
    pub retention_bytes: i64,
    /// `max.message.bytes`: the largest batch accepted.
    pub max_message_bytes: u64,
    /// `index.interval.bytes`: bytes of log between two index entries.
    pub index_interval_bytes: u64,
    /// `flush.messages`: fdatasync once this many messages are unflushed.
    pub flush_messages: u64,
    /// `flush.ms`: fdatasync at most this long after the first unflushed
    /// message.
    pub flush_ms: u64,
    /// `message.timestamp.type`.
    pub timestamp_type: TimestampType,
    /// `message.timestamp.before.max.ms` / `message.timestamp.after.max.ms`.
    pub timestamp_before_max_ms: i64,
    pub timestamp_after_max_ms: i64,
    /// `cleanup.policy`.
    pub cleanup_policy: CleanupPolicy,
    /// `file.delete.delay.ms`: how long a segment removed from the log
    /// (retention, DeleteRecords, truncation) keeps its files, renamed
    /// `*.deleted`, before they are deleted.
    pub file_delete_delay_ms: u64,
    /// `producer.id.expiration.ms`, a broker setting in Kafka (not a topic
    /// key): how long a partition remembers an idle idempotent producer.
    pub producer_id_expiration_ms: i64,
}

impl Default for LogConfig {
    fn default() -> Self {
        Self {
            segment_bytes: 1 << 30,
            segment_ms: 7 * 24 * 3600 * 1000,
            segment_index_bytes: 10 * 1024 * 1024,
            retention_ms: 7 * 24 * 3600 * 1000,
            retention_bytes: -1,
            max_message_bytes: 1_048_588,
            index_interval_bytes: 4096,
            flush_messages: 1,
            flush_ms: i64::MAX as u64,
            timestamp_type: TimestampType::CreateTime,
            timestamp_before_max_ms: i64::MAX,
            timestamp_after_max_ms: i64::MAX,
            cleanup_policy: CleanupPolicy::Delete,
            file_delete_delay_ms: 60_000,
            producer_id_expiration_ms: 86_400_000,
        }
    }
}

/// The topic-level keys [`LogConfig::set`] understands.
pub const KEYS: &[&str] = &[
    "segment.bytes",
    "segment.ms",
    "segment.index.bytes",
    "retention.ms",
    "retention.bytes",
    "max.message.bytes",
    "index.interval.bytes",
    "flush.messages",
    "flush.ms",
    "message.timestamp.type",
    "message.timestamp.before.max.ms",
    "message.timestamp.after.max.ms",
    "cleanup.policy",
    "file.delete.delay.ms",
];

/// Kafka's broker-level keys that give a topic key its default, with the
/// factor from the broker key's unit to the topic key's (0: not a number).
/// Where several set the same topic key, a later one wins, as in Kafka
/// (`log.retention.ms` over `.minutes` over `.hours`).
pub const BROKER_SYNONYMS: &[(&str, &str, i64)] = &[
    ("log.segment.bytes", "segment.bytes", 1),
    ("log.segment.delete.delay.ms", "file.delete.delay.ms", 1),
    ("log.roll.hours", "segment.ms", 3_600_000),
    ("log.roll.ms", "segment.ms", 1),
    ("log.index.size.max.bytes", "segment.index.bytes", 1),
    ("log.retention.hours", "retention.ms", 3_600_000),
    ("log.retention.minutes", "retention.ms", 60_000),
    ("log.retention.ms", "retention.ms", 1),
    ("log.retention.bytes", "retention.bytes", 1),
    ("message.max.bytes", "max.message.bytes", 1),
    ("log.index.interval.bytes", "index.interval.bytes", 1),
    ("log.flush.interval.messages", "flush.messages", 1),
    ("log.flush.interval.ms", "flush.ms", 1),
    ("log.message.timestamp.type", "message.timestamp.type", 0),
    (
        "log.message.timestamp.before.max.ms",
        "message.timestamp.before.max.ms",
        1,
    ),
    (
        "log.message.timestamp.after.max.ms",
        "message.timestamp.after.max.ms",
        1,
    ),
    ("log.cleanup.policy", "cleanup.policy", 0),
];

/// `producer.id.expiration.ms`: broker-level only.
pub const PRODUCER_ID_EXPIRATION_MS: &str = "producer.id.expiration.ms";

fn invalid(key: &str, value: &str, why: impl Into<String>) -> EngineError {
    EngineError::InvalidConfig {
        key: key.to_string(),
        value: value.to_string(),
        why: why.into(),
    }
}

fn int(key: &str, value: &str, min: i64) -> Result<i64> {
    let v: i64 = value
        .trim()
        .parse()
        .map_err(|_| invalid(key, value, "not an integer"))?;
    if v < min {
        return Err(invalid(key, value, format!("must be at least {min}")));
    }
    Ok(v)
}

impl LogConfig {
    /// Builds a config from Kafka-named properties over the defaults.
    pub fn from_props<'a>(props: impl IntoIterator<Item = (&'a str, &'a str)>) -> Result<Self> {
        let mut config = Self::default();
        for (k, v) in props {
            config.set(k, v)?;
        }
        Ok(config)
    }

    /// Sets one property by its Kafka name, validating it as Kafka does.
    pub fn set(&mut self, key: &str, value: &str) -> Result<()> {
        match key {
            "segment.bytes" => self.segment_bytes = int(key, value, 14)? as u64,
            "segment.ms" => self.segment_ms = int(key, value, 1)?,
            "segment.index.bytes" => self.segment_index_bytes = int(key, value, 8)? as u64,
            "retention.ms" => self.retention_ms = int(key, value, -1)?,
            "retention.bytes" => self.retention_bytes = int(key, value, -1)?,
            "max.message.bytes" => self.max_message_bytes = int(key, value, 0)? as u64,
            "index.interval.bytes" => self.index_interval_bytes = int(key, value, 0)? as u64,
            "flush.messages" => self.flush_messages = int(key, value, 1)? as u64,
            "flush.ms" => self.flush_ms = int(key, value, 0)? as u64,
            "message.timestamp.type" => {
                self.timestamp_type = match value {
                    "CreateTime" => TimestampType::CreateTime,
                    "LogAppendTime" => TimestampType::LogAppendTime,
                    _ => return Err(invalid(key, value, "must be CreateTime or LogAppendTime")),
                }
            }
            "message.timestamp.before.max.ms" => self.timestamp_before_max_ms = int(key, value, 0)?,
            "message.timestamp.after.max.ms" => self.timestamp_after_max_ms = int(key, value, 0)?,
            "cleanup.policy" => {
                let mut parts: Vec<&str> = value.split(',').map(str::trim).collect();
                parts.sort_unstable();
                parts.dedup();
                self.cleanup_policy = match parts.as_slice() {
                    ["delete"] => CleanupPolicy::Delete,
                    ["compact"] => CleanupPolicy::Compact,
                    ["compact", "delete"] => CleanupPolicy::CompactDelete,
                    _ => return Err(invalid(key, value, "must be delete, compact or both")),
                }
            }
            "file.delete.delay.ms" => self.file_delete_delay_ms = int(key, value, 0)? as u64,
            _ => return Err(invalid(key, value, "unknown topic config")),
        }
        Ok(())
    }

    /// Sets a broker-level key (Kafka's name, see [`BROKER_SYNONYMS`]).
    /// `Ok(false)`: not a key that sets a log default.
    pub fn set_broker(&mut self, key: &str, value: &str) -> Result<bool> {
        if key == PRODUCER_ID_EXPIRATION_MS {
            self.producer_id_expiration_ms = int(key, value, 1)?;
            return Ok(true);
        }
        let Some(&(_, topic_key, factor)) = BROKER_SYNONYMS.iter().find(|s| s.0 == key) else {
            return Ok(false);
        };
        if factor <= 1 {
            self.set(topic_key, value)?;
        } else {
            let v = int(key, value, -1)?;
            let scaled = if v < 0 { -1 } else { v.saturating_mul(factor) };
            self.set(topic_key, &scaled.to_string())
                .map_err(|_| invalid(key, value, "out of range"))?;
        }
        Ok(true)
    }

    /// Applies every broker-level key `lookup` has, in Kafka's precedence.
    pub fn apply_broker_defaults<'a>(
        &mut self,
        lookup: impl Fn(&str) -> Option<&'a str>,
    ) -> Result<()> {
        for (key, _, _) in BROKER_SYNONYMS {
            if let Some(v) = lookup(key) {
                self.set_broker(key, v)?;
            }
        }
        if let Some(v) = lookup(PRODUCER_ID_EXPIRATION_MS) {
            self.set_broker(PRODUCER_ID_EXPIRATION_MS, v)?;
        }
        Ok(())
    }

    /// Every key with its current value, as DescribeConfigs reports them.
    pub fn describe(&self) -> Vec<(&'static str, String)> {
        let ts = |t: TimestampType| match t {
            TimestampType::CreateTime => "CreateTime",
            TimestampType::LogAppendTime => "LogAppendTime",
        };
        let policy = match self.cleanup_policy {
            CleanupPolicy::Delete => "delete",
            CleanupPolicy::Compact => "compact",
            CleanupPolicy::CompactDelete => "compact,delete",
        };
        vec![
            ("segment.bytes", self.segment_bytes.to_string()),
            ("segment.ms", self.segment_ms.to_string()),
            ("segment.index.bytes", self.segment_index_bytes.to_string()),
            ("retention.ms", self.retention_ms.to_string()),
            ("retention.bytes", self.retention_bytes.to_string()),
            ("max.message.bytes", self.max_message_bytes.to_string()),
            (
                "index.interval.bytes",
                self.index_interval_bytes.to_string(),
            ),
            ("flush.messages", self.flush_messages.to_string()),
            ("flush.ms", self.flush_ms.to_string()),
            (
                "message.timestamp.type",
                ts(self.timestamp_type).to_string(),
            ),
            (
                "message.timestamp.before.max.ms",
                self.timestamp_before_max_ms.to_string(),
            ),
            (
                "message.timestamp.after.max.ms",
                self.timestamp_after_max_ms.to_string(),
            ),
            ("cleanup.policy", policy.to_string()),
            (
                "file.delete.delay.ms",
                self.file_delete_delay_ms.to_string(),
            ),
        ]
    }

    /// Batch limits derived from this config.
    pub fn limits(&self) -> Limits {
        Limits {
            batch_bytes_max: usize::try_from(self.max_message_bytes).unwrap_or(usize::MAX),
            timestamp_before_ms_max: self.timestamp_before_max_ms,
            timestamp_after_ms_max: self.timestamp_after_max_ms,
        }
    }

    /// True when every append must be fdatasync'ed before it is acknowledged.
    pub fn sync_every_append(&self) -> bool {
        self.flush_messages <= 1
    }

    /// Most entries one segment's offset index may hold.
    pub fn index_entries_max(&self) -> usize {
        (self.segment_index_bytes / 8).max(1) as usize
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_key_described_parses_back_to_the_same_config() {
        let mut c = LogConfig::default();
        c.set("retention.ms", "-1").unwrap();
        c.set("cleanup.policy", "delete, compact").unwrap();
        c.set("message.timestamp.type", "LogAppendTime").unwrap();
        let described = c.describe();
        assert_eq!(described.len(), KEYS.len());
        let back = LogConfig::from_props(described.iter().map(|(k, v)| (*k, v.as_str()))).unwrap();
        assert_eq!(back, c);
    }

    #[test]
    fn broker_keys_set_topic_defaults_in_kafkas_precedence() {
        let props: std::collections::HashMap<&str, &str> = [
            ("log.retention.hours", "2"),
            ("log.retention.ms", "5000"),
            ("log.roll.hours", "1"),
            ("message.max.bytes", "2000000"),
            ("log.flush.interval.messages", "10"),
            ("producer.id.expiration.ms", "60000"),
        ]
        .into();
        let mut c = LogConfig::default();
        c.apply_broker_defaults(|k| props.get(k).copied()).unwrap();
        assert_eq!(c.retention_ms, 5000, "ms wins over hours");
        assert_eq!(c.segment_ms, 3_600_000);
        assert_eq!(c.max_message_bytes, 2_000_000);
        assert_eq!(c.flush_messages, 10);
        assert_eq!(c.producer_id_expiration_ms, 60_000);
        let mut c = LogConfig::default();
        assert!(c.set_broker("log.retention.hours", "-1").unwrap());
        assert_eq!(c.retention_ms, -1);
        assert!(!c.set_broker("zookeeper.connect", "x").unwrap());
        assert!(c.set_broker("log.retention.hours", "soon").is_err());
    }

    #[test]
    fn invalid_values_are_refused_with_invalid_config() {
        let mut c = LogConfig::default();
        for (k, v) in [
            ("segment.bytes", "10"),
            ("segment.bytes", "ten"),
            ("retention.ms", "-2"),
            ("flush.messages", "0"),
            ("message.timestamp.type", "Now"),
            ("cleanup.policy", "keep"),
            ("no.such.key", "1"),
        ] {
            let e = c.set(k, v).unwrap_err();
            assert_eq!(
                e.kafka_code(),
                crate::error::KafkaCode::InvalidConfig,
                "{k}={v}"
            );
        }
        assert_eq!(c, LogConfig::default());
    }
}
