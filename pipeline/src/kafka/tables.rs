//! The Parquet lineage tables of `lineage run` on the Kafka bus (`<out_dir>/tables`,
//! the layout `lineage replay` writes, read by `lineage sql --tables`):
//!
//! - the graph stage writes `events` as it processes them and, at each checkpoint and
//!   at shutdown, the snapshot tables `credentials`, `identities` and `edges` from its
//!   graph ([`GraphTables`]);
//! - the sinks stage rewrites `alerts`, `actions` and `dead_letters` from the
//!   de-duplicated `alerts.jsonl`, `actions.jsonl` and `dead_letters.jsonl` it keeps
//!   ([`OutcomeTables`]).
//!
//! `events` is exact across restarts of one process: a checkpoint closes the open
//! files and records, per `lineage.events` partition, which offsets have a row in a
//! closed file (`.live-graph.json`); a restart resumes from it (files written after
//! it are removed) and writes rows only for the other offsets, including those its
//! state rebuild replays. Across a partition moving between processes (each with
//! its own out dir) rows between the last checkpoint and the move can appear in both.

use std::collections::{BTreeSet, HashMap};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use lineage_core::{Action, Alert, AttributedEvent, DeadLetter};
use lineage_graph::LineageGraph;
use lineage_tables::{EventsCursor, EventsTable, LineageTables, TableCounts, TablesOptions};
use serde::{Deserialize, Serialize};

use super::LiveError;

/// How often open table files are closed (and snapshots rewritten) while running.
pub(crate) const CHECKPOINT_EVERY: Duration = Duration::from_secs(15);

const GRAPH_CURSOR: &str = ".live-graph.json";

fn table_error(e: impl std::fmt::Display) -> LiveError {
    LiveError::Io(format!("lineage tables: {e}"))
}

/// Which offsets of a partition have a row.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
struct Written {
    /// Every offset below this has a row.
    below: i64,
    /// Offsets at or above `below` that have one too.
    above: BTreeSet<i64>,
}

impl Written {
    fn has(&self, offset: i64) -> bool {
        offset < self.below || self.above.contains(&offset)
    }

    fn add(&mut self, offset: i64) {
        if offset == self.below {
            self.below += 1;
            while self.above.remove(&self.below) {
                self.below += 1;
            }
        } else if offset > self.below {
            self.above.insert(offset);
        }
    }
}

#[derive(Serialize, Deserialize)]
struct GraphCursor {
    events: EventsCursor,
    written: HashMap<i32, Written>,
}

/// The graph stage's tables.
pub(crate) struct GraphTables {
    tables: LineageTables,
    events: Option<EventsTable>,
    written: HashMap<i32, Written>,
    dirty: bool,
    last_checkpoint: Instant,
}

