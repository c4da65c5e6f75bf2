//! The gateway (`ingest`) against the real Kafka: webhooks of each provider land on the
//! right raw topics with the contract's headers and keys; an upload with bad lines answers
//! the right counts and line numbers; and `kill -9` of the gateway while webhooks are in
//! flight loses none that was answered 2xx. Hardening: an unknown tenant, a wrong token and
//! no token are one 401; a signed Mailgun webhook is taken once and an old signed SNS message
//! not at all; past the concurrency limit requests are 503 at once and slow ones time out;
//! an SES message to 20 000 recipients is split in memory linear in its body.

use anyhow::{Context, Result};
use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tributary_engine::topics::{self, CHAINS};
use tributary_tests::{fixture, namespace_of, read_all, urlencode, Ingest};

/// A fresh namespace with the raw topic of every chain.
fn raw_namespace(partitions: i32) -> Result<String> {
    let raw: Vec<(String, bool)> = CHAINS.iter().map(|c| (topics::raw(c), false)).collect();
    namespace_of(&raw, partitions)
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap()
}

/// (raw topic's chain, source header) → records, with every record's headers and key checked.
fn landed(ns: &str, tenant: &str) -> Result<BTreeMap<(String, String), usize>> {
    let mut out = BTreeMap::new();
    for chain in CHAINS {
        for r in read_all(&topics::namespaced(ns, &topics::raw(chain)))? {
            assert_eq!(r.headers.get("tenant").map(String::as_str), Some(tenant));
            let key = String::from_utf8(r.key.clone().unwrap_or_default())?;
            assert!(key.starts_with(&format!("{tenant}:")), "key {key}");
            assert!(r.headers.contains_key("request-id"));
            *out.entry((chain.to_string(), r.headers["source"].clone())).or_default() += 1;
        }
    }
    Ok(out)
}

