//! Split and routing against the providers' documented payloads (the chains' fixtures), in
//! the batches the providers send. The routing table is checked both ways against the chains
//! themselves: each record is run through all five chains' whole pipeline, and exactly the
//! chains it is routed to must take it.

use super::*;
use serde_json::Value;
use std::collections::BTreeMap;
use tributary_engine::chains;
use tributary_engine::testing::{fixtures_dir, run};

const USERS: &str = chains::USERS.name;
const UNSUBSCRIBES: &str = chains::UNSUBSCRIBES.name;
const BLOCKLISTS: &str = chains::BLOCKLISTS.name;
const SUBSCRIPTIONS: &str = chains::SUBSCRIPTIONS.name;
const MAILINGS: &str = chains::MAILINGS.name;

/// Every documented payload of a provider, by file name.
fn fixtures(provider: &str) -> BTreeMap<String, Vec<u8>> {
    let mut out = BTreeMap::new();
    for e in std::fs::read_dir(fixtures_dir(provider)).unwrap().flatten() {
        if e.file_type().unwrap().is_file() {
            let name = e.file_name().to_string_lossy().into_owned();
            out.insert(name, std::fs::read(e.path()).unwrap());
        }
    }
    assert!(!out.is_empty(), "no {provider} fixtures");
    out
}

/// Which chains take the record, by running each chain's pipeline on it.
fn taken_by(source: &str, payload: &[u8]) -> Vec<&'static str> {
    let p = std::str::from_utf8(payload).unwrap();
    let mut out = Vec::new();
    macro_rules! each {
        ($(($name:ident, $krate:ident, $ty:ident))*) => {
            $(if run::<$krate::$ty>(source, p, Some("acme")).is_ok() {
                out.push(stringify!($name));
            })*
        };
    }
    tributary_engine::for_each_chain!(each);
    out
}

