#!/usr/bin/env bash
# Local HDFS for dev and tests: a Hadoop MiniDFSCluster (1 NameNode + 1 DataNode in one JVM)
# built from Maven Central artifacts, data kept under $INFRA_DIR/data/hdfs.
#
# Usage: dev/hdfs/run.sh fetch|start|stop|restart|status|check|fs ARGS...|admin ARGS...|reset
#
#   fetch    download Hadoop and compile the launcher (first run only; no-op when warm)
#   start    start in the background and wait until it serves hdfs://localhost:$HDFS_PORT
#   stop     SIGTERM the process (SIGKILL after 30 s)
#   status   exit 0 when running, 3 when not
#   check    write/list/read/rename files through the Hadoop FileSystem API (needs start)
#   fs ...   Hadoop FsShell against the cluster, e.g. `run.sh fs -ls -R /`
#   admin .. Hadoop DFSAdmin against the cluster, e.g. `run.sh admin -report`
#   reset    stop and delete the HDFS data (next start formats a new namespace)
#
# Env: INFRA_DIR (repo/.infra), HDFS_PORT (9000), HDFS_HTTP_PORT (9870; 0 = any free port),
#      HDFS_HEAP (768m), HDFS_START_TIMEOUT (120), HDFS_LOG_LEVEL (WARN),
#      HDFS_JAVA (java 17..22; found automatically when unset), HDFS_BLOCK_SIZE (16 MiB).
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
INFRA_DIR="${INFRA_DIR:-$(cd "$HERE/../.." && pwd)/.infra}"
mkdir -p "$INFRA_DIR"
INFRA_DIR="$(cd "$INFRA_DIR" && pwd)"
HDFS_PORT="${HDFS_PORT:-9000}"
HDFS_HTTP_PORT="${HDFS_HTTP_PORT:-9870}"
HDFS_HEAP="${HDFS_HEAP:-768m}"
HDFS_START_TIMEOUT="${HDFS_START_TIMEOUT:-120}"
HDFS_LOG_LEVEL="${HDFS_LOG_LEVEL:-WARN}"

CACHE="$INFRA_DIR/cache/hdfs"
DATA="$INFRA_DIR/data/hdfs"
LOG="$INFRA_DIR/logs/hdfs.log"
PIDFILE="$INFRA_DIR/pids/hdfs.pid"
LOCKFILE="$INFRA_DIR/pids/hdfs.lock"
CLASSES="$CACHE/target/classes"
CPFILE="$CACHE/classpath.txt"
STAMP="$CACHE/build.stamp"
MAIN=tributary.devinfra.MiniHdfs
URL="hdfs://localhost:$HDFS_PORT"
READY_LINE="MiniDFSCluster ready at"

die() { echo "hdfs: $*" >&2; exit 1; }

# ---------------------------------------------------------------- build ----

build_key() {
  (cd "$HERE" && find pom.xml src -type f | LC_ALL=C sort | xargs sha256sum) | sha256sum | cut -d' ' -f1
}

deps_present() {
  [[ -s "$CPFILE" ]] || return 1
  local jars j
  IFS=: read -r -a jars < "$CPFILE" || true
  for j in "${jars[@]}"; do [[ -f "$j" ]] || return 1; done
}

cmd_fetch() {
  if [[ -f "$STAMP" && -f "$CLASSES/${MAIN//.//}.class" && "$(cat "$STAMP")" == "$(build_key)" ]] \
      && deps_present; then
    return 0
  fi
  command -v mvn >/dev/null || die "mvn (Maven) is needed to build dev/hdfs"
  if deps_present; then
    echo "hdfs: compiling launcher..."
  else
    echo "Downloading Hadoop MiniDFSCluster from Maven Central (first run only)..."
  fi
  mkdir -p "$CACHE"
  local key; key="$(build_key)"
  if ! mvn -B -q -Dstyle.color=never -f "$HERE/pom.xml" \
      -Dhdfs.build.dir="$CACHE/target" -Dmdep.outputFile="$CPFILE" \
      compile dependency:build-classpath >"$CACHE/build.log" 2>&1; then
    tail -n 40 "$CACHE/build.log" >&2
    die "build failed (full output: $CACHE/build.log)"
  fi
  deps_present || die "build finished but $CPFILE lists missing jars"
  echo "$key" > "$STAMP"
}

classpath() { echo "$CLASSES:$(cat "$CPFILE")"; }

# ----------------------------------------------------------------- java ----

java_major() {
  "$1" -version 2>&1 | sed -n 's/.* version "\([0-9][0-9]*\).*/\1/p' | head -n1
}

