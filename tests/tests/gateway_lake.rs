//! End to end through the gateway: webhooks of every provider (a SendGrid batch built here with
//! its own event ids, sent twice as a provider retries, plus the providers' documented
//! payloads), events a chain must dead-letter, a CSV upload with a line the gateway rejects
//! and a JSON-lines upload, go ingest → raw topics → the five chain services → clean topics →
//! the sink → the Delta lake on the MiniDFSCluster. Afterwards every chain's audit accounts for
//! every raw record, and every table holds exactly the identities the chain's pipeline makes
//! of what reached its raw topic, each once; the SendGrid and upload ids are also named here
//! by hand.

use anyhow::{Context, Result};
use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;
use tributary_ctl::loadgen::identity;
use tributary_engine::record::RawRecord;
use tributary_engine::topics::{self, CHAINS};
use tributary_engine::{testing, Source};
use tributary_tests::{
    audit_sums, fixture, hdfs, namespace_all, read_all, table_rows, urlencode, wait_accounted, wait_table, Ingest,
    Record, Service, Sink,
};

fn now_secs() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_secs() as i64
}

/// What one chain must make of the records on its raw topic: `tenant/event_id` → how many
/// distinct dedup identities carry it, and how many records are invalid.
struct Expected {
    rows: BTreeMap<String, u32>,
    invalid: u64,
    duplicates: u64,
}

/// Runs every record through the chain's own pipeline, as the service would.
fn expected(chain: &str, records: &[Record]) -> Expected {
    let settings = testing::settings();
    let now = now_secs() * 1_000_000;
    let mut keys = BTreeSet::new();
    let mut out = Expected {
        rows: BTreeMap::new(),
        invalid: 0,
        duplicates: 0,
    };
    for r in records {
        let raw = RawRecord {
            payload: r.value.as_deref().unwrap_or_default(),
            tenant: r.headers.get("tenant").map(String::as_str),
            csv_header: r.headers.get("csv-header").map(String::as_str),
        };
        let source = r
            .headers
            .get("source")
            .and_then(|s| Source::parse(s))
            .unwrap_or(Source::Json);
        match identity::process(chain, &settings, source, &raw, now) {
            Err(e) => {
                out.invalid += 1;
                println!("  invalid in {chain}: {e}");
            }
            Ok(enc) if !keys.insert(enc.key) => out.duplicates += 1,
            Ok(enc) => {
                let id = identity::event_id_of(&enc.value).expect("a clean value has an event_id");
                *out.rows.entry(format!("{}/{id}", enc.tenant_id)).or_default() += 1;
            }
        }
    }
    out
}

/// A SendGrid Event Webhook batch: `n` events with ids `sg-<i>`, cycling through the kinds
/// that reach each chain, and one event whose address is not one.
fn sendgrid_batch(n: usize, t: i64) -> String {
    let mut events: Vec<serde_json::Value> = (0..n)
        .map(|i| {
            let email = format!("sg{i}@example.com");
            let mut e = serde_json::json!({
                "email": email, "timestamp": t - i as i64, "sg_event_id": format!("sg-{i}"),
                "sg_message_id": format!("msg-{}.filter0001", i / 3), "category": ["news"],
            });
            let o = e.as_object_mut().unwrap();
            let kind = match i % 7 {
                0 => "delivered",
                1 => "open",
                2 => {
                    o.insert("type".into(), "bounce".into());
                    o.insert("status".into(), "5.1.1".into());
                    o.insert("reason".into(), "550 5.1.1 The email account does not exist".into());
                    "bounce"
                }
                3 => "spamreport",
                4 => "unsubscribe",
                5 => {
                    o.insert("asm_group_id".into(), 42.into());
                    "group_unsubscribe"
                }
                _ => {
                    o.insert("asm_group_id".into(), 42.into());
                    "group_resubscribe"
                }
            };
            o.insert("event".into(), kind.into());
            e
        })
        .collect();
    events.push(serde_json::json!({
        "email": "not-an-address", "timestamp": t, "event": "delivered", "sg_event_id": "sg-bad",
        "sg_message_id": "msg-bad.filter0001",
    }));
    serde_json::Value::Array(events).to_string()
}

