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
    pub const NAMES: [&'static str; 9] = {
        let mut names = ["mix"; 9];
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

/// The record(s) of `source`: one, or for an SES message to several recipients (or an SES
/// opt-out of several topics) one per recipient (topic), as the gateway splits them.
pub(super) fn build(source: Source, cx: &mut Ctx<'_>) -> Vec<Built> {
    let mut out = match source {
        Source::Json => vec![json_record(cx)],
        Source::Csv => vec![csv_record(cx)],
        Source::Sendgrid => vec![sendgrid(cx)],
        Source::Mailgun => vec![mailgun(cx)],
        Source::Ses => ses(cx),
        Source::Postmark => vec![postmark(cx)],
        Source::Mailchimp => vec![mailchimp(cx)],
        Source::Mandrill => vec![mandrill(cx)],
    };
    if cx.fault == Some(Fault::Malformed) {
        out.truncate(1);
        let b = &mut out[0];
        match source {
            // A column too many in the data row.
            Source::Csv => b.payload.extend_from_slice(b",unexpected"),
            // A Latin-1 body, as some form posts are.
            Source::Mailchimp if b.payload.first() != Some(&b'{') => {
                b.payload.extend_from_slice(b"&data%5Bmerges%5D%5BFNAME%5D=Ren%E9")
            }
            // Cut short, as by a proxy's body limit.
            _ => {
                let keep = b.payload.len() * 2 / 3;
                b.payload.truncate(keep.max(1));
            }
        }
    }
    out
}

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
    let person = cx.person;
    let list = format!("list-{}", person % 7);
    match cx.chain {
        "users" => {
            o.insert("user_id".into(), json!(person.to_string()));
            o.insert("first_name".into(), json!(cx.first()));
            o.insert(
                "country".into(),
                json!(["de", "us", "gb", "fr", "jp"][person as usize % 5]),
            );
            o.insert(
                "attributes".into(),
                json!({"plan": (["free", "pro", "team"][person as usize % 3])}),
            );
        }
        "unsubscribes" => {
            if !person.is_multiple_of(3) {
                o.insert("list_id".into(), json!(list));
            }
            o.insert("method".into(), json!("link"));
        }
        "blocklists" => {
            o.insert(
                "reason".into(),
                json!(["HARD_BOUNCE", "SPAM_COMPLAINT", "MANUAL"][person as usize % 3]),
            );
        }
        "subscriptions" => {
            o.insert("list_id".into(), json!(list));
            o.insert(
                "action".into(),
                json!(["SUBSCRIBE", "CONFIRM", "RESUBSCRIBE"][person as usize % 3]),
            );
            o.insert("consent_ip".into(), json!(format!("198.51.100.{}", person % 250)));
        }
        _ => {
            o.insert("message_id".into(), json!(format!("msg-{person}-{}", cx.i / 3)));
            o.insert("campaign_id".into(), json!(format!("c-{}", person % 11)));
            o.insert(
                "event_type".into(),
                json!(["SENT", "DELIVERED", "OPENED", "CLICKED", "BOUNCED"][(cx.i % 5) as usize]),
            );
        }
    }
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
    let person = cx.person;
    let email_col;
    let mut cols: Vec<(&str, String)> = Vec::new();
    match (cx.chain, with_id) {
        ("users", true) => {
            email_col = "email";
            let phone = if cx.chance(0.5) {
                format!("+49 30 {}", 1_000_000 + person)
            } else {
                format!("(555) 01{:02}-{:04}", person % 100, person % 10_000)
            };
            let (city, country, tz) = cx.pick(&[
                ("Berlin", "de", "Europe/Berlin"),
                ("Washington, D.C.", "US", "America/New_York"),
                ("Lyon", "fr", "Europe/Paris"),
                ("Ōsaka", "JP", "Asia/Tokyo"),
            ]);
            cols.extend([
                ("user_id", format!("u{person}")),
                ("first_name", cx.first().to_owned()),
                ("last_name", cx.last().to_owned()),
                ("phone", phone),
                ("country", country.to_owned()),
                ("city", city.to_owned()),
                ("timezone", tz.to_owned()),
                ("locale", cx.pick(&["de_DE", "en-US", "fr_FR", "ja-JP", ""]).to_owned()),
                ("updated_at", time),
                ("event_id", id.clone()),
            ]);
        }
        ("users", false) => {
            email_col = "Email Address";
            cols.extend([
                ("First Name", cx.first().to_owned()),
                ("Last Name", cx.last().to_owned()),
                ("Phone Number", String::new()),
                ("CC", cx.pick(&["DE", "US", "GB", ""]).to_owned()),
                ("MEMBER_RATING", cx.rng.random_range(1..6).to_string()),
                ("LEID", (100_000_000 + person).to_string()),
                ("LAST_CHANGED", format_naive(cx.t)),
                (
                    "TIMEZONE",
                    cx.pick(&["Europe/Berlin", "America/Chicago", ""]).to_owned(),
                ),
            ]);
        }
        ("unsubscribes", true) => {
            email_col = "email";
            cols.extend([
                ("list_id", cx.pick(&["newsletter", "offers", "all", ""]).to_owned()),
                ("reason", cx.pick(&["too many emails", "not relevant", ""]).to_owned()),
                ("campaign_id", cx.pick(CAMPAIGNS).to_owned()),
                ("timestamp", time),
                ("event_id", id.clone()),
            ]);
        }
        ("unsubscribes", false) => {
            email_col = "Email Address";
            cols.extend([
                ("UNSUB_TIME", format_naive(cx.t)),
                ("UNSUB_CAMPAIGN_ID", cx.hex(10)),
                (
                    "UNSUB_REASON",
                    cx.pick(&[
                        "N/A (Unsubscribed by admin)",
                        "I no longer want to receive these emails",
                        "",
                    ])
                    .to_owned(),
                ),
                ("LIST", cx.pick(&["Newsletter", "Product updates"]).to_owned()),
            ]);
        }
        ("blocklists", true) => {
            email_col = "email";
            cols.extend([
                (
                    "reason",
                    cx.pick(&["hard_bounce", "spam", "MANUAL", "invalid", "bounce"])
                        .to_owned(),
                ),
                ("timestamp", time),
                ("event_id", id.clone()),
            ]);
        }
        ("blocklists", false) => {
            email_col = "Email Address";
            cols.extend([
                ("CLEAN_TIME", format_naive(cx.t)),
                ("CLEAN_REASON", cx.pick(&["hard", "hard", "abuse"]).to_owned()),
                ("CLEAN_CAMPAIGN_ID", cx.hex(10)),
            ]);
        }
        ("subscriptions", true) => {
            email_col = "email";
            let ip = cx.ip();
            cols.extend([
                ("list", cx.pick(&["newsletter", "offers", "events"]).to_owned()),
                ("action", cx.pick(&["subscribe", "confirm", "RESUBSCRIBE"]).to_owned()),
                ("consent_ip", ip),
                ("consent_at", format_rfc3339(cx.t - 30)),
                ("timestamp", time),
                ("event_id", id.clone()),
            ]);
        }
        ("subscriptions", false) => {
            email_col = "Email Address";
            let (ip1, ip2) = (cx.ip(), cx.ip());
            let confirmed = cx.chance(0.7);
            cols.extend([
                ("OPTIN_TIME", format_naive(cx.t - 600)),
                ("OPTIN_IP", ip1),
                (
                    "CONFIRM_TIME",
                    if confirmed { format_naive(cx.t) } else { String::new() },
                ),
                ("CONFIRM_IP", if confirmed { ip2 } else { String::new() }),
                ("LIST", cx.pick(&["Newsletter", "Product updates"]).to_owned()),
            ]);
        }
        (_, with_id) => {
            email_col = "recipient";
            let event = cx.pick(&[
                "delivered",
                "delivered",
                "open",
                "click",
                "bounce",
                "processed",
                "deferred",
            ]);
            cols.push(("timestamp", time));
            if with_id {
                cols.push(("event_id", id.clone()));
            }
            cols.extend([
                ("msg_id", format!("<{}@mta.example.com>", cx.hex(16))),
                ("event", event.to_owned()),
                ("campaign", cx.pick(CAMPAIGNS).to_owned()),
            ]);
        }
    }
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

// ---------------------------------------------------------------------------------------
// SendGrid Event Webhook: one object of the array.

fn sendgrid(cx: &mut Ctx<'_>) -> Built {
    let kinds: &[&str] = match cx.chain {
        "mailings" => &[
            "processed",
            "processed",
            "delivered",
            "delivered",
            "delivered",
            "open",
            "open",
            "click",
            "deferred",
            "bounce",
            "blocked",
            "dropped",
            "spamreport",
            "unsubscribe",
            "group_unsubscribe",
        ],
        "blocklists" => &["bounce", "bounce", "spamreport"],
        "unsubscribes" => &["unsubscribe", "group_unsubscribe", "group_unsubscribe"],
        _ => &["group_resubscribe"],
    };
    let kind = cx.pick(kinds);
    let email = cx.email(true);
    let id = cx.b64(22);
    let mut o = Map::new();
    if let Some(e) = &email {
        o.insert("email".into(), json!(e));
    }
    o.insert("timestamp".into(), json!(cx.t));
    let smtp = format!(
        "<{}.{}@ismtpd-{}>",
        cx.hex(11),
        cx.hex(3),
        cx.rng.random_range(100..999)
    );
    o.insert("smtp-id".into(), json!(smtp));
    o.insert("event".into(), json!(if kind == "blocked" { "bounce" } else { kind }));
    match cx.rng.random_range(0..4) {
        0 => {}
        1 => {
            o.insert("category".into(), json!(cx.pick(CAMPAIGNS)));
        }
        2 => {
            o.insert("category".into(), json!([cx.pick(CAMPAIGNS), "newsletter"]));
        }
        _ => {
            o.insert("singlesend_id".into(), json!(cx.uuid()));
        }
    }
    o.insert("sg_event_id".into(), json!(id));
    let msg = format!(
        "{}.filterdrecv-{}-1-{}-{}.0",
        cx.b64(22),
        cx.hex(10),
        cx.hex(8).to_ascii_uppercase(),
        cx.rng.random_range(1..40)
    );
    o.insert("sg_message_id".into(), json!(msg));
    let ip = cx.ip();
    let agent = cx.pick(AGENTS);
    let extra = match kind {
        "processed" => json!({"pool": {"name": "marketing", "id": 210}}),
        "delivered" => json!({"response": "250 2.0.0 OK  1764000000 q7si123", "ip": "168.245.12.34", "tls": 1}),
        "deferred" => {
            json!({"response": "451 4.7.1 Try again later", "attempt": cx.rng.random_range(1..6).to_string()})
        }
        "bounce" => json!({"type": "bounce", "status": "5.1.1", "bounce_classification": "Invalid Address",
            "reason": "550 5.1.1 The email account that you tried to reach does not exist."}),
        "blocked" => json!({"type": "blocked", "status": "4.7.1", "bounce_classification": "Reputation",
            "reason": "421 4.7.1 Messages temporarily deferred due to user complaints"}),
        "dropped" => json!({"reason": "Bounced Address", "status": "5.0.0"}),
        "open" => json!({"useragent": agent, "ip": ip, "sg_machine_open": cx.chance(0.2)}),
        "click" => {
            json!({"useragent": agent, "ip": ip, "url": cx.pick(URLS), "url_offset": {"index": 0, "type": "html"}})
        }
        "group_unsubscribe" | "group_resubscribe" => {
            json!({"useragent": agent, "ip": ip, "url": URLS[2], "asm_group_id": cx.rng.random_range(1..30)})
        }
        _ => json!({}),
    };
    if let Value::Object(m) = extra {
        o.extend(m);
    }
    from_json(Value::Object(o), email, Identity::Known(id))
}

// ---------------------------------------------------------------------------------------
// Mailgun: one webhook body (`signature` and `event-data`), or `event-data` alone.

fn mailgun(cx: &mut Ctx<'_>) -> Built {
    let kinds: &[&str] = match cx.chain {
        "mailings" => &[
            "accepted",
            "delivered",
            "delivered",
            "delivered",
            "opened",
            "opened",
            "clicked",
            "failed-permanent",
            "failed-temporary",
            "failed-suppress",
            "complained",
            "unsubscribed",
        ],
        "blocklists" => &["failed-permanent", "failed-permanent", "complained"],
        _ => &["unsubscribed"],
    };
    let kind = cx.pick(kinds);
    let email = cx.email(true);
    let id = cx.b64(22);
    let ts = json!(cx.t as f64 + f64::from(cx.rng.random_range(0..1_000_000u32)) / 1e6);
    let event = kind.split('-').next().unwrap_or(kind);
    let message_id = format!(
        "{}.1.{}@mg.example.com",
        format_compact(cx.t - 5),
        cx.hex(16).to_ascii_uppercase()
    );
    let mut headers =
        json!({"message-id": message_id, "from": "Acme News <news@mg.example.com>", "subject": "Your weekly digest"});
    let mut d = Map::new();
    d.insert("id".into(), json!(id));
    d.insert("timestamp".into(), ts.clone());
    d.insert(
        "log-level".into(),
        json!(if event == "failed" { "error" } else { "info" }),
    );
    d.insert("event".into(), json!(event));
    if let Some(e) = &email {
        d.insert("recipient".into(), json!(e));
        let domain = e.rsplit_once('@').map(|(_, d)| d).unwrap_or_default();
        d.insert("recipient-domain".into(), json!(domain));
        headers["to"] = json!(format!("{} <{e}>", cx.first()));
    }
    let tags = if cx.chance(0.5) {
        json!([cx.pick(CAMPAIGNS)])
    } else {
        json!([])
    };
    d.insert("tags".into(), tags);
    d.insert("campaigns".into(), json!([]));
    d.insert("user-variables".into(), json!({}));
    d.insert(
        "message".into(),
        json!({"headers": headers, "attachments": [], "size": cx.rng.random_range(2_000..90_000)}),
    );
    let ip = cx.ip();
    let agent = cx.pick(AGENTS);
    let extra = match kind {
        "accepted" => {
            json!({"method": "HTTP", "envelope": {"sender": "bounce@mg.example.com", "targets": email, "transport": "smtp"}})
        }
        "delivered" => json!({"envelope": {"sending-ip": "198.51.100.200", "transport": "smtp"},
            "delivery-status": {"tls": true, "mx-host": "mx.example.com", "attempt-no": 1, "description": "", "code": 250, "message": "OK"}}),
        "failed-permanent" => json!({"severity": "permanent", "reason": "bounce",
            "delivery-status": {"attempt-no": 1, "code": 550, "description": "",
                "message": "5.1.1 The email account that you tried to reach does not exist."}}),
        "failed-temporary" => json!({"severity": "temporary", "reason": "generic",
            "delivery-status": {"attempt-no": 2, "code": 452, "message": "4.2.2 The email account that you tried to reach is over quota."}}),
        "failed-suppress" => json!({"severity": "permanent", "reason": "suppress-bounce",
            "delivery-status": {"attempt-no": 1, "code": 605, "description": "Not delivering to previously bounced address", "message": ""}}),
        "opened" | "clicked" | "unsubscribed" => {
            let mut x = json!({"ip": ip, "geolocation": {"country": "US", "region": "CA", "city": "San Francisco"},
                "client-info": {"client-type": "browser", "client-os": "OS X", "device-type": "desktop", "user-agent": agent}});
            if kind == "clicked" {
                x["url"] = json!(cx.pick(URLS));
            }
            if kind == "unsubscribed" && cx.chance(0.5) {
                x["mailing-list"] = json!({"address": "news@lists.example.com", "list-id": "news", "sid": cx.b64(4)});
            }
            x
        }
        _ => json!({}),
    };
    if let Value::Object(m) = extra {
        d.extend(m);
    }
    let identity = Identity::Known(format!("{id}:{}", scalar(&ts)));
    let body = if cx.chance(0.8) {
        json!({"signature": {"timestamp": cx.t.to_string(), "token": cx.hex(50), "signature": cx.hex(64)}, "event-data": d})
    } else {
        Value::Object(d)
    };
    from_json(body, email, identity)
}

fn format_compact(t: i64) -> String {
    let (y, m, d, h, mi, s) = civil(t);
    format!("{y:04}{m:02}{d:02}{h:02}{mi:02}{s:02}")
}

// ---------------------------------------------------------------------------------------
// Amazon SES: an SNS notification, an EventBridge event or the SES JSON itself, one
// recipient (and, for unsubscribes, one topic) a record.

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

fn ses(cx: &mut Ctx<'_>) -> Vec<Built> {
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

// ---------------------------------------------------------------------------------------
// Postmark: one webhook body.

fn postmark_time(t: i64, frac: u32) -> String {
    let (y, m, d, h, mi, s) = civil(t);
    format!("{y:04}-{m:02}-{d:02}T{h:02}:{mi:02}:{s:02}.{frac:07}Z")
}

/// With an offset of +01:00, as Postmark writes `ChangedAt`.
fn postmark_offset_time(t: i64, micros: u32) -> String {
    let (y, m, d, h, mi, s) = civil(t + 3600);
    format!("{y:04}-{m:02}-{d:02}T{h:02}:{mi:02}:{s:02}.{micros:06}+01:00")
}

fn postmark(cx: &mut Ctx<'_>) -> Built {
    let kinds: &[&str] = match cx.chain {
        "mailings" => &[
            "Delivery",
            "Delivery",
            "Delivery",
            "Open",
            "Open",
            "Click",
            "Bounce:HardBounce",
            "Bounce:SoftBounce",
            "Bounce:Transient",
            "SpamComplaint",
            "SubscriptionChange:ManualSuppression",
        ],
        "blocklists" => &[
            "Bounce:HardBounce",
            "Bounce:HardBounce",
            "Bounce:BadEmailAddress",
            "SpamComplaint",
            "SubscriptionChange:HardBounce",
            "SubscriptionChange:SpamComplaint",
        ],
        "unsubscribes" => &["SubscriptionChange:ManualSuppression"],
        _ => &["SubscriptionChange:Reactivate"],
    };
    let kind = cx.pick(kinds);
    let (record_type, sub) = kind.split_once(':').unwrap_or((kind, ""));
    let email = cx.email(true);
    let message_id = cx.uuid();
    let mut o = Map::new();
    o.insert("RecordType".into(), json!(record_type));
    o.insert("ServerID".into(), json!(23));
    let bounce_like = matches!(record_type, "Bounce" | "SpamComplaint");
    let time = if record_type == "SubscriptionChange" {
        postmark_offset_time(cx.t, cx.rng.random_range(0..1_000_000))
    } else if cx.chance(0.5) {
        postmark_time(cx.t, cx.rng.random_range(0..10_000_000))
    } else {
        format_rfc3339(cx.t)
    };
    let time_key = match record_type {
        "Bounce" | "SpamComplaint" => "BouncedAt",
        "Delivery" => "DeliveredAt",
        "SubscriptionChange" => "ChangedAt",
        _ => "ReceivedAt",
    };
    let stream = match record_type {
        "SubscriptionChange" => cx.pick(&["broadcast", "newsletter", "outbound"]),
        _ => "outbound",
    };
    o.insert("MessageStream".into(), json!(stream));
    o.insert("MessageID".into(), json!(message_id));
    if cx.chance(0.7) {
        o.insert("Tag".into(), json!(cx.pick(CAMPAIGNS)));
    }
    o.insert("Metadata".into(), json!({"customer": format!("c{}", cx.person % 977)}));
    let bounce_id: u64 = cx.rng.random_range(1_000_000_000_000_000..9_000_000_000_000_000_000);
    if let Some(e) = &email {
        o.insert((if bounce_like { "Email" } else { "Recipient" }).into(), json!(e));
    }
    o.insert(time_key.into(), json!(time));
    let ip = cx.ip();
    let agent = cx.pick(AGENTS);
    let extra = match (record_type, sub) {
        ("Delivery", _) => json!({"Details": "smtp;250 2.0.0 OK 1764000000 q7si123"}),
        ("Bounce", t) | ("SpamComplaint", t) => {
            let t = if record_type == "SpamComplaint" {
                "SpamComplaint"
            } else {
                t
            };
            let (code, name, desc) = match t {
                "HardBounce" => (1, "Hard bounce", "The server was unable to deliver your message (ex: unknown user, mailbox not found)."),
                "SoftBounce" => (4096, "Soft bounce", "Unable to temporarily deliver this email."),
                "Transient" => (2, "Message delayed", "The server could not temporarily deliver your message (ex: Message is delayed due to network troubles)."),
                "BadEmailAddress" => (100000, "Invalid email address", "The address is not a valid email address."),
                _ => (512, "Spam complaint", "The subscriber explicitly marked this message as spam."),
            };
            json!({"ID": bounce_id, "Type": t, "TypeCode": code, "Name": name, "Description": desc,
                "Details": "smtp;550 5.1.1 The email account that you tried to reach does not exist.",
                "From": "news@example.com", "DumpAvailable": true, "Inactive": t != "Transient",
                "CanActivate": true, "Subject": "Your weekly digest"})
        }
        ("Open", _) => {
            json!({"FirstOpen": cx.chance(0.6), "Platform": "WebMail", "ReadSeconds": cx.rng.random_range(0..60),
            "UserAgent": agent, "Geo": {"IP": ip, "City": "Novi Sad", "CountryISOCode": "RS"}})
        }
        ("Click", _) => json!({"ClickLocation": "HTML", "Platform": "Desktop", "OriginalLink": cx.pick(URLS),
            "UserAgent": agent, "Geo": {"IP": ip}}),
        (_, "Reactivate") => json!({"Origin": cx.pick(&["Recipient", "Customer", "Admin"]), "SuppressSending": false,
            "SuppressionReason": null}),
        (_, reason) => {
            json!({"Origin": match reason { "ManualSuppression" => cx.pick(&["Recipient", "Recipient", "Customer"]), _ => "Recipient" },
            "SuppressSending": true, "SuppressionReason": reason})
        }
    };
    if let Value::Object(m) = extra {
        o.extend(m);
    }
    let id = if bounce_like {
        format!("{bounce_id}:{record_type}")
    } else {
        let mut id = format!("{message_id}:{record_type}");
        if let Some(e) = &email {
            id.push(':');
            id.push_str(&e.to_lowercase());
        }
        if matches!(record_type, "Open" | "Click" | "SubscriptionChange") {
            id.push(':');
            id.push_str(&time);
        }
        id
    };
    from_json(Value::Object(o), email, Identity::Known(id))
}

// ---------------------------------------------------------------------------------------
// Mailchimp audience webhooks: the form-encoded body of one call (sometimes JSON). No
// identity: the chain hashes the record.

fn form_encode(pairs: &[(String, String)]) -> String {
    let enc = |s: &str| -> String {
        let mut out = String::with_capacity(s.len());
        for b in s.bytes() {
            match b {
                b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => out.push(b as char),
                b' ' => out.push('+'),
                _ => out.push_str(&format!("%{b:02X}")),
            }
        }
        out
    };
    pairs
        .iter()
        .map(|(k, v)| format!("{}={}", enc(k), enc(v)))
        .collect::<Vec<_>>()
        .join("&")
}

/// `data[merges][FNAME]` pairs as nested objects.
fn form_to_json(pairs: &[(String, String)]) -> Value {
    let mut root = Map::new();
    for (k, v) in pairs {
        let path: Vec<&str> = k.split(['[', ']']).filter(|s| !s.is_empty()).collect();
        let mut cur = &mut root;
        for seg in &path[..path.len() - 1] {
            cur = cur
                .entry((*seg).to_owned())
                .or_insert_with(|| Value::Object(Map::new()))
                .as_object_mut()
                .expect("an object");
        }
        cur.insert(path[path.len() - 1].to_owned(), json!(v));
    }
    Value::Object(root)
}

fn mailchimp(cx: &mut Ctx<'_>) -> Built {
    let kinds: &[&str] = match cx.chain {
        "users" => &["subscribe", "profile", "profile", "upemail"],
        "unsubscribes" => &["unsubscribe"],
        "blocklists" => &["cleaned:hard", "cleaned:hard", "cleaned:abuse", "unsubscribe:abuse"],
        _ => &["subscribe"],
    };
    let kind = cx.pick(kinds);
    let (kind, reason) = kind.split_once(':').unwrap_or((kind, ""));
    let email = cx.email(false);
    let mut p: Vec<(String, String)> = Vec::new();
    let mut put = |k: &str, v: String| p.push((k.to_owned(), v));
    put("type", kind.to_owned());
    put("fired_at", format_naive(cx.t));
    let list_id = cx.pick(&["a6b5da1054", "3f1c9e2b77", "9e0d4c1a2b"]).to_owned();
    let member_id = format!("{:010x}", (u64::from(cx.person) * 2_654_435_761) % 0xff_ffff_ffff);
    match kind {
        "upemail" => {
            put("data[list_id]", list_id);
            put("data[new_id]", format!("{:010x}", u64::from(cx.person) * 97 + 13));
            if let Some(e) = &email {
                put("data[new_email]", e.clone());
            }
            let old = cx.other_person();
            put("data[old_email]", email_of(old));
        }
        "cleaned" => {
            put("data[list_id]", list_id);
            put("data[campaign_id]", cx.hex(10));
            put("data[reason]", reason.to_owned());
            if let Some(e) = &email {
                put("data[email]", e.clone());
            }
        }
        _ => {
            if kind == "unsubscribe" {
                let action = if cx.rng.random_bool(0.8) { "unsub" } else { "delete" };
                put("data[action]", action.to_owned());
                let why = if reason.is_empty() {
                    if cx.rng.random_bool(0.85) {
                        "manual"
                    } else {
                        "abuse"
                    }
                } else {
                    reason
                };
                put("data[reason]", why.to_owned());
            }
            put("data[id]", member_id);
            put("data[list_id]", list_id);
            if let Some(e) = &email {
                put("data[email]", e.clone());
            }
            put(
                "data[email_type]",
                (if cx.rng.random_bool(0.9) { "html" } else { "text" }).to_owned(),
            );
            if let Some(e) = &email {
                put("data[merges][EMAIL]", e.clone());
            }
            put("data[merges][FNAME]", cx.first().to_owned());
            put("data[merges][LNAME]", cx.last().to_owned());
            if cx.rng.random_bool(0.4) {
                put("data[merges][PHONE]", format!("+1 (404) 555-{:04}", cx.person % 10_000));
            }
            if cx.rng.random_bool(0.3) {
                put("data[merges][ADDRESS][addr1]", "675 Ponce de Leon Ave NE".to_owned());
                put("data[merges][ADDRESS][city]", "Atlanta".to_owned());
                put("data[merges][ADDRESS][state]", "GA".to_owned());
                put("data[merges][ADDRESS][zip]", "30308".to_owned());
                put("data[merges][ADDRESS][country]", "US".to_owned());
            }
            if cx.rng.random_bool(0.5) {
                put("data[merges][INTERESTS]", "Group1,Group2".to_owned());
            }
            let ip = format!("10.20.{}.{}", cx.person % 250, cx.person / 250 % 250);
            put("data[ip_opt]", ip.clone());
            if kind == "subscribe" {
                put("data[ip_signup]", ip);
            }
            if kind == "unsubscribe" {
                put("data[campaign_id]", cx.hex(10));
            }
        }
    }
    let as_json = !cx.faulty() && cx.chance(0.1);
    let payload = if as_json {
        form_to_json(&p).to_string().into_bytes()
    } else {
        form_encode(&p).into_bytes()
    };
    Built {
        payload,
        csv_header: None,
        email,
        identity: Identity::Hashed,
    }
}

// ---------------------------------------------------------------------------------------
// Mandrill: one element of `mandrill_events`.

fn mandrill(cx: &mut Ctx<'_>) -> Built {
    let kinds: &[&str] = match cx.chain {
        "mailings" => &[
            "send",
            "send",
            "open",
            "open",
            "click",
            "deferral",
            "hard_bounce",
            "soft_bounce",
            "spam",
            "unsub",
            "reject",
        ],
        "blocklists" => &["hard_bounce", "hard_bounce", "spam", "sync", "sync"],
        _ => &["unsub"],
    };
    let kind = cx.pick(kinds);
    let email = cx.email(true);
    if kind == "sync" {
        return mandrill_sync(cx, email);
    }
    let id = cx.hex(32);
    let ts = if matches!(kind, "open" | "click") && cx.chance(0.3) {
        json!(cx.t as f64 + f64::from(cx.rng.random_range(1..1000u32)) / 1000.0)
    } else {
        json!(cx.t)
    };
    let sent = cx.t - cx.rng.random_range(1..3600);
    let state = match kind {
        "hard_bounce" | "soft_bounce" => "bounced",
        "reject" => "rejected",
        "deferral" => "deferred",
        "spam" => "spam",
        _ => "sent",
    };
    let mut msg = json!({
        "ts": sent,
        "subject": "Your weekly digest",
        "sender": "news@example.com",
        "tags": if cx.chance(0.6) { json!([cx.pick(CAMPAIGNS)]) } else { json!([]) },
        "opens": [],
        "clicks": [],
        "state": state,
        "metadata": {"user_id": cx.person},
        "_id": id,
        "_version": cx.b64(22)
    });
    if let Some(e) = &email {
        msg["email"] = json!(e);
    }
    match kind {
        "hard_bounce" => {
            msg["bounce_description"] = json!("bad_mailbox");
            msg["diag"] = json!("smtp;550 5.1.1 The email account that you tried to reach does not exist.");
        }
        "soft_bounce" => {
            msg["bounce_description"] = json!("mailbox_full");
            msg["diag"] = json!("smtp;552 5.2.2 Over quota");
        }
        "deferral" => {
            msg["smtp_events"] = json!([{"ts": cx.t, "type": "deferred", "diag": "451 4.3.5 Temporarily unavailable, try again later.",
                "source_ip": "127.0.0.1", "destination_ip": "203.0.113.7", "size": 0}]);
        }
        _ => {}
    }
    let mut o = json!({"event": kind, "msg": msg, "_id": id, "ts": ts});
    if matches!(kind, "open" | "click") {
        o["ip"] = json!(cx.ip());
        o["user_agent"] = json!(cx.pick(AGENTS));
        o["location"] = json!({"country_short": "US", "country": "United States", "city": "Oklahoma City"});
        if kind == "click" {
            o["url"] = json!(cx.pick(URLS));
        }
    }
    let mut identity = format!("{id}:{kind}");
    if matches!(kind, "open" | "click" | "deferral") {
        identity.push(':');
        identity.push_str(&scalar(&ts));
    }
    from_json(o, email, Identity::Known(identity))
}

/// A rejection blacklist sync event: no identity of its own.
fn mandrill_sync(cx: &mut Ctx<'_>, email: Option<String>) -> Built {
    let ty = cx.pick(&["blacklist", "blacklist", "denylist"]);
    let action = cx.pick(&["add", "add", "change", "remove"]);
    let reason = cx.pick(&["hard-bounce", "hard-bounce", "spam", "custom"]);
    let expires = if reason == "hard-bounce" && cx.chance(0.5) {
        json!(format_naive(cx.t + 30 * 86_400))
    } else {
        Value::Null
    };
    let mut reject = json!({
        "reason": reason,
        "detail": if reason == "hard-bounce" { " smtp;550 5.1.1 The email account that you tried to reach does not exist." } else { "" },
        "last_event_at": format_naive(cx.t),
        "created_at": format_naive(cx.t - cx.rng.random_range(0..30 * 86_400)),
        "expires_at": expires,
        "expired": false,
        "subaccount": null,
        "sender": null
    });
    if let Some(e) = &email {
        reject["email"] = json!(e);
    }
    let o = json!({"type": ty, "action": action, "reject": reject, "ts": cx.t});
    from_json(o, email, Identity::Hashed)
}
