//! Live connectors: where audit logs live, read incrementally, resumable without gaps
//! or duplicates.
//!
//! Every connector has the same shape, [`Connector`]: [`Connector::poll`] hands out
//! the next [`RawBatch`] of raw records (the bytes exactly as the source wrote them,
//! one JSON record each), and [`Connector::ack`] says that batch is durably
//! downstream (written to a file, produced to Kafka with acks). Only on `ack` does a
//! connector advance its checkpoint ([`checkpoint`]) or delete the SQS message, so a
//! crash between `poll` and `ack` re-delivers the batch on restart: delivery is
//! at-least-once, and every batch carries a stable [`RawBatch::key`] so a downstream
//! that writes by key (one file per key, or a Kafka key) turns it into exactly-once.
//!
//! Downstream hands each record's bytes to [`crate::parse_bytes`] with the parser of
//! [`RawBatch::source`]; records that cannot be normalized become dead letters there.
//! What a connector itself cannot even frame (an S3 object that is not gzip or not a
//! CloudTrail delivery file) is in [`RawBatch::dead_letters`], with the reason and
//! the original bytes.
//!
//! | connector | source | position / checkpoint |
//! |---|---|---|
//! | [`s3_sqs::S3SqsConnector`] | CloudTrail delivery files announced by S3 event notifications on SQS (plain or SNS-wrapped) | the SQS queue itself: a message is deleted on `ack`; an un-acked one re-appears after its visibility timeout |
//! | [`lookup_events::LookupEventsConnector`] | CloudTrail `LookupEvents` (management events) | last event time + event ids at that time |
//! | [`vault_socket::VaultSocketListener`] | Vault/OpenBao `socket` audit device (TCP, JSON lines) | none (a socket cannot be replayed: pair it with the file device for resumability) |
//! | [`file_tail::FileTailConnector`] | Vault/OpenBao `file` audit device, any JSON-lines file | inode + byte offset (+ size), follows rename+create and copytruncate rotation |
//! | [`github_audit::GitHubAuditConnector`] | GitHub org / enterprise audit-log REST API | `Link` cursor + last `@timestamp` + `_document_id`s at that time |
//! | [`entra_graph::EntraGraphConnector`] | Microsoft Graph `/auditLogs/signIns` and `/auditLogs/directoryAudits` | per stream: `@odata.nextLink` + last time + ids at that time |
//! | [`directory::DirectoryConnector`] | files delivered into a directory (CloudTrail synced from S3, exports), any source | relative path + size of every finished file |
//!
//! What a user declares (a `[[source]]` table, or `lineage connect <kind>`) is a
//! [`ConnectorSpec`]: one definition for the config file and the command line.
//!
//! # Why the trait is synchronous
//!
//! Pollers are one request at a time, the CLI loop is `poll → write → ack`, and the
//! HTTP pollers use blocking `ureq`. The AWS SDK is async, so the two AWS connectors
//! own a small current-thread tokio runtime and `block_on` their calls. An async
//! caller (the Kafka pipeline) runs a connector on `tokio::task::spawn_blocking` or
//! its own thread; nothing here needs to be polled by someone else's runtime.
//!
//! # Entra ID through Event Hubs
//!
//! At scale, Entra logs are better streamed than polled: in the Entra admin centre,
//! *Diagnostic settings → Add diagnostic setting*, tick `SignInLogs`,
//! `NonInteractiveUserSignInLogs`, `ServicePrincipalSignInLogs`,
//! `ManagedIdentitySignInLogs` and `AuditLogs`, and *Stream to an event hub*. Event
//! Hubs (Standard tier or above) speaks the Kafka protocol on
//! `<namespace>.servicebus.windows.net:9093` (SASL_SSL, mechanism PLAIN, user
//! `$ConnectionString`, password = the connection string); the event hub is the
//! topic. Point `lineage run`'s Kafka source at it: each message is an Azure Monitor
//! `{"records":[…]}` document, which the Entra parser already frames. Kafka consumer
//! offsets are then the checkpoint, and no Graph connector is needed.

