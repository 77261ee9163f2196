//! Property tests of the Vault / OpenBao parser: no input makes it panic or lose a
//! record. For arbitrary bytes, JSON-ish token soup, and valid audit entries with
//! bytes spliced in, `parse_bytes` returns `read == normalized + dead_lettered`, calls
//! `emit` exactly `read` times, and `join_request_response` only removes request halves.

use lineage_ingest::{
    join_request_response, parse_bytes, Half, Normalized, ParseCounts, ParseLimits, VaultParser,
};
use proptest::prelude::*;

const REQUEST: &str = r#"{"time":"2026-11-23T13:24:43.789Z","type":"request","auth":{"client_token":"hmac-sha256:aa","accessor":"hmac-sha256:bb","display_name":"token-agent-claude","entity_id":"","token_type":"service","token_ttl":2764800,"token_issue_time":"2026-11-23T13:24:38Z"},"request":{"id":"fc0c88a2","operation":"update","mount_type":"token","client_token":"hmac-sha256:aa","client_token_accessor":"hmac-sha256:bb","namespace":{"id":"root"},"path":"auth/token/create","data":{"display_name":"hmac-sha256:cc"},"remote_address":"127.0.0.1","remote_port":52434}}"#;
const RESPONSE: &str = r#"{"time":"2026-11-23T13:24:43.790Z","type":"response","auth":{"client_token":"hmac-sha256:aa","accessor":"hmac-sha256:bb","display_name":"token-agent-claude","token_type":"service"},"request":{"id":"fc0c88a2","operation":"update","client_token_accessor":"hmac-sha256:bb","namespace":{"id":"root"},"path":"auth/token/create","remote_address":"127.0.0.1"},"response":{"auth":{"client_token":"hmac-sha256:dd","accessor":"hmac-sha256:ee","display_name":"token-subtask","token_type":"service","token_ttl":2764800}}}"#;
const REVOKE: &str = r#"{"time":"2026-11-23T13:24:44.408Z","type":"response","auth":{"accessor":"hmac-sha256:ff","display_name":"token"},"request":{"id":"67468c10","operation":"update","path":"auth/token/revoke-accessor","data":{"accessor":"hmac-sha256:ee"}},"response":{}}"#;
const KMIP: &str = r#"{"request":{"client_certificate_serial_number":"7931","data":{"kmip_request":{"tag":"RequestMessage","value":[{"tag":"BatchItem","value":[{"tag":"Operation","type":"Enumeration","value":"0x0000000a"}]}]}},"namespace":{"id":"root"},"remote_address":"192.0.2.1:3677"},"response":{"data":{"kmip_response":{"tag":"ResponseMessage","value":[{"tag":"BatchItem","value":[{"tag":"ResultStatus","type":"Enumeration","value":"0x00000001"},{"tag":"ResultReason","type":"Enumeration","value":"0x0000000C"}]}]}}},"time":"2026-05-20T13:50:00.314Z","type":"kmip-response"}"#;

struct Run {
    counts: ParseCounts,
    emitted: u64,
    records: Vec<Normalized>,
}

fn run(bytes: &[u8]) -> Run {
    let mut emitted = 0u64;
    let mut records = Vec::new();
    let counts = parse_bytes(&VaultParser, bytes, "x", ParseLimits::default(), |r| {
        emitted += 1;
        match r {
            Ok(n) => {
                assert!(!n.use_.event_id.is_empty());
                records.push(n);
            }
            Err(d) => assert!(!d.reason.is_empty(), "a dead letter without a reason"),
        }
    });
    Run {
        counts,
        emitted,
        records,
    }
}

fn check(bytes: &[u8]) -> Result<Run, TestCaseError> {
    let mut r = run(bytes);
    prop_assert_eq!(
        r.counts.read,
        r.counts.normalized + r.counts.dead_lettered,
        "counts do not add up: {:?}",
        r.counts
    );
    prop_assert_eq!(r.emitted, r.counts.read, "emit calls != read");
    prop_assert_eq!(
        r.records.len() as u64,
        r.counts.normalized,
        "Ok emits != normalized"
    );
    let before = r.records.len();
    let responses = r
        .records
        .iter()
        .filter(|n| !matches!(n.half, Some(Half::Request(_))))
        .count();
    let joined = join_request_response(&mut r.records);
    prop_assert_eq!(before - r.records.len(), joined as usize);
    prop_assert!(
        r.records.len() >= responses,
        "a join dropped a non-request record"
    );
    Ok(r)
}

/// Bytes biased towards JSON structure and Vault field names.
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
        Just(b"\"type\"".to_vec()),
        Just(b"\"request\"".to_vec()),
        Just(b"\"response\"".to_vec()),
        Just(b"\"auth\"".to_vec()),
        Just(b"\"kmip-response\"".to_vec()),
        Just(b"\"tag\"".to_vec()),
        Just(b"\"value\"".to_vec()),
        Just(b"hmac-sha256:".to_vec()),
        Just(REQUEST.as_bytes().to_vec()),
        Just(RESPONSE.as_bytes().to_vec()),
        Just(REVOKE.as_bytes().to_vec()),
        Just(KMIP.as_bytes().to_vec()),
        proptest::collection::vec(any::<u8>(), 0..8),
        "[a-zA-Z0-9 .:/-]{0,12}".prop_map(String::into_bytes),
    ];
    proptest::collection::vec(token, 0..40).prop_map(|parts| parts.concat())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn arbitrary_bytes_never_panic_or_lose_records(bytes in proptest::collection::vec(any::<u8>(), 0..2048)) {
        check(&bytes)?;
    }

    #[test]
    fn jsonish_soup_never_panics_or_loses_records(bytes in jsonish()) {
        check(&bytes)?;
    }

    #[test]
    fn splices_into_valid_entries_are_accounted_for(
        which in 0usize..4,
        at in any::<prop::sample::Index>(),
        junk in proptest::collection::vec(any::<u8>(), 0..16),
    ) {
        let good = [REQUEST, RESPONSE, REVOKE, KMIP][which].as_bytes();
        let at = at.index(good.len() + 1);
        let mut bytes = good[..at].to_vec();
        bytes.extend_from_slice(&junk);
        bytes.extend_from_slice(&good[at..]);
        bytes.push(b'\n');
        bytes.extend_from_slice(RESPONSE.as_bytes());
        check(&bytes)?;
    }
}

#[test]
fn the_valid_entries_normalize_and_join() {
    let text = [REQUEST, RESPONSE, REVOKE, KMIP].join("\n");
    let mut r = run(text.as_bytes());
    assert_eq!(r.counts.normalized, 4, "{:?}", r.counts);
    assert_eq!(join_request_response(&mut r.records), 1);
    assert_eq!(r.records.len(), 3);
    assert_eq!(
        r.records[0].facts.len(),
        1,
        "the token create issues the child"
    );
    assert_eq!(r.records[1].facts.len(), 1, "the revocation");
}