#[test]
fn webhooks_of_each_provider_land_on_their_raw_topics() -> Result<()> {
    let ns = raw_namespace(3)?;
    let gw = Ingest::start(&ns, &[("MAX_BODY_BYTES", "65536")])?;
    let rt = runtime();
    let c = reqwest::Client::new();
    let post = |path: &str, ct: &str, body: String, bearer: Option<&str>| {
        let mut r = c.post(gw.url(path)).header("content-type", ct).body(body);
        if let Some(t) = bearer {
            r = r.bearer_auth(t);
        }
        rt.block_on(async move {
            let resp = r.send().await.unwrap();
            let status = resp.status().as_u16();
            (status, resp.text().await.unwrap())
        })
    };
    let wh = |p: &str| format!("/v1/tenants/acme/webhooks/{p}");
    let token = Some("acme-local-token");
    let json = "application/json";
    let form = "application/x-www-form-urlencoded";

    // SendGrid: hard bounce (mailings + blocklists), open (mailings), unsubscribe (mailings +
    // unsubscribes), group_resubscribe (subscriptions).
    let batch = format!(
        "[{},{},{},{}]",
        fixture("sendgrid", "bounce.json"),
        fixture("sendgrid", "open.json"),
        fixture("sendgrid", "unsubscribe.json"),
        fixture("sendgrid", "group_resubscribe.json")
    );
    let (s, b) = post(&wh("sendgrid"), json, batch, token);
    assert_eq!(s, 200, "{b}");
    // Mailgun, a permanent failure, with the token in the query.
    let (s, b) = post(
        &format!("{}?token=acme-local-token", wh("mailgun")),
        json,
        fixture("mailgun", "failed_permanent.json"),
        None,
    );
    assert_eq!(s, 200, "{b}");
    // SES: a hard bounce of two recipients: two records, each to mailings and blocklists.
    let (s, b) = post(
        &wh("ses"),
        "text/plain",
        fixture("ses", "bounce_two_recipients.json"),
        token,
    );
    assert_eq!(s, 200, "{b}");
    // Postmark: a reactivation (subscriptions).
    let (s, b) = post(
        &wh("postmark"),
        json,
        fixture("postmark", "subscription_change_reactivation.json"),
        token,
    );
    assert_eq!(s, 200, "{b}");
    // Mailchimp: a subscribe (users + subscriptions).
    let (s, b) = post(&wh("mailchimp"), form, fixture("mailchimp", "subscribe.form"), token);
    assert_eq!(s, 200, "{b}");
    // Mandrill: hard bounce (mailings + blocklists) and unsub (mailings + unsubscribes).
    let events = format!(
        "[{},{}]",
        fixture("mandrill", "hard_bounce.json"),
        fixture("mandrill", "unsub.json")
    );
    let body = format!("mandrill_events={}", urlencode(&events));
    let (s, b) = post(&wh("mandrill"), form, body, token);
    assert_eq!(s, 200, "{b}");

    // Refusals, with their reasons. No token, another tenant's token, an unknown tenant: one 401.
    let (s, b) = post(&wh("sendgrid"), json, "[]".into(), None);
    assert!(s == 401 && b.contains("invalid tenant or token"), "{s} {b}");
    let (s, b) = post(&wh("sendgrid"), json, "[]".into(), Some("globex-local-token"));
    assert!(s == 401 && b.contains("invalid tenant or token"), "{s} {b}");
    let (s, b) = post("/v1/tenants/umbrella/webhooks/sendgrid", json, "[]".into(), token);
    assert!(s == 401 && b.contains("invalid tenant or token"), "{s} {b}");
    let (s, b) = post(&wh("sendgrid"), json, "{\"event\":".into(), token);
    assert!(s == 400 && b.contains("not valid JSON"), "{s} {b}");
    let (s, b) = post(&wh("sendgrid"), json, format!("[{}]", "1".repeat(70_000)), token);
    assert!(s == 413 && b.contains("max_body_bytes"), "{s} {b}");
    let (s, b) = post(&wh("sparkpost"), json, "[]".into(), token);
    assert!(s == 404 && b.contains("unknown provider"), "{s} {b}");

    let got = landed(&ns, "acme")?;
    let want: BTreeMap<(String, String), usize> = [
        (("mailings", "sendgrid"), 3),
        (("blocklists", "sendgrid"), 1),
        (("unsubscribes", "sendgrid"), 1),
        (("subscriptions", "sendgrid"), 1),
        (("mailings", "mailgun"), 1),
        (("blocklists", "mailgun"), 1),
        (("mailings", "ses"), 2),
        (("blocklists", "ses"), 2),
        (("subscriptions", "postmark"), 1),
        (("users", "mailchimp"), 1),
        (("subscriptions", "mailchimp"), 1),
        (("mailings", "mandrill"), 2),
        (("blocklists", "mandrill"), 1),
        (("unsubscribes", "mandrill"), 1),
    ]
    .into_iter()
    .map(|((c, s), n)| ((c.to_owned(), s.to_owned()), n))
    .collect();
    assert_eq!(got, want);
    // The two SES records each name one of the two recipients, and are keyed by it.
    let ses: Vec<String> = read_all(&topics::namespaced(&ns, "raw.blocklists"))?
        .into_iter()
        .filter(|r| r.headers["source"] == "ses")
        .map(|r| String::from_utf8(r.key.unwrap()).unwrap())
        .collect();
    let mut ses = ses;
    ses.sort();
    assert_eq!(ses, ["acme:a@example.com", "acme:b@example.com"]);

    let metrics = rt.block_on(async { c.get(gw.url("/metrics")).send().await?.text().await })?;
    assert!(
        metrics.contains(r#"tributary_ingest_events_total{chain="blocklists",provider="ses"} 2"#),
        "{metrics}"
    );
    assert!(metrics.contains(r#"tributary_ingest_requests_total{provider="sendgrid",route="webhook",status="401"} 3"#));
    assert!(metrics.contains("tributary_ingest_request_duration_seconds_bucket"));
    Ok(())
}

#[test]
fn uploads_stream_rows_and_name_the_bad_lines() -> Result<()> {
    let ns = raw_namespace(2)?;
    let gw = Ingest::start(&ns, &[])?;
    // Sent in small chunks, cut mid-line.
    let upload = |chain: &str, ct: &str, body: &str, chunk: usize| -> (u16, serde_json::Value) {
        let chunks: Vec<&[u8]> = body.as_bytes().chunks(chunk).collect();
        let path = format!("/v1/tenants/globex/uploads/{chain}?token=globex-local-token");
        post_chunked(gw.port, &path, ct, &chunks).unwrap()
    };
    let jsonl = "{\"email\":\"A@x.com\",\"event_id\":\"1\"}\n{\"email\": broken\n\n{\"email\":\"b@x.com\"}\r\n[1,2\n{\"email\":\"c@x.com\"}";
    let (s, v) = upload("users", "application/x-ndjson", jsonl, 7);
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["accepted"], 3, "{v}");
    assert_eq!(v["rejected_count"], 2, "{v}");
    let lines: Vec<u64> = v["rejected"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["line"].as_u64().unwrap())
        .collect();
    assert_eq!(lines, [2, 5]);
    assert!(v["rejected"][0]["reason"].as_str().unwrap().contains("not JSON"));

    let csv = "email,first_name,last_name\nann@x.com,Ann,Lee\nbob@x.com,Bob\n\"cy@x.com\",\"Cy, Jr\",\"multi\nline\"\ndee@x.com,Dee,Ray,extra\neve@x.com,Eve,Ito\n";
    let (s, v) = upload("users", "text/csv; charset=utf-8", csv, 5);
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["accepted"], 3, "{v}");
    let rejected: Vec<(u64, String)> = v["rejected"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| (r["line"].as_u64().unwrap(), r["reason"].as_str().unwrap().to_owned()))
        .collect();
    assert_eq!(
        rejected,
        [
            (3, "2 columns, the header row has 3".to_owned()),
            (6, "4 columns, the header row has 3".to_owned())
        ]
    );

    let (s, v) = upload("payments", "text/csv", "a\n", 10);
    assert_eq!(s, 404, "{v}");
    let (s, v) = upload("users", "application/json", "{}\n", 10);
    assert_eq!(s, 415, "{v}");

    let recs = read_all(&topics::namespaced(&ns, "raw.users"))?;
    assert_eq!(recs.len(), 6);
    let mut by_source: HashMap<String, Vec<(String, String)>> = HashMap::new();
    for r in &recs {
        assert_eq!(r.headers["tenant"], "globex");
        by_source.entry(r.headers["source"].clone()).or_default().push((
            String::from_utf8(r.key.clone().unwrap())?,
            String::from_utf8(r.value.clone().unwrap())?,
        ));
        if r.headers["source"] == "csv" {
            assert_eq!(r.headers["csv-header"], "email,first_name,last_name");
        }
    }
    let mut csv_rows = by_source.remove("csv").unwrap();
    csv_rows.sort();
    assert_eq!(
        csv_rows,
        [
            ("globex:ann@x.com".into(), "ann@x.com,Ann,Lee".into()),
            (
                "globex:cy@x.com".into(),
                "\"cy@x.com\",\"Cy, Jr\",\"multi\nline\"".into()
            ),
            ("globex:eve@x.com".into(), "eve@x.com,Eve,Ito".into()),
        ]
    );
    let mut json_keys: Vec<String> = by_source.remove("json").unwrap().into_iter().map(|(k, _)| k).collect();
    json_keys.sort();
    assert_eq!(json_keys, ["globex:a@x.com", "globex:b@x.com", "globex:c@x.com"]);
    Ok(())
}

/// A POST whose body goes out in the given chunks (`Transfer-Encoding: chunked`, no length),
/// as a large file arrives; answers the status and the JSON body.
fn post_chunked(port: u16, path: &str, content_type: &str, chunks: &[&[u8]]) -> Result<(u16, serde_json::Value)> {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port))?;
    s.set_read_timeout(Some(Duration::from_secs(60)))?;
    write!(
        s,
        "POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: {content_type}\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n"
    )?;
    for c in chunks {
        write!(s, "{:x}\r\n", c.len())?;
        s.write_all(c)?;
        s.write_all(b"\r\n")?;
        s.flush()?;
    }
    s.write_all(b"0\r\n\r\n")?;
    let mut resp = String::new();
    s.read_to_string(&mut resp)?;
    let status = resp.get(9..12).and_then(|c| c.parse().ok()).context("a status line")?;
    let body = resp.split_once("\r\n\r\n").map(|(_, b)| b).unwrap_or_default();
    Ok((
        status,
        serde_json::from_str(body).with_context(|| format!("JSON answer: {body}"))?,
    ))
}

