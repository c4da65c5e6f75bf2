//! The history of `make bench` runs: one row per run in `bench/results/history.csv`, and a
//! chart of it, `bench/results/history.svg` (throughput and latency per run), written as
//! plain SVG text so that a regression shows at a glance.

use std::fmt::Write as _;
use std::path::Path;

/// The columns of `history.csv`, in order; a run's JSON report is read by these names.
pub const COLUMNS: [&str; 18] = [
    "date",
    "commit",
    "events",
    "load1",
    "chain_events_per_s",
    "passthrough_events_per_s",
    "peer_events_per_s",
    "chain_cpu_us_per_event",
    "peer_cpu_us_per_event",
    "passthrough_ratio",
    "peer_cpu_ratio",
    "sink_rows_per_core_s",
    "restore_10m_keys_s",
    "p50_raw_to_clean_ms_half_load",
    "p99_raw_to_clean_ms_half_load",
    "p99_raw_to_lake_ms_half_load",
    "p99_raw_to_clean_ms_peak",
    "p99_raw_to_lake_ms_peak",
];

/// One CSV field of a report value: numbers as they are (NaN and absent as empty), strings
/// without commas.
fn field(v: Option<&serde_json::Value>) -> String {
    match v {
        Some(serde_json::Value::Number(n)) => n.to_string(),
        Some(serde_json::Value::String(s)) => s.replace([',', '\n'], " "),
        _ => String::new(),
    }
}

/// Appends the run's row to `csv` (writing the header first when the file is new or empty).
pub fn append(csv: &Path, report: &serde_json::Value) -> std::io::Result<()> {
    let mut text = std::fs::read_to_string(csv).unwrap_or_default();
    if text.trim().is_empty() {
        text = COLUMNS.join(",") + "\n";
    } else if !text.ends_with('\n') {
        text.push('\n');
    }
    let row: Vec<String> = COLUMNS.iter().map(|c| field(report.get(*c))).collect();
    text.push_str(&row.join(","));
    text.push('\n');
    std::fs::write(csv, text)
}

/// The rows of a history file as (column name → value) maps, oldest first.
pub fn read(csv: &str) -> Vec<Vec<(String, String)>> {
    let mut lines = csv.lines().filter(|l| !l.trim().is_empty());
    let Some(header) = lines.next() else {
        return Vec::new();
    };
    let names: Vec<&str> = header.split(',').collect();
    lines
        .map(|l| {
            names
                .iter()
                .zip(l.split(','))
                .map(|(n, v)| ((*n).to_owned(), v.to_owned()))
                .collect()
        })
        .collect()
}

struct Series<'a> {
    column: &'a str,
    label: &'a str,
    color: &'a str,
}

const WIDTH: f64 = 900.0;
const PANEL_H: f64 = 260.0;
const LEFT: f64 = 80.0;
const RIGHT: f64 = 230.0;
const TOP: f64 = 60.0;

