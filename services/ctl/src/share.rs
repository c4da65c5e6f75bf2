//! `tributary share refresh`: one refresh of the analytics grants' shared tables from the lake
//! alone, what `serve` does on a timer locally and the DAG `tributary_sharing` runs in
//! production (then `serve` runs with `SHARING_REFRESH=off`, so the tables have one writer).
//!
//! The same code as `serve`'s refresh (`tributary_serve::sharing::materialize`): the grants
//! from the topic, who is withheld at each grantor from the lake's unsubscribes, blocklists
//! and subscriptions (only the grantors' partitions), the grantors' tables read only where
//! they changed since the last refresh.

use anyhow::{Context, Result};
use tributary_view::grants::Purpose;

pub fn refresh(bootstrap: &str, namespace: &str, lake_uri: &str, json: bool) -> Result<()> {
    let started = std::time::Instant::now();
    let grants = crate::grants::read_all(bootstrap, namespace)?;
    let env: std::collections::BTreeMap<String, String> = std::env::vars().collect();
    let cli = tributary_serve::config::Config {
        kafka_bootstrap: bootstrap.to_owned(),
        lake_uri: lake_uri.to_owned(),
        topic_namespace: namespace.to_owned(),
        kafka: tributary_engine::kafka::props_from_env(&env),
        ..tributary_serve::config::Config::defaults()
    };
    let settings = tributary_serve::config::Settings::load_for_job(cli, &env).map_err(anyhow::Error::msg)?;
    let app = tributary_serve::App::new(settings)?;
    let now = tributary_engine::normalize::now_micros();
    let mut grantors: Vec<String> = grants
        .values()
        .filter(|g| g.purpose == Purpose::Analytics && g.live(now))
        .map(|g| g.grantor.clone())
        .collect();
    grantors.sort();
    grantors.dedup();
    *app.grants.write().expect("grants lock") = grants;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    let lake = tributary_lake::Lake::new(lake_uri)?;
    let mut loaded = tributary_view::lake::Loaded::default();
    if !grantors.is_empty() {
        let mut view = tributary_view::View::default();
        for chain in ["unsubscribes", "blocklists", "subscriptions"] {
            let mut fold = |e: tributary_view::Event| view.apply(e);
            rt.block_on(tributary_view::lake::load_chain(
                &lake,
                chain,
                Some(&grantors),
                None,
                &mut loaded,
                &mut fold,
            ))
            .with_context(|| format!("reading the lake's {chain} table"))?;
        }
        *app.view.write().expect("view lock") = view;
    }
    let store = tributary_serve::sharing::materialize::shares_store(lake_uri)?;
    let r = rt.block_on(tributary_serve::sharing::materialize::refresh_all(&app, store.as_ref()))?;
    let secs = started.elapsed().as_secs_f64();
    let summary = serde_json::json!({
        "tables": r.tables, "added": r.added, "rewritten": r.rewritten, "removed": r.removed,
        "grants_deleted": r.grants_deleted, "source_files_read": r.source_files_read,
        "grantors": grantors, "events_read": loaded.events, "seconds": secs,
    });
    if json {
        println!("{summary}");
    } else {
        eprintln!(
            "share refresh: {} tables, {} files added, {} rewritten, {} removed, {} grants' tables deleted ({} source files read) in {secs:.2} s",
            r.tables, r.added, r.rewritten, r.removed, r.grants_deleted, r.source_files_read
        );
    }
    Ok(())
}
