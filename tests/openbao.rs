//! End to end against a real OpenBao server: a dev server on a free loopback port
//! with a file audit device declared in its config, driven with the `bao` CLI (a
//! human logs in, creates a token for her agent, the agent creates a child token, the
//! tokens read and write KV v2 secrets, the root token revokes the child by
//! accessor), then `lineage replay` of the audit log.
//!
//! The server binary is `$LINEAGE_BAO_BIN`, else `bao` on `PATH`
//! (`scripts/services/openbao.sh install` installs it and prints its path;
//! `scripts/test.sh` exports it). Without it the test fails and says how to install it.

mod common;

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::Instant;

use lineage_core::FactKind;
use lineage_ingest::{parse_bytes, ParseLimits, VaultParser};
use serde_json::Value;

fn bao_binary() -> PathBuf {
    lineage_test_support::service_binary(
        "LINEAGE_BAO_BIN",
        "bao",
        "the OpenBao binary `bao` is needed: export LINEAGE_BAO_BIN=$(scripts/services/openbao.sh install) \
         (scripts/test.sh does both)",
    )
}

fn random_hex() -> String {
    let mut buf = [0u8; 16];
    if std::fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut buf))
        .is_err()
    {
        use std::hash::{BuildHasher, Hasher};
        for chunk in buf.chunks_mut(8) {
            let mut h = std::collections::hash_map::RandomState::new().build_hasher();
            h.write_u128(Instant::now().elapsed().as_nanos());
            chunk.copy_from_slice(&h.finish().to_le_bytes());
        }
    }
    buf.iter().map(|b| format!("{b:02x}")).collect()
}

/// A dev server; killed on drop.
struct Server {
    _bao: lineage_test_support::OpenBao,
    addr: String,
    root_token: String,
    dir: PathBuf,
    audit_log: PathBuf,
}

impl Server {
    fn start(dir: &Path) -> Server {
        let audit_log = dir.join("audit.log");
        let bao = lineage_test_support::OpenBao::start(
            dir,
            &lineage_test_support::file_device("lineage", &audit_log),
            || audit_log.exists(),
        );
        Server {
            addr: bao.addr.clone(),
            root_token: bao.root_token.clone(),
            _bao: bao,
            dir: dir.to_owned(),
            audit_log,
        }
    }

    /// Runs the `bao` CLI with `token` (or none) and returns its output.
    fn cli(&self, bao: &Path, token: Option<&str>, args: &[&str]) -> Output {
        let mut cmd = Command::new(bao);
        cmd.args(args)
            .env("BAO_ADDR", &self.addr)
            .env("HOME", &self.dir)
            .env_remove("BAO_TOKEN")
            .env_remove("VAULT_ADDR")
            .env_remove("VAULT_TOKEN")
            .stdin(Stdio::null());
        if let Some(t) = token {
            cmd.env("BAO_TOKEN", t);
        }
        cmd.output().expect("the bao CLI runs")
    }

    /// Like [`Server::cli`], failing the test when the command fails; returns stdout.
    fn ok(&self, bao: &Path, token: Option<&str>, args: &[&str]) -> String {
        let out = self.cli(bao, token, args);
        assert!(
            out.status.success(),
            "bao {args:?} failed ({}):\n{}\n{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    }

    /// `bao … -format=json` that returns an `auth` block: (client token, accessor).
    fn token(&self, bao: &Path, token: Option<&str>, args: &[&str]) -> (String, String) {
        let v: Value = serde_json::from_str(&self.ok(bao, token, args)).unwrap();
        let t = v["auth"]["client_token"].as_str().unwrap().to_owned();
        let a = v["auth"]["accessor"].as_str().unwrap().to_owned();
        (t, a)
    }
}

const AGENT_POLICY: &str = r#"
path "secret/data/app/*" { capabilities = ["create", "read", "update", "list"] }
path "auth/token/create" { capabilities = ["update"] }
"#;

const HUMAN_POLICY: &str = r#"
path "secret/data/*" { capabilities = ["create", "read", "update", "list"] }
path "auth/token/create" { capabilities = ["update"] }
"#;

const INVENTORY: &str = r#"
[[human]]
id = "alice"
email = "alice@example.com"
aliases = { vault = ["userpass-alice"] }

[[agent]]
id = "claude-code-alice"
kind = "ai-agent"
owner = "alice"
principals = ["token-agent-claude"]

[[agent.scope]]
source = "vault"
actions = ["vault:read", "vault:create", "vault:update", "vault:list"]
resources = ["secret/data/app/*", "sys/internal/ui/mounts/*", "auth/token/create"]
"#;

/// Entries of the audit log, as JSON.
fn audit_entries(path: &Path) -> Vec<Value> {
    std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

/// The successful response entry that issued the token with this display name.
fn issuance<'a>(entries: &'a [Value], display_name: &str) -> &'a Value {
    entries
        .iter()
        .find(|e| {
            e["type"] == "response"
                && e["response"]["auth"]["display_name"] == display_name
                && e.get("error").is_none()
        })
        .unwrap_or_else(|| panic!("no response entry issued a token named {display_name}"))
}

#[test]
fn openbao_audit_log_attributes_child_token_to_agent_and_owner() {
    let bao = bao_binary();
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path());
    let root_token = server.root_token.clone();
    let root = Some(root_token.as_str());

