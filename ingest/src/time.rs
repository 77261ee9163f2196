//! One lenient reader for the times every source writes, and the shapes exports
//! turn them into: RFC 3339 (`2025-10-15T18:45:47Z`, offsets, fractions), a space
//! for the `T` (`2025-10-15 18:45:47.048000000`, as SIEM and data-lake exports
//! write them), and no zone at all. **A time without a zone is UTC**: every
//! source here writes UTC, and an export that drops the `Z` does not move it.

use chrono::{DateTime, NaiveDateTime, Utc};

/// Reads `text` as a time (see the module doc); `None` when it is none of those.
pub(crate) fn parse_time(text: &str) -> Option<DateTime<Utc>> {
    let text = text.trim();
    // Four digits of year first: chrono's `%Y` would also take `+026` or `-1`.
    if !text.as_bytes().get(..4)?.iter().all(u8::is_ascii_digit) {
        return None;
    }
    if let Ok(t) = DateTime::parse_from_rfc3339(text) {
        return Some(t.with_timezone(&Utc));
    }
    // A space for the `T`, with a zone (`+00:00`, `+0000`, `Z`).
    for format in [
        "%Y-%m-%d %H:%M:%S%.f%:z",
        "%Y-%m-%d %H:%M:%S%.f%z",
        "%Y-%m-%d %H:%M:%S%.f %z",
    ] {
        if let Ok(t) = DateTime::parse_from_str(text, format) {
            return Some(t.with_timezone(&Utc));
        }
    }
    let naive = text.strip_suffix(['Z', 'z']).unwrap_or(text);
    ["%Y-%m-%dT%H:%M:%S%.f", "%Y-%m-%d %H:%M:%S%.f"]
        .iter()
        .find_map(|f| NaiveDateTime::parse_from_str(naive, f).ok())
        .map(|t| t.and_utc())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_shape_exports_write_reads_as_the_same_utc_instant() {
        let want = DateTime::parse_from_rfc3339("2025-10-15T18:45:47.048Z")
            .unwrap()
            .with_timezone(&Utc);
        for text in [
            "2025-10-15T18:45:47.048Z",
            "2025-10-15t18:45:47.048z",
            "2025-10-15T20:45:47.048+02:00",
            "2025-10-15 18:45:47.048000000",
            "2025-10-15 18:45:47.048",
            "2025-10-15T18:45:47.048",
            "2025-10-15 18:45:47.048Z",
            "2025-10-15 18:45:47.048+00:00",
            "2025-10-15 18:45:47.048 +0000",
            " 2025-10-15T18:45:47.048Z ",
        ] {
            assert_eq!(parse_time(text), Some(want), "{text}");
        }
        for bad in [
            "",
            "yesterday",
            "2025-13-15 18:45:47",
            "1760553947048",
            "+025-10-15 18:45:47",
        ] {
            assert_eq!(parse_time(bad), None, "{bad}");
        }
    }
}
