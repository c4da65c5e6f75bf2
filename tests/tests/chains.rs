//! The chain services against the real broker and registry: exact clean sets, DLQ reasons,
//! audit accounting, dedup across a restart, and exactly once under `kill -9`.

use anyhow::Result;
use rand::Rng;
use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;
use tributary_ctl::loadgen::{self, Generator, Kind, Spec};
use tributary_engine::topics;
use tributary_tests::*;

/// Checks the clean topic holds exactly `expected` (tenant/event_id), once each.
fn assert_exact_clean(ns: &str, chain: &str, expected: &BTreeSet<String>) -> Result<Vec<CleanRow>> {
    let clean = decode_clean(&read_all(&topic(ns, topics::clean(chain)))?)?;
    let mut seen = BTreeMap::<String, u32>::new();
    for (_, _, t, id) in &clean {
        *seen.entry(format!("{t}/{id}")).or_default() += 1;
    }
    let twice: Vec<_> = seen.iter().filter(|(_, n)| **n > 1).map(|(k, _)| k.clone()).collect();
    let got: BTreeSet<String> = seen.keys().cloned().collect();
    let missing: Vec<_> = expected.difference(&got).take(5).collect();
    let extra: Vec<_> = got.difference(expected).take(5).collect();
    assert!(
        twice.is_empty(),
        "{chain}: {} records twice in the clean topic, e.g. {:?}",
        twice.len(),
        &twice[..twice.len().min(5)]
    );
    assert!(
        missing.is_empty() && extra.is_empty(),
        "{chain}: missing {missing:?}, unexpected {extra:?}"
    );
    Ok(clean)
}

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
