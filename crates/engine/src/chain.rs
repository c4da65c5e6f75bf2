//! What a chain provides, and the pipeline that runs its stages in order for one record.
//! The engine owns the order; a chain owns only its per-stage functions.

use crate::avro::{wire_header, AvroWriter};
use crate::error::{ErrorClass, RecordError};
use crate::record::{Common, CommonContext, Input, RawRecord, Source};
use std::time::Duration;
use xxhash_rust::xxh3::{xxh3_128, xxh3_64};

/// One data chain: its name, schema and per-stage functions.
pub trait Chain: Send + Sync + 'static {
    type Record: Send;
    /// The chain's own fields as a source gave them, typed (closed values as enums), before
    /// validation: a provider's reader sets them by name in Rust, so a misspelt field does
    /// not compile.
    type Draft: Default + Send;
    /// The chain's name, as in `raw.<name>`.
    const NAME: &'static str;
    /// The Avro schema of the clean topic (`schemas/<name>.avsc`).
    const SCHEMA: &'static str;
    /// Default dedup window, in event time.
    const WINDOW: Duration;
    /// Default metrics and health port.
    const PORT: u16;
    /// Whether a record without an email address is invalid.
    const EMAIL_REQUIRED: bool;

    /// Parse stage: the source format into the chain's draft and fields by name.
    fn parse(source: Source, raw: &RawRecord<'_>) -> Result<Input<Self::Draft>, RecordError>;
    /// Validate stage: the draft, completed from the fields by name that [`Common`] did not
    /// take, into the chain's typed, normalized record.
    fn validate(input: Input<Self::Draft>, common: Common, now_micros: i64) -> Result<Self::Record, RecordError>;
    fn common(r: &Self::Record) -> &Common;
    fn common_mut(r: &mut Self::Record) -> &mut Common;
    /// Encode stage: the record's fields in schema order.
    fn write_avro(r: &Self::Record, w: &mut AvroWriter<'_>);
}

/// A record ready for the clean topic.
#[derive(Debug, Clone)]
pub struct Encoded {
    /// Dedup key: a hash of tenant and event identity.
    pub key: u64,
    pub event_time: i64,
    pub tenant_id: String,
    /// The Confluent-framed Avro value.
    pub value: Vec<u8>,
}

/// Settings of the per-record pipeline.
#[derive(Debug, Clone)]
pub struct PipelineSettings {
    pub tenants: Vec<String>,
    pub max_record_bytes: usize,
    pub schema_id: u32,
}

/// Runs parse → validate → normalize → encode for one raw record.
pub fn process<C: Chain>(
    s: &PipelineSettings,
    source: Option<&str>,
    raw: &RawRecord<'_>,
    now_micros: i64,
) -> Result<Encoded, RecordError> {
    if raw.payload.len() > s.max_record_bytes {
        return Err(RecordError::new(
            ErrorClass::Oversize,
            format!(
                "{} bytes exceed max_record_bytes {}",
                raw.payload.len(),
                s.max_record_bytes
            ),
        ));
    }
    let source = match source {
        None => Source::Json,
        Some(name) => Source::parse(name).ok_or_else(|| {
            RecordError::new(
                ErrorClass::UnknownSource,
                format!("unknown source format '{}'", crate::normalize::truncate(name, 40)),
            )
        })?,
    };
    let mut input = C::parse(source, raw)?;
    let cx = CommonContext {
        tenants: &s.tenants,
        source,
        now_micros,
        email_required: C::EMAIL_REQUIRED,
    };
    let common = Common::take(&mut input.fields, raw, &cx)?;
    let mut record = C::validate(input, common, now_micros)?;
    let mut value = Vec::with_capacity(256);
    if C::common(&record).event_id.is_empty() {
        // No identity from the source: hash the normalized record without its ingest time.
        let c = C::common_mut(&mut record);
        let ingested = std::mem::replace(&mut c.ingested_at, 0);
        C::write_avro(&record, &mut AvroWriter::new(&mut value));
        let c = C::common_mut(&mut record);
        c.event_id = format!("h{:032x}", xxh3_128(&value));
        c.ingested_at = ingested;
        value.clear();
    }
    wire_header(&mut value, s.schema_id);
    C::write_avro(&record, &mut AvroWriter::new(&mut value));
    let c = C::common(&record);
    Ok(Encoded {
        key: dedup_key(&c.tenant_id, &c.event_id),
        event_time: c.event_time,
        tenant_id: c.tenant_id.clone(),
        value,
    })
}

pub fn dedup_key(tenant: &str, event_id: &str) -> u64 {
    let mut buf = Vec::with_capacity(tenant.len() + event_id.len() + 1);
    buf.extend_from_slice(tenant.as_bytes());
    buf.push(0);
    buf.extend_from_slice(event_id.as_bytes());
    xxh3_64(&buf)
}
