//! Amazon SNS message signatures (how SES events reach an HTTP endpoint). The signature is
//! RSA PKCS#1 v1.5 over the canonical string of the message: `Name\nvalue\n` for `Message`,
//! `MessageId`, `Subject` (notifications, when present), `SubscribeURL` (confirmations),
//! `Timestamp`, `Token` (confirmations), `TopicArn`, `Type`, in that order; with SHA1 for
//! `SignatureVersion` 1 and SHA256 for 2. The gateway never fetches `SigningCertURL` (it would
//! let any caller choose the key): the certificates are configured as PEM files. The signed
//! `Timestamp` (when SNS published the message) must lie inside the replay window, checked
//! by the caller with [`Window`].
//!
//! Also how one SES call becomes single events ([`split`]): one record per recipient.

use crate::error::{Error, Result};
use crate::signatures::replay::{Replays, Reservation};
use crate::signatures::{b64, forged, missing, Request, Window};
use crate::split::{read, route, Around, Payload, Record, Split};
use rsa::pkcs1v15::{Signature, VerifyingKey};
use rsa::pkcs8::DecodePublicKey;
use rsa::signature::Verifier;
use rsa::RsaPublicKey;
use serde_json::value::RawValue;
use serde_json::{Map, Value};
use std::borrow::Cow;
use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use tributary_engine::Source;
use x509_cert::der::{DecodePem, Encode};

/// The unsubscribes chain, which takes one record per SES topic opted out of.
const UNSUBSCRIBES: &str = tributary_engine::chains::UNSUBSCRIBES.name;

/// The tenant's secret in the settings file, `[tenants.<id>.ses]`: the SNS signing
/// certificates (PEM files) and, optionally, the allowed topics.
#[derive(Debug, Clone, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SecretFile {
    pub certificates: Vec<std::path::PathBuf>,
    #[serde(default)]
    pub topic_arns: Vec<String>,
}

/// The secret, ready to check requests.
pub type Secret = SnsKeys;

/// The keys of the certificates the settings file's entry names; each error names its file.
pub fn secret(file: SecretFile) -> std::result::Result<Secret, Vec<String>> {
    let mut errors = Vec::new();
    if file.certificates.is_empty() {
        errors.push("ses.certificates is empty".to_owned());
    }
    let mut keys = Vec::new();
    for p in &file.certificates {
        match std::fs::read_to_string(p)
            .map_err(|e| e.to_string())
            .and_then(|pem| key_from_pem(&pem))
        {
            Ok(k) => keys.push(k),
            Err(e) => errors.push(format!("ses certificate {}: {e}", p.display())),
        }
    }
    if errors.is_empty() {
        Ok(SnsKeys {
            keys,
            topic_arns: file.topic_arns,
        })
    } else {
        Err(errors)
    }
}

/// Checks the request against the tenant's secret (and signed timestamps against the replay
/// window).
pub fn check<'r>(
    keys: &Secret,
    req: &Request<'_>,
    window: &Window,
    _replays: &'r Replays,
) -> Result<Option<Reservation<'r>>> {
    let ts = verify_body(keys, req.body)?;
    window.fresh_iso("ses", &ts).map(|_| None)
}

#[derive(Debug, Clone)]
pub struct SnsKeys {
    pub keys: Vec<RsaPublicKey>,
    /// When not empty, only messages of these topics are taken.
    pub topic_arns: Vec<String>,
}

/// The RSA key of a PEM certificate (as SNS publishes them) or PEM public key.
pub fn key_from_pem(pem: &str) -> Result<RsaPublicKey, String> {
    if pem.contains("BEGIN CERTIFICATE") {
        let cert = x509_cert::Certificate::from_pem(pem.as_bytes()).map_err(|e| format!("not a certificate: {e}"))?;
        let spki = cert
            .tbs_certificate
            .subject_public_key_info
            .to_der()
            .map_err(|e| format!("certificate key: {e}"))?;
        RsaPublicKey::from_public_key_der(&spki).map_err(|e| format!("not an RSA certificate: {e}"))
    } else {
        RsaPublicKey::from_public_key_pem(pem).map_err(|e| format!("not an RSA public key: {e}"))
    }
}

