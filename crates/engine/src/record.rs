//! The stages a raw record passes through, as types: [`RawRecord`] → [`Input`] (the chain's
//! typed draft, which the provider readers fill, and [`Parsed`], fields by name, which the
//! `json` and `csv` readers fill) → the chain's validated record, whose [`Common`] part every
//! chain shares → encoded Avro.

use crate::avro::AvroWriter;
use crate::error::{ErrorClass, RecordError};
use crate::normalize;
use serde_json::{Map, Value};

macro_rules! source_enum {
    ($(($m:ident, $v:ident))*) => {
        /// The source formats a raw record may declare in its `source` header: the built-in
        /// `json` and `csv`, then every provider of the registry (`providers/providers.txt`).
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub enum Source {
            Json,
            Csv,
            $($v,)*
        }

        impl Source {
            /// Every source format, in the order they are documented; the one list the
            /// fuzzers, loadgen's `--format` and parsing read.
            pub const ALL: [Source; 2 + [$(stringify!($m)),*].len()] = [Source::Json, Source::Csv, $(Source::$v),*];
            /// The providers (every format but `json` and `csv`), in the registry's order.
            pub const PROVIDERS: [Source; [$(stringify!($m)),*].len()] = [$(Source::$v),*];

            /// The name in the `source` header (and, for a provider, in the gateway's URLs).
            pub const fn as_str(self) -> &'static str {
                match self {
                    Source::Json => "json",
                    Source::Csv => "csv",
                    $(Source::$v => stringify!($m),)*
                }
            }
        }
    };
}
with_providers!(source_enum);

impl Source {
    /// Every format's name, as the `source` header carries it.
    pub const NAMES: [&'static str; Source::ALL.len()] = {
        let mut names = [""; Source::ALL.len()];
        let mut i = 0;
        while i < Source::ALL.len() {
            names[i] = Source::ALL[i].as_str();
            i += 1;
        }
        names
    };
    /// Whether this is a provider's format (not `json` or `csv`).
    pub const fn is_provider(self) -> bool {
        !matches!(self, Source::Json | Source::Csv)
    }
    pub fn parse(s: &str) -> Option<Source> {
        Source::ALL.into_iter().find(|source| source.as_str() == s)
    }
    /// The error for a format this chain does not read.
    pub fn unsupported(self, chain: &str) -> RecordError {
        RecordError::new(
            ErrorClass::UnknownSource,
            format!("the {chain} chain does not read source format '{}'", self.as_str()),
        )
    }
}

/// The names of the fields every chain's record begins with, as the `json` and `csv` sources
/// and the provider readers give them. A chain declares its own in its `field` module; every
/// use goes through these constants, so a misspelt name does not compile.
pub mod field {
    pub const TENANT_ID: &str = "tenant_id";
    pub const EVENT_ID: &str = "event_id";
    pub const EVENT_TIME: &str = "event_time";
    pub const INGESTED_AT: &str = "ingested_at";
    pub const EMAIL: &str = "email";
    pub const EMAIL_SHA256: &str = "email_sha256";
}

/// One of a chain's Avro enums as a Rust enum, declared with [`crate::symbols!`].
pub trait Symbols: Sized + Copy + 'static {
    /// The schema's symbols, in its order: a variant's Avro index is its position.
    const SYMBOLS: &'static [&'static str];
    /// The variants, in the same order.
    const ALL: &'static [Self];
    fn index(self) -> usize;
    fn symbol(self) -> &'static str {
        Self::SYMBOLS[self.index()]
    }
    /// The variant whose symbol is exactly `s`.
    fn from_symbol(s: &str) -> Option<Self> {
        Self::SYMBOLS.iter().position(|x| *x == s).map(|i| Self::ALL[i])
    }
}

