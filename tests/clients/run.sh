#!/usr/bin/env bash
# Round trips through a real `sluice start` with kcat and the Python
# clients confluent-kafka and kafka-python. Prints one line per check and a
# closing 'clients: N passed, N failed'. Exits non-zero if any check fails.
#
# usage: tests/clients/run.sh PATH-TO-SLUICE
set -uo pipefail
sluice=${1:?usage: run.sh PATH-TO-SLUICE}
here=$(cd "$(dirname "$0")" && pwd)
data=$(mktemp -d)
port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
kport=$(port)
cport=$(port)
bootstrap=127.0.0.1:$kport
"$sluice" start --data-dir "$data" --listeners "$bootstrap" --coordinator-listen "127.0.0.1:$cport" >"$data/log" 2>&1 &
pid=$!
trap 'kill -TERM $pid 2>/dev/null; wait $pid 2>/dev/null; rm -rf "$data"' EXIT
for _ in $(seq 1 100); do
  grep -q "serving Kafka clients" "$data/log" && break
  sleep 0.1
done
grep -q "serving Kafka clients" "$data/log" || { cat "$data/log"; echo "sluice did not start"; exit 1; }

passed=0
failed=0
check() {
  local name=$1
  shift
  if "$@"; then
    echo "ok: $name"
    passed=$((passed + 1))
  else
    echo "FAILED: $name"
    failed=$((failed + 1))
  fi
}

kcat_roundtrip() {
  local topic=kcat-roundtrip want got
  want=$(mktemp)
  got=$(mktemp)
  for i in $(seq 1 10000); do echo "k$((i % 97)):line $i with some text"; done >"$want"
  kcat -b "$bootstrap" -P -t $topic -K: -z snappy -X acks=all <"$want" || return 1
  timeout 60 kcat -b "$bootstrap" -C -t $topic -o beginning -e -q -f '%k:%s\n' >"$got" || return 1
  cmp -s "$want" "$got"
}

kcat_group() {
  local topic=kcat-group group=kcat-group-consumers got
  got=$(mktemp)
  for i in $(seq 1 500); do echo "line $i"; done | kcat -b "$bootstrap" -P -t $topic || return 1
  # A group consumer reads everything and commits on leaving.
  timeout 60 kcat -b "$bootstrap" -G $group $topic -o beginning -e -q >"$got" || return 1
  [[ $(wc -l <"$got") -eq 500 ]] || return 1
  # The same group again: nothing new, then only what came since.
  timeout 60 kcat -b "$bootstrap" -G $group $topic -e -q >"$got" || return 1
  [[ ! -s $got ]] || return 1
  for i in $(seq 501 510); do echo "line $i"; done | kcat -b "$bootstrap" -P -t $topic || return 1
  timeout 60 kcat -b "$bootstrap" -G $group $topic -e -q >"$got" || return 1
  [[ $(wc -l <"$got") -eq 10 && $(head -1 "$got") == "line 501" ]]
}

check "kcat produce and consume 10000 keyed lines (snappy)" kcat_roundtrip
check "kcat -G resumes from the group's committed offsets" kcat_group
check "confluent-kafka round trip" python3 "$here/roundtrip.py" confluent "$bootstrap" py-confluent 5000
check "kafka-python round trip" python3 "$here/roundtrip.py" kafka-python "$bootstrap" py-kafka-python 5000
check "confluent-kafka group consumers" python3 "$here/groups.py" confluent "$bootstrap" py-confluent-group 2000
check "kafka-python group consumers" python3 "$here/groups.py" kafka-python "$bootstrap" py-kafka-python-group 2000
check "kafka-python sticky assignor, two members at once" python3 "$here/groups.py" kafka-python-sticky "$bootstrap" py-sticky
check "confluent-kafka admin: authorized operations of a topic, the cluster, a group" python3 "$here/admin.py" authorized-operations "$bootstrap" py-admin-ops

echo "clients: $passed passed, $failed failed"
[[ $failed -eq 0 ]]
