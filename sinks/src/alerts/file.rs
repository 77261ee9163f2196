//! A JSON-lines file appended to and rotated by size.

use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};

/// `path`, rotated to `path.1` … `path.<keep>` before a write would pass `max_bytes`.
#[derive(Debug)]
pub(crate) struct RotatingFile {
    path: PathBuf,
    max_bytes: u64,
    keep: u32,
    file: Option<File>,
    size: u64,
}

impl RotatingFile {
    /// Opens `path` for appending, creating it and its directory if missing.
    pub(crate) fn open(path: &Path, max_bytes: u64, keep: u32) -> io::Result<Self> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir)?;
        }
        let file = open_append(path)?;
        let size = file.metadata()?.len();
        Ok(Self {
            path: path.to_owned(),
            max_bytes,
            keep,
            file: Some(file),
            size,
        })
    }

    /// Appends one line (`line` must end with `\n`), rotating first when the file is
    /// not empty and the line would take it past the limit. A line longer than the
    /// limit still goes, alone, into a fresh file.
    pub(crate) fn write_line(&mut self, line: &[u8]) -> io::Result<()> {
        if self.size > 0 && self.size.saturating_add(line.len() as u64) > self.max_bytes {
            self.rotate()?;
        }
        let file = match &mut self.file {
            Some(f) => f,
            None => self.file.insert(open_append(&self.path)?),
        };
        // One write call per line: with O_APPEND a reader never sees two lines interleaved.
        file.write_all(line)?;
        self.size += line.len() as u64;
        Ok(())
    }

    fn rotate(&mut self) -> io::Result<()> {
        self.file = None;
        if self.keep == 0 {
            remove_if_present(&self.path)?;
        } else {
            remove_if_present(&numbered(&self.path, self.keep))?;
            for i in (1..self.keep).rev() {
                rename_if_present(&numbered(&self.path, i), &numbered(&self.path, i + 1))?;
            }
            rename_if_present(&self.path, &numbered(&self.path, 1))?;
        }
        self.file = Some(open_append(&self.path)?);
        self.size = 0;
        Ok(())
    }
}

/// `path.<n>`.
pub(crate) fn numbered(path: &Path, n: u32) -> PathBuf {
    let mut s = path.as_os_str().to_owned();
    s.push(format!(".{n}"));
    PathBuf::from(s)
}

fn open_append(path: &Path) -> io::Result<File> {
    OpenOptions::new().create(true).append(true).open(path)
}

fn remove_if_present(path: &Path) -> io::Result<()> {
    match std::fs::remove_file(path) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
        _ => Ok(()),
    }
}

fn rename_if_present(from: &Path, to: &Path) -> io::Result<()> {
    match std::fs::rename(from, to) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rotates_and_keeps_only_keep_files() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sub/a.jsonl");
        let mut f = RotatingFile::open(&path, 10, 2).unwrap();
        for i in 0..5 {
            f.write_line(format!("line-{i}\n").as_bytes()).unwrap();
        }
        let read = |p: &Path| std::fs::read_to_string(p).unwrap();
        assert_eq!(read(&path), "line-4\n");
        assert_eq!(read(&numbered(&path, 1)), "line-3\n");
        assert_eq!(read(&numbered(&path, 2)), "line-2\n");
        assert!(!numbered(&path, 3).exists());
    }

    #[test]
    fn reopening_appends_and_counts_the_existing_size() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a.jsonl");
        RotatingFile::open(&path, 100, 1)
            .unwrap()
            .write_line(b"0123456789\n")
            .unwrap();
        let mut f = RotatingFile::open(&path, 15, 1).unwrap();
        f.write_line(b"abcdefghij\n").unwrap();
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "abcdefghij\n");
        assert_eq!(
            std::fs::read_to_string(numbered(&path, 1)).unwrap(),
            "0123456789\n"
        );
    }

    #[test]
    fn keep_zero_truncates_instead_of_rotating() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a.jsonl");
        let mut f = RotatingFile::open(&path, 4, 0).unwrap();
        f.write_line(b"abc\n").unwrap();
        f.write_line(b"def\n").unwrap();
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "def\n");
        assert!(!numbered(&path, 1).exists());
    }
}