/// `kill -9` of the gateway while webhooks are in flight: every request answered 2xx is in
/// the raw topic, exactly once (each request one SendGrid event, counted by its request id).
#[test]
fn kill_9_loses_no_accepted_webhook() -> Result<()> {
    let ns = raw_namespace(4)?;
    let mut gw = Ingest::start(&ns, &[])?;
    let port = gw.port;
    let accepted = Arc::new(Mutex::new(Vec::<String>::new()));
    let attempted = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let rt = runtime();
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let mut tasks = Vec::new();
    for w in 0..16 {
        let (accepted, attempted, stop) = (accepted.clone(), attempted.clone(), stop.clone());
        tasks.push(rt.spawn(async move {
            let c = reqwest::Client::builder().timeout(Duration::from_secs(20)).build().unwrap();
            let mut i = 0u64;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                i += 1;
                let id = format!("w{w}-{i}");
                let body = format!(
                    r#"[{{"email":"{id}@example.com","event":"delivered","timestamp":1700000000,"sg_event_id":"{id}","sg_message_id":"m-{id}"}}]"#
                );
                attempted.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                let r = c
                    .post(format!("http://127.0.0.1:{port}/v1/tenants/acme/webhooks/sendgrid"))
                    .bearer_auth("acme-local-token")
                    .header("x-request-id", &id)
                    .header("content-type", "application/json")
                    .body(body)
                    .send()
                    .await;
                match r {
                    Ok(resp) if resp.status().is_success() => accepted.lock().unwrap().push(id),
                    Ok(_) => {}
                    // The gateway is gone: stop this worker.
                    Err(_) => break,
                }
            }
        }));
    }
    std::thread::sleep(Duration::from_millis(2500));
    let before = accepted.lock().unwrap().len();
    gw.child.kill()?; // SIGKILL
    gw.child.wait()?;
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    for t in tasks {
        rt.block_on(t)?;
    }
    let accepted = accepted.lock().unwrap().clone();
    let attempted = attempted.load(std::sync::atomic::Ordering::Relaxed);
    assert!(before > 100, "only {before} webhooks accepted before the kill: no load");
    let mut counts: HashMap<String, usize> = HashMap::new();
    for r in read_all(&topics::namespaced(&ns, "raw.mailings"))? {
        *counts.entry(r.headers["request-id"].clone()).or_default() += 1;
    }
    let lost: Vec<&String> = accepted
        .iter()
        .filter(|id| counts.get(*id).copied().unwrap_or(0) == 0)
        .collect();
    let twice: Vec<(&String, &usize)> = counts.iter().filter(|(_, n)| **n > 1).collect();
    println!(
        "kill -9: {attempted} requests, {} answered 2xx, {} records in raw.mailings, {} lost, {} twice",
        accepted.len(),
        counts.len(),
        lost.len(),
        twice.len()
    );
    assert!(
        lost.is_empty(),
        "accepted but not in Kafka: {:?}",
        &lost[..lost.len().min(10)]
    );
    assert!(twice.is_empty(), "published twice: {twice:?}");
    // Requests cut off by the kill may have landed without their answer; never more.
    assert!(counts.len() as u64 <= attempted);
    Ok(())
}

