//! Fuzzes the Entra ingest path end to end: gzip detection and decompression, framing
//! and record parsing. Run with `cargo +nightly fuzz run entra` from the workspace root
//! (seed the corpus with `testdata/entra/**/*.json*`). Invariants: [`lineage_fuzz::check_parser`].
#![no_main]

use libfuzzer_sys::fuzz_target;
use lineage_ingest::EntraParser;

fuzz_target!(|data: &[u8]| lineage_fuzz::check_parser(&EntraParser, data));
