//! Golden tests of the GitHub audit-log parser: records from the Microsoft Sentinel
//! sample (MIT) and our own fixtures, with the exact normalized form each must produce.
//!
//! Inputs are `testdata/github/golden/<name>.input.json`, expectations
//! `<name>.expected.json` (pretty JSON of `{"use": CredentialUse, "facts": [...]}`).
//! Set `UPDATE_GOLDEN=1` to rewrite the expected files from the current parser, then
//! review the diff by eye before keeping it.

use std::path::{Path, PathBuf};

use lineage_core::Provenance;
use lineage_ingest::{parse_bytes, GitHubParser, Normalized, ParseLimits, SourceParser};
use serde_json::{json, Value};

fn testdata() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../testdata/github")
}

fn golden_dir() -> PathBuf {
    testdata().join("golden")
}

/// Every `<name>` with a `<name>.input.json` in the golden directory, sorted.
fn golden_names() -> Vec<String> {
    lineage_test_support::golden::names(&golden_dir())
}

fn input(name: &str) -> Vec<u8> {
    let path = golden_dir().join(format!("{name}.input.json"));
    std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn normalize(name: &str) -> Value {
    let n = GitHubParser
        .parse_record(
            input(name).trim_ascii(),
            Provenance::file(format!("{name}.input.json"), 1),
        )
        .unwrap_or_else(|e| panic!("{name}: the parser rejected the record: {e}"));
    json!({ "use": n.use_, "facts": n.facts })
}

#[test]
fn golden_records_normalize_exactly_as_expected() {
    lineage_test_support::golden::check(&golden_dir(), 10, normalize);
}

/// Spot checks of the fields the goldens exist for, so a careless `UPDATE_GOLDEN=1`
/// cannot bless a regression in them.
#[test]
fn golden_key_fields() {
    let get = normalize;

    let v = get("rest_fine_grained_pat_api_request");
    let u = &v["use"];
    assert_eq!(u["event_id"], "q3R7vN2kLm8XpA1sDf0GhQ");
    assert_eq!(u["time"], "2025-06-02T14:13:11.482Z");
    assert_eq!(u["credential"]["kind"], "github-fine-grained-pat");
    assert_eq!(u["credential"]["id"], "187654321");
    assert_eq!(u["credential"]["issuer"], "nordwind-eng");
    assert_eq!(u["principal"]["kind"], "user");
    assert_eq!(u["principal"]["name"], "mara-lindqvist");
    assert_eq!(u["principal"]["id"], "48213377");
    assert_eq!(u["operation"]["service"], "github");
    assert_eq!(u["operation"]["name"], "api.request");
    assert_eq!(u["operation"]["read_only"], true);
    assert_eq!(
        u["resources"],
        json!([
            "nordwind-eng/billing-api",
            "GET /repos/{owner}/{repo}/contents/{path}"
        ])
    );
    assert_eq!(u["client"]["source_ip"], "203.0.113.41");
    assert_eq!(u["client"]["mcp_server"], "github-mcp-server");
    assert_eq!(u["outcome"], json!({ "success": true }));
    assert_eq!(u["region"], "SE");
    assert_eq!(v["facts"], json!([]));

    let v = get("rest_api_request_404");
    assert_eq!(
        v["use"]["outcome"],
        json!({ "success": false, "error_code": "404" })
    );
    assert_eq!(v["use"]["operation"]["read_only"], false);
    assert_eq!(
        v["use"]["resources"][1],
        "DELETE /repos/{owner}/{repo}/git/refs/{ref}"
    );

    let v = get("streaming_classic_pat_git_clone_iso_time");
    assert_eq!(v["use"]["time"], "2025-06-02T14:05:12.907Z");
    assert_eq!(v["use"]["credential"]["kind"], "github-classic-pat");
    assert_eq!(v["use"]["credential"]["id"], "165502871");
    assert_eq!(v["use"]["operation"]["name"], "git.clone");
    assert_eq!(v["use"]["operation"]["read_only"], true);
    assert_eq!(v["use"]["resources"], json!(["nordwind-eng/infra-live"]));

    let v = get("streaming_app_server_to_server_git_push");
    assert_eq!(v["use"]["credential"]["kind"], "github-app-token");
    assert_eq!(
        v["use"]["credential"]["id"],
        "kP0oI9uY8tR7eW6qA5sD4fG3hJ2kL1zX0cV9bN8mQ7w="
    );
    assert_eq!(v["use"]["principal"]["kind"], "service-principal");
    assert_eq!(v["use"]["principal"]["name"], "nordwind-deployer[bot]");

    let v = get("pat_access_granted");
    assert!(v["use"].get("credential").is_none(), "a web-session grant");
    let f = &v["facts"][0]["kind"];
    assert_eq!(v["facts"].as_array().unwrap().len(), 1);
    assert_eq!(f["fact"], "credential-issued");
    assert_eq!(f["method"], "other");
    assert!(f.get("parent").is_none());
    assert_eq!(f["child"]["kind"], "github-fine-grained-pat");
    assert_eq!(f["child"]["id"], "187654321");
    assert_eq!(f["issued_by"]["name"], "ines-org-admin");
    assert_eq!(f["issued_to"], "mara-lindqvist");

    let v = get("org_remove_member");
    assert_eq!(
        v["facts"][0]["kind"],
        json!({ "fact": "owner-departed", "human": "tomasz-k" })
    );

    let v = get("legacy_record_without_document_id");
    let id = v["use"]["event_id"].as_str().unwrap();
    assert!(id.starts_with("sha256:") && id.len() == 23, "{id}");
    assert_eq!(v["use"]["time"], "2021-01-25T21:57:02.014Z");

    let v = get("sentinel_pat_create_fine_grained");
    assert!(v["use"].get("credential").is_none());
    let f = &v["facts"][0]["kind"];
    assert_eq!(f["fact"], "credential-issued");
    assert_eq!(f["child"]["kind"], "github-fine-grained-pat");
    assert_eq!(
        f["child"]["id"],
        "KjZa/GOlvFtvgzAfpJVdPNhNKFc4Lxt2otCHw9fp3Po="
    );
    assert_eq!(f["child"]["issuer"], "x-sentinellabs");
    assert_eq!(f["issued_to"], "siteshjha11");

    let v = get("sentinel_pat_access_granted_without_token_id");
    assert_eq!(v["facts"], json!([]));

    let v = get("sentinel_oauth_access_create");
    assert_eq!(v["facts"][0]["kind"]["child"]["kind"], "unknown");
    assert!(v["use"].get("credential").is_none());

    let v = get("sentinel_integration_repositories_added");
    assert_eq!(v["use"]["resources"], json!(["siteshjha11/Azure-Sentinel"]));

    let v = get("sentinel_failed_login");
    assert_eq!(v["use"]["outcome"]["success"], false);
    assert_eq!(v["use"]["outcome"]["error_code"], "failed_login");

    let v = get("sentinel_forgot_password_no_actor");
    assert_eq!(v["use"]["principal"], json!({ "kind": "unknown" }));
}

fn parse_all(bytes: &[u8]) -> (lineage_ingest::ParseCounts, Vec<Normalized>, Vec<String>) {
    let mut ok = Vec::new();
    let mut dead = Vec::new();
    let counts = parse_bytes(
        &GitHubParser,
        bytes,
        "t",
        ParseLimits::default(),
        |r| match r {
            Ok(n) => ok.push(n),
            Err(d) => dead.push(d.reason),
        },
    );
    (counts, ok, dead)
}

/// The same records as a REST API page (a bare JSON array), as streamed JSON lines
/// and wrapped in `{"value": […]}` all normalize the same way.
#[test]
fn rest_array_and_json_lines_frame_the_same_records() {
    let names = golden_names();
    let records: Vec<Vec<u8>> = names
        .iter()
        .map(|n| input(n).trim_ascii().to_vec())
        .collect();
    let lines = records.join(&b"\n"[..]);
    let array = [b"[".as_slice(), &records.join(&b",\n"[..]), b"]"].concat();
    let wrapped = [b"{\"value\":".as_slice(), &array, b"}"].concat();
    let mut ids = Vec::new();
    for bytes in [&lines, &array, &wrapped] {
        let (counts, ok, dead) = parse_all(bytes);
        assert_eq!(counts.read, names.len() as u64, "{dead:?}");
        assert_eq!(counts.normalized, names.len() as u64, "{dead:?}");
        ids.push(
            ok.iter()
                .map(|n| n.use_.event_id.clone())
                .collect::<Vec<_>>(),
        );
    }
    assert_eq!(ids[0], ids[1]);
    assert_eq!(ids[0], ids[2]);
}

/// The whole Microsoft Sentinel sample: every record normalizes, and the token
/// lifecycle it holds becomes the expected facts.
#[test]
fn sentinel_sample_normalizes_completely() {
    let path = testdata().join("azure-sentinel/Github_sample_logs.json");
    let bytes = std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let (counts, ok, dead) = parse_all(&bytes);
    assert!(dead.is_empty(), "{dead:?}");
    assert_eq!(
        (counts.read, counts.normalized, counts.dead_lettered),
        (63, 63, 0)
    );
    let facts: Vec<Value> = ok
        .iter()
        .flat_map(|n| n.facts.iter())
        .map(|f| serde_json::to_value(f).unwrap())
        .collect();
    // 6 fine-grained PAT creations, 2 OAuth access creations, 1 regeneration, and
    // one `org.add_member` (a member added: reinstated if a log departure preceded).
    assert_eq!(facts.len(), 10, "{facts:#?}");
    let (issued, reinstated): (Vec<&Value>, Vec<&Value>) = facts
        .iter()
        .partition(|f| f["kind"]["fact"] == "credential-issued");
    assert!(issued
        .iter()
        .all(|f| f["kind"]["issued_to"] == "siteshjha11"));
    assert_eq!(reinstated.len(), 1, "{reinstated:#?}");
    assert_eq!(reinstated[0]["kind"]["fact"], "owner-reinstated");
    assert_eq!(reinstated[0]["kind"]["human"], "siteshjha11");
    let pats = facts
        .iter()
        .filter(|f| f["kind"]["child"]["kind"] == "github-fine-grained-pat")
        .count();
    assert_eq!(pats, 6);
    // Web sessions only: no use names a credential; every actor is a user.
    assert!(ok.iter().all(|n| n.use_.credential.is_none()));
    let users = ok
        .iter()
        .filter(|n| n.use_.principal.name.as_deref() == Some("siteshjha11"))
        .count();
    assert_eq!(users, 62, "one record (user.forgot_password) has no actor");
    let mut ids: Vec<_> = ok.iter().map(|n| n.use_.event_id.clone()).collect();
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), 63, "event ids are unique");
}
