#!/usr/bin/env bash
# Runs a local single-node Apache Kafka broker (KRaft, combined
# broker+controller) from jars resolved from Maven Central.
#
#   dev/kafka/run.sh fetch    # resolve the jars once into $INFRA_DIR/cache
#   dev/kafka/run.sh start    # fetch, format storage if new, start, wait until ready
#   dev/kafka/run.sh stop     # stop the broker started by this script
#   dev/kafka/run.sh status   # running/stopped, pid, address
#   dev/kafka/run.sh classpath  # print the classpath (for the Kafka CLI tools)
#   dev/kafka/run.sh acls [NAMESPACE]   # (re)create the SASL principals and their ACLs,
#       for the topics of NAMESPACE when given (the tests' namespaces)
#   dev/kafka/run.sh tool CLASS ARGS...  # run a Kafka CLI class, e.g.
#       dev/kafka/run.sh tool org.apache.kafka.tools.TopicCommand \
#         --bootstrap-server 127.0.0.1:9092 --list
#
# See dev/kafka/README.md for the environment variables.
set -euo pipefail

KAFKA_VERSION=4.1.1 # keep in sync with <kafka.version> in pom.xml

SCRIPT_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO_ROOT=$(cd "$SCRIPT_DIR/../.." && pwd)

INFRA_DIR=${INFRA_DIR:-$REPO_ROOT/.infra}
KAFKA_PORT=${KAFKA_PORT:-9092}
KAFKA_CONTROLLER_PORT=${KAFKA_CONTROLLER_PORT:-9093}
# The authenticated, encrypted listener (SASL_SSL, SCRAM-SHA-512, KRaft ACLs per principal).
# The PLAINTEXT listener stays for local tools: its anonymous principal may do everything,
# and like every listener here it binds loopback only.
KAFKA_SASL_PORT=${KAFKA_SASL_PORT:-9094}
KAFKA_HEAP=${KAFKA_HEAP:--Xms256m -Xmx1g}
KAFKA_START_TIMEOUT=${KAFKA_START_TIMEOUT:-90}
KAFKA_STOP_TIMEOUT=${KAFKA_STOP_TIMEOUT:-30}
# Fixed cluster id (base64url of the 16 bytes "TributaryDevKafk").
KAFKA_CLUSTER_ID=${KAFKA_CLUSTER_ID:-VHJpYnV0YXJ5RGV2S2Fmaw}
if [[ -n "${KAFKA_JAVA:-}" ]]; then
  JAVA=$KAFKA_JAVA
elif [[ -n "${JAVA_HOME:-}" && -x "${JAVA_HOME}/bin/java" ]]; then
  JAVA=$JAVA_HOME/bin/java
else
  JAVA=java
fi

HOST=127.0.0.1
CACHE_DIR=$INFRA_DIR/cache/kafka-$KAFKA_VERSION
LIB_DIR=$CACHE_DIR/lib
FETCH_STAMP=$CACHE_DIR/.fetched
CONF_DIR=$INFRA_DIR/conf/kafka
CONF_FILE=$CONF_DIR/server.properties
LOG4J_FILE=$CONF_DIR/log4j2.properties
DATA_DIR=$INFRA_DIR/data/kafka
LOG_DIR=$INFRA_DIR/logs
LOG_FILE=$LOG_DIR/kafka.log
PID_DIR=$INFRA_DIR/pids
PID_FILE=$PID_DIR/kafka.pid
LOCK_FILE=$PID_DIR/kafka.lock
READY_LINE='Kafka Server started'
TLS_DIR=$CONF_DIR/tls
# The chains, whose principals and topics the ACLs name: the chain registry's names
# (schemas/chains.txt, read here because this runs before anything is built), comma-separated.
CHAINS=$(awk '/^[a-z]/ {print $1}' "$REPO_ROOT/schemas/chains.txt" | paste -sd, -)
[ -n "$CHAINS" ] || { echo "kafka: ERROR: no chain in $REPO_ROOT/schemas/chains.txt" >&2; exit 1; }
# Per principal: its password (made once) and the client settings of a service that runs as it
# (<principal>.env: KAFKA_BOOTSTRAP and KAFKA_PROP_* for SASL_SSL).
PRINCIPALS_DIR=$INFRA_DIR/kafka-principals

