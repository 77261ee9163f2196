//! `lineage-tables` owns the Parquet lineage tables: `events`, `credentials`,
//! `identities`, `edges`, `alerts`, `actions` and `dead_letters`, written as
//! zstd-compressed Parquet under `<dir>/<table>/date=YYYY-MM-DD/part-<n>.parquet` so
//! DataFusion (`lineage sql`), DuckDB, Spark, Trino or Athena read the same files.
//!
//! It holds the schemas ([`schema`]), the per-table writer ([`TableWriter`]:
//! batching, date partitions, rolling by rows and bytes, atomic rename on close) and
//! [`LineageTables`], which a pipeline feeds with attributed events and dead letters
//! as they stream and with the graph, alerts and actions at checkpoints and at the
//! end of a run. It never decides anything: it writes what the stages concluded. The
//! SQL crate depends on this one only (for the schemas).
#![warn(missing_docs, unreachable_pub)]

/// What can go wrong while writing a lineage table.
#[derive(Debug, thiserror::Error)]
pub enum TableError {
    /// A file could not be created or written.
    #[error("writing {target}: {source}")]
    Io {
        /// File path.
        target: String,
        /// Underlying error.
        source: std::io::Error,
    },
    /// A table could not be encoded or written.
    #[error("lineage table {table}: {message}")]
    Table {
        /// Table name.
        table: String,
        /// What went wrong.
        message: String,
    },
}

pub mod schema;
mod writer;

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

use arrow::datatypes::SchemaRef;
use chrono::{DateTime, NaiveDate, Utc};
use lineage_core::inventory::HumanStatus;
use lineage_core::{Action, Alert, AttributedEvent, CredentialId, DeadLetter};
use lineage_graph::{Edge, LineageGraph, Node};
use smol_str::SmolStr;

pub use schema::{
    all_schemas, ActionRow, AlertRow, CredentialRow, DeadLetterRow, EdgeRow, EventColumns,
    EventRow, IdentityRow, TableRow,
};
use writer::table_error;
pub use writer::{TableCursor, TableWriter};

/// The directory under a run's output directory that holds the tables.
pub const TABLES_DIR: &str = "tables";

/// How table files are cut.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TablesOptions {
    /// Rows per record batch (and per write into the Parquet file).
    pub batch_rows: usize,
    /// A file is closed and a new one started after this many rows.
    pub max_rows_per_file: usize,
    /// … or once it holds about this many bytes.
    pub max_bytes_per_file: usize,
}

impl Default for TablesOptions {
    fn default() -> Self {
        Self {
            // 2048 rows keep each column's buffers (the widest, `provenance`, takes
            // about 165 bytes a row) within mimalloc's 512 KiB large-object limit,
            // so the next batch reuses them instead of faulting in fresh pages.
            batch_rows: 2048,
            max_rows_per_file: 1_000_000,
            max_bytes_per_file: 128 * 1024 * 1024,
        }
    }
}

/// Rows written per table by one run.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct TableCounts {
    /// `events` rows.
    pub events: u64,
    /// `credentials` rows.
    pub credentials: u64,
    /// `identities` rows.
    pub identities: u64,
    /// `edges` rows.
    pub edges: u64,
    /// `alerts` rows.
    pub alerts: u64,
    /// `actions` rows.
    pub actions: u64,
    /// `dead_letters` rows.
    pub dead_letters: u64,
}

/// What the latest use of a credential concluded, kept for the `credentials` table.
#[derive(Clone, Debug, Default, serde::Serialize, serde::Deserialize)]
struct CredentialUsage {
    uses: u64,
    agent: Option<SmolStr>,
    owner: Option<SmolStr>,
    method: Option<SmolStr>,
}

/// The streaming half of the tables: `events` (and what they say about each
/// credential) as attributed events arrive.
pub struct EventsTable {
    writer: TableWriter<EventRow>,
    /// Rows not yet written, per `date=` partition, as Arrow columns.
    pending: BTreeMap<NaiveDate, EventColumns>,
    batch_rows: usize,
    schema: SchemaRef,
    usage: HashMap<SmolStr, CredentialUsage>,
    max_time: Option<DateTime<Utc>>,
    /// The latest partition date seen: partitions more than a day older are closed.
    newest_date: Option<NaiveDate>,
}

