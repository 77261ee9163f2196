//! The Arrow schemas of the lineage tables and the row types that fill them.
//!
//! Every table is declared twice, on purpose, side by side: a row struct (what one
//! row holds, serialized field by field into Arrow by `arrow-json`'s serde decoder)
//! and its [`Schema`]. Field names and order match (the decoder refuses a row that
//! does not fit; `sql/tests` and `tests/sql_tables.rs` write and read every table). Timestamps are microseconds since the epoch in UTC.
//! The README section "Lineage tables" documents every column.

use std::sync::Arc;

use arrow::array::{
    ArrayBuilder, ArrayRef, BooleanBuilder, Float32Builder, ListBuilder, StringBuilder,
    TimestampMicrosecondBuilder, UInt32Builder,
};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit};
use arrow::error::ArrowError;
use arrow::record_batch::RecordBatch;
use chrono::{DateTime, NaiveDate, Utc};
use lineage_core::{Action, Alert, AttributedEvent, DeadLetter};
use serde::Serialize;
use smol_str::SmolStr;

/// The SQL type of timestamps: microseconds, UTC.
pub fn timestamp_type() -> DataType {
    DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into()))
}

fn list_of_strings() -> DataType {
    DataType::List(Arc::new(Field::new("item", DataType::Utf8, true)))
}

fn text(name: &str) -> Field {
    Field::new(name, DataType::Utf8, false)
}

fn text_opt(name: &str) -> Field {
    Field::new(name, DataType::Utf8, true)
}

fn time(name: &str) -> Field {
    Field::new(name, timestamp_type(), false)
}

fn time_opt(name: &str) -> Field {
    Field::new(name, timestamp_type(), true)
}

fn list(name: &str) -> Field {
    Field::new(name, list_of_strings(), false)
}

/// The serde name of an enum value (`aws-access-key`, `cloudtrail`, `issuance-chain`).
pub(crate) fn serde_name<T: Serialize>(value: &T) -> SmolStr {
    // A unit variant's serialized name, without building a JSON value (three calls per
    // event row; `to_value` allocated each time).
    if let Ok(name) = serde_variant::to_variant_name(value) {
        return SmolStr::new_static(name);
    }
    match serde_json::to_value(value) {
        Ok(serde_json::Value::String(s)) => SmolStr::new(s),
        Ok(other) => SmolStr::new(other.to_string()),
        Err(_) => SmolStr::new("unknown"),
    }
}

fn micros(t: DateTime<Utc>) -> i64 {
    t.timestamp_micros()
}

/// A row of a lineage table: its table name, schema and date partition.
pub trait TableRow: Serialize + Send + 'static {
    /// Table name (also its directory).
    const TABLE: &'static str;
    /// The table's Arrow schema (without the `date` partition column).
    fn schema() -> SchemaRef;
    /// The `date=` partition this row belongs to.
    fn date(&self) -> NaiveDate;
    /// Columns whose values are (nearly) all distinct and in no useful order:
    /// written without a Parquet dictionary (a hash per value before falling back)
    /// and without min/max statistics (a comparison per value, and no query can
    /// prune on the min and max of random ids).
    const DISTINCT_COLUMNS: &'static [&'static str] = &[];
    /// Of those, columns whose consecutive values share long prefixes (a file path
    /// then a record number): written with `DELTA_BYTE_ARRAY`, which stores each
    /// value as the length it shares with the previous one plus the rest, so the
    /// compressor sees a few bytes per row instead of the whole path.
    const PREFIXED_COLUMNS: &'static [&'static str] = &[];
    /// Integer columns whose values mostly differ but rise row after row (event times,
    /// written in time order): written with `DELTA_BINARY_PACKED` (the differences
    /// between consecutive values, bit-packed) instead of a dictionary of nearly as
    /// many entries as rows. Their min/max statistics stay, for pruning.
    const SEQUENTIAL_COLUMNS: &'static [&'static str] = &[];
    /// The only columns that get min/max statistics, when the table names them
    /// (`None`: every column, Parquet's default). For a table written in time order
    /// whose text columns are in no useful order: a row group of such text spans
    /// nearly the whole range of values, so no query prunes on its min and max, and
    /// computing them is a string comparison per value and column.
    const STATISTICS_COLUMNS: Option<&'static [&'static str]> = None;
}

fn date_of(micros: i64) -> NaiveDate {
    DateTime::<Utc>::from_timestamp_micros(micros)
        .unwrap_or_default()
        .date_naive()
}