/// A large upload streams through in bounded memory: 300 MB of CSV (300 000 rows of ~1 KB,
/// generated while it is sent, never held whole by the test either) go through the gateway,
/// every row is acknowledged by Kafka, and the gateway's peak resident memory stays a small
/// fraction of the file.
#[test]
fn a_large_upload_streams_in_bounded_memory() -> Result<()> {
    use std::io::{Read, Write};
    let ns = raw_namespace(2)?;
    let gw = Ingest::start(&ns, &[])?;
    let rows = 300_000u64;
    let notes = "n".repeat(1000);
    let mut s = std::net::TcpStream::connect(("127.0.0.1", gw.port))?;
    s.set_read_timeout(Some(Duration::from_secs(300)))?;
    write!(
        s,
        "POST /v1/tenants/acme/uploads/users?token=acme-local-token HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: text/csv\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n"
    )?;
    let mut sent = 0u64;
    let mut chunk = String::from("event_id,email,first_name,notes\n");
    for i in 0..rows {
        chunk.push_str(&format!("big-{i},big{i}@example.com,Big,{notes}\n"));
        if chunk.len() >= 1 << 20 || i + 1 == rows {
            write!(s, "{:x}\r\n", chunk.len())?;
            s.write_all(chunk.as_bytes())?;
            s.write_all(b"\r\n")?;
            sent += chunk.len() as u64;
            chunk.clear();
        }
    }
    s.write_all(b"0\r\n\r\n")?;
    let mut resp = String::new();
    s.read_to_string(&mut resp)?;
    let body = resp.split_once("\r\n\r\n").map(|(_, b)| b).unwrap_or_default();
    let v: serde_json::Value = serde_json::from_str(body).with_context(|| format!("answer: {resp}"))?;
    assert_eq!(v["accepted"], rows, "{v}");
    assert_eq!(v["rejected_count"], 0, "{v}");
    let status = std::fs::read_to_string(format!("/proc/{}/status", gw.child.id()))?;
    let peak_kib: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .context("VmHWM")?;
    println!(
        "upload of {} MiB, {rows} rows: gateway peak RSS {} MiB",
        sent >> 20,
        peak_kib >> 10
    );
    assert!(sent > 280 << 20, "the upload is as large as meant: {sent} bytes");
    assert!(
        peak_kib < 96 << 10,
        "the gateway's peak RSS is {} MiB for a {} MiB upload: not bounded",
        peak_kib >> 10,
        sent >> 20
    );
    Ok(())
}

fn now_secs() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_secs()
}

/// One request, answered with (status, headers, body).
fn send(rt: &tokio::runtime::Runtime, req: reqwest::RequestBuilder) -> (u16, reqwest::header::HeaderMap, String) {
    rt.block_on(async move {
        let resp = req.send().await.expect("an answer");
        let status = resp.status().as_u16();
        let headers = resp.headers().clone();
        (status, headers, resp.text().await.unwrap_or_default())
    })
}

