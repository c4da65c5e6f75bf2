//! ESP webhook events (SendGrid, Mailgun, Amazon SES, Postmark, Mailchimp, Mandrill): what
//! reading one provider event takes, whichever chain it feeds.
//!
//! The gateway splits a provider's batch into single events; a raw record holds ONE:
//!
//! - `sendgrid`: one object of the Event Webhook's array.
//! - `mailgun`: one webhook body, `{"signature": …, "event-data": {…}}`, or `event-data` alone.
//! - `ses`: an SNS notification whose `Message` is the SES JSON, an EventBridge event whose
//!   `detail` is, or the SES JSON itself (event publishing `eventType` or identity
//!   notification `notificationType`). It must name ONE recipient: see [`ses`].
//! - `postmark`: one webhook body.
//! - `mailchimp`: the form-encoded body of one webhook call (`type`, `fired_at`,
//!   `data[...]`); a JSON object of the same shape is read too.
//! - `mandrill`: one element of the `mandrill_events` array.
//!
//! Each reader returns an [`Event`]: the provider's event name, the event object, and the
//! recipient, time and identity as the provider gives them. A chain's provider module
//! (`services/<chain>/src/<provider>.rs`) takes the events that belong to its chain and maps
//! their fields onto its unified names through [`Fields`]. Times are passed on as given
//! (integer or float seconds, ISO 8601 with or without offset, `YYYY-MM-DD HH:MM:SS` as UTC):
//! the engine's timestamp reader takes them all.

use crate::error::{ErrorClass, RecordError};
use crate::normalize::truncate;
use crate::record::{field, Input, Parsed, Source};
use serde_json::{Map, Value};

/// One provider event, read but not yet mapped onto a chain.
#[derive(Debug, Clone, PartialEq)]
pub struct Event {
    pub source: Source,
    /// The provider's event name: SendGrid `event`, Mailgun `event`, SES `eventType` or
    /// `notificationType` in snake case (`bounce`, `delivery_delay`, `rendering_failure`, …),
    /// Postmark `RecordType`, Mailchimp `type`, Mandrill `event` (sync events: `blacklist` or
    /// `whitelist`, whichever name the payload uses).
    pub kind: String,
    /// The event object: Mailgun's `event-data`, the SES message, Mailchimp's form as nested
    /// objects (`data[merges][FNAME]` → `data.merges.FNAME`).
    pub body: Map<String, Value>,
    /// The one recipient the event is about, without a display name.
    pub email: Option<String>,
    /// When the event happened, as the provider wrote it.
    pub time: Option<Value>,
    /// The provider's identity of this event, made unique per recipient and, for events that
    /// repeat (opens, clicks, deferrals), per occurrence. `None`: the engine hashes the record.
    pub event_id: Option<String>,
}

/// What a failed delivery means for the address.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Bounce {
    /// Permanent: the address does not take mail. A suppression.
    Hard,
    /// Temporary or possibly temporary: not a suppression.
    Soft,
    /// The provider cannot tell: not a suppression.
    Undetermined,
    /// Not attempted: the address is already on the provider's suppression list. Not new
    /// evidence, so not a new blocklist entry.
    Suppressed,
}

impl Bounce {
    /// The `mailings.bounce_class` value; `None` for a message that was never attempted.
    pub const fn class(self) -> Option<&'static str> {
        match self {
            Bounce::Hard => Some("hard"),
            Bounce::Soft => Some("soft"),
            Bounce::Undetermined => Some("undetermined"),
            Bounce::Suppressed => None,
        }
    }

    const fn describe(self) -> &'static str {
        match self {
            Bounce::Hard => "hard bounce",
            Bounce::Soft => "soft bounce",
            Bounce::Undetermined => "undetermined bounce",
            Bounce::Suppressed => "address already suppressed at the provider",
        }
    }
}

impl Event {
    /// The value at a path of object keys (and array indexes, as digits).
    pub fn get(&self, path: &[&str]) -> Option<&Value> {
        get(&self.body, path)
    }

    /// A scalar at `path` as a trimmed, non-empty string.
    pub fn str(&self, path: &[&str]) -> Option<String> {
        self.get(path).and_then(scalar)
    }

    /// A boolean at `path`, also when written as the string `true` or `false`.
    pub fn flag(&self, path: &[&str]) -> Option<bool> {
        match self.get(path)? {
            Value::Bool(b) => Some(*b),
            Value::String(s) => match s.trim().to_ascii_lowercase().as_str() {
                "true" | "1" => Some(true),
                "false" | "0" => Some(false),
                _ => None,
            },
            _ => None,
        }
    }

