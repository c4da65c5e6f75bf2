#!/usr/bin/env bash
# The demo: sends a realistic mix to every chain's raw topic, waits until the chain services
# have accounted for every record, and prints what became of it. Expects `make up` to have
# run (the Makefile's `demo` target does that). Running it again sends the same records
# (same seed): the second time they all come out as duplicates.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
INFRA_DIR="${INFRA_DIR:-$ROOT/.infra}"
set -a; . "$INFRA_DIR/env"; set +a
BIN="$ROOT/target/release"
COUNT="${DEMO_COUNT:-20000}"
declare -A PORT=([users]=9101 [unsubscribes]=9102 [blocklists]=9103 [subscriptions]=9104 [mailings]=9105)
metric() { # port name [label-filter]
  curl -fsS "localhost:$1/metrics" 2>/dev/null | grep -E "^tributary_$2" | grep -E "${3:-.}" | awk '{s+=$2} END {printf "%d", s}' || true
}
declare -A BEFORE
for c in "${!PORT[@]}"; do
  for _ in $(seq 1 60); do curl -fsS "localhost:${PORT[$c]}/health/ready" >/dev/null 2>&1 && break; sleep 1; done
  BEFORE[$c]=$(metric "${PORT[$c]}" chain_records_total)
  "$BIN/tributary" loadgen --chain "$c" --count "$COUNT" --seed 7 2>/dev/null
done
echo "Waiting until every record is accounted for..."
for c in "${!PORT[@]}"; do
  for _ in $(seq 1 120); do
    done_=$(( $(metric "${PORT[$c]}" chain_records_total) - BEFORE[$c] ))
    [ "$done_" -ge "$COUNT" ] && break; sleep 1
  done
done
echo "Waiting until the sink has committed every clean record to the lake..."
for c in "${!PORT[@]}"; do
  for _ in $(seq 1 120); do
    clean=$(metric "${PORT[$c]}" chain_records_total 'outcome="clean"')
    lake=$(metric 9106 sink_rows_total "table=\"$c\"")
    [ "${lake:-0}" -ge "$clean" ] && break; sleep 1
  done
done
printf '\n%-14s %9s %9s %9s %9s %6s %9s %6s   %s\n' chain received clean dlq duplicate late lake-rows files "dlq by reason"
for c in users unsubscribes blocklists subscriptions mailings; do
  p=${PORT[$c]}
  reasons=$(curl -fsS "localhost:$p/metrics" | grep '^tributary_chain_dlq_records_total' | grep -v ' 0$' \
    | sed -E 's/.*reason="([a-z_]+)".* ([0-9]+)$/\1=\2/' | paste -sd' ')
  printf '%-14s %9d %9d %9d %9d %6d %9d %6d   %s\n' "$c" "$(metric $p chain_records_total)" "$(metric $p chain_records_total 'outcome="clean"')" \
    "$(metric $p chain_records_total 'outcome="dlq"')" "$(metric $p chain_records_total 'outcome="duplicate"')" \
    "$(metric $p chain_late_records_total)" "$(metric 9106 sink_rows_total "table=\"$c\"")" \
    "$(metric 9106 sink_files_total "table=\"$c\"")" "${reasons:-none}"
done
cat <<TXT

Counts are since the services started (make down; make up resets them). Clean records are in
the Kafka topics clean.<chain> (Avro, Confluent wire format, schemas under clean.<chain>-value
at $SCHEMA_REGISTRY_URL), invalid ones with their reasons in dlq.<chain>, one audit record per
transaction in audit.<chain>, and every clean record once in the Delta lake at
${LAKE_URI:-$ROOT/.lake}/<chain> (partitioned by tenant_id and event_date). Look at it with any
Delta reader, for example:
  .infra/pyenv/bin/python -c "from deltalake import DeltaTable; print(DeltaTable('.lake/mailings').to_pyarrow_dataset().to_table().to_pandas().head())"
(bash dev/python-env.sh makes that environment). Stop the services with 'make down' and the
infrastructure with 'make infra-down'.
TXT
