//! Fuzzes the framing layer on its own, under every source's envelope keys, and the
//! source sniffing that picks a parser in auto mode. Run with
//! `cargo +nightly fuzz run framing`.
//!
//! Invariants: nothing panics; every frame is a sub-slice of the input; record
//! numbers never go backwards; a broken frame says why; and whatever source is
//! sniffed, its parser accounts for every record.
#![no_main]

use libfuzzer_sys::fuzz_target;
use lineage_ingest::framing::{frames, Frame};
use lineage_ingest::{parser_for, sniff_source};

fuzz_target!(|data: &[u8]| {
    let range = data.as_ptr_range();
    for keys in [
        &["Records"][..],
        &["value", "records"][..],
        &[][..],
    ] {
        let mut last = 0u64;
        for frame in frames(data, keys) {
            // A record frame is not promised to be valid JSON (in JSON lines each line
            // is a record; the parser dead-letters what does not parse, which the
            // parser check below accounts for).
            let (n, bytes) = match frame {
                Frame::Record(n, r) => (n, r),
                Frame::Broken(n, b, why) => {
                    assert!(!why.is_empty(), "a broken frame without a reason");
                    (n, b)
                }
            };
            assert!(n >= last, "record numbers went backwards: {last} then {n}");
            last = n;
            if !bytes.is_empty() {
                let r = bytes.as_ptr_range();
                assert!(r.start >= range.start && r.end <= range.end, "frame outside the input");
            }
        }
    }
    if let Some(parser) = sniff_source(data).and_then(parser_for) {
        lineage_fuzz::check_parser(parser, data);
    }
});
