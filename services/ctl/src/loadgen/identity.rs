//! Identities the chain derives itself. Where a source gives no identity (Mailchimp, Mandrill
//! sync events, CSV exports without an id column), the engine hashes the normalized record
//! (`chain::process`): the only way to know that hash is to run the chain's own pipeline,
//! which this does, exactly as the service would (the hash leaves out the ingest time).

use tributary_engine::chain::{self, PipelineSettings};
use tributary_engine::{Encoded, RawRecord, RecordError, Source};

/// One chain's pipeline, as [`chain::process`] runs it.
type Pipeline = fn(&PipelineSettings, Option<&str>, &RawRecord<'_>, i64) -> Result<Encoded, RecordError>;

macro_rules! pipelines {
    ($(($name:ident, $krate:ident, $ty:ident))*) => {
        /// Every chain's pipeline, by the chain's name: every chain of the registry
        /// (`tributary_engine::for_each_chain!`), through its `Chain`.
        pub const PIPELINES: [(&str, Pipeline); tributary_engine::chains::ALL.len()] = {
            use tributary_engine::Chain;
            [$((<$krate::$ty as Chain>::NAME, chain::process::<$krate::$ty>)),*]
        };
    };
}
tributary_engine::for_each_chain!(pipelines);

/// Runs one raw record through `chain`'s pipeline (parse, validate, normalize, encode).
pub fn process(
    chain: &str,
    settings: &PipelineSettings,
    source: Source,
    raw: &RawRecord<'_>,
    now_micros: i64,
) -> Result<Encoded, RecordError> {
    match PIPELINES.iter().find(|(name, _)| *name == chain) {
        Some((_, pipeline)) => pipeline(settings, Some(source.as_str()), raw, now_micros),
        None => Err(RecordError::new(
            tributary_engine::ErrorClass::UnknownSource,
            format!("no chain '{chain}'"),
        )),
    }
}

/// The `event_id` of a Confluent-framed clean value: the second field of every chain's
/// record, after `tenant_id`.
pub fn event_id_of(framed: &[u8]) -> Option<String> {
    let mut pos = 5;
    let skip = read_long(framed, &mut pos)?;
    pos = pos.checked_add(usize::try_from(skip).ok()?)?;
    let len = usize::try_from(read_long(framed, &mut pos)?).ok()?;
    let bytes = framed.get(pos..pos.checked_add(len)?)?;
    String::from_utf8(bytes.to_vec()).ok()
}

/// Reads an Avro `long` (zigzag varint) at `*pos`.
pub fn read_long(b: &[u8], pos: &mut usize) -> Option<i64> {
    let mut v: u64 = 0;
    let mut shift = 0;
    loop {
        let byte = *b.get(*pos)?;
        *pos += 1;
        v |= u64::from(byte & 0x7f) << shift;
        if byte & 0x80 == 0 {
            break;
        }
        shift += 7;
        if shift > 63 {
            return None;
        }
    }
    Some((v >> 1) as i64 ^ -((v & 1) as i64))
}

/// Learns hashed identities for one chain and tenant set.
pub struct Hasher {
    chain: String,
    settings: PipelineSettings,
}

impl Hasher {
    pub fn new(chain: &str, tenants: &[String]) -> Hasher {
        Hasher {
            chain: chain.to_owned(),
            settings: PipelineSettings {
                tenants: tenants.to_vec(),
                max_record_bytes: usize::MAX,
                schema_id: 0,
            },
        }
    }

    /// The identity the chain gives this (valid) record. A record the chain refuses is a bug
    /// of the generator: it panics with the reason.
    pub fn identity(&self, source: Source, payload: &[u8], tenant: &str, csv_header: Option<&str>) -> String {
        let raw = RawRecord {
            payload,
            tenant: Some(tenant),
            csv_header,
        };
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_micros() as i64)
            .unwrap_or(0);
        match process(&self.chain, &self.settings, source, &raw, now) {
            Ok(enc) => event_id_of(&enc.value).expect("a clean value starts with tenant_id and event_id"),
            Err(e) => panic!(
                "loadgen made a {} record the {} chain refuses ({e}): {}",
                source.as_str(),
                self.chain,
                String::from_utf8_lossy(payload)
            ),
        }
    }
}
