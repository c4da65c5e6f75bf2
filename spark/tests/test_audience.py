"""The Spark audience export (spark/audience.py) on a lake holding every kind of suppression,
checked three ways: hand-written expected members, a pure-Python model of the rules
(DESIGN.md "The read side", restated in spark/audience.py), and `tributary audience` (the
same set and the same values; skipped with the reason while the binary lacks the
subcommand, a failure instead when TRIBUTARY_REQUIRE_BIN=1).

The lake is written by the `deltalake` package (another Delta engine) in the sink's layout:
one table per chain, partitioned by tenant_id and event_date, the columns of
schemas/<chain>.avsc as airflow/tests/lake.py maps them to Arrow. Each chain's rows go in two
appends whose order is not the event order, so nothing can rely on arrival order.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import os
import shutil
import subprocess
import sys
import uuid
from collections import defaultdict
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from deltalake import write_deltalake

SPARK_DIR = Path(__file__).resolve().parents[1]
REPO_ROOT = SPARK_DIR.parent
sys.path.insert(0, str(SPARK_DIR))
sys.path.insert(0, str(REPO_ROOT / "airflow" / "tests"))
import audience  # noqa: E402  spark/audience.py
import lake as lake_layout  # noqa: E402  airflow/tests/lake.py: the tables' Arrow schemas

UTC = timezone.utc
HEADER = "email,email_sha256,user_id,first_name,last_name,subscribed_at"
T0 = datetime(2025, 11, 1, tzinfo=UTC)
AS_OF = datetime(2025, 11, 20, tzinfo=UTC)
EARLY = datetime(2025, 11, 5, tzinfo=UTC)  # an earlier as_of: the blocks expiring at EXPIRY are live
EXPIRY = datetime(2025, 11, 10, tzinfo=UTC)  # between EARLY and AS_OF
LATER = datetime(2025, 12, 1, tzinfo=UTC)  # after AS_OF
NL, OFFERS = "newsletter", "offers"

# Spark for tests: two local cores, few partitions, no UI.
SPARK_CONF = {
    "spark.master": "local[2]",
    "spark.ui.enabled": "false",
    "spark.sql.shuffle.partitions": "2",
    "spark.default.parallelism": "2",
    "spark.databricks.delta.snapshotPartitions": "2",
    "spark.driver.memory": "1g",
}


def h(hours: float, micros: int = 0) -> datetime:
    return T0 + timedelta(hours=hours, microseconds=micros)


def sha(email: str) -> str:
    return hashlib.sha256(email.encode()).hexdigest()


# ------------------------------------------------------------------------------ scenario ----

EVENTS: list[dict] = []


def _event(chain: str, tenant: str, t: datetime, address: str | None, hide_email: bool = False, **fields) -> None:
    """One row. `address` gives email and email_sha256; hide_email keeps only the hash."""
    EVENTS.append({
        "n": len(EVENTS), "chain": chain, "tenant_id": tenant, "event_time": t,
        "email": None if (address is None or hide_email) else address,
        "email_sha256": None if address is None else sha(address),
        **fields,
    })


def sub(tenant, address, list_id, t, consent_ip=None, consent_at=None, action="SUBSCRIBE", hide_email=False):
    _event("subscriptions", tenant, t, address, hide_email, list_id=list_id, action=action,
           consent_ip=consent_ip, consent_at=consent_at)


def unsub(tenant, address, list_id, t, reason="user request"):
    _event("unsubscribes", tenant, t, address, list_id=list_id, reason=reason, method="link")


def block(tenant, address, t, action="ADD", reason="HARD_BOUNCE", expires=None, hide_email=False):
    _event("blocklists", tenant, t, address, hide_email, action=action, kind="EMAIL",
           value=sha(address) if hide_email else address, reason=reason, expires_at=expires)


def domain_block(tenant, domain, t, action="ADD", reason="MANUAL", expires=None):
    _event("blocklists", tenant, t, None, action=action, kind="DOMAIN", value=domain, reason=reason,
           expires_at=expires)


def user(tenant, address, t, user_id=None, first=None, last=None, hide_email=False):
    _event("users", tenant, t, address, hide_email, user_id=user_id, first_name=first, last_name=last)


def mailing(tenant, address, t, event_type="SENT"):
    _event("mailings", tenant, t, address, event_type=event_type, message_id=f"m-{len(EVENTS)}")


A, G = "acme", "globex"

# --- members of acme's newsletter at AS_OF
ANN = "ann@example.com"  # no unsubscribe: unconsented subscriptions count; names from 3 users rows
sub(A, ANN, NL, h(1))
sub(A, ANN, NL, h(5, 123456))  # the latest subscription: subscribed_at, microseconds
sub(A, ANN, OFFERS, h(1))
user(A, ANN, h(1), user_id="u-ann", first="Ann", last="Old")
user(A, ANN, h(20), last='O"Brien, Jr.')
user(A, ANN, h(30), first="Anne")
user(A, ANN, h(40))  # a later row with none of the three set changes nothing
mailing(A, ANN, h(41))
CONSENTED = "consented@example.com"
sub(A, CONSENTED, NL, h(2, 250000), consent_ip="192.0.2.1", action="CONFIRM")
LIFTED = "lifted@example.com"  # block lifted by a later REMOVE (after EARLY: events are not filtered by as_of)
sub(A, LIFTED, NL, h(1))
block(A, LIFTED, h(10), reason="HARD_BOUNCE")
block(A, LIFTED, EXPIRY, action="REMOVE")
EXPIRED = "expired@example.com"  # expired block (live at EARLY)
sub(A, EXPIRED, NL, h(1))
block(A, EXPIRED, h(10), reason="MANUAL", expires=EXPIRY)
EXPIRES_AT_AS_OF = "expires-at-asof@example.com"  # expires_at == as_of: expired (live means later)
sub(A, EXPIRES_AT_AS_OF, NL, h(1))
block(A, EXPIRES_AT_AS_OF, h(10), reason="MANUAL", expires=AS_OF)
READD_EXPIRED = "readd-expired@example.com"  # ADD, REMOVE, then an ADD that expired
sub(A, READD_EXPIRED, NL, h(1))
block(A, READD_EXPIRED, h(1), reason="SPAM_COMPLAINT")
block(A, READD_EXPIRED, h(2), action="REMOVE")
block(A, READD_EXPIRED, h(3), reason="MANUAL", expires=EXPIRY)
OTHER_LIST_UNSUB = "other-list-unsub@example.com"  # unsubscribed from offers only
sub(A, OTHER_LIST_UNSUB, NL, h(1))
sub(A, OTHER_LIST_UNSUB, OFFERS, h(1))
unsub(A, OTHER_LIST_UNSUB, OFFERS, h(5))
RESUB = "resub@example.com"  # global unsubscribe, then a consented subscription to NL (not offers)
sub(A, RESUB, NL, h(1))
sub(A, RESUB, OFFERS, h(1))
unsub(A, RESUB, None, h(5))
sub(A, RESUB, NL, h(8), consent_ip="198.51.100.7", action="RESUBSCRIBE")
RESUB_CONSENT_AT = "resub-consent-at@example.com"  # consent_at is evidence; its value does not matter
sub(A, RESUB_CONSENT_AT, NL, h(1))
unsub(A, RESUB_CONSENT_AT, NL, h(5))
sub(A, RESUB_CONSENT_AT, NL, h(9), consent_at=h(9) - timedelta(days=30), action="RESUBSCRIBE")
SUBDOMAIN = "sub@mail.blocked.example"  # blocked.example is blocked; its subdomain is not
sub(A, SUBDOMAIN, NL, h(1))
DOMAIN_LIFTED = "someone@lifted.example"
sub(A, DOMAIN_LIFTED, NL, h(1))
domain_block(A, "lifted.example", h(3))
domain_block(A, "lifted.example", h(4), action="REMOVE")
DOMAIN_EXPIRED = "dom@expired-domain.example"  # domain block expired (live at EARLY)
sub(A, DOMAIN_EXPIRED, NL, h(1))
domain_block(A, "expired-domain.example", h(2), expires=EXPIRY)
HASH_ONLY = "hashonly@example.com"  # its subscription carries only the hash; the email is in mailings
sub(A, HASH_ONLY, NL, h(3), hide_email=True)
mailing(A, HASH_ONLY, h(50), event_type="DELIVERED")
ZOE = "zoe@example.com"
sub(A, ZOE, NL, h(6))
user(A, ZOE, h(6), user_id="u-zoe", first=" Zoë", last="d'Arc")
ORG = "org@example.org"  # example.org is blocked at globex, not at acme
sub(A, ORG, NL, h(1))

# --- not members of acme's newsletter
BY_REASON = {r: f"{r.lower().replace('_', '-')}@example.com"
             for r in ("HARD_BOUNCE", "SPAM_COMPLAINT", "MANUAL", "INVALID", "ERASED", "OTHER")}
for reason, address in BY_REASON.items():
    sub(A, address, NL, h(1))
    # An erasure's suppression is pseudonymous: the hash, no email.
    block(A, address, h(2), reason=reason, hide_email=(reason == "ERASED"))
SAME_INSTANT = "same-instant@example.com"  # REMOVE at the ADD's instant: the ADD stands
sub(A, SAME_INSTANT, NL, h(1))
block(A, SAME_INSTANT, h(3))
block(A, SAME_INSTANT, h(3), action="REMOVE")
FUTURE_EXPIRY = "future-expiry@example.com"  # expires after as_of: live
sub(A, FUTURE_EXPIRY, NL, h(1))
block(A, FUTURE_EXPIRY, h(2), reason="MANUAL", expires=LATER)
REMOVE_BEFORE_ADD = "remove-before-add@example.com"
sub(A, REMOVE_BEFORE_ADD, NL, h(1))
block(A, REMOVE_BEFORE_ADD, h(1), action="REMOVE")
block(A, REMOVE_BEFORE_ADD, h(2), reason="SPAM_COMPLAINT")
READD_LIVE = "readd-live@example.com"
sub(A, READD_LIVE, NL, h(1))
block(A, READD_LIVE, h(1))
block(A, READD_LIVE, h(2), action="REMOVE")
block(A, READD_LIVE, h(3), reason="OTHER")
EMAIL_BLOCK_DOMAIN_REMOVE = "email-block@example.com"  # a DOMAIN REMOVE does not lift an EMAIL ADD
sub(A, EMAIL_BLOCK_DOMAIN_REMOVE, NL, h(1))
block(A, EMAIL_BLOCK_DOMAIN_REMOVE, h(2))
domain_block(A, "example.com", h(3), action="REMOVE")
DOMAIN_BLOCKED = "user@blocked.example"  # domain block; an EMAIL REMOVE does not lift it
domain_block(A, "blocked.example", h(2), reason="SPAM_COMPLAINT")
sub(A, DOMAIN_BLOCKED, NL, h(3), consent_ip="192.0.2.9")  # a subscription never lifts a block
block(A, DOMAIN_BLOCKED, h(9), action="REMOVE")
HASH_ONLY_DOMAIN = "who@blocked.example"  # subscription by hash only; the domain known from users
sub(A, HASH_ONLY_DOMAIN, NL, h(1), hide_email=True)
user(A, HASH_ONLY_DOMAIN, h(2), user_id="u-who")
MAIL_ONLY_DOMAIN = "mailonly@blocked.example"  # by hash only, but for one mailing: its domain is blocked
sub(A, MAIL_ONLY_DOMAIN, NL, h(1), hide_email=True)
mailing(A, MAIL_ONLY_DOMAIN, h(2), event_type="OPENED")
DOMAIN_SAME_INSTANT = "d@same.example"
sub(A, DOMAIN_SAME_INSTANT, NL, h(1))
domain_block(A, "same.example", h(3))
domain_block(A, "same.example", h(3), action="REMOVE")
BLOCKED_THEN_CONSENT = "blocked-then-consent@example.com"
block(A, BLOCKED_THEN_CONSENT, h(1), reason="MANUAL")
sub(A, BLOCKED_THEN_CONSENT, NL, h(5), consent_ip="192.0.2.10", consent_at=h(5))
GLOBAL_UNSUB = "global-unsub@example.com"
sub(A, GLOBAL_UNSUB, NL, h(1))
unsub(A, GLOBAL_UNSUB, None, h(2))
NL_UNSUB = "nl-unsub@example.com"  # unsubscribed from NL only: still a member of offers
sub(A, NL_UNSUB, NL, h(1))
sub(A, NL_UNSUB, OFFERS, h(1))
unsub(A, NL_UNSUB, NL, h(2))
UNCONSENTED_RESUB = "unconsented-resub@example.com"  # a later resubscription without consent
sub(A, UNCONSENTED_RESUB, NL, h(1))
unsub(A, UNCONSENTED_RESUB, None, h(2))
sub(A, UNCONSENTED_RESUB, NL, h(3), action="RESUBSCRIBE")
CONSENT_SAME_INSTANT = "consent-same-instant@example.com"  # consented, but not strictly later
sub(A, CONSENT_SAME_INSTANT, NL, h(1))
unsub(A, CONSENT_SAME_INSTANT, NL, h(4))
sub(A, CONSENT_SAME_INSTANT, NL, h(4), consent_ip="192.0.2.11", action="RESUBSCRIBE")
CONSENT_BEFORE_UNSUB = "consent-before-unsub@example.com"
sub(A, CONSENT_BEFORE_UNSUB, NL, h(1), consent_ip="192.0.2.12")
unsub(A, CONSENT_BEFORE_UNSUB, None, h(2))
OFFERS_ONLY = "offers-only@example.com"
sub(A, OFFERS_ONLY, OFFERS, h(1))
PROFILE_ONLY = "profile-only@example.com"  # never subscribed
user(A, PROFILE_ONLY, h(1), user_id="u-profile", first="Pro")
mailing(A, PROFILE_ONLY, h(2))

# --- globex: the same addresses, other events (tenant isolation both ways)
G_ONLY = "globex-only@example.net"
sub(G, G_ONLY, NL, h(1))
sub(G, BY_REASON["HARD_BOUNCE"], NL, h(1))  # blocked at acme, not at globex
sub(G, ANN, NL, h(1))
unsub(G, ANN, None, h(2))  # out at globex, still in at acme
block(G, CONSENTED, h(1))  # blocked at globex; never subscribed there; still in at acme
domain_block(G, "example.org", h(1))  # org@example.org stays in at acme
sub(G, "g@example.org", NL, h(2))
domain_block(G, "lifted.example", h(9))  # lifted at acme; a later ADD at globex changes nothing there
user(G, ANN, h(99), user_id="g-ann", first="Globex Ann")  # other tenant's profile: not used at acme

EXPECTED = {
    ("acme", NL, AS_OF): {
        ANN, CONSENTED, LIFTED, EXPIRED, EXPIRES_AT_AS_OF, READD_EXPIRED, OTHER_LIST_UNSUB, RESUB,
        RESUB_CONSENT_AT, SUBDOMAIN, DOMAIN_LIFTED, DOMAIN_EXPIRED, HASH_ONLY, ZOE, ORG,
    },
    ("acme", NL, EARLY): {
        ANN, CONSENTED, LIFTED, OTHER_LIST_UNSUB, RESUB, RESUB_CONSENT_AT, SUBDOMAIN, DOMAIN_LIFTED,
        HASH_ONLY, ZOE, ORG,
    },
    ("acme", OFFERS, AS_OF): {ANN, NL_UNSUB, OFFERS_ONLY},
    ("globex", NL, AS_OF): {G_ONLY, BY_REASON["HARD_BOUNCE"]},
    ("acme", "no-such-list", AS_OF): set(),
}
CASES = list(EXPECTED)
CASE_IDS = [f"{t}-{l}-{a:%m%d}" for t, l, a in CASES]

# Some rows in full, written by hand.
EXPECTED_ROWS = {
    ANN: {"email": ANN, "email_sha256": sha(ANN), "user_id": "u-ann", "first_name": "Anne",
          "last_name": 'O"Brien, Jr.', "subscribed_at": h(5, 123456)},
    HASH_ONLY: {"email": HASH_ONLY, "email_sha256": sha(HASH_ONLY), "user_id": None, "first_name": None,
                "last_name": None, "subscribed_at": h(3)},
    ZOE: {"email": ZOE, "email_sha256": sha(ZOE), "user_id": "u-zoe", "first_name": " Zoë",
          "last_name": "d'Arc", "subscribed_at": h(6)},
    RESUB: {"email": RESUB, "email_sha256": sha(RESUB), "user_id": None, "first_name": None,
            "last_name": None, "subscribed_at": h(8)},
    CONSENTED: {"email": CONSENTED, "email_sha256": sha(CONSENTED), "user_id": None, "first_name": None,
                "last_name": None, "subscribed_at": h(2, 250000)},
}


# ------------------------------------------------------------------ reference model ----

def _latest(rows: list[dict], column: str):
    """The value of the latest row (event time) where `column` is set; ties: the greatest."""
    best = max(((r["event_time"], r[column]) for r in rows if r.get(column) is not None), default=None)
    return None if best is None else best[1]


def _blocked(rows: list[dict], as_of: datetime) -> bool:
    """Some live ADD with no REMOVE strictly later than it (the rule, literally)."""
    adds = [r["event_time"] for r in rows
            if r["action"] == "ADD" and (r["expires_at"] is None or r["expires_at"] > as_of)]
    removes = [r["event_time"] for r in rows if r["action"] == "REMOVE"]
    return any(not any(rm > add for rm in removes) for add in adds)


def model(events: list[dict], tenant: str, list_id: str, as_of: datetime) -> dict[str, dict]:
    """The members (email_sha256 -> output row) by the rules of DESIGN.md, in plain Python."""
    mine = [e for e in events if e["tenant_id"] == tenant]
    by_address: dict[str, list[dict]] = defaultdict(list)
    for e in mine:
        if e["email_sha256"] is not None:
            by_address[e["email_sha256"]].append(e)
    domain_rows: dict[str, list[dict]] = defaultdict(list)
    for e in mine:
        if e["chain"] == "blocklists" and e["kind"] == "DOMAIN":
            domain_rows[e["value"]].append(e)
    blocked_domains = {d for d, rows in domain_rows.items() if _blocked(rows, as_of)}
    members = {}
    for address, rows in by_address.items():
        subs = [r for r in rows if r["chain"] == "subscriptions" and r["list_id"] == list_id]
        if not subs:
            continue
        outs = [r["event_time"] for r in rows if r["chain"] == "unsubscribes" and r["list_id"] in (list_id, None, "")]
        if outs:
            out = max(outs)
            if not any(r["event_time"] > out for r in subs
                       if r.get("consent_at") is not None or r.get("consent_ip") not in (None, "")):
                continue
        if _blocked([r for r in rows if r["chain"] == "blocklists" and r["kind"] == "EMAIL"], as_of):
            continue
        email = _latest(rows, "email")
        if email is not None and "@" in email and email.rsplit("@", 1)[1] in blocked_domains:
            continue
        users = [r for r in rows if r["chain"] == "users"]
        members[address] = {
            "email": email, "email_sha256": address, "user_id": _latest(users, "user_id"),
            "first_name": _latest(users, "first_name"), "last_name": _latest(users, "last_name"),
            "subscribed_at": max(r["event_time"] for r in subs),
        }
    return members


# ---------------------------------------------------------------------------- the lake ----

def _column(chain: str, name: str, rows: list[dict]) -> list:
    if name == "event_id":
        return [f"{chain}-{r['n']}" for r in rows]
    if name == "ingested_at":
        return [r["event_time"] + timedelta(minutes=1) for r in rows]
    if name == "source":
        return ["json"] * len(rows)
    if name == "event_date":
        return [r["event_time"].strftime("%Y-%m-%d") for r in rows]
    if name == "attributes":
        return [[] for _ in rows]
    return [r.get(name) for r in rows]


def chain_table(chain: str, rows: list[dict]) -> pa.Table:
    schema = lake_layout.arrow_schema(chain)
    return pa.table({f.name: _column(chain, f.name, rows) for f in schema}, schema=schema)


def build_lake(root: Path) -> Path:
    for chain in lake_layout.CHAINS:
        rows = [e for e in EVENTS if e["chain"] == chain]
        # Two appends, the second holding the earlier half of the events in reverse: files and
        # rows out of event order.
        for part in (rows[1::2], rows[::2][::-1]):
            write_deltalake(str(root / chain), chain_table(chain, part), mode="append",
                            partition_by=lake_layout.PARTITIONS)
    return root


# ----------------------------------------------------------------------------- helpers ----

def parse_csv(text: str) -> tuple[str, dict[str, dict]]:
    """The header line and the rows by email_sha256 (empty field: None; times parsed)."""
    header = text.split("\n", 1)[0].rstrip("\r")
    reader = csv.DictReader(io.StringIO(text, newline=""))
    rows = {}
    for rec in reader:
        row = {k: (v if v != "" else None) for k, v in rec.items()}
        if row["subscribed_at"] is not None:
            row["subscribed_at"] = audience.parse_time(row["subscribed_at"])
        assert row["email_sha256"] not in rows, f"{row['email_sha256']} twice"
        rows[row["email_sha256"]] = row
    return header, rows


def spark_rows(df) -> list[dict]:
    out = []
    for r in df.collect():
        d = r.asDict()
        if d["subscribed_at"] is not None:  # Spark returns naive local datetimes: the session is UTC,
            d["subscribed_at"] = d["subscribed_at"].replace(tzinfo=UTC)  # so is the driver below
        out.append(d)
    return out


def emails(rows: dict[str, dict]) -> set:
    return {r["email"] for r in rows.values()}


@pytest.fixture(scope="module")
def lake_dir(tmp_path_factory) -> Path:
    return build_lake(tmp_path_factory.mktemp("lake"))


@pytest.fixture(scope="module")
def spark(tmp_path_factory):
    os.environ["TZ"] = "UTC"  # the driver's collect() turns timestamps into local datetimes
    import time

    time.tzset()
    session = audience.spark_session(
        "tributary-audience-test",
        {**SPARK_CONF, "spark.sql.warehouse.dir": str(tmp_path_factory.mktemp("warehouse"))},
    )
    yield session
    session.stop()


# ------------------------------------------------------------------------------- tests ----

def test_the_job_reads_every_chain_of_the_registry():
    """The tables the job reads (its rules' chains) are the chain registry's (schemas/chains.txt)."""
    assert sorted(audience.CHAINS) == sorted(lake_layout.CHAINS)


def test_the_model_gives_the_hand_written_sets():
    for (tenant, list_id, as_of), expected in EXPECTED.items():
        got = model(EVENTS, tenant, list_id, as_of)
        assert emails(got) == expected, (tenant, list_id, as_of)
    got = model(EVENTS, "acme", NL, AS_OF)
    for address, row in EXPECTED_ROWS.items():
        assert got[sha(address)] == row


@pytest.mark.parametrize("case", CASES, ids=CASE_IDS)
def test_spark_audience_is_the_expected_set(spark, lake_dir, case):
    tenant, list_id, as_of = case
    rows = spark_rows(audience.audience(spark, str(lake_dir), tenant, list_id, as_of))
    assert [r["email_sha256"] for r in rows] == sorted(r["email_sha256"] for r in rows), "sorted by email_sha256"
    got = {r["email_sha256"]: r for r in rows}
    assert len(got) == len(rows), "one row per member"
    assert emails(got) == EXPECTED[case]
    assert got == model(EVENTS, tenant, list_id, as_of)
    if case == ("acme", NL, AS_OF):
        for address, row in EXPECTED_ROWS.items():
            assert got[sha(address)] == row


@pytest.mark.parametrize("case", CASES, ids=CASE_IDS)
def test_csv_file(spark, lake_dir, tmp_path, case):
    tenant, list_id, as_of = case
    out = tmp_path / "out" / f"{list_id}.csv"
    summary = audience.export(spark, str(lake_dir), tenant, list_id, str(out), as_of)
    assert summary["members"] == len(EXPECTED[case])
    assert sorted(p.name for p in out.parent.iterdir()) == [out.name], "one file, nothing beside it"
    text = out.read_text(encoding="utf-8")
    header, rows = parse_csv(text)
    assert header == HEADER
    assert text.endswith("\n") and "\r" not in text
    assert rows == model(EVENTS, tenant, list_id, as_of)
    if case == ("acme", NL, AS_OF):
        # RFC 3339 UTC, fractions only when non-zero; RFC 4180 quoting; null = empty field.
        assert f"{ANN},{sha(ANN)},u-ann,Anne,\"O\"\"Brien, Jr.\",2025-11-01T05:00:00.123456Z\n" in text
        assert f"{CONSENTED},{sha(CONSENTED)},,,,2025-11-01T02:00:00.250Z\n" in text
        assert f"{ZOE},{sha(ZOE)},u-zoe, Zoë,d'Arc,2025-11-01T06:00:00Z\n" in text
        # Written again: replaced, not appended to.
        audience.export(spark, str(lake_dir), tenant, list_id, str(out), as_of)
        assert out.read_text(encoding="utf-8") == text
        assert sorted(p.name for p in out.parent.iterdir()) == [out.name]


def test_parquet_file(spark, lake_dir, tmp_path):
    out = tmp_path / "newsletter.parquet"
    summary = audience.export(spark, str(lake_dir), "acme", NL, str(out), AS_OF)
    assert summary["members"] == len(EXPECTED[("acme", NL, AS_OF)])
    assert sorted(p.name for p in tmp_path.iterdir()) == [out.name]
    table = pq.read_table(out)
    assert table.schema.names == HEADER.split(",")
    assert table.schema.field("subscribed_at").type == pa.timestamp("us", tz="UTC")
    got = {r["email_sha256"]: r for r in table.to_pylist()}
    assert got == model(EVENTS, "acme", NL, AS_OF)


def test_command_line(lake_dir, tmp_path):
    """`python spark/audience.py ...` as a user runs it (its own Spark)."""
    out = tmp_path / "cli" / "newsletter.csv"
    confs = [a for k, v in SPARK_CONF.items() for a in ("--conf", f"{k}={v}")]
    run = subprocess.run(
        [sys.executable, str(SPARK_DIR / "audience.py"), "--lake", str(lake_dir), "--tenant", "acme",
         "--list", NL, "--out", str(out), "--as-of", "2025-11-20T01:00:00+01:00", *confs],
        capture_output=True, text=True, timeout=600, cwd=tmp_path,
    )
    assert run.returncode == 0, run.stderr[-4000:]
    summary = json.loads(run.stdout.strip().splitlines()[-1])
    assert summary["as_of"] == "2025-11-20T00:00:00Z" and summary["members"] == len(EXPECTED[("acme", NL, AS_OF)])
    header, rows = parse_csv(out.read_text(encoding="utf-8"))
    assert header == HEADER and rows == model(EVENTS, "acme", NL, AS_OF)
    bad = subprocess.run([sys.executable, str(SPARK_DIR / "audience.py"), "--lake", str(lake_dir), "--tenant",
                          "acme", "--list", NL, "--out", str(tmp_path / "x.txt")], capture_output=True, text=True)
    assert bad.returncode == 2 and ".csv or .parquet" in bad.stderr


def test_reads_only_the_tenants_files(spark, lake_dir, tmp_path):
    """globex's data files made unreadable: acme's audience does not notice (its partitions
    alone are opened), globex's fails (so the damage would have been seen)."""
    copy = tmp_path / "lake"
    shutil.copytree(lake_dir, copy)
    damaged = 0
    for chain in lake_layout.CHAINS:
        for f in (copy / chain / "tenant_id=globex").rglob("*.parquet"):
            f.write_bytes(b"not parquet" * 10)
            damaged += 1
    assert damaged >= 5
    rows = spark_rows(audience.audience(spark, str(copy), "acme", NL, AS_OF))
    assert {r["email"] for r in rows} == EXPECTED[("acme", NL, AS_OF)]
    with pytest.raises(Exception):
        audience.audience(spark, str(copy), "globex", NL, AS_OF).collect()


def test_missing_tables_read_as_empty(spark, tmp_path):
    root = tmp_path / "lake"
    rows = [e for e in EVENTS if e["chain"] == "subscriptions"]
    write_deltalake(str(root / "subscriptions"), chain_table("subscriptions", rows),
                    partition_by=lake_layout.PARTITIONS)
    got = {r["email_sha256"]: r for r in spark_rows(audience.audience(spark, str(root), "globex", NL, AS_OF))}
    assert emails(got) == {G_ONLY, BY_REASON["HARD_BOUNCE"], ANN, "g@example.org"}


def test_hdfs(spark, lake_dir):
    """The lake and the output on HDFS (HDFS_URL: dev/test.sh runs this with `make infra-up`'s)."""
    base_url = os.environ.get("HDFS_URL", "").rstrip("/")
    if not base_url:
        pytest.skip("HDFS_URL is not set: start HDFS with `make infra-up` and `set -a; . .infra/env`")
    root = f"{base_url}/tmp/tributary-spark-test-{uuid.uuid4().hex[:8]}"
    jvm = spark._jvm
    path = jvm.org.apache.hadoop.fs.Path(root)
    fs = path.getFileSystem(spark._jsc.hadoopConfiguration())
    try:
        for chain in lake_layout.CHAINS:  # the test lake copied to HDFS by Spark's Delta writer
            (spark.read.format("delta").load(str(lake_dir / chain)).write.format("delta")
             .partitionBy(*lake_layout.PARTITIONS).save(f"{root}/lake/{chain}"))
        out = f"{root}/out/newsletter.csv"
        summary = audience.export(spark, f"{root}/lake", "acme", NL, out, EARLY)
        assert summary["out"] == out and summary["members"] == len(EXPECTED[("acme", NL, EARLY)])
        # Again, as of another time: the file is replaced (FileContext rename with OVERWRITE).
        summary = audience.export(spark, f"{root}/lake", "acme", NL, out, AS_OF)
        assert summary["members"] == len(EXPECTED[("acme", NL, AS_OF)])
        listed = [s.getPath().getName() for s in fs.listStatus(jvm.org.apache.hadoop.fs.Path(f"{root}/out"))]
        assert listed == ["newsletter.csv"]
        text = "\n".join(r.value for r in spark.read.text(out).collect()) + "\n"
        header, rows = parse_csv(text)
        assert header == HEADER and rows == model(EVENTS, "acme", NL, AS_OF)
    finally:
        fs.delete(path, True)


# ------------------------------------------------- the same set from `tributary audience` ----

def tributary_bin() -> Path:
    """The built CLI with its `audience` subcommand; else a skip with the reason, or a failure
    when TRIBUTARY_REQUIRE_BIN=1 (as in dev/test.sh)."""
    binary = Path(os.environ.get("TRIBUTARY_BIN") or REPO_ROOT / "target" / "release" / "tributary")
    problem = None
    if not binary.is_file():
        problem = f"{binary} is not built (cargo build --release -p tributary-ctl)"
    else:
        run = subprocess.run([str(binary), "audience", "--help"], capture_output=True, text=True, timeout=120)
        if run.returncode != 0:
            why = (run.stderr.strip().splitlines() or [f"exit {run.returncode}"])[0]
            problem = f"`{binary} audience --help` fails, the subcommand is not there yet: {why}"
    if problem:
        if os.environ.get("TRIBUTARY_REQUIRE_BIN") == "1":
            pytest.fail(f"TRIBUTARY_REQUIRE_BIN=1 and {problem}", pytrace=False)
        pytest.skip(f"no comparison with `tributary audience`: {problem}")
    return binary


@pytest.mark.parametrize("case", CASES, ids=CASE_IDS)
def test_tributary_audience_gives_the_same_rows_as_spark(spark, lake_dir, tmp_path, case):
    binary = tributary_bin()
    tenant, list_id, as_of = case
    cli_out = tmp_path / "tributary" / f"{list_id}.csv"
    cli_out.parent.mkdir()
    env = {k: v for k, v in os.environ.items() if k != "LAKE_URI"}
    run = subprocess.run(
        [str(binary), "audience", "--tenant", tenant, "--list", list_id, "--lake", str(lake_dir),
         "--out", str(cli_out), "--as-of", audience.rfc3339(as_of)],
        capture_output=True, text=True, timeout=600, env=env,
    )
    assert run.returncode == 0, f"tributary audience exited {run.returncode}:\n{run.stderr[-4000:]}"
    cli_header, cli_rows = parse_csv(cli_out.read_text(encoding="utf-8"))
    spark_out = tmp_path / "spark" / f"{list_id}.csv"
    audience.export(spark, str(lake_dir), tenant, list_id, str(spark_out), as_of)
    spark_header, spark_rows_ = parse_csv(spark_out.read_text(encoding="utf-8"))
    assert cli_header == spark_header == HEADER
    # Every difference at once: members only one side has, and each column that differs.
    who = {sha(e["email"]): e["email"] for e in EVENTS if e["email"]}
    for address in (HASH_ONLY, HASH_ONLY_DOMAIN, MAIL_ONLY_DOMAIN):
        who[sha(address)] = address
    problems = [f"only tributary has {who.get(k, k)}: {cli_rows[k]}" for k in sorted(set(cli_rows) - set(spark_rows_))]
    problems += [f"only Spark has {who.get(k, k)}: {spark_rows_[k]}" for k in sorted(set(spark_rows_) - set(cli_rows))]
    for key in sorted(set(cli_rows) & set(spark_rows_)):
        for column in HEADER.split(","):
            if cli_rows[key][column] != spark_rows_[key][column]:
                problems.append(f"{who.get(key, key)}: {column} tributary "
                                f"{cli_rows[key][column]!r}, Spark {spark_rows_[key][column]!r}")
    assert not problems, "tributary audience and Spark differ:\n  " + "\n  ".join(problems)
    assert emails(cli_rows) == EXPECTED[case]
