//! A JSON-lines writer for alerts, dead letters and attributed events.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::Path;

use serde::Serialize;

use crate::SinkError;

/// Writes one JSON document per line to a file or to stdout.
pub struct JsonLinesSink {
    target: String,
    out: Counting<Box<dyn Write + Send>>,
    written: u64,
}

/// A writer that counts the bytes it is given.
struct Counting<W> {
    inner: W,
    bytes: u64,
}

impl<W: Write> Write for Counting<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.bytes += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
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
            out: Counting {
                inner: Box::new(BufWriter::with_capacity(256 * 1024, file)),
                bytes: 0,
            },
            written: 0,
        })
    }

    /// Continues `path` after a checkpoint that had flushed `bytes` bytes holding
    /// `written` records: anything after them (written past the checkpoint before a
    /// crash) is cut off, and new records are appended.
    pub fn resume(path: &Path, bytes: u64, written: u64) -> Result<Self, SinkError> {
        use std::io::{Seek, SeekFrom};
        let target = path.display().to_string();
        let io = |source| SinkError::Io {
            target: target.clone(),
            source,
        };
        let mut file = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(false)
            .open(path)
            .map_err(io)?;
        let len = file.metadata().map_err(io)?.len();
        if len < bytes {
            return Err(io(std::io::Error::new(
                std::io::ErrorKind::UnexpectedEof,
                format!("holds {len} bytes, the checkpoint recorded {bytes}"),
            )));
        }
        file.set_len(bytes).map_err(io)?;
        file.seek(SeekFrom::End(0)).map_err(io)?;
        Ok(Self {
            target: target.clone(),
            out: Counting {
                inner: Box::new(BufWriter::with_capacity(256 * 1024, file)),
                bytes,
            },
            written,
        })
    }

    /// Bytes written so far (flushed or buffered).
    pub fn bytes(&self) -> u64 {
        self.out.bytes
    }

    /// Writes to standard output.
    pub fn stdout() -> Self {
        Self {
            target: "stdout".into(),
            out: Counting {
                inner: Box::new(BufWriter::new(std::io::stdout())),
                bytes: 0,
            },
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
    fn resume_cuts_what_came_after_the_checkpoint() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("x.jsonl");
        let mut sink = JsonLinesSink::create(&path).unwrap();
        sink.write(&serde_json::json!({"a": 1})).unwrap();
        sink.flush().unwrap();
        let (bytes, written) = (sink.bytes(), sink.written());
        sink.write(&serde_json::json!({"lost": true})).unwrap();
        sink.flush().unwrap();
        drop(sink);
        let mut sink = JsonLinesSink::resume(&path, bytes, written).unwrap();
        sink.write(&serde_json::json!({"b": 2})).unwrap();
        sink.flush().unwrap();
        assert_eq!(
            std::fs::read_to_string(&path).unwrap(),
            "{\"a\":1}\n{\"b\":2}\n"
        );
        assert_eq!(sink.written(), 2);
        assert!(JsonLinesSink::resume(&path, 1 << 20, 9).is_err());
    }

    #[test]
    fn unwritable_path_is_an_error_naming_it() {
        let err = JsonLinesSink::create(Path::new("/nonexistent-dir/x.jsonl")).unwrap_err();
        assert!(err.to_string().contains("/nonexistent-dir/x.jsonl"));
    }
}
