//! Forged and misleading records must not turn the responder against the
//! organisation. Each case replays a few CloudTrail records with `--respond` under a
//! policy that would execute anything strong (dry-run off, everything allowlisted),
//! and checks that what rests on weak evidence waits for a person, with the reason
//! in the ledger:
//!
//! - a role session named after a departed person by someone else (the session name
//!   and `sourceIdentity` are chosen by the caller);
//! - a break-glass key tied to a departed person's agent only by its user agent; and,
//!   with a deny rule on the key's own principal, refused outright.
//!
//! The ledger's own guarantees (intent before the call, reconciliation after a crash,
//! a torn last line, the lock between processes) are tested in
//! `respond/src/ledger.rs`, `respond/src/policy.rs` and `tests/live_respond.rs`.

mod common;

use std::path::Path;

use serde_json::{json, Value};

const ACCOUNT: &str = "111122223333";

fn inventory(dir: &Path) -> std::path::PathBuf {
    inventory_with(
        dir,
        "status = \"departed\"\ndeparted_at = \"2026-11-01T00:00:00Z\"",
        "",
    )
}

/// The inventory, with `dana_status` as dana's status lines and `bot_lines` added
/// to dana-bot's entry.
fn inventory_with(dir: &Path, dana_status: &str, bot_lines: &str) -> std::path::PathBuf {
    let p = dir.join("inventory.toml");
    std::fs::write(
        &p,
        format!(
            r#"[[human]]
id = "dana"
email = "dana@example.com"
aliases = {{ entra_upn = ["dana@contoso.example"], vault = ["userpass-dana"] }}
{dana_status}

[[human]]
id = "olaf"
email = "olaf@example.com"
aliases = {{ vault = ["userpass-olaf"] }}

[[agent]]
id = "dana-bot"
kind = "ai-agent"
owner = "dana"
user_agents = ["*dana-bot*"]
{bot_lines}

[[agent]]
id = "ops-console"
kind = "service"
owner = "olaf"
"#
        ),
    )
    .unwrap();
    p
}

fn identity_user(user: &str, key: &str) -> Value {
    json!({
        "type": "IAMUser",
        "principalId": format!("AIDA{}", user.to_uppercase()),
        "arn": format!("arn:aws:iam::{ACCOUNT}:user/{user}"),
        "accountId": ACCOUNT,
        "accessKeyId": key,
        "userName": user
    })
}

fn record(identity: Value, time: &str, event: (&str, &str), id: &str, ua: &str) -> Value {
    json!({
        "eventVersion": "1.08",
        "userIdentity": identity,
        "eventTime": time,
        "eventSource": event.0,
        "eventName": event.1,
        "awsRegion": "us-east-1",
        "sourceIPAddress": "198.51.100.9",
        "userAgent": ua,
        "requestParameters": null,
        "responseElements": null,
        "requestID": id,
        "eventID": id,
        "readOnly": true,
        "eventType": "AwsApiCall",
        "managementEvent": true,
        "recipientAccountId": ACCOUNT
    })
}

/// Replays `records` with `--respond` under `policy` (TOML for `[response.policy]`
/// and its rules); the actions written.
fn respond(dir: &Path, records: Vec<Value>, policy: &str) -> Vec<Value> {
    let logs = dir.join("logs.json");
    std::fs::write(&logs, json!({ "Records": records }).to_string()).unwrap();
    respond_files(dir, &[logs], policy, &inventory(dir))
}

fn respond_files(dir: &Path, logs: &[std::path::PathBuf], policy: &str, inv: &Path) -> Vec<Value> {
    let cfg = dir.join("lineage.toml");
    std::fs::write(
        &cfg,
        format!(
            "[response]\nledger = {:?}\n\n{policy}",
            dir.join("ledger.jsonl").display().to_string()
        ),
    )
    .unwrap();
    let inv = inv.display().to_string();
    let out = dir.join("out");
    let refs: Vec<&Path> = logs.iter().map(|p| p.as_path()).collect();
    let o = common::replay(
        &refs,
        &out,
        &[
            "--inventory",
            &inv,
            "--config",
            cfg.to_str().unwrap(),
            "--respond",
            "--no-tables",
            "--events",
        ],
    );
    common::assert_exit(&o, 0);
    common::jsonl(&out.join("actions.jsonl"))
}

