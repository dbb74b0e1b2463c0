//! Per-topic log configuration: every topic config Kafka 4.1 defines, with
//! Kafka's names, types, validation and, except where noted, defaults; and
//! the broker-level configs that give them their defaults or that Kafka lets
//! an operator change at run time.
//!
//! [`TOPIC_KEYS`] and [`BROKER_KEYS`] are the tables; [`LogConfig::set`] and
//! [`LogConfig::set_broker`] are the only entry points that validate a value
//! (the metadata coordinator validates every stored config through them).
//! Each key says whether Sluice acts on it (`in_effect`); one that it does not
//! act on yet is accepted, validated, stored and described like any other
//! (`docs/configs.md` lists them).
//!
//! Where Sluice differs from Kafka:
//! * `flush.messages` (`log.flush.interval.messages`) defaults to 1: an append
//!   is acknowledged only after the data is fdatasync'ed (group commit makes
//!   that one fsync for everything appended together). Kafka defaults to
//!   never fsyncing and relying on replication; setting `flush.messages`
//!   higher (or `flush.ms`) on a topic gives Kafka's behaviour back. See
//!   `engine/DESIGN.md`, "Durability".
//! * `segment.bytes` accepts values down to 14 bytes, as Kafka 3.x did (4.x
//!   refuses less than 1 MiB): tests and benchmarks roll small segments.
//! * `cleanup.policy=compact` is accepted and stored, and a compacted topic
//!   refuses keyless records, but compaction itself is not built yet: until
//!   it is, a compact-only log is kept whole (retention by time and size
//!   applies only to policies that include `delete`), so no key's latest
//!   value is ever lost.
//! * `remote.storage.enable=true` is refused as a Kafka broker without
//!   `remote.log.storage.system.enable` refuses it: there is no tiered
//!   storage.

use std::sync::Arc;

use crate::batch::{Compression, Limits, TimestampType};
use crate::error::{EngineError, Result};

/// `cleanup.policy`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CleanupPolicy {
    Delete,
    Compact,
    CompactDelete,
}

impl CleanupPolicy {
    /// True when the log is (to be) compacted, so every record needs a key.
    pub fn compacts(self) -> bool {
        self != Self::Delete
    }
}

/// `compression.type`: what the broker stores a produced batch as.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TopicCompression {
    /// `producer`: the producer's codec, untouched.
    Producer,
    /// `uncompressed`, `gzip`, `snappy`, `lz4`, `zstd`: batches that arrive
    /// with another codec are recompressed with this one.
    Codec(Compression),
}

impl TopicCompression {
    const NAMES: &'static [&'static str] =
        &["uncompressed", "zstd", "lz4", "snappy", "gzip", "producer"];

    fn parse(value: &str) -> Option<Self> {
        Some(match value {
            "producer" => Self::Producer,
            "uncompressed" => Self::Codec(Compression::None),
            "gzip" => Self::Codec(Compression::Gzip),
            "snappy" => Self::Codec(Compression::Snappy),
            "lz4" => Self::Codec(Compression::Lz4),
            "zstd" => Self::Codec(Compression::Zstd),
            _ => return None,
        })
    }

    fn name(self) -> &'static str {
        match self {
            Self::Producer => "producer",
            Self::Codec(Compression::None) => "uncompressed",
            Self::Codec(Compression::Gzip) => "gzip",
            Self::Codec(Compression::Snappy) => "snappy",
            Self::Codec(Compression::Lz4) => "lz4",
            Self::Codec(Compression::Zstd) => "zstd",
        }
    }
}

/// A config's type, as Kafka's `ConfigDef.Type` (DescribeConfigs v3+
/// reports it).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ConfigType {
    Boolean,
    String,
    Int,
    Long,
    Double,
    List,
    Class,
    Password,
}

impl ConfigType {
    /// The `configType` DescribeConfigs answers with.
    pub fn kafka_id(self) -> i8 {
        match self {
            Self::Boolean => 1,
            Self::String => 2,
            Self::Int => 3,
            Self::Long => 5,
            Self::Double => 6,
            Self::List => 7,
            Self::Class => 8,
            Self::Password => 9,
        }
    }
}

/// A config's valid values beyond its type, as Kafka's validators.
#[derive(Clone, Copy, Debug)]
pub enum Valid {
    Any,
    /// `Range.atLeast`.
    AtLeast(i64),
    /// `Range.between`, inclusive.
    Between(i64, i64),
    /// `ValidString.in`.
    OneOf(&'static [&'static str]),
    /// `ValidList.in`: a non-empty list of these.
    ListOf(&'static [&'static str]),
    /// A ratio in [0, 1].
    Ratio,
    /// `compression.gzip.level`: -1 (zlib's default) or 1 to 9.
    GzipLevel,
    /// `ThrottledReplicaListValidator`: `*` or `partition:broker,...`.
    ThrottledReplicas,
}

/// One topic-level config.
#[derive(Clone, Copy, Debug)]
pub struct TopicKey {
    pub name: &'static str,
    pub ty: ConfigType,
    pub valid: Valid,
    /// Sluice's default (Kafka's, except the departures above).
    pub default: &'static str,
    /// Whether Sluice acts on it yet.
    pub in_effect: bool,
}

const fn topic(
    name: &'static str,
    ty: ConfigType,
    valid: Valid,
    default: &'static str,
    in_effect: bool,
) -> TopicKey {
    TopicKey {
        name,
        ty,
        valid,
        default,
        in_effect,
    }
}

