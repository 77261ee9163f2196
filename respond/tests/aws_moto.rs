//! The AWS executor against a real moto server (a local AWS API emulator).
//!
//! Each test starts its own `moto_server -H 127.0.0.1 -p <free port>` from
//! `$LINEAGE_MOTO_SERVER` (set by `scripts/test.sh`) or `PATH`, and kills it on drop.
//! Without moto the tests fail with an install hint; they never skip.

use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use chrono::Utc;
use lineage_core::{Action, ActionKind, ActionStatus, CredentialId, CredentialKind, CredentialRef};
use lineage_respond::aws::{AwsExecutor, AwsExecutorConfig, REVOKE_SESSIONS_POLICY};
use lineage_respond::policy::Rule;
use lineage_respond::{ExecError, Executor, Ledger, Policy, PolicyConfig, Responder, RetryConfig};
use serde_json::json;

use lineage_test_support::{free_port, Moto};

/// The account moto's default credentials belong to.
const MOTO_ACCOUNT: &str = "123456789012";

fn executor_config(moto: &Moto) -> AwsExecutorConfig {
    AwsExecutorConfig {
        endpoint_url: Some(moto.endpoint.clone()),
        timeout_secs: 10,
        ..AwsExecutorConfig::default()
    }
}

/// The executor under test; fixed dummy credentials, so nothing is looked up off-host.
fn executor(moto: &Moto) -> AwsExecutor {
    AwsExecutor::with_credentials(executor_config(moto), "testing", "testing")
}

// ---------------------------------------------------------------------------------------
// The responder around it.

/// Counts `execute` calls (API calls made) around another executor.
struct Counting<E> {
    inner: E,
    calls: Arc<AtomicUsize>,
}

impl<E: Executor> Executor for Counting<E> {
    fn name(&self) -> &'static str {
        self.inner.name()
    }
    fn kinds(&self) -> &'static [ActionKind] {
        self.inner.kinds()
    }
    fn execute(&self, action: &Action) -> Result<String, ExecError> {
        self.calls.fetch_add(1, Ordering::SeqCst);
        self.inner.execute(action)
    }
    fn check(&self, action: &Action) -> Result<Option<bool>, ExecError> {
        self.inner.check(action)
    }
}

fn counting(exec: AwsExecutor) -> (Box<dyn Executor>, Arc<AtomicUsize>) {
    let calls = Arc::new(AtomicUsize::new(0));
    let boxed = Box::new(Counting {
        inner: exec,
        calls: calls.clone(),
    });
    (boxed, calls)
}

fn allow_all() -> Vec<Rule> {
    vec![Rule {
        owner: Some("*".into()),
        ..Rule::default()
    }]
}

fn live_policy() -> PolicyConfig {
    PolicyConfig {
        dry_run: false,
        allow: allow_all(),
        ..PolicyConfig::default()
    }
}

fn responder(policy: PolicyConfig, ledger: &Path, exec: Box<dyn Executor>) -> Responder {
    Responder::new(
        Policy::new(policy),
        Ledger::open(ledger).unwrap(),
        vec![exec],
        RetryConfig {
            max_attempts: 3,
            backoff_ms: 10,
        },
    )
}

fn deactivate(key: &str, user: &str, owner: &str) -> Action {
    Action {
        idempotency_key: format!("deactivate:{key}:departed-owner:{owner}"),
        kind: ActionKind::DeactivateAwsAccessKey,
        credential: CredentialRef {
            kind: CredentialKind::AwsAccessKey,
            id: CredentialId::new(key),
            issuer: Some("123456789012".into()),
        },
        reason: format!("owner {owner} departed"),
        detector: "departed-owner".into(),
        evidence: None,
        requested_at: Utc::now(),
        status: ActionStatus::Requested,
        result: None,
        target: json!({ "user_name": user, "owner": owner, "account": "123456789012" }),
    }
}

// ---------------------------------------------------------------------------------------
// The tests.

