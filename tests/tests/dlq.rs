//! `tributary dlq list|replay` against the real broker and a real chain service (`users`):
//! dead letters of a tenant the chain did not know yet reach clean exactly once after the
//! tenant is configured and they are replayed; a second replay sends nothing; what is still
//! invalid returns to the DLQ with its reason and is held back until asked for; and a replay
//! killed with `kill -9` at random moments, then run again, puts every dead letter into raw
//! exactly once.

use anyhow::{Context, Result};
use rand::Rng;
use serde_json::{json, Value};
use std::collections::{BTreeMap, BTreeSet};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};
use tributary_engine::topics;
use tributary_tests::*;

const CHAIN: &str = "users";

fn unix_now() -> i64 {
    chrono::Utc::now().timestamp()
}

fn user(tenant: &str, id: &str, email: &str) -> JsonEvent {
    JsonEvent {
        chain: CHAIN,
        tenant: tenant.into(),
        key: id.into(),
        value: json!({"event_id": id, "event_time": unix_now(), "email": email, "user_id": id}),
    }
}

/// `tributary <args>` in the namespace; its stdout, or an error with its stderr.
fn tributary(ns: &str, args: &[&str]) -> Result<String> {
    tributary_ok(args, &[("TOPIC_NAMESPACE", ns)])
}

/// `tributary dlq replay --chain users <extra>`: its summary.
fn replay(ns: &str, extra: &[&str]) -> Result<Value> {
    let mut args = vec!["dlq", "replay", "--chain", CHAIN];
    args.extend(extra);
    let out = tributary(ns, &args)?;
    let last = out.lines().last().context("replay printed no summary")?;
    Ok(serde_json::from_str(last)?)
}

/// `tributary dlq list --chain users <extra>`: one object per dead letter.
fn list(ns: &str, extra: &[&str]) -> Result<Vec<Value>> {
    let mut args = vec!["dlq", "list", "--chain", CHAIN];
    args.extend(extra);
    tributary(ns, &args)?
        .lines()
        .map(|l| serde_json::from_str(l).map_err(anyhow::Error::from))
        .collect()
}

/// The summary's counts, in a fixed order, for one readable assertion.
fn counts(s: &Value) -> [u64; 6] {
    [
        "scanned",
        "selected",
        "replayed",
        "skipped_already_replayed",
        "filtered_out",
        "failed_again_held",
    ]
    .map(|k| s[k].as_u64().unwrap_or_else(|| panic!("summary without {k}: {s}")))
}

/// `replay.of` of every record of raw that has one, with how often it occurs.
fn replays_in_raw(ns: &str) -> Result<BTreeMap<String, u32>> {
    let mut out = BTreeMap::new();
    for r in read_all(&topic(ns, topics::raw(CHAIN)))? {
        if let Some(of) = r.headers.get("replay.of") {
            *out.entry(of.clone()).or_default() += 1;
        }
    }
    Ok(out)
}

/// `tenant/event_id` of every clean record, with how often it occurs.
fn clean_ids(ns: &str) -> Result<BTreeMap<String, u32>> {
    let mut out = BTreeMap::new();
    for (_, _, t, id) in decode_clean(&read_all(&topic(ns, topics::clean(CHAIN)))?)? {
        *out.entry(format!("{t}/{id}")).or_default() += 1;
    }
    Ok(out)
}

fn coordinates(r: &Record) -> String {
    format!("dlq.{CHAIN}/{}/{}", r.partition, r.offset)
}

/// `tributary dlq replay --chain users --batch <batch>` as a child: its stderr to `log`
/// (stdout discarded), or, without a log, both piped.
fn spawn_replay(ns: &str, batch: u64, log: Option<std::fs::File>) -> Result<std::process::Child> {
    let (stdout, stderr) = match log {
        Some(f) => (Stdio::null(), Stdio::from(f)),
        None => (Stdio::piped(), Stdio::piped()),
    };
    Ok(Command::new(bin("tributary"))
        .env("KAFKA_BOOTSTRAP", kafka())
        .args([
            "dlq",
            "replay",
            "--chain",
            CHAIN,
            "--namespace",
            ns,
            "--batch",
            &batch.to_string(),
        ])
        .stdout(stdout)
        .stderr(stderr)
        .spawn()?)
}

