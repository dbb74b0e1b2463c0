#!/usr/bin/env bash
# run-standard.sh — runs the shipped workloads (workloads/*.yaml) against a
# fresh Sluice broker started here, one broker per workload, and writes each
# result (result.json, throughput.png, latency.png) under OUT.
#
# Usage: run-standard.sh [OUT] [WORKLOAD.yaml ...]
#   OUT defaults to target/bench-results; with no workload files, all of them.
#
# Environment:
#   BENCH_WARMUP, BENCH_DURATION  seconds, override the files' durations
#                                 (e.g. 5 and 20 for a quick pass)
#   BENCH_BACKLOG_MIB             override consumerBacklogSizeGB (backlog workloads)
#   BENCH_ARGS                    more sluice-bench run options
#   SLUICE_ARGS                   more `sluice start` options
# Needs release builds: cargo build --release -p sluice -p sluice-bench
set -euo pipefail

here=$(cd "$(dirname "$0")/.." && pwd)
root=$(cd "$here/.." && pwd)
target=${CARGO_TARGET_DIR:-$root/target}
out=${1:-$target/bench-results}
shift || true
workloads=("$@")
[[ ${#workloads[@]} -gt 0 ]] || workloads=("$here"/workloads/*.yaml)

sluice=$target/release/sluice
bench=$target/release/sluice-bench
[[ -x $sluice && -x $bench ]] || { echo "build first: cargo build --release -p sluice -p sluice-bench" >&2; exit 1; }
"$here/scripts/setup.sh" || echo "[run-standard] setup.sh failed; continuing" >&2

port=${BENCH_PORT:-19092}
extra=()
[[ -n ${BENCH_WARMUP:-} ]] && extra+=(--warmup "$BENCH_WARMUP")
[[ -n ${BENCH_DURATION:-} ]] && extra+=(--duration "$BENCH_DURATION")
[[ -n ${BENCH_BACKLOG_MIB:-} ]] && extra+=(--backlog-mib "$BENCH_BACKLOG_MIB")

data_root=${SLUICE_BENCH_DIR:-$target/bench-data}
mkdir -p "$data_root" "$out"
for w in "${workloads[@]}"; do
    name=$(basename "$w" .yaml)
    data=$(mktemp -d "$data_root/broker-XXXXXX")
    # shellcheck disable=SC2086
    # Retention every 10 s, so the topics' retention.bytes (sluice-bench
    # --retention-mib) keeps long runs within the disk.
    "$sluice" start --data-dir "$data" --listeners "127.0.0.1:$port" \
        --coordinator-listen "127.0.0.1:$((port + 1))" \
        --retention-check-interval-ms 10000 ${SLUICE_ARGS:-} \
        >"$out/$name.broker.log" 2>&1 &
    broker=$!
    up=0
    for _ in $(seq 50); do
        kill -0 "$broker" 2>/dev/null || break
        if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then up=1; break; fi
        sleep 0.2
    done
    if [[ $up -ne 1 ]]; then
        echo "[run-standard] $name: the broker did not start; see $out/$name.broker.log" >&2
        kill "$broker" 2>/dev/null || true
        rm -rf "$data"
        continue
    fi
    echo "[run-standard] $name" >&2
    # shellcheck disable=SC2086
    if ! "$bench" run "$w" --bootstrap "127.0.0.1:$port" --out "$out/$name" "${extra[@]}" ${BENCH_ARGS:-} \
        | tee "$out/$name.md"; then
        echo "[run-standard] $name failed" >&2
    fi
    kill "$broker"
    wait "$broker" || true
    rm -rf "$data"
done
