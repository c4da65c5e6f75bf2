//! The clean events the read side folds, typed once from either place they are read from: a
//! clean topic's Avro record or a lake table's Arrow row. Past this module no field is looked
//! up by name.

use crate::{Error, Result};

/// An address's identity: the SHA-256 of its normalized form.
pub type Sha = [u8; 32];

/// Parses a lower- or upper-case hex SHA-256.
pub fn parse_sha(hex_str: &str) -> Option<Sha> {
    let mut out = [0u8; 32];
    hex::decode_to_slice(hex_str.trim(), &mut out).ok()?;
    Some(out)
}

pub fn sha_hex(sha: &Sha) -> String {
    hex::encode(sha)
}

/// The users-chain fields a profile shows, in this order.
pub const USER_FIELDS: [&str; 9] = [
    "user_id",
    "first_name",
    "last_name",
    "phone",
    "country",
    "city",
    "timezone",
    "locale",
    "previous_email",
];
/// Index of `user_id` in [`USER_FIELDS`].
pub const USER_ID: usize = 0;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum BlockAction {
    Add,
    Remove,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum BlockKind {
    Email,
    Domain,
}

/// The mailing event types the profile counts; the others are read and ignored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MailType {
    Sent,
    Delivered,
    Opened,
    Clicked,
    Bounced,
    Complained,
    Other,
}

impl MailType {
    fn parse(s: &str) -> MailType {
        match s {
            "SENT" => MailType::Sent,
            "DELIVERED" => MailType::Delivered,
            "OPENED" => MailType::Opened,
            "CLICKED" => MailType::Clicked,
            "BOUNCED" => MailType::Bounced,
            "COMPLAINED" => MailType::Complained,
            _ => MailType::Other,
        }
    }
}

/// What one clean event says, per chain.
#[derive(Debug, Clone, PartialEq)]
pub enum Kind {
    Unsubscribe {
        /// None: every list.
        list: Option<String>,
        reason: Option<String>,
    },
    Block {
        action: BlockAction,
        kind: BlockKind,
        /// The blocked address or domain.
        value: String,
        reason: String,
        expires_at: Option<i64>,
    },
    Subscribe {
        list: String,
        consent_ip: Option<String>,
        consent_at: Option<i64>,
    },
    User {
        /// Values of [`USER_FIELDS`], by index.
        fields: [Option<String>; USER_FIELDS.len()],
        attributes: Vec<(String, String)>,
    },
    Mailing {
        event_type: MailType,
    },
}

/// One clean event of one tenant.
#[derive(Debug, Clone, PartialEq)]
pub struct Event {
    pub tenant: String,
    /// None only for records without an address (domain blocks).
    pub sha: Option<Sha>,
    pub email: Option<String>,
    /// Microseconds since the epoch, UTC.
    pub time: i64,
    pub kind: Kind,
}

/// The read side's chains: those whose clean records [`from_fields`] types, by their names in
/// the chain registry ([`tributary_engine::chains`]; today every chain of it). A chain added to
/// the registry stays unseen here until the view gives its events a [`Kind`]. A profile reads
/// all five; the suppression view needs only the first three. The order decides nothing (the
/// view's fold does not depend on the order of events).
pub const CHAINS: [&str; 5] = {
    use tributary_engine::chains::{BLOCKLISTS, MAILINGS, SUBSCRIPTIONS, UNSUBSCRIBES, USERS};
    [
        UNSUBSCRIBES.name,
        BLOCKLISTS.name,
        SUBSCRIPTIONS.name,
        USERS.name,
        MAILINGS.name,
    ]
};

/// Field access over one record, whichever form it is read in.
pub trait Fields {
    fn str(&self, name: &str) -> Option<&str>;
    fn micros(&self, name: &str) -> Option<i64>;
    fn map(&self, name: &str) -> Vec<(String, String)>;
}

fn owned(f: &impl Fields, name: &str) -> Option<String> {
    f.str(name).map(str::to_owned)
}

