//! Damaged input never stops a replay and never goes missing: every bad record is
//! dead-lettered with a reason that names the problem, the good records around it
//! are normalized, and `read == normalized + dead_lettered`.

mod common;

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::path::Path;

use serde_json::{json, Value};

/// What one input file should yield.
struct Expect {
    normalized: u64,
    /// One entry per expected dead letter: a phrase its reason must contain (any of the alternatives).
    dead: Vec<&'static [&'static str]>,
}

fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    enc.write_all(bytes).unwrap();
    enc.finish().unwrap()
}

/// What a gzip decoder recovers from a damaged stream before the error.
fn gunzip_prefix(bytes: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    let result = flate2::read::MultiGzDecoder::new(bytes).read_to_end(&mut out);
    assert!(
        result.is_err(),
        "the damaged stream should not decode cleanly"
    );
    out
}

fn records_file(records: &[String]) -> String {
    format!("{{\"Records\":[{}]}}", records.join(","))
}

/// Good, distinct records to surround the bad ones: real Invictus records.
fn good_records() -> Vec<Value> {
    common::invictus_records().into_iter().take(16).collect()
}

/// Writes the damaged files into `dir` and returns what each should yield, by file name.
fn write_inputs(dir: &Path) -> BTreeMap<&'static str, Expect> {
    let mut good = good_records().into_iter().map(|r| r.to_string());
    let mut next = move || good.next().expect("enough good records");
    let mut expect = BTreeMap::new();

    // 1. A gzip'd 3-record delivery file cut in half. The first record is a short,
    // compressible one and the others carry long random-looking strings (an encoded
    // error message, a session token), so half of the compressed stream holds the
    // whole first record.
    let all = common::invictus_records();
    let pick = |pred: &dyn Fn(&Value) -> bool| {
        all.iter()
            .find(|r| pred(r))
            .expect("the dataset has such a record")
            .to_string()
    };
    let records = vec![
        pick(&|r| r["eventName"] == "GetCallerIdentity"),
        pick(&|r| r["eventName"] == "GetPasswordData"),
        pick(&|r| {
            r["eventName"] == "AssumeRole"
                && r["userIdentity"]["type"] == "IAMUser"
                && r.get("errorCode").is_none()
        }),
    ];
    let gz = gzip(records_file(&records).as_bytes());
    let cut = &gz[..gz.len() / 2];
    std::fs::write(dir.join("truncated.json.gz"), cut).unwrap();
    // The records the decoder can still recover whole are normalized; the one cut
    // through is dead-lettered, and so is the gzip stream itself.
    let prefix = gunzip_prefix(cut);
    let complete = records
        .iter()
        .filter(|r| prefix.windows(r.len()).any(|w| w == r.as_bytes()))
        .count() as u64;
    assert!(
        complete >= 1,
        "the test wants at least one recoverable record before the cut"
    );
    let mut dead: Vec<&'static [&'static str]> = vec![&["gzip"]];
    if complete < 3 {
        dead.push(&["truncated"]);
    }
    expect.insert(
        "truncated.json.gz",
        Expect {
            normalized: complete,
            dead,
        },
    );

    // 1b. A gzip stream cut so early that nothing decodes: still a dead letter that says gzip.
    std::fs::write(dir.join("stub.json.gz"), &gz[..12]).unwrap();
    expect.insert(
        "stub.json.gz",
        Expect {
            normalized: 0,
            dead: vec![&["gzip"]],
        },
    );

    // 2. JSON lines: good line, garbage line, good line.
    let text = format!(
        "{}\n{{\"eventVersion\": \"1.08\", garbage\n{}\n",
        next(),
        next()
    );
    std::fs::write(dir.join("mixed.jsonl"), text).unwrap();
    expect.insert(
        "mixed.jsonl",
        Expect {
            normalized: 2,
            dead: vec![&["invalid JSON"]],
        },
    );

    // 3. A delivery file whose `Records` holds a number and a string among the objects.
    let text = records_file(&[next(), "42".into(), "\"not a record\"".into(), next()]);
    std::fs::write(dir.join("non_object.json"), text).unwrap();
    expect.insert(
        "non_object.json",
        Expect {
            normalized: 2,
            dead: vec![&["not a JSON object"], &["not a JSON object"]],
        },
    );

    // 4. A 5 MB record (its userAgent is 5 MB) between two good ones.
    let mut huge = good_records()[15].clone();
    huge["eventID"] = json!("huge-0000-0000-0000-000000000000");
    huge["userAgent"] = json!("A".repeat(5 * 1024 * 1024));
    let text = records_file(&[next(), huge.to_string(), next()]);
    std::fs::write(dir.join("huge.json"), text).unwrap();
    expect.insert(
        "huge.json",
        Expect {
            normalized: 2,
            dead: vec![&["limit"]],
        },
    );

    // 5. A record without `userIdentity`.
    let mut anonymous: Value = serde_json::from_str(&next()).unwrap();
    anonymous.as_object_mut().unwrap().remove("userIdentity");
    let text = records_file(&[next(), anonymous.to_string()]);
    std::fs::write(dir.join("no_identity.json"), text).unwrap();
    expect.insert(
        "no_identity.json",
        Expect {
            normalized: 1,
            dead: vec![&["userIdentity"]],
        },
    );
    expect
}