use ConfigType::{Boolean, Double, Int, List, Long, String as Str};

const LONG_MAX: &str = "9223372036854775807";
const CLEANUP_POLICIES: &[&str] = &["compact", "delete"];
const TIMESTAMP_TYPES: &[&str] = &["CreateTime", "LogAppendTime"];

/// Every topic config of Kafka 4.1 (`LogConfig`), in `kafka-configs
/// --describe --all`'s order (by name).
#[rustfmt::skip]
pub const TOPIC_KEYS: &[TopicKey] = &[
    topic("cleanup.policy", List, Valid::ListOf(CLEANUP_POLICIES), "delete", true),
    topic("compression.gzip.level", Int, Valid::GzipLevel, "-1", true),
    topic("compression.lz4.level", Int, Valid::Between(1, 17), "9", false),
    topic("compression.type", Str, Valid::OneOf(TopicCompression::NAMES), "producer", true),
    topic("compression.zstd.level", Int, Valid::Between(-131_072, 22), "3", true),
    topic("delete.retention.ms", Long, Valid::AtLeast(0), "86400000", false),
    topic("file.delete.delay.ms", Long, Valid::AtLeast(0), "60000", true),
    topic("flush.messages", Long, Valid::AtLeast(1), "1", true),
    topic("flush.ms", Long, Valid::AtLeast(0), LONG_MAX, true),
    topic("follower.replication.throttled.replicas", List, Valid::ThrottledReplicas, "", false),
    topic("index.interval.bytes", Int, Valid::AtLeast(0), "4096", true),
    topic("leader.replication.throttled.replicas", List, Valid::ThrottledReplicas, "", false),
    topic("local.retention.bytes", Long, Valid::AtLeast(-2), "-2", false),
    topic("local.retention.ms", Long, Valid::AtLeast(-2), "-2", false),
    topic("max.compaction.lag.ms", Long, Valid::AtLeast(1), LONG_MAX, false),
    topic("max.message.bytes", Int, Valid::AtLeast(0), "1048588", true),
    topic("message.timestamp.after.max.ms", Long, Valid::AtLeast(0), "3600000", true),
    topic("message.timestamp.before.max.ms", Long, Valid::AtLeast(0), LONG_MAX, true),
    topic("message.timestamp.type", Str, Valid::OneOf(TIMESTAMP_TYPES), "CreateTime", true),
    topic("min.cleanable.dirty.ratio", Double, Valid::Ratio, "0.5", false),
    topic("min.compaction.lag.ms", Long, Valid::AtLeast(0), "0", false),
    topic("min.insync.replicas", Int, Valid::AtLeast(1), "1", true),
    topic("preallocate", Boolean, Valid::Any, "false", false),
    topic("remote.log.copy.disable", Boolean, Valid::Any, "false", false),
    topic("remote.log.delete.on.disable", Boolean, Valid::Any, "false", false),
    topic("remote.storage.enable", Boolean, Valid::Any, "false", false),
    topic("retention.bytes", Long, Valid::Any, "-1", true),
    topic("retention.ms", Long, Valid::AtLeast(-1), "604800000", true),
    topic("segment.bytes", Int, Valid::AtLeast(14), "1073741824", true),
    topic("segment.index.bytes", Int, Valid::AtLeast(4), "10485760", true),
    topic("segment.jitter.ms", Long, Valid::AtLeast(0), "0", false),
    topic("segment.ms", Long, Valid::AtLeast(1), "604800000", true),
    topic("unclean.leader.election.enable", Boolean, Valid::Any, "false", true),
];

/// The topic-level key names, in [`TOPIC_KEYS`]' order.
pub fn topic_key(name: &str) -> Option<&'static TopicKey> {
    TOPIC_KEYS.iter().find(|k| k.name == name)
}

