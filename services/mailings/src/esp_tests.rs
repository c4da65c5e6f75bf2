//! ESP source formats: every fixture (modelled on the providers' documented examples) through
//! the whole pipeline, decoded with the schema; and no input makes a reader panic.

use super::Mailings;
use proptest::prelude::*;
use tributary_engine::fixture;
use tributary_engine::fuzz::{form_ish, json_ish, mutated_fixture, process_bytes, SOURCES};
use tributary_engine::testing::{check, refused, run, text};
use tributary_engine::ErrorClass;

const SG_MSG: &str = "14c5d75ce93.dfd.64b469.filter0001.16648.5515E0B88.000000000000000000000";
const SG_UA: &str = "Mozilla/4.0 (compatible; MSIE 6.1; Windows XP; .NET CLR 1.1.4322; .NET CLR 2.0.50727)";

#[test]
fn sendgrid_events() {
    let t = 1_513_299_569_000_000;
    let rec = check::<Mailings>(
        "sendgrid",
        fixture!("sendgrid", "processed.json"),
        t,
        &[
            ("event_type", Some("SENT")),
            ("event_id", Some("rbtnWrG1DVDGGGFHFyun0A==")),
            ("email", Some("example@test.com")),
            ("message_id", Some(SG_MSG)),
            ("campaign_id", Some("cat facts")),
            ("smtp_response", None),
        ],
    );
    assert_eq!(
        text(&rec, "email_sha256").unwrap(),
        tributary_engine::normalize::sha256_hex("example@test.com")
    );
    check::<Mailings>(
        "sendgrid",
        fixture!("sendgrid", "deferred.json"),
        t,
        &[
            ("event_type", Some("DEFERRED")),
            ("smtp_response", Some("400 try again later")),
        ],
    );
    // `category` as a list; `ip` of a delivery is SendGrid's own and is not kept.
    check::<Mailings>(
        "sendgrid",
        fixture!("sendgrid", "delivered.json"),
        t,
        &[
            ("event_type", Some("DELIVERED")),
            ("campaign_id", Some("cat facts,dog facts")),
            ("smtp_response", Some("250 OK")),
            ("ip", None),
        ],
    );
    check::<Mailings>(
        "sendgrid",
        fixture!("sendgrid", "open.json"),
        t,
        &[
            ("event_type", Some("OPENED")),
            ("user_agent", Some(SG_UA)),
            ("ip", Some("255.255.255.255")),
            ("url", None),
        ],
    );
    check::<Mailings>(
        "sendgrid",
        fixture!("sendgrid", "click.json"),
        t,
        &[
            ("event_type", Some("CLICKED")),
            ("url", Some("http://www.sendgrid.com/")),
        ],
    );
    check::<Mailings>(
        "sendgrid",
        fixture!("sendgrid", "bounce.json"),
        t,
        &[
            ("event_type", Some("BOUNCED")),
            ("bounce_class", Some("hard")),
            ("smtp_response", Some("500 unknown recipient")),
        ],
    );
    check::<Mailings>(
        "sendgrid",
        fixture!("sendgrid", "blocked.json"),
        1_740_300_320_000_000,
        &[
            ("event_type", Some("BOUNCED")),
            ("bounce_class", Some("soft")),
            ("email", Some("noemail@this.does.not.exist.tld")),
            (
                "message_id",
                Some("euo2iKxdSayPF4YE4--I7A.recvd-5f54b5d587-pczjm-1-67BADEEA-6.0"),
            ),
            ("campaign_id", None),
        ],
    );
    check::<Mailings>(
        "sendgrid",
        fixture!("sendgrid", "dropped.json"),
        t,
        &[
            ("event_type", Some("DROPPED")),
            ("smtp_response", Some("Bounced Address")),
        ],
    );
    check::<Mailings>(
        "sendgrid",
        fixture!("sendgrid", "spamreport.json"),
        t,
        &[("event_type", Some("COMPLAINED")), ("campaign_id", None)],
    );
    check::<Mailings>(
        "sendgrid",
        fixture!("sendgrid", "unsubscribe.json"),
        t,
        &[("event_type", Some("UNSUBSCRIBED"))],
    );
    check::<Mailings>(
        "sendgrid",
        fixture!("sendgrid", "group_unsubscribe.json"),
        t,
        &[("event_type", Some("UNSUBSCRIBED")), ("ip", Some("255.255.255.255"))],
    );
    refused::<Mailings>(
        "sendgrid",
        fixture!("sendgrid", "group_resubscribe.json"),
        ErrorClass::InvalidValue,
        "sendgrid event 'group_resubscribe' does not belong to the mailings chain",
    );
}

