//! Property tests: no input makes parsing panic or lose a record.
//!
//! For any bytes (raw, spliced into a valid `{"Records":[…]}` envelope, or spliced
//! into a valid record), `parse_bytes` must return counts with
//! `read == normalized + dead_lettered` and call `emit` exactly `read` times, once per
//! record, with `Ok` exactly `normalized` times. `decompress` must not panic either.

use std::io::Write;

use lineage_core::{DeadLetter, Provenance, Source};
use lineage_ingest::{
    decompress, decompress_into, parse_bytes, parse_bytes_with_raw, CloudTrailParser, Normalized,
    ParseCounts, ParseError, ParseLimits, SourceParser,
};
use proptest::prelude::*;

const GOOD: &str = r#"{"eventVersion":"1.08","userIdentity":{"type":"IAMUser","principalId":"AIDAEXAMPLE","arn":"arn:aws:iam::111122223333:user/alice","accountId":"111122223333","accessKeyId":"AKIAEXAMPLE000000001","userName":"alice"},"eventTime":"2023-07-10T11:54:47Z","eventSource":"sts.amazonaws.com","eventName":"AssumeRole","awsRegion":"us-east-1","sourceIPAddress":"10.0.0.1","userAgent":"aws-cli/2","requestParameters":{"roleArn":"arn:aws:iam::111122223333:role/r","roleSessionName":"s"},"responseElements":{"credentials":{"accessKeyId":"ASIAEXAMPLE000000001","sessionToken":"tok","expiration":"Jul 10, 2023, 12:09:47 PM"}},"eventID":"e-1","readOnly":true,"recipientAccountId":"111122223333"}"#;

struct Outcome {
    counts: ParseCounts,
    emitted: u64,
    ok: u64,
}

fn run(bytes: &[u8], limits: ParseLimits) -> Outcome {
    let mut emitted = 0u64;
    let mut ok = 0u64;
    let counts = parse_bytes(&CloudTrailParser, bytes, "x", limits, |r| {
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

/// CloudTrail parsing without its one-pass path: every record is framed by scanning
/// first, then parsed (what every source did before `parse_record_prefix`).
struct ScanThenParse;

impl SourceParser for ScanThenParse {
    fn source(&self) -> Source {
        CloudTrailParser.source()
    }
    fn envelope_keys(&self) -> &'static [&'static str] {
        CloudTrailParser.envelope_keys()
    }
    fn parse_record(&self, bytes: &[u8], provenance: Provenance) -> Result<Normalized, ParseError> {
        CloudTrailParser.parse_record(bytes, provenance)
    }
}

type Emitted = Vec<(Result<Normalized, DeadLetter>, Vec<u8>)>;

fn emitted(parser: &dyn SourceParser, bytes: &[u8], limits: ParseLimits) -> (ParseCounts, Emitted) {
    let mut out = Vec::new();
    let counts = parse_bytes_with_raw(parser, bytes, "x", limits, |r, raw| {
        out.push((r, raw.to_vec()))
    });
    (counts, out)
}

fn check(bytes: &[u8], limits: ParseLimits) -> Result<Outcome, TestCaseError> {
    // One pass (parse each array element where it starts) and scan-then-parse agree
    // on every record, dead letter, raw slice and count.
    let one_pass = emitted(&CloudTrailParser, bytes, limits);
    let scanned = emitted(&ScanThenParse, bytes, limits);
    prop_assert!(
        one_pass == scanned,
        "one-pass {one_pass:?}\nscan-then-parse {scanned:?}"
    );
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

fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    enc.write_all(bytes).unwrap();
    enc.finish().unwrap()
}

/// Bytes biased towards JSON structure, so the framer's interesting paths get hit.
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
        Just(b"\"Records\"".to_vec()),
        Just(b"\"userIdentity\"".to_vec()),
        Just(b"\xEF\xBB\xBF".to_vec()),
        Just(GOOD.as_bytes().to_vec()),
        proptest::collection::vec(any::<u8>(), 0..8),
        "[a-zA-Z0-9 .:-]{0,12}".prop_map(String::into_bytes),
    ];
    proptest::collection::vec(token, 0..40).prop_map(|v| v.concat())
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
        // A tiny limit sends most records down the too-large path.
        check(&bytes, ParseLimits { max_record_bytes: 16 })?;
    }

    #[test]
    fn garbage_spliced_into_an_envelope(
        garbage in proptest::collection::vec(any::<u8>(), 0..512),
        before in 0usize..4,
        after in 0usize..4,
    ) {
        let mut bytes = b"{\"Records\":[".to_vec();
        for _ in 0..before {
            bytes.extend_from_slice(GOOD.as_bytes());
            bytes.push(b',');
        }
        bytes.extend_from_slice(&garbage);
        for _ in 0..after {
            bytes.push(b',');
            bytes.extend_from_slice(GOOD.as_bytes());
        }
        bytes.extend_from_slice(b"]}");
        let o = check(&bytes, ParseLimits::default())?;
        // The good records before the garbage are always framed and normalized: the
        // framer only gives up at or after the damage.
        prop_assert!(o.counts.normalized >= before as u64, "{:?} before={}", o.counts, before);
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
            // JSON lines: the damaged record sits between two good ones.
            [GOOD.as_bytes(), b"\n", &record, b"\n", GOOD.as_bytes(), b"\n"].concat()
        } else {
            [b"{\"Records\":[".as_slice(), GOOD.as_bytes(), b",", &record, b"]}"].concat()
        };
        let o = check(&bytes, ParseLimits::default())?;
        prop_assert!(o.counts.normalized >= 1, "the first good record was lost: {:?}", o.counts);
        // The bytes that are not garbage are an unchanged copy of the good records.
        let o_alone = check(&record, ParseLimits::default())?;
        prop_assert!(o_alone.counts.read >= 1 || record.iter().all(|b| b.is_ascii_whitespace() || *b == 0));
    }

    #[test]
    fn decompress_arbitrary_bytes(bytes in proptest::collection::vec(any::<u8>(), 0..2048)) {
        let (out, err) = decompress(&bytes);
        let mut reused = b"left over".repeat(32);
        let (into, into_err) = decompress_into(&bytes, &mut reused);
        prop_assert_eq!(into, &out[..]);
        prop_assert_eq!(&into_err, &err);
        // Not gzip: returned unchanged, no error.
        if !(bytes.len() >= 2 && bytes[0] == 0x1f && bytes[1] == 0x8b) {
            prop_assert_eq!(&out, &bytes);
            prop_assert!(err.is_none());
        }
        check(&out, ParseLimits::default())?;
    }

    #[test]
    fn decompress_gzip_magic_then_garbage(bytes in proptest::collection::vec(any::<u8>(), 0..1024)) {
        let mut input = vec![0x1f, 0x8b, 0x08, 0x00];
        input.extend_from_slice(&bytes);
        let (out, _err) = decompress(&input);
        check(&out, ParseLimits::default())?;
    }

    #[test]
    fn decompress_truncated_or_damaged_gzip(
        records in 1usize..6,
        cut in 0.0f64..1.0,
        flip in proptest::option::of((any::<prop::sample::Index>(), any::<u8>())),
    ) {
        let plain = format!(
            "{{\"Records\":[{}]}}",
            vec![GOOD; records].join(",")
        );
        let mut gz = gzip(plain.as_bytes());
        if let Some((idx, byte)) = flip {
            let i = idx.index(gz.len());
            gz[i] ^= byte | 1;
        }
        let keep = ((gz.len() as f64) * cut) as usize;
        gz.truncate(keep.max(2));
        let (out, err) = decompress(&gz);
        if err.is_none() && flip.is_none() && keep >= 2 {
            // Only an untouched, complete stream decodes without error.
            prop_assert_eq!(&out[..], plain.as_bytes());
        }
        // Whatever was decoded is a prefix of the plain text when nothing was flipped.
        if flip.is_none() {
            prop_assert!(plain.as_bytes().starts_with(&out));
        }
        // A reused buffer (as the replay's parse threads keep one) holding another
        // file's bytes gives exactly what a fresh one does, error included.
        let mut reused = b"left over from the previous file".repeat(64);
        let (into, into_err) = decompress_into(&gz, &mut reused);
        prop_assert_eq!(into, &out[..]);
        prop_assert_eq!(into_err, err);
        check(&out, ParseLimits::default())?;
    }
}