/// Types one record of `chain`'s clean topic or table.
pub fn from_fields(chain: &str, f: &impl Fields) -> Result<Event> {
    let bad = |what: &str| Error::Record(format!("{chain} record without {what}"));
    let tenant = f.str("tenant_id").ok_or_else(|| bad("tenant_id"))?.to_owned();
    let time = f.micros("event_time").ok_or_else(|| bad("event_time"))?;
    let email = owned(f, "email");
    let sha = match f.str("email_sha256") {
        Some(h) => Some(parse_sha(h).ok_or_else(|| Error::Record(format!("{chain}: email_sha256 '{h}' is not hex")))?),
        None => email
            .as_deref()
            .and_then(|e| parse_sha(&tributary_engine::normalize::sha256_hex(e))),
    };
    let kind = match chain {
        "unsubscribes" => Kind::Unsubscribe {
            // An unsubscribe naming no list (null or empty) is from every list.
            list: owned(f, "list_id").filter(|s| !s.is_empty()),
            reason: owned(f, "reason"),
        },
        "blocklists" => Kind::Block {
            action: match f.str("action") {
                Some("ADD") => BlockAction::Add,
                Some("REMOVE") => BlockAction::Remove,
                other => return Err(Error::Record(format!("blocklists: action {other:?}"))),
            },
            kind: match f.str("kind") {
                Some("EMAIL") => BlockKind::Email,
                Some("DOMAIN") => BlockKind::Domain,
                other => return Err(Error::Record(format!("blocklists: kind {other:?}"))),
            },
            value: f.str("value").ok_or_else(|| bad("value"))?.to_ascii_lowercase(),
            reason: owned(f, "reason").unwrap_or_else(|| "OTHER".into()),
            expires_at: f.micros("expires_at"),
        },
        "subscriptions" => Kind::Subscribe {
            list: owned(f, "list_id").ok_or_else(|| bad("list_id"))?,
            consent_ip: owned(f, "consent_ip").filter(|s| !s.is_empty()),
            consent_at: f.micros("consent_at"),
        },
        "users" => Kind::User {
            fields: USER_FIELDS.map(|n| owned(f, n).filter(|s| !s.is_empty())),
            attributes: f.map("attributes"),
        },
        "mailings" => Kind::Mailing {
            event_type: MailType::parse(f.str("event_type").unwrap_or_default()),
        },
        other => return Err(Error::Record(format!("unknown chain '{other}'"))),
    };
    Ok(Event {
        tenant,
        sha,
        email,
        time,
        kind,
    })
}

/// A decoded Avro record (a clean topic's value).
pub struct AvroRecord<'a>(pub &'a [(String, apache_avro::types::Value)]);

fn plain(v: &apache_avro::types::Value) -> &apache_avro::types::Value {
    match v {
        apache_avro::types::Value::Union(_, inner) => plain(inner),
        other => other,
    }
}

impl AvroRecord<'_> {
    fn get(&self, name: &str) -> Option<&apache_avro::types::Value> {
        self.0.iter().find(|(n, _)| n == name).map(|(_, v)| plain(v))
    }
}

impl Fields for AvroRecord<'_> {
    fn str(&self, name: &str) -> Option<&str> {
        use apache_avro::types::Value;
        match self.get(name)? {
            Value::String(s) | Value::Enum(_, s) => Some(s),
            _ => None,
        }
    }
    fn micros(&self, name: &str) -> Option<i64> {
        use apache_avro::types::Value;
        match self.get(name)? {
            Value::Long(i) | Value::TimestampMicros(i) => Some(*i),
            Value::TimestampMillis(i) => Some(*i * 1000),
            Value::Int(i) => Some(i64::from(*i)),
            _ => None,
        }
    }
    fn map(&self, name: &str) -> Vec<(String, String)> {
        use apache_avro::types::Value;
        match self.get(name) {
            Some(Value::Map(m)) => {
                let mut out: Vec<(String, String)> = m
                    .iter()
                    .filter_map(|(k, v)| match plain(v) {
                        Value::String(s) => Some((k.clone(), s.clone())),
                        _ => None,
                    })
                    .collect();
                out.sort();
                out
            }
            _ => Vec::new(),
        }
    }
}

