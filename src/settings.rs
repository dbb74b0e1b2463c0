//! `sluice start` settings by Kafka's broker config names, from a
//! properties file (`--config`, the format of Kafka's server.properties),
//! `--override key=value`, and the command line's flags, later sources
//! winning.
//!
//! Keys Sluice does not use (a server.properties written for Kafka has
//! many) are reported once at start and otherwise ignored, as Kafka does
//! with unknown keys. A known key with a bad value is an error.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;

use sluice_engine::config::LogConfig;

/// Parses Java properties text: `key=value`, `key: value` or `key value`
/// lines, `#` and `!` comments, a trailing `\` continuing a line.
pub fn parse_properties(text: &str) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    let mut pending = String::new();
    for raw in text.lines() {
        let line = raw.trim_start();
        if pending.is_empty() && (line.is_empty() || line.starts_with('#') || line.starts_with('!'))
        {
            continue;
        }
        if let Some(cont) = line.strip_suffix('\\') {
            pending.push_str(cont);
            continue;
        }
        pending.push_str(line);
        let entry = std::mem::take(&mut pending);
        let split = entry.find(['=', ':', ' ', '\t']);
        let (k, v) = match split {
            Some(i) => {
                let v = entry[i + 1..].trim_start();
                let v = v
                    .strip_prefix(['=', ':'])
                    .filter(|_| entry[i..i + 1].trim().is_empty())
                    .unwrap_or(v);
                (&entry[..i], v.trim())
            }
            None => (entry.as_str(), ""),
        };
        out.insert(k.trim().to_string(), v.to_string());
    }
    out
}

/// Everything `sluice start` needs, resolved and checked.
#[derive(Debug, PartialEq)]
pub struct Settings {
    pub broker_id: i32,
    pub listen: SocketAddr,
    pub advertised: (String, u16),
    /// `replication.listener` (Sluice's own key): where followers fetch
    /// from; port 0 picks a free port at start.
    pub replication_listen: SocketAddr,
    /// `replica.lag.time.max.ms`.
    pub replica_lag_time_max_ms: u64,
    pub log_dirs: Option<Vec<PathBuf>>,
    pub auto_create_topics: bool,
    pub num_partitions: i32,
    pub default_replication_factor: i16,
    pub fetch_max_bytes: usize,
    pub socket_request_max_bytes: usize,
    pub queued_max_request_bytes: usize,
    /// `tail.cache.bytes` (Sluice's own key).
    pub tail_cache_bytes: usize,
    /// `log.segment.fds.max` (Sluice's own): segment file descriptors kept
    /// open; `None`: half of `ulimit -n`.
    pub segment_fds_max: Option<usize>,
    pub connections_max_idle_ms: u64,
    pub retention_check_interval_ms: u64,
    pub offsets_topic_num_partitions: i32,
    /// `offsets.topic.replication.factor`.
    pub offsets_topic_replication_factor: i16,
    pub offsets_retention_minutes: i64,
    pub offsets_topic_segment_bytes: i64,
    pub offsets_retention_check_interval_ms: u64,
    pub group_initial_rebalance_delay_ms: i32,
    pub group_min_session_timeout_ms: i32,
    pub group_max_session_timeout_ms: i32,
    pub group_max_size: usize,
    /// Broker-level log defaults (`message.max.bytes`, `log.retention.*`, ...).
    pub log_defaults: BTreeMap<String, String>,
    /// Keys given that Sluice does not use.
    pub ignored: Vec<String>,
}

/// Keys that are Sluice's own and not Kafka's broker keys.
const KNOWN: &[&str] = &[
    "broker.id",
    "node.id",
    "listeners",
    "advertised.listeners",
    "replication.listener",
    "replica.lag.time.max.ms",
    "log.dirs",
    "log.dir",
    "auto.create.topics.enable",
    "num.partitions",
    "default.replication.factor",
    "fetch.max.bytes",
    "socket.request.max.bytes",
    "queued.max.request.bytes",
    "tail.cache.bytes",
    "log.segment.fds.max",
    "connections.max.idle.ms",
    "log.retention.check.interval.ms",
    "offsets.topic.num.partitions",
    "offsets.topic.replication.factor",
    "offsets.topic.segment.bytes",
    "offsets.retention.minutes",
    "offsets.retention.check.interval.ms",
    "group.initial.rebalance.delay.ms",
    "group.min.session.timeout.ms",
    "group.max.session.timeout.ms",
    "group.max.size",
];

/// `PLAINTEXT://host:port` or `host:port`; one listener.
fn listener(key: &str, value: &str) -> Result<(String, u16), String> {
    let first = value.split(',').next().unwrap_or("").trim();
    let addr = match first.split_once("://") {
        Some((proto, rest)) if proto.eq_ignore_ascii_case("PLAINTEXT") => rest,
        Some((proto, _)) => {
            return Err(format!(
                "{key}={value}: only PLAINTEXT listeners are served yet, not {proto}"
            ))
        }
        None => first,
    };
    let (host, port) = addr
        .rsplit_once(':')
        .ok_or_else(|| format!("{key}={value}: expected host:port"))?;
    let port = port
        .parse()
        .map_err(|_| format!("{key}={value}: {port:?} is not a port"))?;
    Ok((host.trim_matches(['[', ']']).to_string(), port))
}

