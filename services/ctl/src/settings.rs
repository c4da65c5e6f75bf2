//! The settings every subcommand of `tributary` shares, declared once in [`Global`] and
//! layered by [`tributary_engine::settings`] as for every other binary: defaults, then the
//! TOML file (`--config` or `TRIBUTARY_CONFIG`, unknown keys refused), then the environment
//! (each setting's variable, `KAFKA_PROP_<NAME>` into the `[kafka]` table), then the flags.
//! Every problem is reported at once. A subcommand's own flags (`--partitions`, `--lake`,
//! `--namespace`, ...) stay its own; where one names a global setting it wins over it.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::time::Duration;
use tributary_engine::settings::{self, Loaded};

/// The settings of `tributary` its subcommands share; the file key is the field's name. Each
/// is global: its flag goes before or after the subcommand.
#[derive(Debug, Clone, Default, clap::Parser, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
#[command(
    name = "tributary",
    version,
    about = "Tributary: the ingestion layer's command line",
    next_help_heading = "Global options"
)]
pub struct Global {
    /// Kafka bootstrap servers.
    #[arg(long, env = "KAFKA_BOOTSTRAP", default_value = "127.0.0.1:9092", global = true)]
    pub kafka_bootstrap: String,
    /// The schema registry's Confluent API (reconcile).
    #[arg(
        long,
        env = "SCHEMA_REGISTRY_URL",
        default_value = "http://localhost:8081/apis/ccompat/v7",
        global = true
    )]
    pub schema_registry_url: String,
    /// Topic namespace: prefix `<ns>.` on every topic (and consumer group); a subcommand's
    /// `--namespace` wins. Empty by default.
    #[arg(long, env = "TOPIC_NAMESPACE", global = true)]
    pub topic_namespace: String,
    /// The lake root (`hdfs://host:port/path`, a local directory); a subcommand's `--lake`
    /// wins [default: none for compact, vacuum, erase, reconcile and tables, which need one;
    /// `.lake` for audience and share refresh].
    #[arg(long, env = "LAKE_URI", global = true)]
    pub lake_uri: Option<String>,
    /// Push the run's metrics of compact, vacuum, reconcile and erase (tributary_job_*, and
    /// the job's own) to this Prometheus Pushgateway, e.g. http://pushgateway:9091; a failed
    /// push is reported, not fatal.
    #[arg(long, env = "TRIBUTARY_PUSHGATEWAY", global = true)]
    pub pushgateway: Option<String>,
    /// The retention `tributary topics` gives the raw and clean topics it creates (they hold
    /// personal data the lake keeps after them), e.g. `7d`, `36h`.
    #[arg(
        long,
        env = "TOPIC_RETENTION",
        default_value = "7d",
        value_parser = settings::duration,
        global = true
    )]
    #[serde(with = "humantime_text")]
    pub topic_retention: Duration,
    /// librdkafka properties every Kafka client of the CLI takes: the file's `[kafka]` table,
    /// then `KAFKA_PROP_<NAME>`.
    #[arg(skip)]
    pub kafka: BTreeMap<String, String>,
}

/// The command's name, for messages.
pub const NAME: &str = "tributary";

/// The lake of audience and share refresh when none is set.
pub const LOCAL_LAKE: &str = ".lake";
/// The variable of the retention the engine's topic creation reads.
const RETENTION_VAR: &str = "TOPIC_RETENTION";
/// The prefix of the librdkafka passthrough variables.
const KAFKA_PROP_PREFIX: &str = "KAFKA_PROP_";

impl Global {
    /// The loaded layers checked: the loader's problems and the CLI's own, all at once.
    pub fn resolve(loaded: Loaded<Global>) -> Result<Global, String> {
        let mut errors = Vec::new();
        for key in loaded.settings.kafka.keys() {
            // The library's Kafka clients take the properties from `KAFKA_PROP_<NAME>`
            // ([`Global::publish`]): a name must survive the round trip.
            if tributary_engine::kafka::props_from_env([(&prop_var(key), &String::new())])
                .keys()
                .all(|k| k != key)
            {
                errors.push(format!(
                    "[kafka] '{key}': not a librdkafka property name (lower case, dot-separated)"
                ));
            }
        }
        loaded.finish(errors)
    }

    /// The librdkafka properties of every Kafka client the CLI creates: the one source of
    /// them (what [`Global::publish`] hands the library's clients too).
    pub fn kafka_props(&self) -> &BTreeMap<String, String> {
        &self.kafka
    }

    /// Hands the resolved settings the library reads from the process environment to it:
    /// every `[kafka]` property as `KAFKA_PROP_<NAME>` (what
    /// `tributary_engine::kafka::env_client_config`, used by every Kafka client of the
    /// library's subcommands, reads) and the topic retention as `TOPIC_RETENTION`. Call it
    /// before any thread starts.
    pub fn publish(&self) {
        let mut wanted: BTreeMap<String, String> = self
            .kafka_props()
            .iter()
            .map(|(k, v)| (prop_var(k), v.clone()))
            .collect();
        wanted.insert(
            RETENTION_VAR.to_owned(),
            humantime::format_duration(self.topic_retention).to_string(),
        );
        // The variables already set are in the table (the environment is its top layer).
        for (k, v) in wanted {
            if std::env::var(&k).ok().as_deref() != Some(v.as_str()) {
                std::env::set_var(&k, v);
            }
        }
    }

    /// The namespace of a subcommand: its own `--namespace` when given, else the global one.
    pub fn namespace(&self, own: Option<String>) -> String {
        own.unwrap_or_else(|| self.topic_namespace.clone())
    }

    /// The lake of a subcommand: its own `--lake` when given, else the global one.
    pub fn lake(&self, own: Option<String>) -> Option<String> {
        own.or_else(|| self.lake_uri.clone())
    }

