//! The audit record: what one transaction of a chain service took from its raw topic and what
//! became of it. The service writes it to `audit.<chain>` in the same transaction as its
//! output; reconciliation (`tributary reconcile`, `tributary_lake::reconcile`) and the tests
//! read it back as this same type.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// One input range: `[first_offset, next_offset)` of a raw topic's partition.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditInput {
    pub topic: String,
    pub partition: i32,
    pub first_offset: i64,
    pub next_offset: i64,
}

/// One transaction's account: `received = clean + dlq + duplicate` (`late` counts records
/// let through although older than the window, part of `clean`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Audit {
    #[serde(default)]
    pub chain: String,
    #[serde(default)]
    pub instance: String,
    #[serde(default)]
    pub inputs: Vec<AuditInput>,
    #[serde(default)]
    pub received: u64,
    #[serde(default)]
    pub clean: u64,
    #[serde(default)]
    pub dlq: u64,
    #[serde(default)]
    pub duplicate: u64,
    #[serde(default)]
    pub late: u64,
    /// Dead letters by error class.
    #[serde(default)]
    pub dlq_by_class: BTreeMap<String, u64>,
    /// When the transaction was committed, µs since the epoch.
    #[serde(default)]
    pub committed_at: i64,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_audit_reads_back_as_written_and_older_records_still_read() {
        let a = Audit {
            chain: "users".into(),
            instance: "0".into(),
            inputs: vec![AuditInput {
                topic: "raw.users".into(),
                partition: 2,
                first_offset: 10,
                next_offset: 15,
            }],
            received: 5,
            clean: 3,
            dlq: 1,
            duplicate: 1,
            late: 0,
            dlq_by_class: BTreeMap::from([("invalid".to_owned(), 1)]),
            committed_at: 1,
        };
        let back: Audit = serde_json::from_str(&serde_json::to_string(&a).unwrap()).unwrap();
        assert_eq!(back, a);
        let old: Audit = serde_json::from_str(r#"{"received": 2, "clean": 2}"#).unwrap();
        assert_eq!((old.received, old.clean, old.inputs.len()), (2, 2, 0));
    }
}
