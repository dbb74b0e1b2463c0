//! sluice-partition-scale: what a partition costs one broker, from
//! CreateTopics to its first acknowledged record, at 1 000 to 50 000
//! partitions.
//!
//! ```text
//! cargo build --release --bin sluice && cargo build --release -p sluice-bench --bin sluice-partition-scale
//! target/release/sluice-partition-scale --partitions 1000,10000,50000 --json scale.jsonl
//! ```
//!
//! For each count N (`--partitions`), in topics of `--per-topic` partitions:
//!
//! 1. a fresh `sluice start` (the `sluice` beside this binary unless
//!    `--sluice`; its own data directory under
//!    [`bench_root`](sluice_bench::bench_root), removed
//!    afterwards; `--port`, `--coordinator-port`), so that the counts do
//!    not add up. `--keep-broker` keeps one broker for every count (the
//!    partitions of the earlier counts stay); `--brokers H:P` uses a
//!    running broker and deletes the topics after each count.
//! 2. *create*: one CreateTopics for all the topics through rdkafka's
//!    AdminClient, until every topic has its result.
//! 3. *first acks*: one `--record-bytes` record to every partition of the
//!    created topics from one rdkafka producer (acks=all, idempotence
//!    off): all sent, then flushed; the time from the first send to the
//!    last delivery report. Every record ends delivered, failed (an error
//!    in its delivery report, or refused by the client) or undelivered
//!    (no report when the phase gave up, or its topic was not created).
//! 4. the broker's VmRSS, VmHWM and open file descriptors (`/proc/PID`),
//!    before step 2 and after step 3, and its `ulimit -n` (soft/hard
//!    RLIMIT_NOFILE), when this tool started it; and the share of the
//!    machine's CPU that other processes used during steps 2 and 3 (a run
//!    beside a build is not comparable).
//!
//! *Per partition* is (create + first acks) / N. The goal it is read
//! against (the issue "partitions at scale"): at most 1.2 ms, 20 times
//! under the 24 ms measured with lazily created partition files, and at
//! most 1.2 times as much at the largest count as at the smallest.
//!
//! Prints a table; `--json FILE` writes one JSON object per count, a line
//! each (JSON Lines), as each count ends.
//!
//! Nothing waits without a bound: each phase (starting and stopping the
//! broker too) gives up after `--timeout-s` and reports how far it got; a
//! broker that exits is noticed at once; SIGINT or SIGTERM ends the phase
//! and cleans up; the broker gets SIGKILL if this tool dies
//! (`PR_SET_PDEATHSIG`). A count whose file descriptors would clearly pass
//! the broker's soft limit, going by the earlier counts, still runs, with a
//! warning.

use std::fs::File;
use std::io::{BufRead, BufReader, Write};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{mpsc, Arc, OnceLock};
use std::time::{Duration, Instant};

use futures_lite::future::block_on;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::{ClientContext, DefaultClientContext};
use rdkafka::config::ClientConfig;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::producer::{
    BaseRecord, DeliveryResult, Producer, ProducerContext, PurgeConfig, ThreadedProducer,
};
use serde_json::{json, Value};
use sluice_bench::fresh_dir;
use sluice_bench::meta::{
    cpu_times_with, fmt_opt, git, others_cpu_pct, ratio, round1, round3, utc_now,
};
use sluice_bench::settle::settle_disks;

const USAGE: &str = "\
usage: sluice-partition-scale [options]

  --partitions N,N,...  partition counts, one run each (default 1000,10000,50000)
  --per-topic N         partitions per topic (default 500)
  --record-bytes N      value bytes of each partition's record (default 100)
  --timeout-s S         each phase gives up after S seconds (default 600)
  --settle-s S          wait up to S seconds for the disks to go quiet
                        before each count (default 60; 0: not at all)
  --json FILE           one JSON object per count, a line each
  --brokers H:P         a running broker (no RSS or fds); the topics are
                        deleted after each count
  --sluice PATH         the broker binary (default: the sluice beside this
                        binary, else target/release/sluice)
  --port P              the started broker's Kafka port (default 19092)
  --coordinator-port P  its coordinator's port (default 19093)
  --broker-args ARGS    more `sluice start` options, space-separated
  --keep-broker         one started broker for every count
  -h, --help";

/// Set by SIGINT and SIGTERM; every wait gives up when it is.
static INTERRUPTED: AtomicBool = AtomicBool::new(false);

extern "C" fn on_signal(_: libc::c_int) {
    INTERRUPTED.store(true, Ordering::Relaxed);
}

/// How often a wait looks at the clock, the broker and [`INTERRUPTED`].
const POLL: Duration = Duration::from_millis(100);

/// How much longer than `--timeout-s` the producer keeps a record before
/// failing it (`message.timeout.ms`).
const MESSAGE_TIMEOUT_AFTER: Duration = Duration::from_secs(60);

struct Config {
    counts: Vec<u32>,
    per_topic: u32,
    record_bytes: usize,
    timeout: Duration,
    settle: Duration,
    json: Option<PathBuf>,
    brokers: Option<String>,
    sluice: PathBuf,
    port: u16,
    coordinator_port: u16,
    broker_args: Vec<String>,
    keep_broker: bool,
}