/// One attributed credential use (`events`).
#[derive(Clone, Debug, Serialize)]
pub struct EventRow {
    /// Event time.
    pub time: i64,
    /// `cloudtrail`, `entra`, `github`, `vault`.
    pub source: SmolStr,
    /// The source's event id.
    pub event_id: SmolStr,
    /// Kind of the credential presented.
    pub credential_kind: Option<SmolStr>,
    /// Credential presented.
    pub credential_id: Option<SmolStr>,
    /// Account / org / tenant / cluster that issued it.
    pub credential_issuer: Option<SmolStr>,
    /// True for credentials valid until rotated (IAM user keys, classic PATs, client secrets).
    pub long_lived: bool,
    /// Chain used credential → … → root credential.
    pub chain: Vec<SmolStr>,
    /// Root of the chain.
    pub root_credential: Option<SmolStr>,
    /// Agent it was attributed to.
    pub agent: Option<SmolStr>,
    /// Accountable human.
    pub owner: Option<SmolStr>,
    /// Attribution method.
    pub method: SmolStr,
    /// Attribution confidence in [0, 1].
    pub confidence: f32,
    /// Why it could not be attributed.
    pub unattributed_reason: Option<String>,
    /// Kind of the principal the log names.
    pub principal_kind: SmolStr,
    /// Principal id.
    pub principal_id: Option<SmolStr>,
    /// Principal name.
    pub principal_name: Option<SmolStr>,
    /// Principal ARN.
    pub principal_arn: Option<SmolStr>,
    /// Principal's account / org / tenant.
    pub account: Option<SmolStr>,
    /// Session issuer (role ARN).
    pub session_issuer: Option<SmolStr>,
    /// Role session name.
    pub role_session_name: Option<SmolStr>,
    /// `sourceIdentity`.
    pub source_identity: Option<SmolStr>,
    /// Service.
    pub service: SmolStr,
    /// Operation.
    pub operation: SmolStr,
    /// `service:operation`.
    pub action: String,
    /// Read-only call, when the source says.
    pub read_only: Option<bool>,
    /// Resources touched.
    pub resources: Vec<SmolStr>,
    /// True unless the source reports an error.
    pub success: bool,
    /// Error code.
    pub error_code: Option<SmolStr>,
    /// Source IP (or calling service).
    pub source_ip: Option<SmolStr>,
    /// User agent.
    pub user_agent: Option<SmolStr>,
    /// Client application.
    pub client_app: Option<SmolStr>,
    /// MCP server name.
    pub mcp_server: Option<SmolStr>,
    /// Region / location.
    pub region: Option<SmolStr>,
    /// Where the record was read (`file#record`, `topic/partition@offset`).
    pub provenance: String,
    /// 0 for the row written when the event was processed; 1, 2, … for the rows of
    /// attribution corrections a late lineage fact caused (live mode only). The
    /// event's current attribution is its row with the highest revision.
    pub revision: u32,
}

impl EventRow {
    /// The row of an attributed event.
    pub fn from_event(e: &AttributedEvent) -> Self {
        let u = &e.use_;
        let a = &e.attribution;
        let cred = u.credential.as_ref();
        Self {
            time: micros(u.time),
            source: SmolStr::new_static(u.source.as_str()),
            event_id: u.event_id.clone(),
            credential_kind: cred.map(|c| serde_name(&c.kind)),
            credential_id: cred.map(|c| c.id.0.clone()),
            credential_issuer: cred.and_then(|c| c.issuer.clone()),
            long_lived: cred.is_some_and(|c| c.kind.is_long_lived()),
            chain: a.chain.iter().map(|c| c.0.clone()).collect(),
            root_credential: a.root_credential.as_ref().map(|c| c.0.clone()),
            agent: a.agent.as_ref().map(|x| x.0.clone()),
            owner: a.owner.as_ref().map(|x| x.0.clone()),
            method: serde_name(&a.method),
            confidence: a.confidence,
            unattributed_reason: a.unattributed_reason.clone(),
            principal_kind: serde_name(&u.principal.kind),
            principal_id: u.principal.id.clone(),
            principal_name: u.principal.name.clone(),
            principal_arn: u.principal.arn.clone(),
            account: u.principal.account.clone(),
            session_issuer: u.session.issuer_arn.clone(),
            role_session_name: u.session.role_session_name.clone(),
            source_identity: u.session.source_identity.clone(),
            service: u.operation.service.clone(),
            operation: u.operation.name.clone(),
            action: u.operation.action(),
            read_only: u.operation.read_only,
            resources: u.resources.clone(),
            success: u.outcome.success,
            error_code: u.outcome.error_code.clone(),
            source_ip: u.client.source_ip.clone(),
            user_agent: u.client.user_agent.clone(),
            client_app: u.client.client_app.clone(),
            mcp_server: u.client.mcp_server.clone(),
            region: u.region.clone(),
            provenance: u.provenance.to_string(),
            revision: 0,
        }
    }
}

