//! Records in the shapes real exports take, replayed end to end: the outcome and the
//! alerts must be the ones the record means.
//!
//! - A root user's `CreateAccessKey` without `userName` (a key for itself) raises one
//!   clear `root-access-key` alert, not "created access key … for IAM user ?".
//! - A failed console sign-in (no `errorCode`, `ConsoleLogin: Failure`) is a failure.
//! - Files nobody recognises count under `unknown`, record for record; Entra with
//!   capitalised keys is Entra; UTF-16 input says so.

mod common;

use serde_json::{json, Value};

fn replay(records: Vec<Value>) -> (Vec<Value>, Vec<Value>) {
    let dir = tempfile::tempdir().unwrap();
    let logs = dir.path().join("trail.json");
    std::fs::write(&logs, json!({ "Records": records }).to_string()).unwrap();
    let out = dir.path().join("out");
    let o = common::replay(&[&logs], &out, &["--no-tables", "--events"]);
    common::assert_exit(&o, 0);
    (
        common::jsonl(&out.join("alerts.jsonl")),
        common::jsonl(&out.join("events.jsonl")),
    )
}

#[test]
fn a_root_key_for_itself_is_one_clear_alert_and_a_failed_console_login_a_failure() {
    let root_key = json!({
        "eventVersion": "1.08",
        "userIdentity": { "type": "Root", "principalId": "111122223333",
            "arn": "arn:aws:iam::111122223333:root", "accountId": "111122223333",
            "accessKeyId": "ASIAROOTSESSION00001" },
        "eventTime": "2026-11-30T09:00:00Z", "eventSource": "iam.amazonaws.com",
        "eventName": "CreateAccessKey", "awsRegion": "us-east-1",
        "sourceIPAddress": "198.51.100.7", "userAgent": "console.amazonaws.com",
        "requestParameters": null,
        "responseElements": { "accessKey": { "accessKeyId": "AKIAROOTNEWKEY000001",
            "status": "Active", "createDate": "Nov 30, 2026 9:00:00 AM" } },
        "eventID": "root-key-1", "readOnly": false, "eventType": "AwsApiCall",
        "managementEvent": true, "recipientAccountId": "111122223333"
    });
    let failed_login = json!({
        "eventVersion": "1.08",
        "userIdentity": { "type": "IAMUser", "principalId": "AIDAEXAMPLEALICE0001",
            "accountId": "111122223333", "accessKeyId": "", "userName": "alice" },
        "eventTime": "2026-11-30T08:00:00Z", "eventSource": "signin.amazonaws.com",
        "eventName": "ConsoleLogin", "awsRegion": "us-east-1",
        "sourceIPAddress": "198.51.100.7", "userAgent": "Mozilla/5.0",
        "errorMessage": "Failed authentication", "requestParameters": null,
        "responseElements": { "ConsoleLogin": "Failure" },
        "eventID": "login-1", "readOnly": false, "eventType": "AwsConsoleSignIn",
        "managementEvent": true, "recipientAccountId": "111122223333"
    });
    let (alerts, events) = replay(vec![failed_login, root_key]);
    let privilege: Vec<&Value> = alerts
        .iter()
        .filter(|a| a["detector"] == "privilege-change")
        .collect();
    assert_eq!(privilege.len(), 1, "{alerts:#?}");
    assert_eq!(privilege[0]["evidence"]["rule"], "root-access-key");
    let title = privilege[0]["title"].as_str().unwrap();
    assert!(title.contains("AKIAROOTNEWKEY000001"), "{title}");
    assert!(!title.contains('?'), "{title}");
    assert!(
        alerts
            .iter()
            .all(|a| !a["title"].as_str().unwrap_or("").contains("for IAM user ?")),
        "{alerts:#?}"
    );
    let login = events
        .iter()
        .find(|e| e["use"]["event_id"] == "login-1")
        .unwrap_or_else(|| panic!("{events:#?}"));
    assert_eq!(login["use"]["outcome"]["success"], false, "{login:#}");
    assert_eq!(
        login["use"]["outcome"]["error_code"],
        "Failed authentication"
    );
}

