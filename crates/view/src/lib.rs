//! The read side's model, shared by `serve` (over the clean topics and the lake) and
//! `tributary audience` (over the lake alone): clean events typed once ([`event`]), folded
//! into per-tenant state whose answers follow DESIGN's suppression rules ([`state`]), and the
//! lake read for it ([`lake`]).

pub mod event;
pub mod export;
pub mod grants;
pub mod lake;
pub mod model;
pub mod state;

pub use event::{Event, Sha};
pub use state::{fmt_time, Member, Reason, Suppression, TenantView, View};

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A clean record the read side cannot type: a bug upstream, never skipped.
    #[error("record: {0}")]
    Record(String),
    #[error("lake: {0}")]
    Lake(#[from] tributary_lake::Error),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

#[cfg(test)]
mod tests;

/// An instant given by a caller: RFC 3339, or Unix seconds; microseconds since the epoch.
pub fn parse_time(s: &str) -> std::result::Result<i64, String> {
    if let Ok(secs) = s.trim().parse::<i64>() {
        return Ok(secs * 1_000_000);
    }
    chrono::DateTime::parse_from_rfc3339(s.trim())
        .map(|d| d.timestamp_micros())
        .map_err(|e| format!("'{s}': {e}; want RFC 3339 (2026-01-31T00:00:00Z) or Unix seconds"))
}