pub mod aws;
pub mod checkpoint;
pub mod directory;
pub mod entra_graph;
pub mod file_tail;
pub mod github_audit;
pub mod http;
pub mod lookup_events;
pub mod s3_sqs;
pub mod spec;
pub mod vault_socket;

use lineage_core::{DeadLetter, Source};

pub use checkpoint::{CheckpointError, CheckpointStore};
pub use spec::{ConnectorSpec, SourceChoice};

/// One raw record as the source wrote it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RawRecord {
    /// The record's bytes (one JSON value).
    pub bytes: Vec<u8>,
    /// Where it came from (`s3://bucket/key#3`, `github:org/acme#<_document_id>`, …),
    /// for provenance and dead letters.
    pub origin: String,
}

/// Batch ids are unique within one connector instance.
pub type BatchId = u64;

/// A batch of raw records from one source, handed out by [`Connector::poll`].
#[derive(Clone, Debug)]
pub struct RawBatch {
    /// The id to [`Connector::ack`] when the batch is durably downstream.
    pub id: BatchId,
    /// Stable across restarts: the same data re-delivered after a crash has the same
    /// key (the SQS message id, the position the batch starts at, …).
    pub key: String,
    /// The source whose parser reads these records.
    pub source: Source,
    /// The records, in source order.
    pub records: Vec<RawRecord>,
    /// What the connector could not frame into records (reason + original bytes).
    pub dead_letters: Vec<DeadLetter>,
    /// A human-readable position (for logs).
    pub position: String,
}

impl RawBatch {
    /// True when the batch carries neither records nor dead letters.
    pub fn is_empty(&self) -> bool {
        self.records.is_empty() && self.dead_letters.is_empty()
    }
}

/// Counters a connector keeps about what it saw (skips are counted, never silent).
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ConnectorStats {
    /// Batches handed out.
    pub batches: u64,
    /// Batches acknowledged.
    pub acked: u64,
    /// Records handed out.
    pub records: u64,
    /// Dead letters handed out.
    pub dead_letters: u64,
    /// Records dropped as already delivered (checkpoint boundary duplicates).
    pub duplicates_skipped: u64,
    /// Skipped inputs by reason (`digest`, `non_cloudtrail_key`, `test_event`, …).
    pub skipped: std::collections::BTreeMap<String, u64>,
    /// Retries after throttling / rate limits.
    pub throttled: u64,
    /// Retries after server errors or transport failures.
    pub retried: u64,
}

impl ConnectorStats {
    pub(crate) fn skip(&mut self, reason: &str) {
        *self.skipped.entry(reason.to_owned()).or_insert(0) += 1;
    }

    pub(crate) fn handed_out(&mut self, batch: &RawBatch) {
        self.batches += 1;
        self.records += batch.records.len() as u64;
        self.dead_letters += batch.dead_letters.len() as u64;
    }
}

