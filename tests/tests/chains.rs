//! The chain services against the real broker and registry: exact clean sets, DLQ reasons,
//! audit accounting, dedup across a restart, and exactly once under `kill -9`.

use anyhow::{Context, Result};
use rand::Rng;
use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;
use tributary_ctl::loadgen::{self, Generator, Kind, Spec};
use tributary_engine::topics;
use tributary_tests::*;

fn exact_sets_for(chain: &str) -> Result<()> {
    let ns = namespace(chain, 3)?;
    let mut svc = Service::start(
        chain,
        &ns,
        "0",
        &[("DEDUP_WINDOW", "1h"), ("MAX_RECORD_BYTES", "65536")],
    )?;
    svc.wait_ready(Duration::from_secs(60))?;
    let mut spec = Spec::new(chain, 3_000);
    spec.seed = 11;
    spec.invalid_share = 0.05;
    spec.spread_secs = 600;
    let summary = loadgen::send(&kafka(), &topic(&ns, topics::raw(chain)), spec, |_| {})?;
    let mut specials = special_records(chain);
    // A late event: an hour and a half older than the newest, with a 1 h window.
    specials.push(late_record());
    produce_special(&topic(&ns, topics::raw(chain)), &specials)?;
    let total = summary.sent + specials.len() as u64;
    let sums = wait_accounted(&topic(&ns, topics::audit(chain)), total, Duration::from_secs(120))?;

    let mut expected = summary.expected.clone();
    expected.insert("globex/csv-1".into());
    expected.insert("acme/late-1".into());
    let special_dlq = specials.iter().filter(|s| s.class.is_some()).count() as u64;
    assert_eq!(sums.received, total, "{chain}: audit received");
    assert_eq!(sums.clean, expected.len() as u64, "{chain}: audit clean");
    assert_eq!(sums.dlq, summary.invalid + special_dlq, "{chain}: audit dlq");
    assert_eq!(sums.duplicate, summary.duplicates, "{chain}: audit duplicates");
    assert_eq!(
        sums.clean + sums.dlq + sums.duplicate,
        sums.received,
        "{chain}: audit adds up"
    );
    assert_eq!(sums.late, 1, "{chain}: late events");
    assert_exact_clean(&ns, chain, &expected)?;

    let dlq = read_all(&topic(&ns, topics::dlq(chain)))?;
    assert_eq!(dlq.len() as u64, summary.invalid + special_dlq, "{chain}: DLQ size");
    for r in &dlq {
        for h in [
            "error.class",
            "error.reason",
            "source.topic",
            "source.partition",
            "source.offset",
            "tenant",
        ] {
            assert!(
                r.headers.contains_key(h),
                "{chain}: DLQ record without header {h}: {:?}",
                r.headers
            );
        }
        assert_eq!(r.headers["source.topic"], topic(&ns, topics::raw(chain)));
    }
    let specials_seen: BTreeSet<&str> = dlq
        .iter()
        .filter(|r| r.key.as_deref() == Some(b"special"))
        .map(|r| r.headers["error.class"].as_str())
        .collect();
    let specials_want: BTreeSet<&str> = specials.iter().filter_map(|s| s.class).collect();
    assert_eq!(specials_seen, specials_want, "{chain}: DLQ classes");
    assert!(
        dlq.iter()
            .any(|r| r.value.as_deref() == Some(&b"{\"event_time\": 1"[..])),
        "original bytes kept"
    );
    svc.stop()?;
    Ok(())
}

#[test]
fn users_exact_sets() -> Result<()> {
    exact_sets_for("users")
}
#[test]
fn unsubscribes_exact_sets() -> Result<()> {
    exact_sets_for("unsubscribes")
}
#[test]
fn blocklists_exact_sets() -> Result<()> {
    exact_sets_for("blocklists")
}
#[test]
fn subscriptions_exact_sets() -> Result<()> {
    exact_sets_for("subscriptions")
}
#[test]
fn mailings_exact_sets() -> Result<()> {
    exact_sets_for("mailings")
}