fn num<T: std::str::FromStr>(k: &str, v: &str) -> Result<T, String> {
    v.parse().map_err(|_| format!("{k}: cannot parse {v:?}"))
}

/// The `sluice` beside this binary (both are built into target/release),
/// else `target/release/sluice`.
fn default_sluice() -> PathBuf {
    std::env::current_exe()
        .ok()
        .and_then(|exe| Some(exe.parent()?.join("sluice")))
        .filter(|p| p.exists())
        .unwrap_or_else(|| PathBuf::from("target/release/sluice"))
}

impl Config {
    /// `None` for --help.
    fn parse(mut args: impl Iterator<Item = String>) -> Result<Option<Self>, String> {
        let mut c = Self {
            counts: vec![1_000, 10_000, 50_000],
            per_topic: 500,
            record_bytes: 100,
            timeout: Duration::from_secs(600),
            settle: Duration::from_secs(60),
            json: None,
            brokers: None,
            sluice: default_sluice(),
            port: 19092,
            coordinator_port: 19093,
            broker_args: Vec::new(),
            keep_broker: false,
        };
        while let Some(k) = args.next() {
            match k.as_str() {
                "-h" | "--help" => return Ok(None),
                "--keep-broker" => {
                    c.keep_broker = true;
                    continue;
                }
                _ => {}
            }
            let mut value = || args.next().ok_or_else(|| format!("{k} needs a value"));
            match k.as_str() {
                "--partitions" => {
                    c.counts = value()?
                        .split(',')
                        .map(|n| num(&k, n.trim()))
                        .collect::<Result<_, _>>()?
                }
                "--per-topic" => c.per_topic = num(&k, &value()?)?,
                "--record-bytes" => c.record_bytes = num(&k, &value()?)?,
                "--timeout-s" => c.timeout = Duration::from_secs(num(&k, &value()?)?),
                "--settle-s" => c.settle = Duration::from_secs(num(&k, &value()?)?),
                "--json" => c.json = Some(PathBuf::from(value()?)),
                "--brokers" => c.brokers = Some(value()?),
                "--sluice" => c.sluice = PathBuf::from(value()?),
                "--port" => c.port = num(&k, &value()?)?,
                "--coordinator-port" => c.coordinator_port = num(&k, &value()?)?,
                "--broker-args" => {
                    c.broker_args = value()?.split_whitespace().map(String::from).collect()
                }
                _ => return Err(format!("unknown option {k}\n{USAGE}")),
            }
        }
        if c.per_topic == 0 || c.counts.contains(&0) {
            return Err("--per-topic and --partitions must be positive".into());
        }
        Ok(Some(c))
    }
}

/// The topics of the `run`th count, `n` partitions: their names and
/// partition counts, `per_topic` each (the last one the rest).
fn topics(run: usize, n: u32, per_topic: u32) -> Vec<(String, u32)> {
    (0..n.div_ceil(per_topic))
        .map(|t| {
            let name = format!("scale-{}-{run}-{n}-{t:03}", std::process::id());
            (name, per_topic.min(n - t * per_topic))
        })
        .collect()
}