fn number<T: std::str::FromStr>(key: &str, value: &str) -> Result<T, String> {
    value
        .trim()
        .parse()
        .map_err(|_| format!("{key}={value}: not a valid number"))
}

/// `key`'s integer value, at least `min`; `default` when not given.
fn int_at_least(
    props: &BTreeMap<String, String>,
    key: &str,
    default: i64,
    min: i64,
) -> Result<i64, String> {
    let Some(v) = props.get(key) else {
        return Ok(default);
    };
    let v = number::<i64>(key, v)?;
    if v < min {
        return Err(format!("{key}={v}: must be at least {min}"));
    }
    Ok(v)
}

/// Where to listen (`listeners`: an IP address, all of them when the host
/// is empty) and the address clients are told (`advertised.listeners`,
/// else the same).
fn addresses(
    listeners: Option<&str>,
    advertised: Option<&str>,
) -> Result<(SocketAddr, (String, u16)), String> {
    let (host, port) = listener("listeners", listeners.unwrap_or("127.0.0.1:9092"))?;
    let listen = socket_address("listeners", &host, port)?;
    let advertised = match advertised {
        Some(v) => listener("advertised.listeners", v)?,
        None => (listen.ip().to_string(), listen.port()),
    };
    Ok((listen, advertised))
}

/// `replication.listener`: `host:port` to listen on for followers; unset,
/// the Kafka listener's address on a free port.
fn replication_address(value: Option<&str>, kafka: SocketAddr) -> Result<SocketAddr, String> {
    let Some(v) = value else {
        return Ok(SocketAddr::new(kafka.ip(), 0));
    };
    let (host, port) = listener("replication.listener", v)?;
    socket_address("replication.listener", &host, port)
}

/// The address to listen on for `key`'s `host` (every address when empty).
fn socket_address(key: &str, host: &str, port: u16) -> Result<SocketAddr, String> {
    let ip = if host.is_empty() { "0.0.0.0" } else { host };
    format!("{ip}:{port}")
        .parse()
        .or_else(|_| format!("[{ip}]:{port}").parse())
        .map_err(|_| format!("{key}: {host:?} is not an IP address to listen on"))
}

/// `log.dirs`: comma-separated directories.
fn log_dirs(value: Option<&str>) -> Option<Vec<PathBuf>> {
    value.map(|v| {
        v.split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(PathBuf::from)
            .collect()
    })
}

/// The keys that are not Sluice's own: the broker-level log defaults
/// `LogConfig` takes (checked), and the keys Sluice does not use.
fn log_defaults(
    props: &BTreeMap<String, String>,
) -> Result<(BTreeMap<String, String>, Vec<String>), String> {
    let mut log_defaults = BTreeMap::new();
    let mut ignored = Vec::new();
    let mut check = LogConfig::default();
    for (k, v) in props {
        if KNOWN.contains(&k.as_str()) {
            continue;
        }
        match check.set_broker(k, v) {
            Ok(true) => {
                log_defaults.insert(k.clone(), v.clone());
            }
            Ok(false) => ignored.push(k.clone()),
            Err(e) => return Err(e.to_string()),
        }
    }
    Ok((log_defaults, ignored))
}

/// `auto.create.topics.enable`: true or false, in any case; true when not
/// given.
fn auto_create(value: Option<&str>) -> Result<bool, String> {
    match value.map(str::trim) {
        None => Ok(true),
        Some(v) if v.eq_ignore_ascii_case("true") => Ok(true),
        Some(v) if v.eq_ignore_ascii_case("false") => Ok(false),
        Some(v) => Err(format!("auto.create.topics.enable={v}: not true or false")),
    }
}

