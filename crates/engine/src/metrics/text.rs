//! Reading the Prometheus text exposition format (0.0.4): the one reader of it in the
//! workspace (the CLI's Pushgateway counters, reconciliation's previous metrics file, the
//! tests' scrapes and metric catalogs).
//!
//! Why not a crate: `prometheus` only writes the format. `prometheus-parse` (0.2.5, unchanged
//! since 2023) splits label pairs on `,` and `=` (a value holding either is dropped), folds a
//! histogram's `_bucket` lines into one sample without their `le` (the deploy test checks
//! dashboards against the series as exposed) and brings `regex` and an older `itertools`;
//! `openmetrics-parser` is LGPL-3.0; the others are unmaintained 0.1 releases. A sample line
//! is `name{label="value",…} value [timestamp]`, which this reads with the format's escapes.

use std::collections::BTreeMap;

/// One sample line: `name{labels} value`.
#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    /// The series name as exposed (`_bucket`, `_sum`, `_count` included for histograms).
    pub name: String,
    pub labels: BTreeMap<String, String>,
    pub value: f64,
}

impl Sample {
    pub fn label(&self, name: &str) -> Option<&str> {
        self.labels.get(name).map(String::as_str)
    }
}

/// Every sample of `text`, in order. Comments (`# HELP`, `# TYPE`), blank lines and lines that
/// are not samples are skipped.
pub fn parse(text: &str) -> Vec<Sample> {
    text.lines().filter_map(sample).collect()
}

/// The value of the sample written `series` (`name` or `name{label="v",…}`, labels in any
/// order): None when `text` has no such sample.
pub fn value(text: &str, series: &str) -> Option<f64> {
    let (name, labels) = series_of(series)?;
    parse(text)
        .into_iter()
        .find(|s| s.name == name && s.labels == labels)
        .map(|s| s.value)
}

/// One line as a sample, if it is one.
pub fn sample(line: &str) -> Option<Sample> {
    let line = line.trim();
    if line.is_empty() || line.starts_with('#') {
        return None;
    }
    let (name, labels, rest) = name_and_labels(line)?;
    // A float, `+Inf`, `-Inf` or `NaN`; a timestamp may follow.
    let value = rest.split_whitespace().next()?.parse().ok()?;
    Some(Sample { name, labels, value })
}

/// `name{labels}` without a value.
fn series_of(series: &str) -> Option<(String, BTreeMap<String, String>)> {
    let (name, labels, rest) = name_and_labels(series.trim())?;
    rest.trim().is_empty().then_some((name, labels))
}

/// The name, the labels and what follows them.
fn name_and_labels(line: &str) -> Option<(String, BTreeMap<String, String>, &str)> {
    let end = line.find(|c: char| c == '{' || c.is_whitespace()).unwrap_or(line.len());
    let name = &line[..end];
    if name.is_empty() {
        return None;
    }
    let mut labels = BTreeMap::new();
    let mut rest = &line[end..];
    if let Some(body) = rest.strip_prefix('{') {
        let mut chars = body.char_indices().peekable();
        loop {
            // Separators, then a label name or the closing brace.
            while chars.next_if(|(_, c)| *c == ',' || c.is_whitespace()).is_some() {}
            let (start, c) = chars.next()?;
            if c == '}' {
                rest = &body[start + 1..];
                break;
            }
            let mut key_end = start + c.len_utf8();
            while let Some((i, c)) = chars.next_if(|(_, c)| *c != '=' && !c.is_whitespace()) {
                key_end = i + c.len_utf8();
            }
            let key = body[start..key_end].to_owned();
            while chars.next_if(|(_, c)| c.is_whitespace()).is_some() {}
            chars.next().filter(|(_, c)| *c == '=')?;
            while chars.next_if(|(_, c)| c.is_whitespace()).is_some() {}
            chars.next().filter(|(_, c)| *c == '"')?;
            let mut value = String::new();
            loop {
                match chars.next()?.1 {
                    '"' => break,
                    '\\' => match chars.next()?.1 {
                        'n' => value.push('\n'),
                        other => value.push(other),
                    },
                    c => value.push(c),
                }
            }
            labels.insert(key, value);
        }
    }
    Some((name.to_owned(), labels, rest))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_names_labels_values_and_escapes() {
        let text = "# HELP x_total Things.\n# TYPE x_total counter\n\
                    x_total{job=\"compact\",table=\"users\"} 5\n\
                    plain 1.5e3 1700000000000\n\
                    h_bucket{le=\"+Inf\"} 3\n\
                    odd{v=\"a,b=c\\\"d\\\\e\\nf\", w=\"\"} -Inf\n\n";
        let s = parse(text);
        assert_eq!(s.len(), 4);
        assert_eq!(
            (s[0].name.as_str(), s[0].label("table"), s[0].value),
            ("x_total", Some("users"), 5.0)
        );
        assert_eq!(
            (s[1].name.as_str(), s[1].labels.len(), s[1].value),
            ("plain", 0, 1500.0)
        );
        assert_eq!(s[2].label("le"), Some("+Inf"));
        assert_eq!(s[3].label("v"), Some("a,b=c\"d\\e\nf"));
        assert_eq!(s[3].label("w"), Some(""));
        assert_eq!(s[3].value, f64::NEG_INFINITY);
        assert!(sample("broken{le=\"1\" 2").is_none());
    }

    #[test]
    fn finds_a_series_whatever_the_label_order() {
        let text = "a{x=\"1\",y=\"2\"} 7\na 3\n";
        assert_eq!(value(text, "a{y=\"2\",x=\"1\"}"), Some(7.0));
        assert_eq!(value(text, "a"), Some(3.0));
        assert_eq!(value(text, "a{x=\"1\"}"), None);
        assert_eq!(value(text, "b"), None);
    }
}