/// Declares an Avro enum as a Rust enum: `symbols! { pub enum Action { Add = "ADD", Remove =
/// "REMOVE" } }`, variants in the schema's order (each chain's tests check them against its
/// `.avsc`).
#[macro_export]
macro_rules! symbols {
    ($(#[$m:meta])* $vis:vis enum $name:ident { $($(#[$vm:meta])* $variant:ident = $sym:literal),+ $(,)? }) => {
        $(#[$m])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        $vis enum $name {
            $($(#[$vm])* $variant),+
        }
        impl $crate::record::Symbols for $name {
            const SYMBOLS: &'static [&'static str] = &[$($sym),+];
            const ALL: &'static [$name] = &[$($name::$variant),+];
            fn index(self) -> usize {
                self as usize
            }
        }
    };
}

/// What a chain's parse stage produces: its typed draft, which a provider's reader fills with
/// the chain's own fields (closed values as enums), and the fields by name that the `json` and
/// `csv` readers fill and every reader gives [`Common`] (tenant, identity, time, address).
/// The chain's validate stage completes the draft from the fields by name, in one place per
/// chain, then checks and normalizes it.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Input<D> {
    pub fields: Parsed,
    pub draft: D,
}

impl<D: Default> From<Parsed> for Input<D> {
    fn from(fields: Parsed) -> Self {
        Input {
            fields,
            draft: D::default(),
        }
    }
}

/// The `csv` column aliases of the common fields, which every chain reads (after its own).
pub const COMMON_COLUMNS: &[(&str, &str)] = &[
    ("email_address", field::EMAIL),
    ("e_mail", field::EMAIL),
    ("tenant", field::TENANT_ID),
    ("timestamp", field::EVENT_TIME),
];

/// One record as it came off the raw topic, with the headers the engine understands.
#[derive(Debug, Clone, Copy)]
pub struct RawRecord<'a> {
    pub payload: &'a [u8],
    /// The `tenant` header.
    pub tenant: Option<&'a str>,
    /// The `csv-header` header: the header row of an upload, when the record holds one data row.
    pub csv_header: Option<&'a str>,
}

/// Fields by name, before validation. Absent, `null` and empty-string values are the same.
///
/// A record has a dozen fields or so, each looked up once and taken out: a vector searched
/// from the front costs less than building and tearing down a `BTreeMap` for every record
/// (measured with callgrind on `bench/src/bin/pipeline.rs`). Names are unique: a later value
/// for the same name replaces the earlier, as in a JSON object read by serde_json.
#[derive(Debug, Default, Clone)]
pub struct Parsed {
    fields: Vec<(String, Value)>,
}

/// Equal when they hold the same fields, in whatever order.
impl PartialEq for Parsed {
    fn eq(&self, other: &Parsed) -> bool {
        self.fields.len() == other.fields.len() && self.fields.iter().all(|(k, v)| other.get(k) == Some(v))
    }
}

/// The top-level object of a `json` record, read straight into [`Parsed`]'s fields.
struct JsonObject(Parsed);

impl<'de> serde::Deserialize<'de> for JsonObject {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Fields;
        impl<'de> serde::de::Visitor<'de> for Fields {
            type Value = JsonObject;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a JSON object")
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<JsonObject, A::Error> {
                let mut p = Parsed {
                    fields: Vec::with_capacity(map.size_hint().unwrap_or(16)),
                };
                while let Some((k, v)) = map.next_entry::<String, Value>()? {
                    p.insert(k, v);
                }
                Ok(JsonObject(p))
            }
        }
        d.deserialize_map(Fields)
    }
}

impl Parsed {
    pub fn from_map(fields: Map<String, Value>) -> Self {
        Parsed {
            fields: fields.into_iter().collect(),
        }
    }

    /// Sets a field, replacing a value of the same name.
    fn insert(&mut self, name: String, value: Value) {
        match self.fields.iter_mut().find(|(k, _)| *k == name) {
            Some(slot) => slot.1 = value,
            None => self.fields.push((name, value)),
        }
    }

    fn get(&self, name: &str) -> Option<&Value> {
        self.fields.iter().find(|(k, _)| k == name).map(|(_, v)| v)
    }

