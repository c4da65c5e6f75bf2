//! ESP source formats: every fixture (modelled on the providers' documented examples) through
//! the whole pipeline, decoded with the schema; and no input makes a reader panic.

use super::Unsubscribes;
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
    let rec = run::<Unsubscribes>(source, payload, Some("acme")).unwrap_or_else(|e| panic!("{source}: {e}\n{payload}"));
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
    let e = run::<Unsubscribes>(source, payload, Some("acme")).unwrap_err();
    assert_eq!(e.class, class, "{e}");
    assert!(e.reason.contains(reason), "{e}");
}

#[test]
fn sendgrid_events() {
    let t = 1_513_299_569_000_000;
    check(
        "sendgrid",
        fixture!("sendgrid", "unsubscribe.json"),
        t,
        &[
            ("event_id", Some("zz_BjPgU_5pS-J8vlfB1sg==")),
            ("email", Some("example@test.com")),
            ("list_id", None),
            ("campaign_id", Some("cat facts")),
            ("method", Some("link")),
            ("reason", None),
        ],
    );
    check(
        "sendgrid",
        fixture!("sendgrid", "group_unsubscribe.json"),
        t,
        &[("event_id", Some("ahSCB7xYcXFb-hEaawsPRw==")), ("list_id", Some("10"))],
    );
    let ungrouped =
        fixture!("sendgrid", "group_unsubscribe.json").replace(r#""asm_group_id": 10"#, r#""asm_group_id": null"#);
    refused("sendgrid", &ungrouped, ErrorClass::MissingField, "'asm_group_id'");
    refused(
        "sendgrid",
        fixture!("sendgrid", "open.json"),
        ErrorClass::InvalidValue,
        "sendgrid event 'open' does not belong to the unsubscribes chain",
    );
}

#[test]
fn mailgun_events() {
    check(
        "mailgun",
        fixture!("mailgun", "unsubscribed.json"),
        1_377_213_791_421_473,
        &[
            ("event_id", Some("W3X4JOhFT-OZidZGKKr9iA:1377213791.421473")),
            ("email", Some("recipient@example.com")),
            ("list_id", Some("news@lists.example.org")),
            ("campaign_id", Some("newsletter")),
            ("method", Some("link")),
        ],
    );
    refused(
        "mailgun",
        fixture!("mailgun", "opened.json"),
        ErrorClass::InvalidValue,
        "mailgun event 'opened' does not belong to the unsubscribes chain",
    );
}

#[test]
fn ses_events() {
    check(
        "ses",
        fixture!("ses", "subscription.json"),
        1_641_949_217_910_000,
        &[
            (
                "event_id",
                Some(
                    "EXAMPLEe4bccb684-777bc8de-afa7-4970-92b0-f515137b1497-000000:subscription:recipient@example.com:ContactListName",
                ),
            ),
            ("email", Some("recipient@example.com")),
            ("list_id", Some("ContactListName")),
            ("method", Some("list_unsubscribe")),
            ("campaign_id", Some("spring-sale")),
        ],
    );
    // Through EventBridge; one topic newly opted out, another left opted in.
    check(
        "ses",
        fixture!("ses", "subscription_topic.json"),
        1_641_949_217_910_000,
        &[
            ("list_id", Some("ContactListName:Deals")),
            ("method", Some("link")),
            (
                "event_id",
                Some("EXAMPLEe4bccb684-777bc8de-afa7-4970-92b0-f515137b1497-000001:subscription:recipient@example.com:ContactListName:Deals"),
            ),
        ],
    );
    let mut two: serde_json::Value = serde_json::from_str(fixture!("ses", "subscription_topic.json")).unwrap();
    two["detail"]["subscription"]["newTopicPreferences"]["topicSubscriptionStatus"][1]["subscriptionStatus"] =
        "OptOut".into();
    refused(
        "ses",
        &two.to_string(),
        ErrorClass::InvalidValue,
        "opts out of 2 topics",
    );
    let mut none = two.clone();
    none["detail"]["subscription"]["newTopicPreferences"] =
        none["detail"]["subscription"]["oldTopicPreferences"].clone();
    refused(
        "ses",
        &none.to_string(),
        ErrorClass::InvalidValue,
        "ses event 'subscription' (no opt-out) does not belong to the unsubscribes chain",
    );
    let mut no_list: serde_json::Value = serde_json::from_str(fixture!("ses", "subscription.json")).unwrap();
    no_list["subscription"].as_object_mut().unwrap().remove("contactList");
    refused("ses", &no_list.to_string(), ErrorClass::MissingField, "'contactList'");
    refused(
        "ses",
        fixture!("ses", "open.json"),
        ErrorClass::InvalidValue,
        "ses event 'open' does not belong to the unsubscribes chain",
    );
}

#[test]
fn postmark_events() {
    check(
        "postmark",
        fixture!("postmark", "subscription_change_unsubscribe.json"),
        1_580_550_814_416_071,
        &[
            (
                "event_id",
                Some("a3b9c1d2-0e4f-4a5b-8c7d-6e5f4a3b2c1d:SubscriptionChange:john@example.com:2020-02-01T10:53:34.416071+01:00"),
            ),
            ("email", Some("john@example.com")),
            ("list_id", Some("broadcast")),
            ("campaign_id", Some("newsletter")),
            ("method", Some("recipient")),
        ],
    );
    let no_stream =
        fixture!("postmark", "subscription_change_unsubscribe.json").replace(r#""MessageStream": "broadcast","#, "");
    refused("postmark", &no_stream, ErrorClass::MissingField, "'MessageStream'");
    refused(
        "postmark",
        fixture!("postmark", "subscription_change_hard_bounce.json"),
        ErrorClass::InvalidValue,
        "postmark event 'SubscriptionChange' (SuppressionReason HardBounce) does not belong to the unsubscribes chain",
    );
    refused(
        "postmark",
        fixture!("postmark", "subscription_change_reactivation.json"),
        ErrorClass::InvalidValue,
        "(SuppressSending false)",
    );
}

#[test]
fn mailchimp_events() {
    let rec = check(
        "mailchimp",
        fixture!("mailchimp", "unsubscribe.form"),
        1_238_103_657_000_000,
        &[
            ("email", Some("api+unsub@mailchimp.com")),
            ("list_id", Some("a6b5da1054")),
            ("campaign_id", Some("cb398d21d2")),
            ("reason", Some("manual")),
            ("method", Some("unsub")),
        ],
    );
    assert!(
        text(&rec, "event_id").unwrap().starts_with('h'),
        "no Mailchimp event id: derived"
    );
    let no_list = fixture!("mailchimp", "unsubscribe.form").replace("data%5Blist_id%5D=a6b5da1054", "");
    refused("mailchimp", &no_list, ErrorClass::MissingField, "'data[list_id]'");
    refused(
        "mailchimp",
        fixture!("mailchimp", "subscribe.form"),
        ErrorClass::InvalidValue,
        "mailchimp event 'subscribe' does not belong to the unsubscribes chain",
    );
}

#[test]
fn mandrill_events() {
    check(
        "mandrill",
        fixture!("mandrill", "unsub.json"),
        1_384_954_004_000_000,
        &[
            ("event_id", Some("exampleaaaaaaaaaaaaaaaaaaaaaaaaa5:unsub")),
            ("email", Some("example.webhook@mandrillapp.com")),
            ("list_id", None),
            ("campaign_id", Some("webhook-example")),
            ("method", None),
        ],
    );
    refused(
        "mandrill",
        fixture!("mandrill", "open.json"),
        ErrorClass::InvalidValue,
        "mandrill event 'open' does not belong to the unsubscribes chain",
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
    let _ = chain::process::<Unsubscribes>(&settings(), Some(source), &raw, NOW);
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
    ("mailchimp", fixture!("mailchimp", "subscribe.form")),
    ("mailchimp", fixture!("mailchimp", "unsubscribe.form")),
    ("mailgun", fixture!("mailgun", "opened.json")),
    ("mailgun", fixture!("mailgun", "unsubscribed.json")),
    ("mandrill", fixture!("mandrill", "open.json")),
    ("mandrill", fixture!("mandrill", "unsub.json")),
    ("postmark", fixture!("postmark", "subscription_change_hard_bounce.json")),
    (
        "postmark",
        fixture!("postmark", "subscription_change_reactivation.json"),
    ),
    ("postmark", fixture!("postmark", "subscription_change_unsubscribe.json")),
    ("sendgrid", fixture!("sendgrid", "group_unsubscribe.json")),
    ("sendgrid", fixture!("sendgrid", "open.json")),
    ("sendgrid", fixture!("sendgrid", "unsubscribe.json")),
    ("ses", fixture!("ses", "open.json")),
    ("ses", fixture!("ses", "subscription.json")),
    ("ses", fixture!("ses", "subscription_topic.json")),
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
            let _ = run::<Unsubscribes>(source, &text, Some("acme"));
        }
    }

    #[test]
    fn form_ish_text_never_panics(text in form_ish()) {
        for source in SOURCES {
            let _ = run::<Unsubscribes>(source, &text, Some("acme"));
        }
    }

    #[test]
    fn mutated_fixtures_never_panic((source, text) in mutated_fixture()) {
        let _ = run::<Unsubscribes>(source, &text, Some("acme"));
    }
}
