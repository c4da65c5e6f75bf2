//! Analytics shares against the real Kafka and `serve`: each grantee's `subject_key`s are the
//! HMAC of the person's normalized address under the key of its own grant, and under no other
//! grant's key, so two grantees cannot join their shares. The keys are taken where they rest,
//! sealed in the `grants` topic, and opened with the KEK `serve` was given.

use anyhow::{ensure, Context, Result};
use apache_avro::types::Value;
use arrow::array::{Array, AsArray};
use std::collections::{BTreeMap, BTreeSet};
use std::process::Command;
use std::time::{Duration, Instant};
use tributary_tests::*;
use tributary_view::grants::{subject_key, Grant, Kek};

const T0: i64 = 1_762_000_000_000_000; // 2025-11-01
const PEOPLE: [&str; 4] = ["a1@example.com", "a2@example.com", "a3@example.com", "a4@example.com"];

fn user_row(tenant: &str, email: &str, time: i64, country: &str) -> Vec<(String, Value)> {
    [
        ("tenant_id", Value::String(tenant.into())),
        ("event_id", Value::String(format!("{email}-{time}"))),
        ("event_time", Value::TimestampMicros(time)),
        ("ingested_at", Value::TimestampMicros(time)),
        ("source", Value::String("json".into())),
        ("email", Value::String(email.into())),
        (
            "email_sha256",
            Value::String(tributary_engine::normalize::sha256_hex(email)),
        ),
        ("user_id", Value::String(format!("u-{email}"))),
        ("country", Value::String(country.into())),
        ("attributes", Value::Map(Default::default())),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v))
    .collect()
}

fn write_lake(uri: &str) -> Result<()> {
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    rt.block_on(async {
        let lake = tributary_lake::Lake::new(uri)?;
        let schema = tributary_lake::convert::arrow_schema(tributary_lake::chain_schema("users").context("users")?)?;
        let mut table = lake.open_or_create("users", &schema).await?;
        let rows: Vec<_> = PEOPLE
            .iter()
            .enumerate()
            .map(|(i, e)| user_row("acme", e, T0 + i as i64 * 1_000_000, "US"))
            .chain([user_row("globex", "g1@example.com", T0, "DE")])
            .collect();
        let batch = tributary_lake::convert::to_batch(tributary_lake::table::table_arrow_schema(&table)?, &rows)?;
        tributary_lake::Lake::commit(&mut table, batch, &BTreeMap::new(), &BTreeMap::new(), 1 << 20).await?;
        anyhow::Ok(())
    })
}

fn tributary(ns: &str, kek_file: &str, endpoint: &str, args: &[&str]) -> Result<String> {
    tributary_ok(
        args,
        &[
            ("TOPIC_NAMESPACE", ns),
            ("SHARING_ENDPOINT", endpoint),
            ("GRANTS_KEK_FILE", kek_file),
        ],
    )
}

/// Every `subject_key` of the grant's `users` table, read as a client does: the query's file
/// URLs, then the files. Waits until the table is materialized.
fn shared_keys(serve: &Serve, grant: &serde_json::Value) -> Result<Vec<String>> {
    let id = grant["grant_id"].as_str().context("grant_id")?;
    let token = grant["profile"]["bearerToken"].as_str().context("bearerToken")?;
    let http = reqwest::blocking::Client::new();
    let deadline = Instant::now() + Duration::from_secs(60);
    let files: Vec<String> = loop {
        let r = http
            .post(serve.url(&format!(
                "/delta-sharing/shares/{id}/schemas/default/tables/users/query"
            )))
            .bearer_auth(token)
            .header("content-type", "application/json")
            .body("{}")
            .send()?;
        if r.status().as_u16() == 200 {
            let urls: Vec<String> = r
                .text()?
                .lines()
                .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
                .filter_map(|v| v["file"]["url"].as_str().map(str::to_owned))
                .collect();
            if !urls.is_empty() {
                break urls;
            }
        }
        ensure!(Instant::now() < deadline, "grant {id}: users not shared within 60 s");
        std::thread::sleep(Duration::from_millis(300));
    };
    let mut keys = Vec::new();
    for url in files {
        let bytes = http.get(&url).send()?.error_for_status()?.bytes()?;
        for b in tributary_lake::table::decode_parquet(bytes, Some(&["subject_key"]))? {
            let col = b.column(0).as_string::<i32>();
            keys.extend((0..col.len()).map(|i| col.value(i).to_owned()));
        }
    }
    Ok(keys)
}