#[test]
fn fixed_dead_letters_are_replayed_exactly_once() -> Result<()> {
    let ns = namespace(CHAIN, 3)?;
    let raw = topic(&ns, topics::raw(CHAIN));
    let audit = topic(&ns, topics::audit(CHAIN));
    let dlq = topic(&ns, topics::dlq(CHAIN));
    // The chain does not know `hooli` yet.
    let mut svc = Service::start(CHAIN, &ns, "0", &[("TENANTS", "acme,globex")])?;
    svc.wait_ready(Duration::from_secs(60))?;
    let mut events = Vec::new();
    for i in 0..50 {
        events.push(user("acme", &format!("a-{i}"), &format!("a{i}@example.com")));
    }
    for i in 0..40 {
        events.push(user("hooli", &format!("h-{i}"), &format!("h{i}@example.com")));
    }
    // Unknown tenant now, an invalid address once the tenant is known.
    for i in 0..10 {
        events.push(user("hooli", &format!("hb-{i}"), "not-an-address"));
    }
    // Invalid whatever is configured.
    for i in 0..5 {
        events.push(user("acme", &format!("ab-{i}"), "also-not-an-address"));
    }
    produce_json(&ns, &events)?;
    let sums = wait_accounted(&audit, 105, Duration::from_secs(60))?;
    assert_eq!((sums.clean, sums.dlq), (50, 55), "{sums:?}");

    // list: every dead letter, and the filters.
    let all = list(&ns, &[])?;
    assert_eq!(all.len(), 55);
    let first = &all[0];
    for k in [
        "partition",
        "offset",
        "error.class",
        "error.reason",
        "error.time",
        "size",
        "replayed",
    ] {
        assert!(first.get(k).is_some(), "list line without {k}: {first}");
    }
    assert!(all.iter().all(|l| l["replayed"] == json!(false)));
    let unknown = list(&ns, &["--class", "unknown_tenant"])?;
    assert_eq!(unknown.len(), 50);
    assert!(unknown
        .iter()
        .all(|l| l["error.reason"].as_str().unwrap_or("").contains("hooli") && l["tenant"] == json!("hooli")));
    assert_eq!(
        list(&ns, &["--reason", "HOOLI"])?.len(),
        50,
        "--reason is case-insensitive"
    );
    assert_eq!(list(&ns, &["--since", "1h"])?.len(), 55);
    let future = chrono::Utc::now() + chrono::Duration::hours(1);
    assert_eq!(list(&ns, &["--since", &future.to_rfc3339()])?.len(), 0);

    // The cause is fixed: the chain knows hooli now.
    svc.stop()?;
    let mut svc = Service::start(CHAIN, &ns, "0", &[("TENANTS", "acme,globex,hooli")])?;
    svc.wait_ready(Duration::from_secs(60))?;

    let dry = replay(&ns, &["--class", "unknown_tenant", "--dry-run"])?;
    assert_eq!(counts(&dry), [55, 50, 50, 0, 5, 0], "{dry}");
    assert!(replays_in_raw(&ns)?.is_empty(), "a dry run writes nothing");

    let first_run = replay(&ns, &["--class", "unknown_tenant"])?;
    assert_eq!(counts(&first_run), [55, 50, 50, 0, 5, 0], "{first_run}");
    let sums = wait_accounted(&audit, 155, Duration::from_secs(60))?;
    assert_eq!((sums.received, sums.clean, sums.dlq), (155, 90, 65), "{sums:?}");

    // Clean: every valid event once, the 40 fixed ones among them.
    let clean = clean_ids(&ns)?;
    let want: BTreeSet<String> = (0..50)
        .map(|i| format!("acme/a-{i}"))
        .chain((0..40).map(|i| format!("hooli/h-{i}")))
        .collect();
    assert_eq!(clean.keys().cloned().collect::<BTreeSet<_>>(), want);
    assert!(clean.values().all(|n| *n == 1), "twice in clean: {clean:?}");

    // Raw: each unknown-tenant dead letter replayed once, as it was, to the partition it came
    // from, with replay.of and none of the DLQ's headers.
    let dead: BTreeMap<String, Record> = read_all(&dlq)?.into_iter().map(|r| (coordinates(&r), r)).collect();
    let replayed: Vec<Record> = read_all(&raw)?
        .into_iter()
        .filter(|r| r.headers.contains_key("replay.of"))
        .collect();
    assert_eq!(replayed.len(), 50);
    let mut of_seen = BTreeSet::new();
    for r in &replayed {
        let of = &r.headers["replay.of"];
        assert!(of_seen.insert(of.clone()), "{of} replayed twice");
        let d = &dead[of];
        assert_eq!(d.headers["error.class"], "unknown_tenant");
        assert_eq!(
            (&r.key, &r.value),
            (&d.key, &d.value),
            "{of}: key and payload as they were"
        );
        assert_eq!(
            r.partition.to_string(),
            d.headers["source.partition"],
            "{of}: same raw partition"
        );
        let mut want_headers = d.headers.clone();
        want_headers.retain(|k, _| !k.starts_with("error.") && !k.starts_with("source."));
        want_headers.insert("replay.of".into(), of.clone());
        assert_eq!(r.headers, want_headers, "{of}: headers");
    }

    // The ten still invalid are back in the DLQ, with their new reason and replay.of.
    let again: Vec<&Record> = dead.values().filter(|r| r.headers.contains_key("replay.of")).collect();
    assert_eq!(again.len(), 10);
    for r in &again {
        assert_eq!(r.headers["error.class"], "invalid_email", "{:?}", r.headers);
        assert_eq!(r.headers["tenant"], "hooli");
        let origin = &dead[&r.headers["replay.of"]];
        assert_eq!(origin.headers["error.class"], "unknown_tenant");
        assert_eq!(origin.value, r.value);
    }
    let listed = list(&ns, &[])?;
    assert_eq!(listed.len(), 65);
    assert_eq!(listed.iter().filter(|l| l["replayed"] == json!(true)).count(), 50);
    assert_eq!(listed.iter().filter(|l| l["replay.of"].is_string()).count(), 10);

    // Again: nothing left to replay.
    let second = replay(&ns, &["--class", "unknown_tenant"])?;
    assert_eq!(counts(&second), [65, 50, 0, 50, 15, 0], "{second}");
    // Without filters: the 5 never replayed would go; the 10 that failed again are held back.
    let everything = replay(&ns, &["--dry-run"])?;
    assert_eq!(counts(&everything), [65, 55, 5, 50, 0, 10], "{everything}");

    // Asked for explicitly, a failed replay is replayed again, once; and back it comes.
    let explicit = replay(&ns, &["--class", "invalid_email", "--include-replayed"])?;
    assert_eq!(counts(&explicit), [65, 15, 15, 0, 50, 0], "{explicit}");
    let sums = wait_accounted(&audit, 170, Duration::from_secs(60))?;
    assert_eq!((sums.clean, sums.dlq), (90, 80), "{sums:?}");
    let repeat = replay(&ns, &["--class", "invalid_email"])?;
    assert_eq!(counts(&repeat), [80, 5, 0, 5, 50, 25], "{repeat}");
    let raw_replays = replays_in_raw(&ns)?;
    assert_eq!(raw_replays.len(), 65);
    assert!(raw_replays.values().all(|n| *n == 1), "{raw_replays:?}");
    assert_eq!(clean_ids(&ns)?, clean, "clean unchanged by what is still invalid");

    // Retention removes the dead letters: their ledger entries go too, at the next replay.
    delete_all_records(&dlq)?;
    let pruning = replay(&ns, &[])?;
    assert_eq!(counts(&pruning), [0, 0, 0, 0, 0, 0], "{pruning}");
    assert_eq!(pruning["ledger_pruned"], json!(65), "{pruning}");
    let after = replay(&ns, &[])?;
    assert_eq!(after["ledger_pruned"], json!(0), "{after}");
    svc.stop()
}

