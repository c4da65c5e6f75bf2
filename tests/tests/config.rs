//! One way to configure every binary (`tributary_engine::settings`): each binary's `--help`
//! comes from clap and lists every setting with its environment variable, and every setting
//! the help lists is accepted from the TOML file, from the environment and from its flag,
//! each winning over the one before (checked with `--print-config`, which prints the
//! resolved settings and exits). Runs the release binaries; needs no infrastructure.

use anyhow::{bail, ensure, Context, Result};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use tributary_tests::bin;

/// The binaries with settings; for `tributary` (the CLI) its global settings, which every
/// subcommand shares.
const BINARIES: &[&str] = &[
    "users",
    "unsubscribes",
    "blocklists",
    "subscriptions",
    "mailings",
    "sink",
    "ingest",
    "serve",
    "tributary",
];

/// A variable each binary refuses a value of, with that value: the bad value of the check
/// that every problem is named at once.
fn bad_value(binary: &str) -> (&'static str, &'static str) {
    match binary {
        "tributary" => ("TOPIC_RETENTION", "soon"),
        _ => ("METRICS_PORT", "not-a-port"),
    }
}

/// One setting as `--help` lists it: flag, environment variable, file key.
#[derive(Debug)]
struct Setting {
    flag: String,
    env: String,
    key: String,
}

/// `--help` of `binary`: every flag that takes a value and names an environment variable.
fn help(binary: &str) -> Result<(String, Vec<Setting>)> {
    let out = Command::new(bin(binary))
        .arg("--help")
        .env_clear()
        .output()
        .with_context(|| format!("running {binary} --help (cargo build --release first)"))?;
    ensure!(out.status.success(), "{binary} --help: {:?}", out.status);
    let text = String::from_utf8(out.stdout)?;
    // Blocks: one per option, from its `--flag <VALUE>` line to the next option.
    let mut blocks: Vec<String> = Vec::new();
    for line in text.lines() {
        let t = line.trim_start();
        if t.starts_with("--") || (t.starts_with('-') && t.get(2..4) == Some(", ")) {
            blocks.push(String::new());
        }
        if let Some(b) = blocks.last_mut() {
            b.push_str(line);
            b.push('\n');
        }
    }
    let mut settings = Vec::new();
    for b in &blocks {
        let first = b.lines().next().unwrap_or_default();
        let Some(flag) = first.split_whitespace().find(|w| w.starts_with("--")) else {
            continue;
        };
        let flag = flag.trim_end_matches(',').to_owned();
        let takes_value = first.contains('<');
        let env = b
            .split("[env: ")
            .nth(1)
            .and_then(|rest| rest.split(']').next())
            .map(|e| e.split('=').next().unwrap_or(e).to_owned());
        match (takes_value, env) {
            (true, Some(env)) if flag != "--config" => settings.push(Setting {
                key: flag.trim_start_matches("--").replace('-', "_"),
                flag,
                env,
            }),
            (true, None) => bail!("{binary} --help: {flag} takes a value but names no environment variable:\n{b}"),
            _ => {}
        }
    }
    Ok((text, settings))
}

