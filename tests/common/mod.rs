//! Helpers shared by the integration tests of the `lineage` binary.
#![allow(dead_code)] // each test crate uses a different subset

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use serde_json::Value;

/// The workspace root (where `testdata/` lives).
pub fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The Invictus CloudTrail directory and its inventory.
pub fn invictus() -> (PathBuf, PathBuf) {
    let dir = root().join("testdata/cloudtrail/invictus");
    (dir.join("CloudTrail"), dir.join("inventory.toml"))
}

/// Runs `lineage replay <inputs> --out <out> [extra…]` and returns its output.
pub fn replay(inputs: &[&Path], out: &Path, extra: &[&str]) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_lineage"));
    cmd.arg("replay");
    cmd.args(inputs);
    cmd.arg("--out").arg(out);
    cmd.args(extra);
    // Keep the tests independent of the caller's log settings.
    cmd.env_remove("LINEAGE_LOG");
    cmd.output().expect("the lineage binary runs")
}

/// Fails with stdout and stderr when the exit code is not `code`.
pub fn assert_exit(output: &Output, code: i32) {
    assert_eq!(
        output.status.code(),
        Some(code),
        "exit status {:?}\n--- stdout\n{}\n--- stderr\n{}",
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}

/// `summary.json` of an output directory.
pub fn summary(out: &Path) -> Value {
    let text = std::fs::read_to_string(out.join("summary.json")).expect("summary.json written");
    serde_json::from_str(&text).expect("summary.json is JSON")
}

/// The lines of a JSON-lines output file (empty when the file is empty).
pub fn jsonl(path: &Path) -> Vec<Value> {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    text.lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{}: {e}", path.display())))
        .collect()
}

/// Every record of the Invictus `{"Records":[…]}` files, in file order.
pub fn invictus_records() -> Vec<Value> {
    let (dir, _) = invictus();
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "json"))
        .collect();
    files.sort();
    let mut out = Vec::new();
    for f in files {
        let doc: Value = serde_json::from_slice(&std::fs::read(&f).unwrap()).unwrap();
        match doc.get("Records") {
            Some(Value::Array(records)) => out.extend(records.iter().cloned()),
            _ => panic!("{}: not a Records file", f.display()),
        }
    }
    out
}

/// The number `read == normalized + dead_lettered` holds in a summary, overall and per source.
pub fn assert_counts_add_up(summary: &Value) {
    let n = |v: &Value, k: &str| v[k].as_u64().unwrap_or_else(|| panic!("no `{k}` in {v}"));
    assert_eq!(
        n(summary, "read"),
        n(summary, "normalized") + n(summary, "dead_lettered"),
        "{summary:#}"
    );
    for (source, c) in summary["by_source"].as_object().unwrap() {
        assert_eq!(
            n(c, "read"),
            n(c, "normalized") + n(c, "dead_lettered"),
            "{source}"
        );
    }
}

/// Every file under `dir`, recursively.
pub fn files_under(dir: &Path, out: &mut Vec<PathBuf>) {
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            files_under(&p, out);
        } else {
            out.push(p);
        }
    }
}

/// Each table under `<out>/tables` with its row count, read from the Parquet
/// footers (closed files only: in-progress files are hidden and not counted).
pub fn table_rows(out: &Path) -> Vec<(String, usize)> {
    use parquet::file::reader::FileReader;
    let mut names: Vec<(String, usize)> = std::fs::read_dir(out.join("tables"))
        .unwrap()
        .map(|e| {
            let p = e.unwrap().path();
            let mut parts = Vec::new();
            files_under(&p, &mut parts);
            let rows = parts
                .iter()
                .filter(|f| f.extension().is_some_and(|e| e == "parquet"))
                .map(|f| {
                    let file = std::fs::File::open(f).unwrap();
                    parquet::file::reader::SerializedFileReader::new(file)
                        .map(|r| r.metadata().file_metadata().num_rows() as usize)
                        .unwrap()
                })
                .sum();
            (p.file_name().unwrap().to_string_lossy().into_owned(), rows)
        })
        .collect();
    names.sort();
    names
}
