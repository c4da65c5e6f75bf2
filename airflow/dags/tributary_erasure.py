"""Erasure on request (no schedule): trigger with the run configuration
{"tenant": "acme", "emails": ["a@example.com", ...]}.

`validate` checks the configuration and writes the emails (one a line) to a file in the run's
directory (not to XCom); `erase` runs `tributary erase --tenant T --emails-file F`, which is
idempotent, so a retry or a repeated request is harmless.
"""

from __future__ import annotations

import os
import sys
from datetime import datetime, timedelta

from airflow.sdk import DAG, Param, task
from airflow.sdk.exceptions import AirflowFailException

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))  # the shared module beside this file
import tributary_common as tc  # noqa: E402

MAX_EMAILS = int(tc.env_setting("TRIBUTARY_ERASE_MAX_EMAILS", "100000"))

ERASE_SCRIPT = """
: "${TENANT:?no tenant}"
if [ ! -s "${EMAILS_FILE:-}" ]; then
  # In a pod the run's directory is not there: the emails come in the environment.
  EMAILS_FILE=/tmp/tributary-erase-emails.txt
  printf '%s\\n' "${EMAILS:?no emails}" > "$EMAILS_FILE"
fi
echo "erasing $(grep -c . "$EMAILS_FILE") email(s) of tenant $TENANT"
"$TRIBUTARY_BIN" erase --lake "$LAKE_URI" --tenant "$TENANT" --emails-file "$EMAILS_FILE" \\
  ${TRIBUTARY_LEDGER:+--ledger "$TRIBUTARY_LEDGER"}
"""


def validate_conf(conf: dict) -> tuple[str, list[str]]:
    """The tenant and the emails (trimmed, lower-cased, deduplicated) of a request."""
    if not isinstance(conf, dict):
        raise ValueError("the run configuration must be an object {tenant, emails}")
    unknown = sorted(set(conf) - {"tenant", "emails"})
    if unknown:
        raise ValueError(f"unknown keys in the run configuration: {', '.join(unknown)}")
    tenant = conf.get("tenant")
    if not isinstance(tenant, str) or not tc.TENANT_RE.match(tenant):
        raise ValueError(f"tenant must match {tc.TENANT_RE.pattern}, got {tenant!r}")
    emails = conf.get("emails")
    if not isinstance(emails, list) or not emails:
        raise ValueError("emails must be a non-empty list of email addresses")
    if len(emails) > MAX_EMAILS:
        raise ValueError(f"at most {MAX_EMAILS} emails per request, got {len(emails)}")
    out: list[str] = []
    seen: set[str] = set()
    for i, e in enumerate(emails):
        if not isinstance(e, str):
            raise ValueError(f"emails[{i}] is not a string")
        norm = e.strip().lower()
        local, at, domain = norm.partition("@")
        if not at or not local or "." not in domain or any(c.isspace() for c in norm) or "@" in domain:
            raise ValueError(f"emails[{i}] is not an email address")
        if norm not in seen:
            seen.add(norm)
            out.append(norm)
    return tenant, out


with DAG(
    dag_id="tributary_erasure",
    description="Erase a tenant's data subjects from the lake (triggered with {tenant, emails})",
    schedule=None,
    start_date=datetime(2025, 1, 1),
    catchup=False,
    max_active_runs=1,
    dagrun_timeout=timedelta(hours=6),
    default_args=tc.default_args(),
    params={
        "tenant": Param(type="string", pattern=tc.TENANT_RE.pattern, description="Tenant id"),
        "emails": Param(
            type="array", items={"type": "string"}, minItems=1, description="Email addresses to erase"
        ),
    },
    tags=["tributary", "lake", "gdpr"],
    doc_md=__doc__,
) as dag:

    @task(retries=0, execution_timeout=timedelta(minutes=10))
    def validate(**context) -> dict:
        conf = dict(context["dag_run"].conf or {})
        try:
            tenant, emails = validate_conf(conf)
        except ValueError as exc:
            raise AirflowFailException(f"invalid erasure request: {exc}") from None
        path = tc.run_dir(context) / "erase-emails.txt"
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        tmp.write_text("".join(e + "\n" for e in emails))
        tmp.chmod(0o600)
        tmp.replace(path)
        print(f"erasure request: tenant {tenant}, {len(emails)} email(s), written to {path}")
        return {"tenant": tenant, "count": len(emails), "emails_file": str(path)}

    env = {
        "TENANT": "{{ ti.xcom_pull(task_ids='validate')['tenant'] }}",
        "EMAILS_FILE": "{{ ti.xcom_pull(task_ids='validate')['emails_file'] }}",
    }
    if tc.executor() == "kubernetes":
        env["EMAILS"] = "{{ dag_run.conf['emails'] | map('trim') | map('lower') | unique | join('\\n') }}"
    erase = tc.tributary_task("erase", ERASE_SCRIPT, env=env, execution_timeout=timedelta(hours=4))

    validate() >> erase
