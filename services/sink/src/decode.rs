//! Avro bodies (the datum after the Confluent 5-byte header) straight into the Arrow column
//! builders of a table, driven by the writer schema the registry holds under the record's id.
//!
//! It replaces `apache_avro::from_avro_datum` + `convert::check_row` + `convert::to_batch`,
//! which built a `Value` tree per record (a `String` per field name, a `Box` per union, a
//! `HashMap` per map) and held 200 000 of them per table until the commit: most of the sink's
//! CPU and of its ~780 MiB peak. Here a record is read once into a small reused vector of cells
//! (offsets into the datum, no allocation), checked against the table's columns with exactly
//! the rules of `convert::check_row` (same reasons for `dlq.sink`), then appended to the
//! builders; a record that fails leaves the builders untouched.
//!
//! Why not `arrow-avro` (it follows the arrow release train, so 59.x would match the
//! workspace's `arrow` 59): it is not among the crates this workspace builds today (a new
//! dependency tree on 2 shared cores); it decodes into its own Arrow types (dictionary enums,
//! its own timestamp time zone and map field names), so every batch would need a cast to the
//! table's columns, and `event_date` must still be derived; and the sink must isolate each
//! record (a bad one goes alone to `dlq.sink` with the same reason as before, the builders
//! untouched), with the acceptance rules of `convert::check_row` (an enum into a string
//! column, an int into a long one, millis scaled to micros, a date or uuid in no column). The
//! chain schemas use a small set of types (strings, longs with timestamp logical types,
//! enums, unions with null, a map of strings), so a decoder driven by the writer schema is
//! short, and its tests compare it with the `Value` path on the same bytes.
//!
//! Measured with the bench's sink part (bench/src/bin/bench.rs, 1 M mailings events, 890 406
//! clean rows, local lake, 2 shared cores): the `Value` path ran at 153 k rows/s per core of
//! CPU with a 784 MiB peak RSS; this decoder, with the consumer's queue and the flushes bounded
//! (see `run_loop` and `FLUSH_MAX_BYTES`), at 390-405 k rows/s per core and ~290 MiB. In
//! `perf` the decoder (append, reader, UTF-8 checks) is ~10 % of the sink's CPU; Parquet
//! encoding with zstd and bloom filters ~35 %, librdkafka (fetch, zstd decompression, polls)
//! ~25 %, writing the files ~9 %. Of the ~290 MiB, ~130 MiB is freed memory glibc keeps in its
//! arenas (its mmap threshold rises to the size of the large column buffers once they are
//! freed): with `MALLOC_MMAP_THRESHOLD_=131072` the same run peaks at ~160 MiB.
//!
//! Schema evolution is what it was: the writer schema is the reader schema (no resolution),
//! and its fields land in the table's columns by name; a column the writer lacks is null (or an
//! empty map), and one that is required and missing makes the record a dead letter.
//!
//! One deliberate difference from `apache_avro`: a datum that ends early is a decode error
//! (apache_avro read some fields at the end of input as null).

use arrow::array::{
    ArrayRef, BooleanBuilder, Float64Builder, Int32Builder, Int64Builder, MapBuilder, MapFieldNames, NullBufferBuilder,
    StringArray, StringBuilder, TimestampMicrosecondBuilder,
};
use arrow::buffer::{Buffer, OffsetBuffer, ScalarBuffer};
use arrow::datatypes::{DataType, Schema, TimeUnit};
use arrow::record_batch::RecordBatch;
use serde_json::Value as Json;
use std::collections::BTreeMap;
use std::sync::Arc;
use tributary_lake::convert::{event_date, fits, unfit, Kind, EVENT_DATE, NO_EVENT_TIME, TENANT_ID};
use tributary_lake::table::PartitionRows;

use crate::error::RecordError;

/// Why a writer schema does not compile for the decoder.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SchemaError {
    #[error("{0}")]
    Json(String),
    #[error("not a record schema")]
    NotARecord,
    #[error("field without name")]
    FieldWithoutName,
    #[error("field {field}: {source}")]
    Field { field: String, source: Box<SchemaError> },
    #[error("enum without symbols")]
    EnumWithoutSymbols,
    #[error("enum symbol not a string")]
    EnumSymbolNotAString,
    /// A type that is neither a name nor a union nor an object.
    #[error("unsupported type {0}")]
    Unsupported(Json),
    #[error("unsupported type '{0}'")]
    UnsupportedPrimitive(String),
}

/// A table column the decoder has no builder for.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ColumnError {
    #[error("map column {0} without struct entries")]
    MapWithoutStruct(String),
    #[error("column {0}: unsupported type {1}")]
    Unsupported(String, DataType),
}

/// Why an Avro body does not decode with its writer schema (the text is the `dlq.sink`
/// reason, as it was).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    #[error("Avro decode: unexpected end of the datum")]
    Eof,
    #[error("Avro decode: integer overflow")]
    Overflow,
    #[error("Avro decode: {0} is not an int")]
    NotAnInt(i64),
    #[error("Avro decode: negative length {0}")]
    NegativeLength(i64),
    #[error("Avro decode: {0}")]
    Utf8(#[from] std::str::Utf8Error),
    #[error("Avro decode: invalid boolean {0}")]
    Boolean(u8),
    #[error("Avro decode: not a uuid")]
    Uuid,
    #[error("Avro decode: enum index {index} out of {symbols} symbols")]
    EnumIndex { index: i32, symbols: u32 },
    #[error("Avro decode: union index {index} out of {branches}")]
    UnionIndex { index: i64, branches: usize },
}

/// How a writer value is encoded and which `apache_avro::types::Value` the old path made of it
/// (which decides the columns it may land in).
#[derive(Debug, Clone)]
enum Ty {
    Null,
    Boolean,
    /// `Value::Int`.
    Int,
    /// `Value::Long` or `Value::TimestampMicros`.
    Long,
    /// `Value::TimestampMillis`: read as micros × 1000.
    Millis,
    /// An int read as `Value::Date` / `Value::TimeMillis`: fits no column.
    OpaqueInt,
    /// A long read as `TimeMicros`, `TimestampNanos`, `LocalTimestamp*`: fits no column.
    OpaqueLong,
    Float,
    Double,
    String,
    /// A string with logical type uuid (`Value::Uuid`): fits no column.
    Uuid,
    /// Symbols start at this index of [`Writer::symbols`], this many.
    Enum(u32, u32),
    /// A map of strings.
    Map,
    Union(Vec<Ty>),
}

