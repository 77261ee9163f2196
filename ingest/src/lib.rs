//! `lineage-ingest` turns native audit-log bytes into the event model: one module
//! per source parses its format into [`CredentialUse`]s and the [`LineageFact`]s the
//! record implies. Parsing never panics and never drops input: every framed record
//! is either [`Normalized`] or becomes a [`DeadLetter`] with a reason, and the
//! counts add up (`read = normalized + dead_lettered`). Secret values are never
//! deserialized, so they cannot leak past this crate.
//!
//! The live connectors ([`connect`]: S3+SQS, LookupEvents, the Vault/OpenBao socket
//! and file devices, the GitHub and Entra APIs, a delivery directory) live here too;
//! what they hand out is normalized through the same [`parse_bytes`] entry point.
#![warn(missing_docs, unreachable_pub)]

pub mod cloudtrail;
pub mod connect;
pub mod entra;
pub mod files;
pub mod framing;
pub mod github;
mod lenient;
mod time;
pub mod vault;

use std::borrow::Cow;
use std::io::Read;

use lineage_core::{CredentialUse, DeadLetter, LineageFact, Provenance, Source};
use smol_str::SmolStr;

pub use cloudtrail::CloudTrailParser;
pub use entra::EntraParser;
pub use github::GitHubParser;
pub use vault::VaultParser;

/// One record, normalized: the use it describes and the lineage facts it implies.
#[derive(Clone, Debug, PartialEq)]
pub struct Normalized {
    /// The credential use.
    pub use_: CredentialUse,
    /// Lineage facts (usually none).
    pub facts: Vec<LineageFact>,
    /// For sources that log a call twice (Vault/OpenBao writes a request and a
    /// response entry), which half this is; `None` for whole records.
    pub half: Option<Half>,
    /// Indices of raw-record rules (Sigma) that matched this record, filled in by the
    /// stage that evaluates them; empty otherwise.
    pub rule_hits: Vec<u32>,
}

/// One half of a call logged as a request entry and a response entry.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Half {
    /// The request entry of the call with this id.
    Request(SmolStr),
    /// The response entry of the call with this id.
    Response(SmolStr),
}

impl Normalized {
    /// A whole record.
    pub fn whole(use_: CredentialUse, facts: Vec<LineageFact>) -> Self {
        Self {
            use_,
            facts,
            half: None,
            rule_hits: Vec::new(),
        }
    }
}

/// Joins request and response halves of the same call into one use: a request whose
/// response is present is dropped (the response entry repeats the request and adds
/// the outcome and any issued token); a request without a response stays, as the
/// only record of that call. Returns how many requests were folded into responses.
pub fn join_request_response(records: &mut Vec<Normalized>) -> u64 {
    let responses: std::collections::HashSet<SmolStr> = records
        .iter()
        .filter_map(|r| match &r.half {
            Some(Half::Response(id)) => Some(id.clone()),
            _ => None,
        })
        .collect();
    if responses.is_empty() {
        return 0;
    }
    let before = records.len();
    records.retain(|r| !matches!(&r.half, Some(Half::Request(id)) if responses.contains(id)));
    (before - records.len()) as u64
}

