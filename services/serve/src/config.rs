//! Settings of `serve`, declared once in [`Config`] and layered by
//! [`tributary_engine::settings`]: defaults, then the TOML file (`--config` or
//! `TRIBUTARY_CONFIG`, unknown keys refused), then the environment, then the flags. Every
//! problem is reported at once.

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;
use std::path::PathBuf;
use tributary_engine::settings::Loaded;

/// Addresses one bulk check may hold.
pub const MAX_BULK: usize = 10_000;

/// The settings of `serve`, each declared once: flag, environment variable, default, help;
/// the file key is the field's name. [`tributary_engine::settings`] layers them.
#[derive(Debug, Clone, Default, clap::Parser, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
#[command(
    name = "serve",
    about = "Tributary's read side: suppression checks, profiles and audience exports",
    after_help = "TRIBUTARY_LOCAL=1 (local mode, set by `make up` and the tests; when unset, a \
                  Kafka on loopback addresses only): the demo tenants acme, globex and initech \
                  with the tokens <tenant>-local-token, and the local development key for \
                  grants, where none is configured. Otherwise (TRIBUTARY_LOCAL=0, as in \
                  Kubernetes) every tenant needs a token in TENANT_TOKENS_FILE and grants need \
                  GRANTS_KEK_FILE (or GRANTS_KEK), else serve refuses to start."
)]
pub struct Config {
    /// Kafka bootstrap servers.
    #[arg(long, env = "KAFKA_BOOTSTRAP", default_value = "127.0.0.1:9092")]
    pub kafka_bootstrap: String,
    /// The schema registry's Confluent API.
    #[arg(
        long,
        env = "SCHEMA_REGISTRY_URL",
        default_value = "http://localhost:8081/apis/ccompat/v7"
    )]
    pub schema_registry_url: String,
    /// The lake root: a local directory or hdfs://host:port/path.
    #[arg(long, env = "LAKE_URI", default_value = ".lake")]
    pub lake_uri: String,
    /// Prefix `<ns>.` on every topic; empty by default.
    #[arg(long, env = "TOPIC_NAMESPACE")]
    pub topic_namespace: String,
    /// The API port.
    #[arg(long, env = "PORT", default_value = "8090")]
    pub port: u16,
    /// /metrics and /health/*.
    #[arg(long, env = "METRICS_PORT", default_value = "9107")]
    pub metrics_port: u16,
    /// The tenants that may call, comma-separated [default: those of TENANT_TOKENS_FILE;
    /// in local mode acme,globex,initech].
    #[arg(long, env = "TENANTS")]
    pub tenants: Option<Vec<String>>,
    /// Lines `<tenant> <sha256 hex of its token>`; replaces those tenants' tokens.
    #[arg(long, env = "TENANT_TOKENS_FILE")]
    pub tenant_tokens_file: Option<PathBuf>,
    /// Only hold (and answer for) these tenants' data: one instance per shard of tenants
    /// [default: every tenant of TENANTS].
    #[arg(long, env = "HOLD_TENANTS")]
    pub hold_tenants: Option<Vec<String>>,
    /// Requests per second per tenant (single checks, bulk checks, profiles, exports), else 429.
    #[arg(long, env = "RATE_LIMIT", default_value = "20000")]
    pub rate_limit: u32,
    /// The grants' key-encryption key: a file holding 64 hex digits (a mounted Secret);
    /// required, except in local mode (without it, or GRANTS_KEK, the local development key).
    #[arg(long, env = "GRANTS_KEK_FILE")]
    pub grants_kek_file: Option<PathBuf>,
    /// How often this instance refreshes the analytics grants' shared tables (e.g. `20s`), or
    /// `off` where the DAG `tributary_sharing` does (one writer of the tables) [default: 20s].
    #[arg(long, env = "SHARING_REFRESH")]
    pub sharing_refresh: Option<String>,
    /// How long a Delta Sharing file URL stays valid (e.g. `15m`) [default: 15m].
    #[arg(long, env = "SHARING_URL_TTL")]
    pub sharing_url_ttl: Option<String>,
    /// Where the audit log of reads of personal data goes: a file, or `-` for the service's
    /// own log.
    #[arg(long, env = "AUDIT_LOG", default_value = "-")]
    pub audit_log: String,
    /// librdkafka properties: the file's `[kafka]` table, then `KAFKA_PROP_<NAME>`.
    #[arg(skip)]
    pub kafka: BTreeMap<String, String>,
}

