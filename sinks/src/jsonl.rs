//! A JSON-lines writer for alerts, dead letters and attributed events.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::Path;

use serde::Serialize;

use crate::SinkError;

/// Writes one JSON document per line to a file or to stdout.
pub struct JsonLinesSink {
    target: String,
    out: Box<dyn Write + Send>,
    written: u64,
}

impl std::fmt::Debug for JsonLinesSink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JsonLinesSink")
            .field("target", &self.target)
            .field("written", &self.written)
            .finish()
    }
}

impl JsonLinesSink {
    /// Creates (truncates) `path`.
    pub fn create(path: &Path) -> Result<Self, SinkError> {
        let target = path.display().to_string();
        let file = File::create(path).map_err(|source| SinkError::Io {
            target: target.clone(),
            source,
        })?;
        Ok(Self {
            target,
            out: Box::new(BufWriter::with_capacity(256 * 1024, file)),
            written: 0,
        })
    }

    /// Writes to standard output.
    pub fn stdout() -> Self {
        Self {
            target: "stdout".into(),
            out: Box::new(BufWriter::new(std::io::stdout())),
            written: 0,
        }
    }

    /// Appends one record.
    pub fn write<T: Serialize>(&mut self, value: &T) -> Result<(), SinkError> {
        serde_json::to_writer(&mut self.out, value).map_err(|source| SinkError::Serialize {
            target: self.target.clone(),
            source,
        })?;
        self.out.write_all(b"\n").map_err(|source| SinkError::Io {
            target: self.target.clone(),
            source,
        })?;
        self.written += 1;
        Ok(())
    }

    /// Records written so far.
    pub fn written(&self) -> u64 {
        self.written
    }

    /// Flushes buffered output; call before reporting success.
    pub fn flush(&mut self) -> Result<(), SinkError> {
        self.out.flush().map_err(|source| SinkError::Io {
            target: self.target.clone(),
            source,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_one_document_per_line() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("x.jsonl");
        let mut sink = JsonLinesSink::create(&path).unwrap();
        sink.write(&serde_json::json!({"a": 1})).unwrap();
        sink.write(&serde_json::json!({"b": "x\ny"})).unwrap();
        sink.flush().unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        assert_eq!(text.lines().count(), 2);
        assert_eq!(sink.written(), 2);
    }

    #[test]
    fn unwritable_path_is_an_error_naming_it() {
        let err = JsonLinesSink::create(Path::new("/nonexistent-dir/x.jsonl")).unwrap_err();
        assert!(err.to_string().contains("/nonexistent-dir/x.jsonl"));
    }
}
