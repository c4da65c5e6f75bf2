//! `tributary chains`: the chain registry ([`tributary_engine::chains`], generated from
//! `schemas/chains.txt`), one name a line, or with `--json` every chain's descriptor.

use tributary_engine::chains::{ChainSpec, ALL};
use tributary_engine::topics;

/// The arguments of `tributary chains`.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct ChainsArgs {
    /// Print every chain's descriptor (port, window, schema, topics, table) as JSON.
    #[arg(long)]
    pub json: bool,
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

/// What `tributary chains` prints (with its final newline).
pub fn render(args: &ChainsArgs) -> String {
    if args.json {
        let all: Vec<serde_json::Value> = ALL.iter().map(descriptor).collect();
        format!("{}\n", serde_json::Value::Array(all))
    } else {
        ALL.iter().map(|c| format!("{}\n", c.name)).collect()
    }
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
        let text = render(&ChainsArgs { json: false });
        assert_eq!(text.lines().collect::<Vec<_>>(), NAMES);
        let json: serde_json::Value = serde_json::from_str(&render(&ChainsArgs { json: true })).unwrap();
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

    /// What cannot read the file (Kubernetes manifests, alert rules) names every chain.
    #[test]
    fn the_manifests_and_alerts_name_every_chain() {
        let kustomization = read("k8s/base/kustomization.yaml");
        let any_chain = format!("tributary-({})", NAMES.join("|"));
        for c in NAMES {
            assert!(
                kustomization.contains(&format!("chains/{c}.yaml")),
                "k8s/base/kustomization.yaml: {c}"
            );
            assert!(
                repo().join(format!("k8s/base/chains/{c}.yaml")).is_file(),
                "k8s/base/chains/{c}.yaml"
            );
        }
        for path in [
            "k8s/base/monitoring/prometheusrule.yaml",
            "grafana/alerts/tributary.rules.yml",
        ] {
            assert!(read(path).contains(&any_chain), "{path} should match {any_chain}");
        }
    }

    /// The load generator runs every chain's own pipeline.
    #[test]
    fn every_chain_has_a_pipeline() {
        let names: Vec<&str> = crate::loadgen::identity::PIPELINES.iter().map(|(n, _)| *n).collect();
        assert_eq!(names, NAMES);
    }
}
