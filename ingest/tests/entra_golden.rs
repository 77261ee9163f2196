//! Golden tests for the Entra parser: records written for this project in both shapes
//! (Microsoft Graph objects and Azure Monitor diagnostic records) and the exact
//! normalized form the parser must produce for each.
//!
//! Inputs are `testdata/entra/golden/<name>.input.json`, expectations
//! `<name>.expected.json` (pretty JSON of `{"use": CredentialUse, "facts": [...]}`).
//! Set `UPDATE_GOLDEN=1` to rewrite the expected files from the current parser, then
//! review the diff by eye before keeping it.

use std::path::{Path, PathBuf};

use lineage_core::Provenance;
use lineage_ingest::{EntraParser, SourceParser};
use serde_json::{json, Value};

fn golden_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../testdata/entra/golden")
}

fn normalize(name: &str) -> Value {
    let input = golden_dir().join(format!("{name}.input.json"));
    let bytes = std::fs::read(&input).unwrap_or_else(|e| panic!("{}: {e}", input.display()));
    let n = EntraParser
        .parse_record(&bytes, Provenance::file(format!("{name}.input.json"), 1))
        .unwrap_or_else(|e| panic!("{name}: the parser rejected the record: {e}"));
    json!({ "use": n.use_, "facts": n.facts })
}

#[test]
fn golden_records_normalize_exactly_as_expected() {
    lineage_test_support::golden::check(&golden_dir(), 8, normalize);
}

const TENANT: &str = "5f1c3a2e-8d4b-4c7a-9e21-6b0d9f3a7c15";
const DEPLOY_BOT_APP: &str = "3b9f6d21-74c8-4e0a-b1d5-92a6c7e4f018";
const DEPLOY_BOT_SP: &str = "c2d84f7a-0e19-4b63-a8f5-71e3d9b2c604";
const NEW_SECRET: &str = "e4a7c2d9-5b18-4f3e-9c60-2d8b1a7f4e35";

/// Spot checks of the fields the goldens exist for, so a careless `UPDATE_GOLDEN=1`
/// cannot bless a regression in them.
#[test]
fn sign_in_key_fields() {
    let v = normalize("sp_signin_client_secret_graph");
    let u = &v["use"];
    assert_eq!(
        u["operation"],
        json!({"service": "entra", "name": "ServicePrincipalSignIn"})
    );
    assert_eq!(
        u["credential"],
        json!({"kind": "entra-client-secret", "id": NEW_SECRET, "issuer": TENANT})
    );
    assert_eq!(u["principal"]["kind"], "service-principal");
    assert_eq!(u["principal"]["name"], DEPLOY_BOT_APP);
    assert_eq!(u["principal"]["id"], DEPLOY_BOT_SP);
    assert_eq!(u["principal"]["arn"], "deploy-bot");
    assert_eq!(u["client"]["mcp_server"], "mcp-server-azure");
    assert_eq!(
        u["resources"],
        json!(["00000003-0000-0000-c000-000000000000"])
    );
    assert_eq!(u["region"], "NL");
    assert_eq!(u["outcome"], json!({"success": true}));
    assert_eq!(v["facts"], json!([]));

    let v = normalize("sp_signin_expired_secret_diagnostic");
    let u = &v["use"];
    assert_eq!(u["event_id"], "61f0c8b2-d93a-4e57-8c1b-a4e27d6f3b00");
    assert_eq!(
        u["outcome"],
        json!({"success": false, "error_code": "7000222"})
    );
    assert!(
        u.get("credential").is_none(),
        "no key id in the record: {u}"
    );
    assert_eq!(u["principal"]["name"], DEPLOY_BOT_APP);
    assert_eq!(u["principal"]["account"], TENANT);
    assert_eq!(
        u["resources"],
        json!(["797f4846-ba00-4fd7-ba43-dac1f8f63013"])
    );

    let v = normalize("managed_identity_signin_diagnostic");
    let u = &v["use"];
    assert_eq!(u["operation"]["name"], "ManagedIdentitySignIn");
    assert_eq!(u["credential"]["kind"], "entra-managed-identity");
    assert_eq!(
        u["credential"]["id"],
        "f0b9a3d6-18c2-4e57-a4d1-6e2c8b7f9035"
    );
    assert_eq!(
        u["principal"]["name"],
        "8e3c1b57-2fa4-4d09-b6e8-c07d5a914f32"
    );
    // Empty location object: the envelope's region is used.
    assert_eq!(u["region"], "westeurope");

    let v = normalize("user_interactive_signin_diagnostic");
    let u = &v["use"];
    assert_eq!(u["operation"]["name"], "SignIn");
    assert!(u.get("credential").is_none());
    assert_eq!(u["principal"]["kind"], "user");
    assert_eq!(
        u["principal"]["name"],
        "dana.okafor@contoso-labs.onmicrosoft.com"
    );
    assert_eq!(u["principal"]["id"], "6a2e9f14-3c7b-4d58-a0e6-9b1f4d8c2e73");
    assert_eq!(u["client"]["client_app"], "Microsoft Azure CLI");
    assert_eq!(u["session"]["mfa_authenticated"], true);
    assert_eq!(u["region"], "GB");

    let v = normalize("user_noninteractive_signin_graph");
    let u = &v["use"];
    assert_eq!(u["operation"]["name"], "NonInteractiveSignIn");
    assert_eq!(
        u["outcome"],
        json!({"success": false, "error_code": "50076"})
    );
    assert!(u["session"].get("mfa_authenticated").is_none());

    let v = normalize("sp_signin_federated_credential_graph");
    assert_eq!(
        v["use"]["credential"],
        json!({"kind": "entra-federated-credential", "id": "b0c7e3a5-9d14-4f62-8e3b-a1f5d2c97e08"})
    );

    // Property names re-cased by the export are read all the same.
    let v = normalize("sp_signin_certificate_pascalcase_diagnostic");
    let u = &v["use"];
    assert_eq!(u["event_id"], "93f4a6c0-2e58-4b71-b8d3-c5e1f7a20900");
    assert_eq!(u["credential"]["kind"], "entra-certificate");
    assert_eq!(
        u["credential"]["id"],
        "0a9e5c3b-71d4-4f86-b2e9-c4a7d1f0e362"
    );
    assert_eq!(
        u["principal"]["name"],
        "2c6d8f41-b39e-4a07-8d15-e6f0a2c94b73"
    );
    assert_eq!(u["client"]["source_ip"], "203.0.113.140");
    assert_eq!(u["region"], "DE");
}

