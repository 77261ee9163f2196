//! Entra audit records (being written in this session).

use lineage_core::{Provenance, Source};

use crate::{Normalized, ParseError, SourceParser};

/// The Entra parser.
#[derive(Debug, Default, Clone, Copy)]
pub struct EntraParser;

impl SourceParser for EntraParser {
    fn source(&self) -> Source {
        Source::Entra
    }

    fn envelope_keys(&self) -> &'static [&'static str] {
        &["records", "value"]
    }

    fn parse_record(
        &self,
        _bytes: &[u8],
        _provenance: Provenance,
    ) -> Result<Normalized, ParseError> {
        Err(ParseError::NotARecord(
            "the Entra parser is not written yet".into(),
        ))
    }
}