impl TableRow for EventRow {
    const TABLE: &'static str = "events";
    const DISTINCT_COLUMNS: &'static [&'static str] = &["event_id", "provenance"];
    const PREFIXED_COLUMNS: &'static [&'static str] = &["provenance"];
    const SEQUENTIAL_COLUMNS: &'static [&'static str] = &["time"];
    /// `time` prunes (rows are written in time order); the README's queries filter
    /// on `credential_id`, `agent` and `owner`, which keep theirs too (null counts,
    /// and the rare file where a value is absent). The other text columns (ARNs,
    /// user agents, resources, chains…) get none.
    const STATISTICS_COLUMNS: Option<&'static [&'static str]> = Some(&[
        "time",
        "credential_id",
        "agent",
        "owner",
        "long_lived",
        "confidence",
        "read_only",
        "success",
    ]);
    fn schema() -> SchemaRef {
        Arc::new(Schema::new(vec![
            time("time"),
            text("source"),
            text("event_id"),
            text_opt("credential_kind"),
            text_opt("credential_id"),
            text_opt("credential_issuer"),
            Field::new("long_lived", DataType::Boolean, false),
            list("chain"),
            text_opt("root_credential"),
            text_opt("agent"),
            text_opt("owner"),
            text("method"),
            Field::new("confidence", DataType::Float32, false),
            text_opt("unattributed_reason"),
            text("principal_kind"),
            text_opt("principal_id"),
            text_opt("principal_name"),
            text_opt("principal_arn"),
            text_opt("account"),
            text_opt("session_issuer"),
            text_opt("role_session_name"),
            text_opt("source_identity"),
            text("service"),
            text("operation"),
            text("action"),
            Field::new("read_only", DataType::Boolean, true),
            list("resources"),
            Field::new("success", DataType::Boolean, false),
            text_opt("error_code"),
            text_opt("source_ip"),
            text_opt("user_agent"),
            text_opt("client_app"),
            text_opt("mcp_server"),
            text_opt("region"),
            text("provenance"),
            Field::new("revision", DataType::UInt32, false),
        ]))
    }
    fn date(&self) -> NaiveDate {
        date_of(self.time)
    }
}

/// The `events` table's columns, appended to straight from attributed events: the
/// hot path of a replay with tables on (one row per event), so no [`EventRow`], no
/// per-row string clones and no serde. Same columns, in the same order, as
/// [`EventRow::schema`]; a test checks that the batches equal the serde path's.
pub struct EventColumns {
    rows: usize,
    time: TimestampMicrosecondBuilder,
    source: StringBuilder,
    event_id: StringBuilder,
    credential_kind: StringBuilder,
    credential_id: StringBuilder,
    credential_issuer: StringBuilder,
    long_lived: BooleanBuilder,
    chain: ListBuilder<StringBuilder>,
    root_credential: StringBuilder,
    agent: StringBuilder,
    owner: StringBuilder,
    method: StringBuilder,
    confidence: Float32Builder,
    unattributed_reason: StringBuilder,
    principal_kind: StringBuilder,
    principal_id: StringBuilder,
    principal_name: StringBuilder,
    principal_arn: StringBuilder,
    account: StringBuilder,
    session_issuer: StringBuilder,
    role_session_name: StringBuilder,
    source_identity: StringBuilder,
    service: StringBuilder,
    operation: StringBuilder,
    action: StringBuilder,
    read_only: BooleanBuilder,
    resources: ListBuilder<StringBuilder>,
    success: BooleanBuilder,
    error_code: StringBuilder,
    source_ip: StringBuilder,
    user_agent: StringBuilder,
    client_app: StringBuilder,
    mcp_server: StringBuilder,
    region: StringBuilder,
    provenance: StringBuilder,
    revision: UInt32Builder,
}

/// A string column for `rows` rows whose values took `bytes` last time.
fn strings(rows: usize, bytes: usize) -> StringBuilder {
    StringBuilder::with_capacity(rows, bytes + bytes / 8)
}

/// A list-of-strings column sized like the last batch's.
fn string_lists(rows: usize, items: usize, bytes: usize) -> ListBuilder<StringBuilder> {
    ListBuilder::with_capacity(strings(items + items / 8, bytes), rows)
}

/// Finishes `b` and leaves in its place an empty builder sized like the batch just
/// finished (the next batch is usually alike, so it grows without reallocating).
fn take_strings(b: &mut StringBuilder, rows: usize) -> ArrayRef {
    let next = strings(rows, b.values_slice().len());
    Arc::new(std::mem::replace(b, next).finish())
}

fn take_lists(b: &mut ListBuilder<StringBuilder>, rows: usize) -> ArrayRef {
    let next = string_lists(
        rows,
        b.values_ref().len(),
        b.values_ref().values_slice().len(),
    );
    Arc::new(std::mem::replace(b, next).finish())
}

fn take_bools(b: &mut BooleanBuilder, rows: usize) -> ArrayRef {
    Arc::new(std::mem::replace(b, BooleanBuilder::with_capacity(rows)).finish())
}

impl EventColumns {
    /// Empty columns with room for `rows` rows.
    pub fn with_capacity(rows: usize) -> Self {
        let s = |bytes_per_row: usize| strings(rows, rows * bytes_per_row);
        Self {
            rows: 0,
            time: TimestampMicrosecondBuilder::with_capacity(rows).with_timezone("UTC"),
            source: s(8),
            event_id: s(36),
            credential_kind: s(16),
            credential_id: s(24),
            credential_issuer: s(12),
            long_lived: BooleanBuilder::with_capacity(rows),
            chain: string_lists(rows, rows * 2, rows * 48),
            root_credential: s(24),
            agent: s(16),
            owner: s(16),
            method: s(16),
            confidence: Float32Builder::with_capacity(rows),
            unattributed_reason: s(0),
            principal_kind: s(12),
            principal_id: s(24),
            principal_name: s(16),
            principal_arn: s(48),
            account: s(12),
            session_issuer: s(48),
            role_session_name: s(16),
            source_identity: s(0),
            service: s(24),
            operation: s(16),
            action: s(40),
            read_only: BooleanBuilder::with_capacity(rows),
            resources: string_lists(rows, rows, rows * 48),
            success: BooleanBuilder::with_capacity(rows),
            error_code: s(0),
            source_ip: s(12),
            user_agent: s(48),
            client_app: s(0),
            mcp_server: s(0),
            region: s(10),
            provenance: s(64),
            revision: UInt32Builder::with_capacity(rows),
        }
    }