/// The kilobytes of `key` (`VmRSS`, `VmHWM`) in a `/proc/PID/status` text.
fn status_kib(status: &str, key: &str) -> Option<u64> {
    let line = status.lines().find(|l| l.split(':').next() == Some(key))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

/// RLIMIT_NOFILE's soft and hard values in a `/proc/PID/limits` text; `None`
/// for "unlimited".
fn nofile(limits: &str) -> Option<(Option<u64>, Option<u64>)> {
    let line = limits.lines().find(|l| l.starts_with("Max open files"))?;
    let mut f = line["Max open files".len()..].split_whitespace();
    let mut value = || f.next().map(|v| v.parse().ok());
    Some((value()?, value()?))
}

fn limit_text(l: Option<u64>) -> String {
    l.map_or("unlimited".into(), |v| v.to_string())
}

/// What `/proc` shows of the broker at one moment.
#[derive(Clone, Copy, Default)]
struct ProcSample {
    rss_kib: Option<u64>,
    hwm_kib: Option<u64>,
    fds: Option<u64>,
}

impl ProcSample {
    fn of(pid: u32) -> Self {
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
        Self {
            rss_kib: status_kib(&status, "VmRSS"),
            hwm_kib: status_kib(&status, "VmHWM"),
            fds: std::fs::read_dir(format!("/proc/{pid}/fd"))
                .ok()
                .map(|d| d.count() as u64),
        }
    }

    fn json(&self) -> Value {
        json!({ "rss_kib": self.rss_kib, "hwm_kib": self.hwm_kib, "fds": self.fds })
    }
}

/// A `sluice start` of this tool: its own data directory and log, SIGKILL
/// when dropped (and when this tool dies).
struct Broker {
    child: Child,
    bootstrap: String,
    dir: Option<tempfile::TempDir>,
    log: PathBuf,
}

impl Broker {
    /// Starts the broker and waits (at most `limit`) until it serves Kafka
    /// clients.
    fn start(c: &Config, limit: Duration) -> Result<Self, String> {
        let dir = fresh_dir("partition-scale-");
        let log = dir.path().with_extension("broker.log");
        let log_file = File::create(&log).map_err(|e| format!("{}: {e}", log.display()))?;
        let stdout_log = log_file.try_clone().map_err(|e| e.to_string())?;
        let bootstrap = format!("127.0.0.1:{}", c.port);
        let mut cmd = Command::new(&c.sluice);
        cmd.arg("start")
            .arg("--data-dir")
            .arg(dir.path())
            .args(["--listeners", &bootstrap])
            .args([
                "--coordinator-listen",
                &format!("127.0.0.1:{}", c.coordinator_port),
            ])
            .args(&c.broker_args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(log_file);
        // SAFETY: prctl is async-signal-safe and touches no memory of ours.
        // The signal follows the thread that forks, the main thread here.
        unsafe {
            cmd.pre_exec(|| {
                if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) == -1 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        let mut child = match cmd.spawn() {
            Ok(child) => child,
            Err(e) => {
                // Nothing was logged: the log goes with the directory.
                std::fs::remove_file(&log).map_err(|e| format!("remove {}: {e}", log.display()))?;
                return Err(format!("start {}: {e}", c.sluice.display()));
            }
        };
        let stdout = child.stdout.take().expect("stdout is piped");
        let (ready_tx, ready_rx) = mpsc::channel();
        // Copies the broker's stdout into its log, and says when it serves;
        // ends with the broker.
        std::thread::spawn(move || {
            let mut log = stdout_log;
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if line.contains("serving Kafka clients") {
                    // The receiver is gone once start gave up.
                    let _ = ready_tx.send(());
                }
                if writeln!(log, "{line}").is_err() {
                    break;
                }
            }
        });
        let mut broker = Self {
            child,
            bootstrap,
            dir: Some(dir),
            log,
        };
        eprintln!(
            "[scale] starting {} ({})",
            c.sluice.display(),
            broker.log.display()
        );
        wait_for(&ready_rx, Instant::now() + limit, Some(&mut broker)).map_err(|e| {
            format!(
                "the broker did not start: {e}; see {}",
                broker.log.display()
            )
        })?;
        Ok(broker)
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Its RLIMIT_NOFILE, soft and hard (see [`nofile`]).
    fn nofile(&self) -> Option<(Option<u64>, Option<u64>)> {
        nofile(&std::fs::read_to_string(format!("/proc/{}/limits", self.pid())).ok()?)
    }

    /// Why the broker is gone, if it is.
    fn exited(&mut self) -> Option<String> {
        match self.child.try_wait() {
            Ok(Some(status)) => Some(format!("the broker exited ({status})")),
            Ok(None) => None,
            Err(e) => Some(format!("the broker cannot be waited for: {e}")),
        }
    }

    /// SIGTERM (a clean stop), SIGKILL after `limit`; then removes the data
    /// directory, and the log if `keep_log` is false. Returns how long the
    /// broker took to stop, `None` if it had exited before.
    fn stop(mut self, limit: Duration, keep_log: bool) -> Result<Option<Duration>, String> {
        let t0 = Instant::now();
        let running = self.exited().is_none();
        if running {
            // SAFETY: kill(2) on our own child, not yet reaped (so its pid
            // cannot have been reused).
            unsafe { libc::kill(self.pid() as libc::pid_t, libc::SIGTERM) };
        }
        let mut outcome = Ok(());
        while self.exited().is_none() {
            if t0.elapsed() >= limit {
                outcome = Err(format!("the broker did not stop in {limit:?}: killed"));
                self.kill();
                break;
            }
            std::thread::sleep(POLL);
        }
        let took = t0.elapsed();
        if let Some(dir) = self.dir.take() {
            let path = dir.path().display().to_string();
            dir.close().map_err(|e| format!("remove {path}: {e}"))?;
        }
        if keep_log {
            eprintln!("[scale] the broker's log is kept: {}", self.log.display());
        } else {
            std::fs::remove_file(&self.log)
                .map_err(|e| format!("remove {}: {e}", self.log.display()))?;
        }
        outcome.map(|()| running.then_some(took))
    }

    fn kill(&mut self) {
        if let Err(e) = self.child.kill().and_then(|()| self.child.wait().map(drop)) {
            eprintln!("[scale] cannot kill the broker: {e}");
        }
    }
}

impl Drop for Broker {
    fn drop(&mut self) {
        if self.exited().is_none() {
            self.kill();
        }
        if let Some(dir) = self.dir.take() {
            let path = dir.path().display().to_string();
            if let Err(e) = dir.close() {
                eprintln!("[scale] cannot remove {path}: {e}");
            }
            eprintln!("[scale] the broker's log is kept: {}", self.log.display());
        }
    }
}

/// Why a wait must stop now: an interrupt, or the broker gone.
fn stop_reason(broker: Option<&mut Broker>) -> Option<String> {
    if INTERRUPTED.load(Ordering::Relaxed) {
        return Some("interrupted".into());
    }
    broker.and_then(Broker::exited)
}

/// Waits for `rx` until `deadline`, giving up early on a [`stop_reason`].
fn wait_for<T>(
    rx: &mpsc::Receiver<T>,
    deadline: Instant,
    mut broker: Option<&mut Broker>,
) -> Result<T, String> {
    loop {
        match rx.recv_timeout(POLL) {
            Ok(v) => return Ok(v),
            Err(mpsc::RecvTimeoutError::Disconnected) => {
                // The sender goes with the broker's stdout, just before the
                // broker itself: give its exit a moment to be seen.
                std::thread::sleep(POLL);
                return Err(stop_reason(broker).unwrap_or_else(|| "no answer".into()));
            }
            Err(mpsc::RecvTimeoutError::Timeout) => {}
        }
        if let Some(why) = stop_reason(broker.as_deref_mut()) {
            return Err(why);
        }
        if Instant::now() >= deadline {
            return Err("timed out".into());
        }
    }
}

/// Runs `f` on its own thread and waits for it as [`wait_for`] does; a
/// thread given up on is left to finish by itself (rdkafka's own request
/// timeout ends it).
fn bounded<T: Send + 'static>(
    deadline: Instant,
    broker: Option<&mut Broker>,
    f: impl FnOnce() -> T + Send + 'static,
) -> Result<T, String> {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        // The receiver is gone once the caller gave up.
        let _ = tx.send(f());
    });
    wait_for(&rx, deadline, broker)
}

fn client_config(bootstrap: &str) -> ClientConfig {
    let mut c = ClientConfig::new();
    c.set("bootstrap.servers", bootstrap)
        .set("client.id", "sluice-partition-scale");
    c
}

/// Each topic's result of a CreateTopics or DeleteTopics.
type TopicResults = Vec<Result<String, (String, RDKafkaErrorCode)>>;

fn admin_options(timeout: Duration) -> AdminOptions {
    AdminOptions::new()
        .operation_timeout(Some(timeout))
        .request_timeout(Some(timeout))
}

fn create_all(
    bootstrap: &str,
    topics: &[(String, u32)],
    timeout: Duration,
) -> Result<TopicResults, String> {
    let admin: AdminClient<DefaultClientContext> = client_config(bootstrap)
        .create()
        .map_err(|e| format!("admin client: {e}"))?;
    let new: Vec<NewTopic<'_>> = topics
        .iter()
        .map(|(name, parts)| NewTopic::new(name, *parts as i32, TopicReplication::Fixed(1)))
        .collect();
    block_on(admin.create_topics(&new, &admin_options(timeout)))
        .map_err(|e| format!("CreateTopics: {e}"))
}

fn delete_all(
    bootstrap: &str,
    topics: &[String],
    timeout: Duration,
) -> Result<TopicResults, String> {
    let admin: AdminClient<DefaultClientContext> = client_config(bootstrap)
        .create()
        .map_err(|e| format!("admin client: {e}"))?;
    let names: Vec<&str> = topics.iter().map(String::as_str).collect();
    block_on(admin.delete_topics(&names, &admin_options(timeout)))
        .map_err(|e| format!("DeleteTopics: {e}"))
}

/// How far CreateTopics got.
struct Created {
    took: Duration,
    /// The topics created, with their partitions.
    ok: Vec<(String, u32)>,
    failed: usize,
    first_error: Option<String>,
    /// Why it ended without every topic's result.
    gave_up: Option<String>,
}

fn create_phase(
    c: &Config,
    bootstrap: &str,
    topics: &[(String, u32)],
    broker: Option<&mut Broker>,
) -> Created {
    let t0 = Instant::now();
    let (b, t, timeout) = (bootstrap.to_string(), topics.to_vec(), c.timeout);
    let outcome =
        bounded(t0 + c.timeout, broker, move || create_all(&b, &t, timeout)).and_then(|r| r);
    let took = t0.elapsed();
    let mut created = Created {
        took,
        ok: Vec::new(),
        failed: 0,
        first_error: None,
        gave_up: None,
    };
    match outcome {
        Ok(results) => {
            for r in results {
                match r {
                    Ok(name) => {
                        let parts = topics
                            .iter()
                            .find(|(n, _)| *n == name)
                            .map_or(0, |(_, p)| *p);
                        created.ok.push((name, parts));
                    }
                    Err((name, code)) => {
                        created.failed += 1;
                        created.first_error.get_or_insert(format!("{name}: {code}"));
                    }
                }
            }
        }
        Err(e) => created.gave_up = Some(e),
    }
    created
}

/// Delivery reports of the first-acks phase, counted by the producer's
/// polling thread.
struct Reports {
    /// Where report times are counted from.
    origin: Instant,
    delivered: AtomicU64,
    failed: AtomicU64,
    /// Nanoseconds from `origin` to the latest report.
    last_ns: AtomicU64,
    first_error: OnceLock<String>,
}

impl Reports {
    fn answered(&self) -> u64 {
        self.delivered.load(Ordering::Relaxed) + self.failed.load(Ordering::Relaxed)
    }
    fn fail(&self, e: String) {
        self.failed.fetch_add(1, Ordering::Relaxed);
        // Only the first error is kept.
        let _ = self.first_error.set(e);
    }
}

struct ReportCtx(Arc<Reports>);

impl ClientContext for ReportCtx {}

impl ProducerContext for ReportCtx {
    type DeliveryOpaque = ();

    fn delivery(&self, result: &DeliveryResult<'_>, _: ()) {
        let r = &self.0;
        r.last_ns
            .fetch_max(r.origin.elapsed().as_nanos() as u64, Ordering::Relaxed);
        match result {
            Ok(_) => {
                r.delivered.fetch_add(1, Ordering::Relaxed);
            }
            Err((e, _)) => r.fail(format!("delivery: {e}")),
        }
    }
}

/// How far the first-acks phase got.
struct FirstAcks {
    /// From the first send to the last delivery report (to giving up, when
    /// some records had none).
    took: Duration,
    /// From the first send to the last delivery report, also when the phase
    /// gave up; `None` with no report at all.
    last_report: Option<Duration>,
    sent: u64,
    delivered: u64,
    failed: u64,
    first_error: Option<String>,
    gave_up: Option<String>,
}

impl FirstAcks {
    /// Nothing sent (yet), for the reason given.
    fn nothing(gave_up: Option<String>) -> Self {
        Self {
            took: Duration::ZERO,
            last_report: None,
            sent: 0,
            delivered: 0,
            failed: 0,
            first_error: None,
            gave_up,
        }
    }
}

fn producer(
    c: &Config,
    bootstrap: &str,
    records: u64,
    reports: Arc<Reports>,
) -> Result<ThreadedProducer<ReportCtx>, String> {
    client_config(bootstrap)
        .set("acks", "all")
        .set("enable.idempotence", "false")
        // Past the phase's own limit, so that a record with no answer by
        // then counts as undelivered, not as failed by the client.
        .set(
            "message.timeout.ms",
            (c.timeout + MESSAGE_TIMEOUT_AFTER).as_millis().to_string(),
        )
        .set(
            "queue.buffering.max.messages",
            records.max(100_000).to_string(),
        )
        .create_with_context(ReportCtx(reports))
        .map_err(|e| format!("producer: {e}"))
}

/// Sends one record to every partition of `topics`; returns how many were
/// accepted by the client, or why it stopped.
fn send_all(
    p: &ThreadedProducer<ReportCtx>,
    topics: &[(String, u32)],
    value: &[u8],
    deadline: Instant,
    broker: &mut Option<&mut Broker>,
) -> (u64, Option<String>) {
    let mut sent = 0;
    for (topic, parts) in topics {
        for part in 0..*parts as i32 {
            let mut rec = BaseRecord::<(), [u8]>::to(topic)
                .partition(part)
                .payload(value);
            loop {
                match p.send(rec) {
                    Ok(()) => sent += 1,
                    Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), r)) => {
                        if let Some(why) = stop_reason(broker.as_deref_mut()) {
                            return (sent, Some(why));
                        }
                        if Instant::now() >= deadline {
                            return (sent, Some("timed out sending".into()));
                        }
                        std::thread::sleep(Duration::from_millis(1));
                        rec = r;
                        continue;
                    }
                    Err((e, _)) => p.context().0.fail(format!("send: {e}")),
                }
                break;
            }
        }
    }
    (sent, None)
}