/// An unknown tenant, a wrong token, another tenant's token and no token get the same 401
/// with the same body, on every route that takes a token: nothing tells a caller which
/// tenants exist. Nothing is published.
#[test]
fn unknown_tenant_wrong_token_and_no_token_are_one_401() -> Result<()> {
    let ns = raw_namespace(1)?;
    let gw = Ingest::start(&ns, &[])?;
    let rt = runtime();
    let c = reqwest::Client::new();
    let event = r#"[{"email":"probe@example.com","event":"delivered","timestamp":1700000000,"sg_event_id":"p1","sg_message_id":"m1"}]"#;
    let mut answers = BTreeMap::new();
    for tenant in ["acme", "umbrella"] {
        for (name, token) in [
            ("no token", None),
            ("empty token", Some("")),
            ("wrong token", Some("acme-local-tokeN")),
            ("another tenant's token", Some("globex-local-token")),
            ("acme's token", Some("acme-local-token")),
        ] {
            if tenant == "acme" && name == "acme's token" {
                continue;
            }
            let with = |r: reqwest::RequestBuilder| match token {
                Some(t) => r.header("authorization", format!("Bearer {t}")),
                None => r,
            };
            let webhook = format!("/v1/tenants/{tenant}/webhooks/sendgrid");
            let upload = format!("/v1/tenants/{tenant}/uploads/users");
            for (route, req) in [
                (
                    "webhook",
                    with(c.post(gw.url(&webhook)))
                        .header("content-type", "application/json")
                        .body(event),
                ),
                ("probe", with(c.get(gw.url(&webhook)))),
                (
                    "upload",
                    with(c.post(gw.url(&upload)))
                        .header("content-type", "text/csv")
                        .body("email\nprobe@example.com\n"),
                ),
            ] {
                let (status, headers, body) = send(&rt, req);
                let www = headers
                    .get("www-authenticate")
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or_default()
                    .to_owned();
                answers.insert(format!("{tenant}, {name}, {route}"), (status, www, body));
            }
        }
    }
    let distinct: std::collections::BTreeSet<&(u16, String, String)> = answers.values().collect();
    println!(
        "{} refusals, {} distinct answers: {distinct:?}",
        answers.len(),
        distinct.len()
    );
    assert_eq!(distinct.len(), 1, "{answers:#?}");
    let (status, www, body) = distinct.into_iter().next().unwrap();
    assert_eq!(*status, 401);
    assert!(www.starts_with("Bearer"), "{www}");
    assert!(body.contains("invalid tenant or token"), "{body}");
    // The right token still works, and nothing refused was published.
    let (status, _, body) = send(
        &rt,
        c.post(gw.url("/v1/tenants/acme/webhooks/sendgrid"))
            .bearer_auth("acme-local-token")
            .header("content-type", "application/json")
            .body(event),
    );
    assert_eq!(status, 200, "{body}");
    let got = landed(&ns, "acme")?;
    assert_eq!(got.values().sum::<usize>(), 1, "{got:?}");
    Ok(())
}

/// The settings file of a gateway whose tenant `acme` (token `acme-local-token`) has a Mailgun
/// signing key and the SNS certificate of the signed SNS fixture.
fn signed_config(dir: &std::path::Path, mailgun_key: &str) -> Result<std::path::PathBuf> {
    use sha2::Digest;
    let fixtures = tributary_engine::testing::fixtures_dir("ses").join("sns");
    let cfg = dir.join("ingest.toml");
    std::fs::write(
        &cfg,
        format!(
            "[tenants.acme]\ntoken_sha256 = \"{}\"\n[tenants.acme.mailgun]\nsigning_key = \"{mailgun_key}\"\n[tenants.acme.ses]\ncertificates = [\"{}\"]\n",
            hex::encode(sha2::Sha256::digest(b"acme-local-token")),
            fixtures.join("signing-cert.pem").display()
        ),
    )?;
    Ok(cfg)
}

/// A Mailgun webhook body (the documented permanent failure) signed as Mailgun signs it:
/// hex HMAC-SHA256 of timestamp and token under the signing key. `recipient` replaces the
/// event's, to forge another event under the same signature.
fn mailgun_signed(key: &str, timestamp: u64, token: &str, recipient: &str) -> Result<String> {
    use hmac::Mac;
    let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(key.as_bytes())?;
    mac.update(timestamp.to_string().as_bytes());
    mac.update(token.as_bytes());
    let mut body: serde_json::Value = serde_json::from_str(&fixture("mailgun", "failed_permanent.json"))?;
    body["signature"] = serde_json::json!({
        "timestamp": timestamp.to_string(), "token": token, "signature": hex::encode(mac.finalize().into_bytes())
    });
    body["event-data"]["recipient"] = recipient.into();
    body["event-data"]["message"]["headers"]["to"] = recipient.into();
    Ok(body.to_string())
}