    /// Rows appended since the last [`EventColumns::finish`].
    pub fn len(&self) -> usize {
        self.rows
    }

    /// True when no row is waiting.
    pub fn is_empty(&self) -> bool {
        self.rows == 0
    }

    /// Appends the row of one attributed event (what [`EventRow::from_event`] holds).
    pub fn append(&mut self, e: &AttributedEvent) {
        self.append_revision(e, 0);
    }

    /// Appends the row of a revision of an event's attribution (see
    /// [`EventRow::revision`]).
    pub fn append_revision(&mut self, e: &AttributedEvent, revision: u32) {
        let u = &e.use_;
        let a = &e.attribution;
        let cred = u.credential.as_ref();
        self.rows += 1;
        self.time.append_value(micros(u.time));
        self.source.append_value(u.source.as_str());
        self.event_id.append_value(&u.event_id);
        self.credential_kind
            .append_option(cred.map(|c| serde_name(&c.kind)));
        self.credential_id
            .append_option(cred.map(|c| c.id.0.as_str()));
        self.credential_issuer
            .append_option(cred.and_then(|c| c.issuer.as_deref()));
        self.long_lived
            .append_value(cred.is_some_and(|c| c.kind.is_long_lived()));
        for c in &a.chain {
            self.chain.values().append_value(&c.0);
        }
        self.chain.append(true);
        self.root_credential
            .append_option(a.root_credential.as_ref().map(|c| c.0.as_str()));
        self.agent
            .append_option(a.agent.as_ref().map(|x| x.0.as_str()));
        self.owner
            .append_option(a.owner.as_ref().map(|x| x.0.as_str()));
        self.method.append_value(serde_name(&a.method));
        self.confidence.append_value(a.confidence);
        self.unattributed_reason
            .append_option(a.unattributed_reason.as_deref());
        self.principal_kind
            .append_value(serde_name(&u.principal.kind));
        self.principal_id.append_option(u.principal.id.as_deref());
        self.principal_name
            .append_option(u.principal.name.as_deref());
        self.principal_arn.append_option(u.principal.arn.as_deref());
        self.account.append_option(u.principal.account.as_deref());
        self.session_issuer
            .append_option(u.session.issuer_arn.as_deref());
        self.role_session_name
            .append_option(u.session.role_session_name.as_deref());
        self.source_identity
            .append_option(u.session.source_identity.as_deref());
        self.service.append_value(&u.operation.service);
        self.operation.append_value(&u.operation.name);
        // Written in place: `Operation::action` would allocate a String per row.
        let _ = u.operation.write_action(&mut self.action);
        self.action.append_value("");
        self.read_only.append_option(u.operation.read_only);
        for r in &u.resources {
            self.resources.values().append_value(r);
        }
        self.resources.append(true);
        self.success.append_value(u.outcome.success);
        self.error_code
            .append_option(u.outcome.error_code.as_deref());
        self.source_ip.append_option(u.client.source_ip.as_deref());
        self.user_agent
            .append_option(u.client.user_agent.as_deref());
        self.client_app
            .append_option(u.client.client_app.as_deref());
        self.mcp_server
            .append_option(u.client.mcp_server.as_deref());
        self.region.append_option(u.region.as_deref());
        let _ = u.provenance.write_to(&mut self.provenance);
        self.provenance.append_value("");
        self.revision.append_value(revision);
    }

    /// The record batch of the rows appended so far (`schema` is
    /// [`EventRow::schema`]); the columns are left empty, ready for the next batch.
    pub fn finish(&mut self, schema: &SchemaRef) -> Result<RecordBatch, ArrowError> {
        let n = std::mem::take(&mut self.rows);
        let columns: Vec<ArrayRef> = vec![
            Arc::new(
                std::mem::replace(
                    &mut self.time,
                    TimestampMicrosecondBuilder::with_capacity(n).with_timezone("UTC"),
                )
                .finish(),
            ),
            take_strings(&mut self.source, n),
            take_strings(&mut self.event_id, n),
            take_strings(&mut self.credential_kind, n),
            take_strings(&mut self.credential_id, n),
            take_strings(&mut self.credential_issuer, n),
            take_bools(&mut self.long_lived, n),
            take_lists(&mut self.chain, n),
            take_strings(&mut self.root_credential, n),
            take_strings(&mut self.agent, n),
            take_strings(&mut self.owner, n),
            take_strings(&mut self.method, n),
            Arc::new(
                std::mem::replace(&mut self.confidence, Float32Builder::with_capacity(n)).finish(),
            ),
            take_strings(&mut self.unattributed_reason, n),
            take_strings(&mut self.principal_kind, n),
            take_strings(&mut self.principal_id, n),
            take_strings(&mut self.principal_name, n),
            take_strings(&mut self.principal_arn, n),
            take_strings(&mut self.account, n),
            take_strings(&mut self.session_issuer, n),
            take_strings(&mut self.role_session_name, n),
            take_strings(&mut self.source_identity, n),
            take_strings(&mut self.service, n),
            take_strings(&mut self.operation, n),
            take_strings(&mut self.action, n),
            take_bools(&mut self.read_only, n),
            take_lists(&mut self.resources, n),
            take_bools(&mut self.success, n),
            take_strings(&mut self.error_code, n),
            take_strings(&mut self.source_ip, n),
            take_strings(&mut self.user_agent, n),
            take_strings(&mut self.client_app, n),
            take_strings(&mut self.mcp_server, n),
            take_strings(&mut self.region, n),
            take_strings(&mut self.provenance, n),
            Arc::new(
                std::mem::replace(&mut self.revision, UInt32Builder::with_capacity(n)).finish(),
            ),
        ];
        RecordBatch::try_new(schema.clone(), columns)
    }
}

