//! A directory that audit-log files are delivered into (CloudTrail synced from its
//! bucket with `aws s3 sync`, exports another tool drops), followed live: every new
//! log file (the names [`crate::files::is_log_file`] accepts) is read once, whole,
//! and handed out as one [`RawBatch`] of its framed records.
//!
//! * **When a file is read**: once its size and modification time have not changed
//!   for `settle` (a writer that renames a finished file, or a whole directory of
//!   them, into place is read on the first scan after `settle`). Names starting with
//!   `.` (files and directories) and `*.tmp`, `*.part` are where writers stage their
//!   output; they are not read. Ready files are handed out in the order their names
//!   promise in event time ([`crate::files::time_hint`]: CloudTrail delivery times,
//!   dates in names or directories), then by path, so facts tend to arrive before the
//!   uses that depend on them, as in replay.
//! * **Checkpoint**: the relative path and size of every file whose batch was acked.
//!   Acks may come out of order; each one is recorded. A file that changes after it
//!   was read (it grew) is not read again: it is counted as `changed_after_read`,
//!   since reading it again would repeat its records. Append-only logs belong to the
//!   `vault-file` tail instead. Entries of files that no longer exist are dropped
//!   from the checkpoint on the next save.
//! * **Dead-lettered**: a file over `max_file_bytes`, an unreadable file, a file whose
//!   source cannot be told (auto mode), truncated gzip (the records before the damage
//!   are kept) and fragments that cannot be framed, each with the reason.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime};

use lineage_core::{DeadLetter, Provenance, Source};

use super::{
    BatchId, CheckpointStore, ConnectError, Connector, ConnectorStats, RawBatch, RawRecord,
};
use crate::files::{is_log_file, time_hint};
use crate::framing::{frames, Frame};

/// Settings of the directory follower.
#[derive(Clone, Debug)]
pub struct DirectoryConfig {
    /// The directory, walked recursively.
    pub path: PathBuf,
    /// The source of every file; `None` tells each file's source from its content.
    pub source: Option<Source>,
    /// How long a file's size and modification time must stay unchanged.
    pub settle: Duration,
    /// Larger files are dead-lettered unread.
    pub max_file_bytes: u64,
    /// Where the finished files are recorded.
    pub checkpoint: CheckpointStore,
}

/// The checkpoint state: finished files (path relative to the directory → size).
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct DirectoryState {
    /// Files whose records are durably downstream.
    pub done: BTreeMap<String, u64>,
}

/// A file seen in a scan, not yet ready.
struct Seen {
    size: u64,
    modified: Option<SystemTime>,
    stable_since: Instant,
}

/// The directory follower (see the module doc).
pub struct DirectoryConnector {
    cfg: DirectoryConfig,
    state: DirectoryState,
    /// Handed out, not acked: batch id → (relative path, size).
    outstanding: HashMap<BatchId, (String, u64)>,
    seen: HashMap<String, Seen>,
    /// Ready files of the last scan, not yet handed out (a scan stats every file, so
    /// it runs only when these are used up).
    ready: std::collections::VecDeque<(PathBuf, String, u64)>,
    next_id: BatchId,
    stats: ConnectorStats,
}

impl DirectoryConnector {
    /// Loads the checkpoint; the directory need not exist yet.
    pub fn new(cfg: DirectoryConfig) -> Result<Self, ConnectError> {
        let state = cfg.checkpoint.load::<DirectoryState>()?.unwrap_or_default();
        Ok(Self {
            cfg,
            state,
            outstanding: HashMap::new(),
            seen: HashMap::new(),
            ready: std::collections::VecDeque::new(),
            next_id: 1,
            stats: ConnectorStats::default(),
        })
    }

    fn relative(&self, path: &Path) -> String {
        path.strip_prefix(&self.cfg.path)
            .unwrap_or(path)
            .to_string_lossy()
            .replace('\\', "/")
    }

