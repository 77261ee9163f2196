//! Property tests for the Entra parser: no input makes parsing panic or lose a record.
//!
//! For any bytes (raw, JSON-ish token soup, spliced into a `{"records":[…]}` or
//! `{"value":[…]}` envelope, or spliced into a valid record), `parse_bytes` must return
//! counts with `read == normalized + dead_lettered` and call `emit` exactly `read`
//! times, with `Ok` exactly `normalized` times.

use lineage_ingest::{parse_bytes, EntraParser, ParseCounts, ParseLimits};
use proptest::prelude::*;

/// A diagnostic service-principal sign-in (invented values).
const SIGN_IN: &str = r#"{"time":"2025-03-11T08:14:52.1234567Z","resourceId":"/tenants/5f1c3a2e-8d4b-4c7a-9e21-6b0d9f3a7c15/providers/Microsoft.aadiam","operationName":"Sign-in activity","category":"ServicePrincipalSignInLogs","tenantId":"5f1c3a2e-8d4b-4c7a-9e21-6b0d9f3a7c15","resultType":"0","callerIpAddress":"203.0.113.24","correlationId":"a93d0f6e-1c54-4b8e-bb2a-58e0d7c1f2a9","properties":{"id":"7c1e9a40-2b6d-4f0e-8a55-3d91c2b4e600","createdDateTime":"2025-03-11T08:14:52.1234567+00:00","appId":"3b9f6d21-74c8-4e0a-b1d5-92a6c7e4f018","ipAddress":"203.0.113.24","status":{"errorCode":0},"location":{"city":"Amsterdam","countryOrRegion":"NL"},"resourceDisplayName":"Microsoft Graph","resourceId":"00000003-0000-0000-c000-000000000000","servicePrincipalName":"deploy-bot","servicePrincipalId":"c2d84f7a-0e19-4b63-a8f5-71e3d9b2c604","servicePrincipalCredentialKeyId":"e4a7c2d9-5b18-4f3e-9c60-2d8b1a7f4e35"}}"#;

/// A Graph directory audit adding a key (invented values).
const AUDIT: &str = r#"{"id":"Directory_2e6c9a14_K3Q8T_48213377","category":"ApplicationManagement","result":"success","activityDisplayName":"Add service principal credentials","activityDateTime":"2025-03-10T15:27:31.0042271Z","initiatedBy":{"user":{"id":"6a2e9f14-3c7b-4d58-a0e6-9b1f4d8c2e73","userPrincipalName":"dana@contoso-labs.example","ipAddress":"192.0.2.45"}},"targetResources":[{"id":"c2d84f7a-0e19-4b63-a8f5-71e3d9b2c604","type":"ServicePrincipal","modifiedProperties":[{"displayName":"KeyDescription","oldValue":"[]","newValue":"[\"[KeyIdentifier=e4a7c2d9-5b18-4f3e-9c60-2d8b1a7f4e35,KeyType=Password,KeyUsage=Verify,DisplayName=x]\"]"}]}],"additionalDetails":[{"key":"AppId","value":"3b9f6d21-74c8-4e0a-b1d5-92a6c7e4f018"}]}"#;

struct Outcome {
    counts: ParseCounts,
    emitted: u64,
    ok: u64,
}

fn run(bytes: &[u8], limits: ParseLimits) -> Outcome {
    let mut emitted = 0u64;
    let mut ok = 0u64;
    let counts = parse_bytes(&EntraParser, bytes, "x", limits, |r| {
        emitted += 1;
        match r {
            Ok(n) => {
                ok += 1;
                assert!(!n.use_.event_id.is_empty());
            }
            Err(d) => {
                assert!(!d.reason.is_empty(), "a dead letter without a reason");
                if d.redacted {
                    let kept = String::from_utf8_lossy(&d.original_bytes()).into_owned();
                    assert!(kept.contains("[REDACTED]"), "{kept}");
                } else {
                    assert_eq!(d.original_len, d.original_bytes().len());
                }
            }
        }
    });
    Outcome {
        counts,
        emitted,
        ok,
    }
}

fn check(bytes: &[u8], limits: ParseLimits) -> Result<Outcome, TestCaseError> {
    let o = run(bytes, limits);
    prop_assert_eq!(
        o.counts.read,
        o.counts.normalized + o.counts.dead_lettered,
        "counts do not add up: {:?}",
        o.counts
    );
    prop_assert_eq!(o.emitted, o.counts.read, "emit calls != read");
    prop_assert_eq!(o.ok, o.counts.normalized, "Ok emits != normalized");
    Ok(o)
}