/// Files whose source cannot be told are counted under `unknown`, record for
/// record; Entra exports with capitalised keys are recognised as Entra; UTF-16
/// input is named as such in the reason.
#[test]
fn unrecognised_files_count_under_unknown_record_for_record_and_capitalised_entra_is_entra() {
    let dir = tempfile::tempdir().unwrap();
    // Five objects nobody wrote: no source's field names.
    let unknown: String = (0..5)
        .map(|i| format!("{{\"thing\":{i},\"colour\":\"blue\"}}\n"))
        .collect();
    std::fs::write(dir.path().join("mystery.json"), unknown).unwrap();
    // An Entra sign-in as Log Analytics exports it: every key capitalised.
    let signin: Value = serde_json::from_slice(
        &std::fs::read(
            common::root().join("testdata/entra/golden/sp_signin_client_secret_graph.input.json"),
        )
        .unwrap(),
    )
    .unwrap();
    let capitalised: serde_json::Map<String, Value> = signin
        .as_object()
        .unwrap()
        .iter()
        .map(|(k, v)| {
            let mut c = k.chars();
            let first = c.next().unwrap().to_ascii_uppercase();
            (format!("{first}{}", c.as_str()), v.clone())
        })
        .collect();
    let entra_lines: String = (0..3)
        .map(|i| {
            let mut r = capitalised.clone();
            r.insert("Id".into(), json!(format!("cap-{i}")));
            Value::Object(r).to_string() + "\n"
        })
        .collect();
    std::fs::write(dir.path().join("signins-export.json"), entra_lines).unwrap();
    // The same mystery objects as UTF-16 (little-endian, with its BOM).
    let mut utf16 = vec![0xFF, 0xFE];
    for unit in "{\"thing\":1}\n".encode_utf16() {
        utf16.extend(unit.to_le_bytes());
    }
    std::fs::write(dir.path().join("export-utf16.json"), utf16).unwrap();

    let out = dir.path().join("out");
    let o = common::replay(&[dir.path()], &out, &["--no-tables"]);
    common::assert_exit(&o, 0);
    let summary = common::summary(&out);
    common::assert_counts_add_up(&summary);
    assert_eq!(summary["by_source"]["entra"]["read"], 3, "{summary:#}");
    assert_eq!(
        summary["by_source"]["entra"]["normalized"], 3,
        "{summary:#}"
    );
    assert_eq!(summary["by_source"]["unknown"]["read"], 6, "{summary:#}");
    assert!(
        summary["by_source"].get("cloudtrail").is_none(),
        "{summary:#}"
    );
    let dead = common::jsonl(&out.join("dead_letters.jsonl"));
    assert_eq!(dead.len(), 6, "{dead:#?}");
    assert!(dead.iter().all(|d| d["source"] == "unknown"), "{dead:#?}");
    let utf16_letters: Vec<&Value> = dead
        .iter()
        .filter(|d| {
            d["provenance"]["path"]
                .as_str()
                .unwrap()
                .ends_with("export-utf16.json")
        })
        .collect();
    assert_eq!(utf16_letters.len(), 1, "{dead:#?}");
    assert!(
        utf16_letters[0]["reason"]
            .as_str()
            .unwrap()
            .contains("UTF-16"),
        "{utf16_letters:#?}"
    );
    let mystery = dead
        .iter()
        .filter(|d| {
            d["provenance"]["path"]
                .as_str()
                .unwrap()
                .ends_with("mystery.json")
        })
        .count();
    assert_eq!(mystery, 5);
}

/// Times as SIEM and data-lake exports write them (a space for the `T`, no zone,
/// nanoseconds) read as the same UTC instant in every source.
#[test]
fn exported_time_shapes_read_as_utc_in_every_source() {
    let record = json!({
        "eventVersion": "1.08", "eventID": "t-1", "eventTime": "2025-10-15 18:45:47.048000000",
        "eventSource": "s3.amazonaws.com", "eventName": "ListBuckets", "awsRegion": "us-east-1",
        "userIdentity": {"type": "IAMUser", "accessKeyId": "AKIAFAKETIMES0000001",
            "arn": "arn:aws:iam::111122223333:user/t", "accountId": "111122223333"}
    });
    let (_, events) = replay(vec![record]);
    assert_eq!(events.len(), 1, "{events:#?}");
    assert_eq!(
        events[0]["use"]["time"], "2025-10-15T18:45:47.048Z",
        "{:#}",
        events[0]
    );

    // Entra and Vault, the same shape.
    let dir = tempfile::tempdir().unwrap();
    let mut signin: Value = serde_json::from_slice(
        &std::fs::read(
            common::root().join("testdata/entra/golden/sp_signin_client_secret_graph.input.json"),
        )
        .unwrap(),
    )
    .unwrap();
    signin["createdDateTime"] = json!("2025-10-15 18:45:47.048");
    std::fs::write(dir.path().join("signin.json"), signin.to_string()).unwrap();
    let mut vault: Value = serde_json::from_slice(
        &std::fs::read(
            common::root().join("testdata/vault/golden/openbao_batch_token_create.input.json"),
        )
        .unwrap(),
    )
    .unwrap();
    vault["time"] = json!("2025-10-15 18:45:47.048000000");
    std::fs::write(dir.path().join("vault.log"), vault.to_string()).unwrap();
    let out = dir.path().join("out");
    common::assert_exit(
        &common::replay(&[dir.path()], &out, &["--no-tables", "--events"]),
        0,
    );
    let summary = common::summary(&out);
    assert_eq!(summary["dead_lettered"], 0, "{summary:#}");
    let events = common::jsonl(&out.join("events.jsonl"));
    assert_eq!(events.len(), 2, "{events:#?}");
    for e in &events {
        assert!(
            e["use"]["time"]
                .as_str()
                .unwrap()
                .starts_with("2025-10-15T18:45:47.048"),
            "{e:#}"
        );
    }
}

