//! sluice-bench: an OpenMessaging-Benchmark-style load generator for any
//! Kafka-compatible broker, with the physical limits measured in the same
//! run. See bench/README.md.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use serde_json::{json, Value};
use sluice_bench::kafka::{self, Clients, ProducerJob, Stats, PRODUCER_DEFAULTS};
use sluice_bench::limits::{self, NullSink, SendfileServer, SinkConfig};
use sluice_bench::meta::{git, ratio, round3, run_disk_limit, utc_now};
use sluice_bench::report::{self, latency_header, latency_json, latency_row, rate_json};
use sluice_bench::settle::settle_disks;
use sluice_bench::workload::{Driver, KeyDistributor, ProducerSettings, Workload};
use sluice_bench::{batch_up_to, bench_root, chart, raw};

const USAGE: &str = "\
usage: sluice-bench COMMAND [options]

  run WORKLOAD.yaml     run an OMB workload file against a Kafka-compatible
                        broker, then measure the limits; prints a table, and
                        writes result.json, throughput.png, latency.png to --out
    --bootstrap H:P       broker (default: the driver's, else 127.0.0.1:9092)
    --driver FILE         driver settings (flat YAML; see README)
    --out DIR             where results go (default target/bench-results/NAME)
    --warmup SECS         override warmupDurationMinutes
    --duration SECS       override testDurationMinutes
    --rate MSG_S          override producerRate (0 = as fast as possible)
    --backlog-mib N       override consumerBacklogSizeGB (of a workload that
                          has a backlog)
    --acks A --batch-size N --linger-ms N --compression C --idempotence B
                          producer settings (over the workload's and driver's)
    --replication N       replication factor of the topics (default 1)
    --retention-mib N     retention.bytes of each partition of the topics, in
                          MiB, with 256 MiB segments (default 1024; 0: the
                          broker's defaults), so long runs do not fill the disk
    --client C            the clients: librdkafka (default), or raw:
                          sluice-bench's own paced producer (batches every
                          linger.ms, 5 requests in flight, unkeyed records)
                          and fetching consumer, one broker, less than half
                          of librdkafka's CPU
    --limit-seconds S     how long each raw-producer limit run lasts (default 5)
    --no-limits           skip the limits (null sink, sendfile, fio); at a
                          target rate they include the publish latency of
                          the run's schedule against the null sink
    --sink-no-sync        the null sink does not fdatasync before answering
    --keep-topics         do not delete the topics afterwards
    --settle-seconds S    before each measured phase, sync and wait up to S
                          seconds (default 60; 0: not at all) for the disks
                          to go quiet: a previous run's deleted files are
                          still being discarded for seconds after rm
  limits                measure the limits alone and print JSON
    --bootstrap H:P       also run the raw producer against this broker
    --batch-size N --message-size N --acks A --limit-seconds S --sink-no-sync
    --fetch-mib N         bytes the sendfile client reads (default 1024)
    --settle-seconds S    as for run
  null-sink             serve as the null sink until killed
    --listen H:P (default 127.0.0.1:19193) --dir DIR --sink-no-sync
  sendfile-server       serve a prepared cold file with sendfile until killed
    --listen H:P (default 127.0.0.1:19194) --file PATH --size-mib N
  -h, --help";

/// Command-line options after the subcommand (`--key value` or `--flag`).
struct Opts {
    positional: Vec<String>,
    values: Vec<(String, String)>,
    flags: Vec<String>,
}

const FLAGS: [&str; 4] = ["--no-limits", "--sink-no-sync", "--keep-topics", "--help"];

impl Opts {
    fn parse(args: impl Iterator<Item = String>) -> Result<Self, String> {
        let mut o = Self {
            positional: Vec::new(),
            values: Vec::new(),
            flags: Vec::new(),
        };
        let mut it = args;
        while let Some(a) = it.next() {
            if FLAGS.contains(&a.as_str()) {
                o.flags.push(a);
            } else if a.starts_with("--") {
                let v = it.next().ok_or_else(|| format!("{a} needs a value"))?;
                o.values.push((a, v));
            } else {
                o.positional.push(a);
            }
        }
        Ok(o)
    }
    fn get(&self, k: &str) -> Option<&str> {
        self.values
            .iter()
            .rev()
            .find(|(n, _)| n == k)
            .map(|(_, v)| v.as_str())
    }
    fn num<T: std::str::FromStr>(&self, k: &str) -> Result<Option<T>, String> {
        self.get(k)
            .map(|v| v.parse().map_err(|_| format!("{k}: cannot parse {v:?}")))
            .transpose()
    }
    fn flag(&self, k: &str) -> bool {
        self.flags.iter().any(|f| f == k)
    }
    fn producer(&self) -> Result<ProducerSettings, String> {
        Ok(ProducerSettings {
            acks: self.get("--acks").map(String::from),
            batch_size_bytes: self.num("--batch-size")?,
            linger_ms: self.num("--linger-ms")?,
            compression: self.get("--compression").map(String::from),
            idempotence: self.num("--idempotence")?,
        })
    }
}

fn main() {
    let mut args = std::env::args().skip(1);
    let cmd = args.next().unwrap_or_default();
    let result = Opts::parse(args).and_then(|o| match cmd.as_str() {
        "run" => run(&o),
        "limits" => limits_cmd(&o),
        "null-sink" => null_sink_cmd(&o),
        "sendfile-server" => sendfile_cmd(&o),
        "-h" | "--help" | "help" => {
            println!("{USAGE}");
            Ok(())
        }
        _ => Err(USAGE.to_string()),
    });
    if let Err(e) = result {
        eprintln!("{e}");
        std::process::exit(1);
    }
}

/// Kafka `acks` as the raw producer sends it (acks=0 gets no response, so
/// it is measured as acks=1).
fn acks_i16(acks: Option<&str>) -> Result<i16, String> {
    match acks.unwrap_or("all") {
        "all" | "-1" => Ok(-1),
        "1" | "0" => Ok(1),
        a => Err(format!("acks: {a:?} is not all, 1 or 0")),
    }
}

/// Requests the raw client keeps unanswered: the Java client's
/// `max.in.flight.requests.per.connection` default.
const RAW_IN_FLIGHT: usize = 5;

/// The raw client's settings, from the producer settings; what it cannot do
/// (keys, compression, idempotence) is refused rather than ignored.
struct RawClient {
    acks: i16,
    linger: Duration,
    batch_bytes: usize,
}

impl RawClient {
    fn new(p: &ProducerSettings, keys: KeyDistributor) -> Result<Self, String> {
        if keys != KeyDistributor::NoKey {
            return Err("--client raw sends unkeyed records only".into());
        }
        if p.compression.as_deref().is_some_and(|c| c != "none") {
            return Err("--client raw does not compress".into());
        }
        if p.idempotence == Some(true) {
            return Err("--client raw is not idempotent".into());
        }
        // Batches of up to a megabyte are built and dropped every linger:
        // with glibc's default thresholds each is mmapped (or its heap
        // trimmed) and unmapped again, its pages faulted in every time
        // (most of the client's CPU, in the kernel). Keep them on the heap.
        #[cfg(all(target_os = "linux", target_env = "gnu"))]
        unsafe {
            libc::mallopt(libc::M_MMAP_THRESHOLD, 256 << 20);
            libc::mallopt(libc::M_TRIM_THRESHOLD, 512 << 20);
        }
        Ok(Self {
            acks: acks_i16(p.acks.as_deref())?,
            // librdkafka's defaults: linger.ms 5, batch.size 1 000 000.
            linger: Duration::from_millis(p.linger_ms.unwrap_or(5)),
            batch_bytes: p.batch_size_bytes.unwrap_or(1_000_000) as usize,
        })
    }
}

/// The limits of one run, each a JSON value (null when not measured).
struct Limits {
    json: serde_json::Map<String, Value>,
    /// Publish latency of the paced raw producer against the null sink.
    sink_latency: Option<Histogram<u64>>,
}

impl Limits {
    fn get(&self, k: &str) -> Option<f64> {
        self.json.get(k).and_then(Value::as_f64)
    }
}

struct LimitPlan<'a> {
    /// How long to wait for the disks to settle before each phase.
    settle: Duration,
    bootstrap: Option<&'a str>,
    topic: Option<&'a str>,
    partitions: u32,
    batch: Vec<u8>,
    acks: i16,
    seconds: f64,
    sync: bool,
    fetch_bytes: u64,
    paced: Option<limits::PacedPlan>,
}

