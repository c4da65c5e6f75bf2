//! Typed configuration of a chain service, layered: defaults, then an optional TOML file, then
//! environment variables. Unknown keys are rejected and every error is reported at once.

use crate::error::{Error, Result};
use serde::Deserialize;
use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

/// The tenants of the local default configuration (local mode only).
pub const DEFAULT_TENANTS: [&str; 3] = ["acme", "globex", "initech"];

/// The environment variable of local mode. Built-in tenants, tokens (`<tenant>-local-token`)
/// and keys exist only in local mode: `TRIBUTARY_LOCAL=1` (which `.infra/env` sets for
/// `make up`, the demo and the tests), or, when it is not set at all, a Kafka on loopback
/// addresses only (the local infrastructure; no cluster reaches its brokers there). Anywhere
/// else a service without configured tenants, tokens or keys refuses to start with a clear
/// error; the Kubernetes manifests set `TRIBUTARY_LOCAL=0` besides.
pub const LOCAL_MODE_VAR: &str = "TRIBUTARY_LOCAL";

/// Local mode from the value of [`LOCAL_MODE_VAR`] (`1`, `true`, `yes`: on; any other value:
/// off) and, when it is unset or empty, from the Kafka bootstrap addresses: on when every
/// one is loopback (`localhost`, `127.x.x.x`, `::1`).
pub fn local_mode_for(flag: Option<&str>, bootstrap: &str) -> bool {
    match flag.map(|v| v.trim().to_ascii_lowercase()) {
        Some(v) if !v.is_empty() => matches!(v.as_str(), "1" | "true" | "yes"),
        _ => all_loopback(bootstrap),
    }
}

/// Local mode of this process (its environment) for Kafka at `bootstrap`.
pub fn local_mode(bootstrap: &str) -> bool {
    local_mode_for(std::env::var(LOCAL_MODE_VAR).ok().as_deref(), bootstrap)
}

/// Whether every address of a bootstrap list is a loopback one.
pub fn all_loopback(bootstrap: &str) -> bool {
    let hosts: Vec<&str> = bootstrap
        .split(',')
        .map(str::trim)
        .filter(|a| !a.is_empty())
        .map(|a| a.rsplit_once("://").map_or(a, |(_, rest)| rest))
        .map(|a| match a.strip_prefix('[') {
            Some(v6) => v6.split(']').next().unwrap_or_default(),
            None => a.rsplit_once(':').map_or(a, |(h, _)| h),
        })
        .collect();
    !hosts.is_empty()
        && hosts.iter().all(|h| {
            h.eq_ignore_ascii_case("localhost") || h.parse::<std::net::IpAddr>().is_ok_and(|ip| ip.is_loopback())
        })
}

/// The problem to report when no tenants are configured outside local mode.
pub fn no_tenants_problem(how: &str) -> String {
    format!(
        "no tenants configured: {how}. The demo tenants ({}) and their local tokens exist only \
         in local mode ({LOCAL_MODE_VAR}=1, as `make up` and the tests set)",
        DEFAULT_TENANTS.join(", ")
    )
}

const fn default_commit_interval() -> Duration {
    Duration::from_millis(100)
}
const fn default_max_batch_records() -> usize {
    20_000
}
const fn default_max_record_bytes() -> usize {
    1024 * 1024
}

