"""A small Delta lake in the tables' layout (one table per chain at <root>/<chain>,
partitioned by tenant_id and event_date), written by the `deltalake` package (another Delta
engine). The same approach as airflow/tests/lake.py, with rows given explicitly."""

from __future__ import annotations

import hashlib
import importlib.util
import json
from datetime import datetime, timezone
from pathlib import Path

import pyarrow as pa
from deltalake import write_deltalake

REPO_ROOT = Path(__file__).resolve().parents[2]
SCHEMAS = REPO_ROOT / "schemas"
PARTITIONS = ["tenant_id", "event_date"]


# The tables' Arrow schemas, as crates/lake/src/convert.rs maps the Avro schemas: one copy,
# in the Airflow tests' lake helper.
_spec = importlib.util.spec_from_file_location("airflow_lake", REPO_ROOT / "airflow" / "tests" / "lake.py")
_airflow_lake = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(_airflow_lake)
arrow_schema = _airflow_lake.arrow_schema
avro_fields = _airflow_lake.avro_fields


def sha(email: str) -> str:
    return hashlib.sha256(email.encode()).hexdigest()


_counter = [0]


def row(chain: str, tenant: str, when: datetime, email: str | None, **values) -> dict:
    """One clean event: defaults for every required field, `values` for the rest."""
    _counter[0] += 1
    out = {}
    for f in avro_fields(chain):
        name, t = f["name"], f["type"]
        if isinstance(t, list):
            out[name] = None
        elif isinstance(t, dict) and t.get("type") == "enum":
            out[name] = t["symbols"][0]
        elif isinstance(t, dict) and t.get("type") == "map":
            out[name] = []
        elif isinstance(t, dict) and "logicalType" in t:
            out[name] = when
        else:
            out[name] = f"{chain}-{name}-{_counter[0]}"
    out.update(tenant_id=tenant, event_id=f"{chain}-{_counter[0]}", event_time=when,
               email=email, email_sha256=sha(email) if email else None,
               event_date=when.strftime("%Y-%m-%d"))
    out.update(values)
    return out


def write(root: Path, chain: str, rows: list[dict]) -> None:
    schema = arrow_schema(chain)
    cols = {f.name: [r.get(f.name) for r in rows] for f in schema}
    write_deltalake(str(root / chain), pa.table(cols, schema=schema), mode="append",
                    partition_by=PARTITIONS)


def at(day: int, hour: int = 12, minute: int = 0) -> datetime:
    return datetime(2025, 11, day, hour, minute, tzinfo=timezone.utc)
