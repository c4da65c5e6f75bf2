//! The one configuration loader of every Tributary binary.
//!
//! A binary declares its settings once, as one struct that derives `clap::Parser` (the flag,
//! its environment variable, its default and its doc comment, which is the `--help` text) and
//! serde's `Serialize` + `Deserialize` (the key of the TOML file, the same name in snake case).
//! [`load`] then layers, each later layer over the earlier ones:
//!
//! 1. the defaults (`default_value` of each flag),
//! 2. the TOML file of `--config FILE` or `TRIBUTARY_CONFIG` (unknown keys refused),
//! 3. the environment (each flag's `env`, and `KAFKA_PROP_<NAME>` into the `kafka` table of a
//!    binary that has one: every Kafka client takes the same passthrough),
//! 4. the flags.
//!
//! Every bad value of every layer is reported, not only the first: a value that does not
//! parse is named and skipped (the layer below it stays), and the binary adds its own
//! checks to the same list. Every binary also takes `--print-config`: print the resolved
//! settings as TOML and exit (2, naming every problem, when they are invalid).

use clap::parser::ValueSource;
use clap::{Arg, ArgAction, ArgMatches, Command, CommandFactory};
use serde::de::value::{Error as DeError, MapDeserializer, SeqDeserializer};
use serde::de::{DeserializeOwned, Error as _, IntoDeserializer, Visitor};
use serde::{Deserializer, Serialize};
use std::collections::BTreeMap;
use std::ffi::OsString;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

/// The environment variable naming the settings file, as `--config`.
pub const CONFIG_VAR: &str = "TRIBUTARY_CONFIG";
/// The flag (argument id) of the settings file.
pub const CONFIG_ARG: &str = "config";
/// The flag (argument id) that prints the resolved settings and exits.
pub const PRINT_CONFIG_ARG: &str = "print_config";
/// The table of librdkafka properties; `KAFKA_PROP_<NAME>` variables extend it.
pub const KAFKA_TABLE: &str = "kafka";

/// What every binary's `--help` ends with: how the file and the passthrough work.
pub const LAYERS_HELP: &str = "Each setting comes from, the later winning: its default, the TOML file \
(--config or TRIBUTARY_CONFIG; keys are the flags' names in snake case, unknown keys are refused), \
its environment variable, its flag. KAFKA_PROP_<NAME> passes any librdkafka property, dots as \
underscores (KAFKA_PROP_SECURITY_PROTOCOL=SASL_SSL), as does the file's [kafka] table. \
--print-config prints the resolved settings as TOML and exits. RUST_LOG and LOG_FORMAT=json \
set the log filter and format.";

/// A value parser for durations (`250ms`, `24h`, `7d`), for `#[arg(value_parser = ...)]`.
pub fn duration(s: &str) -> Result<Duration, humantime::DurationError> {
    humantime::parse_duration(s.trim())
}

/// The settings as loaded: every value that parsed, and every problem found on the way.
#[derive(Debug)]
pub struct Loaded<T> {
    pub settings: T,
    /// Problems of the layers (a file that cannot be read, an unknown key, a value that does
    /// not parse), each naming its source; the binary adds its own checks and reports all.
    pub errors: Vec<String>,
    /// The parsed command line, for the binary's own flags (e.g. the sink's `--list-metrics`).
    pub matches: ArgMatches,
    /// `--print-config` was given.
    pub print: bool,
}

/// The command of settings struct `T`, as `--help` shows it and [`load`] parses it: `tweak`
/// sets what only the binary knows (its name, per-binary defaults), then the loader adds
/// `--config` and `--print-config` and makes every setting optional on the command line.
pub fn command<T: CommandFactory>(tweak: impl FnOnce(Command) -> Command) -> Command {
    let cmd = tweak(T::command());
    // The binary's own notes (its `after_help`) come first, then how the layers work.
    let after = match cmd.get_after_help() {
        Some(own) => format!("{own}\n\n{LAYERS_HELP}"),
        None => LAYERS_HELP.to_owned(),
    };
    cmd.mut_args(|a| {
        let a = a.required(false).hide_env_values(true);
        if a.get_action().takes_values() {
            // Values are parsed by the loader (every error reported), not by clap.
            a.value_parser(clap::builder::ValueParser::os_string())
        } else {
            a
        }
    })
    .arg(
        Arg::new(CONFIG_ARG)
            .long("config")
            .short('c')
            .env(CONFIG_VAR)
            .hide_env_values(true)
            .value_name("FILE")
            .value_parser(clap::value_parser!(PathBuf))
            .help("TOML settings file: the settings below as keys in snake case"),
    )
    .arg(
        Arg::new(PRINT_CONFIG_ARG)
            .long("print-config")
            .action(ArgAction::SetTrue)
            .help("Print the resolved settings as TOML and exit (2, naming every problem, when invalid)"),
    )
    .after_long_help(after)
}