/// A replay of 20 000 dead letters killed with `kill -9` at random points (the raw topic
/// grown by a random amount, in the middle of a transaction as a rule), three times; then two
/// runs at once (the second fences the first); then one to its end: raw holds each dead letter
/// once, clean each event once, and one more run replays nothing.
#[test]
fn a_replay_killed_with_kill_dash_nine_and_run_again_replays_each_once() -> Result<()> {
    const N: u64 = 20_000;
    const BATCH: u64 = 200;
    let ns = namespace(CHAIN, 4)?;
    let raw = topic(&ns, topics::raw(CHAIN));
    let audit = topic(&ns, topics::audit(CHAIN));
    let mut svc = Service::start(CHAIN, &ns, "0", &[("TENANTS", "acme")])?;
    svc.wait_ready(Duration::from_secs(60))?;
    let p = JsonProducer::new(&ns)?;
    for i in 0..N {
        p.send(&user("hooli", &format!("k-{i}"), &format!("k{i}@example.com")))?;
    }
    p.flush()?;
    let sums = wait_accounted(&audit, N, Duration::from_secs(120))?;
    assert_eq!(sums.dlq, N);
    svc.stop()?;
    let mut svc = Service::start(CHAIN, &ns, "0", &[("TENANTS", "acme,hooli")])?;
    svc.wait_ready(Duration::from_secs(60))?;

    let raw_high = || -> Result<i64> { Ok(watermarks(&raw)?.values().map(|(_, h)| h).sum()) };
    let log = std::env::temp_dir().join(format!("{ns}-dlq-replay.log"));
    let mut rng = rand::rng();
    let mut kills = 0;
    for round in 0..3 {
        let committed = replays_in_raw(&ns)?.len() as u64;
        let remaining = N - committed;
        if remaining < 4 * BATCH {
            break;
        }
        // More than one batch: at least one transaction committed before the kill.
        let grow = rng.random_range(BATCH + 1..remaining / 2) as i64;
        let start = raw_high()?;
        let log_file = std::fs::OpenOptions::new().create(true).append(true).open(&log)?;
        let mut child = spawn_replay(&ns, BATCH, Some(log_file))?;
        let deadline = Instant::now() + Duration::from_secs(120);
        loop {
            if let Some(st) = child.try_wait()? {
                panic!("round {round}: the replay ended ({st}) before the raw topic grew by {grow}; see {log:?}");
            }
            if raw_high()? - start >= grow {
                child.kill()?; // SIGKILL
                child.wait()?;
                kills += 1;
                break;
            }
            assert!(Instant::now() < deadline, "round {round}: no progress; see {log:?}");
            std::thread::sleep(Duration::from_millis(2));
        }
    }
    assert!(kills >= 1, "no replay was killed mid-run");
    let before = replays_in_raw(&ns)?;
    assert!(before.values().all(|n| *n == 1), "twice in raw after the kills");
    let done_before = before.len() as u64;
    assert!(
        done_before > 0 && done_before < N,
        "killed runs committed {done_before} of {N}"
    );

    // Two runs at once: the second fences the first, which stops (unless it finished first)
    // having committed only whole batches.
    let remaining = N - done_before;
    let start = raw_high()?;
    let first = spawn_replay(&ns, BATCH, None)?;
    let grow = rng.random_range(1..remaining / 2) as i64;
    let deadline = Instant::now() + Duration::from_secs(120);
    while raw_high()? - start < grow {
        assert!(Instant::now() < deadline, "the first concurrent run made no progress");
        std::thread::sleep(Duration::from_millis(2));
    }
    let second = spawn_replay(&ns, BATCH, None)?.wait_with_output()?;
    let first = first.wait_with_output()?;
    assert!(
        second.status.success(),
        "the second run: {}",
        String::from_utf8_lossy(&second.stderr)
    );
    let first_err = String::from_utf8_lossy(&first.stderr);
    assert!(
        first.status.success() || first_err.contains("took over"),
        "the first run failed otherwise: {first_err}"
    );
    eprintln!(
        "concurrent runs: first {} ({}), second {}",
        first.status,
        first_err
            .lines()
            .filter(|l| l.contains("took over"))
            .collect::<String>(),
        String::from_utf8_lossy(&second.stdout).trim()
    );
    let done_before = replays_in_raw(&ns)?.len() as u64;

    let last = replay(&ns, &[])?;
    assert_eq!(counts(&last), [N, N, N - done_before, done_before, 0, 0], "{last}");
    let after = replays_in_raw(&ns)?;
    let dlq_coordinates: BTreeSet<String> = read_all(&topic(&ns, topics::dlq(CHAIN)))?
        .iter()
        .map(coordinates)
        .collect();
    assert_eq!(after.keys().cloned().collect::<BTreeSet<_>>(), dlq_coordinates);
    let twice: Vec<_> = after.iter().filter(|(_, n)| **n > 1).take(5).collect();
    assert!(twice.is_empty(), "replayed twice into raw: {twice:?}");

    let sums = wait_accounted(&audit, 2 * N, Duration::from_secs(180))?;
    assert_eq!((sums.received, sums.clean, sums.dlq), (2 * N, N, N), "{sums:?}");
    let clean = clean_ids(&ns)?;
    let want: BTreeSet<String> = (0..N).map(|i| format!("hooli/k-{i}")).collect();
    assert_eq!(clean.keys().cloned().collect::<BTreeSet<_>>(), want);
    assert!(clean.values().all(|n| *n == 1), "an event twice in clean");

    let again = replay(&ns, &[])?;
    assert_eq!(counts(&again), [N, N, 0, N, 0, 0], "{again}");
    assert_eq!(replays_in_raw(&ns)?, after);
    svc.stop()
}

