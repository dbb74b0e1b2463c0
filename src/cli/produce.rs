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
    let mut config = c.config.clone();
    config
        .set("acks", &acks)
        .set("compression.type", &a.compression)
        .set("linger.ms", "5");
    let producer: ThreadedProducer<Counting> = config
        .create_with_context(Counting {
            delivered: AtomicU64::new(0),
            failed: AtomicU64::new(0),
            first_error: Mutex::new(None),
        })
        .map_err(|e| CliError(format!("bad producer configuration: {e}")))?;
    let delimiter = unescape(&a.delimiter);
    if delimiter.len() != 1 && !a.whole_file {
        return fail("--delimiter must be one byte (or \\n, \\t, \\0)");
    }
    let mut sent = 0u64;
    let mut progress = Progress::new();
    let mut send = |payload: &[u8]| -> Result<()> {
        let (key, value) = match &a.key_separator {
            Some(sep) if !sep.is_empty() => {
                match payload.windows(sep.len()).position(|w| w == sep.as_bytes()) {
                    Some(i) => (Some(&payload[..i]), &payload[i + sep.len()..]),
                    None => (None, payload),
                }
            }
            _ => (None, payload),
        };
        let mut record = BaseRecord::<[u8], [u8]>::to(&a.topic).payload(value);
        if let Some(k) = key {
            record = record.key(k);
        }
        if let Some(p) = a.partition {
            record = record.partition(p);
        }
        if !headers.is_empty() {
            let mut h = OwnedHeaders::new_with_capacity(headers.len());
            for (k, v) in &headers {
                h = h.insert(Header {
                    key: k,
                    value: Some(v.as_bytes()),
                });
            }
            record = record.headers(h);
        }
        loop {
            match producer.send(record) {
                Ok(()) => break,
                Err((e, r))
                    if e.rdkafka_error_code()
                        == Some(rdkafka::error::RDKafkaErrorCode::QueueFull) =>
                {
                    record = r;
                    std::thread::sleep(Duration::from_millis(2));
                }
                Err((e, _)) => return Err(c.explain(&e)),
            }
        }
        sent += 1;
        progress.update(|| format!("{sent} messages sent"));
        Ok(())
    };
    let sources: Vec<Box<dyn Read>> = if a.files.is_empty() {
        vec![Box::new(std::io::stdin().lock())]
    } else {
        let mut v: Vec<Box<dyn Read>> = Vec::new();
        for f in &a.files {
            let file = std::fs::File::open(f)
                .map_err(|e| CliError(format!("cannot read {}: {e}", f.display())))?;
            v.push(Box::new(file));
        }
        v
    };
    for source in sources {
        let mut r = BufReader::with_capacity(1 << 20, source);
        if a.whole_file {
            let mut all = Vec::new();
            r.read_to_end(&mut all)
                .map_err(|e| CliError(format!("cannot read input: {e}")))?;
            send(&all)?;
            continue;
        }
        let mut buf = Vec::new();
        loop {
            buf.clear();
            let n = r
                .read_until(delimiter[0], &mut buf)
                .map_err(|e| CliError(format!("cannot read input: {e}")))?;
            if n == 0 {
                break;
            }
            if buf.last() == Some(&delimiter[0]) {
                buf.pop();
            }
            send(&buf)?;
        }
    }
    producer
        .flush(Duration::from_secs(120))
        .map_err(|e| c.explain(&e))?;
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
