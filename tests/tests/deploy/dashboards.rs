//! The dashboards and alert rules against the catalogs.

use super::*;

pub(crate) fn dashboards() -> Vec<(String, String)> {
    let dir = root().join("grafana/dashboards");
    let mut out: Vec<(String, String)> = std::fs::read_dir(&dir)
        .expect("grafana/dashboards")
        .map(|e| e.expect("entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "json"))
        .map(|p| {
            let name = p.file_name().expect("name").to_string_lossy().into_owned();
            (name, std::fs::read_to_string(&p).expect("read dashboard"))
        })
        .collect();
    out.sort();
    assert!(!out.is_empty(), "no dashboards in {}", dir.display());
    out
}

#[test]
pub(crate) fn dashboards_lint_clean() {
    let mut lint = Lint::new();
    let mut uids = HashMap::new();
    let boards = dashboards();
    for (name, text) in &boards {
        lint.lint_dashboard(name, text, &mut uids);
    }
    let rules = "grafana/alerts/tributary.rules.yml";
    lint.lint_rules(
        "tributary.rules.yml",
        &std::fs::read_to_string(root().join(rules)).expect(rules),
    );
    lint.promql_parse();
    for f in &lint.findings {
        println!("{f}");
    }
    println!(
        "dashboards: {} dashboards, {} queries, the rules of {rules}, {} known series names: {} findings",
        boards.len(),
        lint.queries.len(),
        known_metrics().series.len(),
        lint.findings.len()
    );
    assert!(
        lint.findings.is_empty(),
        "{} findings:\n{}",
        lint.findings.len(),
        lint.findings.join("\n")
    );
}

/// Each mutation of a clean dashboard must give a finding of its rule: the lint still
/// catches what it claims to, whatever the dashboards look like today.
#[test]
pub(crate) fn dashboards_lint_catches_seeded_faults() {
    const SEEDED: &[(&str, &str, &str)] = &[
        (
            "metric-exists",
            "rate(tributary_chain_records_total{",
            "rate(tributary_chain_record_total{",
        ),
        ("label-exists", r#"chain=\"$chain\""#, r#"chian=\"$chain\""#),
        ("label-values", r#"outcome=\"dlq\""#, r#"outcome=\"dead\""#),
        ("target-rate-interval", "[$__rate_interval]", "[5m]"),
        ("target-promql", "sum by (", "sum by (("),
        (
            "target-counter-agg",
            "rate(tributary_chain_records_total",
            "abs(tributary_chain_records_total",
        ),
        ("template-vars", r#"\"$chain\""#, r#"\"$chian\""#),
        (
            "panel-datasource",
            "\"datasource\": {\n        \"type\": \"prometheus\",\n        \"uid\": \"${datasource}\"",
            "\"datasource\": {\n        \"type\": \"prometheus\",\n        \"uid\": \"prom\"",
        ),
        ("panel-units", r#""unit": ""#, r#""unit": "x"#),
        (
            "panel-title-description",
            r#""description": "Records read"#,
            r#""descr": "Records read"#,
        ),
        ("dashboard", r#""tributary""#, r#""tributory""#),
    ];
    // The first dashboard that holds every string a fault is planted in (the chain one).
    let boards = dashboards();
    let (name, text) = boards
        .iter()
        .find(|(_, text)| SEEDED.iter().all(|(_, old, _)| text.contains(old)))
        .unwrap_or(&boards[0]);
    let mut failed = Vec::new();
    for (rule, old, new) in SEEDED {
        if !text.contains(old) {
            failed.push(format!("{rule}: {old:?} is not in {name}"));
            continue;
        }
        let mut lint = Lint::new();
        lint.lint_dashboard(name, &text.replacen(old, new, 1), &mut HashMap::new());
        lint.promql_parse();
        if !lint.findings.iter().any(|f| f.contains(&format!(": {rule}: "))) {
            failed.push(format!(
                "{old:?} -> {new:?} gave no {rule} finding: {:?}",
                lint.findings
            ));
        }
    }
    println!(
        "self-test: {} of {} seeded faults caught",
        SEEDED.len() - failed.len(),
        SEEDED.len()
    );
    assert!(failed.is_empty(), "{}", failed.join("\n"));
}
