#!/usr/bin/env bash
# Dev schema registry for Tributary: Apicurio Registry 3.x from Maven Central, speaking the
# Confluent Schema Registry REST API at http://localhost:$REGISTRY_PORT/apis/ccompat/v7.
#
# Usage: dev/registry/run.sh {fetch|start|stop|status}
#
# Environment:
#   INFRA_DIR                 state dir (default: <repo>/.infra); app in $INFRA_DIR/cache/registry,
#                             database (H2 file) in $INFRA_DIR/data/registry,
#                             log $INFRA_DIR/logs/registry.log, pid $INFRA_DIR/pids/registry.pid
#   REGISTRY_PORT             HTTP port (default 8081)
#   REGISTRY_HOST             bind address (default 127.0.0.1; 0.0.0.0 for all interfaces)
#   REGISTRY_HEAP             max heap (default 512m)
#   REGISTRY_COMPATIBILITY    default global compatibility (default BACKWARD_TRANSITIVE)
#   REGISTRY_MANAGEMENT_PORT  Quarkus management interface (health/metrics) port on 127.0.0.1
#                             (default 0 = any free port; it is printed in the log)
#   REGISTRY_START_TIMEOUT    seconds to wait for readiness (default 120)
#   REGISTRY_JAVA             java binary to use (must be Java 21+); otherwise JAVA_HOME, PATH,
#                             then /usr/lib/jvm/* are searched for a Java 21+ runtime
#   REGISTRY_JAVA_OPTS        extra JVM options
#   MVN                       maven command (default mvn)
set -euo pipefail

SCRIPT_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
INFRA_DIR="${INFRA_DIR:-$(cd "$SCRIPT_DIR/../.." && pwd)/.infra}"
# Absolute from here on: the JVM runs in the app dir and H2 needs an absolute path.
case "$INFRA_DIR" in /*) ;; *) INFRA_DIR="$PWD/$INFRA_DIR" ;; esac
REGISTRY_PORT="${REGISTRY_PORT:-8081}"
REGISTRY_HOST="${REGISTRY_HOST:-127.0.0.1}"
REGISTRY_HEAP="${REGISTRY_HEAP:-512m}"
REGISTRY_COMPATIBILITY="${REGISTRY_COMPATIBILITY:-BACKWARD_TRANSITIVE}"
REGISTRY_MANAGEMENT_PORT="${REGISTRY_MANAGEMENT_PORT:-0}"
REGISTRY_START_TIMEOUT="${REGISTRY_START_TIMEOUT:-120}"
MVN="${MVN:-mvn}"

POM="$SCRIPT_DIR/pom.xml"
# Single source of truth for the version: the pinned property in pom.xml.
APICURIO_VERSION="$(sed -n 's:.*<apicurio.version>\(.*\)</apicurio.version>.*:\1:p' "$POM" | head -n1)"
CACHE_DIR="$INFRA_DIR/cache/registry"
APP_DIR="$CACHE_DIR/apicurio-registry-$APICURIO_VERSION"
RUN_JAR="$APP_DIR/quarkus-run.jar"
READY_MARKER="$APP_DIR/.tributary-complete"
PID_FILE="$INFRA_DIR/pids/registry.pid"
# Persistent storage: Apicurio's SQL storage on an H2 database in file mode. Apicurio creates the
# tables on first start (apicurio.sql.init=true, its default) and reuses/upgrades them afterwards.
#   DB_CLOSE_ON_EXIT=FALSE  no H2 shutdown hook; the connection pool closes the DB on stop
#   WRITE_DELAY=0           write every commit to the file at once (default 500 ms), so a
#                           kill -9 cannot lose a schema id that was already handed out
# H2 2.x (MVStore) locks the file with an OS lock, released when the process dies, so the
# database opens normally after a kill -9 (no stale lock file to clean up).
DATA_DIR="$INFRA_DIR/data/registry"
DB_URL="jdbc:h2:file:$DATA_DIR/registry;DB_CLOSE_ON_EXIT=FALSE;WRITE_DELAY=0"
LOG_FILE="$INFRA_DIR/logs/registry.log"
# Marker system property so we only ever signal a process that we started.
PROC_TAG="-Dtributary.dev.registry=$INFRA_DIR"

CHECK_URL="http://127.0.0.1:$REGISTRY_PORT/apis/ccompat/v7"
PUBLIC_URL="http://localhost:$REGISTRY_PORT/apis/ccompat/v7"

log() { echo "registry: $*"; }
die() { echo "registry: ERROR: $*" >&2; exit 1; }

# ---------------------------------------------------------------------------------------------
# fetch: resolve + unpack the published runnable app (Quarkus fast-jar) via dev/registry/pom.xml

cmd_fetch() {
  [ -n "$APICURIO_VERSION" ] || die "cannot read <apicurio.version> from $POM"
  if [ -f "$READY_MARKER" ] && [ -f "$RUN_JAR" ]; then
    return 0
  fi
  command -v "$MVN" >/dev/null 2>&1 || die "maven ('$MVN') not found; it is needed once to fetch the registry"
  echo "Building Apicurio Registry $APICURIO_VERSION from Maven Central (first run only)..."
  local t0=$SECONDS
  mkdir -p "$CACHE_DIR"
  # Start from a clean slate so an interrupted unpack is never mistaken for a complete one.
  rm -rf "$APP_DIR" "$CACHE_DIR/maven-target"
  local mvn_log="$CACHE_DIR/fetch.log"
  if ! "$MVN" -B -Dstyle.color=never --strict-checksums -f "$POM" package \
        -Dinfra.dir="$INFRA_DIR" -Dapicurio.version="$APICURIO_VERSION" >"$mvn_log" 2>&1; then
    rm -rf "$APP_DIR"
    tail -n 40 "$mvn_log" >&2
    die "maven failed to fetch io.apicurio:apicurio-registry-app:$APICURIO_VERSION:tar.gz:all (full log: $mvn_log)"
  fi
  [ -f "$RUN_JAR" ] || die "maven finished but $RUN_JAR is missing"
  rm -rf "$CACHE_DIR/maven-target"
  touch "$READY_MARKER"
  log "Apicurio Registry $APICURIO_VERSION ready in $APP_DIR ($((SECONDS - t0)) s)"
}

# ---------------------------------------------------------------------------------------------
# helpers

java_major() { # prints the feature version of the given java binary, or nothing
  "$1" -XshowSettings:properties -version 2>&1 \
    | awk -F'= *' '/java\.specification\.version/ {print $2; exit}' | sed 's/^1\.//; s/\..*//'
}

