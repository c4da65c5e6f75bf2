//! The suppression view against the reference model: DESIGN's rules read literally over the
//! *set* of clean events of each address (decoded from the clean topics into the read side's
//! own [`Event`] type), compared with what `serve`, started fresh over the run's lake and
//! topics, answers in bulk for every address the run touched, for every list and for none.
//! The model itself is `tributary_view::model` (the one `tributary-view`'s tests use too).

use crate::{read_all, registry, topic, Serve};
use anyhow::{Context, Result};
use serde_json::json;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use tributary_engine::topics::{self, CHAINS};
use tributary_view::event::{self, Kind, Sha};
use tributary_view::Event;

/// The reference model, one copy shared with `tributary-view`'s own property test.
pub use tributary_view::model::{suppressed, TenantEvents};

/// Every clean event of a namespace, by tenant.
pub fn clean_events(ns: &str) -> Result<BTreeMap<String, TenantEvents>> {
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    let mut schemas: HashMap<u32, apache_avro::Schema> = HashMap::new();
    let mut out: BTreeMap<String, TenantEvents> = BTreeMap::new();
    for c in CHAINS {
        for r in read_all(&topic(ns, topics::clean(c)))? {
            let payload = r.value.as_deref().unwrap_or_default();
            let (id, _) = tributary_engine::avro::split_wire(payload)
                .with_context(|| format!("{c}: a clean record not in the wire format"))?;
            let schema = match schemas.entry(id) {
                std::collections::hash_map::Entry::Occupied(o) => o.into_mut(),
                std::collections::hash_map::Entry::Vacant(v) => {
                    let text = rt.block_on(tributary_lake::registry_schema(&registry(), id))?;
                    v.insert(apache_avro::Schema::parse_str(&text)?)
                }
            };
            let e = event::from_avro(c, schema, payload)
                .map_err(|e| anyhow::anyhow!("{c} {}/{}: {e}", r.partition, r.offset))?;
            out.entry(e.tenant.clone()).or_default().add(e);
        }
    }
    Ok(out)
}

/// What the comparison found.
#[derive(Debug, Default, Clone, serde::Serialize, serde::Deserialize)]
pub struct ServeVerdict {
    pub addresses: u64,
    /// Answers compared (address × list-or-none).
    pub answers: u64,
    pub suppressed: u64,
    pub wrong: u64,
    pub violations: Vec<String>,
}

/// How many of a tenant's lists each address is asked about beyond the lists its own events
/// name (drawn from the address's hash, so every list is asked about across the addresses).
pub const OTHER_LISTS_PER_ADDRESS: usize = 2;

/// The lists an address is asked about: no list, every list its own events name, and
/// [`OTHER_LISTS_PER_ADDRESS`] more of its tenant's lists. For a list the address's events do
/// not name, the rules read the same (a block, or an unsubscribe from every list), so asking
/// about every one of a tenant's lists (60-odd in the load, 16 M answers a 1 M-event run, five
/// minutes of `serve`) adds no case a sample of them does not have.
pub fn lists_asked<'a>(all: &'a [&'a str], sha: &Sha, events: &'a [Event]) -> BTreeSet<Option<&'a str>> {
    let mut asked: BTreeSet<Option<&str>> = BTreeSet::from([None]);
    for e in events {
        match &e.kind {
            Kind::Subscribe { list, .. } => {
                asked.insert(Some(list.as_str()));
            }
            Kind::Unsubscribe { list: Some(l), .. } => {
                asked.insert(Some(l.as_str()));
            }
            _ => {}
        }
    }
    if !all.is_empty() {
        let h = u64::from_le_bytes(sha[..8].try_into().expect("8 bytes"));
        for i in 0..OTHER_LISTS_PER_ADDRESS.min(all.len()) {
            asked.insert(Some(all[(h as usize).wrapping_add(i * 7919) % all.len()]));
        }
    }
    asked
}

