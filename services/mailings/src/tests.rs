use super::Mailings;
use tributary_engine::testing::{opt_str, run, run_with, str_};
use tributary_engine::ErrorClass;

#[test]
fn canonical_json() {
    let rec = run::<Mailings>(
        "json",
        r#"{"event_id":"m1:open","event_time":1763000000.25,"email":"a@b.com","message_id":"m1","event_type":"open","ip":"198.51.100.1","user_agent":"Mozilla/5.0"}"#,
        Some("acme"),
    )
    .unwrap();
    assert_eq!(str_(&rec, "event_type"), "OPENED");
    assert_eq!(str_(&rec, "message_id"), "m1");
    assert_eq!(opt_str(&rec, "user_agent"), Some("Mozilla/5.0"));
}

#[test]
fn csv_send_log() {
    let rec = run_with::<Mailings>(
        "csv",
        "acme,a@b.com,2025-11-20T10:00:00Z,m2,bounce,hard,550 5.1.1 unknown user",
        None,
        Some("tenant,recipient,timestamp,msg_id,event,bounce_class,smtp_response"),
    )
    .unwrap();
    assert_eq!(str_(&rec, "event_type"), "BOUNCED");
    assert_eq!(opt_str(&rec, "bounce_class"), Some("hard"));
}

#[test]
fn invalid_values() {
    let e = run::<Mailings>(
        "json",
        r#"{"event_time":1763000000,"email":"a@b.com","message_id":"m"}"#,
        Some("acme"),
    )
    .unwrap_err();
    assert_eq!(e.class, ErrorClass::MissingField);
    let e = run::<Mailings>(
        "json",
        r#"{"event_time":1763000000,"email":"a@b.com","message_id":"m","event_type":"teleported"}"#,
        Some("acme"),
    )
    .unwrap_err();
    assert_eq!(e.class, ErrorClass::InvalidValue);
    let e = run::<Mailings>(
        "json",
        r#"{"event_time":1763000000,"email":"a@b.com","event_type":"sent"}"#,
        Some("acme"),
    )
    .unwrap_err();
    assert_eq!(e.class, ErrorClass::MissingField);
}

/// The Rust enums are the schema's enums, symbol for symbol and in order.
#[test]
fn enums_match_the_schema() {
    tributary_engine::testing::assert_symbols::<Mailings, crate::EventType>("event_type");
}
