//! `tributary chains`: the chain registry ([`tributary_engine::chains`], generated from
//! `schemas/chains.txt`), one name a line, or with `--json` every chain's descriptor; with
//! `--write-deploy` it writes what deploys and alerts on the chains (see [`deploy_files`]).

use std::path::{Path, PathBuf};
use tributary_engine::chains::{ChainSpec, ALL};
use tributary_engine::topics;

/// The arguments of `tributary chains`.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct ChainsArgs {
    /// Print every chain's descriptor (port, window, schema, topics, table) as JSON.
    #[arg(long)]
    pub json: bool,
    /// Write the deployment files derived from the registry into the repository at REPO
    /// (default: the current directory): k8s/base/chains/<chain>.yaml from the template
    /// k8s/base/chains/chain.yaml.in, the chain entries of k8s/base/kustomization.yaml, the
    /// prod overlay's per-chain Kafka credentials (template
    /// k8s/overlays/prod/patches/kafka-credentials.chain.yaml.in) and the chain regex of the
    /// alert rules (grafana/alerts/ and the PrometheusRule). Prints what it wrote.
    #[arg(long, value_name = "REPO", num_args = 0..=1, default_missing_value = ".", conflicts_with = "json")]
    pub write_deploy: Option<PathBuf>,
}

/// One chain's descriptor as `--json` prints it.
pub fn descriptor(c: &ChainSpec) -> serde_json::Value {
    serde_json::json!({
        "name": c.name,
        "port": c.port,
        "window": c.window_text,
        "window_seconds": c.window.as_secs(),
        "schema": c.schema_path,
        "topics": {
            "raw": topics::raw(c.name),
            "clean": topics::clean(c.name),
            "dlq": topics::dlq(c.name),
            "audit": topics::audit(c.name),
            "changelog": topics::changelog(c.name),
        },
        "subject": topics::subject(c.name),
        "table": c.name,
    })
}

/// What `tributary chains` prints (with its final newline). With `--write-deploy` it writes
/// the deployment files first, and on failure prints the error and exits with status 1.
pub fn render(args: &ChainsArgs) -> String {
    if let Some(repo) = &args.write_deploy {
        match write_deploy(repo, &registry()) {
            Ok(report) => report,
            Err(e) => {
                eprintln!("tributary chains --write-deploy: {e}");
                std::process::exit(1);
            }
        }
    } else if args.json {
        let all: Vec<serde_json::Value> = ALL.iter().map(descriptor).collect();
        format!("{}\n", serde_json::Value::Array(all))
    } else {
        ALL.iter().map(|c| format!("{}\n", c.name)).collect()
    }
}

/// A chain as the deployment files need it: its name and its metrics port.
pub type DeployChain<'a> = (&'a str, u16);

/// The chains of the registry, in its order.
pub fn registry() -> Vec<DeployChain<'static>> {
    ALL.iter().map(|c| (c.name, c.port)).collect()
}

/// Template of a chain's manifests, `k8s/base/chains/<chain>.yaml`.
pub const CHAIN_TEMPLATE: &str = "k8s/base/chains/chain.yaml.in";
/// Template of a chain's patch in [`KAFKA_CREDENTIALS`].
pub const KAFKA_CREDENTIALS_TEMPLATE: &str = "k8s/overlays/prod/patches/kafka-credentials.chain.yaml.in";
/// The prod overlay's Kafka credentials patches: one StatefulSet patch a chain, generated;
/// the other workloads' patches, kept.
pub const KAFKA_CREDENTIALS: &str = "k8s/overlays/prod/patches/kafka-credentials.yaml";
/// The base, whose `resources` list every chain's file (the `- chains/*.yaml` lines).
pub const KUSTOMIZATION: &str = "k8s/base/kustomization.yaml";
/// The alert rules (the source) and the PrometheusRule made from them
/// (`bash dev/lint-deploy.sh sync-rules`); both match every chain's job in
/// `job=~"tributary-(<chain>|...)"`.
pub const ALERT_RULES: [&str; 2] = [
    "grafana/alerts/tributary.rules.yml",
    "k8s/base/monitoring/prometheusrule.yaml",
];
/// Where the chains' manifests are.
pub const CHAINS_DIR: &str = "k8s/base/chains";

/// `@CHAIN@` and `@PORT@` of a template filled in for one chain. Lines of the template that
/// start with `##` are its own comments and are dropped.
pub fn fill(template: &str, (name, port): DeployChain) -> Result<String, String> {
    let text: String = template
        .split_inclusive('\n')
        .filter(|l| !l.starts_with("##"))
        .collect();
    let out = text.replace("@CHAIN@", name).replace("@PORT@", &port.to_string());
    for (i, _) in out.match_indices('@') {
        let name: String = out[i + 1..]
            .chars()
            .take_while(|c| c.is_ascii_uppercase() || *c == '_')
            .collect();
        if !name.is_empty() && out[i + 1 + name.len()..].starts_with('@') {
            return Err(format!("unknown placeholder @{name}@"));
        }
    }
    Ok(out)
}