/// A writer schema compiled for decoding.
#[derive(Debug, Clone)]
pub struct Writer {
    fields: Vec<(String, Ty)>,
    symbols: Vec<String>,
}

impl Writer {
    /// Compiles a record schema (JSON) of the kinds `convert::arrow_schema` accepts.
    pub fn parse(avsc: &str) -> Result<Writer, SchemaError> {
        let json: Json = serde_json::from_str(avsc).map_err(|e| SchemaError::Json(e.to_string()))?;
        let fields = json["fields"].as_array().ok_or(SchemaError::NotARecord)?;
        let mut w = Writer {
            fields: Vec::with_capacity(fields.len()),
            symbols: Vec::new(),
        };
        for f in fields {
            let name = f["name"].as_str().ok_or(SchemaError::FieldWithoutName)?;
            let ty = w.ty(&f["type"]).map_err(|e| SchemaError::Field {
                field: name.to_owned(),
                source: Box::new(e),
            })?;
            w.fields.push((name.to_owned(), ty));
        }
        Ok(w)
    }

    fn ty(&mut self, t: &Json) -> Result<Ty, SchemaError> {
        match t {
            Json::String(s) => primitive(s, None),
            Json::Array(branches) => Ok(Ty::Union(
                branches.iter().map(|b| self.ty(b)).collect::<Result<_, _>>()?,
            )),
            Json::Object(o) => {
                let ty = o.get("type").and_then(Json::as_str).unwrap_or_default();
                match ty {
                    "enum" => {
                        let symbols = o
                            .get("symbols")
                            .and_then(Json::as_array)
                            .ok_or(SchemaError::EnumWithoutSymbols)?;
                        let base = self.symbols.len() as u32;
                        for s in symbols {
                            self.symbols
                                .push(s.as_str().ok_or(SchemaError::EnumSymbolNotAString)?.to_owned());
                        }
                        Ok(Ty::Enum(base, symbols.len() as u32))
                    }
                    "map" if o.get("values").and_then(Json::as_str) == Some("string") => Ok(Ty::Map),
                    p => primitive(p, o.get("logicalType").and_then(Json::as_str)),
                }
            }
            _ => Err(SchemaError::Unsupported(t.clone())),
        }
    }
}

/// A primitive with apache_avro's reading of its logical type.
fn primitive(name: &str, logical: Option<&str>) -> Result<Ty, SchemaError> {
    Ok(match (name, logical) {
        ("null", _) => Ty::Null,
        ("boolean", _) => Ty::Boolean,
        ("int", Some("date" | "time-millis")) => Ty::OpaqueInt,
        ("int", _) => Ty::Int,
        ("long", Some("timestamp-micros")) => Ty::Long,
        ("long", Some("timestamp-millis")) => Ty::Millis,
        (
            "long",
            Some(
                "time-micros"
                | "timestamp-nanos"
                | "local-timestamp-millis"
                | "local-timestamp-micros"
                | "local-timestamp-nanos",
            ),
        ) => Ty::OpaqueLong,
        ("long", _) => Ty::Long,
        ("float", _) => Ty::Float,
        ("double", _) => Ty::Double,
        ("string", Some("uuid")) => Ty::Uuid,
        ("string", _) => Ty::String,
        (other, _) => return Err(SchemaError::UnsupportedPrimitive(other.to_owned())),
    })
}

/// One decoded field: a scalar, or where its bytes lie in the datum.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Cell {
    Null,
    Bool(bool),
    Int(i64),
    Millis(i64),
    Float(f64),
    Str(u32, u32),
    Sym(u32),
    Map(u32, u32),
    Opaque,
}

impl Cell {
    fn kind(self) -> Kind {
        match self {
            Cell::Str(..) | Cell::Sym(_) => Kind::Str,
            Cell::Int(_) | Cell::Millis(_) => Kind::Int,
            Cell::Bool(_) => Kind::Bool,
            Cell::Float(_) => Kind::Float,
            Cell::Map(..) => Kind::Map,
            Cell::Null | Cell::Opaque => Kind::Other,
        }
    }

    fn as_i64(self) -> Option<i64> {
        match self {
            Cell::Int(i) => Some(i),
            Cell::Millis(i) => Some(i.wrapping_mul(1000)),
            _ => None,
        }
    }
}

struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    #[inline]
    fn byte(&mut self) -> Result<u8, DecodeError> {
        let b = *self.buf.get(self.pos).ok_or(DecodeError::Eof)?;
        self.pos += 1;
        Ok(b)
    }

    #[inline]
    fn long(&mut self) -> Result<i64, DecodeError> {
        let mut z = 0u64;
        for j in 0..10 {
            let b = self.byte()?;
            z |= u64::from(b & 0x7f) << (j * 7);
            if b & 0x80 == 0 {
                return Ok((z >> 1) as i64 ^ -((z & 1) as i64));
            }
        }
        Err(DecodeError::Overflow)
    }

    #[inline]
    fn int(&mut self) -> Result<i32, DecodeError> {
        let i = self.long()?;
        i32::try_from(i).map_err(|_| DecodeError::NotAnInt(i))
    }

    #[inline]
    fn take(&mut self, n: usize) -> Result<&'a [u8], DecodeError> {
        let end = self
            .pos
            .checked_add(n)
            .filter(|e| *e <= self.buf.len())
            .ok_or(DecodeError::Eof)?;
        let s = &self.buf[self.pos..end];
        self.pos = end;
        Ok(s)
    }

    #[inline]
    fn len(&mut self) -> Result<usize, DecodeError> {
        let n = self.long()?;
        usize::try_from(n).map_err(|_| DecodeError::NegativeLength(n))
    }

    /// A string's position in the datum, its UTF-8 checked.
    #[inline]
    fn str(&mut self) -> Result<(u32, u32), DecodeError> {
        let n = self.len()?;
        let at = self.pos;
        let s = self.take(n)?;
        std::str::from_utf8(s)?;
        Ok((at as u32, n as u32))
    }

    /// The item count of the next block of a map (0: the end).
    fn block(&mut self) -> Result<usize, DecodeError> {
        let n = self.long()?;
        let n = if n < 0 {
            // A negative count is followed by the block's size in bytes.
            self.long()?;
            n.checked_neg().ok_or(DecodeError::Overflow)?
        } else {
            n
        };
        Ok(n as usize)
    }

    fn value(&mut self, ty: &Ty) -> Result<Cell, DecodeError> {
        Ok(match ty {
            Ty::Null => Cell::Null,
            Ty::Boolean => match self.byte()? {
                0 => Cell::Bool(false),
                1 => Cell::Bool(true),
                b => return Err(DecodeError::Boolean(b)),
            },
            Ty::Int => Cell::Int(i64::from(self.int()?)),
            Ty::OpaqueInt => {
                self.int()?;
                Cell::Opaque
            }
            Ty::Long => Cell::Int(self.long()?),
            Ty::Millis => Cell::Millis(self.long()?),
            Ty::OpaqueLong => {
                self.long()?;
                Cell::Opaque
            }
            Ty::Float => Cell::Float(f64::from(f32::from_le_bytes(
                self.take(4)?.try_into().map_err(|_| DecodeError::Eof)?,
            ))),
            Ty::Double => Cell::Float(f64::from_le_bytes(
                self.take(8)?.try_into().map_err(|_| DecodeError::Eof)?,
            )),
            Ty::String => {
                let (at, n) = self.str()?;
                Cell::Str(at, n)
            }
            Ty::Uuid => {
                let (at, n) = self.str()?;
                let s = &self.buf[at as usize..(at + n) as usize];
                if !is_uuid(s) {
                    return Err(DecodeError::Uuid);
                }
                Cell::Opaque
            }
            Ty::Enum(base, n) => {
                let i = self.int()?;
                if i < 0 || i as u32 >= *n {
                    return Err(DecodeError::EnumIndex { index: i, symbols: *n });
                }
                Cell::Sym(base + i as u32)
            }
            Ty::Map => {
                let at = self.pos;
                loop {
                    let n = self.block()?;
                    if n == 0 {
                        break;
                    }
                    for _ in 0..n {
                        self.str()?;
                        self.str()?;
                    }
                }
                Cell::Map(at as u32, (self.pos - at) as u32)
            }
            Ty::Union(branches) => {
                let i = self.long()?;
                let b = usize::try_from(i)
                    .ok()
                    .and_then(|i| branches.get(i))
                    .ok_or(DecodeError::UnionIndex {
                        index: i,
                        branches: branches.len(),
                    })?;
                self.value(b)?
            }
        })
    }
}

/// What `uuid::Uuid::parse_str` accepts, near enough: 32 hex digits, hyphenated or not,
/// optionally braced or `urn:uuid:`-prefixed.
fn is_uuid(s: &[u8]) -> bool {
    let s = s.strip_prefix(b"urn:uuid:").unwrap_or(s);
    let s = match (s.first(), s.last()) {
        (Some(b'{'), Some(b'}')) if s.len() >= 2 => &s[1..s.len() - 1],
        _ => s,
    };
    match s.len() {
        32 => s.iter().all(u8::is_ascii_hexdigit),
        36 => s.iter().enumerate().all(|(i, c)| match i {
            8 | 13 | 18 | 23 => *c == b'-',
            _ => c.is_ascii_hexdigit(),
        }),
        _ => false,
    }
}

/// A string column: bytes and offsets, each value's UTF-8 checked when it was read, the
/// whole buffer checked once more by `StringArray::try_new` (a `StringBuilder` wants a `&str`
/// per value: a second check per value, which cost more than decoding it).
struct Strs {
    values: Vec<u8>,
    offsets: Vec<i32>,
    nulls: NullBufferBuilder,
}

impl Strs {
    fn new() -> Strs {
        Strs {
            values: Vec::new(),
            offsets: vec![0],
            nulls: NullBufferBuilder::new(0),
        }
    }

    #[inline]
    fn append(&mut self, v: &[u8]) {
        self.values.extend_from_slice(v);
        self.offsets
            .push(i32::try_from(self.values.len()).expect("string column over 2 GiB: lower FLUSH_MAX_BYTES"));
        self.nulls.append_non_null();
    }

    #[inline]
    fn append_null(&mut self) {
        self.offsets.push(self.offsets.last().copied().unwrap_or(0));
        self.nulls.append_null();
    }

    /// The column; the buffers start again with the room the last batch took.
    fn finish(&mut self) -> arrow::error::Result<StringArray> {
        let (v, o) = (self.values.len(), self.offsets.len());
        let values = std::mem::replace(&mut self.values, Vec::with_capacity(v));
        let mut offsets = std::mem::replace(&mut self.offsets, Vec::with_capacity(o));
        self.offsets.push(0);
        if offsets.is_empty() {
            offsets.push(0);
        }
        StringArray::try_new(
            OffsetBuffer::new(ScalarBuffer::from(offsets)),
            Buffer::from_vec(values),
            self.nulls.finish(),
        )
    }
}

enum Col {
    EventDate(Strs),
    Utf8(Strs),
    Int64(Int64Builder),
    Int32(Int32Builder),
    Ts(TimestampMicrosecondBuilder),
    Bool(BooleanBuilder),
    F64(Float64Builder),
    Map(Box<MapBuilder<StringBuilder, StringBuilder>>),
}

/// The rows of one partition (tenant and day) of a table, as Arrow builders of exactly the
/// table's columns.
struct Part {
    /// The partition's `tenant_id` (None: null, or the table has no such column).
    tenant: Option<Vec<u8>>,
    /// The partition's day number (0 when the table has no `event_date` column).
    day: i64,
    /// Its `YYYY-MM-DD`.
    date: String,
    cols: Vec<Col>,
    rows: usize,
    /// Bytes of the map entries waiting (keys, values, their offsets).
    map_bytes: usize,
}

