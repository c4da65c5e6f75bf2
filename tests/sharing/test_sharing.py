"""Analytics shares over Delta Sharing, read by the real `delta-sharing` Python client from a
real `serve` (against the local Kafka and registry), plus enrichment by overlap.

The lake (written by `deltalake`): grantor acme with five people a1..a5, of whom a3 is
blocked (blocklists ADD EMAIL) and a4 globally unsubscribed (list_id null, no subscription
afterwards); a users row without an address; globex holds a1, a2, a3 and g9. The grants are
made by `tributary grant create` in a fresh topic namespace."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import tempfile
import time
import uuid
from pathlib import Path

import delta_sharing
import pytest
import requests

import lake
from lake import at, row

ROOT = Path(__file__).resolve().parents[2]
TRIBUTARY = os.environ.get("TRIBUTARY_BIN", str(ROOT / "target/release/tributary"))
SERVE = os.environ.get("SERVE_BIN", str(ROOT / "target/release/serve"))
BOOTSTRAP = os.environ.get("KAFKA_BOOTSTRAP", "127.0.0.1:9092")
REGISTRY = os.environ.get("SCHEMA_REGISTRY_URL", "http://localhost:8081/apis/ccompat/v7")
URL_TTL_S = 20

USERS = {  # email -> (country, city, locale)
    "a1@example.com": ("US", "New York", "en-US"),
    "a2@example.com": ("FR", "Paris", "fr-FR"),
    "a3@example.com": ("DE", "Berlin", "de-DE"),  # blocked at acme
    "a4@example.com": ("GB", "London", "en-GB"),  # globally unsubscribed at acme
    "a5@example.com": ("JP", "Tokyo", "ja-JP"),
}
SHARED_PEOPLE = ["a1@example.com", "a2@example.com", "a5@example.com"]
MAILINGS = [  # (email, day, hour, event_type), all acme
    ("a1@example.com", 1, 10, "SENT"),
    ("a1@example.com", 1, 11, "OPENED"),
    ("a2@example.com", 1, 10, "SENT"),
    ("a3@example.com", 2, 10, "SENT"),
    ("a4@example.com", 2, 10, "SENT"),
    ("a5@example.com", 2, 10, "CLICKED"),
]
USERS_COLUMNS = {"subject_key", "event_time", "event_date", "country", "city", "locale"}
MAILINGS_COLUMNS = {"subject_key", "event_time", "event_date", "event_type"}
FORBIDDEN_COLUMNS = {"email", "email_sha256", "user_id", "tenant_id", "event_id"}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def build_lake(root: Path) -> None:
    users = [row("users", "acme", at(1 if i < 2 else 2, 9, i), e, user_id=f"u-{i}", country=c, city=ci,
                 locale=lo) for i, (e, (c, ci, lo)) in enumerate(USERS.items())]
    users.append(row("users", "acme", at(2, 9, 30), None, user_id="u-no-address", country="XX"))
    lake.write(root, "users", users)
    lake.write(root, "users", [
        row("users", "globex", at(1, 8), "a1@example.com", country="globex-US"),
        row("users", "globex", at(1, 8), "a2@example.com", country="globex-FR"),
        row("users", "globex", at(1, 8), "a3@example.com", country="globex-DE"),
        row("users", "globex", at(1, 8), "g9@example.com", country="globex-only"),
    ])
    lake.write(root, "mailings", [
        row("mailings", "acme", at(d, h), e, event_type=t) for e, d, h, t in MAILINGS
    ] + [row("mailings", "globex", at(1, 10), "g9@example.com", event_type="SENT")])
    lake.write(root, "blocklists", [
        row("blocklists", "acme", at(1, 7), "a3@example.com", action="ADD", kind="EMAIL",
            value="a3@example.com", reason="MANUAL"),
    ])
    lake.write(root, "unsubscribes", [
        row("unsubscribes", "acme", at(1, 7), "a4@example.com", list_id=None, reason="global"),
    ])


class Env:
    """The lake, the topics, a running serve and its grants."""

    def __init__(self) -> None:
        self.tmp = Path(tempfile.mkdtemp(prefix="tributary-sharing-"))
        self.lake = self.tmp / "lake"
        self.lake.mkdir()
        build_lake(self.lake)
        self.ns = f"sharetest{uuid.uuid4().hex[:10]}"
        self.port = free_port()
        self.metrics_port = free_port()
        self.base = f"http://localhost:{self.port}"
        self.endpoint = f"{self.base}/delta-sharing"
        self.env = dict(os.environ, KAFKA_BOOTSTRAP=BOOTSTRAP, SCHEMA_REGISTRY_URL=REGISTRY,
                        TOPIC_NAMESPACE=self.ns, SHARING_ENDPOINT=self.endpoint)
        subprocess.run([TRIBUTARY, "topics", "--namespace", self.ns, "--partitions", "1"],
                       env=self.env, check=True, capture_output=True, timeout=120)
        self.log_path = self.tmp / "serve.log"
        self.log = open(self.log_path, "w")
        serve_env = dict(self.env, LAKE_URI=str(self.lake), PORT=str(self.port),
                         METRICS_PORT=str(self.metrics_port), SHARING_REFRESH="2s",
                         SHARING_URL_TTL=f"{URL_TTL_S}s", RUST_LOG="info,buoyant_kernel=warn,buoyant_kernel_engine=warn,deltalake=warn,deltalake_core=warn")
        self.proc = subprocess.Popen([SERVE], env=serve_env, stdout=self.log, stderr=subprocess.STDOUT)
        self.wait_ready()

    def wait_ready(self, timeout: float = 120) -> None:
        deadline = time.time() + timeout
        while time.time() < deadline:
            assert self.proc.poll() is None, f"serve exited: {self.log_path.read_text()[-3000:]}"
            try:
                if requests.get(f"{self.base}/health/ready", timeout=2).status_code == 200:
                    return
            except requests.ConnectionError:
                pass
            time.sleep(0.5)
        raise AssertionError(f"serve not ready in {timeout} s: {self.log_path.read_text()[-3000:]}")

    def grant(self, to: str, purpose: str, chains: str, columns: str, expires: str = "2099-12-31") -> dict:
        out = subprocess.run(
            [TRIBUTARY, "grant", "create", "--from", "acme", "--to", to, "--chains", chains,
             "--columns", columns, "--purpose", purpose, "--expires", expires],
            env=self.env, check=True, capture_output=True, text=True, timeout=120)
        g = json.loads(out.stdout)
        g["created"] = time.time()
        if purpose == "analytics":
            prof = self.tmp / f"{g['grant_id']}.share"
            prof.write_text(json.dumps(g["profile"]))
            g["profile_file"] = str(prof)
        return g

    def revoke(self, grant_id: str) -> None:
        subprocess.run([TRIBUTARY, "grant", "revoke", grant_id], env=self.env, check=True,
                       capture_output=True, timeout=120)

    def close(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.proc.kill()
        self.log.close()
        if os.environ.get("SHARING_KEEP"):
            print(f"kept {self.tmp}")
        else:
            shutil.rmtree(self.tmp, ignore_errors=True)


@pytest.fixture(scope="module")
def env():
    for b in (TRIBUTARY, SERVE):
        assert Path(b).is_file(), f"{b} is not built (cargo build --release -p tributary-serve -p tributary-ctl)"
    e = Env()
    e.globex = e.grant("globex", "analytics", "users,mailings", "country,city,locale,event_type")
    e.initech = e.grant("initech", "analytics", "users,mailings", "country,city,locale,event_type")
    e.enrich = e.grant("globex", "enrichment", "users", "country,city")
    yield e
    e.close()


def load(grant: dict, table: str):
    return delta_sharing.load_as_pandas(f"{grant['profile_file']}#{grant['grant_id']}.default.{table}")


def load_eventually(grant: dict, table: str, timeout: float = 60):
    """The first successful read, within `timeout` of the grant's creation."""
    last = None
    while time.time() < grant["created"] + timeout:
        try:
            return load(grant, table)
        except Exception as exc:  # 503 while the table is first materialized
            last = exc
            time.sleep(1)
    raise AssertionError(f"{table} of {grant['grant_id']} not readable within {timeout} s: {last}")


