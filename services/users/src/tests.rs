use super::Users;
use tributary_engine::testing::{opt_str, run, run_with, str_};
use tributary_engine::ErrorClass;

#[test]
fn canonical_json_is_normalized_and_encoded_to_the_schema() {
    let rec = run::<Users>(
        "json",
        r#"{"tenant_id":"acme","event_id":"u-1","event_time":"2025-11-20T10:00:00Z","email":" Ann@Example.COM ",
            "user_id":"42","first_name":"Ann","phone":"+44 (20) 7946-0958","country":"gb","locale":"en_GB",
            "attributes":{"plan":"pro","seats":3},"shoe_size":"38"}"#,
        None,
    )
    .unwrap();
    assert_eq!(str_(&rec, "tenant_id"), "acme");
    assert_eq!(str_(&rec, "event_id"), "u-1");
    assert_eq!(opt_str(&rec, "email"), Some("ann@example.com"));
    assert_eq!(opt_str(&rec, "phone"), Some("+442079460958"));
    assert_eq!(opt_str(&rec, "country"), Some("GB"));
    assert_eq!(opt_str(&rec, "locale"), Some("en-GB"));
    let attrs = format!("{:?}", tributary_engine::testing::field(&rec, "attributes"));
    assert!(
        attrs.contains("plan") && attrs.contains("seats") && attrs.contains("shoe_size"),
        "{attrs}"
    );
}

#[test]
fn mailchimp_audience_export_csv() {
    let header = "Email Address,First Name,Last Name,Phone Number,CC,LAST_CHANGED,LEID";
    let rec = run_with::<Users>(
        "csv",
        "bob@example.org,Bob,Smith,,us,2025-11-01 08:00:00,991",
        Some("globex"),
        Some(header),
    )
    .unwrap();
    assert_eq!(opt_str(&rec, "email"), Some("bob@example.org"));
    assert_eq!(opt_str(&rec, "first_name"), Some("Bob"));
    assert_eq!(opt_str(&rec, "country"), Some("US"));
    assert_eq!(opt_str(&rec, "user_id"), Some("991"));
    assert!(str_(&rec, "event_id").starts_with('h'), "derived identity");
}

#[test]
fn invalid_records_are_classified() {
    let cases = [
        (
            r#"{"event_time":1763000000,"email":"a@b.com"}"#,
            None,
            ErrorClass::InvalidTenant,
        ),
        (
            r#"{"tenant_id":"hooli","event_time":1763000000,"email":"a@b.com"}"#,
            None,
            ErrorClass::UnknownTenant,
        ),
        (
            r#"{"tenant_id":"acme","event_time":1763000000}"#,
            None,
            ErrorClass::MissingField,
        ),
        (
            r#"{"tenant_id":"acme","event_time":1763000000,"email":"nope"}"#,
            None,
            ErrorClass::InvalidEmail,
        ),
        (
            r#"{"tenant_id":"acme","event_time":"yesterday","email":"a@b.com"}"#,
            None,
            ErrorClass::InvalidTimestamp,
        ),
        (
            r#"{"tenant_id":"acme","email":"a@b.com"}"#,
            None,
            ErrorClass::MissingField,
        ),
        (r#"{"tenant_id":"acme""#, None, ErrorClass::Malformed),
        (r#"[1,2]"#, Some("acme"), ErrorClass::Malformed),
    ];
    for (payload, tenant, class) in cases {
        assert_eq!(
            run::<Users>("json", payload, tenant).unwrap_err().class,
            class,
            "{payload}"
        );
    }
    assert_eq!(
        run::<Users>("ses", "{}", Some("acme")).unwrap_err().class,
        ErrorClass::UnknownSource
    );
    assert_eq!(
        run::<Users>("fax", "{}", Some("acme")).unwrap_err().class,
        ErrorClass::UnknownSource
    );
}

#[test]
fn identity_without_event_id_ignores_ingest_time() {
    let p = r#"{"tenant":"acme","event_time":1763000000,"email":"a@b.com","first_name":"A"}"#;
    let a = run::<Users>("json", p, Some("acme")).unwrap();
    let b = run::<Users>("json", p, Some("acme")).unwrap();
    assert_eq!(str_(&a, "event_id"), str_(&b, "event_id"));
    let c = run::<Users>("json", &p.replace("\"A\"", "\"B\""), Some("acme")).unwrap();
    assert_ne!(str_(&a, "event_id"), str_(&c, "event_id"));
}
