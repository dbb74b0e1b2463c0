#!/usr/bin/env bash
# disk-limit.sh — physical sequential direct-write bandwidth of the disk that
# holds DIR, measured with fio. This is the "physical limit" that Sluice's
# storage benchmarks are compared against.
#
# Usage: disk-limit.sh DIR [SIZE_MIB] [BLOCK_SIZE]
#   DIR         directory on the disk to measure (a temporary file is written there)
#   SIZE_MIB    bytes to write per run, in MiB (default 1024)
#   BLOCK_SIZE  fio block size of run (a) (default 1m)
#
# Three runs, each sequential write, O_DIRECT, one job, iodepth 4, on a fresh file:
#   (a) write_mib_s                bs=BLOCK_SIZE, no fsync at all
#   (b) write_fdatasync_1m_mib_s   bs=1m,  fdatasync after every write
#                                  (one fdatasync per 1 MiB group write)
#   (c) write_fdatasync_16k_mib_s  bs=16k, fdatasync after every write
#                                  (16 KiB group commit)
#
# Caveat on (b)/(c): with an async engine at iodepth 4, fio queues each
# fdatasync next to the following writes (io_uring: IORING_OP_FSYNC with no
# link/drain), so a sync may run concurrently with writes it does not cover and
# several syncs overlap. That is looser than an append path that awaits its
# write and then its fdatasync. So by default two strict figures are added
# (extra keys, same engine, iodepth 1: write, wait, fdatasync, wait):
#   write_fdatasync_1m_qd1_mib_s, write_fdatasync_16k_qd1_mib_s
# Set DISK_LIMIT_QD1=0 to skip them.
#
# The file is grown by the writes themselves (fio --fallocate=none on a new
# file), i.e. an append pattern like the engine's AppendFile, so the fdatasync
# runs also pay for the file-size/extent metadata commits an append log pays.
#
# stdout: exactly one JSON object (the required keys first, then details).
# stderr: human-readable progress.
#
# Environment knobs (optional):
#   DISK_LIMIT_IODEPTH      iodepth (default 4)
#   DISK_LIMIT_MAX_RUNTIME  per-run cap in seconds; fio stops at SIZE_MIB or at
#                           this time, whichever is first (default 300; 0 = no cap)
#   DISK_LIMIT_FALLOCATE    fio --fallocate mode (default none = append pattern;
#                           "native" preallocates the file first)
#   DISK_LIMIT_ENGINES      engines to try in order (default "io_uring libaio psync")
#   DISK_LIMIT_QD1          1 (default) also runs the strict iodepth-1 fdatasync runs
set -euo pipefail

log() { printf '[disk-limit] %s\n' "$*" >&2; }
die() { printf '[disk-limit] error: %s\n' "$*" >&2; exit 1; }

usage() {
    sed -n '2,10p' "$0" | sed 's/^# \{0,1\}//' >&2
    exit 2
}

