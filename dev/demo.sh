#!/usr/bin/env bash
# The demo: sends a realistic mix (tributary loadgen into every chain's raw topic, sample
# webhooks of every provider and a CSV upload through the gateway), waits until the chain
# services have accounted for every record and the sink has committed every clean one, and
# prints what became of it. Expects `make up` to have run (the Makefile's `demo` target does).
# Running it again sends the same records with the same event times (same seed, same time T
# kept in .infra/demo-time for 6 h): the second time they come out as duplicates.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
INFRA_DIR="${INFRA_DIR:-$ROOT/.infra}"
set -a; . "$INFRA_DIR/env"; set +a
# The CLI talks to Kafka as the operator's principal over SASL_SSL, like the services (make up).
CTL_PRINCIPAL="${KAFKA_PRINCIPALS_DIR:-$INFRA_DIR/kafka-principals}/tributary-ctl.env"
if [ "${KAFKA_SECURE:-1}" != 0 ] && [ -f "$CTL_PRINCIPAL" ]; then set -a; . "$CTL_PRINCIPAL"; set +a; fi
BIN="$ROOT/target/release"
COUNT="${DEMO_COUNT:-20000}"
GATEWAY="${GATEWAY:-http://localhost:8080}"
SINK_PORT=9106
LAKE="${LAKE_URI:-$ROOT/.lake}"
# The chains and their metrics ports: the chain registry (schemas/chains.txt: name port window).
CHAINS=()
declare -A PORT=()
while read -r name port _; do CHAINS+=("$name"); PORT[$name]=$port; done < <(awk '/^[a-z]/' "$ROOT/schemas/chains.txt")

# One fixed time T for the demo's events, so that a second run repeats them exactly.
T_FILE="$INFRA_DIR/demo-time"
now=$(date +%s)
FIRST_RUN=1
if [ -f "$T_FILE" ] && [ $((now - $(cat "$T_FILE"))) -lt 21600 ]; then T=$(cat "$T_FILE"); FIRST_RUN=0; else T=$now; echo "$T" > "$T_FILE"; fi