/// Renders the history as an SVG document: throughput (events/s) per run above, p99
/// latencies (ms) per run below; x is the run, labelled with its date and commit.
pub fn svg(rows: &[Vec<(String, String)>]) -> String {
    let throughput = [
        Series {
            column: "chain_events_per_s",
            label: "chain service",
            color: "#1f77b4",
        },
        Series {
            column: "passthrough_events_per_s",
            label: "rdkafka pass-through",
            color: "#7f7f7f",
        },
        Series {
            column: "peer_events_per_s",
            label: "Kafka Streams peer",
            color: "#d62728",
        },
    ];
    let latency = [
        Series {
            column: "p99_raw_to_clean_ms_half_load",
            label: "p99 raw→clean, half load",
            color: "#2ca02c",
        },
        Series {
            column: "p99_raw_to_lake_ms_half_load",
            label: "p99 raw→lake, half load",
            color: "#9467bd",
        },
        Series {
            column: "p99_raw_to_clean_ms_peak",
            label: "p99 raw→clean, peak",
            color: "#ff7f0e",
        },
        Series {
            column: "p99_raw_to_lake_ms_peak",
            label: "p99 raw→lake, peak",
            color: "#8c564b",
        },
    ];
    let height = TOP + 2.0 * (PANEL_H + 70.0) + 20.0;
    let mut s = String::new();
    let _ = writeln!(
        s,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{height}" viewBox="0 0 {WIDTH} {height}" font-family="sans-serif" font-size="11">"#
    );
    let _ = writeln!(s, r#"<rect width="100%" height="100%" fill="white"/>"#);
    let _ = writeln!(
        s,
        r#"<text x="{LEFT}" y="22" font-size="15" font-weight="bold">make bench: {} run(s), mailings chain</text>"#,
        rows.len()
    );
    panel(&mut s, rows, TOP, "throughput, events/s", &throughput, None);
    panel(
        &mut s,
        rows,
        TOP + PANEL_H + 70.0,
        "latency, ms (log scale; dashed: the target p99 raw→clean at half load, 200 ms)",
        &latency,
        Some(200.0),
    );
    s.push_str("</svg>\n");
    s
}

fn value(row: &[(String, String)], column: &str) -> Option<f64> {
    row.iter()
        .find(|(n, _)| n == column)
        .and_then(|(_, v)| v.parse::<f64>().ok())
        .filter(|v| v.is_finite())
}

/// A rounded axis maximum at or above `max`: 1, 2 or 5 times a power of ten.
fn nice_max(max: f64) -> f64 {
    if max <= 0.0 {
        return 1.0;
    }
    let p = 10f64.powf(max.log10().floor());
    [1.0, 2.0, 5.0, 10.0]
        .into_iter()
        .map(|m| m * p)
        .find(|v| *v >= max)
        .unwrap_or(10.0 * p)
}

/// One chart: linear from 0 when `log_target` is `None`; else a log scale over whole powers of
/// ten with a dashed line at the target.
fn panel(
    s: &mut String,
    rows: &[Vec<(String, String)>],
    top: f64,
    title: &str,
    series: &[Series<'_>],
    log_target: Option<f64>,
) {
    let plot_w = WIDTH - LEFT - RIGHT;
    let values: Vec<f64> = series
        .iter()
        .flat_map(|se| rows.iter().filter_map(|r| value(r, se.column)))
        .chain(log_target)
        .collect();
    let max = values.iter().copied().fold(0.0, f64::max);
    let ymax = nice_max(max);
    // Log scale: the decades from below the least value to above the largest.
    let lo = values
        .iter()
        .copied()
        .filter(|v| *v > 0.0)
        .fold(f64::INFINITY, f64::min)
        .log10()
        .floor()
        .min(1.0);
    let hi = max.max(10.0).log10().ceil().max(lo + 1.0);
    let n = rows.len().max(1);
    let x = |i: usize| {
        if n == 1 {
            LEFT + plot_w / 2.0
        } else {
            LEFT + plot_w * i as f64 / (n - 1) as f64
        }
    };
    let y = |v: f64| match log_target {
        None => top + PANEL_H - PANEL_H * v / ymax,
        Some(_) => top + PANEL_H - PANEL_H * (v.max(1e-9).log10() - lo).clamp(0.0, hi - lo) / (hi - lo),
    };
    let ticks: Vec<f64> = match log_target {
        None => (0..=5).map(|k| ymax * f64::from(k) / 5.0).collect(),
        Some(_) => (lo as i32..=hi as i32).map(|e| 10f64.powi(e)).collect(),
    };
    let _ = writeln!(
        s,
        r#"<text x="{LEFT}" y="{:.1}" font-size="13" font-weight="bold">{title}</text>"#,
        top - 6.0
    );
    for v in ticks {
        let yy = y(v);
        let _ = writeln!(
            s,
            r##"<line x1="{LEFT}" y1="{yy:.1}" x2="{:.1}" y2="{yy:.1}" stroke="#ddd"/><text x="{:.1}" y="{:.1}" text-anchor="end">{}</text>"##,
            LEFT + plot_w,
            LEFT - 6.0,
            yy + 4.0,
            short(v)
        );
    }
    let _ = writeln!(
        s,
        r#"<rect x="{LEFT}" y="{top}" width="{plot_w}" height="{PANEL_H}" fill="none" stroke="black"/>"#
    );
    if let Some(target) = log_target {
        let yy = y(target);
        let _ = writeln!(
            s,
            r##"<line x1="{LEFT}" y1="{yy:.1}" x2="{:.1}" y2="{yy:.1}" stroke="#2ca02c" stroke-dasharray="6 4"/>"##,
            LEFT + plot_w
        );
    }
    // Run labels under the axis, thinned to at most 12.
    let step = n.div_ceil(12);
    for (i, r) in rows.iter().enumerate() {
        if i % step != 0 && i + 1 != n {
            continue;
        }
        let date = r
            .iter()
            .find(|(c, _)| c == "date")
            .map(|(_, v)| v.get(..16).unwrap_or(v).replace('T', " "))
            .unwrap_or_default();
        let commit = r
            .iter()
            .find(|(c, _)| c == "commit")
            .map(|(_, v)| v.get(..7).unwrap_or(v).to_owned())
            .unwrap_or_default();
        let (xx, yy) = (x(i), top + PANEL_H + 14.0);
        let _ = writeln!(
            s,
            r##"<text x="{xx:.1}" y="{yy:.1}" text-anchor="middle">{}</text><text x="{xx:.1}" y="{:.1}" text-anchor="middle" fill="#555">{}</text>"##,
            escape(&date),
            yy + 13.0,
            escape(&commit)
        );
    }
    for (k, se) in series.iter().enumerate() {
        let points: Vec<(f64, f64)> = rows
            .iter()
            .enumerate()
            .filter_map(|(i, r)| value(r, se.column).map(|v| (x(i), y(v))))
            .collect();
        if points.len() > 1 {
            let path: Vec<String> = points.iter().map(|(a, b)| format!("{a:.1},{b:.1}")).collect();
            let _ = writeln!(
                s,
                r#"<polyline fill="none" stroke="{}" stroke-width="2" points="{}"/>"#,
                se.color,
                path.join(" ")
            );
        }
        for (a, b) in &points {
            let _ = writeln!(s, r#"<circle cx="{a:.1}" cy="{b:.1}" r="3.5" fill="{}"/>"#, se.color);
        }
        let ly = top + 14.0 + 18.0 * k as f64;
        let lx = LEFT + plot_w + 14.0;
        let last = rows.last().and_then(|r| value(r, se.column));
        let _ = writeln!(
            s,
            r#"<rect x="{lx:.1}" y="{:.1}" width="12" height="4" fill="{}"/><text x="{:.1}" y="{ly:.1}">{} {}</text>"#,
            ly - 6.0,
            se.color,
            lx + 18.0,
            escape(se.label),
            last.map(|v| format!("({})", short(v))).unwrap_or_default()
        );
    }
}

/// 1234567 → "1.23M", 45000 → "45k", 12.5 → "12.5".
fn short(v: f64) -> String {
    if v >= 1e6 {
        format!("{:.2}M", v / 1e6)
    } else if v >= 1e4 {
        format!("{:.0}k", v / 1e3)
    } else if v >= 100.0 {
        format!("{v:.0}")
    } else {
        format!("{v:.1}")
    }
}

fn escape(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rows_round_trip_and_the_chart_draws_each_run() {
        let dir = std::env::temp_dir().join(format!("bench-history-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let csv = dir.join("history.csv");
        let _ = std::fs::remove_file(&csv);
        for (i, p99) in [(1, 180.0), (2, f64::NAN)] {
            let report = serde_json::json!({
                "date": format!("2026-11-30T1{i}:00:00Z"), "commit": "abcdef0123", "events": 1000,
                "chain_events_per_s": 88000.0 + f64::from(i), "passthrough_events_per_s": 190000.0,
                "p99_raw_to_clean_ms_half_load": serde_json::Number::from_f64(p99),
            });
            append(&csv, &report).unwrap();
        }
        let text = std::fs::read_to_string(&csv).unwrap();
        let rows = read(&text);
        assert_eq!(rows.len(), 2);
        assert_eq!(text.lines().next().unwrap(), COLUMNS.join(","));
        assert_eq!(value(&rows[0], "p99_raw_to_clean_ms_half_load"), Some(180.0));
        assert_eq!(
            value(&rows[1], "p99_raw_to_clean_ms_half_load"),
            None,
            "NaN is left empty"
        );
        let svg = svg(&rows);
        assert!(svg.starts_with("<svg") && svg.trim_end().ends_with("</svg>"));
        assert_eq!(
            svg.matches("<circle").count(),
            2 + 2 + 1,
            "two runs of two series, one of one"
        );
        assert!(svg.contains("abcdef0"));
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn axis_maxima_are_round() {
        assert_eq!(nice_max(88_000.0), 100_000.0);
        assert_eq!(nice_max(180.0), 200.0);
        assert_eq!(nice_max(0.0), 1.0);
        assert_eq!(nice_max(5.0), 5.0);
    }
}
