#!/usr/bin/env bash
# Starts or stops Tributary's services in the background against the local infrastructure.
# Logs in .infra/logs/<service>.log, pids in .infra/pids/<service>.pid.
# Each service talks to Kafka as its own principal over SASL_SSL, with the ACLs of that principal
# (the settings in $KAFKA_PRINCIPALS_DIR/tributary-<service>.env, made by dev/kafka/run.sh);
# KAFKA_SECURE=0 runs them over the plaintext listener instead.
# Usage: dev/services.sh {up|down|status} SERVICE...
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
INFRA_DIR="${INFRA_DIR:-$ROOT/.infra}"
BIN="${BIN:-$ROOT/target/release}"
cmd="${1:-}"; shift || true
mkdir -p "$INFRA_DIR/logs" "$INFRA_DIR/pids"
[ -f "$INFRA_DIR/env" ] && { set -a; . "$INFRA_DIR/env"; set +a; }
# The sink's lake: the local directory .lake/ unless LAKE_URI says otherwise (hdfs://...).
export LAKE_URI="${LAKE_URI:-$ROOT/.lake}"
alive() { [ -f "$1" ] && kill -0 "$(cat "$1")" 2>/dev/null; }
for svc in "$@"; do
  pidf="$INFRA_DIR/pids/$svc.pid"
  case "$cmd" in
    up)
      if alive "$pidf"; then echo "$svc: already running (pid $(cat "$pidf"))"; continue; fi
      principal="${KAFKA_PRINCIPALS_DIR:-$INFRA_DIR/kafka-principals}/tributary-$svc.env"
      if [ "${KAFKA_SECURE:-1}" != 0 ] && [ -f "$principal" ]; then
        (set -a; . "$principal"; set +a; exec nohup "$BIN/$svc") >> "$INFRA_DIR/logs/$svc.log" 2>&1 &
      else
        nohup "$BIN/$svc" >> "$INFRA_DIR/logs/$svc.log" 2>&1 &
      fi
      echo $! > "$pidf"
      echo "$svc: started (pid $!, log $INFRA_DIR/logs/$svc.log)"
      ;;
    down)
      if alive "$pidf"; then
        pid=$(cat "$pidf"); kill -TERM "$pid"
        for _ in $(seq 1 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
        kill -0 "$pid" 2>/dev/null && { echo "$svc: did not stop in 10 s; killing"; kill -KILL "$pid"; }
        echo "$svc: stopped"
      fi
      rm -f "$pidf"
      ;;
    status)
      if alive "$pidf"; then echo "$svc: running (pid $(cat "$pidf"))"; else echo "$svc: stopped"; fi
      ;;
    *) echo "usage: $0 {up|down|status} SERVICE..." >&2; exit 2 ;;
  esac
done