/// Why a record was rejected. The message goes into the dead letter verbatim.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ParseError {
    /// The bytes are not valid JSON.
    #[error("invalid JSON: {0}")]
    InvalidJson(String),
    /// Valid JSON, but not a record of this source.
    #[error("{0}")]
    NotARecord(String),
    /// A field every record of this source carries is missing.
    #[error("required field `{0}` is missing")]
    MissingField(&'static str),
    /// A field has a value that cannot be used.
    #[error("field `{0}` {1}")]
    InvalidField(&'static str, String),
    /// The record is larger than the configured limit.
    #[error("record is {0} bytes, over the {1}-byte limit (max_record_bytes)")]
    TooLarge(usize, usize),
    /// The input could not be framed into records (truncated, garbage between records).
    #[error("{0}")]
    Framing(String),
    /// The compressed input is corrupt or truncated.
    #[error("{0}")]
    Decompression(String),
}

/// A parser of one source's native record format.
pub trait SourceParser: Send + Sync {
    /// The source it parses.
    fn source(&self) -> Source;
    /// Top-level keys whose array value holds the records in envelope files.
    fn envelope_keys(&self) -> &'static [&'static str];
    /// Parses one record's bytes.
    fn parse_record(&self, bytes: &[u8], provenance: Provenance) -> Result<Normalized, ParseError>;
    /// Parses the record at the start of `bytes` (more input may follow it) and
    /// returns the outcome with the record's length, as [`SourceParser::parse_record`]
    /// would on exactly those bytes. `None` when the record cannot be read this way
    /// (it is then framed by scanning and parsed with `parse_record`, which reports
    /// why). Lets array files be parsed in one pass instead of scanned, then parsed.
    fn parse_record_prefix(
        &self,
        bytes: &[u8],
        provenance: Provenance,
    ) -> Option<(Result<Normalized, ParseError>, usize)> {
        let _ = (bytes, provenance);
        None
    }
    /// [`SourceParser::parse_record_prefix`] on input already known to be UTF-8 (the
    /// whole buffer was checked once), so a parser can skip checking each string.
    fn parse_record_prefix_str(
        &self,
        text: &str,
        provenance: Provenance,
    ) -> Option<(Result<Normalized, ParseError>, usize)> {
        self.parse_record_prefix(text.as_bytes(), provenance)
    }
}

/// The parser for a source.
pub fn parser_for(source: Source) -> Option<&'static dyn SourceParser> {
    match source {
        Source::CloudTrail => Some(&CloudTrailParser),
        Source::Entra => Some(&EntraParser),
        Source::GitHub => Some(&GitHubParser),
        Source::Vault => Some(&VaultParser),
        Source::Unknown => None,
    }
}

/// Limits applied while parsing.
#[derive(Clone, Copy, Debug)]
pub struct ParseLimits {
    /// Records larger than this are dead-lettered (CloudTrail's own limit is 256 KiB per event).
    pub max_record_bytes: usize,
}

impl Default for ParseLimits {
    fn default() -> Self {
        Self {
            max_record_bytes: 1024 * 1024,
        }
    }
}

/// Counts of one parse, which always satisfy `read = normalized + dead_lettered`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ParseCounts {
    /// Records (or unframeable fragments) read.
    pub read: u64,
    /// Records normalized.
    pub normalized: u64,
    /// Records dead-lettered.
    pub dead_lettered: u64,
}

impl std::ops::AddAssign for ParseCounts {
    fn add_assign(&mut self, o: Self) {
        self.read += o.read;
        self.normalized += o.normalized;
        self.dead_lettered += o.dead_lettered;
    }
}

/// Decompresses gzip input (detected by magic bytes, not by name). On corruption or
/// truncation returns what was decoded before the error plus the error text, so the
/// complete records before the damage are still processed.
pub fn decompress(bytes: &[u8]) -> (Cow<'_, [u8]>, Option<String>) {
    if !is_gzip(bytes) {
        return (Cow::Borrowed(bytes), None);
    }
    let mut out = Vec::new();
    let error = gunzip_into(bytes, &mut out);
    (Cow::Owned(out), error)
}

/// [`decompress`] into a caller's buffer (cleared first), so a worker that reads
/// many files reuses one allocation instead of faulting in fresh memory per file.
/// Returns the decompressed bytes (`bytes` itself when it is not gzip).
pub fn decompress_into<'a>(bytes: &'a [u8], buf: &'a mut Vec<u8>) -> (&'a [u8], Option<String>) {
    if !is_gzip(bytes) {
        return (bytes, None);
    }
    let error = gunzip_into(bytes, buf);
    (buf.as_slice(), error)
}

