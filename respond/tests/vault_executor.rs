//! The Vault executor against a real OpenBao dev server on a free 127.0.0.1 port: a
//! token that works is revoked by accessor through the [`Responder`] and is then
//! rejected; an HMAC'd accessor (as a default audit device logs it) is resolved
//! through the device's own hash and its token revoked (and, with resolution off,
//! fails permanently without reaching the server); leases are revoked by prefix.
//!
//! The server binary is `$LINEAGE_BAO_BIN`, else `bao` on `PATH`
//! (`scripts/services/openbao.sh install` installs it and prints its path;
//! `scripts/test.sh` exports it). Without it the test fails and says how to install it.

use std::path::{Path, PathBuf};
use std::time::Duration;

use chrono::Utc;
use lineage_core::{Action, ActionKind, ActionStatus, CredentialId, CredentialKind, CredentialRef};
use lineage_respond::policy::Rule;
use lineage_respond::vault::{VaultExecutor, VaultExecutorConfig};
use lineage_respond::{Ledger, Policy, PolicyConfig, Responder, RetryConfig};
use lineage_test_support::{file_device, OpenBao};
use serde_json::{json, Value};

struct Server {
    _bao: OpenBao,
    addr: String,
    root_token: String,
    audit_log: PathBuf,
    http: ureq::Agent,
}

impl Server {
    /// A dev server with a `file` audit device (OpenBao's defaults: accessors HMAC'd).
    fn start(dir: &Path) -> Server {
        let audit_log = dir.join("audit.log");
        let bao = OpenBao::start(dir, &file_device("lineage", &audit_log), || {
            audit_log.exists()
        });
        Server {
            addr: bao.addr.clone(),
            root_token: bao.root_token.clone(),
            _bao: bao,
            audit_log,
            http: ureq::AgentBuilder::new()
                .timeout(Duration::from_secs(5))
                .build(),
        }
    }

    /// Calls the API with `token`; returns the status and the JSON body (null when empty).
    fn call(&self, method: &str, path: &str, token: &str, body: Option<Value>) -> (u16, Value) {
        let req = self
            .http
            .request(method, &format!("{}/v1/{path}", self.addr))
            .set("X-Vault-Token", token);
        let resp = match body {
            Some(b) => req.send_json(b),
            None => req.call(),
        };
        let resp = match resp {
            Ok(r) | Err(ureq::Error::Status(_, r)) => r,
            Err(e) => panic!("{method} {path}: {e}"),
        };
        let status = resp.status();
        let text = resp.into_string().unwrap();
        let value = if text.trim().is_empty() {
            Value::Null
        } else {
            serde_json::from_str(&text).unwrap()
        };
        (status, value)
    }

    /// A new token (default policy): (token, accessor).
    fn create_token(&self) -> (String, String) {
        self.create_token_at("auth/token/create")
    }

    /// A new token (default policy) from `path` (`auth/token/create[/ROLE]`).
    fn create_token_at(&self, path: &str) -> (String, String) {
        let (status, body) = self.call(
            "POST",
            path,
            &self.root_token,
            Some(json!({ "policies": ["default"], "ttl": "1h" })),
        );
        assert_eq!(status, 200, "creating a token: {body}");
        let token = body["auth"]["client_token"].as_str().unwrap().to_owned();
        let accessor = body["auth"]["accessor"].as_str().unwrap().to_owned();
        (token, accessor)
    }

    /// The status of `GET auth/token/lookup-self` with `token`.
    fn lookup_self(&self, token: &str) -> u16 {
        self.call("GET", "auth/token/lookup-self", token, None).0
    }
}

fn action(accessor: &str, key: &str, target: Value) -> Action {
    Action {
        idempotency_key: format!("vault:{accessor}:{key}"),
        kind: ActionKind::RevokeVaultAccessor,
        credential: CredentialRef {
            kind: CredentialKind::VaultServiceToken,
            id: CredentialId::new(accessor),
            issuer: None,
        },
        reason: "departed owner".into(),
        detector: "departed-owner".into(),
        evidence: None,
        requested_at: Utc::now(),
        status: ActionStatus::Requested,
        result: None,
        target,
    }
}