log() { echo "kafka: $*"; }
die() { echo "kafka: ERROR: $*" >&2; exit 1; }

# Serialise start/stop between concurrent invocations (flock is util-linux).
take_lock() {
  mkdir -p "$PID_DIR"
  if command -v flock >/dev/null 2>&1; then
    exec 9>"$LOCK_FILE"
    flock -w $((KAFKA_START_TIMEOUT + 60)) 9 || die "could not lock $LOCK_FILE"
  fi
}

# ---------------------------------------------------------------- fetch ----

# The stamp holds the pom's checksum: editing pom.xml triggers a re-fetch.
pom_sum() { cksum <"$SCRIPT_DIR/pom.xml" | cut -d' ' -f1; }

fetch() {
  local sum
  sum=$(pom_sum)
  if [[ -f "$FETCH_STAMP" && -d "$LIB_DIR" && "$(cat "$FETCH_STAMP")" == "$sum" ]]; then
    return 0
  fi
  command -v mvn >/dev/null 2>&1 || die "mvn not found (needed once to download Kafka from Maven Central)"
  echo "Downloading Kafka $KAFKA_VERSION from Maven Central (first run only)..."
  mkdir -p "$CACHE_DIR" "$LOG_DIR"
  local tmp=$CACHE_DIR/lib.tmp.$$ mvn_log=$LOG_DIR/kafka-fetch.log
  rm -rf "$tmp"
  if ! mvn -q -B -Dstyle.color=never -f "$SCRIPT_DIR/pom.xml" \
      -Dkafka.version="$KAFKA_VERSION" \
      dependency:copy-dependencies -DoutputDirectory="$tmp" >"$mvn_log" 2>&1; then
    rm -rf "$tmp"
    tail -n 40 "$mvn_log" >&2 || true
    die "maven failed to fetch Kafka $KAFKA_VERSION (full output: $mvn_log)"
  fi
  [[ -f "$tmp/kafka_2.13-$KAFKA_VERSION.jar" ]] || { rm -rf "$tmp"; die "kafka_2.13-$KAFKA_VERSION.jar missing after maven run"; }
  rm -rf "$LIB_DIR"
  mv "$tmp" "$LIB_DIR"
  echo "$sum" >"$FETCH_STAMP"
  echo "Kafka $KAFKA_VERSION jars in $LIB_DIR ($(ls "$LIB_DIR" | wc -l) files)"
}

# --------------------------------------------------------------- config ----

keytool_bin() {
  if [[ -n "${JAVA_HOME:-}" && -x "${JAVA_HOME}/bin/keytool" ]]; then echo "$JAVA_HOME/bin/keytool"; else echo keytool; fi
}

# A local CA and the broker's certificate signed by it (for localhost and 127.0.0.1), made once
# with the JDK's keytool. Clients trust $TLS_DIR/ca.pem (ssl.ca.location) and check the name.
make_certificates() {
  [[ -f "$TLS_DIR/broker.p12" && -f "$TLS_DIR/ca.pem" ]] && return 0
  local kt pw tmp
  kt=$(keytool_bin)
  pw=$(tls_password)
  tmp=$TLS_DIR.tmp.$$
  rm -rf "$tmp"; mkdir -p "$tmp"
  log "making a local CA and the broker's certificate in $TLS_DIR"
  {
    "$kt" -genkeypair -keystore "$tmp/ca.p12" -storetype PKCS12 -storepass "$pw" -alias ca \
      -dname "CN=Tributary local Kafka CA" -keyalg RSA -keysize 2048 -validity 3650 -ext bc:c
    "$kt" -exportcert -keystore "$tmp/ca.p12" -storepass "$pw" -alias ca -rfc -file "$tmp/ca.pem"
    "$kt" -genkeypair -keystore "$tmp/broker.p12" -storetype PKCS12 -storepass "$pw" -alias broker \
      -dname "CN=localhost" -keyalg RSA -keysize 2048 -validity 3650
    "$kt" -certreq -keystore "$tmp/broker.p12" -storepass "$pw" -alias broker -file "$tmp/broker.csr"
    "$kt" -gencert -keystore "$tmp/ca.p12" -storepass "$pw" -alias ca -infile "$tmp/broker.csr" \
      -outfile "$tmp/broker.pem" -rfc -validity 3650 -ext "SAN=dns:localhost,ip:$HOST" \
      -ext KU=digitalSignature,keyEncipherment -ext EKU=serverAuth
    "$kt" -importcert -keystore "$tmp/broker.p12" -storepass "$pw" -alias ca -file "$tmp/ca.pem" -noprompt
    "$kt" -importcert -keystore "$tmp/broker.p12" -storepass "$pw" -alias broker -file "$tmp/broker.pem"
  } >>"$LOG_DIR/kafka-tls.log" 2>&1 || { rm -rf "$tmp"; die "keytool failed (see $LOG_DIR/kafka-tls.log)"; }
  rm -f "$tmp/broker.csr"
  rm -rf "$TLS_DIR"
  mv "$tmp" "$TLS_DIR"
}

