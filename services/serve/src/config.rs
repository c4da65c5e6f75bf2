//! Settings of `serve`: defaults, then the TOML file (`--config` or `TRIBUTARY_CONFIG`,
//! unknown keys refused), then the environment and flags (clap reads both; a flag wins).
//! Every problem is reported at once.

use clap::Parser;
use serde::Deserialize;
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;
use std::path::PathBuf;

pub const DEFAULT_PORT: u16 = 8090;
pub const DEFAULT_METRICS_PORT: u16 = 9107;
/// Requests per second a tenant may make (single checks, bulk checks, profiles, exports).
pub const fn default_rate_limit() -> u32 {
    20_000
}
/// Addresses one bulk check may hold.
pub const MAX_BULK: usize = 10_000;

#[derive(Debug, Parser, Default)]
#[command(
    name = "serve",
    about = "Tributary's read side: suppression checks, profiles and audience exports",
    after_help = "Every setting is also a key of the --config TOML file (snake case) and, \
                  for Kafka, KAFKA_PROP_<NAME> passes any librdkafka property \
                  (KAFKA_PROP_SECURITY_PROTOCOL=SASL_SSL) as does the file's [kafka] table.\n\
                  TRIBUTARY_LOCAL=1 (local mode, set by `make up` and the tests; when unset, a \
                  Kafka on loopback addresses only): the demo tenants acme, globex and initech \
                  with the tokens <tenant>-local-token, and the local development key for \
                  grants, where none is configured. Otherwise (TRIBUTARY_LOCAL=0, as in \
                  Kubernetes) every tenant needs a token in TENANT_TOKENS_FILE and grants need \
                  GRANTS_KEK_FILE, else serve refuses to start."
)]
pub struct Cli {
    /// TOML settings file.
    #[arg(long, env = "TRIBUTARY_CONFIG")]
    pub config: Option<PathBuf>,
    /// Kafka bootstrap servers [default: 127.0.0.1:9092].
    #[arg(long, env = "KAFKA_BOOTSTRAP")]
    pub kafka_bootstrap: Option<String>,
    /// The schema registry's Confluent API [default: http://localhost:8081/apis/ccompat/v7].
    #[arg(long, env = "SCHEMA_REGISTRY_URL")]
    pub schema_registry_url: Option<String>,
    /// The lake root: a local directory or hdfs://host:port/path [default: .lake].
    #[arg(long, env = "LAKE_URI")]
    pub lake_uri: Option<String>,
    /// Prefix `<ns>.` on every topic [default: empty].
    #[arg(long, env = "TOPIC_NAMESPACE")]
    pub topic_namespace: Option<String>,
    /// The API port [default: 8090].
    #[arg(long, env = "PORT")]
    pub port: Option<u16>,
    /// /metrics and /health/* [default: 9107].
    #[arg(long, env = "METRICS_PORT")]
    pub metrics_port: Option<u16>,
    /// The tenants that may call, comma-separated [default: those of TENANT_TOKENS_FILE;
    /// in local mode acme,globex,initech].
    #[arg(long, env = "TENANTS", value_delimiter = ',')]
    pub tenants: Option<Vec<String>>,
    /// Lines `<tenant> <sha256 hex of its token>`; replaces those tenants' tokens.
    #[arg(long, env = "TENANT_TOKENS_FILE")]
    pub tenant_tokens_file: Option<PathBuf>,
    /// Only hold (and answer for) these tenants' data: one instance per shard of tenants
    /// [default: every tenant of TENANTS].
    #[arg(long, env = "HOLD_TENANTS", value_delimiter = ',')]
    pub hold_tenants: Option<Vec<String>>,
    /// Requests per second per tenant, else 429 [default: 20000].
    #[arg(long, env = "RATE_LIMIT")]
    pub rate_limit: Option<u32>,
    /// The grants' key-encryption key: a file holding 64 hex digits (a mounted Secret);
    /// required, except in local mode (without it, or GRANTS_KEK, the local development key).
    #[arg(long, env = "GRANTS_KEK_FILE")]
    pub grants_kek_file: Option<PathBuf>,
    /// How often this instance refreshes the analytics grants' shared tables (e.g. `20s`), or
    /// `off` where the DAG `tributary_sharing` does (one writer of the tables) [default: 20s].
    /// Read by the sharing module from the environment; listed here for --help.
    #[arg(long, env = "SHARING_REFRESH")]
    pub sharing_refresh: Option<String>,
    /// How long a Delta Sharing file URL stays valid (e.g. `15m`) [default: 15m].
    #[arg(long, env = "SHARING_URL_TTL")]
    pub sharing_url_ttl: Option<String>,
    /// Where the audit log of reads of personal data goes: a file, or `-` for the service's
    /// own log [default: -].
    #[arg(long, env = "AUDIT_LOG")]
    pub audit_log: Option<String>,
}

