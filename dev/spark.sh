#!/usr/bin/env bash
# PySpark 4.0 with Delta (delta-spark 4.0) for the Spark jobs in spark/ (the audience export),
# in the project virtual environment .infra/spark-venv.
#
# Usage: dev/spark.sh install        create/refresh the venv (idempotent)
#        dev/spark.sh test [ARGS]    pytest spark/tests (ARGS go to pytest)
#        dev/spark.sh run ARGS       python spark/audience.py ARGS (e.g. --lake .lake --tenant acme
#                                    --list newsletter --out /tmp/newsletter.csv)
#        dev/spark.sh shell          a shell with the venv active and JAVA_HOME set
#        dev/spark.sh env            print the settings (for `eval "$(dev/spark.sh env)"`)
#
# The install is stamped by the hash of spark/requirements.txt: a warm run does nothing. The
# packages come from PyPI; the Delta jars from Maven Central when Spark first starts (cached
# in ~/.ivy2.5.2 by Spark's Ivy). Spark 4.0 runs on Java 17 or 21: JAVA_HOME is used when it
# is one of those, else one is picked from /usr/lib/jvm (SPARK_JAVA_HOME overrides both).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${SPARK_VENV:-$ROOT/.infra/spark-venv}"
REQ="$ROOT/spark/requirements.txt"

export TRIBUTARY_BIN="${TRIBUTARY_BIN:-$ROOT/target/release/tributary}"
export PYTHONDONTWRITEBYTECODE=1
# The driver and the executors (local mode) talk over loopback; no lookup of the host name.
export SPARK_LOCAL_IP="${SPARK_LOCAL_IP:-127.0.0.1}"

log() { echo "spark: $*" >&2; }
die() { log "$*"; exit 1; }

java_major() {
  "$1" -version 2>&1 | sed -n 's/.* version "\([0-9][0-9]*\).*/\1/p' | head -n1
}

# Spark 4.0 supports Java 17 and 21 (on 23+ Hadoop's client fails: "getSubject is not supported").
pick_java_home() {
  if [[ -n "${SPARK_JAVA_HOME:-}" ]]; then echo "$SPARK_JAVA_HOME"; return; fi
  local c m
  for c in "${JAVA_HOME:+$JAVA_HOME/bin/java}" \
      /usr/lib/jvm/java-17-openjdk-*/bin/java /usr/lib/jvm/temurin-17-*/bin/java \
      /usr/lib/jvm/java-21-openjdk-*/bin/java /usr/lib/jvm/temurin-21-*/bin/java \
      "$(command -v java || true)"; do
    [[ -n "$c" && -x "$c" ]] || continue
    m="$(java_major "$c")"
    if [[ -n "$m" ]] && (( m >= 17 && m <= 21 )); then
      c="$(readlink -f "$c")"
      echo "${c%/bin/java}"
      return
    fi
  done
  die "no Java 17..21 found (Spark 4.0 needs 17 or 21); set SPARK_JAVA_HOME"
}

req_hash() { sha256sum "$REQ" | cut -c1-16; }

install_venv() {
  local stamp="$VENV/.installed-$(req_hash)"
  [ -f "$stamp" ] && return 0
  local start=$SECONDS
  log "installing PySpark and delta-spark into ${VENV#"$ROOT"/} (first run, or requirements changed; under 1 min)..."
  [ -x "$VENV/bin/python" ] || python3 -m venv "$VENV"
  rm -f "$VENV"/.installed-*
  "$VENV/bin/pip" install --disable-pip-version-check --progress-bar off -q -r "$REQ" >&2
  touch "$stamp"
  log "installed $("$VENV/bin/python" -c 'import pyspark, delta; print("pyspark", pyspark.__version__)') + $("$VENV/bin/pip" show delta-spark 2>/dev/null | sed -n 's/^Version: /delta-spark /p') in $((SECONDS - start)) s"
}

setup() {
  install_venv
  export JAVA_HOME; JAVA_HOME="$(pick_java_home)"
  export PATH="$JAVA_HOME/bin:$PATH"
  export PYSPARK_PYTHON="$VENV/bin/python" PYSPARK_DRIVER_PYTHON="$VENV/bin/python"
}

cmd="${1:-install}"
shift || true
case "$cmd" in
  install)
    setup
    log "ready: venv ${VENV#"$ROOT"/}, JAVA_HOME $JAVA_HOME"
    ;;
  test)
    setup
    cd "$ROOT/spark"
    exec "$VENV/bin/python" -m pytest tests -p no:cacheprovider -rs "$@"
    ;;
  run)
    setup
    exec "$VENV/bin/python" "$ROOT/spark/audience.py" "$@"
    ;;
  shell)
    setup
    log "Spark shell (exit to leave)"
    # shellcheck disable=SC1091
    exec bash --rcfile <(echo '[ -f ~/.bashrc ] && . ~/.bashrc'; echo ". '$VENV/bin/activate'") -i
    ;;
  env)
    setup
    for v in JAVA_HOME PYSPARK_PYTHON PYSPARK_DRIVER_PYTHON SPARK_LOCAL_IP TRIBUTARY_BIN; do
      printf 'export %s=%q\n' "$v" "${!v}"
    done
    printf 'export PATH=%q:"$PATH"\n' "$VENV/bin"
    ;;
  *)
    echo "usage: $0 {install|test|run|shell|env} [ARGS]" >&2
    exit 2
    ;;
esac
