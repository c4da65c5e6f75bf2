"""The audience export on Spark: the members of list L of tenant T as of a time, net of every
suppression, from the lake's Delta tables (DESIGN.md, "The read side"; the same set as
`tributary audience` and serve's `GET /v1/tenants/{t}/audiences/{list}`).

    python spark/audience.py --lake URI --tenant T --list L --out PATH.csv|PATH.parquet
                             [--as-of RFC3339] [--conf spark.key=value ...]

(`bash dev/spark.sh run ARGS` runs it in the project's venv; on a cluster,
`spark-submit --packages io.delta:delta-spark_2.13:4.0.0 spark/audience.py ARGS`.) URI and
PATH are local paths, file:// or hdfs:// URIs.

The rules, over the set of T's events of address A (`email_sha256`), whatever their order:
- address block: some blocklists ADD of kind EMAIL for A with expires_at null or later than
  as_of, and no EMAIL REMOVE for A strictly later than it (same instant: the ADD stands);
- domain block: the same over the DOMAIN rows whose `value` is exactly A's domain;
- opted out of L: `out` = the latest unsubscribe of A from L or from all lists (list_id
  null or empty), and no subscription of A to L with consent evidence (consent_at or a non-empty consent_ip set)
  strictly later than `out`;
- member of L: some subscription of A to L, not opted out of L, not blocked.
`as_of` (default: when the job starts) only decides which blocks have expired; no event is
left out for being later than it. Output, one row per member, sorted by email_sha256:
`email,email_sha256,user_id,first_name,last_name,subscribed_at`: A's email (that of A's
latest event with an email, in any of the five tables; its domain is the one the domain rule
checks), user_id, first_name and last_name (each from A's latest users row where that column
is set), subscribed_at (A's latest subscription to L). "Latest" is by event time; at equal
event times the greatest value wins, so nothing depends on the order of files or rows. Rows
without email_sha256 belong to no address (only DOMAIN blocks are read without one). In CSV a null is an empty field and times are RFC 3339 UTC
(`2025-11-01T12:00:00Z`, fractions of a second only when non-zero); Parquet keeps them as
timestamps (microseconds, UTC).

What it reads: of each of the five tables `<lake>/<chain>` (a missing one counts as empty),
only T's files (the filter on the partition column tenant_id lets Delta drop every other
tenant's files from the snapshot before any is opened), and of those only the columns the
rules need (Parquet column pruning):
    subscriptions   email_sha256, email, event_time, list_id, consent_at, consent_ip
    unsubscribes    email_sha256, email, event_time, list_id
    blocklists      email_sha256, email, event_time, action, kind, value, expires_at
    users           email_sha256, email, event_time, user_id, first_name, last_name
    mailings        email_sha256, email, event_time   (only for A's email)
Cost: linear in the tenant's rows. The five scans (the blocklists twice: per address and per
domain) are unioned and every rule is an aggregate per address: one hash aggregation keyed by
email_sha256 with partial aggregation before its one shuffle (so the mailings, by far the
largest table, shrink to one row per address and task before they move), then a join with
the tenant's blocked domains (small, broadcast when under spark.sql.autoBroadcastJoinThreshold).
Memory is bounded per task by Spark (the aggregation spills). The result is written as one
file by one task (a sort of the members only), renamed over PATH (atomically: os.replace
locally, FileContext.rename with OVERWRITE on HDFS), so PATH is never a partial file.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import re
import sys
import time
import uuid
from datetime import datetime, timezone
from typing import Iterable

log = logging.getLogger("audience")

TENANT_RE = re.compile(r"^[a-z0-9][a-z0-9_-]{0,62}$")
HEADER = ("email", "email_sha256", "user_id", "first_name", "last_name", "subscribed_at")

# The columns read from each table beyond email_sha256, email and event_time, with their
# Spark types (the lake's Arrow types: strings, enums as strings, timestamps in UTC).
_TS = "timestamp"
CHAIN_COLUMNS: dict[str, dict[str, str]] = {
    "subscriptions": {"list_id": "string", "consent_at": _TS, "consent_ip": "string"},
    "unsubscribes": {"list_id": "string"},
    "blocklists": {"action": "string", "kind": "string", "value": "string", "expires_at": _TS},
    "users": {"user_id": "string", "first_name": "string", "last_name": "string"},
    "mailings": {},
}
COMMON_COLUMNS = {"email_sha256": "string", "email": "string", "event_time": _TS}
# The tables read: the chains the rules name above (chains of the registry, schemas/chains.txt;
# spark/tests checks they are all of them). Not read from that file: the job may be submitted
# alone to a cluster, and a chain the rules do not know is not theirs to read.
CHAINS = tuple(CHAIN_COLUMNS)


def parse_time(text: str) -> datetime:
    """An RFC 3339 time with an offset (`Z` or `+hh:mm`), or Unix seconds, as an aware UTC
    datetime (microseconds: finer digits are dropped)."""
    if re.fullmatch(r"\d+", text.strip()):
        return datetime.fromtimestamp(int(text.strip()), timezone.utc)
    m = re.fullmatch(r"(\d{4}-\d{2}-\d{2})[Tt ](\d{2}:\d{2}:\d{2})(\.\d+)?([Zz]|[+-]\d{2}:\d{2})", text.strip())
    if not m:
        raise ValueError(f"not an RFC 3339 time with an offset (like 2025-11-01T12:00:00Z): {text!r}")
    day, clock, frac, offset = m.groups()
    micros = (frac or ".")[1:7].ljust(6, "0")
    offset = "+00:00" if offset in ("Z", "z") else offset
    return datetime.fromisoformat(f"{day}T{clock}.{micros}{offset}").astimezone(timezone.utc)


def rfc3339(ts: datetime | None) -> str | None:
    """UTC, `Z`, fractions only when non-zero (3 or 6 digits): what the CSV holds."""
    if ts is None:
        return None
    ts = ts.astimezone(timezone.utc)
    base = ts.strftime("%Y-%m-%dT%H:%M:%S")
    if ts.microsecond == 0:
        return base + "Z"
    if ts.microsecond % 1000 == 0:
        return f"{base}.{ts.microsecond // 1000:03d}Z"
    return f"{base}.{ts.microsecond:06d}Z"


def _micros(ts: datetime) -> int:
    delta = ts.astimezone(timezone.utc) - datetime(1970, 1, 1, tzinfo=timezone.utc)
    return (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds


def normalize_uri(uri: str) -> str:
    """A local path made absolute; a URI (hdfs://, file://, ...) as given, without a trailing /."""
    uri = uri.strip()
    if not re.match(r"^[A-Za-z][A-Za-z0-9+.-]*://", uri):
        uri = os.path.abspath(uri)
    return uri.rstrip("/") or "/"


def spark_session(app: str = "tributary-audience", conf: dict[str, str] | None = None):
    """A SparkSession with Delta (the jars from Maven Central at the first start, through
    configure_spark_with_delta_pip), UTC session time and microsecond Parquet timestamps."""
    from delta import configure_spark_with_delta_pip
    from pyspark.sql import SparkSession

    builder = (
        SparkSession.builder.appName(app)
        .config("spark.sql.extensions", "io.delta.sql.DeltaSparkSessionExtension")
        .config("spark.sql.catalog.spark_catalog", "org.apache.spark.sql.delta.catalog.DeltaCatalog")
        .config("spark.sql.session.timeZone", "UTC")
        .config("spark.sql.parquet.outputTimestampType", "TIMESTAMP_MICROS")
        # The output is one file renamed into place: no _SUCCESS marker beside it.
        .config("spark.hadoop.mapreduce.fileoutputcommitter.marksuccessfuljobs", "false")
        .config("spark.ui.showConsoleProgress", "false")
    )
    for key, value in (conf or {}).items():
        builder = builder.config(key, value)
    spark = configure_spark_with_delta_pip(builder).getOrCreate()
    spark.sparkContext.setLogLevel(os.environ.get("SPARK_LOG_LEVEL", "WARN"))
    return spark


def _empty(spark, columns: dict[str, str]):
    from pyspark.sql.types import StringType, StructField, StructType, TimestampType

    types = {"string": StringType(), _TS: TimestampType()}
    return spark.createDataFrame([], StructType([StructField(n, types[t], True) for n, t in columns.items()]))


def read_chain(spark, lake: str, chain: str, tenant: str):
    """T's rows of one chain table, only the columns the rules need (all nullable)."""
    from delta.tables import DeltaTable
    from pyspark.sql import functions as F

    columns = {**COMMON_COLUMNS, **CHAIN_COLUMNS[chain]}
    path = f"{lake}/{chain}"
    if not DeltaTable.isDeltaTable(spark, path):
        log.warning("%s is not a Delta table (yet): read as empty", path)
        return _empty(spark, columns)
    df = spark.read.format("delta").load(path)
    present = set(df.columns)
    df = df.where(F.col("tenant_id") == F.lit(tenant))  # partition filter: only T's files
    return df.select(
        *[(F.col(n) if n in present else F.lit(None)).cast(t).alias(n) for n, t in columns.items()]
    )


def _blocked(kind_filter, as_of_col, key: str):
    """Aggregates deciding a block per key: the latest live ADD and the latest REMOVE."""
    from pyspark.sql import functions as F

    action, t = F.col("action"), F.col("event_time")
    live = kind_filter & (action == "ADD") & (F.col("expires_at").isNull() | (F.col("expires_at") > as_of_col))
    return [
        F.max(F.when(live, t)).alias(f"{key}_live_add"),
        F.max(F.when(kind_filter & (action == "REMOVE"), t)).alias(f"{key}_remove"),
    ]


def _is_blocked(key: str):
    from pyspark.sql import functions as F

    add, remove = F.col(f"{key}_live_add"), F.col(f"{key}_remove")
    return add.isNotNull() & (remove.isNull() | (add >= remove))


def _latest(value: str, where=None):
    """The value of the latest row (by event time) where it is set; ties: the greatest value."""
    from pyspark.sql import functions as F

    cond = F.col(value).isNotNull() if where is None else (where & F.col(value).isNotNull())
    return F.max(F.when(cond, F.struct(F.col("event_time").alias("t"), F.col(value).alias("v"))))


def audience(spark, lake: str, tenant: str, list_id: str, as_of: datetime):
    """The members of `list_id` of `tenant` as of `as_of`: a DataFrame with the columns of
    HEADER (subscribed_at a timestamp), sorted by email_sha256."""
    from pyspark.sql import functions as F

    if not TENANT_RE.match(tenant):
        raise ValueError(f"tenant must match {TENANT_RE.pattern}: {tenant!r}")
    if not list_id:
        raise ValueError("the list id is empty")
    lake = normalize_uri(lake)
    as_of_col = F.timestamp_micros(F.lit(_micros(as_of)))
    tables = {chain: read_chain(spark, lake, chain, tenant) for chain in CHAINS}

    # Every event of an address, in one narrow shape: its source table and the columns the
    # rules read (null where that table has no such column).
    shape = {**COMMON_COLUMNS, "list_id": "string", "consented": "boolean", "action": "string",
             "kind": "string", "expires_at": _TS, "user_id": "string", "first_name": "string",
             "last_name": "string"}

    def shaped(chain: str, df, **cols):
        out = []
        for name, typ in shape.items():
            if name in cols:
                out.append(cols[name].cast(typ).alias(name))
            elif name in df.columns:
                out.append(F.col(name).cast(typ).alias(name))
            else:
                out.append(F.lit(None).cast(typ).alias(name))
        return df.where(F.col("email_sha256").isNotNull()).select(F.lit(chain).alias("src"), *out)

    subs = tables["subscriptions"]
    events = shaped(
        "subscriptions", subs, consented=F.col("consent_at").isNotNull() | (F.col("consent_ip").isNotNull() & (F.col("consent_ip") != ""))
    )
    for chain in ("unsubscribes", "blocklists", "users", "mailings"):
        events = events.unionByName(shaped(chain, tables[chain]))

    src, t, lid = F.col("src"), F.col("event_time"), F.col("list_id")
    to_list = (src == "subscriptions") & (lid == F.lit(list_id))
    email_kind = (src == "blocklists") & (F.col("kind") == "EMAIL")
    users = src == "users"
    per_address = events.groupBy("email_sha256").agg(
        F.max(F.when(to_list, t)).alias("subscribed_at"),
        F.max(F.when(to_list & F.col("consented"), t)).alias("consented_at"),
        F.max(F.when((src == "unsubscribes") & (lid.isNull() | (lid == "") | (lid == F.lit(list_id))), t)).alias("out_at"),
        *_blocked(email_kind, as_of_col, "address"),
        _latest("email").alias("latest_email"),
        _latest("user_id", users).alias("latest_user_id"),
        _latest("first_name", users).alias("latest_first_name"),
        _latest("last_name", users).alias("latest_last_name"),
    )
    opted_out = F.col("out_at").isNotNull() & (
        F.col("consented_at").isNull() | (F.col("consented_at") <= F.col("out_at"))
    )
    members = per_address.where(F.col("subscribed_at").isNotNull() & ~opted_out & ~_is_blocked("address"))
    members = members.select(
        F.col("latest_email.v").alias("email"),
        "email_sha256",
        F.col("latest_user_id.v").alias("user_id"),
        F.col("latest_first_name.v").alias("first_name"),
        F.col("latest_last_name.v").alias("last_name"),
        "subscribed_at",
    ).withColumn(
        "domain", F.when(F.col("email").contains("@"), F.substring_index(F.col("email"), "@", -1))
    )

    blocks = tables["blocklists"]
    domain_kind = F.col("kind") == "DOMAIN"
    blocked_domains = (
        blocks.where(domain_kind & F.col("value").isNotNull())
        .groupBy(F.col("value").alias("blocked_domain"))
        .agg(*_blocked(domain_kind, as_of_col, "domain"))
        .where(_is_blocked("domain"))
        .select("blocked_domain")
    )
    members = members.join(blocked_domains, F.col("domain") == F.col("blocked_domain"), "left_anti")
    return members.select(*HEADER).orderBy("email_sha256")


def _csv_frame(df):
    """subscribed_at as RFC 3339 UTC text (the session time zone is UTC)."""
    from pyspark.sql import functions as F

    ts = F.col("subscribed_at")
    frac = F.unix_micros(ts) % 1_000_000
    text = (
        F.when(frac == 0, F.date_format(ts, "yyyy-MM-dd'T'HH:mm:ss'Z'"))
        .when(frac % 1000 == 0, F.date_format(ts, "yyyy-MM-dd'T'HH:mm:ss.SSS'Z'"))
        .otherwise(F.date_format(ts, "yyyy-MM-dd'T'HH:mm:ss.SSSSSS'Z'"))
    )
    return df.withColumn("subscribed_at", text)


def _filesystem(spark, path):
    """The Hadoop FileSystem of a Path; the raw one for local files (no .crc beside them)."""
    conf = spark._jsc.hadoopConfiguration()
    if path.toUri().getScheme() in (None, "file"):
        return spark._jvm.org.apache.hadoop.fs.FileSystem.getLocal(conf).getRawFileSystem()
    return path.getFileSystem(conf)


def _replace(spark, fs, source, target) -> None:
    """Renames `source` over `target` (a file, or nothing), atomically where the file system
    can: os.replace locally, FileContext.rename(OVERWRITE) on HDFS and the like."""
    if fs.exists(target) and fs.getFileStatus(target).isDirectory():
        raise RuntimeError(f"{target.toString()} is a directory, not an output file")
    uri = target.toUri()
    if uri.getScheme() in (None, "file"):
        os.replace(source.toUri().getPath(), uri.getPath())
        return
    jvm = spark._jvm
    try:
        context = jvm.org.apache.hadoop.fs.FileContext.getFileContext(uri, spark._jsc.hadoopConfiguration())
        options = spark.sparkContext._gateway.new_array(jvm.org.apache.hadoop.fs.Options.Rename, 1)
        options[0] = jvm.org.apache.hadoop.fs.Options.Rename.OVERWRITE
        context.rename(source, target, options)
        return
    except Exception as exc:  # a file system without FileContext support: delete, then rename
        log.debug("FileContext rename failed (%s); delete and rename instead", exc)
    if fs.exists(target):
        fs.delete(target, False)
    if not fs.rename(source, target):
        raise RuntimeError(f"could not rename {source.toString()} to {target.toString()}")


def write_single_file(spark, df, out: str) -> int:
    """Writes df to `out` (.csv or .parquet) as one file, atomically replacing any previous
    one: Spark writes one part file into a temporary directory beside it, which is then
    renamed over `out`. Returns the number of rows written (counted while writing)."""
    from pyspark.sql import Observation
    from pyspark.sql import functions as F

    out = normalize_uri(out)
    kind = out.rsplit(".", 1)[-1].lower() if "." in out.rsplit("/", 1)[-1] else ""
    if kind not in ("csv", "parquet"):
        raise ValueError(f"--out must end in .csv or .parquet: {out}")
    jvm = spark._jvm
    Path = jvm.org.apache.hadoop.fs.Path
    target = Path(out)
    fs = _filesystem(spark, target)
    parent = target.getParent()
    if not fs.exists(parent):
        fs.mkdirs(parent)
    tmp = Path(parent, f".{target.getName()}.tmp-{uuid.uuid4().hex[:12]}")

    counted = Observation("members")
    frame = (_csv_frame(df) if kind == "csv" else df).observe(counted, F.count(F.lit(1)).alias("rows"))
    writer = frame.coalesce(1).write.mode("errorifexists")
    try:
        if kind == "csv":
            (writer.option("header", True).option("quote", '"').option("escape", '"')
             .option("nullValue", "").option("emptyValue", '""').option("lineSep", "\n")
             .option("ignoreLeadingWhiteSpace", False).option("ignoreTrailingWhiteSpace", False)
             .csv(tmp.toString()))
        else:
            writer.option("compression", "zstd").parquet(tmp.toString())
        parts = [s.getPath() for s in fs.listStatus(tmp) if s.getPath().getName().startswith("part-")]
        rows = int(counted.get.get("rows", 0))
        if len(parts) > 1:
            raise RuntimeError(f"expected one part file in {tmp.toString()}, found {len(parts)}")
        if not parts:  # no partition at all: an empty result
            if kind != "csv":
                raise RuntimeError(f"Spark wrote no part file for the empty result in {tmp.toString()}")
            part = Path(tmp, "part-00000-empty.csv")
            stream = fs.create(part, True)
            stream.write(bytearray((",".join(HEADER) + "\n").encode()))
            stream.close()
            parts = [part]
        _replace(spark, fs, parts[0], target)
        return rows
    finally:
        if fs.exists(tmp):
            fs.delete(tmp, True)


def export(spark, lake: str, tenant: str, list_id: str, out: str, as_of: datetime | None = None) -> dict:
    """Computes the audience and writes it to `out`; returns a summary."""
    as_of = as_of or datetime.now(timezone.utc)
    start = time.monotonic()
    rows = write_single_file(spark, audience(spark, lake, tenant, list_id, as_of), out)
    return {
        "tenant": tenant,
        "list": list_id,
        "as_of": rfc3339(as_of),
        "members": rows,
        "out": normalize_uri(out),
        "seconds": round(time.monotonic() - start, 3),
    }


def _conf_pairs(items: Iterable[str]) -> dict[str, str]:
    conf = {}
    for item in items:
        key, eq, value = item.partition("=")
        if not eq or not key.strip():
            raise argparse.ArgumentTypeError(f"--conf wants key=value, got {item!r}")
        conf[key.strip()] = value
    return conf


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description="The members of a list of a tenant, net of every suppression, from the lake (Spark + Delta).")
    parser.add_argument("--lake", default=os.environ.get("LAKE_URI") or ".lake",
                        help="lake root: local path, file:// or hdfs:// URI (default: LAKE_URI, else .lake)")
    parser.add_argument("--tenant", required=True, help="tenant id")
    parser.add_argument("--list", required=True, dest="list_id", help="list id")
    parser.add_argument("--out", required=True, help="output file, PATH.csv or PATH.parquet (local or hdfs://)")
    parser.add_argument("--as-of", type=parse_time, default=None,
                        help="RFC 3339 time (or Unix seconds) deciding which blocks have expired (default: now)")
    parser.add_argument("--conf", action="append", default=[], metavar="KEY=VALUE",
                        help="a Spark setting (repeatable), e.g. spark.sql.shuffle.partitions=8")
    args = parser.parse_args(argv)
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("audience: %(message)s"))
    log.addHandler(handler)
    log.setLevel(logging.INFO)
    if not TENANT_RE.match(args.tenant):
        parser.error(f"--tenant must match {TENANT_RE.pattern}")
    if not args.out.lower().endswith((".csv", ".parquet")):
        parser.error("--out must end in .csv or .parquet")
    spark = spark_session(conf=_conf_pairs(args.conf))
    try:
        summary = export(spark, args.lake, args.tenant, args.list_id, args.out, args.as_of)
    finally:
        spark.stop()
    log.info("%d member(s) of list %s of tenant %s as of %s written to %s in %.1f s", summary["members"],
             summary["list"], summary["tenant"], summary["as_of"], summary["out"], summary["seconds"])
    print(json.dumps(summary), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
