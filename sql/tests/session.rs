//! The SQL session over a tables directory written by `lineage-sinks`: tables are
//! registered by name with their `date` partition, missing tables are empty with
//! their schema, results print in every format, and the session is read-only.

use lineage_core::{AttributedEvent, DeadLetter, Provenance, Source};
use lineage_sql::{
    format_batches, open_session, open_session_with, run_query, OutputFormat, ReadOnlyHook,
    SessionOptions, SqlError,
};
use lineage_tables::{LineageTables, TablesOptions};
use serde_json::json;

fn event(
    id: &str,
    time: &str,
    key: &str,
    agent: Option<&str>,
    owner: Option<&str>,
) -> AttributedEvent {
    serde_json::from_value(json!({
        "use": {
            "source": "cloudtrail",
            "event_id": id,
            "time": time,
            "credential": { "kind": "aws-access-key", "id": key, "issuer": "111122223333" },
            "principal": { "kind": "iam-user", "name": "svc" },
            "operation": { "service": "s3", "name": "GetObject", "read_only": true },
            "resources": ["arn:aws:s3:::bucket/a", "arn:aws:s3:::bucket/b"],
            "outcome": { "success": true },
            "provenance": { "kind": "file", "path": "x.json", "record": 1 }
        },
        "attribution": {
            "chain": [key],
            "root_credential": key,
            "agent": agent,
            "owner": owner,
            "method": if agent.is_some() { "declared" } else { "none" },
            "confidence": if agent.is_some() { 1.0 } else { 0.0 }
        }
    }))
    .unwrap()
}

