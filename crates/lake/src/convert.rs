//! Avro schemas to Arrow schemas, and decoded Avro records to Arrow record batches whose
//! columns follow the table's schema: timestamps as UTC microseconds, enums as strings
//! (Parquet dictionary-encodes them), maps as maps, plus the `event_date` partition column.

use crate::{Error, Result};
use apache_avro::types::Value;
use arrow::array::{
    ArrayRef, BooleanBuilder, Float64Builder, Int32Builder, Int64Builder, MapBuilder, MapFieldNames, StringBuilder,
    TimestampMicrosecondBuilder,
};
use arrow::datatypes::{DataType, Field, Schema, TimeUnit};
use arrow::record_batch::RecordBatch;
use serde_json::Value as Json;
use std::sync::Arc;

pub const EVENT_DATE: &str = "event_date";
/// The partition column naming the tenant.
pub const TENANT_ID: &str = "tenant_id";
pub const PARTITION_COLUMNS: [&str; 2] = [TENANT_ID, EVENT_DATE];

/// The Arrow schema of an Avro record schema (JSON), with `event_date` appended.
pub fn arrow_schema(avsc: &str) -> Result<Schema> {
    let json: Json = serde_json::from_str(avsc).map_err(|e| Error::Schema(e.to_string()))?;
    arrow_schema_of(&json)
}

pub fn arrow_schema_of(json: &Json) -> Result<Schema> {
    let fields = json["fields"]
        .as_array()
        .ok_or_else(|| Error::Schema("not a record schema".into()))?;
    let mut out = Vec::with_capacity(fields.len() + 1);
    for f in fields {
        let name = f["name"]
            .as_str()
            .ok_or_else(|| Error::Schema("field without name".into()))?;
        let (dt, nullable) = arrow_type(&f["type"]).map_err(|e| Error::Schema(format!("field {name}: {e}")))?;
        out.push(Field::new(name, dt, nullable));
    }
    out.push(Field::new(EVENT_DATE, DataType::Utf8, false));
    Ok(Schema::new(out))
}

fn arrow_type(t: &Json) -> std::result::Result<(DataType, bool), String> {
    match t {
        Json::String(s) => Ok((primitive(s)?, false)),
        Json::Array(branches) => {
            let non_null: Vec<&Json> = branches.iter().filter(|b| b.as_str() != Some("null")).collect();
            match non_null.as_slice() {
                [one] if non_null.len() < branches.len() => Ok((arrow_type(one)?.0, true)),
                _ => Err(format!("unsupported union {t}")),
            }
        }
        Json::Object(o) => {
            let ty = o.get("type").and_then(Json::as_str).unwrap_or_default();
            match (ty, o.get("logicalType").and_then(Json::as_str)) {
                ("long", Some("timestamp-micros")) | ("long", Some("timestamp-millis")) => {
                    Ok((DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into())), false))
                }
                ("enum", _) => Ok((DataType::Utf8, false)),
                ("map", _) if o.get("values").and_then(Json::as_str) == Some("string") => Ok((
                    DataType::Map(
                        Arc::new(Field::new(
                            "key_value",
                            DataType::Struct(
                                vec![
                                    Field::new("key", DataType::Utf8, false),
                                    Field::new("value", DataType::Utf8, true),
                                ]
                                .into(),
                            ),
                            false,
                        )),
                        false,
                    ),
                    false,
                )),
                (p, _) => Ok((primitive(p)?, false)),
            }
        }
        _ => Err(format!("unsupported type {t}")),
    }
}

fn primitive(s: &str) -> std::result::Result<DataType, String> {
    Ok(match s {
        "string" => DataType::Utf8,
        "long" => DataType::Int64,
        "int" => DataType::Int32,
        "boolean" => DataType::Boolean,
        "double" | "float" => DataType::Float64,
        other => return Err(format!("unsupported type '{other}'")),
    })
}

/// Strips unions and reads a value as the column wants it.
fn plain(v: &Value) -> &Value {
    match v {
        Value::Union(_, inner) => plain(inner),
        other => other,
    }
}

fn as_str(v: &Value) -> Option<&str> {
    match plain(v) {
        Value::String(s) | Value::Enum(_, s) => Some(s),
        _ => None,
    }
}