/// What can go wrong talking to a source.
#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    /// Reading or writing the checkpoint failed.
    #[error(transparent)]
    Checkpoint(#[from] CheckpointError),
    /// The source answered with an error that retrying will not fix.
    #[error("{0}")]
    Source(String),
    /// The source refused the request with this HTTP status (not retryable).
    #[error("{1}")]
    Status(u16, String),
    /// Retries were exhausted.
    #[error("giving up after {attempts} attempts: {last}")]
    RetriesExhausted {
        /// How many attempts were made.
        attempts: u32,
        /// The last error.
        last: String,
    },
    /// Local I/O (files, sockets).
    #[error("{0}: {1}")]
    Io(String, #[source] std::io::Error),
    /// Bad configuration (missing token, bad URL, …).
    #[error("configuration: {0}")]
    Config(String),
    /// `ack` of a batch id that is not outstanding.
    #[error("batch {0} is not outstanding (already acked, or never handed out)")]
    UnknownBatch(BatchId),
}

/// A live source of raw records with at-least-once delivery.
pub trait Connector: Send {
    /// The next batch, or `None` when nothing new is available right now (the caller
    /// sleeps or polls again; long-polling connectors wait inside `poll`).
    fn poll(&mut self) -> Result<Option<RawBatch>, ConnectError>;
    /// The batch is durably downstream: advance the checkpoint / delete the message.
    /// Batches may be acked out of order; positional checkpoints only move forward.
    fn ack(&mut self, batch: BatchId) -> Result<(), ConnectError>;
    /// What the connector has counted so far.
    fn stats(&self) -> &ConnectorStats;
}

/// Replaces raw newlines with spaces so a record fits on one JSON line. A raw
/// newline byte in valid JSON can only be whitespace between tokens (inside strings
/// it must be escaped), so this never changes the value.
pub fn single_line(bytes: &[u8]) -> std::borrow::Cow<'_, [u8]> {
    if memchr::memchr2(b'\n', b'\r', bytes).is_none() {
        return std::borrow::Cow::Borrowed(bytes);
    }
    std::borrow::Cow::Owned(
        bytes
            .iter()
            .map(|&b| if b == b'\n' || b == b'\r' { b' ' } else { b })
            .collect(),
    )
}

/// Batches handed out and not yet acked, each with the checkpoint state that holds
/// once it (and every batch before it) is downstream. Acks may come out of order;
/// the state to save is that of the newest batch whose predecessors are all acked.
#[derive(Debug)]
pub(crate) struct AckQueue<S> {
    next_id: BatchId,
    outstanding: std::collections::BTreeMap<BatchId, (S, bool)>,
}

impl<S> Default for AckQueue<S> {
    fn default() -> Self {
        Self {
            next_id: 1,
            outstanding: std::collections::BTreeMap::new(),
        }
    }
}

impl<S> AckQueue<S> {
    /// Registers a batch whose ack makes `state` durable; returns its id.
    pub(crate) fn push(&mut self, state: S) -> BatchId {
        let id = self.next_id;
        self.next_id += 1;
        self.outstanding.insert(id, (state, false));
        id
    }

    /// Marks `id` acked; returns the state to save now, if the acked prefix grew.
    pub(crate) fn ack(&mut self, id: BatchId) -> Result<Option<S>, ConnectError> {
        match self.outstanding.get_mut(&id) {
            Some((_, acked)) if !*acked => *acked = true,
            _ => return Err(ConnectError::UnknownBatch(id)),
        }
        let mut durable = None;
        while let Some(entry) = self.outstanding.first_entry() {
            if !entry.get().1 {
                break;
            }
            durable = Some(entry.remove().0);
        }
        Ok(durable)
    }
}

/// A time cursor with the ids seen at its instant: everything strictly before
/// `since_ms`, and the ids listed at exactly `since_ms`, have been delivered. Sources
/// whose time filters are inclusive (`ge`, `>=`) return the boundary records again;
/// the ids drop them, so a resume never duplicates.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct TimeCursor {
    /// Milliseconds since the Unix epoch; `None` = from the beginning.
    pub since_ms: Option<i64>,
    /// Ids of records at exactly `since_ms`.
    #[serde(default)]
    pub ids_at_since: std::collections::BTreeSet<String>,
}

impl TimeCursor {
    /// A cursor starting at `since_ms` with nothing seen.
    pub fn starting_at(since_ms: Option<i64>) -> Self {
        Self {
            since_ms,
            ids_at_since: Default::default(),
        }
    }

    /// False when the record is at or before the cursor and was delivered.
    pub fn is_new(&self, ts_ms: i64, id: &str) -> bool {
        match self.since_ms {
            None => true,
            Some(s) => ts_ms > s || (ts_ms == s && !self.ids_at_since.contains(id)),
        }
    }