fn first_acks_phase(
    c: &Config,
    bootstrap: &str,
    topics: &[(String, u32)],
    mut broker: Option<&mut Broker>,
) -> FirstAcks {
    let records: u64 = topics.iter().map(|(_, p)| u64::from(*p)).sum();
    let reports = Arc::new(Reports {
        origin: Instant::now(),
        delivered: AtomicU64::new(0),
        failed: AtomicU64::new(0),
        last_ns: AtomicU64::new(0),
        first_error: OnceLock::new(),
    });
    let mut out = FirstAcks::nothing(None);
    let p = match producer(c, bootstrap, records, reports.clone()) {
        Ok(p) => p,
        Err(e) => {
            out.gave_up = Some(e);
            return out;
        }
    };
    let value = vec![0xab; c.record_bytes];
    // The clock starts at the first send, not when the client was made.
    let start = Instant::now();
    let deadline = start + c.timeout;
    let (sent, mut gave_up) = send_all(&p, topics, &value, deadline, &mut broker);
    let refused = reports.failed.load(Ordering::Relaxed);
    while gave_up.is_none() && reports.answered() < sent + refused {
        gave_up = stop_reason(broker.as_deref_mut())
            .or_else(|| (Instant::now() >= deadline).then(|| "timed out".into()));
        // Flushing in slices, to look at the clock and the broker between.
        if let Err(e) = p.flush(POLL) {
            if !matches!(e, KafkaError::Flush(RDKafkaErrorCode::OperationTimedOut)) {
                gave_up = Some(format!("flush: {e}"));
            }
        }
    }
    out.last_report = (reports.answered() > 0).then(|| {
        (reports.origin + Duration::from_nanos(reports.last_ns.load(Ordering::Relaxed)))
            .saturating_duration_since(start)
    });
    out.took = match (&gave_up, out.last_report) {
        (None, Some(last)) => last,
        _ => start.elapsed(),
    };
    out.sent = sent;
    out.delivered = reports.delivered.load(Ordering::Relaxed);
    out.failed = reports.failed.load(Ordering::Relaxed);
    out.first_error = reports.first_error.get().cloned();
    out.gave_up = gave_up;
    // Records still queued or in flight are dropped here, so that the
    // producer goes at once; they stay counted as undelivered.
    p.purge(PurgeConfig::default().queue().inflight());
    out
}

