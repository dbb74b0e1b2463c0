//! `sluice produce`: messages from stdin or files.

use std::io::{BufRead, BufReader, Read};
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::Duration;

use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{BaseRecord, DeliveryResult, Producer, ProducerContext, ThreadedProducer};
use rdkafka::ClientContext;

use super::{fail, key_values, CliError, Client, Progress, Result};

#[derive(clap::Args, Debug)]
#[command(after_help = "Examples:
  seq 1 1000 | sluice produce orders
  sluice produce orders -K : < keyed.txt          (key:value per line)
  sluice produce orders -f big.log -z zstd --acks all
  sluice produce images --whole-file a.png b.png   (each file one message)")]
pub struct ProduceArgs {
    pub topic: String,
    /// Read from these files instead of stdin; repeatable.
    #[arg(short = 'f', long = "file")]
    pub files: Vec<PathBuf>,
    /// Each file (or all of stdin) is one message instead of one per line.
    #[arg(long)]
    pub whole_file: bool,
    /// Message delimiter (default: newline); `\0` for NUL.
    #[arg(short = 'D', long, default_value = "\\n")]
    pub delimiter: String,
    /// Split each message at the first occurrence of this into key and value.
    #[arg(short = 'K', long)]
    pub key_separator: Option<String>,
    /// Header key=value added to every message; repeatable.
    #[arg(short = 'H', long = "header", value_name = "KEY=VALUE")]
    pub headers: Vec<String>,
    /// Partition (default: by key, or spread when there is none).
    #[arg(short, long)]
    pub partition: Option<i32>,
    /// Compression: none, gzip, snappy, lz4, zstd.
    #[arg(short = 'z', long, default_value = "none")]
    pub compression: String,
    /// Acknowledgements: 0, 1 or all (-1, Kafka's other name for all).
    #[arg(long, default_value = "all", allow_hyphen_values = true)]
    pub acks: String,
}

struct Counting {
    delivered: AtomicU64,
    failed: AtomicU64,
    first_error: Mutex<Option<String>>,
}

impl ClientContext for Counting {}

impl ProducerContext for Counting {
    type DeliveryOpaque = ();
    fn delivery(&self, r: &DeliveryResult<'_>, _: Self::DeliveryOpaque) {
        match r {
            Ok(_) => {
                self.delivered.fetch_add(1, Ordering::Relaxed);
            }
            Err((e, _)) => {
                self.failed.fetch_add(1, Ordering::Relaxed);
                let mut first = self.first_error.lock().unwrap_or_else(|p| p.into_inner());
                first.get_or_insert_with(|| e.to_string());
            }
        }
    }
}

fn unescape(s: &str) -> Vec<u8> {
    match s {
        "\\n" => b"\n".to_vec(),
        "\\t" => b"\t".to_vec(),
        "\\0" => vec![0],
        "\\r\\n" => b"\r\n".to_vec(),
        other => other.as_bytes().to_vec(),
    }
}

pub fn run(c: &Client, a: ProduceArgs) -> Result<()> {
    let headers = key_values(&a.headers, "-H")?;
    let acks = match a.acks.as_str() {
        "0" | "1" | "all" | "-1" => a.acks.clone(),
        other => return fail(format!("--acks {other}: use 0, 1 or all")),
    };
    super::topic::metadata(c, Some(&a.topic))?;
    let producer = create_producer(c, &a, &acks)?;
    let delimiter = unescape(&a.delimiter);
    if delimiter.len() != 1 && !a.whole_file {
        return fail("--delimiter must be one byte (or \\n, \\t, \\0)");
    }
    let mut sender = Sender {
        c,
        a: &a,
        producer: &producer,
        headers,
        sent: 0,
        progress: Progress::new(),
    };
    for source in sources(&a)? {
        sender.send_all(source, &delimiter)?;
    }
    producer
        .flush(Duration::from_secs(120))
        .map_err(|e| c.explain(&e))?;
    report(&a, &producer, sender.sent, &sender.progress)
}

fn create_producer(c: &Client, a: &ProduceArgs, acks: &str) -> Result<ThreadedProducer<Counting>> {
    let mut config = c.config.clone();
    config
        .set("acks", acks)
        .set("compression.type", &a.compression)
        .set("linger.ms", "5");
    config
        .create_with_context(Counting {
            delivered: AtomicU64::new(0),
            failed: AtomicU64::new(0),
            first_error: Mutex::new(None),
        })
        .map_err(|e| CliError(format!("bad producer configuration: {e}")))
}