#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    /// Kafka bootstrap servers (`KAFKA_BOOTSTRAP`).
    pub kafka_bootstrap: String,
    /// Confluent-compatible schema registry base URL (`SCHEMA_REGISTRY_URL`).
    pub schema_registry_url: String,
    /// The tenants this deployment serves (`TENANTS`, comma-separated); others are invalid.
    pub tenants: Vec<String>,
    /// Dedup window in event time (`DEDUP_WINDOW`, e.g. `24h`).
    pub dedup_window: Duration,
    /// Longest time a transaction stays open (`COMMIT_INTERVAL`, e.g. `100ms`).
    pub commit_interval: Duration,
    /// Most input records in one transaction (`MAX_BATCH_RECORDS`).
    pub max_batch_records: usize,
    /// Larger records go to the DLQ unparsed (`MAX_RECORD_BYTES`).
    pub max_record_bytes: usize,
    /// Names this instance's transactional producer; unique per running instance and stable
    /// across its restarts (`INSTANCE_ID`).
    pub instance_id: String,
    /// Consumer group (`GROUP_ID`); defaults to `tributary-<chain>`.
    pub group_id: String,
    /// Port of `/metrics` and `/health/*` (`METRICS_PORT`).
    pub metrics_port: u16,
    /// Prefix of every topic name, `<ns>.raw.<chain>` (`TOPIC_NAMESPACE`); empty by default.
    pub topic_namespace: String,
    /// Extra librdkafka properties passed through to every client, e.g. `security.protocol`,
    /// `sasl.mechanism`, `ssl.ca.location` (file `[kafka]` table, or `KAFKA_PROP_<NAME>`
    /// variables with dots as underscores).
    pub kafka: BTreeMap<String, String>,
}

/// The file layer: every key optional, unknown keys rejected.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileConfig {
    kafka_bootstrap: Option<String>,
    schema_registry_url: Option<String>,
    tenants: Option<Vec<String>>,
    #[serde(default, with = "humantime_serde")]
    dedup_window: Option<Duration>,
    #[serde(default, with = "humantime_serde")]
    commit_interval: Option<Duration>,
    max_batch_records: Option<usize>,
    max_record_bytes: Option<usize>,
    instance_id: Option<String>,
    group_id: Option<String>,
    metrics_port: Option<u16>,
    topic_namespace: Option<String>,
    #[serde(default)]
    kafka: BTreeMap<String, String>,
}

impl Config {
    /// Defaults of one chain: local infrastructure, no tenants (local mode adds the demo
    /// tenants when none are configured).
    pub fn defaults(chain: &str, window: Duration, port: u16) -> Config {
        Config {
            kafka_bootstrap: "localhost:9092".into(),
            schema_registry_url: "http://localhost:8081/apis/ccompat/v7".into(),
            tenants: Vec::new(),
            dedup_window: window,
            commit_interval: default_commit_interval(),
            max_batch_records: default_max_batch_records(),
            max_record_bytes: default_max_record_bytes(),
            instance_id: "0".into(),
            group_id: format!("tributary-{chain}"),
            metrics_port: port,
            topic_namespace: String::new(),
            kafka: BTreeMap::new(),
        }
    }

    /// Defaults, then `file` (if any), then the process environment.
    pub fn load(chain: &str, window: Duration, port: u16, file: Option<&Path>) -> Result<Config> {
        let env: Vec<(String, String)> = std::env::vars().collect();
        Config::load_from(chain, window, port, file, &env)
    }

    pub fn load_from(
        chain: &str,
        window: Duration,
        port: u16,
        file: Option<&Path>,
        env: &[(String, String)],
    ) -> Result<Config> {
        let mut c = Config::defaults(chain, window, port);
        let mut errors: Vec<String> = Vec::new();
        if let Some(path) = file {
            match std::fs::read_to_string(path) {
                Err(e) => errors.push(format!("{}: {e}", path.display())),
                Ok(text) => match toml::from_str::<FileConfig>(&text) {
                    Err(e) => errors.push(format!("{}: {e}", path.display())),
                    Ok(f) => c.apply_file(f),
                },
            }
        }
        for (k, v) in env {
            if let Err(e) = c.apply_env(k, v) {
                errors.push(format!("environment variable {k}: {e}"));
            }
        }
        let flag = env.iter().find(|(k, _)| k == LOCAL_MODE_VAR).map(|(_, v)| v.as_str());
        let local = local_mode_for(flag, &c.kafka_bootstrap);
        if c.tenants.is_empty() && local {
            c.tenants = DEFAULT_TENANTS.iter().map(|t| (*t).to_owned()).collect();
        }
        if !c.topic_namespace.is_empty() && c.group_id == format!("tributary-{chain}") {
            c.group_id = crate::topics::namespaced(&c.topic_namespace, &c.group_id);
        }
        errors.extend(c.problems());
        if errors.is_empty() {
            Ok(c)
        } else {
            Err(Error::Config(errors.join("; ")))
        }
    }