/// Whether `a` is a setting: a named flag that takes a value (not `--config`, not a switch).
fn is_setting(a: &Arg) -> bool {
    a.get_long().is_some() && a.get_action().takes_values() && a.get_id().as_str() != CONFIG_ARG
}

/// This process's settings: [`load_from`] with its arguments and environment; `--help`, and
/// a command line clap refuses, print and exit.
pub fn load<T>(tweak: impl FnOnce(Command) -> Command) -> Loaded<T>
where
    T: CommandFactory + Serialize + DeserializeOwned + Default,
{
    let env: BTreeMap<String, String> = std::env::vars().collect();
    load_from(std::env::args_os(), &env, tweak).unwrap_or_else(|e| e.exit())
}

/// Layers defaults, the file, `env` and the flags of `args` (the first being the program
/// name) into `T`. Only an unusable command line (an unknown flag, `--help`) is an `Err`.
pub fn load_from<T, I>(
    args: I,
    env: &BTreeMap<String, String>,
    tweak: impl FnOnce(Command) -> Command,
) -> Result<Loaded<T>, clap::Error>
where
    T: CommandFactory + Serialize + DeserializeOwned + Default,
    I: IntoIterator,
    I::Item: Into<OsString> + Clone,
{
    let cmd = command::<T>(tweak);
    let matches = cmd.clone().try_get_matches_from(args)?;
    let mut errors = Vec::new();
    let mut merged = toml::Table::new();
    let settings: Vec<&Arg> = cmd.get_arguments().filter(|a| is_setting(a)).collect();

    // 1. Defaults.
    for a in &settings {
        let d = a.get_default_values();
        if d.is_empty() {
            continue;
        }
        let raw = join(d.iter().map(|v| v.to_string_lossy().into_owned()));
        match value_of::<T>(a.get_id().as_str(), &raw) {
            Ok(Some(v)) => overlay(&mut merged, a.get_id().as_str(), v),
            Ok(None) => {}
            Err(e) => errors.push(format!("default of {}: '{raw}': {e}", a.get_id())),
        }
    }

    // 2. The file.
    let file = match matches.value_source(CONFIG_ARG) {
        Some(ValueSource::CommandLine) => matches.get_one::<PathBuf>(CONFIG_ARG).cloned(),
        _ => nonempty(env, CONFIG_VAR).map(PathBuf::from),
    };
    if let Some(path) = file {
        match std::fs::read_to_string(&path) {
            Err(e) => errors.push(format!("{}: {e}", path.display())),
            Ok(text) => match text.parse::<toml::Table>() {
                Err(e) => errors.push(format!("{}: {e}", path.display())),
                Ok(table) => {
                    for (k, v) in table {
                        let one = toml::Table::from_iter([(k.clone(), v.clone())]);
                        match toml::Value::Table(one).try_into::<T>() {
                            Ok(_) => overlay(&mut merged, &k, v),
                            Err(e) => errors.push(format!("{}: {}", path.display(), e.message().trim())),
                        }
                    }
                }
            },
        }
    }

    // 3. The environment.
    for a in &settings {
        let Some(var) = a.get_env().and_then(|v| v.to_str()) else {
            continue;
        };
        if let Some(raw) = nonempty(env, var) {
            match value_of::<T>(a.get_id().as_str(), &raw) {
                Ok(Some(v)) => overlay(&mut merged, a.get_id().as_str(), v),
                Ok(None) => {}
                Err(e) => errors.push(format!("{var}='{raw}': {e}")),
            }
        }
    }
    let has_kafka = toml::Table::try_from(T::default()).is_ok_and(|t| t.contains_key(KAFKA_TABLE));
    if has_kafka {
        let props = crate::kafka::props_from_env(env);
        if !props.is_empty() {
            let table = props.into_iter().map(|(k, v)| (k, toml::Value::String(v))).collect();
            overlay(&mut merged, KAFKA_TABLE, toml::Value::Table(table));
        }
    }

    // 4. The flags.
    for a in &settings {
        let id = a.get_id().as_str();
        if matches.value_source(id) != Some(ValueSource::CommandLine) {
            continue;
        }
        let Some(values) = matches.get_raw(id) else {
            continue;
        };
        let raw = join(values.map(|v| v.to_string_lossy().into_owned()));
        match value_of::<T>(id, &raw) {
            Ok(Some(v)) => overlay(&mut merged, id, v),
            Ok(None) => {}
            Err(e) => {
                let var = a
                    .get_env()
                    .map(|v| format!(" ({})", v.to_string_lossy()))
                    .unwrap_or_default();
                errors.push(format!("--{}='{raw}'{var}: {e}", a.get_long().unwrap_or(id)));
            }
        }
    }

    let settings = toml::Value::Table(merged).try_into::<T>().unwrap_or_else(|e| {
        errors.push(e.message().trim().to_owned());
        T::default()
    });
    let print = matches.get_flag(PRINT_CONFIG_ARG);
    Ok(Loaded {
        settings,
        errors,
        matches,
        print,
    })
}

