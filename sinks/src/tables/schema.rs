//! The Arrow schemas of the lineage tables and the row types that fill them.
//!
//! Every table is declared twice, on purpose, side by side: a row struct (what one
//! row holds, serialized field by field into Arrow by `arrow-json`'s serde decoder)
//! and its [`Schema`]. Field names and order match (the decoder refuses a row that
//! does not fit; `sql/tests` and `tests/sql_tables.rs` write and read every table). Timestamps are microseconds since the epoch in UTC.
//! The README section "Lineage tables" documents every column.

use std::sync::Arc;

use arrow::array::{
    ArrayRef, BooleanBuilder, Float32Builder, ListBuilder, StringBuilder,
    TimestampMicrosecondBuilder,
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
    /// Builds the record batch of `rows` directly, for tables written on the hot
    /// path; `None` (the default) lets the writer go through `arrow-json`'s serde
    /// decoder, which is generic but about three times slower.
    fn encode(_rows: &[Self], _schema: &SchemaRef) -> Option<Result<RecordBatch, ArrowError>>
    where
        Self: Sized,
    {
        None
    }
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
        }
    }
}

impl TableRow for EventRow {
    const TABLE: &'static str = "events";
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
        ]))
    }
    fn date(&self) -> NaiveDate {
        date_of(self.time)
    }
    fn encode(rows: &[Self], schema: &SchemaRef) -> Option<Result<RecordBatch, ArrowError>> {
        Some(encode_events(rows, schema))
    }
}

/// The `events` batch built column by column (same columns as [`EventRow::schema`],
/// checked against the serde path by a test).
fn encode_events(rows: &[EventRow], schema: &SchemaRef) -> Result<RecordBatch, ArrowError> {
    let n = rows.len();
    let strings = |f: &dyn Fn(&EventRow) -> &str| -> ArrayRef {
        let mut b = StringBuilder::with_capacity(n, n * 16);
        for r in rows {
            b.append_value(f(r));
        }
        Arc::new(b.finish())
    };
    let opt_strings = |f: &dyn Fn(&EventRow) -> Option<&str>| -> ArrayRef {
        let mut b = StringBuilder::with_capacity(n, n * 16);
        for r in rows {
            b.append_option(f(r));
        }
        Arc::new(b.finish())
    };
    let bools = |f: &dyn Fn(&EventRow) -> Option<bool>| -> ArrayRef {
        let mut b = BooleanBuilder::with_capacity(n);
        for r in rows {
            b.append_option(f(r));
        }
        Arc::new(b.finish())
    };
    let lists = |f: &dyn Fn(&EventRow) -> &[SmolStr]| -> ArrayRef {
        let mut b = ListBuilder::new(StringBuilder::new());
        for r in rows {
            for item in f(r) {
                b.values().append_value(item);
            }
            b.append(true);
        }
        Arc::new(b.finish())
    };
    let mut time = TimestampMicrosecondBuilder::with_capacity(n).with_timezone("UTC");
    let mut confidence = Float32Builder::with_capacity(n);
    for r in rows {
        time.append_value(r.time);
        confidence.append_value(r.confidence);
    }
    let columns: Vec<ArrayRef> = vec![
        Arc::new(time.finish()),
        strings(&|r| &r.source),
        strings(&|r| &r.event_id),
        opt_strings(&|r| r.credential_kind.as_deref()),
        opt_strings(&|r| r.credential_id.as_deref()),
        opt_strings(&|r| r.credential_issuer.as_deref()),
        bools(&|r| Some(r.long_lived)),
        lists(&|r| &r.chain),
        opt_strings(&|r| r.root_credential.as_deref()),
        opt_strings(&|r| r.agent.as_deref()),
        opt_strings(&|r| r.owner.as_deref()),
        strings(&|r| &r.method),
        Arc::new(confidence.finish()),
        opt_strings(&|r| r.unattributed_reason.as_deref()),
        strings(&|r| &r.principal_kind),
        opt_strings(&|r| r.principal_id.as_deref()),
        opt_strings(&|r| r.principal_name.as_deref()),
        opt_strings(&|r| r.principal_arn.as_deref()),
        opt_strings(&|r| r.account.as_deref()),
        opt_strings(&|r| r.session_issuer.as_deref()),
        opt_strings(&|r| r.role_session_name.as_deref()),
        opt_strings(&|r| r.source_identity.as_deref()),
        strings(&|r| &r.service),
        strings(&|r| &r.operation),
        strings(&|r| &r.action),
        bools(&|r| r.read_only),
        lists(&|r| &r.resources),
        bools(&|r| Some(r.success)),
        opt_strings(&|r| r.error_code.as_deref()),
        opt_strings(&|r| r.source_ip.as_deref()),
        opt_strings(&|r| r.user_agent.as_deref()),
        opt_strings(&|r| r.client_app.as_deref()),
        opt_strings(&|r| r.mcp_server.as_deref()),
        opt_strings(&|r| r.region.as_deref()),
        strings(&|r| &r.provenance),
    ];
    RecordBatch::try_new(schema.clone(), columns)
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

    fn row(i: usize) -> EventRow {
        let some = |s: &str| (!i.is_multiple_of(3)).then(|| SmolStr::new(format!("{s}-{i}")));
        EventRow {
            time: 1_700_000_000_000_000 + i as i64 * 1_000_003,
            source: SmolStr::new(["cloudtrail", "entra", "github", "vault"][i % 4]),
            event_id: SmolStr::new(format!("ev-{i}")),
            credential_kind: some("aws-access-key"),
            credential_id: some("AKIA"),
            credential_issuer: some("111122223333"),
            long_lived: i.is_multiple_of(2),
            chain: (0..i % 4).map(|j| SmolStr::new(format!("c{j}"))).collect(),
            root_credential: some("root"),
            agent: some("agent"),
            owner: some("ówner"),
            method: SmolStr::new("issuance-chain"),
            confidence: i as f32 / 7.0,
            unattributed_reason: i.is_multiple_of(5).then(|| "no \"chain\"\n".to_owned()),
            principal_kind: SmolStr::new("iam-user"),
            principal_id: some("pid"),
            principal_name: some("name"),
            principal_arn: some("arn:aws:iam::1:user/x"),
            account: some("acct"),
            session_issuer: some("issuer"),
            role_session_name: some("rsn"),
            source_identity: some("sid"),
            service: SmolStr::new("s3"),
            operation: SmolStr::new("GetObject"),
            action: "s3:GetObject".into(),
            read_only: [None, Some(true), Some(false)][i % 3],
            resources: (0..i % 3)
                .map(|j| SmolStr::new(format!("arn:r{j}")))
                .collect(),
            success: !i.is_multiple_of(7),
            error_code: some("AccessDenied"),
            source_ip: some("10.0.0.1"),
            user_agent: some("ua"),
            client_app: some("app"),
            mcp_server: some("mcp"),
            region: some("us-east-1"),
            provenance: format!("file.json.gz#{i}"),
        }
    }

    #[test]
    fn events_built_directly_equal_the_serde_path() {
        let rows: Vec<EventRow> = (0..50).map(row).collect();
        let schema = EventRow::schema();
        let direct = EventRow::encode(&rows, &schema).unwrap().unwrap();
        let mut decoder = ReaderBuilder::new(schema.clone())
            .with_batch_size(1024)
            .build_decoder()
            .unwrap();
        decoder.serialize(&rows).unwrap();
        let via_serde = decoder.flush().unwrap().unwrap();
        assert_eq!(direct, via_serde);
    }
}