#[test]
fn mailgun_events() {
    check::<Mailings>(
        "mailgun",
        fixture!("mailgun", "delivered.json"),
        1_534_108_637_153_125,
        &[
            ("event_type", Some("DELIVERED")),
            ("event_id", Some("hTWCTD81RtiDN-...:1534108637.153125")),
            ("email", Some("recipient@example.com")),
            ("message_id", Some("20180812211713.1.DF5966851B4BAA99@example.org")),
            ("smtp_response", Some("250 OK")),
            ("campaign_id", None),
        ],
    );
    check::<Mailings>(
        "mailgun",
        fixture!("mailgun", "failed_permanent.json"),
        1_534_110_422_389_832,
        &[
            ("event_type", Some("BOUNCED")),
            ("bounce_class", Some("hard")),
            (
                "smtp_response",
                Some("550 5.1.1 The email account that you tried to reach does not exist."),
            ),
            ("campaign_id", Some("newsletter,2018-08")),
        ],
    );
    check::<Mailings>(
        "mailgun",
        fixture!("mailgun", "failed_temporary.json"),
        1_534_111_899_659_519,
        &[
            ("event_type", Some("DEFERRED")),
            ("bounce_class", Some("soft")),
            ("smtp_response", Some("498 No MX for nomx.example.com")),
        ],
    );
    check::<Mailings>(
        "mailgun",
        fixture!("mailgun", "failed_suppress_bounce.json"),
        1_521_233_195_375_624,
        &[
            ("event_type", Some("DROPPED")),
            ("bounce_class", None),
            (
                "smtp_response",
                Some("605 Not delivering to previously bounced address"),
            ),
            ("campaign_id", Some("my_tag_1,my_tag_2")),
        ],
    );
    check::<Mailings>(
        "mailgun",
        fixture!("mailgun", "opened.json"),
        1_534_109_600_089_676,
        &[
            ("event_type", Some("OPENED")),
            ("ip", Some("203.0.113.111")),
            ("user_agent", Some("Mozilla/5.0 (Macintosh; Intel Mac OS X 10_13_6)")),
        ],
    );
    check::<Mailings>(
        "mailgun",
        fixture!("mailgun", "clicked.json"),
        1_534_109_600_089_676,
        &[
            ("event_type", Some("CLICKED")),
            ("url", Some("https://example.com/test")),
            ("campaign_id", Some("sdsf3")),
        ],
    );
    check::<Mailings>(
        "mailgun",
        fixture!("mailgun", "complained.json"),
        1_377_214_260_049_634,
        &[
            ("event_type", Some("COMPLAINED")),
            ("email", Some("recipient@example.com")),
        ],
    );
    check::<Mailings>(
        "mailgun",
        fixture!("mailgun", "unsubscribed.json"),
        1_377_213_791_421_473,
        &[("event_type", Some("UNSUBSCRIBED"))],
    );
    // `rejected` names no recipient: the To header does, with a display name.
    check::<Mailings>(
        "mailgun",
        fixture!("mailgun", "rejected.json"),
        1_529_704_976_104_692,
        &[
            ("event_type", Some("DROPPED")),
            ("email", Some("recipient@example.org")),
            ("smtp_response", Some("Sandbox subdomains are for test purposes only.")),
        ],
    );
}

const SES_MSG: &str = "EXAMPLE7c191be45-e9aedb9a-02f9-4d12-a87d-dd0099a07f8a-000000";

