"""Each DAG run end to end by Airflow's own test runner (`dag.test()`), with the real
`tributary` binary at TRIBUTARY_BIN, against a lake each test builds in a temp directory.

These need the CLI subcommands of issue 5 (compact, vacuum, reconcile, erase); while one is
missing from the binary, its test fails saying so (no skips). reconcile and erase need the local
Kafka (`make infra-up`): their tasks talk to its SASL_SSL listener as the Airflow principal
`tributary-airflow`, in a fresh topic namespace with its ACLs (conftest.airflow_kafka); the
tests' own clients use the plaintext listener.
"""

from __future__ import annotations

import json
import os
from datetime import datetime, timezone
from pathlib import Path

import pyarrow.compute as pc
import pytest
from airflow.dag_processing.dagbag import DagBag

import lake
from conftest import DAGS


@pytest.fixture
def settings(tmp_path, monkeypatch):
    """The DAGs' settings as Airflow Variables (AIRFLOW_VAR_*), pointing at a temp lake."""
    lake_dir = tmp_path / "lake"
    reports = tmp_path / "reports"

    def setvar(name, value):
        monkeypatch.setenv(f"AIRFLOW_VAR_{name}", value)

    monkeypatch.setenv("TRIBUTARY_EXECUTOR", "local")
    setvar("LAKE_URI", str(lake_dir))
    setvar("TRIBUTARY_REPORT_DIR", str(reports))
    setvar("TRIBUTARY_BIN", str(lake.tributary_bin()))
    return {"lake": lake_dir, "reports": reports, "setvar": setvar}


def get_dag(dag_id):
    bag = DagBag(dag_folder=str(DAGS))
    assert bag.import_errors == {}
    return bag.get_dag(dag_id)


def states(dr) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for ti in dr.get_task_instances():
        out.setdefault(ti.task_id, []).append(str(ti.state))
    return out


def xcom(dr, task_id, key="return_value"):
    from airflow.models.xcom import XComModel
    from airflow.utils.session import create_session

    with create_session() as session:
        row = session.query(XComModel).filter_by(
            dag_id=dr.dag_id, run_id=dr.run_id, task_id=task_id, key=key, map_index=-1).first()
        return None if row is None else XComModel.deserialize_value(row)


def explain(dr, *subcommands) -> str:
    """A failed run's message: which subcommand of the contract is still missing, if any."""
    missing = []
    for sub in subcommands:
        try:
            lake.require_subcommand(sub)
        except AssertionError as exc:
            missing.append(str(exc))
    why = "; ".join(missing) if missing else "see the task logs above"
    return f"{dr.dag_id} run {dr.run_id} ended {dr.state} (tasks: {states(dr)}): {why}"


def test_compaction_compacts_every_chain_and_vacuums(settings):
    lake.build_lake(settings["lake"], appends=6)
    before = {c: (lake.file_count(settings["lake"] / c), lake.rows(settings["lake"] / c)) for c in lake.CHAINS}
    dag = get_dag("tributary_compaction")
    # Hour 0 is the daily vacuum's hour.
    dr = dag.test(logical_date=datetime(2026, 1, 2, 0, 0, tzinfo=timezone.utc))
    assert dr.state == "success", explain(dr, "compact", "vacuum")
    st = states(dr)
    assert st["compact"] == ["success"] * len(lake.CHAINS) and st["vacuum"] == ["success"], st
    assert xcom(dr, "plan") is not None, "the plan (compact --plan --json) is the plan task's XCom"
    for chain, (files, table) in before.items():
        after_files = lake.file_count(settings["lake"] / chain)
        assert after_files < files, f"{chain}: {files} files before, {after_files} after"
        assert lake.rows(settings["lake"] / chain).equals(table), f"{chain}: rows changed"
    # A second run (retries, overlaps) finds nothing left to do and changes nothing.
    again = dag.test(logical_date=datetime(2026, 1, 2, 1, 0, tzinfo=timezone.utc))
    assert again.state == "success", explain(again, "compact")
    assert states(again)["vacuum"] == ["skipped"]


def _reconcile(settings, airflow_kafka):
    """A run of tributary_reconciliation over the fresh namespace of `airflow_kafka` (its
    topics exist, empty), the task talking to Kafka as the Airflow principal."""
    settings["setvar"]("SCHEMA_REGISTRY_URL", lake.schema_registry_url())
    assert os.environ["AIRFLOW_VAR_TOPIC_NAMESPACE"] == airflow_kafka.ns
    dag = get_dag("tributary_reconciliation")
    return dag.test()


def test_reconciliation_consistent_lake_passes_with_report(settings, airflow_kafka):
    # A fresh topic namespace (its topics created, empty) and empty tables: consistent.
    lake.build_empty_lake(settings["lake"])
    dr = _reconcile(settings, airflow_kafka)
    assert dr.state == "success", explain(dr, "reconcile")
    result = xcom(dr, "reconcile")
    assert result and result["exit_code"] == 0 and isinstance(result["report"], (dict, list))
    path = Path(result["report_file"])
    assert path.is_file() and path.is_relative_to(settings["reports"] / "tributary_reconciliation")
    assert json.loads(path.read_text()) == result["report"]


def test_reconciliation_discrepancy_fails_the_run_and_keeps_the_report(settings, airflow_kafka):
    # Rows in the lake that no clean topic of this fresh (empty) namespace ever held.
    lake.build_lake(settings["lake"], appends=1)
    dr = _reconcile(settings, airflow_kafka)
    lake.require_subcommand("reconcile")
    assert dr.state == "failed", states(dr)
    st = states(dr)
    assert st["reconcile"] == ["success"] and st["check_report"] == ["failed"], (
        f"a discrepancy is a result (report written), not an error to retry: {st}")
    result = xcom(dr, "reconcile")
    assert result and result["exit_code"] != 0
    assert Path(result["report_file"]).is_file()