# The keystores' password: local, random, made once.
tls_password() {
  local f=$CONF_DIR/tls.password
  if [[ ! -s "$f" ]]; then
    mkdir -p "$CONF_DIR"
    (umask 077; head -c 18 /dev/urandom | od -An -tx1 | tr -d ' \n' >"$f")
  fi
  cat "$f"
}

write_config() {
  mkdir -p "$CONF_DIR" "$DATA_DIR" "$LOG_DIR"
  make_certificates
  local pw
  pw=$(tls_password)
  cat >"$CONF_FILE" <<EOF
# Generated by dev/kafka/run.sh on every start; edits are overwritten.
process.roles=broker,controller
node.id=1
controller.quorum.voters=1@$HOST:$KAFKA_CONTROLLER_PORT
listeners=PLAINTEXT://$HOST:$KAFKA_PORT,SASL_SSL://$HOST:$KAFKA_SASL_PORT,CONTROLLER://$HOST:$KAFKA_CONTROLLER_PORT
advertised.listeners=PLAINTEXT://$HOST:$KAFKA_PORT,SASL_SSL://$HOST:$KAFKA_SASL_PORT
inter.broker.listener.name=PLAINTEXT
controller.listener.names=CONTROLLER
listener.security.protocol.map=CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT,SASL_SSL:SASL_SSL

# SASL_SSL: SCRAM-SHA-512 over TLS with the certificate made by this script; the principals
# and their ACLs are made after start (dev/kafka/Secure.java). The anonymous principal of the
# loopback PLAINTEXT and controller listeners is a super user: local tools only.
sasl.enabled.mechanisms=SCRAM-SHA-512
listener.name.sasl_ssl.scram-sha-512.sasl.jaas.config=org.apache.kafka.common.security.scram.ScramLoginModule required;
listener.name.sasl_ssl.ssl.keystore.type=PKCS12
listener.name.sasl_ssl.ssl.keystore.location=$TLS_DIR/broker.p12
listener.name.sasl_ssl.ssl.keystore.password=$pw
listener.name.sasl_ssl.ssl.key.password=$pw
authorizer.class.name=org.apache.kafka.metadata.authorizer.StandardAuthorizer
super.users=User:ANONYMOUS
allow.everyone.if.no.acl.found=false

log.dirs=$DATA_DIR

# Single node: every internal topic has one replica.
num.partitions=1
default.replication.factor=1
min.insync.replicas=1
offsets.topic.replication.factor=1
offsets.topic.num.partitions=8
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
transaction.state.log.num.partitions=4
share.coordinator.state.topic.replication.factor=1
share.coordinator.state.topic.min.isr=1

# Clients (the tests) create their topics explicitly.
auto.create.topics.enable=false
delete.topic.enable=true
group.initial.rebalance.delay.ms=0

# The broker's session with the controller (both in this one process). A session
# shorter than a stall of the machine fences the broker: every partition loses its
# leader for a moment, and idempotent producers can then stall for minutes (seen on
# this 2-core machine with a 5 s session while the tests started). 30 s rides out
# such stalls; the price is that after a kill -9 of Kafka itself the controller
# refuses the new incarnation until the old session expires (up to 30 s).
broker.heartbeat.interval.ms=1000
broker.session.timeout.ms=30000

# Keep data forever (no time-based retention, even for old record timestamps).
log.retention.ms=-1
log.retention.hours=876000
EOF

  cat >"$LOG4J_FILE" <<'EOF'
# Generated by dev/kafka/run.sh. Everything goes to stdout, which run.sh
# redirects to $INFRA_DIR/logs/kafka.log.
status = warn
name = TributaryDevKafka

appender.stdout.type = Console
appender.stdout.name = STDOUT
appender.stdout.layout.type = PatternLayout
appender.stdout.layout.pattern = [%d] %p %m (%c)%n

rootLogger.level = INFO
rootLogger.appenderRef.stdout.ref = STDOUT

# Chatty loggers: warnings only.
logger.config.name = org.apache.kafka.common.config
logger.config.level = WARN
logger.clients.name = org.apache.kafka.clients
logger.clients.level = WARN
logger.raft.name = org.apache.kafka.raft
logger.raft.level = WARN
logger.snapshot.name = org.apache.kafka.snapshot
logger.snapshot.level = WARN
logger.image.name = org.apache.kafka.image
logger.image.level = WARN
logger.metadata.name = org.apache.kafka.metadata
logger.metadata.level = WARN
logger.storage.name = org.apache.kafka.storage
logger.storage.level = WARN
logger.coordinator.name = org.apache.kafka.coordinator
logger.coordinator.level = WARN
logger.kafkalog.name = kafka.log
logger.kafkalog.level = WARN
logger.cluster.name = kafka.cluster
logger.cluster.level = WARN
logger.kcoord.name = kafka.coordinator
logger.kcoord.level = WARN
logger.statechange.name = state.change.logger
logger.statechange.level = WARN
logger.request.name = kafka.request.logger
logger.request.level = WARN
logger.authorizer.name = kafka.authorizer.logger
logger.authorizer.level = WARN
logger.appinfo.name = org.apache.kafka.common.utils.AppInfoParser
logger.appinfo.level = WARN
logger.metrics.name = org.apache.kafka.common.metrics
logger.metrics.level = WARN
logger.network.name = org.apache.kafka.common.network
logger.network.level = WARN
logger.fetcher.name = kafka.server.ReplicaFetcherManager
logger.fetcher.level = WARN
logger.alterlog.name = kafka.server.ReplicaAlterLogDirsManager
logger.alterlog.level = WARN
# The readiness check greps for "Kafka Server started" from this logger.
logger.raftserver.name = kafka.server.KafkaRaftServer
logger.raftserver.level = INFO
EOF
}

