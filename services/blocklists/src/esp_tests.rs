//! ESP source formats: every fixture (modelled on the providers' documented examples) through
//! the whole pipeline, decoded with the schema; and no input makes a reader panic.

use super::Blocklists;
use apache_avro::types::Value;
use proptest::prelude::*;
use tributary_engine::testing::{field, run, settings, NOW};
use tributary_engine::{chain, ErrorClass, RawRecord};

macro_rules! fixture {
    ($provider:literal, $name:literal) => {
        include_str!(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/fixtures/",
            $provider,
            "/",
            $name
        ))
    };
}

fn text(rec: &[(String, Value)], name: &str) -> Option<String> {
    match field(rec, name) {
        Value::String(s) | Value::Enum(_, s) => Some(s.clone()),
        Value::Union(_, v) => match v.as_ref() {
            Value::String(s) => Some(s.clone()),
            _ => None,
        },
        _ => None,
    }
}

fn micros(rec: &[(String, Value)], name: &str) -> Option<i64> {
    match field(rec, name) {
        Value::TimestampMicros(t) | Value::Long(t) => Some(*t),
        Value::Union(_, v) => match v.as_ref() {
            Value::TimestampMicros(t) | Value::Long(t) => Some(*t),
            _ => None,
        },
        _ => None,
    }
}

/// Runs one fixture and checks its event time and the listed fields (`None`: null).
fn check(source: &str, payload: &str, time: i64, want: &[(&str, Option<&str>)]) -> Vec<(String, Value)> {
    let rec = run::<Blocklists>(source, payload, Some("acme")).unwrap_or_else(|e| panic!("{source}: {e}\n{payload}"));
    assert_eq!(text(&rec, "tenant_id").as_deref(), Some("acme"));
    assert_eq!(text(&rec, "source").as_deref(), Some(source));
    assert_eq!(
        micros(&rec, "event_time"),
        Some(time),
        "{source} event_time of {payload}"
    );
    for (name, value) in want {
        assert_eq!(
            text(&rec, name).as_deref(),
            *value,
            "{source} field {name} of {payload}"
        );
    }
    rec
}

fn refused(source: &str, payload: &str, class: ErrorClass, reason: &str) {
    let e = run::<Blocklists>(source, payload, Some("acme")).unwrap_err();
    assert_eq!(e.class, class, "{e}");
    assert!(e.reason.contains(reason), "{e}");
}

fn block(
    source: &str,
    payload: &str,
    time: i64,
    email: &str,
    reason: &str,
    event_id: Option<&str>,
) -> Vec<(String, Value)> {
    let rec = check(
        source,
        payload,
        time,
        &[
            ("action", Some("ADD")),
            ("kind", Some("EMAIL")),
            ("value", Some(email)),
            ("email", Some(email)),
            ("reason", Some(reason)),
        ],
    );
    match event_id {
        Some(id) => assert_eq!(text(&rec, "event_id").as_deref(), Some(id)),
        None => assert!(text(&rec, "event_id").unwrap().starts_with('h'), "derived identity"),
    }
    rec
}

fn not_a_block(source: &str, payload: &str, reason: &str) {
    refused(source, payload, ErrorClass::InvalidValue, reason);
}

#[test]
fn sendgrid_events() {
    let t = 1_513_299_569_000_000;
    let rec = block(
        "sendgrid",
        fixture!("sendgrid", "bounce.json"),
        t,
        "example@test.com",
        "HARD_BOUNCE",
        Some("6g4ZI7SA-xmRDv57GoPIPw=="),
    );
    assert_eq!(micros(&rec, "expires_at"), None);
    block(
        "sendgrid",
        fixture!("sendgrid", "spamreport.json"),
        t,
        "example@test.com",
        "SPAM_COMPLAINT",
        Some("37nvH5QBz858KGVYCM4uOA=="),
    );
    not_a_block(
        "sendgrid",
        fixture!("sendgrid", "blocked.json"),
        "soft bounce: not a suppression (sendgrid event 'bounce')",
    );
    not_a_block(
        "sendgrid",
        fixture!("sendgrid", "open.json"),
        "sendgrid event 'open' does not belong to the blocklists chain",
    );
}