impl EventsTable {
    fn new(
        writer: TableWriter<EventRow>,
        options: TablesOptions,
        usage: HashMap<SmolStr, CredentialUsage>,
        max_time: Option<DateTime<Utc>>,
    ) -> Self {
        Self {
            writer,
            pending: BTreeMap::new(),
            batch_rows: options.batch_rows.max(1),
            schema: EventRow::schema(),
            usage,
            max_time,
            newest_date: None,
        }
    }

    /// Adds one attributed event.
    pub fn write(&mut self, e: &AttributedEvent) -> Result<(), TableError> {
        self.write_revision(e, 0)
    }

    /// Adds a revision of an event already written: its attribution as a late lineage
    /// fact corrected it (`revision` ≥ 1; see `EventRow::revision`). The credential's
    /// use is not counted again.
    pub fn write_revision(&mut self, e: &AttributedEvent, revision: u32) -> Result<(), TableError> {
        if let Some(c) = &e.use_.credential {
            let u = self.usage.entry(c.id.0.clone()).or_default();
            if revision == 0 {
                u.uses += 1;
            }
            if e.attribution.is_attributed() {
                u.agent = e.attribution.agent.as_ref().map(|a| a.0.clone());
                u.owner = e.attribution.owner.as_ref().map(|h| h.0.clone());
                u.method = Some(schema::serde_name(&e.attribution.method));
            }
        }
        self.max_time = self.max_time.max(Some(e.use_.time));
        let date = e.use_.time.date_naive();
        let newer = match self.newest_date {
            Some(newest) => date > newest,
            None => true,
        };
        if newer {
            self.newest_date = Some(date);
            self.close_dates_before(date.pred_opt().unwrap_or(date))?;
        }
        // New partitions start small; after their first batch the columns are sized
        // like it.
        let first = self.batch_rows.min(256);
        let columns = self
            .pending
            .entry(date)
            .or_insert_with(|| EventColumns::with_capacity(first));
        columns.append_revision(e, revision);
        if columns.len() >= self.batch_rows {
            write_columns(&mut self.writer, &self.schema, date, columns)?;
        }
        Ok(())
    }

    /// Writes and closes the partitions of dates before `cutoff`. Events arrive in
    /// about time order, so once a day later than a date has begun, that date gets
    /// few or no more rows: its file is finished now, while parsing goes on, instead
    /// of every date's row groups staying in memory until the end of the run. A late
    /// event of such a date starts a new part file.
    fn close_dates_before(&mut self, cutoff: NaiveDate) -> Result<(), TableError> {
        let later = self.pending.split_off(&cutoff);
        for (date, mut columns) in std::mem::replace(&mut self.pending, later) {
            write_columns(&mut self.writer, &self.schema, date, &mut columns)?;
        }
        self.writer.close_dates_before(cutoff)
    }

    /// Writes the rows still in columns.
    fn flush(&mut self) -> Result<(), TableError> {
        for (date, columns) in &mut self.pending {
            write_columns(&mut self.writer, &self.schema, *date, columns)?;
        }
        // Partitions seen so far stay out of memory between checkpoints.
        self.pending.clear();
        Ok(())
    }

    /// Closes the open files (every event so far is then in a closed file) and
    /// returns what a resumed run needs to continue the table.
    pub fn checkpoint(&mut self) -> Result<EventsCursor, TableError> {
        self.flush()?;
        Ok(EventsCursor {
            table: self.writer.checkpoint()?,
            usage: self.usage.clone(),
            max_time: self.max_time,
        })
    }

    /// Closes the files; what was learned is handed to [`LineageTables::finish`].
    pub fn finish(mut self) -> Result<EventsWritten, TableError> {
        self.flush()?;
        let rows = self.writer.finish()?;
        Ok(EventsWritten {
            rows,
            usage: self.usage,
            max_time: self.max_time,
        })
    }
}

