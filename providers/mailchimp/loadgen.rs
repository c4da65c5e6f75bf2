//! Mailchimp audience webhooks in the load generator: the form-encoded body of one call
//! (sometimes JSON). No identity: the chain hashes the record.
//!
//! Compiled into `tributary loadgen` (services/ctl/src/loadgen/formats.rs) by
//! `tributary_engine::provider_modules!(loadgen, ..)` as a child module of `formats`: `super` is
//! that module (`Ctx`, `Built`, `Identity` and the shared helpers). Every provider's loadgen.rs
//! has the same items: `CHAINS`, `mix_weight`, `build`, `malformed` and (for the tests)
//! `webhook_body`.

use super::{email_of, format_naive, Built, Ctx, Identity};
use rand::Rng;
use serde_json::{json, Map, Value};
use tributary_engine::chains::{BLOCKLISTS, SUBSCRIPTIONS, UNSUBSCRIBES, USERS};

/// The chains that read this provider's events: those `tributary loadgen` makes them for.
pub(super) const CHAINS: &[&str] = &[USERS.name, UNSUBSCRIBES.name, BLOCKLISTS.name, SUBSCRIPTIONS.name];

/// This provider's weight in a chain's `mix` (against json 20 and csv 10, users: 45 and 25).
pub(super) fn mix_weight(chain: &str) -> u32 {
    match chain {
        "users" | "subscriptions" => 30,
        _ => 12,
    }
}

/// The record(s) of one event, as the gateway publishes them.
pub(super) fn build(cx: &mut Ctx<'_>) -> Vec<Built> {
    vec![event(cx)]
}

/// Makes `b` (the first record of an event) not well-formed in this provider's format.
pub(super) fn malformed(b: &mut Built) {
    if b.payload.first() != Some(&b'{') {
        // A Latin-1 body, as some form posts are.
        b.payload.extend_from_slice(b"&data%5Bmerges%5D%5BFNAME%5D=Ren%E9")
    } else {
        // Cut short, as by a proxy's body limit.
        super::cut_short(b)
    }
}

/// The webhook call that carries this one event: what the gateway splits back into it (the
/// unit tests send it through the gateway's splitter).
#[cfg(test)]
pub(super) fn webhook_body(payload: &[u8]) -> Vec<u8> {
    payload.to_vec()
}

fn form_encode(pairs: &[(String, String)]) -> String {
    let enc = |s: &str| -> String {
        let mut out = String::with_capacity(s.len());
        for b in s.bytes() {
            match b {
                b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => out.push(b as char),
                b' ' => out.push('+'),
                _ => out.push_str(&format!("%{b:02X}")),
            }
        }
        out
    };
    pairs
        .iter()
        .map(|(k, v)| format!("{}={}", enc(k), enc(v)))
        .collect::<Vec<_>>()
        .join("&")
}

/// `data[merges][FNAME]` pairs as nested objects.
fn form_to_json(pairs: &[(String, String)]) -> Value {
    let mut root = Map::new();
    for (k, v) in pairs {
        let path: Vec<&str> = k.split(['[', ']']).filter(|s| !s.is_empty()).collect();
        let mut cur = &mut root;
        for seg in &path[..path.len() - 1] {
            cur = cur
                .entry((*seg).to_owned())
                .or_insert_with(|| Value::Object(Map::new()))
                .as_object_mut()
                .expect("an object");
        }
        cur.insert(path[path.len() - 1].to_owned(), json!(v));
    }
    Value::Object(root)
}

fn event(cx: &mut Ctx<'_>) -> Built {
    let kinds: &[&str] = match cx.chain {
        "users" => &["subscribe", "profile", "profile", "upemail"],
        "unsubscribes" => &["unsubscribe"],
        "blocklists" => &["cleaned:hard", "cleaned:hard", "cleaned:abuse", "unsubscribe:abuse"],
        _ => &["subscribe"],
    };
    let kind = cx.pick(kinds);
    let (kind, reason) = kind.split_once(':').unwrap_or((kind, ""));
    let email = cx.email(false);
    let mut p: Vec<(String, String)> = Vec::new();
    let mut put = |k: &str, v: String| p.push((k.to_owned(), v));
    put("type", kind.to_owned());
    put("fired_at", format_naive(cx.t));
    let list_id = cx.pick(&["a6b5da1054", "3f1c9e2b77", "9e0d4c1a2b"]).to_owned();
    let member_id = format!("{:010x}", (u64::from(cx.person) * 2_654_435_761) % 0xff_ffff_ffff);
    match kind {
        "upemail" => {
            put("data[list_id]", list_id);
            put("data[new_id]", format!("{:010x}", u64::from(cx.person) * 97 + 13));
            if let Some(e) = &email {
                put("data[new_email]", e.clone());
            }
            let old = cx.other_person();
            put("data[old_email]", email_of(old));
        }
        "cleaned" => {
            put("data[list_id]", list_id);
            put("data[campaign_id]", cx.hex(10));
            put("data[reason]", reason.to_owned());
            if let Some(e) = &email {
                put("data[email]", e.clone());
            }
        }
        _ => {
            if kind == "unsubscribe" {
                let action = if cx.rng.random_bool(0.8) { "unsub" } else { "delete" };
                put("data[action]", action.to_owned());
                let why = if reason.is_empty() {
                    if cx.rng.random_bool(0.85) {
                        "manual"
                    } else {
                        "abuse"
                    }
                } else {
                    reason
                };
                put("data[reason]", why.to_owned());
            }
            put("data[id]", member_id);
            put("data[list_id]", list_id);
            if let Some(e) = &email {
                put("data[email]", e.clone());
            }
            put(
                "data[email_type]",
                (if cx.rng.random_bool(0.9) { "html" } else { "text" }).to_owned(),
            );
            if let Some(e) = &email {
                put("data[merges][EMAIL]", e.clone());
            }
            put("data[merges][FNAME]", cx.first().to_owned());
            put("data[merges][LNAME]", cx.last().to_owned());
            if cx.rng.random_bool(0.4) {
                put("data[merges][PHONE]", format!("+1 (404) 555-{:04}", cx.person % 10_000));
            }
            if cx.rng.random_bool(0.3) {
                put("data[merges][ADDRESS][addr1]", "675 Ponce de Leon Ave NE".to_owned());
                put("data[merges][ADDRESS][city]", "Atlanta".to_owned());
                put("data[merges][ADDRESS][state]", "GA".to_owned());
                put("data[merges][ADDRESS][zip]", "30308".to_owned());
                put("data[merges][ADDRESS][country]", "US".to_owned());
            }
            if cx.rng.random_bool(0.5) {
                put("data[merges][INTERESTS]", "Group1,Group2".to_owned());
            }
            let ip = format!("10.20.{}.{}", cx.person % 250, cx.person / 250 % 250);
            put("data[ip_opt]", ip.clone());
            if kind == "subscribe" {
                put("data[ip_signup]", ip);
            }
            if kind == "unsubscribe" {
                put("data[campaign_id]", cx.hex(10));
            }
        }
    }
    let as_json = !cx.faulty() && cx.chance(0.1);
    let payload = if as_json {
        form_to_json(&p).to_string().into_bytes()
    } else {
        form_encode(&p).into_bytes()
    };
    Built {
        payload,
        csv_header: None,
        email,
        identity: Identity::Hashed,
    }
}