/// Every file derived from the registry, as (path from the repository root, content):
/// `read` gives a file of the repository (templates, and the files edited in place).
pub fn deploy_files(
    read: &dyn Fn(&str) -> Result<String, String>,
    chains: &[DeployChain],
) -> Result<Vec<(String, String)>, String> {
    let mut out = Vec::new();
    let chain = read(CHAIN_TEMPLATE)?;
    for &c in chains {
        let text = fill(&chain, c).map_err(|e| format!("{CHAIN_TEMPLATE}: {e}"))?;
        out.push((format!("{CHAINS_DIR}/{}.yaml", c.0), text));
    }
    let k = read(KUSTOMIZATION)?;
    out.push((
        KUSTOMIZATION.to_owned(),
        kustomization_resources(&k, chains).map_err(|e| format!("{KUSTOMIZATION}: {e}"))?,
    ));
    let patch = read(KAFKA_CREDENTIALS_TEMPLATE)?;
    let k = read(KAFKA_CREDENTIALS)?;
    out.push((
        KAFKA_CREDENTIALS.to_owned(),
        statefulset_patches(&k, &patch, chains).map_err(|e| format!("{KAFKA_CREDENTIALS}: {e}"))?,
    ));
    for path in ALERT_RULES {
        let r = read(path)?;
        out.push((
            path.to_owned(),
            job_regex(&r, chains).map_err(|e| format!("{path}: {e}"))?,
        ));
    }
    Ok(out)
}

/// `text` with its run of `- chains/<chain>.yaml` lines (the base's chain resources)
/// replaced by one line a chain, indented as the first.
fn kustomization_resources(text: &str, chains: &[DeployChain]) -> Result<String, String> {
    let lines: Vec<&str> = text.split_inclusive('\n').collect();
    let is_chain = |l: &str| {
        let t = l.trim();
        t.starts_with("- chains/") && t.ends_with(".yaml")
    };
    let first = lines
        .iter()
        .position(|l| is_chain(l))
        .ok_or("no `- chains/<chain>.yaml` resource")?;
    let end = first + lines[first..].iter().take_while(|l| is_chain(l)).count();
    if lines[end..].iter().any(|l| is_chain(l)) {
        return Err("the `- chains/<chain>.yaml` resources are not one run of lines".into());
    }
    let indent = &lines[first][..lines[first].len() - lines[first].trim_start().len()];
    let mut out: String = lines[..first].concat();
    for (name, _) in chains {
        out.push_str(&format!("{indent}- chains/{name}.yaml\n"));
    }
    out.push_str(&lines[end..].concat());
    Ok(out)
}

/// `text`, YAML documents separated by `---` lines, with its run of StatefulSet documents
/// (the chains') replaced by `template` filled in for each chain. Comment lines that open
/// the file stay where they are.
fn statefulset_patches(text: &str, template: &str, chains: &[DeployChain]) -> Result<String, String> {
    let body = text.strip_suffix('\n').ok_or("no final newline")?;
    let mut docs: Vec<String> = body.split("\n---\n").map(str::to_owned).collect();
    let header_len = docs[0]
        .split_inclusive('\n')
        .take_while(|l| l.starts_with('#'))
        .map(str::len)
        .sum::<usize>();
    let header = docs[0][..header_len].to_owned();
    docs[0].replace_range(..header_len, "");
    let is_chain = |d: &String| d.lines().any(|l| l == "kind: StatefulSet");
    let first = docs.iter().position(is_chain).ok_or("no StatefulSet patch")?;
    let end = first + docs[first..].iter().take_while(|d| is_chain(d)).count();
    if docs[end..].iter().any(is_chain) {
        return Err("the StatefulSet patches are not one run of documents".into());
    }
    let mut generated = Vec::new();
    for &c in chains {
        let doc = fill(template, c).map_err(|e| format!("{KAFKA_CREDENTIALS_TEMPLATE}: {e}"))?;
        generated.push(doc.trim_end_matches('\n').to_owned());
    }
    docs.splice(first..end, generated);
    Ok(format!("{header}{}\n", docs.join("\n---\n")))
}