/// One credential the graph knows (`credentials`, a snapshot as of the data's last event).
#[derive(Clone, Debug, Serialize)]
pub struct CredentialRow {
    /// Credential id.
    pub credential_id: SmolStr,
    /// Kind.
    pub kind: SmolStr,
    /// Valid until rotated.
    pub long_lived: bool,
    /// IAM user / role ARN / login it belongs to.
    pub principal: Option<SmolStr>,
    /// Role session name.
    pub session_name: Option<SmolStr>,
    /// `sourceIdentity`.
    pub source_identity: Option<SmolStr>,
    /// When it was issued, when the logs showed it.
    pub issued_at: Option<i64>,
    /// The credential it was issued from.
    pub parent_credential: Option<SmolStr>,
    /// How it was issued.
    pub issuance_method: Option<SmolStr>,
    /// Root of its issuance chain (itself when it has no parent).
    pub root_credential: SmolStr,
    /// Chain from it to its root, walking issuance edges.
    pub chain: Vec<SmolStr>,
    /// The agent it is attributed to (latest use, else the declared binding).
    pub agent: Option<SmolStr>,
    /// Accountable human.
    pub owner: Option<SmolStr>,
    /// How the latest use was attributed.
    pub method: Option<SmolStr>,
    /// Last status change (`Active`, `Inactive`, `Deleted`…).
    pub status: Option<SmolStr>,
    /// When the status changed.
    pub status_at: Option<i64>,
    /// First use seen.
    pub first_used: Option<i64>,
    /// Last use seen.
    pub last_used: Option<i64>,
    /// Number of uses in `events`.
    pub uses: u64,
    /// Credentials issued from it, transitively.
    pub descendant_credentials: u64,
    /// Services its lineage used (as a root; capped).
    pub services: Vec<SmolStr>,
    /// Resources its lineage touched (as a root; capped).
    pub resources: Vec<SmolStr>,
    /// Snapshot time: the last event time of the data.
    pub as_of: i64,
}

impl TableRow for CredentialRow {
    const TABLE: &'static str = "credentials";
    fn schema() -> SchemaRef {
        Arc::new(Schema::new(vec![
            text("credential_id"),
            text("kind"),
            Field::new("long_lived", DataType::Boolean, false),
            text_opt("principal"),
            text_opt("session_name"),
            text_opt("source_identity"),
            time_opt("issued_at"),
            text_opt("parent_credential"),
            text_opt("issuance_method"),
            text("root_credential"),
            list("chain"),
            text_opt("agent"),
            text_opt("owner"),
            text_opt("method"),
            text_opt("status"),
            time_opt("status_at"),
            time_opt("first_used"),
            time_opt("last_used"),
            Field::new("uses", DataType::UInt64, false),
            Field::new("descendant_credentials", DataType::UInt64, false),
            list("services"),
            list("resources"),
            time("as_of"),
        ]))
    }
    fn date(&self) -> NaiveDate {
        date_of(self.as_of)
    }
}

/// A human or an agent (`identities`).
#[derive(Clone, Debug, Serialize)]
pub struct IdentityRow {
    /// Human or agent id.
    pub id: SmolStr,
    /// `human` or `agent`.
    pub identity_type: SmolStr,
    /// Agent kind (`ai-agent`, `mcp-server`, `ci`, `service`); null for humans.
    pub kind: Option<SmolStr>,
    /// Human's e-mail.
    pub email: Option<String>,
    /// For agents: their accountable human.
    pub owner: Option<SmolStr>,
    /// `active` or `departed` (for an agent: its owner's status).
    pub status: SmolStr,
    /// When the human (an agent's owner) departed.
    pub departed_at: Option<i64>,
    /// Agent runtime (host, cluster…).
    pub runtime: Option<String>,
    /// Credentials declared for an agent in the inventory.
    pub declared_credentials: Vec<SmolStr>,
    /// Snapshot time.
    pub as_of: i64,
}

impl TableRow for IdentityRow {
    const TABLE: &'static str = "identities";
    fn schema() -> SchemaRef {
        Arc::new(Schema::new(vec![
            text("id"),
            text("identity_type"),
            text_opt("kind"),
            text_opt("email"),
            text_opt("owner"),
            text("status"),
            time_opt("departed_at"),
            text_opt("runtime"),
            list("declared_credentials"),
            time("as_of"),
        ]))
    }
    fn date(&self) -> NaiveDate {
        date_of(self.as_of)
    }
}