#[test]
fn ses_events() {
    check::<Mailings>(
        "ses",
        fixture!("ses", "bounce_sns.json"),
        1_501_893_662_669_000,
        &[
            ("event_type", Some("BOUNCED")),
            ("bounce_class", Some("hard")),
            ("event_id", Some(&format!("{SES_MSG}:bounce:recipient@example.com"))),
            ("message_id", Some(SES_MSG)),
            ("smtp_response", Some("smtp; 550 5.1.1 user unknown")),
            ("campaign_id", Some("spring-sale")),
        ],
    );
    check::<Mailings>(
        "ses",
        fixture!("ses", "bounce_transient.json"),
        1_501_893_662_669_000,
        &[("event_type", Some("BOUNCED")), ("bounce_class", Some("soft"))],
    );
    check::<Mailings>(
        "ses",
        fixture!("ses", "bounce_suppressed.json"),
        1_501_893_662_669_000,
        &[("event_type", Some("DROPPED")), ("bounce_class", None)],
    );
    refused::<Mailings>(
        "ses",
        fixture!("ses", "bounce_two_recipients.json"),
        ErrorClass::InvalidValue,
        "names 2 recipients",
    );
    // The message went to three addresses; the complaint names one.
    check::<Mailings>(
        "ses",
        fixture!("ses", "complaint_notification.json"),
        1_453_906_778_237_000,
        &[
            ("event_type", Some("COMPLAINED")),
            ("email", Some("richard@example.com")),
            (
                "event_id",
                Some("000001378603177f-7a5433e7-8edb-42ae-af10-f0181f34d6ee-000000:complaint:richard@example.com"),
            ),
            ("campaign_id", None),
        ],
    );
    check::<Mailings>(
        "ses",
        fixture!("ses", "delivery.json"),
        1_501_893_614_133_000,
        &[
            ("event_type", Some("DELIVERED")),
            ("smtp_response", Some("250 2.6.0 Message received")),
        ],
    );
    check::<Mailings>(
        "ses",
        fixture!("ses", "send.json"),
        1_501_893_602_012_000,
        &[("event_type", Some("SENT"))],
    );
    check::<Mailings>(
        "ses",
        fixture!("ses", "reject.json"),
        1_501_893_602_012_000,
        &[("event_type", Some("DROPPED")), ("smtp_response", Some("Bad content"))],
    );
    check::<Mailings>(
        "ses",
        fixture!("ses", "open.json"),
        1_502_316_019_652_000,
        &[
            ("event_type", Some("OPENED")),
            ("ip", Some("192.0.2.1")),
            (
                "event_id",
                Some(&format!(
                    "{SES_MSG}:open:recipient@example.com:2017-08-09T22:00:19.652Z"
                )),
            ),
        ],
    );
    check::<Mailings>(
        "ses",
        fixture!("ses", "click.json"),
        1_502_322_685_570_000,
        &[
            ("event_type", Some("CLICKED")),
            (
                "url",
                Some("http://docs.aws.amazon.com/ses/latest/DeveloperGuide/send-email-smtp.html"),
            ),
        ],
    );
    check::<Mailings>(
        "ses",
        fixture!("ses", "rendering_failure.json"),
        1_501_893_602_012_000,
        &[
            ("event_type", Some("FAILED")),
            (
                "smtp_response",
                Some("Attribute 'attributeName' is not present in the rendering data."),
            ),
        ],
    );
    check::<Mailings>(
        "ses",
        fixture!("ses", "delivery_delay.json"),
        1_592_266_540_641_000,
        &[
            ("event_type", Some("DEFERRED")),
            (
                "smtp_response",
                Some("smtp; 421 4.4.0 Unable to lookup DNS for example.com"),
            ),
        ],
    );
    check::<Mailings>(
        "ses",
        fixture!("ses", "subscription.json"),
        1_641_949_217_910_000,
        &[("event_type", Some("UNSUBSCRIBED"))],
    );
    check::<Mailings>(
        "ses",
        fixture!("ses", "subscription_topic.json"),
        1_641_949_217_910_000,
        &[("event_type", Some("UNSUBSCRIBED"))],
    );
}

#[test]
fn ses_events_naming_several_recipients_are_refused() {
    let mut send: serde_json::Value = serde_json::from_str(fixture!("ses", "send.json")).unwrap();
    send["mail"]["destination"] = serde_json::json!(["a@example.com", "b@example.com"]);
    refused::<Mailings>("ses", &send.to_string(), ErrorClass::InvalidValue, "names 2 recipients");
    let open: serde_json::Value = serde_json::from_str(fixture!("ses", "open.json")).unwrap();
    let mut msg: serde_json::Value = serde_json::from_str(open["Message"].as_str().unwrap()).unwrap();
    msg["mail"]["destination"] = serde_json::json!(["a@example.com", "b@example.com"]);
    refused::<Mailings>(
        "ses",
        &msg.to_string(),
        ErrorClass::InvalidValue,
        "cannot be attributed",
    );
}