# Hadoop 3.4 runs on Java 17..22; Java 23+ removed Subject.getSubject, which Hadoop's
# UserGroupInformation still calls. The launcher is compiled for 17.
pick_java() {
  if [[ -n "${HDFS_JAVA:-}" ]]; then echo "$HDFS_JAVA"; return; fi
  local c m
  for c in "${JAVA_HOME:+$JAVA_HOME/bin/java}" "$(command -v java || true)" \
      /usr/lib/jvm/java-17-openjdk-*/bin/java /usr/lib/jvm/temurin-17-*/bin/java \
      /usr/lib/jvm/java-21-openjdk-*/bin/java /usr/lib/jvm/temurin-21-*/bin/java; do
    [[ -n "$c" && -x "$c" ]] || continue
    m="$(java_major "$c")"
    if [[ -n "$m" ]] && (( m >= 17 && m <= 22 )); then echo "$c"; return; fi
  done
  die "no Java 17..22 found (Hadoop 3.4 does not run on 23+); set HDFS_JAVA"
}

JAVA_OPTS=(
  -XX:+UseSerialGC
  -Djava.net.preferIPv4Stack=true
  "-Dlog4j.configuration=file:$HERE/log4j.properties"
  "-Dhdfs.log.level=$HDFS_LOG_LEVEL"
  # What Hadoop's own scripts add on Java 17.
  --add-opens=java.base/java.lang=ALL-UNNAMED
  --add-opens=java.base/java.lang.reflect=ALL-UNNAMED
  --add-opens=java.base/java.io=ALL-UNNAMED
  --add-opens=java.base/java.net=ALL-UNNAMED
  --add-opens=java.base/java.nio=ALL-UNNAMED
  --add-opens=java.base/java.util=ALL-UNNAMED
  --add-opens=java.base/java.util.concurrent=ALL-UNNAMED
  --add-opens=java.base/java.util.concurrent.atomic=ALL-UNNAMED
  --add-opens=java.base/sun.nio.ch=ALL-UNNAMED
  --add-exports=java.base/sun.net.dns=ALL-UNNAMED
  --add-exports=java.base/sun.net.util=ALL-UNNAMED
)

# -------------------------------------------------------------- process ----

read_pid() { [[ -f "$PIDFILE" ]] && tr -dc '0-9' < "$PIDFILE" || true; }

# True when $1 is a live process running our main class (guards against pid reuse).
is_ours() {
  [[ -n "$1" ]] && kill -0 "$1" 2>/dev/null \
    && ps -o args= -p "$1" 2>/dev/null | grep -q "$MAIN"
}

port_open() { timeout 2 bash -c "exec 3<>/dev/tcp/127.0.0.1/$1" 2>/dev/null; }

log_tail() {
  echo "----- last lines of $LOG -----" >&2
  tail -n "${1:-40}" "$LOG" >&2 2>/dev/null || true
  echo "-----" >&2
}

stop_pid() {
  local pid="$1" i
  kill -TERM "$pid" 2>/dev/null || return 0
  for ((i = 0; i < 60; i++)); do
    kill -0 "$pid" 2>/dev/null || return 0
    sleep 0.5
  done
  echo "hdfs: pid $pid did not stop within 30 s; sending SIGKILL" >&2
  kill -KILL "$pid" 2>/dev/null || true
  for ((i = 0; i < 20; i++)); do
    kill -0 "$pid" 2>/dev/null || return 0
    sleep 0.25
  done
}

wait_ready() {
  local pid="$1" deadline=$((SECONDS + HDFS_START_TIMEOUT))
  while ((SECONDS < deadline)); do
    if ! kill -0 "$pid" 2>/dev/null; then
      log_tail 60
      rm -f "$PIDFILE"
      die "process $pid exited during startup (log: $LOG)"
    fi
    if grep -q "$READY_LINE" "$LOG" 2>/dev/null && port_open "$HDFS_PORT"; then
      return 0
    fi
    sleep 0.5
  done
  log_tail 60
  echo "hdfs: not ready after ${HDFS_START_TIMEOUT} s; stopping pid $pid" >&2
  stop_pid "$pid"
  rm -f "$PIDFILE"
  die "start timed out (log: $LOG)"
}

lock() {
  mkdir -p "$INFRA_DIR/pids"
  exec 9>"$LOCKFILE"
  flock -w 180 9 || die "another run.sh holds $LOCKFILE"
}

ready_msg() {
  local dn
  dn="$(sed -n 's/^MiniHdfs: datanode registered as \([^ ]*\).*/\1/p' "$LOG" | tail -n1)"
  echo "hdfs: running (pid $1) at $URL${dn:+, datanode $dn}"
}

