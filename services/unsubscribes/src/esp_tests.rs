//! ESP source formats: every fixture (modelled on the providers' documented examples) through
//! the whole pipeline, decoded with the schema; and no input makes a reader panic.

use super::Unsubscribes;
use proptest::prelude::*;
use tributary_engine::fixture;
use tributary_engine::fuzz::{form_ish, json_ish, mutated_fixture, process_bytes, SOURCES};
use tributary_engine::testing::{check, refused, run, text};
use tributary_engine::ErrorClass;

#[test]
fn sendgrid_events() {
    let t = 1_513_299_569_000_000;
    check::<Unsubscribes>(
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
    check::<Unsubscribes>(
        "sendgrid",
        fixture!("sendgrid", "group_unsubscribe.json"),
        t,
        &[("event_id", Some("ahSCB7xYcXFb-hEaawsPRw==")), ("list_id", Some("10"))],
    );
    let ungrouped =
        fixture!("sendgrid", "group_unsubscribe.json").replace(r#""asm_group_id": 10"#, r#""asm_group_id": null"#);
    refused::<Unsubscribes>("sendgrid", &ungrouped, ErrorClass::MissingField, "'asm_group_id'");
    refused::<Unsubscribes>(
        "sendgrid",
        fixture!("sendgrid", "open.json"),
        ErrorClass::InvalidValue,
        "sendgrid event 'open' does not belong to the unsubscribes chain",
    );
}

#[test]
fn mailgun_events() {
    check::<Unsubscribes>(
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
    refused::<Unsubscribes>(
        "mailgun",
        fixture!("mailgun", "opened.json"),
        ErrorClass::InvalidValue,
        "mailgun event 'opened' does not belong to the unsubscribes chain",
    );
}

#[test]
fn ses_events() {
    check::<Unsubscribes>(
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
    check::<Unsubscribes>(
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
    refused::<Unsubscribes>(
        "ses",
        &two.to_string(),
        ErrorClass::InvalidValue,
        "opts out of 2 topics",
    );
    let mut none = two.clone();
    none["detail"]["subscription"]["newTopicPreferences"] =
        none["detail"]["subscription"]["oldTopicPreferences"].clone();
    refused::<Unsubscribes>(
        "ses",
        &none.to_string(),
        ErrorClass::InvalidValue,
        "ses event 'subscription' (no opt-out) does not belong to the unsubscribes chain",
    );
    let mut no_list: serde_json::Value = serde_json::from_str(fixture!("ses", "subscription.json")).unwrap();
    no_list["subscription"].as_object_mut().unwrap().remove("contactList");
    refused::<Unsubscribes>("ses", &no_list.to_string(), ErrorClass::MissingField, "'contactList'");
    refused::<Unsubscribes>(
        "ses",
        fixture!("ses", "open.json"),
        ErrorClass::InvalidValue,
        "ses event 'open' does not belong to the unsubscribes chain",
    );
}

#[test]
fn postmark_events() {
    check::<Unsubscribes>(
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
    refused::<Unsubscribes>("postmark", &no_stream, ErrorClass::MissingField, "'MessageStream'");
    refused::<Unsubscribes>(
        "postmark",
        fixture!("postmark", "subscription_change_hard_bounce.json"),
        ErrorClass::InvalidValue,
        "postmark event 'SubscriptionChange' (SuppressionReason HardBounce) does not belong to the unsubscribes chain",
    );
    refused::<Unsubscribes>(
        "postmark",
        fixture!("postmark", "subscription_change_reactivation.json"),
        ErrorClass::InvalidValue,
        "(SuppressSending false)",
    );
}

#[test]
fn mailchimp_events() {
    let rec = check::<Unsubscribes>(
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
    refused::<Unsubscribes>("mailchimp", &no_list, ErrorClass::MissingField, "'data[list_id]'");
    refused::<Unsubscribes>(
        "mailchimp",
        fixture!("mailchimp", "subscribe.form"),
        ErrorClass::InvalidValue,
        "mailchimp event 'subscribe' does not belong to the unsubscribes chain",
    );
}

#[test]
fn mandrill_events() {
    check::<Unsubscribes>(
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
    refused::<Unsubscribes>(
        "mandrill",
        fixture!("mandrill", "open.json"),
        ErrorClass::InvalidValue,
        "mandrill event 'open' does not belong to the unsubscribes chain",
    );
}

// ---- No panics, whatever the bytes (tributary_engine::fuzz) ----

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
proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn arbitrary_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..600)) {
        for source in SOURCES {
            process_bytes::<Unsubscribes>(source, &bytes);
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
    fn mutated_fixtures_never_panic((source, text) in mutated_fixture(FIXTURES)) {
        let _ = run::<Unsubscribes>(source, &text, Some("acme"));
    }
}