/// One broker-level config Sluice knows: the defaults of a topic config
/// (`log.retention.ms` and friends) or a key Kafka lets an operator change
/// at run time (`kafka-configs --entity-type brokers`).
#[derive(Clone, Copy, Debug)]
pub struct BrokerKey {
    pub name: &'static str,
    pub ty: ConfigType,
    pub valid: Valid,
    /// Kafka's default (Sluice's where it departs); `None` where Kafka has
    /// none (`log.retention.ms`: `log.retention.hours` applies).
    pub default: Option<&'static str>,
    /// The topic config it sets the default of, and the factor from this
    /// key's unit to the topic key's.
    pub topic: Option<(&'static str, i64)>,
    /// Whether Kafka lets it change at run time (`DynamicBrokerConfig`).
    pub dynamic: bool,
    /// Whether Sluice acts on it yet.
    pub in_effect: bool,
}

const fn log_default(
    name: &'static str,
    ty: ConfigType,
    valid: Valid,
    default: Option<&'static str>,
    topic_key: &'static str,
    factor: i64,
    dynamic: bool,
) -> BrokerKey {
    BrokerKey {
        name,
        ty,
        valid,
        default,
        topic: Some((topic_key, factor)),
        dynamic,
        // Whether it acts is its topic key's; see `BrokerKey::acts`.
        in_effect: false,
    }
}

const fn broker(
    name: &'static str,
    ty: ConfigType,
    valid: Valid,
    default: &'static str,
    in_effect: bool,
) -> BrokerKey {
    BrokerKey {
        name,
        ty,
        valid,
        default: Some(default),
        topic: None,
        dynamic: true,
        in_effect,
    }
}

const HOUR_MS: i64 = 3_600_000;

/// Broker-level configs. Those that set a topic config's default come first,
/// each topic key's synonyms in Kafka's precedence (the first one set wins:
/// `log.retention.ms` over `.minutes` over `.hours`,
/// `ServerTopicConfigSynonyms`).
#[rustfmt::skip]
pub const BROKER_KEYS: &[BrokerKey] = &[
    log_default("log.segment.bytes", Int, Valid::AtLeast(14), Some("1073741824"), "segment.bytes", 1, true),
    log_default("log.roll.ms", Long, Valid::AtLeast(1), None, "segment.ms", 1, true),
    log_default("log.roll.hours", Int, Valid::AtLeast(1), Some("168"), "segment.ms", HOUR_MS, false),
    log_default("log.roll.jitter.ms", Long, Valid::AtLeast(0), None, "segment.jitter.ms", 1, true),
    log_default("log.roll.jitter.hours", Int, Valid::AtLeast(0), Some("0"), "segment.jitter.ms", HOUR_MS, false),
    log_default("log.index.size.max.bytes", Int, Valid::AtLeast(4), Some("10485760"), "segment.index.bytes", 1, true),
    log_default("log.flush.interval.messages", Long, Valid::AtLeast(1), Some("1"), "flush.messages", 1, true),
    log_default("log.flush.interval.ms", Long, Valid::AtLeast(0), None, "flush.ms", 1, true),
    log_default("log.flush.scheduler.interval.ms", Long, Valid::AtLeast(0), Some(LONG_MAX), "flush.ms", 1, false),
    log_default("log.retention.bytes", Long, Valid::Any, Some("-1"), "retention.bytes", 1, true),
    log_default("log.retention.ms", Long, Valid::AtLeast(-1), None, "retention.ms", 1, true),
    log_default("log.retention.minutes", Int, Valid::AtLeast(-1), None, "retention.ms", 60_000, false),
    log_default("log.retention.hours", Int, Valid::AtLeast(-1), Some("168"), "retention.ms", HOUR_MS, false),
    log_default("message.max.bytes", Int, Valid::AtLeast(0), Some("1048588"), "max.message.bytes", 1, true),
    log_default("log.index.interval.bytes", Int, Valid::AtLeast(0), Some("4096"), "index.interval.bytes", 1, true),
    log_default("log.cleaner.delete.retention.ms", Long, Valid::AtLeast(0), Some("86400000"), "delete.retention.ms", 1, true),
    log_default("log.cleaner.min.compaction.lag.ms", Long, Valid::AtLeast(0), Some("0"), "min.compaction.lag.ms", 1, true),
    log_default("log.cleaner.max.compaction.lag.ms", Long, Valid::AtLeast(1), Some(LONG_MAX), "max.compaction.lag.ms", 1, true),
    log_default("log.segment.delete.delay.ms", Long, Valid::AtLeast(0), Some("60000"), "file.delete.delay.ms", 1, true),
    log_default("log.cleaner.min.cleanable.ratio", Double, Valid::Ratio, Some("0.5"), "min.cleanable.dirty.ratio", 1, true),
    log_default("log.cleanup.policy", List, Valid::ListOf(CLEANUP_POLICIES), Some("delete"), "cleanup.policy", 1, true),
    log_default("unclean.leader.election.enable", Boolean, Valid::Any, Some("false"), "unclean.leader.election.enable", 1, true),
    log_default("min.insync.replicas", Int, Valid::AtLeast(1), Some("1"), "min.insync.replicas", 1, true),
    log_default("compression.type", Str, Valid::OneOf(TopicCompression::NAMES), Some("producer"), "compression.type", 1, true),
    log_default("compression.gzip.level", Int, Valid::GzipLevel, Some("-1"), "compression.gzip.level", 1, true),
    log_default("compression.lz4.level", Int, Valid::Between(1, 17), Some("9"), "compression.lz4.level", 1, true),
    log_default("compression.zstd.level", Int, Valid::Between(-131_072, 22), Some("3"), "compression.zstd.level", 1, true),
    log_default("log.preallocate", Boolean, Valid::Any, Some("false"), "preallocate", 1, true),
    log_default("log.message.timestamp.type", Str, Valid::OneOf(TIMESTAMP_TYPES), Some("CreateTime"), "message.timestamp.type", 1, true),
    log_default("log.message.timestamp.before.max.ms", Long, Valid::AtLeast(0), Some(LONG_MAX), "message.timestamp.before.max.ms", 1, true),
    log_default("log.message.timestamp.after.max.ms", Long, Valid::AtLeast(0), Some("3600000"), "message.timestamp.after.max.ms", 1, true),
    log_default("log.local.retention.ms", Long, Valid::AtLeast(-2), Some("-2"), "local.retention.ms", 1, true),
    log_default("log.local.retention.bytes", Long, Valid::AtLeast(-2), Some("-2"), "local.retention.bytes", 1, true),
    // Kafka's other dynamically updatable broker configs
    // (`DynamicBrokerConfig.AllDynamicConfigs`, listener and security
    // configs aside, and the broker quotas of `DynamicConfig.Broker`).
    // Defaults for new topics; Kafka reads them from server.properties only,
    // Sluice also takes them cluster-wide at run time.
    broker("num.partitions", Int, Valid::AtLeast(1), "1", true),
    broker("default.replication.factor", Int, Valid::AtLeast(1), "1", true),
    broker(PRODUCER_ID_EXPIRATION_MS, Int, Valid::AtLeast(1), "86400000", true),
    broker("transaction.partition.verification.enable", Boolean, Valid::Any, "true", false),
    broker("log.cleaner.threads", Int, Valid::AtLeast(0), "1", false),
    broker("log.cleaner.dedupe.buffer.size", Long, Valid::Any, "134217728", false),
    broker("log.cleaner.io.buffer.load.factor", Double, Valid::Any, "0.9", false),
    broker("log.cleaner.io.buffer.size", Int, Valid::AtLeast(0), "524288", false),
    broker("log.cleaner.io.max.bytes.per.second", Double, Valid::Any, "1.7976931348623157E308", false),
    broker("log.cleaner.backoff.ms", Long, Valid::AtLeast(0), "15000", false),
    broker("num.io.threads", Int, Valid::AtLeast(1), "8", false),
    broker("num.network.threads", Int, Valid::AtLeast(1), "3", false),
    broker("num.replica.fetchers", Int, Valid::Any, "1", false),
    broker("num.recovery.threads.per.data.dir", Int, Valid::AtLeast(1), "2", false),
    broker("background.threads", Int, Valid::AtLeast(1), "10", false),
    broker("max.connections", Int, Valid::AtLeast(0), "2147483647", false),
    broker("max.connections.per.ip", Int, Valid::AtLeast(0), "2147483647", false),
    broker("max.connections.per.ip.overrides", Str, Valid::Any, "", false),
    broker("max.connection.creation.rate", Int, Valid::AtLeast(0), "2147483647", false),
    broker("metric.reporters", List, Valid::Any, "", false),
    broker("leader.replication.throttled.rate", Long, Valid::AtLeast(0), LONG_MAX, false),
    broker("follower.replication.throttled.rate", Long, Valid::AtLeast(0), LONG_MAX, false),
    broker("replica.alter.log.dirs.io.max.bytes.per.second", Long, Valid::AtLeast(0), LONG_MAX, false),
    broker("remote.log.index.file.cache.total.size.bytes", Long, Valid::AtLeast(1), "1073741824", false),
    broker("remote.log.manager.copy.max.bytes.per.second", Long, Valid::AtLeast(1), LONG_MAX, false),
    broker("remote.log.manager.fetch.max.bytes.per.second", Long, Valid::AtLeast(1), LONG_MAX, false),
    broker("remote.log.reader.threads", Int, Valid::AtLeast(1), "10", false),
    broker("remote.fetch.max.wait.ms", Int, Valid::AtLeast(1), "500", false),
    broker("remote.list.offsets.request.timeout.ms", Long, Valid::AtLeast(1), "30000", false),
    broker("remote.log.manager.copier.thread.pool.size", Int, Valid::AtLeast(1), "10", false),
    broker("remote.log.manager.expiration.thread.pool.size", Int, Valid::AtLeast(1), "10", false),
    broker("remote.log.manager.follower.thread.pool.size", Int, Valid::AtLeast(1), "2", false),
];

impl BrokerKey {
    /// Whether Sluice acts on it: its own flag, or its topic key's.
    pub fn acts(&self) -> bool {
        match self.topic {
            Some((t, _)) => topic_key(t).is_some_and(|k| k.in_effect),
            None => self.in_effect,
        }
    }

