//! One raw record per source format, shaped like what the gateway publishes: one event of a
//! provider's batch with the provider's field names and quirks (integer, float and ISO 8601
//! times, naive `YYYY-MM-DD HH:MM:SS`, string-or-list fields, optional fields left out,
//! envelopes such as SNS and EventBridge), a CSV data row with its upload's header row in
//! the `csv-header` header, or a canonical JSON object. Each builder also says which identity
//! the chain derives from the record.

use super::{civil, format_naive, format_rfc3339};
use rand::rngs::StdRng;
use rand::Rng;
use serde_json::{json, Map, Value};
use tributary_engine::{ErrorClass, Source};

/// Which formats a run sends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    One(Source),
    /// A realistic share of every format the chain reads.
    Mix,
}

impl Format {
    /// Every name `--format` takes.
    pub const NAMES: [&'static str; Source::ALL.len() + 1] = {
        let mut names = ["mix"; Source::ALL.len() + 1];
        let mut i = 0;
        while i < Source::NAMES.len() {
            names[i + 1] = Source::NAMES[i];
            i += 1;
        }
        names
    };

    pub fn parse(s: &str) -> Option<Format> {
        if s == "mix" {
            Some(Format::Mix)
        } else {
            Source::parse(s).map(Format::One)
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Format::Mix => "mix",
            Format::One(s) => s.as_str(),
        }
    }
}

/// What is wrong with an invalid record. Every format has each of them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Fault {
    /// Not well-formed in its format: cut JSON, a CSV row with a column too many, a form body
    /// that is not UTF-8.
    Malformed,
    /// The recipient is no email address.
    BadAddress,
    /// The event time lies before 2000.
    TooOld,
    /// The `tenant` header names a tenant the deployment does not serve.
    UnknownTenant,
    /// The recipient is missing.
    MissingField,
}

impl Fault {
    pub const ALL: [Fault; 5] = [
        Fault::Malformed,
        Fault::BadAddress,
        Fault::TooOld,
        Fault::UnknownTenant,
        Fault::MissingField,
    ];

    /// The DLQ error class the chain gives it.
    pub const fn class(self) -> ErrorClass {
        match self {
            Fault::Malformed => ErrorClass::Malformed,
            Fault::BadAddress => ErrorClass::InvalidEmail,
            Fault::TooOld => ErrorClass::InvalidTimestamp,
            Fault::UnknownTenant => ErrorClass::UnknownTenant,
            Fault::MissingField => ErrorClass::MissingField,
        }
    }
}

/// What one record is made of.
pub(super) struct Ctx<'a> {
    pub chain: &'a str,
    pub seed: u64,
    pub i: u64,
    /// Event time, Unix seconds.
    pub t: i64,
    pub person: u32,
    pub tenant: &'a str,
    pub fault: Option<Fault>,
    pub rng: &'a mut StdRng,
}

pub(super) enum Identity {
    Known(String),
    /// The chain hashes the normalized record.
    Hashed,
}

pub(super) struct Built {
    pub payload: Vec<u8>,
    pub csv_header: Option<String>,
    /// The recipient, for the key.
    pub email: Option<String>,
    pub identity: Identity,
}

const FIRST: &[&str] = &[
    "ann", "bob", "chen", "dara", "emil", "fatima", "gus", "hana", "ivan", "jo", "kofi", "lena",
];
const LAST: &[&str] = &[
    "smith", "okafor", "müller", "tanaka", "garcía", "nowak", "dubois", "rossi", "kim", "singh",
];
const DOMAINS: &[&str] = &[
    "example.com",
    "mail.example.org",
    "example.net",
    "bücher.example",
    "corp.example.io",
];
const AGENTS: &[&str] = &[
    "Mozilla/5.0 (iPhone; CPU iPhone OS 17_4 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Mobile/15E148",
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0 Safari/537.36",
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.4 Safari/605.1.15",
    "Mozilla/5.0 (Windows NT 5.1; rv:11.0) Gecko Firefox/11.0 (via ggpht.com GoogleImageProxy)",
];
const URLS: &[&str] = &[
    "https://shop.example.com/spring-sale?utm_source=email",
    "https://example.com/blog/how-we-ship",
    "https://example.com/account/preferences",
];
const CAMPAIGNS: &[&str] = &[
    "spring-sale",
    "weekly-digest",
    "onboarding-3",
    "winback",
    "product-launch",
];

pub(super) fn email_of(person: u32) -> String {
    format!(
        "{}.{}@{}",
        FIRST[person as usize % FIRST.len()],
        person,
        DOMAINS[person as usize % DOMAINS.len()]
    )
}

