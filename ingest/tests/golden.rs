//! Golden tests: real CloudTrail records (from the Invictus IR dataset) and the exact
//! normalized form the parser must produce for each.
//!
//! Inputs are `testdata/cloudtrail/golden/<name>.input.json`, expectations
//! `<name>.expected.json` (pretty JSON of `{"use": CredentialUse, "facts": [...]}`).
//! Set `UPDATE_GOLDEN=1` to rewrite the expected files from the current parser, then
//! review the diff by eye before keeping it.

use std::path::{Path, PathBuf};

use lineage_core::Provenance;
use lineage_ingest::{CloudTrailParser, SourceParser};
use serde_json::Value;

fn golden_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../testdata/cloudtrail/golden")
}

/// Every `<name>` with a `<name>.input.json` in the golden directory, sorted.
fn golden_names() -> Vec<String> {
    lineage_test_support::golden::names(&golden_dir())
}

fn normalize(name: &str) -> Value {
    let input = golden_dir().join(format!("{name}.input.json"));
    let bytes = std::fs::read(&input).unwrap_or_else(|e| panic!("{}: {e}", input.display()));
    let n = CloudTrailParser
        .parse_record(&bytes, Provenance::file(format!("{name}.input.json"), 1))
        .unwrap_or_else(|e| panic!("{name}: the parser rejected a real record: {e}"));
    serde_json::json!({ "use": n.use_, "facts": n.facts })
}

#[test]
fn golden_records_normalize_exactly_as_expected() {
    lineage_test_support::golden::check(&golden_dir(), 6, normalize);
}

/// Independent of the expected files: secret values in the inputs never reach the output.
#[test]
fn golden_outputs_hold_no_secret_values() {
    fn secrets(v: &Value, out: &mut Vec<String>) {
        match v {
            Value::Object(m) => {
                for (k, v) in m {
                    match (k.as_str(), v) {
                        ("secretAccessKey" | "sessionToken", Value::String(s)) => {
                            out.push(s.clone())
                        }
                        _ => secrets(v, out),
                    }
                }
            }
            Value::Array(a) => a.iter().for_each(|v| secrets(v, out)),
            _ => {}
        }
    }
    let mut checked = 0;
    for name in golden_names() {
        let input: Value = serde_json::from_slice(
            &std::fs::read(golden_dir().join(format!("{name}.input.json"))).unwrap(),
        )
        .unwrap();
        let mut found = Vec::new();
        secrets(&input, &mut found);
        let out = normalize(&name).to_string();
        for s in &found {
            checked += 1;
            assert!(!out.contains(s.as_str()), "{name}: a secret value leaked");
            assert!(
                !out.contains(&s[..s.len().min(24)]),
                "{name}: a secret prefix leaked"
            );
        }
        assert!(!out.contains("secretAccessKey") && !out.contains("sessionToken"));
    }
    assert!(
        checked >= 2,
        "the golden inputs should carry session tokens"
    );
}

/// Spot checks of the fields the goldens exist for, so a careless `UPDATE_GOLDEN=1`
/// cannot bless a regression in them.
#[test]
fn golden_key_fields() {
    let get = |name: &str| normalize(name);

    let v = get("iam_user_akia_get_secret_value");
    assert_eq!(v["use"]["credential"]["kind"], "aws-access-key");
    assert_eq!(v["use"]["credential"]["id"], "AKIATFQR7NSC8Q4X20BJ");
    assert_eq!(v["use"]["principal"]["kind"], "iam-user");
    assert_eq!(v["use"]["principal"]["name"], "bert-jan");
    assert_eq!(v["use"]["outcome"]["success"], true);
    assert_eq!(v["facts"], serde_json::json!([]));

    let v = get("assumed_role_asia_get_password_data");
    assert_eq!(v["use"]["credential"]["kind"], "aws-session-key");
    assert_eq!(v["use"]["principal"]["kind"], "assumed-role");
    assert_eq!(
        v["use"]["principal"]["name"],
        "stratus-red-team-ec2-get-password-data-role"
    );
    assert_eq!(
        v["use"]["session"]["issuer_arn"],
        "arn:aws:iam::123837392027:role/stratus-red-team-ec2-get-password-data-role"
    );
    assert_eq!(
        v["use"]["session"]["role_session_name"],
        "aws-go-sdk-1688990082523310002"
    );
    assert_eq!(v["use"]["session"]["mfa_authenticated"], false);
    assert_eq!(
        v["use"]["outcome"]["error_code"],
        "Client.UnauthorizedOperation"
    );

    let v = get("assume_role_by_iam_user");
    let fact = &v["facts"][0];
    assert_eq!(v["facts"].as_array().unwrap().len(), 1);
    assert_eq!(fact["kind"]["fact"], "credential-issued");
    assert_eq!(fact["kind"]["method"], "assume-role");
    assert_eq!(fact["kind"]["parent"]["id"], "AKIATFQR7NSC8Q4X20BJ");
    assert_eq!(fact["kind"]["child"]["id"], "ASIATFQR7NSC7E2ZIBM2");
    assert_eq!(fact["kind"]["child"]["kind"], "aws-session-key");

    let v = get("create_access_key");
    let fact = &v["facts"][0];
    assert_eq!(fact["kind"]["method"], "create-access-key");
    assert_eq!(fact["kind"]["child"]["kind"], "aws-access-key");
    assert_eq!(fact["kind"]["child"]["id"], "AKIATFQR7NSC3ZO6PKAZ");
    assert_eq!(
        fact["kind"]["issued_to"],
        "stratus-red-team-backdoor-u-user"
    );

    let v = get("aws_service_assume_role");
    assert_eq!(v["use"]["principal"]["kind"], "service");
    assert!(v["use"].get("credential").is_none());
    assert!(v["facts"][0]["kind"].get("parent").is_none());

    let v = get("service_linked_role_describe_instances");
    assert_eq!(v["use"]["principal"]["kind"], "service");

    let v = get("access_denied_assume_role");
    assert_eq!(v["use"]["outcome"]["success"], false);
    assert_eq!(v["use"]["outcome"]["error_code"], "AccessDenied");
    assert_eq!(v["facts"], serde_json::json!([]));

    let v = get("kms_decrypt_with_resources");
    assert_eq!(
        v["use"]["resources"],
        serde_json::json!([
            "arn:aws:kms:us-east-1:123837392027:key/dad21b23-9915-42bd-981b-2a9f3c8f20c8"
        ])
    );
}