    /// Its value as a default of its topic key, in that key's unit.
    fn scaled(&self, value: &str) -> Result<String> {
        let factor = self.topic.map_or(1, |t| t.1);
        if factor == 1 {
            return Ok(value.trim().to_string());
        }
        let v = match parse(self.name, self.ty, self.valid, value)? {
            Parsed::Long(v) => v,
            _ => unreachable!("scaled keys are integers"),
        };
        Ok(if v < 0 { -1 } else { v.saturating_mul(factor) }.to_string())
    }
}

/// A broker-level key by name.
pub fn broker_key(name: &str) -> Option<&'static BrokerKey> {
    BROKER_KEYS.iter().find(|k| k.name == name)
}

/// The broker-level keys that set `topic_key`'s default, first one set wins.
pub fn synonyms_of(topic_key: &str) -> impl Iterator<Item = &'static BrokerKey> + '_ {
    BROKER_KEYS
        .iter()
        .filter(move |k| k.topic.is_some_and(|t| t.0 == topic_key))
}

/// `producer.id.expiration.ms`: broker-level only.
pub const PRODUCER_ID_EXPIRATION_MS: &str = "producer.id.expiration.ms";

fn invalid(key: &str, value: &str, why: impl Into<String>) -> EngineError {
    EngineError::InvalidConfig {
        key: key.to_string(),
        value: value.to_string(),
        why: why.into(),
    }
}

