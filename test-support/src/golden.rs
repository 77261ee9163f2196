//! The golden-file harness: `<dir>/<name>.input.json` is normalized by the test's
//! function and compared with `<dir>/<name>.expected.json`. `UPDATE_GOLDEN=1`
//! rewrites the expected files from the current code (review the diff by eye before
//! keeping it).

use std::path::Path;

use serde_json::Value;

/// Every `<name>` with a `<name>.input.json` in `dir`, sorted.
pub fn names(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("golden directory {}: {e}", dir.display()))
        .filter_map(|e| {
            let name = e.ok()?.file_name().into_string().ok()?;
            name.strip_suffix(".input.json").map(str::to_owned)
        })
        .collect();
    names.sort();
    names
}

/// The bytes of `<dir>/<name>.input.json`.
pub fn input(dir: &Path, name: &str) -> Vec<u8> {
    let path = dir.join(format!("{name}.input.json"));
    std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// Compares `normalize(name)` with each expected file (or rewrites them with
/// `UPDATE_GOLDEN=1`); fails listing every mismatch. At least `min` goldens must be
/// there.
pub fn check(dir: &Path, min: usize, normalize: impl Fn(&str) -> Value) {
    let names = names(dir);
    assert!(
        names.len() >= min,
        "expected at least {min} golden records in {}, found {names:?}",
        dir.display()
    );
    let update = std::env::var_os("UPDATE_GOLDEN").is_some_and(|v| !v.is_empty() && v != "0");
    let mut mismatches = Vec::new();
    for name in &names {
        let got = normalize(name);
        let expected_path = dir.join(format!("{name}.expected.json"));
        if update {
            let text = serde_json::to_string_pretty(&got).unwrap() + "\n";
            std::fs::write(&expected_path, text).unwrap();
            continue;
        }
        let text = std::fs::read_to_string(&expected_path).unwrap_or_else(|e| {
            panic!(
                "{}: {e} (run with UPDATE_GOLDEN=1 to create it)",
                expected_path.display()
            )
        });
        let expected: Value = serde_json::from_str(&text)
            .unwrap_or_else(|e| panic!("{}: {e}", expected_path.display()));
        if got != expected {
            mismatches.push(format!(
                "{name}:\n--- expected\n{}\n+++ got\n{}",
                serde_json::to_string_pretty(&expected).unwrap(),
                serde_json::to_string_pretty(&got).unwrap()
            ));
        }
    }
    assert!(
        mismatches.is_empty(),
        "{} golden mismatch(es) (UPDATE_GOLDEN=1 rewrites them):\n{}",
        mismatches.len(),
        mismatches.join("\n\n")
    );
}
