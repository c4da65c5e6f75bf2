"""Airflow settings for the tests (the same as dev/airflow.sh), set before Airflow loads."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

AIRFLOW_DIR = Path(__file__).resolve().parents[1]
REPO_ROOT = AIRFLOW_DIR.parent
DAGS = AIRFLOW_DIR / "dags"

os.environ.setdefault("AIRFLOW_HOME", str(REPO_ROOT / ".infra" / "airflow"))
os.environ["AIRFLOW__CORE__DAGS_FOLDER"] = str(DAGS)
os.environ["AIRFLOW__CORE__LOAD_EXAMPLES"] = "False"
os.environ.setdefault(
    "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN", f"sqlite:///{os.environ['AIRFLOW_HOME']}/airflow.db"
)
os.environ.setdefault("TRIBUTARY_BIN", str(REPO_ROOT / "target" / "release" / "tributary"))
# A failing task retries after 1 s here, not 5 min (the structure tests check the defaults).
os.environ.setdefault("TRIBUTARY_RETRY_DELAY_SECONDS", "1")
sys.path.insert(0, str(DAGS))
sys.path.insert(0, str(Path(__file__).resolve().parent))

_db = Path(os.environ["AIRFLOW_HOME"]) / "airflow.db"
if os.environ["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"].startswith("sqlite") and not _db.exists():
    _db.parent.mkdir(parents=True, exist_ok=True)
    subprocess.run([str(Path(sys.executable).with_name("airflow")), "db", "migrate"], check=True,
                   stdout=subprocess.DEVNULL)


# ------------------------------------------------------------------------------ Kafka

AIRFLOW_PRINCIPAL = "tributary-airflow"


def _infra_setting(name: str) -> str | None:
    """An address of the infrastructure: the environment (dev/test.sh loads .infra/env), else
    the env file of INFRA_DIR (default .infra)."""
    value = os.environ.get(name, "").strip()
    if value:
        return value
    env_file = Path(os.environ.get("INFRA_DIR") or REPO_ROOT / ".infra") / "env"
    if env_file.is_file():
        for line in env_file.read_text().splitlines():
            if line.startswith(f"{name}="):
                return line.split("=", 1)[1].strip() or None
    return None


def read_env_file(path: Path) -> dict[str, str]:
    """KEY=VALUE lines, as `set -a; . FILE` reads the principals' files (no quoting in them)."""
    out = {}
    for line in path.read_text().splitlines():
        if line.strip() and not line.lstrip().startswith("#") and "=" in line:
            key, value = line.split("=", 1)
            out[key.strip()] = value
    return out


def _port(addr: str) -> str:
    return addr.split(",")[0].rpartition(":")[2]


class AirflowKafka:
    """A fresh topic namespace with every principal's ACLs for it, and the DAG tasks' Kafka
    settings: the worker's environment holds the Airflow principal's client settings (its
    env file sourced), as a pod's holds them from the services' ConfigMap and the Secret
    KAFKA_CREDENTIALS_SECRET names (tributary_common.tributary_task)."""

    def __init__(self, ns: str, plaintext: str, sasl: str, principal_file: Path, principal: dict[str, str]):
        self.ns = ns
        self.plaintext = plaintext
        self.sasl = sasl
        self.principal_file = principal_file
        self.principal = principal

    def plain_env(self, **extra: str) -> dict[str, str]:
        """The environment of the tests' own clients (topics, grants, fixtures): the plaintext
        listener, whose anonymous principal may do everything; no principal's settings."""
        env = {k: v for k, v in os.environ.items() if not k.startswith("KAFKA_PROP_")}
        env.update(KAFKA_BOOTSTRAP=self.plaintext, TOPIC_NAMESPACE=self.ns, **extra)
        return env

    def kafka_tool(self, *args: str) -> str:
        """A Kafka command-line tool (dev/kafka/run.sh tool CLASS ARGS) against the plaintext
        listener; its stdout."""
        run = subprocess.run(["bash", str(REPO_ROOT / "dev" / "kafka" / "run.sh"), "tool", *args],
                             capture_output=True, text=True, env=self._run_sh_env(), timeout=120)
        assert run.returncode == 0, f"kafka tool {' '.join(args)}: {run.stdout}{run.stderr}"
        return run.stdout

    def end_offsets(self, topic: str) -> dict[int, int]:
        """partition -> end offset of a topic (read over the plaintext listener)."""
        out = self.kafka_tool("org.apache.kafka.tools.GetOffsetShell", "--bootstrap-server", self.plaintext,
                              "--topic", topic, "--time", "-1")
        offsets = {}
        for line in out.splitlines():
            name, _, rest = line.strip().rpartition(":")
            t, _, p = name.rpartition(":")
            if t == topic:
                offsets[int(p)] = int(rest)
        return offsets

    def _run_sh_env(self) -> dict[str, str]:
        return {
            **os.environ,
            "INFRA_DIR": str(self.principal_file.parent.parent),
            "KAFKA_PORT": _port(self.plaintext),
            "KAFKA_SASL_PORT": _port(self.sasl),
        }