/// A value parsed by its type (Kafka's `ConfigDef.parseType`: numbers and
/// booleans are trimmed first).
#[derive(Debug, PartialEq)]
enum Parsed<'a> {
    Bool(bool),
    Long(i64),
    Double(f64),
    Str(&'a str),
    List(Vec<&'a str>),
}

/// Parses `value` as a `ty` and checks it against `valid`, as Kafka does.
fn parse<'a>(key: &str, ty: ConfigType, valid: Valid, value: &'a str) -> Result<Parsed<'a>> {
    let trimmed = value.trim();
    let bad = |why: String| invalid(key, value, why);
    let parsed = match ty {
        ConfigType::Boolean => match trimmed {
            t if t.eq_ignore_ascii_case("true") => Parsed::Bool(true),
            t if t.eq_ignore_ascii_case("false") => Parsed::Bool(false),
            _ => return Err(bad("expected value to be either true or false".into())),
        },
        ConfigType::Int => trimmed
            .parse::<i32>()
            .map(|v| Parsed::Long(i64::from(v)))
            .map_err(|_| bad("not a number of type INT".into()))?,
        ConfigType::Long => trimmed
            .parse::<i64>()
            .map(Parsed::Long)
            .map_err(|_| bad("not a number of type LONG".into()))?,
        ConfigType::Double => match trimmed.parse::<f64>() {
            Ok(v) if v.is_finite() => Parsed::Double(v),
            _ => return Err(bad("not a number of type DOUBLE".into())),
        },
        ConfigType::List if trimmed.is_empty() => Parsed::List(Vec::new()),
        ConfigType::List => Parsed::List(trimmed.split(',').map(str::trim).collect()),
        ConfigType::String | ConfigType::Class | ConfigType::Password => Parsed::Str(trimmed),
    };
    match (valid, &parsed) {
        (Valid::Any, _) => {}
        (Valid::AtLeast(min), Parsed::Long(v)) if *v < min => {
            return Err(bad(format!("value must be at least {min}")))
        }
        (Valid::Between(lo, hi), Parsed::Long(v)) if *v < lo || *v > hi => {
            return Err(bad(format!(
                "value must be no less than {lo} and no more than {hi}"
            )))
        }
        (Valid::OneOf(names), Parsed::Str(s)) if !names.contains(s) => {
            return Err(bad(format!("string must be one of: {}", names.join(", "))))
        }
        (Valid::ListOf(names), Parsed::List(items))
            if items.is_empty() || items.iter().any(|i| !names.contains(i)) =>
        {
            return Err(bad(format!("must be a list of: {}", names.join(", "))))
        }
        (Valid::Ratio, Parsed::Double(v)) if !(0.0..=1.0).contains(v) => {
            return Err(bad("value must be no less than 0 and no more than 1".into()))
        }
        (Valid::GzipLevel, Parsed::Long(v)) if *v != -1 && !(1..=9).contains(v) => {
            return Err(bad("value must be -1 or between 1 and 9".into()))
        }
        (Valid::ThrottledReplicas, Parsed::List(items)) if !throttled_replicas(items) => {
            return Err(bad(
                "must be the literal '*' or a list of replicas in the format \
                 [partitionId]:[brokerId],[partitionId]:[brokerId],..."
                    .into(),
            ))
        }
        _ => {}
    }
    Ok(parsed)
}

/// `ThrottledReplicaListValidator`: `*`, or every item `partition:broker`.
fn throttled_replicas(items: &[&str]) -> bool {
    let pair = |s: &str| {
        let digits = |d: &str| !d.is_empty() && d.bytes().all(|b| b.is_ascii_digit());
        s.is_empty()
            || s.split_once(':')
                .is_some_and(|(p, b)| digits(p) && digits(b))
    };
    items.first() == Some(&"*") || items.iter().all(|s| pair(s))
}

/// Everything the engine needs to know about one topic's log, and every
/// other topic config's value (those Sluice does not act on yet are kept so
/// that they can be described).
#[derive(Clone, Debug, PartialEq)]
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
    /// larger; negative for no limit.
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
    /// `compression.type`: batches of another codec are recompressed.
    pub compression: TopicCompression,
    /// `compression.gzip.level`, `.lz4.level`, `.zstd.level`: the level a
    /// recompressed batch is written with (lz4: accepted, one level only).
    pub compression_gzip_level: i32,
    pub compression_lz4_level: i32,
    pub compression_zstd_level: i32,
    /// Not in effect yet (no compaction): `delete.retention.ms`,
    /// `min.compaction.lag.ms`, `max.compaction.lag.ms`,
    /// `min.cleanable.dirty.ratio`.
    pub delete_retention_ms: i64,
    pub min_compaction_lag_ms: i64,
    pub max_compaction_lag_ms: i64,
    pub min_cleanable_dirty_ratio: f64,
    /// Not in effect yet: `segment.jitter.ms`, `preallocate`.
    pub segment_jitter_ms: i64,
    pub preallocate: bool,
    /// `min.insync.replicas` (acks=all below it: NOT_ENOUGH_REPLICAS) and
    /// `unclean.leader.election.enable` (the coordinator reads it from the
    /// topic's stored configs); the replication throttles are not in
    /// effect yet.
    pub min_insync_replicas: i32,
    pub unclean_leader_election_enable: bool,
    pub leader_replication_throttled_replicas: Arc<str>,
    pub follower_replication_throttled_replicas: Arc<str>,
    /// Not in effect (no tiered storage): `remote.storage.enable` (only
    /// `false`), `local.retention.ms`, `local.retention.bytes`,
    /// `remote.log.copy.disable`, `remote.log.delete.on.disable`.
    pub remote_storage_enable: bool,
    pub local_retention_ms: i64,
    pub local_retention_bytes: i64,
    pub remote_log_copy_disable: bool,
    pub remote_log_delete_on_disable: bool,
}