fn is_gzip(bytes: &[u8]) -> bool {
    bytes.len() >= 2 && bytes[0] == 0x1f && bytes[1] == 0x8b
}

/// The most a gzip input may inflate to: 1 GiB, and at most
/// [`MAX_INFLATION_RATIO`] times its compressed size (past 64 MiB). CloudTrail
/// delivery files inflate about 10–20 times; a decompression bomb (a gigabyte of
/// zeros in a megabyte) stops at the limit instead of exhausting memory.
pub const MAX_DECOMPRESSED_BYTES: u64 = 1 << 30;
/// See [`MAX_DECOMPRESSED_BYTES`].
pub const MAX_INFLATION_RATIO: u64 = 200;

fn inflation_limit(compressed: usize) -> u64 {
    (compressed as u64)
        .saturating_mul(MAX_INFLATION_RATIO)
        .clamp(64 << 20, MAX_DECOMPRESSED_BYTES)
}

/// Gunzips every member of `bytes` into `out` (cleared first); on damage keeps what
/// decoded before it and returns why. Stops at [`inflation_limit`] with the reason.
fn gunzip_into(bytes: &[u8], out: &mut Vec<u8>) -> Option<String> {
    out.clear();
    let limit = inflation_limit(bytes.len());
    // Address space for the whole limit up front: only the pages written become
    // resident, and the buffer never doubles by copying (a bomb that grew it 128 →
    // 256 MiB held both, as the allocator keeps freed pages until the kernel wants
    // them). A reused buffer keeps its capacity, so this is paid once per worker.
    let need = limit as usize + 1;
    if out.capacity() < need {
        // A fresh buffer rather than `reserve`: growing would copy the old one.
        *out = Vec::with_capacity(need);
    }
    // `bufread`: the input is already in memory, so it is read in place rather than
    // copied through a `BufReader` first.
    let decoder = flate2::bufread::MultiGzDecoder::new(bytes);
    let result = decoder.take(limit + 1).read_to_end(out);
    if out.len() as u64 > limit {
        out.truncate(limit as usize);
        return Some(format!(
            "gzip input of {} bytes inflates past {limit} bytes ({MAX_INFLATION_RATIO}x its size, or {MAX_DECOMPRESSED_BYTES} bytes): a decompression bomb or an archive too large to read whole; the records after the limit are not read",
            bytes.len()
        ));
    }
    result.err().map(|e| {
        format!(
            "gzip stream is corrupt or truncated after {} decompressed bytes: {e}",
            out.len()
        )
    })
}

/// Parses a whole buffer (a file's contents, already decompressed) of one source,
/// calling `emit` once per record with its normalized form or its dead letter.
pub fn parse_bytes(
    parser: &dyn SourceParser,
    bytes: &[u8],
    origin: &str,
    limits: ParseLimits,
    mut emit: impl FnMut(Result<Normalized, DeadLetter>),
) -> ParseCounts {
    parse_bytes_with_raw(parser, bytes, origin, limits, |result, _raw| emit(result))
}

/// [`parse_bytes`], also handing `emit` each record's raw bytes (for rules that
/// match the record as the source wrote it, such as Sigma).
pub fn parse_bytes_with_raw(
    parser: &dyn SourceParser,
    bytes: &[u8],
    origin: &str,
    limits: ParseLimits,
    emit: impl FnMut(Result<Normalized, DeadLetter>, &[u8]),
) -> ParseCounts {
    let mut visitor = ParseVisitor {
        parser,
        // One UTF-8 check of the whole buffer (fast on ASCII) instead of one per string.
        text: std::str::from_utf8(bytes).ok(),
        source: parser.source(),
        path: SmolStr::new(origin),
        limits,
        counts: ParseCounts::default(),
        emit,
    };
    framing::visit_frames(bytes, parser.envelope_keys(), &mut visitor);
    visitor.counts
}

