//! `lineage graph show` over the tables a replay of the simulator wrote: the picture
//! of a session key climbs its issuance chain to the agent and owner the inventory
//! names; `--as-of` before the session was issued leaves that edge out; every format
//! renders; an unknown subject is a clear error.

mod common;

use std::path::Path;
use std::process::Command;

use common::{assert_exit, replay};
use serde_json::Value;

fn lineage(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_lineage"))
        .args(args)
        .env_remove("LINEAGE_LOG")
        .output()
        .expect("the lineage binary runs")
}

fn sql_json(tables: &Path, query: &str) -> Vec<Value> {
    let out = lineage(&[
        "sql",
        query,
        "--tables",
        tables.to_str().unwrap(),
        "--format",
        "json",
    ]);
    assert_exit(&out, 0);
    String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

#[test]
fn graph_show_draws_the_chain_from_a_session_to_its_owner() {
    let tmp = tempfile::tempdir().unwrap();
    let sim = tmp.path().join("sim");
    assert_exit(
        &lineage(&["simulate", "--out", sim.to_str().unwrap(), "--days", "2"]),
        0,
    );
    let inventory_text = std::fs::read_to_string(sim.join("inventory.toml")).unwrap();
    let inventory: toml::Value = toml::from_str(&inventory_text).unwrap();
    let out = tmp.path().join("out");
    let dirs: Vec<std::path::PathBuf> = std::fs::read_dir(&sim)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.is_dir())
        .collect();
    let inputs: Vec<&Path> = dirs.iter().map(|p| p.as_path()).collect();
    let inv = sim.join("inventory.toml");
    assert_exit(
        &replay(
            &inputs,
            &out,
            &["--inventory", inv.to_str().unwrap(), "--progress", "none"],
        ),
        0,
    );
    let tables = out.join("tables");

    // A session key issued from an access key the inventory binds to an agent.
    let bound: Vec<(String, String, String)> = inventory["agent"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|a| {
            let id = a["id"].as_str().unwrap().to_string();
            let owner = a["owner"].as_str().unwrap().to_string();
            a.get("credentials")
                .and_then(|c| c.as_array())
                .into_iter()
                .flatten()
                .map(move |c| (c.as_str().unwrap().to_string(), id.clone(), owner.clone()))
        })
        .collect();
    let sessions = sql_json(
        &tables,
        "SELECT from_id, to_id, CAST(valid_from AS VARCHAR) AS issued FROM edges \
         WHERE relation = 'issued_from' ORDER BY from_id",
    );
    let (session, parent, issued, agent, owner) = sessions
        .iter()
        .find_map(|e| {
            let parent = e["to_id"].as_str()?;
            let (_, agent, owner) = bound.iter().find(|(c, _, _)| c == parent)?;
            Some((
                e["from_id"].as_str()?.to_string(),
                parent.to_string(),
                e["issued"].as_str()?.to_string(),
                agent.clone(),
                owner.clone(),
            ))
        })
        .expect("some session key chains to a declared key");

    let shown = lineage(&[
        "graph",
        "show",
        &session,
        "--tables",
        tables.to_str().unwrap(),
        "--format",
        "json",
    ]);
    assert_exit(&shown, 0);
    let picture: Value = serde_json::from_slice(&shown.stdout).unwrap();
    let ids: Vec<&str> = picture["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids[0], session, "the subject comes first");
    for expected in [&parent, &agent, &owner] {
        assert!(
            ids.contains(&expected.as_str()),
            "{expected} missing from {ids:?}"
        );
    }
    let has_edge = |p: &Value, from: &str, to: &str, relation: &str| {
        p["edges"]
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e["from"] == from && e["to"] == to && e["relation"] == relation)
    };
    assert!(has_edge(&picture, &session, &parent, "issued_from"));
    assert!(has_edge(&picture, &parent, &agent, "bound_to"));
    assert!(has_edge(&picture, &agent, &owner, "owned_by"));

    // Before the session existed, its issuance edge is not drawn.
    let issued =
        chrono::NaiveDateTime::parse_from_str(issued.trim_end_matches('Z'), "%Y-%m-%dT%H:%M:%S%.f")
            .unwrap_or_else(|e| panic!("{issued}: {e}"))
            .and_utc();
    let before = (issued - chrono::Duration::seconds(1)).to_rfc3339();
    let earlier = lineage(&[
        "graph",
        "show",
        &session,
        "--tables",
        tables.to_str().unwrap(),
        "--format",
        "json",
        "--as-of",
        &before,
    ]);
    assert_exit(&earlier, 0);
    let earlier: Value = serde_json::from_slice(&earlier.stdout).unwrap();
    assert!(
        !has_edge(&earlier, &session, &parent, "issued_from"),
        "{earlier:#}"
    );

    // DOT and a self-contained HTML page.
    let dot = lineage(&[
        "graph",
        "show",
        &agent,
        "--tables",
        tables.to_str().unwrap(),
    ]);
    assert_exit(&dot, 0);
    let dot = String::from_utf8(dot.stdout).unwrap();
    assert!(
        dot.starts_with("digraph lineage {")
            && dot.contains(&format!("\"{agent}\" -> \"{owner}\"")),
        "{dot}"
    );
    let page = tmp.path().join("owner.html");
    assert_exit(
        &lineage(&[
            "graph",
            "show",
            &owner,
            "--tables",
            tables.to_str().unwrap(),
            "--format",
            "html",
            "--output",
            page.to_str().unwrap(),
        ]),
        0,
    );
    let html = std::fs::read_to_string(&page).unwrap();
    assert!(html.starts_with("<!DOCTYPE html>") && html.contains("<svg") && html.contains(&agent));
    assert!(
        !html.contains("<script") && !html.contains("src=\"http"),
        "self-contained"
    );

    let unknown = lineage(&[
        "graph",
        "show",
        "no-such-identity",
        "--tables",
        tables.to_str().unwrap(),
    ]);
    assert_exit(&unknown, 1);
    assert!(String::from_utf8_lossy(&unknown.stderr).contains("no credential, agent or human"));
}