impl Default for LogConfig {
    fn default() -> Self {
        Self {
            segment_bytes: 1 << 30,
            segment_ms: 7 * 24 * HOUR_MS,
            segment_index_bytes: 10 * 1024 * 1024,
            retention_ms: 7 * 24 * HOUR_MS,
            retention_bytes: -1,
            max_message_bytes: 1_048_588,
            index_interval_bytes: 4096,
            flush_messages: 1,
            flush_ms: i64::MAX as u64,
            timestamp_type: TimestampType::CreateTime,
            timestamp_before_max_ms: i64::MAX,
            // Kafka 4.0 (KIP-1030): an hour ahead of the broker's clock.
            timestamp_after_max_ms: HOUR_MS,
            cleanup_policy: CleanupPolicy::Delete,
            file_delete_delay_ms: 60_000,
            producer_id_expiration_ms: 86_400_000,
            compression: TopicCompression::Producer,
            compression_gzip_level: -1,
            compression_lz4_level: 9,
            compression_zstd_level: 3,
            delete_retention_ms: 24 * HOUR_MS,
            min_compaction_lag_ms: 0,
            max_compaction_lag_ms: i64::MAX,
            min_cleanable_dirty_ratio: 0.5,
            segment_jitter_ms: 0,
            preallocate: false,
            min_insync_replicas: 1,
            unclean_leader_election_enable: false,
            leader_replication_throttled_replicas: Arc::from(""),
            follower_replication_throttled_replicas: Arc::from(""),
            remote_storage_enable: false,
            local_retention_ms: -2,
            local_retention_bytes: -2,
            remote_log_copy_disable: false,
            remote_log_delete_on_disable: false,
        }
    }
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

    /// Sets one topic config by its Kafka name, validating it as Kafka does.
    /// On error nothing changes.
    pub fn set(&mut self, key: &str, value: &str) -> Result<()> {
        let Some(def) = topic_key(key) else {
            return Err(invalid(key, value, "unknown topic config"));
        };
        let parsed = parse(key, def.ty, def.valid, value)?;
        let long = || match &parsed {
            Parsed::Long(v) => *v,
            _ => unreachable!("{key} is an integer"),
        };
        let flag = || parsed == Parsed::Bool(true);
        let list = || match &parsed {
            Parsed::List(items) => Arc::from(items.join(",")),
            _ => unreachable!("{key} is a list"),
        };
        match key {
            "segment.bytes" => self.segment_bytes = long() as u64,
            "segment.ms" => self.segment_ms = long(),
            "segment.index.bytes" => self.segment_index_bytes = long() as u64,
            "retention.ms" => self.retention_ms = long(),
            "retention.bytes" => self.retention_bytes = long(),
            "max.message.bytes" => self.max_message_bytes = long() as u64,
            "index.interval.bytes" => self.index_interval_bytes = long() as u64,
            "flush.messages" => self.flush_messages = long() as u64,
            "flush.ms" => self.flush_ms = long() as u64,
            "message.timestamp.type" => {
                self.timestamp_type = match &parsed {
                    Parsed::Str("LogAppendTime") => TimestampType::LogAppendTime,
                    _ => TimestampType::CreateTime,
                }
            }
            "message.timestamp.before.max.ms" => self.timestamp_before_max_ms = long(),
            "message.timestamp.after.max.ms" => self.timestamp_after_max_ms = long(),
            "cleanup.policy" => {
                let Parsed::List(items) = &parsed else {
                    unreachable!("cleanup.policy is a list")
                };
                let (compact, delete) = (items.contains(&"compact"), items.contains(&"delete"));
                self.cleanup_policy = match (compact, delete) {
                    (true, true) => CleanupPolicy::CompactDelete,
                    (true, false) => CleanupPolicy::Compact,
                    _ => CleanupPolicy::Delete,
                }
            }
            "file.delete.delay.ms" => self.file_delete_delay_ms = long() as u64,
            "compression.type" => {
                let Parsed::Str(name) = &parsed else {
                    unreachable!("compression.type is a string")
                };
                self.compression = TopicCompression::parse(name).expect("validated")
            }
            "compression.gzip.level" => self.compression_gzip_level = long() as i32,
            "compression.lz4.level" => self.compression_lz4_level = long() as i32,
            "compression.zstd.level" => self.compression_zstd_level = long() as i32,
            "delete.retention.ms" => self.delete_retention_ms = long(),
            "min.compaction.lag.ms" | "max.compaction.lag.ms" => {
                let (min, max) = match key {
                    "min.compaction.lag.ms" => (long(), self.max_compaction_lag_ms),
                    _ => (self.min_compaction_lag_ms, long()),
                };
                // Kafka's LogConfig.validateValues.
                if min > max {
                    return Err(invalid(
                        key,
                        value,
                        format!("min.compaction.lag.ms ({min}) > max.compaction.lag.ms ({max})"),
                    ));
                }
                (self.min_compaction_lag_ms, self.max_compaction_lag_ms) = (min, max);
            }
            "min.cleanable.dirty.ratio" => {
                let Parsed::Double(v) = &parsed else {
                    unreachable!("min.cleanable.dirty.ratio is a double")
                };
                self.min_cleanable_dirty_ratio = *v
            }
            "segment.jitter.ms" => self.segment_jitter_ms = long(),
            "preallocate" => self.preallocate = flag(),
            "min.insync.replicas" => self.min_insync_replicas = long() as i32,
            "unclean.leader.election.enable" => self.unclean_leader_election_enable = flag(),
            "leader.replication.throttled.replicas" => {
                self.leader_replication_throttled_replicas = list()
            }
            "follower.replication.throttled.replicas" => {
                self.follower_replication_throttled_replicas = list()
            }
            "remote.storage.enable" => {
                if flag() {
                    return Err(invalid(
                        key,
                        value,
                        "Tiered Storage functionality is disabled in the broker. \
                         Topic cannot be configured with remote log storage.",
                    ));
                }
                self.remote_storage_enable = false
            }
            "local.retention.ms" => self.local_retention_ms = long(),
            "local.retention.bytes" => self.local_retention_bytes = long(),
            "remote.log.copy.disable" => self.remote_log_copy_disable = flag(),
            "remote.log.delete.on.disable" => self.remote_log_delete_on_disable = flag(),
            _ => unreachable!("{key} is in TOPIC_KEYS but not set here"),
        }
        Ok(())
    }