/// One edge of the lineage graph (`edges`).
#[derive(Clone, Debug, Serialize)]
pub struct EdgeRow {
    /// `credential`, `agent` or `human`.
    pub from_type: SmolStr,
    /// Its id.
    pub from_id: SmolStr,
    /// `issued_from` (child credential → parent), `bound_to` (credential → agent),
    /// `owned_by` (agent → human).
    pub relation: SmolStr,
    /// `credential`, `agent` or `human`.
    pub to_type: SmolStr,
    /// Its id.
    pub to_id: SmolStr,
    /// Issuance method for `issued_from`.
    pub method: Option<SmolStr>,
    /// When the edge started to hold (issuance time); null when declared.
    pub valid_from: Option<i64>,
    /// When it stopped: the `from` credential was deactivated, deleted or revoked.
    pub valid_to: Option<i64>,
    /// Snapshot time.
    pub as_of: i64,
}

impl TableRow for EdgeRow {
    const TABLE: &'static str = "edges";
    fn schema() -> SchemaRef {
        Arc::new(Schema::new(vec![
            text("from_type"),
            text("from_id"),
            text("relation"),
            text("to_type"),
            text("to_id"),
            text_opt("method"),
            time_opt("valid_from"),
            time_opt("valid_to"),
            time("as_of"),
        ]))
    }
    fn date(&self) -> NaiveDate {
        date_of(self.as_of)
    }
}

/// One alert (`alerts`).
#[derive(Clone, Debug, Serialize)]
pub struct AlertRow {
    /// Alert id.
    pub id: SmolStr,
    /// Detector.
    pub detector: SmolStr,
    /// `low`, `medium`, `high`, `critical`.
    pub severity: SmolStr,
    /// Title.
    pub title: String,
    /// Summary.
    pub summary: String,
    /// First evidence event time.
    pub first_seen: i64,
    /// Latest evidence event time.
    pub last_seen: i64,
    /// Events folded into it.
    pub count: u64,
    /// Dedup key.
    pub dedup_key: String,
    /// Credential kind.
    pub credential_kind: Option<SmolStr>,
    /// Credential used.
    pub credential_id: Option<SmolStr>,
    /// Root credential.
    pub root_credential: Option<SmolStr>,
    /// Agent.
    pub agent: Option<SmolStr>,
    /// Accountable human.
    pub owner: Option<SmolStr>,
    /// Lineage path as `node:id` steps, used credential first.
    pub lineage_path: Vec<String>,
    /// MITRE ATT&CK technique ids.
    pub mitre: Vec<SmolStr>,
    /// Evidence as JSON text.
    pub evidence: String,
    /// Evidence event ids (capped).
    pub event_ids: Vec<SmolStr>,
    /// Credentials issued from the root, transitively.
    pub blast_descendant_credentials: Option<u64>,
    /// Services the root's lineage used.
    pub blast_services: Vec<SmolStr>,
    /// Resources the root's lineage touched.
    pub blast_resources: Vec<SmolStr>,
}

impl AlertRow {
    /// The row of an alert.
    pub fn from_alert(a: &Alert) -> Self {
        let blast = a.blast_radius.as_ref();
        Self {
            id: a.id.clone(),
            detector: a.detector.clone(),
            severity: serde_name(&a.severity),
            title: a.title.clone(),
            summary: a.summary.clone(),
            first_seen: micros(a.first_seen),
            last_seen: micros(a.last_seen),
            count: a.count,
            dedup_key: a.dedup_key.clone(),
            credential_kind: a.credential.as_ref().map(|c| serde_name(&c.kind)),
            credential_id: a.credential.as_ref().map(|c| c.id.0.clone()),
            root_credential: a.root_credential.as_ref().map(|c| c.0.clone()),
            agent: a.agent.as_ref().map(|x| x.0.clone()),
            owner: a.owner.as_ref().map(|x| x.0.clone()),
            lineage_path: a
                .lineage_path
                .iter()
                .map(|s| format!("{}:{}", s.node, s.id))
                .collect(),
            mitre: a.mitre.clone(),
            evidence: a.evidence.to_string(),
            event_ids: a.event_ids.clone(),
            blast_descendant_credentials: blast.map(|b| b.descendant_credentials),
            blast_services: blast.map(|b| b.services.clone()).unwrap_or_default(),
            blast_resources: blast.map(|b| b.resources.clone()).unwrap_or_default(),
        }
    }
}

impl TableRow for AlertRow {
    const TABLE: &'static str = "alerts";
    fn schema() -> SchemaRef {
        Arc::new(Schema::new(vec![
            text("id"),
            text("detector"),
            text("severity"),
            text("title"),
            text("summary"),
            time("first_seen"),
            time("last_seen"),
            Field::new("count", DataType::UInt64, false),
            text("dedup_key"),
            text_opt("credential_kind"),
            text_opt("credential_id"),
            text_opt("root_credential"),
            text_opt("agent"),
            text_opt("owner"),
            list("lineage_path"),
            list("mitre"),
            text("evidence"),
            list("event_ids"),
            Field::new("blast_descendant_credentials", DataType::UInt64, true),
            list("blast_services"),
            list("blast_resources"),
        ]))
    }
    fn date(&self) -> NaiveDate {
        date_of(self.first_seen)
    }
}