/// Replay and forgery: a signed Mailgun webhook posted twice is taken once (one record on
/// each of its raw topics) and refused the second time, as is another event under the same
/// signature (Mailgun signs only timestamp and token) and a signature older than
/// signature_max_age; a genuinely signed SNS message published long ago is refused for its
/// Timestamp.
#[test]
fn a_signed_mailgun_webhook_is_taken_once_and_an_old_sns_message_not_at_all() -> Result<()> {
    let ns = raw_namespace(2)?;
    let dir = std::env::temp_dir().join(format!("{ns}-signed"));
    std::fs::create_dir_all(&dir)?;
    let key = format!("key-{}", uuid::Uuid::new_v4().simple());
    let cfg = signed_config(&dir, &key)?;
    let gw = Ingest::start(&ns, &[("TRIBUTARY_CONFIG", cfg.to_str().unwrap())])?;
    let rt = runtime();
    let c = reqwest::Client::new();
    let post = |provider: &str, body: String, rid: &str| {
        send(
            &rt,
            c.post(gw.url(&format!("/v1/tenants/acme/webhooks/{provider}")))
                .bearer_auth("acme-local-token")
                .header("content-type", "application/json")
                .header("x-request-id", rid)
                .body(body),
        )
    };
    let now = now_secs();
    let token = uuid::Uuid::new_v4().simple().to_string();
    let genuine = mailgun_signed(&key, now, &token, "bounced@example.com")?;
    let (s, _, b) = post("mailgun", genuine.clone(), "first");
    assert_eq!(s, 200, "{b}");
    let (s, _, b) = post("mailgun", genuine, "replay");
    println!("the same signed Mailgun webhook again: {s} {b}");
    assert!(s == 403 && b.contains("already used: refused as a replay"), "{s} {b}");
    let forged = mailgun_signed(&key, now, &token, "victim@example.com")?;
    let (s, _, b) = post("mailgun", forged, "forged");
    assert!(s == 403 && b.contains("already used"), "{s} {b}");
    let old = mailgun_signed(&key, now - 600, "an-old-token", "old@example.com")?;
    let (s, _, b) = post("mailgun", old, "old");
    assert!(s == 403 && b.contains("more than signature_max_age 300 s"), "{s} {b}");
    // Another genuine delivery is taken.
    let (s, _, b) = post(
        "mailgun",
        mailgun_signed(&key, now, "another-token", "second@example.com")?,
        "second",
    );
    assert_eq!(s, 200, "{b}");

    let sns =
        std::fs::read_to_string(tributary_engine::testing::fixtures_dir("ses").join("sns/old_notification.json"))?;
    let (s, _, b) = post("ses", sns, "old-sns");
    println!("an SNS message signed in 2024: {s} {b}");
    assert!(
        s == 403 && b.contains("SNS Timestamp 2024-05-01T10:00:03.000Z") && b.contains("refused as a possible replay"),
        "{s} {b}"
    );

    let mut by_request: BTreeMap<(String, String), usize> = BTreeMap::new();
    for chain in ["mailings", "blocklists"] {
        for r in read_all(&topics::namespaced(&ns, &topics::raw(chain)))? {
            *by_request
                .entry((chain.to_owned(), r.headers["request-id"].clone()))
                .or_default() += 1;
        }
    }
    let want: BTreeMap<(String, String), usize> = [
        (("blocklists", "first"), 1),
        (("blocklists", "second"), 1),
        (("mailings", "first"), 1),
        (("mailings", "second"), 1),
    ]
    .into_iter()
    .map(|((c, r), n)| ((c.to_owned(), r.to_owned()), n))
    .collect();
    assert_eq!(
        by_request, want,
        "one record per chain for each genuine delivery, none for the refused"
    );
    Ok(())
}

