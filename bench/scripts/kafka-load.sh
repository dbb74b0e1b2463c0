#!/usr/bin/env bash
# Produce and fetch throughput of one `sluice start` binary over the Kafka
# protocol, with sluice-kafka-load (bench/src/bin/kafka-load.rs).
#
# usage: bench/scripts/kafka-load.sh SLUICE KAFKA-LOAD [PRODUCE-MIB] [BACKLOG-MIB]
#
# 1. Starts the broker on a fresh data directory under $SLUICE_BENCH_DIR
#    (default target/bench-data), creates topic `load` (kcat, auto-create).
# 2. Produce: 1 KiB records, acks=all, 16 records per request, one
#    connection, with 1, 5 and 16 requests in flight (PRODUCE-MIB each);
#    then PRODUCE-MIB through librdkafka (librdkafka-produce.py, needs
#    confluent-kafka) with batch.size 16384 and 1000000.
# 3. Idle consumers: 64 connections long-poll the end of `load` for 10 s;
#    prints the broker's CPU time meanwhile (from /proc/PID/stat).
# 4. Fills topic `backlog` with BACKLOG-MIB (16 in flight), restarts the
#    broker so the tail cache is empty (reads come from the segment files;
#    the page cache stays warm), and fetches it all from offset 0 with
#    1 MiB and 16 MiB partition limits, twice each.
set -euo pipefail
sluice=${1:?usage: kafka-load.sh SLUICE KAFKA-LOAD [PRODUCE-MIB] [BACKLOG-MIB]}
load=${2:?usage: kafka-load.sh SLUICE KAFKA-LOAD [PRODUCE-MIB] [BACKLOG-MIB]}
produce_mib=${3:-256}
backlog_mib=${4:-1024}
root=${SLUICE_BENCH_DIR:-$(cd "$(dirname "$0")/../.." && pwd)/target/bench-data}
mkdir -p "$root"
data=$(mktemp -d "$root/kafka-load.XXXXXX")
port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
bootstrap=127.0.0.1:$(port)
coordinator=127.0.0.1:$(port)
pid=
start() {
  "$sluice" start --data-dir "$data/d" --listeners "$bootstrap" --coordinator-listen "$coordinator" >>"$data/log" 2>&1 &
  pid=$!
  for _ in $(seq 1 300); do
    [ "$(grep -c "serving Kafka clients" "$data/log")" -ge "$1" ] && return
    sleep 0.1
  done
  cat "$data/log"
  echo "sluice did not start" >&2
  exit 1
}
stop() { kill -TERM "$pid"; wait "$pid" || true; }
trap 'kill -TERM $pid 2>/dev/null; wait $pid 2>/dev/null; rm -rf "$data"' EXIT
start 1
for t in load backlog; do
  echo x | kcat -P -b "$bootstrap" -t "$t" -p 0
done
echo "binary: $sluice"
for inflight in 1 5 16; do
  "$load" produce "$bootstrap" load "$produce_mib" 16 "$inflight"
done
# The same through librdkafka (confluent-kafka), with Java's default batch
# size and librdkafka's own.
for batch in 16384 1000000; do
  python3 "$(dirname "$0")/librdkafka-produce.py" "$bootstrap" load $((produce_mib * 1024)) "$batch"
done
cpu() { awk '{print $14 + $15}' "/proc/$pid/stat"; }
before=$(cpu)
"$load" idle "$bootstrap" load 64 10
echo "idle: broker CPU $(( ($(cpu) - before) * 1000 / $(getconf CLK_TCK) )) ms in 10 s"
"$load" produce "$bootstrap" backlog "$backlog_mib" 16 16 >/dev/null
stop
start 2
for bytes in 1048576 16777216; do
  "$load" fetch "$bootstrap" backlog "$bytes"
  "$load" fetch "$bootstrap" backlog "$bytes"
done
