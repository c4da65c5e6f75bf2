//! `tributary loadgen`'s `mix` (every source format a chain reads: json, csv and the ESP
//! webhooks) through each real chain service against the real broker and registry: the clean
//! topic holds exactly the Summary's expected identities, once each; the DLQ holds every
//! invalid record with the class it was made for; every duplicate is counted as one.

use anyhow::Result;
use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;
use tributary_ctl::loadgen::{self, Format, Spec};
use tributary_engine::topics;
use tributary_tests::*;

fn mix_through(chain: &str, seed: u64) -> Result<()> {
    let ns = namespace(chain, 3)?;
    let mut svc = Service::start(chain, &ns, "0", &[])?;
    svc.wait_ready(Duration::from_secs(60))?;
    let mut spec = Spec::new(chain, 3_000).with_format(Format::Mix);
    spec.seed = seed;
    spec.duplicate_share = 0.1;
    spec.invalid_share = 0.05;
    let raw = topic(&ns, topics::raw(chain));
    let summary = loadgen::send(&kafka(), &raw, spec, |_| {})?;
    assert_eq!(summary.sent, 3_000);
    assert_eq!(
        summary.per_format.len(),
        loadgen::formats_for(chain).len(),
        "{chain}: every format it reads was sent: {:?}",
        summary.per_format
    );
    let sums = wait_accounted(&topic(&ns, topics::audit(chain)), summary.sent, Duration::from_secs(90))?;
    assert_eq!(sums.received, summary.sent, "{chain}: audit received");
    assert_eq!(sums.clean, summary.expected.len() as u64, "{chain}: audit clean");
    assert_eq!(sums.clean, summary.valid, "{chain}: every valid record is clean");
    assert_eq!(sums.dlq, summary.invalid, "{chain}: audit dlq");
    assert_eq!(sums.duplicate, summary.duplicates, "{chain}: audit duplicates");
    assert_eq!(sums.late, 0, "{chain}: nothing late");

    // The clean topic: exactly the expected set, once each.
    let clean = decode_clean(&read_all(&topic(&ns, topics::clean(chain)))?)?;
    let mut seen = BTreeMap::<String, u32>::new();
    for (_, _, t, id) in &clean {
        *seen.entry(format!("{t}/{id}")).or_default() += 1;
    }
    let twice: Vec<_> = seen.iter().filter(|(_, n)| **n > 1).take(5).collect();
    assert!(twice.is_empty(), "{chain}: in the clean topic twice: {twice:?}");
    let got: BTreeSet<String> = seen.into_keys().collect();
    let missing: Vec<_> = summary.expected.difference(&got).take(5).collect();
    let extra: Vec<_> = got.difference(&summary.expected).take(5).collect();
    assert!(
        missing.is_empty() && extra.is_empty(),
        "{chain}: missing {missing:?}, unexpected {extra:?}"
    );

    // The DLQ: every invalid record, with the class it was made for, in every format.
    let dlq = read_all(&topic(&ns, topics::dlq(chain)))?;
    assert_eq!(dlq.len() as u64, summary.invalid, "{chain}: DLQ size");
    let mut classes = BTreeMap::<String, u64>::new();
    let mut formats = BTreeSet::<String>::new();
    for r in &dlq {
        *classes.entry(r.headers["error.class"].clone()).or_default() += 1;
        if let Some(s) = r.headers.get("source") {
            formats.insert(s.clone());
        }
    }
    assert_eq!(classes, summary.invalid_by_class, "{chain}: DLQ classes");
    assert!(
        formats.len() >= 3,
        "{chain}: invalid records of several formats: {formats:?}"
    );
    svc.stop()
}

#[test]
fn users_mix() -> Result<()> {
    mix_through("users", 61)
}
#[test]
fn unsubscribes_mix() -> Result<()> {
    mix_through("unsubscribes", 62)
}
#[test]
fn blocklists_mix() -> Result<()> {
    mix_through("blocklists", 63)
}
#[test]
fn subscriptions_mix() -> Result<()> {
    mix_through("subscriptions", 64)
}
#[test]
fn mailings_mix() -> Result<()> {
    mix_through("mailings", 65)
}
