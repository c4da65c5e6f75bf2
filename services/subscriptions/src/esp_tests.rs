//! ESP source formats: every fixture (modelled on the providers' documented examples) through
//! the whole pipeline, decoded with the schema; and no input makes a reader panic.

use super::Subscriptions;
use proptest::prelude::*;
use tributary_engine::fixture;
use tributary_engine::fuzz::{form_ish, json_ish, mutated_fixture, process_bytes, SOURCES};
use tributary_engine::testing::{check, micros, refused, run, text};
use tributary_engine::ErrorClass;

#[test]
fn sendgrid_events() {
    let t = 1_513_299_569_000_000;
    let rec = check::<Subscriptions>(
        "sendgrid",
        fixture!("sendgrid", "group_resubscribe.json"),
        t,
        &[
            ("event_id", Some("w_u0vJhLT-OFfprar5N93g==")),
            ("email", Some("example@test.com")),
            ("list_id", Some("10")),
            ("action", Some("RESUBSCRIBE")),
            ("consent_ip", Some("255.255.255.255")),
        ],
    );
    assert_eq!(micros(&rec, "consent_at"), Some(t));
    refused::<Subscriptions>(
        "sendgrid",
        fixture!("sendgrid", "group_unsubscribe.json"),
        ErrorClass::InvalidValue,
        "sendgrid event 'group_unsubscribe' does not belong to the subscriptions chain",
    );
}

#[test]
fn postmark_events() {
    let rec = check::<Subscriptions>(
        "postmark",
        fixture!("postmark", "subscription_change_reactivation.json"),
        1_583_049_600_000_000,
        &[
            ("email", Some("john@example.com")),
            ("list_id", Some("broadcast")),
            ("action", Some("RESUBSCRIBE")),
            ("consent_ip", None),
        ],
    );
    assert_eq!(micros(&rec, "consent_at"), Some(1_583_049_600_000_000));
    // No MessageID on this change: the identity is derived.
    assert!(text(&rec, "event_id").unwrap().starts_with('h'));
    let by_customer = fixture!("postmark", "subscription_change_reactivation.json")
        .replace(r#""Origin": "Recipient""#, r#""Origin": "Customer""#);
    let rec = check::<Subscriptions>(
        "postmark",
        &by_customer,
        1_583_049_600_000_000,
        &[("action", Some("RESUBSCRIBE"))],
    );
    assert_eq!(micros(&rec, "consent_at"), None);
    refused::<Subscriptions>(
        "postmark",
        fixture!("postmark", "subscription_change_unsubscribe.json"),
        ErrorClass::InvalidValue,
        "postmark event 'SubscriptionChange' (SuppressSending true) does not belong to the subscriptions chain",
    );
}

#[test]
fn mailchimp_events() {
    let t = 1_238_103_357_000_000;
    let rec = check::<Subscriptions>(
        "mailchimp",
        fixture!("mailchimp", "subscribe.form"),
        t,
        &[
            ("email", Some("api@mailchimp.com")),
            ("list_id", Some("a6b5da1054")),
            ("action", Some("SUBSCRIBE")),
            ("consent_ip", Some("10.20.10.30")),
        ],
    );
    assert_eq!(micros(&rec, "consent_at"), Some(t));
    assert!(text(&rec, "event_id").unwrap().starts_with('h'));
    refused::<Subscriptions>(
        "mailchimp",
        fixture!("mailchimp", "unsubscribe.form"),
        ErrorClass::InvalidValue,
        "mailchimp event 'unsubscribe' does not belong to the subscriptions chain",
    );
    refused::<Subscriptions>(
        "mailchimp",
        "data%5Bemail%5D=a%40b.com",
        ErrorClass::MissingField,
        "'type'",
    );
}

#[test]
fn providers_without_subscribe_events_are_not_read() {
    for source in ["mailgun", "ses", "mandrill"] {
        refused::<Subscriptions>(
            source,
            "{}",
            ErrorClass::UnknownSource,
            "the subscriptions chain does not read",
        );
    }
}

// ---- No panics, whatever the bytes (tributary_engine::fuzz) ----

/// Every fixture of this chain, with its source format.
const FIXTURES: &[(&str, &str)] = &[
    ("mailchimp", fixture!("mailchimp", "subscribe.form")),
    ("mailchimp", fixture!("mailchimp", "unsubscribe.form")),
    (
        "postmark",
        fixture!("postmark", "subscription_change_reactivation.json"),
    ),
    ("postmark", fixture!("postmark", "subscription_change_unsubscribe.json")),
    ("sendgrid", fixture!("sendgrid", "group_resubscribe.json")),
    ("sendgrid", fixture!("sendgrid", "group_unsubscribe.json")),
];
proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn arbitrary_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..600)) {
        for source in SOURCES {
            process_bytes::<Subscriptions>(source, &bytes);
        }
    }

    #[test]
    fn json_ish_text_never_panics(text in json_ish()) {
        for source in SOURCES {
            let _ = run::<Subscriptions>(source, &text, Some("acme"));
        }
    }

    #[test]
    fn form_ish_text_never_panics(text in form_ish()) {
        for source in SOURCES {
            let _ = run::<Subscriptions>(source, &text, Some("acme"));
        }
    }

    #[test]
    fn mutated_fixtures_never_panic((source, text) in mutated_fixture(FIXTURES)) {
        let _ = run::<Subscriptions>(source, &text, Some("acme"));
    }
}