#[test]
fn deactivates_a_key_once_even_when_the_sweep_runs_twice() {
    let moto = Moto::start();
    let iam = moto.clients();
    let key = iam.create_user_with_key("departed-alice");
    assert_eq!(iam.key_status("departed-alice", &key), "Active");

    let dir = tempfile::tempdir().unwrap();
    let ledger = dir.path().join("state/ledger.jsonl");
    let (exec, calls) = counting(executor(&moto));
    let mut r = responder(live_policy(), &ledger, exec);
    let action = deactivate(&key, "departed-alice", "alice");

    let first = r.submit(action.clone()).unwrap();
    assert_eq!(first.status, ActionStatus::Done, "{:?}", first.result);
    let text = first.result.clone().unwrap();
    assert!(text.starts_with("aws: "), "{text}");
    assert!(
        text.contains(&key) && text.contains("departed-alice") && text.contains("Inactive"),
        "{text}"
    );
    assert_eq!(iam.key_status("departed-alice", &key), "Inactive");
    assert_eq!(calls.load(Ordering::SeqCst), 1);

    // The same request again: the recorded Done action, no call.
    let second = r.submit(action.clone()).unwrap();
    assert_eq!(second, first);
    assert_eq!(calls.load(Ordering::SeqCst), 1);

    // And from a fresh process (the ledger replayed from its file): still no call.
    drop(r);
    let (exec, calls2) = counting(executor(&moto));
    let mut r = responder(live_policy(), &ledger, exec);
    let third = r.submit(action).unwrap();
    assert_eq!(third, first);
    assert_eq!(
        calls.load(Ordering::SeqCst) + calls2.load(Ordering::SeqCst),
        1
    );
    assert_eq!(iam.key_status("departed-alice", &key), "Inactive");

    // Another process with a ledger of its own (a partition that moved): IAM says the
    // key is already inactive, so it is recorded done and nothing is called.
    let (exec, calls3) = counting(executor(&moto));
    let mut other = responder(live_policy(), &dir.path().join("other.jsonl"), exec);
    let fourth = other
        .submit(deactivate(&key, "departed-alice", "alice"))
        .unwrap();
    assert_eq!(fourth.status, ActionStatus::Done, "{:?}", fourth.result);
    assert!(fourth.result.unwrap().contains("already in effect"));
    assert_eq!(calls3.load(Ordering::SeqCst), 0);
}

#[test]
fn deletes_the_key_when_configured() {
    let moto = Moto::start();
    let iam = moto.clients();
    let key = iam.create_user_with_key("departed-dora");
    let config = AwsExecutorConfig {
        delete_keys: true,
        ..executor_config(&moto)
    };
    let exec = AwsExecutor::with_credentials(config, "testing", "testing");
    let done = exec
        .execute(&deactivate(&key, "departed-dora", "dora"))
        .unwrap();
    assert!(done.contains("Inactive and deleted"), "{done}");
    let out = iam
        .rt
        .block_on(iam.iam.list_access_keys().user_name("departed-dora").send())
        .unwrap();
    assert!(out.access_key_metadata().is_empty(), "{out:?}");
}

#[test]
fn dry_run_and_denylist_make_no_call() {
    let moto = Moto::start();
    let iam = moto.clients();
    let key = iam.create_user_with_key("departed-bob");
    let action = deactivate(&key, "departed-bob", "bob");

    // Dry run is the default, even with an allow rule.
    let dir = tempfile::tempdir().unwrap();
    let (exec, calls) = counting(executor(&moto));
    let dry = PolicyConfig {
        allow: allow_all(),
        ..PolicyConfig::default()
    };
    assert!(dry.dry_run);
    let mut r = responder(dry, &dir.path().join("dry.jsonl"), exec);
    let out = r.submit(action.clone()).unwrap();
    assert_eq!(out.status, ActionStatus::DryRun, "{:?}", out.result);
    assert_eq!(calls.load(Ordering::SeqCst), 0);
    assert_eq!(iam.key_status("departed-bob", &key), "Active");

    // Live, allowed, but the owner is on the denylist.
    let (exec, calls) = counting(executor(&moto));
    let denied = PolicyConfig {
        deny: vec![Rule {
            owner: Some("bob".into()),
            ..Rule::default()
        }],
        ..live_policy()
    };
    let mut r = responder(denied, &dir.path().join("deny.jsonl"), exec);
    let out = r.submit(action).unwrap();
    assert_eq!(out.status, ActionStatus::Refused, "{:?}", out.result);
    assert!(out.result.unwrap().contains("denylist"));
    assert_eq!(calls.load(Ordering::SeqCst), 0);
    assert_eq!(iam.key_status("departed-bob", &key), "Active");
}

