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
    /// The file behind `out`, for `sync` (none for stdout).
    file: Option<File>,
}

/// Options that create a file readable and writable by its owner only.
pub fn private_options() -> std::fs::OpenOptions {
    let mut o = std::fs::OpenOptions::new();
    o.create(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        o.mode(0o600);
    }
    o
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
    /// Creates (truncates) `path`, readable by its owner only (outputs hold
    /// identifiers and, for dead letters, raw records).
    pub fn create(path: &Path) -> Result<Self, SinkError> {
        let target = path.display().to_string();
        let file = private_options()
            .write(true)
            .truncate(true)
            .open(path)
            .map_err(|source| SinkError::Io {
                target: target.clone(),
                source,
            })?;
        Self::over(target, file, 0, 0)
    }

    /// Opens `path` to append to it (created when missing): what an earlier run of
    /// a live pipeline wrote stays.
    pub fn append(path: &Path) -> Result<Self, SinkError> {
        let target = path.display().to_string();
        let io = |source| SinkError::Io {
            target: target.clone(),
            source,
        };
        let file = private_options().append(true).open(path).map_err(io)?;
        let len = file.metadata().map_err(io)?.len();
        Self::over(target, file, len, 0)
    }

    fn over(target: String, file: File, bytes: u64, written: u64) -> Result<Self, SinkError> {
        let sync = file.try_clone().map_err(|source| SinkError::Io {
            target: target.clone(),
            source,
        })?;
        Ok(Self {
            target,
            out: Counting {
                inner: Box::new(BufWriter::with_capacity(256 * 1024, file)),
                bytes,
            },
            written,
            file: Some(sync),
        })
    }

    /// Flushes and fsyncs: once this returns, what was written survives a crash.
    pub fn sync(&mut self) -> Result<(), SinkError> {
        self.flush()?;
        if let Some(f) = &self.file {
            f.sync_data().map_err(|source| SinkError::Io {
                target: self.target.clone(),
                source,
            })?;
        }
        Ok(())
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
        let mut file = private_options()
            .write(true)
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
        Self::over(target, file, bytes, written)
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
            file: None,
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

    /// Appends one line that is already JSON (`line` without its newline).
    pub fn write_raw(&mut self, line: &[u8]) -> Result<(), SinkError> {
        self.out
            .write_all(line)
            .and_then(|_| self.out.write_all(b"\n"))
            .map_err(|source| SinkError::Io {
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