impl Settings {
    /// Resolves `props` (Kafka keys) over Sluice's defaults.
    pub fn resolve(props: &BTreeMap<String, String>) -> Result<Settings, String> {
        let get = |k: &str| props.get(k).map(String::as_str);
        let (listen, advertised) = addresses(get("listeners"), get("advertised.listeners"))?;
        let replication_listen = replication_address(get("replication.listener"), listen)?;
        let log_dirs = log_dirs(get("log.dirs").or(get("log.dir")));
        let (log_defaults, ignored) = log_defaults(props)?;
        let auto_create = auto_create(get("auto.create.topics.enable"))?;
        let num = |k: &str, default: i64, min: i64| int_at_least(props, k, default, min);
        let broker_id = match get("broker.id").or(get("node.id")) {
            Some(v) => number("broker.id", v)?,
            None => 1,
        };
        Ok(Settings {
            broker_id,
            listen,
            advertised,
            replication_listen,
            replica_lag_time_max_ms: num("replica.lag.time.max.ms", 30_000, 1)? as u64,
            log_dirs,
            auto_create_topics: auto_create,
            // -1 when not given: the cluster's default applies.
            num_partitions: num("num.partitions", -1, 1)?.min(i64::from(i32::MAX)) as i32,
            default_replication_factor: num("default.replication.factor", -1, 1)?
                .min(i64::from(i16::MAX)) as i16,
            fetch_max_bytes: num("fetch.max.bytes", 57_671_680, 1024)? as usize,
            socket_request_max_bytes: num("socket.request.max.bytes", 104_857_600, 1024)? as usize,
            queued_max_request_bytes: num("queued.max.request.bytes", 256 << 20, 1 << 20)? as usize,
            tail_cache_bytes: num(
                "tail.cache.bytes",
                sluice_engine::shard::TAIL_CACHE_BYTES as i64,
                0,
            )? as usize,
            segment_fds_max: match get("log.segment.fds.max") {
                Some(_) => Some(num("log.segment.fds.max", 0, 64)? as usize),
                None => None,
            },
            connections_max_idle_ms: num("connections.max.idle.ms", 600_000, 1)? as u64,
            retention_check_interval_ms: num("log.retention.check.interval.ms", 300_000, 1)? as u64,
            offsets_topic_replication_factor: num("offsets.topic.replication.factor", 3, 1)?
                .min(i64::from(i16::MAX)) as i16,
            offsets_topic_num_partitions: num("offsets.topic.num.partitions", 50, 1)?
                .min(i64::from(i32::MAX)) as i32,
            // 0 (Kafka: at least 1) expires offsets of empty groups at once.
            offsets_retention_minutes: num("offsets.retention.minutes", 10_080, 0)?,
            offsets_topic_segment_bytes: num("offsets.topic.segment.bytes", 104_857_600, 1)?
                .min(i64::from(i32::MAX)),
            offsets_retention_check_interval_ms: num(
                "offsets.retention.check.interval.ms",
                600_000,
                1,
            )? as u64,
            group_initial_rebalance_delay_ms: num("group.initial.rebalance.delay.ms", 3_000, 0)?
                .min(i64::from(i32::MAX)) as i32,
            group_min_session_timeout_ms: num("group.min.session.timeout.ms", 6_000, 1)?
                .min(i64::from(i32::MAX)) as i32,
            group_max_session_timeout_ms: num("group.max.session.timeout.ms", 1_800_000, 1)?
                .min(i64::from(i32::MAX)) as i32,
            group_max_size: num("group.max.size", 1_000, 1)? as usize,
            log_defaults,
            ignored,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_kafka_server_properties_file_is_read_as_kafka_reads_it() {
        let text = "# a comment\n! another\nbroker.id=3\nlisteners = PLAINTEXT://0.0.0.0:19092\n\
                    advertised.listeners: PLAINTEXT://kafka1.example:19092\nlog.dirs=/a,\\\n  /b\n\
                    num.partitions 6\nlog.retention.hours=24\nzookeeper.connect=zk:2181\nempty=\n";
        let props = parse_properties(text);
        assert_eq!(props["log.dirs"], "/a,/b");
        assert_eq!(props["num.partitions"], "6");
        assert_eq!(props["empty"], "");
        let s = Settings::resolve(&props).unwrap();
        assert_eq!(s.broker_id, 3);
        assert_eq!(s.listen, "0.0.0.0:19092".parse::<SocketAddr>().unwrap());
        assert_eq!(s.advertised, ("kafka1.example".to_string(), 19092));
        assert_eq!(
            s.log_dirs,
            Some(vec![PathBuf::from("/a"), PathBuf::from("/b")])
        );
        assert_eq!(s.num_partitions, 6);
        assert_eq!(s.default_replication_factor, -1);
        assert_eq!(s.log_defaults["log.retention.hours"], "24");
        assert_eq!(
            s.ignored,
            vec!["empty".to_string(), "zookeeper.connect".to_string()]
        );
    }

    #[test]
    fn defaults_need_no_configuration_and_bad_values_are_errors() {
        let s = Settings::resolve(&BTreeMap::new()).unwrap();
        assert_eq!(s.listen, "127.0.0.1:9092".parse::<SocketAddr>().unwrap());
        assert_eq!(s.advertised, ("127.0.0.1".to_string(), 9092));
        assert!(s.auto_create_topics);
        assert_eq!(s.tail_cache_bytes, 1 << 30);
        assert_eq!(s.segment_fds_max, None);
        let props = BTreeMap::from([("tail.cache.bytes".to_string(), "268435456".to_string())]);
        assert_eq!(
            Settings::resolve(&props).unwrap().tail_cache_bytes,
            256 << 20
        );
        for (k, v) in [
            ("listeners", "SSL://0.0.0.0:9093"),
            ("listeners", "localhost"),
            ("num.partitions", "0"),
            ("message.max.bytes", "big"),
            ("auto.create.topics.enable", "yes"),
            ("connections.max.idle.ms", "-5"),
            ("tail.cache.bytes", "-1"),
            ("log.segment.fds.max", "8"),
        ] {
            let props = BTreeMap::from([(k.to_string(), v.to_string())]);
            assert!(Settings::resolve(&props).is_err(), "{k}={v}");
        }
    }
}
