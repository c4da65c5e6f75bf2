"""Settings and the one task factory shared by the Tributary DAGs.

Every DAG runs the project's CLI (`tributary compact|vacuum|reconcile|erase ...`). A job is
written once, as a POSIX shell script over environment variables (`"$TRIBUTARY_BIN" compact
--lake "$LAKE_URI" ...`), and `tributary_task` turns it into:

- `local` (default): a BashOperator on the Airflow worker, running the binary at
  TRIBUTARY_BIN (default <repo>/target/release/tributary);
- `kubernetes`: a KubernetesPodOperator running `sh -c SCRIPT` in the services' image, in the
  namespace and with the service account of the ConfigMap `tributary-airflow` (k8s/base),
  whose keys (LAKE_URI, KAFKA_BOOTSTRAP, SCHEMA_REGISTRY_URL, ...) are the pod's environment.

The executor is chosen when the DAG file is parsed: env `TRIBUTARY_EXECUTOR`, else the
Airflow Variable of that name, else `local`. The other settings are read when a task runs:
the Airflow Variable of the same name wins over the worker's environment, which wins over
the default (templated into the task's environment, so no metadata DB access at parse time).

Metrics: every CLI job pushes its metrics to the Pushgateway at TRIBUTARY_PUSHGATEWAY (read
by the CLI from the environment, like LAKE_URI) when it is set; in a pod the ConfigMap
`tributary-airflow` sets it.
"""

from __future__ import annotations

import logging
import os
import re
from datetime import timedelta
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

REPO_ROOT = Path(__file__).resolve().parents[2]

# The chain registry every list of chains is read from (schemas/chains.txt of the repository
# the DAGs run from; TRIBUTARY_CHAINS_FILE names a copy of it where they run without one).
CHAINS_FILE = Path(os.environ.get("TRIBUTARY_CHAINS_FILE", "").strip() or REPO_ROOT / "schemas" / "chains.txt")


def read_chains(path: Path) -> tuple[str, ...]:
    """The chains of a registry file: the first column of each line that starts with a
    lowercase letter (as the Rust build, the Makefile and the scripts read it)."""
    chains = tuple(line.split()[0] for line in path.read_text().splitlines() if re.match(r"[a-z]", line))
    if not chains:
        raise ValueError(f"{path} declares no chain")
    return chains


# The data chains, one Delta table each at <LAKE_URI>/<chain> (README "Running the sink").
CHAINS = read_chains(CHAINS_FILE)

TENANT_RE = re.compile(r"^[a-z0-9][a-z0-9_-]{0,62}$")

# The k8s ConfigMap the pod tasks read (k8s/base/kustomization.yaml, fixed name).
K8S_CONFIGMAP = "tributary-airflow"
K8S_XCOM_FILE = "/airflow/xcom/return.json"

# Settings read at run time: name -> default when neither a Variable nor the env sets it.
RUNTIME_SETTINGS: dict[str, str] = {
    "TRIBUTARY_BIN": str(REPO_ROOT / "target" / "release" / "tributary"),
    "LAKE_URI": "",
    "KAFKA_BOOTSTRAP": "",
    "SCHEMA_REGISTRY_URL": "",
    "TRIBUTARY_REPORT_DIR": str(REPO_ROOT / ".infra" / "reports"),
    # Optional extras of the CLI contract.
    "TOPIC_NAMESPACE": "",  # reconcile --namespace
    "TRIBUTARY_CHAINS": "",  # reconcile --chains / the compaction's chains (comma-separated)
    "TRIBUTARY_LEDGER": "",  # erase --ledger
    # The Prometheus Pushgateway every job pushes its metrics to (the CLI reads it from the
    # environment; empty: no push). In a pod the ConfigMap sets it (k8s/base).
    "TRIBUTARY_PUSHGATEWAY": "",
    "COMPACT_TARGET_SIZE": "256MiB",
    "COMPACT_MIN_FILES": "4",
    "COMPACT_CLOSED_BEFORE_DAYS": "1",
    "VACUUM_RETENTION": "168h",
}
# In a pod, the ConfigMap provides these; the Airflow side passes them on only when set.
POD_FROM_CONFIGMAP = ("LAKE_URI", "KAFKA_BOOTSTRAP", "SCHEMA_REGISTRY_URL", "TRIBUTARY_PUSHGATEWAY")


def env_setting(name: str, default: str | None = None) -> str | None:
    """A parse-time setting: the environment, else the default."""
    value = os.environ.get(name, "").strip()
    return value or default


def _variable(name: str) -> str | None:
    try:
        from airflow.sdk import Variable

        value = Variable.get(name, default=None)
    except Exception as exc:  # no metadata DB / API at parse time: fall back to env/defaults
        log.debug("Variable %s not readable at parse time: %s", name, exc)
        return None
    return str(value).strip() or None if value is not None else None


def setting(name: str, default: str | None = None) -> str | None:
    """A setting read now (in a task, or at parse time): Variable, then env, then default."""
    return _variable(name) or env_setting(name, default if default is not None else RUNTIME_SETTINGS.get(name))