/// The whole corpus (`tests/corpus/`: every export shape of the four sources, one
/// file each) plus the MIT-licensed public samples, replayed together from one
/// directory tree: every record counted once under its own source (or `unknown`),
/// matching the per-record expectations the corpus check holds, and every dead
/// letter saying what to do.
#[test]
fn a_mixed_tree_of_every_shape_and_public_samples_counts_each_record_once_under_its_source() {
    let dir = tempfile::tempdir().unwrap();
    let tree = dir.path().join("mixed");
    let corpus = common::root().join("tests/corpus");
    let mut want: std::collections::BTreeMap<String, (u64, u64)> = Default::default();
    for entry in std::fs::read_dir(&corpus).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        if name.ends_with(".expected") || name.ends_with(".md") {
            continue;
        }
        std::fs::create_dir_all(tree.join("corpus")).unwrap();
        std::fs::copy(&path, tree.join("corpus").join(&name)).unwrap();
        let expected = std::fs::read_to_string(corpus.join(format!("{name}.expected"))).unwrap();
        for line in expected.lines() {
            let v: Value = serde_json::from_str(line).unwrap();
            if let Some(joined) = v["joined_request_halves"].as_u64() {
                // Joined request halves are read and normalized under Vault.
                let e = want.entry("vault".into()).or_default();
                e.0 += joined;
                continue;
            }
            let e = want
                .entry(v["source"].as_str().unwrap().to_owned())
                .or_default();
            e.0 += 1;
            if v.get("dead_letter").is_some() {
                e.1 += 1;
            }
        }
    }
    // Public samples (MIT): the Invictus CloudTrail archive, Sentinel's GitHub sample.
    let copy_tree = |from: &std::path::Path, to: &std::path::Path| {
        std::fs::create_dir_all(to).unwrap();
        for entry in std::fs::read_dir(from).unwrap() {
            let p = entry.unwrap().path();
            let name = p.file_name().unwrap().to_string_lossy().into_owned();
            if name.ends_with(".json") || name.ends_with(".json.gz") {
                std::fs::copy(&p, to.join(&name)).unwrap();
            }
        }
    };
    copy_tree(
        &common::root().join("testdata/cloudtrail/invictus/CloudTrail"),
        &tree.join("invictus"),
    );
    copy_tree(
        &common::root().join("testdata/github/azure-sentinel"),
        &tree.join("sentinel"),
    );
    let out = dir.path().join("out");
    let o = common::replay(&[&tree], &out, &["--no-tables"]);
    common::assert_exit(&o, 0);
    let summary = common::summary(&out);
    common::assert_counts_add_up(&summary);
    let samples = common::replay(
        &[&tree.join("invictus"), &tree.join("sentinel")],
        &dir.path().join("samples"),
        &["--no-tables"],
    );
    common::assert_exit(&samples, 0);
    let samples = common::summary(&dir.path().join("samples"));
    assert_eq!(samples["dead_lettered"], 0, "{samples:#}");
    for (source, (read, dead)) in &want {
        let from_samples = samples["by_source"][source]["read"].as_u64().unwrap_or(0);
        assert_eq!(
            summary["by_source"][source]["read"].as_u64().unwrap_or(0),
            read + from_samples,
            "{source}: {summary:#}"
        );
        assert_eq!(
            summary["by_source"][source]["dead_lettered"]
                .as_u64()
                .unwrap_or(0),
            *dead,
            "{source}: {summary:#}"
        );
    }
    for letter in common::jsonl(&out.join("dead_letters.jsonl")) {
        let reason = letter["reason"].as_str().unwrap();
        assert!(
            reason.contains("pass --source") || reason.contains("convert it to UTF-8"),
            "a dead letter that does not say what to do: {letter:#}"
        );
    }
}
