//! Postmark in the load generator: one webhook body. Identity: `<ID>:<type>` (bounces and
//! spam complaints) or `<MessageID>:<type>:<recipient>[:<time>]`.
//!
//! Compiled into `tributary loadgen` (services/ctl/src/loadgen/formats.rs) by
//! `tributary_engine::provider_modules!(loadgen, ..)` as a child module of `formats`: `super` is
//! that module (`Ctx`, `Built`, `Identity` and the shared helpers). Every provider's loadgen.rs
//! has the same items: `CHAINS`, `mix_weight`, `build`, `malformed` and (for the tests)
//! `webhook_body`.

use super::{civil, format_rfc3339, from_json, Built, Ctx, Identity, AGENTS, CAMPAIGNS, URLS};
use rand::Rng;
use serde_json::{json, Map, Value};
use tributary_engine::chains::{BLOCKLISTS, MAILINGS, SUBSCRIPTIONS, UNSUBSCRIBES};

/// The chains that read this provider's events: those `tributary loadgen` makes them for.
pub(super) const CHAINS: &[&str] = &[MAILINGS.name, UNSUBSCRIBES.name, BLOCKLISTS.name, SUBSCRIPTIONS.name];

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

fn postmark_time(t: i64, frac: u32) -> String {
    let (y, m, d, h, mi, s) = civil(t);
    format!("{y:04}-{m:02}-{d:02}T{h:02}:{mi:02}:{s:02}.{frac:07}Z")
}

/// With an offset of +01:00, as Postmark writes `ChangedAt`.
fn postmark_offset_time(t: i64, micros: u32) -> String {
    let (y, m, d, h, mi, s) = civil(t + 3600);
    format!("{y:04}-{m:02}-{d:02}T{h:02}:{mi:02}:{s:02}.{micros:06}+01:00")
}

fn event(cx: &mut Ctx<'_>) -> Built {
    let kinds: &[&str] = match cx.chain {
        "mailings" => &[
            "Delivery",
            "Delivery",
            "Delivery",
            "Open",
            "Open",
            "Click",
            "Bounce:HardBounce",
            "Bounce:SoftBounce",
            "Bounce:Transient",
            "SpamComplaint",
            "SubscriptionChange:ManualSuppression",
        ],
        "blocklists" => &[
            "Bounce:HardBounce",
            "Bounce:HardBounce",
            "Bounce:BadEmailAddress",
            "SpamComplaint",
            "SubscriptionChange:HardBounce",
            "SubscriptionChange:SpamComplaint",
        ],
        "unsubscribes" => &["SubscriptionChange:ManualSuppression"],
        _ => &["SubscriptionChange:Reactivate"],
    };
    let kind = cx.pick(kinds);
    let (record_type, sub) = kind.split_once(':').unwrap_or((kind, ""));
    let email = cx.email(true);
    let message_id = cx.uuid();
    let mut o = Map::new();
    o.insert("RecordType".into(), json!(record_type));
    o.insert("ServerID".into(), json!(23));
    let bounce_like = matches!(record_type, "Bounce" | "SpamComplaint");
    let time = if record_type == "SubscriptionChange" {
        postmark_offset_time(cx.t, cx.rng.random_range(0..1_000_000))
    } else if cx.chance(0.5) {
        postmark_time(cx.t, cx.rng.random_range(0..10_000_000))
    } else {
        format_rfc3339(cx.t)
    };
    let time_key = match record_type {
        "Bounce" | "SpamComplaint" => "BouncedAt",
        "Delivery" => "DeliveredAt",
        "SubscriptionChange" => "ChangedAt",
        _ => "ReceivedAt",
    };
    let stream = match record_type {
        "SubscriptionChange" => cx.pick(&["broadcast", "newsletter", "outbound"]),
        _ => "outbound",
    };
    o.insert("MessageStream".into(), json!(stream));
    o.insert("MessageID".into(), json!(message_id));
    if cx.chance(0.7) {
        o.insert("Tag".into(), json!(cx.pick(CAMPAIGNS)));
    }
    o.insert("Metadata".into(), json!({"customer": format!("c{}", cx.person % 977)}));
    let bounce_id: u64 = cx.rng.random_range(1_000_000_000_000_000..9_000_000_000_000_000_000);
    if let Some(e) = &email {
        o.insert((if bounce_like { "Email" } else { "Recipient" }).into(), json!(e));
    }
    o.insert(time_key.into(), json!(time));
    let ip = cx.ip();
    let agent = cx.pick(AGENTS);
    let extra = match (record_type, sub) {
        ("Delivery", _) => json!({"Details": "smtp;250 2.0.0 OK 1764000000 q7si123"}),
        ("Bounce", t) | ("SpamComplaint", t) => {
            let t = if record_type == "SpamComplaint" {
                "SpamComplaint"
            } else {
                t
            };
            let (code, name, desc) = match t {
                "HardBounce" => (1, "Hard bounce", "The server was unable to deliver your message (ex: unknown user, mailbox not found)."),
                "SoftBounce" => (4096, "Soft bounce", "Unable to temporarily deliver this email."),
                "Transient" => (2, "Message delayed", "The server could not temporarily deliver your message (ex: Message is delayed due to network troubles)."),
                "BadEmailAddress" => (100000, "Invalid email address", "The address is not a valid email address."),
                _ => (512, "Spam complaint", "The subscriber explicitly marked this message as spam."),
            };
            json!({"ID": bounce_id, "Type": t, "TypeCode": code, "Name": name, "Description": desc,
                "Details": "smtp;550 5.1.1 The email account that you tried to reach does not exist.",
                "From": "news@example.com", "DumpAvailable": true, "Inactive": t != "Transient",
                "CanActivate": true, "Subject": "Your weekly digest"})
        }
        ("Open", _) => {
            json!({"FirstOpen": cx.chance(0.6), "Platform": "WebMail", "ReadSeconds": cx.rng.random_range(0..60),
            "UserAgent": agent, "Geo": {"IP": ip, "City": "Novi Sad", "CountryISOCode": "RS"}})
        }
        ("Click", _) => json!({"ClickLocation": "HTML", "Platform": "Desktop", "OriginalLink": cx.pick(URLS),
            "UserAgent": agent, "Geo": {"IP": ip}}),
        (_, "Reactivate") => json!({"Origin": cx.pick(&["Recipient", "Customer", "Admin"]), "SuppressSending": false,
            "SuppressionReason": null}),
        (_, reason) => {
            json!({"Origin": match reason { "ManualSuppression" => cx.pick(&["Recipient", "Recipient", "Customer"]), _ => "Recipient" },
            "SuppressSending": true, "SuppressionReason": reason})
        }
    };
    if let Value::Object(m) = extra {
        o.extend(m);
    }
    let id = if bounce_like {
        format!("{bounce_id}:{record_type}")
    } else {
        let mut id = format!("{message_id}:{record_type}");
        if let Some(e) = &email {
            id.push(':');
            id.push_str(&e.to_lowercase());
        }
        if matches!(record_type, "Open" | "Click" | "SubscriptionChange") {
            id.push(':');
            id.push_str(&time);
        }
        id
    };
    from_json(Value::Object(o), email, Identity::Known(id))
}
