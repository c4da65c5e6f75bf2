//! Settings of the sink, each declared once below and layered by
//! [`tributary_engine::settings`]: defaults, the TOML file (`--config` or `TRIBUTARY_CONFIG`),
//! the environment, the flags. `--help` lists them all.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::time::Duration;
use tributary_engine::settings::{self, Loaded};
use tributary_engine::topics::CHAINS;

#[derive(Debug, Clone, Default, clap::Parser, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
#[command(
    name = "sink",
    about = "sink: writes Tributary's clean topics into one Delta table per chain, exactly once. \
             Serves /metrics, /health/live and /health/ready on METRICS_PORT."
)]
pub struct SinkConfig {
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
    /// The lake: `hdfs://host:port/path`, `file:///path` or a local path.
    #[arg(long, env = "LAKE_URI", default_value = ".lake")]
    pub lake_uri: String,
    /// The chains whose tables this sink writes, comma-separated [default: all five].
    #[arg(long, env = "CHAINS")]
    pub chains: Vec<String>,
    /// Prefix `<ns>.` on every topic; empty by default.
    #[arg(long, env = "TOPIC_NAMESPACE")]
    pub topic_namespace: String,
    /// Consumer group [default: tributary-sink, or <ns>.tributary-sink with a TOPIC_NAMESPACE].
    #[arg(long, env = "GROUP_ID")]
    pub group_id: String,
    /// Port of /metrics and /health/*.
    #[arg(long, env = "METRICS_PORT", default_value = "9106")]
    pub metrics_port: u16,
    /// A table commits when this many rows wait.
    #[arg(long, env = "FLUSH_MAX_ROWS", default_value = "200000")]
    pub max_rows: usize,
    /// Or when this many bytes wait, of Avro as read or, when larger, of the decoded Arrow
    /// columns (what a commit holds in memory, twice while the Delta writer splits it by
    /// partition).
    #[arg(long, env = "FLUSH_MAX_BYTES", default_value = "33554432")]
    pub max_bytes: usize,
    /// Or when the oldest waiting row is this old.
    #[arg(long, env = "FLUSH_MAX_AGE", default_value = "1s", value_parser = settings::duration)]
    #[serde(with = "humantime_serde")]
    pub max_age: Duration,
    /// Parquet files roll at this size.
    #[arg(long, env = "TARGET_FILE_SIZE", default_value = "134217728")]
    pub target_file_size: u64,
    /// How long the consumer may report no broker up, or not be a settled member of its
    /// group, before the sink stops (status 3) so that a restart gets a fresh client; the
    /// chains' `STALL_LIMIT` default. A commit waiting on the lake does not count.
    #[arg(long, env = "STALL_LIMIT", default_value = "120s", value_parser = settings::duration)]
    #[serde(with = "humantime_serde")]
    pub stall_limit: Duration,
    /// librdkafka properties passed through: the file's `[kafka]` table, `KAFKA_PROP_<NAME>`.
    #[arg(skip)]
    pub kafka: BTreeMap<String, String>,
}

/// The sink's own switch besides its settings.
pub const LIST_METRICS_ARG: &str = "list_metrics";

/// The sink's command line: its settings and `--list-metrics`.
pub fn tweak(c: clap::Command) -> clap::Command {
    c.arg(
        clap::Arg::new(LIST_METRICS_ARG)
            .long("list-metrics")
            .action(clap::ArgAction::SetTrue)
            .help("Print every metric series the sink serves, and exit"),
    )
}

impl SinkConfig {
    /// The loaded layers made whole (the default chains and group) and checked.
    pub fn resolve(loaded: Loaded<SinkConfig>) -> Result<SinkConfig, String> {
        let mut loaded = loaded;
        let c = &mut loaded.settings;
        let mut errors = Vec::new();
        c.topic_namespace = c.topic_namespace.trim().to_owned();
        if c.chains.is_empty() {
            c.chains = CHAINS.iter().map(|c| (*c).to_owned()).collect();
        }
        for chain in &c.chains {
            if !CHAINS.contains(&chain.as_str()) {
                errors.push(format!(
                    "CHAINS: unknown chain '{chain}' (known: {})",
                    CHAINS.join(", ")
                ));
            }
        }
        if c.max_rows == 0 || c.max_bytes == 0 || c.max_age.is_zero() {
            errors.push("FLUSH_MAX_ROWS, FLUSH_MAX_BYTES and FLUSH_MAX_AGE must be above zero".into());
        }
        if c.group_id.trim().is_empty() {
            c.group_id = tributary_engine::topics::namespaced(&c.topic_namespace, "tributary-sink");
        }
        loaded.finish(errors)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load(args: &[&str], env: &[(&str, &str)]) -> Result<SinkConfig, String> {
        let env = env.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect();
        let argv = std::iter::once("sink").chain(args.iter().copied());
        SinkConfig::resolve(settings::load_from(argv, &env, tweak).unwrap())
    }

    #[test]
    fn defaults_and_every_problem() {
        let c = load(&[], &[]).unwrap();
        assert_eq!(c.kafka_bootstrap, "127.0.0.1:9092");
        assert_eq!(c.lake_uri, ".lake");
        assert_eq!(c.chains.len(), CHAINS.len());
        assert_eq!(c.group_id, "tributary-sink");
        assert_eq!((c.metrics_port, c.max_rows, c.max_bytes), (9106, 200_000, 32 << 20));
        assert_eq!((c.max_age, c.target_file_size), (Duration::from_secs(1), 128 << 20));
        let c = load(&["--group-id", "g"], &[("TOPIC_NAMESPACE", "ns"), ("CHAINS", "users")]).unwrap();
        assert_eq!((c.group_id.as_str(), c.chains.clone()), ("g", vec!["users".to_owned()]));
        let c = load(
            &[],
            &[("TOPIC_NAMESPACE", "ns"), ("KAFKA_PROP_SECURITY_PROTOCOL", "SSL")],
        )
        .unwrap();
        assert_eq!(c.group_id, "ns.tributary-sink");
        assert_eq!(c.kafka["security.protocol"], "SSL");
        let err = load(
            &["--chains", "users,nope"],
            &[
                ("FLUSH_MAX_ROWS", "0"),
                ("FLUSH_MAX_AGE", "soon"),
                ("METRICS_PORT", "x"),
            ],
        )
        .unwrap_err();
        for part in [
            "unknown chain 'nope'",
            "FLUSH_MAX_AGE='soon'",
            "METRICS_PORT='x'",
            "above zero",
        ] {
            assert!(err.contains(part), "{part} not in {err}");
        }
    }
}
