//! Secret material never leaves the parser. When a value is needed as a stable
//! identifier (a GitHub token, a Vault token without an accessor) it is replaced by
//! a truncated SHA-256 fingerprint; otherwise it is simply dropped.

use sha2::{Digest, Sha256};

/// A stable, non-reversible fingerprint of a secret value: `sha256:` + 16 hex chars.
pub fn fingerprint(secret: &str) -> String {
    let digest = Sha256::digest(secret.as_bytes());
    format!("sha256:{}", hex::encode(&digest[..8]))
}

/// JSON object keys whose values are secret material in the supported log formats.
/// Parsers drop these fields wherever they appear before anything is kept.
pub const SECRET_FIELD_NAMES: &[&str] = &[
    "secretAccessKey",
    "sessionToken",
    "password",
    "secret",
    "clientSecret",
    "token",
    "privateKey",
    "client_token",
    "access_token",
    "refresh_token",
    "id_token",
    "secret_id",
];

/// What a redacted value is replaced with.
pub const REDACTED: &str = "[REDACTED]";

/// Replaces the string value of every secret field ([`is_secret_field`]) in JSON
/// text with [`REDACTED`], without parsing it: works on truncated and broken records
/// too (a value that never closes is redacted to the end). Returns `None` when there
/// was nothing to redact.
pub fn redact_json_text(text: &[u8]) -> Option<Vec<u8>> {
    let mut out: Option<Vec<u8>> = None;
    let mut copied = 0;
    let mut i = 0;
    while i < text.len() {
        if text[i] != b'"' {
            i += 1;
            continue;
        }
        // A string: find its end (skipping escapes).
        let start = i + 1;
        let mut j = start;
        while j < text.len() && text[j] != b'"' {
            j += if text[j] == b'\\' { 2 } else { 1 };
        }
        let end = j.min(text.len());
        let key = &text[start..end];
        i = end + 1;
        // A key is followed by `:` and, for a secret, a string value.
        let mut k = i;
        while k < text.len() && text[k].is_ascii_whitespace() {
            k += 1;
        }
        if k >= text.len() || text[k] != b':' {
            continue;
        }
        k += 1;
        while k < text.len() && text[k].is_ascii_whitespace() {
            k += 1;
        }
        if k >= text.len() || text[k] != b'"' {
            continue;
        }
        let Ok(name) = std::str::from_utf8(key) else {
            continue;
        };
        if !is_secret_field(name) {
            continue;
        }
        let value_start = k + 1;
        let mut v = value_start;
        while v < text.len() && text[v] != b'"' {
            v += if text[v] == b'\\' { 2 } else { 1 };
        }
        let value_end = v.min(text.len());
        let buf = out.get_or_insert_with(|| Vec::with_capacity(text.len()));
        buf.extend_from_slice(&text[copied..value_start]);
        buf.extend_from_slice(REDACTED.as_bytes());
        copied = value_end;
        i = value_end + 1;
    }
    out.map(|mut buf| {
        buf.extend_from_slice(&text[copied.min(text.len())..]);
        buf
    })
}

/// True when a JSON key names secret material (case-insensitive exact match).
pub fn is_secret_field(key: &str) -> bool {
    SECRET_FIELD_NAMES
        .iter()
        .any(|s| s.eq_ignore_ascii_case(key))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fingerprint_is_stable_and_hides_input() {
        let a = fingerprint("ghp_abcdefghijklmnopqrstuvwxyz0123456789");
        assert_eq!(a, fingerprint("ghp_abcdefghijklmnopqrstuvwxyz0123456789"));
        assert!(!a.contains("ghp_"));
        assert_eq!(a.len(), "sha256:".len() + 16);
    }

    #[test]
    fn secret_values_are_redacted_even_in_broken_json() {
        let text = br#"{"credentials":{"accessKeyId":"ASIA1","sessionToken" : "IQoJb3J\"pZ2lu","secretAccessKey":"wJalr"},"n":1}"#;
        let out = String::from_utf8(redact_json_text(text).unwrap()).unwrap();
        assert_eq!(
            out,
            r#"{"credentials":{"accessKeyId":"ASIA1","sessionToken" : "[REDACTED]","secretAccessKey":"[REDACTED]"},"n":1}"#
        );
        let torn = br#"{"auth":{"client_token":"hvs.CAESIJ3"#;
        let out = String::from_utf8(redact_json_text(torn).unwrap()).unwrap();
        assert_eq!(out, r#"{"auth":{"client_token":"[REDACTED]"#);
        assert!(redact_json_text(br#"{"token_id":123,"name":"token"}"#).is_none());
        assert!(redact_json_text(b"not json at all").is_none());
    }

    #[test]
    fn secret_fields_are_recognised() {
        assert!(is_secret_field("SessionToken"));
        assert!(is_secret_field("secretAccessKey"));
        assert!(!is_secret_field("accessKeyId"));
    }
}