/// One revocation request and its result (`actions`).
#[derive(Clone, Debug, Serialize)]
pub struct ActionRow {
    /// Idempotency key.
    pub idempotency_key: String,
    /// What to do (`deactivate-aws-access-key`…).
    pub kind: SmolStr,
    /// Credential kind.
    pub credential_kind: SmolStr,
    /// Credential.
    pub credential_id: SmolStr,
    /// Why.
    pub reason: String,
    /// When requested.
    pub requested_at: i64,
    /// `requested`, `dry-run`, `pending-approval`, `refused`, `done`, `failed`.
    pub status: SmolStr,
    /// Result or error text.
    pub result: Option<String>,
    /// Executor target as JSON text.
    pub target: String,
}

impl ActionRow {
    /// The row of an action.
    pub fn from_action(a: &Action) -> Self {
        Self {
            idempotency_key: a.idempotency_key.clone(),
            kind: serde_name(&a.kind),
            credential_kind: serde_name(&a.credential.kind),
            credential_id: a.credential.id.0.clone(),
            reason: a.reason.clone(),
            requested_at: micros(a.requested_at),
            status: serde_name(&a.status),
            result: a.result.clone(),
            target: a.target.to_string(),
        }
    }
}

impl TableRow for ActionRow {
    const TABLE: &'static str = "actions";
    fn schema() -> SchemaRef {
        Arc::new(Schema::new(vec![
            text("idempotency_key"),
            text("kind"),
            text("credential_kind"),
            text("credential_id"),
            text("reason"),
            time("requested_at"),
            text("status"),
            text_opt("result"),
            text("target"),
        ]))
    }
    fn date(&self) -> NaiveDate {
        date_of(self.requested_at)
    }
}

/// One record that could not be normalized (`dead_letters`).
#[derive(Clone, Debug, Serialize)]
pub struct DeadLetterRow {
    /// When the run read it (wall clock; dead letters carry no event time).
    pub ingested_at: i64,
    /// Source whose parser rejected it.
    pub source: SmolStr,
    /// Why.
    pub reason: String,
    /// Where it was read.
    pub provenance: String,
    /// Length of the original bytes.
    pub original_len: u64,
    /// Original bytes as text, when UTF-8.
    pub original: Option<String>,
    /// Original bytes as base64, when not UTF-8.
    pub original_base64: Option<String>,
}

impl DeadLetterRow {
    /// The row of a dead letter read at `ingested_at`.
    pub fn from_dead_letter(d: &DeadLetter, ingested_at: DateTime<Utc>) -> Self {
        Self {
            ingested_at: micros(ingested_at),
            source: SmolStr::new(d.source.as_str()),
            reason: d.reason.clone(),
            provenance: d.provenance.to_string(),
            original_len: d.original_len as u64,
            original: d.original.clone(),
            original_base64: d.original_base64.clone(),
        }
    }
}

impl TableRow for DeadLetterRow {
    const TABLE: &'static str = "dead_letters";
    fn schema() -> SchemaRef {
        Arc::new(Schema::new(vec![
            time("ingested_at"),
            text("source"),
            text("reason"),
            text("provenance"),
            Field::new("original_len", DataType::UInt64, false),
            text_opt("original"),
            text_opt("original_base64"),
        ]))
    }
    fn date(&self) -> NaiveDate {
        date_of(self.ingested_at)
    }
}

