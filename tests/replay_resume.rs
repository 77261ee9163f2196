//! Resumable replay: a replay killed with SIGKILL (twice) and continued with
//! `--resume` from its manifest of finished files produces exactly what an
//! uninterrupted replay of the same archive produces (summary, alerts, actions,
//! events, dead letters, tables), without reading finished files again; a resume
//! with different inputs, or of a finished run, is refused with the reason.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::{assert_counts_add_up, assert_exit, jsonl, replay, summary, table_rows};
use serde_json::Value;

fn manifest(out: &Path) -> Option<Value> {
    let text = std::fs::read(out.join("replay-manifest.json")).ok()?;
    serde_json::from_slice(&text).ok()
}

/// Starts a checkpointing replay into `out` and kills it (SIGKILL) once a manifest it
/// wrote lists more than `at_least` finished files. Returns the finished count of the
/// manifest left behind.
fn replay_and_kill(args: &[String], out: &Path, at_least: usize) -> usize {
    let before = manifest(out).map(|m| m["written_at"].clone());
    let mut child = Command::new(env!("CARGO_BIN_EXE_lineage"))
        .args(args)
        .env_remove("LINEAGE_LOG")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        if let Some(m) = manifest(out) {
            let finished = m["finished"].as_array().map_or(0, Vec::len);
            assert_ne!(
                m["complete"],
                Value::Bool(true),
                "the replay finished before it could be killed; give it a larger archive"
            );
            if finished > at_least && Some(&m["written_at"]) != before.as_ref() {
                child.kill().unwrap(); // SIGKILL
                child.wait().unwrap();
                // The manifest on disk is the last complete checkpoint.
                let m = manifest(out).expect("the manifest survives the kill");
                assert_eq!(m["complete"], Value::Bool(false));
                return m["finished"].as_array().unwrap().len();
            }
        }
        assert!(Instant::now() < deadline, "no checkpoint within 2 minutes");
        assert!(child.try_wait().unwrap().is_none(), "replay exited early");
        std::thread::sleep(Duration::from_millis(2));
    }
}

fn lines(path: &Path) -> Vec<String> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .map(str::to_owned)
        .collect()
}

