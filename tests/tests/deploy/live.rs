//! Each binary run as its manifest says.

use super::*;

/// Status code and body of a GET on 127.0.0.1.
pub(crate) fn http_get(port: u16, path: &str) -> Option<(u16, String)> {
    static CLIENT: OnceLock<reqwest::blocking::Client> = OnceLock::new();
    let client = CLIENT.get_or_init(|| {
        reqwest::blocking::Client::builder()
            .connect_timeout(Duration::from_secs(1))
            .timeout(Duration::from_secs(2))
            .build()
            .expect("HTTP client")
    });
    let r = client.get(format!("http://127.0.0.1:{port}{path}")).send().ok()?;
    let code = r.status().as_u16();
    Some((code, r.text().ok()?))
}

pub(crate) fn tail(path: &Path) -> String {
    let t = std::fs::read_to_string(path).unwrap_or_default();
    let t: String = t
        .chars()
        .rev()
        .take(600)
        .collect::<Vec<_>>()
        .into_iter()
        .rev()
        .collect();
    t.replace('\n', " ")
}

/// Runs one container's binary as its manifest would; returns its failures and ok lines.
pub(crate) fn live_run(c: &Container, known: &Known) -> (Vec<String>, Vec<String>) {
    let (mut bad, mut ok) = (Vec::new(), Vec::new());
    let label = &c.label;
    let dir = tempdir(&c.binary);
    let port = tributary_tests::free_port();
    let args: Vec<String> = c
        .args
        .iter()
        .map(|a| match c.files.get(a) {
            Some(content) => {
                let p = dir.join(Path::new(a).file_name().expect("file name"));
                std::fs::write(&p, content).expect("write config");
                std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o644)).expect("chmod");
                p.display().to_string()
            }
            None => a.clone(),
        })
        .collect();
    let lake = dir.join("lake");
    std::fs::create_dir_all(&lake).expect("lake dir");
    let mut cmd;
    let root_user = std::fs::metadata(&dir).map(|m| m.uid() == 0).unwrap_or(false);
    let setpriv = ["/usr/bin/setpriv", "/bin/setpriv"]
        .into_iter()
        .map(Path::new)
        .find(|p| p.is_file());
    let binary = bin_dir().join(&c.binary).canonicalize().expect("binary path");
    let as_user = match (root_user, setpriv, c.run_as.0) {
        (true, Some(sp), Some(uid)) => {
            let gid = c.run_as.1.unwrap_or(uid);
            std::os::unix::fs::chown(&lake, Some(uid as u32), Some(gid as u32)).expect("chown lake");
            cmd = Command::new(sp);
            cmd.args([
                format!("--reuid={uid}"),
                format!("--regid={gid}"),
                "--clear-groups".into(),
            ])
            .arg(&binary);
            Some(uid)
        }
        _ => {
            cmd = Command::new(&binary);
            None
        }
    };
    cmd.args(&args)
        .env_clear()
        .env("PATH", "/usr/bin:/bin")
        .env("HOME", &dir);
    // A separate API port (PORT, unless it is the metrics port too) gets a free port as well.
    let api_port = c
        .env
        .get("PORT")
        .filter(|p| c.env.get("METRICS_PORT") != Some(*p))
        .map(|_| tributary_tests::free_port());
    for (k, v) in &c.env {
        match k.as_str() {
            "KAFKA_BOOTSTRAP" | "SCHEMA_REGISTRY_URL" | "METRICS_PORT" => {}
            "PORT" => {
                cmd.env(k, api_port.map_or_else(|| port.to_string(), |p| p.to_string()));
            }
            "LAKE_URI" => {
                cmd.env(k, &lake);
            }
            k if c.secret_files.contains(k) => {
                // The mounted Secret's file: a stand-in of the same form.
                let content = SECRET_FILE_STANDINS
                    .iter()
                    .find(|(n, _)| *n == k)
                    .map_or("secret-value\n", |(_, c)| c);
                let p = dir.join(format!("secret-{}", k.to_ascii_lowercase()));
                std::fs::write(&p, content).expect("write secret stand-in");
                std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o644)).expect("chmod");
                cmd.env(k, &p);
            }
            _ => {
                cmd.env(k, v);
            }
        }
    }
    // Nothing leaves this machine: Kafka and the registry are a closed local port.
    cmd.env("KAFKA_BOOTSTRAP", "127.0.0.1:9")
        .env("SCHEMA_REGISTRY_URL", "http://127.0.0.1:9/apis/ccompat/v7")
        .env("METRICS_PORT", port.to_string());
    let log = dir.join("stderr");
    cmd.stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).expect("log file"));
    let mut child = cmd.spawn().expect("spawn");
    let mut live = None;
    for _ in 0..100 {
        live = http_get(port, "/health/live").map(|(code, _)| code);
        if live == Some(200) {
            break;
        }
        if let Ok(Some(st)) = child.try_wait() {
            bad.push(format!(
                "{label}: exited ({st}) before serving /health/live: {}",
                tail(&log)
            ));
            let _ = std::fs::remove_dir_all(&dir);
            return (bad, ok);
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    if live != Some(200) {
        bad.push(format!(
            "{label}: /health/live on METRICS_PORT={port} answered {live:?} after 10 s"
        ));
        let _ = child.kill();
        let _ = child.wait();
        let _ = std::fs::remove_dir_all(&dir);
        return (bad, ok);
    }
    let user = as_user.map_or(String::new(), |u| format!(" as uid {u}"));
    ok.push(format!(
        "{label}: runs with the manifest's args, config file and environment{user}; /health/live 200"
    ));
    match http_get(port, "/health/ready") {
        Some((code @ (200 | 503), _)) => ok.push(format!("{label}: /health/ready answers ({code})")),
        other => bad.push(format!(
            "{label}: /health/ready answered {other:?} (expected 200 or 503)"
        )),
    }
    if let Some(api) = api_port {
        // The API port serves /health/* too (DESIGN: serve answers them on both).
        let mut live = None;
        for _ in 0..50 {
            live = http_get(api, "/health/live").map(|(code, _)| code);
            if live == Some(200) {
                break;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        if live == Some(200) {
            ok.push(format!("{label}: API port (PORT={api}) /health/live 200"));
        } else {
            bad.push(format!(
                "{label}: /health/live on the API port PORT={api} answered {live:?}"
            ));
        }
    }
    let body = http_get(port, "/metrics").map(|(_, b)| b).unwrap_or_default();
    let exposed: BTreeSet<String> = samples(&body)
        .into_iter()
        .map(|(n, _)| n)
        .filter(|n| n.starts_with("tributary_"))
        .collect();
    let unknown: Vec<&String> = exposed
        .iter()
        .filter(|n| {
            ["tributary_chain_", "tributary_sink_", "tributary_serve_"]
                .iter()
                .any(|p| n.starts_with(p))
                && !known.series.contains_key(*n)
        })
        .collect();
    if exposed.is_empty() {
        bad.push(format!("{label}: /metrics has no tributary_* series"));
    } else if !unknown.is_empty() {
        bad.push(format!(
            "{label}: /metrics exposes chain, sink or serve series the code does not register: {unknown:?}"
        ));
    } else {
        ok.push(format!("{label}: /metrics: {} tributary_* series", exposed.len()));
    }
    if let Ok(Some(st)) = child.try_wait() {
        bad.push(format!("{label}: exited ({st}) on its own: {}", tail(&log)));
    } else {
        let t0 = Instant::now();
        let _ = Command::new("kill").args(["-TERM", &child.id().to_string()]).status();
        let mut stopped = false;
        while t0.elapsed() < Duration::from_secs(30) {
            if let Ok(Some(_)) = child.try_wait() {
                stopped = true;
                break;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        if stopped {
            ok.push(format!("{label}: stops {} ms after SIGTERM", t0.elapsed().as_millis()));
        } else {
            bad.push(format!(
                "{label}: still running 30 s after SIGTERM (terminationGracePeriodSeconds is 30)"
            ));
            let _ = child.kill();
            let _ = child.wait();
        }
    }
    let _ = std::fs::remove_dir_all(&dir);
    (bad, ok)
}

#[test]
pub(crate) fn binaries_run_as_manifests_say() {
    // Static findings are manifests_match_binaries' to report; these are the runs.
    let mut ignored = Vec::new();
    let (builds, help) = builds(&mut ignored);
    let known = known_metrics();
    let runnable: Vec<&Container> = builds
        .iter()
        .flat_map(|b| &b.containers)
        .filter(|c| {
            let built = matches!(help.get(&c.binary), Some(Ok(_)));
            if !built {
                println!(
                    "SKIP  {}: no runnable binary {}",
                    c.label,
                    bin_dir().join(&c.binary).display()
                );
            }
            built
        })
        .collect();
    let results: Vec<(Vec<String>, Vec<String>)> = std::thread::scope(|sc| {
        let handles: Vec<_> = runnable.iter().map(|c| sc.spawn(move || live_run(c, known))).collect();
        handles
            .into_iter()
            .map(|h| h.join().expect("live run thread"))
            .collect()
    });
    let mut failures = Vec::new();
    let mut n_ok = 0;
    for (bad, ok) in results {
        for o in &ok {
            println!("ok    {o}");
        }
        n_ok += ok.len();
        failures.extend(bad);
    }
    println!(
        "live runs: {} containers run, {n_ok} checks passed, {} failed",
        runnable.len(),
        failures.len()
    );
    assert!(!runnable.is_empty(), "no binary in {} to run", bin_dir().display());
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}
