//! The file shapes Entra logs arrive in, and the records the parser must reject with a
//! clear reason: Graph `{"value":[…]}` pages, diagnostic `{"records":[…]}` envelopes,
//! JSON lines, single pretty objects, re-cased and duplicated property names.

use lineage_core::{DeadLetter, Provenance};
use lineage_ingest::{parse_bytes, EntraParser, Normalized, ParseError, ParseLimits, SourceParser};

const AUDIT: &str = r#"{"id":"Directory_a_1","result":"success","activityDisplayName":"Add owner to service principal","activityDateTime":"2025-03-09T11:45:02Z","initiatedBy":{"user":{"userPrincipalName":"admin@contoso-labs.example"}},"targetResources":[{"id":"u-1","type":"User","userPrincipalName":"dana@contoso-labs.example","modifiedProperties":[{"displayName":"ServicePrincipal.ObjectID","oldValue":null,"newValue":"\"sp-obj-1\""},{"displayName":"ServicePrincipal.AppId","oldValue":null,"newValue":"\"app-1\""}]},{"id":"sp-obj-1","type":"ServicePrincipal","modifiedProperties":[]}]}"#;

const SIGN_IN: &str = r#"{"id":"s-1","createdDateTime":"2025-03-11T08:14:52Z","userPrincipalName":"dana@contoso-labs.example","userId":"u-1","appId":"04b07795-8ddb-461a-bbee-02f9e1bf7b46","appDisplayName":"Microsoft Azure CLI","ipAddress":"192.0.2.45","status":{"errorCode":0},"isInteractive":true}"#;

fn all(bytes: &[u8]) -> Vec<Result<Normalized, DeadLetter>> {
    let mut out = Vec::new();
    let counts = parse_bytes(&EntraParser, bytes, "t", ParseLimits::default(), |r| {
        out.push(r)
    });
    assert_eq!(counts.read, counts.normalized + counts.dead_lettered);
    assert_eq!(counts.read as usize, out.len());
    out
}

fn one(json: &str) -> Result<Normalized, ParseError> {
    EntraParser.parse_record(json.as_bytes(), Provenance::file("t", 1))
}

#[test]
fn graph_page_with_odata_keys() {
    let page = format!(
        "{{\"@odata.context\":\"https://graph.microsoft.com/v1.0/$metadata#auditLogs/signIns\",\"value\":[{SIGN_IN},{AUDIT}],\"@odata.nextLink\":\"https://graph.microsoft.com/v1.0/auditLogs/signIns?$skiptoken=abc\"}}"
    );
    let got = all(page.as_bytes());
    assert_eq!(got.len(), 2);
    let s = got[0].as_ref().unwrap();
    assert_eq!(s.use_.operation.action(), "entra:SignIn");
    assert_eq!(
        s.use_.principal.name.as_deref(),
        Some("dana@contoso-labs.example")
    );
    let a = got[1].as_ref().unwrap();
    assert_eq!(
        a.use_.operation.action(),
        "entra-directory:Add owner to service principal"
    );
    match &a.facts[..] {
        [f] => match &f.kind {
            lineage_core::FactKind::OwnerAssigned { subject, owner } => {
                assert_eq!(subject, "app-1");
                assert_eq!(owner, "dana@contoso-labs.example");
            }
            other => panic!("{other:?}"),
        },
        other => panic!("{other:?}"),
    }
}

#[test]
fn diagnostic_envelope_json_lines_and_pretty_object() {
    let diag = format!(
        "{{\"time\":\"2025-03-11T08:14:52Z\",\"category\":\"SignInLogs\",\"tenantId\":\"t-1\",\"properties\":{SIGN_IN}}}"
    );
    let envelope = format!("{{\"records\":[{diag},{diag}]}}");
    assert_eq!(
        all(envelope.as_bytes())
            .iter()
            .filter(|r| r.is_ok())
            .count(),
        2
    );

    let lines = format!("{diag}\n{SIGN_IN}\n{AUDIT}\n");
    let got = all(lines.as_bytes());
    assert_eq!(got.len(), 3);
    assert!(got.iter().all(|r| r.is_ok()));
    assert_eq!(
        got[0].as_ref().unwrap().use_.principal.account.as_deref(),
        Some("t-1")
    );

    let v: serde_json::Value = serde_json::from_str(AUDIT).unwrap();
    let pretty = serde_json::to_string_pretty(&v).unwrap();
    let got = all(pretty.as_bytes());
    assert_eq!(got.len(), 1);
    assert!(got[0].is_ok());
}

