"""Hourly reconciliation: `tributary reconcile` checks that every raw offset is accounted for
(clean, DLQ or duplicate) and that the clean topics match the lake.

`reconcile` runs the CLI and keeps its JSON report: the task's XCom (`exit_code`, `report`,
`report_file`) and a file in the run's directory (TRIBUTARY_REPORT_DIR/<dag>/<run>/
reconciliation.json). A run of the CLI that wrote no report, or that could not check some
chains (exit 3: Kafka, the registry or the lake unreadable, credentials refused), is an error
and is retried; a report with discrepancies (exit 1) is a result: `check_report` logs it and
fails the run, without retrying.
"""

from __future__ import annotations

import os
import sys
import json
from datetime import datetime, timedelta

from airflow.sdk import DAG, task
from airflow.sdk.exceptions import AirflowFailException

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))  # the shared module beside this file
import tributary_common as tc  # noqa: E402

RECONCILE_SCRIPT = """
RUN_DIR="$TRIBUTARY_REPORT_DIR/$RUN_SUBDIR"
REPORT_FILE="$RUN_DIR/reconciliation.json"
mkdir -p "$RUN_DIR"; rm -f "$REPORT_FILE"
set +e
"$TRIBUTARY_BIN" reconcile --lake "$LAKE_URI" --report "$REPORT_FILE" \\
  ${TRIBUTARY_CHAINS:+--chains "$TRIBUTARY_CHAINS"} \\
  ${TOPIC_NAMESPACE:+--namespace "$TOPIC_NAMESPACE"} \\
  ${RECONCILE_METRICS_FILE:+--metrics-file "$RECONCILE_METRICS_FILE"}
rc=$?
set -e
if [ ! -s "$REPORT_FILE" ]; then
  echo "tributary reconcile exited $rc without writing a report: an error, not a result" >&2
  [ "$rc" -ne 0 ] && exit "$rc"
  exit 1
fi
echo "reconciliation report (tributary reconcile exited $rc):"; cat "$REPORT_FILE"; echo
if [ "$rc" -eq 3 ]; then
  echo "tributary reconcile could not check some chains (above): an error, retried, not a result" >&2
  exit 3
fi
{ printf '{"exit_code": %d, "report_file": "%s", "report": ' "$rc" "$REPORT_FILE"; cat "$REPORT_FILE"; printf '}\\n'; } > "$XCOM_FILE"
echo "$XCOM_FILE"
"""

with DAG(
    dag_id="tributary_reconciliation",
    description="Reconcile raw, clean, DLQ topics and the lake (hourly); a discrepancy fails the run",
    schedule="@hourly",
    start_date=datetime(2025, 1, 1),
    catchup=False,
    max_active_runs=1,
    dagrun_timeout=timedelta(hours=1),
    default_args=tc.default_args(),
    tags=["tributary", "lake", "kafka"],
    doc_md=__doc__,
) as dag:
    reconcile = tc.tributary_task(
        "reconcile",
        RECONCILE_SCRIPT,
        xcom_file=True,
        env={"RECONCILE_METRICS_FILE": "{{ var.value.get('RECONCILE_METRICS_FILE', '') }}"},
        execution_timeout=timedelta(minutes=30),
    )

    @task(trigger_rule="all_done", retries=0, execution_timeout=timedelta(minutes=5))
    def check_report(**context) -> dict:
        """Keeps the report in the run's directory, logs it, and fails the run on a discrepancy."""
        result = context["ti"].xcom_pull(task_ids="reconcile")
        if not result:
            raise AirflowFailException("tributary reconcile produced no report: see the reconcile task's log")
        report, exit_code = result["report"], int(result["exit_code"])
        path = tc.run_dir(context) / "reconciliation.json"
        if not path.is_file():  # a pod's report reaches this side through XCom
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(json.dumps(report, indent=2) + "\n")
        print(f"reconciliation report ({path}):\n{json.dumps(report, indent=2)}")
        if exit_code != 0:
            raise AirflowFailException(
                f"reconciliation found discrepancies (tributary reconcile exited {exit_code}); report: {path}"
            )
        return {"report_file": str(path), "exit_code": exit_code}

    reconcile >> check_report()
