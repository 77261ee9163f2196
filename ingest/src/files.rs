//! Which files hold audit logs, and what a file's name says about its time: shared
//! by archive replay (directories, globs, S3 listings) and the live `directory`
//! source, so both read the same files in the same order.

use std::path::Path;

/// File names read from directories: JSON, JSON lines, logs, gzip (CloudTrail
/// digest files are not: they describe log files and hold no events).
pub fn is_log_file(path: &Path) -> bool {
    let name = path
        .file_name()
        .and_then(|n| n.to_str())
        .unwrap_or_default()
        .to_ascii_lowercase();
    if is_cloudtrail_digest(path) {
        return false;
    }
    [
        ".json",
        ".json.gz",
        ".jsonl",
        ".jsonl.gz",
        ".ndjson",
        ".ndjson.gz",
        ".log",
        ".log.gz",
        ".gz",
    ]
    .iter()
    .any(|ext| name.ends_with(ext))
}

/// A CloudTrail digest file (`…_CloudTrail-Digest_…` or under `CloudTrail-Digest/`):
/// it describes the log files and holds no events, so it is not read as a log (the
/// summary counts them as `digest_files`; `lineage verify` reads them).
pub fn is_cloudtrail_digest(path: &Path) -> bool {
    let name = path
        .file_name()
        .and_then(|n| n.to_str())
        .unwrap_or_default()
        .to_ascii_lowercase();
    name.contains("cloudtrail-digest")
        || path
            .components()
            .any(|c| c.as_os_str() == "CloudTrail-Digest")
}

/// The earliest event time a file's name promises, in microseconds since the epoch:
/// the delivery time in a CloudTrail file name
/// (`…_CloudTrail_<region>_20240102T0305Z_<id>.json.gz`), else a date in the file
/// name (`audit-2024-01-02.log`) or in the directories above it (`…/2024/01/02/…`,
/// looked for in `full`, the whole path or key with `/` separators). `None` when the
/// name says nothing.
pub fn time_hint(name: &str, full: &str) -> Option<i64> {
    if let Some(t) = name
        .split('_')
        .find_map(|part| chrono::NaiveDateTime::parse_from_str(part, "%Y%m%dT%H%MZ").ok())
    {
        return Some(t.and_utc().timestamp_micros());
    }
    let day = |y: &str, m: &str, d: &str| {
        let (y, m, d) = (y.parse().ok()?, m.parse().ok()?, d.parse().ok()?);
        chrono::NaiveDate::from_ymd_opt(y, m, d)
            .and_then(|d| d.and_hms_opt(0, 0, 0))
            .map(|t| t.and_utc().timestamp_micros())
    };
    let bytes = name.as_bytes();
    for start in 0..bytes.len().saturating_sub(9) {
        if !name.is_char_boundary(start) {
            continue;
        }
        let s = &name[start..];
        if s.len() >= 10
            && s.is_char_boundary(10)
            && s.as_bytes()[4] == b'-'
            && s.as_bytes()[7] == b'-'
            && s.as_bytes()[..4].iter().all(u8::is_ascii_digit)
        {
            if let Some(t) = day(&s[..4], &s[5..7], &s[8..10]) {
                return Some(t);
            }
        }
    }
    let parts: Vec<&str> = full.split('/').collect();
    parts.windows(3).rev().find_map(|w| {
        (w[0].len() == 4 && w[1].len() == 2 && w[2].len() == 2)
            .then(|| day(w[0], w[1], w[2]))
            .flatten()
    })
}