impl Ctx<'_> {
    fn first(&self) -> &'static str {
        FIRST[self.person as usize % FIRST.len()]
    }

    fn last(&self) -> &'static str {
        LAST[(self.person as usize / 7) % LAST.len()]
    }

    /// The recipient as this record gives it: `None` when the fault is a missing recipient.
    /// ESPs sometimes keep the sender's capitalisation (`quirky`).
    fn email(&mut self, quirky: bool) -> Option<String> {
        match self.fault {
            Some(Fault::MissingField) => None,
            Some(Fault::BadAddress) => Some(match self.i % 3 {
                0 => "not-an-address".to_owned(),
                1 => format!("{}.{}", self.first(), self.person),
                _ => format!("{}.{}@localhost", self.first(), self.person),
            }),
            _ => {
                let e = email_of(self.person);
                if quirky && self.rng.random_bool(0.1) {
                    let mut c = e.chars();
                    Some(c.next().map(|f| f.to_ascii_uppercase().to_string()).unwrap_or_default() + c.as_str())
                } else {
                    Some(e)
                }
            }
        }
    }

    fn pick<T: Copy>(&mut self, items: &[T]) -> T {
        items[self.rng.random_range(0..items.len())]
    }

    fn chance(&mut self, p: f64) -> bool {
        self.rng.random_bool(p)
    }

    /// `n` characters of `alphabet`.
    fn token(&mut self, n: usize, alphabet: &[u8]) -> String {
        (0..n)
            .map(|_| alphabet[self.rng.random_range(0..alphabet.len())] as char)
            .collect()
    }

    fn hex(&mut self, n: usize) -> String {
        self.token(n, b"0123456789abcdef")
    }

    fn b64(&mut self, n: usize) -> String {
        self.token(n, b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_")
    }

    fn uuid(&mut self) -> String {
        format!(
            "{}-{}-4{}-a{}-{}",
            self.hex(8),
            self.hex(4),
            self.hex(3),
            self.hex(3),
            self.hex(12)
        )
    }

    fn ip(&mut self) -> String {
        let nets = ["198.51.100", "203.0.113", "192.0.2"];
        format!("{}.{}", self.pick(&nets), self.rng.random_range(1..255))
    }

    fn other_person(&mut self) -> u32 {
        (self.person + self.rng.random_range(1..50_000)) % 100_000
    }

    fn faulty(&self) -> bool {
        self.fault.is_some()
    }
}

/// The record(s) of `source`: one, or as many as the gateway splits one event of a provider
/// into (an SES message to several recipients, an SES opt-out of several topics).
pub(super) fn build(source: Source, cx: &mut Ctx<'_>) -> Vec<Built> {
    let mut out = match source {
        Source::Json => vec![json_record(cx)],
        Source::Csv => vec![csv_record(cx)],
        provider => provider_build(provider, cx),
    };
    if cx.fault == Some(Fault::Malformed) {
        out.truncate(1);
        let b = &mut out[0];
        match source {
            // A column too many in the data row.
            Source::Csv => b.payload.extend_from_slice(b",unexpected"),
            Source::Json => cut_short(b),
            provider => provider_malformed(provider, b),
        }
    }
    out
}

/// Cuts a record short, as by a proxy's body limit: the malformed record of JSON formats.
fn cut_short(b: &mut Built) {
    let keep = b.payload.len() * 2 / 3;
    b.payload.truncate(keep.max(1));
}

// ---------------------------------------------------------------------------------------
// The providers: `providers/<name>/loadgen.rs`, declared here (as `formats::<name>`) for every
// provider of `providers/providers.txt` whose folder has one, and dispatched to by `Source`.

/// Writes the per-provider dispatch over the `(module, Variant)` list of the providers that
/// have a `loadgen.rs`: a provider's events, its malformed record, its weight in a `mix`, the
/// chains it is made for, and (for the tests) the webhook call that carries one event.
macro_rules! provider_dispatch {
    ($(($m:ident, $v:ident))*) => {
        /// The record(s) of one event of `provider` (`providers/<name>/loadgen.rs`, `build`).
        fn provider_build(provider: Source, cx: &mut Ctx<'_>) -> Vec<Built> {
            match provider {
                $(Source::$v => $m::build(cx),)*
                _ => panic!("no providers/{}/loadgen.rs: loadgen makes no such records", provider.as_str()),
            }
        }

        /// Makes the first record of an event of `provider` not well-formed (`malformed`).
        fn provider_malformed(provider: Source, b: &mut Built) {
            match provider {
                $(Source::$v => $m::malformed(b),)*
                _ => cut_short(b),
            }
        }

        /// The weight of `provider` in a `mix` of `chain` (`mix_weight`).
        pub(super) fn provider_weight(provider: Source, chain: &str) -> u32 {
            match provider {
                $(Source::$v => $m::mix_weight(chain),)*
                _ => 0,
            }
        }

        /// The webhook call that carries one event of `provider` (`webhook_body`).
        #[cfg(test)]
        pub(super) fn provider_webhook_body(provider: Source, payload: &[u8]) -> Vec<u8> {
            match provider {
                $(Source::$v => $m::webhook_body(payload),)*
                _ => payload.to_vec(),
            }
        }

        /// The chains loadgen makes `provider`'s events for (`CHAINS`); none for a provider
        /// without a `loadgen.rs`.
        pub(super) fn provider_chains(provider: Source) -> &'static [&'static str] {
            match provider {
                $(Source::$v => $m::CHAINS,)*
                _ => &[],
            }
        }
    };
}