/// Measures the limits: the raw producer against the broker (if given) and
/// the null sink, the cold sendfile fetch, and fio.
fn measure_limits(p: &LimitPlan<'_>) -> Result<Limits, String> {
    let mut json = serde_json::Map::new();
    let dir = sluice_bench::fresh_dir("limits");
    let raw_cfg = |addr: String, topic: &str| raw::RawConfig {
        addr,
        topic: topic.to_string(),
        partitions: p.partitions,
        acks: p.acks,
        batch: p.batch.clone(),
        window: 16,
        duration: Duration::from_secs_f64(p.seconds),
    };
    let raw_json = |r: &raw::RawRun| {
        json!({
            "mib_per_s": round3(r.mib_per_s()),
            "requests": r.requests,
            "latency": latency_json(&r.latency),
        })
    };
    json.insert("raw_batch_bytes".into(), json!(p.batch.len()));
    json.insert("raw_acks".into(), json!(p.acks));
    let sink = NullSink::spawn(
        "127.0.0.1:0",
        SinkConfig {
            dir: dir.path().to_path_buf(),
            sync: p.sync,
            file_bytes: 1 << 30,
        },
    )?;
    // First, while nothing else the limits do (large files written and
    // removed) disturbs the disk.
    let sink_latency = match &p.paced {
        Some(plan) => {
            settle_disks(p.settle, "the paced null sink");
            eprintln!(
                "[bench] paced raw producer -> null sink {}, {} x {} msg/s, {} s",
                sink.addr, plan.producers, plan.rate, plan.seconds
            );
            let h = limits::paced_latency(&sink.addr.to_string(), p.partitions, p.acks, plan)?;
            json.insert(
                "null_sink_paced".into(),
                json!({
                    "producers": plan.producers,
                    "rate_per_producer": plan.rate,
                    "linger_ms": plan.linger.as_secs_f64() * 1000.0,
                    "batch_bytes": plan.batch_bytes,
                    "seconds": plan.seconds,
                    "publish_latency": latency_json(&h),
                }),
            );
            Some(h)
        }
        None => None,
    };
    if let (Some(b), Some(t)) = (p.bootstrap, p.topic) {
        settle_disks(p.settle, "the raw producer");
        eprintln!("[bench] raw producer -> broker {b}, {} s", p.seconds);
        let r = raw::run(&raw_cfg(b.to_string(), t))?;
        json.insert("raw_broker_mib_s".into(), json!(round3(r.mib_per_s())));
        json.insert("raw_broker".into(), raw_json(&r));
    }
    settle_disks(p.settle, "the null sink");
    eprintln!(
        "[bench] raw producer -> null sink {}, {} s",
        sink.addr, p.seconds
    );
    let r = raw::run(&raw_cfg(sink.addr.to_string(), "null"))?;
    json.insert("null_sink_mib_s".into(), json!(round3(r.mib_per_s())));
    json.insert("null_sink_fdatasync".into(), json!(p.sync));
    json.insert("null_sink".into(), raw_json(&r));

    let file = dir.path().join("sendfile.data");
    limits::prepare_file(&file, p.fetch_bytes)?;
    let server = SendfileServer::spawn("127.0.0.1:0", file.clone())?;
    settle_disks(p.settle, "the sendfile fetch");
    let took = limits::sendfile_fetch(server.addr, p.fetch_bytes)?;
    let mib_s = p.fetch_bytes as f64 / (1u64 << 20) as f64 / took.as_secs_f64();
    json.insert("sendfile_mib_s".into(), json!(round3(mib_s)));
    json.insert("sendfile_bytes".into(), json!(p.fetch_bytes));
    std::fs::remove_file(&file).map_err(|e| format!("remove {}: {e}", file.display()))?;

    for (k, v) in [("DISK_LIMIT_MAX_RUNTIME", "5"), ("DISK_LIMIT_QD1", "0")] {
        if std::env::var_os(k).is_none() {
            std::env::set_var(k, v);
        }
    }
    settle_disks(p.settle, "fio");
    match run_disk_limit(
        &sluice_bench::meta::disk_limit_script(),
        dir.path(),
        1024,
        "1m",
    ) {
        Ok(doc) => {
            json.insert(
                "fio_write_mib_s".into(),
                doc.get("write_mib_s").cloned().unwrap_or(Value::Null),
            );
            json.insert(
                "fio_write_fdatasync_1m_mib_s".into(),
                doc.get("write_fdatasync_1m_mib_s")
                    .cloned()
                    .unwrap_or(Value::Null),
            );
            json.insert("fio".into(), doc);
        }
        Err(e) => eprintln!("[bench] no disk limit: {e}"),
    }
    Ok(Limits { json, sink_latency })
}