def test_erasure_removes_the_emails_of_the_tenant(settings, airflow_kafka):
    lake.build_lake(settings["lake"], appends=2)
    target = [lake.email_of(1), lake.email_of(2)]
    before = {c: lake.rows(settings["lake"] / c) for c in lake.CHAINS}
    settings["setvar"]("SCHEMA_REGISTRY_URL", lake.schema_registry_url())
    suppressions = f"{airflow_kafka.ns}.raw.blocklists"
    assert airflow_kafka.end_offsets(suppressions) == {0: 0}
    dag = get_dag("tributary_erasure")
    dr = dag.test(run_conf={"tenant": "acme", "emails": [target[0].upper(), target[1], target[1]]})
    assert dr.state == "success", explain(dr, "erase")
    emails_file = Path(xcom(dr, "validate")["emails_file"])
    assert emails_file.read_text().splitlines() == target
    # The suppression record of each address really reached the namespace's raw.blocklists,
    # written by the Airflow principal (the one topic it may write).
    assert airflow_kafka.end_offsets(suppressions) == {0: len(target)}, (
        f"{suppressions} does not hold one ERASED suppression record per erased address")
    for chain in lake.CHAINS:
        t = lake.rows(settings["lake"] / chain)
        hit = pc.and_(pc.equal(t["tenant_id"], "acme"), pc.is_in(t["email"], value_set=lake.pa.array(target)))
        assert pc.sum(hit.cast("int64")).as_py() in (0, None), f"{chain}: erased emails still there"
        b = before[chain]
        b_hit = pc.and_(pc.equal(b["tenant_id"], "acme"), pc.is_in(b["email"], value_set=lake.pa.array(target)))
        kept = b.filter(pc.invert(b_hit))
        assert t.num_rows == kept.num_rows, f"{chain}: {b.num_rows} -> {t.num_rows}, expected {kept.num_rows}"
        # the same emails of another tenant stay
        assert pc.sum(pc.and_(pc.equal(t["tenant_id"], "globex"),
                              pc.is_in(t["email"], value_set=lake.pa.array(target))).cast("int64")).as_py() > 0


def test_erasure_rejects_an_invalid_request_without_running_erase(settings):
    lake.build_lake(settings["lake"], appends=1, chains=("users",))
    before = lake.rows(settings["lake"] / "users")
    dag = get_dag("tributary_erasure")
    dr = dag.test(run_conf={"tenant": "acme", "emails": ["not an email"]})
    assert dr.state == "failed"
    assert states(dr) == {"validate": ["failed"], "erase": ["upstream_failed"]}
    assert lake.rows(settings["lake"] / "users").equals(before)


def test_dag_tasks_talk_to_kafka_over_sasl_as_the_airflow_principal(settings, airflow_kafka, monkeypatch, capfd):
    """The tasks' Kafka settings are the Airflow principal's (the SASL_SSL listener, SCRAM,
    username tributary-airflow), and they are really used: with a wrong password the broker
    refuses the `reconcile` task's client (its log says so, the CLI exits 3: some chains could
    not be checked, an error the task fails on and Airflow retries, not a discrepancy result),
    and with the right one the same run passes."""
    assert os.environ["KAFKA_BOOTSTRAP"] == airflow_kafka.sasl != airflow_kafka.plaintext
    assert os.environ["KAFKA_PROP_SECURITY_PROTOCOL"] == "SASL_SSL"
    assert os.environ["KAFKA_PROP_SASL_MECHANISM"] == "SCRAM-SHA-512"
    assert os.environ["KAFKA_PROP_SASL_USERNAME"] == "tributary-airflow"
    assert os.environ["KAFKA_PROP_SASL_PASSWORD"] == airflow_kafka.principal["KAFKA_PROP_SASL_PASSWORD"]
    assert "AIRFLOW_VAR_KAFKA_BOOTSTRAP" not in os.environ, "a Variable would override the worker's bootstrap"
    lake.build_empty_lake(settings["lake"], chains=("users",))
    # One chain (each refused metadata request waits 10 s) and one attempt, not three.
    settings["setvar"]("TRIBUTARY_CHAINS", "users")
    monkeypatch.setenv("TRIBUTARY_RETRIES", "0")

    monkeypatch.setenv("KAFKA_PROP_SASL_PASSWORD", "not-the-password")
    capfd.readouterr()
    dr = _reconcile(settings, airflow_kafka)
    log = "".join(capfd.readouterr())
    assert dr.state == "failed", states(dr)
    assert "SASL authentication error" in log and "invalid credentials" in log, (
        "the reconcile task's log does not show the broker refusing the wrong password")
    assert "could not check some chains" in log and '"chain": "users"' in log, (
        "the report naming the chain it could not check is in the task's log")
    assert states(dr)["reconcile"] == ["failed"], states(dr)
    assert xcom(dr, "reconcile") is None, "an error is not a reconciliation result"

    monkeypatch.setenv("KAFKA_PROP_SASL_PASSWORD", airflow_kafka.principal["KAFKA_PROP_SASL_PASSWORD"])
    capfd.readouterr()
    dr = _reconcile(settings, airflow_kafka)
    log = "".join(capfd.readouterr())
    assert dr.state == "success", explain(dr, "reconcile")
    assert "SASL authentication error" not in log
    result = xcom(dr, "reconcile")
    assert result["exit_code"] == 0 and not result["report"]["errors"], result
