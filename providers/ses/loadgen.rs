//! Amazon SES in the load generator: an SNS notification, an EventBridge event or the SES
//! JSON itself, one recipient (and, for unsubscribes, one topic) a record, as the gateway
//! splits them. Identity: `<messageId>:<type>:<recipient>`, plus the time for repeating types
//! and the list for unsubscribes.
//!
//! Compiled into `tributary loadgen` (services/ctl/src/loadgen/formats.rs) by
//! `tributary_engine::provider_modules!(loadgen, ..)` as a child module of `formats`: `super` is
//! that module (`Ctx`, `Built`, `Identity` and the shared helpers). Every provider's loadgen.rs
//! has the same items: `CHAINS`, `mix_weight`, `build`, `malformed` and (for the tests)
//! `webhook_body`.

use super::{email_of, format_rfc3339, from_json, iso_ms, Built, Ctx, Identity, AGENTS, CAMPAIGNS, URLS};
use rand::Rng;
use serde_json::{json, Map, Value};
use tributary_engine::chains::{BLOCKLISTS, MAILINGS, UNSUBSCRIBES};

/// The chains that read this provider's events: those `tributary loadgen` makes them for.
pub(super) const CHAINS: &[&str] = &[MAILINGS.name, UNSUBSCRIBES.name, BLOCKLISTS.name];

/// This provider's weight in a chain's `mix` (against json 20 and csv 10, users: 45 and 25).
pub(super) fn mix_weight(chain: &str) -> u32 {
    match chain {
        "mailings" => 15,
        // An opt-out of several topics is one record a topic: fewer events, as many records.
        "unsubscribes" => 8,
        _ => 12,
    }
}

/// The record(s) of one event, as the gateway publishes them.
pub(super) fn build(cx: &mut Ctx<'_>) -> Vec<Built> {
    event(cx)
}

/// Makes `b` (the first record of an event) not well-formed in this provider's format.
pub(super) fn malformed(b: &mut Built) {
    // Cut short, as by a proxy's body limit.
    super::cut_short(b)
}

/// The webhook call that carries this one event: what the gateway splits back into it (the
/// unit tests send it through the gateway's splitter).
#[cfg(test)]
pub(super) fn webhook_body(payload: &[u8]) -> Vec<u8> {
    payload.to_vec()
}

#[derive(Clone, Copy)]
enum Envelope {
    Sns,
    EventBridge,
    Bare,
}

fn wrap(cx: &mut Ctx<'_>, env: Envelope, message: Value, detail_type: &str) -> Value {
    match env {
        Envelope::Sns => json!({
            "Type": "Notification",
            "MessageId": cx.uuid(),
            "TopicArn": "arn:aws:sns:us-east-1:123456789012:ses-events",
            "Subject": "Amazon SES Email Event Notification",
            "Message": message.to_string(),
            "Timestamp": iso_ms(cx.t + 1, 123),
            "SignatureVersion": "1",
            "Signature": cx.b64(40),
            "SigningCertURL": "https://sns.us-east-1.amazonaws.com/SimpleNotificationService-0000.pem",
            "UnsubscribeURL": "https://sns.us-east-1.amazonaws.com/?Action=Unsubscribe"
        }),
        Envelope::EventBridge => json!({
            "version": "0",
            "id": cx.uuid(),
            "detail-type": detail_type,
            "source": "aws.ses",
            "account": "123456789012",
            "time": format_rfc3339(cx.t + 1),
            "region": "us-east-1",
            "resources": ["arn:aws:ses:us-east-1:123456789012:configuration-set/default"],
            "detail": message
        }),
        Envelope::Bare => message,
    }
}

fn ses_message_id(cx: &mut Ctx<'_>) -> String {
    format!(
        "010001{}-{}-{}-{}-{}-{}-000000",
        cx.hex(10),
        cx.hex(8),
        cx.hex(4),
        cx.hex(4),
        cx.hex(4),
        cx.hex(12)
    )
}

