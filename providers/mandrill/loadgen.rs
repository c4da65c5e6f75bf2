//! Mandrill in the load generator: one element of `mandrill_events`. Identity:
//! `<_id>:<event>[:<ts>]`; rejection blacklist sync events have none (the chain hashes them).
//!
//! Compiled into `tributary loadgen` (services/ctl/src/loadgen/formats.rs) by
//! `tributary_engine::provider_modules!(loadgen, ..)` as a child module of `formats`: `super` is
//! that module (`Ctx`, `Built`, `Identity` and the shared helpers). Every provider's loadgen.rs
//! has the same items: `CHAINS`, `mix_weight`, `build`, `malformed` and (for the tests)
//! `webhook_body`.

use super::{format_naive, from_json, scalar, Built, Ctx, Identity, AGENTS, CAMPAIGNS, URLS};
use rand::Rng;
use serde_json::{json, Value};
use tributary_engine::chains::{BLOCKLISTS, MAILINGS, UNSUBSCRIBES};

/// The chains that read this provider's events: those `tributary loadgen` makes them for.
pub(super) const CHAINS: &[&str] = &[MAILINGS.name, UNSUBSCRIBES.name, BLOCKLISTS.name];

/// This provider's weight in a chain's `mix` (against json 20 and csv 10, users: 45 and 25).
pub(super) fn mix_weight(_chain: &str) -> u32 {
    12
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
/// unit tests send it through the gateway's splitter). Mandrill posts a form whose
/// `mandrill_events` field is a JSON array.
#[cfg(test)]
pub(super) fn webhook_body(payload: &[u8]) -> Vec<u8> {
    let events = format!("[{}]", String::from_utf8_lossy(payload));
    let mut f = String::from("mandrill_events=");
    for b in events.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' => f.push(b as char),
            _ => f.push_str(&format!("%{b:02X}")),
        }
    }
    f.into_bytes()
}

fn event(cx: &mut Ctx<'_>) -> Built {
    let kinds: &[&str] = match cx.chain {
        "mailings" => &[
            "send",
            "send",
            "open",
            "open",
            "click",
            "deferral",
            "hard_bounce",
            "soft_bounce",
            "spam",
            "unsub",
            "reject",
        ],
        "blocklists" => &["hard_bounce", "hard_bounce", "spam", "sync", "sync"],
        _ => &["unsub"],
    };
    let kind = cx.pick(kinds);
    let email = cx.email(true);
    if kind == "sync" {
        return mandrill_sync(cx, email);
    }
    let id = cx.hex(32);
    let ts = if matches!(kind, "open" | "click") && cx.chance(0.3) {
        json!(cx.t as f64 + f64::from(cx.rng.random_range(1..1000u32)) / 1000.0)
    } else {
        json!(cx.t)
    };
    let sent = cx.t - cx.rng.random_range(1..3600);
    let state = match kind {
        "hard_bounce" | "soft_bounce" => "bounced",
        "reject" => "rejected",
        "deferral" => "deferred",
        "spam" => "spam",
        _ => "sent",
    };
    let mut msg = json!({
        "ts": sent,
        "subject": "Your weekly digest",
        "sender": "news@example.com",
        "tags": if cx.chance(0.6) { json!([cx.pick(CAMPAIGNS)]) } else { json!([]) },
        "opens": [],
        "clicks": [],
        "state": state,
        "metadata": {"user_id": cx.person},
        "_id": id,
        "_version": cx.b64(22)
    });
    if let Some(e) = &email {
        msg["email"] = json!(e);
    }
    match kind {
        "hard_bounce" => {
            msg["bounce_description"] = json!("bad_mailbox");
            msg["diag"] = json!("smtp;550 5.1.1 The email account that you tried to reach does not exist.");
        }
        "soft_bounce" => {
            msg["bounce_description"] = json!("mailbox_full");
            msg["diag"] = json!("smtp;552 5.2.2 Over quota");
        }
        "deferral" => {
            msg["smtp_events"] = json!([{"ts": cx.t, "type": "deferred", "diag": "451 4.3.5 Temporarily unavailable, try again later.",
                "source_ip": "127.0.0.1", "destination_ip": "203.0.113.7", "size": 0}]);
        }
        _ => {}
    }
    let mut o = json!({"event": kind, "msg": msg, "_id": id, "ts": ts});
    if matches!(kind, "open" | "click") {
        o["ip"] = json!(cx.ip());
        o["user_agent"] = json!(cx.pick(AGENTS));
        o["location"] = json!({"country_short": "US", "country": "United States", "city": "Oklahoma City"});
        if kind == "click" {
            o["url"] = json!(cx.pick(URLS));
        }
    }
    let mut identity = format!("{id}:{kind}");
    if matches!(kind, "open" | "click" | "deferral") {
        identity.push(':');
        identity.push_str(&scalar(&ts));
    }
    from_json(o, email, Identity::Known(identity))
}

/// A rejection blacklist sync event: no identity of its own.
fn mandrill_sync(cx: &mut Ctx<'_>, email: Option<String>) -> Built {
    let ty = cx.pick(&["blacklist", "blacklist", "denylist"]);
    let action = cx.pick(&["add", "add", "change", "remove"]);
    let reason = cx.pick(&["hard-bounce", "hard-bounce", "spam", "custom"]);
    let expires = if reason == "hard-bounce" && cx.chance(0.5) {
        json!(format_naive(cx.t + 30 * 86_400))
    } else {
        Value::Null
    };
    let mut reject = json!({
        "reason": reason,
        "detail": if reason == "hard-bounce" { " smtp;550 5.1.1 The email account that you tried to reach does not exist." } else { "" },
        "last_event_at": format_naive(cx.t),
        "created_at": format_naive(cx.t - cx.rng.random_range(0..30 * 86_400)),
        "expires_at": expires,
        "expired": false,
        "subaccount": null,
        "sender": null
    });
    if let Some(e) = &email {
        reject["email"] = json!(e);
    }
    let o = json!({"type": ty, "action": action, "reject": reject, "ts": cx.t});
    from_json(o, email, Identity::Hashed)
}