/// `--settle-seconds`, 60 s by default.
fn settle_limit(o: &Opts) -> Result<Duration, String> {
    Ok(Duration::from_secs(
        o.num::<u64>("--settle-seconds")?.unwrap_or(60),
    ))
}

fn limits_cmd(o: &Opts) -> Result<(), String> {
    let batch_size = o.num("--batch-size")?.unwrap_or(1usize << 20);
    let message_size = o.num("--message-size")?.unwrap_or(1024usize);
    let topic = format!("sluice-bench-limits-{}", std::process::id());
    let bootstrap = o.get("--bootstrap");
    if let Some(b) = bootstrap {
        kafka::create_topic(b, &topic, 1, 1, &[])?;
    }
    let l = measure_limits(&LimitPlan {
        settle: settle_limit(o)?,
        bootstrap,
        topic: Some(&topic),
        partitions: 1,
        batch: batch_up_to(batch_size, message_size),
        acks: acks_i16(o.get("--acks"))?,
        seconds: o.num("--limit-seconds")?.unwrap_or(5.0),
        sync: !o.flag("--sink-no-sync"),
        fetch_bytes: o.num::<u64>("--fetch-mib")?.unwrap_or(1024) << 20,
        paced: None,
    })?;
    if let Some(b) = bootstrap {
        kafka::delete_topic(b, &topic)?;
    }
    println!("{}", Value::Object(l.json));
    Ok(())
}

