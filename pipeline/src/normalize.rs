//! The normalize stage: raw bytes (a file, an S3 object, a connector's record, a
//! Kafka message) → decompressed → framed → parsed by the source's parser into
//! [`Normalized`] records or [`DeadLetter`]s, with the Sigma rules of that log source
//! evaluated on each raw record. Every driver normalizes through [`parse_buffer`],
//! so replay, the embedded live run and the Kafka normalize stage read bytes the
//! same way. Vault/OpenBao log a call twice (request and response); within a
//! buffer the halves are joined here, across buffers by [`VaultJoin`].

use std::path::Path;

use lineage_core::{DeadLetter, Provenance, Source};
use lineage_detect::sigma::SigmaRules;

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

/// A file that could not be read at all: one dead letter with the reason.
pub fn unreadable(origin: &str, forced: Option<Source>, reason: String) -> ParsedFile {
    let mut out = ParsedFile::default();
    out.dead(forced.unwrap_or(Source::Unknown), reason, origin, b"");
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
    // By what this file wrote, not by capacity: inflation reserves its whole limit
    // (64 MiB at least) up front, and only written pages are resident.
    if buffer.len() <= KEEP_DECOMPRESSED_BYTES {
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
                Source::Unknown,
                why,
                origin,
                original_for_error.unwrap_or(bytes),
            );
        } else if !bytes.iter().all(u8::is_ascii_whitespace) {
            let dead = lineage_ingest::unknown_source_dead_letters(bytes, origin, "pass --source");
            out.counts.read += dead.len() as u64;
            out.counts.dead_lettered += dead.len() as u64;
            out.dead_letters.extend(dead);
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

/// Normalizes one raw record of `source` (a connector's record, a Kafka message):
/// the size limit, the source's parser, and the Sigma rules of its log source.
// A dead letter is an output like the normalized record, built once per bad record;
// boxing it would only add an allocation.
#[allow(clippy::result_large_err)]
pub fn normalize_record(
    source: Source,
    bytes: &[u8],
    provenance: Provenance,
    limits: ParseLimits,
    sigma: Option<&SigmaRules>,
) -> Result<Normalized, DeadLetter> {
    if bytes.len() > limits.max_record_bytes {
        let err = lineage_ingest::ParseError::TooLarge(bytes.len(), limits.max_record_bytes);
        return Err(DeadLetter::new(source, err.to_string(), provenance, bytes));
    }
    let Some(parser) = parser_for(source) else {
        return Err(DeadLetter::new(
            source,
            format!("no parser for source `{source}`"),
            provenance,
            bytes,
        ));
    };
    match parser.parse_record(bytes, provenance.clone()) {
        Ok(mut n) => {
            if let Some(rules) = sigma.filter(|r| !r.none_for(source)) {
                n.rule_hits = rules.matching(source, bytes);
            }
            Ok(n)
        }
        Err(e) => Err(DeadLetter::new(source, e.to_string(), provenance, bytes)),
    }
}

/// Joins the request and response entries of one Vault/OpenBao call when they
/// arrive in different batches (a tailed audit file, a socket): a request is held
/// until its response comes, and then dropped (the response repeats it and adds the
/// outcome), as replay's join within a file does. A request whose response does not
/// come within `hold` further records, or when the input goes quiet
/// ([`VaultJoin::flush`]), passes on alone. `T` is what the caller tracks per record
/// (its batch, for acknowledgements).
#[derive(Debug)]
pub struct VaultJoin<T> {
    held: std::collections::HashMap<smol_str::SmolStr, (Normalized, T, u64, std::time::Instant)>,
    seen: u64,
    hold: u64,
}

impl<T> VaultJoin<T> {
    /// A join that holds a request for at most `hold` further records.
    pub fn new(hold: u64) -> Self {
        Self {
            held: std::collections::HashMap::new(),
            seen: 0,
            hold,
        }
    }

    /// Takes one record: records that may pass on now go to `out`; the tag of a
    /// request folded into its response goes to `joined`.
    pub fn push(
        &mut self,
        record: Normalized,
        tag: T,
        out: &mut Vec<(Normalized, T)>,
        joined: &mut Vec<T>,
    ) {
        self.seen += 1;
        match &record.half {
            Some(lineage_ingest::Half::Request(id)) => {
                let id = id.clone();
                self.held
                    .insert(id, (record, tag, self.seen, std::time::Instant::now()));
            }
            Some(lineage_ingest::Half::Response(id)) => {
                if let Some((_, t, _, _)) = self.held.remove(id) {
                    joined.push(t);
                }
                out.push((record, tag));
            }
            None => out.push((record, tag)),
        }
        if !self.held.is_empty() {
            let (seen, hold) = (self.seen, self.hold);
            let expired: Vec<smol_str::SmolStr> = self
                .held
                .iter()
                .filter(|(_, (_, _, at, _))| seen - at >= hold)
                .map(|(id, _)| id.clone())
                .collect();
            for id in expired {
                if let Some((r, t, _, _)) = self.held.remove(&id) {
                    out.push((r, t));
                }
            }
        }
    }

    /// Passes on alone every request held for at least `age` (the input went quiet;
    /// `Duration::ZERO` passes them all).
    pub fn flush_older_than(&mut self, age: std::time::Duration, out: &mut Vec<(Normalized, T)>) {
        let ids: Vec<smol_str::SmolStr> = self
            .held
            .iter()
            .filter(|(_, (_, _, _, since))| since.elapsed() >= age)
            .map(|(id, _)| id.clone())
            .collect();
        let mut rest: Vec<(Normalized, T, u64)> = ids
            .iter()
            .filter_map(|id| self.held.remove(id))
            .map(|(r, t, at, _)| (r, t, at))
            .collect();
        rest.sort_by_key(|(_, _, at)| *at);
        out.extend(rest.into_iter().map(|(r, t, _)| (r, t)));
    }

    /// Requests held now.
    pub fn held(&self) -> usize {
        self.held.len()
    }

    /// The earliest event time held (µs), so a watermark does not pass it.
    pub fn earliest_held(&self) -> Option<i64> {
        self.held
            .values()
            .map(|(r, _, _, _)| r.use_.time.timestamp_micros())
            .min()
    }
}