cmd_start() {
  cmd_fetch
  lock
  local pid; pid="$(read_pid)"
  if is_ours "$pid"; then
    if port_open "$HDFS_PORT"; then
      echo "hdfs: already running (pid $pid) at $URL"
      return 0
    fi
    echo "hdfs: pid $pid is still starting; waiting..."
    wait_ready "$pid"
    ready_msg "$pid"
    return 0
  fi
  rm -f "$PIDFILE"
  port_open "$HDFS_PORT" && die "port $HDFS_PORT is already in use by another process"
  if [[ "$HDFS_HTTP_PORT" != 0 ]] && port_open "$HDFS_HTTP_PORT"; then
    die "HTTP port $HDFS_HTTP_PORT is already in use (set HDFS_HTTP_PORT, 0 = any free port)"
  fi

  local java heap cp
  java="$(pick_java)"
  heap="$HDFS_HEAP"; [[ "$heap" == -* ]] || heap="-Xmx$heap"
  cp="$(classpath)"
  mkdir -p "$DATA" "$(dirname "$LOG")"
  [[ -f "$LOG" ]] && mv -f "$LOG" "$LOG.1"
  echo "hdfs: starting MiniDFSCluster on $URL (data $DATA, log $LOG)"
  # setsid: own session, so the terminal's Ctrl-C/hangup do not reach it; fd 9 (the lock)
  # is not inherited. In a script without job control, $! is the java process itself.
  (cd "$INFRA_DIR" && HDFS_BASE_DIR="$DATA" exec setsid nohup "$java" "$heap" "${JAVA_OPTS[@]}" \
      -cp "$cp" "$MAIN" "$HDFS_PORT" "$HDFS_HTTP_PORT" >>"$LOG" 2>&1 </dev/null 9>&-) &
  pid=$!
  echo "$pid" > "$PIDFILE"
  wait_ready "$pid"
  ready_msg "$pid"
}

cmd_stop() {
  lock
  local pid; pid="$(read_pid)"
  if ! is_ours "$pid"; then
    rm -f "$PIDFILE"
    echo "hdfs: not running"
    return 0
  fi
  stop_pid "$pid"
  kill -0 "$pid" 2>/dev/null && die "pid $pid is still alive"
  rm -f "$PIDFILE"
  echo "hdfs: stopped (pid $pid)"
}

cmd_status() {
  local pid; pid="$(read_pid)"
  if ! is_ours "$pid"; then
    echo "hdfs: not running"
    return 3
  fi
  if port_open "$HDFS_PORT"; then
    echo "hdfs: running (pid $pid) at $URL"
  else
    echo "hdfs: starting (pid $pid), $URL not answering yet"
  fi
}

# Client config for Java tools (FsShell insists on finding a core-site.xml). Java clients
# pick replication and block size from their own config, so mirror the server's here.
write_client_conf() {
  local dir="$CACHE/client-conf"
  mkdir -p "$dir"
  cat > "$dir/core-site.xml" <<XML
<?xml version="1.0"?>
<configuration>
  <property><name>fs.defaultFS</name><value>$URL</value></property>
</configuration>
XML
  cat > "$dir/hdfs-site.xml" <<XML
<?xml version="1.0"?>
<configuration>
  <property><name>dfs.replication</name><value>1</value></property>
  <property><name>dfs.blocksize</name><value>${HDFS_BLOCK_SIZE:-16777216}</value></property>
</configuration>
XML
  echo "$dir"
}

# Run a Java main from the launcher's classpath as a client of the running cluster.
run_client() {
  cmd_fetch
  local java conf
  java="$(pick_java)"
  conf="$(write_client_conf)"
  "$java" -Xmx256m "${JAVA_OPTS[@]}" -cp "$conf:$(classpath)" "$@"
}

cmd_reset() {
  cmd_stop
  rm -rf "$DATA"
  echo "hdfs: deleted $DATA"
}

case "${1:-}" in
  fetch) cmd_fetch ;;
  start) cmd_start ;;
  stop) cmd_stop ;;
  restart) cmd_stop; cmd_start ;;
  status) cmd_status ;;
  check) run_client tributary.devinfra.HdfsCheck "$URL" ;;
  fs) shift; run_client org.apache.hadoop.fs.FsShell "$@" ;;
  admin) shift; run_client org.apache.hadoop.hdfs.tools.DFSAdmin "$@" ;;
  reset) cmd_reset ;;
  *)
    echo "usage: $0 fetch|start|stop|restart|status|check|fs ARGS...|admin ARGS...|reset" >&2
    exit 2
    ;;
esac