/// Parses frames as the framer finds them, and array elements in one pass where the
/// parser can ([`SourceParser::parse_record_prefix`]).
struct ParseVisitor<'p, E> {
    parser: &'p dyn SourceParser,
    /// The buffer as text, when it is valid UTF-8.
    text: Option<&'p str>,
    source: Source,
    path: SmolStr,
    limits: ParseLimits,
    counts: ParseCounts,
    emit: E,
}

impl<E: FnMut(Result<Normalized, DeadLetter>, &[u8])> ParseVisitor<'_, E> {
    fn provenance(&self, n: u64) -> Provenance {
        Provenance::File {
            path: self.path.clone(),
            record: n,
        }
    }

    fn deliver(&mut self, result: Result<Normalized, DeadLetter>, raw: &[u8]) {
        self.counts.read += 1;
        match &result {
            Ok(_) => self.counts.normalized += 1,
            Err(_) => self.counts.dead_lettered += 1,
        }
        (self.emit)(result, raw);
    }
}

impl<'a, E: FnMut(Result<Normalized, DeadLetter>, &[u8])> framing::FrameVisitor<'a>
    for ParseVisitor<'_, E>
{
    fn array_element(&mut self, n: u64, rest: &'a [u8]) -> Option<usize> {
        let provenance = self.provenance(n);
        // `rest` runs to the end of the buffer, so its text is the buffer's from its offset.
        let text = self.text.and_then(|t| {
            let offset = (rest.as_ptr() as usize).checked_sub(t.as_ptr() as usize)?;
            t.get(offset..).filter(|s| s.len() == rest.len())
        });
        let (result, len) = match text {
            Some(text) => self
                .parser
                .parse_record_prefix_str(text, provenance.clone())?,
            None => self.parser.parse_record_prefix(rest, provenance.clone())?,
        };
        if len > self.limits.max_record_bytes {
            // Framed and refused by the usual path, with its reason.
            return None;
        }
        let record = &rest[..len];
        let source = self.source;
        let result = result.map_err(|e| DeadLetter::new(source, e.to_string(), provenance, record));
        self.deliver(result, record);
        Some(len)
    }

    fn frame(&mut self, frame: framing::Frame<'a>) {
        let source = self.source;
        match frame {
            framing::Frame::Record(n, record) => {
                let provenance = self.provenance(n);
                let result = if record.len() > self.limits.max_record_bytes {
                    let err = ParseError::TooLarge(record.len(), self.limits.max_record_bytes);
                    Err(DeadLetter::new(source, err.to_string(), provenance, record))
                } else {
                    self.parser
                        .parse_record(record, provenance.clone())
                        .map_err(|e| DeadLetter::new(source, e.to_string(), provenance, record))
                };
                self.deliver(result, record);
            }
            framing::Frame::Broken(n, fragment, why) => {
                let dead = DeadLetter::new(
                    source,
                    ParseError::Framing(why).to_string(),
                    Provenance::file(&self.path, n),
                    fragment,
                );
                self.deliver(Err(dead), fragment);
            }
        }
    }

    fn count(&self) -> u64 {
        self.counts.read
    }
}

/// Every source's envelope keys: how to frame a file whose source is not known.
pub const ENVELOPE_KEYS: &[&str] = &["Records", "records", "value"];

/// The dead letters of a (decompressed) file whose source could not be told: one
/// per record it frames into, under [`Source::Unknown`], so a file of 48 records
/// nobody recognised counts 48. The reason says what to do (`hint`: how to name
/// the source where this file was read); UTF-16 input is named as such.
pub fn unknown_source_dead_letters(bytes: &[u8], origin: &str, hint: &str) -> Vec<DeadLetter> {
    let reason = if bytes.starts_with(&[0xFF, 0xFE]) || bytes.starts_with(&[0xFE, 0xFF]) {
        "UTF-16 input (a Windows or PowerShell export): convert it to UTF-8 \
         (`iconv -f UTF-16 -t UTF-8`) and read it again"
            .to_owned()
    } else {
        format!(
            "could not tell which source wrote this record (no CloudTrail, Entra, GitHub or \
             Vault field names in the file's first 64 KiB); {hint}"
        )
    };
    framing::frames(bytes, ENVELOPE_KEYS)
        .into_iter()
        .map(|frame| {
            let (n, record) = match frame {
                framing::Frame::Record(n, b) | framing::Frame::Broken(n, b, _) => (n, b),
            };
            DeadLetter::new(
                Source::Unknown,
                reason.clone(),
                Provenance::file(origin, n),
                record,
            )
        })
        .collect()
}

