//! SendGrid Event Webhook in the load generator: one object of the array, as the gateway
//! publishes it. Identity: `sg_event_id`.
//!
//! Compiled into `tributary loadgen` (services/ctl/src/loadgen/formats.rs) by
//! `tributary_engine::provider_modules!(loadgen, ..)` as a child module of `formats`: `super` is
//! that module (`Ctx`, `Built`, `Identity` and the shared helpers). Every provider's loadgen.rs
//! has the same items: `CHAINS`, `mix_weight`, `build`, `malformed` and (for the tests)
//! `webhook_body`.

use super::{from_json, Built, Ctx, Identity, AGENTS, CAMPAIGNS, URLS};
use rand::Rng;
use serde_json::{json, Map, Value};
use tributary_engine::chains::{BLOCKLISTS, MAILINGS, SUBSCRIPTIONS, UNSUBSCRIBES};

/// The chains that read this provider's events: those `tributary loadgen` makes them for.
pub(super) const CHAINS: &[&str] = &[MAILINGS.name, UNSUBSCRIBES.name, BLOCKLISTS.name, SUBSCRIPTIONS.name];

/// This provider's weight in a chain's `mix` (against json 20 and csv 10, users: 45 and 25).
pub(super) fn mix_weight(chain: &str) -> u32 {
    match chain {
        "mailings" => 25,
        _ => 18,
    }
}

/// The record(s) of one event, as the gateway publishes them.
pub(super) fn build(cx: &mut Ctx<'_>) -> Vec<Built> {
    vec![event(cx)]
}

/// Makes `b` (the first record of an event) not well-formed in this provider's format.
pub(super) fn malformed(b: &mut Built) {
    // Cut short, as by a proxy's body limit.
    super::cut_short(b)
}

/// The webhook call that carries this one event: what the gateway splits back into it (the
/// unit tests send it through the gateway's splitter). SendGrid posts a JSON array.
#[cfg(test)]
pub(super) fn webhook_body(payload: &[u8]) -> Vec<u8> {
    [b"[".as_slice(), payload, b"]"].concat()
}

fn event(cx: &mut Ctx<'_>) -> Built {
    let kinds: &[&str] = match cx.chain {
        "mailings" => &[
            "processed",
            "processed",
            "delivered",
            "delivered",
            "delivered",
            "open",
            "open",
            "click",
            "deferred",
            "bounce",
            "blocked",
            "dropped",
            "spamreport",
            "unsubscribe",
            "group_unsubscribe",
        ],
        "blocklists" => &["bounce", "bounce", "spamreport"],
        "unsubscribes" => &["unsubscribe", "group_unsubscribe", "group_unsubscribe"],
        _ => &["group_resubscribe"],
    };
    let kind = cx.pick(kinds);
    let email = cx.email(true);
    let id = cx.b64(22);
    let mut o = Map::new();
    if let Some(e) = &email {
        o.insert("email".into(), json!(e));
    }
    o.insert("timestamp".into(), json!(cx.t));
    let smtp = format!(
        "<{}.{}@ismtpd-{}>",
        cx.hex(11),
        cx.hex(3),
        cx.rng.random_range(100..999)
    );
    o.insert("smtp-id".into(), json!(smtp));
    o.insert("event".into(), json!(if kind == "blocked" { "bounce" } else { kind }));
    match cx.rng.random_range(0..4) {
        0 => {}
        1 => {
            o.insert("category".into(), json!(cx.pick(CAMPAIGNS)));
        }
        2 => {
            o.insert("category".into(), json!([cx.pick(CAMPAIGNS), "newsletter"]));
        }
        _ => {
            o.insert("singlesend_id".into(), json!(cx.uuid()));
        }
    }
    o.insert("sg_event_id".into(), json!(id));
    let msg = format!(
        "{}.filterdrecv-{}-1-{}-{}.0",
        cx.b64(22),
        cx.hex(10),
        cx.hex(8).to_ascii_uppercase(),
        cx.rng.random_range(1..40)
    );
    o.insert("sg_message_id".into(), json!(msg));
    let ip = cx.ip();
    let agent = cx.pick(AGENTS);
    let extra = match kind {
        "processed" => json!({"pool": {"name": "marketing", "id": 210}}),
        "delivered" => json!({"response": "250 2.0.0 OK  1764000000 q7si123", "ip": "168.245.12.34", "tls": 1}),
        "deferred" => {
            json!({"response": "451 4.7.1 Try again later", "attempt": cx.rng.random_range(1..6).to_string()})
        }
        "bounce" => json!({"type": "bounce", "status": "5.1.1", "bounce_classification": "Invalid Address",
            "reason": "550 5.1.1 The email account that you tried to reach does not exist."}),
        "blocked" => json!({"type": "blocked", "status": "4.7.1", "bounce_classification": "Reputation",
            "reason": "421 4.7.1 Messages temporarily deferred due to user complaints"}),
        "dropped" => json!({"reason": "Bounced Address", "status": "5.0.0"}),
        "open" => json!({"useragent": agent, "ip": ip, "sg_machine_open": cx.chance(0.2)}),
        "click" => {
            json!({"useragent": agent, "ip": ip, "url": cx.pick(URLS), "url_offset": {"index": 0, "type": "html"}})
        }
        "group_unsubscribe" | "group_resubscribe" => {
            json!({"useragent": agent, "ip": ip, "url": URLS[2], "asm_group_id": cx.rng.random_range(1..30)})
        }
        _ => json!({}),
    };
    if let Value::Object(m) = extra {
        o.extend(m);
    }
    from_json(Value::Object(o), email, Identity::Known(id))
}
