"""`tributary_audiences` end to end through `dag.test()` with the real binary: the lists a
tenant asks for, then the scheduled run's lists from TRIBUTARY_AUDIENCES, materialized into
the lake's Delta table <lake>/audiences (checked with `deltalake`: exactly the expected members
per tenant and list, a list's previous members replaced, other lists untouched).

Skipped, with the reason, while the binary lacks `tributary audience` (a failure instead with
TRIBUTARY_REQUIRE_BIN=1). The rules themselves are checked case by case by spark/tests.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pyarrow as pa
import pytest
from deltalake import DeltaTable, write_deltalake

import lake
from test_e2e import explain, get_dag, settings, states  # noqa: F401  (settings: a fixture)

T0 = datetime(2025, 11, 1, tzinfo=timezone.utc)
NL, OFFERS = "newsletter", "offers"
ANN, BOB, CAROL = "ann@example.com", "bob@example.com", "carol@example.com"
BLOCKED, OUT, DOMAIN_BLOCKED = "blocked@example.com", "out@example.com", "x@blocked.example"


def sha(email: str) -> str:
    return hashlib.sha256(email.encode()).hexdigest()


def rows(chain: str, events: list[dict]) -> pa.Table:
    """Rows of a chain table in the sink's layout (lake.arrow_schema), defaults for the rest."""
    schema = lake.arrow_schema(chain)
    cols: dict[str, list] = {f.name: [] for f in schema}
    for n, e in enumerate(events):
        t = T0 + timedelta(hours=e.pop("h"))
        email = e.pop("email", None)
        base = {
            "tenant_id": e.pop("tenant", "acme"), "event_id": f"{chain}-{e.get('id', n)}-{t.timestamp()}",
            "event_time": t, "ingested_at": t, "source": "json", "email": email,
            "email_sha256": sha(email) if email else None, "event_date": t.strftime("%Y-%m-%d"),
        }
        for f in schema:
            value = base.get(f.name, e.get(f.name))
            if value is None and f.name == "attributes":
                value = []
            cols[f.name].append(value)
    return pa.table(cols, schema=schema)


def append(root: Path, chain: str, events: list[dict]) -> None:
    write_deltalake(str(root / chain), rows(chain, events), mode="append", partition_by=lake.PARTITIONS)


def build(root: Path) -> None:
    append(root, "subscriptions", [
        {"email": ANN, "h": 1, "list_id": NL, "action": "SUBSCRIBE"},
        {"email": ANN, "h": 1, "list_id": OFFERS, "action": "SUBSCRIBE"},
        {"email": BOB, "h": 2, "list_id": NL, "action": "CONFIRM", "consent_ip": "192.0.2.1"},
        {"email": CAROL, "h": 2, "list_id": OFFERS, "action": "SUBSCRIBE"},
        {"email": BLOCKED, "h": 1, "list_id": NL, "action": "SUBSCRIBE"},
        {"email": OUT, "h": 1, "list_id": NL, "action": "SUBSCRIBE"},
        {"email": DOMAIN_BLOCKED, "h": 1, "list_id": NL, "action": "SUBSCRIBE"},
        {"email": BLOCKED, "h": 1, "list_id": NL, "action": "SUBSCRIBE", "tenant": "globex"},
    ])
    append(root, "unsubscribes", [{"email": OUT, "h": 2, "list_id": None}])
    append(root, "blocklists", [
        {"email": BLOCKED, "h": 2, "action": "ADD", "kind": "EMAIL", "value": BLOCKED, "reason": "HARD_BOUNCE"},
        {"h": 2, "action": "ADD", "kind": "DOMAIN", "value": "blocked.example", "reason": "MANUAL"},
    ])
    append(root, "users", [{"email": ANN, "h": 1, "user_id": "u-ann", "first_name": "Ann"}])
    append(root, "mailings", [{"email": BOB, "h": 3, "message_id": "m-1", "event_type": "SENT"}])


def audiences(root: Path) -> dict[tuple[str, str], set[str]]:
    """The materialized table: (tenant, list) -> emails (each row's email_sha256 checked)."""
    table = DeltaTable(str(root / "audiences"))
    assert set(table.metadata().partition_columns) == {"tenant_id", "list_id"}
    out: dict[tuple[str, str], set[str]] = {}
    for r in table.to_pyarrow_table().to_pylist():
        assert r["email_sha256"] == sha(r["email"]), r
        key = (r["tenant_id"], r["list_id"])
        assert r["email"] not in out.get(key, set()), f"{r['email']} twice in {key}"
        out.setdefault(key, set()).add(r["email"])
    return out