/// The grants as the topic holds them, sealed keys included.
fn sealed_grants(ns: &str) -> Result<BTreeMap<String, Grant>> {
    let mut out = BTreeMap::new();
    for r in read_all(&topic(ns, "grants".into()))? {
        let id = String::from_utf8(r.key.context("grant key")?)?;
        match r.value {
            Some(v) => out.insert(id, serde_json::from_slice(&v)?),
            None => out.remove(&id),
        };
    }
    Ok(out)
}

/// Grant `id`'s key, opened from its sealed form on the topic with `kek`.
fn grant_key(sealed: &BTreeMap<String, Grant>, id: &str, kek: &Kek) -> Result<[u8; 32]> {
    let grant = sealed.get(id).with_context(|| format!("grant {id} not on the topic"))?;
    ensure!(!grant.key_enc.is_empty(), "grant {id}: no sealed key");
    grant.key(kek).map_err(anyhow::Error::msg)
}

/// `tributary grant create` of acme's `users` (column `country`) to `to`, for analytics.
fn analytics_grant(to: &str) -> [&str; 14] {
    [
        "grant",
        "create",
        "--from",
        "acme",
        "--to",
        to,
        "--chains",
        "users",
        "--columns",
        "country",
        "--purpose",
        "analytics",
        "--expires",
        "2099-12-31",
    ]
}

/// A fresh namespace, a lake of [`PEOPLE`] in its own directory, and a fresh KEK in a file
/// (the one serve is given and the CLI seals with): (namespace, lake dir, lake, KEK file, its path).
fn fixture_lake() -> Result<(String, std::path::PathBuf, String, std::path::PathBuf, String)> {
    let ns = format!("t{}", &uuid::Uuid::new_v4().simple().to_string()[..10]);
    let dir = std::env::temp_dir().join(format!("{ns}-lake"));
    std::fs::create_dir_all(&dir)?;
    let lake = dir.to_str().context("utf-8 path")?.to_owned();
    write_lake(&lake)?;
    let kek_file = dir.join("kek");
    std::fs::write(&kek_file, hex::encode(rand::random::<[u8; 32]>()))?;
    let kek_path = kek_file.to_str().context("utf-8 path")?.to_owned();
    Ok((ns, dir, lake, kek_file, kek_path))
}

#[test]
fn each_grantees_keys_are_the_hmac_under_its_own_grant_key_only() -> Result<()> {
    let (ns, dir, lake, kek_file, kek_path) = fixture_lake()?;
    let tributary = |endpoint: &str, args: &[&str]| tributary(&ns, &kek_path, endpoint, args);
    tributary("", &["topics", "--namespace", &ns, "--partitions", "1"])?;
    secure_namespace(&ns)?;
    let mut serve = Serve::start(&ns, &lake, &[("SHARING_REFRESH", "1s"), ("GRANTS_KEK_FILE", &kek_path)])?;
    let endpoint = serve.url("/delta-sharing");
    let grant = |to: &str| -> Result<serde_json::Value> {
        let out = tributary(&endpoint, &analytics_grant(to))?;
        Ok(serde_json::from_str(out.trim())?)
    };
    let (globex, initech) = (grant("globex")?, grant("initech")?);
    let got = [shared_keys(&serve, &globex)?, shared_keys(&serve, &initech)?];

    let sealed = sealed_grants(&ns)?;
    let kek = Kek::load(Some(&kek_file), false)
        .map_err(anyhow::Error::msg)
        .context("opening the test's KEK")?;
    let keys: Vec<[u8; 32]> = [&globex, &initech]
        .iter()
        .map(|g| grant_key(&sealed, g["grant_id"].as_str().unwrap_or_default(), &kek))
        .collect::<Result<_>>()?;
    ensure!(keys[0] != keys[1], "each grant has its own key");
    // The local development KEK opens neither: the keys were sealed under the given KEK.
    for id in sealed.keys() {
        ensure!(
            sealed[id].key(&Kek::local()).is_err(),
            "grant {id} opens under the local KEK"
        );
    }
    for (i, share) in got.iter().enumerate() {
        let own: BTreeSet<String> = PEOPLE.iter().map(|e| subject_key(&keys[i], e)).collect();
        let other: BTreeSet<String> = PEOPLE.iter().map(|e| subject_key(&keys[1 - i], e)).collect();
        let share: BTreeSet<String> = share.iter().cloned().collect();
        assert_eq!(
            share.len(),
            PEOPLE.len(),
            "one row per acme person, globex's not shared"
        );
        assert_eq!(
            share, own,
            "grantee {i}: the HMAC of each address under its own grant key"
        );
        assert!(
            share.is_disjoint(&other),
            "grantee {i}: no key under the other grant's key"
        );
        // Nor the plain hash, nor a keyless HMAC.
        for e in PEOPLE {
            assert!(!share.contains(&tributary_engine::normalize::sha256_hex(e)));
            assert!(!share.contains(&subject_key(&[0u8; 32], e)));
        }
    }
    serve.stop()?;
    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
}

