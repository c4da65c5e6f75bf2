//! Provider batches into single events, and the chains each event belongs to.
//!
//! A raw record holds ONE provider event, as `tributary_engine::esp` reads it: one element of
//! SendGrid's array or of Mandrill's `mandrill_events`; one Mailgun, Postmark or Mailchimp
//! call; one SES recipient (an SES event naming several recipients becomes one record per
//! recipient, with its recipient list cut to that address and only what the chains read of
//! the rest: see `providers/ses/gateway.rs`). Elements are published with the provider's own
//! bytes where the event is not cut. How a provider's call is split is that provider's
//! `providers/<name>/gateway.rs` ([`crate::providers`]); the helpers they share are here.
//!
//! [`esp::chains`] is the routing table (each provider's, in `providers/<name>/read.rs`):
//! every chain whose provider module takes the event, so the gateway sends each chain only
//! what it keeps. An event no chain takes, or that the reader cannot read, goes to the
//! provider's [`esp::fallback`] chain, which dead-letters it with its reason: nothing a
//! provider sends disappears without a trace.
//!
//! Body-level faults (not JSON, not the provider's batch shape) are a 400; event-level
//! faults are the chain's to judge.

use crate::error::{Error, Result};
use serde_json::value::RawValue;
use std::borrow::Cow;
use std::sync::Arc;
use tributary_engine::esp::{self, Event};
use tributary_engine::Source;

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
    Cut { around: Arc<dyn Around>, entry: Box<str> },
}

/// What the cut records of one message share (an SES message's envelope and the message
/// around the recipient's entry): it writes out one recipient's record around its entry.
pub trait Around: std::fmt::Debug + Send + Sync {
    fn around(&self, entry: &str) -> Vec<u8>;
}

impl Payload {
    pub fn bytes(&self) -> Cow<'_, [u8]> {
        match self {
            Payload::Whole(b) => Cow::Borrowed(b),
            Payload::Cut { around, entry } => Cow::Owned(around.around(entry)),
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

/// One webhook call of `provider` as single events, by that provider's
/// `providers/<name>/gateway.rs` ([`crate::providers`]).
pub fn split(provider: Source, body: &[u8]) -> Result<Split> {
    let mut out = Split::default();
    crate::providers::split(provider, body, &mut out)?;
    Ok(out)
}

/// One event of `provider` as a record: its chains ([`esp::chains`]), or the provider's
/// fallback chain ([`esp::fallback`]) when no chain takes it or it cannot be read.
pub fn route(provider: Source, payload: impl Into<Payload>) -> Record {
    let payload = payload.into();
    let ev = read(provider, &payload.bytes());
    let chains = ev.as_ref().map(esp::chains).unwrap_or(&[]);
    Record {
        email: ev.and_then(|e| e.email).map(|e| e.to_lowercase()),
        unrouted: chains.is_empty(),
        chains: if chains.is_empty() {
            vec![esp::fallback(provider)]
        } else {
            chains.to_vec()
        },
        payload,
    }
}

/// One event of `provider`, read; `None` when it cannot be.
pub fn read(provider: Source, payload: &[u8]) -> Option<Event> {
    esp::read(provider, payload).ok()
}

pub fn first_byte(body: &[u8]) -> Option<u8> {
    body.iter().copied().find(|b| !b.is_ascii_whitespace())
}

pub fn bad_json(p: &str, e: serde_json::Error) -> Error {
    Error::bad(format!("{p}: the body is not valid JSON: {e}"))
}

pub fn require_object(p: &str, ev: &RawValue, i: usize) -> Result<()> {
    if first_byte(ev.get().as_bytes()) == Some(b'{') {
        Ok(())
    } else {
        Err(Error::bad(format!("{p}: event {i} of the batch is not a JSON object")))
    }
}

#[cfg(test)]
mod tests;