def mapped_xcoms(dr, task_id: str) -> list:
    from airflow.models.xcom import XComModel
    from airflow.utils.session import create_session

    with create_session() as session:
        found = session.query(XComModel).filter_by(
            dag_id=dr.dag_id, run_id=dr.run_id, task_id=task_id, key="return_value").order_by(XComModel.map_index)
        return [XComModel.deserialize_value(r) for r in found if r.map_index >= 0]


def run_xcom(dr, task_id: str):
    from test_e2e import xcom

    return xcom(dr, task_id)


@pytest.fixture
def audience_cli():
    """The binary with `tributary audience`; else a skip with the reason (a failure when
    TRIBUTARY_REQUIRE_BIN=1)."""
    binary = lake.tributary_bin()
    problem = None
    if not binary.is_file():
        problem = f"{binary} is not built (cargo build --release -p tributary-ctl)"
    else:
        run = subprocess.run([str(binary), "audience", "--help"], capture_output=True, text=True)
        if run.returncode != 0:
            why = (run.stderr.strip().splitlines() or [f"exit {run.returncode}"])[0]
            problem = f"`{binary} audience --help` fails, the subcommand is not there yet: {why}"
    if problem:
        if os.environ.get("TRIBUTARY_REQUIRE_BIN") == "1":
            pytest.fail(f"TRIBUTARY_REQUIRE_BIN=1 and {problem}", pytrace=False)
        pytest.skip(problem)
    return binary


# dag.test(run_conf=...) keeps the conf in the DAG's params, so each run parses the DAG afresh;
# the DAG versions that leaves in the metadata DB make SQLAlchemy warn, harmlessly.
@pytest.mark.filterwarnings("ignore:Multiple rows returned with uselist=False")
def test_audiences_materialize_requested_then_configured_lists(settings, audience_cli, monkeypatch):
    root = settings["lake"]
    build(root)
    def dag():
        return get_dag("tributary_audiences")

    # A tenant's request: its two lists.
    dr = dag().test(run_conf={"tenant": "acme", "lists": [NL, OFFERS]})
    assert dr.state == "success", explain(dr, "audience")
    assert states(dr) == {"targets": ["success"], "audience": ["success", "success"], "summary": ["success"]}
    results = mapped_xcoms(dr, "audience")
    assert sorted((r["tenant"], r["list"], r["members"]) for r in results) == [("acme", NL, 2), ("acme", OFFERS, 2)]
    assert all(r["table"] and r["version"] is not None for r in results), results
    assert run_xcom(dr, "summary")["members"] == 4
    assert audiences(root) == {("acme", NL): {ANN, BOB}, ("acme", OFFERS): {ANN, CAROL}}

    # Ann unsubscribes from everything; the scheduled run refreshes the configured lists only.
    append(root, "unsubscribes", [{"email": ANN, "h": 10, "list_id": None}])
    settings["setvar"]("TRIBUTARY_AUDIENCES", "acme:newsletter; globex:newsletter")
    dr = dag().test(logical_date=datetime(2026, 1, 2, tzinfo=timezone.utc))
    assert dr.state == "success", explain(dr, "audience")
    assert sorted((r["tenant"], r["list"], r["members"]) for r in mapped_xcoms(dr, "audience")) == [
        ("acme", NL, 1), ("globex", NL, 1)]
    assert audiences(root) == {
        ("acme", NL): {BOB},  # replaced
        ("acme", OFFERS): {ANN, CAROL},  # not asked for: as the first run left it
        ("globex", NL): {BLOCKED},  # blocked at acme only
    }
    version = DeltaTable(str(root / "audiences")).version()

    # A bad request fails before anything is written.
    dr = dag().test(run_conf={"lists": [NL]})
    assert dr.state == "failed"
    assert states(dr) == {"targets": ["failed"], "audience": ["upstream_failed"], "summary": ["upstream_failed"]}
    assert DeltaTable(str(root / "audiences")).version() == version

    # Nothing configured, nothing asked: nothing to do.
    monkeypatch.delenv("AIRFLOW_VAR_TRIBUTARY_AUDIENCES")
    monkeypatch.delenv("TRIBUTARY_AUDIENCES", raising=False)
    dr = dag().test(logical_date=datetime(2026, 1, 3, tzinfo=timezone.utc))
    assert dr.state == "success", states(dr)
    assert states(dr)["audience"] == ["skipped"]
    assert DeltaTable(str(root / "audiences")).version() == version
