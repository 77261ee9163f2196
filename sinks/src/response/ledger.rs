//! The idempotency ledger: an append-only JSON-lines file of every request and every
//! status change, keyed by the action's idempotency key (executor + credential +
//! reason). On open it is replayed into memory; the latest line for a key wins. Each
//! record is written and flushed to the OS before the call returns, so a crash after
//! an execution can at worst lose the record of it, never repeat an approval.

use std::collections::HashMap;
use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, Write};
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
    latest: HashMap<String, LedgerEntry>,
    order: Vec<String>,
}

/// The short id of an idempotency key.
pub fn short_id(key: &str) -> String {
    hex::encode(&Sha256::digest(key.as_bytes())[..6])
}

impl Ledger {
    /// An in-memory ledger (tests, dry runs without a state directory).
    pub fn in_memory() -> Self {
        Self {
            path: None,
            file: None,
            latest: HashMap::new(),
            order: Vec::new(),
        }
    }

    /// Opens (creating if needed) a ledger file and replays it.
    pub fn open(path: &Path) -> Result<Self, LedgerError> {
        let io = |e| LedgerError::Io(path.to_owned(), e);
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(io)?;
        }
        let mut ledger = Self::in_memory();
        if path.exists() {
            let reader = BufReader::new(File::open(path).map_err(io)?);
            for (n, line) in reader.lines().enumerate() {
                let line = line.map_err(io)?;
                if line.trim().is_empty() {
                    continue;
                }
                let entry: LedgerEntry = serde_json::from_str(&line)
                    .map_err(|e| LedgerError::Corrupt(path.to_owned(), n + 1, e.to_string()))?;
                ledger.index(entry);
            }
        }
        ledger.file = Some(
            OpenOptions::new()
                .create(true)
                .append(true)
                .open(path)
                .map_err(io)?,
        );
        ledger.path = Some(path.to_owned());
        Ok(ledger)
    }

    fn index(&mut self, entry: LedgerEntry) {
        let key = entry.action.idempotency_key.clone();
        if !self.latest.contains_key(&key) {
            self.order.push(key.clone());
        }
        self.latest.insert(key, entry);
    }

    /// Appends a record for `action` and updates the index.
    pub fn record(&mut self, action: &Action, detector: &str) -> Result<(), LedgerError> {
        let entry = LedgerEntry {
            id: short_id(&action.idempotency_key),
            detector: detector.to_owned(),
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
        l.record(&action(ActionStatus::PendingApproval), "anomaly")
            .unwrap();
        l.record(&action(ActionStatus::Done), "anomaly").unwrap();
        drop(l);
        let l = Ledger::open(&path).unwrap();
        let e = l.find(&short_id("deactivate:AKIA1:departed")).unwrap();
        assert_eq!(e.action.status, ActionStatus::Done);
        assert_eq!(l.entries().count(), 1);
        std::fs::write(&path, "garbage\n").unwrap();
        assert!(Ledger::open(&path).unwrap_err().to_string().contains(":1:"));
    }
}
