//! ESP source formats: every fixture (modelled on the providers' documented examples) through
//! the whole pipeline, decoded with the schema; and no input makes a reader panic.

use super::Users;
use apache_avro::types::Value;
use proptest::prelude::*;
use tributary_engine::fixture;
use tributary_engine::fuzz::{form_ish, json_ish, mutated_fixture, process_bytes, SOURCES};
use tributary_engine::testing::{check, field, refused, run, text};
use tributary_engine::ErrorClass;

fn attributes(rec: &[(String, Value)]) -> Vec<(String, String)> {
    let Value::Map(m) = field(rec, "attributes") else {
        panic!("attributes is not a map");
    };
    let mut v: Vec<(String, String)> = m
        .iter()
        .map(|(k, v)| match v {
            Value::String(s) => (k.clone(), s.clone()),
            other => panic!("{k}: {other:?}"),
        })
        .collect();
    v.sort();
    v
}

fn pairs(p: &[(&str, &str)]) -> Vec<(String, String)> {
    p.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect()
}

#[test]
fn mailchimp_profile() {
    let rec = check::<Users>(
        "mailchimp",
        fixture!("mailchimp", "profile.form"),
        1_238_103_081_000_000,
        &[
            ("email", Some("api@mailchimp.com")),
            ("user_id", Some("8a25ff1d98")),
            ("first_name", Some("Mailchimp")),
            ("last_name", Some("API")),
            ("phone", Some("+14045550123")),
            ("city", Some("Atlanta")),
            ("country", Some("US")),
            ("previous_email", None),
        ],
    );
    assert_eq!(
        attributes(&rec),
        pairs(&[
            ("email_type", "html"),
            ("list_id", "a6b5da1054"),
            ("merges.ADDRESS.addr1", "675 Ponce de Leon Ave NE"),
            ("merges.ADDRESS.state", "GA"),
            ("merges.ADDRESS.zip", "30308"),
            ("merges.INTERESTS", "Group1,Group2"),
        ])
    );
    assert!(
        text(&rec, "event_id").unwrap().starts_with('h'),
        "no Mailchimp event id: derived"
    );
}

#[test]
fn mailchimp_subscribe_carries_a_profile() {
    let rec = check::<Users>(
        "mailchimp",
        fixture!("mailchimp", "subscribe.form"),
        1_238_103_357_000_000,
        &[
            ("email", Some("api@mailchimp.com")),
            ("first_name", Some("Mailchimp")),
            ("phone", None),
        ],
    );
    assert!(attributes(&rec).contains(&("merges.INTERESTS".to_owned(), "Group1,Group2".to_owned())));
}

#[test]
fn mailchimp_email_change() {
    let rec = check::<Users>(
        "mailchimp",
        fixture!("mailchimp", "upemail.form"),
        1_238_105_709_000_000,
        &[
            ("email", Some("api+new@mailchimp.com")),
            ("previous_email", Some("api+old@mailchimp.com")),
            ("user_id", Some("51da8c3259")),
            ("first_name", None),
        ],
    );
    assert_eq!(attributes(&rec), pairs(&[("list_id", "a6b5da1054")]));
    // A bad old address is an invalid record, not a silent drop of the change.
    let bad = fixture!("mailchimp", "upemail.form").replace("api%2Bold%40mailchimp.com", "nobody");
    refused::<Users>("mailchimp", &bad, ErrorClass::InvalidEmail, "'nobody'");
}

#[test]
fn other_mailchimp_events_and_providers() {
    refused::<Users>(
        "mailchimp",
        fixture!("mailchimp", "cleaned.form"),
        ErrorClass::InvalidValue,
        "mailchimp event 'cleaned' does not belong to the users chain",
    );
    refused::<Users>(
        "mailchimp",
        "type=teleport&fired_at=2009-03-26+22%3A01%3A00",
        ErrorClass::InvalidValue,
        "'teleport' is not a mailchimp event",
    );
    refused::<Users>(
        "mailchimp",
        "type=profile&data%5Bemail%5D=a%40b.com",
        ErrorClass::MissingField,
        "'event_time'",
    );
    for source in ["sendgrid", "mailgun", "ses", "postmark", "mandrill"] {
        refused::<Users>(source, "{}", ErrorClass::UnknownSource, "the users chain does not read");
    }
}

// ---- No panics, whatever the bytes (tributary_engine::fuzz) ----

/// Every fixture of this chain, with its source format.
const FIXTURES: &[(&str, &str)] = &[
    ("mailchimp", fixture!("mailchimp", "cleaned.form")),
    ("mailchimp", fixture!("mailchimp", "profile.form")),
    ("mailchimp", fixture!("mailchimp", "subscribe.form")),
    ("mailchimp", fixture!("mailchimp", "upemail.form")),
];
proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn arbitrary_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..600)) {
        for source in SOURCES {
            process_bytes::<Users>(source, &bytes);
        }
    }

    #[test]
    fn json_ish_text_never_panics(text in json_ish()) {
        for source in SOURCES {
            let _ = run::<Users>(source, &text, Some("acme"));
        }
    }

    #[test]
    fn form_ish_text_never_panics(text in form_ish()) {
        for source in SOURCES {
            let _ = run::<Users>(source, &text, Some("acme"));
        }
    }

    #[test]
    fn mutated_fixtures_never_panic((source, text) in mutated_fixture(FIXTURES)) {
        let _ = run::<Users>(source, &text, Some("acme"));
    }
}
