//! `lineage-sql` will own SQL over the lineage tables: a DataFusion session with
//! the Parquet tables registered by name, the `lineage sql` command (table, CSV or
//! JSON output, an interactive shell) and a read-only Postgres-wire server so psql,
//! Grafana and Metabase can query lineage. It must never write the tables: replay
//! and the live pipeline do, through `lineage-sinks`.
//!
//! Until the query engine lands, this crate holds the names and meanings of the
//! tables and the settings of the server, which the rest of the pipeline already
//! codes against.
#![warn(missing_docs, unreachable_pub)]

use serde::{Deserialize, Serialize};

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
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServeConfig {
    /// Listen address; loopback by default so nothing is exposed by accident.
    #[serde(default = "default_listen")]
    pub listen: String,
    /// Require this user name (with `password`); no authentication when unset.
    #[serde(default)]
    pub user: Option<String>,
    /// Password for `user`. Read from the environment or a file, never logged.
    #[serde(default)]
    pub password: Option<String>,
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