fn sorted(v: &[&'static str]) -> Vec<&'static str> {
    let mut v = v.to_vec();
    v.sort_unstable();
    v
}

/// Every record goes to exactly the chains that take it; unrouted ones to the fallback,
/// which refuses them (to its DLQ).
fn assert_routing_exact(provider: Source, records: &[Record]) {
    assert_routing(provider, records, true)
}

/// `exact` false: only that every chain a record is routed to takes it.
fn assert_routing(provider: Source, records: &[Record], exact: bool) {
    let mut wrong = Vec::new();
    for r in records {
        let taken = taken_by(provider.as_str(), &r.payload.bytes());
        let expected = if r.unrouted { Vec::new() } else { sorted(&r.chains) };
        let ok = if exact {
            sorted(&taken) == expected
        } else {
            expected.iter().all(|c| taken.contains(c))
        };
        if !ok {
            wrong.push(format!(
                "routed {:?} (unrouted {}), taken by {taken:?}: {}",
                r.chains,
                r.unrouted,
                String::from_utf8_lossy(&r.payload.bytes())
                    .chars()
                    .take(200)
                    .collect::<String>()
            ));
        }
    }
    assert!(wrong.is_empty(), "{}:\n{}", provider.as_str(), wrong.join("\n"));
}

fn chains_of(records: &[Record]) -> Vec<Vec<&'static str>> {
    records.iter().map(|r| r.chains.clone()).collect()
}

#[test]
fn sendgrid_batch_one_record_per_element() {
    let all = fixtures("sendgrid");
    let names: Vec<&String> = all.keys().collect();
    let batch = format!(
        "[{}]",
        all.values()
            .map(|v| String::from_utf8_lossy(v).into_owned())
            .collect::<Vec<_>>()
            .join(",")
    );
    let s = split(Source::Sendgrid, batch.as_bytes()).unwrap();
    assert_eq!(s.records.len(), all.len());
    for (r, (name, original)) in s.records.iter().zip(&all) {
        // The provider's own bytes, untouched.
        assert_eq!(&r.payload.bytes()[..], original.trim_ascii(), "{name}");
        assert!(r.email.is_some(), "{name}");
    }
    assert_routing_exact(Source::Sendgrid, &s.records);
    let by_name: BTreeMap<&str, Vec<&str>> = names.iter().map(|n| n.as_str()).zip(chains_of(&s.records)).collect();
    assert_eq!(by_name["bounce.json"], [MAILINGS, BLOCKLISTS]);
    assert_eq!(by_name["blocked.json"], [MAILINGS]);
    assert_eq!(by_name["spamreport.json"], [MAILINGS, BLOCKLISTS]);
    assert_eq!(by_name["unsubscribe.json"], [MAILINGS, UNSUBSCRIBES]);
    assert_eq!(by_name["group_unsubscribe.json"], [MAILINGS, UNSUBSCRIBES]);
    assert_eq!(by_name["group_resubscribe.json"], [SUBSCRIPTIONS]);
    assert_eq!(by_name["open.json"], [MAILINGS]);
}

#[test]
fn mandrill_events_form_field_one_record_per_element() {
    let all = fixtures("mandrill");
    let array = format!(
        "[{}]",
        all.values()
            .map(|v| String::from_utf8_lossy(v).into_owned())
            .collect::<Vec<_>>()
            .join(",")
    );
    let body: String = form_urlencoded::Serializer::new(String::new())
        .append_pair("mandrill_events", &array)
        .finish();
    let s = split(Source::Mandrill, body.as_bytes()).unwrap();
    assert_eq!(s.records.len(), all.len());
    assert_routing_exact(Source::Mandrill, &s.records);
    let by_name: BTreeMap<&str, Vec<&str>> = all.keys().map(|n| n.as_str()).zip(chains_of(&s.records)).collect();
    assert_eq!(by_name["hard_bounce.json"], [MAILINGS, BLOCKLISTS]);
    assert_eq!(by_name["soft_bounce.json"], [MAILINGS]);
    assert_eq!(by_name["unsub.json"], [MAILINGS, UNSUBSCRIBES]);
    assert_eq!(by_name["blacklist_add.json"], [BLOCKLISTS]);
    // A whitelist change blocks nothing and is no message event: dead-lettered by the fallback.
    assert!(s.records[all.keys().position(|n| n == "whitelist_add.json").unwrap()].unrouted);
    assert!(split(Source::Mandrill, b"mandrill_events=%5B%5D")
        .unwrap()
        .records
        .is_empty());
    assert!(split(Source::Mandrill, b"other=1")
        .unwrap_err()
        .to_string()
        .contains("mandrill_events"));
    assert!(split(Source::Mandrill, b"mandrill_events=%7B").is_err());
}

#[test]
fn mailgun_postmark_mailchimp_one_event_per_call() {
    for p in [Source::Mailgun, Source::Postmark, Source::Mailchimp] {
        let mut records = Vec::new();
        for (name, body) in fixtures(p.as_str()) {
            let s = split(p, &body).unwrap_or_else(|e| panic!("{name}: {e}"));
            assert_eq!(s.records.len(), 1, "{name}");
            assert_eq!(s.records[0].payload.bytes(), &body[..], "{name}");
            records.extend(s.records);
        }
        assert_routing_exact(p, &records);
    }
    let one = |p: Source, f: &str| split(p, &fixtures(p.as_str())[f]).unwrap().records.remove(0).chains;
    assert_eq!(one(Source::Mailgun, "failed_permanent.json"), [MAILINGS, BLOCKLISTS]);
    assert_eq!(one(Source::Mailgun, "failed_temporary.json"), [MAILINGS]);
    assert_eq!(one(Source::Mailgun, "unsubscribed.json"), [MAILINGS, UNSUBSCRIBES]);
    assert_eq!(one(Source::Postmark, "bounce.json"), [MAILINGS, BLOCKLISTS]);
    assert_eq!(
        one(Source::Postmark, "subscription_change_reactivation.json"),
        [SUBSCRIPTIONS]
    );
    assert_eq!(
        one(Source::Postmark, "subscription_change_hard_bounce.json"),
        [BLOCKLISTS]
    );
    assert_eq!(one(Source::Mailchimp, "subscribe.form"), [USERS, SUBSCRIPTIONS]);
    assert_eq!(
        one(Source::Mailchimp, "unsubscribe_abuse.form"),
        [UNSUBSCRIBES, BLOCKLISTS]
    );
    assert_eq!(one(Source::Mailchimp, "cleaned.form"), [BLOCKLISTS]);
}

#[test]
fn ses_one_record_per_recipient_and_per_topic() {
    let all = fixtures("ses");
    let mut records = Vec::new();
    for (name, body) in &all {
        let s = split(Source::Ses, body).unwrap_or_else(|e| panic!("{name}: {e}"));
        if name == "bounce_two_recipients.json" {
            assert_eq!(s.records.len(), 2);
            let emails: Vec<_> = s.records.iter().map(|r| r.email.clone().unwrap()).collect();
            assert_ne!(emails[0], emails[1]);
            for r in &s.records {
                let ev = esp::ses::read(&r.payload.bytes()).unwrap();
                assert_eq!(ev.email, r.email);
            }
        }
        records.extend(s.records);
    }
    assert_routing_exact(Source::Ses, &records);

    // A delivery to three recipients, as SNS delivers it: three records, each with the
    // recipient list cut to one, still inside the SNS envelope.
    let msg = r#"{"eventType":"Delivery","mail":{"messageId":"m-3","timestamp":"2024-05-01T10:00:00Z","destination":["a@x.com","b@x.com","c@x.com"]},
        "delivery":{"timestamp":"2024-05-01T10:00:02Z","recipients":["a@x.com","b@x.com","c@x.com"],"smtpResponse":"250 ok"}}"#;
    let sns = serde_json::json!({"Type":"Notification","MessageId":"n1","TopicArn":"arn:aws:sns:us-east-1:1:t","Message":msg,"Timestamp":"2024-05-01T10:00:03Z"});
    let s = split(Source::Ses, sns.to_string().as_bytes()).unwrap();
    assert_eq!(s.records.len(), 3);
    for (r, want) in s.records.iter().zip(["a@x.com", "b@x.com", "c@x.com"]) {
        let env: Value = serde_json::from_slice(&r.payload.bytes()).unwrap();
        assert_eq!(env["Type"], "Notification");
        let inner: Value = serde_json::from_str(env["Message"].as_str().unwrap()).unwrap();
        assert_eq!(inner["delivery"]["recipients"], serde_json::json!([want]));
        assert_eq!(r.email.as_deref(), Some(want));
        assert_eq!(r.chains, [MAILINGS]);
    }
    assert_routing_exact(Source::Ses, &s.records);

    // An opt-out of two topics: mailings takes the event once, unsubscribes one record a topic.
    let mut sub: Value = serde_json::from_slice(&all["subscription_topic.json"]).unwrap();
    let items = &mut sub["detail"]["subscription"]["newTopicPreferences"]["topicSubscriptionStatus"];
    items[1]["subscriptionStatus"] = "OptOut".into();
    let s = split(Source::Ses, sub.to_string().as_bytes()).unwrap();
    let chains: Vec<_> = chains_of(&s.records);
    assert_eq!(chains, [vec![UNSUBSCRIBES], vec![UNSUBSCRIBES], vec![MAILINGS]]);
    let lists: Vec<_> = s.records[..2]
        .iter()
        .map(|r| esp::ses::read(&r.payload.bytes()).unwrap().ses_opt_outs())
        .collect();
    assert_eq!(lists, [vec!["ContactListName:Deals"], vec!["ContactListName:News"]]);
    // (mailings would take the per-topic copies too, as duplicates of the event it has.)
    assert_routing(Source::Ses, &s.records, false);
    assert_routing_exact(Source::Ses, &s.records[2..]);

    // Subscription confirmations are answered, not published.
    let confirm = br#"{"Type":"SubscriptionConfirmation","MessageId":"m","Token":"t","TopicArn":"arn:aws:sns:us-east-1:1:t",
        "Message":"You have chosen to subscribe","SubscribeURL":"https://sns.us-east-1.amazonaws.com/?Action=ConfirmSubscription&Token=t","Timestamp":"2024-01-01T00:00:00Z"}"#;
    let s = split(Source::Ses, confirm).unwrap();
    assert!(s.records.is_empty());
    assert!(s.subscribe_url.unwrap().contains("ConfirmSubscription"));
}

