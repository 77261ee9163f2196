//! The write-ahead ledger: an append-only JSON-lines file of every request and every
//! status change, keyed by the action's idempotency key. The latest line for a key
//! wins.
//!
//! - **Intent before action.** Before an executor is called, a record with status
//!   `executing` is written and fsynced; the result follows in a second record. A
//!   process that dies between the two leaves the intent, and the next responder to
//!   open the ledger asks the provider whether the revocation is in effect before
//!   anything is retried ([`crate::Responder::reconcile`]), so an action is never
//!   executed twice because of a crash.
//! - **One writer at a time.** Every read-decide-write of a [`crate::Responder`]
//!   holds an exclusive `flock` on the ledger file and first reads what other
//!   processes appended, so `lineage actions approve` beside a running
//!   `lineage run`, or two processes sharing a ledger, never both execute a key.
//! - **Torn tails are recovered.** A last line cut short by a crash (no newline, not
//!   JSON) is dropped with a warning; any other unreadable line is an error naming it.
//! - **Who and when.** Each record says when it was written, which detector (or
//!   `operator`) asked, and, for approvals and rejections, who decided (`actor`).

use std::collections::HashMap;
use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use chrono::{DateTime, Utc};
use lineage_core::{Action, ActionStatus};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// What can go wrong with the ledger.
#[derive(Debug, thiserror::Error)]
pub enum LedgerError {
    /// The file could not be read or written.
    #[error("ledger {0}: {1}")]
    Io(PathBuf, std::io::Error),
    /// A line is not a ledger record.
    #[error("ledger {0}:{1}: not a ledger record: {2}")]
    Corrupt(PathBuf, usize, String),
    /// No request with that id or key.
    #[error("no action `{0}` in the ledger (see `lineage actions list`)")]
    NotFound(String),
    /// The request is not waiting for approval.
    #[error("action `{0}` is {1:?}, not pending approval")]
    NotPending(String, ActionStatus),
}

/// One ledger record.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct LedgerEntry {
    /// Short id for the command line (first 12 hex of the key's SHA-256).
    pub id: String,
    /// Which detector (or `operator`) asked.
    pub detector: String,
    /// Who wrote this record when it was a person's decision (an approval or a
    /// rejection): the name given to `lineage actions approve --by`, else `$USER`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub actor: Option<String>,
    /// When this record was written.
    pub recorded_at: DateTime<Utc>,
    /// The action with its status and result at that time.
    pub action: Action,
}

/// The ledger: a file and its in-memory index.
#[derive(Debug)]
pub struct Ledger {
    path: Option<PathBuf>,
    file: Option<File>,
    /// Bytes of the file read into the index.
    read_to: u64,
    latest: HashMap<String, LedgerEntry>,
    order: Vec<String>,
}

/// The short id of an idempotency key.
pub fn short_id(key: &str) -> String {
    hex::encode(&Sha256::digest(key.as_bytes())[..6])
}

/// An exclusive lock on the ledger file, released on drop.
#[derive(Debug)]
pub struct LedgerLock {
    /// A duplicate of the ledger's descriptor (the lock belongs to the open file).
    file: Option<File>,
}

impl Drop for LedgerLock {
    fn drop(&mut self) {
        if let Some(f) = &self.file {
            let _ = flock(f, libc::LOCK_UN);
        }
    }
}

fn flock(f: &File, op: libc::c_int) -> std::io::Result<()> {
    use std::os::fd::AsRawFd;
    loop {
        // SAFETY: `flock` only reads the descriptor, which `f` keeps open for the call.
        let r = unsafe { libc::flock(f.as_raw_fd(), op) };
        if r == 0 {
            return Ok(());
        }
        let e = std::io::Error::last_os_error();
        if e.kind() != std::io::ErrorKind::Interrupted {
            return Err(e);
        }
    }
}

impl Ledger {
    /// An in-memory ledger (tests, dry runs without a state directory).
    pub fn in_memory() -> Self {
        Self {
            path: None,
            file: None,
            read_to: 0,
            latest: HashMap::new(),
            order: Vec::new(),
        }
    }