@pytest.fixture
def airflow_kafka(monkeypatch) -> AirflowKafka:
    """The topics of a fresh namespace (`tributary topics`, over the plaintext listener), every
    principal's ACLs for it (`dev/kafka/run.sh acls <ns>`), and the environment the DAG tasks
    get (the Airflow worker's, which a local BashOperator task inherits): the Airflow
    principal's env file sourced into it, so every task talks to the SASL_SSL listener as
    `tributary-airflow`; TOPIC_NAMESPACE as an Airflow Variable."""
    plaintext = _infra_setting("KAFKA_BOOTSTRAP") or "127.0.0.1:9092"
    sasl = _infra_setting("KAFKA_SASL_BOOTSTRAP")
    principals = _infra_setting("KAFKA_PRINCIPALS_DIR")
    assert sasl and principals, (
        "KAFKA_SASL_BOOTSTRAP and KAFKA_PRINCIPALS_DIR are not set (.infra/env): start the "
        "infrastructure with `make infra-up`")
    principal_file = Path(principals) / f"{AIRFLOW_PRINCIPAL}.env"
    assert principal_file.is_file(), f"{principal_file}: dev/kafka/run.sh makes it when Kafka starts"
    principal = read_env_file(principal_file)
    assert principal.get("KAFKA_PROP_SECURITY_PROTOCOL") == "SASL_SSL", principal_file
    kafka = AirflowKafka(f"airflow{uuid.uuid4().hex[:8]}", plaintext, sasl, principal_file, principal)

    binary = os.environ["TRIBUTARY_BIN"]
    run = subprocess.run([binary, "topics", "--namespace", kafka.ns, "--partitions", "1"],
                         capture_output=True, text=True, env=kafka.plain_env())
    assert run.returncode == 0, f"tributary topics --namespace {kafka.ns}: {run.stderr}"
    run = subprocess.run(["bash", str(REPO_ROOT / "dev" / "kafka" / "run.sh"), "acls", kafka.ns],
                         capture_output=True, text=True, env=kafka._run_sh_env())
    assert run.returncode == 0, f"dev/kafka/run.sh acls {kafka.ns}: {run.stdout}{run.stderr}"

    # The worker's environment: the principal's settings, nothing of another principal's.
    for name in list(os.environ):
        if name.startswith("KAFKA_PROP_"):
            monkeypatch.delenv(name)
    for name, value in principal.items():
        monkeypatch.setenv(name, value)
    # No Airflow Variable overrides the worker's bootstrap (the SASL_SSL listener).
    monkeypatch.delenv("AIRFLOW_VAR_KAFKA_BOOTSTRAP", raising=False)
    monkeypatch.setenv("AIRFLOW_VAR_TOPIC_NAMESPACE", kafka.ns)
    return kafka
