//! The response path from the command line: the departed-owner detector's requests
//! and the operator's sweep go through the same policy and ledger; queued requests
//! are approved or rejected by id; dry-run is the default.

mod common;

use std::path::Path;
use std::process::Command;

fn lineage(dir: &Path, args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_lineage"))
        .current_dir(dir)
        .args(args)
        .env_remove("LINEAGE_LOG")
        .output()
        .unwrap()
}

fn simulate(dir: &Path) {
    let out = lineage(
        dir,
        &[
            "simulate",
            "--seed",
            "7",
            "--days",
            "2",
            "--calls-per-agent-day",
            "48",
            "--out",
            "sim",
        ],
    );
    common::assert_exit(&out, 0);
}

const LOGS: [&str; 4] = ["sim/AWSLogs", "sim/Entra", "sim/GitHub", "sim/Vault"];

/// Simulates an estate in `dir` and sweeps frank's credentials with `lineage revoke`
/// under a policy that queues the operator's requests for approval (`more_policy`
/// appended); its output, checked to have succeeded.
fn sweep_frank(dir: &Path, more_policy: &str) -> std::process::Output {
    simulate(dir);
    std::fs::write(
        dir.join("lineage.toml"),
        format!("[response]\nledger = \"state/ledger.jsonl\"\n\n[response.policy]\nmodes = {{ operator = \"approve\" }}\n\n[[response.policy.allow]]\nowner = \"*\"\n{more_policy}"),
    )
    .unwrap();
    let mut args = vec![
        "revoke",
        "--owner",
        "frank@example.com",
        "--inventory",
        "sim/inventory.toml",
        "--config",
        "lineage.toml",
    ];
    args.extend(LOGS);
    let out = lineage(dir, &args);
    common::assert_exit(&out, 0);
    out
}

#[test]
fn detector_requests_go_through_policy_and_ledger() {
    let dir = tempfile::tempdir().unwrap();
    simulate(dir.path());
    std::fs::write(
        dir.path().join("lineage.toml"),
        "[response]\nledger = \"state/ledger.jsonl\"\n\n[response.policy]\nlog_departures = \"auto\"\n\n[[response.policy.allow]]\nowner = \"*\"\n",
    )
    .unwrap();
    let mut args = vec!["replay"];
    args.extend(LOGS);
    args.extend([
        "--inventory",
        "sim/inventory.toml",
        "--out",
        "out",
        "--config",
        "lineage.toml",
        "--respond",
    ]);
    let out = lineage(dir.path(), &args);
    common::assert_exit(&out, 0);
    let actions = common::jsonl(&dir.path().join("out/actions.jsonl"));
    assert!(
        !actions.is_empty(),
        "the departed owner's credentials are requested"
    );
    // Every request says what it rests on; the simulated departure comes from the
    // logs (an account disabled), which this config lets run automatically.
    for a in &actions {
        assert_eq!(a["evidence"]["departure"], "logs", "{a:#}");
        assert!(a["evidence"]["method"].is_string(), "{a:#}");
    }
    // Allowed, mode auto, strong evidence: dry-run by default, nothing called. Weak
    // evidence (a session name, a user agent) is queued for a person instead.
    for a in &actions {
        let strong = ["declared", "issuance-chain", "principal-alias"]
            .contains(&a["evidence"]["method"].as_str().unwrap());
        let want = if strong {
            "dry-run"
        } else {
            "pending-approval"
        };
        assert_eq!(a["status"], want, "{a:#}");
    }
    assert!(
        actions.iter().any(|a| a["status"] == "dry-run"),
        "{actions:#?}"
    );
    let ledger = common::jsonl(&dir.path().join("state/ledger.jsonl"));
    assert_eq!(ledger.len(), actions.len());
    // The same replay again is idempotent for the ledger's keys: dry-run entries are
    // re-evaluated (still dry-run), never duplicated as new keys.
    common::assert_exit(&lineage(dir.path(), &args), 0);
    let keys: std::collections::BTreeSet<String> =
        common::jsonl(&dir.path().join("state/ledger.jsonl"))
            .iter()
            .map(|e| e["action"]["idempotency_key"].as_str().unwrap().to_owned())
            .collect();
    assert_eq!(keys.len(), actions.len());
}