/// Writes one partition's buffered columns (if any) as a record batch.
fn write_columns(
    writer: &mut TableWriter<EventRow>,
    schema: &SchemaRef,
    date: NaiveDate,
    columns: &mut EventColumns,
) -> Result<(), TableError> {
    if columns.is_empty() {
        return Ok(());
    }
    let batch = columns
        .finish(schema)
        .map_err(|e| table_error(EventRow::TABLE, e))?;
    writer.write_record_batch(date, &batch)
}

/// Where the `events` table stood at a checkpoint (see [`EventsTable::checkpoint`]).
#[derive(Clone, Debug, Default, serde::Serialize, serde::Deserialize)]
pub struct EventsCursor {
    table: TableCursor,
    usage: HashMap<SmolStr, CredentialUsage>,
    max_time: Option<DateTime<Utc>>,
}

/// What the events table learned, for the snapshot tables.
pub struct EventsWritten {
    rows: u64,
    usage: HashMap<SmolStr, CredentialUsage>,
    max_time: Option<DateTime<Utc>>,
}

impl EventsWritten {
    /// Rows written to `events`.
    pub fn rows(&self) -> u64 {
        self.rows
    }
}

/// The lineage tables of one run under one directory.
#[derive(Clone, Debug)]
pub struct LineageTables {
    dir: PathBuf,
    options: TablesOptions,
}

impl LineageTables {
    /// Tables under `dir` (created; earlier table files there are replaced).
    pub fn new(dir: impl Into<PathBuf>, options: TablesOptions) -> Result<Self, TableError> {
        let dir = dir.into();
        std::fs::create_dir_all(&dir).map_err(|source| TableError::Io {
            target: dir.display().to_string(),
            source,
        })?;
        Ok(Self { dir, options })
    }

    /// The tables directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The `events` writer.
    pub fn events(&self) -> Result<EventsTable, TableError> {
        Ok(EventsTable::new(
            TableWriter::create(&self.dir, self.options)?,
            self.options,
            HashMap::new(),
            None,
        ))
    }

    /// The `events` writer continuing from a checkpoint (later files are removed).
    pub fn resume_events(&self, cursor: &EventsCursor) -> Result<EventsTable, TableError> {
        Ok(EventsTable::new(
            TableWriter::resume(&self.dir, self.options, &cursor.table)?,
            self.options,
            cursor.usage.clone(),
            cursor.max_time,
        ))
    }

    /// The `dead_letters` writer continuing from a checkpoint.
    pub fn resume_dead_letters(&self, cursor: &TableCursor) -> Result<DeadLetterTable, TableError> {
        Ok(DeadLetterTable {
            writer: TableWriter::resume(&self.dir, self.options, cursor)?,
            ingested_at: Utc::now(),
        })
    }

    /// The `dead_letters` writer.
    pub fn dead_letters(&self) -> Result<DeadLetterTable, TableError> {
        Ok(DeadLetterTable {
            writer: TableWriter::create(&self.dir, self.options)?,
            ingested_at: Utc::now(),
        })
    }

    /// Writes the snapshot tables (`credentials`, `identities`, `edges`) from the
    /// graph as it stands after the run, as of the data's last event time.
    pub fn write_graph(
        &self,
        events: &EventsWritten,
        graph: &LineageGraph,
    ) -> Result<TableCounts, TableError> {
        let as_of = events.max_time.unwrap_or_else(Utc::now).timestamp_micros();
        let mut counts = TableCounts {
            events: events.rows,
            ..TableCounts::default()
        };
        let mut w = TableWriter::<CredentialRow>::create(&self.dir, self.options)?;
        let mut ids: Vec<&CredentialId> = graph.credentials().map(|(id, _)| id).collect();
        ids.sort();
        for id in ids {
            w.write(credential_row(graph, id, &events.usage, as_of))?;
        }
        counts.credentials = w.finish()?;

        let mut w = TableWriter::<IdentityRow>::create(&self.dir, self.options)?;
        for row in identity_rows(graph, as_of) {
            w.write(row)?;
        }
        counts.identities = w.finish()?;

        let mut w = TableWriter::<EdgeRow>::create(&self.dir, self.options)?;
        for row in edge_rows(graph, as_of) {
            w.write(row)?;
        }
        counts.edges = w.finish()?;
        Ok(counts)
    }

