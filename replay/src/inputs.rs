//! Turning the command line's paths, directories and globs into a file list.

use std::path::{Path, PathBuf};

use lineage_ingest::files::{is_cloudtrail_digest, is_log_file};

use crate::ReplayError;

/// The files of a directory tree replay reads, and how many CloudTrail digest files
/// it passed over.
fn walk(dir: &Path, out: &mut Vec<PathBuf>, digests: &mut u64) -> Result<(), ReplayError> {
    let entries =
        std::fs::read_dir(dir).map_err(|e| ReplayError::ListDir(dir.display().to_string(), e))?;
    let mut paths: Vec<PathBuf> = entries.filter_map(|e| e.ok().map(|e| e.path())).collect();
    paths.sort();
    for p in paths {
        if p.is_dir() {
            walk(&p, out, digests)?;
        } else if is_log_file(&p) {
            out.push(p);
        } else if is_cloudtrail_digest(&p) {
            *digests += 1;
        }
    }
    Ok(())
}

/// Expands inputs into a sorted, de-duplicated list of files. Explicit files are
/// taken whatever their name; directories are walked for log files; anything with
/// `*`, `?` or `[` is a glob.
pub fn expand_inputs(inputs: &[String]) -> Result<Vec<PathBuf>, ReplayError> {
    Ok(expand_inputs_counting_digests(inputs)?.0)
}

/// [`expand_inputs`], with the number of CloudTrail digest files the directories and
/// globs held (left out: they hold no events).
pub fn expand_inputs_counting_digests(
    inputs: &[String],
) -> Result<(Vec<PathBuf>, u64), ReplayError> {
    let mut out = Vec::new();
    let mut digests = 0;
    for input in inputs {
        if input.contains(['*', '?', '[']) && !Path::new(input).exists() {
            let paths = glob::glob(input)
                .map_err(|e| ReplayError::BadGlob(input.clone(), e.to_string()))?;
            let before = out.len();
            for p in paths.flatten() {
                if p.is_dir() {
                    walk(&p, &mut out, &mut digests)?;
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
            walk(&path, &mut out, &mut digests)?;
        } else if path.exists() {
            out.push(path);
        } else {
            return Err(ReplayError::MissingInput(input.clone()));
        }
    }
    out.sort();
    out.dedup();
    Ok((out, digests))
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
        let full = match self {
            InputFile::Local(p) => p.to_string_lossy().replace('\\', "/"),
            InputFile::S3 { key, .. } => key.clone(),
        };
        lineage_ingest::files::time_hint(self.file_name(), &full)
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

/// Whether an object key names a CloudTrail digest file.
pub(crate) fn is_digest_key(key: &str) -> bool {
    is_cloudtrail_digest(Path::new(key))
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
