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

use std::fs::File;
use std::os::unix::fs::{FileExt, MetadataExt};
use std::path::{Path, PathBuf};

use lineage_core::Source;

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
    /// a single longer line is still handed out whole).
    pub max_batch_bytes: usize,
    /// The checkpoint.
    pub checkpoint: CheckpointStore,
}

impl FileTailConfig {
    /// Defaults: Vault, 1 MiB batches.
    pub fn new(path: impl Into<PathBuf>, checkpoint: CheckpointStore) -> Self {
        Self {
            path: path.into(),
            source: Source::Vault,
            max_batch_bytes: 1024 * 1024,
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

    /// Reads complete lines from the open file; returns (lines, start offset, end offset).
    fn read_lines(&mut self, at_rotation: bool) -> Result<(Vec<Vec<u8>>, u64, u64), ConnectError> {
        let max = self.cfg.max_batch_bytes.max(4096);
        let open = self.open.as_mut().expect("open");
        let start = open.offset;
        let mut buf = vec![0u8; max];
        let mut filled = 0;
        loop {
            let n = open
                .file
                .read_at(&mut buf[filled..], start + filled as u64)
                .map_err(io(format!("reading {}", self.cfg.path.display())))?;
            filled += n;
            if n == 0 || filled == buf.len() {
                // A line longer than the buffer: grow until it ends.
                if n > 0 && memchr::memchr(b'\n', &buf[..filled]).is_none() {
                    buf.resize(buf.len() * 2, 0);
                    continue;
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
            .map(<[u8]>::to_vec)
            .collect();
        open.offset = start + end as u64;
        Ok((lines, start, open.offset))
    }
}

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
    fn batch(
        &mut self,
        lines: Vec<Vec<u8>>,
        inode: u64,
        start: u64,
        state: FileTailState,
    ) -> RawBatch {
        let path = self.cfg.path.display().to_string();
        let position = format!("{path} inode {inode} bytes {start}..{}", state.offset);
        let id = self.acks.push(state);
        let records = lines
            .into_iter()
            .enumerate()
            .map(|(i, bytes)| RawRecord {
                bytes,
                origin: format!("{path}@{inode}:{start}#{}", i + 1),
            })
            .collect();
        let batch = RawBatch {
            id,
            key: format!("file-{inode}-{start}"),
            source: self.cfg.source,
            records,
            dead_letters: Vec::new(),
            position,
        };
        self.stats.handed_out(&batch);
        batch
    }
}
