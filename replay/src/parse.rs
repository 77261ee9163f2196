//! Reading, decompressing and parsing one file.

use std::path::Path;

use lineage_core::{DeadLetter, Provenance, Source};
use lineage_detect::sigma::SigmaRules;

use crate::{InputFile, S3Archive};
use lineage_ingest::{
    decompress_into, join_request_response, parse_bytes_with_raw, parser_for, sniff_source,
    Normalized, ParseCounts, ParseLimits,
};

/// Everything one file yielded.
#[derive(Debug, Default)]
pub struct ParsedFile {
    /// The source the file was parsed as, when known.
    pub source: Option<Source>,
    /// Normalized records, in file order.
    pub records: Vec<Normalized>,
    /// Dead letters, in file order.
    pub dead_letters: Vec<DeadLetter>,
    /// Counts (`read = normalized + dead_lettered`).
    pub counts: ParseCounts,
    /// Decompressed size in bytes.
    pub bytes: u64,
    /// Request entries folded into their response entry (counted as normalized).
    pub joined: u64,
}

impl ParsedFile {
    fn dead(&mut self, source: Source, reason: String, origin: &str, bytes: &[u8]) {
        self.counts.read += 1;
        self.counts.dead_lettered += 1;
        self.dead_letters.push(DeadLetter::new(
            source,
            reason,
            Provenance::file(origin, 0),
            bytes,
        ));
    }
}

/// Reads and parses one file as `forced` (or the sniffed source). Never fails: an
/// unreadable, undecodable or unrecognisable file becomes a dead letter.
pub fn parse_file(
    path: &Path,
    forced: Option<Source>,
    limits: ParseLimits,
    sigma: Option<&SigmaRules>,
) -> ParsedFile {
    let origin = path.display().to_string();
    match std::fs::read(path) {
        Ok(raw) => parse_buffer(&raw, &origin, forced, limits, sigma),
        Err(e) => unreadable(&origin, forced, format!("could not read file: {e}")),
    }
}

/// Reads and parses one input, local or in S3, like [`parse_file`].
pub(crate) fn parse_input(
    input: &InputFile,
    s3: Option<&S3Archive>,
    forced: Option<Source>,
    limits: ParseLimits,
    sigma: Option<&SigmaRules>,
) -> ParsedFile {
    match input {
        InputFile::Local(path) => parse_file(path, forced, limits, sigma),
        InputFile::S3 { bucket, key, .. } => {
            let origin = input.name();
            let fetched = match s3 {
                Some(s3) => s3.get(bucket, key),
                None => Err("no S3 client configured".to_string()),
            };
            match fetched {
                Ok(raw) => parse_buffer(&raw, &origin, forced, limits, sigma),
                Err(e) => unreadable(&origin, forced, format!("could not fetch object: {e}")),
            }
        }
    }
}

pub(crate) fn unreadable(origin: &str, forced: Option<Source>, reason: String) -> ParsedFile {
    let mut out = ParsedFile::default();
    out.dead(forced.unwrap_or(Source::CloudTrail), reason, origin, b"");
    out
}

/// Parses a file's bytes (gzip or plain) named `origin` in provenance.
pub fn parse_buffer(
    raw: &[u8],
    origin: &str,
    forced: Option<Source>,
    limits: ParseLimits,
    sigma: Option<&SigmaRules>,
) -> ParsedFile {
    let mut out = ParsedFile::default();
    // One decompression buffer per parse thread, reused file after file: a fresh
    // buffer per file was faulted in (and zeroed by the kernel) every time.
    let mut buffer = DECOMPRESSED.take();
    parse_decompressed(raw, origin, forced, limits, sigma, &mut buffer, &mut out);
    if buffer.capacity() <= KEEP_DECOMPRESSED_BYTES {
        DECOMPRESSED.set(buffer);
    }
    out
}

thread_local! {
    static DECOMPRESSED: std::cell::Cell<Vec<u8>> = const { std::cell::Cell::new(Vec::new()) };
}

/// A larger decompression buffer is freed after its file rather than kept per thread.
const KEEP_DECOMPRESSED_BYTES: usize = 64 << 20;

fn parse_decompressed(
    raw: &[u8],
    origin: &str,
    forced: Option<Source>,
    limits: ParseLimits,
    sigma: Option<&SigmaRules>,
    buffer: &mut Vec<u8>,
    out: &mut ParsedFile,
) {
    let compressed = raw.len() >= 2 && raw[0] == 0x1f && raw[1] == 0x8b;
    // The compressed bytes are what a dead letter keeps when decompression fails.
    let original_for_error = compressed.then_some(raw);
    let (bytes, decode_error) = decompress_into(raw, buffer);
    out.bytes = bytes.len() as u64;
    let source = forced.or_else(|| sniff_source(bytes));
    out.source = source;
    let Some(source) = source else {
        if let Some(why) = decode_error {
            // Too little decoded to tell the source: the damaged stream is the news.
            out.dead(
                Source::CloudTrail,
                why,
                origin,
                original_for_error.unwrap_or(bytes),
            );
        } else if !bytes.iter().all(u8::is_ascii_whitespace) {
            out.dead(
                Source::CloudTrail,
                "could not tell which source wrote this file (no CloudTrail, Entra, GitHub or Vault field names in its first 64 KiB); pass --source".into(),
                origin,
                original_for_error.unwrap_or(bytes),
            );
        }
        return;
    };
    if let Some(why) = decode_error {
        out.dead(source, why, origin, original_for_error.unwrap_or(&[]));
    }
    let Some(parser) = parser_for(source) else {
        out.dead(
            source,
            format!("no parser for source `{source}` in this build yet"),
            origin,
            bytes,
        );
        return;
    };
    let sigma = sigma.filter(|rules| !rules.none_for(source));
    // Records are ~700 bytes each in memory: growing the vector by doubling copied
    // each of them twice on average. Audit records are rarely under 1 KiB of JSON;
    // capped, so a large file of garbage does not reserve for records it lacks.
    out.records.reserve((bytes.len() / 1024).min(16_384));
    let counts = parse_bytes_with_raw(parser, bytes, origin, limits, |r, raw| match r {
        Ok(mut n) => {
            if let Some(rules) = sigma {
                n.rule_hits = rules.matching(source, raw);
            }
            out.records.push(n)
        }
        Err(d) => out.dead_letters.push(d),
    });
    out.counts += counts;
    out.joined = join_request_response(&mut out.records);
}