/// A duplicate that arrives after a restart, within the window, is still dropped: the state
/// came back from the changelog.
#[test]
fn dedup_survives_a_restart() -> Result<()> {
    let chain = "subscriptions";
    let ns = namespace(chain, 2)?;
    let raw = topic(&ns, topics::raw(chain));
    let audit = topic(&ns, topics::audit(chain));
    let mut svc = Service::start(chain, &ns, "0", &[])?;
    svc.wait_ready(Duration::from_secs(60))?;
    let mut spec = Spec::new(chain, 2_000);
    spec.duplicate_share = 0.0;
    spec.invalid_share = 0.0;
    let first = loadgen::send(&kafka(), &raw, spec.clone(), |_| {})?;
    wait_accounted(&audit, first.sent, Duration::from_secs(60))?;
    svc.restart()?;
    svc.wait_ready(Duration::from_secs(60))?;
    let again = loadgen::send(&kafka(), &raw, spec, |_| {})?;
    let sums = wait_accounted(&audit, first.sent + again.sent, Duration::from_secs(60))?;
    assert_eq!(
        sums.duplicate, again.sent,
        "every replayed record is a duplicate after the restart"
    );
    assert_exact_clean(&ns, chain, &first.expected)?;
    svc.stop()
}

/// `kill -9` at random moments while 100k events (10 % duplicates) stream in: afterwards the
/// clean topic holds exactly the expected set, once each, in per-key order.
#[test]
fn exactly_once_under_kill_dash_nine() -> Result<()> {
    let chain = "mailings";
    let ns = namespace(chain, 4)?;
    let raw = topic(&ns, topics::raw(chain));
    let mut svc = Service::start(chain, &ns, "0", &[("COMMIT_INTERVAL", "50ms")])?;
    svc.wait_ready(Duration::from_secs(60))?;
    let mut spec = Spec::new(chain, 100_000);
    spec.seed = 99;
    spec.duplicate_share = 0.1;
    spec.invalid_share = 0.01;
    let (kafka_, raw_, spec_) = (kafka(), raw.clone(), spec.clone());
    let producer = std::thread::spawn(move || loadgen::send_paced(&kafka_, &raw_, spec_, Some(5_000), |_| {}));
    let mut rng = rand::rng();
    let mut kills = 0;
    while kills < 6 && !producer.is_finished() {
        std::thread::sleep(Duration::from_millis(rng.random_range(1_000..3_000)));
        svc.kill9_and_restart()?;
        kills += 1;
    }
    let summary = producer.join().expect("producer thread")?;
    assert!(kills >= 5, "only {kills} kills happened while the load was running");
    let sums = wait_accounted(
        &topic(&ns, topics::audit(chain)),
        summary.sent,
        Duration::from_secs(180),
    )?;
    assert_eq!(
        sums.received, summary.sent,
        "audit covers every input record exactly once"
    );
    let clean = assert_exact_clean(&ns, chain, &summary.expected)?;
    // Per-key order: the order of first occurrences in the input, per key.
    let mut want: BTreeMap<Vec<u8>, Vec<String>> = BTreeMap::new();
    for g in Generator::new(spec) {
        if g.kind == Kind::Valid {
            want.entry(g.key.into_bytes()).or_default().push(format!(
                "{}/{}",
                g.tenant,
                g.event_id.unwrap_or_default()
            ));
        }
    }
    let mut got: BTreeMap<Vec<u8>, Vec<String>> = BTreeMap::new();
    for (_, key, t, id) in clean {
        got.entry(key).or_default().push(format!("{t}/{id}"));
    }
    assert_eq!(got, want, "per-key order");
    svc.stop()
}

