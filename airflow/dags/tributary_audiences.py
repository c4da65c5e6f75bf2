"""Audiences into the lake: `tributary audience --materialize` once per (tenant, list) writes
the list's members, net of every suppression (DESIGN.md "The read side"), into the Delta
table <lake>/audiences (partitioned by tenant_id and list_id), replacing that list's previous
members in one commit, so a retried or repeated run is harmless.

Which lists:
- a manual run with the params `tenant` and `lists` ({"tenant": "acme", "lists": ["newsletter",
  "offers"]}): those lists of that tenant;
- a manual run with `tenant` alone: that tenant's lists in TRIBUTARY_AUDIENCES;
- the daily run, or a manual run without params: every list of TRIBUTARY_AUDIENCES (Airflow
  Variable, else the worker's environment), `tenant:list1,list2;tenant2:list3`; when it is
  empty, there is nothing to do and the run succeeds with `audience` skipped.

`targets` resolves and checks them; `audience` is one mapped task instance per (tenant, list)
(at most TRIBUTARY_AUDIENCE_PARALLELISM at a time, default 1: they all commit to the same
table); its XCom is the CLI's JSON line {"tenant", "list", "members", "table", "version"};
`summary` checks and logs them.
"""

from __future__ import annotations

import hashlib
import os
import shlex
import sys
from datetime import datetime, timedelta

from airflow.sdk import DAG, Param, task
from airflow.sdk.exceptions import AirflowFailException

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))  # the shared module beside this file
import tributary_common as tc  # noqa: E402

MAX_LIST_ID_LEN = 256
PARALLELISM = int(tc.env_setting("TRIBUTARY_AUDIENCE_PARALLELISM", "1"))


def check_list_id(list_id: object, where: str) -> str:
    """A list id: a non-empty string without control characters or surrounding blanks."""
    if not isinstance(list_id, str) or not list_id.strip():
        raise ValueError(f"{where}: a list id must be a non-empty string, got {list_id!r}")
    control = any(ord(c) < 32 or ord(c) == 127 for c in list_id)
    if list_id != list_id.strip() or len(list_id) > MAX_LIST_ID_LEN or control:
        raise ValueError(f"{where}: not a list id (blanks around it, control characters or too long): {list_id!r}")
    return list_id


def check_tenant(tenant: object, where: str) -> str:
    if not isinstance(tenant, str) or not tc.TENANT_RE.match(tenant):
        raise ValueError(f"{where}: a tenant id must match {tc.TENANT_RE.pattern}, got {tenant!r}")
    return tenant


def parse_audiences(text: str | None) -> dict[str, list[str]]:
    """TRIBUTARY_AUDIENCES, `tenant:list1,list2;tenant2:list3`, as tenant -> lists (in the
    order given, without repeats; blanks around names and empty entries ignored)."""
    out: dict[str, list[str]] = {}
    for n, entry in enumerate((text or "").split(";")):
        if not entry.strip():
            continue
        tenant, colon, lists = entry.partition(":")
        where = f"TRIBUTARY_AUDIENCES entry {n + 1} ({entry.strip()!r})"
        if not colon:
            raise ValueError(f"{where}: expected tenant:list1,list2")
        tenant = check_tenant(tenant.strip(), where)
        names = [check_list_id(name.strip(), where) for name in lists.split(",") if name.strip()]
        if not names:
            raise ValueError(f"{where}: no list")
        known = out.setdefault(tenant, [])
        known.extend(name for name in names if name not in known)
    return out


def resolve_targets(tenant: str | None, lists: list | None, configured: str | None) -> list[dict[str, str]]:
    """The (tenant, list) pairs of a run: the params if given, else TRIBUTARY_AUDIENCES."""
    config = parse_audiences(configured)
    lists = list(lists or [])
    if tenant:
        tenant = check_tenant(tenant, "param tenant")
        if lists:
            chosen = [check_list_id(name, "param lists") for name in lists]
        elif config.get(tenant):
            chosen = config[tenant]
        else:
            raise ValueError(f"no lists given for tenant {tenant} and TRIBUTARY_AUDIENCES names none of its lists")
        return [{"tenant": tenant, "list": name} for name in dict.fromkeys(chosen)]
    if lists:
        raise ValueError("param lists given without param tenant")
    return [{"tenant": t, "list": name} for t, names in config.items() for name in names]


