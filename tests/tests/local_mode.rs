//! Built-in tenants, tokens and keys exist only in local mode (`TRIBUTARY_LOCAL=1`, which
//! `.infra/env` sets for `make up`, the demo and the tests, or a Kafka on loopback addresses
//! when it is unset). Each binary started with `TRIBUTARY_LOCAL=0` (as every Kubernetes
//! manifest sets it) and without configured tenants, tokens or keys refuses to start, naming
//! what is missing; with them configured it starts, and the demo tokens are not accepted.

use anyhow::{ensure, Result};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};
use tributary_tests::*;

/// Runs `binary` with only `env` and `TRIBUTARY_LOCAL=0`: its exit status and stderr, or None
/// when it was still running after `wait` (then it is killed).
fn run_outside_local_mode(
    binary: &str,
    args: &[&str],
    env: &[(&str, &str)],
    wait: Duration,
) -> Result<Option<(i32, String)>> {
    let log = std::env::temp_dir().join(format!("local-mode-{binary}-{}.log", uuid::Uuid::new_v4().simple()));
    let mut child = Command::new(bin(binary))
        .args(args)
        .env_clear()
        .env("PATH", "/usr/bin:/bin")
        .env("KAFKA_BOOTSTRAP", kafka())
        .env("SCHEMA_REGISTRY_URL", registry())
        .env("TRIBUTARY_LOCAL", "0")
        .envs(env.iter().copied())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log)?)
        .spawn()?;
    let deadline = Instant::now() + wait;
    let out = loop {
        if let Some(st) = child.try_wait()? {
            break Some((st.code().unwrap_or(-1), std::fs::read_to_string(&log)?));
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let _ = std::fs::remove_file(&log);
    Ok(out)
}

fn refused(binary: &str, args: &[&str], env: &[(&str, &str)], says: &[&str]) -> Result<()> {
    let out = run_outside_local_mode(binary, args, env, Duration::from_secs(20))?;
    let Some((code, err)) = out else {
        anyhow::bail!("{binary} started outside local mode without tenants or keys");
    };
    ensure!(code != 0, "{binary} exited 0 outside local mode: {err}");
    for s in says {
        ensure!(err.contains(s), "{binary}: the error does not say {s:?}: {err}");
    }
    println!(
        "{binary} refused (exit {code}): {}",
        err.lines().last().unwrap_or_default()
    );
    Ok(())
}

#[test]
fn no_built_in_tenants_tokens_or_keys_outside_local_mode() -> Result<()> {
    let port = free_port().to_string();
    let metrics = free_port().to_string();
    // A chain service without tenants.
    refused(
        "users",
        &[],
        &[("METRICS_PORT", &metrics)],
        &["no tenants configured", "TRIBUTARY_LOCAL=1"],
    )?;
    // The gateway without tenants.
    refused(
        "ingest",
        &[],
        &[("PORT", &port)],
        &["no tenants configured", "TRIBUTARY_LOCAL=1"],
    )?;
    // serve without a tokens file or a KEK.
    refused(
        "serve",
        &[],
        &[("PORT", &port), ("METRICS_PORT", &metrics)],
        &["no tenants configured", "GRANTS_KEK_FILE"],
    )?;
    // serve with a tenant named but no token for it.
    let dir = std::env::temp_dir().join(format!("local-mode-{}", uuid::Uuid::new_v4().simple()));
    std::fs::create_dir_all(&dir)?;
    let tokens = dir.join("tokens");
    std::fs::write(&tokens, format!("acme {}\n", hex::encode(sha2_digest(b"prod-token"))))?;
    let kek = dir.join("kek");
    std::fs::write(
        &kek,
        "00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff\n",
    )?;
    let (tokens_s, kek_s) = (
        tokens.to_string_lossy().into_owned(),
        kek.to_string_lossy().into_owned(),
    );
    refused(
        "serve",
        &[],
        &[
            ("PORT", &port),
            ("METRICS_PORT", &metrics),
            ("TENANTS", "acme,globex"),
            ("TENANT_TOKENS_FILE", &tokens_s),
            ("GRANTS_KEK_FILE", &kek_s),
        ],
        &["tenant 'globex' has no token"],
    )?;
    // The CLI does not seal a grant with the development key.
    refused(
        "tributary",
        &[
            "grant",
            "create",
            "--from",
            "acme",
            "--to",
            "globex",
            "--chains",
            "users",
            "--columns",
            "country",
            "--purpose",
            "enrichment",
            "--expires",
            "2099-01-01",
            "--tenants",
            "acme,globex",
        ],
        &[(
            "TOPIC_NAMESPACE",
            &format!("t{}", &uuid::Uuid::new_v4().simple().to_string()[..10]),
        )],
        &["GRANTS_KEK_FILE"],
    )?;
    // Configured: serve starts, answers its own tenant's token and not the demo token.
    let mut s = Command::new(bin("serve"))
        .env_clear()
        .env("PATH", "/usr/bin:/bin")
        .env("KAFKA_BOOTSTRAP", kafka())
        .env("SCHEMA_REGISTRY_URL", registry())
        .env("PORT", &port)
        .env("METRICS_PORT", &metrics)
        .env("TRIBUTARY_LOCAL", "0")
        .env("LAKE_URI", dir.join("lake"))
        .env("TOPIC_NAMESPACE", namespace_all(1)?)
        .env("TENANT_TOKENS_FILE", &tokens_s)
        .env("GRANTS_KEK_FILE", &kek_s)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()?;
    let http = reqwest::blocking::Client::new();
    let url = format!("http://127.0.0.1:{port}/v1/tenants/acme/suppression?email=ann@example.com");
    let deadline = Instant::now() + Duration::from_secs(60);
    let answer = |token: &str| http.get(&url).bearer_auth(token).send().map(|r| r.status().as_u16());
    loop {
        ensure!(s.try_wait()?.is_none(), "serve exited with its tenants configured");
        // 200 for the configured token once ready (503 before), then 401 for the demo one.
        if let Ok(200) = answer("prod-token") {
            let demo = answer("acme-local-token")?;
            ensure!(demo == 401, "the demo token got {demo} outside local mode");
            break;
        }
        ensure!(
            Instant::now() < deadline,
            "serve not answering its configured tenant within 60 s"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    let _ = s.kill();
    let _ = s.wait();
    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
}

fn sha2_digest(b: &[u8]) -> [u8; 32] {
    use sha2::Digest;
    sha2::Sha256::digest(b).into()
}