impl<T: Serialize> Loaded<T> {
    /// The settings, or every problem (the loader's and then `checks`) joined by `; `.
    pub fn finish(self, checks: Vec<String>) -> Result<T, String> {
        let mut errors = self.errors;
        errors.extend(checks);
        if errors.is_empty() {
            Ok(self.settings)
        } else {
            Err(errors.join("; "))
        }
    }
}

/// The resolved settings as TOML, as `--print-config` prints them.
pub fn to_toml<T: Serialize>(settings: &T) -> String {
    toml::to_string(settings).unwrap_or_else(|e| format!("# cannot print the settings: {e}\n"))
}

/// What `--print-config` does with the settings as TOML ([`to_toml`]) or every problem:
/// print them, and succeed or exit 2.
pub fn print_config(name: &str, resolved: Result<String, String>) -> ExitCode {
    match resolved {
        Ok(text) => {
            print!("{text}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("{name}: invalid configuration: {e}");
            ExitCode::from(2)
        }
    }
}

fn nonempty(env: &BTreeMap<String, String>, var: &str) -> Option<String> {
    env.get(var).map(|v| v.trim().to_owned()).filter(|v| !v.is_empty())
}

fn join(values: impl Iterator<Item = String>) -> String {
    values.collect::<Vec<_>>().join(",")
}

/// The value of setting `key` from its text form (an environment variable, a flag), in the
/// form the file would hold it, checked against `T`'s type for the key; `None` for none.
fn value_of<T: Serialize + DeserializeOwned>(key: &str, raw: &str) -> Result<Option<toml::Value>, String> {
    let one: T = T::deserialize(MapDeserializer::<_, DeError>::new(std::iter::once((key, Text(raw)))))
        .map_err(|e| e.to_string())?;
    let mut table = toml::Table::try_from(one).map_err(|e| e.to_string())?;
    Ok(table.remove(key))
}

/// Lays `value` over `table[key]`: tables merge key by key, anything else replaces.
fn overlay(table: &mut toml::Table, key: &str, value: toml::Value) {
    match (table.get_mut(key), value) {
        (Some(toml::Value::Table(base)), toml::Value::Table(top)) => {
            for (k, v) in top {
                overlay(base, &k, v);
            }
        }
        (_, value) => {
            table.insert(key.to_owned(), value);
        }
    }
}

/// One setting's text, read as the setting's type wants: numbers and booleans parsed, lists
/// comma-separated (items trimmed, empty ones dropped), anything else the text itself.
#[derive(Clone, Copy)]
struct Text<'a>(&'a str);