def auth(grant: dict) -> dict:
    return {"Authorization": f"Bearer {grant['profile']['bearerToken']}"}


def query_files(env: Env, grant: dict, table: str) -> list[dict]:
    r = requests.post(f"{env.endpoint}/shares/{grant['grant_id']}/schemas/default/tables/{table}/query",
                      headers=auth(grant), json={})
    assert r.status_code == 200, r.text
    lines = [json.loads(x) for x in r.text.splitlines() if x.strip()]
    return [x["file"] for x in lines if "file" in x]


def test_a_new_grant_is_readable_within_60s_with_the_granted_columns_and_rows_only(env):
    users = load_eventually(env.globex, "users")
    mailings = load_eventually(env.globex, "mailings")
    assert set(users.columns) == USERS_COLUMNS
    assert set(mailings.columns) == MAILINGS_COLUMNS
    assert not FORBIDDEN_COLUMNS & (set(users.columns) | set(mailings.columns))
    # Only acme's events, only people with an address, nobody blocked or unsubscribed at acme.
    assert len(users) == len(SHARED_PEOPLE)
    assert sorted(map(tuple, users[["country", "city", "locale"]].values.tolist())) == sorted(
        USERS[e] for e in SHARED_PEOPLE)
    expected_mail = [m for m in MAILINGS if m[0] in SHARED_PEOPLE]
    assert len(mailings) == len(expected_mail)
    assert sorted(mailings["event_type"]) == sorted(m[3] for m in expected_mail)
    assert set(mailings["event_date"]) == {"2025-11-01", "2025-11-02"}
    for df in (users, mailings):
        assert df["subject_key"].str.fullmatch(r"[0-9a-f]{64}").all()
        # Neither an address nor its plain hash anywhere.
        text = df.to_csv()
        for e in USERS:
            assert e not in text and lake.sha(e) not in text
    # One person, one key within a share: a1's two mailings and its users row agree.
    a1_users = users[users["country"] == "US"]["subject_key"].iloc[0]
    a1_mail = set(mailings[mailings["event_type"].isin(["OPENED"])]["subject_key"])
    assert a1_mail == {a1_users}
    assert len(set(users["subject_key"])) == len(SHARED_PEOPLE)