/// Two instances share the partitions; one of them is stopped and started again and again
/// while events stream in: the clean topic still holds exactly the expected set.
#[test]
fn two_instances_with_one_restarting() -> Result<()> {
    let chain = "users";
    let ns = namespace(chain, 4)?;
    let raw = topic(&ns, topics::raw(chain));
    let mut a = Service::start(chain, &ns, "a", &[])?;
    let mut b = Service::start(chain, &ns, "b", &[])?;
    a.wait_ready(Duration::from_secs(60))?;
    b.wait_ready(Duration::from_secs(60))?;
    let mut spec = Spec::new(chain, 30_000);
    spec.seed = 5;
    let (kafka_, raw_, spec_) = (kafka(), raw.clone(), spec.clone());
    let producer = std::thread::spawn(move || loadgen::send_paced(&kafka_, &raw_, spec_, Some(3_000), |_| {}));
    let mut restarts = 0;
    while !producer.is_finished() {
        std::thread::sleep(Duration::from_millis(1_500));
        b.restart()?;
        restarts += 1;
    }
    let summary = producer.join().expect("producer thread")?;
    assert!(restarts >= 3, "only {restarts} restarts while the load was running");
    let sums = wait_accounted(
        &topic(&ns, topics::audit(chain)),
        summary.sent,
        Duration::from_secs(180),
    )?;
    assert_eq!(sums.received, summary.sent);
    assert_eq!(sums.duplicate, summary.duplicates);
    assert_exact_clean(&ns, chain, &summary.expected)?;
    a.stop()?;
    b.stop()
}

// Faults that must delay, never dead-letter or lose.

fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_secs()
}

/// A canonical-JSON event every chain takes as clean (the shape of [`late_record`]).
fn event(tenant: &'static str, event_id: &str, event_time: u64) -> Special {
    let payload = serde_json::json!({
        "event_id": event_id,
        "event_time": event_time,
        "email": format!("{event_id}@example.com"),
        "list_id": "l",
        "message_id": format!("m-{event_id}"),
        "event_type": "SENT",
    });
    Special {
        tenant,
        source: "json",
        payload: payload.to_string().into_bytes(),
        class: None,
    }
}

/// A valid `users` event of exactly `size` bytes, made large by a long random alphanumeric
/// attribute (`blob`; compressed, it keeps about three quarters of its size).
fn huge_user(event_id: &str, size: usize) -> Special {
    use rand::distr::Alphanumeric;
    let mut payload = format!(
        r#"{{"event_id":"{event_id}","event_time":{},"email":"huge@example.com","blob":""#,
        unix_now()
    )
    .into_bytes();
    let mut rng = rand::rng();
    while payload.len() < size - 2 {
        payload.push(rng.sample(Alphanumeric));
    }
    payload.extend_from_slice(b"\"}");
    Special {
        tenant: "acme",
        source: "json",
        payload,
        class: Some("oversize"),
    }
}

