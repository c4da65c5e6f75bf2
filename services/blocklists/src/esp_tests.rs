//! ESP source formats: every fixture (modelled on the providers' documented examples) through
//! the whole pipeline, decoded with the schema; and no input makes a reader panic.

use super::Blocklists;
use apache_avro::types::Value;
use proptest::prelude::*;
use tributary_engine::fixture;
use tributary_engine::fuzz::{form_ish, json_ish, mutated_fixture, process_bytes, SOURCES};
use tributary_engine::testing::{check, micros, refused, run, text};
use tributary_engine::ErrorClass;

fn block(
    source: &str,
    payload: &str,
    time: i64,
    email: &str,
    reason: &str,
    event_id: Option<&str>,
) -> Vec<(String, Value)> {
    let rec = check::<Blocklists>(
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
    refused::<Blocklists>(source, payload, ErrorClass::InvalidValue, reason);
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
    let rec = check::<Blocklists>(
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
    check::<Blocklists>("mandrill", &custom, t, &[("reason", Some("MANUAL"))]);
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

// ---- No panics, whatever the bytes (tributary_engine::fuzz) ----

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
proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn arbitrary_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..600)) {
        for source in SOURCES {
            process_bytes::<Blocklists>(source, &bytes);
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
    fn mutated_fixtures_never_panic((source, text) in mutated_fixture(FIXTURES)) {
        let _ = run::<Blocklists>(source, &text, Some("acme"));
    }
}