def test_two_grantees_get_unlinkable_keys_for_the_same_events(env):
    g = load_eventually(env.globex, "users").set_index(["event_time", "country", "city", "locale"])
    i = load_eventually(env.initech, "users").set_index(["event_time", "country", "city", "locale"])
    joined = g.join(i, lsuffix="_globex", rsuffix="_initech", how="inner")
    assert len(joined) == len(SHARED_PEOPLE)
    assert (joined["subject_key_globex"] != joined["subject_key_initech"]).all()
    assert not set(g["subject_key"]) & set(i["subject_key"])


def test_the_protocol_endpoints(env):
    load_eventually(env.globex, "users")
    gid, h = env.globex["grant_id"], auth(env.globex)
    r = requests.get(f"{env.endpoint}/shares", headers=h)
    assert r.status_code == 200 and [s["name"] for s in r.json()["items"]] == [gid]
    assert "nextPageToken" not in r.json()
    assert requests.get(f"{env.endpoint}/shares/{gid}", headers=h).json()["share"]["name"] == gid
    schemas = requests.get(f"{env.endpoint}/shares/{gid}/schemas", headers=h).json()["items"]
    assert [s["name"] for s in schemas] == ["default"]
    for url in (f"{env.endpoint}/shares/{gid}/schemas/default/tables", f"{env.endpoint}/shares/{gid}/all-tables"):
        items = requests.get(url, headers=h, params={"maxResults": 10}).json()["items"]
        assert sorted(t["name"] for t in items) == ["mailings", "users"]
        assert all(t["share"] == gid and t["schema"] == "default" for t in items)
    client = delta_sharing.SharingClient(env.globex["profile_file"])
    assert sorted(t.name for t in client.list_all_tables()) == ["mailings", "users"]
    table = f"{env.endpoint}/shares/{gid}/schemas/default/tables/users"
    v = requests.get(f"{table}/version", headers=h)
    assert v.status_code == 200 and int(v.headers["delta-table-version"]) >= 1
    assert requests.head(f"{table}/version", headers=h).headers["delta-table-version"] == v.headers["delta-table-version"]
    meta = requests.get(f"{table}/metadata", headers=h)
    assert meta.headers["content-type"].startswith("application/x-ndjson")
    lines = [json.loads(x) for x in meta.text.splitlines()]
    assert lines[0] == {"protocol": {"minReaderVersion": 1}}
    schema = json.loads(lines[1]["metaData"]["schemaString"])
    assert [f["name"] for f in schema["fields"]][:3] == ["subject_key", "event_time", "event_date"]
    assert {f["name"] for f in schema["fields"]} == USERS_COLUMNS
    q = requests.post(f"{table}/query", headers=h, json={"limitHint": 10})
    assert q.status_code == 200 and q.headers["delta-table-version"] == v.headers["delta-table-version"]
    files = [json.loads(x)["file"] for x in q.text.splitlines()[2:]]
    assert files and all({"url", "id", "partitionValues", "size", "stats", "expirationTimestamp"} <= set(f) for f in files)
    assert sum(json.loads(f["stats"])["numRecords"] for f in files) == len(SHARED_PEOPLE)
    c = requests.get(f"{table}/changes", headers=h, params={"startingVersion": 0})
    assert c.status_code == 400 and "change data feed" in c.json()["message"]
    assert requests.post(f"{table}/query", headers=h, json={"version": 999}).status_code == 400


