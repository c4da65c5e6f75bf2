//! Settings of the gateway: defaults, then the TOML file (`--config` or `TRIBUTARY_CONFIG`;
//! unknown keys are rejected), then the environment and flags. Every error is reported at
//! once. Provider secrets are read and parsed here, so a bad key stops the gateway at
//! startup instead of failing requests.

use crate::error::Error;
use crate::signatures::Secrets;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;
use tributary_engine::config::{local_mode_for, no_tenants_problem, LOCAL_MODE_VAR};
use tributary_engine::settings::{self, Loaded};

pub const DEFAULT_PORT: u16 = 8080;

/// The local default: tenant → SHA-256 hex of `<tenant>-local-token`.
pub const LOCAL_TENANTS: [(&str, &str); 3] = [
    (
        "acme",
        "2fb9804a5a0ec55af27254f818ca65c4fa55b7062881701d79bca25bb1cdbe38",
    ),
    (
        "globex",
        "37dc87b689cdfce102465e3c0fcbfa5ac8f8f2dc4a87100c5d638c12e407a98b",
    ),
    (
        "initech",
        "34ac56557652132cdc44246366834ac7b21e31cbcabcd216816ec39597f00054",
    ),
];

const AFTER_HELP: &str = "\
The file also holds the tenants, `[tenants.<id>]` (token_sha256, unsubscribe_secret, and a table \
per provider with its webhook secret, as providers/<provider>/gateway.rs declares it); they are never printed.
SCHEMA_REGISTRY_URL, set by the shared deployment config, is not used by the gateway.
TRIBUTARY_LOCAL=1 (local mode: make up, the tests; when unset, a Kafka on loopback addresses only): \
the tenants acme, globex, initech with the tokens <tenant>-local-token and one-click secrets \
<tenant>-local-unsubscribe-secret where no tenant is configured, and unsigned webhooks accepted \
with a warning. Otherwise (TRIBUTARY_LOCAL=0, as in Kubernetes) the gateway refuses to start \
with no tenants configured.";