/// An SES message as SNS delivers it, to `n` recipients, with what real ones carry besides:
/// the headers, `commonHeaders`, every recipient in `mail.destination`, the signature fields.
fn ses_bounce(n: usize) -> (Vec<u8>, Vec<String>) {
    let to: Vec<String> = (0..n).map(|i| format!("user{i:05}@example.com")).collect();
    let msg = serde_json::json!({
        "eventType": "Bounce",
        "bounce": {"bounceType": "Permanent", "bounceSubType": "General", "timestamp": "2024-05-01T10:00:02Z",
            "feedbackId": "fb-1", "reportingMTA": "dsn; a8-70.smtp-out.amazonses.com",
            "bouncedRecipients": to.iter().map(|a| serde_json::json!({"emailAddress": a, "action": "failed",
                "status": "5.1.1", "diagnosticCode": "smtp; 550 5.1.1 user unknown"})).collect::<Vec<_>>()},
        "mail": {"messageId": "m-bulk", "timestamp": "2024-05-01T10:00:00Z", "source": "news@example.com",
            "sendingAccountId": "123456789012", "destination": to,
            "headers": [{"name": "Subject", "value": "Spring sale"}, {"name": "X-Big", "value": "x".repeat(2000)}],
            "commonHeaders": {"subject": "Spring sale", "to": to}, "tags": {"campaign": ["spring-sale"]}}
    });
    let sns = serde_json::json!({"Type": "Notification", "MessageId": "n-bulk", "TopicArn": "arn:aws:sns:us-east-1:1:ses",
        "Subject": "Amazon SES Email Event Notification", "Message": msg.to_string(), "Timestamp": "2024-05-01T10:00:03Z",
        "SignatureVersion": "2", "Signature": "c2ln".repeat(86), "SigningCertURL": "https://sns.us-east-1.amazonaws.com/x.pem",
        "UnsubscribeURL": "https://sns.us-east-1.amazonaws.com/?Action=Unsubscribe"});
    (sns.to_string().into_bytes(), to)
}

