//! `sluice consume`: read a topic, with or without a consumer group.
//!
//! Two traps of Kafka's console consumer are avoided by default: without a
//! group it starts at the beginning, not at the end (where it would show
//! "nothing"), and it never invents a random group per run: a group is
//! used only when `-g` names one. Where reading starts is said on stderr.

use std::collections::HashSet;
use std::io::Write;
use std::time::Duration;

use rdkafka::config::{ClientConfig, RDKafkaLogLevel};
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer};
use rdkafka::error::KafkaError;
use rdkafka::message::{BorrowedMessage, Headers};
use rdkafka::{Message, Offset, TopicPartitionList};
use serde_json::json;

use super::{fail, CliError, Client, Format, Result};

#[derive(clap::Args, Debug)]
#[command(after_help = "Examples:
  sluice consume orders -e                      (everything, then exit)
  sluice consume orders -o end                  (only new messages)
  sluice consume orders -o -10 -e               (the last 10 per partition)
  sluice consume orders -o @1700000000000 -e    (from a timestamp, ms)
  sluice consume orders -g billing              (as group billing, committing)
  sluice consume orders -f '%p %o %k=%v\\n' -n 5
  sluice consume orders --format json -e        (JSON lines)

Format tokens: %t topic, %p partition, %o offset, %k key, %v value,
%T timestamp (ms), %h headers (k=v,...), %% a percent sign; \\n \\t escapes.")]
pub struct ConsumeArgs {
    pub topic: String,
    /// Where to start: beginning, end, an offset, -N (the last N per
    /// partition) or @TIMESTAMP_MS. Default: beginning; with a group, its
    /// committed offsets (beginning where it has none).
    #[arg(short, long, allow_hyphen_values = true)]
    pub offset: Option<String>,
    /// Consume as this group: partitions shared with its other members,
    /// offsets committed after each message is printed.
    #[arg(short, long)]
    pub group: Option<String>,
    /// Only this partition (not with a group).
    #[arg(short, long)]
    pub partition: Option<i32>,
    /// Exit after this many messages.
    #[arg(short = 'n', long)]
    pub count: Option<u64>,
    /// Exit at the end of every partition instead of waiting for more.
    #[arg(short = 'e', long)]
    pub exit: bool,
    /// Output per message (default `%v\n`).
    #[arg(short = 'f', long = "fmt")]
    pub fmt: Option<String>,
    /// Say nothing on stderr.
    #[arg(short, long)]
    pub quiet: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Start {
    Beginning,
    End,
    At(i64),
    Tail(i64),
    Time(i64),
}

fn parse_start(s: &str) -> Result<Start> {
    Ok(match s {
        "beginning" | "earliest" | "start" => Start::Beginning,
        "end" | "latest" => Start::End,
        _ if s.starts_with('@') => Start::Time(
            s[1..]
                .parse()
                .map_err(|_| CliError(format!("-o {s}: @ takes a timestamp in ms")))?,
        ),
        _ if s.starts_with('-') => Start::Tail(
            s[1..]
                .parse()
                .map_err(|_| CliError(format!("-o {s}: -N takes a count")))?,
        ),
        _ => Start::At(s.parse().map_err(|_| {
            CliError(format!(
                "-o {s}: use beginning, end, an offset, -N or @TIMESTAMP_MS"
            ))
        })?),
    })
}

/// One piece of a format string.
enum Piece {
    Text(Vec<u8>),
    Topic,
    Partition,
    Offset,
    Key,
    Value,
    Timestamp,
    Headers,
}

fn parse_fmt(f: &str) -> Vec<Piece> {
    let mut out = Vec::new();
    let mut text = Vec::new();
    let mut chars = f.chars().peekable();
    while let Some(ch) = chars.next() {
        let piece = match (ch, chars.peek().copied()) {
            ('%', Some(n)) => {
                chars.next();
                match n {
                    't' => Some(Piece::Topic),
                    'p' => Some(Piece::Partition),
                    'o' => Some(Piece::Offset),
                    'k' => Some(Piece::Key),
                    'v' => Some(Piece::Value),
                    'T' => Some(Piece::Timestamp),
                    'h' => Some(Piece::Headers),
                    other => {
                        if other != '%' {
                            text.push(b'%');
                        }
                        text.extend_from_slice(other.to_string().as_bytes());
                        None
                    }
                }
            }
            ('\\', Some(n)) if "ntr\\0".contains(n) => {
                chars.next();
                text.push(match n {
                    'n' => b'\n',
                    't' => b'\t',
                    'r' => b'\r',
                    '0' => 0,
                    _ => b'\\',
                });
                None
            }
            _ => {
                text.extend_from_slice(ch.to_string().as_bytes());
                None
            }
        };
        if let Some(p) = piece {
            if !text.is_empty() {
                out.push(Piece::Text(std::mem::take(&mut text)));
            }
            out.push(p);
        }
    }
    if !text.is_empty() {
        out.push(Piece::Text(text));
    }
    out
}

fn headers_text(m: &BorrowedMessage<'_>) -> String {
    m.headers()
        .map(|h| {
            h.iter()
                .map(|h| {
                    format!(
                        "{}={}",
                        h.key,
                        String::from_utf8_lossy(h.value.unwrap_or_default())
                    )
                })
                .collect::<Vec<_>>()
                .join(",")
        })
        .unwrap_or_default()
}

fn write_message(
    out: &mut impl Write,
    m: &BorrowedMessage<'_>,
    fmt: &[Piece],
    format: Format,
) -> std::io::Result<()> {
    let ts = m.timestamp().to_millis().unwrap_or(-1);
    if format == Format::Json {
        let text = |b: Option<&[u8]>| b.map(|b| String::from_utf8_lossy(b).into_owned());
        let headers: serde_json::Map<String, serde_json::Value> = m
            .headers()
            .map(|h| {
                h.iter()
                    .map(|h| (h.key.to_string(), json!(text(h.value))))
                    .collect()
            })
            .unwrap_or_default();
        let line = json!({
            "topic": m.topic(), "partition": m.partition(), "offset": m.offset(),
            "timestamp": ts, "key": text(m.key()), "value": text(m.payload()),
            "headers": headers,
        });
        return writeln!(out, "{line}");
    }
    for p in fmt {
        match p {
            Piece::Text(t) => out.write_all(t)?,
            Piece::Topic => out.write_all(m.topic().as_bytes())?,
            Piece::Partition => write!(out, "{}", m.partition())?,
            Piece::Offset => write!(out, "{}", m.offset())?,
            Piece::Key => out.write_all(m.key().unwrap_or_default())?,
            Piece::Value => out.write_all(m.payload().unwrap_or_default())?,
            Piece::Timestamp => write!(out, "{ts}")?,
            Piece::Headers => out.write_all(headers_text(m).as_bytes())?,
        }
    }
    Ok(())
}

pub fn run(c: &Client, a: ConsumeArgs) -> Result<()> {
    let start = a.offset.as_deref().map(parse_start).transpose()?;
    let parts = super::topic::partitions(c, &a.topic)?;
    let mut config = c.config.clone();
    config
        .set(
            "enable.partition.eof",
            if a.exit { "true" } else { "false" },
        )
        .set_log_level(RDKafkaLogLevel::Error);
    let consumer = match &a.group {
        Some(group) => subscribe(c, &a, group, config, start)?,
        None => assign(c, &a, config, start, &parts)?,
    };
    print_messages(c, &a, &consumer)?;
    if a.group.is_some() {
        commit_and_leave(c, &consumer)?;
    }
    Ok(())
}

/// Says where reading starts, on stderr, unless `-q`.
fn say(a: &ConsumeArgs, msg: String) {
    if !a.quiet {
        eprintln!("sluice: {msg}");
    }
}

fn create_consumer(config: &ClientConfig) -> Result<BaseConsumer> {
    config
        .create()
        .map_err(|e| CliError(format!("bad consumer configuration: {e}")))
}

/// A consumer in `group`, subscribed to the topic: it reads from the
/// group's committed offsets and stores the offsets of what it printed.
fn subscribe(
    c: &Client,
    a: &ConsumeArgs,
    group: &str,
    mut config: ClientConfig,
    start: Option<Start>,
) -> Result<BaseConsumer> {
    let reset = match start {
        None | Some(Start::Beginning) => "earliest",
        Some(Start::End) => "latest",
        Some(_) => {
            return fail(
                "with a group, -o takes beginning or end (for partitions without a committed offset); move a group with `sluice group reset-offsets`",
            )
        }
    };
    if a.partition.is_some() {
        return fail("-p cannot be used with a group: the group assigns partitions");
    }
    config
        .set("group.id", group)
        .set("auto.offset.reset", reset)
        .set("enable.auto.commit", "true")
        .set("enable.auto.offset.store", "false");
    let consumer = create_consumer(&config)?;
    consumer.subscribe(&[&a.topic]).map_err(|e| c.explain(&e))?;
    let from = if reset == "earliest" {
        "beginning"
    } else {
        "end"
    };
    say(
        a,
        format!(
            "reading {} as group {group}: from its committed offsets; partitions without one start at the {from}",
            a.topic
        ),
    );
    Ok(consumer)
}

/// A consumer without a group, assigned the topic's partitions (or the one
/// `-p` names) at `start`.
fn assign(
    c: &Client,
    a: &ConsumeArgs,
    mut config: ClientConfig,
    start: Option<Start>,
    parts: &[i32],
) -> Result<BaseConsumer> {
    // librdkafka wants a group id even to assign partitions; this
    // one never joins a group and never commits.
    config
        .set("group.id", "sluice-cli")
        .set("enable.auto.commit", "false");
    let consumer = create_consumer(&config)?;
    let chosen: Vec<i32> = match a.partition {
        Some(p) if parts.contains(&p) => vec![p],
        Some(p) => {
            return fail(format!(
                "topic {} has no partition {p} (it has {})",
                a.topic,
                parts.len()
            ))
        }
        None => parts.to_vec(),
    };
    let start = start.unwrap_or(Start::Beginning);
    let mut tpl = TopicPartitionList::new();
    for p in &chosen {
        tpl.add_partition_offset(&a.topic, *p, start_offset(start))
            .map_err(|e| c.explain(&e))?;
    }
    if let Start::Time(_) = start {
        // A partition with nothing at or after the time starts at
        // its end.
        tpl = consumer
            .offsets_for_times(tpl, super::TIMEOUT)
            .map_err(|e| c.explain(&e))?;
    }
    consumer.assign(&tpl).map_err(|e| c.explain(&e))?;
    let hint = if start == Start::End {
        ""
    } else {
        "; -o end for new messages only"
    };
    say(
        a,
        format!(
            "reading {} from {} of {} partition(s), no group{hint}",
            a.topic,
            start_text(start),
            chosen.len()
        ),
    );
    Ok(consumer)
}

/// The offset to assign for `start` (a time is looked up after).
fn start_offset(start: Start) -> Offset {
    match start {
        Start::Beginning => Offset::Beginning,
        Start::End => Offset::End,
        Start::At(o) => Offset::Offset(o),
        Start::Tail(n) => Offset::OffsetTail(n),
        Start::Time(t) => Offset::Offset(t),
    }
}

/// Where reading starts, in words.
fn start_text(start: Start) -> String {
    match start {
        Start::Beginning => "the beginning".to_string(),
        Start::End => "the end (new messages only)".to_string(),
        Start::At(o) => format!("offset {o}"),
        Start::Tail(n) => format!("the last {n} messages"),
        Start::Time(t) => format!("the first message at or after {t} ms"),
    }
}

/// Prints messages until `-n` of them are printed or, with `-e`, every
/// assigned partition is at its end; with a group, stores the offset of
/// each message printed.
fn print_messages(c: &Client, a: &ConsumeArgs, consumer: &BaseConsumer) -> Result<()> {
    let fmt = parse_fmt(a.fmt.as_deref().unwrap_or("%v\\n"));
    let stdout = std::io::stdout();
    let mut out = std::io::BufWriter::new(stdout.lock());
    let mut read = 0u64;
    let mut at_end: HashSet<i32> = HashSet::new();
    loop {
        if a.count.is_some_and(|n| read >= n) {
            break;
        }
        let Some(m) = consumer.poll(Duration::from_millis(200)) else {
            out.flush().map_err(io_error)?;
            continue;
        };
        match m {
            Ok(m) => {
                at_end.remove(&m.partition());
                write_message(&mut out, &m, &fmt, c.format).map_err(io_error)?;
                read += 1;
                if a.group.is_some() {
                    consumer
                        .store_offset_from_message(&m)
                        .map_err(|e| c.explain(&e))?;
                }
            }
            Err(KafkaError::PartitionEOF(p)) => {
                at_end.insert(p);
                let assigned = consumer.assignment().map_or(0, |t| t.count());
                if a.exit && assigned > 0 && at_end.len() >= assigned {
                    break;
                }
            }
            Err(e) => return Err(c.explain(&e)),
        }
    }
    out.flush().map_err(io_error)
}

/// Commits the stored offsets (having none to commit is no error) and
/// leaves the group.
fn commit_and_leave(c: &Client, consumer: &BaseConsumer) -> Result<()> {
    if let Err(e) = consumer.commit_consumer_state(CommitMode::Sync) {
        if !matches!(
            e,
            KafkaError::ConsumerCommit(rdkafka::error::RDKafkaErrorCode::NoOffset)
        ) {
            return Err(c.explain(&e));
        }
    }
    consumer.unsubscribe();
    Ok(())
}

fn io_error(e: std::io::Error) -> CliError {
    if e.kind() == std::io::ErrorKind::BrokenPipe {
        std::process::exit(0);
    }
    CliError(format!("cannot write output: {e}"))
}