impl Part {
    fn bytes(&self) -> usize {
        let rows = self.rows;
        self.cols
            .iter()
            .map(|c| match c {
                Col::EventDate(b) | Col::Utf8(b) => b.values.len() + 4 * rows,
                Col::Int64(_) | Col::Ts(_) | Col::F64(_) => 8 * rows,
                Col::Int32(_) => 4 * rows,
                Col::Bool(_) => rows / 8,
                Col::Map(_) => 4 * rows,
            })
            .sum::<usize>()
            + self.map_bytes
    }

    /// The part's rows as one batch of the table's schema; the builders start empty again.
    fn finish(&mut self, schema: &Arc<Schema>) -> arrow::error::Result<RecordBatch> {
        self.rows = 0;
        self.map_bytes = 0;
        let columns: Vec<ArrayRef> = self
            .cols
            .iter_mut()
            .map(|c| -> arrow::error::Result<ArrayRef> {
                Ok(match c {
                    Col::EventDate(b) | Col::Utf8(b) => Arc::new(b.finish()?),
                    Col::Int64(b) => Arc::new(b.finish()),
                    Col::Int32(b) => Arc::new(b.finish()),
                    Col::Ts(b) => Arc::new(b.finish()),
                    Col::Bool(b) => Arc::new(b.finish()),
                    Col::F64(b) => Arc::new(b.finish()),
                    Col::Map(b) => Arc::new(b.finish()),
                })
            })
            .collect::<arrow::error::Result<_>>()?;
        RecordBatch::try_new(schema.clone(), columns)
    }
}

/// The rows waiting for one table, routed by partition (`tenant_id`, `event_date`) as they are
/// read: each partition's rows in builders of exactly the table's columns, so the commit
/// writes each partition's batch as it is (no grouping by partition, no copy per partition
/// in the Delta writer; see `Lake::commit_partitions`).
pub struct Rows {
    schema: Arc<Schema>,
    parts: Vec<Part>,
    /// The part of the last row appended (rows of a partition tend to come together).
    last: usize,
    /// The `tenant_id` column, when the table has one.
    tenant_col: Option<usize>,
    /// The `event_date` column, when the table has one.
    date_col: Option<usize>,
    /// Per writer schema id: the writer field of each column (None: the writer lacks it),
    /// and of `event_time`.
    plans: Vec<(u32, Vec<Option<usize>>, Option<usize>)>,
    cells: Vec<Cell>,
    entries: Vec<((u32, u32), (u32, u32))>,
}

const DAY_MICROS: i64 = 86_400_000_000;

/// Empty builders of the table's columns.
fn columns(schema: &Schema) -> Result<Vec<Col>, ColumnError> {
    schema
        .fields()
        .iter()
        .map(|f| {
            Ok(match f.data_type() {
                DataType::Utf8 if f.name() == EVENT_DATE => Col::EventDate(Strs::new()),
                DataType::Utf8 => Col::Utf8(Strs::new()),
                DataType::Int64 => Col::Int64(Int64Builder::new()),
                DataType::Int32 => Col::Int32(Int32Builder::new()),
                DataType::Timestamp(TimeUnit::Microsecond, tz) => {
                    Col::Ts(TimestampMicrosecondBuilder::new().with_timezone_opt(tz.clone()))
                }
                DataType::Boolean => Col::Bool(BooleanBuilder::new()),
                DataType::Float64 => Col::F64(Float64Builder::new()),
                DataType::Map(entries, _) => {
                    let DataType::Struct(kv) = entries.data_type() else {
                        return Err(ColumnError::MapWithoutStruct(f.name().clone()));
                    };
                    let names = MapFieldNames {
                        entry: entries.name().clone(),
                        key: kv[0].name().clone(),
                        value: kv[1].name().clone(),
                    };
                    Col::Map(Box::new(
                        MapBuilder::new(Some(names), StringBuilder::new(), StringBuilder::new())
                            .with_values_field(kv[1].clone()),
                    ))
                }
                other => return Err(ColumnError::Unsupported(f.name().clone(), other.clone())),
            })
        })
        .collect()
}

impl Rows {
    pub fn new(schema: Arc<Schema>) -> Result<Rows, ColumnError> {
        // Every column checked once here: a part made later cannot fail.
        columns(&schema)?;
        Ok(Rows {
            tenant_col: schema.index_of(TENANT_ID).ok(),
            date_col: schema.index_of(EVENT_DATE).ok(),
            schema,
            parts: Vec::new(),
            last: 0,
            plans: Vec::new(),
            cells: Vec::new(),
            entries: Vec::new(),
        })
    }

    pub fn schema(&self) -> &Arc<Schema> {
        &self.schema
    }

    pub fn len(&self) -> usize {
        self.parts.iter().map(|p| p.rows).sum()
    }

    pub fn is_empty(&self) -> bool {
        self.parts.iter().all(|p| p.rows == 0)
    }

    /// The bytes the waiting rows take as Arrow columns (values, offsets; validity bitmaps
    /// left out): what a flush holds in memory.
    pub fn bytes(&self) -> usize {
        self.parts.iter().map(Part::bytes).sum()
    }

    /// The part for a row of `tenant` and `day`: the last one used, another already made, or
    /// a new one.
    fn part(&mut self, tenant: Option<&[u8]>, day: i64, micros: i64) -> Result<usize, RecordError> {
        let is = |p: &Part| p.day == day && p.tenant.as_deref() == tenant;
        if self.parts.get(self.last).is_some_and(is) {
            return Ok(self.last);
        }
        let at = match self.parts.iter().position(is) {
            Some(at) => at,
            None => {
                let cols = columns(&self.schema).map_err(|e| RecordError::Unfit(e.to_string()))?;
                self.parts.push(Part {
                    tenant: tenant.map(<[u8]>::to_vec),
                    day,
                    date: event_date(micros),
                    cols,
                    rows: 0,
                    map_bytes: 0,
                });
                self.parts.len() - 1
            }
        };
        self.last = at;
        Ok(at)
    }