metric() { # url name [label-filter]: the sum of a metric's series
  curl -fsS "$1/metrics" 2>/dev/null | grep -E "^tributary_$2[{ ]" | grep -E "${3:-.}" | awk '{s+=$2} END {printf "%d", s}' || true
}
chain_url() { echo "http://localhost:${PORT[$1]}"; }
post() { # url content-type body token
  local out code
  out=$(curl -sS -o - -w '\n%{http_code}' -X POST "$1" -H "Content-Type: $2" -H "Authorization: Bearer $4" --data-binary "$3")
  code=${out##*$'\n'}
  if [ "${code:0:1}" != 2 ]; then echo "  POST ${1#"$GATEWAY"}: HTTP $code ${out%$'\n'*}" >&2; return 1; fi
  LAST_ANSWER=${out%$'\n'*}
}
wait_ready() { # name url
  for _ in $(seq 1 90); do curl -fsS "$2/health/ready" >/dev/null 2>&1 && return 0; sleep 1; done
  echo "$1 is not ready at $2 after 90 s; see .infra/logs/$1.log" >&2; exit 1
}
for c in "${CHAINS[@]}"; do wait_ready "$c" "$(chain_url "$c")"; done
wait_ready sink "http://localhost:$SINK_PORT"
wait_ready ingest "$GATEWAY"

# This run's figures are differences of the services' counters: a snapshot of each now.
SNAP="$(mktemp -d)"; trap 'rm -rf "$SNAP"' EXIT
declare -A BEFORE GW_BEFORE
for c in "${CHAINS[@]}"; do
  curl -fsS "$(chain_url "$c")/metrics" | grep '^tributary_chain_' > "$SNAP/$c" || true
  BEFORE[$c]=$(metric "$(chain_url "$c")" chain_records_total)
  GW_BEFORE[$c]=$(metric "$GATEWAY" ingest_events_total "chain=\"$c\"")
done
delta() { # chain name [label-filter]: this run's increase of a metric's series
  curl -fsS "$(chain_url "$1")/metrics" | grep -E "^tributary_$2[{ ]" | grep -E "${3:-.}" \
    | awk -v before="$SNAP/$1" 'BEGIN { while ((getline l < before) > 0) { split(l, f, " "); b[f[1]] = f[2] } }
      { s += $2 - b[$1] } END { printf "%d", s }'
}

echo "Sending $COUNT records to each chain's raw topic (tributary loadgen, every source format, seed 7)..."
for c in "${CHAINS[@]}"; do
  "$BIN/tributary" loadgen --chain "$c" --count "$COUNT" --seed 7 --epoch "$T" --format mix --tenants acme,globex,initech 2>/dev/null \
    | sed "s/^/  $c: /"
done

echo "Posting sample webhooks of every provider and a CSV upload to the gateway at $GATEWAY..."
# shellcheck source=dev/demo/webhooks.sh
. "$ROOT/dev/demo/webhooks.sh"
for tenant in acme globex; do send_sample_webhooks "$tenant" "$tenant-local-token"; done
send_sample_upload globex globex-local-token
echo "  upload of 50 profile rows: $LAST_ANSWER"

declare -A WANT
for c in "${CHAINS[@]}"; do
  WANT[$c]=$((COUNT + $(metric "$GATEWAY" ingest_events_total "chain=\"$c\"") - GW_BEFORE[$c]))
done
echo "Waiting until every record is accounted for..."
for c in "${CHAINS[@]}"; do
  for i in $(seq 1 300); do
    done_=$(( $(metric "$(chain_url "$c")" chain_records_total) - BEFORE[$c] ))
    [ "$done_" -ge "${WANT[$c]}" ] && break
    [ "$i" = 300 ] && { echo "$c accounted for $done_ of ${WANT[$c]} records after 300 s; see .infra/logs/$c.log" >&2; exit 1; }
    sleep 1
  done
done
echo "Waiting until the sink has committed every clean record to the lake..."
for c in "${CHAINS[@]}"; do
  for i in $(seq 1 300); do
    clean=$(metric "$(chain_url "$c")" chain_records_total 'outcome="clean"')
    lake=$(metric "http://localhost:$SINK_PORT" sink_rows_total "table=\"$c\"")
    [ "${lake:-0}" -ge "$clean" ] && break
    [ "$i" = 300 ] && { echo "the sink committed $lake of $clean $c rows after 300 s; see .infra/logs/sink.log" >&2; exit 1; }
    sleep 1
  done
done

printf '\nThis run, per chain:\n%-14s %9s %9s %9s %9s %6s   %s\n' chain received clean dlq duplicate late "dlq by reason"
for c in "${CHAINS[@]}"; do
  reasons=""
  for r in $(curl -fsS "$(chain_url "$c")/metrics" | grep '^tributary_chain_dlq_records_total' | sed -E 's/.*reason="([a-z_]+)".*/\1/' | sort -u); do
    n=$(delta "$c" chain_dlq_records_total "reason=\"$r\"")
    [ "$n" -gt 0 ] && reasons+="${reasons:+ }$r=$n"
  done
  printf '%-14s %9d %9d %9d %9d %6d   %s\n' "$c" "$(delta "$c" chain_records_total)" \
    "$(delta "$c" chain_records_total 'outcome="clean"')" "$(delta "$c" chain_records_total 'outcome="dlq"')" \
    "$(delta "$c" chain_records_total 'outcome="duplicate"')" "$(delta "$c" chain_late_records_total)" "${reasons:-none}"
done
echo
echo "The lake at $LAKE (every row ever committed, also by earlier runs):"
"$BIN/tributary" tables --lake "$LAKE"
# The read side: a list's audience, one member's profile and suppression, and (first run of
# this demo time only, so a second run repeats the first exactly) a one-click unsubscribe
# through the gateway, timed until serve answers suppressed.
SERVE="${SERVE:-http://localhost:8090}"
wait_ready serve "http://localhost:9107"
ask() { curl -fsS -H 'Authorization: Bearer acme-local-token' "$SERVE/v1/tenants/acme/$1"; }
echo
echo "The read side (serve at $SERVE), asked as tenant acme:"
AUD=$(ask "audiences/newsletter?format=csv")
echo "  GET /v1/tenants/acme/audiences/newsletter?format=csv: $(( $(printf '%s\n' "$AUD" | wc -l) - 1 )) members; the first two:"
printf '%s\n' "$AUD" | sed -n 1,3p | sed 's/^/    /'
EMAIL=$(printf '%s\n' "$AUD" | sed -n 2p | cut -d, -f1)
if [ -n "$EMAIL" ]; then
  echo "  GET /v1/tenants/acme/suppression?email=$EMAIL&list=newsletter:"
  echo "    $(ask "suppression?email=$EMAIL&list=newsletter")"
  echo "  GET /v1/tenants/acme/profiles?email=$EMAIL:"
  echo "    $(ask "profiles?email=$EMAIL")"
  if [ "$FIRST_RUN" = 1 ]; then
    SIG=$(printf 'newsletter|%s' "$EMAIL" | openssl dgst -sha256 -hmac "acme-local-unsubscribe-secret" | awk '{print $NF}')
    t0=$(date +%s%N)
    curl -fsS -X POST --data 'List-Unsubscribe=One-Click' "$GATEWAY/v1/tenants/acme/unsubscribe?email=$EMAIL&list=newsletter&sig=$SIG" >/dev/null
    for _ in $(seq 1 200); do
      ask "suppression?email=$EMAIL&list=newsletter" | grep -q '"suppressed":true' && break
      sleep 0.05
    done
    echo "  POST /v1/tenants/acme/unsubscribe (RFC 8058 one-click, list newsletter): suppressed after $(( ($(date +%s%N) - t0) / 1000000 )) ms:"
    echo "    $(ask "suppression?email=$EMAIL&list=newsletter")"
    # The unsubscribe reaches the lake too before the demo ends (a second run compares it).
    for _ in $(seq 1 100); do
      clean=$(metric "$(chain_url unsubscribes)" chain_records_total 'outcome="clean"')
      [ "$(metric "http://localhost:$SINK_PORT" sink_rows_total 'table="unsubscribes"')" -ge "$clean" ] && break
      sleep 0.2
    done
  fi
fi

cat <<TXT

Clean records are in the Kafka topics clean.<chain> (Avro, Confluent wire format, schemas under
clean.<chain>-value at $SCHEMA_REGISTRY_URL), invalid ones with their reasons in dlq.<chain>,
one audit record per transaction in audit.<chain>, and every clean record once in the Delta
lake at $LAKE/<chain> (partitioned by tenant_id and event_date). Look at it with
  target/release/tributary tables --lake $LAKE --show 5
or any Delta reader, e.g. Python's deltalake (bash dev/python-env.sh makes .infra/pyenv):
  .infra/pyenv/bin/python -c "from deltalake import DeltaTable; print(DeltaTable('$LAKE/mailings').to_pyarrow_dataset().to_table().to_pandas().head())"
Ask the read side (README, "Running serve"), e.g.
  curl -H 'Authorization: Bearer acme-local-token' '$SERVE/v1/tenants/acme/suppression?email=ann@example.com&list=newsletter'
  curl -H 'Authorization: Bearer acme-local-token' '$SERVE/v1/tenants/acme/audiences/newsletter?format=ndjson'
  target/release/tributary audience --tenant acme --list newsletter --lake $LAKE --out /tmp/newsletter.parquet
Stop the services with 'make down' and the infrastructure with 'make infra-down'.
TXT
