//! Golden tests of the Vault / OpenBao parser: real OpenBao audit entries (from a
//! session against a local dev server, `testdata/vault/README.md`) and invented
//! entries for shapes that session does not produce, with the exact normalized form
//! expected for each.
//!
//! Inputs are `testdata/vault/golden/<name>.input.json`, expectations
//! `<name>.expected.json` (pretty JSON of `{"use", "facts", "half"}`). Set
//! `UPDATE_GOLDEN=1` to rewrite the expected files, then review the diff by eye.

use std::path::{Path, PathBuf};

use lineage_core::{FactKind, Provenance};
use lineage_ingest::{
    join_request_response, parse_bytes, Half, ParseError, ParseLimits, SourceParser, VaultParser,
};
use serde_json::{json, Value};

fn vault_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../testdata/vault")
}

fn golden_dir() -> PathBuf {
    vault_dir().join("golden")
}

fn golden_names() -> Vec<String> {
    lineage_test_support::golden::names(&golden_dir())
}

fn half_json(h: &Option<Half>) -> Value {
    match h {
        None => Value::Null,
        Some(Half::Request(id)) => json!({ "request": id }),
        Some(Half::Response(id)) => json!({ "response": id }),
    }
}

fn normalize(name: &str) -> Value {
    let input = golden_dir().join(format!("{name}.input.json"));
    let bytes = std::fs::read(&input).unwrap_or_else(|e| panic!("{}: {e}", input.display()));
    let n = VaultParser
        .parse_record(&bytes, Provenance::file(format!("{name}.input.json"), 1))
        .unwrap_or_else(|e| panic!("{name}: the parser rejected the record: {e}"));
    json!({ "use": n.use_, "facts": n.facts, "half": half_json(&n.half) })
}

#[test]
fn golden_records_normalize_exactly_as_expected() {
    lineage_test_support::golden::check(&golden_dir(), 15, normalize);
}