#[test]
fn a_killed_replay_resumed_from_its_manifest_equals_an_uninterrupted_one() {
    let tmp = tempfile::tempdir().unwrap();
    let sim = tmp.path().join("sim");
    let simulated = Command::new(env!("CARGO_BIN_EXE_lineage"))
        .args(["simulate", "--out", sim.to_str().unwrap(), "--days", "12"])
        .output()
        .unwrap();
    assert_exit(&simulated, 0);
    let inventory = sim.join("inventory.toml");
    let mut log_dirs: Vec<PathBuf> = std::fs::read_dir(&sim)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.is_dir())
        .collect();
    log_dirs.sort();
    // A truncated gzip member and a garbage line: dead letters must survive a resume
    // once each.
    let broken = sim.join("broken");
    std::fs::create_dir_all(&broken).unwrap();
    std::fs::write(
        broken.join("2024-01-03-cloudtrail.json"),
        b"{\"Records\": [ {\"eventID\": ",
    )
    .unwrap();
    log_dirs.push(broken);

    let inputs: Vec<&Path> = log_dirs.iter().map(PathBuf::as_path).collect();
    let inv = inventory.to_str().unwrap();
    let common_args = [
        "--inventory",
        inv,
        "--events",
        "--progress",
        "none",
        "--threads",
        "2",
    ];

    let straight = tmp.path().join("straight");
    let out = replay(&inputs, &straight, &common_args);
    assert_exit(&out, 0);
    let expected = summary(&straight);
    assert_counts_add_up(&expected);
    assert!(expected["alerts"].as_u64().unwrap() > 0, "{expected}");
    assert!(
        expected["dead_lettered"].as_u64().unwrap() > 0,
        "{expected}"
    );
    let files = expected["files"].as_u64().unwrap() as usize;
    assert!(files >= 20, "a multi-file archive: {files}");

    let resumed = tmp.path().join("resumed");
    let mut args: Vec<String> = vec!["replay".into()];
    args.extend(inputs.iter().map(|p| p.display().to_string()));
    args.extend(["--out".into(), resumed.display().to_string()]);
    args.extend(common_args.iter().map(|s| s.to_string()));
    args.extend(["--checkpoint-every".into(), "0s".into()]);

    // Killed at its first checkpoint past the first eighth of the files, resumed and
    // killed again at a later checkpoint, resumed to the end. (A checkpoint is taken
    // once the previous one is written: they come a pipeline's depth apart, some
    // 60,000 records.)
    let first = replay_and_kill(&args, &resumed, files / 8);
    let mut again = args.clone();
    again.push("--resume".into());
    let second = replay_and_kill(&again, &resumed, first);
    eprintln!("killed at {first} and {second} of {files} files finished");
    assert!(
        second > first,
        "the second run went on from the first checkpoint"
    );
    assert!(
        second < files,
        "killed before the end: {first} then {second} of {files}"
    );
    let out = Command::new(env!("CARGO_BIN_EXE_lineage"))
        .args(&again)
        .env_remove("LINEAGE_LOG")
        .output()
        .unwrap();
    assert_exit(&out, 0);

    let got = summary(&resumed);
    assert_counts_add_up(&got);
    for k in [
        "files",
        "read",
        "normalized",
        "dead_lettered",
        "by_source",
        "joined_halves",
        "lineage_facts",
        "service_events",
        "attributed",
        "unattributed",
        "by_method",
        "top_unattributed",
        "alerts_by_detector",
        "alerts",
        "actions_requested",
        "late_records",
        "outside_time_range",
    ] {
        assert_eq!(got[k], expected[k], "summary field {k}");
    }
    assert_eq!(
        jsonl(&resumed.join("alerts.jsonl")),
        jsonl(&straight.join("alerts.jsonl")),
        "same alerts, every field"
    );
    assert_eq!(
        jsonl(&resumed.join("actions.jsonl")),
        jsonl(&straight.join("actions.jsonl"))
    );
    // Streaming outputs: nothing lost, nothing twice, same order.
    let (ev_got, ev_want) = (
        lines(&resumed.join("events.jsonl")),
        lines(&straight.join("events.jsonl")),
    );
    assert_eq!(ev_got.len(), ev_want.len(), "events.jsonl records");
    assert!(
        ev_got == ev_want,
        "events.jsonl differs from the uninterrupted run"
    );
    assert_eq!(
        lines(&resumed.join("dead_letters.jsonl")),
        lines(&straight.join("dead_letters.jsonl"))
    );
    assert_eq!(
        table_rows(&resumed),
        table_rows(&straight),
        "table row counts"
    );

    let m = manifest(&resumed).unwrap();
    assert_eq!(m["complete"], Value::Bool(true));
    assert_eq!(m["finished"].as_array().unwrap().len(), files);
    assert!(
        !resumed.join("replay-state").exists(),
        "state removed when done"
    );

    // A finished run is not resumed…
    let out = Command::new(env!("CARGO_BIN_EXE_lineage"))
        .args(&again)
        .env_remove("LINEAGE_LOG")
        .output()
        .unwrap();
    assert_exit(&out, 1);
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("already finished"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    // … nor one whose inputs changed since its checkpoint.
    let changed = tmp.path().join("changed");
    replay_and_kill(
        &args
            .iter()
            .map(|a| a.replace(resumed.to_str().unwrap(), changed.to_str().unwrap()))
            .collect::<Vec<_>>(),
        &changed,
        2,
    );
    let mut fewer: Vec<String> = vec!["replay".into(), log_dirs[0].display().to_string()];
    fewer.extend(["--out".into(), changed.display().to_string()]);
    fewer.extend(common_args.iter().map(|s| s.to_string()));
    fewer.push("--resume".into());
    let out = Command::new(env!("CARGO_BIN_EXE_lineage"))
        .args(&fewer)
        .env_remove("LINEAGE_LOG")
        .output()
        .unwrap();
    assert_exit(&out, 1);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("differ from the interrupted run"), "{err}");
}