fn file_name(provenance: &Value) -> String {
    let path = provenance["path"].as_str().unwrap_or_default();
    Path::new(path)
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default()
}

#[test]
fn corrupt_inputs_are_dead_lettered_and_good_records_kept() {
    let inputs = tempfile::tempdir().unwrap();
    let expect = write_inputs(inputs.path());
    let out = tempfile::tempdir().unwrap();

    let output = common::replay(&[inputs.path()], out.path(), &["--events"]);
    common::assert_exit(&output, 0);

    let summary = common::summary(out.path());
    common::assert_counts_add_up(&summary);
    assert_eq!(summary["files"], expect.len() as u64, "{summary:#}");
    let want_normalized: u64 = expect.values().map(|e| e.normalized).sum();
    let want_dead: u64 = expect.values().map(|e| e.dead.len() as u64).sum();
    assert_eq!(summary["normalized"], want_normalized, "{summary:#}");
    assert_eq!(summary["dead_lettered"], want_dead, "{summary:#}");
    assert_eq!(summary["read"], want_normalized + want_dead, "{summary:#}");

    // The good records, per file.
    let mut normalized: BTreeMap<String, u64> = BTreeMap::new();
    for e in common::jsonl(&out.path().join("events.jsonl")) {
        *normalized
            .entry(file_name(&e["use"]["provenance"]))
            .or_default() += 1;
    }
    // The dead letters, per file, with their reasons.
    let mut dead: BTreeMap<String, Vec<String>> = BTreeMap::new();
    let dead_letters = common::jsonl(&out.path().join("dead_letters.jsonl"));
    assert_eq!(dead_letters.len() as u64, want_dead);
    for d in &dead_letters {
        let reason = d["reason"].as_str().unwrap_or_default().to_owned();
        assert!(!reason.trim().is_empty(), "{d}");
        assert!(
            d.get("original").is_some() || d.get("original_base64").is_some(),
            "a dead letter keeps the original bytes: {d}"
        );
        dead.entry(file_name(&d["provenance"]))
            .or_default()
            .push(reason);
    }

    for (file, e) in &expect {
        assert_eq!(
            normalized.get(*file).copied().unwrap_or(0),
            e.normalized,
            "{file}: normalized records"
        );
        let mut reasons = dead.remove(*file).unwrap_or_default();
        assert_eq!(
            reasons.len(),
            e.dead.len(),
            "{file}: dead letters {reasons:?}"
        );
        for phrases in &e.dead {
            let at = reasons
                .iter()
                .position(|r| phrases.iter().any(|p| r.contains(p)))
                .unwrap_or_else(|| {
                    panic!("{file}: no dead letter mentions {phrases:?}: {reasons:?}")
                });
            reasons.remove(at);
        }
    }
    assert!(
        dead.is_empty(),
        "dead letters from unexpected files: {dead:?}"
    );

    // The same inputs with --strict: the run completes but exits 3.
    let strict_out = tempfile::tempdir().unwrap();
    let output = common::replay(&[inputs.path()], strict_out.path(), &["--strict"]);
    common::assert_exit(&output, 3);
    assert_eq!(
        common::summary(strict_out.path())["dead_lettered"],
        want_dead
    );
}

#[test]
fn strict_passes_on_clean_input() {
    let inputs = tempfile::tempdir().unwrap();
    let records: Vec<String> = good_records().iter().map(Value::to_string).collect();
    std::fs::write(inputs.path().join("clean.json"), records_file(&records)).unwrap();
    let out = tempfile::tempdir().unwrap();
    let output = common::replay(&[inputs.path()], out.path(), &["--strict"]);
    common::assert_exit(&output, 0);
    let summary = common::summary(out.path());
    assert_eq!(summary["read"], records.len() as u64);
    assert_eq!(summary["dead_lettered"], 0);
}

#[test]
fn missing_input_path_is_an_error_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("no-such-logs.json.gz");
    let output = common::replay(&[&missing], &dir.path().join("out"), &[]);
    common::assert_exit(&output, 1);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains(&missing.display().to_string()),
        "stderr should name the missing path: {stderr}"
    );
}