fn ses_mail(cx: &mut Ctx<'_>, message_id: &str, sent: i64, destination: &[String]) -> Value {
    let mut tags = json!({
        "ses:configuration-set": ["default"],
        "ses:source-ip": ["192.0.2.10"],
        "ses:from-domain": ["example.com"],
        "ses:caller-identity": ["ses-sender"]
    });
    if cx.chance(0.6) {
        tags["campaign"] = json!([cx.pick(CAMPAIGNS)]);
    }
    json!({
        "timestamp": iso_ms(sent, cx.rng.random_range(0..1000)),
        "source": "Acme News <news@example.com>",
        "sourceArn": "arn:aws:ses:us-east-1:123456789012:identity/example.com",
        "sendingAccountId": "123456789012",
        "messageId": message_id,
        "destination": destination,
        "headersTruncated": false,
        "commonHeaders": {"from": ["Acme News <news@example.com>"], "to": destination, "messageId": message_id, "subject": "Your weekly digest"},
        "tags": tags
    })
}

fn event(cx: &mut Ctx<'_>) -> Vec<Built> {
    if cx.chain == "unsubscribes" {
        return ses_subscription(cx);
    }
    let kinds: &[&str] = match cx.chain {
        "mailings" => &[
            "Send",
            "Delivery",
            "Delivery",
            "Delivery",
            "Open",
            "Open",
            "Click",
            "Bounce",
            "BounceTransient",
            "BounceSuppressed",
            "Complaint",
            "DeliveryDelay",
            "Reject",
            "Rendering Failure",
        ],
        _ => &["Bounce", "Bounce", "Complaint"],
    };
    let kind = cx.pick(kinds);
    let email = cx.email(true);
    // A message to several recipients: one record each, its list cut to that recipient.
    let mut recipients: Vec<String> = email.iter().cloned().collect();
    if !cx.faulty() && matches!(kind, "Send" | "Delivery" | "Bounce" | "Reject") && cx.chance(0.2) {
        for _ in 0..cx.rng.random_range(1..3) {
            let p = cx.other_person();
            recipients.push(email_of(p));
        }
    }
    let mid = ses_message_id(cx);
    let sent = cx.t - cx.rng.random_range(1..300);
    let notification = matches!(kind, "Bounce" | "Complaint" | "Delivery") && cx.chance(0.3);
    let (type_name, snake, detail_type) = match kind {
        "BounceTransient" | "BounceSuppressed" => ("Bounce", "bounce", "Email Bounced"),
        "Send" => ("Send", "send", "Email Sent"),
        "Delivery" => ("Delivery", "delivery", "Email Delivered"),
        "Open" => ("Open", "open", "Email Opened"),
        "Click" => ("Click", "click", "Email Clicked"),
        "Bounce" => ("Bounce", "bounce", "Email Bounced"),
        "Complaint" => ("Complaint", "complaint", "Email Complaint Received"),
        "DeliveryDelay" => ("DeliveryDelay", "delivery_delay", "Email Delivery Delayed"),
        "Reject" => ("Reject", "reject", "Email Rejected"),
        _ => ("Rendering Failure", "rendering_failure", "Email Rendering Failed"),
    };
    let event_ts = iso_ms(cx.t, cx.rng.random_range(0..1000));
    let ip = cx.ip();
    let agent = cx.pick(AGENTS);
    let url = cx.pick(URLS);
    let env = match cx.rng.random_range(0..4) {
        0 | 1 => Envelope::Sns,
        2 => Envelope::EventBridge,
        _ => Envelope::Bare,
    };
    let targets: Vec<Option<String>> = if recipients.is_empty() {
        vec![None]
    } else {
        recipients.iter().cloned().map(Some).collect()
    };
    let mut out = Vec::new();
    for r in targets {
        let one: Vec<String> = r.iter().cloned().collect();
        // The gateway cuts `mail.destination` only where it is the recipient list.
        let destination = match kind {
            "Send" | "Reject" | "Rendering Failure" | "Open" | "Click" => one.clone(),
            _ => recipients.clone(),
        };
        let mut m = Map::new();
        m.insert(
            (if notification { "notificationType" } else { "eventType" }).into(),
            json!(type_name),
        );
        m.insert("mail".into(), ses_mail(cx, &mid, sent, &destination));
        let listed = |key: &str| -> Value { Value::Array(one.iter().map(|e| json!({key: e})).collect()) };
        let (key, obj) = match kind {
            "Send" => ("send", json!({})),
            "Delivery" => (
                "delivery",
                json!({"timestamp": event_ts, "processingTimeMillis": 1_042, "recipients": one,
                "smtpResponse": "250 2.6.0 Message received", "remoteMtaIp": "203.0.113.25", "reportingMTA": "a8-70.smtp-out.amazonses.com"}),
            ),
            "Bounce" | "BounceTransient" | "BounceSuppressed" => {
                let (bt, bst, status, diag) = match kind {
                    "Bounce" => (
                        "Permanent",
                        if cx.chance(0.8) { "General" } else { "NoEmail" },
                        "5.1.1",
                        "smtp; 550 5.1.1 user unknown",
                    ),
                    "BounceTransient" => ("Transient", "MailboxFull", "4.2.2", "smtp; 452 4.2.2 mailbox full"),
                    _ => (
                        "Permanent",
                        "Suppressed",
                        "5.1.1",
                        "Amazon SES has suppressed sending to this address",
                    ),
                };
                let mut list = listed("emailAddress");
                if let Value::Array(items) = &mut list {
                    for it in items {
                        it["action"] = json!("failed");
                        it["status"] = json!(status);
                        it["diagnosticCode"] = json!(diag);
                    }
                }
                (
                    "bounce",
                    json!({"bounceType": bt, "bounceSubType": bst, "bouncedRecipients": list, "timestamp": event_ts,
                    "feedbackId": format!("0100019{}-000000", cx.hex(20)), "reportingMTA": "dsn; a8-70.smtp-out.amazonses.com"}),
                )
            }
            "Complaint" => {
                let sub = if cx.chain == "mailings" && cx.chance(0.1) {
                    json!("OnAccountSuppressionList")
                } else {
                    Value::Null
                };
                (
                    "complaint",
                    json!({"complainedRecipients": listed("emailAddress"), "timestamp": event_ts,
                    "feedbackId": format!("0100019{}-000000", cx.hex(20)), "complaintSubType": sub,
                    "userAgent": "Yahoo!-Mail-Feedback/2.0", "complaintFeedbackType": "abuse", "arrivalDate": iso_ms(sent + 5, 0)}),
                )
            }
            "DeliveryDelay" => {
                let mut list = listed("emailAddress");
                if let Value::Array(items) = &mut list {
                    for it in items {
                        it["status"] = json!("4.4.1");
                        it["diagnosticCode"] = json!("smtp; 421 4.4.0 Unable to lookup DNS for example.com");
                    }
                }
                (
                    "deliveryDelay",
                    json!({"timestamp": event_ts, "delayType": "TransientCommunicationFailure",
                    "expirationTime": iso_ms(cx.t + 3600, 0), "delayedRecipients": list}),
                )
            }
            "Open" => (
                "open",
                json!({"ipAddress": ip, "timestamp": event_ts, "userAgent": agent}),
            ),
            "Click" => (
                "click",
                json!({"ipAddress": ip, "timestamp": event_ts, "userAgent": agent, "link": url,
                "linkTags": {"samplekey0": ["samplevalue0"]}}),
            ),
            "Reject" => ("reject", json!({"reason": "Bad content"})),
            _ => (
                "failure",
                json!({"errorMessage": "Attribute 'name' is not present in the rendering data.", "templateName": "digest"}),
            ),
        };
        m.insert(key.into(), obj);
        let mut id = format!("{mid}:{snake}");
        if let Some(e) = &r {
            id.push(':');
            id.push_str(&e.to_lowercase());
        }
        if matches!(snake, "open" | "click" | "delivery_delay") {
            id.push(':');
            id.push_str(&event_ts);
        }
        let body = wrap(cx, env, Value::Object(m), detail_type);
        out.push(from_json(body, r, Identity::Known(id)));
    }
    out
}

