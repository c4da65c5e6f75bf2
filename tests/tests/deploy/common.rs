//! Paths, the pinned tools, JSON helpers.

use super::*;

pub(crate) fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("workspace root")
        .to_path_buf()
}

/// `target/release` (or `target/debug`): this test executable is in its `deps/`.
pub(crate) fn bin_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("current exe");
    exe.parent().and_then(Path::parent).expect("target dir").to_path_buf()
}

/// `.infra/tools/bin/<name>`, after `bash dev/lint-deploy.sh tools` (once per run; quick when
/// the pinned tools are there already).
pub(crate) fn tool(name: &str) -> PathBuf {
    static INSTALLED: OnceLock<Result<(), String>> = OnceLock::new();
    let r = INSTALLED.get_or_init(|| {
        let out = Command::new("bash")
            .args(["dev/lint-deploy.sh", "tools"])
            .current_dir(root())
            .output()
            .map_err(|e| format!("bash dev/lint-deploy.sh tools: {e}"))?;
        if out.status.success() {
            Ok(())
        } else {
            Err(format!(
                "bash dev/lint-deploy.sh tools failed ({}): {}{}",
                out.status,
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            ))
        }
    });
    if let Err(e) = r {
        panic!("{e}");
    }
    let p = root().join(".infra/tools/bin").join(name);
    assert!(
        p.is_file(),
        "{} is not installed by dev/lint-deploy.sh tools",
        p.display()
    );
    p
}

pub(crate) fn s<'a>(v: &'a Value, key: &str) -> &'a str {
    v.get(key).and_then(Value::as_str).unwrap_or("")
}

pub(crate) fn arr<'a>(v: &'a Value, key: &str) -> &'a [Value] {
    v.get(key).and_then(Value::as_array).map(Vec::as_slice).unwrap_or(&[])
}

/// True when `word` occurs in `text` not as part of a longer word (`-`, `_`, alphanumerics).
pub(crate) fn has_word(text: &str, word: &str) -> bool {
    let is_word = |c: char| c == '-' || c == '_' || c.is_ascii_alphanumeric();
    text.match_indices(word).any(|(i, _)| {
        let before = text[..i].chars().next_back();
        let after = text[i + word.len()..].chars().next();
        !before.is_some_and(is_word) && !after.is_some_and(is_word)
    })
}

pub(crate) fn tempdir(what: &str) -> PathBuf {
    static N: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let n = N.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
    let d = std::env::temp_dir().join(format!("tributary-deploy-{}-{what}-{n}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).expect("temp dir");
    std::fs::set_permissions(&d, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    d
}