    /// Sets a broker-level key (Kafka's name, see [`BROKER_KEYS`]): a topic
    /// config's default, or a dynamic broker config with no bearing on the
    /// log (validated, not applied). `Ok(false)`: not a key Sluice knows.
    pub fn set_broker(&mut self, key: &str, value: &str) -> Result<bool> {
        let Some(def) = broker_key(key) else {
            return Ok(false);
        };
        let parsed = parse(key, def.ty, def.valid, value)?;
        if key == PRODUCER_ID_EXPIRATION_MS {
            let Parsed::Long(v) = parsed else {
                unreachable!("{key} is an integer")
            };
            self.producer_id_expiration_ms = v;
        }
        if let Some((topic_key, _)) = def.topic {
            let scaled = def.scaled(value)?;
            self.set(topic_key, &scaled)
                .map_err(|e| invalid(key, value, e.to_string()))?;
        }
        Ok(true)
    }

    /// Applies every broker-level key `lookup` has, in Kafka's precedence
    /// (for a topic key, the first of its synonyms that is set). A value
    /// that does not apply is skipped; the first such error is returned
    /// once the others are applied.
    pub fn apply_broker_defaults<'a>(
        &mut self,
        lookup: impl Fn(&str) -> Option<&'a str>,
    ) -> Result<()> {
        let firsts = TOPIC_KEYS.iter().filter_map(|def| {
            synonyms_of(def.name).find_map(|s| lookup(s.name).map(|v| (s.name, v)))
        });
        let others = BROKER_KEYS
            .iter()
            .filter(|k| k.topic.is_none())
            .filter_map(|k| lookup(k.name).map(|v| (k.name, v)));
        let mut first_error = None;
        for (key, v) in firsts.chain(others).collect::<Vec<_>>() {
            if let Err(e) = self.set_broker(key, v) {
                first_error.get_or_insert(e);
            }
        }
        first_error.map_or(Ok(()), Err)
    }

    /// One topic config's current value, as DescribeConfigs reports it.
    pub fn value_of(&self, key: &str) -> Option<String> {
        let ratio = |v: f64| {
            // Java's Double.toString for the ratios that matter: "0.5", "1.0".
            let s = v.to_string();
            if s.contains('.') || s.contains('e') {
                s
            } else {
                format!("{s}.0")
            }
        };
        Some(match key {
            "segment.bytes" => self.segment_bytes.to_string(),
            "segment.ms" => self.segment_ms.to_string(),
            "segment.index.bytes" => self.segment_index_bytes.to_string(),
            "retention.ms" => self.retention_ms.to_string(),
            "retention.bytes" => self.retention_bytes.to_string(),
            "max.message.bytes" => self.max_message_bytes.to_string(),
            "index.interval.bytes" => self.index_interval_bytes.to_string(),
            "flush.messages" => self.flush_messages.to_string(),
            "flush.ms" => self.flush_ms.to_string(),
            "message.timestamp.type" => match self.timestamp_type {
                TimestampType::CreateTime => "CreateTime".into(),
                TimestampType::LogAppendTime => "LogAppendTime".into(),
            },
            "message.timestamp.before.max.ms" => self.timestamp_before_max_ms.to_string(),
            "message.timestamp.after.max.ms" => self.timestamp_after_max_ms.to_string(),
            "cleanup.policy" => match self.cleanup_policy {
                CleanupPolicy::Delete => "delete".into(),
                CleanupPolicy::Compact => "compact".into(),
                CleanupPolicy::CompactDelete => "compact,delete".into(),
            },
            "file.delete.delay.ms" => self.file_delete_delay_ms.to_string(),
            "compression.type" => self.compression.name().into(),
            "compression.gzip.level" => self.compression_gzip_level.to_string(),
            "compression.lz4.level" => self.compression_lz4_level.to_string(),
            "compression.zstd.level" => self.compression_zstd_level.to_string(),
            "delete.retention.ms" => self.delete_retention_ms.to_string(),
            "min.compaction.lag.ms" => self.min_compaction_lag_ms.to_string(),
            "max.compaction.lag.ms" => self.max_compaction_lag_ms.to_string(),
            "min.cleanable.dirty.ratio" => ratio(self.min_cleanable_dirty_ratio),
            "segment.jitter.ms" => self.segment_jitter_ms.to_string(),
            "preallocate" => self.preallocate.to_string(),
            "min.insync.replicas" => self.min_insync_replicas.to_string(),
            "unclean.leader.election.enable" => self.unclean_leader_election_enable.to_string(),
            "leader.replication.throttled.replicas" => {
                self.leader_replication_throttled_replicas.to_string()
            }
            "follower.replication.throttled.replicas" => {
                self.follower_replication_throttled_replicas.to_string()
            }
            "remote.storage.enable" => self.remote_storage_enable.to_string(),
            "local.retention.ms" => self.local_retention_ms.to_string(),
            "local.retention.bytes" => self.local_retention_bytes.to_string(),
            "remote.log.copy.disable" => self.remote_log_copy_disable.to_string(),
            "remote.log.delete.on.disable" => self.remote_log_delete_on_disable.to_string(),
            _ => return None,
        })
    }

    /// Every topic config with its current value, in [`TOPIC_KEYS`]' order.
    pub fn describe(&self) -> Vec<(&'static str, String)> {
        TOPIC_KEYS
            .iter()
            .map(|k| {
                let v = self.value_of(k.name).expect("every topic key has a value");
                (k.name, v)
            })
            .collect()
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

    /// The level a batch recompressed with `codec` is written at.
    pub fn compression_level(&self, codec: Compression) -> i32 {
        match codec {
            Compression::Gzip => self.compression_gzip_level,
            Compression::Lz4 => self.compression_lz4_level,
            Compression::Zstd => self.compression_zstd_level,
            Compression::None | Compression::Snappy => 0,
        }
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
        c.set("compression.type", "zstd").unwrap();
        c.set("min.cleanable.dirty.ratio", "0.25").unwrap();
        c.set("leader.replication.throttled.replicas", "0:1, 1:2")
            .unwrap();
        let described = c.describe();
        assert_eq!(described.len(), TOPIC_KEYS.len());
        let back = LogConfig::from_props(described.iter().map(|(k, v)| (*k, v.as_str()))).unwrap();
        assert_eq!(back, c);
    }

    #[test]
    fn the_default_config_is_the_tables_defaults() {
        let c = LogConfig::default();
        for k in TOPIC_KEYS {
            assert_eq!(c.value_of(k.name).as_deref(), Some(k.default), "{}", k.name);
            let mut set = LogConfig::default();
            set.set(k.name, k.default).unwrap();
            assert_eq!(set, c, "{}", k.name);
        }
        // A broker key's own default, scaled, is its topic key's default.
        for b in BROKER_KEYS {
            let (Some(default), Some((topic, _))) = (b.default, b.topic) else {
                continue;
            };
            assert_eq!(
                b.scaled(default).unwrap(),
                topic_key(topic).unwrap().default,
                "{}",
                b.name
            );
        }
        assert_eq!(TOPIC_KEYS.len(), 33, "Kafka 4.1 defines 33 topic configs");
        let mut names: Vec<_> = TOPIC_KEYS.iter().map(|k| k.name).collect();
        names.sort_unstable();
        assert!(names.iter().copied().eq(TOPIC_KEYS.iter().map(|k| k.name)));
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
            ("compression.type", "lz4"),
            ("log.cleaner.threads", "4"),
        ]
        .into();
        let mut c = LogConfig::default();
        c.apply_broker_defaults(|k| props.get(k).copied()).unwrap();
        assert_eq!(c.retention_ms, 5000, "ms wins over hours");
        assert_eq!(c.segment_ms, 3_600_000);
        assert_eq!(c.max_message_bytes, 2_000_000);
        assert_eq!(c.flush_messages, 10);
        assert_eq!(c.producer_id_expiration_ms, 60_000);
        assert_eq!(c.compression, TopicCompression::Codec(Compression::Lz4));
        let mut c = LogConfig::default();
        assert!(c.set_broker("log.retention.hours", "-1").unwrap());
        assert_eq!(c.retention_ms, -1);
        assert!(c.set_broker("num.io.threads", "16").unwrap());
        assert!(!c.set_broker("zookeeper.connect", "x").unwrap());
        assert!(c.set_broker("log.retention.hours", "soon").is_err());
        assert!(c.set_broker("log.cleaner.threads", "-1").is_err());
        assert!(c
            .set_broker("log.cleaner.min.cleanable.ratio", "2")
            .is_err());
    }

    #[test]
    fn invalid_values_are_refused_with_invalid_config_naming_the_key() {
        let mut c = LogConfig::default();
        for (k, v) in [
            ("segment.bytes", "10"),
            ("segment.bytes", "ten"),
            ("segment.bytes", "3000000000"),
            ("retention.ms", "-2"),
            ("flush.messages", "0"),
            ("message.timestamp.type", "Now"),
            ("cleanup.policy", "keep"),
            ("cleanup.policy", ""),
            ("compression.type", "brotli"),
            ("compression.gzip.level", "0"),
            ("compression.lz4.level", "18"),
            ("compression.zstd.level", "23"),
            ("min.cleanable.dirty.ratio", "1.5"),
            ("min.cleanable.dirty.ratio", "NaN"),
            ("preallocate", "yes"),
            ("unclean.leader.election.enable", "1"),
            ("leader.replication.throttled.replicas", "0-1"),
            ("local.retention.ms", "-3"),
            ("max.compaction.lag.ms", "0"),
            ("min.compaction.lag.ms", "-1"),
            ("remote.storage.enable", "true"),
            ("no.such.key", "1"),
        ] {
            let e = c.set(k, v).unwrap_err();
            assert_eq!(
                e.kafka_code(),
                crate::error::KafkaCode::InvalidConfig,
                "{k}={v}"
            );
            assert!(e.to_string().contains(k), "{e} names {k}");
        }
        assert_eq!(c, LogConfig::default());
        c.set("max.compaction.lag.ms", "100").unwrap();
        assert!(c.set("min.compaction.lag.ms", "101").is_err());
        c.set("follower.replication.throttled.replicas", "*")
            .unwrap();
        c.set("preallocate", " TRUE ").unwrap();
        assert!(c.preallocate);
    }
}