    /// The canonical `json` format: one object whose keys are the unified field names.
    pub fn from_json(payload: &[u8]) -> Result<Parsed, RecordError> {
        let object = payload
            .iter()
            .find(|b| !b.is_ascii_whitespace())
            .is_some_and(|b| *b == b'{');
        if object {
            return match serde_json::from_slice::<JsonObject>(payload) {
                Ok(JsonObject(p)) => Ok(p),
                Err(e) => Err(RecordError::malformed(format!("invalid JSON: {e}"))),
            };
        }
        match serde_json::from_slice::<Value>(payload) {
            Ok(other) => Err(RecordError::malformed(format!(
                "expected a JSON object, found {}",
                json_kind(&other)
            ))),
            Err(e) => Err(RecordError::malformed(format!("invalid JSON: {e}"))),
        }
    }

    /// The `csv` format: a header row and one data row in the payload, or one data row with
    /// the header row in the `csv-header` header. Column names are matched case-blind, with
    /// spaces and dashes read as underscores, then mapped through the chain's `columns`
    /// (alias → field), then [`COMMON_COLUMNS`].
    pub fn from_csv(raw: &RawRecord<'_>, columns: &[(&str, &str)]) -> Result<Parsed, RecordError> {
        let text = std::str::from_utf8(raw.payload).map_err(|_| RecordError::malformed("CSV is not UTF-8"))?;
        let joined;
        let input = match raw.csv_header {
            Some(h) => {
                joined = format!("{}\n{}", h.trim_end(), text);
                joined.as_str()
            }
            None => text,
        };
        let mut rows = csv_rows(input.as_bytes(), 3).into_iter();
        let header = rows
            .next()
            .ok_or_else(|| RecordError::malformed("CSV has no header row"))?
            .map_err(|e| RecordError::malformed(format!("CSV header: {e}")))?;
        let row = rows
            .next()
            .ok_or_else(|| RecordError::malformed("CSV has a header row but no data row"))?
            .map_err(|e| RecordError::malformed(format!("CSV row: {e}")))?;
        if rows.next().is_some() {
            return Err(RecordError::malformed("CSV record holds more than one data row"));
        }
        let mut fields = Parsed::default();
        for (name, value) in header.iter().zip(row.iter()) {
            let key = column_key(name);
            let field = columns
                .iter()
                .chain(COMMON_COLUMNS)
                .find(|(alias, _)| *alias == key)
                .map(|(_, f)| (*f).to_owned())
                .unwrap_or(key);
            if !value.trim().is_empty() {
                fields.insert(field, Value::String(value.to_owned()));
            }
        }
        Ok(fields)
    }

    /// Sets a default for a field the source did not give.
    pub fn set_if_absent(&mut self, name: &str, value: &str) {
        if !self.has(name) {
            self.insert(name.to_owned(), Value::String(value.to_owned()));
        }
    }

    /// Copies `from` into `name` when `name` is absent (e.g. an opt-in time as event time).
    pub fn copy_if_absent(&mut self, name: &str, from: &str) {
        if !self.has(name) {
            if let Some(v) = self.get(from).cloned() {
                self.insert(name.to_owned(), v);
            }
        }
    }

    pub fn has(&self, name: &str) -> bool {
        match self.get(name) {
            None | Some(Value::Null) => false,
            Some(Value::String(s)) => !s.trim().is_empty(),
            Some(_) => true,
        }
    }

    /// Removes and returns a field; `null` and blank strings count as absent.
    pub fn take(&mut self, name: &str) -> Option<Value> {
        let i = self.fields.iter().position(|(k, _)| k == name)?;
        match self.fields.swap_remove(i).1 {
            Value::Null => None,
            Value::String(s) if s.trim().is_empty() => None,
            v => Some(v),
        }
    }

    pub fn opt_str(&mut self, name: &str) -> Result<Option<String>, RecordError> {
        match self.take(name) {
            None => Ok(None),
            Some(Value::String(s)) => Ok(Some(trimmed(s))),
            Some(Value::Number(n)) => Ok(Some(n.to_string())),
            Some(Value::Bool(b)) => Ok(Some(b.to_string())),
            Some(other) => Err(RecordError::invalid(
                name,
                format!("expected a string, found {}", json_kind(&other)),
            )),
        }
    }

