//! The AWS executor against a real moto server (a local AWS API emulator).
//!
//! Each test starts its own `moto_server -H 127.0.0.1 -p <free port>` from
//! `$LINEAGE_MOTO_SERVER` (set by `scripts/test.sh`) or `PATH`, and kills it on drop.
//! Without moto the tests fail with an install hint; they never skip.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use aws_sdk_iam::config::{BehaviorVersion, Credentials, Region};
use aws_sdk_iam::types::StatusType;
use chrono::Utc;
use lineage_core::{Action, ActionKind, ActionStatus, CredentialId, CredentialKind, CredentialRef};
use lineage_sinks::response::aws::{AwsExecutor, AwsExecutorConfig, REVOKE_SESSIONS_POLICY};
use lineage_sinks::response::policy::Rule;
use lineage_sinks::response::{
    ExecError, Executor, Ledger, Policy, PolicyConfig, Responder, RetryConfig,
};
use serde_json::json;

const INSTALL_HINT: &str = "moto_server not found: run `scripts/services/moto.sh install` and \
     export LINEAGE_MOTO_SERVER=<the path it prints> (scripts/test.sh does both)";

// ---------------------------------------------------------------------------------------
// The moto server.

/// A moto server on a free 127.0.0.1 port, killed on drop.
struct Moto {
    child: Child,
    endpoint: String,
    _dir: tempfile::TempDir,
}

impl Drop for Moto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn moto_binary() -> PathBuf {
    if let Some(p) = std::env::var_os("LINEAGE_MOTO_SERVER").filter(|p| !p.is_empty()) {
        let p = PathBuf::from(p);
        assert!(
            p.is_file(),
            "LINEAGE_MOTO_SERVER={} does not exist. {INSTALL_HINT}",
            p.display()
        );
        return p;
    }
    std::env::var_os("PATH")
        .and_then(|path| {
            std::env::split_paths(&path)
                .map(|d| d.join("moto_server"))
                .find(|p| p.is_file())
        })
        .unwrap_or_else(|| panic!("{INSTALL_HINT}"))
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn tail(log: &Path) -> String {
    let text = std::fs::read_to_string(log).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(20)..].join("\n")
}