fn as_i64(v: &Value) -> Option<i64> {
    match plain(v) {
        Value::Long(i) | Value::TimestampMicros(i) => Some(*i),
        Value::Int(i) => Some(i64::from(*i)),
        Value::TimestampMillis(i) => Some(*i * 1000),
        _ => None,
    }
}

/// `YYYY-MM-DD` of a UTC microsecond timestamp.
pub fn event_date(micros: i64) -> String {
    chrono::DateTime::from_timestamp_micros(micros)
        .map(|d| d.format("%Y-%m-%d").to_string())
        .unwrap_or_else(|| "1970-01-01".into())
}

/// One decoded record's fields by name.
pub type Row = Vec<(String, Value)>;

fn field<'a>(row: &'a Row, name: &str) -> Option<&'a Value> {
    row.iter()
        .find(|(n, _)| n == name)
        .map(|(_, v)| v)
        .filter(|v| !matches!(plain(v), Value::Null))
}

/// What a decoded Avro value can become in a column (see [`fits`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// A string or an enum symbol.
    Str,
    /// An int, a long, or a timestamp in millis or micros.
    Int,
    Bool,
    /// A float or a double.
    Float,
    /// A map of strings.
    Map,
    /// Anything else (a date, a uuid, ...): fits no column.
    Other,
}

fn kind(v: &Value) -> Kind {
    match plain(v) {
        Value::String(_) | Value::Enum(..) => Kind::Str,
        Value::Long(_) | Value::Int(_) | Value::TimestampMicros(_) | Value::TimestampMillis(_) => Kind::Int,
        Value::Boolean(_) => Kind::Bool,
        Value::Double(_) | Value::Float(_) => Kind::Float,
        Value::Map(_) => Kind::Map,
        _ => Kind::Other,
    }
}

/// Whether column `f` can take a value of `kind` (None: absent or null; an absent map is
/// an empty one).
pub fn fits(f: &Field, kind: Option<Kind>) -> bool {
    match (f.data_type(), kind) {
        (_, None) => f.is_nullable() || matches!(f.data_type(), DataType::Map(..)),
        (DataType::Utf8, Some(k)) => k == Kind::Str,
        (DataType::Int64 | DataType::Int32 | DataType::Timestamp(..), Some(k)) => k == Kind::Int,
        (DataType::Boolean, Some(k)) => k == Kind::Bool,
        (DataType::Float64, Some(k)) => k == Kind::Float,
        (DataType::Map(..), Some(k)) => k == Kind::Map,
        _ => false,
    }
}

/// The `dlq.sink` reason of a row whose value does not fit column `f`.
pub fn unfit(f: &Field) -> String {
    format!("field '{}' is missing or not of type {}", f.name(), f.data_type())
}

/// The `dlq.sink` reason of a row without an `event_time`.
pub const NO_EVENT_TIME: &str = "no event_time to derive event_date from";

/// Checks a row can be written to `schema`: required columns present with the right kind.
/// A row that fails goes to `dlq.sink` with the returned reason.
pub fn check_row(schema: &Schema, row: &Row) -> std::result::Result<(), String> {
    for f in schema.fields() {
        if f.name() == EVENT_DATE {
            if field(row, "event_time").and_then(as_i64).is_none() {
                return Err(NO_EVENT_TIME.into());
            }
            continue;
        }
        if !fits(f, field(row, f.name()).map(kind)) {
            return Err(unfit(f));
        }
    }
    Ok(())
}

