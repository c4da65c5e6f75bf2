#!/usr/bin/env bash
# `make test`: installs what is missing, checks formatting and lints, builds, starts the real
# infrastructure, runs every test against it, and stops it again, whatever the outcome.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
t0=$(date +%s)
bash dev/system-deps.sh
echo "== lint"
cargo fmt --all -- --check
# The provider folders' files and each chain's loadgen.rs are compiled through #[path] modules a macro declares
# (crates/engine/build.rs), which `cargo fmt` does not follow: checked by name.
rustfmt --edition 2021 --check providers/*/*.rs services/*/loadgen.rs
cargo clippy --release --workspace --all-targets -- -D warnings
echo "== build"
# Warnings fail the build too: clippy does not see an import only `#[cfg(test)]` code uses
# through `use super::*`, the plain build of the library does.
cargo build --release --workspace --all-targets 2>&1 | tee target/build.log
if grep -q '^warning' target/build.log; then
    echo "make test: the build printed warnings (above); fix them" >&2
    exit 1
fi
echo "== deployment files (kustomize, kube-score, promtool)"
bash dev/lint-deploy.sh
# The build leaves gigabytes of dirty pages; write them out now rather than under the
# brokers' fsyncs while the tests run.
sync
echo "== infrastructure"
trap 'echo "== stopping infrastructure"; bash dev/infra.sh down >/dev/null 2>&1 || true' EXIT
bash dev/infra.sh up
set -a; . .infra/env; set +a
# The namespaces earlier runs left on this broker (every test makes its own; a run that
# failed or was stopped may not have deleted them): thousands of partitions slow the broker
# and every later run, so a run starts without them. Only the tests' generated names (t<10
# hex>, airflow<8 hex>, sharetest<10 hex>, demo<digits>); the project's own topics stay.
echo "== deleting the topic namespaces earlier test runs left"
bash dev/kafka/run.sh tool org.apache.kafka.tools.TopicCommand --bootstrap-server "$KAFKA_BOOTSTRAP" \
  --delete --if-exists \
  --topic '(t[0-9a-f]{10}|airflow[0-9a-f]{8}|sharetest[0-9a-f]{10}|demo[0-9]+)[.].*' 2>&1 | tail -2 || true
echo "== tests"
cargo test --release --workspace --no-fail-fast -- --test-threads 2
echo "== Airflow DAGs (real Airflow in airflow/.venv, against the real tributary binary)"
bash dev/airflow.sh test
echo "== Spark audience export (PySpark + delta-spark, against the real tributary binary)"
TRIBUTARY_REQUIRE_BIN=1 bash dev/spark.sh test
echo "== Sharing (the delta-sharing Python client against serve)"
bash dev/sharing.sh test
echo "== make demo, twice (services in the background, the lake in a temporary directory)"
bash dev/demo-check.sh
echo "== make test passed in $(( $(date +%s) - t0 )) s"