impl Config {
    /// The defaults alone (no file, no environment, no flags).
    pub fn defaults() -> Config {
        tributary_engine::settings::load_from::<Config, _>(["serve"], &BTreeMap::new(), |c| c)
            .map(|l| l.settings)
            .unwrap_or_default()
    }
}

#[derive(Debug, Clone)]
pub struct Settings {
    pub kafka_bootstrap: String,
    pub schema_registry_url: String,
    pub lake_uri: String,
    pub topic_namespace: String,
    pub port: u16,
    pub metrics_port: u16,
    /// Tenant → SHA-256 of its token.
    pub tokens: BTreeMap<String, [u8; 32]>,
    pub hold_tenants: Option<Vec<String>>,
    pub rate_limit: u32,
    pub audit_log: String,
    pub grants_kek_file: Option<PathBuf>,
    pub kafka: BTreeMap<String, String>,
    /// Local mode (`TRIBUTARY_LOCAL`): built-in tenants, tokens and grants key.
    pub local: bool,
}

pub fn sha256(b: &[u8]) -> [u8; 32] {
    Sha256::digest(b).into()
}

impl Settings {
    /// The settings of `serve` from every layer: every problem of the layers and of the
    /// settings, at once.
    pub fn from_loaded(loaded: Loaded<Config>, env: &BTreeMap<String, String>) -> Result<Settings, String> {
        let checked = Settings::load(loaded.settings.clone(), env);
        let mut errors = loaded.errors;
        match checked {
            Ok(s) if errors.is_empty() => Ok(s),
            Ok(_) => Err(errors.join("; ")),
            Err(e) => {
                errors.push(e);
                Err(errors.join("; "))
            }
        }
    }

    /// The settings of `serve`: every tenant it answers needs a token.
    pub fn load(cfg: Config, env: &BTreeMap<String, String>) -> Result<Settings, String> {
        Settings::load_as(cfg, env, true)
    }

    /// The settings of a job that serves no API (`tributary share refresh`): tenants and
    /// tokens are not needed; the grants' key-encryption key still is.
    pub fn load_for_job(cfg: Config, env: &BTreeMap<String, String>) -> Result<Settings, String> {
        Settings::load_as(cfg, env, false)
    }