[[ $# -ge 1 && $# -le 3 ]] || usage
[[ $1 == -h || $1 == --help ]] && usage

DIR=$1
SIZE_MIB=${2:-1024}
BLOCK_SIZE=${3:-1m}
IODEPTH=${DISK_LIMIT_IODEPTH:-4}
MAX_RUNTIME=${DISK_LIMIT_MAX_RUNTIME:-300}
FALLOCATE=${DISK_LIMIT_FALLOCATE:-none}
ENGINES=${DISK_LIMIT_ENGINES:-io_uring libaio psync}
QD1=${DISK_LIMIT_QD1:-1}

[[ -d $DIR ]] || die "not a directory: $DIR"
[[ -w $DIR ]] || die "directory not writable: $DIR"
[[ $SIZE_MIB =~ ^[1-9][0-9]*$ ]] || die "SIZE_MIB must be a positive integer, got '$SIZE_MIB'"
[[ $BLOCK_SIZE =~ ^[1-9][0-9]*([kKmM][iI]?[bB]?)?$ ]] || die "BLOCK_SIZE must look like 4k, 16k, 1m, 4096; got '$BLOCK_SIZE'"
[[ $IODEPTH =~ ^[1-9][0-9]*$ ]] || die "DISK_LIMIT_IODEPTH must be a positive integer"
[[ $MAX_RUNTIME =~ ^[0-9]+$ ]] || die "DISK_LIMIT_MAX_RUNTIME must be a non-negative integer"
[[ $QD1 == 0 || $QD1 == 1 ]] || die "DISK_LIMIT_QD1 must be 0 or 1"
command -v python3 >/dev/null || die "python3 is required to parse fio's JSON output"

DIR=$(cd "$DIR" && pwd -P)

# --- fio -------------------------------------------------------------------
if ! command -v fio >/dev/null 2>&1; then
    log "fio not found; installing it with apt-get"
    export DEBIAN_FRONTEND=noninteractive
    if ! apt-get install -y fio >&2; then
        log "apt-get install failed; running apt-get update and retrying"
        apt-get update >&2
        apt-get install -y fio >&2
    fi
    command -v fio >/dev/null 2>&1 || die "fio still not available after apt-get install"
fi
FIO_VERSION=$(fio --version 2>/dev/null | head -n1)
log "using $FIO_VERSION"

# --- space check -----------------------------------------------------------
avail_mib=$(df -Pm "$DIR" | awk 'NR==2 {print $4}')
if [[ -n $avail_mib && $avail_mib -lt $((SIZE_MIB + 64)) ]]; then
    die "only ${avail_mib} MiB free in $DIR, need ${SIZE_MIB} MiB plus headroom"
fi

# --- temp files, cleaned up on any exit ---------------------------------------
TEST_FILE="$DIR/.disk-limit.$$.fio"
OUT_DIR=$(mktemp -d "${TMPDIR:-/tmp}/disk-limit.XXXXXX")
FIO_PID=
cleanup() {
    if [[ -n $FIO_PID ]]; then
        kill -TERM "$FIO_PID" 2>/dev/null || true
        wait "$FIO_PID" 2>/dev/null || true
    fi
    rm -f -- "$TEST_FILE"
    rm -rf -- "$OUT_DIR"
}
trap cleanup EXIT
trap 'log "interrupted"; exit 130' INT
trap 'log "terminated"; exit 143' TERM

# --- engine selection ------------------------------------------------------
# A tiny direct-write probe per engine: "fio was built with it" is not enough,
# the kernel or a seccomp policy may still refuse io_uring.
ENGINE=
for e in $ENGINES; do
    rm -f -- "$TEST_FILE"
    if fio --name=probe --filename="$TEST_FILE" --rw=write --bs=4k --size=1m \
        --direct=1 --ioengine="$e" --iodepth=1 --fallocate=none \
        --output="$OUT_DIR/probe.txt" >/dev/null 2>"$OUT_DIR/probe.err"; then
        ENGINE=$e
        break
    fi
    log "ioengine $e unusable here: $(tr '\n' ' ' <"$OUT_DIR/probe.err" | cut -c1-200)"
done
rm -f -- "$TEST_FILE"
[[ -n $ENGINE ]] || die "no ioengine could do O_DIRECT writes in $DIR (tried: $ENGINES); does its filesystem support O_DIRECT?"
[[ $ENGINE == io_uring ]] || log "falling back to ioengine=$ENGINE"

FS_TYPE=$( (findmnt -n -o FSTYPE -T "$DIR" 2>/dev/null || stat -f -c %T "$DIR") | head -n1)
DEVICE=$( (findmnt -n -o SOURCE -T "$DIR" 2>/dev/null || echo unknown) | head -n1)
log "dir=$DIR fs=$FS_TYPE device=$DEVICE size=${SIZE_MIB}MiB engine=$ENGINE iodepth=$IODEPTH fallocate=$FALLOCATE"

# --- runs ------------------------------------------------------------------
run_fio() { # name bs iodepth [extra fio args...]
    local name=$1 bs=$2 qd=$3
    shift 3
    local runtime_args=()
    if [[ $MAX_RUNTIME -gt 0 ]]; then
        runtime_args=(--runtime="$MAX_RUNTIME")
    fi
    rm -f -- "$TEST_FILE"
    log "run $name: rw=write bs=$bs direct=1 iodepth=$qd $*"
    # In the background + wait, so a TERM/INT to this script is handled at
    # once (the EXIT trap stops fio) instead of after the run.
    fio --name="$name" --filename="$TEST_FILE" --rw=write --bs="$bs" \
        --size="${SIZE_MIB}m" --direct=1 --ioengine="$ENGINE" --iodepth="$qd" \
        --numjobs=1 --fallocate="$FALLOCATE" "${runtime_args[@]}" "$@" \
        --output-format=json --output="$OUT_DIR/$name.json" >&2 &
    FIO_PID=$!
    local rc=0
    wait "$FIO_PID" || rc=$?
    FIO_PID=
    [[ $rc -eq 0 ]] || die "fio run $name failed (exit $rc)"
    rm -f -- "$TEST_FILE"
}

run_fio write "$BLOCK_SIZE" "$IODEPTH"
run_fio write_fdatasync_1m 1m "$IODEPTH" --fdatasync=1
run_fio write_fdatasync_16k 16k "$IODEPTH" --fdatasync=1
if [[ $QD1 == 1 ]]; then
    run_fio write_fdatasync_1m_qd1 1m 1 --fdatasync=1
    run_fio write_fdatasync_16k_qd1 16k 1 --fdatasync=1
fi

# --- report ----------------------------------------------------------------
python3 - "$OUT_DIR" "$DIR" "$SIZE_MIB" "$FIO_VERSION" "$ENGINE" "$IODEPTH" \
    "$BLOCK_SIZE" "$FALLOCATE" "$FS_TYPE" "$DEVICE" "$QD1" <<'PY'
import json, sys

out_dir, d, size_mib, fio_version, engine, iodepth, bs, falloc, fs, dev, qd1 = sys.argv[1:]
MiB = 1048576.0


def load(name):
    with open(f"{out_dir}/{name}.json") as f:
        text = f.read()
    # fio may put warnings before the JSON document; start at the first brace.
    doc = json.loads(text[text.index("{"):])
    job = doc["jobs"][0]
    if job.get("error"):
        raise SystemExit(f"fio job {name} reported error {job['error']}")
    w = job["write"]
    detail = {
        "bs": job["job options"]["bs"],
        "iodepth": int(job["job options"]["iodepth"]),
        "mib_s": round(w["bw_bytes"] / MiB, 1),
        "written_mib": round(w["io_bytes"] / MiB, 1),
        "runtime_ms": w["runtime"],
        "write_iops": round(w["iops"], 1),
        "write_lat_us_p50": round(w["clat_ns"]["percentile"]["50.000000"] / 1000, 1),
        "write_lat_us_p99": round(w["clat_ns"]["percentile"]["99.000000"] / 1000, 1),
    }
    sync = job.get("sync", {}).get("lat_ns", {})
    if sync.get("N"):
        detail["fdatasyncs"] = sync["N"]
        detail["fdatasync_lat_us_p50"] = round(sync["percentile"]["50.000000"] / 1000, 1)
        detail["fdatasync_lat_us_p99"] = round(sync["percentile"]["99.000000"] / 1000, 1)
    return doc.get("fio version", fio_version), detail


ver, a = load("write")
_, b = load("write_fdatasync_1m")
_, c = load("write_fdatasync_16k")

result = {
    "dir": d,
    "size_mib": int(size_mib),
    "write_mib_s": a["mib_s"],
    "write_fdatasync_1m_mib_s": b["mib_s"],
    "write_fdatasync_16k_mib_s": c["mib_s"],
    "fio_version": ver,
}
runs = {"write": a, "write_fdatasync_1m": b, "write_fdatasync_16k": c}
if qd1 == "1":
    _, b1 = load("write_fdatasync_1m_qd1")
    _, c1 = load("write_fdatasync_16k_qd1")
    result["write_fdatasync_1m_qd1_mib_s"] = b1["mib_s"]
    result["write_fdatasync_16k_qd1_mib_s"] = c1["mib_s"]
    runs["write_fdatasync_1m_qd1"] = b1
    runs["write_fdatasync_16k_qd1"] = c1
result.update({
    "block_size": bs,
    "ioengine": engine,
    "iodepth": int(iodepth),
    "fallocate": falloc,
    "fs_type": fs,
    "device": dev,
    "runs": runs,
})
print(json.dumps(result))
PY
log "done"
