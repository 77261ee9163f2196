//! Turning the command line's paths, directories and globs into a file list.

use std::path::{Path, PathBuf};

use crate::ReplayError;

/// File names replay reads from directories: JSON, JSON lines, logs, gzip.
fn is_log_file(path: &Path) -> bool {
    let name = path
        .file_name()
        .and_then(|n| n.to_str())
        .unwrap_or_default()
        .to_ascii_lowercase();
    // CloudTrail digest files describe the log files; they hold no events.
    if name.contains("cloudtrail-digest")
        || path
            .components()
            .any(|c| c.as_os_str() == "CloudTrail-Digest")
    {
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

fn walk(dir: &Path, out: &mut Vec<PathBuf>) -> Result<(), ReplayError> {
    let entries =
        std::fs::read_dir(dir).map_err(|e| ReplayError::ListDir(dir.display().to_string(), e))?;
    let mut paths: Vec<PathBuf> = entries.filter_map(|e| e.ok().map(|e| e.path())).collect();
    paths.sort();
    for p in paths {
        if p.is_dir() {
            walk(&p, out)?;
        } else if is_log_file(&p) {
            out.push(p);
        }
    }
    Ok(())
}

/// Expands inputs into a sorted, de-duplicated list of files. Explicit files are
/// taken whatever their name; directories are walked for log files; anything with
/// `*`, `?` or `[` is a glob.
pub fn expand_inputs(inputs: &[String]) -> Result<Vec<PathBuf>, ReplayError> {
    let mut out = Vec::new();
    for input in inputs {
        if input.contains(['*', '?', '[']) && !Path::new(input).exists() {
            let paths = glob::glob(input)
                .map_err(|e| ReplayError::BadGlob(input.clone(), e.to_string()))?;
            let before = out.len();
            for p in paths.flatten() {
                if p.is_dir() {
                    walk(&p, &mut out)?;
                } else {
                    out.push(p);
                }
            }
            if out.len() == before {
                return Err(ReplayError::EmptyGlob(input.clone()));
            }
            continue;
        }
        let path = PathBuf::from(input);
        if path.is_dir() {
            walk(&path, &mut out)?;
        } else if path.exists() {
            out.push(path);
        } else {
            return Err(ReplayError::MissingInput(input.clone()));
        }
    }
    out.sort();
    out.dedup();
    Ok(out)
}

/// One input file: on local disk or an object in S3.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum InputFile {
    /// A local file.
    Local(PathBuf),
    /// An S3 object.
    S3 {
        /// Bucket name.
        bucket: String,
        /// Object key.
        key: String,
        /// Size in bytes, from the listing.
        size: u64,
    },
}

impl InputFile {
    /// How outputs name the file: its path, or `s3://bucket/key`.
    pub fn name(&self) -> String {
        match self {
            InputFile::Local(p) => p.display().to_string(),
            InputFile::S3 { bucket, key, .. } => format!("s3://{bucket}/{key}"),
        }
    }

    /// The part of the name below the input it was found under, used to order files
    /// the same way whether they were read from disk or from S3.
    fn file_name(&self) -> &str {
        match self {
            InputFile::Local(p) => p.file_name().and_then(|n| n.to_str()).unwrap_or_default(),
            InputFile::S3 { key, .. } => key.rsplit('/').next().unwrap_or(key),
        }
    }

    /// Size in bytes when known without reading (S3 listings; local metadata).
    pub fn size(&self) -> Option<u64> {
        match self {
            InputFile::Local(p) => std::fs::metadata(p).ok().map(|m| m.len()),
            InputFile::S3 { size, .. } => Some(*size),
        }
    }

    /// The earliest event time the file's name promises, in microseconds since the
    /// epoch, before the merge window is subtracted: the delivery time in a CloudTrail
    /// file name (`…_CloudTrail_<region>_20240102T0305Z_<id>.json.gz`), else a date in
    /// the file name (`audit-2024-01-02.log`) or in the directories above it
    /// (`…/2024/01/02/…`). `None` when the name says nothing: such files are read
    /// before any record is released.
    pub fn time_hint(&self) -> Option<i64> {
        let name = self.file_name();
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
        let full = match self {
            InputFile::Local(p) => p.to_string_lossy().replace('\\', "/"),
            InputFile::S3 { key, .. } => key.clone(),
        };
        let parts: Vec<&str> = full.split('/').collect();
        parts.windows(3).rev().find_map(|w| {
            (w[0].len() == 4 && w[1].len() == 2 && w[2].len() == 2)
                .then(|| day(w[0], w[1], w[2]))
                .flatten()
        })
    }
}

/// Splits inputs into local ones and `s3://bucket/prefix` ones.
pub fn split_s3_inputs(inputs: &[String]) -> (Vec<String>, Vec<(String, String)>) {
    let mut local = Vec::new();
    let mut s3 = Vec::new();
    for input in inputs {
        match input.strip_prefix("s3://") {
            Some(rest) => {
                let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
                s3.push((bucket.to_string(), prefix.to_string()));
            }
            None => local.push(input.clone()),
        }
    }
    (local, s3)
}

/// Whether an object key names a log file replay reads (same rule as for directories).
pub(crate) fn is_log_key(key: &str) -> bool {
    is_log_file(Path::new(key))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn local(p: &str) -> InputFile {
        InputFile::Local(PathBuf::from(p))
    }

    #[test]
    fn time_hints_come_from_cloudtrail_names_dates_and_date_directories() {
        let t = |s: &str| {
            chrono::DateTime::parse_from_rfc3339(s)
                .unwrap()
                .timestamp_micros()
        };
        assert_eq!(
            local("x/123456789012_CloudTrail_us-east-1_20240102T0305Z_abcDEF.json.gz").time_hint(),
            Some(t("2024-01-02T03:05:00Z"))
        );
        assert_eq!(
            local("vault/audit-2024-01-02.log").time_hint(),
            Some(t("2024-01-02T00:00:00Z"))
        );
        assert_eq!(
            local("AWSLogs/1/CloudTrail/us-east-1/2024/01/03/file.json").time_hint(),
            Some(t("2024-01-03T00:00:00Z"))
        );
        let s3 = InputFile::S3 {
            bucket: "b".into(),
            key: "AWSLogs/1/CloudTrail/eu-west-1/2024/02/29/x.json.gz".into(),
            size: 1,
        };
        assert_eq!(s3.time_hint(), Some(t("2024-02-29T00:00:00Z")));
        assert_eq!(
            s3.name(),
            "s3://b/AWSLogs/1/CloudTrail/eu-west-1/2024/02/29/x.json.gz"
        );
        assert_eq!(local("logs/github.json").time_hint(), None);
        assert_eq!(local("logs/2024-13-45.json").time_hint(), None);
        assert_eq!(
            local("ünïcödé-2024-01-02.json").time_hint(),
            Some(t("2024-01-02T00:00:00Z"))
        );
    }

    #[test]
    fn s3_inputs_are_split_from_local_ones() {
        let (local, s3) = split_s3_inputs(&[
            "a/b".into(),
            "s3://bucket/AWSLogs/".into(),
            "s3://bare".into(),
        ]);
        assert_eq!(local, vec!["a/b".to_string()]);
        assert_eq!(
            s3,
            vec![
                ("bucket".to_string(), "AWSLogs/".to_string()),
                ("bare".to_string(), String::new())
            ]
        );
    }
}