    /// Decodes one Avro body written with `writer` (registry id `id`) and appends it, or
    /// says why it cannot be written to the table (the builders then stay as they were).
    pub fn append(&mut self, id: u32, writer: &Writer, datum: &[u8]) -> Result<(), RecordError> {
        let mut r = Reader { buf: datum, pos: 0 };
        self.cells.clear();
        for (_, ty) in &writer.fields {
            let c = r.value(ty)?;
            self.cells.push(c);
        }
        let schema = &self.schema;
        // A table sees one or two writer schemas at a time: a scan beats hashing.
        let at = match self.plans.iter().position(|p| p.0 == id) {
            Some(at) => at,
            None => {
                let pos = |name: &str| writer.fields.iter().position(|(n, _)| n == name);
                let plan = schema.fields().iter().map(|f| pos(f.name())).collect();
                self.plans.push((id, plan, pos("event_time")));
                self.plans.len() - 1
            }
        };
        let (_, plan, event_time) = &self.plans[at];
        let cell = |i: Option<usize>| i.map(|i| self.cells[i]).filter(|c| *c != Cell::Null);
        // The checks of `convert::check_row`, in its order and with its reasons.
        let mut micros = 0;
        // The event_date column is known by its index: comparing every column's name with it
        // for every row was 3 % of the sink's CPU (memcmp, `perf record`).
        for (i, (f, at)) in schema.fields().iter().zip(plan.iter()).enumerate() {
            if Some(i) == self.date_col {
                micros = cell(*event_time)
                    .and_then(Cell::as_i64)
                    .ok_or_else(|| RecordError::Unfit(NO_EVENT_TIME.to_owned()))?;
                continue;
            }
            if !fits(f, cell(*at).map(Cell::kind)) {
                return Err(RecordError::Unfit(unfit(f)));
            }
        }
        let text = |(at, n): (u32, u32)| -> &str {
            // Checked UTF-8 when read.
            std::str::from_utf8(&datum[at as usize..(at + n) as usize]).unwrap_or_default()
        };
        let tenant = match self.tenant_col.and_then(|i| cell(plan[i])) {
            Some(Cell::Str(at, n)) => Some(&datum[at as usize..(at + n) as usize]),
            Some(Cell::Sym(i)) => Some(writer.symbols[i as usize].as_bytes()),
            _ => None,
        };
        let day = if self.date_col.is_some() {
            micros.div_euclid(DAY_MICROS)
        } else {
            0
        };
        let k = self.part(tenant, day, micros)?;
        let (_, plan, _) = &self.plans[at];
        let cell = |i: Option<usize>| i.map(|i| self.cells[i]).filter(|c| *c != Cell::Null);
        let part = &mut self.parts[k];
        for (col, at) in part.cols.iter_mut().zip(plan.iter()) {
            let c = cell(*at);
            match col {
                Col::EventDate(b) => b.append(part.date.as_bytes()),
                Col::Utf8(b) => match c {
                    Some(Cell::Str(at, n)) => b.append(&datum[at as usize..(at + n) as usize]),
                    Some(Cell::Sym(i)) => b.append(writer.symbols[i as usize].as_bytes()),
                    _ => b.append_null(),
                },
                Col::Int64(b) => b.append_option(c.and_then(Cell::as_i64)),
                Col::Int32(b) => b.append_option(c.and_then(Cell::as_i64).map(|i| i as i32)),
                Col::Ts(b) => b.append_option(c.and_then(Cell::as_i64)),
                Col::Bool(b) => b.append_option(match c {
                    Some(Cell::Bool(x)) => Some(x),
                    _ => None,
                }),
                Col::F64(b) => b.append_option(match c {
                    Some(Cell::Float(x)) => Some(x),
                    _ => None,
                }),
                Col::Map(b) => {
                    if let Some(Cell::Map(at, n)) = c {
                        // As the old path: keys sorted, a repeated key keeps its last value.
                        let mut r = Reader {
                            buf: &datum[..(at + n) as usize],
                            pos: at as usize,
                        };
                        self.entries.clear();
                        loop {
                            let n = r.block()?;
                            if n == 0 {
                                break;
                            }
                            for _ in 0..n {
                                let k = r.str()?;
                                let v = r.str()?;
                                self.entries.push((k, v));
                            }
                        }
                        // Stable: among equal keys the last pushed stays last.
                        self.entries.sort_by(|a, b| text(a.0).cmp(text(b.0)));
                        for (i, (k, v)) in self.entries.iter().enumerate() {
                            if self.entries.get(i + 1).is_some_and(|next| text(next.0) == text(*k)) {
                                continue;
                            }
                            b.keys().append_value(text(*k));
                            b.values().append_value(text(*v));
                            part.map_bytes += (k.1 + v.1) as usize + 8;
                        }
                    }
                    // An absent map is an empty one, as the Avro default says.
                    b.append(true)?;
                }
            }
        }
        part.rows += 1;
        Ok(())
    }

    /// The waiting rows, a batch per partition in the order the partitions first came; the
    /// builders start empty again. A partition with no rows since the last finish is dropped
    /// (its builders keep the room its last batch took until then).
    pub fn finish_partitions(&mut self) -> arrow::error::Result<Vec<PartitionRows>> {
        self.parts.retain(|p| p.rows > 0);
        self.last = 0;
        let schema = &self.schema;
        let dated = self.date_col.is_some();
        self.parts
            .iter_mut()
            .map(|p| {
                let mut values = BTreeMap::new();
                values.insert(
                    TENANT_ID.to_owned(),
                    p.tenant.as_deref().map(|t| String::from_utf8_lossy(t).into_owned()),
                );
                if dated {
                    values.insert(EVENT_DATE.to_owned(), Some(p.date.clone()));
                }
                Ok(PartitionRows {
                    values,
                    batch: p.finish(schema)?,
                })
            })
            .collect()
    }

    /// The waiting rows as one batch of the table's schema (the partitions one after
    /// another); the builders start empty again.
    pub fn finish(&mut self) -> arrow::error::Result<RecordBatch> {
        let parts = self.finish_partitions()?;
        let batches: Vec<RecordBatch> = parts.into_iter().map(|p| p.batch).collect();
        arrow::compute::concat_batches(&self.schema, &batches)
    }

    /// Drops the waiting rows.
    pub fn clear(&mut self) {
        let _ = self.finish_partitions();
    }
}

