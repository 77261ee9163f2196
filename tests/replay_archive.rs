//! Replay at archive scale: `s3://` inputs from a real moto server equal the same
//! files from disk; the event-time merge keeps 100 shuffled files in order within
//! its documented memory bound; `--since`/`--until` cut the replay.

mod common;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;

use common::{assert_counts_add_up, assert_exit, files_under, jsonl, replay, summary, table_rows};
use serde_json::{json, Value};

fn lineage(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_lineage"))
        .args(args)
        .env_remove("LINEAGE_LOG")
        .output()
        .expect("the lineage binary runs")
}

/// Alerts without where their evidence came from (file paths differ between disk and S3).
fn comparable_alerts(out: &Path) -> Vec<Value> {
    let mut alerts = jsonl(&out.join("alerts.jsonl"));
    fn strip(v: &mut Value) {
        match v {
            Value::Object(m) => {
                m.remove("provenance");
                m.values_mut().for_each(strip);
            }
            Value::Array(a) => a.iter_mut().for_each(strip),
            _ => {}
        }
    }
    alerts.iter_mut().for_each(strip);
    alerts
}

#[test]
fn replay_from_s3_equals_replay_from_disk() {
    let tmp = tempfile::tempdir().unwrap();
    let sim = tmp.path().join("sim");
    let simulated = lineage(&["simulate", "--out", sim.to_str().unwrap(), "--days", "3"]);
    assert_exit(&simulated, 0);
    let inventory = sim.join("inventory.toml");
    let log_dirs: Vec<PathBuf> = std::fs::read_dir(&sim)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.is_dir())
        .collect();
    assert!(log_dirs.len() >= 2, "simulator wrote {log_dirs:?}");

    let moto = lineage_test_support::Moto::start();
    moto.create_bucket("archive");
    let mut files = Vec::new();
    for d in &log_dirs {
        files_under(d, &mut files);
    }
    let days: std::collections::BTreeSet<String> = files
        .iter()
        .filter_map(|f| {
            let s = f.to_string_lossy();
            s.find("/CloudTrail/")
                .map(|i| s[i..].split('/').skip(3).take(3).collect())
        })
        .collect();
    assert!(days.len() >= 3, "a multi-day archive: {days:?}");
    for f in &files {
        let key = f
            .strip_prefix(&sim)
            .unwrap()
            .to_string_lossy()
            .replace('\\', "/");
        moto.put_object(
            "archive",
            &format!("logs/{key}"),
            &std::fs::read(f).unwrap(),
        );
    }

    let from_disk = tmp.path().join("disk");
    let disk_inputs: Vec<&Path> = log_dirs.iter().map(|p| p.as_path()).collect();
    let inv = inventory.to_str().unwrap();
    let out = replay(
        &disk_inputs,
        &from_disk,
        &["--inventory", inv, "--progress", "none"],
    );
    assert_exit(&out, 0);

    let from_s3 = tmp.path().join("s3");
    let out = Command::new(env!("CARGO_BIN_EXE_lineage"))
        .args(["replay", "s3://archive/logs/", "--out"])
        .arg(&from_s3)
        .args([
            "--inventory",
            inv,
            "--progress",
            "lines",
            "--s3-endpoint",
            &moto.endpoint,
        ])
        .env_remove("LINEAGE_LOG")
        .env("AWS_ACCESS_KEY_ID", "testing")
        .env("AWS_SECRET_ACCESS_KEY", "testing")
        .env("AWS_REGION", "us-east-1")
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .env_remove("AWS_PROFILE")
        .output()
        .unwrap();
    assert_exit(&out, 0);

    let (disk, s3) = (summary(&from_disk), summary(&from_s3));
    assert_counts_add_up(&s3);
    assert_eq!(
        s3["files"],
        json!(files.len()),
        "every object listed and read"
    );
    for k in [
        "files",
        "read",
        "normalized",
        "dead_lettered",
        "by_source",
        "joined_halves",
        "lineage_facts",
        "attributed",
        "unattributed",
        "by_method",
        "alerts_by_detector",
        "alerts",
        "actions_requested",
        "late_records",
    ] {
        assert_eq!(disk[k], s3[k], "summary field {k}");
    }
    assert!(s3["alerts"].as_u64().unwrap() > 0);
    assert_eq!(comparable_alerts(&from_disk), comparable_alerts(&from_s3));
    let (disk_tables, s3_tables) = (table_rows(&from_disk), table_rows(&from_s3));
    assert!(
        disk_tables
            .iter()
            .any(|(n, rows)| n == "events" && *rows > 0),
        "{disk_tables:?}"
    );
    assert_eq!(disk_tables, s3_tables, "same tables, same row counts");
}

