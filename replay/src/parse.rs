//! Reading, decompressing and parsing one file.

use std::path::Path;

use lineage_core::{DeadLetter, Provenance, Source};
use lineage_detect::sigma::SigmaRules;
use lineage_ingest::{
    decompress, join_request_response, parse_bytes_with_raw, parser_for, sniff_source, Normalized,
    ParseCounts, ParseLimits,
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
    let mut out = ParsedFile::default();
    let raw = match std::fs::read(path) {
        Ok(b) => b,
        Err(e) => {
            out.dead(
                forced.unwrap_or(Source::CloudTrail),
                format!("could not read file: {e}"),
                &origin,
                b"",
            );
            return out;
        }
    };
    let compressed = raw.len() >= 2 && raw[0] == 0x1f && raw[1] == 0x8b;
    // The compressed bytes are what a dead letter keeps when decompression fails.
    let original_for_error = compressed.then_some(raw.as_slice());
    let (bytes, decode_error) = decompress(&raw);
    out.bytes = bytes.len() as u64;
    let source = forced.or_else(|| sniff_source(&bytes));
    out.source = source;
    let Some(source) = source else {
        if let Some(why) = decode_error {
            // Too little decoded to tell the source: the damaged stream is the news.
            out.dead(
                Source::CloudTrail,
                why,
                &origin,
                original_for_error.unwrap_or(&bytes),
            );
        } else if !bytes.iter().all(u8::is_ascii_whitespace) {
            out.dead(
                Source::CloudTrail,
                "could not tell which source wrote this file (no CloudTrail, Entra, GitHub or Vault field names in its first 64 KiB); pass --source".into(),
                &origin,
                original_for_error.unwrap_or(&bytes),
            );
        }
        return out;
    };
    if let Some(why) = decode_error {
        out.dead(source, why, &origin, original_for_error.unwrap_or(&[]));
    }
    let Some(parser) = parser_for(source) else {
        out.dead(
            source,
            format!("no parser for source `{source}` in this build yet"),
            &origin,
            &bytes,
        );
        return out;
    };
    let sigma = sigma.filter(|rules| !rules.none_for(source));
    let counts = parse_bytes_with_raw(parser, &bytes, &origin, limits, |r, raw| match r {
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
    out
}
