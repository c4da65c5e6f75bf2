//! Typed configuration of a chain service, layered by [`crate::settings`]: defaults, then an
//! optional TOML file, then environment variables, then flags. Unknown keys are rejected and
//! every error is reported at once.

use crate::error::{Error, Result};
use serde::{Deserialize, Serialize};
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

/// The settings of a chain service, each declared once: its flag, its environment variable,
/// its default and its help; its file key is the field's name ([`crate::settings`] layers
/// defaults, the file, the environment and the flags).
#[derive(Debug, Clone, PartialEq, Default, clap::Parser, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
#[command(
    about = "A chain service of Tributary: reads raw.<chain>, writes clean.<chain>, dlq.<chain>, \
             audit.<chain> and changelog.<chain>, exactly once. Serves /metrics, /health/live and \
             /health/ready on METRICS_PORT.",
    after_help = "TRIBUTARY_LOCAL=1 (local mode, as `make up` and the tests set; when unset, a Kafka \
                  on loopback addresses only): the demo tenants acme, globex and initech where no \
                  TENANTS are configured. Otherwise a chain service without tenants refuses to start."
)]
pub struct Config {
    /// Kafka bootstrap servers.
    #[arg(long, env = "KAFKA_BOOTSTRAP", default_value = "localhost:9092")]
    pub kafka_bootstrap: String,
    /// Confluent-compatible schema registry base URL.
    #[arg(
        long,
        env = "SCHEMA_REGISTRY_URL",
        default_value = "http://localhost:8081/apis/ccompat/v7"
    )]
    pub schema_registry_url: String,
    /// The tenants this deployment serves, comma-separated; others are invalid [default: none;
    /// acme,globex,initech in local mode].
    #[arg(long, env = "TENANTS")]
    pub tenants: Vec<String>,
    /// Dedup window in event time (e.g. `24h`); each chain has its own default.
    #[arg(long, env = "DEDUP_WINDOW", value_parser = crate::settings::duration)]
    #[serde(with = "humantime_serde")]
    pub dedup_window: Duration,
    /// Longest time a transaction stays open (e.g. `100ms`).
    #[arg(long, env = "COMMIT_INTERVAL", default_value = "100ms", value_parser = crate::settings::duration)]
    #[serde(with = "humantime_serde")]
    pub commit_interval: Duration,
    /// A transaction open longer than this means a stuck Kafka client: the service exits
    /// (status 3) so that a restart gets a fresh one. The default is twice
    /// `transaction.timeout.ms` (60 s), past which the broker aborts the transaction anyway.
    #[arg(long, env = "STALL_LIMIT", default_value = "120s", value_parser = crate::settings::duration)]
    #[serde(with = "humantime_serde")]
    pub stall_limit: Duration,
    /// Most input records in one transaction.
    #[arg(long, env = "MAX_BATCH_RECORDS", default_value = "20000")]
    pub max_batch_records: usize,
    /// Larger records go to the DLQ unparsed.
    #[arg(long, env = "MAX_RECORD_BYTES", default_value = "1048576")]
    pub max_record_bytes: usize,
    /// Names this instance's transactional producer; unique per running instance and stable
    /// across its restarts.
    #[arg(long, env = "INSTANCE_ID", default_value = "0")]
    pub instance_id: String,
    /// Consumer group; by default `tributary-<chain>`, `<ns>.tributary-<chain>` with a
    /// TOPIC_NAMESPACE.
    #[arg(long, env = "GROUP_ID")]
    pub group_id: String,
    /// Port of `/metrics` and `/health/*`; each chain has its own default.
    #[arg(long, env = "METRICS_PORT")]
    pub metrics_port: u16,
    /// Prefix of every topic name, `<ns>.raw.<chain>`; empty by default.
    #[arg(long, env = "TOPIC_NAMESPACE")]
    pub topic_namespace: String,
    /// Extra librdkafka properties passed through to every client, e.g. `security.protocol`,
    /// `sasl.mechanism`, `ssl.ca.location` (file `[kafka]` table, or `KAFKA_PROP_<NAME>`
    /// variables with dots as underscores).
    #[arg(skip)]
    pub kafka: BTreeMap<String, String>,
}

impl Config {
    /// The command line of chain `chain`: its name and its own defaults.
    pub fn command(chain: &str, window: Duration, port: u16) -> clap::Command {
        crate::settings::command::<Config>(tweak(chain, window, port))
    }

    /// Defaults of one chain: local infrastructure, no tenants (local mode adds the demo
    /// tenants when none are configured).
    pub fn defaults(chain: &str, window: Duration, port: u16) -> Config {
        crate::settings::load_from::<Config, _>([chain], &BTreeMap::new(), tweak(chain, window, port))
            .map(|l| l.settings)
            .unwrap_or_default()
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
        let mut args: Vec<std::ffi::OsString> = vec![chain.into()];
        if let Some(f) = file {
            args.extend(["--config".into(), f.as_os_str().to_owned()]);
        }
        let env: BTreeMap<String, String> = env.iter().cloned().collect();
        let loaded = crate::settings::load_from::<Config, _>(args, &env, tweak(chain, window, port))
            .map_err(|e| Error::Config(e.to_string()))?;
        Config::resolve(chain, loaded, &env).map_err(Error::Config)
    }

    /// The loaded layers made whole (local mode's tenants, the namespaced group) and checked.
    pub fn resolve(
        chain: &str,
        loaded: crate::settings::Loaded<Config>,
        env: &BTreeMap<String, String>,
    ) -> std::result::Result<Config, String> {
        let mut loaded = loaded;
        let c = &mut loaded.settings;
        c.schema_registry_url = c.schema_registry_url.trim_end_matches('/').to_owned();
        c.topic_namespace = c.topic_namespace.trim().to_owned();
        let local = local_mode_for(env.get(LOCAL_MODE_VAR).map(String::as_str), &c.kafka_bootstrap);
        if c.tenants.is_empty() && local {
            c.tenants = DEFAULT_TENANTS.iter().map(|t| (*t).to_owned()).collect();
        }
        if !c.topic_namespace.is_empty() && c.group_id == format!("tributary-{chain}") {
            c.group_id = crate::topics::namespaced(&c.topic_namespace, &c.group_id);
        }
        let problems = c.problems();
        loaded.finish(problems)
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
        if self.stall_limit < self.commit_interval || self.stall_limit < Duration::from_secs(1) {
            p.push("stall_limit must be at least 1s and at least commit_interval".to_owned());
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

/// What only the chain knows: its name and its own defaults (for [`crate::settings::load`]).
pub fn tweak(chain: &str, window: Duration, port: u16) -> impl FnOnce(clap::Command) -> clap::Command {
    let (name, group) = (chain.to_owned(), format!("tributary-{chain}"));
    let window = humantime::format_duration(window).to_string();
    move |c| {
        c.name(name)
            .mut_arg("dedup_window", |a| a.default_value(window))
            .mut_arg("metrics_port", |a| a.default_value(port.to_string()))
            .mut_arg("group_id", |a| a.default_value(group))
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
