//! Tails a JSON-lines file (the Vault/OpenBao `file` audit device) and follows its
//! rotation, with a byte-offset checkpoint. Only complete lines (ending in `\n`) are
//! handed out; a partial last line waits for the rest.
//!
//! * **Checkpoint** (`state`): `{"path", "inode", "offset", "size"}` = the file
//!   identity (inode) and the byte offset after the last acked line, plus the file's
//!   size then.
//! * **Rename + create** (logrotate `create`, or `mv audit.log audit.log.1` followed
//!   by `SIGHUP` so Vault/OpenBao reopens its file): when the current file is read to
//!   its end and the path now names another inode, the old file is finished (a final
//!   line without `\n` is handed out too) and the new one is read from offset 0. On a
//!   restart whose checkpoint names an inode the path no longer has, the rotated
//!   file is looked up by inode among the files in the same directory, finished from
//!   the checkpoint offset, then the current file is read from its start.
//! * **Copytruncate**: the same inode shrinking below the read offset means it was
//!   truncated: reading restarts at 0 (counted as `skipped.truncated`). Lines written
//!   between the copy and the truncation that the tailer had not read yet are only in
//!   the copy (an inherent gap of copytruncate; prefer rename + SIGHUP).
//! * The batch key is `file-<inode>-<start offset>`: a re-delivery after a crash
//!   reads the same bytes.
//! * **Bounded lines**: a line longer than `max_line_bytes` is never held whole: once
//!   it ends, it is handed out as a dead letter with its length and first bytes
//!   (scanning past it reads in small chunks).

use std::fs::File;
use std::os::unix::fs::{FileExt, MetadataExt};
use std::path::{Path, PathBuf};

use lineage_core::{DeadLetter, Provenance, Source};

use super::{
    AckQueue, BatchId, CheckpointStore, ConnectError, Connector, ConnectorStats, RawBatch,
    RawRecord,
};

/// Settings of the file tailer.
#[derive(Clone, Debug)]
pub struct FileTailConfig {
    /// The file to follow.
    pub path: PathBuf,
    /// The source its lines belong to (Vault for the audit device).
    pub source: Source,
    /// Largest batch, bytes (a batch ends at the last complete line within it;
    /// a single longer line is still handed out whole, up to `max_line_bytes`).
    pub max_batch_bytes: usize,
    /// Longest line handed out; a longer one becomes a dead letter.
    pub max_line_bytes: usize,
    /// The checkpoint.
    pub checkpoint: CheckpointStore,
}

impl FileTailConfig {
    /// Defaults: Vault, 1 MiB batches, 4 MiB lines.
    pub fn new(path: impl Into<PathBuf>, checkpoint: CheckpointStore) -> Self {
        Self {
            path: path.into(),
            source: Source::Vault,
            max_batch_bytes: 1024 * 1024,
            max_line_bytes: 4 * 1024 * 1024,
            checkpoint,
        }
    }
}

/// The checkpoint state.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct FileTailState {
    /// The path followed (informational).
    pub path: String,
    /// Inode of the file the offset belongs to.
    pub inode: u64,
    /// Byte offset after the last delivered line.
    pub offset: u64,
    /// File size when the offset was taken.
    pub size: u64,
}

struct Open {
    file: File,
    inode: u64,
    offset: u64,
    /// Opened from a rotated sibling on restart: the path is read once this is done.
    rotated: bool,
}

/// The file tailer (see the module doc).
pub struct FileTailConnector {
    cfg: FileTailConfig,
    open: Option<Open>,
    resume: Option<FileTailState>,
    acks: AckQueue<FileTailState>,
    stats: ConnectorStats,
}

