#!/usr/bin/env bash
# Apache Airflow for the lake jobs' DAGs (airflow/dags), in the project virtual environment
# airflow/.venv, with AIRFLOW_HOME in .infra/airflow (SQLite metadata DB, no examples).
#
# Usage: dev/airflow.sh install        create/refresh the venv and the metadata DB (idempotent)
#        dev/airflow.sh test [ARGS]    pytest airflow/tests (ARGS go to pytest)
#        dev/airflow.sh shell          a shell with the venv active and the Airflow settings set
#        dev/airflow.sh lock           re-resolve airflow/requirements.txt, rewrite requirements.lock
#        dev/airflow.sh env            print the settings (for `eval "$(dev/airflow.sh env)"`)
#        dev/airflow.sh airflow ARGS   run the airflow CLI with the settings
#
# The install is stamped by the hash of requirements.txt + requirements.lock: a warm run
# does nothing. The packages come from PyPI only: requirements.lock (the frozen result of a
# successful install) serves as the constraints file that Airflow would otherwise fetch.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${AIRFLOW_VENV:-$ROOT/airflow/.venv}"
REQ="$ROOT/airflow/requirements.txt"
LOCK="$ROOT/airflow/requirements.lock"

export AIRFLOW_HOME="${AIRFLOW_HOME:-$ROOT/.infra/airflow}"
export AIRFLOW__CORE__DAGS_FOLDER="$ROOT/airflow/dags"
export AIRFLOW__CORE__LOAD_EXAMPLES=False
export AIRFLOW__DATABASE__SQL_ALCHEMY_CONN="${AIRFLOW__DATABASE__SQL_ALCHEMY_CONN:-sqlite:///$AIRFLOW_HOME/airflow.db}"
export AIRFLOW__CORE__UNIT_TEST_MODE="${AIRFLOW__CORE__UNIT_TEST_MODE:-False}"
export AIRFLOW__LOGGING__BASE_LOG_FOLDER="${AIRFLOW__LOGGING__BASE_LOG_FOLDER:-$AIRFLOW_HOME/logs}"
export TRIBUTARY_BIN="${TRIBUTARY_BIN:-$ROOT/target/release/tributary}"
export PYTHONDONTWRITEBYTECODE=1

log() { echo "airflow: $*" >&2; }

req_hash() { cat "$REQ" "$LOCK" 2>/dev/null | sha256sum | cut -c1-16; }

install_venv() {
  local stamp="$VENV/.installed-$(req_hash)"
  [ -f "$stamp" ] && return 0
  local start=$SECONDS
  log "installing Apache Airflow into $VENV (first run, or requirements changed; about 1 min)..."
  [ -x "$VENV/bin/python" ] || python3 -m venv "$VENV"
  rm -f "$VENV"/.installed-*
  local args=(-r "$REQ")
  [ -s "$LOCK" ] && args+=(-c "$LOCK")
  "$VENV/bin/pip" install --disable-pip-version-check --progress-bar off -q "${args[@]}" >&2
  if [ ! -s "$LOCK" ]; then
    freeze > "$LOCK"
    log "froze the resolved set into ${LOCK#"$ROOT"/}"
  fi
  touch "$VENV/.installed-$(req_hash)"
  log "installed $("$VENV/bin/airflow" version 2>/dev/null | tail -1) in $((SECONDS - start)) s"
}

freeze() {
  echo "# Frozen by dev/airflow.sh from airflow/requirements.txt ($(python3 --version 2>&1)); do not edit."
  "$VENV/bin/pip" freeze --disable-pip-version-check --exclude-editable | LC_ALL=C sort -f
}

init_db() {
  mkdir -p "$AIRFLOW_HOME"
  local stamp="$AIRFLOW_HOME/.db-migrated-$(req_hash)"
  if [ -f "$stamp" ] && [ -f "$AIRFLOW_HOME/airflow.db" ]; then return 0; fi
  log "migrating the metadata DB in ${AIRFLOW_HOME#"$ROOT"/} (SQLite)..."
  "$VENV/bin/airflow" db migrate >"$AIRFLOW_HOME/db-migrate.log" 2>&1 || {
    tail -30 "$AIRFLOW_HOME/db-migrate.log" >&2
    exit 1
  }
  rm -f "$AIRFLOW_HOME"/.db-migrated-*
  touch "$stamp"
}

setup() {
  install_venv
  init_db
}

cmd="${1:-install}"
shift || true
case "$cmd" in
  install)
    setup
    log "ready: venv ${VENV#"$ROOT"/}, AIRFLOW_HOME ${AIRFLOW_HOME#"$ROOT"/}, dags airflow/dags"
    ;;
  test)
    setup
    cd "$ROOT/airflow"
    exec "$VENV/bin/python" -m pytest tests -p no:cacheprovider "$@"
    ;;
  shell)
    setup
    log "Airflow shell (exit to leave)"
    # shellcheck disable=SC1091
    exec bash --rcfile <(echo '[ -f ~/.bashrc ] && . ~/.bashrc'; echo ". '$VENV/bin/activate'") -i
    ;;
  lock)
    rm -f "$LOCK" "$VENV"/.installed-*
    rm -rf "$VENV"
    setup
    ;;
  env)
    setup
    for v in AIRFLOW_HOME AIRFLOW__CORE__DAGS_FOLDER AIRFLOW__CORE__LOAD_EXAMPLES \
      AIRFLOW__DATABASE__SQL_ALCHEMY_CONN AIRFLOW__LOGGING__BASE_LOG_FOLDER TRIBUTARY_BIN; do
      printf 'export %s=%q\n' "$v" "${!v}"
    done
    printf 'export PATH=%q:"$PATH"\n' "$VENV/bin"
    ;;
  airflow)
    setup
    exec "$VENV/bin/airflow" "$@"
    ;;
  *)
    echo "usage: $0 {install|test|shell|lock|env|airflow} [ARGS]" >&2
    exit 2
    ;;
esac