/// A responder that executes (dry run off, everything allowed), two attempts, with a
/// Vault executor authenticating with `token` (from a file named `name` in `dir`).
fn live_responder(server: &Server, dir: &Path, name: &str, token: &str) -> Responder {
    let token_file = dir.join(name);
    std::fs::write(&token_file, format!("{token}\n")).unwrap();
    let executor = VaultExecutor::new(VaultExecutorConfig {
        token_file: Some(token_file),
        timeout_secs: 5,
        ..VaultExecutorConfig::new(format!("{}/", server.addr))
    });
    let policy = Policy::new(PolicyConfig {
        dry_run: false,
        allow: vec![Rule {
            owner: Some("*".into()),
            ..Rule::default()
        }],
        ..PolicyConfig::default()
    });
    Responder::new(
        policy,
        Ledger::in_memory(),
        vec![Box::new(executor)],
        RetryConfig {
            max_attempts: 2,
            backoff_ms: 10,
        },
    )
}

/// Audit entries for requests to `path`.
fn requests_to(audit_log: &Path, path: &str) -> usize {
    std::fs::read_to_string(audit_log)
        .unwrap()
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| serde_json::from_str::<Value>(l).unwrap())
        .filter(|e| e["type"] == "request" && e["request"]["path"] == path)
        .count()
}

