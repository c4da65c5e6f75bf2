#!/usr/bin/env bash
# `make bench`: runs bench/src/bin/bench.rs against the local infrastructure (the addresses in
# $INFRA_DIR/env, default .infra/env: `INFRA_DIR=/elsewhere bash bench/run.sh` runs against
# another one). BENCH_EVENTS sets the size (default 1 000 000). It compares the mailings chain
# service with a bare rdkafka transactional pass-through and with the Kafka Streams peer
# (bench/peers/kstreams-dedup, built here with Maven; BENCH_PEER=0 skips it), restores 10 M
# keys (BENCH_RESTORE_KEYS), runs the sink, and measures latency raw -> clean and raw -> lake
# at the pipeline's peak (asked for the chain's drain rate, or BENCH_LATENCY_PEAK), at half of
# that peak and at half of the chain's drain rate (BENCH_LATENCY_SECS per phase, default 15),
# and runs the chain alone at 3 M and 10 M events (BENCH_GROWTH: the sizes; 0 skips them).
# Figures go to bench/results/latest.md and latest.json; each run adds a row to history.csv
# and redraws history.svg. It deletes the topics it made.
# Then bench/src/bin/readside.rs: the read side's figures, appended to latest.md as "Read side"
# and written to bench/results/readside.json (BENCH_READSIDE=0 skips it).
# BENCH_READSIDE_SCALE=small runs it at 1/10 size; BENCH_LAKE_EVENTS sets its lake's mailing
# events (default 10 000 000).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
INFRA_DIR="${INFRA_DIR:-$ROOT/.infra}"
set -a; . "$INFRA_DIR/env"; set +a
cargo build --release -p tributary-bench --bins -p tributary-mailings -p tributary-sink \
    -p tributary-serve -p tributary-unsubscribes -p tributary-ctl
if [ "${BENCH_PEER:-1}" != 0 ]; then
    # Maven Central on the first run, the local repository after that.
    echo "bench: building the Kafka Streams peer (mvn package)" >&2
    mvn -q -B -f bench/peers/kstreams-dedup/pom.xml package
fi
echo "bench: machine load before the run: $(cut -d' ' -f1-3 /proc/loadavg)" >&2
target/release/bench "${BENCH_EVENTS:-1000000}"
if [ "${BENCH_READSIDE:-1}" != 0 ]; then
    # Its topics (namespaces rs<run>p and rs<run>f) deleted afterwards, whatever happened.
    status=0
    target/release/readside || status=$?
    bash dev/kafka/run.sh tool org.apache.kafka.tools.TopicCommand --bootstrap-server "$KAFKA_BOOTSTRAP" \
        --delete --if-exists --topic 'rs[0-9]+[pf][.].*' >/dev/null 2>&1 || true
    exit $status
fi
