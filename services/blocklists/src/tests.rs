use super::Blocklists;
use tributary_engine::testing::{opt_str, run, run_with, str_};
use tributary_engine::ErrorClass;

#[test]
fn email_block_from_json() {
    let rec = run::<Blocklists>(
        "json",
        r#"{"tenant_id":"acme","event_time":"2025-11-20 10:00:00","email":"X@Y.com","reason":"hard bounce"}"#,
        None,
    )
    .unwrap();
    assert_eq!(str_(&rec, "action"), "ADD");
    assert_eq!(str_(&rec, "kind"), "EMAIL");
    assert_eq!(str_(&rec, "value"), "x@y.com");
    assert_eq!(str_(&rec, "reason"), "HARD_BOUNCE");
}

#[test]
fn domain_block_has_no_email() {
    let rec = run::<Blocklists>(
        "json",
        r#"{"event_time":1763000000,"kind":"domain","value":"@Spam.Example","action":"add","reason":"MANUAL"}"#,
        Some("acme"),
    )
    .unwrap();
    assert_eq!(str_(&rec, "kind"), "DOMAIN");
    assert_eq!(str_(&rec, "value"), "spam.example");
    assert_eq!(opt_str(&rec, "email"), None);
}

#[test]
fn erased_person_keeps_only_the_hash() {
    let h = "ff8d9819fc0e12bf0d24892e45987e249a28dce836a85cad60e28eaaa8c6d976";
    let rec = run::<Blocklists>(
        "json",
        &format!(r#"{{"event_time":1763000000,"email_sha256":"{h}","reason":"ERASED"}}"#),
        Some("acme"),
    )
    .unwrap();
    assert_eq!(str_(&rec, "value"), h);
    assert_eq!(opt_str(&rec, "email"), None);
    assert_eq!(str_(&rec, "reason"), "ERASED");
}

#[test]
fn csv_suppression_list_and_invalid_values() {
    let rec = run_with::<Blocklists>("csv", "a@b.com,2025-11-01", Some("acme"), Some("Email,Timestamp")).unwrap();
    assert_eq!(str_(&rec, "reason"), "MANUAL");
    let e = run::<Blocklists>(
        "json",
        r#"{"event_time":1763000000,"email":"a@b.com","reason":"because"}"#,
        Some("acme"),
    )
    .unwrap_err();
    assert_eq!(e.class, ErrorClass::InvalidValue);
    let e = run::<Blocklists>(
        "json",
        r#"{"event_time":1763000000,"email":"a@b.com","action":"DELETE"}"#,
        Some("acme"),
    )
    .unwrap_err();
    assert_eq!(e.class, ErrorClass::InvalidValue);
    let e = run::<Blocklists>("json", r#"{"event_time":1763000000,"kind":"DOMAIN"}"#, Some("acme")).unwrap_err();
    assert_eq!(e.class, ErrorClass::MissingField);
}

/// The Rust enums are the schema's enums, symbol for symbol and in order.
#[test]
fn enums_match_the_schema() {
    tributary_engine::testing::assert_symbols::<Blocklists, crate::Action>("action");
    tributary_engine::testing::assert_symbols::<Blocklists, crate::Kind>("kind");
    tributary_engine::testing::assert_symbols::<Blocklists, crate::Reason>("reason");
}