    /// Moves the cursor forward over a delivered record.
    pub fn advance(&mut self, ts_ms: i64, id: &str) {
        match self.since_ms {
            Some(s) if ts_ms < s => {}
            Some(s) if ts_ms == s => {
                self.ids_at_since.insert(id.to_owned());
            }
            _ => {
                self.since_ms = Some(ts_ms);
                self.ids_at_since.clear();
                self.ids_at_since.insert(id.to_owned());
            }
        }
    }
}

/// Records and dead letters of one page of a cursor-paged JSON API (GitHub audit
/// log, Entra Graph), split by [`crate::framing::frames`] under `array_path`.
pub(crate) struct Page {
    pub(crate) records: Vec<RawRecord>,
    pub(crate) dead: Vec<DeadLetter>,
    /// Records the cursor had already delivered (dropped).
    pub(crate) duplicates: u64,
}

/// Splits `body` into records: a record with a time and an id (`time_and_id`) that
/// `cursor` already delivered is dropped, a new one advances `progress` and is named
/// `<origin>#<id>`; one without is kept and named by position; an unframeable
/// fragment becomes a dead letter with the reason.
pub(crate) fn split_page(
    source: Source,
    body: &[u8],
    array_path: &[&str],
    origin: &str,
    cursor: &TimeCursor,
    progress: &mut TimeCursor,
    time_and_id: impl Fn(&serde_json::Value) -> (Option<i64>, Option<&str>),
) -> Page {
    use crate::framing::{frames, Frame};
    let mut page = Page {
        records: Vec::new(),
        dead: Vec::new(),
        duplicates: 0,
    };
    for frame in frames(body, array_path) {
        match frame {
            Frame::Record(n, raw) => {
                let v: serde_json::Value =
                    serde_json::from_slice(raw).unwrap_or(serde_json::Value::Null);
                let origin = match time_and_id(&v) {
                    (Some(ts), Some(id)) => {
                        if !cursor.is_new(ts, id) {
                            page.duplicates += 1;
                            continue;
                        }
                        progress.advance(ts, id);
                        format!("{origin}#{id}")
                    }
                    _ => format!("{origin}#{n}"),
                };
                page.records.push(RawRecord {
                    bytes: raw.to_vec(),
                    origin,
                });
            }
            Frame::Broken(n, fragment, why) => page.dead.push(DeadLetter::new(
                source,
                why,
                lineage_core::Provenance::file(origin, n),
                fragment,
            )),
        }
    }
    page
}

/// Milliseconds since the epoch of an RFC 3339 time.
pub(crate) fn rfc3339_ms(s: &str) -> Option<i64> {
    chrono::DateTime::parse_from_rfc3339(s)
        .ok()
        .map(|t| t.timestamp_millis())
}

/// RFC 3339 UTC with milliseconds (`2024-05-01T12:00:00.123Z`).
pub(crate) fn ms_rfc3339(ms: i64) -> String {
    chrono::DateTime::from_timestamp_millis(ms)
        .unwrap_or_default()
        .to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ack_queue_saves_only_the_acked_prefix() {
        let mut q = AckQueue::default();
        let a = q.push("a");
        let b = q.push("b");
        let c = q.push("c");
        assert_eq!(q.ack(b).unwrap(), None);
        assert_eq!(q.ack(a).unwrap(), Some("b"));
        assert!(q.ack(a).is_err());
        assert_eq!(q.ack(c).unwrap(), Some("c"));
    }

    #[test]
    fn time_cursor_drops_boundary_duplicates_only() {
        let mut c = TimeCursor::default();
        c.advance(10, "x");
        c.advance(10, "y");
        assert!(!c.is_new(10, "x") && !c.is_new(9, "z"));
        assert!(c.is_new(10, "z") && c.is_new(11, "x"));
        c.advance(12, "w");
        assert_eq!(c.ids_at_since.len(), 1);
    }
}
