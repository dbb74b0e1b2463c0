//! sluice-engine-append: append throughput and latency of one partition,
//! compared with the disk's limit as fio measures it (bench/scripts/disk-limit.sh).
//!
//! Appends `--total` bytes of 1 KiB records, in batches of `--batch-size`,
//! to one fresh partition with the default durable policy (group commit,
//! fdatasync per group), keeping up to `--window` appends unacknowledged.
//! Reports MiB/s and the append latency percentiles (from `append()` to
//! `wait_acked()` resolving), then runs disk-limit.sh on the same directory
//! and prints a table and one JSON line per batch size.
//!
//! With `--repeat N` it runs N rounds, each round every batch size and then
//! disk-limit.sh, and reports medians; the ratio to the disk is the median of
//! the per-round ratios, so that a disk whose speed drifts over minutes (a
//! virtual disk on a shared host) is compared with itself at the same time.

use std::path::{Path, PathBuf};
use std::time::Duration;

use hdrhistogram::Histogram;
use serde_json::{json, Value};
use sluice_bench::meta::{
    cpu_times, fmt_opt, git, median, others_cpu_pct, ratio, round1, round3, run_disk_limit, utc_now,
};
use sluice_bench::{
    append_windowed, batch_up_to, bench_root, copies, durable_config, open_partition, records_in,
    relaxed_config, run_on_executor, shard_context, TAIL_CACHE_BYTES,
};

const USAGE: &str = "\
usage: sluice-engine-append [options]

  --total SIZE              bytes to append per run (default 2GiB)
  --batch-size SIZE[,SIZE]  batch sizes to run, e.g. 1MiB,16KiB (default 1MiB);
                            a batch holds as many records as fit in SIZE
  --record-bytes N          value bytes per record (default 1024)
  --window N                most appends in flight (default 64)
  --repeat N                rounds (default 1): each round runs every batch
                            size, then disk-limit.sh; MiB/s and fio figures
                            are medians, ratios the median per-round ratio,
                            latencies are over all rounds
  --max-others-pct P        discard and retry (up to 3 times) a run, or fio
                            run, during which other processes used more than
                            P% of the machine's CPU time
  --tail-cache SIZE         the shard's tail cache (default 64MiB)
  --relaxed                 flush.messages=i64::MAX (no fdatasync) instead of
                            the default durable policy
  --dir PATH                where the partition and fio's file go
                            (default $SLUICE_BENCH_DIR or target/bench-data)
  --disk-limit-mib-s X      skip fio; X is the plain direct-write MiB/s
  --disk-limit-fdatasync-mib-s Y
                            with --disk-limit-mib-s: the direct write +
                            fdatasync (bs=1m) MiB/s, if known
  --disk-limit-size-mib N   MiB fio writes per run (default 1024)
  --disk-limit-script PATH  (default bench/scripts/disk-limit.sh)
  -h, --help

SIZE: a number of bytes with an optional suffix k, m, g (KiB, MiB, GiB).
A run's batches are built in memory before the clock starts (--total of RAM).
disk-limit.sh reads DISK_LIMIT_* variables (e.g. DISK_LIMIT_MAX_RUNTIME=5
caps each fio run at 5 s).";

struct Args {
    total: u64,
    batch_sizes: Vec<usize>,
    record_bytes: usize,
    window: usize,
    repeat: usize,
    max_others_pct: Option<f64>,
    tail_cache: usize,
    relaxed: bool,
    dir: Option<PathBuf>,
    disk_limit_mib_s: Option<f64>,
    disk_limit_fdatasync_mib_s: Option<f64>,
    disk_limit_size_mib: u64,
    disk_limit_script: PathBuf,
}

fn parse_size(s: &str) -> Result<u64, String> {
    let t = s.trim().to_ascii_lowercase();
    let t = t.trim_end_matches('b').trim_end_matches('i');
    let (num, mul) = match t.chars().last() {
        Some('k') => (&t[..t.len() - 1], 1u64 << 10),
        Some('m') => (&t[..t.len() - 1], 1 << 20),
        Some('g') => (&t[..t.len() - 1], 1 << 30),
        _ => (t, 1),
    };
    let n: f64 = num
        .trim()
        .parse()
        .map_err(|_| format!("not a size: {s:?}"))?;
    if n.is_nan() || n <= 0.0 {
        return Err(format!("size must be positive: {s:?}"));
    }
    Ok((n * mul as f64) as u64)
}

