//! Fuzzes the CloudTrail ingest path end to end: gzip detection and decompression,
//! framing and record parsing. Run with `cargo +nightly fuzz run cloudtrail` from
//! the workspace root (seed the corpus with `testdata/cloudtrail/**/*.json`).
//!
//! Invariants: nothing panics, `read == normalized + dead_lettered`, `emit` is
//! called once per record read, and every dead letter has a reason.
#![no_main]

use libfuzzer_sys::fuzz_target;
use lineage_ingest::{decompress, parse_bytes, CloudTrailParser, ParseLimits};

fuzz_target!(|data: &[u8]| {
    let (bytes, _decode_error) = decompress(data);
    // A small limit as well as the default, so the too-large path is exercised.
    for limits in [
        ParseLimits::default(),
        ParseLimits {
            max_record_bytes: 256,
        },
    ] {
        let mut emitted = 0u64;
        let mut ok = 0u64;
        let counts = parse_bytes(&CloudTrailParser, &bytes, "fuzz", limits, |r| {
            emitted += 1;
            match r {
                Ok(_) => ok += 1,
                Err(d) => assert!(!d.reason.is_empty(), "dead letter without a reason"),
            }
        });
        assert_eq!(counts.read, counts.normalized + counts.dead_lettered);
        assert_eq!(emitted, counts.read);
        assert_eq!(ok, counts.normalized);
    }
});
