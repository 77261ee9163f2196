//! GitHub audit records (being written in this session).

use lineage_core::{Provenance, Source};

use crate::{Normalized, ParseError, SourceParser};

/// The GitHub parser.
#[derive(Debug, Default, Clone, Copy)]
pub struct GitHubParser;

impl SourceParser for GitHubParser {
    fn source(&self) -> Source {
        Source::GitHub
    }

    fn envelope_keys(&self) -> &'static [&'static str] {
        &["value"]
    }

    fn parse_record(
        &self,
        _bytes: &[u8],
        _provenance: Provenance,
    ) -> Result<Normalized, ParseError> {
        Err(ParseError::NotARecord(
            "the GitHub parser is not written yet".into(),
        ))
    }
}