    fn load_as(cfg: Config, env: &BTreeMap<String, String>, serving: bool) -> Result<Settings, String> {
        let mut problems = Vec::new();
        let file = cfg;
        let kafka = file.kafka;
        use tributary_engine::config::{local_mode_for, DEFAULT_TENANTS, LOCAL_MODE_VAR};
        let kafka_bootstrap = file.kafka_bootstrap;
        let local = local_mode_for(env.get(LOCAL_MODE_VAR).map(String::as_str), &kafka_bootstrap);
        let configured = file.tenants;
        // From the tokens file (a mounted Secret): tenant → token hash.
        let mut from_file: BTreeMap<String, [u8; 32]> = BTreeMap::new();
        if let Some(p) = file.tenant_tokens_file {
            match std::fs::read_to_string(&p) {
                Ok(text) => {
                    for (n, line) in text.lines().enumerate() {
                        let line = line.trim();
                        if line.is_empty() || line.starts_with('#') {
                            continue;
                        }
                        let mut it = line.split_whitespace();
                        let (Some(t), Some(h)) = (it.next(), it.next()) else {
                            problems.push(format!("{}:{}: want `<tenant> <sha256 hex>`", p.display(), n + 1));
                            continue;
                        };
                        let mut out = [0u8; 32];
                        match hex::decode_to_slice(h, &mut out) {
                            Ok(()) => {
                                from_file.insert(t.to_owned(), out);
                            }
                            Err(e) => problems.push(format!("{}:{}: {e}", p.display(), n + 1)),
                        }
                    }
                }
                Err(e) => problems.push(format!("{}: {e}", p.display())),
            }
        }
        let tenants: Vec<String> = match configured {
            Some(t) => t,
            None if local => DEFAULT_TENANTS.map(str::to_owned).to_vec(),
            None => from_file.keys().cloned().collect(),
        };
        let tenants = if serving { tenants } else { Vec::new() };
        let mut tokens = BTreeMap::new();
        for t in tenants.iter().map(|t| t.trim()).filter(|t| !t.is_empty()) {
            if tributary_engine::normalize::tenant_id(t).is_err() {
                problems.push(format!("tenant id '{t}' does not match ^[a-z0-9][a-z0-9_-]{{0,62}}$"));
            }
            match from_file.get(t) {
                Some(h) => {
                    tokens.insert(t.to_owned(), *h);
                }
                // The local default token, in local mode only.
                None if local => {
                    tokens.insert(t.to_owned(), sha256(format!("{t}-local-token").as_bytes()));
                }
                None => problems.push(format!(
                    "tenant '{t}' has no token: add `{t} <sha256 hex of its token>` to TENANT_TOKENS_FILE \
                     (built-in tokens exist only in local mode, {LOCAL_MODE_VAR}=1)"
                )),
            }
        }
        let rate_limit = file.rate_limit;
        if rate_limit == 0 {
            problems.push("rate_limit must be at least 1 request per second".into());
        }
        let s = Settings {
            kafka_bootstrap,
            schema_registry_url: file.schema_registry_url,
            lake_uri: file.lake_uri,
            topic_namespace: file.topic_namespace.trim().to_owned(),
            port: file.port,
            metrics_port: file.metrics_port,
            tokens,
            hold_tenants: file.hold_tenants.filter(|h| !h.is_empty()),
            rate_limit,
            audit_log: file.audit_log,
            grants_kek_file: file.grants_kek_file,
            kafka,
            local,
        };
        if serving && tenants.is_empty() {
            problems.push(tributary_engine::config::no_tenants_problem(
                "set TENANT_TOKENS_FILE (and TENANTS)",
            ));
        }
        if !local && s.grants_kek_file.is_none() && env.get("GRANTS_KEK").is_none_or(|v| v.trim().is_empty()) {
            problems.push(format!(
                "no grants key-encryption key: set GRANTS_KEK_FILE (a mounted Secret) \
                 (the development key is used only in local mode, {LOCAL_MODE_VAR}=1)"
            ));
        }
        if s.port == s.metrics_port {
            problems.push(format!(
                "port and metrics_port are both {}: give them different ports",
                s.port
            ));
        }
        if problems.is_empty() {
            Ok(s)
        } else {
            Err(problems.join("; "))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect()
    }

    fn tokens_file(lines: &str) -> PathBuf {
        let p = std::env::temp_dir().join(format!("serve-tokens-{}", uuid::Uuid::new_v4().simple()));
        std::fs::write(&p, lines).unwrap();
        p
    }

    #[test]
    fn built_in_tenants_tokens_and_key_only_in_local_mode() {
        // Local mode: the demo tenants with their local tokens, the development key allowed.
        let s = Settings::load(Config::defaults(), &env(&[("TRIBUTARY_LOCAL", "1")])).unwrap();
        assert_eq!(s.tokens.keys().collect::<Vec<_>>(), ["acme", "globex", "initech"]);
        assert_eq!(s.tokens["acme"], sha256(b"acme-local-token"));
        assert!(s.local);
        // Anywhere else: nothing built in, every problem at once.
        let err = Settings::load(Config::defaults(), &env(&[("TRIBUTARY_LOCAL", "0")])).unwrap_err();
        assert!(err.contains("no tenants configured"), "{err}");
        // Kafka on loopback only, and no TRIBUTARY_LOCAL: the local infrastructure.
        assert!(Settings::load(Config::defaults(), &env(&[])).unwrap().local);
        assert!(err.contains("GRANTS_KEK_FILE"), "{err}");
        // A tenant named without a token is refused, not given the local one.
        let file = tokens_file(&format!("acme {}\n", hex::encode(sha256(b"s3cret"))));
        let cli = || Config {
            tenants: Some(vec!["acme".into(), "globex".into()]),
            tenant_tokens_file: Some(file.clone()),
            grants_kek_file: Some("/run/secrets/kek".into()),
            ..Config::defaults()
        };
        let err = Settings::load(cli(), &env(&[("TRIBUTARY_LOCAL", "0")])).unwrap_err();
        assert!(err.contains("tenant 'globex' has no token"), "{err}");
        // The tenants of the tokens file, with their tokens only.
        let s = Settings::load(
            Config {
                tenants: None,
                kafka_bootstrap: "kafka.prod.svc:9093".into(),
                ..cli()
            },
            &env(&[]),
        )
        .unwrap();
        assert_eq!(s.tokens.len(), 1);
        assert_eq!(s.tokens["acme"], sha256(b"s3cret"));
        assert!(!s.local);
        let _ = std::fs::remove_file(file);
    }
}