fn parse_args() -> Result<Args, String> {
    let mut a = Args {
        total: 2 << 30,
        batch_sizes: vec![1 << 20],
        record_bytes: 1024,
        window: 64,
        repeat: 1,
        max_others_pct: None,
        tail_cache: TAIL_CACHE_BYTES,
        relaxed: false,
        dir: None,
        disk_limit_mib_s: None,
        disk_limit_fdatasync_mib_s: None,
        disk_limit_size_mib: 1024,
        disk_limit_script: sluice_bench::meta::disk_limit_script(),
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        if flag == "-h" || flag == "--help" {
            println!("{USAGE}");
            std::process::exit(0);
        }
        let (name, inline) = match flag.split_once('=') {
            Some((n, v)) => (n.to_string(), Some(v.to_string())),
            None => (flag.clone(), None),
        };
        if name == "--relaxed" {
            a.relaxed = true;
            continue;
        }
        let value = match inline {
            Some(v) => v,
            None => it.next().ok_or(format!("{name} needs a value"))?,
        };
        let num = |v: &str| -> Result<f64, String> {
            v.parse::<f64>()
                .ok()
                .filter(|x| *x > 0.0)
                .ok_or(format!("{name}: not a positive number: {v:?}"))
        };
        match name.as_str() {
            "--total" => a.total = parse_size(&value)?,
            "--batch-size" => {
                a.batch_sizes = value
                    .split(',')
                    .map(|s| parse_size(s).map(|n| n as usize))
                    .collect::<Result<_, _>>()?
            }
            "--record-bytes" => a.record_bytes = num(&value)? as usize,
            "--window" => a.window = num(&value)? as usize,
            "--repeat" => a.repeat = num(&value)? as usize,
            "--max-others-pct" => a.max_others_pct = Some(num(&value)?),
            "--tail-cache" => a.tail_cache = parse_size(&value)? as usize,
            "--dir" => a.dir = Some(PathBuf::from(value)),
            "--disk-limit-mib-s" => a.disk_limit_mib_s = Some(num(&value)?),
            "--disk-limit-fdatasync-mib-s" => a.disk_limit_fdatasync_mib_s = Some(num(&value)?),
            "--disk-limit-size-mib" => a.disk_limit_size_mib = num(&value)? as u64,
            "--disk-limit-script" => a.disk_limit_script = PathBuf::from(value),
            _ => return Err(format!("unknown option {name}\n\n{USAGE}")),
        }
    }
    if a.window == 0 || a.repeat == 0 || a.record_bytes == 0 {
        return Err("--window, --repeat and --record-bytes must be at least 1".into());
    }
    Ok(a)
}

/// True when `--max-others-pct` is set and other processes used more CPU.
fn contended(args: &Args, others: Option<f64>) -> bool {
    matches!((args.max_others_pct, others), (Some(max), Some(o)) if o > max)
}

/// Retries `f` while other processes were busy during it (at most 3 times).
fn uncontended<T>(
    args: &Args,
    what: &str,
    mut f: impl FnMut() -> Result<(T, Option<f64>), String>,
) -> Result<(T, Option<f64>), String> {
    let mut attempt = 0;
    loop {
        attempt += 1;
        let (v, others) = f()?;
        if !contended(args, others) || attempt > 3 {
            return Ok((v, others));
        }
        eprintln!(
            "[engine-append] discarding the {what}: other processes used {}% of the CPUs; retrying in 5 s",
            fmt_opt(others, 0)
        );
        std::thread::sleep(Duration::from_secs(5));
    }
}

/// One run of one batch size.
struct Run1 {
    mib_s: f64,
    secs: f64,
    batches: u64,
    bytes: u64,
    groups: u64,
    others_cpu_pct: Option<f64>,
    latency_ns: Histogram<u64>,
}

