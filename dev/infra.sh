#!/usr/bin/env bash
# Starts, stops and reports the local infrastructure: Kafka (KRaft), the schema registry
# (Apicurio, Confluent API) and HDFS (MiniDFSCluster), each from Maven Central through its
# own dev/<component>/run.sh. `up` is idempotent and waits until each really answers, then
# writes .infra/env with the addresses, and TRIBUTARY_LOCAL=1: the services started against
# this infrastructure (make up, make demo, the tests) run in local mode, the only mode with
# built-in tenants, tokens and keys. Kafka also listens with SASL_SSL (SCRAM-SHA-512, ACLs per
# principal) at KAFKA_SASL_BOOTSTRAP; each principal's client settings are in
# $KAFKA_PRINCIPALS_DIR/<principal>.env (dev/kafka/run.sh).
#
# Usage: dev/infra.sh {up|down|status|env}
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
export INFRA_DIR="${INFRA_DIR:-$ROOT/.infra}"
export KAFKA_PORT="${KAFKA_PORT:-9092}" KAFKA_SASL_PORT="${KAFKA_SASL_PORT:-9094}" REGISTRY_PORT="${REGISTRY_PORT:-8081}" HDFS_PORT="${HDFS_PORT:-9000}"
COMPONENTS=(kafka registry hdfs)

write_env() {
  mkdir -p "$INFRA_DIR"
  cat > "$INFRA_DIR/env" <<ENV
KAFKA_BOOTSTRAP=127.0.0.1:$KAFKA_PORT
KAFKA_SASL_BOOTSTRAP=127.0.0.1:$KAFKA_SASL_PORT
KAFKA_PRINCIPALS_DIR=$INFRA_DIR/kafka-principals
SCHEMA_REGISTRY_URL=http://localhost:$REGISTRY_PORT/apis/ccompat/v7
HDFS_URL=hdfs://localhost:$HDFS_PORT
TRIBUTARY_LOCAL=1
ENV
}

case "${1:-}" in
  up)
    mkdir -p "$INFRA_DIR/logs"
    start=$(date +%s)
    # Fetch all first (downloads show their own progress), then start; the registry and HDFS
    # do not depend on Kafka, so they start side by side.
    for c in "${COMPONENTS[@]}"; do bash "$ROOT/dev/$c/run.sh" fetch; done
    pids=()
    for c in "${COMPONENTS[@]}"; do
      bash "$ROOT/dev/$c/run.sh" start > "$INFRA_DIR/logs/$c.start.log" 2>&1 &
      pids+=($!)
    done
    failed=0
    for i in "${!COMPONENTS[@]}"; do
      if ! wait "${pids[$i]}"; then failed=1; fi
      cat "$INFRA_DIR/logs/${COMPONENTS[$i]}.start.log"
    done
    if [ "$failed" -ne 0 ]; then echo "infra-up: a component failed to start (see above)"; exit 1; fi
    write_env
    echo "infra-up: ready in $(( $(date +%s) - start )) s; addresses in $INFRA_DIR/env:"
    sed 's/^/  /' "$INFRA_DIR/env"
    ;;
  down)
    rc=0
    for c in hdfs registry kafka; do bash "$ROOT/dev/$c/run.sh" stop || rc=1; done
    exit $rc
    ;;
  status)
    for c in "${COMPONENTS[@]}"; do bash "$ROOT/dev/$c/run.sh" status || true; done
    ;;
  env)
    write_env; cat "$INFRA_DIR/env"
    ;;
  *)
    echo "usage: $0 {up|down|status|env}" >&2; exit 2 ;;
esac
