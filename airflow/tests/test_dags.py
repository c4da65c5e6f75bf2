"""The DAG folder imports cleanly and each DAG has the intended structure."""

from __future__ import annotations

from datetime import timedelta

import pytest
from airflow.dag_processing.dagbag import DagBag
from airflow.serialization.serialized_objects import DagSerialization

from conftest import DAGS

DAG_IDS = {"tributary_compaction", "tributary_reconciliation", "tributary_erasure", "tributary_audiences",
           "tributary_sharing"}
CLI_TASKS = {"plan", "compact", "vacuum", "reconcile", "erase", "audience", "share_refresh"}


def dagbag(monkeypatch, executor: str) -> DagBag:
    monkeypatch.setenv("TRIBUTARY_EXECUTOR", executor)
    return DagBag(dag_folder=str(DAGS))


@pytest.fixture(params=["local", "kubernetes"])
def bag(request, monkeypatch):
    monkeypatch.setenv("TRIBUTARY_IMAGE", "registry.example/tributary:1.2.3")
    monkeypatch.setenv("NAMESPACE", "tributary-test")
    b = dagbag(monkeypatch, request.param)
    b.executor = request.param
    return b


def test_dag_folder_imports_without_errors(bag):
    assert bag.import_errors == {}
    assert set(bag.dag_ids) == DAG_IDS  # no examples, nothing else
    for dag in bag.dags.values():
        DagSerialization.to_dict(dag)  # what the DAG processor stores (and dag.test() needs)


def test_common_rules(bag):
    for dag in bag.dags.values():
        assert dag.max_active_runs == 1, dag.dag_id
        assert dag.catchup is False, dag.dag_id
        assert dag.dagrun_timeout and dag.dagrun_timeout <= timedelta(hours=6), dag.dag_id
        for t in dag.tasks:
            assert t.execution_timeout and t.execution_timeout <= timedelta(hours=4), t.task_id
            if t.task_id in CLI_TASKS:
                assert t.retries >= 2 and t.retry_delay > timedelta(0), t.task_id


def test_cli_tasks_run_where_configured(bag):
    want = "BashOperator" if bag.executor == "local" else "KubernetesPodOperator"
    for dag in bag.dags.values():
        for t in dag.tasks:
            if t.task_id in CLI_TASKS:
                assert t.operator_name == want or type(t).__name__ == want or t.operator_class.__name__ == want, (
                    t.task_id, type(t))
                if bag.executor == "kubernetes":
                    kw = t.partial_kwargs if hasattr(t, "partial_kwargs") else t.__dict__
                    get = (lambda k: kw.get(k)) if hasattr(t, "partial_kwargs") else (lambda k: getattr(t, k))
                    assert get("image") == "registry.example/tributary:1.2.3"
                    assert get("namespace") == "tributary-test"
                    assert get("configmaps") == ["tributary-env", "tributary-airflow"]
                    assert get("service_account_name") == "tributary-jobs"


def test_default_retries_and_delay(monkeypatch):
    import tributary_common as tc

    monkeypatch.delenv("TRIBUTARY_RETRIES", raising=False)
    monkeypatch.delenv("TRIBUTARY_RETRY_DELAY_SECONDS", raising=False)
    args = tc.default_args()
    assert args["retries"] == 2 and args["retry_delay"] == timedelta(minutes=5)


def test_compaction_structure(bag):
    dag = bag.get_dag("tributary_compaction")
    assert dag.schedule == "@hourly" and dag.timetable.expression == "0 * * * *"
    assert {t.task_id for t in dag.tasks} == {"chains", "plan", "compact", "vacuum_due", "vacuum"}
    compact = dag.get_task("compact")
    assert compact.is_mapped if hasattr(compact, "is_mapped") else type(compact).__name__ == "MappedOperator"
    assert dag.get_task("plan").downstream_task_ids == {"compact"}
    assert dag.get_task("chains").downstream_task_ids == {"compact"}
    assert compact.downstream_task_ids == {"vacuum_due"}
    assert dag.get_task("vacuum_due").downstream_task_ids == {"vacuum"}


def test_compaction_chains_from_config(monkeypatch):
    import tributary_common as tc

    monkeypatch.delenv("TRIBUTARY_CHAINS", raising=False)
    assert tc.configured_chains() == ["users", "unsubscribes", "blocklists", "subscriptions", "mailings"]
    monkeypatch.setenv("TRIBUTARY_CHAINS", "users, mailings")
    assert tc.configured_chains() == ["users", "mailings"]
    monkeypatch.setenv("TRIBUTARY_CHAINS", "users,nope")
    with pytest.raises(ValueError, match="nope"):
        tc.configured_chains()