/// Is this body an SNS message (rather than raw message delivery or an EventBridge event)?
pub fn is_sns(obj: &Map<String, Value>) -> bool {
    obj.contains_key("Type") && obj.contains_key("MessageId") && obj.contains_key("TopicArn")
}

/// Verifies the SNS message in `body` and answers its (signed) `Timestamp`.
pub fn verify_body(keys: &SnsKeys, body: &[u8]) -> Result<String> {
    let obj = match serde_json::from_slice::<Value>(body) {
        Ok(Value::Object(m)) if is_sns(&m) => m,
        _ => {
            return Err(missing(
                "ses",
                "an SNS message envelope (with SNS certificates configured, raw delivery is refused)",
            ))
        }
    };
    verify(keys, &obj)?;
    Ok(obj
        .get("Timestamp")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_owned())
}

pub fn verify(keys: &SnsKeys, msg: &Map<String, Value>) -> Result<()> {
    let s = |k: &str| msg.get(k).and_then(Value::as_str);
    let sig = s("Signature").ok_or_else(|| missing("ses", "an SNS Signature"))?;
    let sig = b64(sig)
        .and_then(|d| Signature::try_from(d.as_slice()).ok())
        .ok_or_else(|| forged("ses", "SNS Signature (not base64)"))?;
    let text = canonical(msg).ok_or_else(|| forged("ses", "SNS message (fields missing for its Type)"))?;
    if !keys.topic_arns.is_empty() && !keys.topic_arns.iter().any(|t| Some(t.as_str()) == s("TopicArn")) {
        return Err(forged("ses", "SNS TopicArn (not one of the tenant's topic_arns)"));
    }
    let ok = match s("SignatureVersion").unwrap_or("1") {
        "1" => keys.keys.iter().any(|k| {
            VerifyingKey::<sha1::Sha1>::new(k.clone())
                .verify(text.as_bytes(), &sig)
                .is_ok()
        }),
        "2" => keys.keys.iter().any(|k| {
            VerifyingKey::<sha2::Sha256>::new(k.clone())
                .verify(text.as_bytes(), &sig)
                .is_ok()
        }),
        _ => return Err(forged("ses", "SNS SignatureVersion (not 1 or 2)")),
    };
    if ok {
        Ok(())
    } else {
        Err(forged("ses", "SNS Signature"))
    }
}

/// The string SNS signs; `None` when a field its `Type` needs is missing.
pub fn canonical(msg: &Map<String, Value>) -> Option<String> {
    let ty = msg.get("Type")?.as_str()?;
    let fields: &[(&str, bool)] = match ty {
        "Notification" => &[
            ("Message", true),
            ("MessageId", true),
            ("Subject", false),
            ("Timestamp", true),
            ("TopicArn", true),
            ("Type", true),
        ],
        "SubscriptionConfirmation" | "UnsubscribeConfirmation" => &[
            ("Message", true),
            ("MessageId", true),
            ("SubscribeURL", true),
            ("Timestamp", true),
            ("Token", true),
            ("TopicArn", true),
            ("Type", true),
        ],
        _ => return None,
    };
    let mut out = String::new();
    for (name, required) in fields {
        match msg.get(*name).and_then(Value::as_str) {
            Some(v) => {
                out.push_str(name);
                out.push('\n');
                out.push_str(v);
                out.push('\n');
            }
            None if *required => return None,
            None => {}
        }
    }
    Some(out)
}

/// How much the records of one SES message may weigh, as a multiple of its body. A message
/// naming many recipients becomes a record per recipient, each repeating what they share
/// (the event type, the message's identity, the event object without its list): a few
/// hundred bytes for each list entry of at least a few dozen, some 5 to 15 times the body.
/// A body built to multiply (a large shared part over many tiny entries) is refused with 413
/// instead of being held in memory.
const SES_SPLIT_MAX_FACTOR: usize = 32;
/// Plus this much, so that no small message is ever refused.
const SES_SPLIT_SLACK: usize = 1 << 20;

/// Of the SES `mail` object, what a cut record keeps: the message's identity, time, sender
/// and tags (the campaign). Not `destination` (every recipient of the message), `headers` or
/// `commonHeaders`: they grow with the message, so a copy in each recipient's record would
/// make memory and Kafka traffic grow with the square of the recipients, and no chain reads
/// them.
const SES_MAIL_KEPT: &[&str] = &[
    "messageId",
    "timestamp",
    "source",
    "sourceArn",
    "sourceIp",
    "sendingAccountId",
    "callerIdentity",
    "tags",
];