/// Bytes biased towards JSON structure and the field names the parser reads.
fn jsonish() -> impl Strategy<Value = Vec<u8>> {
    let token = prop_oneof![
        Just(b"{".to_vec()),
        Just(b"}".to_vec()),
        Just(b"[".to_vec()),
        Just(b"]".to_vec()),
        Just(b"\"".to_vec()),
        Just(b"\\".to_vec()),
        Just(b",".to_vec()),
        Just(b":".to_vec()),
        Just(b"\n".to_vec()),
        Just(b"null".to_vec()),
        Just(b"0".to_vec()),
        Just(b"\"records\"".to_vec()),
        Just(b"\"value\"".to_vec()),
        Just(b"\"properties\"".to_vec()),
        Just(b"\"Properties\"".to_vec()),
        Just(b"\"category\"".to_vec()),
        Just(b"\"AuditLogs\"".to_vec()),
        Just(b"\"id\"".to_vec()),
        Just(b"\"ID\"".to_vec()),
        Just(b"\"createdDateTime\"".to_vec()),
        Just(b"\"activityDisplayName\"".to_vec()),
        Just(b"\"activityDateTime\"".to_vec()),
        Just(b"\"2025-03-10T15:27:31Z\"".to_vec()),
        Just(b"\"status\"".to_vec()),
        Just(b"\"errorCode\"".to_vec()),
        Just(b"\"targetResources\"".to_vec()),
        Just(b"\"modifiedProperties\"".to_vec()),
        Just(b"\"newValue\"".to_vec()),
        Just(b"\"KeyIdentifier=\"".to_vec()),
        Just(b"\"[KeyIdentifier=a,KeyType=Password]\"".to_vec()),
        Just(b"\"AccountEnabled\"".to_vec()),
        Just(b"\"[false]\"".to_vec()),
        Just(b"\"userPrincipalName\"".to_vec()),
        Just(b"\"Add owner to application\"".to_vec()),
        Just(b"\xEF\xBB\xBF".to_vec()),
        Just(SIGN_IN.as_bytes().to_vec()),
        Just(AUDIT.as_bytes().to_vec()),
        proptest::collection::vec(any::<u8>(), 0..8),
        "[a-zA-Z0-9 .:=-]{0,12}".prop_map(String::into_bytes),
    ];
    proptest::collection::vec(token, 0..48).prop_map(|v| v.concat())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, .. ProptestConfig::default() })]

    #[test]
    fn arbitrary_bytes_never_panic_and_counts_add_up(bytes in proptest::collection::vec(any::<u8>(), 0..2048)) {
        check(&bytes, ParseLimits::default())?;
    }

    #[test]
    fn jsonish_bytes_never_panic_and_counts_add_up(bytes in jsonish()) {
        check(&bytes, ParseLimits::default())?;
        check(&bytes, ParseLimits { max_record_bytes: 16 })?;
    }

    #[test]
    fn garbage_spliced_into_an_envelope(
        garbage in proptest::collection::vec(any::<u8>(), 0..512),
        before in 0usize..4,
        after in 0usize..4,
        graph in any::<bool>(),
    ) {
        let (open, good) = if graph {
            (&b"{\"@odata.context\":\"https://graph.microsoft.com/v1.0/$metadata#auditLogs/directoryAudits\",\"value\":["[..], AUDIT)
        } else {
            (&b"{\"records\":["[..], SIGN_IN)
        };
        let mut bytes = open.to_vec();
        for _ in 0..before {
            bytes.extend_from_slice(good.as_bytes());
            bytes.push(b',');
        }
        bytes.extend_from_slice(&garbage);
        for _ in 0..after {
            bytes.push(b',');
            bytes.extend_from_slice(good.as_bytes());
        }
        bytes.extend_from_slice(b"]}");
        let o = check(&bytes, ParseLimits::default())?;
        prop_assert!(o.counts.normalized >= before as u64, "{:?} before={}", o.counts, before);
    }

    #[test]
    fn garbage_spliced_into_a_record(
        garbage in proptest::collection::vec(any::<u8>(), 0..256),
        at in 0usize..SIGN_IN.len(),
        audit in any::<bool>(),
        lines in any::<bool>(),
    ) {
        let good = if audit { AUDIT } else { SIGN_IN };
        let at = at.min(good.len());
        let mut record = good.as_bytes()[..at].to_vec();
        record.extend_from_slice(&garbage);
        record.extend_from_slice(&good.as_bytes()[at..]);
        let bytes = if lines {
            [good.as_bytes(), b"\n", &record, b"\n", good.as_bytes(), b"\n"].concat()
        } else {
            [b"{\"records\":[".as_slice(), good.as_bytes(), b",", &record, b"]}"].concat()
        };
        let o = check(&bytes, ParseLimits::default())?;
        prop_assert!(o.counts.normalized >= 1, "the first good record was lost: {:?}", o.counts);
        check(&record, ParseLimits::default())?;
    }
}

#[test]
fn the_seed_records_normalize() {
    for good in [SIGN_IN, AUDIT] {
        let o = run(good.as_bytes(), ParseLimits::default());
        assert_eq!(o.counts.read, 1);
        assert_eq!(o.counts.normalized, 1, "{good}");
    }
}
