//! Provider batches into single events, and the chains each event belongs to.
//!
//! A raw record holds ONE provider event, as `tributary_engine::esp` reads it: one element of
//! SendGrid's array or of Mandrill's `mandrill_events`; one Mailgun, Postmark or Mailchimp
//! call; one SES recipient (an SES event naming several recipients becomes one record per
//! recipient, with its recipient list cut to that address and only what the chains read of
//! the rest: see [`ses`]). Elements are published with the provider's own bytes where the
//! event is not cut.
//!
//! [`chains`] is the routing table: every chain whose provider module takes the event, so the
//! gateway sends each chain only what it keeps. An event no chain takes, or that the reader
//! cannot read, goes to the provider's [`Provider::fallback`] chain, which dead-letters it
//! with its reason: nothing a provider sends disappears without a trace.
//!
//! Body-level faults (not JSON, not the provider's batch shape) are a 400; event-level
//! faults are the chain's to judge.

use crate::error::{Error, Result};
use serde_json::value::RawValue;
use serde_json::{Map, Value};
use std::borrow::Cow;
use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use tributary_engine::chains;
use tributary_engine::esp::{self, Bounce, Event};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Provider {
    Sendgrid,
    Mailgun,
    Ses,
    Postmark,
    Mailchimp,
    Mandrill,
}

impl Provider {
    pub const ALL: [Provider; 6] = [
        Provider::Sendgrid,
        Provider::Mailgun,
        Provider::Ses,
        Provider::Postmark,
        Provider::Mailchimp,
        Provider::Mandrill,
    ];

    pub fn parse(s: &str) -> Option<Provider> {
        Provider::ALL.into_iter().find(|p| p.as_str() == s)
    }

    /// The name in URLs and in the records' `source` header.
    pub const fn as_str(self) -> &'static str {
        match self {
            Provider::Sendgrid => "sendgrid",
            Provider::Mailgun => "mailgun",
            Provider::Ses => "ses",
            Provider::Postmark => "postmark",
            Provider::Mailchimp => "mailchimp",
            Provider::Mandrill => "mandrill",
        }
    }

    /// Where an event goes that no chain takes or that cannot be read: the chain that takes
    /// most of the provider's events, to be dead-lettered there with its reason.
    pub const fn fallback(self) -> &'static str {
        match self {
            Provider::Mailchimp => USERS,
            _ => MAILINGS,
        }
    }
}

// The chains the routing table names, by their registry entries: a chain renamed or removed
// there does not compile here.
const USERS: &str = chains::USERS.name;
const UNSUBSCRIBES: &str = chains::UNSUBSCRIBES.name;
const BLOCKLISTS: &str = chains::BLOCKLISTS.name;
const SUBSCRIPTIONS: &str = chains::SUBSCRIPTIONS.name;
const MAILINGS: &str = chains::MAILINGS.name;

const M: &[&str] = &[MAILINGS];
const M_B: &[&str] = &[MAILINGS, BLOCKLISTS];
const M_U: &[&str] = &[MAILINGS, UNSUBSCRIBES];
const B: &[&str] = &[BLOCKLISTS];
const S: &[&str] = &[SUBSCRIPTIONS];
const U: &[&str] = &[UNSUBSCRIBES];
const U_B: &[&str] = &[UNSUBSCRIBES, BLOCKLISTS];
const USR: &[&str] = &[USERS];
const USR_S: &[&str] = &[USERS, SUBSCRIPTIONS];
const NONE: &[&str] = &[];