const EXECUTE_STRONG: &str = r#"[response.policy]
dry_run = false
log_departures = "auto"
role_sessions = "auto"

[[response.policy.allow]]
owner = "*"
"#;

#[test]
fn a_role_session_named_after_a_departed_person_is_not_revoked_automatically() {
    let dir = tempfile::tempdir().unwrap();
    // A contractor the inventory does not know assumes a shared role and names the
    // session (and its sourceIdentity) after dana, who has left; the session is then
    // used.
    let assume = {
        let mut r = record(
            identity_user("contractor", "AKIACONTRACTOR000001"),
            "2026-12-01T10:00:00Z",
            ("sts.amazonaws.com", "AssumeRole"),
            "assume-1",
            "aws-cli/2.15.0",
        );
        r["requestParameters"] = json!({
            "roleArn": format!("arn:aws:iam::{ACCOUNT}:role/shared-deploy"),
            "roleSessionName": "dana@example.com",
            "sourceIdentity": "dana@example.com"
        });
        r["responseElements"] = json!({
            "credentials": { "accessKeyId": "ASIASHARED0000000001", "expiration": "Dec 1, 2026, 11:00:00 AM" },
            "assumedRoleUser": {
                "assumedRoleId": "AROASHARED:dana@example.com",
                "arn": format!("arn:aws:sts::{ACCOUNT}:assumed-role/shared-deploy/dana@example.com")
            },
            "sourceIdentity": "dana@example.com"
        });
        r["readOnly"] = json!(false);
        r
    };
    let used = record(
        json!({
            "type": "AssumedRole",
            "principalId": "AROASHARED:dana@example.com",
            "arn": format!("arn:aws:sts::{ACCOUNT}:assumed-role/shared-deploy/dana@example.com"),
            "accountId": ACCOUNT,
            "accessKeyId": "ASIASHARED0000000001",
            "sessionContext": {
                "sessionIssuer": {
                    "type": "Role",
                    "principalId": "AROASHARED",
                    "arn": format!("arn:aws:iam::{ACCOUNT}:role/shared-deploy"),
                    "accountId": ACCOUNT,
                    "userName": "shared-deploy"
                },
                "sourceIdentity": "dana@example.com",
                "attributes": { "creationDate": "2026-12-01T10:00:00Z", "mfaAuthenticated": "false" }
            }
        }),
        "2026-12-01T10:05:00Z",
        ("s3.amazonaws.com", "ListBuckets"),
        "use-1",
        "aws-cli/2.15.0",
    );
    // Where the issuance is in the logs, the chain leads to the contractor's key and
    // the name counts for nothing: no departed-owner request at all.
    let chained = respond(dir.path(), vec![assume, used.clone()], EXECUTE_STRONG);
    assert!(chained.is_empty(), "{chained:#?}");
    // Where it is not (the role assumed from another account, whose trail this is
    // not), the session's own name is all there is.
    let dir = tempfile::tempdir().unwrap();
    let actions = respond(dir.path(), vec![used], EXECUTE_STRONG);
    assert!(
        !actions.is_empty(),
        "the departed-owner detector asks to revoke something: {}\n{}",
        std::fs::read_to_string(dir.path().join("out/alerts.jsonl")).unwrap_or_default(),
        std::fs::read_to_string(dir.path().join("out/events.jsonl")).unwrap_or_default()
    );
    for a in &actions {
        assert_ne!(a["status"], "done", "{a:#}");
        assert_ne!(a["status"], "executing", "{a:#}");
        assert_eq!(a["status"], "pending-approval", "{a:#}");
        let why = a["result"].as_str().unwrap();
        assert!(
            why.contains("evidence too weak") || why.contains("role_sessions"),
            "{why}"
        );
    }
    let ledger = common::jsonl(&dir.path().join("ledger.jsonl"));
    assert!(
        ledger.iter().all(|e| e["action"]["status"] != "executing"),
        "no executor was called: {ledger:#?}"
    );
}