/// Waits until the server answers HTTP, or says why not.
fn wait_ready(child: &mut Child, endpoint: &str, log: &Path) -> Result<(), String> {
    let deadline = Instant::now() + Duration::from_secs(60);
    let agent = ureq::AgentBuilder::new()
        .timeout(Duration::from_secs(2))
        .build();
    while Instant::now() < deadline {
        if let Some(status) = child.try_wait().unwrap() {
            return Err(format!("moto_server exited ({status}):\n{}", tail(log)));
        }
        if agent.get(&format!("{endpoint}/moto-api/")).call().is_ok() {
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    Err(format!(
        "moto_server did not answer on {endpoint} within 60 s:\n{}",
        tail(log)
    ))
}

impl Moto {
    fn start() -> Self {
        let bin = moto_binary();
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("moto.log");
        let mut last = String::new();
        // The port can be taken between free_port() and the server's bind: try a few.
        for _ in 0..3 {
            let port = free_port();
            let out = std::fs::File::create(&log).unwrap();
            let mut child = Command::new(&bin)
                .args(["-H", "127.0.0.1", "-p", &port.to_string()])
                .stdin(Stdio::null())
                .stdout(out.try_clone().unwrap())
                .stderr(out)
                .spawn()
                .unwrap_or_else(|e| panic!("starting {}: {e}. {INSTALL_HINT}", bin.display()));
            let endpoint = format!("http://127.0.0.1:{port}");
            match wait_ready(&mut child, &endpoint, &log) {
                Ok(()) => {
                    return Moto {
                        child,
                        endpoint,
                        _dir: dir,
                    }
                }
                Err(why) => {
                    let _ = child.kill();
                    let _ = child.wait();
                    last = why;
                }
            }
        }
        panic!("{last}");
    }

    /// A test-side IAM client (setup and checks), outside the executor under test.
    fn iam(&self) -> Iam {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let config = rt.block_on(
            aws_config::defaults(BehaviorVersion::latest())
                .region(Region::new("us-east-1"))
                .endpoint_url(&self.endpoint)
                .credentials_provider(Credentials::new("testing", "testing", None, None, "test"))
                .load(),
        );
        Iam {
            client: aws_sdk_iam::Client::new(&config),
            rt,
        }
    }

    fn executor_config(&self) -> AwsExecutorConfig {
        AwsExecutorConfig {
            endpoint_url: Some(self.endpoint.clone()),
            timeout_secs: 10,
            ..AwsExecutorConfig::default()
        }
    }

    /// The executor under test; fixed dummy credentials, so nothing is looked up off-host.
    fn executor(&self) -> AwsExecutor {
        AwsExecutor::with_credentials(self.executor_config(), "testing", "testing")
    }
}

struct Iam {
    client: aws_sdk_iam::Client,
    rt: tokio::runtime::Runtime,
}

impl Iam {
    fn create_user_with_key(&self, user: &str) -> String {
        self.rt
            .block_on(self.client.create_user().user_name(user).send())
            .unwrap();
        let out = self
            .rt
            .block_on(self.client.create_access_key().user_name(user).send())
            .unwrap();
        out.access_key().unwrap().access_key_id().to_owned()
    }

    fn key_status(&self, user: &str, key: &str) -> StatusType {
        let out = self
            .rt
            .block_on(self.client.list_access_keys().user_name(user).send())
            .unwrap();
        out.access_key_metadata()
            .iter()
            .find(|m| m.access_key_id() == Some(key))
            .and_then(|m| m.status().cloned())
            .unwrap_or_else(|| panic!("key {key} not listed for {user}"))
    }
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
    let iam = moto.iam();
    let key = iam.create_user_with_key("departed-alice");
    assert_eq!(iam.key_status("departed-alice", &key), StatusType::Active);

    let dir = tempfile::tempdir().unwrap();
    let ledger = dir.path().join("state/ledger.jsonl");
    let (exec, calls) = counting(moto.executor());
    let mut r = responder(live_policy(), &ledger, exec);
    let action = deactivate(&key, "departed-alice", "alice");

    let first = r.submit(action.clone(), "departed-owner").unwrap();
    assert_eq!(first.status, ActionStatus::Done, "{:?}", first.result);
    let text = first.result.clone().unwrap();
    assert!(text.starts_with("aws: "), "{text}");
    assert!(
        text.contains(&key) && text.contains("departed-alice") && text.contains("Inactive"),
        "{text}"
    );
    assert_eq!(iam.key_status("departed-alice", &key), StatusType::Inactive);
    assert_eq!(calls.load(Ordering::SeqCst), 1);

    // The same request again: the recorded Done action, no call.
    let second = r.submit(action.clone(), "departed-owner").unwrap();
    assert_eq!(second, first);
    assert_eq!(calls.load(Ordering::SeqCst), 1);

    // And from a fresh process (the ledger replayed from its file): still no call.
    drop(r);
    let (exec, calls2) = counting(moto.executor());
    let mut r = responder(live_policy(), &ledger, exec);
    let third = r.submit(action, "departed-owner").unwrap();
    assert_eq!(third, first);
    assert_eq!(
        calls.load(Ordering::SeqCst) + calls2.load(Ordering::SeqCst),
        1
    );
    assert_eq!(iam.key_status("departed-alice", &key), StatusType::Inactive);
}

#[test]
fn deletes_the_key_when_configured() {
    let moto = Moto::start();
    let iam = moto.iam();
    let key = iam.create_user_with_key("departed-dora");
    let config = AwsExecutorConfig {
        delete_keys: true,
        ..moto.executor_config()
    };
    let exec = AwsExecutor::with_credentials(config, "testing", "testing");
    let done = exec
        .execute(&deactivate(&key, "departed-dora", "dora"))
        .unwrap();
    assert!(done.contains("Inactive and deleted"), "{done}");
    let out = iam
        .rt
        .block_on(
            iam.client
                .list_access_keys()
                .user_name("departed-dora")
                .send(),
        )
        .unwrap();
    assert!(out.access_key_metadata().is_empty(), "{out:?}");
}

#[test]
fn dry_run_and_denylist_make_no_call() {
    let moto = Moto::start();
    let iam = moto.iam();
    let key = iam.create_user_with_key("departed-bob");
    let action = deactivate(&key, "departed-bob", "bob");

    // Dry run is the default, even with an allow rule.
    let dir = tempfile::tempdir().unwrap();
    let (exec, calls) = counting(moto.executor());
    let dry = PolicyConfig {
        allow: allow_all(),
        ..PolicyConfig::default()
    };
    assert!(dry.dry_run);
    let mut r = responder(dry, &dir.path().join("dry.jsonl"), exec);
    let out = r.submit(action.clone(), "departed-owner").unwrap();
    assert_eq!(out.status, ActionStatus::DryRun, "{:?}", out.result);
    assert_eq!(calls.load(Ordering::SeqCst), 0);
    assert_eq!(iam.key_status("departed-bob", &key), StatusType::Active);

    // Live, allowed, but the owner is on the denylist.
    let (exec, calls) = counting(moto.executor());
    let denied = PolicyConfig {
        deny: vec![Rule {
            owner: Some("bob".into()),
            ..Rule::default()
        }],
        ..live_policy()
    };
    let mut r = responder(denied, &dir.path().join("deny.jsonl"), exec);
    let out = r.submit(action, "departed-owner").unwrap();
    assert_eq!(out.status, ActionStatus::Refused, "{:?}", out.result);
    assert!(out.result.unwrap().contains("denylist"));
    assert_eq!(calls.load(Ordering::SeqCst), 0);
    assert_eq!(iam.key_status("departed-bob", &key), StatusType::Active);
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
    let iam = moto.iam();
    let trust = json!({
        "Version": "2012-10-17",
        "Statement": [{ "Effect": "Allow", "Principal": { "Service": "ec2.amazonaws.com" }, "Action": "sts:AssumeRole" }]
    });
    iam.rt
        .block_on(
            iam.client
                .create_role()
                .role_name("ci-deployer")
                .assume_role_policy_document(trust.to_string())
                .send(),
        )
        .unwrap();

    let dir = tempfile::tempdir().unwrap();
    let (exec, calls) = counting(moto.executor());
    let mut r = responder(live_policy(), &dir.path().join("ledger.jsonl"), exec);
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
        requested_at: Utc::now(),
        status: ActionStatus::Requested,
        result: None,
        target: json!({ "role_name": "ci-deployer", "owner": "carol" }),
    };
    let out = r.submit(action, "departed-owner").unwrap();
    assert_eq!(out.status, ActionStatus::Done, "{:?}", out.result);
    assert!(out.result.unwrap().contains("ci-deployer"));
    assert_eq!(calls.load(Ordering::SeqCst), 1);

    let got = iam
        .rt
        .block_on(
            iam.client
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
    let (exec, calls) = counting(moto.executor());
    let mut r = responder(live_policy(), &dir.path().join("ledger.jsonl"), exec);

    let out = r
        .submit(
            deactivate("AKIAIOSFODNN7EXAMPLE", "no-such-user", "erin"),
            "departed-owner",
        )
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
    let out = r.submit(action, "departed-owner").unwrap();
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
        .submit(
            deactivate("AKIAIOSFODNN7EXAMPLE", "u", "frank"),
            "departed-owner",
        )
        .unwrap();
    assert_eq!(out.status, ActionStatus::Failed);
    let text = out.result.unwrap();
    assert!(
        text.contains("transient failure") && text.contains("after 2 attempt(s)"),
        "{text}"
    );
    assert_eq!(calls.load(Ordering::SeqCst), 2);
}