#[test]
fn operator_sweep_queues_then_approve_and_reject_by_id() {
    let dir = tempfile::tempdir().unwrap();
    let out = sweep_frank(
        dir.path(),
        "\n[[response.policy.deny]]\nkind = \"revoke-vault-accessor\"\n",
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("attributed to frank"), "{stdout}");
    assert!(stdout.contains("PendingApproval"), "{stdout}");
    assert!(
        stdout.contains("Refused: denylist rule #1"),
        "Vault tokens are denylisted: {stdout}"
    );

    let list = lineage(dir.path(), &["actions", "list", "--config", "lineage.toml"]);
    common::assert_exit(&list, 0);
    let listing = String::from_utf8_lossy(&list.stdout).to_string();
    let pending: Vec<&str> = listing
        .lines()
        .filter(|l| l.contains("PendingApproval"))
        .map(|l| l.split_whitespace().next().unwrap())
        .collect();
    assert!(pending.len() >= 2, "{listing}");

    let approved = lineage(
        dir.path(),
        &["actions", "approve", pending[0], "--config", "lineage.toml"],
    );
    common::assert_exit(&approved, 0);
    assert!(
        String::from_utf8_lossy(&approved.stdout).starts_with("DryRun"),
        "dry-run still applies after approval"
    );
    let rejected = lineage(
        dir.path(),
        &[
            "actions",
            "reject",
            pending[1],
            "--reason",
            "break-glass",
            "--by",
            "analyst-kim",
            "--config",
            "lineage.toml",
        ],
    );
    common::assert_exit(&rejected, 0);
    assert!(
        String::from_utf8_lossy(&rejected.stdout).contains("rejected by analyst-kim: break-glass")
    );
    // The ledger records who decided.
    let ledger = common::jsonl(&dir.path().join("state/ledger.jsonl"));
    let decided = ledger.last().unwrap();
    assert_eq!(decided["actor"], "analyst-kim", "{decided}");
    assert_eq!(decided["action"]["status"], "refused");
    // A request that is no longer pending cannot be approved.
    let again = lineage(
        dir.path(),
        &["actions", "approve", pending[1], "--config", "lineage.toml"],
    );
    common::assert_exit(&again, 1);
    assert!(String::from_utf8_lossy(&again.stderr).contains("not pending approval"));
}

/// `lineage actions approve` run four times at once on one request (as two analysts,
/// or an analyst beside a running responder, might): the ledger's lock lets exactly
/// one decide it; the others find it no longer pending. Each racer pauses between
/// reading the request and deciding it (`LINEAGE_PAUSEPOINT`), so without the lock
/// all four would decide it (checked by hand with the lock disabled: the test fails).
#[test]
fn racing_approvals_of_one_request_decide_it_once() {
    let dir = tempfile::tempdir().unwrap();
    sweep_frank(dir.path(), "");
    let list = lineage(dir.path(), &["actions", "list", "--config", "lineage.toml"]);
    common::assert_exit(&list, 0);
    let listing = String::from_utf8_lossy(&list.stdout).to_string();
    let id = listing
        .lines()
        .find(|l| l.contains("PendingApproval"))
        .and_then(|l| l.split_whitespace().next())
        .unwrap_or_else(|| panic!("nothing pending: {listing}"))
        .to_owned();
    let ledger_path = dir.path().join("state/ledger.jsonl");
    let decided = |ledger: &[serde_json::Value]| {
        ledger
            .iter()
            .filter(|e| e["action"]["status"] == "dry-run")
            .count()
    };
    let before = decided(&common::jsonl(&ledger_path));

    let racers: Vec<_> = (0..4)
        .map(|_| {
            Command::new(env!("CARGO_BIN_EXE_lineage"))
                .current_dir(dir.path())
                .args(["actions", "approve", &id, "--config", "lineage.toml"])
                // Each racer pauses between reading the request and deciding it.
                .env("LINEAGE_PAUSEPOINT", "approve-after-read")
                .env_remove("LINEAGE_LOG")
                .stdout(std::process::Stdio::piped())
                .stderr(std::process::Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    let outputs: Vec<_> = racers
        .into_iter()
        .map(|c| c.wait_with_output().unwrap())
        .collect();
    let won: Vec<_> = outputs.iter().filter(|o| o.status.success()).collect();
    assert_eq!(
        won.len(),
        1,
        "exactly one approval decides it: {outputs:#?}"
    );
    for lost in outputs.iter().filter(|o| !o.status.success()) {
        let err = String::from_utf8_lossy(&lost.stderr);
        assert!(err.contains("not pending approval"), "{err}");
    }
    assert_eq!(
        decided(&common::jsonl(&ledger_path)),
        before + 1,
        "one decision in the ledger"
    );
}
