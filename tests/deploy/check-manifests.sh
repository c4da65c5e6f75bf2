#!/usr/bin/env bash
# Checks the Kubernetes manifests against the binaries they run.
#
# For each container of each kustomize build:
#   - static checks (tests/deploy/manifest_facts.py): probes on /health/live and
#     /health/ready at the port the service listens on (METRICS_PORT, else the binary's
#     default), Service and ServiceMonitor on that port, security context, resources,
#     disruption budget, network policy, StatefulSet + INSTANCE_ID + ScaledObject for the
#     chains, the --config file in a mounted ConfigMap, secrets from Secrets, the Airflow
#     ConfigMap consistent with the workloads
#   - with the binary from BIN_DIR: `<binary> --help` works, every flag the manifest passes
#     is in the help text, and so is every environment variable it sets (KAFKA_PROP_* as
#     KAFKA_PROP_<NAME>; RUST_LOG and LOG_FORMAT are read by the engine's log setup)
#   - then runs it as the manifest would (its args, its config file's content, its
#     environment), except that Kafka and the registry point at a closed local port and
#     METRICS_PORT at a free one: /health/live must answer 200, /health/ready 200 or 503,
#     /metrics every tributary_* series of crates/engine/src/metrics.rs' list, and the
#     process must stop within the 30 s grace period after SIGTERM. A configuration the
#     binary rejects fails here.
# A binary that is not built (sink, ingest until they exist) is a SKIP line, not silence.
#
# Usage: bash tests/deploy/check-manifests.sh [--bin DIR] [BUILD.yaml ...]
#   DIR defaults to target/release; without BUILD files it builds k8s/overlays/dev and
#   k8s/overlays/prod with the kustomize of dev/lint-deploy.sh (installing it if needed).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
cd "$ROOT"
PY=/usr/bin/python3
BIN_DIR=target/release
builds=()
while [ $# -gt 0 ]; do
  case "$1" in
    --bin) BIN_DIR=$2; shift 2 ;;
    -h|--help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
    *) builds+=("$1"); shift ;;
  esac
done
command -v jq >/dev/null || { echo "jq is needed" >&2; exit 1; }
command -v curl >/dev/null || { echo "curl is needed" >&2; exit 1; }

work=$(mktemp -d)
chmod 755 "$work"  # the services may run as their manifest's user (see live_run)
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill -KILL "$p" 2>/dev/null || true; done
  rm -rf "$work"
}
trap cleanup EXIT