/// All that one count measured.
struct Run {
    n: u32,
    topics: usize,
    created: Created,
    acks: FirstAcks,
    before: ProcSample,
    after: ProcSample,
    nofile: Option<(Option<u64>, Option<u64>)>,
    /// Percent of the machine's CPU used by processes other than this tool
    /// and its broker during create and first acks.
    others_cpu_pct: Option<f64>,
    /// Why the count did not finish, beyond what its phases say.
    error: Option<String>,
}

impl Run {
    fn undelivered(&self) -> u64 {
        u64::from(self.n).saturating_sub(self.acks.delivered + self.acks.failed)
    }

    /// Whether every partition was created and acknowledged its record.
    fn complete(&self) -> bool {
        self.acks.delivered == u64::from(self.n) && self.error.is_none()
    }

    fn per_partition_ms(&self) -> f64 {
        (self.created.took + self.acks.took).as_secs_f64() * 1000.0 / f64::from(self.n)
    }

    fn fds_per_partition(&self) -> Option<f64> {
        let (a, b) = (self.after.fds?, self.before.fds?);
        Some((a as f64 - b as f64) / f64::from(self.n))
    }

    fn json(&self, c: &Config) -> Value {
        let a = &self.acks;
        json!({
            "date": utc_now(),
            "commit": git(&["rev-parse", "--short", "HEAD"]),
            "broker": match (&c.brokers, c.keep_broker) {
                (Some(b), _) => b.clone(),
                (None, keep) => format!("{} ({})", c.sluice.display(), if keep { "kept" } else { "fresh" }),
            },
            "partitions": self.n,
            "topics": self.topics,
            "per_topic": c.per_topic,
            "record_bytes": c.record_bytes,
            "timeout_s": c.timeout.as_secs(),
            "complete": self.complete(),
            "create": {
                "seconds": round3(self.created.took.as_secs_f64()),
                "topics_created": self.created.ok.len(),
                "topics_failed": self.created.failed,
                "first_error": self.created.first_error,
                "gave_up": self.created.gave_up,
            },
            "first_acks": {
                "seconds": round3(a.took.as_secs_f64()),
                "last_report_seconds": a.last_report.map(|d| round3(d.as_secs_f64())),
                "sent": a.sent,
                "delivered": a.delivered,
                "failed": a.failed,
                "undelivered": self.undelivered(),
                "first_error": a.first_error,
                "gave_up": a.gave_up,
            },
            "per_partition_ms": self.complete().then(|| round3(self.per_partition_ms())),
            "broker_before": self.before.json(),
            "broker_after": self.after.json(),
            "fds_per_partition": self.fds_per_partition().map(round3),
            "nofile_soft": self.nofile.and_then(|l| l.0),
            "nofile_hard": self.nofile.and_then(|l| l.1),
            "others_cpu_pct": self.others_cpu_pct.map(round1),
            "error": self.error,
        })
    }
}