java_opts() {
  # shellcheck disable=SC2206 # KAFKA_HEAP is a list of JVM flags on purpose
  JAVA_OPTS=($KAFKA_HEAP
    -XX:+UseG1GC -XX:MaxGCPauseMillis=20 -XX:InitiatingHeapOccupancyPercent=35
    -XX:+ExplicitGCInvokesConcurrent -XX:+ExitOnOutOfMemoryError
    -Djava.awt.headless=true
    -Dlog4j2.configurationFile="$LOG4J_FILE"
    -Dkafka.logs.dir="$LOG_DIR")
}

# ------------------------------------------------------------- process ----

read_pid() {
  [[ -f "$PID_FILE" ]] || return 1
  local pid
  pid=$(tr -dc '0-9' <"$PID_FILE")
  [[ -n "$pid" ]] || return 1
  echo "$pid"
}

# True if $1 is a live process that is our broker (guards against pid reuse).
is_our_broker() {
  local pid=$1 cmd
  kill -0 "$pid" 2>/dev/null || return 1
  if [[ -r /proc/$pid/cmdline ]]; then
    cmd=$(tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null) || return 1
  else
    cmd=$(ps -p "$pid" -o args= 2>/dev/null) || return 1
  fi
  [[ "$cmd" == *kafka.Kafka* && "$cmd" == *"$CONF_FILE"* ]]
}

port_open() {
  timeout 2 bash -c "exec 3<>/dev/tcp/$HOST/$1" 2>/dev/null
}

running_pid() {
  local pid
  pid=$(read_pid) || return 1
  is_our_broker "$pid" || return 1
  echo "$pid"
}

log_tail() {
  echo "---- last 40 lines of $LOG_FILE ----" >&2
  tail -n 40 "$LOG_FILE" >&2 2>/dev/null || true
  echo "-------------------------------------" >&2
}