fn null_sink_cmd(o: &Opts) -> Result<(), String> {
    let dir = o.get("--dir").map_or_else(bench_root, PathBuf::from);
    let sink = NullSink::spawn(
        o.get("--listen").unwrap_or("127.0.0.1:19193"),
        SinkConfig {
            dir,
            sync: !o.flag("--sink-no-sync"),
            file_bytes: 1 << 30,
        },
    )?;
    eprintln!("[null-sink] listening on {}", sink.addr);
    loop {
        std::thread::park();
    }
}

fn sendfile_cmd(o: &Opts) -> Result<(), String> {
    let file = o
        .get("--file")
        .map_or_else(|| bench_root().join("sendfile.data"), PathBuf::from);
    if let Some(mib) = o.num::<u64>("--size-mib")? {
        limits::prepare_file(&file, mib << 20)?;
    }
    let server = SendfileServer::spawn(o.get("--listen").unwrap_or("127.0.0.1:19194"), file)?;
    eprintln!("[sendfile-server] listening on {}", server.addr);
    loop {
        std::thread::park();
    }
}

fn secs(o: &Opts, k: &str) -> Result<Option<Duration>, String> {
    o.num::<f64>(k)?
        .map(|s| Duration::try_from_secs_f64(s).map_err(|e| format!("{k}: {e}")))
        .transpose()
}

fn slug(s: &str) -> String {
    s.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_lowercase()
            } else {
                '-'
            }
        })
        .collect::<String>()
        .split('-')
        .filter(|p| !p.is_empty())
        .collect::<Vec<_>>()
        .join("-")
}

