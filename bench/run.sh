#!/usr/bin/env bash
# `make bench`: runs bench/src/bin/bench.rs against the local infrastructure; figures go to
# bench/results/latest.md. BENCH_EVENTS sets the size (default 1 000 000).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
set -a; . .infra/env; set +a
cargo build --release -p tributary-bench --bins -p tributary-mailings -p tributary-sink
target/release/bench "${BENCH_EVENTS:-1000000}"