/// The gateway's settings, each declared once: flag, environment variable, default, help;
/// the file key is the field's name. [`tributary_engine::settings`] layers them.
#[derive(Debug, Default, clap::Parser, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
#[command(name = "ingest", about = "Tributary's HTTP gateway: ESP webhooks and list uploads into raw.<chain>", after_help = AFTER_HELP)]
pub struct Config {
    /// Kafka bootstrap servers.
    #[arg(long, env = "KAFKA_BOOTSTRAP", default_value = "127.0.0.1:9092")]
    pub kafka_bootstrap: String,
    /// The one port of the API, /metrics and /health/* [default: 8080].
    #[arg(long, env = "PORT")]
    pub port: Option<u16>,
    /// The same port under the name every Tributary service uses: METRICS_PORT (default 8080,
    /// as PORT) must agree with PORT.
    #[arg(long, env = "METRICS_PORT")]
    pub metrics_port: Option<u16>,
    /// Prefix `<ns>.` on every topic; empty by default.
    #[arg(long, env = "TOPIC_NAMESPACE")]
    pub topic_namespace: String,
    /// Largest webhook body, else 413.
    #[arg(long, env = "MAX_BODY_BYTES", default_value = "4194304")]
    pub max_body_bytes: usize,
    /// Largest upload, else 413. 100 GiB: uploads stream, so this bounds time and disk
    /// downstream, not memory.
    #[arg(long, env = "MAX_UPLOAD_BYTES", default_value = "107374182400")]
    pub max_upload_bytes: u64,
    /// Longest upload line or CSV row; longer ones are rejected.
    #[arg(long, env = "MAX_RECORD_BYTES", default_value = "1048576")]
    pub max_record_bytes: usize,
    /// How long Kafka may take to acknowledge a record before 503.
    #[arg(long, env = "DELIVERY_TIMEOUT", default_value = "30s", value_parser = settings::duration)]
    #[serde(with = "humantime_serde")]
    pub delivery_timeout: Duration,
    /// How long a webhook or one-click request may take, body and Kafka acknowledgements
    /// included, before it is answered 503; for an upload, how long the body may pause (else
    /// 408). Not above DELIVERY_TIMEOUT, a Kafka outage is answered by this timeout rather
    /// than by Kafka's own error: a 503 either way.
    #[arg(long, env = "REQUEST_TIMEOUT", default_value = "30s", value_parser = settings::duration)]
    #[serde(with = "humantime_serde")]
    pub request_timeout: Duration,
    /// How long Kafka may not answer before the gateway exits with status 3, so that its
    /// restart gets a fresh client (a librdkafka producer can stay without a broker for good
    /// after a broker restart). Longer than a broker restart.
    #[arg(long, env = "STALL_LIMIT", default_value = "2m", value_parser = settings::duration)]
    #[serde(with = "humantime_serde")]
    pub stall_limit: Duration,
    /// API requests handled at once; the next one is answered 503 at once instead of queueing.
    #[arg(long, env = "MAX_CONCURRENT_REQUESTS", default_value = "256")]
    pub max_concurrent_requests: usize,
    /// Refuse webhooks of a provider without a configured secret [default: true; false in
    /// local mode].
    #[arg(long, env = "REQUIRE_PROVIDER_SIGNATURES")]
    pub require_provider_signatures: Option<bool>,
    /// How old a signed timestamp may be (SendGrid's signed header, Mailgun's
    /// `signature.timestamp`, an SNS message's `Timestamp`), else 403 as a possible replay:
    /// the usual webhook replay window. A provider retry that carries its first attempt's
    /// signature past the window is refused; SNS's default delivery policy retries within
    /// about a minute, a longer custom policy needs this raised to match.
    #[arg(long, env = "SIGNATURE_MAX_AGE", default_value = "5m", value_parser = settings::duration)]
    #[serde(with = "humantime_serde")]
    pub signature_max_age: Duration,
    /// Mailgun (timestamp, token) pairs remembered for SIGNATURE_MAX_AGE, so a second use is
    /// refused 403; past it the oldest are forgotten, logged. About 100 bytes each: 50 MB
    /// when full, and 1600 Mailgun webhooks a second for the whole default window.
    #[arg(long, env = "REPLAY_CACHE_ENTRIES", default_value = "500000")]
    pub replay_cache_entries: usize,
    /// Lines `<tenant> <sha256 hex of its token>`; adds or replaces tenant tokens.
    #[arg(long, env = "TENANT_TOKENS_FILE")]
    pub tenant_tokens_file: Option<PathBuf>,
    /// librdkafka properties: the file's `[kafka]`, then `KAFKA_PROP_<NAME>` (dots as
    /// underscores). `acks` and `enable.idempotence` are fixed.
    #[arg(skip)]
    pub kafka: BTreeMap<String, String>,
    /// The tenants (file only); when given, they replace the local default ones. Secrets:
    /// never printed.
    #[arg(skip)]
    #[serde(skip_serializing)]
    pub tenants: Option<BTreeMap<String, TenantFile>>,
}

pub use crate::providers::TenantFile;

/// One tenant, ready to check requests.
#[derive(Debug, Clone)]
pub struct Tenant {
    pub token_sha256: [u8; 32],
    pub secrets: Secrets,
    /// The one-click unsubscribe key; None refuses every one-click link of the tenant.
    pub unsubscribe_secret: Option<Vec<u8>>,
}

#[derive(Debug, Clone)]
pub struct Settings {
    pub kafka_bootstrap: String,
    pub port: u16,
    pub topic_namespace: String,
    pub max_body_bytes: usize,
    pub max_upload_bytes: u64,
    pub max_record_bytes: usize,
    pub delivery_timeout: Duration,
    /// Longest webhook or one-click request (503 past it); longest pause in an upload's body.
    pub request_timeout: Duration,
    /// How long Kafka may not answer before the process exits with status 3.
    pub stall_limit: Duration,
    /// API requests handled at once (503 past it); `/metrics` and `/health/*` are not counted.
    pub max_concurrent_requests: usize,
    pub require_provider_signatures: bool,
    /// Oldest signed timestamp accepted (replay window): SendGrid, Mailgun, SNS.
    pub signature_max_age: Duration,
    /// Mailgun (timestamp, token) pairs remembered within the window.
    pub replay_cache_entries: usize,
    /// librdkafka properties: the file's `[kafka]`, then `KAFKA_PROP_<NAME>`.
    pub kafka: BTreeMap<String, String>,
    pub tenants: BTreeMap<String, Tenant>,
}

pub fn sha256(s: &[u8]) -> [u8; 32] {
    Sha256::digest(s).into()
}

