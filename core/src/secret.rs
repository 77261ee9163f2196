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
];

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
    fn secret_fields_are_recognised() {
        assert!(is_secret_field("SessionToken"));
        assert!(is_secret_field("secretAccessKey"));
        assert!(!is_secret_field("accessKeyId"));
    }
}