/// Of the SNS envelope, what a cut record keeps: the notification's identity. Not its
/// signature fields: the signature covers the whole message, which the cut one is not.
const SNS_ENVELOPE_KEPT: &[&str] = &["Type", "MessageId", "TopicArn", "Subject", "Timestamp"];

/// A JSON object's fields, their values as the text received.
type RawMap<'a> = BTreeMap<String, &'a RawValue>;

/// SES, as SNS delivers it (a `Notification` whose `Message` is the SES JSON; confirmations),
/// as an EventBridge event, or raw: one record per recipient.
///
/// A message about one recipient (or whose event names none: opens, clicks, subscription
/// changes) is published as received. One naming several is cut, in memory linear in the
/// body: its JSON is read as raw text, never as a tree of values, and each recipient's record
/// is written from the text the recipients share (the event type, the event object, the
/// `mail` fields in [`SES_MAIL_KEPT`], the envelope's identity) around that recipient's entry.
pub fn split(body: &[u8], out: &mut Split) -> Result<()> {
    let outer: RawMap = serde_json::from_slice(body).map_err(|e| crate::split::bad_json("ses", e))?;
    let (message, wrap): (Cow<str>, Wrap) = if let Some(ty) = outer.get("Type").and_then(|v| string(v)) {
        match ty.as_str() {
            "Notification" => {
                let m = match outer.get("Message") {
                    Some(m) if m.get().starts_with('"') => Cow::Owned(string(m).unwrap_or_default()),
                    Some(m) if m.get().starts_with('{') => Cow::Borrowed(m.get()),
                    _ => return Err(Error::bad("ses: SNS Notification without a Message")),
                };
                (m, Wrap::sns(&outer))
            }
            "SubscriptionConfirmation" => {
                let url = outer
                    .get("SubscribeURL")
                    .and_then(|v| string(v))
                    .ok_or_else(|| Error::bad("ses: SNS SubscriptionConfirmation without a SubscribeURL"))?;
                out.subscribe_url = Some(url);
                return Ok(());
            }
            "UnsubscribeConfirmation" => {
                out.note = Some("SNS UnsubscribeConfirmation: nothing to publish".into());
                return Ok(());
            }
            other => {
                return Err(Error::bad(format!(
                    "ses: unknown SNS message Type '{}'",
                    tributary_engine::normalize::truncate(other, 40)
                )))
            }
        }
    } else if outer.contains_key("detail-type") {
        match outer.get("detail") {
            Some(d) if d.get().starts_with('{') => (Cow::Borrowed(d.get()), Wrap::event_bridge(&outer)),
            _ => return Err(Error::bad("ses: EventBridge event without a detail object")),
        }
    } else {
        let text = std::str::from_utf8(body).map_err(|e| Error::bad(format!("ses: the body is not UTF-8: {e}")))?;
        (Cow::Borrowed(text), Wrap::bare())
    };
    let msg: RawMap =
        serde_json::from_str(&message).map_err(|e| Error::bad(format!("ses: the SNS Message is not SES JSON: {e}")))?;
    let kind = msg
        .get("eventType")
        .or_else(|| msg.get("notificationType"))
        .and_then(|v| string(v))
        .unwrap_or_default()
        .to_ascii_lowercase()
        .replace(['_', '-', ' '], "");
    // Where the event names its recipients. Opens, clicks and subscription events do not say
    // which recipient acted: they stay whole (the chain refuses them when the message had
    // several recipients).
    let (object_key, list_key) = match kind.as_str() {
        "bounce" => ("bounce", "bouncedRecipients"),
        "complaint" => ("complaint", "complainedRecipients"),
        "delivery" => ("delivery", "recipients"),
        "deliverydelay" => ("deliveryDelay", "delayedRecipients"),
        "open" | "click" | "subscription" => ("", ""),
        _ => ("mail", "destination"),
    };
    let Some((object, recipients)) = recipient_list(&msg, object_key, list_key)? else {
        let mut rec = route(Source::Ses, body.to_vec());
        if kind == "subscription" {
            per_topic(&message, &wrap, &mut rec, out, body.len())?;
        }
        out.records.push(rec);
        return Ok(());
    };
    // The message around one recipient's entry: `head` + entry + `]}}`.
    let mut head = String::from("{");
    for (k, v) in &msg {
        match k.as_str() {
            k if k == object_key => {}
            "mail" => field(&mut head, k, &trimmed_mail(v)?),
            _ => field(&mut head, k, v.get()),
        }
    }
    field(&mut head, object_key, "{");
    for (k, v) in &object {
        if k != list_key {
            field(&mut head, k, v.get());
        }
    }
    field(&mut head, list_key, "[");
    let tail = "]}}";
    let entries: usize = recipients.iter().map(|r| r.get().len()).sum();
    within_budget(
        recipients.len(),
        wrap.len() + head.len() + tail.len(),
        entries,
        body.len(),
    )?;
    let around: Arc<dyn Around> = Arc::new(Cut { wrap, head, tail });
    for r in recipients {
        out.records.push(route(
            Source::Ses,
            Payload::Cut {
                around: around.clone(),
                entry: r.get().into(),
            },
        ));
    }
    Ok(())
}