/// An oversize record of `size` bytes that no compression shrinks: a JSON start, then random
/// bytes.
fn incompressible(event_id: &str, size: usize) -> Special {
    let mut payload = format!(r#"{{"event_id":"{event_id}","blob":""#).into_bytes();
    let start = payload.len();
    payload.resize(size, 0);
    rand::rng().fill(&mut payload[start..]);
    Special {
        tenant: "acme",
        source: "json",
        payload,
        class: Some("oversize"),
    }
}

/// Waits until the audit accounts for `expected` records; fails at once, naming its log, if
/// the service exits meanwhile.
fn wait_accounted_alive(
    svc: &mut Service,
    ns: &str,
    chain: &str,
    expected: u64,
    timeout: Duration,
) -> Result<AuditSums> {
    let audit = topic(ns, topics::audit(chain));
    let deadline = std::time::Instant::now() + timeout;
    loop {
        let s = audit_sums(&audit)?;
        if let Some(st) = svc.child.try_wait()? {
            anyhow::bail!(
                "{chain} exited ({st}) with {} of {expected} records accounted for; see {}",
                s.received,
                std::env::temp_dir().join(format!("{ns}-{chain}-0.log")).display()
            );
        }
        if s.received >= expected {
            return Ok(s);
        }
        anyhow::ensure!(
            std::time::Instant::now() < deadline,
            "only {} of {expected} records accounted for after {timeout:?}",
            s.received
        );
        std::thread::sleep(Duration::from_millis(300));
    }
}

/// The value of a counter of a chain service's `/metrics` (its first series).
fn service_metric(svc: &Service, name: &str) -> Result<f64> {
    let text = ::reqwest::blocking::get(format!("http://127.0.0.1:{}/metrics", svc.port))?.text()?;
    text.lines()
        .filter(|l| l.starts_with(name) && l[name.len()..].starts_with(['{', ' ']))
        .find_map(|l| l.rsplit(' ').next()?.parse().ok())
        .with_context(|| format!("no {name} in /metrics"))
}

/// Checks a summarized dead letter: marked truncated, the record's key and headers, the error
/// headers, and a summary naming the payload's hash, size, first bytes and the reason.
fn assert_summary(r: &Record, raw: &str, original: &Special, reason_has: &str) -> Result<()> {
    use sha2::{Digest, Sha256};
    assert_eq!(r.headers.get("error.truncated").map(String::as_str), Some("true"));
    assert_eq!(r.headers["error.class"], "oversize");
    assert!(r.headers["error.reason"].contains(reason_has), "{:?}", r.headers);
    assert_eq!(r.headers["source.topic"], raw);
    assert!(r.headers.contains_key("source.offset") && r.headers.contains_key("error.time"));
    assert_eq!(
        r.headers["tenant"], original.tenant,
        "the original headers that fit are kept"
    );
    assert_eq!(r.headers["source"], original.source);
    assert_eq!(r.key.as_deref(), Some(&b"special"[..]), "the key is kept");
    let value = r.value.as_deref().unwrap_or_default();
    assert!(
        value.len() < 20_000,
        "a summary, not the payload: {} bytes",
        value.len()
    );
    let s: serde_json::Value = serde_json::from_slice(value)?;
    assert_eq!(s["truncated"], true);
    assert_eq!(s["size"], original.payload.len());
    assert_eq!(s["sha256"], hex::encode(Sha256::digest(&original.payload)));
    assert_eq!(s["class"], "oversize");
    assert!(s["reason"].as_str().unwrap_or_default().contains(reason_has), "{s}");
    let head = String::from_utf8_lossy(&original.payload[..16]).into_owned();
    assert!(s["head"].as_str().unwrap_or_default().starts_with(&head), "{s}");
    assert_eq!(s["head_hex"], hex::encode(&original.payload[..64]));
    Ok(())
}

/// A record just under the raw topic's size limit, dead-lettered as larger than
/// MAX_RECORD_BYTES: with the DLQ headers it is too large for the DLQ whole, so it goes there
/// as a summary (hash, size, first bytes, reason) with its key and headers, marked
/// `error.truncated`; the records after it in the partition all reach clean, the audit
/// accounts for every one and the service lives on. A smaller oversize record still goes to
/// the DLQ byte for byte.
#[test]
fn a_record_too_large_to_dead_letter_whole_goes_as_a_summary() -> Result<()> {
    let chain = "users";
    let ns = namespace(chain, 1)?;
    let raw = topic(&ns, topics::raw(chain));
    let limit = topic_max_message_bytes(&raw)?;
    let mut svc = Service::start(chain, &ns, "0", &[("MAX_RECORD_BYTES", "65536")])?;
    svc.wait_ready(Duration::from_secs(60))?;
    let huge = huge_user("huge-1", limit - 1024);
    let mid = huge_user("mid-1", 70_000);
    let max = limit.to_string();
    let large = [huge, mid];
    produce_special_with(&raw, &large, &[("message.max.bytes", &max)])?;
    let now = unix_now();
    let after: Vec<Special> = (1..=20).map(|i| event("acme", &format!("after-{i}"), now)).collect();
    produce_special(&raw, &after)?;

    let total = 2 + after.len() as u64;
    let sums = wait_accounted_alive(&mut svc, &ns, chain, total, Duration::from_secs(120))?;
    assert_eq!(
        (sums.received, sums.clean, sums.dlq, sums.duplicate),
        (total, 20, 2, 0),
        "audit: {sums:?}"
    );
    let expected: BTreeSet<String> = (1..=20).map(|i| format!("acme/after-{i}")).collect();
    assert_exact_clean(&ns, chain, &expected)?;

    let dlq = read_all(&topic(&ns, topics::dlq(chain)))?;
    assert_eq!(dlq.len(), 2, "DLQ size");
    // One partition, produced in order: the huge record is offset 0, the other offset 1.
    let (summarized, whole): (Vec<&Record>, Vec<&Record>) =
        dlq.iter().partition(|r| r.headers.contains_key("error.truncated"));
    assert_eq!((summarized.len(), whole.len()), (1, 1), "one summarized, one whole");
    assert_eq!(summarized[0].headers["source.offset"], "0");
    assert_summary(summarized[0], &raw, &large[0], "exceed max_record_bytes 65536")?;
    assert_eq!(whole[0].headers["source.offset"], "1");
    assert_eq!(
        whole[0].value.as_deref(),
        Some(&large[1].payload[..]),
        "original bytes kept"
    );

    assert!(svc.child.try_wait()?.is_none(), "the service is alive");
    assert_eq!(
        service_metric(&svc, "tributary_chain_dlq_truncated_records_total")?,
        1.0
    );
    svc.stop()
}

/// A valid record within MAX_RECORD_BYTES (its default, 1 MiB) whose clean encoding is larger
/// than the clean topic and the producer take: dead-lettered as oversize (as a summary, being
/// too large for the DLQ whole too), never a failed produce that stops the service; the
/// records after it reach clean.
#[test]
fn a_valid_record_too_large_for_the_clean_topic_is_dead_lettered() -> Result<()> {
    let chain = "users";
    let ns = namespace(chain, 1)?;
    let raw = topic(&ns, topics::raw(chain));
    let limit = topic_max_message_bytes(&raw)?;
    let mut svc = Service::start(chain, &ns, "0", &[])?;
    svc.wait_ready(Duration::from_secs(60))?;
    let huge = [huge_user("huge-2", limit - 1024)];
    produce_special_with(&raw, &huge, &[("message.max.bytes", &limit.to_string())])?;
    let after: Vec<Special> = (1..=5)
        .map(|i| event("acme", &format!("after-{i}"), unix_now()))
        .collect();
    produce_special(&raw, &after)?;
    let sums = wait_accounted_alive(&mut svc, &ns, chain, 6, Duration::from_secs(120))?;
    assert_eq!((sums.received, sums.clean, sums.dlq), (6, 5, 1), "audit: {sums:?}");
    let expected: BTreeSet<String> = (1..=5).map(|i| format!("acme/after-{i}")).collect();
    assert_exact_clean(&ns, chain, &expected)?;
    let dlq = read_all(&topic(&ns, topics::dlq(chain)))?;
    assert_eq!(dlq.len(), 1);
    assert_summary(&dlq[0], &raw, &huge[0], "its clean record would be")?;
    assert!(svc.child.try_wait()?.is_none(), "the service is alive");
    svc.stop()
}

/// A valid record dated 23 h 50 min ahead (a sender's clock) is clean, but does not move the
/// partition's time: the records dated now after it are not late (with a 1 h window they
/// would all be, were the watermark its time), neither before nor after a `kill -9` and a
/// restore from the changelog; the future record is still remembered, with its own time.
#[test]
fn a_record_dated_ahead_does_not_make_the_others_late() -> Result<()> {
    let chain = "mailings";
    let ns = namespace(chain, 1)?;
    let raw = topic(&ns, topics::raw(chain));
    let mut svc = Service::start(chain, &ns, "0", &[("DEDUP_WINDOW", "1h")])?;
    svc.wait_ready(Duration::from_secs(60))?;
    let ahead = event("acme", "ahead-1", unix_now() + 23 * 3600 + 50 * 60);
    produce_special(&raw, std::slice::from_ref(&ahead))?;
    let sums = wait_accounted_alive(&mut svc, &ns, chain, 1, Duration::from_secs(60))?;
    assert_eq!(
        (sums.clean, sums.late),
        (1, 0),
        "the record dated ahead is clean: {sums:?}"
    );

    let first: Vec<Special> = (1..=20)
        .map(|i| event("acme", &format!("now-{i}"), unix_now()))
        .collect();
    produce_special(&raw, &first)?;
    let sums = wait_accounted_alive(&mut svc, &ns, chain, 21, Duration::from_secs(60))?;
    assert_eq!((sums.clean, sums.late, sums.dlq), (21, 0, 0), "none late: {sums:?}");

    svc.kill9_and_restart()?;
    svc.wait_ready(Duration::from_secs(60))?;
    let mut second: Vec<Special> = (21..=40)
        .map(|i| event("acme", &format!("now-{i}"), unix_now()))
        .collect();
    // Sent again: duplicates, so the restored state holds both kinds.
    second.push(event("acme", "now-1", unix_now()));
    second.push(ahead);
    produce_special(&raw, &second)?;
    let sums = wait_accounted_alive(&mut svc, &ns, chain, 43, Duration::from_secs(60))?;
    assert_eq!(
        (sums.received, sums.clean, sums.late, sums.duplicate, sums.dlq),
        (43, 41, 0, 2, 0),
        "after the restore: none late, the resent ones duplicates: {sums:?}"
    );
    let mut expected: BTreeSet<String> = (1..=40).map(|i| format!("acme/now-{i}")).collect();
    expected.insert("acme/ahead-1".into());
    assert_exact_clean(&ns, chain, &expected)?;
    svc.stop()
}

/// A payload whose `tenant_id` names another tenant than its `tenant` header (set by whoever
/// authenticated the sender) is dead-lettered as invalid_tenant with a reason naming both,
/// whether the other tenant is served here or not; one that names the same tenant, or none,
/// is clean.
#[test]
fn a_payload_naming_another_tenant_than_its_header_is_dead_lettered() -> Result<()> {
    let chain = "blocklists";
    let ns = namespace(chain, 1)?;
    let raw = topic(&ns, topics::raw(chain));
    let mut svc = Service::start(chain, &ns, "0", &[])?;
    svc.wait_ready(Duration::from_secs(60))?;
    let now = unix_now();
    let with_field = |header: &'static str, field: &str, id: &str| {
        let mut s = event(header, id, now);
        let mut v: serde_json::Value = serde_json::from_slice(&s.payload).expect("json");
        v["tenant_id"] = field.into();
        s.payload = v.to_string().into_bytes();
        s
    };
    let records = [
        with_field("acme", "globex", "other-1"),
        with_field("acme", "hooli", "other-2"),
        with_field("globex", "acme", "other-3"),
        with_field("acme", "acme", "same-1"),
        event("globex", "none-1", now),
    ];
    produce_special(&raw, &records)?;
    let sums = wait_accounted_alive(&mut svc, &ns, chain, 5, Duration::from_secs(60))?;
    assert_eq!((sums.received, sums.clean, sums.dlq), (5, 2, 3), "audit: {sums:?}");
    let expected: BTreeSet<String> = ["acme/same-1", "globex/none-1"].map(String::from).into();
    assert_exact_clean(&ns, chain, &expected)?;
    let dlq = read_all(&topic(&ns, topics::dlq(chain)))?;
    assert_eq!(dlq.len(), 3);
    for (r, (header, field)) in dlq
        .iter()
        .zip([("acme", "globex"), ("acme", "hooli"), ("globex", "acme")])
    {
        assert_eq!(r.headers["error.class"], "invalid_tenant", "{:?}", r.headers);
        let reason = &r.headers["error.reason"];
        assert!(
            reason.contains("disagree")
                && reason.contains(&format!("'{header}'"))
                && reason.contains(&format!("'{field}'")),
            "{reason}"
        );
        assert_eq!(r.headers["tenant"], header);
        let offset: usize = r.headers["source.offset"].parse()?;
        assert_eq!(
            r.value.as_deref(),
            Some(&records[offset].payload[..]),
            "original bytes kept"
        );
    }
    svc.stop()
}