const TABLE_HEADER: &str = "\
| partitions | topics | create s | first acks s | ms/partition | delivered | failed | undelivered | RSS MiB | fds | fds/partition | ulimit -n soft/hard | others' CPU % |
|---|---|---|---|---|---|---|---|---|---|---|---|---|";

fn row(r: &Run) -> String {
    let mib = |kib: Option<u64>| kib.map(|k| k as f64 / 1024.0);
    format!(
        "| {} | {} | {:.2} | {:.2} | {} | {} | {} | {} | {} | {} | {} | {} | {} |",
        r.n,
        r.topics,
        r.created.took.as_secs_f64(),
        r.acks.took.as_secs_f64(),
        // Not a cost per partition unless every partition got there.
        fmt_opt(r.complete().then(|| r.per_partition_ms()), 3),
        r.acks.delivered,
        r.acks.failed,
        r.undelivered(),
        fmt_opt(mib(r.after.rss_kib), 1),
        r.after.fds.map_or("-".into(), |f| f.to_string()),
        fmt_opt(r.fds_per_partition(), 2),
        r.nofile.map_or("-".into(), |(s, h)| format!(
            "{}/{}",
            limit_text(s),
            limit_text(h)
        )),
        fmt_opt(r.others_cpu_pct, 0),
    )
}

/// What went wrong in a run, one line each.
fn problems(r: &Run) -> Vec<String> {
    let mut p = Vec::new();
    let mut say = |what: &str, v: &Option<String>| {
        if let Some(v) = v {
            p.push(format!("{} partitions: {what}: {v}", r.n));
        }
    };
    say("create gave up", &r.created.gave_up);
    say("create, first error", &r.created.first_error);
    let last = r
        .acks
        .last_report
        .map_or("none".into(), |d| format!("at {d:.2?}"));
    say(
        &format!("first acks gave up (the last delivery report: {last})"),
        &r.acks.gave_up,
    );
    say("first acks, first error", &r.acks.first_error);
    say("error", &r.error);
    p
}