/// Every table name with its schema, in README order.
pub fn all_schemas() -> Vec<(&'static str, SchemaRef)> {
    vec![
        (EventRow::TABLE, EventRow::schema()),
        (CredentialRow::TABLE, CredentialRow::schema()),
        (IdentityRow::TABLE, IdentityRow::schema()),
        (EdgeRow::TABLE, EdgeRow::schema()),
        (AlertRow::TABLE, AlertRow::schema()),
        (ActionRow::TABLE, ActionRow::schema()),
        (DeadLetterRow::TABLE, DeadLetterRow::schema()),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::json::reader::ReaderBuilder;

    #[test]
    fn serde_name_is_the_serialized_name() {
        use lineage_core::{AttributionMethod, CredentialKind, Source};
        assert_eq!(serde_name(&CredentialKind::AwsAccessKey), "aws-access-key");
        assert_eq!(
            serde_name(&AttributionMethod::IssuanceChain),
            "issuance-chain"
        );
        assert_eq!(serde_name(&Source::GitHub), "github");
        // Not a unit variant: the JSON text.
        assert_eq!(serde_name(&3u8), "3");
        assert_eq!(serde_name(&"x"), "x");
    }

    /// Attributed events that exercise every column: missing and present options,
    /// empty and long lists, non-ASCII text, every source and provenance kind.
    fn event(i: usize) -> AttributedEvent {
        let some = |s: &str| (!i.is_multiple_of(3)).then(|| format!("{s}-{i}"));
        let provenance = match i % 3 {
            0 => serde_json::json!({ "kind": "file", "path": "a/b.json.gz", "record": i }),
            1 => {
                serde_json::json!({ "kind": "kafka", "topic": "lineage.raw", "partition": i % 4, "offset": i * 7 })
            }
            _ => serde_json::json!({ "kind": "stream", "name": "stdin", "record": i }),
        };
        let credential = (i % 5 != 4).then(|| {
            serde_json::json!({
                "kind": (["aws-access-key", "aws-session-key", "github-classic-pat", "vault-service-token"][i % 4]),
                "id": format!("AKIA{i:016}"),
                "issuer": some("111122223333"),
            })
        });
        serde_json::from_value(serde_json::json!({
            "use": {
                "source": (["cloudtrail", "entra", "github", "vault"][i % 4]),
                "event_id": format!("ev-{i}"),
                "time": format!("2026-10-0{}T10:00:{:02}.123456Z", 1 + i % 3, i % 60),
                "credential": credential,
                "principal": {
                    "kind": (["iam-user", "assumed-role", "user", "service-principal"][i % 4]),
                    "id": some("pid"), "name": some("ñame"), "arn": some("arn:aws:iam::1:user/x"),
                    "account": some("acct"),
                },
                "session": {
                    "issuer_arn": some("arn:aws:iam::1:role/r"),
                    "role_session_name": some("rsn"),
                    "source_identity": some("sid"),
                },
                "client": {
                    "user_agent": some("claude-code/1.0"), "source_ip": some("10.0.0.1"),
                    "client_app": some("app"), "mcp_server": some("github"),
                },
                "operation": {
                    "service": (["s3", "sts", "repo", "secret"][i % 4]),
                    "name": format!("Op{i}"),
                    "read_only": ([None, Some(true), Some(false)][i % 3]),
                },
                "resources": (0..i % 3).map(|j| format!("arn:r{j}-{i}")).collect::<Vec<_>>(),
                "outcome": { "success": !i.is_multiple_of(7), "error_code": some("AccessDenied") },
                "region": some("us-east-1"),
                "provenance": provenance,
            },
            "attribution": {
                "chain": (0..i % 4).map(|j| format!("c{j}")).collect::<Vec<_>>(),
                "root_credential": some("root"),
                "agent": some("agent"),
                "owner": some("ówner"),
                "method": (["declared", "issuance-chain", "none"][i % 3]),
                "confidence": i as f32 / 7.0,
                "unattributed_reason": i.is_multiple_of(5).then_some("no \"chain\"\n"),
            }
        }))
        .unwrap()
    }

    #[test]
    fn a_date_is_closed_once_a_later_day_has_begun() {
        use chrono::TimeZone;
        use parquet::file::reader::{FileReader, SerializedFileReader};
        let dir = tempfile::tempdir().unwrap();
        let options = crate::TablesOptions::default();
        let tables = crate::LineageTables::new(dir.path(), options).unwrap();
        let mut events = tables.events().unwrap();
        let at = |day: u32, i: usize| {
            let mut e = event(i);
            e.use_.time = Utc.with_ymd_and_hms(2026, 10, day, 12, 0, 0).unwrap();
            e
        };
        let part = |day: u32, n: u32| {
            dir.path()
                .join(format!("events/date=2026-10-{day:02}/part-{n}.parquet"))
        };
        let rows = |day: u32, n: u32| {
            let file = std::fs::File::open(part(day, n)).unwrap();
            SerializedFileReader::new(file)
                .unwrap()
                .metadata()
                .file_metadata()
                .num_rows()
        };
        for i in 0..10 {
            events.write(&at(1, i)).unwrap();
        }
        for i in 0..10 {
            events.write(&at(2, i)).unwrap();
        }
        // The day before the newest stays open, for events a little out of order.
        events.write(&at(1, 10)).unwrap();
        assert!(!part(1, 0).exists());
        events.write(&at(3, 0)).unwrap();
        assert_eq!(rows(1, 0), 11, "day 1 closed once day 3 began");
        assert!(!part(2, 0).exists());
        // A later event of a closed date goes to a new file.
        events.write(&at(1, 11)).unwrap();
        assert_eq!(events.finish().unwrap().rows(), 23);
        assert_eq!((rows(1, 1), rows(2, 0), rows(3, 0)), (1, 10, 1));
    }

    #[test]
    fn event_columns_equal_the_serde_path() {
        let schema = EventRow::schema();
        let mut columns = EventColumns::with_capacity(4);
        let mut decoder = ReaderBuilder::new(schema.clone())
            .with_batch_size(1024)
            .build_decoder()
            .unwrap();
        // Two batches of different sizes through the same columns: the second starts
        // from builders sized by the first.
        for range in [0..50, 50..57] {
            let events: Vec<AttributedEvent> = range.map(event).collect();
            for e in &events {
                columns.append(e);
            }
            assert_eq!(columns.len(), events.len());
            let direct = columns.finish(&schema).unwrap();
            assert!(columns.is_empty());
            let rows: Vec<EventRow> = events.iter().map(EventRow::from_event).collect();
            decoder.serialize(&rows).unwrap();
            let via_serde = decoder.flush().unwrap().unwrap();
            assert_eq!(direct, via_serde);
        }
    }
}