#[cfg(test)]
mod tests {
    //! The decoder against the path it replaced (`apache_avro::from_avro_datum`, then
    //! `convert::check_row` and `convert::to_batch`) on the same bytes.

    use super::*;
    use apache_avro::types::Value;
    use apache_avro::Schema as AvroSchema;
    use tributary_lake::convert;

    /// The old path: one `Value` tree per datum.
    fn old(table: &Arc<Schema>, avsc: &str, datums: &[Vec<u8>]) -> Vec<Result<convert::Row, String>> {
        let avro = AvroSchema::parse_str(avsc).unwrap();
        datums
            .iter()
            .map(|d| {
                #[allow(deprecated)]
                let v = apache_avro::from_avro_datum(&avro, &mut d.as_slice(), None)
                    .map_err(|e| format!("Avro decode: {e}"))?;
                let Value::Record(row) = v else {
                    return Err("not a record".to_owned());
                };
                convert::check_row(table, &row)?;
                Ok(row)
            })
            .collect()
    }

    /// Both paths on the same datums: the same rows accepted (the same batch), the same
    /// rejected (with the same reason, but for decode errors, whose wording differs).
    fn same(table: Schema, avsc: &str, datums: &[Vec<u8>]) -> (RecordBatch, Vec<String>) {
        let table = Arc::new(table);
        let old = old(&table, avsc, datums);
        let writer = Writer::parse(avsc).unwrap();
        let mut rows = Rows::new(table.clone()).unwrap();
        let mut reasons = Vec::new();
        for (d, o) in datums.iter().zip(&old) {
            // The reason as `dlq.sink` receives it.
            let new = rows.append(7, &writer, d).map_err(|e| e.to_string());
            match (o, &new) {
                (Ok(_), Ok(())) => {}
                (Err(a), Err(b)) if a.starts_with("Avro decode") => assert!(b.starts_with("Avro decode"), "{a} / {b}"),
                (Err(a), Err(b)) => assert_eq!(a, b),
                _ => panic!("old {o:?}, new {new:?}"),
            }
            if let Err(e) = new {
                reasons.push(e);
            }
        }
        let good: Vec<convert::Row> = old.into_iter().filter_map(Result::ok).collect();
        let want = by_partition(&convert::to_batch(table, &good).unwrap());
        let got = rows.finish().unwrap();
        assert_eq!(got, want);
        assert_eq!(rows.len(), 0);
        (got, reasons)
    }

    /// `batch`'s rows grouped by partition (`tenant_id`, `event_date`), the partitions in the
    /// order they first come and the rows in order within each: the order [`Rows`] gives.
    fn by_partition(batch: &RecordBatch) -> RecordBatch {
        let value = |name: &str, i: usize| -> Option<String> {
            let c = batch.column_by_name(name)?;
            (!c.is_null(i)).then(|| arrow::util::display::array_value_to_string(c, i).unwrap())
        };
        let mut order: Vec<(Option<String>, Option<String>)> = Vec::new();
        let mut rows: Vec<Vec<u32>> = Vec::new();
        for i in 0..batch.num_rows() {
            let key = (value(TENANT_ID, i), value(EVENT_DATE, i));
            match order.iter().position(|k| *k == key) {
                Some(at) => rows[at].push(i as u32),
                None => {
                    order.push(key);
                    rows.push(vec![i as u32]);
                }
            }
        }
        let indices = arrow::array::UInt32Array::from(rows.concat());
        arrow::compute::take_record_batch(batch, &indices).unwrap()
    }

    /// Rows of different tenants and days come out a batch per partition, each with the
    /// partition's values, the rows of each in the order they came.
    #[test]
    fn rows_are_routed_by_partition() {
        let avsc = tributary_lake::chain_schema("mailings").unwrap();
        let table = Arc::new(convert::arrow_schema(avsc).unwrap());
        let writer = Writer::parse(avsc).unwrap();
        let data = datums(avsc, 300, 21);
        let mut rows = Rows::new(table.clone()).unwrap();
        let mut accepted = Vec::new();
        for d in &data {
            if rows.append(1, &writer, d).is_ok() {
                accepted.push(d.clone());
            }
        }
        let n = rows.len();
        assert_eq!(n, accepted.len());
        let parts = rows.finish_partitions().unwrap();
        assert!(parts.len() > 1, "the random rows name more than one tenant or day");
        assert_eq!(parts.iter().map(|p| p.batch.num_rows()).sum::<usize>(), n);
        for p in &parts {
            let b = &p.batch;
            for i in 0..b.num_rows() {
                let t = b.column_by_name(TENANT_ID).unwrap();
                let d = b.column_by_name(EVENT_DATE).unwrap();
                let tenant = (!t.is_null(i)).then(|| arrow::util::display::array_value_to_string(t, i).unwrap());
                assert_eq!(tenant, p.values[TENANT_ID]);
                assert_eq!(
                    Some(arrow::util::display::array_value_to_string(d, i).unwrap()),
                    p.values[EVENT_DATE]
                );
            }
        }
        // Empty again, and a partition with no rows since is gone at the next finish.
        assert!(rows.is_empty() && rows.bytes() == 0);
        rows.append(1, &writer, &accepted[0]).unwrap();
        assert_eq!(rows.finish_partitions().unwrap().len(), 1);
        assert!(rows.finish_partitions().unwrap().is_empty());
    }

