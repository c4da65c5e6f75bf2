use super::urls::{sign, verify, FileRef, Refused};
use super::valid_name;

#[test]
fn names_outside_the_safe_set_are_refused() {
    for ok in ["g-0123abcd", "default", "users", "A_b-9"] {
        assert!(valid_name(ok), "{ok}");
    }
    for bad in ["", "..", "a/b", "a%2Fb", "a.b", "a b", "ü", &"x".repeat(256)] {
        assert!(!valid_name(bad), "{bad}");
    }
}

#[test]
fn file_urls_are_signed_and_expire() {
    let key = [3u8; 32];
    let f = FileRef {
        grant: "g-1".into(),
        chain: "users".into(),
        file: "abc".into(),
        expires_ms: 2_000,
    };
    let t = sign(&key, &f);
    assert_eq!(verify(&key, &t, 1_000), Ok(f.clone()));
    assert_eq!(verify(&key, &t, 2_000), Err(Refused::Expired));
    assert_eq!(verify(&[4u8; 32], &t, 1_000), Err(Refused::BadSignature));
    let tampered = t.replace("users", "mailings");
    assert_eq!(verify(&key, &tampered, 1_000), Err(Refused::BadSignature));
    let later = t.replace(".2000.", ".9000.");
    assert_eq!(verify(&key, &later, 1_000), Err(Refused::BadSignature));
    assert_eq!(verify(&key, "g-1.users.abc", 1_000), Err(Refused::Malformed));
    assert_eq!(verify(&key, &t.replace("abc", "..%2F"), 1_000), Err(Refused::Malformed));
}

mod materialize {
    use crate::config::{Config, Settings};
    use crate::sharing::materialize::{read_manifest, refresh_all, shares_store, Manifest};
    use crate::App;
    use apache_avro::types::Value;
    use std::collections::BTreeMap;
    use std::sync::Arc;
    use tributary_view::event::{parse_sha, BlockAction, BlockKind, Event, Kind, USER_FIELDS};
    use tributary_view::grants::{create, Purpose, Request};

    const DAY: i64 = 86_400_000_000;
    const T0: i64 = 1_762_000_000_000_000; // 2025-11-01