#[test]
fn mailgun_events() {
    block(
        "mailgun",
        fixture!("mailgun", "failed_permanent.json"),
        1_534_110_422_389_832,
        "invalid@example.com",
        "HARD_BOUNCE",
        Some("G9Bn5sl1TC6nu79C8C0bwg:1534110422.389832"),
    );
    block(
        "mailgun",
        fixture!("mailgun", "complained.json"),
        1_377_214_260_049_634,
        "recipient@example.com",
        "SPAM_COMPLAINT",
        Some("ncV2XwymRUKbPek_MIM-Gw:1377214260.049634"),
    );
    not_a_block(
        "mailgun",
        fixture!("mailgun", "failed_temporary.json"),
        "soft bounce: not a suppression",
    );
    not_a_block(
        "mailgun",
        fixture!("mailgun", "failed_suppress_bounce.json"),
        "address already suppressed at the provider: not a suppression",
    );
    not_a_block(
        "mailgun",
        fixture!("mailgun", "delivered.json"),
        "mailgun event 'delivered' does not belong to the blocklists chain",
    );
}

#[test]
fn ses_events() {
    block(
        "ses",
        fixture!("ses", "bounce_sns.json"),
        1_501_893_662_669_000,
        "recipient@example.com",
        "HARD_BOUNCE",
        Some("EXAMPLE7c191be45-e9aedb9a-02f9-4d12-a87d-dd0099a07f8a-000000:bounce:recipient@example.com"),
    );
    let complaint = fixture!("ses", "complaint_notification.json");
    block(
        "ses",
        complaint,
        1_453_906_778_237_000,
        "richard@example.com",
        "SPAM_COMPLAINT",
        Some("000001378603177f-7a5433e7-8edb-42ae-af10-f0181f34d6ee-000000:complaint:richard@example.com"),
    );
    not_a_block(
        "ses",
        fixture!("ses", "bounce_transient.json"),
        "soft bounce: not a suppression",
    );
    not_a_block(
        "ses",
        fixture!("ses", "bounce_suppressed.json"),
        "address already suppressed at the provider",
    );
    let sns: serde_json::Value = serde_json::from_str(complaint).unwrap();
    let mut msg: serde_json::Value = serde_json::from_str(sns["Message"].as_str().unwrap()).unwrap();
    msg["complaint"]["complaintFeedbackType"] = "not-spam".into();
    not_a_block("ses", &msg.to_string(), "not-spam feedback: not a suppression");
    not_a_block(
        "ses",
        fixture!("ses", "delivery.json"),
        "ses event 'delivery' does not belong to the blocklists chain",
    );
}

#[test]
fn postmark_events() {
    block(
        "postmark",
        fixture!("postmark", "bounce.json"),
        1_572_971_634_907_025,
        "john@example.com",
        "HARD_BOUNCE",
        Some("4323372036854775807:Bounce"),
    );
    block(
        "postmark",
        fixture!("postmark", "spam_complaint.json"),
        1_572_971_634_907_025,
        "john@example.com",
        "SPAM_COMPLAINT",
        Some("42:SpamComplaint"),
    );
    block(
        "postmark",
        fixture!("postmark", "subscription_change_hard_bounce.json"),
        1_580_554_414_416_071,
        "bounced-address@wildbit.com",
        "HARD_BOUNCE",
        Some("00000000-0000-0000-0000-000000000000:SubscriptionChange:bounced-address@wildbit.com:2020-02-01T10:53:34.416071Z"),
    );
    not_a_block(
        "postmark",
        fixture!("postmark", "bounce_soft.json"),
        "soft bounce: not a suppression (postmark event 'Bounce')",
    );
    not_a_block(
        "postmark",
        fixture!("postmark", "subscription_change_unsubscribe.json"),
        "postmark event 'SubscriptionChange' (SuppressionReason ManualSuppression) does not belong to the blocklists chain",
    );
    not_a_block(
        "postmark",
        fixture!("postmark", "open.json"),
        "postmark event 'Open' does not belong to the blocklists chain",
    );
}