    struct Rng(u64);
    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            self.0
        }
        fn below(&mut self, n: u64) -> u64 {
            self.next() % n
        }
        fn text(&mut self) -> String {
            let words = ["acme", "é", "", "user@example.com", "ünïcødé ✓", "x y z", "globex"];
            format!("{}{}", words[self.below(words.len() as u64) as usize], self.below(1000))
        }
    }

    /// A random value of an Avro type (as JSON), as `to_avro_datum` takes it.
    fn value(t: &Json, rng: &mut Rng) -> Value {
        match t {
            Json::String(s) => prim(s, None, rng),
            Json::Array(bs) => {
                let i = rng.below(bs.len() as u64) as usize;
                Value::Union(i as u32, Box::new(value(&bs[i], rng)))
            }
            Json::Object(o) => match o["type"].as_str().unwrap() {
                "enum" => {
                    let s = o["symbols"].as_array().unwrap();
                    let i = rng.below(s.len() as u64) as usize;
                    Value::Enum(i as u32, s[i].as_str().unwrap().to_owned())
                }
                "map" => Value::Map(
                    (0..rng.below(4))
                        .map(|_| (rng.text(), Value::String(rng.text())))
                        .collect(),
                ),
                p => prim(p, o.get("logicalType").and_then(Json::as_str), rng),
            },
            _ => unreachable!(),
        }
    }

    fn prim(p: &str, logical: Option<&str>, rng: &mut Rng) -> Value {
        let micros = 1_700_000_000_000_000 + rng.below(400 * DAY_MICROS as u64) as i64;
        match (p, logical) {
            ("null", _) => Value::Null,
            ("string", Some("uuid")) => Value::Uuid(apache_avro::Uuid::from_u128(u128::from(rng.next()))),
            ("string", _) => Value::String(rng.text()),
            ("long", Some("timestamp-micros")) => Value::TimestampMicros(micros),
            ("long", Some("timestamp-millis")) => Value::TimestampMillis(micros / 1000),
            ("long", Some("time-micros")) => Value::TimeMicros(micros % DAY_MICROS),
            ("long", _) => Value::Long(rng.next() as i64 >> rng.below(63)),
            ("int", Some("date")) => Value::Date(19_000),
            ("int", _) => Value::Int(rng.next() as i32 >> rng.below(31)),
            ("boolean", _) => Value::Boolean(rng.below(2) == 1),
            ("double", _) => Value::Double(rng.next() as f64 / 7.0),
            ("float", _) => Value::Float(rng.next() as f32 / 3.0),
            other => panic!("{other:?}"),
        }
    }

    fn datums(avsc: &str, n: usize, seed: u64) -> Vec<Vec<u8>> {
        let json: Json = serde_json::from_str(avsc).unwrap();
        let avro = AvroSchema::parse_str(avsc).unwrap();
        let mut rng = Rng(seed);
        (0..n)
            .map(|_| {
                let fields = json["fields"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|f| (f["name"].as_str().unwrap().to_owned(), value(&f["type"], &mut rng)))
                    .collect();
                encode(&avro, Value::Record(fields))
            })
            .collect()
    }

    #[allow(deprecated)]
    fn encode(avro: &AvroSchema, v: Value) -> Vec<u8> {
        apache_avro::to_avro_datum(avro, v).unwrap()
    }

    #[test]
    fn every_chain_schema_decodes_as_the_value_path_did() {
        for (i, chain) in tributary_engine::topics::CHAINS.iter().enumerate() {
            let avsc = tributary_lake::chain_schema(chain).unwrap();
            let table = convert::arrow_schema(avsc).unwrap();
            let (batch, reasons) = same(table, avsc, &datums(avsc, 500, 0x9e37_79b9 + i as u64));
            assert_eq!(batch.num_rows(), 500, "{chain}: {reasons:?}");
        }
    }

    const KINDS: &str = r#"{"type": "record", "name": "K", "fields": [
        {"name": "tenant_id", "type": "string"},
        {"name": "event_time", "type": {"type": "long", "logicalType": "timestamp-millis"}},
        {"name": "i", "type": "int"},
        {"name": "oi", "type": ["null", "int"]},
        {"name": "l", "type": ["long", "null"]},
        {"name": "b", "type": "boolean"},
        {"name": "ob", "type": ["null", "boolean"]},
        {"name": "f", "type": "float"},
        {"name": "d", "type": ["null", "double"]},
        {"name": "s", "type": {"type": "string"}},
        {"name": "e", "type": ["null", {"type": "enum", "name": "E", "symbols": ["A", "B", "C"]}]},
        {"name": "ts", "type": ["null", {"type": "long", "logicalType": "timestamp-micros"}]},
        {"name": "m", "type": {"type": "map", "values": "string"}},
        {"name": "om", "type": ["null", {"type": "map", "values": "string"}]}
    ]}"#;

    #[test]
    fn every_kind_of_field_decodes_as_the_value_path_did() {
        let table = convert::arrow_schema(KINDS).unwrap();
        let (batch, reasons) = same(table, KINDS, &datums(KINDS, 2000, 42));
        assert_eq!(batch.num_rows(), 2000, "{reasons:?}");
    }

    #[test]
    fn values_that_fit_no_column_are_dead_letters_with_the_same_reason() {
        let avsc = r#"{"type": "record", "name": "O", "fields": [
            {"name": "tenant_id", "type": "string"},
            {"name": "event_time", "type": {"type": "long", "logicalType": "timestamp-micros"}},
            {"name": "day", "type": ["null", {"type": "int", "logicalType": "date"}]},
            {"name": "at", "type": ["null", {"type": "long", "logicalType": "time-micros"}]},
            {"name": "id", "type": ["null", {"type": "string", "logicalType": "uuid"}]}
        ]}"#;
        let table = convert::arrow_schema(avsc).unwrap();
        let (batch, reasons) = same(table, avsc, &datums(avsc, 300, 7));
        assert!(batch.num_rows() > 10 && !reasons.is_empty(), "{reasons:?}");
        // A column of another type than the writer's field.
        let mut other = convert::arrow_schema(KINDS).unwrap().fields().to_vec();
        let s = other.iter().position(|f| f.name() == "s").unwrap();
        other[s] = Arc::new(arrow::datatypes::Field::new("s", DataType::Int64, true));
        let (batch, reasons) = same(Schema::new(other), KINDS, &datums(KINDS, 20, 3));
        assert_eq!(batch.num_rows(), 0);
        assert!(
            reasons.iter().all(|r| r == "field 's' is missing or not of type Int64"),
            "{reasons:?}"
        );
    }

    /// Removes fields of a record schema (JSON).
    fn without(avsc: &str, names: &[&str]) -> String {
        let mut json: Json = serde_json::from_str(avsc).unwrap();
        json["fields"]
            .as_array_mut()
            .unwrap()
            .retain(|f| !names.contains(&f["name"].as_str().unwrap()));
        json.to_string()
    }

    #[test]
    fn older_and_newer_writer_schemas_land_in_the_tables_columns() {
        let users = tributary_lake::chain_schema("users").unwrap();
        // An older writer lacking optional fields (and the map): nulls, empty maps.
        let older = without(users, &["previous_email", "attributes", "phone"]);
        let table = convert::arrow_schema(users).unwrap();
        let (batch, _) = same(table.clone(), &older, &datums(&older, 200, 11));
        assert_eq!(batch.num_rows(), 200);
        assert_eq!(batch.column_by_name("previous_email").unwrap().null_count(), 200);
        // A newer writer with a field the table lacks (before the table widens): ignored.
        let narrow = convert::arrow_schema(&older).unwrap();
        let (batch, _) = same(narrow, users, &datums(users, 200, 12));
        assert_eq!(batch.num_rows(), 200);
        // After the table widened: the new column, nullable.
        let mut wide = table.fields().to_vec();
        wide.insert(
            wide.len() - 1,
            Arc::new(arrow::datatypes::Field::new("region", DataType::Utf8, true)),
        );
        let mut json: Json = serde_json::from_str(users).unwrap();
        json["fields"]
            .as_array_mut()
            .unwrap()
            .push(serde_json::json!({"name": "region", "type": ["null", "string"], "default": null}));
        let newer = json.to_string();
        let (batch, _) = same(Schema::new(wide.clone()), &newer, &datums(&newer, 200, 13));
        assert_eq!(batch.num_rows(), 200);
        // Records of the older schema still land in the widened table, side by side.
        let writer_old = Writer::parse(&older).unwrap();
        let writer_new = Writer::parse(&newer).unwrap();
        let mut rows = Rows::new(Arc::new(Schema::new(wide))).unwrap();
        for (a, b) in datums(&older, 50, 14).iter().zip(datums(&newer, 50, 15).iter()) {
            rows.append(1, &writer_old, a).unwrap();
            rows.append(2, &writer_new, b).unwrap();
        }
        let batch = rows.finish().unwrap();
        assert_eq!(batch.num_rows(), 100);
        // A required column the writer lacks: a dead letter.
        let no_source = without(users, &["source"]);
        let (_, reasons) = same(table, &no_source, &datums(&no_source, 5, 16));
        assert_eq!(reasons, vec!["field 'source' is missing or not of type Utf8"; 5]);
    }

    /// Hand-made bytes: repeated map keys, negative block counts, corrupt datums.
    #[test]
    fn maps_and_corrupt_datums_as_the_value_path_did() {
        fn long(out: &mut Vec<u8>, v: i64) {
            let mut z = ((v << 1) ^ (v >> 63)) as u64;
            while z >= 0x80 {
                out.push((z as u8) | 0x80);
                z >>= 7;
            }
            out.push(z as u8);
        }
        fn string(out: &mut Vec<u8>, s: &[u8]) {
            long(out, s.len() as i64);
            out.extend_from_slice(s);
        }
        let avsc = r#"{"type": "record", "name": "M", "fields": [
            {"name": "tenant_id", "type": "string"},
            {"name": "event_time", "type": {"type": "long", "logicalType": "timestamp-micros"}},
            {"name": "attributes", "type": {"type": "map", "values": "string"}},
            {"name": "note", "type": ["null", "string"]}
        ]}"#;
        let head = |out: &mut Vec<u8>| {
            string(out, b"acme");
            long(out, 1_763_000_000_000_000);
        };
        let mut dup = Vec::new();
        head(&mut dup);
        long(&mut dup, 3);
        for (k, v) in [("b", "1"), ("a", "2"), ("b", "3")] {
            string(&mut dup, k.as_bytes());
            string(&mut dup, v.as_bytes());
        }
        long(&mut dup, -1); // a block with its size in bytes
        let mut block = Vec::new();
        string(&mut block, b"c");
        string(&mut block, b"4");
        long(&mut dup, block.len() as i64);
        dup.extend_from_slice(&block);
        long(&mut dup, 0);
        long(&mut dup, 1);
        string(&mut dup, b"n");
        let mut bad_union = Vec::new();
        head(&mut bad_union);
        long(&mut bad_union, 0);
        long(&mut bad_union, 2);
        let mut bad_utf8 = Vec::new();
        head(&mut bad_utf8);
        long(&mut bad_utf8, 0);
        long(&mut bad_utf8, 1);
        string(&mut bad_utf8, &[0xff, 0xfe]);
        let mut trailing = dup.clone();
        trailing.extend_from_slice(b"ignored");
        let table = convert::arrow_schema(avsc).unwrap();
        let datums = vec![dup.clone(), bad_union, bad_utf8, dup[..16].to_vec(), trailing];
        let (batch, reasons) = same(table, avsc, &datums);
        assert_eq!(batch.num_rows(), 2);
        assert_eq!(reasons.len(), 3);
        let m = arrow::util::display::array_value_to_string(batch.column_by_name("attributes").unwrap(), 0).unwrap();
        assert_eq!(m, "{a: 2, b: 3, c: 4}");
    }

    #[test]
    fn a_failed_record_leaves_the_rows_as_they_were() {
        let avsc = tributary_lake::chain_schema("mailings").unwrap();
        let table = Arc::new(convert::arrow_schema(avsc).unwrap());
        let writer = Writer::parse(avsc).unwrap();
        let good = datums(avsc, 3, 5);
        let mut rows = Rows::new(table).unwrap();
        rows.append(1, &writer, &good[0]).unwrap();
        assert!(rows.append(1, &writer, &good[1][..good[1].len() / 2]).is_err());
        rows.append(1, &writer, &good[2]).unwrap();
        let bytes = rows.bytes();
        let batch = rows.finish().unwrap();
        assert_eq!(batch.num_rows(), 2);
        assert!(rows.is_empty());
        // The estimate of what the rows take is near what the batch holds.
        let held = batch.get_array_memory_size();
        assert!(bytes > 0 && bytes <= held, "{bytes} of {held}");
        assert_eq!(rows.bytes(), 0);
        rows.append(1, &writer, &good[1]).unwrap();
        rows.clear();
        assert_eq!(rows.finish().unwrap().num_rows(), 0);
    }
}