/// THE routing table: the raw topics one provider event belongs to, mirroring what each
/// chain's `services/<chain>/src/<provider>.rs` takes. Empty: no chain takes it.
pub fn chains(ev: &Event) -> &'static [&'static str] {
    use tributary_engine::Source as P;
    let s = |path: &[&str]| ev.str(path).unwrap_or_default();
    let hard = ev.bounce() == Some(Bounce::Hard);
    let suppress = ev.flag(&["SuppressSending"]);
    match (ev.source, ev.kind.as_str()) {
        // SendGrid: hard bounces and spam reports also suppress; link unsubscribes also opt out.
        (P::Sendgrid, "processed" | "delivered" | "deferred" | "dropped" | "open" | "click") => M,
        (P::Sendgrid, "bounce") if hard => M_B,
        (P::Sendgrid, "bounce") => M,
        (P::Sendgrid, "spamreport") => M_B,
        (P::Sendgrid, "unsubscribe" | "group_unsubscribe") => M_U,
        (P::Sendgrid, "group_resubscribe") => S,

        (P::Mailgun, "accepted" | "delivered" | "rejected" | "opened" | "clicked") => M,
        (P::Mailgun, "failed") if hard => M_B,
        (P::Mailgun, "failed") => M,
        (P::Mailgun, "complained") => M_B,
        (P::Mailgun, "unsubscribed") => M_U,

        (P::Ses, "send" | "delivery" | "delivery_delay" | "reject" | "open" | "click" | "rendering_failure") => M,
        (P::Ses, "bounce") if hard => M_B,
        (P::Ses, "bounce") => M,
        (P::Ses, "complaint")
            if s(&["complaint", "complaintSubType"]) == "OnAccountSuppressionList"
                || s(&["complaint", "complaintFeedbackType"]) == "not-spam" =>
        {
            M
        }
        (P::Ses, "complaint") => M_B,
        (P::Ses, "subscription") if !ev.ses_opt_outs().is_empty() => M_U,

        (P::Postmark, "Delivery" | "Open" | "Click") => M,
        (P::Postmark, "Bounce") if s(&["Type"]) == "SpamComplaint" => M_B,
        (P::Postmark, "Bounce") if hard => M_B,
        (P::Postmark, "Bounce") => M,
        (P::Postmark, "SpamComplaint") => M_B,
        (P::Postmark, "SubscriptionChange") if suppress == Some(false) => S,
        (P::Postmark, "SubscriptionChange") if suppress == Some(true) => match s(&["SuppressionReason"]).as_str() {
            "" | "ManualSuppression" | "Unsubscribe" => M_U,
            "HardBounce" | "SpamComplaint" => B,
            _ => NONE,
        },

        (P::Mailchimp, "subscribe") => USR_S,
        (P::Mailchimp, "profile" | "upemail") => USR,
        (P::Mailchimp, "unsubscribe") if s(&["data", "reason"]) == "abuse" => U_B,
        (P::Mailchimp, "unsubscribe") => U,
        (P::Mailchimp, "cleaned") => B,

        (P::Mandrill, "send" | "deferral" | "open" | "click" | "reject" | "soft_bounce") => M,
        (P::Mandrill, "hard_bounce" | "spam") => M_B,
        (P::Mandrill, "unsub") => M_U,
        (P::Mandrill, "blacklist" | "denylist") => match s(&["reject", "reason"]).as_str() {
            "soft-bounce" | "unsub" => NONE,
            _ => B,
        },
        _ => NONE,
    }
}

/// One raw record to publish, and where.
#[derive(Debug, Clone, PartialEq)]
pub struct Record {
    pub payload: Payload,
    /// The recipient, for the key `tenant:<email>` (lower-cased so that one address keeps
    /// one partition).
    pub email: Option<String>,
    pub chains: Vec<&'static str>,
    /// No chain takes the event (or it cannot be read): sent to the fallback chain.
    pub unrouted: bool,
}

/// A record's bytes: as the provider sent them, or one recipient's cut of an SES message,
/// written out only when it is published ([`Payload::bytes`]). The cut records of a message
/// to thousands of recipients share one copy of what the recipients have in common, instead
/// of each holding its own until the last is published.
#[derive(Debug, Clone)]
pub enum Payload {
    Whole(Vec<u8>),
    Cut { around: Arc<Around>, entry: Box<str> },
}

/// What the cut records of one SES message share: the envelope and the message around the
/// recipient's entry (`head` + entry + `tail`).
#[derive(Debug)]
pub struct Around {
    wrap: Wrap,
    head: String,
    tail: &'static str,
}

impl Payload {
    pub fn bytes(&self) -> Cow<'_, [u8]> {
        match self {
            Payload::Whole(b) => Cow::Borrowed(b),
            Payload::Cut { around, entry } => Cow::Owned(around.wrap.around(&[&around.head, entry, around.tail])),
        }
    }
}

impl PartialEq for Payload {
    fn eq(&self, other: &Payload) -> bool {
        self.bytes() == other.bytes()
    }
}

impl From<Vec<u8>> for Payload {
    fn from(b: Vec<u8>) -> Payload {
        Payload::Whole(b)
    }
}

/// What a webhook call holds.
#[derive(Debug, Default)]
pub struct Split {
    pub records: Vec<Record>,
    /// An SNS subscription confirmation: the URL that confirms it. Nothing to publish.
    pub subscribe_url: Option<String>,
    /// An SNS message that carries no event (`UnsubscribeConfirmation`).
    pub note: Option<String>,
}