def test_chains_are_read_from_the_registry(tmp_path):
    import tributary_common as tc

    assert tc.CHAINS == tc.read_chains(tc.CHAINS_FILE)
    registry = tmp_path / "chains.txt"
    registry.write_text("# name port window\n\nusers 9101 24h\n  # indented comment\nnew_chain 9999 7d # note\n")
    assert tc.read_chains(registry) == ("users", "new_chain")
    registry.write_text("# nothing\n")
    with pytest.raises(ValueError, match="no chain"):
        tc.read_chains(registry)


def test_reconciliation_structure(bag):
    dag = bag.get_dag("tributary_reconciliation")
    assert dag.schedule == "@hourly" and dag.timetable.expression == "0 * * * *"
    assert {t.task_id for t in dag.tasks} == {"reconcile", "check_report"}
    check = dag.get_task("check_report")
    assert check.upstream_task_ids == {"reconcile"}
    assert check.trigger_rule == "all_done"


def test_erasure_structure(bag):
    dag = bag.get_dag("tributary_erasure")
    assert dag.schedule is None and type(dag.timetable).__name__ == "NullTimetable"
    assert {t.task_id for t in dag.tasks} == {"validate", "erase"}
    assert dag.get_task("erase").upstream_task_ids == {"validate"}
    assert set(dag.params.keys()) == {"tenant", "emails"}


def test_erasure_conf_validation():
    from tributary_erasure import validate_conf

    assert validate_conf({"tenant": "acme", "emails": [" A@Example.com", "a@example.com", "b@x.io"]}) == (
        "acme", ["a@example.com", "b@x.io"])
    for bad in ({}, {"tenant": "acme"}, {"tenant": "acme", "emails": []}, {"tenant": "Bad!", "emails": ["a@b.c"]},
                {"tenant": "acme", "emails": ["no-at-sign"]}, {"tenant": "acme", "emails": [3]},
                {"tenant": "acme", "emails": ["a@b.c"], "extra": 1}):
        with pytest.raises(ValueError):
            validate_conf(bad)


def test_audiences_structure(bag):
    dag = bag.get_dag("tributary_audiences")
    assert dag.schedule == "@daily" and dag.timetable.expression == "0 0 * * *"
    assert {t.task_id for t in dag.tasks} == {"targets", "audience", "summary"}
    audience = dag.get_task("audience")
    assert audience.is_mapped if hasattr(audience, "is_mapped") else type(audience).__name__ == "MappedOperator"
    assert dag.get_task("targets").downstream_task_ids == {"audience"}
    assert audience.downstream_task_ids == {"summary"}
    assert dag.get_task("targets").retries == 0  # a bad request is not retried
    assert set(dag.params.keys()) == {"tenant", "lists"}
    assert dag.params["tenant"] is None and dag.params["lists"] == []  # the scheduled run's params are valid


def test_audience_targets():
    from tributary_audiences import parse_audiences, resolve_targets

    conf = " acme: newsletter, offers ;globex:newsletter;; acme:offers,vip "
    assert parse_audiences(conf) == {"acme": ["newsletter", "offers", "vip"], "globex": ["newsletter"]}
    assert parse_audiences("") == {} and parse_audiences(None) == {}
    for bad in ("acme", "acme:", "Bad!:x", ":x", "acme:a\tb"):
        with pytest.raises(ValueError):
            parse_audiences(bad)
    # The scheduled run (and a manual one without params): every configured list.
    assert resolve_targets(None, [], conf) == [
        {"tenant": "acme", "list": "newsletter"}, {"tenant": "acme", "list": "offers"},
        {"tenant": "acme", "list": "vip"}, {"tenant": "globex", "list": "newsletter"}]
    assert resolve_targets(None, None, None) == []
    # A tenant's own request: its lists, whatever is configured; without lists, the configured ones.
    assert resolve_targets("globex", ["a b", "x", "a b"], conf) == [
        {"tenant": "globex", "list": "a b"}, {"tenant": "globex", "list": "x"}]
    assert resolve_targets("globex", [], conf) == [{"tenant": "globex", "list": "newsletter"}]
    for tenant, lists in (("initech", []), (None, ["newsletter"]), ("Bad!", ["x"]), ("acme", [""]),
                          ("acme", [" x"]), ("acme", [3])):
        with pytest.raises(ValueError):
            resolve_targets(tenant, lists, conf)


def test_audience_script():
    import tributary_common as tc
    from tributary_audiences import audience_script

    script = audience_script({"tenant": "acme", "list": "news letter; rm -rf /"})
    assert (""""$TRIBUTARY_BIN" audience --tenant acme --list 'news letter; rm -rf /' --lake "$LAKE_URI" \\\n"""
            "  --materialize --json") in script
    # Each mapped instance has its own local result file; a pod keeps the sidecar's.
    other = audience_script({"tenant": "acme", "list": "offers"})
    name = [line for line in script.splitlines() if "XCOM_FILE=" in line][0]
    assert name != [line for line in other.splitlines() if "XCOM_FILE=" in line][0]
    assert name.startswith(f'[ "$XCOM_FILE" = {tc.K8S_XCOM_FILE} ] ||')
    with pytest.raises(ValueError):
        audience_script({"tenant": "acme", "list": ""})