#[test]
fn mandrill_events() {
    let t = 1_384_954_004_000_000;
    let email = "example.webhook@mandrillapp.com";
    block(
        "mandrill",
        fixture!("mandrill", "hard_bounce.json"),
        t,
        email,
        "HARD_BOUNCE",
        Some("exampleaaaaaaaaaaaaaaaaaaaaaaaaa2:hard_bounce"),
    );
    block(
        "mandrill",
        fixture!("mandrill", "spam.json"),
        t,
        email,
        "SPAM_COMPLAINT",
        Some("exampleaaaaaaaaaaaaaaaaaaaaaaaaa4:spam"),
    );
    // A sync event: no id of its own, an expiry in `YYYY-MM-DD HH:MM:SS`.
    let added = fixture!("mandrill", "blacklist_add.json");
    let rec = block("mandrill", added, t, email, "HARD_BOUNCE", None);
    assert_eq!(micros(&rec, "expires_at"), Some(1_393_677_836_000_000));
    let removed = added.replace(r#""action": "add""#, r#""action": "remove""#);
    let rec = check(
        "mandrill",
        &removed,
        t,
        &[("action", Some("REMOVE")), ("reason", Some("HARD_BOUNCE"))],
    );
    assert_ne!(
        text(&rec, "event_id"),
        text(&run::<Blocklists>("mandrill", added, Some("acme")).unwrap(), "event_id")
    );
    let custom = added.replace(r#""reason": "hard-bounce""#, r#""reason": "custom""#);
    check("mandrill", &custom, t, &[("reason", Some("MANUAL"))]);
    not_a_block(
        "mandrill",
        fixture!("mandrill", "soft_bounce.json"),
        "soft bounce: not a suppression",
    );
    not_a_block(
        "mandrill",
        fixture!("mandrill", "blacklist_remove_soft.json"),
        "soft bounce: not a suppression (mandrill event 'blacklist')",
    );
    not_a_block(
        "mandrill",
        &added.replace(r#""reason": "hard-bounce""#, r#""reason": "unsub""#),
        "mandrill event 'blacklist' (reason unsub) does not belong to the blocklists chain",
    );
    not_a_block(
        "mandrill",
        fixture!("mandrill", "whitelist_add.json"),
        "mandrill event 'whitelist' does not belong to the blocklists chain",
    );
    not_a_block(
        "mandrill",
        fixture!("mandrill", "open.json"),
        "mandrill event 'open' does not belong to the blocklists chain",
    );
}

#[test]
fn mailchimp_events() {
    block(
        "mailchimp",
        fixture!("mailchimp", "cleaned.form"),
        1_238_104_860_000_000,
        "api+cleaned@mailchimp.com",
        "HARD_BOUNCE",
        None,
    );
    block(
        "mailchimp",
        fixture!("mailchimp", "unsubscribe_abuse.form"),
        1_238_103_657_000_000,
        "api+abuse@mailchimp.com",
        "SPAM_COMPLAINT",
        None,
    );
    // The same event as a JSON object of the same shape.
    block(
        "mailchimp",
        r#"{"type":"cleaned","fired_at":"2009-03-26 22:01:00","data":{"list_id":"a6b5da1054","reason":"abuse","email":"api+cleaned@mailchimp.com"}}"#,
        1_238_104_860_000_000,
        "api+cleaned@mailchimp.com",
        "SPAM_COMPLAINT",
        None,
    );
    not_a_block(
        "mailchimp",
        fixture!("mailchimp", "unsubscribe.form"),
        "mailchimp event 'unsubscribe' (reason manual) does not belong to the blocklists chain",
    );
    not_a_block(
        "mailchimp",
        fixture!("mailchimp", "subscribe.form"),
        "mailchimp event 'subscribe' does not belong to the blocklists chain",
    );
    not_a_block(
        "mailchimp",
        "type=cleaned&fired_at=2009-03-26+22%3A01%3A00&data%5Breason%5D=bored&data%5Bemail%5D=a%40b.com",
        "mailchimp cleaned reason 'bored' is not hard or abuse",
    );
}

// ---- No panics, whatever the bytes ----

const SOURCES: &[&str] = &[
    "json",
    "csv",
    "sendgrid",
    "mailgun",
    "ses",
    "postmark",
    "mailchimp",
    "mandrill",
];

fn process_bytes(source: &str, payload: &[u8]) {
    let raw = RawRecord {
        payload,
        tenant: Some("acme"),
        csv_header: None,
    };
    let _ = chain::process::<Blocklists>(&settings(), Some(source), &raw, NOW);
}

/// Keys and values the readers look for, so that generated payloads reach deep into them.
const KEYS: &[&str] = &[
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
const WORDS: &[&str] = &[
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

fn json_value() -> impl Strategy<Value = serde_json::Value> {
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
fn json_ish() -> impl Strategy<Value = String> {
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
fn form_ish() -> impl Strategy<Value = String> {
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

/// Every fixture of this chain, with its source format.
const FIXTURES: &[(&str, &str)] = &[
    ("mailchimp", fixture!("mailchimp", "cleaned.form")),
    ("mailchimp", fixture!("mailchimp", "subscribe.form")),
    ("mailchimp", fixture!("mailchimp", "unsubscribe.form")),
    ("mailchimp", fixture!("mailchimp", "unsubscribe_abuse.form")),
    ("mailgun", fixture!("mailgun", "complained.json")),
    ("mailgun", fixture!("mailgun", "delivered.json")),
    ("mailgun", fixture!("mailgun", "failed_permanent.json")),
    ("mailgun", fixture!("mailgun", "failed_suppress_bounce.json")),
    ("mailgun", fixture!("mailgun", "failed_temporary.json")),
    ("mandrill", fixture!("mandrill", "blacklist_add.json")),
    ("mandrill", fixture!("mandrill", "blacklist_remove_soft.json")),
    ("mandrill", fixture!("mandrill", "hard_bounce.json")),
    ("mandrill", fixture!("mandrill", "open.json")),
    ("mandrill", fixture!("mandrill", "soft_bounce.json")),
    ("mandrill", fixture!("mandrill", "spam.json")),
    ("mandrill", fixture!("mandrill", "whitelist_add.json")),
    ("postmark", fixture!("postmark", "bounce.json")),
    ("postmark", fixture!("postmark", "bounce_soft.json")),
    ("postmark", fixture!("postmark", "open.json")),
    ("postmark", fixture!("postmark", "spam_complaint.json")),
    ("postmark", fixture!("postmark", "subscription_change_hard_bounce.json")),
    ("postmark", fixture!("postmark", "subscription_change_unsubscribe.json")),
    ("sendgrid", fixture!("sendgrid", "blocked.json")),
    ("sendgrid", fixture!("sendgrid", "bounce.json")),
    ("sendgrid", fixture!("sendgrid", "open.json")),
    ("sendgrid", fixture!("sendgrid", "spamreport.json")),
    ("ses", fixture!("ses", "bounce_sns.json")),
    ("ses", fixture!("ses", "bounce_suppressed.json")),
    ("ses", fixture!("ses", "bounce_transient.json")),
    ("ses", fixture!("ses", "complaint_notification.json")),
    ("ses", fixture!("ses", "delivery.json")),
];
/// One step of a path into a JSON value.
#[derive(Debug, Clone)]
enum Seg {
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

/// A fixture of this chain with a few of its values replaced.
fn mutated_fixture() -> impl Strategy<Value = (&'static str, String)> {
    let edit = (
        any::<prop::sample::Index>(),
        prop_oneof![
            3 => prop::sample::select(WORDS).prop_map(serde_json::Value::from),
            1 => json_value(),
            1 => Just(serde_json::Value::Null),
        ],
    );
    (prop::sample::select(FIXTURES), prop::collection::vec(edit, 1..4)).prop_map(|((source, payload), edits)| {
        let text = if source == "mailchimp" {
            mutate_form(payload, &edits)
        } else {
            mutate_json(payload, &edits)
        };
        (source, text)
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn arbitrary_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..600)) {
        for source in SOURCES {
            process_bytes(source, &bytes);
        }
    }

    #[test]
    fn json_ish_text_never_panics(text in json_ish()) {
        for source in SOURCES {
            let _ = run::<Blocklists>(source, &text, Some("acme"));
        }
    }

    #[test]
    fn form_ish_text_never_panics(text in form_ish()) {
        for source in SOURCES {
            let _ = run::<Blocklists>(source, &text, Some("acme"));
        }
    }

    #[test]
    fn mutated_fixtures_never_panic((source, text) in mutated_fixture()) {
        let _ = run::<Blocklists>(source, &text, Some("acme"));
    }
}