/// The files to read, opened, or stdin.
fn sources(a: &ProduceArgs) -> Result<Vec<Box<dyn Read>>> {
    if a.files.is_empty() {
        return Ok(vec![Box::new(std::io::stdin().lock())]);
    }
    let mut v: Vec<Box<dyn Read>> = Vec::new();
    for f in &a.files {
        let file = std::fs::File::open(f)
            .map_err(|e| CliError(format!("cannot read {}: {e}", f.display())))?;
        v.push(Box::new(file));
    }
    Ok(v)
}

/// Sends messages to the topic as the arguments say, counting them for the
/// progress line.
struct Sender<'a> {
    c: &'a Client,
    a: &'a ProduceArgs,
    producer: &'a ThreadedProducer<Counting>,
    headers: Vec<(String, String)>,
    sent: u64,
    progress: Progress,
}

impl Sender<'_> {
    /// Sends what `source` holds: one message with `--whole-file`, else one
    /// per `delimiter`.
    fn send_all(&mut self, source: Box<dyn Read>, delimiter: &[u8]) -> Result<()> {
        let mut r = BufReader::with_capacity(1 << 20, source);
        if self.a.whole_file {
            let mut all = Vec::new();
            r.read_to_end(&mut all)
                .map_err(|e| CliError(format!("cannot read input: {e}")))?;
            return self.send(&all);
        }
        let mut buf = Vec::new();
        loop {
            buf.clear();
            let n = r
                .read_until(delimiter[0], &mut buf)
                .map_err(|e| CliError(format!("cannot read input: {e}")))?;
            if n == 0 {
                return Ok(());
            }
            if buf.last() == Some(&delimiter[0]) {
                buf.pop();
            }
            self.send(&buf)?;
        }
    }

    /// Sends one message, waiting while the producer's queue is full.
    fn send(&mut self, payload: &[u8]) -> Result<()> {
        let mut record = self.record(payload);
        loop {
            match self.producer.send(record) {
                Ok(()) => break,
                Err((e, r))
                    if e.rdkafka_error_code()
                        == Some(rdkafka::error::RDKafkaErrorCode::QueueFull) =>
                {
                    record = r;
                    std::thread::sleep(Duration::from_millis(2));
                }
                Err((e, _)) => return Err(self.c.explain(&e)),
            }
        }
        self.sent += 1;
        let sent = self.sent;
        self.progress.update(|| format!("{sent} messages sent"));
        Ok(())
    }

    /// The record for `payload`: its key split off at `-K`, with the
    /// partition and headers the arguments give.
    fn record<'r>(&'r self, payload: &'r [u8]) -> BaseRecord<'r, [u8], [u8]> {
        let (key, value) = match &self.a.key_separator {
            Some(sep) if !sep.is_empty() => {
                match payload.windows(sep.len()).position(|w| w == sep.as_bytes()) {
                    Some(i) => (Some(&payload[..i]), &payload[i + sep.len()..]),
                    None => (None, payload),
                }
            }
            _ => (None, payload),
        };
        let mut record = BaseRecord::<[u8], [u8]>::to(&self.a.topic).payload(value);
        if let Some(k) = key {
            record = record.key(k);
        }
        if let Some(p) = self.a.partition {
            record = record.partition(p);
        }
        if !self.headers.is_empty() {
            let mut h = OwnedHeaders::new_with_capacity(self.headers.len());
            for (k, v) in &self.headers {
                h = h.insert(Header {
                    key: k,
                    value: Some(v.as_bytes()),
                });
            }
            record = record.headers(h);
        }
        record
    }
}

/// Says how many messages were delivered; an error if any was not.
fn report(
    a: &ProduceArgs,
    producer: &ThreadedProducer<Counting>,
    sent: u64,
    progress: &Progress,
) -> Result<()> {
    let counts = producer.context();
    let failed = counts.failed.load(Ordering::Relaxed);
    progress.finish(|| {
        format!(
            "{} messages produced to {}{}",
            counts.delivered.load(Ordering::Relaxed),
            a.topic,
            if failed > 0 {
                format!(", {failed} failed")
            } else {
                String::new()
            }
        )
    });
    if failed > 0 {
        let first = counts
            .first_error
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
            .unwrap_or_default();
        return fail(format!(
            "{failed} of {sent} messages were not delivered to {}: {first}",
            a.topic
        ));
    }
    Ok(())
}
