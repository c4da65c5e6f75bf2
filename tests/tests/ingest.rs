//! The gateway (`ingest`) against the real Kafka: webhooks of each provider land on the
//! right raw topics with the contract's headers and keys; an upload with bad lines answers
//! the right counts and line numbers; and `kill -9` of the gateway while webhooks are in
//! flight loses none that was answered 2xx.

use anyhow::{Context, Result};
use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tributary_engine::topics::{self, CHAINS};
use tributary_tests::{fixture, kafka, read_all, urlencode, Ingest};

/// A fresh namespace with the raw topic of every chain.
fn raw_namespace(partitions: i32) -> Result<String> {
    let ns = format!("t{}", &uuid::Uuid::new_v4().simple().to_string()[..10]);
    let all: Vec<(String, bool)> = CHAINS
        .iter()
        .map(|c| (topics::namespaced(&ns, &topics::raw(c)), false))
        .collect();
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    rt.block_on(topics::create(&kafka(), &Default::default(), &all, partitions))?;
    Ok(ns)
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
        fixture("mailings", "sendgrid", "bounce.json"),
        fixture("mailings", "sendgrid", "open.json"),
        fixture("mailings", "sendgrid", "unsubscribe.json"),
        fixture("mailings", "sendgrid", "group_resubscribe.json")
    );
    let (s, b) = post(&wh("sendgrid"), json, batch, token);
    assert_eq!(s, 200, "{b}");
    // Mailgun, a permanent failure, with the token in the query.
    let (s, b) = post(
        &format!("{}?token=acme-local-token", wh("mailgun")),
        json,
        fixture("mailings", "mailgun", "failed_permanent.json"),
        None,
    );
    assert_eq!(s, 200, "{b}");
    // SES: a hard bounce of two recipients: two records, each to mailings and blocklists.
    let (s, b) = post(
        &wh("ses"),
        "text/plain",
        fixture("mailings", "ses", "bounce_two_recipients.json"),
        token,
    );
    assert_eq!(s, 200, "{b}");
    // Postmark: a reactivation (subscriptions).
    let (s, b) = post(
        &wh("postmark"),
        json,
        fixture("subscriptions", "postmark", "subscription_change_reactivation.json"),
        token,
    );
    assert_eq!(s, 200, "{b}");
    // Mailchimp: a subscribe (users + subscriptions).
    let (s, b) = post(
        &wh("mailchimp"),
        form,
        fixture("users", "mailchimp", "subscribe.form"),
        token,
    );
    assert_eq!(s, 200, "{b}");
    // Mandrill: hard bounce (mailings + blocklists) and unsub (mailings + unsubscribes).
    let events = format!(
        "[{},{}]",
        fixture("mailings", "mandrill", "hard_bounce.json"),
        fixture("mailings", "mandrill", "unsub.json")
    );
    let body = format!("mandrill_events={}", urlencode(&events));
    let (s, b) = post(&wh("mandrill"), form, body, token);
    assert_eq!(s, 200, "{b}");

    // Refusals, with their reasons.
    let (s, b) = post(&wh("sendgrid"), json, "[]".into(), None);
    assert_eq!(s, 401, "{b}");
    let (s, b) = post(&wh("sendgrid"), json, "[]".into(), Some("globex-local-token"));
    assert!(s == 403 && b.contains("not tenant 'acme'"), "{s} {b}");
    let (s, b) = post("/v1/tenants/umbrella/webhooks/sendgrid", json, "[]".into(), token);
    assert!(s == 403 && b.contains("unknown tenant"), "{s} {b}");
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
    assert!(metrics.contains(r#"tributary_ingest_requests_total{provider="sendgrid",route="webhook",status="403"} 2"#));
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
