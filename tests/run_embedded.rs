//! `lineage run` on the embedded bus (the default): `[run] inputs` go through the
//! replay pipeline in one process, with the same outputs as `lineage replay`,
//! including the Parquet lineage tables that `lineage sql` reads.

mod common;

use std::path::Path;
use std::process::Command;

use serde_json::Value;

fn lineage() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_lineage"));
    c.env_remove("LINEAGE_LOG");
    c
}

fn count(tables: &Path, table: &str) -> u64 {
    let o = lineage()
        .args(["sql", "--tables"])
        .arg(tables)
        .args(["--format", "json"])
        .arg(format!("SELECT count(*) AS n FROM {table}"))
        .output()
        .unwrap();
    common::assert_exit(&o, 0);
    let line = o
        .stdout
        .split(|b| *b == b'\n')
        .find(|l| !l.is_empty())
        .expect("one row");
    let v: Value = serde_json::from_slice(line).unwrap();
    v["n"].as_u64().unwrap()
}

#[test]
fn embedded_run_writes_replays_outputs_and_tables() {
    let tmp = tempfile::tempdir().unwrap();
    let sim = tmp.path().join("sim");
    let o = lineage()
        .args(["simulate", "--out"])
        .arg(&sim)
        .args(["--agents", "8", "--days", "2"])
        .output()
        .unwrap();
    common::assert_exit(&o, 0);
    let inventory = sim.join("inventory.toml");
    let mut inputs: Vec<String> = std::fs::read_dir(&sim)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.is_dir())
        .map(|p| p.display().to_string())
        .collect();
    inputs.sort();

    let out = tmp.path().join("run");
    let cfg = tmp.path().join("lineage.toml");
    let quoted: Vec<String> = inputs.iter().map(|i| format!("{i:?}")).collect();
    std::fs::write(
        &cfg,
        format!(
            "[run]\ninventory = {:?}\nout_dir = {:?}\ninputs = [{}]\n",
            inventory.display().to_string(),
            out.display().to_string(),
            quoted.join(", ")
        ),
    )
    .unwrap();
    let o = lineage()
        .args(["run", "--config"])
        .arg(&cfg)
        .output()
        .unwrap();
    common::assert_exit(&o, 0);

    let replay_out = tmp.path().join("replay");
    let paths: Vec<&Path> = inputs.iter().map(Path::new).collect();
    let inv = inventory.display().to_string();
    common::assert_exit(
        &common::replay(&paths, &replay_out, &["--inventory", &inv]),
        0,
    );
    let ids = |p: &Path| -> Vec<String> {
        let mut v: Vec<String> = common::jsonl(p)
            .iter()
            .map(|a| a["id"].as_str().unwrap().to_owned())
            .collect();
        v.sort();
        v
    };
    assert_eq!(
        ids(&out.join("alerts.jsonl")),
        ids(&replay_out.join("alerts.jsonl"))
    );
    for table in ["events", "credentials", "alerts", "actions", "dead_letters"] {
        assert_eq!(
            count(&out.join("tables"), table),
            count(&replay_out.join("tables"), table),
            "rows of {table}"
        );
    }
    assert!(count(&out.join("tables"), "events") > 0);
}