impl Settings {
    /// The local default, as `ingest` with no settings in local mode (`TRIBUTARY_LOCAL=1`).
    pub fn local() -> Settings {
        let env = BTreeMap::from([(LOCAL_MODE_VAR.to_owned(), "1".to_owned())]);
        Settings::from_args(["ingest"], &env).expect("the local default is valid")
    }

    /// From the command line `args` (the program name first) and `env`: every layer.
    pub fn from_args<I>(args: I, env: &BTreeMap<String, String>) -> Result<Settings, Error>
    where
        I: IntoIterator,
        I::Item: Into<std::ffi::OsString> + Clone,
    {
        let loaded = settings::load_from::<Config, _>(args, env, |c| c).map_err(|e| Error::Config(e.to_string()))?;
        Settings::load(loaded, env)
    }

    /// The loaded layers made whole (the port, local mode's tenants, the tokens file, the
    /// providers' keys) and checked: every problem at once.
    pub fn load(loaded: Loaded<Config>, env: &BTreeMap<String, String>) -> Result<Settings, Error> {
        let mut errors = loaded.errors;
        let file = loaded.settings;
        let port = match (file.port, file.metrics_port) {
            (Some(p), Some(m)) if p != m => {
                errors.push(format!(
                    "PORT={p} and METRICS_PORT={m} differ: the gateway serves everything on one port; set one"
                ));
                p
            }
            (Some(p), _) | (None, Some(p)) => p,
            (None, None) => DEFAULT_PORT,
        };
        let (delivery_timeout, signature_max_age, request_timeout) =
            (file.delivery_timeout, file.signature_max_age, file.request_timeout);
        let (max_concurrent_requests, replay_cache_entries) = (file.max_concurrent_requests, file.replay_cache_entries);
        if request_timeout.is_zero()
            || max_concurrent_requests == 0
            || signature_max_age.is_zero()
            || replay_cache_entries == 0
        {
            errors.push(
                "REQUEST_TIMEOUT, MAX_CONCURRENT_REQUESTS, SIGNATURE_MAX_AGE and REPLAY_CACHE_ENTRIES must be above zero"
                    .into(),
            );
        }
        let (max_body_bytes, max_record_bytes) = (file.max_body_bytes, file.max_record_bytes);
        if max_body_bytes == 0 || max_record_bytes == 0 || delivery_timeout.is_zero() {
            errors.push("MAX_BODY_BYTES, MAX_RECORD_BYTES and DELIVERY_TIMEOUT must be above zero".into());
        }
        let stall_limit = file.stall_limit;
        if stall_limit < Duration::from_secs(1) {
            errors.push("STALL_LIMIT must be at least 1s".into());
        }
        let mut kafka = file.kafka.clone();
        for fixed in ["enable.idempotence", "acks"] {
            if kafka.remove(fixed).is_some() {
                errors.push(format!(
                    "Kafka property {fixed} is fixed (idempotent, acks=all: an accepted webhook is never lost); remove it"
                ));
            }
        }

        // Built-in tenants, tokens and one-click secrets exist only in local mode.
        let kafka_bootstrap = file.kafka_bootstrap.clone();
        let local = local_mode_for(env.get(LOCAL_MODE_VAR).map(String::as_str), &kafka_bootstrap);
        let mut files: BTreeMap<String, TenantFile> = match file.tenants {
            Some(t) => t,
            None if !local => BTreeMap::new(),
            None => LOCAL_TENANTS
                .iter()
                .map(|(t, h)| {
                    (
                        (*t).to_owned(),
                        TenantFile {
                            token_sha256: Some((*h).to_owned()),
                            unsubscribe_secret: Some(format!("{t}-local-unsubscribe-secret")),
                            ..TenantFile::default()
                        },
                    )
                })
                .collect(),
        };
        if let Some(path) = file.tenant_tokens_file {
            match read_tokens_file(&path) {
                Ok(tokens) => {
                    for (t, h) in tokens {
                        files.entry(t).or_default().token_sha256 = Some(h);
                    }
                }
                Err(e) => errors.push(e),
            }
        }
        let mut tenants = BTreeMap::new();
        for (id, tf) in files {
            if let Err(e) = tributary_engine::normalize::tenant_id(&id) {
                errors.push(format!("tenant '{id}': {}", e.reason));
                continue;
            }
            match tenant(&id, tf) {
                Ok(t) => {
                    tenants.insert(id, t);
                }
                Err(mut e) => errors.append(&mut e),
            }
        }
        if tenants.is_empty() && errors.is_empty() {
            errors.push(no_tenants_problem(
                "add [tenants.<id>] to the settings file or lines to TENANT_TOKENS_FILE",
            ));
        }
        if !errors.is_empty() {
            return Err(Error::Config(errors.join("; ")));
        }
        Ok(Settings {
            kafka_bootstrap,
            port,
            topic_namespace: file.topic_namespace.trim().to_owned(),
            max_body_bytes,
            max_upload_bytes: file.max_upload_bytes,
            max_record_bytes,
            delivery_timeout,
            request_timeout,
            stall_limit,
            max_concurrent_requests,
            signature_max_age,
            replay_cache_entries,
            // Required outside local mode unless explicitly turned off.
            require_provider_signatures: file.require_provider_signatures.unwrap_or(!local),
            kafka,
            tenants,
        })
    }
}

