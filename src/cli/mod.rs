//! The client commands of `sluice`: administer topics and the cluster,
//! produce and consume. They speak the Kafka protocol (through librdkafka),
//! so they work against Sluice and against Apache Kafka alike.
//!
//! ## Where the connection comes from
//! Later sources win: the profile file (`$SLUICE_PROFILE`, else
//! `~/.config/sluice/profile`; `brokers=host:port,...` and any librdkafka
//! client property, one `key=value` per line), then `$SLUICE_BROKERS`,
//! then `-b/--brokers` and `-X key=value`. With none of them, 127.0.0.1:9092,
//! where `sluice start` listens.
//!
//! ## Output
//! Tables for people by default, `--format json` for scripts. Errors are one
//! line on stderr naming the cause and what to do, with exit code 1.

pub mod cluster;
pub mod consume;
pub mod group;
pub mod produce;
pub mod topic;
mod wire;

use std::io::IsTerminal;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use rdkafka::config::ClientConfig;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};

/// How long an admin call may take.
pub const TIMEOUT: Duration = Duration::from_secs(30);
const DEFAULT_BROKERS: &str = "127.0.0.1:9092";

/// Connection and output options shared by every client command.
#[derive(clap::Args, Clone, Debug)]
pub struct Conn {
    /// Bootstrap brokers, host:port[,host:port...]. Default: $SLUICE_BROKERS,
    /// then the profile's `brokers`, then 127.0.0.1:9092.
    #[arg(short = 'b', long = "brokers", global = true)]
    pub brokers: Option<String>,
    /// A Kafka client property (librdkafka's names), e.g.
    /// -X security.protocol=ssl; repeatable.
    #[arg(short = 'X', value_name = "KEY=VALUE", global = true)]
    pub props: Vec<String>,
    /// Profile file (default $SLUICE_PROFILE or ~/.config/sluice/profile).
    #[arg(long, global = true)]
    pub profile: Option<PathBuf>,
    /// Output format.
    #[arg(long, value_enum, default_value_t = Format::Table, global = true)]
    pub format: Format,
}

#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    Table,
    Json,
}

/// A command's failure: one line for the user.
#[derive(Debug)]
pub struct CliError(pub String);

impl std::fmt::Display for CliError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

pub type Result<T> = std::result::Result<T, CliError>;

pub fn fail<T>(msg: impl Into<String>) -> Result<T> {
    Err(CliError(msg.into()))
}

/// The resolved connection: client config and the brokers it names.
pub struct Client {
    pub config: ClientConfig,
    pub brokers: String,
    pub format: Format,
}

fn key_value(s: &str, what: &str) -> Result<(String, String)> {
    match s.split_once('=') {
        Some((k, v)) if !k.trim().is_empty() => Ok((k.trim().to_string(), v.to_string())),
        _ => fail(format!("{what} {s:?} is not key=value")),
    }
}

impl Conn {
    pub fn client(&self) -> Result<Client> {
        let mut config = ClientConfig::new();
        let mut brokers = None;
        let path = self
            .profile
            .clone()
            .or_else(|| std::env::var_os("SLUICE_PROFILE").map(PathBuf::from))
            .or_else(|| {
                std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".config/sluice/profile"))
            });
        if let Some(path) = path {
            match std::fs::read_to_string(&path) {
                Ok(text) => {
                    for (k, v) in crate::settings::parse_properties(&text) {
                        if k == "brokers" || k == "bootstrap.servers" {
                            brokers = Some(v);
                        } else {
                            config.set(k, v);
                        }
                    }
                }
                Err(e) if e.kind() == std::io::ErrorKind::NotFound && self.profile.is_none() => {}
                Err(e) => return fail(format!("cannot read profile {}: {e}", path.display())),
            }
        }
        if let Ok(b) = std::env::var("SLUICE_BROKERS") {
            if !b.trim().is_empty() {
                brokers = Some(b);
            }
        }
        if let Some(b) = &self.brokers {
            brokers = Some(b.clone());
        }
        for p in &self.props {
            let (k, v) = key_value(p, "-X")?;
            if k == "bootstrap.servers" {
                brokers = Some(v);
            } else {
                config.set(k, v);
            }
        }
        let brokers = brokers.unwrap_or_else(|| DEFAULT_BROKERS.to_string());
        config.set("bootstrap.servers", &brokers);
        config.set("log_level", "3");
        Ok(Client {
            config,
            brokers,
            format: self.format,
        })
    }
}