/// The object at `object_key` of the SES message (of `mail`, only [`SES_MAIL_KEPT`]) and its
/// list `list_key`, when that lists more than one recipient.
fn recipient_list<'m>(
    msg: &RawMap<'m>,
    object_key: &str,
    list_key: &str,
) -> Result<Option<(RawMap<'m>, Vec<&'m RawValue>)>> {
    let Some(object) = msg.get(object_key).filter(|o| o.get().starts_with('{')) else {
        return Ok(None);
    };
    let mut object: RawMap<'m> =
        serde_json::from_str(object.get()).map_err(|e| Error::bad(format!("ses: {object_key}: {e}")))?;
    let Some(list) = object.get(list_key).filter(|l| l.get().starts_with('[')) else {
        return Ok(None);
    };
    let recipients: Vec<&'m RawValue> =
        serde_json::from_str(list.get()).map_err(|e| Error::bad(format!("ses: {object_key}.{list_key}: {e}")))?;
    if recipients.len() < 2 {
        return Ok(None);
    }
    if object_key == "mail" {
        object.retain(|k, _| k == list_key || SES_MAIL_KEPT.contains(&k.as_str()));
    }
    Ok(Some((object, recipients)))
}

/// The `mail` object with only [`SES_MAIL_KEPT`].
fn trimmed_mail(mail: &RawValue) -> Result<String> {
    if !mail.get().starts_with('{') {
        return Ok(mail.get().to_owned());
    }
    let fields: RawMap = serde_json::from_str(mail.get()).map_err(|e| Error::bad(format!("ses: mail: {e}")))?;
    let mut out = String::from("{");
    for (k, v) in fields.iter().filter(|(k, _)| SES_MAIL_KEPT.contains(&k.as_str())) {
        field(&mut out, k, v.get());
    }
    out.push('}');
    Ok(out)
}