/// Builds a batch with exactly `schema`'s columns from rows that passed [`check_row`].
pub fn to_batch(schema: Arc<Schema>, rows: &[Row]) -> Result<RecordBatch> {
    let mut columns: Vec<ArrayRef> = Vec::with_capacity(schema.fields().len());
    for f in schema.fields() {
        let name = f.name().as_str();
        let col: ArrayRef = match f.data_type() {
            DataType::Utf8 if name == EVENT_DATE => {
                let mut b = StringBuilder::with_capacity(rows.len(), rows.len() * 10);
                for r in rows {
                    b.append_value(event_date(field(r, "event_time").and_then(as_i64).unwrap_or(0)));
                }
                Arc::new(b.finish())
            }
            DataType::Utf8 => {
                let mut b = StringBuilder::with_capacity(rows.len(), rows.len() * 16);
                for r in rows {
                    b.append_option(field(r, name).and_then(as_str));
                }
                Arc::new(b.finish())
            }
            DataType::Int64 => {
                let mut b = Int64Builder::with_capacity(rows.len());
                for r in rows {
                    b.append_option(field(r, name).and_then(as_i64));
                }
                Arc::new(b.finish())
            }
            DataType::Int32 => {
                let mut b = Int32Builder::with_capacity(rows.len());
                for r in rows {
                    b.append_option(field(r, name).and_then(as_i64).map(|i| i as i32));
                }
                Arc::new(b.finish())
            }
            DataType::Timestamp(TimeUnit::Microsecond, tz) => {
                let mut b = TimestampMicrosecondBuilder::with_capacity(rows.len()).with_timezone_opt(tz.clone());
                for r in rows {
                    b.append_option(field(r, name).and_then(as_i64));
                }
                Arc::new(b.finish())
            }
            DataType::Boolean => {
                let mut b = BooleanBuilder::with_capacity(rows.len());
                for r in rows {
                    b.append_option(field(r, name).and_then(|v| match plain(v) {
                        Value::Boolean(x) => Some(*x),
                        _ => None,
                    }));
                }
                Arc::new(b.finish())
            }
            DataType::Float64 => {
                let mut b = Float64Builder::with_capacity(rows.len());
                for r in rows {
                    b.append_option(field(r, name).and_then(|v| match plain(v) {
                        Value::Double(x) => Some(*x),
                        Value::Float(x) => Some(f64::from(*x)),
                        _ => None,
                    }));
                }
                Arc::new(b.finish())
            }
            DataType::Map(entries, _) => {
                let DataType::Struct(kv) = entries.data_type() else {
                    return Err(Error::Schema(format!("map column {name} without struct entries")));
                };
                let names = MapFieldNames {
                    entry: entries.name().clone(),
                    key: kv[0].name().clone(),
                    value: kv[1].name().clone(),
                };
                let mut b = MapBuilder::new(Some(names), StringBuilder::new(), StringBuilder::new())
                    .with_values_field(kv[1].clone());
                for r in rows {
                    if let Some(Value::Map(m)) = field(r, name).map(plain) {
                        let mut entries: Vec<(&String, &Value)> = m.iter().collect();
                        entries.sort_by(|a, b| a.0.cmp(b.0));
                        for (k, v) in entries {
                            b.keys().append_value(k);
                            b.values().append_option(as_str(v));
                        }
                    }
                    // An absent map is an empty one, as the Avro default says.
                    b.append(true)?;
                }
                Arc::new(b.finish())
            }
            other => return Err(Error::Schema(format!("column {name}: unsupported type {other}"))),
        };
        columns.push(col);
    }
    Ok(RecordBatch::try_new(schema, columns)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_chain_schema_converts() {
        for c in tributary_engine::topics::CHAINS {
            let s = arrow_schema(crate::chain_schema(c).unwrap()).unwrap();
            assert_eq!(
                s.field_with_name("event_time").unwrap().data_type(),
                &DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into()))
            );
            assert!(s.field_with_name("email").unwrap().is_nullable());
            assert_eq!(s.fields().last().unwrap().name(), EVENT_DATE);
        }
    }

    #[test]
    fn rows_become_a_batch() {
        let schema = Arc::new(arrow_schema(crate::chain_schema("users").unwrap()).unwrap());
        let row: Row = vec![
            ("tenant_id".into(), Value::String("acme".into())),
            ("event_id".into(), Value::String("e1".into())),
            ("event_time".into(), Value::TimestampMicros(1_763_000_000_000_000)),
            ("ingested_at".into(), Value::TimestampMicros(1_763_000_000_000_001)),
            ("source".into(), Value::String("json".into())),
            (
                "email".into(),
                Value::Union(1, Box::new(Value::String("a@b.com".into()))),
            ),
            (
                "attributes".into(),
                Value::Map([("plan".to_owned(), Value::String("pro".into()))].into()),
            ),
        ];
        check_row(&schema, &row).unwrap();
        let b = to_batch(schema.clone(), &[row.clone(), row]).unwrap();
        assert_eq!(b.num_rows(), 2);
        let d = b.column_by_name(EVENT_DATE).unwrap();
        assert_eq!(arrow::util::display::array_value_to_string(d, 0).unwrap(), "2025-11-13");
        assert!(check_row(&schema, &vec![("tenant_id".into(), Value::String("acme".into()))]).is_err());
    }
}
