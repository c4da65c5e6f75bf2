//! Settings of the sink, from the environment (and `--help` lists them).

use std::collections::BTreeMap;
use std::time::Duration;
use tributary_engine::topics::CHAINS;

#[derive(Debug, Clone)]
pub struct SinkConfig {
    /// `KAFKA_BOOTSTRAP`
    pub kafka_bootstrap: String,
    /// `SCHEMA_REGISTRY_URL`
    pub schema_registry_url: String,
    /// `LAKE_URI`: `hdfs://host:port/path`, `file:///path` or a local path; default `.lake`.
    pub lake_uri: String,
    /// `CHAINS`: comma-separated; default all five.
    pub chains: Vec<String>,
    /// `TOPIC_NAMESPACE`
    pub topic_namespace: String,
    /// `GROUP_ID`; default `tributary-sink`.
    pub group_id: String,
    /// `METRICS_PORT`; default 9106.
    pub metrics_port: u16,
    /// `FLUSH_MAX_ROWS`: a table commits when this many rows wait; default 200 000.
    pub max_rows: usize,
    /// `FLUSH_MAX_BYTES`: or when this many bytes wait, of Avro as read or, when larger, of
    /// the decoded Arrow columns (what a commit holds in memory, twice while the Delta writer
    /// splits it by partition); default 32 MiB.
    pub max_bytes: usize,
    /// `FLUSH_MAX_AGE`: or when the oldest waiting row is this old; default 1s.
    pub max_age: Duration,
    /// `TARGET_FILE_SIZE`: Parquet files roll at this size; default 128 MiB.
    pub target_file_size: u64,
    /// `KAFKA_PROP_<NAME>`: librdkafka properties passed through.
    pub kafka: BTreeMap<String, String>,
}

impl SinkConfig {
    pub fn from_env() -> Result<SinkConfig, String> {
        let env: BTreeMap<String, String> = std::env::vars().collect();
        let get = |k: &str| env.get(k).map(|v| v.trim().to_owned()).filter(|v| !v.is_empty());
        let mut errors = Vec::new();
        let mut num = |k: &str, d: u64| match get(k) {
            None => d,
            Some(v) => v.parse().unwrap_or_else(|e| {
                errors.push(format!("{k}='{v}': {e}"));
                d
            }),
        };
        let max_rows = num("FLUSH_MAX_ROWS", 200_000) as usize;
        let max_bytes = num("FLUSH_MAX_BYTES", 32 << 20) as usize;
        let target_file_size = num("TARGET_FILE_SIZE", 128 << 20);
        let metrics_port = num("METRICS_PORT", 9106) as u16;
        let max_age = match get("FLUSH_MAX_AGE") {
            None => Duration::from_secs(1),
            Some(v) => humantime::parse_duration(&v).unwrap_or_else(|e| {
                errors.push(format!("FLUSH_MAX_AGE='{v}': {e}"));
                Duration::from_secs(1)
            }),
        };
        let chains: Vec<String> = match get("CHAINS") {
            None => CHAINS.iter().map(|c| (*c).to_owned()).collect(),
            Some(v) => v
                .split(',')
                .map(|c| c.trim().to_owned())
                .filter(|c| !c.is_empty())
                .collect(),
        };
        for c in &chains {
            if !CHAINS.contains(&c.as_str()) {
                errors.push(format!("CHAINS: unknown chain '{c}' (known: {})", CHAINS.join(", ")));
            }
        }
        if max_rows == 0 || max_bytes == 0 || max_age.is_zero() {
            errors.push("FLUSH_MAX_ROWS, FLUSH_MAX_BYTES and FLUSH_MAX_AGE must be above zero".into());
        }
        let namespace = get("TOPIC_NAMESPACE").unwrap_or_default();
        let group_id =
            get("GROUP_ID").unwrap_or_else(|| tributary_engine::topics::namespaced(&namespace, "tributary-sink"));
        let kafka = tributary_engine::kafka::props_from_env(&env);
        if !errors.is_empty() {
            return Err(errors.join("; "));
        }
        Ok(SinkConfig {
            kafka_bootstrap: get("KAFKA_BOOTSTRAP").unwrap_or_else(|| "127.0.0.1:9092".into()),
            schema_registry_url: get("SCHEMA_REGISTRY_URL")
                .unwrap_or_else(|| "http://localhost:8081/apis/ccompat/v7".into()),
            lake_uri: get("LAKE_URI").unwrap_or_else(|| ".lake".into()),
            chains,
            topic_namespace: namespace,
            group_id,
            metrics_port,
            max_rows,
            max_bytes,
            max_age,
            target_file_size,
            kafka,
        })
    }
}

pub const HELP: &str = "sink: writes Tributary's clean topics into one Delta table per chain, exactly once\n\n\
Usage: sink            run\n       sink --list-metrics  print every metric series the sink serves, and exit\n\n\
Settings (environment): KAFKA_BOOTSTRAP, SCHEMA_REGISTRY_URL, LAKE_URI (default .lake; hdfs://host:port/path for HDFS),\n\
CHAINS (default all), TOPIC_NAMESPACE, GROUP_ID (default tributary-sink), METRICS_PORT (default 9106),\n\
FLUSH_MAX_ROWS (200000), FLUSH_MAX_BYTES (33554432), FLUSH_MAX_AGE (1s), TARGET_FILE_SIZE (134217728), KAFKA_PROP_<NAME>.\n\
Serves /metrics, /health/live and /health/ready on METRICS_PORT.";