if [ ${#builds[@]} -eq 0 ]; then
  [ -x .infra/tools/bin/kustomize ] || bash dev/lint-deploy.sh tools
  for o in dev prod; do
    .infra/tools/bin/kustomize build "k8s/overlays/$o" > "$work/$o.yaml"
    builds+=("$work/$o.yaml")
  done
fi

n_ok=0 n_fail=0 n_skip=0
ok()   { echo "ok    $*"; n_ok=$((n_ok + 1)); }
bad()  { echo "FAIL  $*"; n_fail=$((n_fail + 1)); }
skip() { echo "SKIP  $*"; n_skip=$((n_skip + 1)); }

# The contract's default ports (shared/DESIGN.md), for binaries not built yet; a built
# binary's --help must agree with it.
declare -A CONTRACT=([users]=9101 [unsubscribes]=9102 [blocklists]=9103 [subscriptions]=9104
                     [mailings]=9105 [sink]=9106 [ingest]=8080)
declare -A HELP=()
defaults="{"
for b in "${!CONTRACT[@]}"; do
  port=${CONTRACT[$b]}
  if [ -x "$BIN_DIR/$b" ]; then
    if HELP[$b]=$("$BIN_DIR/$b" --help 2>&1); then
      p=$(grep -oE 'METRICS_PORT \(default [0-9]+' <<<"${HELP[$b]}" | grep -oE '[0-9]+$' || true)
      if [ -z "$p" ]; then
        bad "$b --help names no METRICS_PORT default"
      elif [ "$p" != "$port" ]; then
        bad "$b --help says METRICS_PORT default $p, the contract says $port"
      else
        port=$p
      fi
    else
      bad "$b --help exits non-zero"
      unset 'HELP[$b]'
    fi
  fi
  defaults+="\"$b\": $port,"
done
defaults="${defaults%,}}"

# Every series name the engine registers, as parsed from its source by the dashboard lint.
known_metrics=$("$PY" tests/deploy/lint_dashboards.py --metrics-rs crates/engine/src/metrics.rs \
  --promtool unused --print-metrics | cut -d' ' -f1)

free_port() { "$PY" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }

in_help() { # help word: the word appears in the help text, not as part of a longer one
  grep -qE -- "(^|[^-_[:alnum:]])$2([^-_[:alnum:]]|$)" <<<"$1"
}

live_run() { # label binary json
  local label=$1 b=$2 json=$3
  local dir="$work/run-$RANDOM" port log pid code ready metrics
  mkdir -p "$dir"
  port=$(free_port)
  log="$dir/stderr"
  local -a args=() envs=(PATH=/usr/bin:/bin HOME="$dir")
  declare -A files=()
  while IFS= read -r path; do
    [ -n "$path" ] || continue
    files[$path]="$dir/$(basename "$path")"
    jq -r --arg p "$path" '.files[$p]' <<<"$json" > "${files[$path]}"
  done < <(jq -r '.files | keys[]' <<<"$json")
  while IFS= read -r a; do
    if [ -n "${files[$a]:-}" ]; then args+=("${files[$a]}"); else args+=("$a"); fi
  done < <(jq -r '.args[]' <<<"$json")
  while IFS= read -r kv; do
    case "${kv%%=*}" in
      KAFKA_BOOTSTRAP|SCHEMA_REGISTRY_URL|METRICS_PORT) ;;
      LAKE_URI) envs+=(LAKE_URI="$dir/lake") ;;
      *) envs+=("$kv") ;;
    esac
  done < <(jq -r '.env | to_entries[] | "\(.key)=\(.value)"' <<<"$json")
  # Nothing leaves this machine: Kafka and the registry are a closed local port, the lake
  # (if any) a local directory.
  envs+=(KAFKA_BOOTSTRAP=127.0.0.1:9 SCHEMA_REGISTRY_URL=http://127.0.0.1:9/apis/ccompat/v7 METRICS_PORT="$port")

  # As the manifest's user where this runs as root (as Kubernetes would: runAsUser/Group).
  local -a as_user=()
  local uid gid
  uid=$(jq -r '.run_as[0] // empty' <<<"$json"); gid=$(jq -r '.run_as[1] // empty' <<<"$json")
  if [ "$(id -u)" -eq 0 ] && [ -n "$uid" ] && command -v setpriv >/dev/null; then
    as_user=(setpriv --reuid="$uid" --regid="${gid:-$uid}" --clear-groups)
    chmod 755 "$dir"
    chmod 644 "$dir"/* 2>/dev/null || true
    install -d -o "$uid" -g "${gid:-$uid}" "$dir/lake"
  fi
  env -i "${envs[@]}" "${as_user[@]}" "$(realpath "$BIN_DIR/$b")" "${args[@]}" >"$dir/stdout" 2>"$log" &
  pid=$!
  pids+=("$pid")
  code=000
  for _ in $(seq 1 100); do
    code=$(curl -s -o /dev/null -m 1 -w '%{http_code}' "http://127.0.0.1:$port/health/live" || true)
    [ "$code" = 200 ] && break
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.1
  done
  if [ "$code" != 200 ]; then
    if kill -0 "$pid" 2>/dev/null; then
      bad "$label: /health/live on METRICS_PORT=$port answered $code after 10 s"
    else
      wait "$pid" && rc=0 || rc=$?
      bad "$label: exited ($rc) before serving /health/live: $(tail -c 600 "$log" | sed 's/\x1b\[[0-9;]*m//g' | tr '\n' ' ')"
    fi
    kill -KILL "$pid" 2>/dev/null || true
    return
  fi
  ok "$label: runs with the manifest's args, config file and environment${as_user:+ as uid $uid}; /health/live 200 on METRICS_PORT"
  ready=$(curl -s -o /dev/null -m 2 -w '%{http_code}' "http://127.0.0.1:$port/health/ready" || true)
  case "$ready" in
    200|503) ok "$label: /health/ready answers ($ready)" ;;
    *) bad "$label: /health/ready answered $ready (expected 200 or 503)" ;;
  esac
  metrics=$(curl -s -m 2 "http://127.0.0.1:$port/metrics" || true)
  exposed=$(grep -oE '^tributary_[a-z0-9_]+' <<<"$metrics" | sort -u || true)
  chain_series=$(grep '^tributary_chain_' <<<"$exposed" || true)
  if [ -z "$exposed" ]; then
    bad "$label: /metrics has no tributary_* series"
  elif [ -z "$chain_series" ]; then
    ok "$label: /metrics: $(wc -l <<<"$exposed") tributary_* series"
  else
    # The dashboard lint reads the chain metrics out of the engine's source: it must know
    # every tributary_chain_* series a chain service really exposes.
    unknown=$(comm -23 <(echo "$chain_series") <(echo "$known_metrics" | sort -u))
    if [ -n "$unknown" ]; then
      bad "$label: /metrics exposes series the dashboard lint's metric list lacks: $(tr "\n" " " <<<"$unknown")"
    else
      ok "$label: /metrics: $(wc -l <<<"$exposed") tributary_* series, the chain ones all known to the dashboard lint"
    fi
  fi
  local t0 t1
  if ! kill -0 "$pid" 2>/dev/null; then
    wait "$pid" && rc=0 || rc=$?
    bad "$label: exited ($rc) on its own: $(tail -c 600 "$log" | sed 's/\x1b\[[0-9;]*m//g' | tr '\n' ' ')"
    return
  fi
  t0=$(date +%s%N)
  kill -TERM "$pid" 2>/dev/null || true
  for _ in $(seq 1 300); do
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.1
  done
  t1=$(date +%s%N)
  if kill -0 "$pid" 2>/dev/null; then
    bad "$label: still running 30 s after SIGTERM (terminationGracePeriodSeconds is 30)"
    kill -KILL "$pid" 2>/dev/null || true
  else
    ok "$label: stops $(( (t1 - t0) / 1000000 )) ms after SIGTERM"
  fi
  wait "$pid" 2>/dev/null || true
}

for build in "${builds[@]}"; do
  name=$(basename "$build" .yaml)
  echo "== $build"
  facts=$("$PY" tests/deploy/manifest_facts.py "$build" "$defaults")
  while IFS= read -r json; do
    w=$(jq -r .workload <<<"$json")
    if [ "$w" = manifest ]; then
      label="$name"
    else
      label="$name $w/$(jq -r .container <<<"$json")"
    fi
    nerr=$(jq '.errors | length' <<<"$json")
    if [ "$nerr" -gt 0 ]; then
      while IFS= read -r e; do bad "$label: $e"; done < <(jq -r '.errors[]' <<<"$json")
    else
      ok "$label: static checks"
    fi
    [ "$w" = manifest ] && continue
    b=$(jq -r .binary <<<"$json")
    if [ ! -x "$BIN_DIR/$b" ]; then
      skip "$label: no binary $BIN_DIR/$b (not built yet): its flags, environment names and live run are not checked"
      continue
    fi
    if [ -z "${HELP[$b]+x}" ]; then
      bad "$label: $b --help fails"
      continue
    fi
    help=${HELP[$b]}
    # Flags: every argument starting with '-' is in the help text.
    while IFS= read -r a; do
      case "$a" in
        -*) if in_help "$help" "${a%%=*}"; then ok "$label: flag $a is in $b --help"; else bad "$label: flag $a is not in $b --help"; fi ;;
      esac
    done < <(jq -r '.args[]' <<<"$json")
    # Environment: every variable name is one the binary reads.
    missing=()
    while IFS= read -r v; do
      case "$v" in
        RUST_LOG|LOG_FORMAT) ;;  # tributary_engine::init_tracing (crates/engine/src/lib.rs)
        KAFKA_PROP_*) grep -qF 'KAFKA_PROP_<NAME>' <<<"$help" || missing+=("$v") ;;
        *) in_help "$help" "$v" || missing+=("$v") ;;
      esac
    done < <(jq -r '.env | keys[]' <<<"$json")
    if [ ${#missing[@]} -gt 0 ]; then
      bad "$label: environment variables not in $b --help (the binary would ignore them): ${missing[*]}"
    else
      ok "$label: all $(jq '.env | length' <<<"$json") environment variables are in $b --help"
    fi
    live_run "$label" "$b" "$json"
  done <<<"$facts"
done

echo
echo "check-manifests: $n_ok passed, $n_fail failed, $n_skip skipped"
[ "$n_fail" -eq 0 ]