const PM_ZERO: &str = "00000000-0000-0000-0000-000000000000";

#[test]
fn postmark_events() {
    check::<Mailings>(
        "postmark",
        fixture!("postmark", "delivery.json"),
        1_613_925_292_000_000,
        &[
            ("event_type", Some("DELIVERED")),
            ("event_id", Some(&format!("{PM_ZERO}:Delivery:john@example.com"))),
            ("message_id", Some(PM_ZERO)),
            ("campaign_id", Some("welcome-email")),
            ("smtp_response", Some("Test delivery webhook details")),
        ],
    );
    check::<Mailings>(
        "postmark",
        fixture!("postmark", "bounce.json"),
        1_572_971_634_907_025,
        &[
            ("event_type", Some("BOUNCED")),
            ("bounce_class", Some("hard")),
            ("event_id", Some("4323372036854775807:Bounce")),
            ("message_id", Some("883953f4-6105-42a2-a16a-77a8eac79483")),
            ("smtp_response", Some("Test bounce details")),
        ],
    );
    // An offset in the time.
    check::<Mailings>(
        "postmark",
        fixture!("postmark", "bounce_soft.json"),
        1_572_989_634_907_025,
        &[("event_type", Some("BOUNCED")), ("bounce_class", Some("soft"))],
    );
    check::<Mailings>(
        "postmark",
        fixture!("postmark", "bounce_transient.json"),
        1_572_971_634_000_000,
        &[("event_type", Some("DEFERRED")), ("bounce_class", Some("soft"))],
    );
    check::<Mailings>(
        "postmark",
        fixture!("postmark", "spam_complaint.json"),
        1_572_971_634_907_025,
        &[
            ("event_type", Some("COMPLAINED")),
            ("event_id", Some("42:SpamComplaint")),
        ],
    );
    check::<Mailings>(
        "postmark",
        fixture!("postmark", "open.json"),
        1_572_971_634_907_025,
        &[
            ("event_type", Some("OPENED")),
            ("ip", Some("188.2.95.4")),
            (
                "event_id",
                Some(&format!("{PM_ZERO}:Open:john@example.com:2019-11-05T16:33:54.9070259Z")),
            ),
        ],
    );
    check::<Mailings>(
        "postmark",
        fixture!("postmark", "click.json"),
        1_508_944_871_000_000,
        &[
            ("event_type", Some("CLICKED")),
            ("url", Some("https://example.com")),
            ("ip", Some("192.168.0.1")),
        ],
    );
    check::<Mailings>(
        "postmark",
        fixture!("postmark", "subscription_change_unsubscribe.json"),
        1_580_550_814_416_071,
        &[
            ("event_type", Some("UNSUBSCRIBED")),
            ("message_id", Some("a3b9c1d2-0e4f-4a5b-8c7d-6e5f4a3b2c1d")),
        ],
    );
    refused::<Mailings>(
        "postmark",
        fixture!("postmark", "subscription_change_hard_bounce.json"),
        ErrorClass::InvalidValue,
        "postmark event 'SubscriptionChange' (SuppressionReason HardBounce) does not belong to the mailings chain",
    );
    refused::<Mailings>(
        "postmark",
        fixture!("postmark", "subscription_change_reactivation.json"),
        ErrorClass::InvalidValue,
        "(SuppressSending false)",
    );
}

const MD_ID: &str = "exampleaaaaaaaaaaaaaaaaaaaaaaaaa";