/// IAM returns policy documents URL-encoded (moto too).
fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' && i + 2 < b.len() {
            if let Ok(v) = u8::from_str_radix(&s[i + 1..i + 3], 16) {
                out.push(v);
                i += 3;
                continue;
            }
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8(out).unwrap()
}

#[test]
fn revokes_role_sessions_with_the_console_policy() {
    let moto = Moto::start();
    let iam = moto.clients();
    let trust = json!({
        "Version": "2012-10-17",
        "Statement": [{ "Effect": "Allow", "Principal": { "Service": "ec2.amazonaws.com" }, "Action": "sts:AssumeRole" }]
    });
    iam.rt
        .block_on(
            iam.iam
                .create_role()
                .role_name("ci-deployer")
                .assume_role_policy_document(trust.to_string())
                .send(),
        )
        .unwrap();

    let dir = tempfile::tempdir().unwrap();
    let session = |account: &str| Action {
        idempotency_key: format!("revoke-sessions:{account}/ci-deployer:departed-owner:carol"),
        kind: ActionKind::RevokeAwsRoleSessions,
        credential: CredentialRef {
            kind: CredentialKind::AwsSessionKey,
            id: CredentialId::new("ASIAEXAMPLE0000000001"),
            issuer: Some(account.into()),
        },
        reason: "owner carol departed".into(),
        detector: "departed-owner".into(),
        evidence: None,
        requested_at: Utc::now(),
        status: ActionStatus::Requested,
        result: None,
        target: json!({ "role_name": "ci-deployer", "owner": "carol", "account": account }),
    };

    // Role-wide: by default a person approves it, whatever the detector's mode.
    let (exec, calls) = counting(executor(&moto));
    let mut r = responder(live_policy(), &dir.path().join("queued.jsonl"), exec);
    let out = r.submit(session(MOTO_ACCOUNT)).unwrap();
    assert_eq!(
        out.status,
        ActionStatus::PendingApproval,
        "{:?}",
        out.result
    );
    assert!(out.result.unwrap().contains("role_sessions"));
    assert_eq!(calls.load(Ordering::SeqCst), 0);

    // A role of the same name in another account is never touched here.
    let role_auto = PolicyConfig {
        role_sessions: lineage_respond::Mode::Auto,
        ..live_policy()
    };
    let (exec, calls) = counting(executor(&moto));
    let mut r = responder(role_auto.clone(), &dir.path().join("foreign.jsonl"), exec);
    let out = r.submit(session("999988887777")).unwrap();
    assert_eq!(out.status, ActionStatus::Failed, "{:?}", out.result);
    let why = out.result.unwrap();
    assert!(
        why.contains("refused") && why.contains("999988887777"),
        "{why}"
    );
    assert_eq!(
        calls.load(Ordering::SeqCst),
        1,
        "one call, refused, no retry"
    );
    let listed = iam
        .rt
        .block_on(iam.iam.list_role_policies().role_name("ci-deployer").send())
        .unwrap();
    assert!(
        listed.policy_names().is_empty(),
        "nothing was put on the role"
    );

    let (exec, calls) = counting(executor(&moto));
    let mut r = responder(role_auto, &dir.path().join("ledger.jsonl"), exec);
    let before = Utc::now() - chrono::Duration::seconds(2);
    let action = Action {
        idempotency_key: "revoke-sessions:ASIAEXAMPLE:departed-owner:carol".into(),
        kind: ActionKind::RevokeAwsRoleSessions,
        credential: CredentialRef {
            kind: CredentialKind::AwsSessionKey,
            id: CredentialId::new("ASIAEXAMPLE0000000001"),
            issuer: Some("123456789012".into()),
        },
        reason: "owner carol departed".into(),
        detector: "departed-owner".into(),
        evidence: None,
        requested_at: Utc::now(),
        status: ActionStatus::Requested,
        result: None,
        target: json!({ "role_name": "ci-deployer", "owner": "carol", "account": MOTO_ACCOUNT }),
    };
    let out = r.submit(action).unwrap();
    assert_eq!(out.status, ActionStatus::Done, "{:?}", out.result);
    assert!(out.result.unwrap().contains("ci-deployer"));
    assert_eq!(calls.load(Ordering::SeqCst), 1);

    let got = iam
        .rt
        .block_on(
            iam.iam
                .get_role_policy()
                .role_name("ci-deployer")
                .policy_name(REVOKE_SESSIONS_POLICY)
                .send(),
        )
        .unwrap();
    let doc = percent_decode(got.policy_document());
    assert!(doc.contains("aws:TokenIssueTime"), "{doc}");
    let doc: serde_json::Value = serde_json::from_str(&doc).unwrap();
    let st = &doc["Statement"][0];
    assert_eq!(st["Effect"], "Deny");
    let issued = st["Condition"]["DateLessThan"]["aws:TokenIssueTime"]
        .as_str()
        .unwrap();
    let issued = chrono::DateTime::parse_from_rfc3339(issued).unwrap();
    assert!(
        issued >= before && issued <= Utc::now() + chrono::Duration::seconds(2),
        "{issued}"
    );
}