    pub fn opt_time(&mut self, name: &str, now_micros: i64) -> Result<Option<i64>, RecordError> {
        self.take(name)
            .map(|v| normalize::timestamp(name, &v, now_micros))
            .transpose()
    }

    pub fn req_time(&mut self, name: &str, now_micros: i64) -> Result<i64, RecordError> {
        self.opt_time(name, now_micros)?
            .ok_or_else(|| RecordError::missing(name))
    }

    /// A closed value, matched case-blind (`-` and spaces read as `_`) against `S`'s symbols.
    pub fn opt_enum<S: Symbols>(&mut self, name: &str) -> Result<Option<S>, RecordError> {
        self.opt_enum_spelt(name, |s| {
            S::from_symbol(&s.to_ascii_uppercase().replace(['-', ' '], "_"))
        })
    }

    /// A closed value through the chain's own spellings of it (`spelling`: synonyms included).
    pub fn opt_enum_spelt<S: Symbols>(
        &mut self,
        name: &str,
        spelling: impl Fn(&str) -> Option<S>,
    ) -> Result<Option<S>, RecordError> {
        let Some(s) = self.opt_str(name)? else {
            return Ok(None);
        };
        spelling(&s).map(Some).ok_or_else(|| {
            RecordError::invalid(
                name,
                format!(
                    "'{}' is not one of {}",
                    normalize::truncate(&s, 40),
                    S::SYMBOLS.join(", ")
                ),
            )
        })
    }

    /// A draft's text field: what the provider's reader set (trimmed; blank is absent), else
    /// the field of that name.
    pub fn text_or(&mut self, set: Option<String>, name: &str) -> Result<Option<String>, RecordError> {
        match set {
            Some(v) => Ok(Some(trimmed(v)).filter(|s| !s.is_empty())),
            None => self.opt_str(name),
        }
    }

    /// A draft's time field, not yet read: what the provider's reader set, else the field of
    /// that name; `null` and blank are absent.
    pub fn value_or(&mut self, set: Option<Value>, name: &str) -> Option<Value> {
        match set {
            Some(Value::Null) => None,
            Some(Value::String(s)) if s.trim().is_empty() => None,
            Some(v) => Some(v),
            None => self.take(name),
        }
    }

    /// A draft's time field ([`Parsed::value_or`]) read as a time, bounded by `now_micros`.
    pub fn time_or(&mut self, set: Option<Value>, name: &str, now_micros: i64) -> Result<Option<i64>, RecordError> {
        self.value_or(set, name)
            .map(|v| normalize::timestamp(name, &v, now_micros))
            .transpose()
    }

    /// A map of strings; scalar values are turned into strings.
    pub fn opt_map(&mut self, name: &str) -> Result<Vec<(String, String)>, RecordError> {
        match self.take(name) {
            None => Ok(Vec::new()),
            Some(Value::Object(m)) => Ok(m
                .into_iter()
                .filter_map(|(k, v)| scalar_string(v).map(|v| (k, v)))
                .collect()),
            Some(other) => Err(RecordError::invalid(
                name,
                format!("expected an object, found {}", json_kind(&other)),
            )),
        }
    }

    /// What no field claimed, as strings (for `users.attributes`), by name: the order of the
    /// encoded map, and so of a hashed identity, does not depend on the source's field order.
    pub fn into_rest(mut self) -> Vec<(String, String)> {
        self.fields.sort_unstable_by(|a, b| a.0.cmp(&b.0));
        self.fields
            .into_iter()
            .filter_map(|(k, v)| scalar_string(v).map(|v| (k, v)))
            .collect()
    }
}

/// `s` without surrounding whitespace, reusing its allocation when there is none.
fn trimmed(s: String) -> String {
    let t = s.trim();
    if t.len() == s.len() {
        s
    } else {
        t.to_owned()
    }
}