/// Every string value of every Parquet file under `dir` (recursively), as `column=value`.
fn strings_under(dir: &std::path::Path) -> Result<Vec<String>> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d)? {
            let p = e?.path();
            if p.is_dir() {
                stack.push(p);
            } else if p.extension().is_some_and(|x| x == "parquet") {
                for b in tributary_lake::table::decode_parquet(std::fs::File::open(&p)?, None)? {
                    for (i, f) in b.schema().fields().iter().enumerate() {
                        if let Some(col) = b.column(i).as_string_opt::<i32>() {
                            out.extend((0..col.len()).map(|r| format!("{}={}", f.name(), col.value(r))));
                        }
                    }
                }
            }
        }
    }
    Ok(out)
}

/// An erased person leaves the shares too: after `tributary erase` and the next refresh, no
/// file under the grant's shared tables (live or not) holds their data, and the others stay.
#[test]
fn an_erased_person_leaves_every_share() -> Result<()> {
    let (ns, dir, lake, kek_file, kek_path) = fixture_lake()?;
    let cli = |args: &[&str]| tributary(&ns, &kek_path, "", args);
    cli(&["topics", "--namespace", &ns, "--partitions", "1"])?;
    let grant: serde_json::Value = serde_json::from_str(&cli(&analytics_grant("globex"))?)?;
    let id = grant["grant_id"].as_str().context("grant_id")?;
    let shares = dir.join("_shares").join(id);
    // The people as the share names them: the HMAC of the address under the grant's key.
    let kek = Kek::load(Some(&kek_file), false).map_err(anyhow::Error::msg)?;
    let key = grant_key(&sealed_grants(&ns)?, id, &kek)?;
    let (gone, kept) = (
        format!("subject_key={}", subject_key(&key, PEOPLE[0])),
        format!("subject_key={}", subject_key(&key, PEOPLE[1])),
    );

    cli(&["share", "refresh", "--lake", &lake])?;
    let before = strings_under(&shares)?;
    ensure!(
        before.contains(&gone) && before.contains(&kept),
        "the share holds both before: {before:?}"
    );

    let out = Command::new(bin("tributary"))
        .args([
            "erase",
            "--lake",
            &lake,
            "--tenant",
            "acme",
            "--email",
            PEOPLE[0],
            "--namespace",
            &ns,
        ])
        .env("KAFKA_BOOTSTRAP", kafka())
        .output()?;
    ensure!(out.status.success(), "erase: {}", String::from_utf8_lossy(&out.stderr));
    cli(&["share", "refresh", "--lake", &lake])?;
    let after = strings_under(&shares)?;
    ensure!(
        !after.iter().any(|s| s == &gone),
        "an erased person's data is still in a file of the share: {:?}",
        gone
    );
    ensure!(after.contains(&kept), "the others stay shared: {after:?}");
    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
}