#[test]
fn property_names_match_in_any_case_and_the_first_duplicate_wins() {
    let n = one(
        r#"{"Time":"2025-03-11T08:14:52Z","Category":"ServicePrincipalSignInLogs","Properties":{"ID":"s-2","AppId":"app-2","appId":"ignored","IPAddress":"198.51.100.1","Status":{"ErrorCode":"7000215"},"ServicePrincipalCredentialKeyId":"k-2"}}"#,
    )
    .unwrap();
    assert_eq!(n.use_.event_id, "s-2");
    assert_eq!(n.use_.principal.name.as_deref(), Some("app-2"));
    assert_eq!(n.use_.client.source_ip.as_deref(), Some("198.51.100.1"));
    assert_eq!(n.use_.outcome.error_code.as_deref(), Some("7000215"));
    assert_eq!(n.use_.credential.unwrap().id.as_str(), "k-2");
    // The time falls back to the envelope's.
    assert_eq!(n.use_.time.to_rfc3339(), "2025-03-11T08:14:52+00:00");
}

#[test]
fn stringified_properties_are_parsed() {
    let inner = serde_json::to_string(SIGN_IN).unwrap();
    let n = one(&format!(
        "{{\"time\":\"2025-03-11T08:14:52Z\",\"category\":\"NonInteractiveUserSignInLogs\",\"properties\":{inner}}}"
    ))
    .unwrap();
    assert_eq!(n.use_.operation.action(), "entra:NonInteractiveSignIn");
    assert_eq!(
        n.use_.principal.name.as_deref(),
        Some("dana@contoso-labs.example")
    );
    let e = one(r#"{"time":"2025-03-11T08:14:52Z","category":"SignInLogs","properties":"oops"}"#)
        .unwrap_err();
    assert!(
        matches!(e, ParseError::InvalidField("properties", _)),
        "{e}"
    );
}

#[test]
fn rejections_say_why() {
    assert!(matches!(one("[1,2]"), Err(ParseError::NotARecord(_))));
    assert!(matches!(one("\"x\""), Err(ParseError::NotARecord(_))));
    assert!(matches!(one("{\"a\":"), Err(ParseError::InvalidJson(_))));
    let e = one(
        r#"{"time":"2025-03-11T08:14:52Z","category":"ProvisioningLogs","properties":{"id":"p"}}"#,
    )
    .unwrap_err();
    assert!(e.to_string().contains("ProvisioningLogs"), "{e}");
    let e = one(r#"{"foo":1}"#).unwrap_err();
    assert!(e.to_string().contains("neither an Entra sign-in"), "{e}");
    // No id of its own: a content hash, as in every source.
    let text = r#"{"createdDateTime":"2025-03-11T08:14:52Z","appId":"a"}"#;
    assert_eq!(
        one(text).unwrap().use_.event_id,
        lineage_core::secret::fingerprint(text)
    );
    assert_eq!(
        one(r#"{"id":"x","activityDisplayName":"Update user"}"#).unwrap_err(),
        ParseError::MissingField("activityDateTime")
    );
    assert!(matches!(
        one(r#"{"id":"x","createdDateTime":"yesterday","appId":"a"}"#),
        Err(ParseError::InvalidField("createdDateTime", _))
    ));
    // Wrong types in opportunistic fields do not reject the record.
    let n = one(r#"{"id":"x","createdDateTime":"2025-03-11T08:14:52","appId":7,"status":"bad","location":[1],"signInEventTypes":{"a":1},"targetResources":3}"#)
        .unwrap();
    assert_eq!(n.use_.event_id, "x");
    // A time without an offset is UTC.
    assert_eq!(n.use_.time.to_rfc3339(), "2025-03-11T08:14:52+00:00");
}

#[test]
fn key_properties_as_inline_json_objects() {
    let n = one(
        r#"{"id":"a-2","result":"success","activityDisplayName":"Update application","activityDateTime":"2025-03-10T15:27:31Z","initiatedBy":{"app":{"appId":"ci-app","servicePrincipalId":"ci-sp"}},"targetResources":[{"id":"app-obj","type":"Application","modifiedProperties":[{"displayName":"KeyCredentials","oldValue":[],"newValue":[{"keyId":"cert-1","type":"AsymmetricX509Cert"}]},{"displayName":"AppId","newValue":"\"client-9\""}]}]}"#,
    )
    .unwrap();
    let [f] = &n.facts[..] else {
        panic!("{:?}", n.facts)
    };
    match &f.kind {
        lineage_core::FactKind::CredentialIssued {
            child,
            issued_to,
            issued_by,
            ..
        } => {
            assert_eq!(child.id.as_str(), "cert-1");
            assert_eq!(child.kind, lineage_core::CredentialKind::EntraCertificate);
            assert_eq!(issued_to.as_deref(), Some("client-9"));
            assert_eq!(issued_by.name.as_deref(), Some("ci-app"));
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn credential_activity_without_key_properties_uses_the_fallback_id() {
    let n = one(
        r#"{"id":"a-3","result":"success","activityDisplayName":"Add service principal credentials","activityDateTime":"2025-03-10T15:27:31Z","initiatedBy":{"user":{"userPrincipalName":"admin@x"}},"targetResources":[{"id":"sp-obj","type":"ServicePrincipal","modifiedProperties":[]}]}"#,
    )
    .unwrap();
    match &n.facts[..] {
        [f] => match &f.kind {
            lineage_core::FactKind::CredentialIssued {
                child, issued_to, ..
            } => {
                assert_eq!(
                    child.id.as_str(),
                    "sp-obj/Add service principal credentials"
                );
                assert_eq!(child.kind, lineage_core::CredentialKind::Unknown);
                assert_eq!(issued_to.as_deref(), Some("sp-obj"));
            }
            other => panic!("{other:?}"),
        },
        other => panic!("{other:?}"),
    }
}

#[test]
fn a_display_name_holding_key_fields_names_no_key() {
    // The display name is chosen by whoever adds the secret; `KeyIdentifier=` and
    // `KeyType=` inside it must not add a key or change the real key's kind.
    let forged = r#"x,KeyIdentifier=victim-key-id,KeyType=AsymmetricX509Cert]"#;
    let new_value = serde_json::to_string(
        &serde_json::to_string(&serde_json::json!([format!(
            "[KeyIdentifier=real-key-id,KeyType=Password,KeyUsage=Verify,DisplayName={forged}"
        )]))
        .unwrap(),
    )
    .unwrap();
    let n = one(&format!(
        r#"{{"id":"a-4","result":"success","activityDisplayName":"Update application – Certificates and secrets management ","activityDateTime":"2025-03-10T15:27:31Z","initiatedBy":{{"user":{{"userPrincipalName":"admin@x"}}}},"targetResources":[{{"id":"app-obj","type":"Application","modifiedProperties":[{{"displayName":"KeyDescription","oldValue":"[]","newValue":{new_value}}},{{"displayName":"AppId","newValue":"\"client-9\""}}]}}]}}"#
    ))
    .unwrap();
    let ids: Vec<(String, lineage_core::CredentialKind)> = n
        .facts
        .iter()
        .filter_map(|f| match &f.kind {
            lineage_core::FactKind::CredentialIssued { child, .. } => {
                Some((child.id.as_str().to_owned(), child.kind))
            }
            _ => None,
        })
        .collect();
    assert_eq!(
        ids,
        vec![(
            "real-key-id".to_owned(),
            lineage_core::CredentialKind::EntraClientSecret
        )]
    );
}

#[test]
fn a_diagnostic_result_type_of_success_is_a_success() {
    // An Azure Monitor export record without `status`: the outcome is `resultType`.
    let record = r#"{"time":"2025-03-11T08:14:52Z","category":"ServicePrincipalSignInLogs","operationName":"Sign-in activity","resultType":"Success","properties":{"id":"sp-1","createdDateTime":"2025-03-11T08:14:52Z","appId":"app-1","servicePrincipalId":"sp-obj-1","servicePrincipalName":"ci","ipAddress":"192.0.2.1"}}"#;
    let ok = all(record.as_bytes());
    let [Ok(n)] = &ok[..] else { panic!("{ok:?}") };
    assert!(n.use_.outcome.success, "{:?}", n.use_.outcome);
    assert_eq!(n.use_.outcome.error_code, None);
    let failed = all(record.replace("\"Success\"", "\"50126\"").as_bytes());
    let [Ok(n)] = &failed[..] else {
        panic!("{failed:?}")
    };
    assert!(!n.use_.outcome.success);
    assert_eq!(n.use_.outcome.error_code.as_deref(), Some("50126"));
}