/// Waits until `done()` or `limit`, checking every 100 ms.
fn wait_until(limit: Duration, done: impl Fn() -> bool) -> bool {
    let start = Instant::now();
    while start.elapsed() < limit {
        if done() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    done()
}

fn join_all(handles: Vec<JoinHandle<Result<(), String>>>) -> Result<(), String> {
    for h in handles {
        h.join()
            .map_err(|_| "a client thread panicked".to_string())??;
    }
    Ok(())
}

fn run(o: &Opts) -> Result<(), String> {
    if o.flag("--help") {
        println!("{USAGE}");
        return Ok(());
    }
    let path = o.positional.first().ok_or("run needs a workload file")?;
    let mut w = Workload::load(Path::new(path))?;
    let driver = o
        .get("--driver")
        .map(|d| Driver::load(Path::new(d)))
        .transpose()?
        .unwrap_or_default();
    if let Some(d) = secs(o, "--warmup")? {
        w.warmup = d;
    }
    if let Some(d) = secs(o, "--duration")? {
        w.test = d;
    }
    if let Some(r) = o.num("--rate")? {
        w.producer_rate = r;
        w.name = format!("{} (run at {r} msg/s)", w.name);
    }
    if let Some(mib) = o.num::<u64>("--backlog-mib")? {
        if w.consumer_backlog_bytes > 0 {
            w.consumer_backlog_bytes = mib << 20;
        }
    }
    let settings = driver.producer.overlay(&w.producer).overlay(&o.producer()?);
    let bootstrap = o
        .get("--bootstrap")
        .map(String::from)
        .or(driver.bootstrap.clone())
        .unwrap_or_else(|| "127.0.0.1:9092".into());
    let mut producer_props: Vec<(String, String)> = PRODUCER_DEFAULTS
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    producer_props.extend(
        settings
            .properties()
            .into_iter()
            .map(|(k, v)| (k.to_string(), v)),
    );
    producer_props.extend(driver.producer_properties.iter().cloned());
    let clients = Clients {
        bootstrap: bootstrap.clone(),
        producer: producer_props.clone(),
        consumer: driver.consumer_properties.clone(),
    };
    let raw_client = match o.get("--client").unwrap_or("librdkafka") {
        "librdkafka" => None,
        "raw" => Some(RawClient::new(&settings, w.key_distributor)?),
        c => return Err(format!("--client: {c:?} is not librdkafka or raw")),
    };
    let replication = o
        .num("--replication")?
        .or(driver.replication_factor)
        .unwrap_or(1);
    let base = Path::new(path).parent().unwrap_or(Path::new("."));
    let payloads = Arc::new(kafka::payloads(&w, base)?);
    let out = o.get("--out").map_or_else(
        || {
            bench_root()
                .join("..")
                .join("bench-results")
                .join(slug(&w.name))
        },
        PathBuf::from,
    );
    std::fs::create_dir_all(&out).map_err(|e| format!("create {}: {e}", out.display()))?;

    let run_id = format!(
        "{}-{}",
        std::process::id(),
        utc_now().replace([':', '-'], "")
    );
    let topics: Vec<String> = (0..w.topics)
        .map(|t| format!("sluice-bench-{}-{t}-{}", slug(&w.name), run_id).to_lowercase())
        .collect();
    // A steady run writes about 175 GB an hour at 50k msg/s of 1 KiB:
    // bound what each partition keeps (retention runs on the broker's own
    // schedule, log.retention.check.interval.ms).
    let retention_mib = o.num("--retention-mib")?.unwrap_or(1024u64);
    let topic_configs: Vec<(&str, String)> = if retention_mib == 0 {
        Vec::new()
    } else {
        vec![
            ("retention.bytes", (retention_mib << 20).to_string()),
            (
                "segment.bytes",
                (256u64 << 20).min(retention_mib << 20).to_string(),
            ),
        ]
    };
    for t in &topics {
        kafka::create_topic(
            &bootstrap,
            t,
            w.partitions_per_topic,
            replication,
            &topic_configs,
        )?;
    }
    eprintln!("[bench] {}: topics {topics:?} on {bootstrap}", w.name);

    let settle_for = settle_limit(o)?;
    settle_disks(settle_for, "the warm-up");
    let start = Instant::now();
    let started_at = utc_now();
    let total = w.warmup + w.test;
    let stats = Arc::new(Stats::new(start, total.as_secs() as usize + 3600));
    let stop_producers = Arc::new(AtomicBool::new(false));
    let stop_consumers = Arc::new(AtomicBool::new(false));
    let spawn_consumers = || -> Vec<JoinHandle<Result<(), String>>> {
        let mut hs = Vec::new();
        for t in &topics {
            for _ in 0..w.subscriptions_per_topic {
                let n = w.consumer_per_subscription.max(1) as usize;
                for c in 0..n {
                    let parts: Vec<i32> = (0..w.partitions_per_topic as i32)
                        .filter(|p| *p as usize % n == c)
                        .collect();
                    let (clients, t, stop, stats) = (
                        clients.clone(),
                        t.clone(),
                        stop_consumers.clone(),
                        stats.clone(),
                    );
                    let raw = raw_client.is_some();
                    hs.push(std::thread::spawn(move || {
                        if raw {
                            raw::consume_raw(&clients.bootstrap, &t, &parts, stop, stats)
                        } else {
                            kafka::consume(&clients, &t, &parts, stop, stats)
                        }
                    }));
                }
            }
        }
        hs
    };
    let backlog = w.consumer_backlog_bytes > 0;
    let mut consumers = if backlog {
        Vec::new()
    } else {
        spawn_consumers()
    };
    let producers_n = (w.topics * w.producers_per_topic) as f64;
    let mut producers = Vec::new();
    for t in &topics {
        for _ in 0..w.producers_per_topic {
            let rate = w.producer_rate / producers_n;
            let stats = stats.clone();
            let handle = match &raw_client {
                Some(c) => {
                    let job = raw::PacedJob {
                        addr: bootstrap.clone(),
                        topic: t.clone(),
                        partitions: w.partitions_per_topic,
                        acks: c.acks,
                        linger: c.linger,
                        batch_bytes: c.batch_bytes,
                        in_flight: RAW_IN_FLIGHT,
                        rate,
                        payloads: payloads.clone(),
                        stop: stop_producers.clone(),
                    };
                    std::thread::spawn(move || raw::produce_paced(job, stats))
                }
                None => {
                    let job = ProducerJob {
                        topic: t.clone(),
                        rate,
                        keys: w.key_distributor,
                        payloads: payloads.clone(),
                        stop: stop_producers.clone(),
                    };
                    let clients = clients.clone();
                    std::thread::spawn(move || kafka::produce(&clients, job, stats))
                }
            };
            producers.push(handle);
        }
    }
    eprintln!("[bench] warm-up {:?}", w.warmup);
    std::thread::sleep(w.warmup);
    let mut backlog_json = Value::Null;
    if backlog {
        let subs = u64::from(w.subscriptions_per_topic.max(1));
        let target = w.consumer_backlog_bytes;
        eprintln!("[bench] building a backlog of {} MiB", target >> 20);
        let t0 = Instant::now();
        let built = wait_until(Duration::from_secs(3600), || {
            stats.counters()[1] * subs >= target
        });
        let build_secs = t0.elapsed().as_secs_f64();
        if !built {
            return Err("the backlog was not built within an hour".into());
        }
        consumers = spawn_consumers();
        let c0 = stats.counters();
        let t1 = Instant::now();
        let drained = wait_until(Duration::from_secs(3600), || {
            let c = stats.counters();
            c[3] as f64 >= w.backlog_drain_ratio * (c[1] * subs) as f64
        });
        let drain = t1.elapsed().as_secs_f64();
        let c1 = stats.counters();
        backlog_json = json!({
            "target_bytes": target,
            "build_seconds": round3(build_secs),
            "drained": drained,
            "drain_seconds": round3(drain),
            "drain": rate_json(c1[2] - c0[2], c1[3] - c0[3], drain),
        });
        eprintln!("[bench] backlog drained in {drain:.1} s");
    }
    stats.reset_latencies();
    let c0 = stats.counters();
    let t0 = Instant::now();
    let test_start_s = start.elapsed().as_secs_f64();
    eprintln!("[bench] test {:?}", w.test);
    std::thread::sleep(w.test);
    let c1 = stats.counters();
    let test_secs = t0.elapsed().as_secs_f64();
    // Whole seconds only: the last, partial one would chart low.
    let elapsed_s = start.elapsed().as_secs() as usize;
    let [publish_latency, publish_delay, e2e] = stats.histograms();
    stop_producers.store(true, Ordering::Relaxed);
    join_all(producers)?;
    stop_consumers.store(true, Ordering::Relaxed);
    join_all(consumers)?;

    let publish = rate_json(c1[0] - c0[0], c1[1] - c0[1], test_secs);
    let consume = rate_json(c1[2] - c0[2], c1[3] - c0[3], test_secs);
    let limits = if o.flag("--no-limits") {
        None
    } else {
        let batch_target = settings.batch_size_bytes.unwrap_or(1 << 20).min(1 << 20) as usize;
        let fetched = backlog_json["drain"]["bytes"]
            .as_u64()
            .unwrap_or(c1[3] - c0[3]);
        Some(measure_limits(&LimitPlan {
            settle: settle_for,
            bootstrap: Some(&bootstrap),
            topic: topics.first().map(String::as_str),
            partitions: w.partitions_per_topic,
            batch: batch_up_to(batch_target, w.message_size),
            acks: acks_i16(settings.acks.as_deref())?,
            seconds: o.num("--limit-seconds")?.unwrap_or(5.0),
            sync: !o.flag("--sink-no-sync"),
            fetch_bytes: fetched.clamp(64 << 20, 2 << 30),
            paced: (w.producer_rate > 0.0).then(|| limits::PacedPlan {
                producers: producers_n as usize,
                rate: w.producer_rate / producers_n,
                // The run's producer settings (librdkafka's defaults when
                // unset: linger.ms 5, batch.size 1 000 000).
                linger: raw_client.as_ref().map_or_else(
                    || Duration::from_millis(settings.linger_ms.unwrap_or(5)),
                    |c| c.linger,
                ),
                batch_bytes: raw_client.as_ref().map_or_else(
                    || settings.batch_size_bytes.unwrap_or(1_000_000) as usize,
                    |c| c.batch_bytes,
                ),
                in_flight: RAW_IN_FLIGHT,
                payloads: payloads.clone(),
                warmup: Duration::from_secs(2),
                seconds: w.test.as_secs_f64().clamp(5.0, 30.0),
            }),
        })?)
    };
    if !o.flag("--keep-topics") {
        for t in &topics {
            if let Err(e) = kafka::delete_topic(&bootstrap, t) {
                eprintln!("[bench] {e}");
            }
        }
    }

    let publish_mib = publish["mib_per_s"].as_f64().unwrap_or(0.0);
    let consume_mib = consume["mib_per_s"].as_f64().unwrap_or(0.0);
    let drain_mib = backlog_json["drain"]["mib_per_s"].as_f64();
    let ratios = limits.as_ref().map(|l| {
        let sink = l.get("null_sink_mib_s");
        let raw_broker = l.get("raw_broker_mib_s");
        let r = |a: Option<f64>, b: Option<f64>| a.and_then(|a| ratio(a, b)).map(round3);
        let p99 = |h: &Histogram<u64>| h.value_at_percentile(99.0) as f64;
        let sink_p99 = l.sink_latency.as_ref().map(p99);
        json!({
            "publish_to_null_sink": r(Some(publish_mib), sink),
            "publish_latency_p99_to_null_sink": r(Some(p99(&publish_latency)), sink_p99),
            "raw_broker_to_null_sink": r(raw_broker, sink),
            "raw_broker_to_fio_write": r(raw_broker, l.get("fio_write_mib_s")),
            "null_sink_to_fio_write": r(sink, l.get("fio_write_mib_s")),
            "consume_to_sendfile": r(Some(consume_mib), l.get("sendfile_mib_s")),
            "drain_to_sendfile": r(drain_mib, l.get("sendfile_mib_s")),
        })
    });
    let series = |s: &report::Series| -> Vec<(f64, f64)> {
        s.points(elapsed_s)
            .into_iter()
            .map(|(t, _, mib)| (t, mib))
            .collect()
    };
    let (pub_series, cons_series) = (series(&stats.publish_series), series(&stats.consume_series));
    // The last, partial second too: a maximum is not lowered by it.
    let longest = stats.publish_series.max_latency_ms(elapsed_s + 1);
    let doc = json!({
        "workload": w.name,
        "workload_file": path,
        "date": utc_now(),
        "commit": git(&["rev-parse", "--short", "HEAD"]),
        "bootstrap": bootstrap,
        "client": if raw_client.is_some() { "raw" } else { "librdkafka" },
        "producer_properties": producer_props.iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>(),
        "warmup_seconds": w.warmup.as_secs_f64(),
        "test_seconds": round3(test_secs),
        "started_at": started_at,
        "test_start_second": round3(test_start_s),
        "target_rate": w.producer_rate,
        "publish": publish,
        "consume": consume,
        "backlog": backlog_json,
        "backlog_at_end_messages": (c1[0] * u64::from(w.subscriptions_per_topic)).saturating_sub(c1[2]),
        "errors": stats.errors.load(Ordering::Relaxed),
        "first_error": stats.first_error(),
        "consumer_resets": stats.consumer_resets.load(Ordering::Relaxed),
        "consumer_skipped_messages": stats.skipped.load(Ordering::Relaxed),
        "latency": {
            "publish": latency_json(&publish_latency),
            "publish_delay": latency_json(&publish_delay),
            "end_to_end": latency_json(&e2e),
        },
        "limits": limits.as_ref().map(|l| Value::Object(l.json.clone())),
        "ratios": ratios,
        "series_mib_s": { "publish": pub_series, "consume": cons_series },
        "series_publish_latency_max_ms": longest,
    });
    std::fs::write(out.join("result.json"), format!("{doc:#}\n")).map_err(|e| e.to_string())?;

    println!("## {} ({})", w.name, doc["date"].as_str().unwrap_or(""));
    println!("| | msg/s | MiB/s |\n|---|---|---|");
    for (k, v) in [
        ("publish", &doc["publish"]),
        ("consume", &doc["consume"]),
        ("backlog drain", &doc["backlog"]["drain"]),
    ] {
        if !v.is_null() {
            println!("| {k} | {} | {} |", v["msg_per_s"], v["mib_per_s"]);
        }
    }
    println!("\n{}", latency_header());
    println!("{}", latency_row("publish", &publish_latency));
    println!("{}", latency_row("publish delay", &publish_delay));
    println!("{}", latency_row("end-to-end", &e2e));
    let sink_latency = limits.as_ref().and_then(|l| l.sink_latency.as_ref());
    if let Some(h) = sink_latency {
        println!("{}", latency_row("publish, null sink (limit)", h));
    }
    if let Some(line) = report::longest_per_second(&longest, test_start_s) {
        println!("\n{line}");
    }
    if let Some(l) = &limits {
        println!(
            "\nlimits: {}",
            Value::Object(
                l.json
                    .iter()
                    .filter(|(_, v)| v.is_number())
                    .map(|(k, v)| (k.clone(), v.clone()))
                    .collect()
            )
        );
        println!("ratios: {}", doc["ratios"]);
    }
    if stats.consumer_resets.load(Ordering::Relaxed) > 0 {
        println!(
            "consumers fell behind the retention {} times and skipped {} messages",
            doc["consumer_resets"], doc["consumer_skipped_messages"]
        );
    }
    if stats.errors.load(Ordering::Relaxed) > 0 {
        println!("errors: {} (first: {})", doc["errors"], doc["first_error"]);
    }
    let charts = chart::throughput(
        &out.join("throughput.png"),
        &format!("{}: throughput", w.name),
        &[("publish", pub_series), ("consume", cons_series)],
        &[(test_start_s, "test phase starts")],
    )
    .and_then(|()| {
        chart::percentiles(
            &out.join("latency.png"),
            &format!("{}: latency", w.name),
            &[
                ("publish", report::percentile_curve(&publish_latency)),
                ("publish delay", report::percentile_curve(&publish_delay)),
                ("end-to-end", report::percentile_curve(&e2e)),
                (
                    "publish, null sink (limit)",
                    sink_latency.map_or_else(Vec::new, report::percentile_curve),
                ),
            ],
        )
    });
    if let Err(e) = charts {
        eprintln!("[bench] no charts: {e}");
    }
    eprintln!("[bench] results in {}", out.display());
    Ok(())
}
