//! The Vault executor against a real OpenBao dev server on a free 127.0.0.1 port: a
//! token that works is revoked by accessor through the [`Responder`] and is then
//! rejected; an HMAC'd accessor (as a default audit device logs it) fails permanently
//! without reaching the server; leases are revoked by prefix.
//!
//! The server binary is `$LINEAGE_BAO_BIN`, else `bao` on `PATH`
//! (`scripts/services/openbao.sh install` installs it and prints its path;
//! `scripts/test.sh` exports it). Without it the test fails and says how to install it.

use std::io::Read;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use chrono::Utc;
use lineage_core::{Action, ActionKind, ActionStatus, CredentialId, CredentialKind, CredentialRef};
use lineage_sinks::response::policy::Rule;
use lineage_sinks::response::vault::{VaultExecutor, VaultExecutorConfig};
use lineage_sinks::response::{Ledger, Policy, PolicyConfig, Responder, RetryConfig};
use serde_json::{json, Value};

fn bao_binary() -> PathBuf {
    if let Some(p) = std::env::var_os("LINEAGE_BAO_BIN").filter(|p| !p.is_empty()) {
        let p = PathBuf::from(p);
        assert!(
            p.is_file(),
            "LINEAGE_BAO_BIN={} is not a file; run `scripts/services/openbao.sh install` and export the path it prints",
            p.display()
        );
        return p;
    }
    let found = std::env::var_os("PATH").and_then(|path| {
        std::env::split_paths(&path)
            .map(|d| d.join("bao"))
            .find(|p| p.is_file())
    });
    found.unwrap_or_else(|| {
        panic!(
            "the OpenBao server binary `bao` was not found: set LINEAGE_BAO_BIN or put `bao` on PATH.\n\
             Install it with `scripts/services/openbao.sh install` (it prints the binary's path), then\n  \
             export LINEAGE_BAO_BIN=$(scripts/services/openbao.sh install)\n\
             `scripts/test.sh` does both."
        )
    })
}

/// 32 hex characters from the OS's randomness.
fn random_hex() -> String {
    let mut buf = [0u8; 16];
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut buf))
        .expect("/dev/urandom");
    buf.iter().map(|b| format!("{b:02x}")).collect()
}

/// A dev server; killed on drop.
struct Server {
    child: Child,
    addr: String,
    root_token: String,
    audit_log: PathBuf,
    http: ureq::Agent,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Server {
    fn start(bao: &Path, dir: &Path) -> Server {
        let http = ureq::AgentBuilder::new()
            .timeout(Duration::from_secs(5))
            .build();
        // OpenBao enables audit devices only from its configuration.
        let audit_log = dir.join("audit.log");
        let config = dir.join("openbao.hcl");
        std::fs::write(
            &config,
            format!(
                "audit \"file\" \"lineage\" {{\n  options {{\n    file_path = \"{}\"\n  }}\n}}\n",
                audit_log.display()
            ),
        )
        .unwrap();
        let mut last_error = String::new();
        for _attempt in 0..3 {
            let port = TcpListener::bind("127.0.0.1:0")
                .and_then(|l| l.local_addr())
                .expect("a free loopback port")
                .port();
            let root_token = format!("lineage-root-{}", random_hex());
            let log = std::fs::File::create(dir.join("server.log")).unwrap();
            let child = Command::new(bao)
                .arg("server")
                .arg("-dev")
                .arg(format!("-dev-root-token-id={root_token}"))
                .arg(format!("-dev-listen-address=127.0.0.1:{port}"))
                .arg(format!("-config={}", config.display()))
                // Dev mode stores the root token under $HOME; keep it in the temp dir.
                .env("HOME", dir)
                .env_remove("BAO_ADDR")
                .env_remove("BAO_TOKEN")
                .env_remove("VAULT_ADDR")
                .env_remove("VAULT_TOKEN")
                .stdin(Stdio::null())
                .stdout(log.try_clone().unwrap())
                .stderr(log)
                .spawn()
                .unwrap_or_else(|e| panic!("could not start {}: {e}", bao.display()));
            let mut server = Server {
                child,
                addr: format!("http://127.0.0.1:{port}"),
                root_token,
                audit_log: audit_log.clone(),
                http: http.clone(),
            };
            match server.wait_healthy(Duration::from_secs(60)) {
                Ok(()) => return server,
                Err(e) => last_error = e,
            }
        }
        panic!(
            "OpenBao did not become healthy: {last_error}\n--- server.log\n{}",
            std::fs::read_to_string(dir.join("server.log")).unwrap_or_default()
        );
    }

    fn wait_healthy(&mut self, limit: Duration) -> Result<(), String> {
        let start = Instant::now();
        while start.elapsed() < limit {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Err(format!("the server exited with {status}"));
            }
            let health = self
                .http
                .get(&format!("{}/v1/sys/health", self.addr))
                .timeout(Duration::from_secs(2))
                .call();
            if matches!(health, Ok(ref r) if r.status() == 200) && self.audit_log.exists() {
                return Ok(());
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        Err(format!(
            "no healthy answer from {} within {limit:?}",
            self.addr
        ))
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
    let bao = bao_binary();
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(&bao, dir.path());

    // The file audit device the config declares, with the default options: accessors are HMAC'd.
    let audit_log = server.audit_log.clone();

    let (token, accessor) = server.create_token();
    assert_eq!(server.lookup_self(&token), 200, "the new token works");

    let mut responder = live_responder(&server, dir.path(), "executor-token", &server.root_token);
    let owner = json!({ "owner": "alice" });

    // The accessor as the audit log recorded the issuance: HMAC'd, so not revocable,
    // and the server is not called.
    let logged = std::fs::read_to_string(&audit_log)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str::<Value>(l).unwrap())
        .find(|e| e["type"] == "response" && e["request"]["path"] == "auth/token/create")
        .expect("the audit log has the token's issuance");
    let hmac_accessor = logged["response"]["auth"]["accessor"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(hmac_accessor.starts_with("hmac-sha256:"), "{hmac_accessor}");
    let refused = responder
        .submit(action(&hmac_accessor, "1", owner.clone()), "operator")
        .unwrap();
    assert_eq!(refused.status, ActionStatus::Failed, "{refused:?}");
    let why = refused.result.as_deref().unwrap();
    assert!(why.contains("hmac_accessor=false"), "{why}");
    assert!(
        why.contains("after 1 attempt(s)"),
        "a permanent failure is not retried: {why}"
    );
    assert_eq!(
        requests_to(&audit_log, "auth/token/revoke-accessor"),
        0,
        "no request was made"
    );
    assert_eq!(server.lookup_self(&token), 200, "the token still works");

    // The clear accessor: revoked, and the token is rejected from then on.
    let done = responder
        .submit(action(&accessor, "2", owner.clone()), "operator")
        .unwrap();
    assert_eq!(done.status, ActionStatus::Done, "{done:?}");
    assert!(
        done.result.as_deref().unwrap().contains(&accessor),
        "{done:?}"
    );
    assert_eq!(requests_to(&audit_log, "auth/token/revoke-accessor"), 1);
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
        let nothing = responder
            .submit(action(id, key, owner.clone()), "operator")
            .unwrap();
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
        .submit(action(&weak_accessor, "3c", owner.clone()), "operator")
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
    let done = responder
        .submit(action(&accessor_b, "4", target), "operator")
        .unwrap();
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
