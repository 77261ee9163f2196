//! Real SigmaHQ cloud rules (rules/sigma, Detection Rule License) fire on exactly the
//! matching records of the repository's test data, and rules lineage cannot use are
//! reported at load time.

mod common;

use std::collections::{BTreeMap, BTreeSet};

use serde_json::Value;

fn github_sample() -> Vec<Value> {
    let text = std::fs::read_to_string(
        common::root().join("testdata/github/azure-sentinel/Github_sample_logs.json"),
    )
    .unwrap();
    text.lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

const UNLIMITED_BUDGET: &str =
    "[detectors.alert_budget]\nper_credential_per_hour = 0\nper_hour = 0\n";

#[test]
fn an_attack_burst_over_the_alert_budget_folds_into_summaries_and_loses_nothing() {
    // The Stratus Red Team run: one key, dozens of techniques within minutes.
    let (logs, inventory) = common::invictus();
    let rules = common::root().join("rules/sigma");
    let dir = tempfile::tempdir().unwrap();
    let unlimited = dir.path().join("unlimited.toml");
    std::fs::write(&unlimited, UNLIMITED_BUDGET).unwrap();
    let run = |name: &str, extra: &[&str]| {
        let out = dir.path().join(name);
        let mut args = vec![
            "--inventory",
            inventory.to_str().unwrap(),
            "--sigma-rules",
            rules.to_str().unwrap(),
            "--no-tables",
        ];
        args.extend_from_slice(extra);
        common::assert_exit(&common::replay(&[&logs], &out, &args), 0);
        common::jsonl(&out.join("alerts.jsonl"))
    };
    let every = run("every", &["--config", unlimited.to_str().unwrap()]);
    let budgeted = run("budgeted", &[]);
    let findings =
        |alerts: &[Value]| -> u64 { alerts.iter().map(|a| a["count"].as_u64().unwrap()).sum() };
    let summaries: Vec<&Value> = budgeted
        .iter()
        .filter(|a| a["detector"] == "alert-budget")
        .collect();
    assert!(
        !summaries.is_empty(),
        "the burst exceeds 10 alerts an hour for one key"
    );
    assert!(budgeted.len() < every.len());
    // Every finding is still counted: in its own alert or in an hour's summary.
    assert_eq!(findings(&budgeted), findings(&every));
    for s in &summaries {
        let by: u64 = s["evidence"]["folded_by_detector"]
            .as_object()
            .unwrap()
            .values()
            .map(|v| v.as_u64().unwrap())
            .sum();
        assert_eq!(by, s["count"].as_u64().unwrap(), "{s}");
        assert!(s["summary"].as_str().unwrap().contains("alert_budget"));
    }
    // High and critical alerts are never folded.
    let urgent = |alerts: &[Value]| -> BTreeSet<String> {
        alerts
            .iter()
            .filter(|a| a["detector"] != "alert-budget")
            .filter(|a| ["high", "critical"].contains(&a["severity"].as_str().unwrap()))
            .map(|a| a["id"].as_str().unwrap().to_owned())
            .collect()
    };
    assert_eq!(urgent(&budgeted), urgent(&every));
}

#[test]
fn shipped_rules_fire_on_exactly_the_matching_records() {
    let (logs, inventory) = common::invictus();
    let github = common::root().join("testdata/github/azure-sentinel");
    let rules = common::root().join("rules/sigma");
    let out = tempfile::tempdir().unwrap();
    // Every hit on its own alert: the Stratus run is one credential's burst of attacks,
    // which the default alert budget folds (see the test below).
    let unlimited = out.path().join("unlimited.toml");
    std::fs::write(&unlimited, UNLIMITED_BUDGET).unwrap();
    let output = common::replay(
        &[&logs, &github],
        out.path(),
        &[
            "--inventory",
            inventory.to_str().unwrap(),
            "--sigma-rules",
            rules.to_str().unwrap(),
            "--config",
            unlimited.to_str().unwrap(),
        ],
    );
    common::assert_exit(&output, 0);
    assert!(String::from_utf8_lossy(&output.stderr).contains("sigma: 4 rules loaded"));

    // What each rule must match, computed independently from the raw records.
    let mut expected: BTreeMap<&str, BTreeSet<String>> = BTreeMap::new();
    for r in common::invictus_records() {
        let (source, name) = (
            r["eventSource"].as_str().unwrap(),
            r["eventName"].as_str().unwrap(),
        );
        let id = r["eventID"].as_str().unwrap().to_owned();
        if source == "cloudtrail.amazonaws.com"
            && ["StopLogging", "UpdateTrail", "DeleteTrail"].contains(&name)
        {
            expected
                .entry("AWS CloudTrail Important Change")
                .or_default()
                .insert(id.clone());
        }
        if source == "iam.amazonaws.com" && name == "CreateAccessKey" {
            expected
                .entry("AWS IAM Backdoor Users Keys")
                .or_default()
                .insert(id.clone());
        }
        if source == "ec2.amazonaws.com" && name == "ModifySnapshotAttribute" {
            expected
                .entry("AWS Snapshot Backup Exfiltration")
                .or_default()
                .insert(id);
        }
    }
    for r in github_sample() {
        if ["org.add_member", "org.invite_member"].contains(&r["action"].as_str().unwrap_or("")) {
            expected
                .entry("New Github Organization Member Added")
                .or_default()
                .insert(r["_document_id"].as_str().unwrap().to_owned());
        }
    }
    assert_eq!(
        expected.len(),
        4,
        "each shipped rule has matching records in the test data"
    );

    let mut got: BTreeMap<String, (u64, BTreeSet<String>)> = BTreeMap::new();
    for a in common::jsonl(&out.path().join("alerts.jsonl")) {
        if a["detector"] != "sigma" {
            continue;
        }
        let title = a["title"]
            .as_str()
            .unwrap()
            .trim_start_matches("Sigma: ")
            .to_owned();
        let entry = got.entry(title).or_default();
        entry.0 += a["count"].as_u64().unwrap();
        entry.1.extend(
            a["event_ids"]
                .as_array()
                .unwrap()
                .iter()
                .map(|e| e.as_str().unwrap().to_owned()),
        );
    }
    assert_eq!(
        got.len(),
        expected.len(),
        "rules that fired: {:?}",
        got.keys()
    );
    for (title, ids) in &expected {
        let (count, seen) = &got[*title];
        assert_eq!(*count as usize, ids.len(), "{title}");
        assert_eq!(seen, ids, "{title}");
    }
    // Sigma alerts are attributed like any other: the CloudTrail ones to bert-jan's tool.
    let sigma_cloudtrail: Vec<Value> = common::jsonl(&out.path().join("alerts.jsonl"))
        .into_iter()
        .filter(|a| a["detector"] == "sigma" && a["title"].as_str().unwrap().contains("AWS"))
        .collect();
    assert!(
        sigma_cloudtrail.iter().all(|a| a["owner"] == "bert-jan"),
        "{sigma_cloudtrail:#?}"
    );
    // ATT&CK ids come from the rules' tags.
    assert!(sigma_cloudtrail
        .iter()
        .any(|a| a["mitre"][0] == "T1562.001"));
}

#[test]
fn unusable_rules_are_reported_at_load_time() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("windows.yml"),
        "title: Windows thing\nlogsource:\n    product: windows\n    category: process_creation\ndetection:\n    sel:\n        Image|endswith: '\\\\cmd.exe'\n    condition: sel\n",
    )
    .unwrap();
    std::fs::write(dir.path().join("broken.yml"), "title: [unclosed\n").unwrap();
    std::fs::write(
        dir.path().join("ok.yml"),
        "title: Stop logging\nlogsource:\n    product: aws\n    service: cloudtrail\ndetection:\n    sel:\n        eventName: StopLogging\n    condition: sel\nlevel: high\n",
    )
    .unwrap();
    let (logs, inventory) = common::invictus();
    let out = tempfile::tempdir().unwrap();
    let output = common::replay(
        &[&logs],
        out.path(),
        &[
            "--inventory",
            inventory.to_str().unwrap(),
            "--sigma-rules",
            dir.path().to_str().unwrap(),
        ],
    );
    common::assert_exit(&output, 0);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("1 rules loaded") && stderr.contains("2 not usable"),
        "{stderr}"
    );
    assert!(
        stderr.contains("windows.yml") && stderr.contains("unsupported log source"),
        "{stderr}"
    );
    assert!(
        stderr.contains("broken.yml") && stderr.contains("not a valid Sigma rule"),
        "{stderr}"
    );
    let alerts = common::jsonl(&out.path().join("alerts.jsonl"));
    let stop: Vec<&Value> = alerts
        .iter()
        .filter(|a| a["title"] == "Sigma: Stop logging")
        .collect();
    assert_eq!(stop.len(), 1);
    assert_eq!(stop[0]["severity"], "high");
}