    // Setup as root: policies, a userpass user for the human.
    std::fs::write(dir.path().join("agent.hcl"), AGENT_POLICY).unwrap();
    std::fs::write(dir.path().join("human.hcl"), HUMAN_POLICY).unwrap();
    let p = |f: &str| dir.path().join(f).display().to_string();
    server.ok(&bao, root, &["policy", "write", "agent", &p("agent.hcl")]);
    server.ok(&bao, root, &["policy", "write", "human", &p("human.hcl")]);
    server.ok(&bao, root, &["auth", "enable", "userpass"]);
    let password = format!("pw-{}", random_hex());
    server.ok(
        &bao,
        root,
        &[
            "write",
            "auth/userpass/users/alice",
            &format!("password={password}"),
            "token_policies=agent,human",
        ],
    );

    // Alice logs in, keeps a note, and creates her agent's token.
    let (alice, _) = server.token(
        &bao,
        None,
        &[
            "write",
            "-format=json",
            "auth/userpass/login/alice",
            &format!("password={password}"),
        ],
    );
    server.ok(
        &bao,
        Some(&alice),
        &["kv", "put", "secret/team/notes", "owner=alice"],
    );
    let (agent, _) = server.token(
        &bao,
        Some(&alice),
        &[
            "token",
            "create",
            "-display-name=agent-claude",
            "-policy=agent",
            "-format=json",
        ],
    );

    // The agent works, and creates a child token for a sub-task.
    server.ok(
        &bao,
        Some(&agent),
        &["kv", "put", "secret/app/config", "level=1"],
    );
    server.ok(&bao, Some(&agent), &["kv", "get", "secret/app/config"]);
    let (child, child_accessor_raw) = server.token(
        &bao,
        Some(&agent),
        &[
            "token",
            "create",
            "-display-name=subtask",
            "-policy=agent",
            "-format=json",
        ],
    );
    server.ok(&bao, Some(&child), &["kv", "get", "secret/app/config"]);
    server.ok(
        &bao,
        Some(&child),
        &["kv", "put", "secret/app/result", "ok=1"],
    );
    let denied = server.cli(&bao, Some(&child), &["kv", "get", "secret/team/notes"]);
    assert!(
        !denied.status.success(),
        "the agent policy must not reach secret/team/"
    );

    // Root revokes the child by accessor; the child's next call fails.
    server.ok(
        &bao,
        root,
        &["token", "revoke", "-accessor", &child_accessor_raw],
    );
    let after = server.cli(&bao, Some(&child), &["kv", "get", "secret/app/config"]);
    assert!(!after.status.success(), "a revoked token must not read");

