//! Replays the real Invictus IR CloudTrail dataset through the `lineage` binary and
//! checks the counts and the issuance-chain attribution of AssumeRole sessions.

mod common;

use std::collections::{BTreeMap, BTreeSet};

use serde_json::Value;

#[test]
fn invictus_replay_counts_and_session_chains() {
    let (logs, inventory) = common::invictus();
    let out = tempfile::tempdir().unwrap();
    let output = common::replay(
        &[&logs],
        out.path(),
        &["--inventory", inventory.to_str().unwrap(), "--events"],
    );
    common::assert_exit(&output, 0);

    // Every record read is accounted for.
    let summary = common::summary(out.path());
    assert_eq!(summary["read"], 2900, "{summary:#}");
    assert_eq!(summary["files"], 55, "{summary:#}");
    common::assert_counts_add_up(&summary);
    let dead = common::jsonl(&out.path().join("dead_letters.jsonl"));
    assert_eq!(
        dead.len() as u64,
        summary["dead_lettered"].as_u64().unwrap(),
        "dead_letters.jsonl and summary.json disagree"
    );
    for d in &dead {
        let reason = d["reason"].as_str().unwrap_or_default();
        assert!(
            !reason.trim().is_empty(),
            "dead letter without a reason: {d}"
        );
    }

    // From the inputs: ASIA keys returned by successful AssumeRole calls made with an
    // AKIA key, mapped to that parent key.
    let mut issued: BTreeMap<String, String> = BTreeMap::new();
    for r in common::invictus_records() {
        if r["eventName"] != "AssumeRole" || r.get("errorCode").is_some_and(|e| !e.is_null()) {
            continue;
        }
        let Some(parent) = r["userIdentity"]["accessKeyId"].as_str() else {
            continue;
        };
        let Some(child) = r["responseElements"]["credentials"]["accessKeyId"].as_str() else {
            continue;
        };
        if parent.starts_with("AKIA") && child.starts_with("ASIA") {
            issued.insert(child.to_owned(), parent.to_owned());
        }
    }
    assert!(
        issued.len() >= 5,
        "expected AKIA-issued sessions in the dataset: {issued:?}"
    );

    // In events.jsonl: every use of such a session key is attributed through its parent.
    let events = common::jsonl(&out.path().join("events.jsonl"));
    assert_eq!(
        events.len() as u64,
        summary["normalized"].as_u64().unwrap(),
        "events.jsonl should hold one line per normalized record"
    );
    let mut used = BTreeSet::new();
    let mut uses = 0;
    for e in &events {
        let Some(key) = e["use"]["credential"]["id"].as_str() else {
            continue;
        };
        let Some(parent) = issued.get(key) else {
            continue;
        };
        used.insert(key.to_owned());
        uses += 1;
        let a = &e["attribution"];
        let chain: Vec<&str> = a["chain"]
            .as_array()
            .unwrap_or_else(|| panic!("no chain for {key}: {e}"))
            .iter()
            .filter_map(Value::as_str)
            .collect();
        assert_eq!(
            chain.first(),
            Some(&key),
            "chain starts at the used key: {a}"
        );
        assert!(
            chain.contains(&parent.as_str()),
            "chain of {key} lacks its parent {parent}: {a}"
        );
        assert_eq!(a["agent"], "stratus-red-team", "{key}: {a}");
        assert_eq!(a["owner"], "bert-jan", "{key}: {a}");
    }
    assert!(
        used.len() >= 5,
        "expected at least 5 AKIA-issued session keys to be used, got {used:?} ({uses} uses)"
    );
}