/// Warns when `n` partitions would clearly pass the broker's soft limit of
/// file descriptors, going by the fds per partition of an earlier run.
fn warn_fds(n: u32, earlier: &[Run], nofile: Option<(Option<u64>, Option<u64>)>) {
    let per = earlier
        .iter()
        .filter_map(Run::fds_per_partition)
        .reduce(f64::max);
    let (Some(per), Some((Some(soft), _))) = (per, nofile) else {
        return;
    };
    let expected = per * f64::from(n);
    if expected > soft as f64 {
        eprintln!(
            "[scale] {n} partitions at {per:.2} fds each need about {expected:.0} file descriptors, \
             over the broker's soft limit of {soft}: expect failures"
        );
    }
}

/// One count: create, first acks, and the broker's footprint.
fn run_count(
    c: &Config,
    n: u32,
    topics: &[(String, u32)],
    bootstrap: &str,
    mut broker: Option<&mut Broker>,
) -> Run {
    settle_disks(c.settle, &format!("{n} partitions"));
    let sample = |b: &Option<&mut Broker>| {
        b.as_ref()
            .map_or_else(ProcSample::default, |b| ProcSample::of(b.pid()))
    };
    let before = sample(&broker);
    let pid = broker.as_ref().map(|b| b.pid());
    let cpu_before = cpu_times_with(pid);
    eprintln!(
        "[scale] {n} partitions: CreateTopics for {} topics",
        topics.len()
    );
    let created = create_phase(c, bootstrap, topics, broker.as_deref_mut());
    eprintln!(
        "[scale] {n} partitions: {} topics created in {:.2?}; one record to each partition",
        created.ok.len(),
        created.took
    );
    let acks = if created.gave_up.is_none() && !created.ok.is_empty() {
        first_acks_phase(c, bootstrap, &created.ok, broker.as_deref_mut())
    } else {
        FirstAcks::nothing(Some("no topic created".into()))
    };
    let others_cpu_pct = others_cpu_pct(cpu_before, cpu_times_with(pid));
    let after = sample(&broker);
    let nofile = broker.as_ref().and_then(|b| b.nofile());
    let error = broker.and_then(Broker::exited);
    Run {
        n,
        topics: topics.len(),
        created,
        acks,
        before,
        after,
        nofile,
        others_cpu_pct,
        error,
    }
}

/// Deletes the topics of a run on a broker this tool did not start.
fn delete_topics(c: &Config, bootstrap: &str, topics: &[(String, u32)]) -> Result<(), String> {
    let names: Vec<String> = topics.iter().map(|(t, _)| t.clone()).collect();
    let (b, timeout) = (bootstrap.to_string(), c.timeout);
    let results = bounded(Instant::now() + c.timeout, None, move || {
        delete_all(&b, &names, timeout)
    })??;
    match results.into_iter().find_map(Result::err) {
        Some((name, code)) => Err(format!("delete {name}: {code}")),
        None => Ok(()),
    }
}

fn append_json(path: &Path, doc: &Value) -> Result<(), String> {
    let mut f = std::fs::OpenOptions::new()
        .append(true)
        .open(path)
        .map_err(|e| format!("{}: {e}", path.display()))?;
    writeln!(f, "{doc}").map_err(|e| format!("{}: {e}", path.display()))
}

/// Stops a broker this tool started, saying how it went.
fn stop_broker(c: &Config, b: Broker, keep_log: bool) {
    match b.stop(c.timeout, keep_log) {
        Ok(Some(took)) => eprintln!("[scale] the broker stopped in {took:.1?}"),
        Ok(None) => {}
        Err(e) => eprintln!("[scale] {e}"),
    }
}

/// Runs every count, and returns the runs and why it stopped early, if it
/// did (an interrupt, a broker that would not start, the JSON file).
fn run_all(c: &Config) -> (Vec<Run>, Option<String>) {
    let mut runs: Vec<Run> = Vec::new();
    let mut broker: Option<Broker> = None;
    let mut stopped = None;
    for (i, &n) in c.counts.iter().enumerate() {
        if c.brokers.is_none() && broker.is_none() {
            match Broker::start(c, c.timeout) {
                Ok(b) => broker = Some(b),
                Err(e) => {
                    stopped = Some(e);
                    break;
                }
            }
        }
        let bootstrap = match (&c.brokers, &broker) {
            (Some(b), _) => b.clone(),
            (None, b) => b.as_ref().expect("started above").bootstrap.clone(),
        };
        warn_fds(n, &runs, broker.as_ref().and_then(Broker::nofile));
        let topics = topics(i, n, c.per_topic);
        let run = run_count(c, n, &topics, &bootstrap, broker.as_mut());
        eprintln!("[scale] {}", row(&run));
        for p in problems(&run) {
            eprintln!("[scale] {p}");
        }
        if let Some(path) = &c.json {
            if let Err(e) = append_json(path, &run.json(c)) {
                stopped = Some(e);
            }
        }
        if c.brokers.is_some() {
            if let Err(e) = delete_topics(c, &bootstrap, &topics) {
                eprintln!("[scale] {e}");
            }
        } else if !c.keep_broker || run.error.is_some() {
            let b = broker.take().expect("started above");
            stop_broker(c, b, !run.complete());
        }
        runs.push(run);
        if INTERRUPTED.load(Ordering::Relaxed) {
            stopped.get_or_insert("interrupted".into());
        }
        if stopped.is_some() {
            break;
        }
    }
    if let Some(b) = broker.take() {
        stop_broker(c, b, runs.iter().any(|r| !r.complete()));
    }
    (runs, stopped)
}