fn run_one(args: &Args, root: &Path, template: &[u8]) -> Result<(Run1, Option<f64>), String> {
    let count = args.total.div_ceil(template.len() as u64).max(1) as usize;
    eprintln!(
        "[engine-append] batch {} B ({} records of {} B), {} batches ({:.0} MiB), window {}, {}",
        template.len(),
        records_in(template),
        args.record_bytes,
        count,
        (count * template.len()) as f64 / (1 << 20) as f64,
        args.window,
        if args.relaxed {
            "relaxed (no fdatasync)"
        } else {
            "durable (fdatasync per group)"
        }
    );
    let batches = copies(template, count);
    let dir = tempfile::Builder::new()
        .prefix("engine-append")
        .tempdir_in(root)
        .map_err(|e| format!("create a directory in {}: {e}", root.display()))?;
    let path = dir.path().to_path_buf();
    let config = if args.relaxed {
        relaxed_config()
    } else {
        durable_config()
    };
    let (window, tail_cache) = (args.window, args.tail_cache);
    let (run, before, after) = run_on_executor(move || async move {
        let ctx = shard_context(tail_cache);
        let p = open_partition(&path, config, &ctx)
            .await
            .map_err(|e| e.to_string())?;
        let before = cpu_times();
        let run = append_windowed(&p, batches, window, true)
            .await
            .map_err(|e| e.to_string())?;
        let after = cpu_times();
        p.close().await.map_err(|e| e.to_string())?;
        Ok::<_, String>((run, before, after))
    })?;
    drop(dir);
    let others = others_cpu_pct(before, after);
    let r = Run1 {
        mib_s: run.mib_per_s(),
        secs: run.elapsed.as_secs_f64(),
        batches: run.batches,
        bytes: run.bytes,
        groups: run.groups,
        others_cpu_pct: others,
        latency_ns: run.latency_ns.expect("latency was recorded"),
    };
    eprintln!(
        "[engine-append] {}: {:.1} MiB/s in {:.3} s, {:.1} batches/group, p50 {:.0} us, p99 {:.0} us, p99.9 {:.0} us; other processes used {}% of the CPUs",
        size_label(template.len()),
        r.mib_s,
        r.secs,
        r.batches as f64 / r.groups.max(1) as f64,
        r.latency_ns.value_at_quantile(0.5) as f64 / 1000.0,
        r.latency_ns.value_at_quantile(0.99) as f64 / 1000.0,
        r.latency_ns.value_at_quantile(0.999) as f64 / 1000.0,
        fmt_opt(others, 0),
    );
    Ok((r, others))
}

/// The disk's figures for one round.
#[derive(Clone, Default)]
struct DiskLimit {
    write: Option<f64>,
    sync_1m: Option<f64>,
    /// The strict iodepth-1 form: write, wait, fdatasync, wait.
    sync_1m_qd1: Option<f64>,
    sync_16k: Option<f64>,
    /// disk-limit.sh's JSON, with the CPU time others used meanwhile.
    doc: Option<Value>,
}

/// Runs disk-limit.sh on `dir`.
fn disk_limit(args: &Args, dir: &Path) -> Result<(DiskLimit, Option<f64>), String> {
    let before = cpu_times();
    let mut doc = run_disk_limit(&args.disk_limit_script, dir, args.disk_limit_size_mib, "1m")?;
    let others = others_cpu_pct(before, cpu_times());
    if let Some(o) = doc.as_object_mut() {
        o.insert("others_cpu_pct".into(), json!(others.map(round1)));
    }
    let f = |k: &str| doc.get(k).and_then(Value::as_f64);
    let limit = DiskLimit {
        write: f("write_mib_s"),
        sync_1m: f("write_fdatasync_1m_mib_s"),
        sync_1m_qd1: f("write_fdatasync_1m_qd1_mib_s"),
        sync_16k: f("write_fdatasync_16k_mib_s"),
        doc: None,
    };
    Ok((
        DiskLimit {
            doc: Some(doc),
            ..limit
        },
        others,
    ))
}

fn size_label(b: usize) -> String {
    if b >= 1 << 20 {
        format!("{:.2} MiB", b as f64 / (1 << 20) as f64)
    } else {
        format!("{:.1} KiB", b as f64 / 1024.0)
    }
}

/// Every round of one batch size, with the summary figures.
struct Summary {
    batch_bytes: usize,
    records_per_batch: usize,
    runs: Vec<Run1>,
    latency_ns: Histogram<u64>,
    /// Median of the per-round ratios to each disk figure.
    ratio_write: Option<f64>,
    ratio_sync_1m: Option<f64>,
    ratio_sync_1m_qd1: Option<f64>,
    ratio_sync_16k: Option<f64>,
}