/// A dead letter whose payload is a summary (`error.truncated: true`: the record was too
/// large to dead-letter whole) is listed, never replayed; a hand-written dead letter beside it
/// (headers in the chain's layout) is.
#[test]
fn a_summarized_dead_letter_is_never_replayed() -> Result<()> {
    use rdkafka::message::{Header, OwnedHeaders};
    use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
    let ns = namespace(CHAIN, 2)?;
    let dlq = topic(&ns, topics::dlq(CHAIN));
    let raw = topic(&ns, topics::raw(CHAIN));
    let p: BaseProducer = rdkafka::ClientConfig::new()
        .set("bootstrap.servers", kafka())
        .create()?;
    let now = (chrono::Utc::now().timestamp_micros()).to_string();
    for (i, truncated) in [false, true].into_iter().enumerate() {
        let offset = i.to_string();
        let mut h = OwnedHeaders::new();
        for (k, v) in [
            ("tenant", "hooli"),
            ("source", "json"),
            ("error.class", "unknown_tenant"),
            ("error.reason", "tenant 'hooli' is not configured"),
            ("error.time", now.as_str()),
            ("source.topic", raw.as_str()),
            ("source.partition", "1"),
            ("source.offset", offset.as_str()),
        ] {
            h = h.insert(Header { key: k, value: Some(v) });
        }
        if truncated {
            h = h.insert(Header {
                key: "error.truncated",
                value: Some("true"),
            });
        }
        let payload = if truncated {
            json!({"truncated": true, "size": 2_000_000}).to_string()
        } else {
            json!({"event_id": "x", "event_time": unix_now(), "email": "x@example.com"}).to_string()
        };
        p.send(
            BaseRecord::<[u8], [u8]>::to(&dlq)
                .partition(0)
                .key(b"hooli:x")
                .payload(payload.as_bytes())
                .headers(h),
        )
        .map_err(|(e, _)| e)?;
    }
    p.flush(Duration::from_secs(30))?;
    let listed = list(&ns, &[])?;
    assert_eq!(
        listed.iter().map(|l| l["truncated"].clone()).collect::<Vec<_>>(),
        [json!(false), json!(true)]
    );
    let s = replay(&ns, &[])?;
    assert_eq!(counts(&s), [2, 1, 1, 0, 0, 0], "{s}");
    assert_eq!(s["not_replayable"], json!(1), "{s}");
    let replayed: Vec<Record> = read_all(&raw)?;
    assert_eq!(replayed.len(), 1);
    let r = &replayed[0];
    assert_eq!(r.partition, 1, "to the partition it came from");
    assert_eq!(r.headers.get("replay.of").map(String::as_str), Some("dlq.users/0/0"));
    assert_eq!(
        r.headers.keys().map(String::as_str).collect::<Vec<_>>(),
        ["replay.of", "source", "tenant"]
    );
    Ok(())
}