/// Reads one HTTP/1.1 answer from a raw connection: (status, body, when it came).
fn answer_of(mut s: std::net::TcpStream) -> Result<(u16, String, std::time::Instant)> {
    use std::io::Read;
    s.set_read_timeout(Some(Duration::from_secs(30)))?;
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        match s.read(&mut chunk) {
            Ok(0) => break,
            Ok(n) => {
                buf.extend_from_slice(&chunk[..n]);
                let text = String::from_utf8_lossy(&buf);
                // Whole once the body is as long as Content-Length says.
                if let Some((head, body)) = text.split_once("\r\n\r\n") {
                    let len = head
                        .lines()
                        .find_map(|l| {
                            l.to_ascii_lowercase()
                                .strip_prefix("content-length:")
                                .map(|v| v.trim().to_owned())
                        })
                        .and_then(|v| v.parse::<usize>().ok());
                    if len.is_some_and(|n| body.len() >= n) {
                        break;
                    }
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset && !buf.is_empty() => break,
            Err(e) => return Err(e.into()),
        }
    }
    let at = std::time::Instant::now();
    let text = String::from_utf8_lossy(&buf).into_owned();
    let status = text.get(9..12).and_then(|c| c.parse().ok()).context("a status line")?;
    Ok((
        status,
        text.split_once("\r\n\r\n")
            .map(|(_, b)| b.to_owned())
            .unwrap_or_default(),
        at,
    ))
}

/// Bounded work per request: with MAX_CONCURRENT_REQUESTS=2 and two webhooks stalled
/// mid-body, a third request is answered 503 at once (not queued) while /health and
/// /metrics still answer; the stalled two are answered 503 at REQUEST_TIMEOUT; an upload
/// whose body pauses longer is answered 408 with what it had published; then the gateway
/// takes requests again.
#[test]
fn past_the_limits_503_at_once_and_slow_requests_time_out() -> Result<()> {
    use std::io::Write;
    let ns = raw_namespace(1)?;
    let gw = Ingest::start(&ns, &[("MAX_CONCURRENT_REQUESTS", "2"), ("REQUEST_TIMEOUT", "2s")])?;
    let rt = runtime();
    let c = reqwest::Client::new();
    let event = r#"[{"email":"a@example.com","event":"delivered","timestamp":1700000000,"sg_event_id":"l1","sg_message_id":"m1"}]"#;
    let started = std::time::Instant::now();
    let mut stalled = Vec::new();
    for _ in 0..2 {
        let mut s = std::net::TcpStream::connect(("127.0.0.1", gw.port))?;
        write!(
            s,
            "POST /v1/tenants/acme/webhooks/sendgrid HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer acme-local-token\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{}",
            event.len(),
            &event[..10]
        )?;
        s.flush()?;
        stalled.push(s);
    }
    std::thread::sleep(Duration::from_millis(500));
    let t = std::time::Instant::now();
    let (s, headers, b) = send(
        &rt,
        c.post(gw.url("/v1/tenants/acme/webhooks/sendgrid"))
            .bearer_auth("acme-local-token")
            .header("content-type", "application/json")
            .body(event),
    );
    let shed_after = t.elapsed();
    println!("a third request while two are stalled: {s} in {shed_after:?}: {b}");
    assert!(s == 503 && b.contains("max_concurrent_requests (2)"), "{s} {b}");
    assert!(headers.contains_key("retry-after"));
    assert!(
        shed_after < Duration::from_secs(1),
        "answered after {shed_after:?}: queued"
    );
    let (s, _, _) = send(&rt, c.get(gw.url("/health/live")));
    assert_eq!(s, 200, "probes are outside the limit");
    for conn in stalled {
        let (s, b, at) = answer_of(conn)?;
        let after = at - started;
        println!("a webhook stalled mid-body: {s} after {after:?}: {b}");
        assert!(s == 503 && b.contains("request_timeout (2s)"), "{s} {b}");
        assert!(
            after >= Duration::from_millis(1900) && after < Duration::from_secs(10),
            "{after:?}"
        );
    }

    // An upload may take as long as its file, but its body may not pause past the timeout.
    let mut up = std::net::TcpStream::connect(("127.0.0.1", gw.port))?;
    let rows = "email\nfirst@example.com\nsecond@example.com\n";
    write!(
        up,
        "POST /v1/tenants/acme/uploads/users?token=acme-local-token HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: text/csv\r\nTransfer-Encoding: chunked\r\n\r\n{:x}\r\n{rows}\r\n",
        rows.len()
    )?;
    up.flush()?;
    let t = std::time::Instant::now();
    let (s, b, at) = answer_of(up)?;
    println!("an upload paused after two rows: {s} after {:?}: {b}", at - t);
    assert!(s == 408 && b.contains("request_timeout"), "{s} {b}");
    let v: serde_json::Value = serde_json::from_str(&b)?;
    assert_eq!(v["accepted"], 2, "{v}");
    assert_eq!(read_all(&topics::namespaced(&ns, "raw.users"))?.len(), 2);

    let (s, _, b) = send(
        &rt,
        c.post(gw.url("/v1/tenants/acme/webhooks/sendgrid"))
            .bearer_auth("acme-local-token")
            .header("content-type", "application/json")
            .body(event),
    );
    assert_eq!(s, 200, "the limit is given back: {b}");
    let metrics = rt.block_on(async { c.get(gw.url("/metrics")).send().await?.text().await })?;
    for want in [
        r#"tributary_ingest_shed_total{reason="overload"} 1"#,
        r#"tributary_ingest_shed_total{reason="timeout"} 2"#,
    ] {
        assert!(metrics.contains(want), "{want} not in the metrics");
    }
    Ok(())
}

/// The gateway's peak resident memory (VmHWM), in bytes.
fn peak_rss(pid: u32) -> Result<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    let kib: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .context("VmHWM")?;
    Ok(kib << 10)
}