/// A value for each setting, as its text (the environment and the flag) and as the TOML the
/// file holds and `--print-config` prints. Every setting any `--help` lists needs one here.
fn samples(dir: &Path) -> Result<BTreeMap<&'static str, (String, String)>> {
    let tokens = dir.join("tokens");
    std::fs::write(
        &tokens,
        "acme 2fb9804a5a0ec55af27254f818ca65c4fa55b7062881701d79bca25bb1cdbe38\n",
    )?;
    let path = |p: &Path| p.to_string_lossy().into_owned();
    let s = |v: &str| (v.to_owned(), format!("{v:?}"));
    let n = |v: &str| (v.to_owned(), v.to_owned());
    Ok(BTreeMap::from([
        ("kafka_bootstrap", s("127.0.0.2:9092")),
        ("schema_registry_url", s("http://127.0.0.1:18081/apis/ccompat/v7")),
        ("tenants", ("acme,globex".into(), r#"["acme", "globex"]"#.into())),
        ("dedup_window", s("2h")),
        ("commit_interval", s("250ms")),
        ("stall_limit", s("3m")),
        ("max_batch_records", n("123")),
        ("max_record_bytes", n("4096")),
        ("instance_id", s("7")),
        ("group_id", s("group-one")),
        ("metrics_port", n("9999")),
        ("topic_namespace", s("ns1")),
        ("lake_uri", s("/tmp/tributary-config-lake")),
        ("chains", ("users,mailings".into(), r#"["users", "mailings"]"#.into())),
        ("max_rows", n("10")),
        ("max_bytes", n("2048")),
        ("max_age", s("3s")),
        ("target_file_size", n("4096")),
        ("port", n("9998")),
        ("max_body_bytes", n("1000")),
        ("max_upload_bytes", n("5000")),
        ("delivery_timeout", s("20s")),
        ("request_timeout", s("10s")),
        ("max_concurrent_requests", n("8")),
        ("require_provider_signatures", n("false")),
        ("signature_max_age", s("10m")),
        ("replay_cache_entries", n("10")),
        ("tenant_tokens_file", s(&path(&tokens))),
        ("hold_tenants", ("acme".into(), r#"["acme"]"#.into())),
        ("rate_limit", n("5")),
        ("grants_kek_file", s("/run/secrets/kek")),
        ("sharing_refresh", s("off")),
        ("sharing_url_ttl", s("5m")),
        ("audit_log", s("/tmp/tributary-config-audit.log")),
        ("pushgateway", s("http://127.0.0.1:19091")),
        ("topic_retention", s("20h")),
    ]))
}

/// `binary --print-config` with only `env` and `args`: the printed settings.
fn print_config(binary: &str, args: &[&str], env: &[(&str, &str)]) -> Result<toml::Table> {
    let out = Command::new(bin(binary))
        .arg("--print-config")
        .args(args)
        .env_clear()
        .env("TRIBUTARY_LOCAL", "1")
        .envs(env.iter().copied())
        .output()?;
    let (stdout, stderr) = (
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
    );
    ensure!(
        out.status.success(),
        "{binary} --print-config {args:?} {env:?}: {:?}\n{stderr}{stdout}",
        out.status
    );
    stdout
        .parse::<toml::Table>()
        .with_context(|| format!("{binary} printed:\n{stdout}"))
}

fn value(toml_text: &str) -> Result<toml::Value> {
    let t: toml::Table = format!("v = {toml_text}").parse()?;
    Ok(t["v"].clone())
}

#[test]
fn every_help_lists_every_setting_with_its_variable() -> Result<()> {
    for binary in BINARIES {
        let (text, settings) = help(binary)?;
        ensure!(!settings.is_empty(), "{binary} --help lists no settings:\n{text}");
        for part in ["--config", "[env: TRIBUTARY_CONFIG]", "--print-config", "KAFKA_PROP_"] {
            ensure!(text.contains(part), "{binary} --help lacks {part}:\n{text}");
        }
        for s in &settings {
            ensure!(
                s.env
                    .chars()
                    .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_'),
                "{binary}: {} names variable '{}'",
                s.flag,
                s.env
            );
        }
    }
    // The chain services name the variables the deployments set.
    let (_, chain) = help("users")?;
    let vars: Vec<&str> = chain.iter().map(|s| s.env.as_str()).collect();
    for v in [
        "KAFKA_BOOTSTRAP",
        "SCHEMA_REGISTRY_URL",
        "TENANTS",
        "DEDUP_WINDOW",
        "COMMIT_INTERVAL",
        "MAX_BATCH_RECORDS",
        "MAX_RECORD_BYTES",
        "INSTANCE_ID",
        "GROUP_ID",
        "METRICS_PORT",
        "TOPIC_NAMESPACE",
    ] {
        ensure!(vars.contains(&v), "users --help lacks {v}: {vars:?}");
    }
    let (_, sink) = help("sink")?;
    let vars: Vec<&str> = sink.iter().map(|s| s.env.as_str()).collect();
    for v in [
        "LAKE_URI",
        "CHAINS",
        "FLUSH_MAX_ROWS",
        "FLUSH_MAX_BYTES",
        "FLUSH_MAX_AGE",
        "TARGET_FILE_SIZE",
        "STALL_LIMIT",
    ] {
        ensure!(vars.contains(&v), "sink --help lacks {v}: {vars:?}");
    }
    // The CLI: the settings its subcommands share, each with the variable it read before.
    let (_, cli) = help("tributary")?;
    let vars: Vec<&str> = cli.iter().map(|s| s.env.as_str()).collect();
    for v in [
        "KAFKA_BOOTSTRAP",
        "SCHEMA_REGISTRY_URL",
        "TOPIC_NAMESPACE",
        "LAKE_URI",
        "TRIBUTARY_PUSHGATEWAY",
        "TOPIC_RETENTION",
    ] {
        ensure!(vars.contains(&v), "tributary --help lacks {v}: {vars:?}");
    }
    Ok(())
}

#[test]
fn every_setting_from_file_environment_and_flag() -> Result<()> {
    let dir: PathBuf = std::env::temp_dir().join(format!("tributary-config-{}", uuid::Uuid::new_v4().simple()));
    std::fs::create_dir_all(&dir)?;
    let samples = samples(&dir)?;
    for binary in BINARIES {
        let (_, settings) = help(binary)?;
        let defaults = print_config(binary, &[], &[])?;
        for s in &settings {
            let Some((text, toml_text)) = samples.get(s.key.as_str()) else {
                bail!(
                    "{binary}: no sample value for setting {} ({}): add one to samples()",
                    s.key,
                    s.env
                );
            };
            let want = value(toml_text)?;
            ensure!(
                defaults.get(&s.key) != Some(&want),
                "{binary} {}: the sample is the default",
                s.key
            );
            // The file.
            let file = dir.join(format!("{binary}-{}.toml", s.key));
            std::fs::write(&file, format!("{} = {toml_text}\n", s.key))?;
            let file = file.to_string_lossy().into_owned();
            let got = print_config(binary, &["--config", &file], &[])?;
            ensure!(
                got.get(&s.key) == Some(&want),
                "{binary} {} from the file: {got:?}",
                s.key
            );
            let got = print_config(binary, &[], &[("TRIBUTARY_CONFIG", &file)])?;
            ensure!(
                got.get(&s.key) == Some(&want),
                "{binary} {} from TRIBUTARY_CONFIG: {got:?}",
                s.key
            );
            // The environment, over the file.
            let other = dir.join(format!("{binary}-{}-default.toml", s.key));
            let default_line = match defaults.get(&s.key) {
                Some(v) => format!("{} = {v}\n", s.key),
                None => String::new(),
            };
            std::fs::write(&other, default_line)?;
            let other = other.to_string_lossy().into_owned();
            let got = print_config(binary, &["--config", &other], &[(s.env.as_str(), text)])?;
            ensure!(
                got.get(&s.key) == Some(&want),
                "{binary} {} from {}: {got:?}",
                s.key,
                s.env
            );
            // The flag, over the environment.
            let flagged = format!("{}={text}", s.flag);
            let env_default = match defaults.get(&s.key) {
                Some(toml::Value::String(v)) => v.clone(),
                Some(toml::Value::Array(a)) => a
                    .iter()
                    .map(|v| v.as_str().map_or_else(|| v.to_string(), str::to_owned))
                    .collect::<Vec<_>>()
                    .join(","),
                Some(v) => v.to_string(),
                None => String::new(),
            };
            let got = print_config(binary, &[&flagged], &[(s.env.as_str(), &env_default)])?;
            ensure!(
                got.get(&s.key) == Some(&want),
                "{binary} {} from {}: {got:?}",
                s.key,
                s.flag
            );
        }
        // Unknown keys are refused, and every problem is named at once.
        let bad = dir.join(format!("{binary}-bad.toml"));
        std::fs::write(&bad, "no_such_setting = 1\n")?;
        let (var, wrong) = bad_value(binary);
        let out = Command::new(bin(binary))
            .args(["--print-config", "--config"])
            .arg(&bad)
            .env_clear()
            .env("TRIBUTARY_LOCAL", "1")
            .env(var, wrong)
            .output()?;
        let all = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stderr),
            String::from_utf8_lossy(&out.stdout)
        );
        ensure!(
            out.status.code() == Some(2),
            "{binary} with a bad file: {:?}\n{all}",
            out.status
        );
        for part in ["no_such_setting".to_owned(), format!("{var}='{wrong}'")] {
            ensure!(all.contains(&part), "{binary}: {part} not in {all}");
        }
    }
    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
}

/// `tributary`'s settings are its subcommands' too: the file's (by `--config` before the
/// subcommand or `TRIBUTARY_CONFIG`), a global flag's after the subcommand, and a bad file
/// stops any subcommand with exit 2, every problem named.
#[test]
fn tributary_subcommands_take_the_global_settings() -> Result<()> {
    let dir: PathBuf = std::env::temp_dir().join(format!("tributary-cli-config-{}", uuid::Uuid::new_v4().simple()));
    std::fs::create_dir_all(&dir)?;
    let run = |args: &[&str], env: &[(&str, &str)]| -> Result<std::process::Output> {
        Ok(Command::new(bin("tributary"))
            .args(args)
            .env_clear()
            .envs(env.iter().copied())
            .output()?)
    };
    let text = |o: &std::process::Output| {
        format!(
            "{}{}",
            String::from_utf8_lossy(&o.stderr),
            String::from_utf8_lossy(&o.stdout)
        )
    };
    // `tables` needs a lake: none given is a usage error naming the ways to give one.
    let out = run(&["tables", "--json"], &[])?;
    ensure!(out.status.code() == Some(2), "tables without a lake: {}", text(&out));
    ensure!(text(&out).contains("LAKE_URI"), "{}", text(&out));
    // The file's lake, by --config and by TRIBUTARY_CONFIG.
    let lake = dir.join("lake");
    let file = dir.join("cli.toml");
    std::fs::write(
        &file,
        format!(
            "lake_uri = {:?}\ntopic_namespace = \"ns1\"\n[kafka]\n\"security.protocol\" = \"PLAINTEXT\"\n",
            lake.to_string_lossy()
        ),
    )?;
    let file_s = file.to_string_lossy().into_owned();
    for out in [
        run(&["--config", &file_s, "tables", "--json"], &[])?,
        run(&["tables", "--json"], &[("TRIBUTARY_CONFIG", &file_s)])?,
    ] {
        ensure!(out.status.success(), "tables with the file's lake: {}", text(&out));
        let tables: serde_json::Value = serde_json::from_slice(&out.stdout)?;
        ensure!(tables.as_array().is_some_and(|t| !t.is_empty()), "{tables}");
    }
    // A global flag after the subcommand wins over the file and the environment.
    let got = print_config(
        "tributary",
        &["--config", &file_s, "topics", "--kafka-bootstrap", "127.0.0.3:9092"],
        &[
            ("KAFKA_BOOTSTRAP", "127.0.0.2:9092"),
            ("KAFKA_PROP_SASL_MECHANISM", "PLAIN"),
        ],
    )?;
    ensure!(
        got.get("kafka_bootstrap") == Some(&value("\"127.0.0.3:9092\"")?),
        "{got:?}"
    );
    ensure!(got.get("topic_namespace") == Some(&value("\"ns1\"")?), "{got:?}");
    let kafka = got.get("kafka").and_then(|k| k.as_table()).context("a [kafka] table")?;
    ensure!(
        kafka.get("security.protocol").and_then(|v| v.as_str()) == Some("PLAINTEXT")
            && kafka.get("sasl.mechanism").and_then(|v| v.as_str()) == Some("PLAIN"),
        "the file's and the environment's librdkafka properties: {kafka:?}"
    );
    // A bad file stops a subcommand, not only --print-config: every problem at once.
    let bad = dir.join("bad.toml");
    std::fs::write(&bad, "no_such_setting = 1\nlake_uri = 5\n")?;
    let bad_s = bad.to_string_lossy().into_owned();
    let out = run(&["--config", &bad_s, "chains"], &[("TOPIC_RETENTION", "soon")])?;
    ensure!(out.status.code() == Some(2), "chains with a bad file: {}", text(&out));
    for part in ["no_such_setting", "lake_uri", "TOPIC_RETENTION='soon'"] {
        ensure!(text(&out).contains(part), "{part} not in {}", text(&out));
    }
    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
}

/// `tributary chains` prints the registry's chains (`schemas/chains.txt`, which the ctl
/// crate's tests check the registry against), in its order; `--json` the same chains with
/// their ports.
#[test]
fn tributary_chains_is_the_registry_file() -> Result<()> {
    let lines: Vec<(String, u16)> = tributary_engine::chains::ALL
        .iter()
        .map(|c| (c.name.to_owned(), c.port))
        .collect();
    let out = Command::new(bin("tributary")).arg("chains").output()?;
    ensure!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let names: Vec<String> = String::from_utf8(out.stdout)?.lines().map(str::to_owned).collect();
    assert_eq!(names, lines.iter().map(|(n, _)| n.clone()).collect::<Vec<_>>());
    let out = Command::new(bin("tributary")).args(["chains", "--json"]).output()?;
    ensure!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let json: serde_json::Value = serde_json::from_slice(&out.stdout)?;
    let got: Vec<(String, u16)> = json
        .as_array()
        .context("an array")?
        .iter()
        .map(|c| {
            (
                c["name"].as_str().unwrap_or_default().to_owned(),
                c["port"].as_u64().unwrap_or(0) as u16,
            )
        })
        .collect();
    assert_eq!(got, lines);
    Ok(())
}