#[test]
fn webhooks_and_uploads_reach_the_lake_exactly_once() -> Result<()> {
    let ns = namespace_all(2)?;
    let lake = format!("{}/gateway-{ns}", hdfs());
    let mut services = CHAINS
        .iter()
        .map(|c| Service::start(c, &ns, "0", &[]))
        .collect::<Result<Vec<_>>>()?;
    for s in &mut services {
        s.wait_ready(Duration::from_secs(90))?;
    }
    let mut sink = Sink::start(&ns, &lake, &CHAINS.join(","), &[])?;
    let gw = Ingest::start(&ns, &[])?;
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    let client = reqwest::Client::new();
    let post = |path: &str, ct: &str, body: String| -> Result<(u16, String)> {
        let req = client
            .post(gw.url(path))
            .header("content-type", ct)
            .bearer_auth(if path.contains("/globex/") {
                "globex-local-token"
            } else {
                "acme-local-token"
            })
            .body(body);
        rt.block_on(async move {
            let resp = req.send().await?;
            Ok((resp.status().as_u16(), resp.text().await?))
        })
    };
    let json = "application/json";
    let form = "application/x-www-form-urlencoded";
    let t = now_secs();

    // SendGrid, and the same batch again as SendGrid retries it after a timeout.
    let batch = sendgrid_batch(35, t);
    for _ in 0..2 {
        let (s, b) = post("/v1/tenants/acme/webhooks/sendgrid", json, batch.clone())?;
        anyhow::ensure!(s == 200, "sendgrid: {s} {b}");
    }
    // The providers' documented payloads, one or two of each.
    let documented = [
        ("mailgun", json, fixture("mailgun", "failed_permanent.json")),
        ("mailgun", json, fixture("mailgun", "unsubscribed.json")),
        ("ses", "text/plain", fixture("ses", "bounce_two_recipients.json")),
        ("ses", "text/plain", fixture("ses", "delivery.json")),
        ("postmark", json, fixture("postmark", "bounce.json")),
        (
            "postmark",
            json,
            fixture("postmark", "subscription_change_reactivation.json"),
        ),
        ("mailchimp", form, fixture("mailchimp", "subscribe.form")),
        (
            "mandrill",
            form,
            format!(
                "mandrill_events={}",
                urlencode(&format!(
                    "[{},{}]",
                    fixture("mandrill", "hard_bounce.json"),
                    fixture("mandrill", "unsub.json")
                ))
            ),
        ),
    ];
    for (provider, ct, body) in documented {
        let (s, b) = post(&format!("/v1/tenants/acme/webhooks/{provider}"), ct, body)?;
        anyhow::ensure!(s == 200, "{provider}: {s} {b}");
    }
    // A CSV upload of profiles: line 4 has a column too few (the gateway rejects it), line 5
    // an address that is none (the chain dead-letters it); and a JSON-lines upload of opt-outs.
    let mut csv = String::from("event_id,email,first_name,user_id,event_time\n");
    for i in 0..20 {
        if i == 2 {
            csv.push_str("up-2,broken-row@example.com,NoUserId\n");
        } else if i == 3 {
            csv.push_str(&format!("up-3,not-an-address,Bad,u3,{t}\n"));
        } else {
            csv.push_str(&format!("up-{i},Person{i}@Example.COM,P{i},u{i},{t}\n"));
        }
    }
    let (s, b) = post("/v1/tenants/globex/uploads/users", "text/csv", csv)?;
    anyhow::ensure!(s == 200, "csv upload: {s} {b}");
    let answer: serde_json::Value = serde_json::from_str(&b)?;
    assert_eq!(answer["accepted"], 19, "{answer}");
    assert_eq!(answer["rejected"][0]["line"], 4, "{answer}");
    let jsonl: String = (0..10)
        .map(|i| format!("{{\"event_id\":\"opt-{i}\",\"email\":\"opt{i}@example.net\",\"list_id\":\"weekly\",\"event_time\":{t}}}\n"))
        .collect();
    let (s, b) = post("/v1/tenants/globex/uploads/unsubscribes", "application/x-ndjson", jsonl)?;
    anyhow::ensure!(s == 200, "jsonl upload: {s} {b}");

    // What each chain must make of its raw topic, from the chain's own pipeline.
    let mut want = BTreeMap::new();
    for chain in CHAINS {
        let raw = read_all(&topics::namespaced(&ns, &topics::raw(chain)))?;
        let exp = expected(chain, &raw);
        println!(
            "{chain}: {} raw records, {} clean identities, {} invalid, {} duplicates",
            raw.len(),
            exp.rows.values().sum::<u32>(),
            exp.invalid,
            exp.duplicates
        );
        want.insert(chain, (raw.len() as u64, exp));
    }
    // The ids named here by hand are among them.
    let has = |chain: &str, id: &str| want[chain].1.rows.contains_key(id);
    for i in 0..35 {
        let chains: &[&str] = match i % 7 {
            0 | 1 => &["mailings"],
            2 | 3 => &["mailings", "blocklists"],
            4 | 5 => &["mailings", "unsubscribes"],
            _ => &["subscriptions"],
        };
        for c in chains {
            assert!(has(c, &format!("acme/sg-{i}")), "{c} lacks acme/sg-{i}");
        }
    }
    for i in (0..20).filter(|i| *i != 2 && *i != 3) {
        assert!(has("users", &format!("globex/up-{i}")), "users lacks globex/up-{i}");
    }
    for i in 0..10 {
        assert!(has("unsubscribes", &format!("globex/opt-{i}")));
    }
    assert!(want["mailings"].1.invalid >= 1 && want["users"].1.invalid >= 1);
    assert!(want["mailings"].1.duplicates >= 20, "the retried batch is duplicates");

    for chain in CHAINS {
        let (n, exp) = &want[chain];
        let audit = wait_accounted(
            &topics::namespaced(&ns, &topics::audit(chain)),
            *n,
            Duration::from_secs(120),
        )?;
        let audit_now = audit_sums(&topics::namespaced(&ns, &topics::audit(chain)))?;
        assert_eq!(audit_now.received, *n, "{chain}: audit received");
        assert_eq!(audit.dlq, exp.invalid, "{chain}: dead-lettered");
        assert_eq!(audit.duplicate, exp.duplicates, "{chain}: duplicates");
        let clean: u64 = exp.rows.values().map(|v| *v as u64).sum();
        assert_eq!(audit.clean, clean, "{chain}: clean");
        let rows = wait_table(&lake, chain, clean as usize, Duration::from_secs(120))
            .with_context(|| format!("{chain} table"))?;
        assert_eq!(
            &rows, &exp.rows,
            "{chain}: the table holds exactly the expected rows, once each"
        );
        sink.check_alive()?;
    }
    // Nothing more arrives later: the tables stay as they are after another flush interval.
    std::thread::sleep(Duration::from_secs(2));
    for chain in CHAINS {
        assert_eq!(table_rows(&lake, chain)?, want[chain].1.rows, "{chain} after a while");
    }
    sink.stop()?;
    for mut s in services {
        s.stop()?;
    }
    Ok(())
}