#[test]
fn openbao_token_is_revoked_by_accessor_and_leases_by_prefix() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path());

    // The file audit device the config declares, with the default options: accessors are HMAC'd.
    let audit_log = server.audit_log.clone();

    let (token, accessor) = server.create_token();
    assert_eq!(server.lookup_self(&token), 200, "the new token works");

    let mut responder = live_responder(&server, dir.path(), "executor-token", &server.root_token);
    let owner = json!({ "owner": "alice" });

    // The accessor as the audit log recorded the issuance (the last one: a dev
    // server's own root token may be logged as created there too): HMAC'd.
    let logged = std::fs::read_to_string(&audit_log)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str::<Value>(l).unwrap())
        .rfind(|e| e["type"] == "response" && e["request"]["path"] == "auth/token/create")
        .expect("the audit log has the token's issuance");
    let hmac_accessor = logged["response"]["auth"]["accessor"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(hmac_accessor.starts_with("hmac-sha256:"), "{hmac_accessor}");

    // With resolution turned off it fails at once, and the server is not called.
    let mut no_resolve = {
        let token_file = dir.path().join("no-resolve-token");
        std::fs::write(&token_file, &server.root_token).unwrap();
        Responder::new(
            Policy::new(PolicyConfig {
                dry_run: false,
                allow: vec![Rule {
                    owner: Some("*".into()),
                    ..Rule::default()
                }],
                ..PolicyConfig::default()
            }),
            Ledger::in_memory(),
            vec![Box::new(VaultExecutor::new(VaultExecutorConfig {
                token_file: Some(token_file),
                resolve_hmac_accessors: false,
                ..VaultExecutorConfig::new(server.addr.clone())
            }))],
            RetryConfig {
                max_attempts: 2,
                backoff_ms: 10,
            },
        )
    };
    let refused = no_resolve
        .submit(action(&hmac_accessor, "0", owner.clone()))
        .unwrap();
    assert_eq!(refused.status, ActionStatus::Failed, "{refused:?}");
    let why = refused.result.as_deref().unwrap();
    assert!(why.contains("hmac_accessor=false"), "{why}");
    assert!(
        why.contains("after 1 attempt(s)"),
        "a permanent failure is not retried: {why}"
    );
    assert_eq!(requests_to(&audit_log, "auth/token/accessors"), 0);
    assert_eq!(
        requests_to(&audit_log, "auth/token/revoke-accessor"),
        0,
        "no request was made"
    );
    assert_eq!(server.lookup_self(&token), 200, "the token still works");

    // By default, the HMAC'd accessor is resolved through the audit device's own
    // hash (OpenBao's default audit settings) and the token is revoked.
    let done = responder
        .submit(action(&hmac_accessor, "1", owner.clone()))
        .unwrap();
    assert_eq!(done.status, ActionStatus::Done, "{done:?}");
    let said = done.result.as_deref().unwrap();
    assert!(
        said.contains(&accessor),
        "the clear accessor is named: {said}"
    );
    assert!(
        said.contains("resolved through audit device `lineage/`"),
        "{said}"
    );
    assert_eq!(requests_to(&audit_log, "auth/token/revoke-accessor"), 1);
    assert_eq!(
        server.lookup_self(&token),
        403,
        "the revoked token is rejected"
    );
    // An HMAC no live token has (the same one, now revoked): nothing is revoked, and
    // the failure says why.
    let gone = responder
        .submit(action(&hmac_accessor, "1b", owner.clone()))
        .unwrap();
    assert_eq!(gone.status, ActionStatus::Failed, "{gone:?}");
    assert!(
        gone.result
            .as_deref()
            .unwrap()
            .contains("no live token's accessor hashes to"),
        "{gone:?}"
    );
    assert_eq!(requests_to(&audit_log, "auth/token/revoke-accessor"), 1);

    // A clear accessor: revoked, and the token is rejected from then on.
    let (token, accessor) = server.create_token();
    assert_eq!(server.lookup_self(&token), 200, "the new token works");
    let done = responder
        .submit(action(&accessor, "2", owner.clone()))
        .unwrap();
    assert_eq!(done.status, ActionStatus::Done, "{done:?}");
    assert!(
        done.result.as_deref().unwrap().contains(&accessor),
        "{done:?}"
    );
    assert_eq!(requests_to(&audit_log, "auth/token/revoke-accessor"), 2);
    assert_eq!(
        server.lookup_self(&token),
        403,
        "the revoked token is rejected"
    );

    // Revoking it again, or an accessor the server does not know, revokes nothing:
    // OpenBao answers 200 with a warning, reported as a permanent failure, never as done.
    for (id, key) in [
        (accessor.as_str(), "3"),
        ("lineageNoSuchAccessor0000", "3b"),
    ] {
        let nothing = responder.submit(action(id, key, owner.clone())).unwrap();
        assert_eq!(nothing.status, ActionStatus::Failed, "{nothing:?}");
        let why = nothing.result.as_deref().unwrap();
        assert!(
            why.contains("Vault revoked nothing: \"No token found with this accessor\""),
            "{why}"
        );
        assert!(why.ends_with("(after 1 attempt(s))"), "{why}");
    }

    // An executor token without the capability: a permanent failure with OpenBao's own text.
    let (weak_token, weak_accessor) = server.create_token();
    let mut weak = live_responder(&server, dir.path(), "weak-token", &weak_token);
    let denied = weak
        .submit(action(&weak_accessor, "3c", owner.clone()))
        .unwrap();
    assert_eq!(denied.status, ActionStatus::Failed, "{denied:?}");
    let why = denied.result.as_deref().unwrap();
    assert!(why.starts_with("vault: Vault answered 403: "), "{why}");
    assert!(why.contains("permission denied"), "{why}");
    assert!(why.ends_with("(after 1 attempt(s))"), "{why}");
    assert_eq!(server.lookup_self(&weak_token), 200);

    // Leases by prefix: the tokens issued through one token role (orphans, so that
    // nothing else is revoked with them), and nothing else.
    let (status, body) = server.call(
        "POST",
        "auth/token/roles/lineage-agent",
        &server.root_token,
        Some(json!({ "allowed_policies": ["default"], "orphan": true })),
    );
    assert!(
        status == 200 || status == 204,
        "creating a token role: {status} {body}"
    );
    let (token_b, accessor_b) = server.create_token_at("auth/token/create/lineage-agent");
    let (token_c, _) = server.create_token_at("auth/token/create/lineage-agent");
    let (bystander, _) = server.create_token();
    for t in [&token_b, &token_c, &bystander] {
        assert_eq!(server.lookup_self(t), 200);
    }
    let mut target = owner.clone();
    target["lease_prefix"] = json!("/auth/token/create/lineage-agent/");
    let done = responder.submit(action(&accessor_b, "4", target)).unwrap();
    assert_eq!(done.status, ActionStatus::Done, "{done:?}");
    assert!(
        done.result
            .as_deref()
            .unwrap()
            .contains("auth/token/create/lineage-agent/"),
        "{done:?}"
    );
    assert_eq!(server.lookup_self(&token_b), 403, "revoked by prefix");
    assert_eq!(server.lookup_self(&token_c), 403, "revoked by prefix");
    assert_eq!(
        server.lookup_self(&bystander),
        200,
        "another path's token is untouched"
    );
    assert_eq!(
        server.lookup_self(&server.root_token),
        200,
        "the root token is untouched"
    );
}