    fn user_row(tenant: &str, email: &str, time: i64, country: &str) -> Vec<(String, Value)> {
        let sha = tributary_engine::normalize::sha256_hex(email);
        [
            ("tenant_id", Value::String(tenant.into())),
            ("event_id", Value::String(format!("{email}-{time}"))),
            ("event_time", Value::TimestampMicros(time)),
            ("ingested_at", Value::TimestampMicros(time)),
            ("source", Value::String("json".into())),
            ("email", Value::String(email.into())),
            ("email_sha256", Value::String(sha)),
            ("user_id", Value::String(format!("u-{email}"))),
            ("country", Value::String(country.into())),
            ("city", Value::String("somewhere".into())),
            ("attributes", Value::Map(Default::default())),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v))
        .collect()
    }

    fn person(email: &str, time: i64, kind: Kind) -> Event {
        Event {
            tenant: "acme".into(),
            sha: parse_sha(&tributary_engine::normalize::sha256_hex(email)),
            email: Some(email.into()),
            time,
            kind,
        }
    }

    fn user(email: &str, time: i64) -> Event {
        person(
            email,
            time,
            Kind::User {
                fields: std::array::from_fn(|_| None::<String>),
                attributes: vec![],
            },
        )
    }

    async fn append(lake: &tributary_lake::Lake, rows: &[Vec<(String, Value)>]) {
        let avsc = tributary_lake::chain_schema("users").unwrap();
        let schema = tributary_lake::convert::arrow_schema(avsc).unwrap();
        let mut table = lake.open_or_create("users", &schema).await.unwrap();
        let ts = tributary_lake::table::table_arrow_schema(&table).unwrap();
        let batch = tributary_lake::convert::to_batch(ts, rows).unwrap();
        tributary_lake::Lake::commit(&mut table, batch, &BTreeMap::new(), &BTreeMap::new(), 1 << 20)
            .await
            .unwrap();
    }

    fn names(m: &Manifest) -> Vec<String> {
        m.shared().iter().map(|(n, _, _)| n.to_string()).collect()
    }

    #[test]
    fn refreshes_read_only_what_changed_and_drop_withheld_people() {
        let dir = std::env::temp_dir().join(format!("tributary-share-{}", uuid::Uuid::new_v4().simple()));
        std::fs::create_dir_all(&dir).unwrap();
        refresh_scenario(dir.to_str().unwrap(), Some(&dir));
        let _ = std::fs::remove_dir_all(&dir);
    }

    /// The same on HDFS, when the local infrastructure's HDFS is there (`make test` sets
    /// HDFS_URL from .infra/env).
    #[test]
    fn refreshes_on_hdfs() {
        let Ok(hdfs) = std::env::var("HDFS_URL") else {
            eprintln!("HDFS_URL not set: the HDFS variant is not run");
            return;
        };
        let uri = format!(
            "{}/tmp/tributary-share-{}",
            hdfs.trim_end_matches('/'),
            uuid::Uuid::new_v4().simple()
        );
        refresh_scenario(&uri, None);
    }

    fn refresh_scenario(uri: &str, local: Option<&std::path::Path>) {
        assert_eq!(USER_FIELDS[4], "country");
        let uri = uri.to_owned();
        let settings = Settings::load(
            Config {
                lake_uri: uri.clone(),
                ..Config::defaults()
            },
            &BTreeMap::from([("TRIBUTARY_LOCAL".to_owned(), "1".to_owned())]),
        )
        .unwrap();
        let app: Arc<App> = App::new(settings).unwrap();
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let lake = tributary_lake::Lake::new(&uri).unwrap();
        // a1 on day 1, a2 and b3 on day 2: two acme files; one globex file never shared.
        rt.block_on(append(
            &lake,
            &[
                user_row("acme", "a1@example.com", T0, "US"),
                user_row("acme", "a2@example.com", T0 + DAY, "FR"),
                user_row("acme", "b3@example.com", T0 + DAY, "JP"),
                user_row("globex", "g1@example.com", T0, "DE"),
            ],
        ));
        {
            let mut v = app.view.write().unwrap();
            for (e, t) in [
                ("a1@example.com", T0),
                ("a2@example.com", T0 + DAY),
                ("b3@example.com", T0 + DAY),
            ] {
                v.apply(user(e, t));
            }
        }
        let tenants: Vec<String> = ["acme", "globex", "initech"].map(String::from).to_vec();
        let now = tributary_engine::normalize::now_micros();
        let req = Request {
            grantor: "acme".into(),
            grantee: "globex".into(),
            chains: vec!["users".into()],
            columns: vec!["country".into()],
            purpose: Purpose::Analytics,
            expires: "2099-01-01".into(),
        };
        let (g, key, _) = create(&req, &tenants, &app.kek, now).unwrap();
        let gid = g.grant_id.clone();
        app.grants.write().unwrap().insert(gid.clone(), g);
        let store = shares_store(&uri).unwrap();

        let r = rt.block_on(refresh_all(&app, store.as_ref())).unwrap();
        assert_eq!((r.added, r.source_files_read, r.rewritten), (2, 2, 0));
        let m1 = rt
            .block_on(read_manifest(store.as_ref(), &gid, "users"))
            .unwrap()
            .unwrap();
        assert_eq!((m1.version, m1.rows(), m1.shared().len()), (1, 3, 2));
        assert_eq!(m1.columns, vec!["country".to_string()]);

        // Nothing changed: nothing read, same version.
        let r = rt.block_on(refresh_all(&app, store.as_ref())).unwrap();
        assert_eq!((r.added, r.source_files_read, r.rewritten, r.removed), (0, 0, 0, 0));
        let m2 = rt
            .block_on(read_manifest(store.as_ref(), &gid, "users"))
            .unwrap()
            .unwrap();
        assert_eq!(m2.version, 1);

        // a2 is blocked: only the day-2 file is rewritten, without a2's row.
        app.view.write().unwrap().apply(person(
            "a2@example.com",
            T0 + 2 * DAY,
            Kind::Block {
                action: BlockAction::Add,
                kind: BlockKind::Email,
                value: "a2@example.com".into(),
                reason: "MANUAL".into(),
                expires_at: None,
            },
        ));
        let r = rt.block_on(refresh_all(&app, store.as_ref())).unwrap();
        assert_eq!((r.added, r.source_files_read, r.rewritten), (0, 0, 1));
        let m3 = rt
            .block_on(read_manifest(store.as_ref(), &gid, "users"))
            .unwrap()
            .unwrap();
        assert_eq!((m3.version, m3.rows()), (2, 2));
        let (kept, changed): (Vec<String>, Vec<String>) = names(&m3).into_iter().partition(|n| names(&m1).contains(n));
        assert_eq!((kept.len(), changed.len()), (1, 1), "the day-1 file is untouched");
        assert!(m3
            .withheld
            .contains(&tributary_view::grants::subject_key(&key, "a2@example.com")));
        let stored: Vec<object_store::ObjectMeta> = rt
            .block_on(futures::TryStreamExt::try_collect(
                store.list(Some(&object_store::path::Path::from(format!("{gid}/users")))),
            ))
            .unwrap();
        let parquet = stored
            .iter()
            .filter(|o| o.location.as_ref().ends_with(".parquet"))
            .count();
        assert_eq!(parquet, 2, "the replaced file is deleted");

        // A new source file: only it is read.
        rt.block_on(append(&lake, &[user_row("acme", "a4@example.com", T0 + 3 * DAY, "IT")]));
        let r = rt.block_on(refresh_all(&app, store.as_ref())).unwrap();
        assert_eq!((r.added, r.source_files_read, r.rewritten), (1, 1, 0));
        let m4 = rt
            .block_on(read_manifest(store.as_ref(), &gid, "users"))
            .unwrap()
            .unwrap();
        assert_eq!((m4.version, m4.rows()), (3, 3));

        // a2 is unblocked (a later REMOVE): only the day-2 source file is read again, and a2's
        // row is back in the share.
        app.view.write().unwrap().apply(person(
            "a2@example.com",
            T0 + 4 * DAY,
            Kind::Block {
                action: BlockAction::Remove,
                kind: BlockKind::Email,
                value: "a2@example.com".into(),
                reason: "MANUAL".into(),
                expires_at: None,
            },
        ));
        let r = rt.block_on(refresh_all(&app, store.as_ref())).unwrap();
        assert_eq!((r.added, r.source_files_read, r.rewritten), (0, 1, 1));
        let m5 = rt
            .block_on(read_manifest(store.as_ref(), &gid, "users"))
            .unwrap()
            .unwrap();
        assert_eq!((m5.version, m5.rows()), (4, 4));
        assert!(m5.withheld.is_empty());
        assert!(m5.files.values().all(|f| f.dropped.is_empty()));
        // Nothing changed since: nothing read again.
        let r = rt.block_on(refresh_all(&app, store.as_ref())).unwrap();
        assert_eq!((r.source_files_read, r.rewritten), (0, 0));

        // Revoked: the grant's tables are deleted at the next refresh.
        app.grants.write().unwrap().remove(&gid);
        let r = rt.block_on(refresh_all(&app, store.as_ref())).unwrap();
        assert_eq!(r.grants_deleted, 1);
        let left: Vec<object_store::ObjectMeta> = rt
            .block_on(futures::TryStreamExt::try_collect(
                store.list(Some(&object_store::path::Path::from(gid.clone()))),
            ))
            .unwrap();
        assert!(left.is_empty(), "{left:?}");
        if let Some(dir) = local {
            assert!(!dir.join("_shares").join(&gid).exists());
        }
        // Nothing left to delete: the next refresh deletes nothing.
        let r = rt.block_on(refresh_all(&app, store.as_ref())).unwrap();
        assert_eq!(r.grants_deleted, 0);
    }
}