# Ready = the broker logged its "started" line (KafkaRaftServer logs it only
# after the broker is unfenced) and the client port accepts connections.
wait_ready() {
  local pid=$1 deadline=$((SECONDS + KAFKA_START_TIMEOUT))
  while ((SECONDS < deadline)); do
    if ! kill -0 "$pid" 2>/dev/null; then
      log_tail
      rm -f "$PID_FILE"
      die "broker (pid $pid) exited during startup"
    fi
    if grep -q "$READY_LINE" "$LOG_FILE" 2>/dev/null && port_open "$KAFKA_PORT"; then
      return 0
    fi
    sleep 0.2
  done
  log_tail
  die "broker (pid $pid) not ready after ${KAFKA_START_TIMEOUT}s (still running; '$0 stop' to kill it)"
}

format_storage() {
  if [[ -f "$DATA_DIR/meta.properties" ]]; then
    return 0
  fi
  log "formatting $DATA_DIR (cluster id $KAFKA_CLUSTER_ID)"
  java_opts
  if ! "$JAVA" "${JAVA_OPTS[@]}" -cp "$LIB_DIR/*" kafka.tools.StorageTool format \
      --cluster-id "$KAFKA_CLUSTER_ID" --config "$CONF_FILE" --ignore-formatted \
      >>"$LOG_FILE" 2>&1 9>&-; then
    log_tail
    die "formatting $DATA_DIR failed"
  fi
}

start() {
  fetch
  take_lock
  local pid
  if pid=$(running_pid); then
    if port_open "$KAFKA_PORT"; then
      log "already running (pid $pid, $HOST:$KAFKA_PORT)"
      [[ -f "$PRINCIPALS_DIR/tributary-ctl.env" ]] || acls
      return 0
    fi
    # Alive but not answering yet: probably still starting up.
    log "pid $pid is starting, waiting for it..."
    wait_ready "$pid"
    log "running (pid $pid, $HOST:$KAFKA_PORT)"
    return 0
  fi
  rm -f "$PID_FILE"
  if port_open "$KAFKA_PORT"; then
    die "port $KAFKA_PORT is already in use by a process this script did not start"
  fi
  if port_open "$KAFKA_CONTROLLER_PORT"; then
    die "port $KAFKA_CONTROLLER_PORT (controller) is already in use by a process this script did not start"
  fi
  if port_open "$KAFKA_SASL_PORT"; then
    die "port $KAFKA_SASL_PORT (SASL_SSL) is already in use by a process this script did not start"
  fi

  write_config
  # One log per run; the previous run's log is kept as kafka.log.1.
  [[ -f "$LOG_FILE" ]] && mv -f "$LOG_FILE" "$LOG_FILE.1"
  : >"$LOG_FILE"
  format_storage

  local t0=$SECONDS
  java_opts
  # fd 9 (the lock) is closed for the broker so it does not hold the lock.
  # The child writes its own pid before exec'ing java, so the pid file holds
  # the java pid whether or not setsid had to fork.
  PIDF=$PID_FILE setsid nohup bash -c 'echo $$ >"$PIDF"; exec "$@"' kafka-broker \
    "$JAVA" "${JAVA_OPTS[@]}" -cp "$LIB_DIR/*" kafka.Kafka "$CONF_FILE" \
    >>"$LOG_FILE" 2>&1 </dev/null 9>&- &
  local i
  for i in $(seq 50); do
    [[ -s "$PID_FILE" ]] && break
    sleep 0.1
  done
  pid=$(read_pid) || die "broker did not write $PID_FILE"
  log "starting (pid $pid), log: $LOG_FILE"
  wait_ready "$pid"
  acls
  log "running (pid $pid, $HOST:$KAFKA_PORT, SASL_SSL $HOST:$KAFKA_SASL_PORT) after $((SECONDS - t0))s"
}