def executor() -> str:
    """`local` or `kubernetes` (TRIBUTARY_EXECUTOR: env, then Variable, then `local`)."""
    value = (env_setting("TRIBUTARY_EXECUTOR") or _variable("TRIBUTARY_EXECUTOR") or "local").lower()
    if value not in ("local", "kubernetes"):
        raise ValueError(f"TRIBUTARY_EXECUTOR must be 'local' or 'kubernetes', not {value!r}")
    return value


def configured_chains() -> list[str]:
    """The chains to work on (TRIBUTARY_CHAINS, comma-separated; default all five)."""
    raw = setting("TRIBUTARY_CHAINS") or ",".join(CHAINS)
    chains = [c.strip() for c in raw.split(",") if c.strip()]
    unknown = sorted(set(chains) - set(CHAINS))
    if unknown:
        raise ValueError(f"unknown chains in TRIBUTARY_CHAINS: {', '.join(unknown)}")
    return chains


def _duration(name: str, default: timedelta) -> timedelta:
    raw = env_setting(name)
    return timedelta(seconds=float(raw)) if raw else default


def default_args() -> dict[str, Any]:
    """Retries with a delay (every CLI command is idempotent, so a retry is safe)."""
    return {
        "owner": "tributary",
        "retries": int(env_setting("TRIBUTARY_RETRIES", "2")),
        "retry_delay": _duration("TRIBUTARY_RETRY_DELAY_SECONDS", timedelta(minutes=5)),
        "retry_exponential_backoff": True,
        "max_retry_delay": timedelta(minutes=30),
        "execution_timeout": timedelta(minutes=30),
    }


RUN_SUBDIR_TEMPLATE = "{{ dag.dag_id }}/{{ run_id | replace(':', '_') | replace('+', '_') }}"


def run_dir(context: dict[str, Any]) -> Path:
    """The run's directory under TRIBUTARY_REPORT_DIR, from a running task's context
    (scripts see it as "$TRIBUTARY_REPORT_DIR/$RUN_SUBDIR")."""
    base = setting("TRIBUTARY_REPORT_DIR")
    run_id = context["run_id"].replace(":", "_").replace("+", "_")
    return Path(base) / context["dag"].dag_id / run_id


def _var_template(name: str) -> str:
    """Jinja: the Variable `name`, else the worker's env/default (read when the task runs)."""
    fallback = env_setting(name, RUNTIME_SETTINGS.get(name, "")) or ""
    return "{{ var.value.get(%r, %r) }}" % (name, fallback)


# The preamble of every script: fail clearly on a missing setting, drop empty optional ones
# (so the CLI's own env defaults apply), and show the command before running it.
_PREAMBLE = """set -eu
: "${TRIBUTARY_BIN:?TRIBUTARY_BIN is not set}"
: "${LAKE_URI:?LAKE_URI is not set (Airflow Variable or environment)}"
[ -n "${KAFKA_BOOTSTRAP:-}" ] || unset KAFKA_BOOTSTRAP
[ -n "${SCHEMA_REGISTRY_URL:-}" ] || unset SCHEMA_REGISTRY_URL
[ -n "${TRIBUTARY_PUSHGATEWAY:-}" ] || unset TRIBUTARY_PUSHGATEWAY
"""


# The grants' key-encryption key in a pod: the Secret k8s/base/serve.yaml mounts too (key
# `kek`), at the same path. Outside local mode the CLI refuses to seal or open grant keys
# without it (it never falls back to the development key).
K8S_GRANTS_KEK_SECRET = "tributary-grants-kek"
K8S_GRANTS_KEK_DIR = "/etc/tributary/grants-kek"
# The Kafka client settings every service takes (KAFKA_BOOTSTRAP, KAFKA_PROP_SECURITY_PROTOCOL,
# KAFKA_PROP_SASL_MECHANISM, TRIBUTARY_LOCAL=0): the pods read the services' ConfigMap too.
K8S_SERVICES_CONFIGMAP = "tributary-env"
# The Airflow jobs' own Kafka principal (k8s/README.md): a Secret with keys username/password,
# read as KAFKA_PROP_SASL_USERNAME/KAFKA_PROP_SASL_PASSWORD. KAFKA_CREDENTIALS_SECRET names it
# (a Variable or the env; empty: Kafka without SASL, as in the dev overlay).
K8S_KAFKA_SECRET_DEFAULT = ""


