//! Run metadata and small numeric helpers shared by the benchmark binaries:
//! CPU time used by other processes, git commit, UTC date, medians and
//! ratios, and the fio disk limit (`scripts/disk-limit.sh`).

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde_json::Value;

/// Jiffies of the whole machine (all CPUs) and of this process with the
/// children it waited for (and, with [`cpu_times_with`], one more process).
#[derive(Clone, Copy)]
pub struct CpuTimes {
    total: u64,
    busy: u64,
    own: u64,
}

pub fn cpu_times() -> Option<CpuTimes> {
    cpu_times_with(None)
}

/// [`cpu_times`], counting process `child` (a broker this process started
/// and has not waited for) as its own too.
pub fn cpu_times_with(child: Option<u32>) -> Option<CpuTimes> {
    let stat = std::fs::read_to_string("/proc/stat").ok()?;
    let cpu: Vec<u64> = stat
        .lines()
        .next()?
        .split_whitespace()
        .skip(1)
        .take(8)
        .filter_map(|v| v.parse().ok())
        .collect();
    if cpu.len() < 8 {
        return None;
    }
    let total: u64 = cpu.iter().sum();
    let idle = cpu[3] + cpu[4];
    let child = match child {
        Some(pid) => process_jiffies(&format!("/proc/{pid}/stat"))?,
        None => 0,
    };
    Some(CpuTimes {
        total,
        busy: total - idle,
        own: process_jiffies("/proc/self/stat")? + child,
    })
}

/// utime, stime, cutime and cstime (children waited for, such as fio) of a
/// `/proc/PID/stat` file: the 14th to 17th fields, counted after the
/// parenthesised command name.
fn process_jiffies(path: &str) -> Option<u64> {
    let stat = std::fs::read_to_string(path).ok()?;
    let after = stat.rsplit_once(')')?.1;
    let f: Vec<&str> = after.split_whitespace().collect();
    (11..15)
        .map(|i| f.get(i).and_then(|v| v.parse::<u64>().ok()))
        .sum::<Option<u64>>()
}

/// Percent of the machine's CPU time used by other processes between two
/// snapshots: a run taken while something else kept the cores busy is not
/// comparable.
pub fn others_cpu_pct(a: Option<CpuTimes>, b: Option<CpuTimes>) -> Option<f64> {
    let (a, b) = (a?, b?);
    let total = b.total.checked_sub(a.total).filter(|t| *t > 0)?;
    let others = (b.busy - a.busy).saturating_sub(b.own - a.own);
    Some(100.0 * others as f64 / total as f64)
}

/// `git` in the workspace, its trimmed stdout when it succeeds.
pub fn git(args: &[&str]) -> Option<String> {
    let out = Command::new("git")
        .args(["--no-optional-locks", "-C", env!("CARGO_MANIFEST_DIR")])
        .args(args)
        .stderr(Stdio::null())
        .output()
        .ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).trim().to_string())
}

/// UTC date and time from the system clock, ISO 8601.
pub fn utc_now() -> String {
    let secs = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or(Duration::ZERO)
        .as_secs() as i64;
    let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    // Howard Hinnant's civil_from_days.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

/// The median (the lower middle value for an even count) of the values
/// present.
pub fn median(values: impl IntoIterator<Item = Option<f64>>) -> Option<f64> {
    let mut v: Vec<f64> = values.into_iter().flatten().collect();
    v.sort_by(f64::total_cmp);
    (!v.is_empty()).then(|| v[(v.len() - 1) / 2])
}

pub fn ratio(a: f64, b: Option<f64>) -> Option<f64> {
    b.filter(|b| *b > 0.0).map(|b| a / b)
}

pub fn round3(v: f64) -> f64 {
    (v * 1000.0).round() / 1000.0
}

pub fn round1(v: f64) -> f64 {
    (v * 10.0).round() / 10.0
}

pub fn fmt_opt(v: Option<f64>, digits: usize) -> String {
    v.map_or("-".into(), |v| format!("{v:.digits$}"))
}

/// Runs `disk-limit.sh DIR SIZE_MIB BS` (fio; see the script) and returns
/// the JSON object it prints. Its progress goes to our stderr.
pub fn run_disk_limit(script: &Path, dir: &Path, size_mib: u64, bs: &str) -> Result<Value, String> {
    eprintln!(
        "[bench] running {} {} {size_mib} {bs}",
        script.display(),
        dir.display()
    );
    let out = Command::new("bash")
        .arg(script)
        .arg(dir)
        .arg(size_mib.to_string())
        .arg(bs)
        .stdin(Stdio::null())
        .stderr(Stdio::inherit())
        .output()
        .map_err(|e| format!("run {}: {e}", script.display()))?;
    if !out.status.success() {
        return Err(format!("disk-limit.sh failed: {}", out.status));
    }
    let text = String::from_utf8_lossy(&out.stdout);
    let line = text
        .lines()
        .rev()
        .find(|l| l.trim_start().starts_with('{'))
        .ok_or("disk-limit.sh printed no JSON")?;
    serde_json::from_str(line).map_err(|e| format!("disk-limit.sh JSON: {e}"))
}

/// The default location of disk-limit.sh, in this crate.
pub fn disk_limit_script() -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("scripts")
        .join("disk-limit.sh")
}
