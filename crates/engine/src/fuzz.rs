//! Fuzzing of the chains' parsers with proptest: arbitrary bytes, JSON-ish and form-ish text
//! built from the keys and words the ESP readers look for, and documented fixtures with a few
//! values replaced. Shared by every chain's tests (feature `fuzz`); only panics matter.

use crate::chain::{self, Chain};
use crate::record::RawRecord;
use crate::testing::{settings, NOW};
use proptest::prelude::*;

pub const SOURCES: &[&str] = &crate::record::Source::NAMES;

/// Runs a chain's whole pipeline on raw bytes; only a panic matters.
pub fn process_bytes<C: Chain>(source: &str, payload: &[u8]) {
    let raw = RawRecord {
        payload,
        tenant: Some("acme"),
        csv_header: None,
    };
    let _ = chain::process::<C>(&settings(), Some(source), &raw, NOW);
}

/// Keys and values the readers look for, so that generated payloads reach deep into them.
pub const KEYS: &[&str] = &[
    "event",
    "email",
    "timestamp",
    "sg_event_id",
    "sg_message_id",
    "smtp-id",
    "type",
    "status",
    "reason",
    "category",
    "asm_group_id",
    "ip",
    "url",
    "useragent",
    "event-data",
    "recipient",
    "severity",
    "id",
    "message",
    "headers",
    "message-id",
    "to",
    "delivery-status",
    "code",
    "tags",
    "campaigns",
    "Type",
    "Message",
    "eventType",
    "notificationType",
    "mail",
    "messageId",
    "destination",
    "bounce",
    "bounceType",
    "bounceSubType",
    "bouncedRecipients",
    "emailAddress",
    "diagnosticCode",
    "complaint",
    "complainedRecipients",
    "complaintSubType",
    "delivery",
    "recipients",
    "deliveryDelay",
    "delayedRecipients",
    "open",
    "click",
    "failure",
    "subscription",
    "newTopicPreferences",
    "oldTopicPreferences",
    "unsubscribeAll",
    "topicSubscriptionStatus",
    "topicName",
    "subscriptionStatus",
    "contactList",
    "detail-type",
    "detail",
    "RecordType",
    "Email",
    "Recipient",
    "ID",
    "MessageID",
    "BouncedAt",
    "DeliveredAt",
    "ReceivedAt",
    "ChangedAt",
    "SuppressSending",
    "SuppressionReason",
    "MessageStream",
    "Origin",
    "Tag",
    "Geo",
    "IP",
    "data",
    "fired_at",
    "list_id",
    "merges",
    "new_email",
    "old_email",
    "msg",
    "_id",
    "ts",
    "reject",
    "action",
    "entry",
    "smtp_events",
    "diag",
    "0",
    "tenant_id",
    "event_time",
    "event_id",
    "event_type",
    "message_id",
];
pub const WORDS: &[&str] = &[
    "bounce",
    "blocked",
    "open",
    "click",
    "delivered",
    "processed",
    "dropped",
    "spamreport",
    "unsubscribe",
    "group_unsubscribe",
    "group_resubscribe",
    "failed",
    "opened",
    "clicked",
    "complained",
    "unsubscribed",
    "rejected",
    "Bounce",
    "Complaint",
    "Delivery",
    "Send",
    "Open",
    "Click",
    "Subscription",
    "DeliveryDelay",
    "Rendering Failure",
    "SpamComplaint",
    "SubscriptionChange",
    "subscribe",
    "profile",
    "upemail",
    "cleaned",
    "hard_bounce",
    "soft_bounce",
    "spam",
    "unsub",
    "deferral",
    "blacklist",
    "whitelist",
    "add",
    "remove",
    "change",
    "Permanent",
    "Transient",
    "Suppressed",
    "OnAccountSuppressionList",
    "HardBounce",
    "SoftBounce",
    "ManualSuppression",
    "temporary",
    "permanent",
    "suppress-bounce",
    "hard",
    "abuse",
    "hard-bounce",
    "OptOut",
    "OptIn",
    "Notification",
    "true",
    "false",
    "a@b.com",
    "Ann <a@b.com>",
    "x@@y",
    "2024-01-01T00:00:00Z",
    "2009-03-26 21:35:57",
    "1700000000",
    "1700000000.5",
    "acme",
    "",
];

pub fn json_value() -> impl Strategy<Value = serde_json::Value> {
    use serde_json::Value as J;
    let leaf = prop_oneof![
        Just(J::Null),
        any::<bool>().prop_map(J::from),
        any::<i64>().prop_map(J::from),
        any::<f64>().prop_map(|f| serde_json::Number::from_f64(f).map_or(J::Null, J::Number)),
        prop::sample::select(WORDS).prop_map(J::from),
        ".{0,16}".prop_map(J::from),
    ];
    leaf.prop_recursive(5, 96, 8, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(J::Array),
            prop::collection::vec((prop::sample::select(KEYS), inner), 0..10)
                .prop_map(|kv| J::Object(kv.into_iter().map(|(k, v)| (k.to_owned(), v)).collect())),
        ]
    })
}