#[test]
fn audit_key_fields() {
    let v = normalize("audit_add_sp_credentials_diagnostic");
    let u = &v["use"];
    assert_eq!(
        u["operation"],
        json!({"service": "entra-directory", "name": "Add service principal credentials", "read_only": false})
    );
    assert_eq!(u["principal"]["kind"], "user");
    assert_eq!(
        u["principal"]["name"],
        "dana.okafor@contoso-labs.onmicrosoft.com"
    );
    assert_eq!(u["resources"], json!([DEPLOY_BOT_SP]));
    let facts = v["facts"].as_array().unwrap();
    assert_eq!(facts.len(), 1, "only the new key: {facts:?}");
    let f = &facts[0]["kind"];
    assert_eq!(f["fact"], "credential-issued");
    assert_eq!(
        f["child"],
        json!({"kind": "entra-client-secret", "id": NEW_SECRET, "issuer": TENANT})
    );
    assert_eq!(f["issued_to"], DEPLOY_BOT_APP);
    assert_eq!(f["method"], "other");
    assert!(f.get("parent").is_none());
    assert_eq!(
        f["issued_by"]["name"],
        "dana.okafor@contoso-labs.onmicrosoft.com"
    );

    let v = normalize("audit_add_owner_to_application_graph");
    assert_eq!(
        v["facts"][0]["kind"],
        json!({"fact": "owner-assigned", "subject": DEPLOY_BOT_APP, "owner": "dana.okafor@contoso-labs.onmicrosoft.com"})
    );
    assert_eq!(v["facts"].as_array().unwrap().len(), 1);

    for name in [
        "audit_update_user_account_disabled_graph",
        "audit_disable_account_diagnostic",
        "audit_delete_user_graph",
    ] {
        let v = normalize(name);
        let facts = v["facts"].as_array().unwrap();
        assert_eq!(facts.len(), 1, "{name}: {facts:?}");
        assert_eq!(facts[0]["kind"]["fact"], "owner-departed", "{name}");
    }
    assert_eq!(
        normalize("audit_update_user_account_disabled_graph")["facts"][0]["kind"]["human"],
        "dana.okafor@contoso-labs.onmicrosoft.com"
    );
    // The deleted user's UPN comes back without the object-id prefix Entra adds.
    assert_eq!(
        normalize("audit_delete_user_graph")["facts"][0]["kind"]["human"],
        "marek.nowak@contoso-labs.onmicrosoft.com"
    );
    let v = normalize("audit_disable_account_diagnostic");
    assert_eq!(v["use"]["principal"]["kind"], "service-principal");
    assert_eq!(
        v["use"]["principal"]["name"],
        "5d9a3e71-c0b8-4f26-9e14-a7b2d6c0f893"
    );
    assert_eq!(v["use"]["operation"]["name"], "Disable account");

    let v = normalize("audit_remove_app_secret_graph");
    // The trailing space Entra writes in this activity name is trimmed.
    assert_eq!(
        v["use"]["operation"]["name"],
        "Update application – Certificates and secrets management"
    );
    assert_eq!(
        v["facts"][0]["kind"],
        json!({
            "fact": "credential-status-changed",
            "credential": {"kind": "entra-client-secret", "id": "9b3f0e6a-2c7d-4185-a4f9-e1d62b8c5a70"},
            "status": "Deleted",
            "changed_by": v["facts"][0]["kind"]["changed_by"].clone(),
        })
    );
    assert_eq!(v["facts"].as_array().unwrap().len(), 1);

    let v = normalize("audit_add_federated_credential_graph");
    let f = &v["facts"][0]["kind"];
    assert_eq!(f["fact"], "credential-issued");
    assert_eq!(f["child"]["kind"], "entra-federated-credential");
    assert_eq!(f["child"]["id"], "b0c7e3a5-9d14-4f62-8e3b-a1f5d2c97e08");
    assert_eq!(f["issued_to"], "7f2e4b19-a6c3-4d58-9e01-b5d8c3a7f624");

    let v = normalize("audit_add_sp_credentials_failed_graph");
    assert_eq!(
        v["use"]["outcome"],
        json!({"success": false, "error_code": "Microsoft.Online.Directory.Services.AuthorizationException"})
    );
    assert_eq!(v["facts"], json!([]));
}
