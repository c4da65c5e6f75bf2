//! Turns the chain registry, `schemas/chains.txt`, into the Rust table of
//! `tributary_engine::chains` (`$OUT_DIR/chains.rs`).
//!
//! Why a data file read at build time rather than a Rust table that the rest reads: the
//! Makefile, the dev scripts (`dev/kafka/run.sh` runs when the infrastructure starts, possibly
//! before anything is built) and the Airflow DAGs need the list too, and none of them can
//! read Rust. A plain file of one line per chain is read by all of them alike (`awk`, a line
//! of Python), and this script makes it the Rust registry as well, so a chain is declared on
//! exactly one line and a malformed line fails the build instead of drifting.

use std::fmt::Write as _;
use std::path::Path;

fn main() {
    let manifest = std::env::var("CARGO_MANIFEST_DIR").expect("CARGO_MANIFEST_DIR");
    let file = Path::new(&manifest).join("../../schemas/chains.txt");
    println!("cargo:rerun-if-changed={}", file.display());
    let text = std::fs::read_to_string(&file).unwrap_or_else(|e| panic!("{}: {e}", file.display()));
    let mut out = String::new();
    let mut consts = Vec::new();
    let mut ports = Vec::new();
    for (n, line) in text.lines().enumerate() {
        // The rule every reader applies: a chain line starts with a lowercase letter.
        if !line.starts_with(|c: char| c.is_ascii_lowercase()) {
            let rest = line.trim_start();
            assert!(
                rest.is_empty() || rest.starts_with('#'),
                "schemas/chains.txt:{}: neither a chain (a lowercase name first), a comment nor blank: {line:?}",
                n + 1
            );
            continue;
        }
        let at = |what: &str| format!("schemas/chains.txt:{}: {what}: {line:?}", n + 1);
        let cols: Vec<&str> = line.split('#').next().unwrap_or_default().split_whitespace().collect();
        let &[name, port, window] = cols.as_slice() else {
            panic!("{}", at("expected `name port window`"));
        };
        assert!(
            name.bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_'),
            "{}",
            at("a name is [a-z][a-z0-9_]*")
        );
        let port: u16 = port
            .parse()
            .unwrap_or_else(|_| panic!("{}", at("the port is not a port number")));
        let secs = window_secs(window).unwrap_or_else(|| panic!("{}", at("the window is <n>s|m|h|d")));
        let ident = name.to_ascii_uppercase();
        assert!(!consts.contains(&ident), "{}", at("a second line for the same chain"));
        assert!(!ports.contains(&port), "{}", at("a port another chain has"));
        let schema = format!("schemas/{name}.avsc");
        assert!(
            Path::new(&manifest).join("../..").join(&schema).is_file(),
            "{}",
            at(&format!("no {schema}"))
        );
        writeln!(
            out,
            "/// The `{name}` chain (schemas/chains.txt line {line_no}).\n\
             pub const {ident}: ChainSpec = ChainSpec {{\n    \
                 name: {name:?},\n    \
                 port: {port},\n    \
                 window: Duration::from_secs({secs}),\n    \
                 window_text: {window:?},\n    \
                 schema_path: {schema:?},\n    \
                 schema: include_str!(concat!(env!(\"CARGO_MANIFEST_DIR\"), \"/../../{schema}\")),\n\
             }};",
            line_no = n + 1
        )
        .expect("write");
        consts.push(ident);
        ports.push(port);
    }
    assert!(!consts.is_empty(), "schemas/chains.txt declares no chain");
    let count = consts.len();
    writeln!(out, "/// Every chain, in the registry's order.").expect("write");
    writeln!(out, "pub const ALL: [ChainSpec; {count}] = [{}];", consts.join(", ")).expect("write");
    writeln!(out, "/// Every chain's name, in the registry's order.").expect("write");
    let names: Vec<String> = consts.iter().map(|c| format!("{c}.name")).collect();
    writeln!(out, "pub const NAMES: [&str; {count}] = [{}];", names.join(", ")).expect("write");
    let dest = Path::new(&std::env::var("OUT_DIR").expect("OUT_DIR")).join("chains.rs");
    std::fs::write(&dest, out).unwrap_or_else(|e| panic!("{}: {e}", dest.display()));
}

/// `<n>s|m|h|d` in seconds.
fn window_secs(text: &str) -> Option<u64> {
    let unit = match text.as_bytes().last()? {
        b's' => 1,
        b'm' => 60,
        b'h' => 3600,
        b'd' => 86_400,
        _ => return None,
    };
    let n: u64 = text[..text.len() - 1].parse().ok()?;
    n.checked_mul(unit).filter(|s| *s > 0)
}
