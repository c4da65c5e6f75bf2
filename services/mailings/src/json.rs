//! The canonical `json` format: the unified field names as keys.

use tributary_engine::{Parsed, RawRecord, RecordError};

pub fn parse(raw: &RawRecord<'_>) -> Result<Parsed, RecordError> {
    Parsed::from_json(raw.payload)
}