/// One SES bounce, as SNS delivers it, to 20 000 recipients (each in `bouncedRecipients` and
/// `mail.destination`): one record per recipient on each of its raw topics, and the gateway's
/// peak RSS grows by less than 20 times the body. (Each record used to copy the whole message
/// but its list: 2 000 recipients took 350 MB, 20 000 would take tens of GB.)
#[test]
fn an_ses_message_to_20000_recipients_is_split_in_memory_linear_in_its_body() -> Result<()> {
    let n = 20_000;
    let ns = raw_namespace(2)?;
    let gw = Ingest::start(&ns, &[("MAX_BODY_BYTES", "8388608")])?;
    let to: Vec<String> = (0..n).map(|i| format!("bulk{i:06}@example.com")).collect();
    let message = serde_json::json!({
        "eventType": "Bounce",
        "bounce": {"bounceType": "Permanent", "bounceSubType": "General", "timestamp": "2024-05-01T10:00:02.000Z",
            "feedbackId": "0100018f-bulk-feedback", "reportingMTA": "dsn; a8-70.smtp-out.amazonses.com",
            "bouncedRecipients": to.iter().map(|a| serde_json::json!({"emailAddress": a, "action": "failed",
                "status": "5.1.1", "diagnosticCode": "smtp; 550 5.1.1 user unknown"})).collect::<Vec<_>>()},
        "mail": {"timestamp": "2024-05-01T10:00:00.000Z", "source": "News <news@example.com>",
            "sourceArn": "arn:aws:ses:us-east-1:123456789012:identity/example.com", "sendingAccountId": "123456789012",
            "messageId": "0100018f-bulk-message", "destination": to, "headersTruncated": false,
            "headers": [{"name": "From", "value": "News <news@example.com>"}, {"name": "Subject", "value": "Spring sale"}],
            "commonHeaders": {"from": ["News <news@example.com>"], "subject": "Spring sale"},
            "tags": {"ses:configuration-set": ["bulk"], "campaign": ["spring-sale"]}}
    });
    let body = serde_json::json!({
        "Type": "Notification", "MessageId": "bulk-notification", "TopicArn": "arn:aws:sns:us-east-1:123456789012:ses-events",
        "Subject": "Amazon SES Email Event Notification", "Message": message.to_string(),
        "Timestamp": "2024-05-01T10:00:03.000Z", "SignatureVersion": "1", "Signature": "x".repeat(344),
        "SigningCertURL": "https://sns.us-east-1.amazonaws.com/SimpleNotificationService-0000.pem"
    })
    .to_string();
    // The gateway's Kafka connection (TLS, over the SASL_SSL listener) is made by a first
    // record before the measure: what is measured is the message's own cost.
    let csv = "email,first_name\nwarm@example.com,Warm\n";
    let (s, v) = post_chunked(
        gw.port,
        "/v1/tenants/acme/uploads/users?token=acme-local-token",
        "text/csv",
        &[csv.as_bytes()],
    )?;
    assert_eq!(s, 200, "warm-up upload: {v}");
    let before = peak_rss(gw.child.id())?;
    let rt = runtime();
    let t = std::time::Instant::now();
    let (s, _, b) = send(
        &rt,
        reqwest::Client::new()
            .post(gw.url("/v1/tenants/acme/webhooks/ses"))
            .bearer_auth("acme-local-token")
            .header("content-type", "text/plain")
            .body(body.clone()),
    );
    let took = t.elapsed();
    let after = peak_rss(gw.child.id())?;
    assert_eq!(s, 200, "{b}");
    let v: serde_json::Value = serde_json::from_str(&b)?;
    let growth = after.saturating_sub(before);
    println!(
        "SES bounce to {n} recipients: body {:.2} MB, answered in {took:?}; gateway peak RSS {:.1} MB before, {:.1} MB after: +{:.1} MB = {:.1}x the body",
        body.len() as f64 / 1e6,
        before as f64 / 1e6,
        after as f64 / 1e6,
        growth as f64 / 1e6,
        growth as f64 / body.len() as f64
    );
    assert_eq!(v["accepted"], n, "{v}");
    assert_eq!(
        v["published"],
        serde_json::json!({"blocklists": n, "mailings": n}),
        "{v}"
    );
    assert!(
        growth < 20 * body.len() as u64,
        "peak RSS grew by {growth} bytes for a body of {}",
        body.len()
    );
    for chain in ["mailings", "blocklists"] {
        let recs = read_all(&topics::namespaced(&ns, &topics::raw(chain)))?;
        let keys: std::collections::BTreeSet<Vec<u8>> = recs.iter().filter_map(|r| r.key.clone()).collect();
        assert_eq!((recs.len(), keys.len()), (n, n), "{chain}: one record per recipient");
        let largest = recs
            .iter()
            .map(|r| r.value.as_ref().map_or(0, Vec::len))
            .max()
            .unwrap_or(0);
        assert!(largest < 2048, "{chain}: a record of {largest} bytes");
        let one = String::from_utf8(recs[0].value.clone().unwrap_or_default())?;
        assert!(!one.contains("commonHeaders") && !one.contains("destination"), "{one}");
    }
    Ok(())
}
