//! Where the pipeline's conclusions leave it, the same in every mode.
//!
//! - [`AlertOutput`]: `alerts.jsonl`, `alerts.ocsf.jsonl` and every `[alerts]` sink
//!   (webhook, Slack, Kafka, rotated files). Each alert id is delivered once: ids
//!   already in `alerts.jsonl` (from before a restart, or from another copy of the
//!   same message after a crash) are skipped. A sink that cannot take an alert
//!   retries and then spools it to disk; only if even the spool refuses does
//!   [`AlertOutput::deliver`] fail, and the caller then stops rather than
//!   acknowledging its input, so an alert is never committed past silently. The
//!   line goes to `alerts.jsonl` after the sinks took it, so a crash in between can
//!   send it again on restart (receivers get `Idempotency-Key: <id>:<count>` for
//!   that), but never lose it.
//! - [`ActionOutput`]: `actions.jsonl` and, when the mode responds, the responder
//!   (policy, write-ahead ledger, executors). Each idempotency key is handled once
//!   per output directory; the ledger makes execution at-most-once across
//!   restarts on its own.
//!
//! Live modes feed these as alerts open and actions are raised; replay, which knows
//! the end, feeds them once with each alert's final count.

use std::collections::HashSet;
use std::io::BufRead;
use std::path::{Path, PathBuf};

use lineage_core::{Action, Alert};
use lineage_respond::Responder;
use lineage_sinks::alerts::{AlertFanout, AlertSinksConfig, SinkStats};
use lineage_sinks::JsonLinesSink;

use crate::PipelineError;

/// `alerts.jsonl`.
pub const ALERTS_FILE: &str = "alerts.jsonl";
/// `alerts.ocsf.jsonl`.
pub const OCSF_FILE: &str = "alerts.ocsf.jsonl";
/// `actions.jsonl`.
pub const ACTIONS_FILE: &str = "actions.jsonl";

/// An id kept as the first 128 bits of its SHA-256: 16 bytes however long the id,
/// and no one can make two ids collide (one id passing for another would suppress
/// an alert or a revocation).
pub(crate) fn id_fingerprint(id: &[u8]) -> u128 {
    use sha2::{Digest, Sha256};
    let d = Sha256::digest(id);
    u128::from_le_bytes(d[..16].try_into().expect("16 bytes"))
}

/// The fingerprints ([`id_fingerprint`]) of the values of `field` in each line of a
/// JSON-lines file (missing file: none), read a line at a time. A line that is not
/// JSON (a torn last line, a crash mid-write, even one cut inside a UTF-8
/// character) is skipped and the lines after it are still read.
pub fn ids_in(path: &Path, field: &str) -> HashSet<u128> {
    let Ok(file) = std::fs::File::open(path) else {
        return HashSet::new();
    };
    std::io::BufReader::new(file)
        .split(b'\n')
        .map_while(Result::ok)
        .filter_map(|l| serde_json::from_slice::<serde_json::Value>(&l).ok())
        .filter_map(|v| {
            v.get(field)?
                .as_str()
                .map(|id| id_fingerprint(id.as_bytes()))
        })
        .collect()
}

/// Completes a file whose last line was cut short by a crash, so appending starts
/// on a line of its own.
fn end_with_newline(path: &Path) -> Result<(), PipelineError> {
    use std::io::{Read, Seek, SeekFrom, Write};
    let Ok(mut f) = std::fs::OpenOptions::new()
        .read(true)
        .append(true)
        .open(path)
    else {
        return Ok(());
    };
    let io = |e: std::io::Error| PipelineError::Io(format!("{}: {e}", path.display()));
    let len = f.metadata().map_err(io)?.len();
    if len == 0 {
        return Ok(());
    }
    f.seek(SeekFrom::Start(len - 1)).map_err(io)?;
    let mut last = [0u8];
    f.read_exact(&mut last).map_err(io)?;
    if last[0] != b'\n' {
        f.write_all(b"\n").map_err(io)?;
    }
    Ok(())
}

fn open_append(path: &Path) -> Result<JsonLinesSink, PipelineError> {
    end_with_newline(path)?;
    Ok(JsonLinesSink::append(path)?)
}

/// Alerts out: the alert files and the configured sinks (see the module doc).
pub struct AlertOutput {
    jsonl: JsonLinesSink,
    ocsf: JsonLinesSink,
    fanout: Option<AlertFanout>,
    /// Fingerprints of the alert ids delivered (ever, in this output directory).
    delivered: HashSet<u128>,
    path: PathBuf,
}

impl std::fmt::Debug for AlertOutput {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AlertOutput")
            .field("path", &self.path)
            .field("delivered", &self.delivered.len())
            .finish_non_exhaustive()
    }
}

impl AlertOutput {
    /// Opens the alert files of `out_dir` to append (ids already there are not
    /// delivered again) and builds the sinks of `sinks`, re-sending what their
    /// spools hold.
    pub fn open(
        out_dir: &Path,
        sinks: &AlertSinksConfig,
        spool_dir: &Path,
    ) -> Result<Self, PipelineError> {
        std::fs::create_dir_all(out_dir)
            .map_err(|e| PipelineError::Io(format!("creating {}: {e}", out_dir.display())))?;
        let path = out_dir.join(ALERTS_FILE);
        let delivered = ids_in(&path, "id");
        let jsonl = open_append(&path)?;
        let ocsf = open_append(&out_dir.join(OCSF_FILE))?;
        let fanout = if sinks.sinks.is_empty() {
            None
        } else {
            let mut f = AlertFanout::build(sinks, spool_dir)?;
            if let Err(e) = f.flush_spool() {
                tracing::warn!(error = %e, "alert spool not flushed yet; it is re-sent before the next alert");
            }
            Some(f)
        };
        Ok(Self {
            jsonl,
            ocsf,
            fanout,
            delivered,
            path,
        })
    }