/// The table, the problems, and how the runs stand against the goal (module
/// docs).
fn report(runs: &[Run]) {
    println!("## partitions at scale ({})\n\n{TABLE_HEADER}", utc_now());
    for r in runs {
        println!("{}", row(r));
    }
    for r in runs {
        for p in problems(r) {
            println!("\n{p}");
        }
    }
    let done: Vec<&Run> = runs.iter().filter(|r| r.complete()).collect();
    for r in &done {
        println!(
            "\n{} partitions: {:.3} ms per partition, {:.1}x under the 24 ms of lazily created files (goal: 20x)",
            r.n,
            r.per_partition_ms(),
            24.0 / r.per_partition_ms(),
        );
    }
    if let (Some(first), Some(last)) = (done.first(), done.last()) {
        if last.n != first.n {
            let growth = ratio(last.per_partition_ms(), Some(first.per_partition_ms()));
            println!(
                "per partition at {} is {}x that at {} (goal: at most 1.2x)",
                last.n,
                fmt_opt(growth, 2),
                first.n
            );
        }
    }
}

fn main() {
    let c = match Config::parse(std::env::args().skip(1)) {
        Ok(Some(c)) => c,
        Ok(None) => {
            println!("{USAGE}");
            return;
        }
        Err(e) => {
            eprintln!("{e}");
            std::process::exit(2);
        }
    };
    for s in [libc::SIGINT, libc::SIGTERM] {
        // SAFETY: the handler only stores to an atomic, which is
        // async-signal-safe.
        unsafe {
            libc::signal(
                s,
                on_signal as extern "C" fn(libc::c_int) as libc::sighandler_t,
            )
        };
    }
    if let Some(path) = &c.json {
        if let Err(e) = File::create(path) {
            eprintln!("{}: {e}", path.display());
            std::process::exit(1);
        }
    }
    let (runs, stopped) = run_all(&c);
    report(&runs);
    if let Some(e) = &stopped {
        println!("\nstopped early: {e}");
    }
    if stopped.is_some() || !runs.iter().all(Run::complete) {
        std::process::exit(1);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn topics_hold_per_topic_partitions_and_the_last_the_rest() {
        let sizes = |n| {
            topics(0, n, 500)
                .into_iter()
                .map(|(_, p)| p)
                .collect::<Vec<_>>()
        };
        assert_eq!(sizes(1_000), vec![500, 500]);
        assert_eq!(sizes(1_200), vec![500, 500, 200]);
        assert_eq!(sizes(10), vec![10]);
        assert_eq!(sizes(50_000).len(), 100);
        let names: std::collections::BTreeSet<_> = [topics(0, 1_000, 500), topics(1, 1_000, 500)]
            .concat()
            .into_iter()
            .map(|(t, _)| t)
            .collect();
        assert_eq!(names.len(), 4, "a count given twice gets topics of its own");
    }

    #[test]
    fn proc_status_and_limits_are_read_by_name() {
        let status = "Name:\tsluice\nVmHWM:\t  204800 kB\nVmRSS:\t  102400 kB\n";
        assert_eq!(status_kib(status, "VmRSS"), Some(102_400));
        assert_eq!(status_kib(status, "VmHWM"), Some(204_800));
        assert_eq!(status_kib(status, "VmSwap"), None);
        let limits = "\
Limit                     Soft Limit           Hard Limit           Units
Max processes             unlimited            unlimited            processes
Max open files            20000                unlimited            files
";
        assert_eq!(nofile(limits), Some((Some(20_000), None)));
        assert_eq!(nofile("Limit Soft Hard\n"), None);
    }

    #[test]
    fn options_parse_and_refuse_what_they_do_not_know() {
        let args = |a: &[&str]| {
            a.iter()
                .map(|s| s.to_string())
                .collect::<Vec<_>>()
                .into_iter()
        };
        let c = Config::parse(args(&[
            "--partitions",
            "1000, 5000",
            "--keep-broker",
            "--timeout-s",
            "30",
        ]))
        .unwrap()
        .unwrap();
        assert_eq!(c.counts, vec![1_000, 5_000]);
        assert!(c.keep_broker);
        assert_eq!(c.timeout, Duration::from_secs(30));
        assert!(Config::parse(args(&["--help"])).unwrap().is_none());
        assert!(Config::parse(args(&["--bogus", "1"])).is_err());
        assert!(Config::parse(args(&["--partitions"])).is_err());
        assert!(Config::parse(args(&["--per-topic", "0"])).is_err());
    }
}