fn tenant(id: &str, mut tf: TenantFile) -> Result<Tenant, Vec<String>> {
    let mut errors = Vec::new();
    let token_sha256 = match tf.token_sha256.as_deref().map(parse_hash) {
        Some(Ok(h)) => h,
        Some(Err(e)) => {
            errors.push(format!("tenant '{id}' token_sha256: {e}"));
            [0; 32]
        }
        None => {
            errors.push(format!(
                "tenant '{id}' has no token_sha256 (in the settings file or TENANT_TOKENS_FILE)"
            ));
            [0; 32]
        }
    };
    let secrets = tf.secrets().unwrap_or_else(|e| {
        errors.extend(e.into_iter().map(|e| format!("tenant '{id}' {e}")));
        Secrets::default()
    });
    if errors.is_empty() {
        Ok(Tenant {
            token_sha256,
            secrets,
            unsubscribe_secret: tf.unsubscribe_secret.map(String::into_bytes),
        })
    } else {
        Err(errors)
    }
}

fn parse_hash(h: &str) -> Result<[u8; 32], String> {
    let bytes = hex::decode(h.trim()).map_err(|e| format!("not hex: {e}"))?;
    bytes.try_into().map_err(|_| "not a SHA-256 (64 hex digits)".to_owned())
}

fn read_tokens_file(path: &Path) -> Result<Vec<(String, String)>, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("TENANT_TOKENS_FILE {}: {e}", path.display()))?;
    let mut out = Vec::new();
    for (n, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let mut parts = line
            .split(|c: char| c.is_whitespace() || c == ':' || c == '=')
            .filter(|s| !s.is_empty());
        match (parts.next(), parts.next(), parts.next()) {
            (Some(t), Some(h), None) => out.push((t.to_owned(), h.to_owned())),
            _ => {
                return Err(format!(
                    "TENANT_TOKENS_FILE {} line {}: expected `<tenant> <sha256 hex>`",
                    path.display(),
                    n + 1
                ))
            }
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn local_tokens_are_the_hashes_of_tenant_local_token() {
        for (t, h) in LOCAL_TENANTS {
            assert_eq!(hex::encode(sha256(format!("{t}-local-token").as_bytes())), h, "{t}");
        }
        let s = Settings::local();
        assert_eq!(s.port, 8080);
        assert_eq!(s.tenants.len(), 3);
        assert_eq!(s.signature_max_age, Duration::from_secs(300));
        assert_eq!(s.request_timeout, Duration::from_secs(30));
        assert_eq!((s.max_concurrent_requests, s.replay_cache_entries), (256, 500_000));
    }

    #[test]
    fn no_built_in_tenants_and_signatures_required_outside_local_mode() {
        let off = BTreeMap::from([(LOCAL_MODE_VAR.to_owned(), "0".to_owned())]);
        let err = Settings::from_args(["ingest"], &off).unwrap_err().to_string();
        assert!(
            err.contains("no tenants configured") && err.contains("TRIBUTARY_LOCAL=1"),
            "{err}"
        );
        // A Kafka on loopback only, TRIBUTARY_LOCAL unset: the local infrastructure.
        assert_eq!(
            Settings::from_args(["ingest"], &BTreeMap::new()).unwrap().tenants.len(),
            3
        );
        let path = std::env::temp_dir().join(format!("ingest-tokens-{}", std::process::id()));
        std::fs::write(&path, format!("acme {}\n", hex::encode(sha256(b"prod-token")))).unwrap();
        let s = Settings::from_args(
            [
                "ingest",
                "--tenant-tokens-file",
                path.to_str().unwrap(),
                "--kafka-bootstrap",
                "kafka.prod.svc:9093",
            ],
            &BTreeMap::new(),
        )
        .unwrap();
        assert_eq!(s.tenants.keys().collect::<Vec<_>>(), ["acme"]);
        assert!(s.require_provider_signatures);
        assert!(s.tenants["acme"].unsubscribe_secret.is_none());
        assert!(!Settings::local().require_provider_signatures);
        let _ = std::fs::remove_file(path);
    }

    #[test]
    fn limits_from_flags_or_file() {
        let local = BTreeMap::from([(LOCAL_MODE_VAR.to_owned(), "1".to_owned())]);
        let s = Settings::from_args(
            [
                "ingest",
                "--request-timeout=2s",
                "--max-concurrent-requests=8",
                "--signature-max-age=1h",
                "--replay-cache-entries=10",
            ],
            &local,
        )
        .unwrap();
        assert_eq!(s.request_timeout, Duration::from_secs(2));
        assert_eq!(s.signature_max_age, Duration::from_secs(3600));
        assert_eq!((s.max_concurrent_requests, s.replay_cache_entries), (8, 10));
        let file: Config = toml::from_str(
            "request_timeout = \"45s\"\nmax_concurrent_requests = 32\nsignature_max_age = \"10m\"\nreplay_cache_entries = 1000\n",
        )
        .unwrap();
        assert_eq!(file.request_timeout, Duration::from_secs(45));
        assert_eq!(file.max_concurrent_requests, 32);
        let err = Settings::from_args(
            ["ingest", "--request-timeout", "0s", "--max-concurrent-requests", "0"],
            &local,
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("MAX_CONCURRENT_REQUESTS"), "{err}");
        let mut soon = local.clone();
        soon.insert("REQUEST_TIMEOUT".into(), "soon".into());
        let err = Settings::from_args(["ingest"], &soon).unwrap_err().to_string();
        assert!(err.contains("REQUEST_TIMEOUT='soon'"), "{err}");
    }

    #[test]
    fn file_environment_and_errors() {
        let dir = std::env::temp_dir().join(format!("ingest-cfg-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(&dir).unwrap();
        let cfg = dir.join("ingest.toml");
        std::fs::write(
            &cfg,
            "port = 9000\ntopic_namespace = \"x\"\n[tenants.t1]\n[tenants.t1.mailgun]\nsigning_key = \"k\"\n",
        )
        .unwrap();
        let tokens = dir.join("tokens");
        std::fs::write(&tokens, format!("# comment\nt1 {}\n", hex::encode(sha256(b"tok")))).unwrap();
        let env = BTreeMap::from([("KAFKA_PROP_SECURITY_PROTOCOL".to_owned(), "SSL".to_owned())]);
        let args = [
            "ingest",
            "--config",
            cfg.to_str().unwrap(),
            "--tenant-tokens-file",
            tokens.to_str().unwrap(),
            "--metrics-port",
            "9000",
        ];
        let s = Settings::from_args(args, &env).unwrap();
        assert_eq!((s.port, s.topic_namespace.as_str()), (9000, "x"));
        assert_eq!(s.kafka["security.protocol"], "SSL");
        assert_eq!(s.tenants["t1"].token_sha256, sha256(b"tok"));
        assert_eq!(s.tenants["t1"].secrets.mailgun.as_deref(), Some("k"));

        std::fs::write(&cfg, "bogus = 1\n").unwrap();
        let err = Settings::from_args(
            [
                "ingest",
                "--config",
                cfg.to_str().unwrap(),
                "--port=1",
                "--metrics-port=2",
                "--delivery-timeout=soon",
            ],
            &BTreeMap::from([("KAFKA_PROP_ACKS".to_owned(), "1".to_owned())]),
        )
        .unwrap_err()
        .to_string();
        for part in [
            "bogus",
            "PORT=1 and METRICS_PORT=2",
            "DELIVERY_TIMEOUT",
            "acks is fixed",
        ] {
            assert!(err.contains(part), "{part} not in {err}");
        }
    }
}