    /// A field that is sometimes a string and sometimes a list (SendGrid `category`, tags):
    /// the list's scalars joined by `,`.
    pub fn list(&self, path: &[&str]) -> Option<String> {
        match self.get(path)? {
            Value::Array(items) => {
                let parts: Vec<String> = items.iter().filter_map(scalar).collect();
                (!parts.is_empty()).then(|| parts.join(","))
            }
            v => scalar(v),
        }
    }

    /// The fields every chain's record starts with: `event_id`, `event_time`, `email`.
    pub fn fields(&self) -> Fields {
        let mut f = Fields::default();
        f.set(field::EVENT_ID, self.event_id.clone());
        f.set_value(field::EVENT_TIME, self.time.clone());
        f.set(field::EMAIL, self.email.clone());
        f
    }

    /// The guard for an event the gateway should not have routed to `chain`.
    pub fn not_for(&self, chain: &str) -> RecordError {
        self.not_for_as("", chain)
    }

    /// As [`Event::not_for`], naming what about the event decides it (e.g. `SuppressSending false`).
    pub fn not_for_as(&self, detail: &str, chain: &str) -> RecordError {
        let p = self.source.as_str();
        let k = truncate(&self.kind, 40);
        let detail = if detail.is_empty() {
            String::new()
        } else {
            format!(" ({detail})")
        };
        let reason = if known_kinds(self.source).contains(&self.kind.as_str()) {
            format!("{p} event '{k}'{detail} does not belong to the {chain} chain")
        } else {
            format!("'{k}' is not a {p} event this chain knows")
        };
        RecordError::new(ErrorClass::InvalidValue, reason)
    }

    /// The error for an event that looks like a suppression but is not one.
    pub fn not_a_suppression(&self, why: &str) -> RecordError {
        RecordError::new(
            ErrorClass::InvalidValue,
            format!(
                "{why}: not a suppression ({} event '{}')",
                self.source.as_str(),
                truncate(&self.kind, 40)
            ),
        )
    }

    /// `Ok` for a hard bounce, else the not-a-suppression error.
    pub fn require_hard_bounce(&self) -> Result<(), RecordError> {
        match self.bounce() {
            Some(Bounce::Hard) => Ok(()),
            Some(b) => Err(self.not_a_suppression(b.describe())),
            None => Err(self.not_a_suppression("not a bounce")),
        }
    }

    /// For the provider's bounce events, what the failure means for the address.
    pub fn bounce(&self) -> Option<Bounce> {
        macro_rules! dispatch {
            ($(($m:ident, $v:ident))*) => {
                match self.source {
                    $(Source::$v => $m::bounce(self),)*
                    Source::Json | Source::Csv => None,
                }
            };
        }
        with_providers!(dispatch)
    }

    /// The campaign: the provider's campaign id where it has one, else its tags (SendGrid
    /// `category`, Mailgun `tags`, Postmark `Tag`, Mandrill `msg.tags`), a list joined by `,`.
    pub fn campaign(&self) -> Option<String> {
        macro_rules! dispatch {
            ($(($m:ident, $v:ident))*) => {
                match self.source {
                    $(Source::$v => $m::campaign(self),)*
                    Source::Json | Source::Csv => None,
                }
            };
        }
        with_providers!(dispatch)
    }

    /// For an SES `Subscription` event, what the recipient opted out of: the contact list
    /// when `unsubscribeAll` turned true, else each topic newly `OptOut`, as
    /// `<contactList>:<topic>`. Empty when the event is no opt-out.
    pub fn ses_opt_outs(&self) -> Vec<String> {
        let list = self.str(&["subscription", "contactList"]).unwrap_or_default();
        let all = |prefs: &str| self.flag(&["subscription", prefs, "unsubscribeAll"]).unwrap_or(false);
        if all("newTopicPreferences") && !all("oldTopicPreferences") {
            return vec![list];
        }
        let opted_out = |prefs: &str| -> Vec<String> {
            match self.get(&["subscription", prefs, "topicSubscriptionStatus"]) {
                Some(Value::Array(items)) => items
                    .iter()
                    .filter(|t| {
                        t.get("subscriptionStatus")
                            .and_then(Value::as_str)
                            .is_some_and(|s| s.eq_ignore_ascii_case("OptOut"))
                    })
                    .filter_map(|t| t.get("topicName").and_then(scalar))
                    .collect(),
                _ => Vec::new(),
            }
        };
        let before = opted_out("oldTopicPreferences");
        opted_out("newTopicPreferences")
            .into_iter()
            .filter(|t| !before.contains(t))
            .map(|t| format!("{list}:{t}"))
            .collect()
    }
}