/// The settings file.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileConfig {
    /// Kafka bootstrap servers.
    pub kafka_bootstrap: Option<String>,
    /// The registry's Confluent API.
    pub schema_registry_url: Option<String>,
    /// The lake root.
    pub lake_uri: Option<String>,
    /// Prefix on every topic.
    pub topic_namespace: Option<String>,
    /// The API port.
    pub port: Option<u16>,
    /// The metrics and health port.
    pub metrics_port: Option<u16>,
    /// The tenants that may call.
    pub tenants: Option<Vec<String>>,
    /// Token hashes file.
    pub tenant_tokens_file: Option<PathBuf>,
    /// The tenants whose data this instance holds.
    pub hold_tenants: Option<Vec<String>>,
    /// Requests per second per tenant.
    pub rate_limit: Option<u32>,
    /// Audit log destination.
    pub audit_log: Option<String>,
    /// The grants' key-encryption key file.
    pub grants_kek_file: Option<PathBuf>,
    /// librdkafka properties.
    #[serde(default)]
    pub kafka: BTreeMap<String, String>,
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
    /// The settings of `serve`: every tenant it answers needs a token.
    pub fn load(cli: Cli, env: &BTreeMap<String, String>) -> Result<Settings, String> {
        Settings::load_as(cli, env, true)
    }

    /// The settings of a job that serves no API (`tributary share refresh`): tenants and
    /// tokens are not needed; the grants' key-encryption key still is.
    pub fn load_for_job(cli: Cli, env: &BTreeMap<String, String>) -> Result<Settings, String> {
        Settings::load_as(cli, env, false)
    }

    fn load_as(cli: Cli, env: &BTreeMap<String, String>, serving: bool) -> Result<Settings, String> {
        let mut problems = Vec::new();
        let file: FileConfig = match &cli.config {
            Some(p) => match std::fs::read_to_string(p) {
                Ok(text) => toml::from_str(&text).unwrap_or_else(|e| {
                    problems.push(format!("{}: {e}", p.display()));
                    FileConfig::default()
                }),
                Err(e) => {
                    problems.push(format!("{}: {e}", p.display()));
                    FileConfig::default()
                }
            },
            None => FileConfig::default(),
        };
        let mut kafka = file.kafka;
        kafka.extend(tributary_engine::kafka::props_from_env(env));
        use tributary_engine::config::{local_mode_for, DEFAULT_TENANTS, LOCAL_MODE_VAR};
        let kafka_bootstrap = cli
            .kafka_bootstrap
            .or(file.kafka_bootstrap)
            .unwrap_or_else(|| "127.0.0.1:9092".into());
        let local = local_mode_for(env.get(LOCAL_MODE_VAR).map(String::as_str), &kafka_bootstrap);
        let configured = cli.tenants.or(file.tenants);
        // From the tokens file (a mounted Secret): tenant → token hash.
        let mut from_file: BTreeMap<String, [u8; 32]> = BTreeMap::new();
        if let Some(p) = cli.tenant_tokens_file.or(file.tenant_tokens_file) {
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
        let rate_limit = cli.rate_limit.or(file.rate_limit).unwrap_or(default_rate_limit());
        if rate_limit == 0 {
            problems.push("rate_limit must be at least 1 request per second".into());
        }
        let s = Settings {
            kafka_bootstrap,
            schema_registry_url: cli
                .schema_registry_url
                .or(file.schema_registry_url)
                .unwrap_or_else(|| "http://localhost:8081/apis/ccompat/v7".into()),
            lake_uri: cli.lake_uri.or(file.lake_uri).unwrap_or_else(|| ".lake".into()),
            topic_namespace: cli
                .topic_namespace
                .or(file.topic_namespace)
                .unwrap_or_default()
                .trim()
                .to_owned(),
            port: cli.port.or(file.port).unwrap_or(DEFAULT_PORT),
            metrics_port: cli.metrics_port.or(file.metrics_port).unwrap_or(DEFAULT_METRICS_PORT),
            tokens,
            hold_tenants: cli.hold_tenants.or(file.hold_tenants).filter(|h| !h.is_empty()),
            rate_limit,
            audit_log: cli.audit_log.or(file.audit_log).unwrap_or_else(|| "-".into()),
            grants_kek_file: cli.grants_kek_file.or(file.grants_kek_file),
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
        let s = Settings::load(Cli::default(), &env(&[("TRIBUTARY_LOCAL", "1")])).unwrap();
        assert_eq!(s.tokens.keys().collect::<Vec<_>>(), ["acme", "globex", "initech"]);
        assert_eq!(s.tokens["acme"], sha256(b"acme-local-token"));
        assert!(s.local);
        // Anywhere else: nothing built in, every problem at once.
        let err = Settings::load(Cli::default(), &env(&[("TRIBUTARY_LOCAL", "0")])).unwrap_err();
        assert!(err.contains("no tenants configured"), "{err}");
        // Kafka on loopback only, and no TRIBUTARY_LOCAL: the local infrastructure.
        assert!(Settings::load(Cli::default(), &env(&[])).unwrap().local);
        assert!(err.contains("GRANTS_KEK_FILE"), "{err}");
        // A tenant named without a token is refused, not given the local one.
        let file = tokens_file(&format!("acme {}\n", hex::encode(sha256(b"s3cret"))));
        let cli = || Cli {
            tenants: Some(vec!["acme".into(), "globex".into()]),
            tenant_tokens_file: Some(file.clone()),
            grants_kek_file: Some("/run/secrets/kek".into()),
            ..Cli::default()
        };
        let err = Settings::load(cli(), &env(&[("TRIBUTARY_LOCAL", "0")])).unwrap_err();
        assert!(err.contains("tenant 'globex' has no token"), "{err}");
        // The tenants of the tokens file, with their tokens only.
        let s = Settings::load(
            Cli {
                tenants: None,
                kafka_bootstrap: Some("kafka.prod.svc:9093".into()),
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