/// Spot checks of the fields the goldens exist for, so a careless `UPDATE_GOLDEN=1`
/// cannot bless a regression in them.
#[test]
fn golden_key_fields() {
    let get = normalize;
    const AGENT: &str =
        "hmac-sha256:951839b3c7b2d93599f20c91df132982df69ed70a1be75142ab5625080eac9a6";
    const CHILD: &str =
        "hmac-sha256:e966cc7459f379ad815a09a3e11ddb3fda1241cf29c33ade841ccc4128714d24";

    // The agent's token creates a child token: issuance with the agent's accessor as parent.
    let v = get("openbao_token_create_by_agent");
    assert_eq!(
        v["half"],
        json!({ "response": "fc0c88a2-1bd9-8dc6-acc1-b0fd1fa819c8" })
    );
    assert_eq!(v["use"]["event_id"], "fc0c88a2-1bd9-8dc6-acc1-b0fd1fa819c8");
    assert_eq!(v["use"]["credential"]["id"], AGENT);
    assert_eq!(v["use"]["credential"]["kind"], "vault-service-token");
    assert_eq!(v["use"]["principal"]["name"], "token-agent-claude");
    assert_eq!(
        v["use"]["operation"],
        json!({ "service": "vault", "name": "update", "read_only": false })
    );
    assert_eq!(v["use"]["resources"], json!(["auth/token/create"]));
    let f = &v["facts"][0]["kind"];
    assert_eq!(v["facts"].as_array().unwrap().len(), 1);
    assert_eq!(f["fact"], "credential-issued");
    assert_eq!(f["parent"]["id"], AGENT);
    assert_eq!(f["child"]["id"], CHILD);
    assert_eq!(f["child"]["kind"], "vault-service-token");
    assert_eq!(f["issued_to"], "token-subtask");
    assert_eq!(f["method"], "other");

    // The request half: same id, no facts.
    let v = get("openbao_token_create_request_half");
    assert_eq!(
        v["half"],
        json!({ "request": "fc0c88a2-1bd9-8dc6-acc1-b0fd1fa819c8" })
    );
    assert_eq!(v["use"]["event_id"], "fc0c88a2-1bd9-8dc6-acc1-b0fd1fa819c8");
    assert_eq!(v["facts"], json!([]));

    let v = get("openbao_kv_read_child_token");
    assert_eq!(v["use"]["credential"]["id"], CHILD);
    assert_eq!(v["use"]["operation"]["name"], "read");
    assert_eq!(v["use"]["operation"]["read_only"], true);
    assert_eq!(v["use"]["resources"], json!(["secret/data/app/one"]));
    assert_eq!(v["use"]["client"]["source_ip"], "127.0.0.1");

    let v = get("openbao_permission_denied");
    assert_eq!(
        v["use"]["outcome"],
        json!({ "success": false, "error_code": "permission denied" })
    );

    let v = get("openbao_revoke_accessor");
    let f = &v["facts"][0]["kind"];
    assert_eq!(f["fact"], "credential-status-changed");
    assert_eq!(f["credential"]["id"], CHILD);
    assert_eq!(f["status"], "Revoked");

    // After revocation the token has no accessor: it is named by its HMAC.
    let v = get("openbao_revoked_token_use");
    assert_eq!(
        v["use"]["credential"]["id"],
        "hmac-sha256:f7b6ce5dae4f69a63c155d63eee6323cadd7a925da74cc7b6a45dc719fe483a7"
    );
    assert_eq!(v["use"]["outcome"]["error_code"], "permission denied");

    // A login is the first use of the token it issues, and the issuance has no parent.
    let v = get("openbao_userpass_login");
    let login = "hmac-sha256:272de04f7880eb31c84d94618612d16c1c7c9c6c69a9ba98f551dc5d10c51fe8";
    assert_eq!(v["use"]["credential"]["id"], login);
    assert_eq!(v["use"]["principal"]["name"], "userpass-alice");
    assert_eq!(
        v["use"]["principal"]["id"],
        "3cba03bf-1118-c236-0444-e27d38a28de3"
    );
    assert!(v["facts"][0]["kind"].get("parent").is_none());
    assert_eq!(v["facts"][0]["kind"]["child"]["id"], login);
    assert_eq!(v["facts"][0]["kind"]["issued_to"], "userpass-alice");
    let v = get("vault_oidc_login_without_caller_auth");
    assert_eq!(v["use"]["principal"]["name"], "oidc-maria@example.com");
    assert_eq!(v["facts"][0]["kind"]["issued_to"], "oidc-maria@example.com");
    assert!(v["facts"][0]["kind"].get("parent").is_none());

    // Batch tokens have no accessor: issuance and use agree on the token HMAC.
    let batch = "hmac-sha256:e339da59ebdeeab139dd6a3ded01e3a7000f93baf33eef8e1c7f99efc8f98344";
    let v = get("openbao_batch_token_create");
    assert_eq!(v["facts"][0]["kind"]["child"]["id"], batch);
    assert_eq!(v["facts"][0]["kind"]["child"]["kind"], "vault-batch-token");
    assert_eq!(v["facts"][0]["kind"]["parent"]["id"], login);
    let v = get("openbao_batch_token_use");
    assert_eq!(v["use"]["credential"]["id"], batch);
    assert_eq!(v["use"]["credential"]["kind"], "vault-batch-token");

    let v = get("openbao_revoke_self");
    assert_eq!(
        v["facts"][0]["kind"]["credential"]["id"],
        v["use"]["credential"]["id"]
    );
    assert_eq!(v["facts"][0]["kind"]["status"], "Revoked");
    let v = get("openbao_revoke_token");
    assert_eq!(
        v["facts"][0]["kind"]["credential"]["id"],
        "hmac-sha256:c22d7d35be3b938411728d3f4fa0cc0ae754e9088167e6af7cfbebd6901c6e66"
    );
    // A renewal returns the caller's own token: no issuance.
    assert_eq!(get("openbao_renew_self")["facts"], json!([]));

    let v = get("openbao_no_request_id");
    assert!(v["use"]["event_id"]
        .as_str()
        .unwrap()
        .starts_with("sha256:"));
    assert_eq!(v["half"], Value::Null);
    let v = get("openbao_audit_test_entry");
    assert!(v["use"].get("credential").is_none());
    assert_eq!(v["use"]["principal"]["kind"], "unknown");

    let v = get("vault_namespace_user_agent_errors");
    assert_eq!(
        v["use"]["resources"],
        json!(["team-payments/transit/decrypt/payments-key"])
    );
    assert_eq!(v["use"]["credential"]["issuer"], "Kx3pQ");
    assert_eq!(
        v["use"]["client"]["user_agent"],
        "claude-code/1.2.3 mcp-server-vault/0.4.1"
    );
    assert_eq!(v["use"]["client"]["mcp_server"], "mcp-server-vault");
    assert_eq!(
        v["use"]["outcome"]["error_code"],
        "permission denied; invalid ciphertext"
    );

    let v = get("vault_help_without_request_id");
    assert_eq!(v["use"]["operation"]["name"], "help");
    assert_eq!(v["use"]["operation"]["read_only"], true);

    let v = get("kmip_get_permission_denied");
    assert_eq!(
        v["use"]["operation"],
        json!({ "service": "kmip", "name": "Get", "read_only": true })
    );
    assert_eq!(
        v["use"]["credential"]["id"],
        "kmip-client-cert:602214076022140760221407602214076"
    );
    assert_eq!(v["use"]["resources"], json!(["pX2wKq9TzR4mN7vB1cE5"]));
    assert_eq!(
        v["use"]["outcome"],
        json!({ "success": false, "error_code": "Permission Denied" })
    );
    assert_eq!(v["use"]["client"]["source_ip"], "203.0.113.7");
    assert!(v["half"]["response"].is_string());
    let v = get("kmip_create_request");
    assert_eq!(v["use"]["operation"]["name"], "Create");
    assert_eq!(v["use"]["client"]["source_ip"], "2001:db8::7");
    assert!(v["half"]["request"].is_string());
}