/// The fields of an event that every chain reads ([`crate::Common`]'s: identity, time,
/// address), under construction; absent values are simply not set. A chain's own fields go in
/// its draft ([`Input`]).
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Fields(Map<String, Value>);

impl Fields {
    pub fn set(&mut self, name: &str, value: Option<String>) -> &mut Self {
        if let Some(v) = value {
            self.0.insert(name.to_owned(), Value::String(v));
        }
        self
    }

    /// Sets a value as the provider gave it (a time, a map).
    pub fn set_value(&mut self, name: &str, value: Option<Value>) -> &mut Self {
        if let Some(v) = value {
            self.0.insert(name.to_owned(), v);
        }
        self
    }

    /// The chain's input: these common fields and the chain's draft.
    pub fn with<D>(self, draft: D) -> Input<D> {
        Input {
            fields: Parsed::from_map(self.0),
            draft,
        }
    }
}

fn known_kinds(source: Source) -> &'static [&'static str] {
    macro_rules! dispatch {
        ($(($m:ident, $v:ident))*) => {
            match source {
                $(Source::$v => $m::KINDS,)*
                Source::Json | Source::Csv => &[],
            }
        };
    }
    with_providers!(dispatch)
}

provider_readers!();

/// Reads one event of an ESP source with that provider's reader (`providers/<name>/read.rs`);
/// `json` and `csv` are no provider's.
pub fn read(source: Source, payload: &[u8]) -> Result<Event, RecordError> {
    macro_rules! dispatch {
        ($(($m:ident, $v:ident))*) => {
            match source {
                $(Source::$v => $m::read(payload),)*
                Source::Json | Source::Csv => Err(RecordError::new(
                    ErrorClass::UnknownSource,
                    format!("'{}' is not an ESP", source.as_str()),
                )),
            }
        };
    }
    with_providers!(dispatch)
}

/// The chains an event feeds (each provider's `chains`, in `providers/<name>/read.rs`): the
/// gateway sends each chain only what it keeps. Empty: no chain takes it.
pub fn chains(ev: &Event) -> &'static [&'static str] {
    macro_rules! dispatch {
        ($(($m:ident, $v:ident))*) => {
            match ev.source {
                $(Source::$v => $m::chains(ev),)*
                Source::Json | Source::Csv => &[],
            }
        };
    }
    with_providers!(dispatch)
}

/// Where an event goes that no chain takes or that cannot be read: the chain that takes most
/// of the provider's events, to be dead-lettered there with its reason.
pub fn fallback(source: Source) -> &'static str {
    macro_rules! dispatch {
        ($(($m:ident, $v:ident))*) => {
            match source {
                $(Source::$v => $m::FALLBACK,)*
                Source::Json | Source::Csv => crate::chains::MAILINGS.name,
            }
        };
    }
    with_providers!(dispatch)
}

/// The chain lists the providers' routing tables (`chains`) are written with, by the chain
/// registry's names: a chain renamed or removed there does not compile in a provider.
pub mod route {
    use crate::chains::{BLOCKLISTS, MAILINGS, SUBSCRIPTIONS, UNSUBSCRIBES, USERS};
    pub const M: &[&str] = &[MAILINGS.name];
    pub const M_B: &[&str] = &[MAILINGS.name, BLOCKLISTS.name];
    pub const M_U: &[&str] = &[MAILINGS.name, UNSUBSCRIBES.name];
    pub const B: &[&str] = &[BLOCKLISTS.name];
    pub const S: &[&str] = &[SUBSCRIPTIONS.name];
    pub const U: &[&str] = &[UNSUBSCRIBES.name];
    pub const U_B: &[&str] = &[UNSUBSCRIBES.name, BLOCKLISTS.name];
    pub const USR: &[&str] = &[USERS.name];
    pub const USR_S: &[&str] = &[USERS.name, SUBSCRIPTIONS.name];
    pub const NONE: &[&str] = &[];
}

/// `Name <a@b.example>` → `a@b.example`; anything else as given.
pub fn bare_address(s: &str) -> String {
    let t = s.trim();
    match (t.rfind('<'), t.ends_with('>')) {
        (Some(i), true) => t[i + 1..t.len() - 1].trim().to_owned(),
        _ => t.to_owned(),
    }
}