impl<'de> IntoDeserializer<'de, DeError> for Text<'_> {
    type Deserializer = Self;
    fn into_deserializer(self) -> Self {
        self
    }
}

macro_rules! parse_number {
    ($($method:ident => $visit:ident: $ty:ty),* $(,)?) => {$(
        fn $method<V: Visitor<'de>>(self, v: V) -> Result<V::Value, DeError> {
            v.$visit(self.0.trim().parse::<$ty>().map_err(|e| DeError::custom(format!("not a {}: {e}", stringify!($ty))))?)
        }
    )*};
}

impl<'de> Deserializer<'de> for Text<'_> {
    type Error = DeError;

    fn deserialize_any<V: Visitor<'de>>(self, v: V) -> Result<V::Value, DeError> {
        v.visit_str(self.0)
    }

    fn deserialize_bool<V: Visitor<'de>>(self, v: V) -> Result<V::Value, DeError> {
        match self.0.trim().to_ascii_lowercase().as_str() {
            "true" | "1" | "yes" | "on" => v.visit_bool(true),
            "false" | "0" | "no" | "off" => v.visit_bool(false),
            _ => Err(DeError::custom("not a boolean (true or false)")),
        }
    }

    parse_number!(
        deserialize_u8 => visit_u8: u8,
        deserialize_u16 => visit_u16: u16,
        deserialize_u32 => visit_u32: u32,
        deserialize_u64 => visit_u64: u64,
        deserialize_i8 => visit_i8: i8,
        deserialize_i16 => visit_i16: i16,
        deserialize_i32 => visit_i32: i32,
        deserialize_i64 => visit_i64: i64,
        deserialize_f32 => visit_f32: f32,
        deserialize_f64 => visit_f64: f64,
    );

    fn deserialize_option<V: Visitor<'de>>(self, v: V) -> Result<V::Value, DeError> {
        v.visit_some(self)
    }

    fn deserialize_newtype_struct<V: Visitor<'de>>(self, _name: &'static str, v: V) -> Result<V::Value, DeError> {
        v.visit_newtype_struct(self)
    }

    fn deserialize_seq<V: Visitor<'de>>(self, v: V) -> Result<V::Value, DeError> {
        let items = self.0.split(',').map(str::trim).filter(|s| !s.is_empty()).map(Text);
        v.visit_seq(SeqDeserializer::new(items))
    }

    serde::forward_to_deserialize_any! {
        i128 u128 char str string bytes byte_buf unit unit_struct tuple tuple_struct map struct
        enum identifier ignored_any
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize;

    /// A settings struct as a binary declares one.
    #[derive(Debug, Default, PartialEq, clap::Parser, Serialize, Deserialize)]
    #[serde(default, deny_unknown_fields)]
    #[command(name = "demo")]
    struct Demo {
        /// Kafka bootstrap servers.
        #[arg(long, env = "KAFKA_BOOTSTRAP", default_value = "localhost:9092")]
        kafka_bootstrap: String,
        /// A count.
        #[arg(long, env = "COUNT", default_value = "3")]
        count: usize,
        /// A duration.
        #[arg(long, env = "WAIT", default_value = "1s", value_parser = duration)]
        #[serde(with = "humantime_serde")]
        wait: Duration,
        /// A list.
        #[arg(long, env = "NAMES")]
        names: Vec<String>,
        /// A switch with a value.
        #[arg(long, env = "STRICT")]
        strict: Option<bool>,
        #[arg(skip)]
        kafka: BTreeMap<String, String>,
    }

    fn env(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect()
    }

    fn file(text: &str) -> PathBuf {
        let p = std::env::temp_dir().join(format!("tributary-settings-{}.toml", uuid_like()));
        std::fs::write(&p, text).unwrap();
        p
    }

    fn uuid_like() -> String {
        use std::sync::atomic::{AtomicUsize, Ordering};
        static N: AtomicUsize = AtomicUsize::new(0);
        format!("{}-{}", std::process::id(), N.fetch_add(1, Ordering::Relaxed))
    }

    fn load(args: &[&str], e: &[(&str, &str)]) -> Loaded<Demo> {
        let mut argv = vec!["demo"];
        argv.extend_from_slice(args);
        load_from(argv, &env(e), |c| c).unwrap()
    }

    #[test]
    fn defaults_then_file_then_environment_then_flags() {
        let l = load(&[], &[]);
        assert!(l.errors.is_empty(), "{:?}", l.errors);
        assert_eq!(l.settings.kafka_bootstrap, "localhost:9092");
        assert_eq!((l.settings.count, l.settings.wait), (3, Duration::from_secs(1)));
        assert_eq!(l.settings.strict, None);

        let f = file("count = 4\nwait = '2s'\nnames = ['a']\nstrict = true\n[kafka]\n'security.protocol' = 'SSL'\n");
        let path = f.to_str().unwrap();
        let l = load(&["--config", path], &[]);
        assert!(l.errors.is_empty(), "{:?}", l.errors);
        assert_eq!((l.settings.count, l.settings.wait), (4, Duration::from_secs(2)));
        assert_eq!(
            (l.settings.names.clone(), l.settings.strict),
            (vec!["a".to_owned()], Some(true))
        );

        let e = [
            (CONFIG_VAR, path),
            ("COUNT", " 5 "),
            ("NAMES", "x, y,,"),
            ("STRICT", "false"),
            ("KAFKA_PROP_SASL_MECHANISM", "PLAIN"),
        ];
        let l = load(&[], &e);
        assert!(l.errors.is_empty(), "{:?}", l.errors);
        assert_eq!((l.settings.count, l.settings.wait), (5, Duration::from_secs(2)));
        assert_eq!(l.settings.names, ["x", "y"]);
        assert_eq!(l.settings.strict, Some(false));
        assert_eq!(l.settings.kafka["security.protocol"], "SSL");
        assert_eq!(l.settings.kafka["sasl.mechanism"], "PLAIN");

        let l = load(&["--count", "6", "--names", "z", "--wait=250ms", "--print-config"], &e);
        assert!(l.errors.is_empty(), "{:?}", l.errors);
        assert_eq!((l.settings.count, l.settings.wait), (6, Duration::from_millis(250)));
        assert_eq!(l.settings.names, ["z"]);
        assert!(l.print);
        let printed = to_toml(&l.settings);
        assert!(
            printed.contains("count = 6") && printed.contains("wait = \"250ms\""),
            "{printed}"
        );
        let _ = std::fs::remove_file(f);
    }

    #[test]
    fn every_problem_at_once_and_the_layer_below_kept() {
        let f = file("count = 'many'\nbogus = 1\nwait = '3s'\n");
        let l = load(
            &["--config", f.to_str().unwrap(), "--strict", "maybe"],
            &[("WAIT", "soon"), ("COUNT", "-1")],
        );
        let all = l.errors.join("; ");
        for part in ["bogus", "count", "WAIT='soon'", "COUNT='-1'", "--strict='maybe'"] {
            assert!(all.contains(part), "{part} not in {all}");
        }
        assert_eq!(l.errors.len(), 5, "{all}");
        assert_eq!((l.settings.count, l.settings.wait), (3, Duration::from_secs(3)));
        let missing = load(&["--config", "/nonexistent/tributary.toml"], &[]);
        assert!(
            missing.errors[0].contains("/nonexistent/tributary.toml"),
            "{:?}",
            missing.errors
        );
        let _ = std::fs::remove_file(f);
    }

    #[test]
    fn help_lists_every_setting_with_its_variable() {
        let help = command::<Demo>(|c| c).render_long_help().to_string();
        for (flag, var) in [
            ("--kafka-bootstrap", "KAFKA_BOOTSTRAP"),
            ("--count", "COUNT"),
            ("--wait", "WAIT"),
            ("--names", "NAMES"),
            ("--strict", "STRICT"),
            ("--config", CONFIG_VAR),
        ] {
            assert!(
                help.contains(flag) && help.contains(&format!("[env: {var}]")),
                "{flag} {var}: {help}"
            );
        }
        assert!(
            help.contains("--print-config") && help.contains("KAFKA_PROP_"),
            "{help}"
        );
        assert!(load_from::<Demo, _>(["demo", "--no-such-flag"], &BTreeMap::new(), |c| c).is_err());
    }
}