/// Raw token values (devices with `log_raw = true`) never reach the output; they
/// become fingerprints. Response data (secret values) is never read.
#[test]
fn raw_tokens_and_secret_values_never_reach_the_output() {
    let raw = [
        "hvb.AAAAAQKfakeBatchTokenValueForLineageTestsOnly0123456789",
        "hvs.CAESIFakeRootishTokenForLineageTests0123456789abcdef",
        "hvs.CAESIFakeLeakedAgentTokenForLineageTests987654",
        "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY",
    ];
    let mut seen = 0;
    for name in golden_names() {
        let input =
            std::fs::read_to_string(golden_dir().join(format!("{name}.input.json"))).unwrap();
        let out = normalize(&name).to_string();
        for r in raw {
            if input.contains(r) {
                seen += 1;
                assert!(!out.contains(r), "{name}: a raw value leaked");
                assert!(!out.contains(&r[..16]), "{name}: a raw prefix leaked");
            }
        }
    }
    assert!(seen >= 4, "the log_raw fixtures should carry raw values");
    let v = normalize("vault_log_raw_batch_token_use");
    let id = v["use"]["credential"]["id"].as_str().unwrap();
    assert!(id.starts_with("sha256:"), "{id}");
    assert_eq!(
        id,
        lineage_core::secret::fingerprint(
            "hvb.AAAAAQKfakeBatchTokenValueForLineageTestsOnly0123456789"
        )
    );
    let v = normalize("vault_log_raw_revoke_token");
    assert!(v["facts"][0]["kind"]["credential"]["id"]
        .as_str()
        .unwrap()
        .starts_with("sha256:"));
    // A raw accessor is an identifier, not a secret: kept as logged.
    assert_eq!(v["use"]["credential"]["id"], "Q7wFakeAccessorValue0123456");
}