/// An SES opt-out of several topics: the unsubscribes chain takes one record a topic. Each
/// is the message with that topic's preference entries only (and the trimmed `mail`); the
/// entries are grouped by topic once, so no record copies the others'.
fn per_topic(message: &str, wrap: &Wrap, rec: &mut Record, out: &mut Split, body_len: usize) -> Result<()> {
    let topics = read(Source::Ses, &rec.payload.bytes())
        .filter(|ev| ev.kind == "subscription")
        .map(|ev| ev.ses_opt_outs())
        .unwrap_or_default();
    if topics.len() < 2 || !rec.chains.contains(&UNSUBSCRIBES) {
        return Ok(());
    }
    rec.chains.retain(|c| *c != UNSUBSCRIBES);
    let mut shared: Map<String, Value> =
        serde_json::from_str(message).map_err(|e| Error::bad(format!("ses: the SES message: {e}")))?;
    // The recipient of a subscription event is `mail.destination` (of one address, or the
    // chain refuses the event): kept with the rest.
    if let Some(Value::Object(mail)) = shared.get_mut("mail") {
        mail.retain(|k, _| k == "destination" || SES_MAIL_KEPT.contains(&k.as_str()));
    }
    const PREFS: [&str; 2] = ["newTopicPreferences", "oldTopicPreferences"];
    fn statuses<'m>(m: &'m mut Map<String, Value>, prefs: &str) -> Option<&'m mut Vec<Value>> {
        match m
            .get_mut("subscription")?
            .get_mut(prefs)?
            .get_mut("topicSubscriptionStatus")?
        {
            Value::Array(items) => Some(items),
            _ => None,
        }
    }
    let mut by_topic: Vec<HashMap<String, Vec<Value>>> = Vec::new();
    for prefs in PREFS {
        let mut groups: HashMap<String, Vec<Value>> = HashMap::new();
        for item in statuses(&mut shared, prefs).map(std::mem::take).unwrap_or_default() {
            let name = item
                .get("topicName")
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_owned();
            groups.entry(name).or_default().push(item);
        }
        by_topic.push(groups);
    }
    let shared_len = wrap.len() + serde_json::to_string(&shared).map_or(0, |s| s.len());
    within_budget(topics.len(), shared_len, 0, body_len)?;
    for t in topics {
        let topic = t.split_once(':').map_or(t.as_str(), |(_, t)| t);
        let mut cut = shared.clone();
        for (prefs, groups) in PREFS.iter().zip(&by_topic) {
            if let Some(items) = statuses(&mut cut, prefs) {
                *items = groups.get(topic).cloned().unwrap_or_default();
            }
        }
        let text = serde_json::to_string(&Value::Object(cut)).expect("JSON values serialize");
        out.records.push(Record {
            payload: Payload::Whole(wrap.around(&[&text])),
            email: rec.email.clone(),
            chains: vec![UNSUBSCRIBES],
            unrouted: false,
        });
    }
    Ok(())
}

/// Refuses a split whose records would weigh more than [`SES_SPLIT_MAX_FACTOR`] times the body.
fn within_budget(records: usize, shared: usize, entries: usize, body_len: usize) -> Result<()> {
    let total = records.saturating_mul(shared).saturating_add(entries);
    let budget = SES_SPLIT_MAX_FACTOR
        .saturating_mul(body_len)
        .saturating_add(SES_SPLIT_SLACK);
    if total > budget {
        return Err(Error::TooLarge(format!(
            "ses: the message becomes {records} records of {} bytes in all, more than {SES_SPLIT_MAX_FACTOR} times its {body_len} bytes: refused",
            total
        )));
    }
    Ok(())
}

/// What the cut records of one SES message share: the envelope and the message around the
/// recipient's entry (`head` + entry + `tail`).
#[derive(Debug)]
struct Cut {
    wrap: Wrap,
    head: String,
    tail: &'static str,
}

impl Around for Cut {
    fn around(&self, entry: &str) -> Vec<u8> {
        self.wrap.around(&[&self.head, entry, self.tail])
    }
}

/// How a cut SES message is put back into the shape it was received in: the envelope's text
/// before and after it, and whether it sits in the envelope as a JSON string (SNS).
#[derive(Debug)]
struct Wrap {
    head: String,
    tail: &'static str,
    escaped: bool,
}

impl Wrap {
    /// The SNS envelope's [`SNS_ENVELOPE_KEPT`] fields, the message as the string `Message`.
    fn sns(outer: &RawMap<'_>) -> Wrap {
        let mut head = String::from("{");
        for (k, v) in outer.iter().filter(|(k, _)| SNS_ENVELOPE_KEPT.contains(&k.as_str())) {
            field(&mut head, k, v.get());
        }
        field(&mut head, "Message", "\"");
        Wrap {
            head,
            tail: "\"}",
            escaped: true,
        }
    }

    /// The EventBridge envelope, the message as the object `detail`.
    fn event_bridge(outer: &RawMap<'_>) -> Wrap {
        let mut head = String::from("{");
        for (k, v) in outer.iter().filter(|(k, _)| *k != "detail") {
            field(&mut head, k, v.get());
        }
        field(&mut head, "detail", "");
        Wrap {
            head,
            tail: "}",
            escaped: false,
        }
    }

    fn bare() -> Wrap {
        Wrap {
            head: String::new(),
            tail: "",
            escaped: false,
        }
    }

    /// The envelope's own length.
    fn len(&self) -> usize {
        self.head.len() + self.tail.len()
    }

