//! What every fuzz target checks, once: a parser run over arbitrary bytes (after gzip
//! detection) never panics and accounts for every record it reads. The targets in
//! `fuzz_targets/` differ only in the parser or the layer they drive.

use lineage_ingest::{decompress, parse_bytes, ParseLimits, SourceParser};

/// Parses `data` (inflated first when it is gzip) with `parser`, under the default
/// record-size limit and a tiny one (so the too-large path runs too), and asserts:
/// `read == normalized + dead_lettered`, `emit` is called once per record read, every
/// dead letter has a reason, and the Vault request/response join never loses a use.
pub fn check_parser(parser: &dyn SourceParser, data: &[u8]) {
    let (bytes, _inflate_error) = decompress(data);
    for limits in [
        ParseLimits::default(),
        ParseLimits {
            max_record_bytes: 256,
        },
    ] {
        let mut emitted = 0u64;
        let mut normalized = Vec::new();
        let counts = parse_bytes(parser, &bytes, "fuzz", limits, |r| {
            emitted += 1;
            match r {
                Ok(n) => normalized.push(n),
                Err(d) => assert!(!d.reason.is_empty(), "dead letter without a reason"),
            }
        });
        assert_eq!(counts.read, counts.normalized + counts.dead_lettered);
        assert_eq!(emitted, counts.read);
        assert_eq!(normalized.len() as u64, counts.normalized);
        let before = normalized.len() as u64;
        let folded = lineage_ingest::join_request_response(&mut normalized);
        assert_eq!(normalized.len() as u64 + folded, before, "the join lost a use");
    }
}