def test_a_token_sees_only_its_own_share(env):
    load_eventually(env.globex, "users")
    g, i = env.globex, env.initech
    r = requests.get(f"{env.endpoint}/shares/{i['grant_id']}/schemas/default/tables/users/metadata", headers=auth(g))
    assert r.status_code == 403, r.text
    r = requests.post(f"{env.endpoint}/shares/{i['grant_id']}/schemas/default/tables/users/query", headers=auth(g), json={})
    assert r.status_code == 403
    assert requests.get(f"{env.endpoint}/shares/{i['grant_id']}", headers=auth(g)).status_code == 403
    made_up = "g-" + uuid.uuid4().hex
    assert requests.get(f"{env.endpoint}/shares/{made_up}/schemas", headers=auth(g)).status_code in (403, 404)
    assert requests.get(f"{env.endpoint}/shares/{g['grant_id']}/schemas/default/tables/blocklists/version",
                        headers=auth(g)).status_code == 404
    assert requests.get(f"{env.endpoint}/shares/{g['grant_id']}/schemas/other/tables", headers=auth(g)).status_code == 404
    assert requests.get(f"{env.endpoint}/shares").status_code == 401
    assert requests.get(f"{env.endpoint}/shares", headers={"Authorization": "Bearer nope"}).status_code == 403
    # The enrichment grant has no token and no share.
    assert requests.get(f"{env.endpoint}/shares/{env.enrich['grant_id']}", headers=auth(g)).status_code == 403


def test_path_traversal_in_names_is_refused(env):
    gid, h = env.globex["grant_id"], auth(env.globex)
    s = requests.Session()
    for path in [
        f"/shares/..%2F..%2Fusers/schemas",
        f"/shares/{gid}/schemas/..%2Fdefault/tables",
        f"/shares/{gid}/schemas/default/tables/..%2F..%2Fusers%2F_delta_log/version",
        f"/shares/{gid}/schemas/default/tables/users%2F..%2Fmailings/metadata",
        f"/shares/{gid}/schemas/default/tables/us.ers/metadata",
        f"/shares/{gid}%00/schemas",
        f"/shares/{gid}/schemas/default/tables/../../../{gid}/schemas",
    ]:
        req = requests.Request("GET", env.endpoint + path, headers=h).prepare()
        req.url = env.endpoint + path  # as written: no client-side normalization
        r = s.send(req)
        assert r.status_code in (400, 404), (path, r.status_code, r.text)
    r = requests.post(f"{env.endpoint}/shares/{gid}/schemas/default/tables/users%2F..%2F..%2Fx/query", headers=h, json={})
    assert r.status_code in (400, 404)