/// `<id@host>` → `id@host`.
pub fn strip_angle(s: &str) -> String {
    s.trim().trim_start_matches('<').trim_end_matches('>').trim().to_owned()
}

fn object(payload: &[u8], source: Source) -> Result<Map<String, Value>, RecordError> {
    let p = source.as_str();
    match serde_json::from_slice::<Value>(payload) {
        Ok(Value::Object(m)) => Ok(m),
        Ok(Value::Array(a)) => Err(RecordError::malformed(format!(
            "a JSON array of {} {p} events: the gateway sends one event a record",
            a.len()
        ))),
        Ok(other) => Err(RecordError::malformed(format!(
            "expected a {p} event object, found {}",
            kind_of(&other)
        ))),
        Err(e) => Err(RecordError::malformed(format!("invalid JSON: {e}"))),
    }
}

fn kind_of(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

fn get<'a>(m: &'a Map<String, Value>, path: &[&str]) -> Option<&'a Value> {
    let (first, rest) = path.split_first()?;
    let mut cur = m.get(*first)?;
    for seg in rest {
        cur = match cur {
            Value::Object(o) => o.get(*seg)?,
            Value::Array(a) => a.get(seg.parse::<usize>().ok()?)?,
            _ => return None,
        };
    }
    Some(cur)
}

fn scalar(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => {
            let t = s.trim();
            (!t.is_empty()).then(|| t.to_owned())
        }
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

fn str_at(m: &Map<String, Value>, path: &[&str]) -> Option<String> {
    get(m, path).and_then(scalar)
}

/// A value that is there and not `null` or blank.
fn present(m: &Map<String, Value>, path: &[&str]) -> Option<Value> {
    match get(m, path)? {
        Value::Null => None,
        Value::String(s) if s.trim().is_empty() => None,
        v => Some(v.clone()),
    }
}

fn required(m: &Map<String, Value>, path: &[&str], name: &str) -> Result<String, RecordError> {
    str_at(m, path).ok_or_else(|| RecordError::missing(name))
}

/// A list of addresses: strings, or objects whose `item_key` is one; a lone string is a list of one.
fn addresses(v: Option<&Value>, item_key: Option<&str>) -> Vec<String> {
    let one = |item: &Value| match (item, item_key) {
        (Value::Object(o), Some(k)) => o.get(k).and_then(scalar),
        (v, _) => scalar(v),
    };
    match v {
        Some(Value::Array(items)) => items.iter().filter_map(one).map(|a| bare_address(&a)).collect(),
        Some(v) => one(v).map(|a| bare_address(&a)).into_iter().collect(),
        None => Vec::new(),
    }
}

/// An `application/x-www-form-urlencoded` body as nested objects: `data[merges][FNAME]=Ann`
/// → `{"data": {"merges": {"FNAME": "Ann"}}}`. A key whose brackets do not parse is kept
/// whole; of a repeated key the last value wins.
pub fn form(body: &[u8]) -> Result<Map<String, Value>, RecordError> {
    let mut root = Map::new();
    for pair in body.split(|b| *b == b'&') {
        let pair = pair.trim_ascii();
        if pair.is_empty() {
            continue;
        }
        let (k, v) = match pair.iter().position(|b| *b == b'=') {
            Some(i) => (&pair[..i], &pair[i + 1..]),
            None => (pair, &b""[..]),
        };
        let key = form_decode(k)?;
        let value = form_decode(v)?;
        let path = bracket_path(&key).unwrap_or_else(|| vec![key.as_str()]);
        if path.len() > MAX_FORM_DEPTH {
            return Err(RecordError::malformed(format!(
                "form field '{}' is nested deeper than {MAX_FORM_DEPTH} levels",
                truncate(&key, 60)
            )));
        }
        insert_path(&mut root, &path, value, &key)?;
    }
    Ok(root)
}

/// Mailchimp nests three levels (`data[merges][ADDRESS][city]`); deeper keys are refused so
/// that no body can build a structure deep enough to exhaust the stack.
const MAX_FORM_DEPTH: usize = 8;

/// One form key or value: `+` is a space, `%XY` a byte (a `%` not followed by two hex digits
/// stays as written), and the bytes must be UTF-8 (`form_urlencoded::parse` would replace
/// what is not; a record that is not text is refused instead).
fn form_decode(s: &[u8]) -> Result<String, RecordError> {
    let spaced: std::borrow::Cow<'_, [u8]> = if s.contains(&b'+') {
        s.iter()
            .map(|&b| if b == b'+' { b' ' } else { b })
            .collect::<Vec<u8>>()
            .into()
    } else {
        s.into()
    };
    percent_encoding::percent_decode(&spaced)
        .decode_utf8()
        .map(std::borrow::Cow::into_owned)
        .map_err(|_| RecordError::malformed("the form body is not UTF-8"))
}

