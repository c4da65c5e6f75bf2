//! Helpers for the chains' tests: run one record through a chain's pipeline and decode the
//! result with `apache-avro` against the chain's schema, the way any consumer would.

use crate::chain::{self, Chain, PipelineSettings};
use crate::record::RawRecord;
use crate::RecordError;
use apache_avro::types::Value;
use apache_avro::Schema;

pub const NOW: i64 = 1_764_000_000_000_000;

/// Asserts that `S` declares exactly the symbols of the enum field `field` of the chain's
/// schema, in the schema's order (a variant's position is its Avro index).
pub fn assert_symbols<C: Chain, S: crate::record::Symbols + std::fmt::Debug>(field: &str) {
    let Schema::Record(r) = Schema::parse_str(C::SCHEMA).expect("the chain's schema") else {
        panic!("{} is not a record schema", C::NAME)
    };
    let f = r
        .fields
        .iter()
        .find(|f| f.name == field)
        .unwrap_or_else(|| panic!("{} has no field {field}", C::NAME));
    let Schema::Enum(e) = &f.schema else {
        panic!("{}.{field} is not an enum: {:?}", C::NAME, f.schema)
    };
    assert_eq!(S::SYMBOLS, e.symbols.as_slice(), "{}.{field}", C::NAME);
    for (i, v) in S::ALL.iter().enumerate() {
        assert_eq!(v.index(), i, "{v:?}");
        assert_eq!(S::from_symbol(v.symbol()).map(|s| s.index()), Some(i), "{v:?}");
    }
}

pub fn settings() -> PipelineSettings {
    PipelineSettings {
        tenants: vec!["acme".into(), "globex".into()],
        max_record_bytes: 64 * 1024,
        schema_id: 7,
    }
}

/// Runs the pipeline and decodes the clean value into field name → value.
pub fn run<C: Chain>(source: &str, payload: &str, tenant: Option<&str>) -> Result<Vec<(String, Value)>, RecordError> {
    run_with::<C>(source, payload, tenant, None)
}

pub fn run_with<C: Chain>(
    source: &str,
    payload: &str,
    tenant: Option<&str>,
    csv_header: Option<&str>,
) -> Result<Vec<(String, Value)>, RecordError> {
    let raw = RawRecord {
        payload: payload.as_bytes(),
        tenant,
        csv_header,
    };
    let enc = chain::process::<C>(&settings(), Some(source), &raw, NOW)?;
    Ok(decode::<C>(&enc.value))
}

/// Decodes a Confluent-framed value with the chain's schema; panics when it does not match.
pub fn decode<C: Chain>(framed: &[u8]) -> Vec<(String, Value)> {
    let (id, mut datum) = crate::avro::split_wire(framed).expect("Confluent framing");
    assert_eq!(id, settings().schema_id);
    let schema = Schema::parse_str(C::SCHEMA).expect("schema parses");
    #[allow(deprecated)]
    let value = apache_avro::from_avro_datum(&schema, &mut datum, None).expect("datum decodes with the schema");
    assert!(datum.is_empty(), "trailing bytes after the datum");
    match value {
        Value::Record(fields) => fields,
        other => panic!("not a record: {other:?}"),
    }
}

pub fn field<'a>(rec: &'a [(String, Value)], name: &str) -> &'a Value {
    &rec.iter()
        .find(|(n, _)| n == name)
        .unwrap_or_else(|| panic!("no field {name}"))
        .1
}

/// A `["null", "string"]` field as an `Option<&str>`.
pub fn opt_str<'a>(rec: &'a [(String, Value)], name: &str) -> Option<&'a str> {
    match field(rec, name) {
        Value::Union(_, v) => match v.as_ref() {
            Value::String(s) => Some(s),
            _ => None,
        },
        Value::String(s) => Some(s),
        _ => None,
    }
}

pub fn str_<'a>(rec: &'a [(String, Value)], name: &str) -> &'a str {
    match field(rec, name) {
        Value::String(s) | Value::Enum(_, s) => s,
        other => panic!("{name} is not a string: {other:?}"),
    }
}

/// `include_str!` of a provider's documented payload, `providers/<provider>/fixtures/<name>`
/// (one copy of each, whichever chains it feeds), from any crate two folders below the
/// workspace root (`crates/*`, `services/*`).
#[macro_export]
macro_rules! fixture {
    ($provider:literal, $name:literal) => {
        include_str!(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../../providers/",
            $provider,
            "/fixtures/",
            $name
        ))
    };
}

/// The folder of a provider's documented payloads (`providers/<provider>/fixtures`).
pub fn fixtures_dir(provider: &str) -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../providers")
        .join(provider)
        .join("fixtures")
}

/// A string or enum field (or a union holding one) as text.
pub fn text(rec: &[(String, Value)], name: &str) -> Option<String> {
    match field(rec, name) {
        Value::String(s) | Value::Enum(_, s) => Some(s.clone()),
        Value::Union(_, v) => match v.as_ref() {
            Value::String(s) => Some(s.clone()),
            _ => None,
        },
        _ => None,
    }
}

/// A timestamp or long field (or a union holding one).
pub fn micros(rec: &[(String, Value)], name: &str) -> Option<i64> {
    match field(rec, name) {
        Value::TimestampMicros(t) | Value::Long(t) => Some(*t),
        Value::Union(_, v) => match v.as_ref() {
            Value::TimestampMicros(t) | Value::Long(t) => Some(*t),
            _ => None,
        },
        _ => None,
    }
}

/// Runs one fixture for tenant `acme` and checks its event time and the listed fields
/// (`None`: null).
pub fn check<C: Chain>(source: &str, payload: &str, time: i64, want: &[(&str, Option<&str>)]) -> Vec<(String, Value)> {
    let rec = run::<C>(source, payload, Some("acme")).unwrap_or_else(|e| panic!("{source}: {e}\n{payload}"));
    assert_eq!(text(&rec, "tenant_id").as_deref(), Some("acme"));
    assert_eq!(text(&rec, "source").as_deref(), Some(source));
    assert_eq!(
        micros(&rec, "event_time"),
        Some(time),
        "{source} event_time of {payload}"
    );
    for (name, value) in want {
        assert_eq!(
            text(&rec, name).as_deref(),
            *value,
            "{source} field {name} of {payload}"
        );
    }
    rec
}

/// Runs one payload and checks it is refused with `class` and a reason containing `reason`.
pub fn refused<C: Chain>(source: &str, payload: &str, class: crate::ErrorClass, reason: &str) {
    let e = run::<C>(source, payload, Some("acme")).unwrap_err();
    assert_eq!(e.class, class, "{e}");
    assert!(e.reason.contains(reason), "{e}");
}
