//! The engine every Tributary chain service runs on: configuration, the transactional
//! consume → process → produce loop, windowed dedup state with its changelog, the DLQ,
//! metrics, health and shutdown. A chain supplies only its per-stage functions ([`Chain`]).

// The provider registry (`providers/providers.txt`) as macros, first, so that every module
// below sees them: `with_providers!` and the exported `provider_modules!` (crates/engine/build.rs).
include!(concat!(env!("OUT_DIR"), "/providers.rs"));

pub mod audit;
pub mod avro;
pub mod chain;
pub mod chains;
pub mod config;
pub mod dedup;
pub mod error;
pub mod esp;
#[cfg(feature = "fuzz")]
pub mod fuzz;
pub mod kafka;
pub mod metrics;
pub mod normalize;
pub mod record;
pub mod runner;
pub mod settings;
pub mod testing;
pub mod topics;
pub mod watchdog;

pub use chain::{Chain, Encoded, PipelineSettings};
pub use config::Config;
pub use error::{Error, ErrorClass, RecordError, Result};
pub use record::{field, Common, Input, Parsed, RawRecord, Source, Symbols};

use std::process::ExitCode;

/// The chain services' allocator, mimalloc, which [`chain_main!`] (and the per-record
/// pipeline benchmark) installs with `#[global_allocator]`. glibc's malloc and free were a
/// tenth of a chain service's CPU (`perf record` of `make bench`'s mailings service), most of
/// it the short-lived strings of parsing; with mimalloc the pipeline alone took about 5 %
/// less CPU per record. Not the sink's: there it held 25 % more memory (344 to 370 MiB peak
/// against 271 to 280, over its 300 MiB target) for no throughput `make bench` could see.
pub use mimalloc::MiMalloc as ChainAllocator;
use tokio_util::sync::CancellationToken;

/// A chain service's `main`: [`service_main`] for `$chain`, on [`ChainAllocator`].
#[macro_export]
macro_rules! chain_main {
    ($chain:ty) => {
        #[global_allocator]
        static GLOBAL: $crate::ChainAllocator = $crate::ChainAllocator;

        fn main() -> std::process::ExitCode {
            $crate::service_main::<$chain>()
        }
    };
}

/// Logs as JSON lines when `LOG_FORMAT=json`, else human-readable; level from `RUST_LOG`.
pub fn init_tracing() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info,rdkafka=warn,deltalake=warn,deltalake_core=warn,buoyant_kernel=warn,delta_kernel=warn,hdfs_native=warn"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    if std::env::var("LOG_FORMAT").as_deref() == Ok("json") {
        builder.json().init();
    } else {
        builder.init();
    }
}

/// Cancels the returned token on SIGTERM or SIGINT.
pub fn shutdown_on_signals() -> std::io::Result<CancellationToken> {
    let token = CancellationToken::new();
    let t = token.clone();
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    std::thread::Builder::new().name("signals".into()).spawn(move || {
        rt.block_on(async {
            let mut term = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(s) => s,
                Err(e) => {
                    tracing::error!(error = %e, "Cannot listen for SIGTERM");
                    return;
                }
            };
            tokio::select! {
                _ = term.recv() => {}
                _ = tokio::signal::ctrl_c() => {}
            }
            tracing::info!("Signal received; shutting down");
            t.cancel();
        });
    })?;
    Ok(token)
}

/// The whole `main` of a chain service: settings from the defaults, the file (`--config` or
/// `TRIBUTARY_CONFIG`), the environment and the flags (`--help` lists them all; see
/// [`settings`]); exits non-zero, loudly, on any error it cannot handle.
pub fn service_main<C: Chain>() -> ExitCode {
    init_tracing();
    let loaded = settings::load::<Config>(config::tweak(C::NAME, C::WINDOW, C::PORT));
    let env: std::collections::BTreeMap<String, String> = std::env::vars().collect();
    let print = loaded.print;
    let resolved = Config::resolve(C::NAME, loaded, &env);
    if print {
        return settings::print_config(C::NAME, resolved.map(|c| settings::to_toml(&c)));
    }
    let cfg = match resolved {
        Ok(c) => c,
        Err(e) => {
            tracing::error!(error = %e, "Invalid configuration");
            return ExitCode::from(2);
        }
    };
    let shutdown = match shutdown_on_signals() {
        Ok(t) => t,
        Err(e) => {
            tracing::error!(error = %e, "Cannot install signal handlers");
            return ExitCode::FAILURE;
        }
    };
    match runner::run::<C>(cfg, shutdown) {
        Ok(()) => {
            tracing::info!("Stopped");
            ExitCode::SUCCESS
        }
        Err(e) => {
            tracing::error!(error = %e, "Stopping on an error it cannot handle");
            ExitCode::FAILURE
        }
    }
}