fn scalar_string(v: Value) -> Option<String> {
    match v {
        Value::String(s) if !s.trim().is_empty() => Some(s),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

fn json_kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// `Email Address` → `email_address`.
pub fn column_key(name: &str) -> String {
    name.trim().to_lowercase().replace([' ', '-'], "_")
}

/// The fields every unified record begins with, in schema order.
#[derive(Debug, Clone, PartialEq)]
pub struct Common {
    pub tenant_id: String,
    /// Empty until derived, when the source had none.
    pub event_id: String,
    pub event_time: i64,
    pub ingested_at: i64,
    pub source: Source,
    pub email: Option<String>,
    pub email_sha256: Option<String>,
}

/// What the engine knows when it builds [`Common`].
pub struct CommonContext<'a> {
    pub tenants: &'a [String],
    pub source: Source,
    pub now_micros: i64,
    pub email_required: bool,
}

impl Common {
    pub fn take(p: &mut Parsed, raw: &RawRecord<'_>, cx: &CommonContext<'_>) -> Result<Common, RecordError> {
        let tenant_field = p.opt_str(field::TENANT_ID)?;
        // A record names one tenant: a payload naming another than its `tenant` header (set
        // by whoever authenticated the sender) is refused before anything else is read of it,
        // whether or not the other tenant exists here.
        if let (Some(h), Some(f)) = (raw.tenant, tenant_field.as_deref()) {
            if h.trim() != f {
                return Err(RecordError::new(
                    ErrorClass::InvalidTenant,
                    format!(
                        "the 'tenant' header '{}' and the 'tenant_id' field '{}' disagree",
                        normalize::truncate(h.trim(), 64),
                        normalize::truncate(f, 64)
                    ),
                ));
            }
        }
        let tenant_raw = tenant_field.as_deref().or(raw.tenant).ok_or_else(|| {
            RecordError::new(
                ErrorClass::InvalidTenant,
                "no tenant: neither a 'tenant' header nor a 'tenant_id' field",
            )
        })?;
        let tenant = normalize::tenant_id(tenant_raw)?;
        if !cx.tenants.iter().any(|t| t == tenant) {
            return Err(RecordError::new(
                ErrorClass::UnknownTenant,
                format!("tenant '{tenant}' is not configured"),
            ));
        }
        let tenant_id = tenant.to_owned();
        let event_id = p.opt_str(field::EVENT_ID)?.unwrap_or_default();
        let event_time = p.req_time(field::EVENT_TIME, cx.now_micros)?;
        // Derived fields are recomputed, never trusted.
        p.take(field::INGESTED_AT);
        let given_sha = p.opt_str(field::EMAIL_SHA256)?;
        let email = p.opt_str(field::EMAIL)?.map(|e| normalize::email(&e)).transpose()?;
        let email_sha256 = match (&email, given_sha) {
            (Some(e), _) => Some(normalize::sha256_hex(e)),
            (None, Some(h)) if h.len() == 64 && h.bytes().all(|b| b.is_ascii_hexdigit()) => {
                Some(h.to_ascii_lowercase())
            }
            (None, Some(_)) => return Err(RecordError::invalid(field::EMAIL_SHA256, "not 64 hex digits")),
            (None, None) => None,
        };
        if cx.email_required && email.is_none() {
            return Err(RecordError::missing(field::EMAIL));
        }
        Ok(Common {
            tenant_id,
            event_id,
            event_time,
            ingested_at: cx.now_micros,
            source: cx.source,
            email,
            email_sha256,
        })
    }

    pub fn write(&self, w: &mut AvroWriter<'_>) {
        w.string(&self.tenant_id);
        w.string(&self.event_id);
        w.long(self.event_time);
        w.long(self.ingested_at);
        w.string(self.source.as_str());
        w.opt_string(self.email.as_deref());
        w.opt_string(self.email_sha256.as_deref());
    }
}

thread_local! {
    /// A CSV parser per thread, reset for each record. `csv::ReaderBuilder` built a new one
    /// (its DFA) for every record: `csv_core::reader::ReaderBuilder::build` alone was 5 % of
    /// the mailings service's CPU under `make chaos`'s mix of formats (`perf record -p`).
    static CSV: std::cell::RefCell<csv_core::Reader> = std::cell::RefCell::new(csv_core::Reader::new());
}

/// The first `max` records of `input`, parsed as the `csv` crate's reader does (its defaults,
/// not flexible: a record with another number of fields than the first is an error, as is
/// text that is not UTF-8). Empty lines are skipped; a UTF-8 BOM at the start is dropped.
fn csv_rows(input: &[u8], max: usize) -> Vec<Result<Vec<String>, String>> {
    use csv_core::ReadRecordResult;
    CSV.with(|csv| {
        let mut csv = csv.borrow_mut();
        csv.reset();
        let mut out = Vec::new();
        let mut rest = input;
        // Unquoting only shrinks a field: a record's bytes fit in the input's length.
        let mut fields = vec![0u8; input.len() + 1];
        let mut ends = vec![0usize; 32];
        let mut first_len = None;
        while out.len() < max {
            let (mut nout, mut nends) = (0, 0);
            let done = loop {
                let (res, nin, o, e) = csv.read_record(rest, &mut fields[nout..], &mut ends[nends..]);
                rest = &rest[nin..];
                (nout, nends) = (nout + o, nends + e);
                match res {
                    ReadRecordResult::InputEmpty => {}
                    ReadRecordResult::OutputFull => fields.resize(fields.len() * 2, 0),
                    ReadRecordResult::OutputEndsFull => ends.resize(ends.len() * 2, 0),
                    ReadRecordResult::Record => break false,
                    ReadRecordResult::End => break true,
                }
            };
            if done {
                break;
            }
            let record = || -> Result<Vec<String>, String> {
                let mut start = 0;
                let mut row = Vec::with_capacity(nends);
                for (i, end) in ends[..nends].iter().enumerate() {
                    let field = std::str::from_utf8(&fields[start..*end])
                        .map_err(|e| format!("field {i}: invalid utf-8: {e}"))?;
                    row.push(field.to_owned());
                    start = *end;
                }
                match first_len {
                    Some(n) if n != nends => Err(format!(
                        "found record with {nends} fields, but the previous record has {n} fields"
                    )),
                    _ => Ok(row),
                }
            };
            out.push(record());
            first_len.get_or_insert(nends);
        }
        out
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What the `csv` crate's reader (defaults, not flexible, no header handling) makes of
    /// `input`: the first three records, an error as `Err(())`.
    fn csv_crate(input: &[u8]) -> Vec<Result<Vec<String>, ()>> {
        let mut rdr = csv::ReaderBuilder::new()
            .has_headers(false)
            .flexible(false)
            .from_reader(input);
        rdr.records()
            .take(3)
            .map(|r| r.map(|r| r.iter().map(str::to_owned).collect()).map_err(|_| ()))
            .collect()
    }

    #[test]
    fn csv_rows_reads_as_the_csv_crate_does() {
        let cases: &[&[u8]] = &[
            b"",
            b"\n",
            b"a,b\n1,2",
            b"a,b\n1,2\n",
            b"a,b\r\n1,2\r\n",
            b"\xef\xbb\xbfemail,list\nann@example.com,news",
            b"a,b\n\n\n1,2\n",
            b"a,b\n\"x, y\",\"he said \"\"hi\"\"\"\n",
            b"a,b\n1,2,3\n",
            b"a,b,c\n1,2\n",
            b"a,b\n1,2\n3,4\n",
            b"a,b\n1,2\n3\n",
            b"a,b\n\"never closed,2\n",
            b"a\n\n",
            b",,\n,,\n",
            b"\"\"\n\"\"",
            b"a;b\n1;2",
            b"email,name\nj\xc3\xb6rg@example.de,J\xc3\xb6rg\n",
        ];
        for input in cases {
            let ours: Vec<Result<Vec<String>, ()>> =
                csv_rows(input, 3).into_iter().map(|r| r.map_err(|_| ())).collect();
            assert_eq!(ours, csv_crate(input), "{:?}", String::from_utf8_lossy(input));
        }
        // A long record grows the buffers.
        let wide = (0..500).map(|i| format!("c{i}")).collect::<Vec<_>>().join(",");
        let input = format!("{wide}\n{wide}\n");
        assert_eq!(
            csv_rows(input.as_bytes(), 3)
                .into_iter()
                .map(|r| r.map_err(|_| ()))
                .collect::<Vec<_>>(),
            csv_crate(input.as_bytes())
        );
    }

    #[test]
    fn a_later_json_field_of_the_same_name_wins_as_in_serde_json() {
        let mut p = Parsed::from_json(br#"{"email":"a@b.com","x":1,"email":" c@d.com "}"#).unwrap();
        assert_eq!(p.opt_str("email").unwrap().as_deref(), Some("c@d.com"));
        assert_eq!(p.opt_str("email").unwrap(), None, "taken once");
        assert_eq!(p.into_rest(), vec![("x".to_owned(), "1".to_owned())]);
    }

    #[test]
    fn json_that_is_not_an_object_is_malformed_with_its_kind() {
        for (payload, want) in [
            (&b"[1]"[..], "expected a JSON object, found an array"),
            (b" \"s\"", "expected a JSON object, found a string"),
            (b"{\"a\":", "invalid JSON"),
            (b"", "invalid JSON"),
        ] {
            let e = Parsed::from_json(payload).unwrap_err();
            assert_eq!(e.class, ErrorClass::Malformed);
            assert!(e.reason.starts_with(want), "{payload:?}: {}", e.reason);
        }
    }

    #[test]
    fn a_payload_naming_another_tenant_than_its_header_is_refused() {
        let tenants = ["acme".to_owned(), "globex".to_owned()];
        let cx = CommonContext {
            tenants: &tenants,
            source: Source::Json,
            now_micros: 1_764_000_000_000_000,
            email_required: false,
        };
        let common = |header: Option<&str>, payload: &str| {
            let raw = RawRecord {
                payload: payload.as_bytes(),
                tenant: header,
                csv_header: None,
            };
            let mut p = Parsed::from_json(raw.payload).unwrap();
            Common::take(&mut p, &raw, &cx)
        };
        let body = |tenant: &str| format!(r#"{{"tenant_id":"{tenant}","event_time":1763000000,"email":"a@b.com"}}"#);
        // Another configured tenant, an unknown one, a malformed one: the disagreement is the
        // reason, naming both.
        for other in ["globex", "hooli", "Not A Tenant"] {
            let e = common(Some("acme"), &body(other)).unwrap_err();
            assert_eq!(e.class, ErrorClass::InvalidTenant, "{other}: {e}");
            assert!(
                e.reason.contains("'acme'")
                    && e.reason.contains(&format!("'{other}'"))
                    && e.reason.contains("disagree"),
                "{other}: {}",
                e.reason
            );
        }
        let long = "x".repeat(10_000);
        let e = common(Some("acme"), &body(&long)).unwrap_err();
        assert!(
            e.reason.len() < 300,
            "the field is cut in the reason: {} bytes",
            e.reason.len()
        );
        assert_eq!(common(Some("acme"), &body("acme")).unwrap().tenant_id, "acme");
        assert_eq!(common(Some(" acme "), &body("acme")).unwrap().tenant_id, "acme");
        assert_eq!(common(None, &body("globex")).unwrap().tenant_id, "globex");
        let no_field = r#"{"event_time":1763000000,"email":"a@b.com"}"#;
        assert_eq!(common(Some("globex"), no_field).unwrap().tenant_id, "globex");
    }

    #[test]
    fn rest_is_ordered_by_name_whatever_the_source_order() {
        let a = Parsed::from_json(br#"{"b":"2","a":"1","c":true}"#).unwrap();
        let b = Parsed::from_json(br#"{"c":true,"a":"1","b":"2"}"#).unwrap();
        assert_eq!(a, b);
        assert_eq!(a.clone().into_rest(), b.into_rest());
        let names: Vec<_> = a.into_rest().into_iter().map(|(k, _)| k).collect();
        assert_eq!(names, ["a", "b", "c"]);
    }
}