def _env_of(task, executor: str) -> dict:
    """A CLI task's environment (BashOperator `env`, KubernetesPodOperator `env_vars`)."""
    key = "env" if executor == "local" else "env_vars"
    kw = task.partial_kwargs if hasattr(task, "partial_kwargs") else task.__dict__
    env = kw.get(key) if key in kw else getattr(task, key, None)
    if isinstance(env, list):  # the pod operator keeps k8s V1EnvVar objects
        return {e.name: e.value for e in env}
    return dict(env or {})


@pytest.mark.parametrize("executor", ["local", "kubernetes"])
def test_cli_tasks_pass_the_pushgateway_on(monkeypatch, executor):
    """Every job gets TRIBUTARY_PUSHGATEWAY, which the CLI reads (--pushgateway); in a pod the
    ConfigMap provides it unless Airflow sets it."""
    import tributary_common as tc

    assert "TRIBUTARY_PUSHGATEWAY" in tc.RUNTIME_SETTINGS
    assert '[ -n "${TRIBUTARY_PUSHGATEWAY:-}" ] || unset TRIBUTARY_PUSHGATEWAY' in tc._PREAMBLE
    monkeypatch.setenv("TRIBUTARY_PUSHGATEWAY", "http://pushgateway.example:9091")
    bag = dagbag(monkeypatch, executor)
    seen = 0
    for dag in bag.dags.values():
        for t in dag.tasks:
            if t.task_id in CLI_TASKS:
                env = _env_of(t, executor)
                assert "http://pushgateway.example:9091" in env.get("TRIBUTARY_PUSHGATEWAY", ""), (t.task_id, env)
                seen += 1
    assert seen == len(CLI_TASKS)
    if executor == "kubernetes":
        monkeypatch.delenv("TRIBUTARY_PUSHGATEWAY")
        for dag in dagbag(monkeypatch, executor).dags.values():
            for t in dag.tasks:
                if t.task_id in CLI_TASKS:
                    assert "TRIBUTARY_PUSHGATEWAY" not in _env_of(t, executor), t.task_id


def test_the_sharing_job_gets_the_grants_kek_in_a_pod(monkeypatch):
    """Outside local mode the CLI refuses to open grant keys without a KEK: the pod mounts the
    Secret as a file and names it in GRANTS_KEK_FILE."""
    import tributary_common as tc

    bag = dagbag(monkeypatch, "kubernetes")
    task = bag.dags["tributary_sharing"].get_task("share_refresh")
    env = _env_of(task, "kubernetes")
    assert env["GRANTS_KEK_FILE"] == f"{tc.K8S_GRANTS_KEK_DIR}/kek"
    secrets = getattr(task, "secrets", None) or []
    assert [(s.deploy_type, s.deploy_target, s.secret) for s in secrets] == [
        ("volume", tc.K8S_GRANTS_KEK_DIR, tc.K8S_GRANTS_KEK_SECRET)]
    local = dagbag(monkeypatch, "local").dags["tributary_sharing"].get_task("share_refresh")
    assert "GRANTS_KEK_FILE" not in _env_of(local, "local")


def test_pods_talk_to_kafka_as_the_airflow_principal(monkeypatch):
    """In a pod every job is Kafka client like the services: the services' ConfigMap gives the
    security protocol and mechanism, and with KAFKA_CREDENTIALS_SECRET set the Airflow
    principal's username and password come from that Secret (never from a Variable)."""
    import tributary_common as tc

    monkeypatch.setenv("KAFKA_CREDENTIALS_SECRET", "tributary-kafka-airflow")
    bag = dagbag(monkeypatch, "kubernetes")
    for dag_id in ("tributary_reconciliation", "tributary_erasure", "tributary_sharing"):
        for task in bag.dags[dag_id].tasks:
            kw = task.partial_kwargs if hasattr(task, "partial_kwargs") else task.__dict__
            configmaps = kw.get("configmaps") or getattr(task, "configmaps", None) or []
            secrets = kw.get("secrets") or getattr(task, "secrets", None) or []
            if not configmaps:
                continue  # not a CLI pod (a Python task)
            assert tc.K8S_SERVICES_CONFIGMAP in configmaps, (dag_id, task.task_id)
            env_secrets = {(s.deploy_target, s.secret, s.key) for s in secrets if s.deploy_type == "env"}
            assert env_secrets == {
                ("KAFKA_PROP_SASL_USERNAME", "tributary-kafka-airflow", "username"),
                ("KAFKA_PROP_SASL_PASSWORD", "tributary-kafka-airflow", "password"),
            }, (dag_id, task.task_id)
            assert "KAFKA_PROP_SASL_PASSWORD" not in _env_of(task, "kubernetes")
