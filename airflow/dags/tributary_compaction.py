"""Hourly compaction of the lake: a plan first, then `tributary compact` per chain (one
mapped task instance per configured chain), then, once a day, `tributary vacuum`.

Compaction bin-packs the small files of closed partitions into large sorted files,
atomically and idempotently, so a retried or repeated run is harmless.
"""

from __future__ import annotations

import os
import sys
import shlex
from datetime import datetime, timedelta

from airflow.sdk import DAG, task

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))  # the shared module beside this file
import tributary_common as tc  # noqa: E402

COMPACT_FLAGS = (
    '--target-size "$COMPACT_TARGET_SIZE" --min-files "$COMPACT_MIN_FILES" '
    '--closed-before-days "$COMPACT_CLOSED_BEFORE_DAYS"'
)

# `--json` adds one JSON line (the plan and metrics) to the text; that line is the XCom.
PLAN_SCRIPT = f"""
OUT="$XCOM_FILE.out"
"$TRIBUTARY_BIN" compact --lake "$LAKE_URI" --plan {COMPACT_FLAGS} --json > "$OUT"
cat "$OUT"
grep '^{{' "$OUT" | tail -n 1 > "$XCOM_FILE" || true
rm -f "$OUT"
echo "$XCOM_FILE"
"""

VACUUM_SCRIPT = """
"$TRIBUTARY_BIN" vacuum --lake "$LAKE_URI" --retention "$VACUUM_RETENTION"
"""


def compact_script(chain: str) -> str:
    """The script compacting one chain."""
    if chain not in tc.CHAINS:
        raise ValueError(f"unknown chain {chain!r}")
    return f'\n"$TRIBUTARY_BIN" compact --lake "$LAKE_URI" --chain {shlex.quote(chain)} {COMPACT_FLAGS} --json\n'


# The hour (UTC) of the run that also vacuums; a run triggered with {"vacuum": true} does too.
VACUUM_HOUR = int(tc.env_setting("TRIBUTARY_VACUUM_HOUR", "0"))

with DAG(
    dag_id="tributary_compaction",
    description="Compact the lake's small files per chain (hourly), vacuum daily",
    schedule="@hourly",
    start_date=datetime(2025, 1, 1),
    catchup=False,
    max_active_runs=1,
    dagrun_timeout=timedelta(hours=4),
    default_args=tc.default_args(),
    tags=["tributary", "lake"],
    doc_md=__doc__,
) as dag:

    @task(execution_timeout=timedelta(minutes=5))
    def chains() -> list[str]:
        """The chains to compact (TRIBUTARY_CHAINS, read when the run starts)."""
        return tc.configured_chains()

    plan = tc.tributary_task("plan", PLAN_SCRIPT, xcom_file=True, execution_timeout=timedelta(minutes=15))

    compact = tc.tributary_task(
        "compact",
        compact_script,
        expand_over=chains(),
        execution_timeout=timedelta(hours=1),
        max_active_tis_per_dagrun=2,
    )

    @task.short_circuit(execution_timeout=timedelta(minutes=5))
    def vacuum_due(**context) -> bool:
        """Vacuum once a day: in the run of VACUUM_HOUR, or when asked by the run's conf."""
        conf = (context["dag_run"].conf or {}) if context.get("dag_run") else {}
        if "vacuum" in conf:
            return bool(conf["vacuum"])
        when = context.get("logical_date") or context["dag_run"].run_after
        return when.hour == VACUUM_HOUR

    vacuum = tc.tributary_task("vacuum", VACUUM_SCRIPT, execution_timeout=timedelta(hours=2))

    plan >> compact >> vacuum_due() >> vacuum
