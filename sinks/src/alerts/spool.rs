//! A bounded, append-only JSON-lines file of alerts waiting to be re-sent.

use std::fs::OpenOptions;
use std::io::{self, BufRead, BufReader, Write};
use std::path::{Path, PathBuf};

/// Why an alert could not be spooled.
#[derive(Debug)]
pub(crate) enum SpoolError {
    /// The line would take the file past its limit.
    Full {
        /// Bytes in the file now.
        bytes: u64,
        /// The limit.
        max_bytes: u64,
    },
    /// Reading or writing the file failed.
    Io(io::Error),
}

impl std::fmt::Display for SpoolError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SpoolError::Full { bytes, max_bytes } => {
                write!(f, "spool is full ({bytes} of {max_bytes} bytes)")
            }
            SpoolError::Io(e) => write!(f, "{e}"),
        }
    }
}

/// One sink's spool: `<dir>/<name>.jsonl`, one line per alert, oldest first.
#[derive(Debug)]
pub(crate) struct Spool {
    path: PathBuf,
    max_bytes: u64,
    bytes: u64,
    pending: u64,
}

impl Spool {
    /// Opens (without creating) the spool at `path` and counts what a previous run left.
    pub(crate) fn open(path: PathBuf, max_bytes: u64) -> io::Result<Self> {
        let (bytes, pending) = match std::fs::File::open(&path) {
            Ok(f) => {
                let bytes = f.metadata()?.len();
                let mut pending = 0;
                for line in BufReader::new(f).split(b'\n') {
                    if !line?.iter().all(u8::is_ascii_whitespace) {
                        pending += 1;
                    }
                }
                (bytes, pending)
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => (0, 0),
            Err(e) => return Err(e),
        };
        Ok(Self {
            path,
            max_bytes,
            bytes,
            pending,
        })
    }

    pub(crate) fn path(&self) -> &Path {
        &self.path
    }

    /// Lines waiting.
    pub(crate) fn pending(&self) -> u64 {
        self.pending
    }

    /// Appends one line (without its `\n`) and syncs it to disk; refuses when full.
    pub(crate) fn append(&mut self, line: &[u8]) -> Result<(), SpoolError> {
        let len = line.len() as u64 + 1;
        if self.bytes.saturating_add(len) > self.max_bytes {
            return Err(SpoolError::Full {
                bytes: self.bytes,
                max_bytes: self.max_bytes,
            });
        }
        let mut buf = Vec::with_capacity(line.len() + 1);
        buf.extend_from_slice(line);
        buf.push(b'\n');
        let mut f = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.path)
            .map_err(SpoolError::Io)?;
        f.write_all(&buf).map_err(SpoolError::Io)?;
        f.sync_data().map_err(SpoolError::Io)?;
        self.bytes += len;
        self.pending += 1;
        Ok(())
    }

    /// Every waiting line, oldest first (blank lines skipped).
    pub(crate) fn load(&self) -> io::Result<Vec<Vec<u8>>> {
        let f = match std::fs::File::open(&self.path) {
            Ok(f) => f,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(e),
        };
        let mut lines = Vec::new();
        for line in BufReader::new(f).split(b'\n') {
            let line = line?;
            if !line.iter().all(u8::is_ascii_whitespace) {
                lines.push(line);
            }
        }
        Ok(lines)
    }

    /// Replaces the spool by `lines` atomically (temporary file, sync, rename); an
    /// empty spool is removed.
    pub(crate) fn rewrite(&mut self, lines: &[Vec<u8>]) -> io::Result<()> {
        if lines.is_empty() {
            match std::fs::remove_file(&self.path) {
                Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(e),
                _ => {}
            }
            self.bytes = 0;
            self.pending = 0;
            return Ok(());
        }
        let mut tmp = self.path.as_os_str().to_owned();
        tmp.push(".tmp");
        let tmp = PathBuf::from(tmp);
        let mut bytes = 0;
        {
            let mut f = std::fs::File::create(&tmp)?;
            let mut buf = Vec::new();
            for line in lines {
                buf.extend_from_slice(line);
                buf.push(b'\n');
            }
            f.write_all(&buf)?;
            f.sync_all()?;
            bytes += buf.len() as u64;
        }
        std::fs::rename(&tmp, &self.path)?;
        self.bytes = bytes;
        self.pending = lines.len() as u64;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn appends_refuses_when_full_and_rewrites() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.jsonl");
        let mut s = Spool::open(path.clone(), 10).unwrap();
        s.append(b"abcd").unwrap();
        s.append(b"efgh").unwrap();
        assert!(matches!(
            s.append(b"i"),
            Err(SpoolError::Full {
                bytes: 10,
                max_bytes: 10
            })
        ));
        assert_eq!(s.pending(), 2);
        let reopened = Spool::open(path.clone(), 10).unwrap();
        assert_eq!(reopened.pending(), 2);
        assert_eq!(
            reopened.load().unwrap(),
            vec![b"abcd".to_vec(), b"efgh".to_vec()]
        );
        s.rewrite(&[b"efgh".to_vec()]).unwrap();
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "efgh\n");
        s.append(b"ijkl").unwrap();
        s.rewrite(&[]).unwrap();
        assert!(!path.exists());
        assert_eq!(s.pending(), 0);
    }
}