#[test]
fn mandrill_events() {
    let t = 1_384_954_004_000_000;
    check::<Mailings>(
        "mandrill",
        fixture!("mandrill", "send.json"),
        t,
        &[
            ("event_type", Some("SENT")),
            ("event_id", Some(&format!("{MD_ID}:send"))),
            ("message_id", Some(MD_ID)),
            ("email", Some("example.webhook@mandrillapp.com")),
            ("campaign_id", Some("webhook-example")),
        ],
    );
    check::<Mailings>(
        "mandrill",
        fixture!("mandrill", "deferral.json"),
        t,
        &[
            ("event_type", Some("DEFERRED")),
            (
                "smtp_response",
                Some("451 4.3.5 Temporarily unavailable, try again later."),
            ),
        ],
    );
    check::<Mailings>(
        "mandrill",
        fixture!("mandrill", "hard_bounce.json"),
        t,
        &[("event_type", Some("BOUNCED")), ("bounce_class", Some("hard"))],
    );
    check::<Mailings>(
        "mandrill",
        fixture!("mandrill", "soft_bounce.json"),
        t,
        &[
            ("event_type", Some("BOUNCED")),
            ("bounce_class", Some("soft")),
            ("smtp_response", Some("smtp;552 5.2.2 Over Quota")),
        ],
    );
    // `ts` as float seconds; opens repeat, so their time is part of the identity.
    check::<Mailings>(
        "mandrill",
        fixture!("mandrill", "open.json"),
        1_384_954_004_125_000,
        &[
            ("event_type", Some("OPENED")),
            ("event_id", Some(&format!("{MD_ID}:open:1384954004.125"))),
            ("ip", Some("127.0.0.1")),
        ],
    );
    check::<Mailings>(
        "mandrill",
        fixture!("mandrill", "click.json"),
        t,
        &[("event_type", Some("CLICKED")), ("url", Some("http://mandrill.com"))],
    );
    check::<Mailings>(
        "mandrill",
        fixture!("mandrill", "spam.json"),
        t,
        &[("event_type", Some("COMPLAINED"))],
    );
    check::<Mailings>(
        "mandrill",
        fixture!("mandrill", "unsub.json"),
        t,
        &[("event_type", Some("UNSUBSCRIBED"))],
    );
    check::<Mailings>(
        "mandrill",
        fixture!("mandrill", "reject.json"),
        t,
        &[("event_type", Some("DROPPED"))],
    );
    for sync in [
        fixture!("mandrill", "blacklist_add.json"),
        fixture!("mandrill", "whitelist_add.json"),
    ] {
        refused::<Mailings>(
            "mandrill",
            sync,
            ErrorClass::InvalidValue,
            "does not belong to the mailings chain",
        );
    }
}

#[test]
fn malformed_and_foreign_payloads() {
    let batch = format!("[{}]", fixture!("sendgrid", "open.json"));
    refused::<Mailings>(
        "sendgrid",
        &batch,
        ErrorClass::Malformed,
        "the gateway sends one event a record",
    );
    refused::<Mailings>(
        "sendgrid",
        r#"{"email":"a@b.com"}"#,
        ErrorClass::MissingField,
        "'event'",
    );
    refused::<Mailings>(
        "sendgrid",
        r#"{"event":"teleported","email":"a@b.com","timestamp":1513299569}"#,
        ErrorClass::InvalidValue,
        "'teleported' is not a sendgrid event",
    );
    refused::<Mailings>(
        "sendgrid",
        r#"{"event":"open","timestamp":1513299569,"sg_message_id":"m"}"#,
        ErrorClass::MissingField,
        "'email'",
    );
    refused::<Mailings>(
        "ses",
        r#"{"Type":"SubscriptionConfirmation","Message":"You have chosen to subscribe"}"#,
        ErrorClass::InvalidValue,
        "not an SES event",
    );
    refused::<Mailings>(
        "ses",
        r#"{"Type":"Notification","Message":"Successfully validated SNS topic for Amazon SES event publishing."}"#,
        ErrorClass::Malformed,
        "not SES JSON",
    );
    refused::<Mailings>("mailgun", "not json", ErrorClass::Malformed, "invalid JSON");
    refused::<Mailings>(
        "mailchimp",
        "type=subscribe",
        ErrorClass::UnknownSource,
        "does not read source format 'mailchimp'",
    );
    // The same event twice has the same identity.
    let a = run::<Mailings>("postmark", fixture!("postmark", "open.json"), Some("acme")).unwrap();
    let b = run::<Mailings>("postmark", fixture!("postmark", "open.json"), Some("acme")).unwrap();
    assert_eq!(text(&a, "event_id"), text(&b, "event_id"));
}

// ---- No panics, whatever the bytes (tributary_engine::fuzz) ----