    /// Files that are ready to read, in event-time order of their names.
    fn ready_files(&mut self) -> Vec<(PathBuf, String, u64)> {
        let mut files = Vec::new();
        walk(&self.cfg.path, &mut files);
        let now = Instant::now();
        let handed: std::collections::HashSet<&str> =
            self.outstanding.values().map(|(p, _)| p.as_str()).collect();
        let mut ready = Vec::new();
        let mut present = std::collections::HashSet::new();
        for path in files {
            let rel = self.relative(&path);
            present.insert(rel.clone());
            let Ok(meta) = std::fs::metadata(&path) else {
                continue;
            };
            let size = meta.len();
            if let Some(&done) = self.state.done.get(&rel) {
                if done != size && !matches!(self.seen.get(&rel), Some(s) if s.size == size) {
                    self.stats.skip("changed_after_read");
                    tracing::warn!(file = %path.display(), read = done, now = size, "a file changed after it was read; its new content is not read (write files once, or tail append-only logs with vault-file)");
                    self.seen.insert(
                        rel,
                        Seen {
                            size,
                            modified: None,
                            stable_since: now,
                        },
                    );
                }
                continue;
            }
            if handed.contains(rel.as_str()) {
                continue;
            }
            let modified = meta.modified().ok();
            match self.seen.get_mut(&rel) {
                Some(s) if s.size == size && s.modified == modified => {
                    if now.duration_since(s.stable_since) >= self.cfg.settle {
                        ready.push((path, rel, size));
                    }
                }
                _ => {
                    let settled = self.cfg.settle.is_zero();
                    self.seen.insert(
                        rel.clone(),
                        Seen {
                            size,
                            modified,
                            stable_since: now,
                        },
                    );
                    if settled {
                        ready.push((path, rel, size));
                    }
                }
            }
        }
        self.seen.retain(|rel, _| present.contains(rel));
        ready.sort_by(|a, b| {
            let hint = |(p, rel, _): &(PathBuf, String, u64)| {
                let name = p.file_name().and_then(|n| n.to_str()).unwrap_or_default();
                time_hint(name, rel).unwrap_or(i64::MIN)
            };
            hint(a).cmp(&hint(b)).then_with(|| a.1.cmp(&b.1))
        });
        ready
    }

    /// Reads one file into a batch.
    fn read(&mut self, path: &Path, rel: String, mut size: u64) -> RawBatch {
        let origin = path.display().to_string();
        let mut records = Vec::new();
        let mut dead = Vec::new();
        let forced = self.cfg.source;
        let mut source = forced.unwrap_or(Source::Unknown);
        if size > self.cfg.max_file_bytes {
            dead.push(DeadLetter::new(
                source,
                format!(
                    "file is {size} bytes, over the {}-byte limit (max_file_bytes); not read",
                    self.cfg.max_file_bytes
                ),
                Provenance::file(&origin, 0),
                b"",
            ));
        } else {
            match std::fs::read(path) {
                Err(e) => dead.push(DeadLetter::new(
                    source,
                    format!("could not read file: {e}"),
                    Provenance::file(&origin, 0),
                    b"",
                )),
                Ok(raw) => {
                    size = raw.len() as u64;
                    let (plain, gz_error) = crate::decompress(&raw);
                    match forced.or_else(|| crate::sniff_source(&plain)) {
                        None if plain.iter().all(u8::is_ascii_whitespace) && gz_error.is_none() => {
                        }
                        None => match &gz_error {
                            Some(why) => dead.push(DeadLetter::new(
                                Source::Unknown,
                                why.clone(),
                                Provenance::file(&origin, 0),
                                &raw,
                            )),
                            None => dead.extend(crate::unknown_source_dead_letters(
                                &plain,
                                &origin,
                                "set `source`",
                            )),
                        },
                        Some(s) => {
                            source = s;
                            let envelope = crate::parser_for(s)
                                .map(|p| p.envelope_keys())
                                .unwrap_or(&[]);
                            let mut last = 0;
                            for frame in frames(&plain, envelope) {
                                match frame {
                                    Frame::Record(n, r) => {
                                        last = n;
                                        records.push(RawRecord {
                                            bytes: r.to_vec(),
                                            origin: format!("{origin}#{n}"),
                                        });
                                    }
                                    Frame::Broken(n, fragment, why) => {
                                        last = n;
                                        dead.push(DeadLetter::new(
                                            s,
                                            crate::ParseError::Framing(why).to_string(),
                                            Provenance::file(&origin, n),
                                            fragment,
                                        ));
                                    }
                                }
                            }
                            if let Some(why) = gz_error {
                                dead.push(DeadLetter::new(
                                    s,
                                    why,
                                    Provenance::file(&origin, last + 1),
                                    b"",
                                ));
                            }
                        }
                    }
                }
            }
        }
        let id = self.next_id;
        self.next_id += 1;
        self.outstanding.insert(id, (rel.clone(), size));
        let batch = RawBatch {
            id,
            key: format!("dir:{rel}:{size}"),
            source,
            records,
            dead_letters: dead,
            position: rel,
        };
        self.stats.handed_out(&batch);
        batch
    }

    fn save(&mut self) -> Result<(), ConnectError> {
        let root = self.cfg.path.clone();
        self.state.done.retain(|rel, _| root.join(rel).exists());
        self.cfg.checkpoint.save(&self.state)?;
        Ok(())
    }
}

fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for e in entries.filter_map(Result::ok) {
        let p = e.path();
        let Ok(kind) = e.file_type() else { continue };
        let name = p.file_name().and_then(|n| n.to_str()).unwrap_or_default();
        // Hidden names are where writers stage what they then rename into place.
        if name.starts_with('.') {
            continue;
        }
        if kind.is_dir() {
            walk(&p, out);
        } else if kind.is_file() {
            // Temporary names of writers that rename finished files into place.
            if name.ends_with(".tmp") || name.ends_with(".part") {
                continue;
            }
            if is_log_file(&p) {
                out.push(p);
            }
        }
    }
}

impl Connector for DirectoryConnector {
    fn poll(&mut self) -> Result<Option<RawBatch>, ConnectError> {
        if self.ready.is_empty() {
            let ready = self.ready_files();
            self.ready.extend(ready);
        }
        let Some((path, rel, size)) = self.ready.pop_front() else {
            return Ok(None);
        };
        self.seen.remove(&rel);
        Ok(Some(self.read(&path, rel, size)))
    }

    fn ack(&mut self, batch: BatchId) -> Result<(), ConnectError> {
        let (rel, size) = self
            .outstanding
            .remove(&batch)
            .ok_or(ConnectError::UnknownBatch(batch))?;
        self.state.done.insert(rel, size);
        self.stats.acked += 1;
        self.save()
    }

    fn stats(&self) -> &ConnectorStats {
        &self.stats
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn connector(dir: &Path, cp: &Path) -> DirectoryConnector {
        DirectoryConnector::new(DirectoryConfig {
            path: dir.to_owned(),
            source: None,
            settle: Duration::ZERO,
            max_file_bytes: 1 << 20,
            checkpoint: CheckpointStore::new(cp, "directory"),
        })
        .unwrap()
    }

    const CT: &str = r#"{"Records":[{"eventVersion":"1.08","eventSource":"s3.amazonaws.com","eventName":"GetObject","eventID":"a"},{"eventSource":"s3.amazonaws.com","eventName":"GetObject","eventID":"b"}]}"#;

    #[test]
    fn reads_each_file_once_in_time_order_and_resumes_after_acks() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("logs");
        std::fs::create_dir_all(dir.join("2024/01/02")).unwrap();
        std::fs::create_dir_all(dir.join("2024/01/01")).unwrap();
        std::fs::write(dir.join("2024/01/02/b.json"), CT).unwrap();
        std::fs::write(dir.join("2024/01/01/z.json"), CT).unwrap();
        std::fs::write(dir.join("notes.txt"), "not a log").unwrap();
        let cp = tmp.path().join("cp.json");
        let mut c = connector(&dir, &cp);
        let first = c.poll().unwrap().unwrap();
        assert_eq!(first.position, "2024/01/01/z.json");
        assert_eq!(first.records.len(), 2);
        assert_eq!(first.source, Source::CloudTrail);
        let second = c.poll().unwrap().unwrap();
        assert_eq!(second.position, "2024/01/02/b.json");
        assert!(c.poll().unwrap().is_none(), "nothing new, nothing twice");
        c.ack(first.id).unwrap();
        drop(c);
        // Restarted: the acked file is done, the other one is read again.
        let mut c = connector(&dir, &cp);
        let again = c.poll().unwrap().unwrap();
        assert_eq!(again.position, "2024/01/02/b.json");
        c.ack(again.id).unwrap();
        assert!(c.poll().unwrap().is_none());
        std::fs::write(dir.join("2024/01/02/c.json.tmp"), CT).unwrap();
        assert!(c.poll().unwrap().is_none(), "temporary names are not read");
        std::fs::rename(
            dir.join("2024/01/02/c.json.tmp"),
            dir.join("2024/01/02/c.json"),
        )
        .unwrap();
        assert_eq!(c.poll().unwrap().unwrap().records.len(), 2);
    }

    #[test]
    fn unknown_and_oversized_files_are_dead_lettered_with_the_reason() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("logs");
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("a.json"), r#"{"hello":"world"}"#).unwrap();
        let mut c = connector(&dir, &tmp.path().join("cp.json"));
        c.cfg.max_file_bytes = 1 << 20;
        let b = c.poll().unwrap().unwrap();
        assert!(b.records.is_empty());
        assert!(
            b.dead_letters[0].reason.contains("could not tell"),
            "{:?}",
            b.dead_letters
        );
        std::fs::write(dir.join("b.json"), CT).unwrap();
        c.cfg.max_file_bytes = 10;
        let b = c.poll().unwrap().unwrap();
        assert!(b.dead_letters[0].reason.contains("max_file_bytes"));
    }
}
