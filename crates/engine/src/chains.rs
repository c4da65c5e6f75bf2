//! THE chain registry: every chain's descriptor, generated at build time from
//! `schemas/chains.txt` (one line per chain; see `build.rs` for why a data file). Everything
//! that lists chains derives from it: the topics ([`crate::topics::CHAINS`]), the lake's
//! tables and schemas, the gateway's chain names, the load generator, `tributary chains`,
//! and, through the same file, the Makefile, the dev scripts and the Airflow DAGs. A chain
//! service takes its name, schema, port and window from its line here.

use std::time::Duration;

/// One chain, as declared in the registry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ChainSpec {
    /// The chain's name: its crate and binary (`services/<name>`), its topics
    /// (`raw.<name>` ...) and its lake table (`<lake>/<name>`).
    pub name: &'static str,
    /// Default metrics and health port.
    pub port: u16,
    /// Default dedup window, in event time.
    pub window: Duration,
    /// The window as the registry writes it (`24h`, `7d`).
    pub window_text: &'static str,
    /// The Avro schema of its clean topic, relative to the repository.
    pub schema_path: &'static str,
    /// That schema's text.
    pub schema: &'static str,
}

/// Where the registry lives, relative to the repository.
pub const REGISTRY_FILE: &str = "schemas/chains.txt";
/// The registry's text, as this build read it.
pub const REGISTRY_TEXT: &str = include_str!("../../../schemas/chains.txt");

include!(concat!(env!("OUT_DIR"), "/chains.rs"));

/// A chain's descriptor by name.
pub fn get(name: &str) -> Option<&'static ChainSpec> {
    ALL.iter().find(|c| c.name == name)
}

/// The names in a registry text, by the rule every reader of the file applies (a chain line
/// starts with a lowercase letter; its first column is the name): what the Makefile, the
/// scripts and the DAGs read.
pub fn names_in(text: &str) -> Vec<&str> {
    text.lines()
        .filter(|l| l.starts_with(|c: char| c.is_ascii_lowercase()))
        .filter_map(|l| l.split_whitespace().next())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_table_is_the_file() {
        assert_eq!(names_in(REGISTRY_TEXT), NAMES);
        for line in REGISTRY_TEXT
            .lines()
            .filter(|l| l.starts_with(|c: char| c.is_ascii_lowercase()))
        {
            let cols: Vec<&str> = line.split_whitespace().collect();
            let spec = get(cols[0]).expect("a chain of the file");
            assert_eq!(spec.port.to_string(), cols[1], "{line}");
            assert_eq!(spec.window_text, cols[2], "{line}");
            assert_eq!(spec.schema_path, format!("schemas/{}.avsc", spec.name));
            assert!(spec.schema.contains("\"name\""), "{}: an Avro schema", spec.schema_path);
        }
        assert_eq!(ALL.len(), NAMES.len());
        assert_eq!(crate::topics::CHAINS, NAMES);
    }

    #[test]
    fn the_descriptors_today() {
        let day = Duration::from_secs(86_400);
        assert_eq!(USERS.window, day);
        assert_eq!(USERS.port, 9101);
        for c in [UNSUBSCRIBES, BLOCKLISTS, SUBSCRIPTIONS, MAILINGS] {
            assert_eq!(c.window, 7 * day, "{}", c.name);
        }
        assert_eq!(MAILINGS.port, 9105);
        assert!(get("nope").is_none());
        assert_eq!(get("blocklists"), Some(&BLOCKLISTS));
    }
}