# The SASL principals, their ACLs (for NAMESPACE's topics when given) and each principal's
# client settings in $PRINCIPALS_DIR/<principal>.env.
acls() {
  local ns=${1:-} p f
  mkdir -p "$PRINCIPALS_DIR"
  chmod 700 "$PRINCIPALS_DIR"
  write_tools_log4j
  # shellcheck disable=SC2086 # an empty $ns is no argument
  "$JAVA" -Xmx256m -Dlog4j2.configurationFile="$CONF_DIR/tools-log4j2.properties" -cp "$LIB_DIR/*" \
    "$SCRIPT_DIR/Secure.java" "$HOST:$KAFKA_PORT" "$PRINCIPALS_DIR" "$CHAINS" $ns 9>&- \
    || die "creating the SASL principals and ACLs failed"
  for f in "$PRINCIPALS_DIR"/*.password; do
    p=$(basename "$f" .password)
    (umask 077; printf '%s\n' \
      "KAFKA_BOOTSTRAP=$HOST:$KAFKA_SASL_PORT" \
      "KAFKA_PROP_SECURITY_PROTOCOL=SASL_SSL" \
      "KAFKA_PROP_SASL_MECHANISM=SCRAM-SHA-512" \
      "KAFKA_PROP_SASL_USERNAME=$p" \
      "KAFKA_PROP_SASL_PASSWORD=$(cat "$f")" \
      "KAFKA_PROP_SSL_CA_LOCATION=$TLS_DIR/ca.pem" >"$PRINCIPALS_DIR/$p.env.$$"
      # Renamed into place: a service starting meanwhile never reads half a file.
      mv -f "$PRINCIPALS_DIR/$p.env.$$" "$PRINCIPALS_DIR/$p.env")
  done
}

stop() {
  take_lock
  local pid
  if ! pid=$(read_pid); then
    log "not running"
    return 0
  fi
  if ! is_our_broker "$pid"; then
    log "not running (removing stale pid file, pid $pid)"
    rm -f "$PID_FILE"
    return 0
  fi
  log "stopping pid $pid"
  kill -TERM "$pid" 2>/dev/null || true
  local deadline=$((SECONDS + KAFKA_STOP_TIMEOUT))
  while kill -0 "$pid" 2>/dev/null && ((SECONDS < deadline)); do
    sleep 0.2
  done
  if kill -0 "$pid" 2>/dev/null; then
    log "pid $pid still alive after ${KAFKA_STOP_TIMEOUT}s, sending SIGKILL"
    kill -KILL "$pid" 2>/dev/null || true
    while kill -0 "$pid" 2>/dev/null; do sleep 0.1; done
  fi
  rm -f "$PID_FILE"
  log "stopped"
}

status() {
  local pid
  if pid=$(running_pid); then
    if port_open "$KAFKA_PORT"; then
      echo "kafka: running (pid $pid, $HOST:$KAFKA_PORT)"
    else
      echo "kafka: starting or unresponsive (pid $pid, $HOST:$KAFKA_PORT not answering)"
    fi
  else
    echo "kafka: stopped"
    return 3
  fi
}

# Runs a Kafka CLI class (TopicCommand, ConsoleProducer, ...) against the jars,
# logging warnings only, to stderr.
tool() {
  [[ $# -ge 1 ]] || die "usage: $0 tool CLASS [ARGS...]"
  fetch >&2
  write_tools_log4j
  exec "$JAVA" -Xmx512m -Dlog4j2.configurationFile="$CONF_DIR/tools-log4j2.properties" -cp "$LIB_DIR/*" "$@"
}

write_tools_log4j() {
  mkdir -p "$CONF_DIR"
  local cfg=$CONF_DIR/tools-log4j2.properties
  cat >"$cfg" <<'EOF'
status = warn
appender.stderr.type = Console
appender.stderr.name = STDERR
appender.stderr.target = SYSTEM_ERR
appender.stderr.layout.type = PatternLayout
appender.stderr.layout.pattern = [%d] %p %m (%c)%n
rootLogger.level = WARN
rootLogger.appenderRef.stderr.ref = STDERR
EOF
}

case "${1:-}" in
  fetch) fetch ;;
  start) start ;;
  stop) stop ;;
  restart) stop; start ;;
  status) status ;;
  classpath) fetch >&2; echo "$LIB_DIR/*" ;;
  acls) shift; acls "${1:-}" ;;
  tool) shift; tool "$@" ;;
  *)
    echo "usage: $0 {fetch|start|stop|restart|status|classpath|tool CLASS ARGS...}" >&2
    exit 2
    ;;
esac
