use super::Subscriptions;
use tributary_engine::testing::{field, opt_str, run, run_with, str_};
use tributary_engine::ErrorClass;

#[test]
fn canonical_json_with_consent() {
    let rec = run::<Subscriptions>(
        "json",
        r#"{"event_time":1763000000,"email":"a@b.com","list_id":"news","action":"confirm","consent_ip":"203.0.113.9","consent_at":"2025-11-12T00:00:00Z"}"#,
        Some("acme"),
    )
    .unwrap();
    assert_eq!(str_(&rec, "action"), "CONFIRM");
    assert_eq!(opt_str(&rec, "consent_ip"), Some("203.0.113.9"));
    assert!(format!("{:?}", field(&rec, "consent_at")).contains("1762905600000000"));
}

#[test]
fn mailchimp_subscribed_export() {
    let rec = run_with::<Subscriptions>(
        "csv",
        "e@f.com,2025-09-01 10:00:00,198.51.100.7,weekly",
        Some("globex"),
        Some("Email Address,OPTIN_TIME,OPTIN_IP,List"),
    )
    .unwrap();
    assert_eq!(str_(&rec, "list_id"), "weekly");
    assert_eq!(opt_str(&rec, "consent_ip"), Some("198.51.100.7"));
    assert_eq!(str_(&rec, "action"), "SUBSCRIBE");
}

#[test]
fn invalid_values() {
    let e = run::<Subscriptions>("json", r#"{"event_time":1763000000,"email":"a@b.com"}"#, Some("acme")).unwrap_err();
    assert_eq!(e.class, ErrorClass::MissingField);
    let e = run::<Subscriptions>(
        "json",
        r#"{"event_time":1763000000,"email":"a@b.com","list_id":"l","consent_ip":"999.1.1.1"}"#,
        Some("acme"),
    )
    .unwrap_err();
    assert_eq!(e.class, ErrorClass::InvalidValue);
    let e = run::<Subscriptions>(
        "json",
        r#"{"event_time":1763000000,"email":"a@b.com","list_id":"l","action":"maybe"}"#,
        Some("acme"),
    )
    .unwrap_err();
    assert_eq!(e.class, ErrorClass::InvalidValue);
}

/// The Rust enums are the schema's enums, symbol for symbol and in order.
#[test]
fn enums_match_the_schema() {
    tributary_engine::testing::assert_symbols::<Subscriptions, crate::Action>("action");
}