#[test]
fn a_break_glass_key_tied_to_a_departed_agent_by_user_agent_waits_or_is_refused() {
    let used = record(
        identity_user("breakglass-admin", "AKIABREAKGLASS00001"),
        "2026-12-02T09:00:00Z",
        ("iam", "ListUsers"),
        "bg-1",
        "dana-bot/1.4 (python)",
    );
    let dir = tempfile::tempdir().unwrap();
    let actions = respond(dir.path(), vec![used.clone()], EXECUTE_STRONG);
    let key: Vec<&Value> = actions
        .iter()
        .filter(|a| a["credential"]["id"] == "AKIABREAKGLASS00001")
        .collect();
    assert_eq!(key.len(), 1, "{actions:#?}");
    assert_eq!(key[0]["evidence"]["method"], "fingerprint", "{:#}", key[0]);
    assert_eq!(key[0]["status"], "pending-approval", "{:#}", key[0]);
    assert!(key[0]["result"].as_str().unwrap().contains("fingerprint"));

    // With the break-glass principal denied, it is refused, whatever attribution says.
    let dir = tempfile::tempdir().unwrap();
    let deny =
        format!("{EXECUTE_STRONG}\n[[response.policy.deny]]\nprincipal = \"breakglass-*\"\n");
    let actions = respond(dir.path(), vec![used], &deny);
    let key = actions
        .iter()
        .find(|a| a["credential"]["id"] == "AKIABREAKGLASS00001")
        .expect("requested");
    assert_eq!(key["status"], "refused", "{key:#}");
    assert!(key["result"].as_str().unwrap().contains("denylist"));
}

/// An Entra audit record: `activity` on dana's account at `time`.
fn entra_account_change(time: &str, activity: &str, enabled: bool, id: &str) -> Value {
    json!({
        "id": id,
        "category": "UserManagement",
        "result": "success",
        "activityDisplayName": activity,
        "activityDateTime": time,
        "loggedByService": "Core Directory",
        "operationType": "Update",
        "initiatedBy": { "user": { "id": "admin-1", "userPrincipalName": "it-admin@contoso.example" } },
        "targetResources": [{
            "id": "dana-object-id",
            "type": "User",
            "userPrincipalName": "dana@contoso.example",
            "modifiedProperties": [{
                "displayName": "AccountEnabled",
                "oldValue": format!("[{}]", !enabled),
                "newValue": format!("[{enabled}]")
            }]
        }]
    })
}

#[test]
fn an_account_disabled_then_re_enabled_within_the_grace_period_revokes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let inv = inventory_with(dir.path(), "", "credentials = [\"AKIADANABOT000000001\"]");
    let entra = dir.path().join("entra-audit.json");
    std::fs::write(
        &entra,
        json!({ "value": [
            entra_account_change("2026-12-03T09:00:00Z", "Update user", false, "off-1"),
            entra_account_change("2026-12-03T09:20:00Z", "Update user", true, "on-1"),
        ]})
        .to_string(),
    )
    .unwrap();
    let use_at = |t: &str, id: &str| {
        record(
            identity_user("svc-dana-bot", "AKIADANABOT000000001"),
            t,
            ("s3.amazonaws.com", "ListBuckets"),
            id,
            "dana-bot/1.4",
        )
    };
    let trail = dir.path().join("trail.json");
    std::fs::write(
        &trail,
        json!({ "Records": [
            use_at("2026-12-03T09:05:00Z", "during"),
            use_at("2026-12-03T11:00:00Z", "after"),
        ]})
        .to_string(),
    )
    .unwrap();
    let actions = respond_files(dir.path(), &[entra, trail], EXECUTE_STRONG, &inv);
    assert!(actions.is_empty(), "nothing requested: {actions:#?}");
    // The use while the account was disabled is still reported.
    let alerts = common::jsonl(&dir.path().join("out/alerts.jsonl"));
    let departed: Vec<&Value> = alerts
        .iter()
        .filter(|a| a["detector"] == "departed-owner")
        .collect();
    assert_eq!(departed.len(), 1, "{alerts:#?}");
    assert_eq!(
        departed[0]["count"], 1,
        "only the use inside the disabled window"
    );
    assert_eq!(departed[0]["evidence"]["departure"], "logs");
    assert!(departed[0]["evidence"]["revocation_waits_until"].is_string());

    // Without the re-enable, the use after the grace period requests revocation, and
    // (a log departure) it waits for a person by default.
    let dir = tempfile::tempdir().unwrap();
    let inv = inventory_with(dir.path(), "", "credentials = [\"AKIADANABOT000000001\"]");
    let entra = dir.path().join("entra-audit.json");
    std::fs::write(
        &entra,
        json!({ "value": [entra_account_change("2026-12-03T09:00:00Z", "Update user", false, "off-1")] })
            .to_string(),
    )
    .unwrap();
    let trail = dir.path().join("trail.json");
    std::fs::write(
        &trail,
        json!({ "Records": [use_at("2026-12-03T09:05:00Z", "during"), use_at("2026-12-03T11:00:00Z", "after")] })
            .to_string(),
    )
    .unwrap();
    let default_policy =
        "[response.policy]\ndry_run = false\n\n[[response.policy.allow]]\nowner = \"*\"\n";
    let actions = respond_files(dir.path(), &[entra, trail], default_policy, &inv);
    assert!(!actions.is_empty());
    for a in &actions {
        assert_eq!(a["status"], "pending-approval", "{a:#}");
        assert!(
            a["result"].as_str().unwrap().contains("log_departures"),
            "{a:#}"
        );
    }
}

