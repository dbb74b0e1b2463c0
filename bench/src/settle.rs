//! Waiting for the disks to go quiet before a measured phase.
//!
//! Deleting files is not over when `unlink` returns. On a file system
//! mounted with `discard` (ext4 here), the freed blocks are discarded after
//! the journal commits, asynchronously: `sync(2)` returns before the
//! discards complete. Removing a run's broker data (gigabytes) queued about
//! 2 s of 120 MiB discards on this virtual disk, and every write and
//! fdatasync behind them waited 15–45 ms. The next run, started at once,
//! measured those as its own stalls. Trimming the file system later, or a
//! slower disk, moves the same work elsewhere in time; waiting for it to end
//! removes it from the measurement.
//!
//! [`settle`] syncs, then waits until `/proc/diskstats` shows no I/O in
//! progress and no write or discard completed over [`QUIET`], twice in a
//! row, or until its limit passes; [`settle_disks`] does so before a named
//! phase of a benchmark and says on stderr when it had to wait.

use std::time::{Duration, Instant};

/// How long the disks must stay idle, twice in a row, to count as settled.
pub const QUIET: Duration = Duration::from_millis(250);

/// Totals over every device of `/proc/diskstats`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct DiskCounters {
    /// I/Os currently in progress (field 9).
    pub in_progress: u64,
    /// Writes completed (field 5).
    pub writes: u64,
    /// Discards completed (field 12; kernels before 4.18 have none).
    pub discards: u64,
}

/// Sums the counters of every line of a `/proc/diskstats` text. Fields
/// after the device name are numbered from 1, as in the kernel's
/// Documentation/admin-guide/iostats.rst.
pub fn parse_diskstats(text: &str) -> DiskCounters {
    let mut c = DiskCounters::default();
    for line in text.lines() {
        let f: Vec<u64> = line
            .split_whitespace()
            .skip(3)
            .map(|v| v.parse().unwrap_or(0))
            .collect();
        let at = |i: usize| f.get(i - 1).copied().unwrap_or(0);
        c.in_progress += at(9);
        c.writes += at(5);
        c.discards += at(12);
    }
    c
}

fn read_counters() -> Option<DiskCounters> {
    std::fs::read_to_string("/proc/diskstats")
        .ok()
        .map(|t| parse_diskstats(&t))
}

/// Whether nothing happened between two samples taken [`QUIET`] apart.
pub fn quiet(before: DiskCounters, after: DiskCounters) -> bool {
    before.in_progress == 0
        && after.in_progress == 0
        && before.writes == after.writes
        && before.discards == after.discards
}

/// Syncs every file system, then waits until the disks are quiet (module
/// docs) or `limit` has passed. Returns how long it took and whether the
/// disks settled; without `/proc/diskstats` it returns after the sync.
pub fn settle(limit: Duration) -> (Duration, bool) {
    let t0 = Instant::now();
    // SAFETY: sync(2) takes no arguments and cannot fail.
    unsafe { libc::sync() };
    let Some(mut before) = read_counters() else {
        return (t0.elapsed(), true);
    };
    let mut quiet_in_a_row = 0;
    while quiet_in_a_row < 2 {
        if t0.elapsed() >= limit {
            return (t0.elapsed(), false);
        }
        std::thread::sleep(QUIET);
        let Some(after) = read_counters() else {
            return (t0.elapsed(), true);
        };
        quiet_in_a_row = if quiet(before, after) {
            quiet_in_a_row + 1
        } else {
            0
        };
        before = after;
    }
    (t0.elapsed(), true)
}

/// Waits up to `limit` for the disks to settle ([`settle`]) before `phase`
/// (not at all for a zero limit), and says so on stderr when that took a
/// while or did not happen.
pub fn settle_disks(limit: Duration, phase: &str) {
    if limit.is_zero() {
        return;
    }
    let (took, settled) = settle(limit);
    if !settled {
        eprintln!("[bench] the disks were still busy after {took:.1?}: {phase} starts anyway");
    } else if took >= Duration::from_secs(1) {
        eprintln!("[bench] waited {took:.1?} for the disks to settle before {phase}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const STATS: &str = "\
 254       0 vda 151031 9049 21237157 207966 1621308 340892 456365488 445788 3 218140 721062 43294 35 423028760 46856 418516 20450
 254       1 vda1 1 2 3 4 5 6 7 8 1 10 11 7 13 14 15 16 17
   7       0 loop0 0 0 0 0 0 0 0 0 0 0 0
";

    #[test]
    fn counters_are_summed_over_devices_by_field_number() {
        let c = parse_diskstats(STATS);
        assert_eq!(
            c,
            DiskCounters {
                in_progress: 4,
                writes: 1_621_313,
                discards: 43_301,
            }
        );
    }

    #[test]
    fn the_disks_are_quiet_only_with_nothing_in_progress_written_or_discarded() {
        let idle = DiskCounters {
            in_progress: 0,
            writes: 10,
            discards: 5,
        };
        assert!(quiet(idle, idle));
        let busy = DiskCounters {
            in_progress: 1,
            ..idle
        };
        assert!(!quiet(idle, busy));
        assert!(!quiet(busy, idle));
        let wrote = DiskCounters { writes: 11, ..idle };
        assert!(!quiet(idle, wrote));
        let discarded = DiskCounters {
            discards: 6,
            ..idle
        };
        assert!(!quiet(idle, discarded));
    }

    #[test]
    fn settle_waits_for_two_quiet_windows_or_gives_up_at_its_limit() {
        assert!(!settle(Duration::ZERO).1, "no time to settle in");
        let (took, settled) = settle(Duration::from_secs(5));
        if settled {
            assert!(
                took >= QUIET * 2,
                "settled without two quiet windows: {took:?}"
            );
        }
    }
}
