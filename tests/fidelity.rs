//! Records in the shapes real exports take, replayed end to end: the outcome and the
//! alerts must be the ones the record means.
//!
//! - A root user's `CreateAccessKey` without `userName` (a key for itself) raises one
//!   clear `root-access-key` alert, not "created access key … for IAM user ?".
//! - A failed console sign-in (no `errorCode`, `ConsoleLogin: Failure`) is a failure.

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
