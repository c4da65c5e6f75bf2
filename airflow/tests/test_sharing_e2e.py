"""`tributary_sharing` end to end through `dag.test()` with the real binary and the real Kafka:
an analytics grant created with `tributary grant create` (over the plaintext listener: only the
operator may write grants) in a fresh topic namespace, a small lake, then the DAG's refresh (its
task reading the grants over the SASL_SSL listener as the Airflow principal,
conftest.airflow_kafka) materializes the grant's shared tables (only the granted columns,
`subject_key` for the address, nobody the grantor blocks); a second run reads nothing again;
after `tributary grant revoke` a run deletes the tables.
"""

from __future__ import annotations

import json
import subprocess
from datetime import datetime, timezone

import pyarrow.parquet as pq
import pytest

import lake
from test_audiences_e2e import ANN, BLOCKED, BOB, build
from test_e2e import explain, get_dag, settings, xcom  # noqa: F401  (settings: a fixture)


def cli(*args: str, env: dict) -> str:
    run = subprocess.run([str(lake.tributary_bin()), *args], capture_output=True, text=True, env=env)
    assert run.returncode == 0, f"tributary {' '.join(args)}: {run.stderr}"
    return run.stdout


@pytest.mark.filterwarnings("ignore:Multiple rows returned with uselist=False")
def test_sharing_refresh_materializes_then_forgets_a_grant(settings, airflow_kafka):
    lake.require_subcommand("share")
    root = settings["lake"]
    build(root)
    env = airflow_kafka.plain_env()
    grant = json.loads(cli("grant", "create", "--from", "acme", "--to", "globex", "--chains", "users,mailings",
                           "--columns", "first_name,event_type", "--purpose", "analytics",
                           "--expires", "2099-12-31", env=env))

    dr = get_dag("tributary_sharing").test(logical_date=datetime(2026, 1, 1, tzinfo=timezone.utc))
    assert dr.state == "success", explain(dr, "share_refresh")
    result = xcom(dr, "share_refresh")
    assert result["tables"] == 2 and result["source_files_read"] >= 2, result
    shares = root / "_shares" / grant["grant_id"]
    users = [
        r for f in (shares / "users").glob("*.parquet") for r in pq.read_table(str(f)).to_pylist()]
    mailings = [r for f in (shares / "mailings").glob("*.parquet") for r in pq.read_table(str(f)).to_pylist()]
    assert {tuple(sorted(r)) for r in users} == {("event_date", "event_time", "first_name", "subject_key")}
    assert [r["first_name"] for r in users] == ["Ann"]  # ANN's users row
    assert [r["event_type"] for r in mailings] == ["SENT"]  # BOB's mailing
    for r in users + mailings:
        assert len(r["subject_key"]) == 64 and ANN not in str(r) and BOB not in str(r) and BLOCKED not in str(r)

    # Nothing changed: nothing read again.
    dr = get_dag("tributary_sharing").test(logical_date=datetime(2026, 1, 2, tzinfo=timezone.utc))
    assert dr.state == "success", explain(dr, "share_refresh")
    assert xcom(dr, "share_refresh")["source_files_read"] == 0

    # Revoked: the next run deletes the grant's tables.
    cli("grant", "revoke", grant["grant_id"], env=env)
    dr = get_dag("tributary_sharing").test(logical_date=datetime(2026, 1, 3, tzinfo=timezone.utc))
    assert dr.state == "success", explain(dr, "share_refresh")
    assert xcom(dr, "share_refresh")["grants_deleted"] == 1
    assert not any(shares.rglob("*.parquet"))