    /// Writes `alerts` and `actions`, completing `counts`.
    pub fn write_outcomes(
        &self,
        alerts: &[Alert],
        actions: &[Action],
        counts: &mut TableCounts,
    ) -> Result<(), TableError> {
        let mut w = TableWriter::<AlertRow>::create(&self.dir, self.options)?;
        for a in alerts {
            w.write(AlertRow::from_alert(a))?;
        }
        counts.alerts = w.finish()?;

        let mut w = TableWriter::<ActionRow>::create(&self.dir, self.options)?;
        for a in actions {
            w.write(ActionRow::from_action(a))?;
        }
        counts.actions = w.finish()?;
        tracing::info!(dir = %self.dir.display(), ?counts, "lineage tables written");
        Ok(())
    }
}

/// The `dead_letters` writer.
pub struct DeadLetterTable {
    writer: TableWriter<DeadLetterRow>,
    ingested_at: DateTime<Utc>,
}

impl DeadLetterTable {
    /// Adds one dead letter.
    pub fn write(&mut self, d: &DeadLetter) -> Result<(), TableError> {
        self.writer
            .write(DeadLetterRow::from_dead_letter(d, self.ingested_at))
    }

    /// Closes the open files (see [`TableWriter::checkpoint`]).
    pub fn checkpoint(&mut self) -> Result<TableCursor, TableError> {
        self.writer.checkpoint()
    }

    /// Closes the files and returns the rows written.
    pub fn finish(self) -> Result<u64, TableError> {
        self.writer.finish()
    }
}

fn opt_micros(t: Option<DateTime<Utc>>) -> Option<i64> {
    t.map(|t| t.timestamp_micros())
}

/// The chain from `id` to its root along issuance edges (cycle-safe).
fn chain_of(graph: &LineageGraph, id: &CredentialId) -> Vec<CredentialId> {
    let mut chain = vec![id.clone()];
    let mut current = id;
    while let Some((parent, _)) = graph.parent_of(current) {
        if chain.contains(parent) {
            break;
        }
        chain.push(parent.clone());
        current = parent;
    }
    chain
}

fn credential_row(
    graph: &LineageGraph,
    id: &CredentialId,
    usage: &HashMap<SmolStr, CredentialUsage>,
    as_of: i64,
) -> CredentialRow {
    let meta = graph.credential(id).expect("listed by the graph");
    let chain = chain_of(graph, id);
    let root = chain.last().expect("chain holds the credential").clone();
    let parent = graph.parent_of(id);
    let used = usage.get(&id.0);
    let declared = graph
        .declared_agent(id)
        .or_else(|| graph.declared_agent(&root));
    let agent = used
        .and_then(|u| u.agent.clone())
        .or_else(|| declared.map(|a| a.0.clone()));
    let owner = used.and_then(|u| u.owner.clone()).or_else(|| {
        declared
            .and_then(|a| graph.owner_of(a))
            .map(|h| h.0.clone())
    });
    let reach = graph.blast_radius(id);
    CredentialRow {
        credential_id: id.0.clone(),
        kind: schema::serde_name(&meta.kind),
        long_lived: meta.kind.is_long_lived(),
        principal: meta.principal.clone(),
        session_name: meta.session_name.clone(),
        source_identity: meta.source_identity.clone(),
        issued_at: opt_micros(meta.issued_at),
        parent_credential: parent.map(|(p, _)| p.0.clone()),
        issuance_method: parent.and_then(|(_, e)| match e {
            Edge::IssuedFrom { method, .. } => Some(schema::serde_name(method)),
            _ => None,
        }),
        root_credential: root.0.clone(),
        chain: chain.iter().map(|c| c.0.clone()).collect(),
        agent,
        owner,
        method: used
            .and_then(|u| u.method.clone())
            .or_else(|| declared.map(|_| SmolStr::new("declared"))),
        status: meta.status.as_ref().map(|(s, _)| s.clone()),
        status_at: meta.status.as_ref().map(|(_, t)| t.timestamp_micros()),
        first_used: opt_micros(meta.first_used),
        last_used: opt_micros(meta.last_used),
        uses: used.map_or(0, |u| u.uses),
        descendant_credentials: reach.descendant_credentials,
        services: reach.services,
        resources: reach.resources,
        as_of,
    }
}