def audience_script(target: dict) -> str:
    """The script materializing one list; its XCom is the CLI's JSON line."""
    tenant = check_tenant(target.get("tenant"), "target")
    list_id = check_list_id(target.get("list"), "target")
    # Mapped instances may run side by side: locally each keeps its result in its own file
    # (named without the list id's characters); a pod has its own xcom file.
    result = f"audience.{tenant}.{hashlib.sha256(list_id.encode()).hexdigest()[:16]}.xcom.json"
    return f"""
[ "$XCOM_FILE" = {tc.K8S_XCOM_FILE} ] || XCOM_FILE="$(dirname "$XCOM_FILE")/{result}"
rm -f "$XCOM_FILE"
OUT="$XCOM_FILE.out"
rc=0
"$TRIBUTARY_BIN" audience --tenant {shlex.quote(tenant)} --list {shlex.quote(list_id)} --lake "$LAKE_URI" \\
  --materialize --json > "$OUT" || rc=$?
cat "$OUT"
if [ "$rc" -ne 0 ]; then rm -f "$OUT"; exit "$rc"; fi
grep '^{{' "$OUT" | tail -n 1 > "$XCOM_FILE" || true
rm -f "$OUT"
if [ ! -s "$XCOM_FILE" ]; then echo "tributary audience --json printed no JSON line" >&2; exit 1; fi
echo "$XCOM_FILE"
"""


with DAG(
    dag_id="tributary_audiences",
    description="Materialize lists' members into <lake>/audiences (daily, or triggered with {tenant, lists})",
    schedule="@daily",
    start_date=datetime(2025, 1, 1),
    catchup=False,
    max_active_runs=1,
    dagrun_timeout=timedelta(hours=6),
    default_args=tc.default_args(),
    params={
        "tenant": Param(None, type=["null", "string"], pattern=tc.TENANT_RE.pattern,
                        description="Tenant id (empty: every tenant of TRIBUTARY_AUDIENCES)"),
        "lists": Param([], type="array", items={"type": "string", "minLength": 1},
                       description="List ids of the tenant (empty: its lists in TRIBUTARY_AUDIENCES)"),
    },
    tags=["tributary", "lake", "audiences"],
    doc_md=__doc__,
) as dag:

    @task(retries=0, execution_timeout=timedelta(minutes=5))
    def targets(**context) -> list[dict[str, str]]:
        """The (tenant, list) pairs to materialize (params, else TRIBUTARY_AUDIENCES)."""
        params = context["params"]
        try:
            chosen = resolve_targets(params.get("tenant"), params.get("lists"), tc.setting("TRIBUTARY_AUDIENCES"))
        except ValueError as exc:
            raise AirflowFailException(f"invalid audience request: {exc}") from None
        if not chosen:
            print("no lists to materialize: neither the run's params nor TRIBUTARY_AUDIENCES name any")
        for t in chosen:
            print(f"materializing list {t['list']!r} of tenant {t['tenant']}")
        return chosen

    audience = tc.tributary_task(
        "audience",
        audience_script,
        expand_over=targets(),
        xcom_file=True,
        execution_timeout=timedelta(hours=2),
        max_active_tis_per_dagrun=PARALLELISM,
    )

    @task(execution_timeout=timedelta(minutes=5))
    def summary(results) -> dict:
        """Each materialized list's result (the CLI's JSON line), checked and logged."""
        results = list(results)
        bad = [r for r in results if not isinstance(r, dict) or not {"tenant", "list", "members"} <= set(r)]
        if bad:
            raise AirflowFailException(f"tributary audience --json gave results without tenant/list/members: {bad}")
        for r in results:
            print(f"tenant {r['tenant']} list {r['list']!r}: {r['members']} member(s) "
                  f"in {r.get('table')} (version {r.get('version')})")
        return {"lists": len(results), "members": sum(int(r["members"]) for r in results), "results": results}

    summary(audience.output)
