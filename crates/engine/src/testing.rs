//! Helpers for the chains' tests: run one record through a chain's pipeline and decode the
//! result with `apache-avro` against the chain's schema, the way any consumer would.

use crate::chain::{self, Chain, PipelineSettings};
use crate::record::RawRecord;
use crate::RecordError;
use apache_avro::types::Value;
use apache_avro::Schema;

pub const NOW: i64 = 1_764_000_000_000_000;

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
