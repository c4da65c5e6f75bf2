#!/usr/bin/env bash
# `make demo`, checked (part of `make test`): starts every service in the background with the
# lake in a temporary directory, runs dev/demo.sh twice, and fails unless both runs complete,
# the second run's records all come out as duplicates or dead letters (nothing clean), and
# the lake holds the same rows after the second run as after the first.
# Skipped when services of `make up` already run (their ports are taken).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
# Every chain of the registry (schemas/chains.txt), then the other services.
mapfile -t SERVICES < <(awk '/^[a-z]/ {print $1}' schemas/chains.txt)
SERVICES+=(sink ingest serve)
for s in "${SERVICES[@]}"; do
  if bash dev/services.sh status "$s" | grep -q running; then
    echo "demo-check: $s already runs (make up); skipped"; exit 0
  fi
done
set -a; . .infra/env; set +a
# End to end over SASL_SSL with ACLs: every service as its own principal (dev/services.sh), the
# CLI as the operator's (dev/demo.sh and here); checked below from the services' logs.
PRINCIPALS="${KAFKA_PRINCIPALS_DIR:-.infra/kafka-principals}"
for s in "${SERVICES[@]}" ctl; do
  [ -f "$PRINCIPALS/tributary-$s.env" ] || { echo "demo-check: FAIL: no Kafka principal for $s in $PRINCIPALS (dev/kafka/run.sh makes them)"; exit 1; }
done
PLAINTEXT_BOOTSTRAP="$KAFKA_BOOTSTRAP" # the local tools' listener, for the clean-up
set -a; . "$PRINCIPALS/tributary-ctl.env"; set +a
# Its own topics (a namespace of this run, with the principals' ACLs for it), deleted at the
# end: what earlier runs, `make demo` or the tests left in the shared topics changes nothing.
export TOPIC_NAMESPACE="demo$(date +%s)$$"
bash dev/kafka/run.sh acls "$TOPIC_NAMESPACE" >/dev/null
WORK="$(mktemp -d)"
export LAKE_URI="$WORK/lake" DEMO_COUNT="${DEMO_COUNT:-3000}"
cleanup() {
  bash dev/services.sh down "${SERVICES[@]}" >/dev/null 2>&1 || true
  rm -rf "$WORK"
  bash dev/kafka/run.sh tool org.apache.kafka.tools.TopicCommand --bootstrap-server "$PLAINTEXT_BOOTSTRAP" \
    --delete --topic "$TOPIC_NAMESPACE[.].*" >/dev/null 2>&1 || true
}
trap cleanup EXIT
rm -f .infra/demo-time
target/release/tributary topics >/dev/null
bash dev/services.sh up "${SERVICES[@]}"
rows() { target/release/tributary tables --lake "$LAKE_URI" --json | grep -o '"rows":[0-9]*' | paste -sd' '; }
clean_column() { sed -n '/^This run/,/^$/p' "$1" | awk 'NR > 2 && NF > 3 { print $1 "=" $3 }' | paste -sd' '; }
bash dev/demo.sh > "$WORK/first.txt" 2>&1 || { cat "$WORK/first.txt"; exit 1; }
first_rows=$(rows)
bash dev/demo.sh > "$WORK/second.txt" 2>&1 || { cat "$WORK/second.txt"; exit 1; }
second_rows=$(rows)
cat "$WORK/second.txt"
echo "demo-check: clean per chain, first run: $(clean_column "$WORK/first.txt"); second run: $(clean_column "$WORK/second.txt")"
echo "demo-check: lake rows after the first run: $first_rows; after the second: $second_rows"
if [ "$(clean_column "$WORK/second.txt")" != "users=0 unsubscribes=0 blocklists=0 subscriptions=0 mailings=0" ]; then
  echo "demo-check: FAIL: the second run produced clean records; it should be all duplicates"; exit 1
fi
if [ -z "$first_rows" ] || [ "$first_rows" != "$second_rows" ] || [[ "$first_rows" == *'"rows":0'* ]]; then
  echo "demo-check: FAIL: the lake changed on the second run, or a table is empty"; exit 1
fi
echo "demo-check: ok"