tributary_engine::provider_modules!(loadgen, provider_dispatch);

fn from_json(v: Value, email: Option<String>, identity: Identity) -> Built {
    Built {
        payload: serde_json::to_vec(&v).expect("JSON values serialize"),
        csv_header: None,
        email,
        identity,
    }
}

/// The text of a scalar the way the engine's readers turn it into part of an identity.
fn scalar(v: &Value) -> String {
    match v {
        Value::String(s) => s.trim().to_owned(),
        other => other.to_string(),
    }
}

fn iso_ms(t: i64, ms: u32) -> String {
    let (y, m, d, h, mi, s) = civil(t);
    format!("{y:04}-{m:02}-{d:02}T{h:02}:{mi:02}:{s:02}.{ms:03}Z")
}

// Every chain's records in the canonical formats: `services/<chain>/loadgen.rs`, declared here
// as modules by `tributary_engine::chain_modules!`, and the dispatch to them by chain name.
macro_rules! chain_dispatch {
    ($(($name:ident, $c:ident))*) => {
        fn chain_json_fields(cx: &mut Ctx<'_>, o: &mut Map<String, Value>) {
            match cx.chain {
                $(c if c == tributary_engine::chains::$c.name => $name::json_fields(cx, o),)*
                other => unreachable!("no chain '{other}' (loadgen checks the chain first)"),
            }
        }

        fn chain_csv_columns(
            cx: &mut Ctx<'_>,
            with_id: bool,
            time: String,
            id: &str,
        ) -> (&'static str, Vec<(&'static str, String)>) {
            match cx.chain {
                $(c if c == tributary_engine::chains::$c.name => $name::csv_columns(cx, with_id, time, id),)*
                other => unreachable!("no chain '{other}' (loadgen checks the chain first)"),
            }
        }

        /// A chain's weights of `json` and `csv` in a `mix`.
        pub(super) fn chain_mix_weights(chain: &str) -> (u32, u32) {
            match chain {
                $(c if c == tributary_engine::chains::$c.name => $name::MIX_WEIGHTS,)*
                _ => (0, 0),
            }
        }
    };
}
tributary_engine::chain_modules!(loadgen, chain_dispatch);

// ---------------------------------------------------------------------------------------
// json: the canonical format.

fn json_record(cx: &mut Ctx<'_>) -> Built {
    let email = cx.email(false);
    let id = format!("{}-{}-{}", cx.chain, cx.seed, cx.i);
    let t = cx.t;
    let time: Value = match cx.i % 4 {
        0 => json!(t),
        1 => json!(t * 1000),
        2 => json!(format_rfc3339(t)),
        _ => json!(format_naive(t)),
    };
    let mut o = Map::new();
    o.insert("event_id".into(), json!(id));
    o.insert("event_time".into(), time);
    if let Some(e) = &email {
        o.insert("email".into(), json!(e));
    }
    if !cx.faulty() && cx.chance(0.15) {
        o.insert("tenant_id".into(), json!(cx.tenant));
    }
    chain_json_fields(cx, &mut o);
    from_json(Value::Object(o), email, Identity::Known(id))
}

// ---------------------------------------------------------------------------------------
// csv: one data row, the upload's header row in the `csv-header` header.

fn csv_field(s: &str) -> String {
    if s.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s.to_owned()
    }
}

fn csv_time(cx: &mut Ctx<'_>) -> String {
    let t = cx.t;
    match cx.rng.random_range(0..3) {
        0 => format_naive(t),
        1 => t.to_string(),
        _ => format_rfc3339(t),
    }
}

fn csv_record(cx: &mut Ctx<'_>) -> Built {
    // Faulty records use the layout with every column, so each fault is the only one.
    let with_id = cx.faulty() || cx.chance(0.7);
    let email = cx.email(false);
    let id = format!("{}-{}-{}", cx.chain, cx.seed, cx.i);
    let time = csv_time(cx);
    let (email_col, mut cols) = chain_csv_columns(cx, with_id, time, &id);
    if let Some(e) = &email {
        cols.insert(0, (email_col, e.clone()));
    }
    let header: Vec<String> = cols.iter().map(|(c, _)| csv_field(c)).collect();
    let row: Vec<String> = cols.iter().map(|(_, v)| csv_field(v)).collect();
    Built {
        payload: row.join(",").into_bytes(),
        csv_header: Some(header.join(",")),
        email,
        identity: if with_id { Identity::Known(id) } else { Identity::Hashed },
    }
}