    /// A record: the envelope around the message text made of `parts`.
    fn around(&self, parts: &[&str]) -> Vec<u8> {
        let len: usize = parts.iter().map(|p| p.len()).sum();
        let mut out = Vec::with_capacity(self.len() + len + len / 8);
        out.extend_from_slice(self.head.as_bytes());
        for p in parts {
            if self.escaped {
                let quoted = serde_json::to_string(p).expect("strings serialize");
                out.extend_from_slice(&quoted.as_bytes()[1..quoted.len() - 1]);
            } else {
                out.extend_from_slice(p.as_bytes());
            }
        }
        out.extend_from_slice(self.tail.as_bytes());
        out
    }
}

/// Appends `"key":value` to an object being written (`value` as JSON text).
fn field(out: &mut String, key: &str, value: &str) {
    if !out.ends_with('{') {
        out.push(',');
    }
    out.push_str(&serde_json::to_string(key).expect("strings serialize"));
    out.push(':');
    out.push_str(value);
}

/// A JSON string's value.
fn string(v: &RawValue) -> Option<String> {
    serde_json::from_str(v.get()).ok()
}

#[cfg(test)]
pub mod tests {
    use super::*;
    use crate::signatures::tests::{replays, window};
    use crate::signatures::Outcome;
    use axum::http::HeaderMap;
    use base64::Engine;
    use rsa::pkcs1v15::SigningKey;
    use rsa::signature::{SignatureEncoding, Signer};
    use rsa::RsaPrivateKey;
    use std::str::FromStr;
    use std::time::Duration;
    use x509_cert::builder::{Builder, CertificateBuilder, Profile};
    use x509_cert::der::EncodePem;
    use x509_cert::name::Name;
    use x509_cert::serial_number::SerialNumber;
    use x509_cert::spki::SubjectPublicKeyInfoOwned;
    use x509_cert::time::Validity;

    /// A key pair and a self-signed certificate in PEM, as SNS's signing certificate is.
    pub fn key_and_cert() -> (RsaPrivateKey, String) {
        let key = RsaPrivateKey::new(&mut rsa::rand_core::OsRng, 1024).unwrap();
        let spki = SubjectPublicKeyInfoOwned::from_key(key.to_public_key()).unwrap();
        let signer = SigningKey::<sha2::Sha256>::new(key.clone());
        let cert = CertificateBuilder::new(
            Profile::Root,
            SerialNumber::from(1u32),
            Validity::from_now(Duration::from_secs(3600)).unwrap(),
            Name::from_str("CN=sns.us-east-1.amazonaws.com").unwrap(),
            spki,
            &signer,
        )
        .unwrap()
        .build::<rsa::pkcs1v15::Signature>()
        .unwrap();
        (key, cert.to_pem(Default::default()).unwrap())
    }

    /// Signs an SNS message in place, as SNS does.
    pub fn sign(key: &RsaPrivateKey, msg: &mut Map<String, Value>, version: u8) {
        msg.insert("SignatureVersion".into(), Value::String(version.to_string()));
        let text = canonical(msg).unwrap();
        let sig = match version {
            1 => SigningKey::<sha1::Sha1>::new(key.clone())
                .sign(text.as_bytes())
                .to_vec(),
            _ => SigningKey::<sha2::Sha256>::new(key.clone())
                .sign(text.as_bytes())
                .to_vec(),
        };
        msg.insert(
            "Signature".into(),
            Value::String(base64::engine::general_purpose::STANDARD.encode(sig)),
        );
    }

    pub fn notification(message: &str) -> Map<String, Value> {
        serde_json::json!({
            "Type": "Notification",
            "MessageId": "22b80b92-fdea-4c2c-8f9d-bdfb0c7bf324",
            "TopicArn": "arn:aws:sns:us-east-1:123456789012:ses-events",
            "Subject": "Amazon SES Email Event Notification",
            "Message": message,
            "Timestamp": "2024-01-01T00:00:00.000Z",
            "SigningCertURL": "https://sns.us-east-1.amazonaws.com/SimpleNotificationService-x.pem"
        })
        .as_object()
        .unwrap()
        .clone()
    }