def tributary_task(
    task_id: str,
    script: Any,
    *,
    env: dict[str, str] | None = None,
    expand_over: Any = None,
    xcom_file: bool = False,
    grants_kek: bool = False,
    **operator_kwargs: Any,
):
    """The task that runs `script` (POSIX sh using "$TRIBUTARY_BIN" and the settings' env).

    `env`: extra (templated) environment. `expand_over`: an XComArg of a list; then `script`
    is a picklable callable item -> script and there is one mapped task instance per item
    (dynamic task mapping; a mapped value is not templated, the environment is).
    `xcom_file`: the script writes its result (JSON) to "$XCOM_FILE"; it becomes the task's
    XCom (locally a file in the run's directory whose path is printed last; in a pod the
    xcom sidecar's /airflow/xcom/return.json).
    `grants_kek`: the job opens grants' keys; in a pod the KEK Secret is mounted as a file
    (GRANTS_KEK_FILE); locally the worker's environment provides it (or local mode).

    This is the one place that knows how a job is executed; a third way (a Job, a
    different operator) goes here.
    """
    mode = executor()
    prefix = _PREAMBLE
    extra = dict(env or {})
    if mode == "local":
        from airflow.providers.standard.operators.bash import BashOperator

        task_env = {name: _var_template(name) for name in RUNTIME_SETTINGS}
        task_env["RUN_SUBDIR"] = RUN_SUBDIR_TEMPLATE
        task_env.update(extra)
        if xcom_file:
            prefix += f'XCOM_FILE="$TRIBUTARY_REPORT_DIR/$RUN_SUBDIR/{task_id}.xcom.json"\n'
            prefix += 'mkdir -p "$(dirname "$XCOM_FILE")"; rm -f "$XCOM_FILE"\n'
        kwargs = dict(
            task_id=task_id,
            env=task_env,
            append_env=True,
            skip_on_exit_code=None,
            do_xcom_push=xcom_file,
            cwd=str(REPO_ROOT) if REPO_ROOT.is_dir() else None,
            **operator_kwargs,
        )
        if xcom_file:
            # The script's last line is the path of its result; the XCom is the JSON in it.
            kwargs["output_processor"] = _read_json_file
        if expand_over is not None:
            return BashOperator.partial(**kwargs).expand(bash_command=expand_over.map(_Script(prefix, script)))
        return BashOperator(bash_command=prefix + script, **kwargs)

    from airflow.providers.cncf.kubernetes.operators.pod import KubernetesPodOperator

    pod_env = {"TRIBUTARY_BIN": "tributary"}
    for name, default in RUNTIME_SETTINGS.items():
        if name == "TRIBUTARY_BIN":
            continue
        if name in POD_FROM_CONFIGMAP:
            # Set by the ConfigMap in the pod; an Airflow setting, if any, overrides it.
            if setting(name):
                pod_env[name] = _var_template(name)
        else:
            pod_env[name] = _var_template(name)
    pod_env["TRIBUTARY_REPORT_DIR"] = "/tmp/tributary"
    pod_env["RUN_SUBDIR"] = RUN_SUBDIR_TEMPLATE
    pod_env.update(extra)
    if xcom_file:
        prefix += f'XCOM_FILE={K8S_XCOM_FILE}\nmkdir -p "$(dirname "$XCOM_FILE")"\n'
    from airflow.providers.cncf.kubernetes.secret import Secret

    secrets = []
    if grants_kek:
        secrets.append(Secret("volume", K8S_GRANTS_KEK_DIR, K8S_GRANTS_KEK_SECRET))
        pod_env["GRANTS_KEK_FILE"] = f"{K8S_GRANTS_KEK_DIR}/kek"
    kafka_secret = setting("KAFKA_CREDENTIALS_SECRET", K8S_KAFKA_SECRET_DEFAULT)
    if kafka_secret:
        secrets.append(Secret("env", "KAFKA_PROP_SASL_USERNAME", kafka_secret, "username"))
        secrets.append(Secret("env", "KAFKA_PROP_SASL_PASSWORD", kafka_secret, "password"))
    if secrets:
        operator_kwargs["secrets"] = secrets
    kwargs = dict(
        task_id=task_id,
        namespace=setting("NAMESPACE") or setting("TRIBUTARY_NAMESPACE") or "tributary",
        image=setting("TRIBUTARY_IMAGE") or "tributary:latest",
        service_account_name=setting("SERVICE_ACCOUNT") or "tributary-jobs",
        configmaps=[K8S_SERVICES_CONFIGMAP, K8S_CONFIGMAP],
        cmds=["sh", "-c"],
        env_vars=pod_env,
        name=f"tributary-{task_id}".replace("_", "-"),
        get_logs=True,
        on_finish_action="delete_succeeded_pod",
        do_xcom_push=xcom_file,
        in_cluster=(env_setting("TRIBUTARY_K8S_IN_CLUSTER", "true") == "true"),
        **operator_kwargs,
    )
    if expand_over is not None:
        return KubernetesPodOperator.partial(**kwargs).expand(arguments=expand_over.map(_Script(prefix, script, wrap=True)))
    return KubernetesPodOperator(arguments=[prefix + script], **kwargs)


def _Script(prefix: str, build: Any, wrap: bool = False):
    """Mapped tasks: item -> the script of that mapped item (a function: XComArg.map wants one)."""

    def mapped_script(item: Any) -> Any:
        body = prefix + build(item)
        return [body] if wrap else body

    return mapped_script


def _read_json_file(output: str) -> Any:
    import json

    path = output.strip().splitlines()[-1] if output.strip() else ""
    if not path or not Path(path).is_file() or not Path(path).read_text().strip():
        return None
    return json.loads(Path(path).read_text())