    /// The lake of a subcommand that works on a local lake by default (audience, share
    /// refresh): its own `--lake`, else the global one, else `.lake`.
    pub fn lake_or_local(&self, own: Option<String>) -> String {
        self.lake(own).unwrap_or_else(|| LOCAL_LAKE.to_owned())
    }
}

/// The variable of librdkafka property `key`: `security.protocol` → `KAFKA_PROP_SECURITY_PROTOCOL`.
pub fn prop_var(key: &str) -> String {
    format!("{KAFKA_PROP_PREFIX}{}", key.replace('.', "_").to_ascii_uppercase())
}

/// Durations as their humantime text (`7days`, `36h`), in the file and as printed.
mod humantime_text {
    use serde::{Deserialize, Deserializer, Serializer};
    use std::time::Duration;

    pub fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&humantime::format_duration(*d).to_string())
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        let text = String::deserialize(d)?;
        humantime::parse_duration(text.trim()).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Subcommand;

    #[derive(clap::Subcommand, Debug)]
    enum Sub {
        /// One subcommand.
        Topics {
            #[arg(long)]
            namespace: Option<String>,
        },
    }

    fn load(args: &[&str], env: &[(&str, &str)]) -> Loaded<Global> {
        let env = env.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect();
        let mut argv = vec![NAME];
        argv.extend_from_slice(args);
        settings::load_from::<Global, _>(argv, &env, Sub::augment_subcommands).unwrap()
    }

    fn file(name: &str, text: &str) -> std::path::PathBuf {
        let p = std::env::temp_dir().join(format!("tributary-ctl-{}-{name}.toml", std::process::id()));
        std::fs::write(&p, text).unwrap();
        p
    }

    #[test]
    fn defaults_then_file_then_environment_then_flags_before_or_after_the_subcommand() {
        let g = Global::resolve(load(&[], &[])).unwrap();
        assert_eq!(g.kafka_bootstrap, "127.0.0.1:9092");
        assert_eq!((g.topic_namespace.as_str(), g.lake_uri.as_deref()), ("", None));
        assert_eq!(g.topic_retention, tributary_engine::topics::DEFAULT_RETENTION);

        let f = file(
            "layers",
            "kafka_bootstrap = 'file:9092'\ntopic_namespace = 'f'\ntopic_retention = '36h'\n\
             [kafka]\n'security.protocol' = 'SSL'\n'sasl.mechanism' = 'PLAIN'\n",
        );
        let path = f.to_str().unwrap();
        let env = [
            ("TRIBUTARY_CONFIG", path),
            ("TOPIC_NAMESPACE", "e"),
            ("KAFKA_PROP_SASL_MECHANISM", "SCRAM-SHA-512"),
        ];
        let g = Global::resolve(load(&[], &env)).unwrap();
        assert_eq!(
            (g.kafka_bootstrap.as_str(), g.topic_namespace.as_str()),
            ("file:9092", "e")
        );
        assert_eq!(g.topic_retention, Duration::from_secs(36 * 3600));
        assert_eq!(g.kafka["security.protocol"], "SSL");
        assert_eq!(g.kafka["sasl.mechanism"], "SCRAM-SHA-512");

        // A global flag after the subcommand is the flag all the same.
        let l = load(
            &["topics", "--kafka-bootstrap", "flag:9092", "--namespace", "own"],
            &env,
        );
        let (name, sub) = l.matches.subcommand().unwrap();
        assert_eq!(name, "topics");
        let own = sub.get_one::<String>("namespace").cloned();
        let g = Global::resolve(l).unwrap();
        assert_eq!(g.kafka_bootstrap, "flag:9092");
        assert_eq!(
            (g.namespace(own), g.namespace(None)),
            ("own".to_owned(), "e".to_owned())
        );
        let l = load(&["--kafka-bootstrap=before:9092", "topics"], &env);
        assert_eq!(Global::resolve(l).unwrap().kafka_bootstrap, "before:9092");
        let _ = std::fs::remove_file(f);
    }

    #[test]
    fn every_problem_at_once() {
        let f = file("bad", "no_such_setting = 1\nlake_uri = 5\n[kafka]\nBad_Name = 'x'\n");
        let l = load(&["--config", f.to_str().unwrap()], &[("TOPIC_RETENTION", "soon")]);
        let e = Global::resolve(l).unwrap_err();
        for part in ["no_such_setting", "lake_uri", "TOPIC_RETENTION='soon'", "Bad_Name"] {
            assert!(e.contains(part), "{part} not in {e}");
        }
        let _ = std::fs::remove_file(f);
    }

    #[test]
    fn publish_hands_the_library_the_resolved_settings() {
        let f = file(
            "publish",
            "topic_retention = '20h'\n[kafka]\n'ssl.ca.location' = '/ca.pem'\n",
        );
        let g = Global::resolve(load(&["--config", f.to_str().unwrap()], &[])).unwrap();
        g.publish();
        assert_eq!(tributary_engine::kafka::env_props()["ssl.ca.location"], "/ca.pem");
        assert_eq!(
            tributary_engine::topics::retention().unwrap(),
            Duration::from_secs(20 * 3600)
        );
        let _ = std::fs::remove_file(f);
    }

    #[test]
    fn property_variables_round_trip() {
        assert_eq!(prop_var("security.protocol"), "KAFKA_PROP_SECURITY_PROTOCOL");
        let var = prop_var("ssl.ca.location");
        let back = tributary_engine::kafka::props_from_env([(&var, &"x".to_owned())]);
        assert_eq!(back.keys().collect::<Vec<_>>(), ["ssl.ca.location"]);
    }
}