    #[test]
    fn genuine_passes_forged_fails_both_versions() {
        let (key, pem) = key_and_cert();
        let keys = SnsKeys {
            keys: vec![key_from_pem(&pem).unwrap()],
            topic_arns: vec![],
        };
        for version in [1, 2] {
            let mut msg = notification(r#"{"eventType":"Send"}"#);
            sign(&key, &mut msg, version);
            assert!(verify(&keys, &msg).is_ok(), "version {version}");
            let body = serde_json::to_vec(&msg).unwrap();
            assert!(verify_body(&keys, &body).is_ok());
            let mut tampered = msg.clone();
            tampered.insert("Message".into(), Value::String(r#"{"eventType":"Bounce"}"#.into()));
            assert_eq!(verify(&keys, &tampered).unwrap_err().status(), 403);
        }
        let (other, _) = key_and_cert();
        let mut msg = notification("{}");
        sign(&other, &mut msg, 2);
        assert!(verify(&keys, &msg).is_err());
        // Confirmations sign SubscribeURL and Token.
        let mut confirm = serde_json::json!({"Type": "SubscriptionConfirmation", "MessageId": "m", "Token": "t",
            "TopicArn": "arn:aws:sns:us-east-1:123456789012:ses-events", "Message": "confirm",
            "SubscribeURL": "https://sns.us-east-1.amazonaws.com/?Action=ConfirmSubscription", "Timestamp": "2024-01-01T00:00:00Z"})
        .as_object()
        .unwrap()
        .clone();
        sign(&key, &mut confirm, 1);
        assert!(verify(&keys, &confirm).is_ok());
        confirm.insert("SubscribeURL".into(), Value::String("https://evil.example/".into()));
        assert!(verify(&keys, &confirm).is_err());
        // A topic allowlist refuses other topics.
        let only = SnsKeys {
            keys: keys.keys.clone(),
            topic_arns: vec!["arn:aws:sns:us-east-1:123456789012:other".into()],
        };
        let mut msg = notification("{}");
        sign(&key, &mut msg, 2);
        assert!(verify(&only, &msg).is_err());
        assert_eq!(
            verify_body(&keys, br#"{"eventType":"Send"}"#).unwrap_err().status(),
            401
        );
    }

    #[test]
    fn the_old_sns_fixture_verifies_and_is_refused_for_its_age() {
        let dir = tributary_engine::testing::fixtures_dir("ses").join("sns");
        let pem = std::fs::read_to_string(dir.join("signing-cert.pem")).unwrap();
        let body = std::fs::read(dir.join("old_notification.json")).unwrap();
        let keys = SnsKeys {
            keys: vec![key_from_pem(&pem).unwrap()],
            topic_arns: vec![],
        };
        assert_eq!(verify_body(&keys, &body).unwrap(), "2024-05-01T10:00:03.000Z");
        let secrets = crate::signatures::Secrets {
            ses: Some(keys),
            ..crate::signatures::Secrets::default()
        };
        let headers = HeaderMap::new();
        let req = Request {
            headers: &headers,
            query: &[],
            body: &body,
        };
        let e = crate::signatures::check(
            Source::Ses,
            &secrets,
            &req,
            &Window::now(Duration::from_secs(300)),
            &replays(),
        )
        .err()
        .unwrap();
        assert!(e.to_string().contains("refused as a possible replay"), "{e}");
    }

    #[test]
    fn an_old_sns_message_is_refused() {
        let (key, pem) = key_and_cert();
        let secrets = crate::signatures::Secrets {
            ses: Some(SnsKeys {
                keys: vec![key_from_pem(&pem).unwrap()],
                topic_arns: vec![],
            }),
            ..crate::signatures::Secrets::default()
        };
        // The notification's Timestamp is 2024-01-01T00:00:00.000Z = 1704067200.
        let mut msg = notification(r#"{"eventType":"Send"}"#);
        sign(&key, &mut msg, 2);
        let body = serde_json::to_vec(&msg).unwrap();
        let headers = HeaderMap::new();
        let req = Request {
            headers: &headers,
            query: &[],
            body: &body,
        };
        let r = replays();
        let (outcome, once) =
            crate::signatures::check(Source::Ses, &secrets, &req, &window(1_704_067_260), &r).unwrap();
        assert!(outcome == Outcome::Verified && once.is_none());
        let e = crate::signatures::check(Source::Ses, &secrets, &req, &window(1_704_067_200 + 301), &r)
            .err()
            .unwrap();
        assert_eq!(e.status(), 403);
        assert!(
            e.to_string()
                .contains("ses SNS Timestamp 2024-01-01T00:00:00.000Z is 301 s old"),
            "{e}"
        );
    }
}