pub fn split(provider: Provider, body: &[u8]) -> Result<Split> {
    let p = provider.as_str();
    let mut out = Split::default();
    match provider {
        Provider::Sendgrid => {
            let events: Vec<&RawValue> = match first_byte(body) {
                Some(b'[') => serde_json::from_slice(body).map_err(|e| bad_json(p, e))?,
                Some(b'{') => vec![serde_json::from_slice(body).map_err(|e| bad_json(p, e))?],
                _ => return Err(Error::bad("sendgrid: expected a JSON array of events")),
            };
            for (i, ev) in events.iter().enumerate() {
                require_object(p, ev, i)?;
                out.records.push(route(provider, ev.get().as_bytes().to_vec()));
            }
        }
        Provider::Mailgun | Provider::Postmark => {
            let _: Map<String, Value> = match serde_json::from_slice(body) {
                Ok(m) => m,
                Err(e) if first_byte(body) == Some(b'{') => return Err(bad_json(p, e)),
                Err(_) => return Err(Error::bad(format!("{p}: expected one JSON event object"))),
            };
            out.records.push(route(provider, body.to_vec()));
        }
        Provider::Mailchimp => {
            if body.trim_ascii().is_empty() {
                return Err(Error::bad(
                    "mailchimp: empty body: expected the form-encoded webhook fields",
                ));
            }
            if first_byte(body) != Some(b'{') {
                esp::form(body).map_err(|e| Error::bad(format!("mailchimp: {}", e.reason)))?;
            }
            out.records.push(route(provider, body.to_vec()));
        }
        Provider::Mandrill => {
            let field = form_urlencoded::parse(body)
                .find(|(k, _)| k == "mandrill_events")
                .map(|(_, v)| v.into_owned())
                .ok_or_else(|| Error::bad("mandrill: no mandrill_events form field"))?;
            let events: Vec<&RawValue> = serde_json::from_str(&field)
                .map_err(|e| Error::bad(format!("mandrill: mandrill_events is not a JSON array: {e}")))?;
            for (i, ev) in events.iter().enumerate() {
                require_object(p, ev, i)?;
                out.records.push(route(provider, ev.get().as_bytes().to_vec()));
            }
        }
        Provider::Ses => ses(body, &mut out)?,
    }
    Ok(out)
}

fn route(provider: Provider, payload: impl Into<Payload>) -> Record {
    let payload = payload.into();
    let ev = read(provider, &payload.bytes());
    let chains = ev.as_ref().map(chains).unwrap_or(NONE);
    Record {
        email: ev.and_then(|e| e.email).map(|e| e.to_lowercase()),
        unrouted: chains.is_empty(),
        chains: if chains.is_empty() {
            vec![provider.fallback()]
        } else {
            chains.to_vec()
        },
        payload,
    }
}

fn read(provider: Provider, payload: &[u8]) -> Option<Event> {
    match provider {
        Provider::Sendgrid => esp::sendgrid(payload),
        Provider::Mailgun => esp::mailgun(payload),
        Provider::Ses => esp::ses(payload),
        Provider::Postmark => esp::postmark(payload),
        Provider::Mailchimp => esp::mailchimp(payload),
        Provider::Mandrill => esp::mandrill(payload),
    }
    .ok()
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
fn ses(body: &[u8], out: &mut Split) -> Result<()> {
    let outer: RawMap = serde_json::from_slice(body).map_err(|e| bad_json("ses", e))?;
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
        let mut rec = route(Provider::Ses, body.to_vec());
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
    let around = Arc::new(Around { wrap, head, tail });
    for r in recipients {
        out.records.push(route(
            Provider::Ses,
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
    let topics = read(Provider::Ses, &rec.payload.bytes())
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

fn first_byte(body: &[u8]) -> Option<u8> {
    body.iter().copied().find(|b| !b.is_ascii_whitespace())
}

fn bad_json(p: &str, e: serde_json::Error) -> Error {
    Error::bad(format!("{p}: the body is not valid JSON: {e}"))
}

fn require_object(p: &str, ev: &RawValue, i: usize) -> Result<()> {
    if first_byte(ev.get().as_bytes()) == Some(b'{') {
        Ok(())
    } else {
        Err(Error::bad(format!("{p}: event {i} of the batch is not a JSON object")))
    }
}

#[cfg(test)]
mod tests;
