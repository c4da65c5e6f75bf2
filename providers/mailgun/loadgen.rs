//! Mailgun in the load generator: one webhook body (`signature` and `event-data`), or
//! `event-data` alone. Identity: `<id>:<timestamp>`.
//!
//! Compiled into `tributary loadgen` (services/ctl/src/loadgen/formats.rs) by
//! `tributary_engine::provider_modules!(loadgen, ..)` as a child module of `formats`: `super` is
//! that module (`Ctx`, `Built`, `Identity` and the shared helpers). Every provider's loadgen.rs
//! has the same items: `CHAINS`, `mix_weight`, `build`, `malformed` and (for the tests)
//! `webhook_body`.

use super::{civil, from_json, scalar, Built, Ctx, Identity, AGENTS, CAMPAIGNS, URLS};
use rand::Rng;
use serde_json::{json, Map, Value};
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
/// unit tests send it through the gateway's splitter).
#[cfg(test)]
pub(super) fn webhook_body(payload: &[u8]) -> Vec<u8> {
    payload.to_vec()
}

fn event(cx: &mut Ctx<'_>) -> Built {
    let kinds: &[&str] = match cx.chain {
        "mailings" => &[
            "accepted",
            "delivered",
            "delivered",
            "delivered",
            "opened",
            "opened",
            "clicked",
            "failed-permanent",
            "failed-temporary",
            "failed-suppress",
            "complained",
            "unsubscribed",
        ],
        "blocklists" => &["failed-permanent", "failed-permanent", "complained"],
        _ => &["unsubscribed"],
    };
    let kind = cx.pick(kinds);
    let email = cx.email(true);
    let id = cx.b64(22);
    let ts = json!(cx.t as f64 + f64::from(cx.rng.random_range(0..1_000_000u32)) / 1e6);
    let event = kind.split('-').next().unwrap_or(kind);
    let message_id = format!(
        "{}.1.{}@mg.example.com",
        format_compact(cx.t - 5),
        cx.hex(16).to_ascii_uppercase()
    );
    let mut headers =
        json!({"message-id": message_id, "from": "Acme News <news@mg.example.com>", "subject": "Your weekly digest"});
    let mut d = Map::new();
    d.insert("id".into(), json!(id));
    d.insert("timestamp".into(), ts.clone());
    d.insert(
        "log-level".into(),
        json!(if event == "failed" { "error" } else { "info" }),
    );
    d.insert("event".into(), json!(event));
    if let Some(e) = &email {
        d.insert("recipient".into(), json!(e));
        let domain = e.rsplit_once('@').map(|(_, d)| d).unwrap_or_default();
        d.insert("recipient-domain".into(), json!(domain));
        headers["to"] = json!(format!("{} <{e}>", cx.first()));
    }
    let tags = if cx.chance(0.5) {
        json!([cx.pick(CAMPAIGNS)])
    } else {
        json!([])
    };
    d.insert("tags".into(), tags);
    d.insert("campaigns".into(), json!([]));
    d.insert("user-variables".into(), json!({}));
    d.insert(
        "message".into(),
        json!({"headers": headers, "attachments": [], "size": cx.rng.random_range(2_000..90_000)}),
    );
    let ip = cx.ip();
    let agent = cx.pick(AGENTS);
    let extra = match kind {
        "accepted" => {
            json!({"method": "HTTP", "envelope": {"sender": "bounce@mg.example.com", "targets": email, "transport": "smtp"}})
        }
        "delivered" => json!({"envelope": {"sending-ip": "198.51.100.200", "transport": "smtp"},
            "delivery-status": {"tls": true, "mx-host": "mx.example.com", "attempt-no": 1, "description": "", "code": 250, "message": "OK"}}),
        "failed-permanent" => json!({"severity": "permanent", "reason": "bounce",
            "delivery-status": {"attempt-no": 1, "code": 550, "description": "",
                "message": "5.1.1 The email account that you tried to reach does not exist."}}),
        "failed-temporary" => json!({"severity": "temporary", "reason": "generic",
            "delivery-status": {"attempt-no": 2, "code": 452, "message": "4.2.2 The email account that you tried to reach is over quota."}}),
        "failed-suppress" => json!({"severity": "permanent", "reason": "suppress-bounce",
            "delivery-status": {"attempt-no": 1, "code": 605, "description": "Not delivering to previously bounced address", "message": ""}}),
        "opened" | "clicked" | "unsubscribed" => {
            let mut x = json!({"ip": ip, "geolocation": {"country": "US", "region": "CA", "city": "San Francisco"},
                "client-info": {"client-type": "browser", "client-os": "OS X", "device-type": "desktop", "user-agent": agent}});
            if kind == "clicked" {
                x["url"] = json!(cx.pick(URLS));
            }
            if kind == "unsubscribed" && cx.chance(0.5) {
                x["mailing-list"] = json!({"address": "news@lists.example.com", "list-id": "news", "sid": cx.b64(4)});
            }
            x
        }
        _ => json!({}),
    };
    if let Value::Object(m) = extra {
        d.extend(m);
    }
    let identity = Identity::Known(format!("{id}:{}", scalar(&ts)));
    let body = if cx.chance(0.8) {
        json!({"signature": {"timestamp": cx.t.to_string(), "token": cx.hex(50), "signature": cx.hex(64)}, "event-data": d})
    } else {
        Value::Object(d)
    };
    from_json(body, email, identity)
}

fn format_compact(t: i64) -> String {
    let (y, m, d, h, mi, s) = civil(t);
    format!("{y:04}{m:02}{d:02}{h:02}{mi:02}{s:02}")
}
