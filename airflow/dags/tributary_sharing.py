"""Refreshes the analytics grants' shared tables (Delta Sharing) every few minutes:
`tributary share refresh` reads the grants topic, who is withheld at each grantor (blocked or
unsubscribed from all its lists) from the lake, and only the grantors' files added since the
last refresh; it rewrites only the shared files holding a newly withheld person and deletes
the tables of revoked or expired grants. In production `serve` runs with
SHARING_REFRESH=off and this DAG is the tables' one writer; locally `serve` refreshes on its
own timer instead.

The command is idempotent: a retried or repeated run finds nothing more to do.
"""

from __future__ import annotations

import os
import sys
from datetime import datetime, timedelta

from airflow.sdk import DAG

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))  # the shared module beside this file
import tributary_common as tc  # noqa: E402

REFRESH_SCRIPT = """
"$TRIBUTARY_BIN" share refresh --lake "$LAKE_URI" \\
  ${TOPIC_NAMESPACE:+--namespace "$TOPIC_NAMESPACE"} --json > "$XCOM_FILE.out"
cat "$XCOM_FILE.out"
grep '^{' "$XCOM_FILE.out" | tail -n 1 > "$XCOM_FILE"
rm -f "$XCOM_FILE.out"
echo "$XCOM_FILE"
"""

with DAG(
    dag_id="tributary_sharing",
    description="Refresh the analytics grants' shared tables from the lake (every 5 minutes)",
    schedule=timedelta(minutes=5),
    start_date=datetime(2025, 1, 1),
    catchup=False,
    max_active_runs=1,
    dagrun_timeout=timedelta(minutes=30),
    default_args=tc.default_args(),
    tags=["tributary", "lake", "sharing"],
    doc_md=__doc__,
) as dag:
    refresh = tc.tributary_task(
        "share_refresh",
        REFRESH_SCRIPT,
        xcom_file=True,
        grants_kek=True,
        execution_timeout=timedelta(minutes=20),
    )