/// Writes `events` (three uses over two days, rolled into one-row files) and
/// `dead_letters` only; every other table is missing.
fn write_tables(dir: &std::path::Path) {
    let options = TablesOptions {
        batch_rows: 1,
        max_rows_per_file: 1,
        max_bytes_per_file: usize::MAX,
    };
    let tables = LineageTables::new(dir, options).unwrap();
    let mut events = tables.events().unwrap();
    events
        .write(&event(
            "e1",
            "2026-10-05T10:00:00Z",
            "AKIAAAAAAAAAAAAAAAA1",
            Some("bot"),
            Some("alice"),
        ))
        .unwrap();
    events
        .write(&event(
            "e2",
            "2026-10-05T11:00:00Z",
            "AKIAAAAAAAAAAAAAAAA1",
            Some("bot"),
            Some("alice"),
        ))
        .unwrap();
    events
        .write(&event(
            "e3",
            "2026-10-06T09:00:00Z",
            "AKIAAAAAAAAAAAAAAAA2",
            None,
            None,
        ))
        .unwrap();
    assert_eq!(events.finish().unwrap().rows(), 3);
    let mut dead = tables.dead_letters().unwrap();
    dead.write(&DeadLetter::new(
        Source::GitHub,
        "not JSON",
        Provenance::file("gh.jsonl", 7),
        b"{oops",
    ))
    .unwrap();
    assert_eq!(dead.finish().unwrap(), 1);
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

#[test]
fn tables_are_registered_by_name_with_date_partitions() {
    let dir = tempfile::tempdir().unwrap();
    write_tables(dir.path());
    // One file per row (rolled by row count), in the partition of its date, none half-written.
    let day1: Vec<_> = std::fs::read_dir(dir.path().join("events/date=2026-10-05"))
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    let mut day1 = day1;
    day1.sort();
    assert_eq!(day1, ["part-0.parquet", "part-1.parquet"]);
    runtime().block_on(async {
        let ctx = open_session(dir.path()).await.unwrap();
        let batches = run_query(
            &ctx,
            "SELECT date, owner, count(*) AS uses, sum(cardinality(resources)) AS resources \
             FROM events GROUP BY date, owner ORDER BY date",
        )
        .await
        .unwrap();
        let csv = format_batches(&batches, OutputFormat::Csv).unwrap();
        assert_eq!(
            csv,
            "date,owner,uses,resources\n2026-10-05,alice,2,4\n2026-10-06,,1,2\n"
        );
        // Missing tables are empty, with their schema.
        for table in ["credentials", "identities", "edges", "alerts", "actions"] {
            let b = run_query(&ctx, &format!("SELECT count(*) AS n FROM {table}"))
                .await
                .unwrap();
            assert_eq!(
                format_batches(&b, OutputFormat::Csv).unwrap(),
                "n\n0\n",
                "{table}"
            );
        }
        let b = run_query(&ctx, "SELECT owner, agent, date FROM alerts")
            .await
            .unwrap();
        assert_eq!(
            format_batches(&b, OutputFormat::Csv).unwrap(),
            "owner,agent,date\n"
        );
        // The raw bytes of dead letters are hidden unless asked for.
        let hidden = run_query(&ctx, "SELECT original FROM dead_letters").await;
        assert!(hidden.is_err(), "{hidden:?}");
        let with_bytes = open_session_with(
            dir.path(),
            &SessionOptions {
                dead_letter_bytes: true,
                ..SessionOptions::default()
            },
        )
        .await
        .unwrap();
        let b = run_query(
            &with_bytes,
            "SELECT source, reason, original FROM dead_letters",
        )
        .await
        .unwrap();
        let json = format_batches(&b, OutputFormat::Json).unwrap();
        assert_eq!(
            json.trim(),
            r#"{"source":"github","reason":"not JSON","original":"{oops"}"#
        );
    });
}

#[test]
fn the_session_is_read_only_and_errors_are_clear() {
    let dir = tempfile::tempdir().unwrap();
    write_tables(dir.path());
    runtime().block_on(async {
        let ctx = open_session(dir.path()).await.unwrap();
        for stmt in [
            "CREATE TABLE t AS SELECT * FROM events",
            "INSERT INTO events SELECT * FROM events",
            "DROP TABLE events",
            "COPY events TO '/tmp/lineage-sql-test.parquet'",
            "SET datafusion.execution.batch_size = 1",
        ] {
            let err = run_query(&ctx, stmt).await.unwrap_err();
            assert!(matches!(err, SqlError::Query(_)), "{stmt}: {err}");
        }
        let b = run_query(&ctx, "SELECT count(*) AS n FROM events")
            .await
            .unwrap();
        assert_eq!(format_batches(&b, OutputFormat::Csv).unwrap(), "n\n3\n");
        let err = run_query(&ctx, "SELECT no_such_column FROM events")
            .await
            .unwrap_err();
        assert!(err.to_string().contains("no_such_column"), "{err}");
    });
    let missing = dir.path().join("nope");
    let Err(err) = runtime().block_on(open_session(&missing)) else {
        panic!("a missing directory opened");
    };
    assert!(err.to_string().contains("not a directory"), "{err}");
}

#[test]
fn the_wire_hook_allows_only_reading_statements() {
    use datafusion::sql::sqlparser::dialect::PostgreSqlDialect;
    use datafusion::sql::sqlparser::parser::Parser;
    let allowed = |sql: &str| {
        let stmts = Parser::parse_sql(&PostgreSqlDialect {}, sql).unwrap();
        ReadOnlyHook::allows(&stmts[0])
    };
    for sql in [
        "SELECT * FROM events",
        "WITH x AS (SELECT 1) SELECT * FROM x",
        "EXPLAIN SELECT 1",
        "SHOW TABLES",
        "SET search_path = public",
        "BEGIN",
        "COMMIT",
    ] {
        assert!(allowed(sql), "{sql} should be allowed");
    }
    for sql in [
        "CREATE TABLE t (a INT)",
        "CREATE VIEW v AS SELECT 1",
        "INSERT INTO events VALUES (1)",
        "UPDATE events SET owner = 'x'",
        "DELETE FROM events",
        "DROP TABLE events",
        "COPY events TO '/tmp/x.csv'",
        "EXPLAIN ANALYZE DELETE FROM events",
        "TRUNCATE events",
    ] {
        assert!(!allowed(sql), "{sql} should be refused");
    }
}
