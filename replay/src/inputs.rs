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