impl Summary {
    fn new(template: &[u8], runs: Vec<Run1>, disk: &[DiskLimit]) -> Self {
        let mut latency_ns = runs[0].latency_ns.clone();
        for r in &runs[1..] {
            latency_ns
                .add(&r.latency_ns)
                .expect("histograms with the same bounds");
        }
        let paired = |f: fn(&DiskLimit) -> Option<f64>| {
            median(runs.iter().zip(disk).map(|(r, d)| ratio(r.mib_s, f(d))))
        };
        Self {
            batch_bytes: template.len(),
            records_per_batch: records_in(template),
            ratio_write: paired(|d| d.write),
            ratio_sync_1m: paired(|d| d.sync_1m),
            ratio_sync_1m_qd1: paired(|d| d.sync_1m_qd1),
            ratio_sync_16k: paired(|d| d.sync_16k),
            runs,
            latency_ns,
        }
    }

    fn mib_s(&self) -> f64 {
        median(self.runs.iter().map(|r| Some(r.mib_s))).expect("at least one run")
    }

    fn mib_s_range(&self) -> (f64, f64) {
        let v = self.runs.iter().map(|r| r.mib_s);
        (v.clone().fold(f64::MAX, f64::min), v.fold(0.0, f64::max))
    }

    fn batches_per_group(&self) -> f64 {
        let b: u64 = self.runs.iter().map(|r| r.batches).sum();
        let g: u64 = self.runs.iter().map(|r| r.groups).sum();
        b as f64 / g.max(1) as f64
    }

    fn us(&self, q: f64) -> f64 {
        self.latency_ns.value_at_quantile(q) as f64 / 1000.0
    }

    fn others_cpu_pct_max(&self) -> Option<f64> {
        self.runs
            .iter()
            .filter_map(|r| r.others_cpu_pct)
            .reduce(f64::max)
    }
}

