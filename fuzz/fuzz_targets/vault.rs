//! Fuzzes the Vault ingest path end to end: gzip detection and decompression, framing
//! and record parsing. Run with `cargo +nightly fuzz run vault` from the workspace root
//! (seed the corpus with `testdata/vault/**/*.json*`). Invariants: [`lineage_fuzz::check_parser`].
#![no_main]

use libfuzzer_sys::fuzz_target;
use lineage_ingest::VaultParser;

fuzz_target!(|data: &[u8]| lineage_fuzz::check_parser(&VaultParser, data));
