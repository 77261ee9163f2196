//! Dead letters: input that could not be normalized, kept with its reason and its
//! original bytes so nothing read is ever silently lost.

use base64::Engine;
use serde::{Deserialize, Serialize};

use crate::event::{Provenance, Source};

/// One record that could not be normalized.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct DeadLetter {
    /// The source whose parser rejected it.
    pub source: Source,
    /// Why it was rejected, in words a person can act on.
    pub reason: String,
    /// Where it was read.
    pub provenance: Provenance,
    /// The original bytes as UTF-8 text when they are valid UTF-8.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub original: Option<String>,
    /// The original bytes, base64, when they are not valid UTF-8.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub original_base64: Option<String>,
    /// Length of the original bytes (before any redaction).
    pub original_len: usize,
    /// True when secret values were redacted from the bytes kept (which are then
    /// shorter or longer than `original_len`).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub redacted: bool,
}

impl DeadLetter {
    /// Builds a dead letter, keeping the original bytes as text or base64, with the
    /// string values of known secret fields (`sessionToken`, `secretAccessKey`,
    /// `client_token`, `clientSecret`, `token`, … — [`crate::secret::SECRET_FIELD_NAMES`])
    /// replaced by `[REDACTED]`, found without parsing, so broken and truncated records
    /// are scrubbed too. What is not a known field is kept: the dead-letter output is
    /// still as sensitive as the raw logs, and the sinks write it owner-only.
    pub fn new(
        source: Source,
        reason: impl Into<String>,
        provenance: Provenance,
        bytes: &[u8],
    ) -> Self {
        let redacted = crate::secret::redact_json_text(bytes);
        let bytes_kept = redacted.as_deref().unwrap_or(bytes);
        let (original, original_base64) = match std::str::from_utf8(bytes_kept) {
            Ok(s) => (Some(s.to_owned()), None),
            Err(_) => (
                None,
                Some(base64::engine::general_purpose::STANDARD.encode(bytes_kept)),
            ),
        };
        Self {
            source,
            reason: reason.into(),
            provenance,
            original,
            original_base64,
            original_len: bytes.len(),
            redacted: redacted.is_some(),
        }
    }

    /// Cuts the kept original to at most `max_bytes` (at a character boundary; base64
    /// at a whole 4-character group) when it is longer, and says so in the reason:
    /// for outputs with a size limit (a Kafka message), where a dead letter that
    /// cannot be sent would stop the stage on the same record after every restart.
    /// `original_len` keeps the full length, and the reason carries a SHA-256 of the
    /// bytes kept before the cut, so the record can be found at its source.
    /// Returns whether it cut.
    pub fn truncate_original(&mut self, max_bytes: usize) -> bool {
        use sha2::Digest as _;
        let kept = match (&mut self.original, &mut self.original_base64) {
            (Some(text), _) if text.len() > max_bytes => {
                let digest = sha2::Sha256::digest(text.as_bytes());
                let mut cut = max_bytes;
                while !text.is_char_boundary(cut) {
                    cut -= 1;
                }
                text.truncate(cut);
                Some((cut, digest))
            }
            (None, Some(b64)) if b64.len() > max_bytes => {
                let digest = sha2::Sha256::digest(b64.as_bytes());
                let cut = max_bytes / 4 * 4;
                b64.truncate(cut);
                Some((cut, digest))
            }
            _ => None,
        };
        let Some((cut, digest)) = kept else {
            return false;
        };
        let hex: String = digest.iter().map(|b| format!("{b:02x}")).collect();
        self.reason.push_str(&format!(
            " [original cut to its first {cut} bytes to fit the output's size limit; \
             {} bytes were read; sha256 of the kept text before the cut: {hex}]",
            self.original_len
        ));
        true
    }

    /// The original bytes, decoded back from text or base64.
    pub fn original_bytes(&self) -> Vec<u8> {
        match (&self.original, &self.original_base64) {
            (Some(s), _) => s.as_bytes().to_vec(),
            (None, Some(b)) => base64::engine::general_purpose::STANDARD
                .decode(b)
                .unwrap_or_default(),
            (None, None) => Vec::new(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn non_utf8_bytes_round_trip_through_base64() {
        let bytes = [0xff, 0x00, 0x7b];
        let dl = DeadLetter::new(
            Source::CloudTrail,
            "not JSON",
            Provenance::file("x.json", 1),
            &bytes,
        );
        assert!(dl.original.is_none());
        let json = serde_json::to_string(&dl).unwrap();
        let back: DeadLetter = serde_json::from_str(&json).unwrap();
        assert_eq!(back.original_bytes(), bytes);
    }

    #[test]
    fn an_original_too_large_is_cut_at_a_character_boundary_and_says_so() {
        let text = "é".repeat(1000); // 2 bytes each
        let mut dl = DeadLetter::new(
            Source::Vault,
            "too large",
            Provenance::file("x", 1),
            text.as_bytes(),
        );
        assert!(!dl.truncate_original(5000));
        assert!(dl.truncate_original(101));
        assert_eq!(dl.original.as_deref().unwrap().len(), 100);
        assert_eq!(dl.original_len, 2000);
        assert!(dl
            .reason
            .starts_with("too large [original cut to its first 100 bytes"));
        assert!(dl.reason.contains("2000 bytes were read"), "{}", dl.reason);
        let mut bin = DeadLetter::new(Source::Vault, "x", Provenance::file("x", 1), &[0xff; 300]);
        assert!(bin.truncate_original(99));
        assert_eq!(bin.original_base64.as_deref().unwrap().len(), 96);
        assert!(!bin.original_bytes().is_empty());
    }
}