/// A Vault/OpenBao audit response entry: `path` called with a token whose accessor
/// and display name are given; `issued` = (accessor, display name) of a token the
/// response issues (a login).
fn vault_entry(
    time: &str,
    id: &str,
    path: &str,
    caller: Option<(&str, &str)>,
    issued: Option<(&str, &str)>,
) -> Value {
    let mut e = json!({
        "time": time,
        "type": "response",
        "auth": {},
        "request": { "id": id, "operation": "read", "path": path, "remote_address": "10.0.0.5" },
        "response": {}
    });
    if let Some((accessor, name)) = caller {
        e["auth"] = json!({ "accessor": accessor, "client_token": format!("hmac-sha256:tok-{accessor}"),
            "display_name": name, "policies": ["default"], "token_type": "service" });
        e["request"]["client_token_accessor"] = json!(accessor);
    }
    if let Some((accessor, name)) = issued {
        e["request"]["operation"] = json!("update");
        e["response"]["auth"] = json!({ "accessor": accessor, "client_token": format!("hmac-sha256:tok-{accessor}"),
            "display_name": name, "policies": ["default"], "token_type": "service" });
    }
    e
}

#[test]
fn a_forged_vault_line_naming_a_victims_accessor_revokes_nothing() {
    // olaf logs in; his token's accessor is in the log. A line written by someone who
    // can write to the audit source then claims the same accessor under the name of
    // dana, who has departed.
    let victim = "hmac-sha256:0a1b2c3d4e5f60718293a4b5c6d7e8f90a1b2c3d4e5f60718293a4b5c6d7e8f9";
    let lines = [
        vault_entry(
            "2026-12-02T09:00:00Z",
            "login-1",
            "auth/userpass/login/olaf",
            None,
            Some((victim, "userpass-olaf")),
        ),
        vault_entry(
            "2026-12-02T09:01:00Z",
            "use-1",
            "secret/data/ops/db",
            Some((victim, "userpass-olaf")),
            None,
        ),
        vault_entry(
            "2026-12-02T09:05:00Z",
            "forged-1",
            "secret/data/ops/db",
            Some((victim, "userpass-dana")),
            None,
        ),
    ];
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("vault-audit.log");
    let text: Vec<String> = lines.iter().map(Value::to_string).collect();
    std::fs::write(&log, text.join("\n") + "\n").unwrap();
    let actions = respond_files(dir.path(), &[log], EXECUTE_STRONG, &inventory(dir.path()));
    let on_victim: Vec<&Value> = actions
        .iter()
        .filter(|a| a["credential"]["id"] == victim)
        .collect();
    for a in &on_victim {
        assert_ne!(a["status"], "done", "{a:#}");
        assert_ne!(a["status"], "executing", "{a:#}");
    }
    let events = common::jsonl(&dir.path().join("out/events.jsonl"));
    let forged = events
        .iter()
        .find(|e| e["use"]["event_id"] == "forged-1")
        .unwrap_or_else(|| panic!("{events:#?}"));
    assert_eq!(
        forged["attribution"]["owner"], "olaf",
        "the issuance decides: {forged:#}"
    );
    let ledger = common::jsonl(&dir.path().join("ledger.jsonl"));
    assert!(
        ledger.iter().all(|e| e["action"]["status"] != "executing"),
        "no executor was called: {ledger:#?}"
    );
}