    fn apply_file(&mut self, f: FileConfig) {
        macro_rules! set {
            ($($field:ident),*) => { $(if let Some(v) = f.$field { self.$field = v; })* };
        }
        set!(
            kafka_bootstrap,
            schema_registry_url,
            tenants,
            dedup_window,
            commit_interval,
            max_batch_records,
            max_record_bytes,
            instance_id,
            group_id,
            metrics_port,
            topic_namespace
        );
        self.kafka.extend(f.kafka);
    }

    fn apply_env(&mut self, key: &str, value: &str) -> std::result::Result<(), String> {
        let num = |v: &str| v.trim().parse::<usize>().map_err(|e| format!("'{v}': {e}"));
        let dur = |v: &str| humantime::parse_duration(v.trim()).map_err(|e| format!("'{v}': {e}"));
        match key {
            "KAFKA_BOOTSTRAP" => self.kafka_bootstrap = value.to_owned(),
            "SCHEMA_REGISTRY_URL" => self.schema_registry_url = value.trim_end_matches('/').to_owned(),
            "TENANTS" => {
                self.tenants = value
                    .split(',')
                    .map(|t| t.trim().to_owned())
                    .filter(|t| !t.is_empty())
                    .collect()
            }
            "DEDUP_WINDOW" => self.dedup_window = dur(value)?,
            "COMMIT_INTERVAL" => self.commit_interval = dur(value)?,
            "MAX_BATCH_RECORDS" => self.max_batch_records = num(value)?,
            "MAX_RECORD_BYTES" => self.max_record_bytes = num(value)?,
            "INSTANCE_ID" => self.instance_id = value.to_owned(),
            "GROUP_ID" => self.group_id = value.to_owned(),
            "TOPIC_NAMESPACE" => self.topic_namespace = value.trim().to_owned(),
            "METRICS_PORT" => self.metrics_port = value.trim().parse().map_err(|e| format!("'{value}': {e}"))?,
            _ => {
                if let Some(prop) = key.strip_prefix("KAFKA_PROP_") {
                    self.kafka
                        .insert(prop.to_ascii_lowercase().replace('_', "."), value.to_owned());
                }
            }
        }
        Ok(())
    }

    /// Settings that are each well-formed but unusable, or conflict.
    fn problems(&self) -> Vec<String> {
        let mut p = Vec::new();
        if self.kafka_bootstrap.trim().is_empty() {
            p.push("kafka_bootstrap is empty: set KAFKA_BOOTSTRAP to host:port".to_owned());
        }
        if !self.schema_registry_url.starts_with("http") {
            p.push(format!(
                "schema_registry_url '{}' is not an http(s) URL",
                self.schema_registry_url
            ));
        }
        if self.tenants.is_empty() {
            p.push(no_tenants_problem("set TENANTS or `tenants` in the config file"));
        }
        for t in &self.tenants {
            if crate::normalize::tenant_id(t).is_err() {
                p.push(format!("tenant '{t}' does not match ^[a-z0-9][a-z0-9_-]{{0,62}}$"));
            }
        }
        if self.dedup_window < Duration::from_secs(1) || self.dedup_window.as_secs() > u64::from(u32::MAX / 2) {
            p.push("dedup_window must lie between 1s and 68 years".to_owned());
        }
        if self.commit_interval.is_zero() || self.commit_interval > Duration::from_secs(60) {
            p.push("commit_interval must lie between 1ms and 60s (transactions must stay well under transaction.timeout.ms)".to_owned());
        }
        if self.max_batch_records == 0 {
            p.push("max_batch_records must be at least 1".to_owned());
        }
        if self.max_record_bytes < 64 {
            p.push("max_record_bytes must be at least 64".to_owned());
        }
        if self.instance_id.is_empty() || self.group_id.is_empty() {
            p.push("instance_id and group_id must not be empty".to_owned());
        }
        for reserved in [
            "transactional.id",
            "enable.auto.commit",
            "isolation.level",
            "group.id",
            "bootstrap.servers",
        ] {
            if self.kafka.contains_key(reserved) {
                p.push(format!(
                    "kafka property '{reserved}' is set by the engine and cannot be overridden"
                ));
            }
        }
        p
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect()
    }