    /// [`AlertOutput::open`] for a run that replaces the directory's alerts (replay).
    pub fn create(
        out_dir: &Path,
        sinks: &AlertSinksConfig,
        spool_dir: &Path,
    ) -> Result<Self, PipelineError> {
        for f in [ALERTS_FILE, OCSF_FILE] {
            JsonLinesSink::create(&out_dir.join(f))?;
        }
        Self::open(out_dir, sinks, spool_dir)
    }

    /// Delivers `alert` to every sink and appends it to the alert files, unless its
    /// id was delivered before; returns whether it was new. `Err` when a sink could
    /// neither deliver nor spool it (the caller must not acknowledge its input).
    pub fn deliver(&mut self, alert: &Alert) -> Result<bool, PipelineError> {
        let id = id_fingerprint(alert.id.as_bytes());
        if self.delivered.contains(&id) {
            return Ok(false);
        }
        if let Some(f) = self.fanout.as_mut() {
            f.send(alert)?;
        }
        self.jsonl.write(alert)?;
        self.ocsf
            .write(&lineage_sinks::ocsf::detection_finding(alert))?;
        self.delivered.insert(id);
        Ok(true)
    }

    /// Makes the alert files durable.
    pub fn sync(&mut self) -> Result<(), PipelineError> {
        self.jsonl.sync()?;
        self.ocsf.sync()?;
        Ok(())
    }

    /// Alerts delivered (ever, in this output directory).
    pub fn delivered(&self) -> usize {
        self.delivered.len()
    }

    /// Per-sink counters, in configuration order.
    pub fn sink_stats(&self) -> Vec<SinkStats> {
        self.fanout
            .as_ref()
            .map(AlertFanout::stats)
            .unwrap_or_default()
    }

    /// Re-sends what the sinks' spools hold, then syncs the files (end of a run).
    pub fn finish(&mut self) -> Result<(), PipelineError> {
        if let Some(f) = self.fanout.as_mut() {
            f.flush_spool()?;
        }
        self.sync()
    }
}

/// Revocation requests out: `actions.jsonl` and the responder (see the module doc).
pub struct ActionOutput {
    jsonl: JsonLinesSink,
    /// Fingerprints of the idempotency keys handled (ever, in this output directory).
    seen: HashSet<u128>,
    responder: Option<Responder>,
}

impl std::fmt::Debug for ActionOutput {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ActionOutput")
            .field("seen", &self.seen.len())
            .field("responder", &self.responder)
            .finish()
    }
}

impl ActionOutput {
    /// Opens `<out_dir>/actions.jsonl` to append (keys already there are not handled
    /// again), with the responder that executes, queues or refuses each request.
    pub fn open(out_dir: &Path, responder: Option<Responder>) -> Result<Self, PipelineError> {
        std::fs::create_dir_all(out_dir)
            .map_err(|e| PipelineError::Io(format!("creating {}: {e}", out_dir.display())))?;
        let path = out_dir.join(ACTIONS_FILE);
        let seen = ids_in(&path, "idempotency_key");
        Ok(Self {
            jsonl: open_append(&path)?,
            seen,
            responder,
        })
    }

    /// [`ActionOutput::open`] for a run that replaces the directory's actions (replay).
    pub fn create(out_dir: &Path, responder: Option<Responder>) -> Result<Self, PipelineError> {
        JsonLinesSink::create(&out_dir.join(ACTIONS_FILE))?;
        Self::open(out_dir, responder)
    }

    /// Handles one request: through the responder when there is one, then into
    /// `actions.jsonl`. `None` when its key was handled before.
    pub fn handle(&mut self, action: Action) -> Result<Option<Action>, PipelineError> {
        if !self
            .seen
            .insert(id_fingerprint(action.idempotency_key.as_bytes()))
        {
            return Ok(None);
        }
        let action = match self.responder.as_mut() {
            Some(r) => r.submit(action)?,
            None => action,
        };
        self.jsonl.write(&action)?;
        Ok(Some(action))
    }

    /// True when requests go through a responder.
    pub fn responds(&self) -> bool {
        self.responder.is_some()
    }

    /// Makes `actions.jsonl` durable.
    pub fn sync(&mut self) -> Result<(), PipelineError> {
        Ok(self.jsonl.sync()?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_torn_last_line_is_completed_before_appending() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(ALERTS_FILE);
        std::fs::write(&path, "{\"id\":\"a\"}\n{\"id\":\"b\",\"det").unwrap();
        assert_eq!(ids_in(&path, "id"), HashSet::from([id_fingerprint(b"a")]));
        // A line cut inside a UTF-8 character does not hide the lines after it.
        let mut cut = b"{\"id\":\"a\"}\n{\"id\":\"\xc3".to_vec();
        cut.extend_from_slice(b"\n{\"id\":\"z\"}\n");
        let other = dir.path().join("cut.jsonl");
        std::fs::write(&other, cut).unwrap();
        assert_eq!(
            ids_in(&other, "id"),
            HashSet::from([id_fingerprint(b"a"), id_fingerprint(b"z")])
        );
        let mut sink = open_append(&path).unwrap();
        sink.write(&serde_json::json!({"id": "c"})).unwrap();
        sink.sync().unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(text.ends_with("\n{\"id\":\"c\"}\n"), "{text}");
        assert_eq!(ids_in(&path, "id").len(), 2);
    }
}