/// Guesses the source of a buffer from the field names of its first record.
pub fn sniff_source(bytes: &[u8]) -> Option<Source> {
    sniff_exact(bytes).or_else(|| sniff_any_case(bytes))
}

/// Exports whose keys changed case: CloudTrail from a data lake (Athena/Glue
/// lower-case every column: `eventid`, `eventsource`, `useridentity`), which the
/// CloudTrail parser reads under those names too; Entra with capitalised keys
/// (`Category`, `CreatedDateTime`, `OperationName`: Log Analytics and some SIEM
/// exports), which the Entra parser reads whatever their case, or records holding
/// little more than `time` and a `category` that names an Entra log.
fn sniff_any_case(bytes: &[u8]) -> Option<Source> {
    let head = bytes[..bytes.len().min(64 * 1024)].to_ascii_lowercase();
    let has = |needle: &[u8]| memchr::memmem::find(&head, needle).is_some();
    if has(b"\"eventsource\"") && has(b"\"eventname\"") {
        return Some(Source::CloudTrail);
    }
    let entra_key = has(b"\"appid\"")
        || has(b"\"serviceprincipalid\"")
        || has(b"\"activitydisplayname\"")
        || has(b"\"operationname\"")
        || has(b"\"createddatetime\"");
    let entra_category = has(b"\"category\"")
        && (has(b"signinlogs\"") || has(b"\"auditlogs\"") || has(b"\"provisioninglogs\""));
    (entra_key || entra_category).then_some(Source::Entra)
}

fn sniff_exact(bytes: &[u8]) -> Option<Source> {
    let head = &bytes[..bytes.len().min(64 * 1024)];
    let has = |needle: &[u8]| memchr::memmem::find(head, needle).is_some();
    if has(b"\"eventSource\"") && has(b"\"eventName\"") {
        Some(Source::CloudTrail)
    } else if has(b"\"hashed_token\"")
        || has(b"\"_document_id\"")
        || has(b"\"programmatic_access_type\"")
    {
        Some(Source::GitHub)
    } else if has(b"\"request\"") && (has(b"\"auth\"") || has(b"hmac-sha256")) {
        Some(Source::Vault)
    } else if has(b"\"appId\"")
        || has(b"\"servicePrincipalId\"")
        || has(b"\"activityDisplayName\"")
        || has(b"\"operationName\"")
    {
        Some(Source::Entra)
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    #[test]
    fn a_decompression_bomb_stops_at_the_limit_with_the_reason() {
        // 256 MiB of zeros in about 256 KiB of gzip.
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
        let zeros = vec![0u8; 1 << 20];
        for _ in 0..256 {
            gz.write_all(&zeros).unwrap();
        }
        let bomb = gz.finish().unwrap();
        assert!(bomb.len() < 2 << 20, "{}", bomb.len());
        let (out, err) = decompress(&bomb);
        let limit = inflation_limit(bomb.len());
        assert_eq!(out.len() as u64, limit);
        assert!(limit < 256 << 20);
        assert!(err.unwrap().contains("decompression bomb"));
        // An ordinary file inflates whole.
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        gz.write_all(br#"{"Records":[]}"#).unwrap();
        let small = gz.finish().unwrap();
        let (out, err) = decompress(&small);
        assert_eq!(&out[..], br#"{"Records":[]}"#);
        assert!(err.is_none());
    }
}