    #[test]
    fn layers_defaults_file_env() {
        let dir = std::env::temp_dir().join(format!("tributary-config-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("c.toml");
        std::fs::write(
            &path,
            "tenants = ['a', 'b']\ncommit_interval = '250ms'\n[kafka]\n'security.protocol' = 'SASL_SSL'\n",
        )
        .unwrap();
        let c = Config::load_from(
            "users",
            Duration::from_secs(60),
            9101,
            Some(&path),
            &env(&[
                ("KAFKA_BOOTSTRAP", "k:1"),
                ("TENANTS", "x, y"),
                ("KAFKA_PROP_SASL_MECHANISM", "SCRAM-SHA-512"),
            ]),
        )
        .unwrap();
        assert_eq!(c.kafka_bootstrap, "k:1");
        assert_eq!(c.tenants, vec!["x", "y"]);
        assert_eq!(c.commit_interval, Duration::from_millis(250));
        assert_eq!(c.kafka["security.protocol"], "SASL_SSL");
        assert_eq!(c.kafka["sasl.mechanism"], "SCRAM-SHA-512");
        assert_eq!(c.group_id, "tributary-users");
    }

    #[test]
    fn reports_every_error_at_once() {
        let dir = std::env::temp_dir().join(format!("tributary-config-bad-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("c.toml");
        std::fs::write(&path, "no_such_key = 1\n").unwrap();
        let err = Config::load_from(
            "users",
            Duration::from_secs(60),
            9101,
            Some(&path),
            &env(&[("COMMIT_INTERVAL", "forever"), ("TENANTS", "Bad Tenant")]),
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("no_such_key"), "{err}");
        assert!(err.contains("COMMIT_INTERVAL"), "{err}");
        assert!(err.contains("Bad Tenant"), "{err}");
    }

    #[test]
    fn demo_tenants_only_in_local_mode() {
        let load =
            |pairs: &[(&str, &str)]| Config::load_from("users", Duration::from_secs(60), 9101, None, &env(pairs));
        let remote = ("KAFKA_BOOTSTRAP", "kafka-0.kafka.svc:9093,kafka-1.kafka.svc:9093");
        let err = load(&[remote]).unwrap_err().to_string();
        assert!(
            err.contains("no tenants configured") && err.contains("TRIBUTARY_LOCAL=1"),
            "{err}"
        );
        let err = load(&[("TRIBUTARY_LOCAL", "0")]).unwrap_err().to_string();
        assert!(err.contains("no tenants configured"), "{err}");
        // The local infrastructure (Kafka on loopback): local mode unless turned off.
        assert_eq!(load(&[]).unwrap().tenants, DEFAULT_TENANTS.to_vec());
        assert_eq!(
            load(&[remote, ("TRIBUTARY_LOCAL", "1")]).unwrap().tenants,
            DEFAULT_TENANTS.to_vec()
        );
        assert_eq!(
            load(&[("TRIBUTARY_LOCAL", "0"), ("TENANTS", "a")]).unwrap().tenants,
            vec!["a"]
        );
        assert_eq!(
            load(&[("TRIBUTARY_LOCAL", "true"), ("TENANTS", "a")]).unwrap().tenants,
            vec!["a"]
        );
    }

    #[test]
    fn loopback_bootstraps() {
        for b in [
            "localhost:9092",
            "127.0.0.1:9092",
            "127.0.0.1:9092,localhost:9093",
            "[::1]:9092",
            "PLAINTEXT://localhost:9092",
        ] {
            assert!(all_loopback(b), "{b}");
        }
        for b in [
            "",
            "kafka:9092",
            "10.0.0.1:9092",
            "localhost:9092,kafka:9092",
            "[2001:db8::1]:9092",
        ] {
            assert!(!all_loopback(b), "{b}");
        }
        assert!(!local_mode_for(Some("0"), "localhost:9092"));
        assert!(local_mode_for(Some("1"), "kafka:9092"));
        assert!(local_mode_for(Some(" "), "localhost:9092"));
    }
}