/// Decodes one clean-topic value (Confluent wire format) with its writer schema.
pub fn from_avro(chain: &str, schema: &apache_avro::Schema, payload: &[u8]) -> Result<Event> {
    let (_, mut datum) = tributary_engine::avro::split_wire(payload)
        .ok_or_else(|| Error::Record("not in the Confluent wire format".into()))?;
    #[allow(deprecated)]
    let value = apache_avro::from_avro_datum(schema, &mut datum, None)
        .map_err(|e| Error::Record(format!("Avro decode: {e}")))?;
    let apache_avro::types::Value::Record(fields) = value else {
        return Err(Error::Record("not a record".into()));
    };
    from_fields(chain, &AvroRecord(&fields))
}

/// The columns of one Arrow batch read from a lake file, looked up once per batch.
pub struct BatchFields {
    cols: Vec<(String, Col)>,
    tenant: String,
    row: usize,
}

enum Col {
    Str(arrow::array::StringArray),
    Micros(arrow::array::TimestampMicrosecondArray),
    Long(arrow::array::Int64Array),
    Map(arrow::array::MapArray),
    Other,
}

impl BatchFields {
    /// `tenant` is the file's partition value (partition columns are not in the file).
    pub fn new(batch: &arrow::record_batch::RecordBatch, tenant: &str) -> BatchFields {
        use arrow::array::{Array, AsArray};
        use arrow::datatypes::{DataType, Int64Type, TimeUnit, TimestampMicrosecondType};
        let schema = batch.schema();
        let cols = schema
            .fields()
            .iter()
            .zip(batch.columns())
            .map(|(f, a)| {
                let col = match a.data_type() {
                    DataType::Utf8 => Col::Str(a.as_string::<i32>().clone()),
                    DataType::Timestamp(TimeUnit::Microsecond, _) => {
                        Col::Micros(a.as_primitive::<TimestampMicrosecondType>().clone())
                    }
                    DataType::Int64 => Col::Long(a.as_primitive::<Int64Type>().clone()),
                    DataType::Map(_, _) => Col::Map(a.as_map().clone()),
                    _ => Col::Other,
                };
                let _ = a.len();
                (f.name().clone(), col)
            })
            .collect();
        BatchFields {
            cols,
            tenant: tenant.to_owned(),
            row: 0,
        }
    }

    pub fn at(&mut self, row: usize) -> &Self {
        self.row = row;
        self
    }

    fn col(&self, name: &str) -> Option<&Col> {
        self.cols.iter().find(|(n, _)| n == name).map(|(_, c)| c)
    }
}

impl Fields for BatchFields {
    fn str(&self, name: &str) -> Option<&str> {
        use arrow::array::Array;
        if name == "tenant_id" && self.col(name).is_none() {
            return Some(&self.tenant);
        }
        match self.col(name)? {
            Col::Str(a) if a.is_valid(self.row) => Some(a.value(self.row)),
            _ => None,
        }
    }
    fn micros(&self, name: &str) -> Option<i64> {
        use arrow::array::Array;
        match self.col(name)? {
            Col::Micros(a) if a.is_valid(self.row) => Some(a.value(self.row)),
            Col::Long(a) if a.is_valid(self.row) => Some(a.value(self.row)),
            _ => None,
        }
    }
    fn map(&self, name: &str) -> Vec<(String, String)> {
        use arrow::array::{Array, AsArray};
        let Some(Col::Map(m)) = self.col(name) else {
            return Vec::new();
        };
        if !m.is_valid(self.row) {
            return Vec::new();
        }
        let entries = m.value(self.row);
        let keys = entries.column(0).as_string::<i32>();
        let values = entries.column(1).as_string::<i32>();
        let mut out: Vec<(String, String)> = (0..entries.len())
            .filter(|i| values.is_valid(*i))
            .map(|i| (keys.value(i).to_owned(), values.value(i).to_owned()))
            .collect();
        out.sort();
        out
    }
}