fn main() {
    let args = parse_args().unwrap_or_else(|e| {
        eprintln!("{e}");
        std::process::exit(2)
    });
    let root = match &args.dir {
        Some(d) => {
            std::fs::create_dir_all(d).expect("create --dir");
            d.canonicalize().unwrap_or_else(|_| d.clone())
        }
        None => bench_root(),
    };
    let date = utc_now();
    let commit = git(&["rev-parse", "--short", "HEAD"]).unwrap_or_else(|| "unknown".into());
    let dirty = git(&[
        "status",
        "--porcelain",
        "--untracked-files=no",
        "--",
        "engine",
    ])
    .map(|s| !s.is_empty());
    let templates: Vec<Vec<u8>> = args
        .batch_sizes
        .iter()
        .map(|&s| batch_up_to(s, args.record_bytes))
        .collect();

    let fail = |e: String| -> ! {
        eprintln!("[engine-append] {e}");
        std::process::exit(1)
    };
    let mut runs: Vec<Vec<Run1>> = templates.iter().map(|_| Vec::new()).collect();
    let mut disk: Vec<DiskLimit> = Vec::new();
    for round in 0..args.repeat {
        if args.repeat > 1 {
            eprintln!("[engine-append] round {} of {}", round + 1, args.repeat);
        }
        for (i, template) in templates.iter().enumerate() {
            let (r, _) = uncontended(&args, "run", || run_one(&args, &root, template))
                .unwrap_or_else(|e| fail(e));
            runs[i].push(r);
        }
        disk.push(match args.disk_limit_mib_s {
            Some(x) => DiskLimit {
                write: Some(x),
                sync_1m: args.disk_limit_fdatasync_mib_s,
                ..DiskLimit::default()
            },
            None => match uncontended(&args, "fio run", || disk_limit(&args, &root)) {
                Ok((d, _)) => d,
                Err(e) => {
                    eprintln!("[engine-append] {e}; this round has no disk limit");
                    DiskLimit::default()
                }
            },
        });
    }
    let summaries: Vec<Summary> = templates
        .iter()
        .zip(runs)
        .map(|(t, r)| Summary::new(t, r, &disk))
        .collect();
    let fio_write = median(disk.iter().map(|d| d.write));
    let fio_sync_1m = median(disk.iter().map(|d| d.sync_1m));
    let fio_sync_1m_qd1 = median(disk.iter().map(|d| d.sync_1m_qd1));
    let fio_sync_16k = median(disk.iter().map(|d| d.sync_16k));
    let fio_docs: Vec<Value> = disk.iter().filter_map(|d| d.doc.clone()).collect();

    let policy = if args.relaxed { "relaxed" } else { "durable" };
    println!();
    println!(
        "sluice-engine-append  {date}  commit {commit}{}  policy {policy}  window {}  rounds {}  tail cache {}",
        if dirty == Some(true) {
            " (engine has uncommitted changes)"
        } else {
            ""
        },
        args.window,
        args.repeat,
        size_label(args.tail_cache)
    );
    let source = if args.disk_limit_mib_s.is_some() {
        "disk limit given on the command line".to_string()
    } else {
        format!(
            "fio (disk-limit.sh) in {}, median of {} runs",
            root.display(),
            fio_docs.len()
        )
    };
    println!(
        "{source}: direct write bs=1m {} MiB/s; write+fdatasync bs=1m {} MiB/s (iodepth 1: {} MiB/s), bs=16k {} MiB/s",
        fmt_opt(fio_write, 1),
        fmt_opt(fio_sync_1m, 1),
        fmt_opt(fio_sync_1m_qd1, 1),
        fmt_opt(fio_sync_16k, 1)
    );
    println!();
    println!(
        "{:>10} {:>7} {:>8} {:>13} {:>8} {:>10} {:>14} {:>11} {:>9} {:>8}",
        "batch",
        "records",
        "MiB/s",
        "(min-max)",
        "/ write",
        "/ fsync-1m",
        "/ fsync-1m-qd1",
        "/ fsync-16k",
        "batch/grp",
        "others%"
    );
    for s in &summaries {
        let (lo, hi) = s.mib_s_range();
        println!(
            "{:>10} {:>7} {:>8.1} {:>13} {:>8} {:>10} {:>14} {:>11} {:>9.1} {:>8}",
            size_label(s.batch_bytes),
            s.records_per_batch,
            s.mib_s(),
            format!("({lo:.0}-{hi:.0})"),
            fmt_opt(s.ratio_write, 3),
            fmt_opt(s.ratio_sync_1m, 3),
            fmt_opt(s.ratio_sync_1m_qd1, 3),
            fmt_opt(s.ratio_sync_16k, 3),
            s.batches_per_group(),
            fmt_opt(s.others_cpu_pct_max(), 0),
        );
    }
    println!();
    println!(
        "{:>10} {:>10} {:>10} {:>10} {:>10}   append latency, append() to wait_acked(), all rounds",
        "batch", "p50 us", "p99 us", "p99.9 us", "max us"
    );
    for s in &summaries {
        println!(
            "{:>10} {:>10.0} {:>10.0} {:>10.0} {:>10.0}",
            size_label(s.batch_bytes),
            s.us(0.5),
            s.us(0.99),
            s.us(0.999),
            s.latency_ns.max() as f64 / 1000.0
        );
    }
    println!();
    for s in &summaries {
        let line = json!({
            "bench": "engine-append",
            "date": date,
            "commit": commit,
            "engine_dirty": dirty,
            "policy": policy,
            "batch_bytes": s.batch_bytes,
            "records_per_batch": s.records_per_batch,
            "record_value_bytes": args.record_bytes,
            "window": args.window,
            "tail_cache_bytes": args.tail_cache,
            "rounds": s.runs.len(),
            "batches_per_run": s.runs[0].batches,
            "bytes_per_run": s.runs[0].bytes,
            "mib_s": round1(s.mib_s()),
            "mib_s_runs": s.runs.iter().map(|r| round1(r.mib_s)).collect::<Vec<_>>(),
            "secs_runs": s.runs.iter().map(|r| round3(r.secs)).collect::<Vec<_>>(),
            "others_cpu_pct_runs": s.runs.iter().map(|r| r.others_cpu_pct.map(round1)).collect::<Vec<_>>(),
            "batches_per_group": round1(s.batches_per_group()),
            "fio_write_mib_s": fio_write,
            "fio_write_fdatasync_1m_mib_s": fio_sync_1m,
            "fio_write_fdatasync_1m_qd1_mib_s": fio_sync_1m_qd1,
            "fio_write_fdatasync_16k_mib_s": fio_sync_16k,
            "ratio_to_fio_write": s.ratio_write.map(round3),
            "ratio_to_fio_write_fdatasync_1m": s.ratio_sync_1m.map(round3),
            "ratio_to_fio_write_fdatasync_1m_qd1": s.ratio_sync_1m_qd1.map(round3),
            "ratio_to_fio_write_fdatasync_16k": s.ratio_sync_16k.map(round3),
            "latency_us_p50": round1(s.us(0.5)),
            "latency_us_p99": round1(s.us(0.99)),
            "latency_us_p999": round1(s.us(0.999)),
            "latency_us_max": round1(s.latency_ns.max() as f64 / 1000.0),
            "fio": fio_docs,
        });
        println!("{line}");
    }
}