/// One CloudTrail delivery file for 5-minute window `w`: `n` records inside the window.
fn delivery_file(dir: &Path, w: usize, n: usize) -> PathBuf {
    let start = chrono::DateTime::parse_from_rfc3339("2024-03-01T00:00:00Z").unwrap()
        + chrono::Duration::minutes(5 * w as i64);
    let records: Vec<Value> = (0..n)
        .map(|j| {
            // Out of order inside the file, as CloudTrail writes them.
            let t = start + chrono::Duration::milliseconds(((j * 7919) % n) as i64 * 300_000 / n as i64);
            json!({
                "eventVersion": "1.08",
                "eventID": format!("e-{w}-{j}"),
                "eventTime": t.format("%Y-%m-%dT%H:%M:%S%.3fZ").to_string(),
                "eventSource": "s3.amazonaws.com",
                "eventName": "GetObject",
                "awsRegion": "us-east-1",
                "sourceIPAddress": "203.0.113.7",
                "userIdentity": {"type": "IAMUser", "accessKeyId": "AKIAARCHIVETEST00001", "userName": "batch"},
            })
        })
        .collect();
    // Directory names scramble the path order so the given order is not time order.
    let sub = dir.join(format!("part-{:03}", (w * 37) % 100));
    std::fs::create_dir_all(&sub).unwrap();
    let name = format!(
        "111122223333_CloudTrail_us-east-1_{}_{:04}.json.gz",
        (start + chrono::Duration::minutes(5)).format("%Y%m%dT%H%MZ"),
        w
    );
    let path = sub.join(name);
    let mut gz = flate2::write::GzEncoder::new(
        std::fs::File::create(&path).unwrap(),
        flate2::Compression::fast(),
    );
    gz.write_all(
        serde_json::to_string(&json!({ "Records": records }))
            .unwrap()
            .as_bytes(),
    )
    .unwrap();
    gz.finish().unwrap();
    path
}

#[test]
fn a_hundred_shuffled_files_replay_in_time_order_within_the_memory_bound() {
    let tmp = tempfile::tempdir().unwrap();
    let logs = tmp.path().join("logs");
    const FILES: usize = 100;
    const PER_FILE: usize = 200;
    for w in 0..FILES {
        delivery_file(&logs, w, PER_FILE);
    }
    let out = tmp.path().join("out");
    // The documented bound: look-ahead files + the files the merge window reaches
    // back into (a 10-minute window over 5-minute files: 2 more), each held whole.
    let (lookahead, window_files) = (4u64, 3u64);
    let run = replay(
        &[&logs],
        &out,
        &[
            "--events",
            "--threads",
            "2",
            "--lookahead",
            "4",
            "--merge-window",
            "10m",
            "--progress",
            "none",
            "--no-tables",
        ],
    );
    assert_exit(&run, 0);
    let s = summary(&out);
    assert_counts_add_up(&s);
    assert_eq!(s["read"], json!(FILES * PER_FILE));
    assert_eq!(s["late_records"], json!(0));
    let peak_files = s["peak_buffered_files"].as_u64().unwrap();
    let peak_records = s["peak_buffered_records"].as_u64().unwrap();
    assert!(peak_files <= lookahead + window_files, "{s:#}");
    assert!(
        peak_records <= (lookahead + window_files) * PER_FILE as u64,
        "{s:#}"
    );
    assert!(
        peak_records < (FILES * PER_FILE / 10) as u64,
        "the merge held a tenth of the archive: {s:#}"
    );
    let times: Vec<String> = jsonl(&out.join("events.jsonl"))
        .iter()
        .map(|e| {
            e["use"]["time"]
                .as_str()
                .or(e["use_"]["time"].as_str())
                .unwrap_or_else(|| panic!("{e}"))
                .to_string()
        })
        .collect();
    assert_eq!(times.len(), FILES * PER_FILE);
    let parsed: Vec<chrono::DateTime<chrono::FixedOffset>> = times
        .iter()
        .map(|t| chrono::DateTime::parse_from_rfc3339(t).unwrap())
        .collect();
    assert!(
        parsed.windows(2).all(|w| w[0] <= w[1]),
        "events.jsonl is in event-time order"
    );

    // A file whose name claims a time 2.5 hours after its records (more than the
    // 1-hour default window): its records are late. Every one is still replayed, and
    // the summary says how many came out of order.
    let misnamed = delivery_file(&logs, 50, PER_FILE);
    let name = misnamed
        .file_name()
        .unwrap()
        .to_string_lossy()
        .replace("T0415Z", "T0645Z");
    assert_ne!(
        name,
        misnamed.file_name().unwrap().to_string_lossy(),
        "window 50 ends at 04:15"
    );
    std::fs::rename(&misnamed, misnamed.with_file_name(name)).unwrap();
    let late = tmp.path().join("late");
    let run = replay(&[&logs], &late, &["--progress", "none", "--no-tables"]);
    assert_exit(&run, 0);
    let s = summary(&late);
    assert_eq!(s["normalized"], json!(FILES * PER_FILE));
    assert_eq!(s["late_records"], json!(PER_FILE), "{s:#}");
}

#[test]
fn since_and_until_cut_the_replay_but_earlier_lineage_still_counts() {
    let tmp = tempfile::tempdir().unwrap();
    let logs = tmp.path().join("logs");
    for w in 0..24 {
        delivery_file(&logs, w, 10);
    }
    let out = tmp.path().join("out");
    // Windows 6..=11 (00:30–01:00) of 24.
    let run = replay(
        &[&logs],
        &out,
        &[
            "--events",
            "--since",
            "2024-03-01T00:30:00Z",
            "--until",
            "2024-03-01T00:59:59Z",
            "--progress",
            "none",
            "--no-tables",
        ],
    );
    assert_exit(&run, 0);
    let s = summary(&out);
    assert_counts_add_up(&s);
    let events = jsonl(&out.join("events.jsonl"));
    assert_eq!(events.len(), 60, "six windows of ten records");
    // Files that start after --until (+ the 1 h merge window) are not even read.
    assert!(
        s["read"].as_u64().unwrap() < 240 || s["outside_time_range"].as_u64().unwrap() == 180,
        "{s:#}"
    );
    assert_eq!(
        s["read"].as_u64().unwrap() - s["outside_time_range"].as_u64().unwrap(),
        60
    );

    let bad = replay(&[&logs], &tmp.path().join("bad"), &["--since", "yesterday"]);
    assert_exit(&bad, 2);
    assert!(String::from_utf8_lossy(&bad.stderr).contains("RFC 3339"));
}