fn identity_rows(graph: &LineageGraph, as_of: i64) -> Vec<IdentityRow> {
    let inventory = graph.inventory();
    let status_of = |h: &lineage_core::HumanId| {
        let departed = graph.departed_at(h);
        let listed_departed = inventory
            .human(h)
            .is_some_and(|x| x.status == HumanStatus::Departed);
        let status = if departed.is_some() || listed_departed {
            "departed"
        } else {
            "active"
        };
        (SmolStr::new(status), opt_micros(departed))
    };
    let mut rows = Vec::new();
    for h in inventory.humans() {
        let (status, departed_at) = status_of(&h.id);
        rows.push(IdentityRow {
            id: h.id.0.clone(),
            identity_type: SmolStr::new("human"),
            kind: None,
            email: h.email.clone(),
            owner: None,
            status,
            departed_at,
            runtime: None,
            declared_credentials: Vec::new(),
            as_of,
        });
    }
    for a in inventory.agents() {
        let owner = graph.owner_of(&a.id).unwrap_or(&a.owner).clone();
        let (status, departed_at) = status_of(&owner);
        rows.push(IdentityRow {
            id: a.id.0.clone(),
            identity_type: SmolStr::new("agent"),
            kind: Some(schema::serde_name(&a.kind)),
            email: None,
            owner: Some(owner.0.clone()),
            status,
            departed_at,
            runtime: a.runtime.clone(),
            declared_credentials: a.credentials.iter().map(|c| c.0.clone()).collect(),
            as_of,
        });
    }
    rows
}

fn node_parts(n: &Node) -> (SmolStr, SmolStr) {
    match n {
        Node::Credential(c) => (SmolStr::new("credential"), c.0.clone()),
        Node::Agent(a) => (SmolStr::new("agent"), a.0.clone()),
        Node::Human(h) => (SmolStr::new("human"), h.0.clone()),
    }
}

fn edge_rows(graph: &LineageGraph, as_of: i64) -> Vec<EdgeRow> {
    let mut rows: Vec<EdgeRow> = graph
        .edges()
        .map(|(from, to, edge)| {
            let (from_type, from_id) = node_parts(from);
            let (to_type, to_id) = node_parts(to);
            let (relation, method, valid_from) = match edge {
                Edge::IssuedFrom { method, at } => (
                    "issued_from",
                    Some(schema::serde_name(method)),
                    Some(at.timestamp_micros()),
                ),
                Edge::BoundTo => ("bound_to", None, None),
                Edge::OwnedBy => ("owned_by", None, None),
            };
            // An edge out of a credential ends when the credential stops being usable.
            let valid_to = match from {
                Node::Credential(c) => graph
                    .credential(c)
                    .and_then(|m| m.status.as_ref())
                    .filter(|(s, _)| !s.eq_ignore_ascii_case("active"))
                    .map(|(_, t)| t.timestamp_micros()),
                _ => None,
            };
            EdgeRow {
                from_type,
                from_id,
                relation: SmolStr::new(relation),
                to_type,
                to_id,
                method,
                valid_from,
                valid_to,
                as_of,
            }
        })
        .collect();
    rows.sort_by(|a, b| {
        (&a.relation, &a.from_id, &a.to_id).cmp(&(&b.relation, &b.from_id, &b.to_id))
    });
    rows
}