fn io(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> ConnectError {
    let what = what.into();
    move |e| ConnectError::Io(what, e)
}

/// A file in `dir` whose inode is `inode`.
fn find_by_inode(dir: &Path, inode: u64) -> Option<PathBuf> {
    std::fs::read_dir(dir)
        .ok()?
        .filter_map(Result::ok)
        .find(|e| {
            e.metadata()
                .map(|m| m.ino() == inode && m.is_file())
                .unwrap_or(false)
        })
        .map(|e| e.path())
}

impl FileTailConnector {
    /// Loads the checkpoint; the file is opened on the first poll (it may not exist yet).
    pub fn new(cfg: FileTailConfig) -> Result<Self, ConnectError> {
        let resume = cfg.checkpoint.load::<FileTailState>()?;
        Ok(Self {
            cfg,
            open: None,
            resume,
            acks: AckQueue::default(),
            stats: ConnectorStats::default(),
        })
    }

    fn path_inode(&self) -> Option<u64> {
        std::fs::metadata(&self.cfg.path).ok().map(|m| m.ino())
    }

    /// Opens the file to read: the checkpoint's (possibly rotated) file, else the path.
    fn open_file(&mut self) -> Result<bool, ConnectError> {
        if let Some(cp) = self.resume.take() {
            let dir = self
                .cfg
                .path
                .parent()
                .filter(|d| !d.as_os_str().is_empty())
                .unwrap_or(Path::new("."))
                .to_owned();
            let (candidate, rotated) = if self.path_inode() == Some(cp.inode) {
                (Some(self.cfg.path.clone()), false)
            } else {
                (find_by_inode(&dir, cp.inode), true)
            };
            match candidate {
                Some(p) => {
                    let file = File::open(&p).map_err(io(format!("opening {}", p.display())))?;
                    let size = file.metadata().map_err(io("stat"))?.len();
                    let offset = if size < cp.offset {
                        self.stats.skip("truncated");
                        tracing::warn!(path = %p.display(), "file shrank below the checkpoint offset (truncated); reading from its start");
                        0
                    } else {
                        cp.offset
                    };
                    self.open = Some(Open {
                        file,
                        inode: cp.inode,
                        offset,
                        rotated,
                    });
                    return Ok(true);
                }
                None => {
                    self.stats.skip("rotated_file_gone");
                    tracing::warn!(path = %self.cfg.path.display(), inode = cp.inode, "the checkpoint's file is gone (rotated and deleted?); lines after its offset may be lost; reading the current file from its start");
                }
            }
        }
        match File::open(&self.cfg.path) {
            Ok(file) => {
                let inode = file.metadata().map_err(io("stat"))?.ino();
                self.open = Some(Open {
                    file,
                    inode,
                    offset: 0,
                    rotated: false,
                });
                Ok(true)
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(false),
            Err(e) => Err(io(format!("opening {}", self.cfg.path.display()))(e)),
        }
    }

    /// Reads complete lines from the open file; returns (lines, start offset, end
    /// offset). A line over `max_line_bytes` comes back as `Err((first bytes, length))`.
    #[allow(clippy::type_complexity)]
    fn read_lines(
        &mut self,
        at_rotation: bool,
    ) -> Result<(Vec<Result<Vec<u8>, (Vec<u8>, u64)>>, u64, u64), ConnectError> {
        let max = self.cfg.max_batch_bytes.max(4096);
        let cap = self.cfg.max_line_bytes.max(CUT_PREFIX);
        let what = format!("reading {}", self.cfg.path.display());
        let open = self.open.as_mut().expect("open");
        let start = open.offset;
        let mut buf = vec![0u8; max.min(cap)];
        let mut filled = 0;
        loop {
            let n = open
                .file
                .read_at(&mut buf[filled..], start + filled as u64)
                .map_err(io(what.clone()))?;
            filled += n;
            if n == 0 || filled == buf.len() {
                // A line longer than the buffer: grow until it ends, up to the cap.
                if n > 0 && memchr::memchr(b'\n', &buf[..filled]).is_none() {
                    if buf.len() < cap {
                        buf.resize((buf.len() * 2).min(cap), 0);
                        continue;
                    }
                    // Over the cap: find where it ends without holding it.
                    let prefix = buf[..CUT_PREFIX].to_vec();
                    let mut at = start + filled as u64;
                    let mut chunk = vec![0u8; 64 * 1024];
                    loop {
                        let got = open
                            .file
                            .read_at(&mut chunk, at)
                            .map_err(io(what.clone()))?;
                        if got == 0 {
                            if !at_rotation {
                                // Not ended yet: wait for the rest.
                                return Ok((Vec::new(), start, start));
                            }
                            open.offset = at;
                            return Ok((vec![Err((prefix, at - start))], start, at));
                        }
                        if let Some(i) = memchr::memchr(b'\n', &chunk[..got]) {
                            let end = at + i as u64;
                            open.offset = end + 1;
                            return Ok((vec![Err((prefix, end - start))], start, end + 1));
                        }
                        at += got as u64;
                    }
                }
                break;
            }
        }
        let data = &buf[..filled];
        let mut end = match memchr::memrchr(b'\n', data) {
            Some(i) => i + 1,
            None => 0,
        };
        if at_rotation && end < data.len() {
            // The old file will not grow any more: its unterminated tail is a record too.
            end = data.len();
        }
        let lines = data[..end]
            .split(|&b| b == b'\n')
            .map(|l| l.strip_suffix(b"\r").unwrap_or(l))
            .filter(|l| !l.iter().all(u8::is_ascii_whitespace))
            .map(|l| Ok(l.to_vec()))
            .collect();
        open.offset = start + end as u64;
        Ok((lines, start, open.offset))
    }
}

/// How much of an over-long line its dead letter keeps.
const CUT_PREFIX: usize = 4096;

impl Connector for FileTailConnector {
    fn poll(&mut self) -> Result<Option<RawBatch>, ConnectError> {
        // At most: current file, then (after rotation or truncation) one more read.
        for _ in 0..3 {
            if self.open.is_none() && !self.open_file()? {
                return Ok(None);
            }
            let (lines, start, end) = self.read_lines(false)?;
            let (inode, size) = {
                let o = self.open.as_ref().expect("open");
                (o.inode, o.file.metadata().map(|m| m.len()).unwrap_or(end))
            };
            if !lines.is_empty() {
                let state = FileTailState {
                    path: self.cfg.path.display().to_string(),
                    inode,
                    offset: end,
                    size,
                };
                return Ok(Some(self.batch(lines, inode, start, state)));
            }
            // Nothing new: rotated, truncated, or just idle?
            let rotated_away = self.open.as_ref().is_some_and(|o| o.rotated)
                || self.path_inode().is_some_and(|i| i != inode);
            if rotated_away {
                // Finish the old file, including an unterminated last line.
                let (lines, start, end) = self.read_lines(true)?;
                tracing::info!(path = %self.cfg.path.display(), old_inode = inode, "file rotated; following the new file");
                self.stats.skip("rotations_followed");
                let old_size = end;
                self.open = None;
                if !lines.is_empty() {
                    let state = FileTailState {
                        path: self.cfg.path.display().to_string(),
                        inode,
                        offset: end,
                        size: old_size,
                    };
                    return Ok(Some(self.batch(lines, inode, start, state)));
                }
                continue;
            }
            if size < end {
                self.stats.skip("truncated");
                tracing::info!(path = %self.cfg.path.display(), "file truncated (copytruncate); reading from its start");
                if let Some(o) = self.open.as_mut() {
                    o.offset = 0;
                }
                continue;
            }
            return Ok(None);
        }
        Ok(None)
    }

    fn ack(&mut self, batch: BatchId) -> Result<(), ConnectError> {
        if let Some(state) = self.acks.ack(batch)? {
            self.cfg.checkpoint.save(&state)?;
        }
        self.stats.acked += 1;
        Ok(())
    }

    fn stats(&self) -> &ConnectorStats {
        &self.stats
    }
}

impl FileTailConnector {
    #[allow(clippy::type_complexity)]
    fn batch(
        &mut self,
        lines: Vec<Result<Vec<u8>, (Vec<u8>, u64)>>,
        inode: u64,
        start: u64,
        state: FileTailState,
    ) -> RawBatch {
        let path = self.cfg.path.display().to_string();
        let position = format!("{path} inode {inode} bytes {start}..{}", state.offset);
        let id = self.acks.push(state);
        let mut records = Vec::new();
        let mut dead_letters = Vec::new();
        for (i, line) in lines.into_iter().enumerate() {
            let origin = format!("{path}@{inode}:{start}#{}", i + 1);
            match line {
                Ok(bytes) => records.push(RawRecord { bytes, origin }),
                Err((prefix, len)) => dead_letters.push(DeadLetter::new(
                    self.cfg.source,
                    format!(
                        "line of {len} bytes is over the {}-byte limit (max_line_bytes); only its first {} bytes are kept here",
                        self.cfg.max_line_bytes,
                        prefix.len()
                    ),
                    Provenance::file(&origin, 0),
                    &prefix,
                )),
            }
        }
        let batch = RawBatch {
            id,
            key: format!("file-{inode}-{start}"),
            source: self.cfg.source,
            records,
            dead_letters,
            position,
        };
        self.stats.handed_out(&batch);
        batch
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    #[test]
    fn an_over_long_line_is_dead_lettered_and_the_next_line_is_read() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit.log");
        let mut f = std::fs::File::create(&path).unwrap();
        f.write_all(b"{\"first\":1}\n{\"big\":\"").unwrap();
        let chunk = vec![b'x'; 1 << 20];
        for _ in 0..10 {
            f.write_all(&chunk).unwrap();
        }
        f.flush().unwrap();
        let mut cfg = FileTailConfig::new(&path, CheckpointStore::ephemeral("vault-file"));
        cfg.max_line_bytes = 1 << 20;
        let mut t = FileTailConnector::new(cfg).unwrap();
        let b = t.poll().unwrap().unwrap();
        assert_eq!(b.records.len(), 1, "the complete first line");
        t.ack(b.id).unwrap();
        // The long line has not ended yet: nothing, and nothing held.
        assert!(t.poll().unwrap().is_none());
        f.write_all(b"\"}\n{\"after\":2}\n").unwrap();
        f.flush().unwrap();
        let b = t.poll().unwrap().unwrap();
        assert!(b.records.is_empty());
        assert_eq!(b.dead_letters.len(), 1);
        let d = &b.dead_letters[0];
        assert!(d.reason.contains("max_line_bytes"), "{}", d.reason);
        assert!(d.reason.contains("10485770 bytes"), "{}", d.reason);
        assert_eq!(d.original_len, CUT_PREFIX);
        t.ack(b.id).unwrap();
        let b = t.poll().unwrap().unwrap();
        assert_eq!(b.records.len(), 1);
        assert_eq!(b.records[0].bytes, br#"{"after":2}"#);
    }
}