/// SES `Subscription` events (list management) that opt the recipient out.
fn ses_subscription(cx: &mut Ctx<'_>) -> Vec<Built> {
    const TOPICS: [&str; 4] = ["Deals", "News", "Events", "Tips"];
    let email = cx.email(true);
    let mid = ses_message_id(cx);
    let sent = cx.t - cx.rng.random_range(600..3 * 86_400);
    let list = cx.pick(&["Newsletter", "ProductUpdates", "AcmeAll"]);
    let source = cx.pick(&["UnsubscribeLink", "UnsubscribeHeader"]);
    let event_ts = iso_ms(cx.t, cx.rng.random_range(0..1000));
    let destination: Vec<String> = email.iter().cloned().collect();
    let status = |topics: &[&str], out: &[&str]| -> Value {
        Value::Array(
            topics
                .iter()
                .map(
                    |t| json!({"topicName": t, "subscriptionStatus": if out.contains(t) { "OptOut" } else { "OptIn" }}),
                )
                .collect(),
        )
    };
    // (new preferences, old preferences, list id) per record.
    let mut records: Vec<(Value, Value, String)> = Vec::new();
    match if cx.faulty() { 1 } else { cx.rng.random_range(0..3) } {
        0 => records.push((
            json!({"unsubscribeAll": true, "topicSubscriptionStatus": status(&TOPICS, &[])}),
            json!({"unsubscribeAll": false, "topicSubscriptionStatus": status(&TOPICS, &[])}),
            list.to_owned(),
        )),
        1 => {
            let topic = cx.pick(&TOPICS);
            records.push((
                json!({"unsubscribeAll": false, "topicSubscriptionStatus": status(&TOPICS, &[topic])}),
                json!({"unsubscribeAll": false, "topicSubscriptionStatus": status(&TOPICS, &[])}),
                format!("{list}:{topic}"),
            ));
        }
        _ => {
            // Out of several topics at once: the gateway sends one record a topic, each with
            // the topic lists cut to that topic.
            let n = cx.rng.random_range(2..4);
            let start = cx.rng.random_range(0..TOPICS.len());
            for k in 0..n {
                let topic = TOPICS[(start + k) % TOPICS.len()];
                records.push((
                    json!({"unsubscribeAll": false, "topicSubscriptionStatus": status(&[topic], &[topic])}),
                    json!({"unsubscribeAll": false, "topicSubscriptionStatus": status(&[topic], &[])}),
                    format!("{list}:{topic}"),
                ));
            }
        }
    }
    let env = match cx.rng.random_range(0..3) {
        0 => Envelope::Sns,
        1 => Envelope::EventBridge,
        _ => Envelope::Bare,
    };
    let mut out = Vec::new();
    for (new, old, list_id) in records {
        let message = json!({
            "eventType": "Subscription",
            "mail": ses_mail(cx, &mid, sent, &destination),
            "subscription": {"contactList": list, "timestamp": event_ts, "source": source,
                "newTopicPreferences": new, "oldTopicPreferences": old}
        });
        let mut id = format!("{mid}:subscription");
        if let Some(e) = &email {
            id.push(':');
            id.push_str(&e.to_lowercase());
        }
        id.push(':');
        id.push_str(&list_id);
        let body = wrap(cx, env, message, "Subscription");
        out.push(from_json(body, email.clone(), Identity::Known(id)));
    }
    out
}