#[test]
fn ses_cut_records_carry_only_what_the_chains_read() {
    let (body, to) = ses_bounce(3);
    let s = split(Source::Ses, &body).unwrap();
    assert_eq!(s.records.len(), 3);
    for (r, want) in s.records.iter().zip(&to) {
        let env: Value = serde_json::from_slice(&r.payload.bytes()).unwrap();
        let keys: Vec<&String> = env.as_object().unwrap().keys().collect();
        assert_eq!(
            keys,
            ["Message", "MessageId", "Subject", "Timestamp", "TopicArn", "Type"]
        );
        let inner: Value = serde_json::from_str(env["Message"].as_str().unwrap()).unwrap();
        let mail: Vec<&String> = inner["mail"].as_object().unwrap().keys().collect();
        assert_eq!(mail, ["messageId", "sendingAccountId", "source", "tags", "timestamp"]);
        assert_eq!(inner["bounce"]["bouncedRecipients"].as_array().unwrap().len(), 1);
        assert_eq!(inner["bounce"]["bouncedRecipients"][0]["emailAddress"], want.as_str());
        assert_eq!(inner["bounce"]["reportingMTA"], "dsn; a8-70.smtp-out.amazonses.com");
        assert_eq!(r.email.as_deref(), Some(want.as_str()));
        assert_eq!(r.chains, [MAILINGS, BLOCKLISTS]);
        let ev = esp::ses::read(&r.payload.bytes()).unwrap();
        assert_eq!(ev.campaign().as_deref(), Some("spring-sale"));
    }
    assert_routing_exact(Source::Ses, &s.records);

    // A send to two recipients, bare and as EventBridge: the list cut is mail.destination.
    let send = r#"{"eventType":"Send","send":{},"mail":{"messageId":"m-2","timestamp":"2024-05-01T10:00:00Z",
        "destination":["a@x.com","b@x.com"],"headers":[{"name":"To","value":"a@x.com, b@x.com"}]}}"#;
    let eb = format!(r#"{{"detail-type":"Email Sent","source":"aws.ses","detail":{send}}}"#);
    for body in [send.to_owned(), eb] {
        let s = split(Source::Ses, body.as_bytes()).unwrap();
        let got: Vec<Value> = s
            .records
            .iter()
            .map(|r| {
                let v: Value = serde_json::from_slice(&r.payload.bytes()).unwrap();
                v.get("detail").cloned().unwrap_or(v)
            })
            .collect();
        assert_eq!(got.len(), 2);
        for (v, want) in got.iter().zip(["a@x.com", "b@x.com"]) {
            assert_eq!(v["mail"]["destination"], serde_json::json!([want]));
            assert!(v["mail"].get("headers").is_none());
            assert_eq!(v["send"], serde_json::json!({}));
        }
        assert_routing_exact(Source::Ses, &s.records);
    }
}