impl GraphTables {
    /// Opens `<dir>` (resuming from the last checkpoint there, if any).
    pub(crate) fn open(dir: &Path) -> Result<Self, LiveError> {
        let tables = LineageTables::new(dir, TablesOptions::default()).map_err(table_error)?;
        let cursor_path = dir.join(GRAPH_CURSOR);
        let cursor: Option<GraphCursor> = std::fs::read(&cursor_path)
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok());
        let (events, written) = match cursor {
            Some(c) => (
                tables.resume_events(&c.events).map_err(table_error)?,
                c.written,
            ),
            None => (tables.events().map_err(table_error)?, HashMap::new()),
        };
        Ok(Self {
            tables,
            events: Some(events),
            written,
            dirty: false,
            last_checkpoint: Instant::now(),
        })
    }

    /// Writes the row of the event at `offset` of `partition` unless it has one.
    pub(crate) fn write(
        &mut self,
        partition: i32,
        offset: i64,
        e: &AttributedEvent,
    ) -> Result<(), LiveError> {
        let w = self.written.entry(partition).or_default();
        if w.has(offset) {
            return Ok(());
        }
        w.add(offset);
        self.dirty = true;
        self.events
            .as_mut()
            .expect("events table open")
            .write(e)
            .map_err(table_error)
    }

    /// Writes a correction of an event already written: its attribution after a late
    /// lineage fact, as the event's next `revision`.
    pub(crate) fn write_revision(
        &mut self,
        e: &AttributedEvent,
        revision: u32,
    ) -> Result<(), LiveError> {
        self.dirty = true;
        self.events
            .as_mut()
            .expect("events table open")
            .write_revision(e, revision)
            .map_err(table_error)
    }

    /// Notes that the event at `offset` has no row to write (a duplicate, unreadable).
    pub(crate) fn skip(&mut self, partition: i32, offset: i64) {
        self.written.entry(partition).or_default().add(offset);
    }

    /// Checkpoints when due (`force`: now, e.g. at shutdown): closes the open files,
    /// records the cursor, rewrites the snapshot tables from `graph`.
    pub(crate) fn checkpoint(
        &mut self,
        graph: &LineageGraph,
        force: bool,
    ) -> Result<(), LiveError> {
        if !self.dirty || (!force && self.last_checkpoint.elapsed() < CHECKPOINT_EVERY) {
            return Ok(());
        }
        let started = Instant::now();
        let mut events = self.events.take().expect("events table open");
        let cursor = events.checkpoint().map_err(table_error)?;
        let body = serde_json::to_vec(&GraphCursor {
            events: cursor.clone(),
            written: self.written.clone(),
        })
        .map_err(table_error)?;
        write_atomically(&self.tables.dir().join(GRAPH_CURSOR), &body)?;
        let written = events.finish().map_err(table_error)?;
        self.tables
            .write_graph(&written, graph)
            .map_err(table_error)?;
        self.events = Some(self.tables.resume_events(&cursor).map_err(table_error)?);
        self.dirty = false;
        self.last_checkpoint = Instant::now();
        tracing::debug!(
            secs = started.elapsed().as_secs_f64(),
            "graph stage tables checkpointed"
        );
        Ok(())
    }
}

fn write_atomically(path: &Path, body: &[u8]) -> Result<(), LiveError> {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, body)
        .and_then(|_| std::fs::rename(&tmp, path))
        .map_err(|e| LiveError::Io(format!("writing {}: {e}", path.display())))
}

/// The sinks stage's tables, rewritten from its de-duplicated JSON-lines files.
pub(crate) struct OutcomeTables {
    dir: PathBuf,
    out_dir: PathBuf,
    dirty: bool,
    last: Instant,
}

impl OutcomeTables {
    pub(crate) fn new(out_dir: &Path) -> Self {
        Self {
            dir: out_dir.join(lineage_tables::TABLES_DIR),
            out_dir: out_dir.to_owned(),
            // Written once at start too, so the tables exist.
            dirty: true,
            last: Instant::now()
                .checked_sub(CHECKPOINT_EVERY)
                .unwrap_or_else(Instant::now),
        }
    }

    /// Something new reached the files.
    pub(crate) fn touch(&mut self) {
        self.dirty = true;
    }

    /// Rewrites the tables when due (`force`: now).
    pub(crate) fn refresh(&mut self, force: bool) -> Result<(), LiveError> {
        if !self.dirty || (!force && self.last.elapsed() < CHECKPOINT_EVERY) {
            return Ok(());
        }
        let alerts: Vec<Alert> = read_jsonl(&self.out_dir.join("alerts.jsonl"));
        let actions: Vec<Action> = read_jsonl(&self.out_dir.join("actions.jsonl"));
        let dead: Vec<DeadLetter> = read_jsonl(&self.out_dir.join("dead_letters.jsonl"));
        let tables =
            LineageTables::new(&self.dir, TablesOptions::default()).map_err(table_error)?;
        let mut counts = TableCounts::default();
        let mut dl = tables.dead_letters().map_err(table_error)?;
        for d in &dead {
            dl.write(d).map_err(table_error)?;
        }
        counts.dead_letters = dl.finish().map_err(table_error)?;
        tables
            .write_outcomes(&alerts, &actions, &mut counts)
            .map_err(table_error)?;
        self.dirty = false;
        self.last = Instant::now();
        Ok(())
    }
}

fn read_jsonl<T: serde::de::DeserializeOwned>(path: &Path) -> Vec<T> {
    let Ok(text) = std::fs::read_to_string(path) else {
        return Vec::new();
    };
    text.lines()
        .filter(|l| !l.trim().is_empty())
        .filter_map(|l| match serde_json::from_str(l) {
            Ok(v) => Some(v),
            Err(e) => {
                tracing::warn!(file = %path.display(), error = %e, "unreadable line skipped");
                None
            }
        })
        .collect()
}
