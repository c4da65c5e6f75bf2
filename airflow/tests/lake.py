"""Test helpers: a small Delta lake in the tables' layout (written by the `deltalake`
package, another Delta engine), and the real `tributary` binary's subcommands."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from datetime import datetime, timezone
from pathlib import Path

import pyarrow as pa
from deltalake import DeltaTable, write_deltalake

REPO_ROOT = Path(__file__).resolve().parents[2]
SCHEMAS = REPO_ROOT / "schemas"
# The chains: the registry (schemas/chains.txt) as the DAGs read it.
sys.path.insert(0, str(REPO_ROOT / "airflow" / "dags"))
from tributary_common import CHAINS  # noqa: E402
PARTITIONS = ["tenant_id", "event_date"]
# Closed partitions (well before today), so `--closed-before-days 1` compacts them.
DATES = ("2025-11-01", "2025-11-02")
TENANTS = ("acme", "globex")


def _arrow_type(t):
    """The Arrow type of an Avro field type, as crates/lake/src/convert.rs maps it."""
    if isinstance(t, str):
        return {"string": pa.string(), "long": pa.int64(), "int": pa.int32(), "boolean": pa.bool_(),
                "double": pa.float64(), "float": pa.float64()}[t], False
    if isinstance(t, list):
        (one,) = [b for b in t if b != "null"]
        return _arrow_type(one)[0], True
    if t.get("logicalType") in ("timestamp-micros", "timestamp-millis"):
        return pa.timestamp("us", tz="UTC"), False
    if t["type"] == "enum":
        return pa.string(), False
    if t["type"] == "map":
        return pa.map_(pa.string(), pa.string()), False
    return _arrow_type(t["type"])


def avro_fields(chain: str) -> list[dict]:
    return json.loads((SCHEMAS / f"{chain}.avsc").read_text())["fields"]


def arrow_schema(chain: str) -> pa.Schema:
    fields = []
    for f in avro_fields(chain):
        dt, nullable = _arrow_type(f["type"])
        fields.append(pa.field(f["name"], dt, nullable=nullable))
    fields.append(pa.field("event_date", pa.string(), nullable=False))
    return pa.schema(fields)


def _value(field: dict, chain: str, i: int, email: str):
    name, t = field["name"], field["type"]
    if name == "email":
        return email
    if name == "email_sha256":
        import hashlib
        return hashlib.sha256(email.encode()).hexdigest()
    if isinstance(t, list):
        return None
    if isinstance(t, dict) and t.get("type") == "enum":
        return t["symbols"][0]
    if isinstance(t, dict) and t.get("type") == "map":
        return []
    if isinstance(t, dict) and "logicalType" in t:
        return datetime(2025, 11, 1, tzinfo=timezone.utc)
    if t == "string":
        return f"{chain}-{name}-{i}"
    if t in ("long", "int"):
        return i
    if t == "boolean":
        return False
    if t in ("double", "float"):
        return 0.0
    raise ValueError(f"no test value for {name}: {t}")


def email_of(i: int) -> str:
    return f"person{i % 7}@example.com"


def batch(chain: str, start: int, rows_per_partition: int) -> pa.Table:
    """Rows for every tenant x date; email person<i%7>@example.com; unique event_id."""
    schema = arrow_schema(chain)
    fields = avro_fields(chain)
    cols = {f.name: [] for f in schema}
    i = start
    for tenant in TENANTS:
        for day in DATES:
            for _ in range(rows_per_partition):
                email = email_of(i)
                for f in fields:
                    cols[f["name"]].append(_value(f, chain, i, email))
                cols["tenant_id"][-1] = tenant
                cols["event_id"][-1] = f"{chain}-{i}"
                y, m, d = map(int, day.split("-"))
                cols["event_time"][-1] = datetime(y, m, d, 12, tzinfo=timezone.utc)
                cols["event_date"].append(day)
                i += 1
    return pa.table(cols, schema=schema)


def build_lake(root: Path, appends: int = 6, rows_per_partition: int = 5, chains=CHAINS) -> Path:
    """A lake at root with one table per chain, `appends` small files per partition."""
    for chain in chains:
        path = root / chain
        for n in range(appends):
            write_deltalake(str(path), batch(chain, n * 1000, rows_per_partition), mode="append",
                            partition_by=PARTITIONS)
    return root


def build_empty_lake(root: Path, chains=CHAINS) -> Path:
    for chain in chains:
        DeltaTable.create(str(root / chain), schema=arrow_schema(chain), partition_by=PARTITIONS)
    return root


def file_count(table: Path) -> int:
    return len(DeltaTable(str(table)).file_uris())


def rows(table: Path) -> pa.Table:
    t = DeltaTable(str(table)).to_pyarrow_table()
    return t.sort_by("event_id")


def tributary_bin() -> Path:
    return Path(os.environ["TRIBUTARY_BIN"])


def require_subcommand(name: str) -> None:
    """Fails (never skips) when the binary lacks a subcommand of the CLI contract."""
    binary = tributary_bin()
    if not binary.is_file():
        raise AssertionError(f"{binary} is not built (cargo build --release -p tributary-ctl)")
    out = subprocess.run([str(binary), name, "--help"], capture_output=True, text=True)
    if out.returncode != 0:
        raise AssertionError(
            f"`tributary {name}` is not in {binary} yet (the CLI contract of issue 5): "
            f"{out.stderr.strip().splitlines()[0] if out.stderr.strip() else out.returncode}"
        )


def kafka_bootstrap() -> str:
    """The local Kafka (env KAFKA_BOOTSTRAP, else .infra/env); fails if it does not answer."""
    addr = os.environ.get("KAFKA_BOOTSTRAP")
    env_file = REPO_ROOT / ".infra" / "env"
    if not addr and env_file.is_file():
        for line in env_file.read_text().splitlines():
            if line.startswith("KAFKA_BOOTSTRAP="):
                addr = line.split("=", 1)[1].strip()
    addr = addr or "127.0.0.1:9092"
    host, _, port = addr.split(",")[0].rpartition(":")
    try:
        socket.create_connection((host, int(port)), timeout=3).close()
    except OSError as exc:
        raise AssertionError(f"Kafka at {addr} does not answer ({exc}): start it with `make infra-up`")
    return addr


def schema_registry_url() -> str:
    url = os.environ.get("SCHEMA_REGISTRY_URL")
    env_file = REPO_ROOT / ".infra" / "env"
    if not url and env_file.is_file():
        for line in env_file.read_text().splitlines():
            if line.startswith("SCHEMA_REGISTRY_URL="):
                url = line.split("=", 1)[1].strip()
    return url or "http://localhost:8081/apis/ccompat/v7"