/// `text` with every `job=~"tributary-(...)"` matching exactly the chains' jobs.
fn job_regex(text: &str, chains: &[DeployChain]) -> Result<String, String> {
    const OPEN: &str = "job=~\"tributary-(";
    const CLOSE: &str = ")\"";
    let alternatives = chains.iter().map(|c| c.0).collect::<Vec<_>>().join("|");
    let mut out = String::new();
    let mut rest = text;
    while let Some(i) = rest.find(OPEN) {
        let start = i + OPEN.len();
        let len = rest[start..].find(CLOSE).ok_or(format!("{OPEN} is not closed"))?;
        out.push_str(&rest[..start]);
        out.push_str(&alternatives);
        rest = &rest[start + len..];
    }
    if out.is_empty() {
        return Err(format!("no {OPEN}...{CLOSE}"));
    }
    out.push_str(rest);
    Ok(out)
}

/// Writes [`deploy_files`] into the repository at `repo` (only the files that change) and
/// removes the `k8s/base/chains/*.yaml` of chains no longer in the registry. Returns one
/// line a file: `wrote <path>`, `removed <path>` or `unchanged <path>`.
pub fn write_deploy(repo: &Path, chains: &[DeployChain]) -> Result<String, String> {
    let read = |p: &str| std::fs::read_to_string(repo.join(p)).map_err(|e| format!("{}: {e}", repo.join(p).display()));
    let files = deploy_files(&read, chains)?;
    let mut report = String::new();
    for (path, text) in &files {
        if read(path).ok().as_deref() == Some(text.as_str()) {
            report.push_str(&format!("unchanged {path}\n"));
        } else {
            let full = repo.join(path);
            std::fs::write(&full, text).map_err(|e| format!("{}: {e}", full.display()))?;
            report.push_str(&format!("wrote {path}\n"));
        }
    }
    for path in stale_chain_files(repo, chains)? {
        let full = repo.join(&path);
        std::fs::remove_file(&full).map_err(|e| format!("{}: {e}", full.display()))?;
        report.push_str(&format!("removed {path}\n"));
    }
    Ok(report)
}