    /// Opens (creating if needed, readable by its owner only) a ledger file and
    /// reads it.
    pub fn open(path: &Path) -> Result<Self, LedgerError> {
        let io = |e| LedgerError::Io(path.to_owned(), e);
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(io)?;
        }
        let mut options = OpenOptions::new();
        options.read(true).append(true).create(true);
        {
            use std::os::unix::fs::OpenOptionsExt;
            options.mode(0o600);
        }
        let file = options.open(path).map_err(io)?;
        let mut ledger = Self::in_memory();
        ledger.file = Some(file);
        ledger.path = Some(path.to_owned());
        {
            let _lock = ledger.lock()?;
        }
        Ok(ledger)
    }

    /// Takes the exclusive lock and reads what other processes appended since.
    pub fn lock(&mut self) -> Result<LedgerLock, LedgerError> {
        let (Some(file), Some(path)) = (self.file.as_ref(), self.path.clone()) else {
            return Ok(LedgerLock { file: None });
        };
        let io = |e| LedgerError::Io(path.clone(), e);
        let dup = file.try_clone().map_err(io)?;
        flock(&dup, libc::LOCK_EX).map_err(io)?;
        let lock = LedgerLock { file: Some(dup) };
        self.refresh(&path)?;
        Ok(lock)
    }

    /// Reads records appended since the last read (with the lock held).
    fn refresh(&mut self, path: &Path) -> Result<(), LedgerError> {
        let io = |e| LedgerError::Io(path.to_owned(), e);
        let mut file = self
            .file
            .as_ref()
            .expect("a file-backed ledger")
            .try_clone()
            .map_err(io)?;
        let len = file.metadata().map_err(io)?.len();
        if len < self.read_to {
            // Shorter than what was read: someone cut a torn tail; read it again.
            self.read_to = 0;
            self.latest.clear();
            self.order.clear();
        }
        if len == self.read_to {
            return Ok(());
        }
        file.seek(SeekFrom::Start(self.read_to)).map_err(io)?;
        let mut text = Vec::new();
        file.read_to_end(&mut text).map_err(io)?;
        let lines_before = self.order.len();
        let mut offset = self.read_to;
        let mut rest = text.as_slice();
        let mut line_no = lines_before;
        while !rest.is_empty() {
            let (line, next, complete) = match memchr(b'\n', rest) {
                Some(i) => (&rest[..i], &rest[i + 1..], true),
                None => (rest, &rest[rest.len()..], false),
            };
            line_no += 1;
            let trimmed = std::str::from_utf8(line).unwrap_or("").trim();
            if !trimmed.is_empty() {
                match serde_json::from_str::<LedgerEntry>(trimmed) {
                    Ok(entry) => self.index(entry),
                    Err(_) if !complete => {
                        // A torn last line: a crash cut the write. Nothing acted on it
                        // (records are written before the call they announce).
                        tracing::warn!(ledger = %path.display(), "dropping a torn last line of the ledger");
                        file.set_len(offset).map_err(io)?;
                        self.read_to = offset;
                        return Ok(());
                    }
                    Err(e) => {
                        return Err(LedgerError::Corrupt(
                            path.to_owned(),
                            line_no,
                            e.to_string(),
                        ))
                    }
                }
            }
            offset += (line.len() + usize::from(complete)) as u64;
            rest = next;
        }
        self.read_to = offset;
        Ok(())
    }

    fn index(&mut self, entry: LedgerEntry) {
        let key = entry.action.idempotency_key.clone();
        if !self.latest.contains_key(&key) {
            self.order.push(key.clone());
        }
        self.latest.insert(key, entry);
    }

    /// Appends a record for `action` (fsynced before this returns) and updates the
    /// index. Call it with the lock held.
    pub fn record(
        &mut self,
        action: &Action,
        detector: &str,
        actor: Option<&str>,
    ) -> Result<(), LedgerError> {
        let entry = LedgerEntry {
            id: short_id(&action.idempotency_key),
            detector: detector.to_owned(),
            actor: actor.map(str::to_owned),
            recorded_at: Utc::now(),
            action: action.clone(),
        };
        if let (Some(file), Some(path)) = (self.file.as_mut(), self.path.as_ref()) {
            let mut line = serde_json::to_vec(&entry).expect("ledger entry serializes");
            line.push(b'\n');
            file.write_all(&line)
                .and_then(|_| file.flush())
                .and_then(|_| file.sync_data())
                .map_err(|e| LedgerError::Io(path.clone(), e))?;
            self.read_to += line.len() as u64;
        }
        self.index(entry);
        Ok(())
    }

    /// The latest record for an idempotency key.
    pub fn get(&self, key: &str) -> Option<&LedgerEntry> {
        self.latest.get(key)
    }

    /// The latest record for a short id or an idempotency key.
    pub fn find(&self, id_or_key: &str) -> Option<&LedgerEntry> {
        self.latest
            .get(id_or_key)
            .or_else(|| self.latest.values().find(|e| e.id == id_or_key))
    }

    /// Latest records, in order of first request.
    pub fn entries(&self) -> impl Iterator<Item = &LedgerEntry> {
        self.order.iter().filter_map(|k| self.latest.get(k))
    }

    /// Intents a crash left without a result (status `executing`).
    pub fn unresolved(&self) -> Vec<LedgerEntry> {
        self.entries()
            .filter(|e| e.action.status == ActionStatus::Executing)
            .cloned()
            .collect()
    }
}

