use super::Unsubscribes;
use tributary_engine::testing::{opt_str, run, run_with, str_};
use tributary_engine::ErrorClass;

#[test]
fn canonical_json() {
    let rec = run::<Unsubscribes>(
        "json",
        r#"{"event_id":"x1","event_time":1763000000123,"email":"A@B.com","list_id":"news","reason":"too many","method":"LINK"}"#,
        Some("acme"),
    )
    .unwrap();
    assert_eq!(str_(&rec, "tenant_id"), "acme");
    assert_eq!(opt_str(&rec, "list_id"), Some("news"));
    assert_eq!(opt_str(&rec, "method"), Some("link"));
    assert_eq!(opt_str(&rec, "email"), Some("a@b.com"));
}

#[test]
fn all_lists_is_null() {
    let rec = run::<Unsubscribes>(
        "json",
        r#"{"event_time":1763000000,"email":"a@b.com","list_id":"ALL"}"#,
        Some("acme"),
    )
    .unwrap();
    assert_eq!(opt_str(&rec, "list_id"), None);
}

#[test]
fn mailchimp_unsubscribed_export() {
    let rec = run_with::<Unsubscribes>(
        "csv",
        "Email Address,UNSUB_TIME,UNSUB_REASON\nc@d.org,2025-10-01 12:00:00,No longer interested",
        Some("globex"),
        None,
    )
    .unwrap();
    assert_eq!(opt_str(&rec, "reason"), Some("No longer interested"));
    assert_eq!(opt_str(&rec, "method"), Some("import"));
}

#[test]
fn missing_email_is_invalid() {
    let e = run::<Unsubscribes>("json", r#"{"event_time":1763000000}"#, Some("acme")).unwrap_err();
    assert_eq!(e.class, ErrorClass::MissingField);
}