def test_file_urls_are_signed_short_lived_and_served_with_ranges(env):
    load_eventually(env.globex, "users")
    f = query_files(env, env.globex, "users")[0]
    assert f["url"].startswith(f"{env.base}/delta-sharing/files/")
    body = requests.get(f["url"])
    assert body.status_code == 200 and body.content[:4] == b"PAR1" and len(body.content) == f["size"]
    head = requests.head(f["url"])
    assert head.status_code == 200 and int(head.headers["content-length"]) == f["size"]
    part = requests.get(f["url"], headers={"Range": "bytes=4-11"})
    assert part.status_code == 206 and part.content == body.content[4:12]
    token = f["url"].rsplit("/", 1)[1]
    grant, chain, file, exp, sig = token.split(".")
    bad_sig = sig[:-1] + ("0" if sig[-1] != "0" else "1")
    for t in [f"{grant}.{chain}.{file}.{exp}.{bad_sig}", f"{grant}.mailings.{file}.{exp}.{sig}",
              f"{grant}.{chain}.{file}.{int(exp) + 3_600_000}.{sig}",
              f"{env.initech['grant_id']}.{chain}.{file}.{exp}.{sig}", "nothing"]:
        assert requests.get(f"{env.base}/delta-sharing/files/{t}").status_code == 403, t
    # Expired: the URL lives SHARING_URL_TTL (20 s here).
    time.sleep(max(0.0, f["expirationTimestamp"] / 1000 - time.time()) + 1)
    r = requests.get(f["url"])
    assert r.status_code == 403 and "expired" in r.json()["message"]


def test_new_source_files_are_added_and_erased_rows_leave_incrementally(env):
    load_eventually(env.initech, "users")
    before = {f["id"] for f in query_files(env, env.initech, "users")}
    h = auth(env.initech)
    version = f"{env.endpoint}/shares/{env.initech['grant_id']}/schemas/default/tables/users/version"
    v0 = int(requests.get(version, headers=h).headers["delta-table-version"])
    lake.write(env.lake, "users", [row("users", "acme", at(3, 9), "a6@example.com", country="IT", city="Rome",
                                       locale="it-IT")])
    deadline = time.time() + 30
    while time.time() < deadline and int(requests.get(version, headers=h).headers["delta-table-version"]) == v0:
        time.sleep(0.5)
    after = {f["id"] for f in query_files(env, env.initech, "users")}
    assert before < after and len(after - before) == 1, "only the new source file was materialized"
    users = load(env.initech, "users")
    assert sorted(users["country"]) == sorted(["US", "FR", "JP", "IT"])
    # An erasure rewrites the source file: its shared file goes, the rewritten one comes.
    from deltalake import DeltaTable
    DeltaTable(str(env.lake / "users")).delete("email = 'a6@example.com'")
    deadline = time.time() + 30
    while time.time() < deadline and "IT" in set(load(env.initech, "users")["country"]):
        time.sleep(0.5)
    assert sorted(load(env.initech, "users")["country"]) == sorted(["US", "FR", "JP"])


def test_metrics_and_audit(env):
    load_eventually(env.globex, "users")
    gid = env.globex["grant_id"]
    m = requests.get(f"http://localhost:{env.metrics_port}/metrics").text
    assert f'tributary_serve_share_requests_total{{endpoint="query",grant="{gid}"}}' in m
    assert f'tributary_serve_share_rows{{grant="{gid}",table="users"}} 3' in m
    assert "tributary_serve_share_refusals_total" in m
    log = env.log_path.read_text()
    audit = [line for line in log.splitlines() if "tributary_serve::audit" in line and gid in line]
    assert audit and "delta-sharing/query" in audit[-1] and "globex" in audit[-1]