/// JSON-ish text: generated objects, the same inside an SNS envelope or EventBridge event,
/// and random edits of their text.
pub fn json_ish() -> impl Strategy<Value = String> {
    prop_oneof![
        json_value().prop_map(|v| v.to_string()),
        json_value().prop_map(|v| serde_json::json!({"Type": "Notification", "Message": v.to_string()}).to_string()),
        json_value().prop_map(|v| serde_json::json!({"detail-type": "x", "detail": v}).to_string()),
        (json_value(), any::<prop::sample::Index>(), ".{0,3}").prop_map(|(v, at, junk)| {
            let s = v.to_string();
            let mut cut = at.index(s.len() + 1);
            while !s.is_char_boundary(cut) {
                cut -= 1;
            }
            format!("{}{junk}{}", &s[..cut], &s[cut..])
        }),
    ]
}

/// Form-ish text: `key=value` pairs with bracketed keys and percent escapes, or any mix of
/// the characters that matter to the form reader.
pub fn form_ish() -> impl Strategy<Value = String> {
    let key = prop_oneof![
        prop::sample::select(
            &[
                "type",
                "fired_at",
                "data[email]",
                "data[list_id]",
                "data[merges][FNAME]",
                "data[merges]",
                "data[merges][ADDRESS][city]",
                "data[reason]",
                "data[new_email]",
                "data[old_email]",
                "data",
                "data[",
                "data]]",
                "[x]",
                "data%5Bemail%5D",
            ][..]
        )
        .prop_map(str::to_owned),
        "[a-z\\[\\]%]{0,12}",
    ];
    let value = prop_oneof![prop::sample::select(WORDS).prop_map(str::to_owned), "[ -~]{0,16}"];
    prop_oneof![
        prop::collection::vec((key, value), 0..10).prop_map(|kv| {
            kv.into_iter()
                .map(|(k, v)| format!("{k}={v}"))
                .collect::<Vec<_>>()
                .join("&")
        }),
        "[a-z=&%+0-9A-F\\[\\]{}\" ]{0,80}",
    ]
}

/// One step of a path into a JSON value.
#[derive(Debug, Clone)]
pub enum Seg {
    Key(String),
    At(usize),
}

fn all_paths(v: &serde_json::Value, here: &mut Vec<Seg>, out: &mut Vec<Vec<Seg>>) {
    out.push(here.clone());
    match v {
        serde_json::Value::Object(m) => {
            for (k, v) in m {
                here.push(Seg::Key(k.clone()));
                all_paths(v, here, out);
                here.pop();
            }
        }
        serde_json::Value::Array(a) => {
            for (i, v) in a.iter().enumerate() {
                here.push(Seg::At(i));
                all_paths(v, here, out);
                here.pop();
            }
        }
        _ => {}
    }
}

fn at_mut<'a>(mut v: &'a mut serde_json::Value, path: &[Seg]) -> Option<&'a mut serde_json::Value> {
    for seg in path {
        v = match (seg, v) {
            (Seg::Key(k), serde_json::Value::Object(m)) => m.get_mut(k)?,
            (Seg::At(i), serde_json::Value::Array(a)) => a.get_mut(*i)?,
            _ => return None,
        };
    }
    Some(v)
}

/// Replaces the values at a few paths of a JSON payload (inside an SNS `Message` too).
fn mutate_json(payload: &str, edits: &[(prop::sample::Index, serde_json::Value)]) -> String {
    let Ok(mut v) = serde_json::from_str::<serde_json::Value>(payload) else {
        return payload.to_owned();
    };
    let inner = v.get("Message").and_then(|m| m.as_str()).map(str::to_owned);
    let mut target = match &inner {
        Some(m) => serde_json::from_str(m).unwrap_or(serde_json::Value::Null),
        None => v.clone(),
    };
    for (at, value) in edits {
        let mut paths = Vec::new();
        all_paths(&target, &mut Vec::new(), &mut paths);
        let path = at.get(&paths).clone();
        if let Some(slot) = at_mut(&mut target, &path) {
            *slot = value.clone();
        }
    }
    match inner {
        Some(_) => {
            v["Message"] = serde_json::Value::String(target.to_string());
            v.to_string()
        }
        None => target.to_string(),
    }
}

/// Replaces or drops a few `key=value` pairs of a form body.
fn mutate_form(payload: &str, edits: &[(prop::sample::Index, serde_json::Value)]) -> String {
    let mut pairs: Vec<String> = payload.trim().split('&').map(str::to_owned).collect();
    for (at, value) in edits {
        if pairs.is_empty() {
            break;
        }
        let i = at.index(pairs.len());
        let key = pairs[i].split('=').next().unwrap_or("").to_owned();
        match value {
            serde_json::Value::Null => {
                pairs.remove(i);
            }
            serde_json::Value::String(s) => pairs[i] = format!("{key}={s}"),
            other => pairs[i] = format!("{key}={other}"),
        }
    }
    pairs.join("&")
}

/// One of `fixtures` (source, payload) with a few of its values replaced.
pub fn mutated_fixture(
    fixtures: &'static [(&'static str, &'static str)],
) -> impl Strategy<Value = (&'static str, String)> {
    let edit = (
        any::<prop::sample::Index>(),
        prop_oneof![
            3 => prop::sample::select(WORDS).prop_map(serde_json::Value::from),
            1 => json_value(),
            1 => Just(serde_json::Value::Null),
        ],
    );
    (prop::sample::select(fixtures), prop::collection::vec(edit, 1..4)).prop_map(|((source, payload), edits)| {
        let text = if source == "mailchimp" {
            mutate_form(payload, &edits)
        } else {
            mutate_json(payload, &edits)
        };
        (source, text)
    })
}