find_java() {
  local cands=() c v
  [ -n "${REGISTRY_JAVA:-}" ] && cands+=("$REGISTRY_JAVA")
  [ -n "${JAVA_HOME:-}" ] && cands+=("$JAVA_HOME/bin/java")
  command -v java >/dev/null 2>&1 && cands+=("$(command -v java)")
  # Newest JDK under /usr/lib/jvm first.
  while IFS= read -r c; do cands+=("$c"); done < <(ls -d /usr/lib/jvm/*/bin/java 2>/dev/null | sort -rV)
  for c in "${cands[@]}"; do
    [ -x "$c" ] || continue
    v="$(java_major "$c")"
    if [ -n "$v" ] && [ "$v" -ge 21 ] 2>/dev/null; then echo "$c"; return 0; fi
    [ -n "${REGISTRY_JAVA:-}" ] && [ "$c" = "$REGISTRY_JAVA" ] && die "REGISTRY_JAVA=$c is Java ${v:-?}; Apicurio $APICURIO_VERSION needs Java 21+"
  done
  die "no Java 21+ runtime found (Apicurio $APICURIO_VERSION needs 21+); set REGISTRY_JAVA=/path/to/java"
}

read_pid() { # prints the pid from the pid file if it is a live process of ours
  [ -f "$PID_FILE" ] || return 1
  local pid
  pid="$(tr -dc '0-9' < "$PID_FILE")"
  [ -n "$pid" ] || return 1
  kill -0 "$pid" 2>/dev/null || return 1
  # Guard against pid reuse: the process must carry our tag.
  tr '\0' ' ' < "/proc/$pid/cmdline" 2>/dev/null | grep -qF -- "$PROC_TAG" || return 1
  echo "$pid"
}

http_code() { curl -s -o /dev/null -m 3 -w '%{http_code}' "$1" 2>/dev/null || true; }

is_ready() { [ "$(http_code "$CHECK_URL/subjects")" = "200" ]; }

wait_ready() { # wait_ready <pid>: 0 when the subjects endpoint answers 200, 1 on death/timeout
  local pid="$1" deadline=$((SECONDS + REGISTRY_START_TIMEOUT))
  while [ "$SECONDS" -lt "$deadline" ]; do
    is_ready && return 0
    kill -0 "$pid" 2>/dev/null || return 1
    sleep 0.25
  done
  is_ready
}

log_tail() {
  echo "---- last 60 lines of $LOG_FILE ----" >&2
  tail -n 60 "$LOG_FILE" >&2 2>/dev/null || true
  echo "----" >&2
}

ensure_compatibility() {
  # The default global rule comes from -Dapicurio.rules.global.compatibility; verify it and
  # fall back to setting it through the API if it is not in effect.
  local cfg
  cfg="$(curl -s -m 5 "$CHECK_URL/config" || true)"
  if ! grep -q "\"$REGISTRY_COMPATIBILITY\"" <<<"$cfg"; then
    log "global compatibility is '$cfg'; setting $REGISTRY_COMPATIBILITY through the API"
    curl -sf -m 5 -X PUT -H 'Content-Type: application/vnd.schemaregistry.v1+json' \
      -d "{\"compatibility\":\"$REGISTRY_COMPATIBILITY\"}" "$CHECK_URL/config" >/dev/null \
      || die "could not set global compatibility to $REGISTRY_COMPATIBILITY"
  fi
}

stop_pid() { # TERM, wait up to 30 s, then KILL
  local pid="$1" i
  kill -TERM "$pid" 2>/dev/null || true
  for ((i = 0; i < 120; i++)); do
    kill -0 "$pid" 2>/dev/null || return 0
    sleep 0.25
  done
  log "pid $pid did not stop within 30 s; sending KILL"
  kill -KILL "$pid" 2>/dev/null || true
  for ((i = 0; i < 40; i++)); do
    kill -0 "$pid" 2>/dev/null || return 0
    sleep 0.25
  done
  die "pid $pid survived KILL"
}

# ---------------------------------------------------------------------------------------------
# start / stop / status

cmd_start() {
  cmd_fetch
  case "$DATA_DIR" in *';'*) die "INFRA_DIR must not contain ';' (it goes into the H2 JDBC URL): $INFRA_DIR" ;; esac
  mkdir -p "$INFRA_DIR/pids" "$INFRA_DIR/logs" "$DATA_DIR"

  local pid
  if pid="$(read_pid)"; then
    if is_ready; then
      log "already running"
      return 0
    fi
    log "pid $pid exists but is not answering yet; waiting for it"
    if wait_ready "$pid"; then
      log "already running"
      return 0
    fi
    log_tail
    die "pid $pid is not answering on $CHECK_URL/subjects (try: $0 stop)"
  fi
  rm -f "$PID_FILE"

  local code
  code="$(http_code "$CHECK_URL/subjects")"
  if [ -n "$code" ] && [ "$code" != "000" ]; then
    die "port $REGISTRY_PORT is already in use by another process (HTTP $code); set REGISTRY_PORT"
  fi

  local java
  java="$(find_java)"

  # Runtime config: <app>/config/application.properties overrides the copy inside Apicurio's jar.
  mkdir -p "$APP_DIR/config"
  cp "$SCRIPT_DIR/registry.properties" "$APP_DIR/config/application.properties"

  [ -f "$LOG_FILE" ] && mv -f "$LOG_FILE" "$LOG_FILE.1"
  {
    echo "# $(date -u +%FT%TZ) starting Apicurio Registry $APICURIO_VERSION with $java"
    echo "# port=$REGISTRY_PORT host=$REGISTRY_HOST heap=$REGISTRY_HEAP compatibility=$REGISTRY_COMPATIBILITY"
    echo "# datasource=$DB_URL"
  } > "$LOG_FILE"

  local t0=$SECONDS
  # shellcheck disable=SC2086  # REGISTRY_JAVA_OPTS is intentionally word-split
  (
    cd "$APP_DIR"
    exec setsid nohup "$java" \
      "$PROC_TAG" \
      -Xms64m -Xmx"$REGISTRY_HEAP" -XX:MaxMetaspaceSize=256m \
      -XX:+UseSerialGC -XX:TieredStopAtLevel=1 -XX:+ExitOnOutOfMemoryError \
      -Xshare:auto -XX:SharedArchiveFile="$APP_DIR/app-cds.jsa" -XX:+AutoCreateSharedArchive \
      -Djava.util.logging.manager=org.jboss.logmanager.LogManager \
      -Dquarkus.http.port="$REGISTRY_PORT" \
      -Dquarkus.http.host="$REGISTRY_HOST" \
      -Dquarkus.management.port="$REGISTRY_MANAGEMENT_PORT" \
      -Dapicurio.rules.global.compatibility="$REGISTRY_COMPATIBILITY" \
      -Dapicurio.datasource.url="$DB_URL" \
      ${REGISTRY_JAVA_OPTS:-} \
      -jar "$RUN_JAR"
  ) </dev/null >>"$LOG_FILE" 2>&1 &
  pid=$!
  echo "$pid" > "$PID_FILE"

  if ! wait_ready "$pid"; then
    if kill -0 "$pid" 2>/dev/null; then
      log_tail
      stop_pid "$pid" || true
      rm -f "$PID_FILE"
      die "not ready on $CHECK_URL/subjects after ${REGISTRY_START_TIMEOUT}s (stopped it)"
    fi
    log_tail
    rm -f "$PID_FILE"
    die "process $pid exited during startup"
  fi
  ensure_compatibility
  log "started Apicurio Registry $APICURIO_VERSION (pid $pid) in $((SECONDS - t0)) s: $PUBLIC_URL"
}

cmd_stop() {
  local pid
  if pid="$(read_pid)"; then
    stop_pid "$pid"
    rm -f "$PID_FILE"
    log "stopped (pid $pid)"
  else
    rm -f "$PID_FILE"
    log "not running"
  fi
}

cmd_status() {
  local pid
  if pid="$(read_pid)"; then
    if is_ready; then
      log "running (pid $pid): $PUBLIC_URL"
      return 0
    fi
    log "pid $pid alive but $CHECK_URL/subjects is not answering"
    return 1
  fi
  log "not running"
  return 3
}

case "${1:-}" in
  fetch)  cmd_fetch ;;
  start)  cmd_start ;;
  stop)   cmd_stop ;;
  status) cmd_status ;;
  *) echo "usage: $0 {fetch|start|stop|status}" >&2; exit 2 ;;
esac
