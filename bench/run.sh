#!/usr/bin/env bash
# `make bench`: runs bench/src/bin/bench.rs against the local infrastructure; figures go to
# bench/results/latest.md. BENCH_EVENTS sets the size (default 1 000 000).
# Then bench/src/bin/readside.rs: the read side's figures, appended to latest.md as "Read side"
# and written to bench/results/readside.json. BENCH_READSIDE_SCALE=small runs it at 1/10 size;
# BENCH_LAKE_EVENTS sets its lake's mailing events (default 10 000 000).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
set -a; . .infra/env; set +a
cargo build --release -p tributary-bench --bins -p tributary-mailings -p tributary-sink \
    -p tributary-serve -p tributary-unsubscribes -p tributary-ctl
target/release/bench "${BENCH_EVENTS:-1000000}"
target/release/readside