impl Client {
    /// Explains a client error in one line.
    pub fn explain(&self, e: &KafkaError) -> CliError {
        let code = e.rdkafka_error_code();
        let unreachable = matches!(
            code,
            Some(
                RDKafkaErrorCode::BrokerTransportFailure
                    | RDKafkaErrorCode::AllBrokersDown
                    | RDKafkaErrorCode::OperationTimedOut
                    | RDKafkaErrorCode::RequestTimedOut
                    | RDKafkaErrorCode::Resolve
            )
        );
        if unreachable {
            return CliError(format!(
                "cannot reach a broker at {} ({e}): is Sluice running? Start one with `sluice start`, or pass -b host:port",
                self.brokers
            ));
        }
        CliError(e.to_string())
    }

    /// Says what a command changed: `json`, one line, with --format json;
    /// else `text`.
    pub fn done(&self, json: serde_json::Value, text: impl FnOnce() -> String) {
        match self.format {
            Format::Json => print_json(&json),
            Format::Table => println!("{}", text()),
        }
    }

    pub fn create<T: rdkafka::config::FromClientConfig>(&self) -> Result<T> {
        self.config
            .create()
            .map_err(|e| CliError(format!("bad client configuration: {e}")))
    }
}

/// A Kafka error code from an admin result, as a sentence about `what`.
pub fn admin_error(what: &str, code: RDKafkaErrorCode, message: Option<&str>) -> CliError {
    use RDKafkaErrorCode::*;
    let detail = message.filter(|m| !m.is_empty()).map(|m| format!(": {m}"));
    let detail = detail.unwrap_or_default();
    CliError(match code {
        TopicAlreadyExists => format!("{what} already exists"),
        UnknownTopicOrPartition | UnknownTopic => {
            format!("{what} does not exist (`sluice topic list` shows the topics)")
        }
        InvalidReplicationFactor => format!("cannot create {what}{detail}"),
        InvalidPartitions => format!("invalid partition count for {what}{detail}"),
        InvalidConfig => format!("invalid config for {what}{detail}"),
        NonEmptyGroup => format!("{what} still has members: stop its consumers first"),
        GroupIdNotFound => format!("{what} does not exist (`sluice group list` shows the groups)"),
        other => format!("{what}: {other}{detail}"),
    })
}

/// Prints rows as an aligned table with a header.
pub fn print_table(headers: &[&str], rows: &[Vec<String>]) {
    let mut widths: Vec<usize> = headers.iter().map(|h| h.len()).collect();
    for r in rows {
        for (i, c) in r.iter().enumerate() {
            if i < widths.len() {
                widths[i] = widths[i].max(c.chars().count());
            }
        }
    }
    let line = |cells: Vec<&str>| {
        let mut out = String::new();
        for (i, c) in cells.iter().enumerate() {
            if i + 1 == cells.len() {
                out.push_str(c);
            } else {
                out.push_str(&format!("{c:<w$}  ", w = widths[i]));
            }
        }
        println!("{}", out.trim_end());
    };
    line(headers.to_vec());
    for r in rows {
        line(r.iter().map(String::as_str).collect());
    }
}

pub fn print_json(v: &serde_json::Value) {
    println!("{v}");
}

/// Progress of a long command on stderr, for a person watching: shown only
/// when stderr is a terminal, so that scripts and pipes get no `\r` lines.
/// The line is redrawn in place at most every `PROGRESS_INTERVAL_MS`.
pub struct Progress {
    /// When the line was last drawn; `None` when stderr is not a terminal.
    shown: Option<Instant>,
}

const PROGRESS_INTERVAL_MS: u64 = 500;

impl Progress {
    pub fn new() -> Progress {
        Progress {
            shown: std::io::stderr().is_terminal().then(Instant::now),
        }
    }

    /// Redraws the line if it is due; `line` is built only then.
    pub fn update(&mut self, line: impl FnOnce() -> String) {
        if let Some(shown) = &mut self.shown {
            if shown.elapsed() > Duration::from_millis(PROGRESS_INTERVAL_MS) {
                eprint!("\r{}", line());
                *shown = Instant::now();
            }
        }
    }

    /// Replaces the line with a last one that stays.
    pub fn finish(&self, line: impl FnOnce() -> String) {
        if self.shown.is_some() {
            eprintln!("\r{}", line());
        }
    }
}

/// Parses `key=value` arguments.
pub fn key_values(args: &[String], what: &str) -> Result<Vec<(String, String)>> {
    args.iter().map(|a| key_value(a, what)).collect()
}