/// Every fixture of this chain, with its source format.
const FIXTURES: &[(&str, &str)] = &[
    ("mailgun", fixture!("mailgun", "clicked.json")),
    ("mailgun", fixture!("mailgun", "complained.json")),
    ("mailgun", fixture!("mailgun", "delivered.json")),
    ("mailgun", fixture!("mailgun", "failed_permanent.json")),
    ("mailgun", fixture!("mailgun", "failed_suppress_bounce.json")),
    ("mailgun", fixture!("mailgun", "failed_temporary.json")),
    ("mailgun", fixture!("mailgun", "opened.json")),
    ("mailgun", fixture!("mailgun", "rejected.json")),
    ("mailgun", fixture!("mailgun", "unsubscribed.json")),
    ("mandrill", fixture!("mandrill", "blacklist_add.json")),
    ("mandrill", fixture!("mandrill", "blacklist_remove_soft.json")),
    ("mandrill", fixture!("mandrill", "click.json")),
    ("mandrill", fixture!("mandrill", "deferral.json")),
    ("mandrill", fixture!("mandrill", "hard_bounce.json")),
    ("mandrill", fixture!("mandrill", "open.json")),
    ("mandrill", fixture!("mandrill", "reject.json")),
    ("mandrill", fixture!("mandrill", "send.json")),
    ("mandrill", fixture!("mandrill", "soft_bounce.json")),
    ("mandrill", fixture!("mandrill", "spam.json")),
    ("mandrill", fixture!("mandrill", "unsub.json")),
    ("mandrill", fixture!("mandrill", "whitelist_add.json")),
    ("postmark", fixture!("postmark", "bounce.json")),
    ("postmark", fixture!("postmark", "bounce_soft.json")),
    ("postmark", fixture!("postmark", "bounce_transient.json")),
    ("postmark", fixture!("postmark", "click.json")),
    ("postmark", fixture!("postmark", "delivery.json")),
    ("postmark", fixture!("postmark", "open.json")),
    ("postmark", fixture!("postmark", "spam_complaint.json")),
    ("postmark", fixture!("postmark", "subscription_change_hard_bounce.json")),
    (
        "postmark",
        fixture!("postmark", "subscription_change_reactivation.json"),
    ),
    ("postmark", fixture!("postmark", "subscription_change_unsubscribe.json")),
    ("sendgrid", fixture!("sendgrid", "blocked.json")),
    ("sendgrid", fixture!("sendgrid", "bounce.json")),
    ("sendgrid", fixture!("sendgrid", "click.json")),
    ("sendgrid", fixture!("sendgrid", "deferred.json")),
    ("sendgrid", fixture!("sendgrid", "delivered.json")),
    ("sendgrid", fixture!("sendgrid", "dropped.json")),
    ("sendgrid", fixture!("sendgrid", "group_resubscribe.json")),
    ("sendgrid", fixture!("sendgrid", "group_unsubscribe.json")),
    ("sendgrid", fixture!("sendgrid", "open.json")),
    ("sendgrid", fixture!("sendgrid", "processed.json")),
    ("sendgrid", fixture!("sendgrid", "spamreport.json")),
    ("sendgrid", fixture!("sendgrid", "unsubscribe.json")),
    ("ses", fixture!("ses", "bounce_sns.json")),
    ("ses", fixture!("ses", "bounce_suppressed.json")),
    ("ses", fixture!("ses", "bounce_transient.json")),
    ("ses", fixture!("ses", "bounce_two_recipients.json")),
    ("ses", fixture!("ses", "click.json")),
    ("ses", fixture!("ses", "complaint_notification.json")),
    ("ses", fixture!("ses", "delivery.json")),
    ("ses", fixture!("ses", "delivery_delay.json")),
    ("ses", fixture!("ses", "open.json")),
    ("ses", fixture!("ses", "reject.json")),
    ("ses", fixture!("ses", "rendering_failure.json")),
    ("ses", fixture!("ses", "send.json")),
    ("ses", fixture!("ses", "subscription.json")),
    ("ses", fixture!("ses", "subscription_topic.json")),
];
proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn arbitrary_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..600)) {
        for source in SOURCES {
            process_bytes::<Mailings>(source, &bytes);
        }
    }

    #[test]
    fn json_ish_text_never_panics(text in json_ish()) {
        for source in SOURCES {
            let _ = run::<Mailings>(source, &text, Some("acme"));
        }
    }

    #[test]
    fn form_ish_text_never_panics(text in form_ish()) {
        for source in SOURCES {
            let _ = run::<Mailings>(source, &text, Some("acme"));
        }
    }

    #[test]
    fn mutated_fixtures_never_panic((source, text) in mutated_fixture(FIXTURES)) {
        let _ = run::<Mailings>(source, &text, Some("acme"));
    }
}
