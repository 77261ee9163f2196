//! Property tests of the GitHub parser: no input makes it panic or lose a record.
//!
//! Arbitrary bytes, JSON-ish token soup built from GitHub field names and values, and
//! garbage spliced into good records, as a REST array or as JSON lines: `parse_bytes`
//! must call `emit` exactly `read` times with `read == normalized + dead_lettered`.

use lineage_ingest::{parse_bytes, GitHubParser, ParseCounts, ParseLimits};
use proptest::prelude::*;

const GOOD: &str = r#"{"@timestamp":1748873591482,"_document_id":"q3R7vN2kLm8XpA1sDf0GhQ","action":"api.request","actor":"mara-lindqvist","actor_id":48213377,"actor_ip":"203.0.113.41","actor_location":{"country_code":"SE"},"hashed_token":"3f9KpQ2m1Zr8YtVb6NcX0aLwE4uHsJdGkT7iOyPqRnM=","org":"nordwind-eng","programmatic_access_type":"Fine-grained personal access token","request_method":"GET","route":"/repos/{owner}/{repo}","status_code":200,"token_id":187654321,"url_path":"/repos/nordwind-eng/billing-api","user_agent":"curl/8.5.0"}"#;
const GOOD_ISO: &str = r#"{"@timestamp":"2025-06-02T14:05:12.907Z","_document_id":"Vb7Qy1mZ0xKcN5rT8wLpEg==","action":"git.clone","actor":"tomasz-k","hashed_token":"mZ4x=","programmatic_access_type":"Personal access token (classic)","repo":"nordwind-eng/infra-live","token_id":165502871,"repositories_added_names":["a/b"]}"#;

struct Outcome {
    counts: ParseCounts,
    emitted: u64,
    ok: u64,
}

fn run(bytes: &[u8], limits: ParseLimits) -> Outcome {
    let mut emitted = 0u64;
    let mut ok = 0u64;
    let counts = parse_bytes(&GitHubParser, bytes, "x", limits, |r| {
        emitted += 1;
        match r {
            Ok(n) => {
                ok += 1;
                assert!(!n.use_.event_id.is_empty());
                assert_eq!(n.use_.operation.service, "github");
            }
            Err(d) => assert!(!d.reason.is_empty(), "a dead letter without a reason"),
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

/// Bytes biased towards JSON structure and GitHub's field names and value types.
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
        Just(b"true".to_vec()),
        Just(b"0".to_vec()),
        Just(b"-1".to_vec()),
        Just(b"1e400".to_vec()),
        Just(b"18446744073709551615".to_vec()),
        Just(b"\"@timestamp\"".to_vec()),
        Just(b"\"created_at\"".to_vec()),
        Just(b"\"action\"".to_vec()),
        Just(b"\"actor\"".to_vec()),
        Just(b"\"token_id\"".to_vec()),
        Just(b"\"hashed_token\"".to_vec()),
        Just(b"\"status_code\"".to_vec()),
        Just(b"\"url_path\"".to_vec()),
        Just(b"\"value\"".to_vec()),
        Just(b"\"personal_access_token.access_granted\"".to_vec()),
        Just(b"\"org.remove_member\"".to_vec()),
        Just(b"\"2025-06-02T14:05:12.907Z\"".to_vec()),
        Just(b"\"/repos/a/b\"".to_vec()),
        Just(b"\xEF\xBB\xBF".to_vec()),
        Just(GOOD.as_bytes().to_vec()),
        Just(GOOD_ISO.as_bytes().to_vec()),
        proptest::collection::vec(any::<u8>(), 0..8),
        "[a-zA-Z0-9 ._:/-]{0,12}".prop_map(String::into_bytes),
    ];
    proptest::collection::vec(token, 0..48).prop_map(|v| v.concat())
}

/// One GitHub field with a value of any JSON type.
fn field() -> impl Strategy<Value = String> {
    let key = prop_oneof![
        Just("@timestamp"),
        Just("created_at"),
        Just("_document_id"),
        Just("action"),
        Just("actor"),
        Just("actor_id"),
        Just("actor_is_bot"),
        Just("actor_location"),
        Just("user"),
        Just("org"),
        Just("repo"),
        Just("repositories_added_names"),
        Just("hashed_token"),
        Just("token_id"),
        Just("programmatic_access_type"),
        Just("request_method"),
        Just("route"),
        Just("url_path"),
        Just("status_code"),
        Just("operation_type"),
        Just("installation_id"),
        Just("fingerprint"),
    ];
    let value = prop_oneof![
        Just("null".to_owned()),
        Just("true".to_owned()),
        Just("[]".to_owned()),
        Just("[\"x\",1,null]".to_owned()),
        Just("{\"country_code\":\"SE\"}".to_owned()),
        Just("0".to_owned()),
        Just("1748873591482".to_owned()),
        Just("-99999999999999999".to_owned()),
        Just("1.5e300".to_owned()),
        Just("\"2025-06-02T14:05:12.907Z\"".to_owned()),
        Just("\"1748873591482\"".to_owned()),
        Just("\"personal_access_token.create\"".to_owned()),
        Just("\"oauth_access.destroy\"".to_owned()),
        Just("\"org.remove_member\"".to_owned()),
        Just("\"api.request\"".to_owned()),
        Just("\"/repos//\"".to_owned()),
        Just("\"999\"".to_owned()),
        "\"[a-zA-Z0-9 ._:/\\[\\]-]{0,16}\"",
    ];
    (key, value).prop_map(|(k, v)| format!("\"{k}\":{v}"))
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
    fn records_of_random_fields_never_panic(fields in proptest::collection::vec(field(), 0..12)) {
        let record = format!("{{{}}}", fields.join(","));
        let o = check(record.as_bytes(), ParseLimits::default())?;
        prop_assert_eq!(o.counts.read, 1);
    }

    #[test]
    fn garbage_spliced_into_a_record(
        garbage in proptest::collection::vec(any::<u8>(), 0..256),
        at in 0usize..GOOD.len(),
        lines in any::<bool>(),
    ) {
        let mut record = GOOD.as_bytes()[..at].to_vec();
        record.extend_from_slice(&garbage);
        record.extend_from_slice(&GOOD.as_bytes()[at..]);
        let bytes = if lines {
            [GOOD.as_bytes(), b"\n", &record, b"\n", GOOD_ISO.as_bytes(), b"\n"].concat()
        } else {
            [b"[".as_slice(), GOOD.as_bytes(), b",", &record, b",", GOOD_ISO.as_bytes(), b"]"].concat()
        };
        let o = check(&bytes, ParseLimits::default())?;
        prop_assert!(o.counts.normalized >= 1, "the first good record was lost: {:?}", o.counts);
    }
}

#[test]
fn good_records_normalize() {
    let bytes = format!("[{GOOD},{GOOD_ISO}]");
    let o = run(bytes.as_bytes(), ParseLimits::default());
    assert_eq!((o.counts.read, o.counts.normalized), (2, 2));
    let bytes = format!("{GOOD}\n{GOOD_ISO}\n");
    let o = run(bytes.as_bytes(), ParseLimits::default());
    assert_eq!((o.counts.read, o.counts.normalized), (2, 2));
}
