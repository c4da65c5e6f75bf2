//! Provider batches into single events, and the chains each event belongs to.
//!
//! A raw record holds ONE provider event, as `tributary_engine::esp` reads it: one element of
//! SendGrid's array or of Mandrill's `mandrill_events`; one Mailgun, Postmark or Mailchimp
//! call; one SES recipient (an SES event naming several recipients becomes one record per
//! recipient, with its recipient list cut to that address). Elements are published with the
//! provider's own bytes where the event is not cut.
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

const USERS: &str = "users";
const UNSUBSCRIBES: &str = "unsubscribes";
const BLOCKLISTS: &str = "blocklists";
const SUBSCRIPTIONS: &str = "subscriptions";
const MAILINGS: &str = "mailings";

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
    pub payload: Vec<u8>,
    /// The recipient, for the key `tenant:<email>` (lower-cased so that one address keeps
    /// one partition).
    pub email: Option<String>,
    pub chains: Vec<&'static str>,
    /// No chain takes the event (or it cannot be read): sent to the fallback chain.
    pub unrouted: bool,
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

fn route(provider: Provider, payload: Vec<u8>) -> Record {
    let ev = read(provider, &payload);
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

/// SES, as SNS delivers it (a `Notification` whose `Message` is the SES JSON; confirmations),
/// as an EventBridge event, or raw: one record per recipient.
fn ses(body: &[u8], out: &mut Split) -> Result<()> {
    let mut outer: Map<String, Value> = serde_json::from_slice(body).map_err(|e| bad_json("ses", e))?;
    // How to put a (cut) SES message back into what was received.
    enum Wrap {
        Sns(Map<String, Value>),
        EventBridge(Map<String, Value>),
        Bare,
    }
    let (message, wrap) = if let Some(ty) = outer.get("Type").and_then(Value::as_str).map(str::to_owned) {
        match ty.as_str() {
            "Notification" => {
                let m = match outer.get("Message") {
                    Some(Value::String(s)) => serde_json::from_str::<Map<String, Value>>(s)
                        .map_err(|e| Error::bad(format!("ses: the SNS Message is not SES JSON: {e}")))?,
                    Some(Value::Object(m)) => m.clone(),
                    _ => return Err(Error::bad("ses: SNS Notification without a Message")),
                };
                (m, Wrap::Sns(outer))
            }
            "SubscriptionConfirmation" => {
                let url = outer
                    .get("SubscribeURL")
                    .and_then(Value::as_str)
                    .ok_or_else(|| Error::bad("ses: SNS SubscriptionConfirmation without a SubscribeURL"))?;
                out.subscribe_url = Some(url.to_owned());
                return Ok(());
            }
            "UnsubscribeConfirmation" => {
                out.note = Some("SNS UnsubscribeConfirmation: nothing to publish".into());
                return Ok(());
            }
            other => return Err(Error::bad(format!("ses: unknown SNS message Type '{other}'"))),
        }
    } else if outer.contains_key("detail-type") {
        match outer.remove("detail") {
            Some(Value::Object(d)) => (d, Wrap::EventBridge(outer)),
            _ => return Err(Error::bad("ses: EventBridge event without a detail object")),
        }
    } else {
        (outer, Wrap::Bare)
    };
    let wrap_one = |m: Map<String, Value>| -> Vec<u8> {
        let v = match &wrap {
            Wrap::Sns(env) => {
                let mut env = env.clone();
                env.insert("Message".into(), Value::String(Value::Object(m).to_string()));
                Value::Object(env)
            }
            Wrap::EventBridge(env) => {
                let mut env = env.clone();
                env.insert("detail".into(), Value::Object(m));
                Value::Object(env)
            }
            Wrap::Bare => Value::Object(m),
        };
        serde_json::to_vec(&v).expect("JSON values serialize")
    };
    for one in per_recipient(message) {
        let mut rec = route(Provider::Ses, wrap_one(one.clone()));
        // An opt-out of several topics: unsubscribes takes one record a topic.
        let topics = read(Provider::Ses, &rec.payload)
            .filter(|ev| ev.kind == "subscription")
            .map(|ev| ev.ses_opt_outs())
            .unwrap_or_default();
        if topics.len() > 1 && rec.chains.contains(&UNSUBSCRIBES) {
            rec.chains.retain(|c| *c != UNSUBSCRIBES);
            for t in topics {
                let topic = t.split_once(':').map_or(t.as_str(), |(_, t)| t);
                let mut cut = one.clone();
                for prefs in ["newTopicPreferences", "oldTopicPreferences"] {
                    if let Some(Value::Array(items)) = cut
                        .get_mut("subscription")
                        .and_then(|s| s.get_mut(prefs))
                        .and_then(|p| p.get_mut("topicSubscriptionStatus"))
                    {
                        items.retain(|i| i.get("topicName").and_then(Value::as_str) == Some(topic));
                    }
                }
                out.records.push(Record {
                    payload: wrap_one(cut),
                    email: rec.email.clone(),
                    chains: vec![UNSUBSCRIBES],
                    unrouted: false,
                });
            }
        }
        out.records.push(rec);
    }
    Ok(())
}

/// The SES message once per recipient, its recipient list cut to that one. Opens, clicks and
/// subscription events do not say which recipient acted: they stay whole (the chain refuses
/// them when the message had several recipients).
fn per_recipient(message: Map<String, Value>) -> Vec<Map<String, Value>> {
    let kind = message
        .get("eventType")
        .or_else(|| message.get("notificationType"))
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_ascii_lowercase()
        .replace(['_', '-', ' '], "");
    let path: &[&str] = match kind.as_str() {
        "bounce" => &["bounce", "bouncedRecipients"],
        "complaint" => &["complaint", "complainedRecipients"],
        "delivery" => &["delivery", "recipients"],
        "deliverydelay" => &["deliveryDelay", "delayedRecipients"],
        "open" | "click" | "subscription" => return vec![message],
        _ => &["mail", "destination"],
    };
    let n = match message.get(path[0]).and_then(|o| o.get(path[1])) {
        Some(Value::Array(a)) if a.len() > 1 => a.len(),
        _ => return vec![message],
    };
    (0..n)
        .map(|i| {
            let mut m = message.clone();
            if let Some(Value::Array(a)) = m.get_mut(path[0]).and_then(|o| o.get_mut(path[1])) {
                let item = a.swap_remove(i);
                *a = vec![item];
            }
            m
        })
        .collect()
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