#[test]
fn complete_gzip_round_trips() {
    let plain = format!("{{\"Records\":[{GOOD},{GOOD}]}}");
    let gz = gzip(plain.as_bytes());
    let (out, err) = decompress(&gz);
    assert!(err.is_none(), "{err:?}");
    assert_eq!(out, plain.as_bytes());
    let o = run(&out, ParseLimits::default());
    assert_eq!(o.counts.read, 2);
    assert_eq!(o.counts.normalized, 2);
}

#[test]
fn concatenated_gzip_members_are_all_read() {
    let one = format!("{{\"Records\":[{GOOD}]}}");
    let two = [gzip(b"{\"eventName\":1}\n"), gzip(b"\n")].concat();
    let joined = [gzip(one.as_bytes()), two].concat();
    let (out, err) = decompress(&joined);
    assert!(err.is_none(), "{err:?}");
    assert!(out.starts_with(one.as_bytes()));
    assert!(out.ends_with(b"{\"eventName\":1}\n\n"));
}

/// Two delivery files concatenated (`cat a.json b.json`, or two gzip members that
/// `decompress` joins): the records of both documents are read, none silently dropped.
#[test]
fn concatenated_envelopes_are_all_read() {
    let doc = format!("{{\"Records\":[{GOOD},{GOOD}]}}");
    for sep in ["", "\n", " \r\n"] {
        let bytes = format!("{doc}{sep}{doc}{sep}");
        let o = run(bytes.as_bytes(), ParseLimits::default());
        assert_eq!(o.counts.read, 4, "sep {sep:?}: {:?}", o.counts);
        assert_eq!(o.counts.normalized, 4, "sep {sep:?}: {:?}", o.counts);
    }
    let gz = [gzip(doc.as_bytes()), gzip(doc.as_bytes())].concat();
    let (out, err) = decompress(&gz);
    assert!(err.is_none());
    assert_eq!(run(&out, ParseLimits::default()).counts.normalized, 4);
}

/// Bytes after a complete top-level array are not silently ignored.
#[test]
fn bytes_after_a_bare_array_are_not_dropped() {
    let bytes = format!("[{GOOD}]\n{GOOD}\nnot json\n");
    let o = run(bytes.as_bytes(), ParseLimits::default());
    assert_eq!(o.counts.read, 3, "{:?}", o.counts);
    assert_eq!(o.counts.normalized, 2, "{:?}", o.counts);
    assert_eq!(o.counts.dead_lettered, 1, "{:?}", o.counts);

    let o = run(format!("[]{GOOD}").as_bytes(), ParseLimits::default());
    assert_eq!(o.counts.read, 1, "{:?}", o.counts);
}