/// The whole real session: every entry normalizes, halves join, and the lineage facts
/// describe the session (three token-store issuances with parents, a login, three revocations).
#[test]
fn openbao_session_log() {
    let path = vault_dir().join("openbao_session.log");
    let bytes = std::fs::read(&path).unwrap();
    let mut records = Vec::new();
    let mut dead = Vec::new();
    let counts = parse_bytes(
        &VaultParser,
        &bytes,
        "openbao_session.log",
        ParseLimits::default(),
        |r| match r {
            Ok(n) => records.push(n),
            Err(d) => dead.push(d.reason),
        },
    );
    assert_eq!(counts.read, 49);
    assert_eq!(counts.read, counts.normalized + counts.dead_lettered);
    assert!(dead.is_empty(), "{dead:?}");
    let joined = join_request_response(&mut records);
    // 23 calls with a request id logged twice; the two id-less setup entries stay apart.
    assert_eq!(joined, 23);
    assert_eq!(records.len(), 49 - 23);
    let facts: Vec<_> = records.iter().flat_map(|r| r.facts.iter()).collect();
    let issued: Vec<_> = facts
        .iter()
        .filter_map(|f| match &f.kind {
            FactKind::CredentialIssued {
                parent,
                child,
                issued_to,
                ..
            } => Some((
                parent.as_ref().map(|p| p.id.to_string()),
                child.id.to_string(),
                issued_to.clone(),
            )),
            _ => None,
        })
        .collect();
    let revoked = facts
        .iter()
        .filter(|f| matches!(&f.kind, FactKind::CredentialStatusChanged { status, .. } if status == "Revoked"))
        .count();
    assert_eq!(
        revoked, 4,
        "revoke-self (dev root), revoke-accessor, revoke-self, revoke"
    );
    let to = |name: &str| {
        issued
            .iter()
            .filter(|i| i.2.as_deref() == Some(name))
            .count()
    };
    assert_eq!(to("token-agent-claude"), 1);
    assert_eq!(to("token-subtask"), 1);
    assert_eq!(to("userpass-alice"), 1);
    let login = issued
        .iter()
        .find(|i| i.2.as_deref() == Some("userpass-alice"))
        .unwrap();
    assert!(login.0.is_none(), "a login has no parent credential");
    let agent = issued
        .iter()
        .find(|i| i.2.as_deref() == Some("token-agent-claude"))
        .unwrap();
    let child = issued
        .iter()
        .find(|i| i.2.as_deref() == Some("token-subtask"))
        .unwrap();
    assert_eq!(
        child.0.as_deref(),
        Some(agent.1.as_str()),
        "the child's parent is the agent's token"
    );
}

#[test]
fn malformed_entries_are_rejected_with_reasons() {
    let p = || Provenance::file("t", 1);
    let parse = |s: &str| VaultParser.parse_record(s.as_bytes(), p());
    assert!(matches!(parse("[1,2]"), Err(ParseError::NotARecord(_))));
    assert!(matches!(parse("\"x\""), Err(ParseError::NotARecord(_))));
    assert!(matches!(
        parse("{\"type\":"),
        Err(ParseError::InvalidJson(_))
    ));
    assert_eq!(
        parse(r#"{"time":"2025-01-01T00:00:00Z","request":{"id":"a","operation":"read"}}"#),
        Err(ParseError::MissingField("type"))
    );
    assert_eq!(
        parse(r#"{"type":"request","request":{"id":"a","operation":"read"}}"#),
        Err(ParseError::MissingField("time"))
    );
    assert!(matches!(
        parse(r#"{"type":"request","time":"yesterday","request":{"id":"a","operation":"read"}}"#),
        Err(ParseError::InvalidField("time", _))
    ));
    assert_eq!(
        parse(r#"{"type":"request","time":"2025-01-01T00:00:00Z"}"#),
        Err(ParseError::MissingField("request"))
    );
    assert!(matches!(
        parse(r#"{"type":"request","time":"2025-01-01T00:00:00Z","request":7}"#),
        Err(ParseError::InvalidField("request", _))
    ));
    assert_eq!(
        parse(r#"{"type":"request","time":"2025-01-01T00:00:00Z","request":{"id":"a"}}"#),
        Err(ParseError::MissingField("request.operation"))
    );
    assert!(matches!(
        parse(
            r#"{"type":"audit","time":"2025-01-01T00:00:00Z","request":{"id":"a","operation":"read"}}"#
        ),
        Err(ParseError::InvalidField("type", _))
    ));
    assert_eq!(
        parse(r#"{"type":"kmip-request","time":"2025-01-01T00:00:00Z","request":{"data":{}}}"#),
        Err(ParseError::MissingField("request.data.kmip_request"))
    );
    // Lenient about fields read opportunistically.
    let n = parse(
        r#"{"type":"response","time":"2025-01-01T00:00:00Z","auth":[1],"error":5,
            "request":{"id":"a","operation":"read","path":true,"namespace":"root","data":"x","headers":{"user-agent":"curl/8"}},
            "response":{"auth":"nope"}}"#,
    )
    .unwrap();
    assert!(n.use_.credential.is_none());
    assert!(n.use_.resources.is_empty());
    assert_eq!(n.use_.client.user_agent.as_deref(), Some("curl/8"));
}
