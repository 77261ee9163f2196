//! `lineage-sql` owns SQL over the lineage tables: a DataFusion session with every
//! Parquet table registered by name ([`open_session`]; a table with no files yet is
//! registered empty with its schema), read-only query execution ([`run_query`]),
//! result printing as an aligned table, CSV or JSON ([`format_batches`]) and a
//! read-only Postgres-wire server with optional password authentication
//! ([`serve`]) so psql, Grafana and Metabase can query lineage. It never writes the
//! tables: replay and the live pipeline do, through `lineage-sinks`.
#![warn(missing_docs, unreachable_pub)]

use serde::{Deserialize, Serialize};

mod format;
pub mod picture;
mod serve;
mod session;

pub use format::format_batches;
pub use serve::{serve, ReadOnlyHook, ServeHandle};
pub use session::{
    open_session, open_session_with, run_query, SessionOptions, DEFAULT_MEMORY_LIMIT_BYTES,
};

/// The DataFusion session type the functions here take.
pub use datafusion::prelude::SessionContext;

/// What can go wrong in a SQL session.
#[derive(Debug, thiserror::Error)]
pub enum SqlError {
    /// The tables directory cannot be used.
    #[error("tables directory {0}: {1}")]
    Tables(String, String),
    /// The query failed to parse, plan or run.
    #[error("{0}")]
    Query(String),
    /// The statement would change something; the session is read-only.
    #[error("read-only session: {0} statements are not allowed (only queries)")]
    ReadOnly(String),
    /// Results could not be printed.
    #[error("formatting results: {0}")]
    Format(String),
    /// The server could not start.
    #[error("server on {0}: {1}")]
    Serve(String, String),
}

/// The lineage tables, as registered in a SQL session.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LineageTable {
    /// Every attributed credential use.
    Events,
    /// Every credential seen: kind, principal, issuance, first and last use, status.
    Credentials,
    /// Humans and agents.
    Identities,
    /// Lineage graph edges with valid-from / valid-to.
    Edges,
    /// Alerts.
    Alerts,
    /// Revocation actions and their results.
    Actions,
    /// Records that could not be normalized.
    DeadLetters,
}

impl LineageTable {
    /// Every table, in the order the README documents them.
    pub const ALL: [LineageTable; 7] = [
        LineageTable::Events,
        LineageTable::Credentials,
        LineageTable::Identities,
        LineageTable::Edges,
        LineageTable::Alerts,
        LineageTable::Actions,
        LineageTable::DeadLetters,
    ];

    /// The SQL name (also the directory name under the tables root).
    pub fn name(self) -> &'static str {
        match self {
            LineageTable::Events => "events",
            LineageTable::Credentials => "credentials",
            LineageTable::Identities => "identities",
            LineageTable::Edges => "edges",
            LineageTable::Alerts => "alerts",
            LineageTable::Actions => "actions",
            LineageTable::DeadLetters => "dead_letters",
        }
    }
}

/// How `lineage sql` prints results.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum OutputFormat {
    /// An aligned text table.
    #[default]
    Table,
    /// CSV with a header row.
    Csv,
    /// One JSON object per row.
    Json,
}

/// Settings of the Postgres-wire server (`lineage sql --serve`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServeConfig {
    /// Listen address; loopback by default so nothing is exposed by accident.
    #[serde(default = "default_listen")]
    pub listen: String,
    /// Require this user name (with `password`).
    #[serde(default)]
    pub user: Option<String>,
    /// Password (SCRAM-SHA-256); no authentication when unset. Read from the
    /// environment, never logged. Required when `listen` is not a loopback address.
    #[serde(default)]
    pub password: Option<String>,
    /// Connections served at once (default 32); more are closed on accept.
    #[serde(default = "default_max_connections")]
    pub max_connections: usize,
    /// A statement that has not finished (planning, execution and every result
    /// row) after this many seconds fails with SQLSTATE 57014 and its work stops.
    #[serde(default = "default_statement_timeout_secs")]
    pub statement_timeout_secs: f64,
    /// TLS certificate chain (PEM). With `tls_key`, clients must use TLS and SCRAM
    /// binds to the certificate (SCRAM-SHA-256-PLUS).
    #[serde(default)]
    pub tls_cert: Option<std::path::PathBuf>,
    /// The certificate's private key (PEM).
    #[serde(default)]
    pub tls_key: Option<std::path::PathBuf>,
}

const fn default_statement_timeout_secs() -> f64 {
    60.0
}

const fn default_max_connections() -> usize {
    32
}

fn default_listen() -> String {
    "127.0.0.1:5433".into()
}

impl Default for ServeConfig {
    fn default() -> Self {
        Self {
            listen: default_listen(),
            user: None,
            password: None,
            max_connections: default_max_connections(),
            statement_timeout_secs: default_statement_timeout_secs(),
            tls_cert: None,
            tls_key: None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_names_are_unique_snake_case() {
        let names: std::collections::HashSet<_> =
            LineageTable::ALL.iter().map(|t| t.name()).collect();
        assert_eq!(names.len(), LineageTable::ALL.len());
        for t in LineageTable::ALL {
            assert_eq!(serde_json::to_value(t).unwrap(), t.name());
        }
    }
}