/// Asks `serve` about every address with a known address, for no list, for every list its
/// events name and for some other lists of its tenant ([`lists_asked`]), in bulk, and
/// compares with [`suppressed`].
pub fn check_serve(serve: &Serve, events: &BTreeMap<String, TenantEvents>) -> Result<ServeVerdict> {
    let mut v = ServeVerdict::default();
    let now = chrono::Utc::now().timestamp_micros();
    for (tenant, t) in events {
        let all: Vec<&str> = t.lists.iter().map(String::as_str).collect();
        // Per list (or none) the addresses asked about it.
        let mut by_list: BTreeMap<Option<&str>, Vec<(&String, &Vec<Event>)>> = BTreeMap::new();
        for (sha, (email, evs)) in &t.people {
            let Some(email) = email.as_ref() else { continue };
            v.addresses += 1;
            for l in lists_asked(&all, sha, evs) {
                by_list.entry(l).or_default().push((email, evs));
            }
        }
        let token = format!("{tenant}-local-token");
        for (list, people) in by_list {
            let mut wrong = Vec::new();
            for chunk in people.chunks(10_000) {
                let emails: Vec<&str> = chunk.iter().map(|(e, _)| e.as_str()).collect();
                let (status, body) = serve.post(
                    &format!("/v1/tenants/{tenant}/suppression/check"),
                    Some(&token),
                    &json!({"list": list, "emails": emails}),
                )?;
                anyhow::ensure!(status == 200, "serve bulk check {tenant} {list:?}: {status} {body}");
                let got: serde_json::Value = serde_json::from_str(&body)?;
                let said: BTreeSet<&str> = got["suppressed"]
                    .as_array()
                    .map(|a| a.iter().filter_map(|x| x["email"].as_str()).collect())
                    .unwrap_or_default();
                for (email, evs) in chunk {
                    let want = suppressed(t, evs, email, list, now);
                    v.answers += 1;
                    v.suppressed += u64::from(want);
                    if want != said.contains(email.as_str()) {
                        wrong.push(format!("{email}: serve {}, model {want}", !want));
                    }
                }
            }
            if !wrong.is_empty() {
                v.wrong += wrong.len() as u64;
                v.violations.push(format!(
                    "serve: {tenant}, list {list:?}: {} answers differ from the model, e.g. {}",
                    wrong.len(),
                    wrong.iter().take(5).cloned().collect::<Vec<_>>().join("; ")
                ));
            }
        }
    }
    Ok(v)
}

#[cfg(test)]
mod tests {
    use super::*;
    use tributary_view::event::{BlockAction, BlockKind, Kind};

    fn ev(email: &str, time: i64, kind: Kind) -> Event {
        Event {
            tenant: "acme".into(),
            sha: event::parse_sha(&tributary_engine::normalize::sha256_hex(email)),
            email: Some(email.into()),
            time,
            kind,
        }
    }

    fn block(email: &str, time: i64, action: BlockAction) -> Event {
        ev(
            email,
            time,
            Kind::Block {
                action,
                kind: BlockKind::Email,
                value: email.into(),
                reason: "MANUAL".into(),
                expires_at: None,
            },
        )
    }

    /// The model itself can say both answers, and ties go to the block.
    #[test]
    fn the_model_follows_the_rules() {
        let a = "ann@example.com";
        let mut t = TenantEvents::default();
        let evs = vec![block(a, 10, BlockAction::Add), block(a, 10, BlockAction::Remove)];
        for e in evs.clone() {
            t.add(e);
        }
        assert!(suppressed(&t, &evs, a, None, 100));
        let evs2 = vec![block(a, 10, BlockAction::Add), block(a, 11, BlockAction::Remove)];
        assert!(!suppressed(&t, &evs2, a, None, 100));
        let unsub = ev(
            a,
            5,
            Kind::Unsubscribe {
                list: None,
                reason: None,
            },
        );
        let sub = |time, ip: Option<&str>| {
            ev(
                a,
                time,
                Kind::Subscribe {
                    list: "news".into(),
                    consent_ip: ip.map(str::to_owned),
                    consent_at: None,
                },
            )
        };
        let mut t = TenantEvents::default();
        t.lists.insert("news".into());
        t.lists.insert("promo".into());
        assert!(suppressed(&t, &[unsub.clone(), sub(6, None)], a, Some("news"), 100));
        assert!(!suppressed(
            &t,
            &[unsub.clone(), sub(6, Some("192.0.2.1"))],
            a,
            Some("news"),
            100
        ));
        assert!(suppressed(
            &t,
            &[unsub.clone(), sub(6, Some("192.0.2.1"))],
            a,
            Some("promo"),
            100
        ));
        // Globally unsubscribed but a member of news again: not suppressed with no list.
        assert!(!suppressed(
            &t,
            &[unsub.clone(), sub(6, Some("192.0.2.1"))],
            a,
            None,
            100
        ));
        assert!(suppressed(&t, &[unsub], a, None, 100));
    }

    /// Every address is asked about no list and every list its events name, plus two more.
    #[test]
    fn lists_asked_cover_the_addresses_own_lists() {
        let a = "ann@example.com";
        let all = ["a", "b", "c", "d", "e", "f"];
        let sub = ev(
            a,
            1,
            Kind::Subscribe {
                list: "c".into(),
                consent_ip: None,
                consent_at: None,
            },
        );
        let unsub = ev(
            a,
            2,
            Kind::Unsubscribe {
                list: Some("f".into()),
                reason: None,
            },
        );
        let evs = [sub, unsub];
        let asked = lists_asked(&all, &evs[0].sha.expect("sha"), &evs);
        assert!(asked.contains(&None) && asked.contains(&Some("c")) && asked.contains(&Some("f")));
        assert!(asked.len() >= 4 && asked.len() <= 5, "{asked:?}");
        assert_eq!(lists_asked(&[], &[0; 32], &[]), BTreeSet::from([None]));
    }
}