/// `a[b][c]` → `["a", "b", "c"]`; `None` when the key is not of that shape.
fn bracket_path(key: &str) -> Option<Vec<&str>> {
    let open = key.find('[')?;
    if open == 0 {
        return None;
    }
    let mut path = vec![&key[..open]];
    let mut rest = &key[open..];
    while !rest.is_empty() {
        let inner = rest.strip_prefix('[')?;
        let close = inner.find(']')?;
        path.push(&inner[..close]);
        rest = &inner[close + 1..];
    }
    Some(path)
}

fn insert_path(root: &mut Map<String, Value>, path: &[&str], value: String, key: &str) -> Result<(), RecordError> {
    let conflict = || {
        RecordError::malformed(format!(
            "form field '{}' is both a value and a group",
            truncate(key, 60)
        ))
    };
    let (last, parents) = path.split_last().ok_or_else(conflict)?;
    let mut cur = root;
    for seg in parents {
        let next = cur
            .entry((*seg).to_owned())
            .or_insert_with(|| Value::Object(Map::new()));
        cur = match next {
            Value::Object(o) => o,
            _ => return Err(conflict()),
        };
    }
    if matches!(cur.get(*last), Some(Value::Object(_))) {
        return Err(conflict());
    }
    cur.insert((*last).to_owned(), Value::String(value));
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn form_bodies_become_nested_objects() {
        let m = form(b"type=profile&fired_at=2009-03-26+21%3A31%3A21&data%5Bmerges%5D%5BFNAME%5D=Ann+Lee&data[merges][INTERESTS]=a%2Cb&odd]key=1&100%=x%zz").unwrap();
        assert_eq!(m["type"], "profile");
        assert_eq!(m["fired_at"], "2009-03-26 21:31:21");
        assert_eq!(m["data"]["merges"]["FNAME"], "Ann Lee");
        assert_eq!(m["data"]["merges"]["INTERESTS"], "a,b");
        assert_eq!(m["odd]key"], "1");
        assert_eq!(m["100%"], "x%zz");
        assert_eq!(form(b"data=1&data[x]=2").unwrap_err().class, ErrorClass::Malformed);
        assert_eq!(form(b"a=%ff").unwrap_err().class, ErrorClass::Malformed);
        let deep = format!("a{}=1", "[x]".repeat(100_000));
        assert_eq!(form(deep.as_bytes()).unwrap_err().class, ErrorClass::Malformed);
        assert!(form(b"a[b][c][d][e][f][g][h]=1").is_ok());
        assert!(form(b"").unwrap().is_empty());
    }

    #[test]
    fn addresses_lose_their_display_names() {
        assert_eq!(bare_address(" Ann <ann@example.com> "), "ann@example.com");
        assert_eq!(bare_address("ann@example.com"), "ann@example.com");
        assert_eq!(strip_angle("<a.b@host>"), "a.b@host");
    }

    #[test]
    fn ses_from_sns_eventbridge_or_bare() {
        let ses_json = r#"{"eventType":"Bounce","mail":{"messageId":"m1","timestamp":"2024-01-01T00:00:00Z","destination":["a@b.com","c@d.com"]},
            "bounce":{"bounceType":"Permanent","bounceSubType":"General","timestamp":"2024-01-01T00:00:01Z","bouncedRecipients":[{"emailAddress":"Ann <a@b.com>"}]}}"#;
        let sns = serde_json::json!({"Type": "Notification", "MessageId": "x", "Message": ses_json}).to_string();
        let eb = format!(r#"{{"detail-type":"Email Bounced","source":"aws.ses","detail":{ses_json}}}"#);
        for p in [ses_json.to_owned(), sns, eb] {
            let ev = ses::read(p.as_bytes()).unwrap();
            assert_eq!(ev.kind, "bounce");
            assert_eq!(ev.email.as_deref(), Some("a@b.com"));
            assert_eq!(ev.event_id.as_deref(), Some("m1:bounce:a@b.com"));
            assert_eq!(ev.bounce(), Some(Bounce::Hard));
        }
        let confirm = br#"{"Type":"SubscriptionConfirmation","Message":"You have chosen to subscribe"}"#;
        assert_eq!(ses::read(confirm).unwrap_err().class, ErrorClass::InvalidValue);
    }
}