def profile(env: Env, email: str) -> requests.Response:
    return requests.get(f"{env.base}/v1/tenants/globex/profiles", params={"email": email},
                        headers={"Authorization": "Bearer globex-local-token"})


def shared_eventually(env: Env, email: str, timeout: float = 30) -> list:
    deadline = time.time() + timeout
    while True:
        r = profile(env, email)
        assert r.status_code == 200, r.text
        if r.json()["shared"] or time.time() > deadline:
            return r.json()["shared"]
        time.sleep(0.5)


def test_enrichment_by_overlap(env):
    shared = shared_eventually(env, "a1@example.com")
    assert shared == [{"grant_id": env.enrich["grant_id"], "grantor": "acme",
                       "columns": {"country": "US", "city": "New York"}}]
    assert profile(env, "a1@example.com").json()["user"]["country"] == "globex-US"
    assert profile(env, "a3@example.com").json()["shared"] == [], "blocked at acme: nothing shared"
    for unknown in ("a5@example.com", "nobody@example.com"):  # acme has a5, globex does not
        r = profile(env, unknown)
        assert r.status_code == 404
    assert profile(env, "a5@example.com").text == profile(env, "nobody@example.com").text


def test_expiry_ends_a_grant_within_60s(env):
    """Grants that expire 25 s after they are made: readable and enriching before, refused
    everywhere and their tables deleted within 60 s after."""
    ends = time.time() + 25
    expires = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(ends))
    share = env.grant("globex", "analytics", "users", "country", expires=expires)
    enrich = env.grant("globex", "enrichment", "users", "locale", expires=expires)
    assert share["expires_at"] == expires
    assert len(load_eventually(share, "users", timeout=20)) == len(SHARED_PEOPLE)
    deadline = time.time() + 20
    while not any(x["grant_id"] == enrich["grant_id"] for x in profile(env, "a1@example.com").json()["shared"]):
        assert time.time() < deadline, "the enrichment grant is not applied within 20 s"
        time.sleep(0.5)
    assert time.time() < ends, "too slow to see the grants live before they expire"
    time.sleep(max(0.0, ends - time.time()))
    refused = None
    while time.time() < ends + 60:
        try:
            load(share, "users")
        except Exception as exc:
            refused = exc
            break
        time.sleep(1)
    assert refused is not None and "403" in str(refused), "the expired grant still reads after 60 s"
    ids = {x["grant_id"] for x in profile(env, "a1@example.com").json()["shared"]}
    assert enrich["grant_id"] not in ids and env.enrich["grant_id"] in ids
    while time.time() < ends + 60 and (env.lake / "_shares" / share["grant_id"]).exists():
        time.sleep(0.5)
    assert not (env.lake / "_shares" / share["grant_id"]).exists()


def test_zz_revocation_ends_everything_within_60s(env):
    load_eventually(env.globex, "users")
    f = query_files(env, env.globex, "users")[0]
    gid = env.globex["grant_id"]
    env.revoke(gid)
    env.revoke(env.enrich["grant_id"])
    t0 = time.time()
    refused = None
    while time.time() < t0 + 60:
        try:
            load(env.globex, "users")
        except Exception as exc:
            refused = exc
            break
        time.sleep(1)
    assert refused is not None, "the revoked grant still reads after 60 s"
    assert "403" in str(refused)
    assert requests.get(f["url"]).status_code == 403
    assert requests.get(f"{env.endpoint}/shares", headers=auth(env.globex)).status_code == 403
    while time.time() < t0 + 60 and profile(env, "a1@example.com").json()["shared"]:
        time.sleep(0.5)
    assert profile(env, "a1@example.com").json()["shared"] == []
    # Its tables are deleted at the next refresh; the other grant's stay.
    while time.time() < t0 + 60 and (env.lake / "_shares" / gid).exists():
        time.sleep(0.5)
    assert not (env.lake / "_shares" / gid).exists()
    assert (env.lake / "_shares" / env.initech["grant_id"] / "users" / "manifest.json").exists()
    assert len(load(env.initech, "users")) == len(SHARED_PEOPLE)