#[test]
fn ses_of_one_recipient_is_published_as_received() {
    let body = &fixtures("ses")["bounce_sns.json"];
    let s = split(Source::Ses, body).unwrap();
    assert_eq!(s.records.len(), 1);
    assert_eq!(s.records[0].payload.bytes(), &body[..]);
}

/// Cutting a message to many recipients costs memory linear in the body: each record is the
/// recipient's entry and a few hundred bytes, never the message's other recipients. (Before,
/// each record copied the whole message but its list: 2 000 recipients took 350 MB.)
#[test]
fn ses_split_is_linear_in_the_body() {
    let (body, _) = ses_bounce(5000);
    let s = split(Source::Ses, &body).unwrap();
    assert_eq!(s.records.len(), 5000);
    let sizes: Vec<usize> = s.records.iter().map(|r| r.payload.bytes().len()).collect();
    let total: usize = sizes.iter().sum();
    let largest = sizes.iter().max().copied().unwrap_or_default();
    println!(
        "{} recipients, body {} bytes: records {total} bytes in all ({:.1}x the body), the largest {largest}",
        sizes.len(),
        body.len(),
        total as f64 / body.len() as f64
    );
    assert!(largest < 1500, "a record of {largest} bytes");
    assert!(
        total < 8 * body.len(),
        "{total} bytes of records for a body of {}",
        body.len()
    );
    // What the records hold until they are published: the shared part once, one entry each.
    let held: usize = s
        .records
        .iter()
        .map(|r| match &r.payload {
            Payload::Cut { entry, .. } => entry.len(),
            Payload::Whole(b) => b.len(),
        })
        .sum();
    assert!(held < body.len(), "{held} bytes held for a body of {}", body.len());

    // A body built to multiply (a large shared part over many tiny entries) is refused.
    let bomb = serde_json::json!({"eventType": "Bounce", "mail": {"messageId": "m"},
        "bounce": {"bounceType": "Permanent", "feedbackId": "f".repeat(100_000), "bouncedRecipients": vec![serde_json::json!({}); 20_000]}});
    let e = split(Source::Ses, bomb.to_string().as_bytes()).unwrap_err();
    assert_eq!(e.status(), 413);
    assert!(e.to_string().contains("becomes 20000 records"), "{e}");
}

#[test]
fn bad_bodies_are_400_with_a_reason() {
    for (p, body, want) in [
        (Source::Sendgrid, &b"not json"[..], "expected a JSON array"),
        (
            Source::Sendgrid,
            b"[{\"event\":\"open\"}, 3]",
            "event 1 of the batch is not a JSON object",
        ),
        (Source::Sendgrid, b"[{\"event\":", "not valid JSON"),
        (Source::Mailgun, b"[]", "expected one JSON event object"),
        (Source::Postmark, b"{\"RecordType\":", "not valid JSON"),
        (Source::Mailchimp, b"  ", "empty body"),
        (
            Source::Ses,
            b"{\"Type\":\"Notification\",\"Message\":\"nope\"}",
            "not SES JSON",
        ),
        (Source::Ses, b"{\"Type\":\"Other\"}", "unknown SNS message Type"),
    ] {
        let e = split(p, body).unwrap_err();
        assert_eq!(e.status(), 400);
        assert!(e.to_string().contains(want), "{}: {e}", p.as_str());
    }
    // An event the reader cannot read is the chain's to dead-letter, not a 400.
    let s = split(Source::Sendgrid, b"[{\"no_event\":1}]").unwrap();
    assert!(s.records[0].unrouted);
    assert_eq!(s.records[0].chains, [MAILINGS]);
}