fn memchr(b: u8, s: &[u8]) -> Option<usize> {
    s.iter().position(|&c| c == b)
}

#[cfg(test)]
mod tests {
    use super::*;
    use lineage_core::{ActionKind, CredentialId, CredentialKind, CredentialRef};

    fn action(status: ActionStatus) -> Action {
        Action {
            idempotency_key: "deactivate:AKIA1:departed".into(),
            kind: ActionKind::DeactivateAwsAccessKey,
            credential: CredentialRef {
                kind: CredentialKind::AwsAccessKey,
                id: CredentialId::new("AKIA1"),
                issuer: None,
            },
            reason: "r".into(),
            detector: "departed-owner".into(),
            evidence: None,
            requested_at: Utc::now(),
            status,
            result: None,
            target: serde_json::Value::Null,
        }
    }

    #[test]
    fn survives_reopen_and_latest_wins() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state/ledger.jsonl");
        let mut l = Ledger::open(&path).unwrap();
        l.record(&action(ActionStatus::PendingApproval), "anomaly", None)
            .unwrap();
        l.record(&action(ActionStatus::Done), "anomaly", Some("alice"))
            .unwrap();
        drop(l);
        let l = Ledger::open(&path).unwrap();
        let e = l.find(&short_id("deactivate:AKIA1:departed")).unwrap();
        assert_eq!(e.action.status, ActionStatus::Done);
        assert_eq!(e.actor.as_deref(), Some("alice"));
        assert_eq!(l.entries().count(), 1);
        std::fs::write(&path, "garbage\n{}\n").unwrap();
        assert!(Ledger::open(&path).unwrap_err().to_string().contains(":1:"));
    }

    #[test]
    fn a_torn_last_line_is_dropped_and_the_ledger_opens() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ledger.jsonl");
        let mut l = Ledger::open(&path).unwrap();
        l.record(&action(ActionStatus::Executing), "departed-owner", None)
            .unwrap();
        drop(l);
        let whole = std::fs::read(&path).unwrap();
        let mut torn = whole.clone();
        torn.extend_from_slice(b"{\"id\":\"abc\",\"detec");
        std::fs::write(&path, &torn).unwrap();
        let l = Ledger::open(&path).unwrap();
        assert_eq!(l.unresolved().len(), 1);
        assert_eq!(std::fs::read(&path).unwrap(), whole, "the torn tail is cut");
    }

    #[test]
    fn a_second_handle_sees_what_the_first_wrote_once_it_locks() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ledger.jsonl");
        let mut a = Ledger::open(&path).unwrap();
        let mut b = Ledger::open(&path).unwrap();
        {
            let _l = a.lock().unwrap();
        }
        a.record(&action(ActionStatus::Done), "departed-owner", None)
            .unwrap();
        assert!(b.get("deactivate:AKIA1:departed").is_none());
        let _l = b.lock().unwrap();
        drop(_l);
        assert_eq!(
            b.get("deactivate:AKIA1:departed").unwrap().action.status,
            ActionStatus::Done
        );
    }
}