    // What the audit device recorded (every call is written before it returns).
    let entries = audit_entries(&server.audit_log);
    let child_issue = issuance(&entries, "token-subtask");
    let child_acc = child_issue["response"]["auth"]["accessor"]
        .as_str()
        .unwrap()
        .to_owned();
    let child_token_hmac = child_issue["response"]["auth"]["client_token"]
        .as_str()
        .unwrap()
        .to_owned();
    let agent_acc = issuance(&entries, "token-agent-claude")["response"]["auth"]["accessor"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_eq!(
        child_issue["auth"]["accessor"].as_str(),
        Some(agent_acc.as_str())
    );
    let alice_acc = issuance(&entries, "userpass-alice")["response"]["auth"]["accessor"]
        .as_str()
        .unwrap()
        .to_owned();
    for acc in [&child_acc, &agent_acc, &alice_acc] {
        assert!(
            acc.starts_with("hmac-sha256:"),
            "accessors are HMAC'd by default: {acc}"
        );
    }
    drop(server);

    // Replay it.
    let inventory = dir.path().join("inventory.toml");
    std::fs::write(&inventory, INVENTORY).unwrap();
    let out = dir.path().join("out");
    let audit_log = dir.path().join("audit.log");
    let output = common::replay(
        &[&audit_log],
        &out,
        &[
            "--source",
            "vault",
            "--inventory",
            inventory.to_str().unwrap(),
            "--events",
        ],
    );
    common::assert_exit(&output, 0);
    let summary = common::summary(&out);
    common::assert_counts_add_up(&summary);
    assert_eq!(
        summary["read"].as_u64().unwrap(),
        entries.len() as u64,
        "{summary:#}"
    );
    assert_eq!(
        summary["dead_lettered"], 0,
        "every real OpenBao entry normalizes: {summary:#}"
    );
    assert!(
        summary["joined_halves"].as_u64().unwrap() >= 20,
        "{summary:#}"
    );
    assert!(
        summary["lineage_facts"].as_u64().unwrap() >= 5,
        "{summary:#}"
    );

    let events = common::jsonl(&out.join("events.jsonl"));
    let uses_of = |id: &str| -> Vec<&Value> {
        events
            .iter()
            .filter(|e| e["use"]["credential"]["id"] == id)
            .collect()
    };

    // Every use of the child token: the agent and its owner, through the issuance chain.
    let child_uses = uses_of(&child_acc);
    assert!(child_uses.len() >= 4, "the child's calls: {child_uses:#?}");
    for e in &child_uses {
        let a = &e["attribution"];
        assert_eq!(a["agent"], "claude-code-alice", "{e:#}");
        assert_eq!(a["owner"], "alice", "{e:#}");
        assert_eq!(a["method"], "issuance-chain", "{e:#}");
        let chain: Vec<&str> = a["chain"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c.as_str().unwrap())
            .collect();
        assert_eq!(chain.first(), Some(&child_acc.as_str()), "{e:#}");
        assert!(
            chain.contains(&agent_acc.as_str()),
            "the chain names the parent token: {e:#}"
        );
        assert_eq!(e["use"]["principal"]["name"], "token-subtask");
    }
    assert!(
        child_uses
            .iter()
            .any(|e| e["use"]["outcome"]["error_code"] == "permission denied"
                && e["use"]["resources"][0] == "secret/data/team/notes"),
        "the denied read is a use of the child token"
    );
    assert!(child_uses
        .iter()
        .any(|e| e["use"]["operation"]["name"] == "read"
            && e["use"]["resources"][0] == "secret/data/app/config"
            && e["use"]["outcome"]["success"] == true));

    // The agent's own token: bound by its display name.
    let agent_uses = uses_of(&agent_acc);
    assert!(agent_uses.len() >= 3);
    for e in &agent_uses {
        assert_eq!(e["attribution"]["agent"], "claude-code-alice", "{e:#}");
        assert_eq!(e["attribution"]["owner"], "alice", "{e:#}");
        assert_eq!(e["attribution"]["method"], "principal-alias", "{e:#}");
    }
    // Alice's login token: hers, by her Vault alias; the login itself is its first use.
    let alice_uses = uses_of(&alice_acc);
    assert!(alice_uses
        .iter()
        .any(|e| e["use"]["resources"][0] == "auth/userpass/login/alice"));
    for e in &alice_uses {
        assert_eq!(e["attribution"]["owner"], "alice", "{e:#}");
        assert!(e["attribution"].get("agent").is_none(), "{e:#}");
    }
    // After revocation the token has no accessor; the entry names its HMAC.
    assert!(
        uses_of(&child_token_hmac)
            .iter()
            .any(|e| e["use"]["outcome"]["success"] == false),
        "the call with the revoked token is a failed use named by the token's HMAC"
    );

    // The out-of-scope read by the agent's child token is an alert.
    let alerts = common::jsonl(&out.join("alerts.jsonl"));
    assert!(
        alerts.iter().any(|a| a["detector"] == "out-of-scope"
            && a["agent"] == "claude-code-alice"
            && a.to_string().contains("secret/data/team/notes")),
        "expected an out-of-scope alert for secret/data/team/notes: {alerts:#?}"
    );

    // The revocation is a lineage fact of the revoke-accessor response.
    let bytes = std::fs::read(&audit_log).unwrap();
    let mut revoked = Vec::new();
    let counts = parse_bytes(
        &VaultParser,
        &bytes,
        "audit.log",
        ParseLimits::default(),
        |r| {
            for f in r.expect("every entry normalizes").facts {
                if let FactKind::CredentialStatusChanged {
                    credential, status, ..
                } = f.kind
                {
                    revoked.push((credential.id.to_string(), status.to_string()));
                }
            }
        },
    );
    assert_eq!(counts.read, counts.normalized);
    assert!(
        revoked.contains(&(child_acc.clone(), "Revoked".to_owned())),
        "no Revoked fact for the child's accessor: {revoked:?}"
    );

    // No token, password or raw accessor reaches any output (nor the audit log itself).
    let secrets = [
        root_token.as_str(),
        alice.as_str(),
        agent.as_str(),
        child.as_str(),
        password.as_str(),
        child_accessor_raw.as_str(),
    ];
    let mut files = vec![audit_log.clone()];
    // The Parquet tables under out/tables are compressed: tests/no_secrets.rs checks
    // their decoded rows; here every plain output file is scanned byte for byte.
    for entry in std::fs::read_dir(&out).unwrap() {
        let path = entry.unwrap().path();
        if path.is_file() {
            files.push(path);
        }
    }
    assert!(files.len() >= 4, "{files:?}");
    for f in &files {
        let text = String::from_utf8_lossy(&std::fs::read(f).unwrap()).into_owned();
        for s in secrets {
            assert!(!text.contains(s), "{} holds a raw secret", f.display());
        }
    }
}