/// The `k8s/base/chains/*.yaml` files of no chain of `chains`.
pub fn stale_chain_files(repo: &Path, chains: &[DeployChain]) -> Result<Vec<String>, String> {
    let dir = repo.join(CHAINS_DIR);
    let entries = std::fs::read_dir(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    let mut out = Vec::new();
    for e in entries {
        let name = e.map_err(|e| format!("{}: {e}", dir.display()))?.file_name();
        let name = name.to_string_lossy();
        if let Some(chain) = name.strip_suffix(".yaml") {
            if !chains.iter().any(|c| c.0 == chain) {
                out.push(format!("{CHAINS_DIR}/{name}"));
            }
        }
    }
    out.sort();
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::{Path, PathBuf};
    use std::process::Command;
    use tributary_engine::chains::{self, names_in, NAMES, REGISTRY_FILE};

    fn repo() -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
    }

    fn read(path: &str) -> String {
        std::fs::read_to_string(repo().join(path)).unwrap_or_else(|e| panic!("{path}: {e}"))
    }

    /// The registry file, the Rust registry and `tributary chains` (text and JSON) agree.
    #[test]
    fn the_file_the_registry_and_the_command_agree() {
        let file = read(REGISTRY_FILE);
        assert_eq!(names_in(&file), NAMES, "the Rust registry is the file (rebuild?)");
        assert_eq!(file, chains::REGISTRY_TEXT);
        let text = render(&ChainsArgs::default());
        assert_eq!(text.lines().collect::<Vec<_>>(), NAMES);
        let json: serde_json::Value = serde_json::from_str(&render(&ChainsArgs {
            json: true,
            ..Default::default()
        }))
        .unwrap();
        let json = json.as_array().unwrap();
        assert_eq!(json.len(), NAMES.len());
        for (line, d) in file
            .lines()
            .filter(|l| l.starts_with(|c: char| c.is_ascii_lowercase()))
            .zip(json)
        {
            let cols: Vec<&str> = line.split_whitespace().collect();
            assert_eq!(d["name"], cols[0]);
            assert_eq!(d["port"].to_string(), cols[1]);
            assert_eq!(d["window"], cols[2]);
            assert_eq!(d["schema"], format!("schemas/{}.avsc", cols[0]));
            assert_eq!(d["topics"]["raw"], format!("raw.{}", cols[0]));
            assert!(repo().join(d["schema"].as_str().unwrap()).is_file());
        }
    }

    /// What the shell and the Makefile read of the file: `awk '/^[a-z]/ {print $1}'` and
    /// `$(CHAINS)`.
    #[test]
    fn the_makefile_and_the_scripts_read_the_same_names() {
        let awk = Command::new("awk")
            .args(["/^[a-z]/ {print $1}", REGISTRY_FILE])
            .current_dir(repo())
            .output()
            .expect("awk");
        assert!(awk.status.success());
        assert_eq!(String::from_utf8_lossy(&awk.stdout).lines().collect::<Vec<_>>(), NAMES);
        let make = Command::new("make")
            .args([
                "-s",
                "--no-print-directory",
                "--eval",
                "print-chains: ; @echo $(CHAINS)",
                "print-chains",
            ])
            .current_dir(repo())
            .output()
            .expect("make");
        assert!(make.status.success(), "{}", String::from_utf8_lossy(&make.stderr));
        assert_eq!(
            String::from_utf8_lossy(&make.stdout)
                .split_whitespace()
                .collect::<Vec<_>>(),
            NAMES
        );
        // No script restates the list.
        let spaced = NAMES[..2].join(" ");
        let commas = NAMES[..2].join(",");
        for path in ["Makefile", "dev/demo.sh", "dev/demo-check.sh", "dev/kafka/run.sh"] {
            let text = read(path);
            assert!(
                !text.contains(&spaced) && !text.contains(&commas),
                "{path} lists chains itself"
            );
        }
    }

    fn read_repo(path: &str) -> Result<String, String> {
        std::fs::read_to_string(repo().join(path)).map_err(|e| format!("{path}: {e}"))
    }

    /// What cannot read the registry (Kubernetes manifests, alert rules) is generated from it
    /// by `tributary chains --write-deploy`, and committed: the files are what it writes.
    #[test]
    fn the_deployment_files_are_generated_from_the_registry() {
        let files = deploy_files(&read_repo, &registry()).unwrap();
        let mut wrong: Vec<String> = files
            .iter()
            .filter(|(path, text)| read_repo(path).as_ref() != Ok(text))
            .map(|(path, _)| path.clone())
            .collect();
        wrong.extend(stale_chain_files(&repo(), &registry()).unwrap());
        assert!(
            wrong.is_empty(),
            "{wrong:?} are not what the registry ({REGISTRY_FILE}) and the templates make: run \
             `cargo run --release -p tributary-ctl -- chains --write-deploy` from the repository \
             root and commit the result"
        );
        // Every chain's file, and nothing of the templates left unfilled.
        for c in NAMES {
            assert!(files.iter().any(|(p, _)| *p == format!("{CHAINS_DIR}/{c}.yaml")), "{c}");
        }
        for (path, text) in &files {
            assert!(!text.contains("@CHAIN@") && !text.contains("@PORT@"), "{path}");
        }
    }

    /// A new chain (one more registry line) gets its manifests, its resource, its prod
    /// credentials and its place in the alerts; removing it restores the files exactly.
    #[test]
    fn a_new_chain_is_one_command() {
        let mut more = registry();
        more.push(("bounces", 9200));
        let files: std::collections::BTreeMap<String, String> =
            deploy_files(&read_repo, &more).unwrap().into_iter().collect();
        let f = &files[&format!("{CHAINS_DIR}/bounces.yaml")];
        assert!(f.contains("  name: bounces\n") && f.contains("containerPort: 9200\n"));
        assert!(f.contains("topic: raw.bounces\n") && !f.contains("users") && !f.contains("9101"));
        assert!(files[KUSTOMIZATION].contains("  - chains/mailings.yaml\n  - chains/bounces.yaml\n  - sink.yaml\n"));
        let k = &files[KAFKA_CREDENTIALS];
        assert_eq!(k.matches("kind: StatefulSet\n").count(), more.len());
        assert!(k.contains("name: tributary-kafka-bounces\n"));
        for other in ["sink", "ingest", "serve"] {
            assert!(k.contains(&format!("name: tributary-kafka-{other}\n")), "{other}");
        }
        for path in ALERT_RULES {
            assert!(files[path].contains("tributary-(users|unsubscribes|blocklists|subscriptions|mailings|bounces)\""));
        }
        // And back: generated from the generated files, without the new chain.
        let back = deploy_files(
            &|p: &str| files.get(p).cloned().map_or_else(|| read_repo(p), Ok),
            &registry(),
        )
        .unwrap();
        for (path, text) in back {
            assert_eq!(Ok(text), read_repo(&path), "{path}");
        }
    }

    #[test]
    fn templates_name_no_unknown_placeholder() {
        assert_eq!(fill("## dropped\na @CHAIN@ @PORT@\n", ("x", 1)), Ok("a x 1\n".into()));
        assert!(fill("@CHAINS@", ("x", 1)).is_err());
        assert!(fill("user@example.com", ("x", 1)).is_ok());
    }

    /// The load generator runs every chain's own pipeline.
    #[test]
    fn every_chain_has_a_pipeline() {
        let names: Vec<&str> = crate::loadgen::identity::PIPELINES.iter().map(|(n, _)| *n).collect();
        assert_eq!(names, NAMES);
    }
}
