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
    chains();
    providers();
}

fn chains() {
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
    // `for_each_chain!(m)`: `m! { (users, tributary_users, Users) … }`, every chain's name, its
    // crate (`services/<name>`, package `tributary-<name>`) and its `Chain` type (the name
    // capitalised), for the crates that run every chain's pipeline (the load generator's
    // identities, the gateway's routing tests) without listing the chains.
    let list: Vec<String> = consts
        .iter()
        .map(|c| {
            let name = c.to_ascii_lowercase();
            let ty = format!("{}{}", &c[..1], &name[1..]);
            format!("({name}, tributary_{name}, {ty})")
        })
        .collect();
    writeln!(
        out,
        "/// Calls `$m!` with every chain of the registry as `(name, crate, ChainType)`.\n\
         #[macro_export]\n\
         macro_rules! for_each_chain {{\n    ($m:ident) => {{ $m! {{ {} }} }};\n}}",
        list.join(" ")
    )
    .expect("write");
    // `chain_modules!(loadgen, m)`: declares `mod <chain>;` by `#[path]` to every chain's
    // `services/<chain>/loadgen.rs` (its records in the canonical json and csv formats, which
    // the load generator compiles; every chain has one), then calls `m! { (users, USERS) … }`.
    // Only those files are watched: a build script watching the whole folder would rebuild
    // the engine, and so everything, on every edit of a chain's sources.
    let root = Path::new(&manifest)
        .join("../..")
        .canonicalize()
        .expect("the workspace root");
    let mut mods = String::new();
    let mut having = Vec::new();
    for c in &consts {
        let name = c.to_ascii_lowercase();
        let f = root.join("services").join(&name).join("loadgen.rs");
        println!("cargo:rerun-if-changed={}", f.display());
        assert!(
            f.is_file(),
            "services/{name}/loadgen.rs: every chain has one (its json and csv records for `tributary loadgen`)"
        );
        writeln!(
            mods,
            "        #[path = {:?}]\n        mod {name};",
            f.display().to_string()
        )
        .expect("write");
        having.push(format!("({name}, {c})"));
    }
    writeln!(
        out,
        "/// Declares, where invoked, `mod <chain>;` for every chain's `services/<chain>/loadgen.rs`,\n\
         /// then calls `$m!` with `(name, CONST)` of every chain.\n\
         #[macro_export]\n\
         macro_rules! chain_modules {{\n    (loadgen, $m:ident) => {{\n{mods}        $m! {{ {} }}\n    }};\n}}",
        having.join(" ")
    )
    .expect("write");
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

/// Turns the provider registry, `providers/providers.txt`, and the provider folders into
/// `$OUT_DIR/providers.rs`: two macros that the engine's `lib.rs` includes first.
///
/// - `with_providers!(m)` calls `m! { (sendgrid, Sendgrid) (mailgun, Mailgun) … }`: the
///   engine builds the `Source` enum, the reader modules and every per-provider dispatch from
///   it.
/// - `tributary_engine::provider_modules!(role, m)` (exported) declares, where it is invoked,
///   `mod <provider>;` for every provider whose folder holds `<role>.rs`, by `#[path]` to that
///   file, then calls `m!` with those providers. A chain's crate invokes it with its name, the
///   gateway with `gateway`, the load generator with `loadgen`; so a provider's code for each
///   of them lives in the provider's folder and nothing else lists it.
///
/// Why generated rather than written out: a provider is then one folder and one line, and the
/// compiler sees every dispatch `match` over `Source` whole (no catch-all hides a provider that
/// was forgotten).
fn providers() {
    let manifest = std::env::var("CARGO_MANIFEST_DIR").expect("CARGO_MANIFEST_DIR");
    let root = Path::new(&manifest)
        .join("../..")
        .canonicalize()
        .expect("the workspace root");
    let dir = root.join("providers");
    let file = dir.join("providers.txt");
    println!("cargo:rerun-if-changed={}", file.display());
    println!("cargo:rerun-if-changed={}", dir.display());
    let text = std::fs::read_to_string(&file).unwrap_or_else(|e| panic!("{}: {e}", file.display()));
    let mut names: Vec<&str> = Vec::new();
    for (n, line) in text.lines().enumerate() {
        let line = line.split('#').next().unwrap_or_default().trim();
        if line.is_empty() {
            continue;
        }
        let at = |what: &str| format!("providers/providers.txt:{}: {what}: {line:?}", n + 1);
        assert!(
            line.starts_with(|c: char| c.is_ascii_lowercase())
                && line.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit()),
            "{}",
            at("a provider is one name, [a-z][a-z0-9]*")
        );
        assert!(
            !["json", "csv"].contains(&line),
            "{}",
            at("json and csv are the built-in formats")
        );
        assert!(!names.contains(&line), "{}", at("a second line for the same provider"));
        assert!(
            dir.join(line).join("read.rs").is_file(),
            "{}",
            at("no providers/<name>/read.rs")
        );
        names.push(line);
    }
    assert!(!names.is_empty(), "providers/providers.txt declares no provider");
    let variant = |name: &str| {
        let mut c = name.chars();
        let first = c.next().expect("a name").to_ascii_uppercase();
        format!("{first}{}", c.as_str())
    };
    let list = |names: &[&str]| -> String {
        names
            .iter()
            .map(|n| format!("({n}, {})", variant(n)))
            .collect::<Vec<_>>()
            .join(" ")
    };
    let path = |name: &str, role: &str| dir.join(name).join(format!("{role}.rs")).display().to_string();
    let mut out = String::new();
    writeln!(
        out,
        "/// Calls `$m!` with every provider of `providers/providers.txt`, as `(module, Variant)`.\n\
         macro_rules! with_providers {{\n    ($m:ident) => {{ $m! {{ {} }} }};\n}}\n",
        list(&names)
    )
    .expect("write");
    // The engine's own modules: every provider's reader.
    let mut readers = String::new();
    for n in &names {
        writeln!(readers, "        #[path = {:?}]\n        pub mod {n};", path(n, "read")).expect("write");
    }
    writeln!(
        out,
        "/// Declares every provider's reader (`providers/<name>/read.rs`) as `esp::<name>`.\n\
         macro_rules! provider_readers {{\n    () => {{\n{readers}    }};\n}}\n"
    )
    .expect("write");
    // The roles: every chain, the gateway, the load generator, and any other file a folder has.
    let chains_txt = std::fs::read_to_string(root.join("schemas/chains.txt")).expect("schemas/chains.txt");
    let mut roles: Vec<String> = chains_txt
        .lines()
        .filter(|l| l.starts_with(|c: char| c.is_ascii_lowercase()))
        .filter_map(|l| l.split_whitespace().next().map(str::to_owned))
        .collect();
    let chain_names = roles.clone();
    roles.extend(["gateway".to_owned(), "loadgen".to_owned()]);
    for n in &names {
        for e in std::fs::read_dir(dir.join(n)).expect("a provider folder").flatten() {
            let f = e.file_name().to_string_lossy().into_owned();
            if let Some(role) = f.strip_suffix(".rs") {
                if role != "read" && !roles.iter().any(|r| r == role) {
                    panic!("providers/{n}/{f}: not a role (a chain's name, gateway, loadgen or read)");
                }
            }
        }
    }
    let mut arms = String::new();
    for role in &roles {
        let having: Vec<&str> = names
            .iter()
            .copied()
            .filter(|n| Path::new(&path(n, role)).is_file())
            .collect();
        let mut mods = String::new();
        for n in &having {
            writeln!(mods, "        #[path = {:?}]\n        mod {n};", path(n, role)).expect("write");
        }
        writeln!(
            arms,
            "    ({role}, $m:ident) => {{\n{mods}        $m! {{ {} }}\n    }};",
            list(&having)
        )
        .expect("write");
        if chain_names.contains(role) {
            // A chain's crate: the modules and `provider_parse`, which its `Chain::parse`
            // calls for every format but json and csv.
            let mut arms_of = String::new();
            for n in &having {
                writeln!(
                    arms_of,
                    "                $crate::Source::{} => Some({n}::parse(raw)),",
                    variant(n)
                )
                .expect("write");
            }
            writeln!(
                arms,
                "    ({role}) => {{\n{mods}\
                 \x20       /// A provider's event as this chain's input, read by that provider's\n\
                 \x20       /// `providers/<name>/{role}.rs`; `None` for a format no provider module of this chain reads.\n\
                 \x20       fn provider_parse(\n\
                 \x20           source: $crate::Source,\n\
                 \x20           raw: &$crate::RawRecord<'_>,\n\
                 \x20       ) -> Option<Result<$crate::Input<Draft>, $crate::RecordError>> {{\n\
                 \x20           #[allow(unreachable_patterns)]\n\
                 \x20           match source {{\n{arms_of}\
                 \x20               _ => {{ let _ = raw; None }}\n\
                 \x20           }}\n\
                 \x20       }}\n\
                 \x20   }};"
            )
            .expect("write");
        }
    }
    writeln!(
        out,
        "/// Declares, where it is invoked, `mod <provider>;` for every provider whose folder holds\n\
         /// `<role>.rs` (a chain's name, `gateway` or `loadgen`), then calls `$m!` with those\n\
         /// providers as `(module, Variant)`: see `crates/engine/build.rs`.\n\
         #[macro_export]\n\
         macro_rules! provider_modules {{\n{arms}}}"
    )
    .expect("write");
    let dest = Path::new(&std::env::var("OUT_DIR").expect("OUT_DIR")).join("providers.rs");
    std::fs::write(&dest, out).unwrap_or_else(|e| panic!("{}: {e}", dest.display()));
}
