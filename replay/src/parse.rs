//! Reading one archive input (a local file or an S3 object) and normalizing it.

use lineage_core::Source;
use lineage_detect::sigma::SigmaRules;
use lineage_ingest::ParseLimits;
use lineage_pipeline::normalize::{parse_buffer, parse_file, unreadable, ParsedFile};

use crate::{InputFile, S3Archive};

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