/// Sets one config of an existing topic (as an operator would with kafka-configs).
fn set_topic_config(topic: &str, key: &str, value: &str) -> Result<()> {
    use rdkafka::admin::{AdminClient, AdminOptions, AlterConfig, ResourceSpecifier};
    use rdkafka::client::DefaultClientContext;
    let admin: AdminClient<DefaultClientContext> = rdkafka::ClientConfig::new()
        .set("bootstrap.servers", kafka())
        .create()?;
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    let alter = AlterConfig::new(ResourceSpecifier::Topic(topic)).set(key, value);
    for r in rt.block_on(admin.alter_configs([&alter], &AdminOptions::new()))? {
        r.map_err(|(_, code)| anyhow::anyhow!("setting {key}={value} on {topic}: {code}"))?;
    }
    Ok(())
}

/// The DLQ topic takes less than the producer would send (its `max.message.bytes` lowered to
/// 256 KiB): an incompressible 300 kB record, dead-lettered as larger than MAX_RECORD_BYTES, goes to the DLQ
/// as a summary, not as a record the broker rejects inside the transaction (which would abort
/// it, and every retry of it, forever); the records after it reach clean.
#[test]
fn a_dead_letter_too_large_for_the_dlq_topic_goes_as_a_summary() -> Result<()> {
    let chain = "users";
    let ns = namespace(chain, 1)?;
    let raw = topic(&ns, topics::raw(chain));
    let dlq_topic = topic(&ns, topics::dlq(chain));
    set_topic_config(&dlq_topic, "max.message.bytes", "262144")?;
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while topic_max_message_bytes(&dlq_topic)? != 262_144 {
        anyhow::ensure!(
            std::time::Instant::now() < deadline,
            "{dlq_topic}: the new limit is not in effect"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    let mut svc = Service::start(chain, &ns, "0", &[("MAX_RECORD_BYTES", "65536")])?;
    svc.wait_ready(Duration::from_secs(60))?;
    let big = [incompressible("big-1", 300_000)];
    produce_special(&raw, &big)?;
    let after: Vec<Special> = (1..=5)
        .map(|i| event("acme", &format!("after-{i}"), unix_now()))
        .collect();
    produce_special(&raw, &after)?;
    let sums = wait_accounted_alive(&mut svc, &ns, chain, 6, Duration::from_secs(90))?;
    assert_eq!((sums.received, sums.clean, sums.dlq), (6, 5, 1), "audit: {sums:?}");
    let expected: BTreeSet<String> = (1..=5).map(|i| format!("acme/after-{i}")).collect();
    assert_exact_clean(&ns, chain, &expected)?;
    let dlq = read_all(&dlq_topic)?;
    assert_eq!(dlq.len(), 1);
    assert_summary(&dlq[0], &raw, &big[0], "exceed max_record_bytes 65536")?;
    assert!(svc.child.try_wait()?.is_none(), "the service is alive");
    svc.stop()
}