#[test]
fn a_missing_user_fails_permanently_after_one_attempt() {
    let moto = Moto::start();
    let dir = tempfile::tempdir().unwrap();
    let (exec, calls) = counting(executor(&moto));
    let mut r = responder(live_policy(), &dir.path().join("ledger.jsonl"), exec);

    let out = r
        .submit(deactivate("AKIAIOSFODNN7EXAMPLE", "no-such-user", "erin"))
        .unwrap();
    assert_eq!(out.status, ActionStatus::Failed);
    let text = out.result.unwrap();
    assert!(text.contains("NoSuchEntity"), "{text}");
    assert!(text.contains("after 1 attempt(s)"), "{text}");
    assert!(!text.contains("transient"), "{text}");
    assert_eq!(calls.load(Ordering::SeqCst), 1);

    // A request without the user name never reaches AWS, and is not retried either.
    let mut action = deactivate("AKIAIOSFODNN7EXAMPLE", "x", "erin");
    action.idempotency_key.push_str(":no-target");
    action.target = json!({ "owner": "erin" });
    let out = r.submit(action).unwrap();
    assert_eq!(out.status, ActionStatus::Failed);
    let text = out.result.unwrap();
    assert!(
        text.contains("target.user_name") && text.contains("after 1 attempt(s)"),
        "{text}"
    );
    assert_eq!(calls.load(Ordering::SeqCst), 2);
}

#[test]
fn an_unreachable_endpoint_is_retried_then_fails() {
    // A port nothing listens on: connection refused, immediately.
    let port = free_port();
    let config = AwsExecutorConfig {
        endpoint_url: Some(format!("http://127.0.0.1:{port}")),
        timeout_secs: 5,
        ..AwsExecutorConfig::default()
    };
    let (exec, calls) = counting(AwsExecutor::with_credentials(config, "testing", "testing"));
    let mut r = Responder::new(
        Policy::new(live_policy()),
        Ledger::in_memory(),
        vec![exec],
        RetryConfig {
            max_attempts: 2,
            backoff_ms: 10,
        },
    );
    let out = r
        .submit(deactivate("AKIAIOSFODNN7EXAMPLE", "u", "frank"))
        .unwrap();
    assert_eq!(out.status, ActionStatus::Failed);
    let text = out.result.unwrap();
    assert!(
        text.contains("transient failure") && text.contains("after 2 attempt(s)"),
        "{text}"
    );
    assert_eq!(calls.load(Ordering::SeqCst), 2);
}
