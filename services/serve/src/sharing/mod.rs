//! Analytics shares over the Delta Sharing protocol (DESIGN "Sharing between companies").
//!
//! - [`materialize`]: the shared tables of the live analytics grants, refreshed incrementally
//!   on a timer (`SHARING_REFRESH`, default 20 s) under `<lake>/_shares/`.
//! - [`protocol`]: the REST protocol of delta-io/delta-sharing's PROTOCOL.md under
//!   `/delta-sharing`: one share per grant (named by the grant id), one schema `default`, the
//!   granted chains as tables; a grant's bearer token sees its own share only.
//! - [`urls`]: the short-lived file URLs `serve` signs itself and serves the bytes of (HDFS
//!   has no pre-signed URLs).

pub mod materialize;
pub mod protocol;
pub mod urls;

use crate::metrics::Metrics;

pub use protocol::router;

/// The one schema of every share.
pub const SCHEMA: &str = "default";

/// Share, schema, table and file names: `^[A-Za-z0-9_-]{1,255}$`. Anything else (`/`, `..`,
/// a decoded `%2F`, spaces) is refused before storage is touched.
pub fn valid_name(s: &str) -> bool {
    !s.is_empty() && s.len() <= 255 && s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

/// Drops the per-grant series of a grant that is gone.
pub fn forget_grant_metrics(m: &Metrics, grant: &str) {
    for chain in tributary_view::event::CHAINS {
        let _ = m.share_rows.remove_label_values(&[grant, chain]);
    }
}

/// Starts the refresh thread; an invalid `SHARING_REFRESH` stops `serve` from starting.
pub fn spawn(
    app: std::sync::Arc<crate::App>,
    shutdown: tokio_util::sync::CancellationToken,
) -> anyhow::Result<std::thread::JoinHandle<anyhow::Result<()>>> {
    materialize::refresh_interval()?;
    Ok(std::thread::Builder::new().name("sharing".into()).spawn(move || {
        let r = materialize::run(app, shutdown);
        if let Err(e) = &r {
            tracing::error!(error = format!("{e:#}"), "The sharing refresh stopped");
        }
        r
    })?)
}

#[cfg(test)]
mod tests;
