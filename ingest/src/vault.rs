//! Vault audit records (being written in this session).

use lineage_core::{Provenance, Source};

use crate::{Normalized, ParseError, SourceParser};

/// The Vault parser.
#[derive(Debug, Default, Clone, Copy)]
pub struct VaultParser;

impl SourceParser for VaultParser {
    fn source(&self) -> Source {
        Source::Vault
    }

    fn envelope_keys(&self) -> &'static [&'static str] {
        &[]
    }

    fn parse_record(
        &self,
        _bytes: &[u8],
        _provenance: Provenance,
    ) -> Result<Normalized, ParseError> {
        Err(ParseError::NotARecord(
            "the Vault parser is not written yet".into(),
        ))
    }
}
