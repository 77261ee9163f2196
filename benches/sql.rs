//! The README's example queries over lineage tables, timed in DataFusion (`lineage sql`'s engine).
//!
//! `cargo bench --bench sql -- --tables DIR [--runs 5] [--json FILE] [--queries-out FILE]`
//!
//! The placeholders of the README's queries are filled from the data (the most used
//! session credential, the agent with the most uses). Each query runs once cold (first
//! touch of its files' metadata after the session opened) and `--runs` times warm; the
//! median warm time is reported. `--queries-out` writes the exact SQL so the DuckDB
//! peer (`scripts/bench/duckdb_sql.py`) runs the same text.

use std::path::PathBuf;
use std::time::Instant;

use lineage_sql::{format_batches, open_session, run_query, OutputFormat, SessionContext};

fn arg(args: &[String], name: &str) -> Option<String> {
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1).cloned())
}

/// Runs `sql` and returns its row count.
async fn count_rows(ctx: &SessionContext, sql: &str) -> usize {
    let batches = run_query(ctx, sql).await.expect("query");
    batches.iter().map(|b| b.num_rows()).sum()
}

/// The first column of the first row, as text.
async fn first_string(ctx: &SessionContext, sql: &str) -> Option<String> {
    let batches = run_query(ctx, sql).await.expect("query");
    let csv = format_batches(&batches, OutputFormat::Csv).ok()?;
    let line = csv.lines().nth(1)?;
    Some(line.split(',').next()?.trim_matches('"').to_string())
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let Some(tables) = arg(&args, "--tables").map(PathBuf::from) else {
        return; // `cargo test --benches` / no tables given: nothing to measure.
    };
    let runs: usize = arg(&args, "--runs")
        .and_then(|v| v.parse().ok())
        .unwrap_or(5);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async {
        let opened = Instant::now();
        let ctx = open_session(&tables).await.expect("open session");
        let open_secs = opened.elapsed().as_secs_f64();
        let credential = first_string(
            &ctx,
            "SELECT credential_id FROM credentials WHERE credential_id LIKE 'ASIA%' \
             ORDER BY uses DESC, credential_id LIMIT 1",
        )
        .await
        .unwrap_or_else(|| "ASIA-NONE".into());
        let agent = first_string(
            &ctx,
            "SELECT agent FROM events WHERE agent IS NOT NULL GROUP BY agent \
             ORDER BY count(*) DESC, agent LIMIT 1",
        )
        .await
        .unwrap_or_else(|| "none".into());
        let queries: Vec<(&str, String)> = vec![
            ("uses per owner", "SELECT owner, count(*) AS uses FROM events GROUP BY owner ORDER BY uses DESC".into()),
            ("who owns key X, through which chain", format!(
                "SELECT credential_id, agent, owner, array_to_string(chain, ' -> ') AS chain \
                 FROM credentials WHERE credential_id = '{credential}'")),
            ("blast radius of agent Y", format!(
                "SELECT service, count(*) AS calls, count(DISTINCT credential_id) AS credentials \
                 FROM events WHERE agent = '{agent}' GROUP BY service ORDER BY service")),
            ("departed owner's credentials used in the last 7 days",
                "SELECT e.owner, e.credential_id, count(*) AS uses \
                 FROM events e JOIN identities i ON i.id = e.owner AND i.identity_type = 'human' \
                 WHERE i.status = 'departed' AND e.time >= i.departed_at \
                   AND e.time > (SELECT max(time) FROM events) - INTERVAL '7 days' \
                   AND e.credential_id IS NOT NULL \
                 GROUP BY e.owner, e.credential_id ORDER BY e.owner, e.credential_id".into()),
            ("agents using long-lived keys", "SELECT agent, count(*) AS uses, count(DISTINCT credential_id) AS keys \
                 FROM events WHERE long_lived AND agent IS NOT NULL \
                 GROUP BY agent ORDER BY uses DESC, agent".into()),
            ("alerts per owner per week", "SELECT owner, CAST(CAST(date_trunc('week', first_seen) AS DATE) AS VARCHAR) AS week, count(*) AS alerts \
                 FROM alerts WHERE owner IS NOT NULL \
                 GROUP BY owner, week ORDER BY owner, week".into()),
        ];
        let events = first_string(&ctx, "SELECT count(*) FROM events")
            .await
            .unwrap_or_default();
        println!("DataFusion over {} ({events} events; session opened in {open_secs:.3}s)", tables.display());
        println!("| query | rows | cold s | warm s (median of {runs}) |");
        println!("|---|---|---|---|");
        let mut out = Vec::new();
        for (name, sql) in &queries {
            let t = Instant::now();
            let n = count_rows(&ctx, sql).await;
            let cold = t.elapsed().as_secs_f64();
            let mut warm = Vec::new();
            for _ in 0..runs {
                let t = Instant::now();
                count_rows(&ctx, sql).await;
                warm.push(t.elapsed().as_secs_f64());
            }
            warm.sort_by(|a, b| a.total_cmp(b));
            let median = warm.get(warm.len() / 2).copied().unwrap_or(cold);
            println!("| {name} | {n} | {cold:.3} | {median:.3} |");
            out.push(serde_json::json!({"name": name, "sql": sql, "rows": n,
                                        "cold_secs": cold, "warm_secs": median}));
        }
        let doc = serde_json::json!({"engine": "datafusion", "tables": tables, "events": events,
            "open_secs": open_secs, "runs": runs, "queries": out});
        for flag in ["--json", "--queries-out"] {
            if let Some(path) = arg(&args, flag) {
                std::fs::write(path, serde_json::to_string_pretty(&doc).unwrap()).expect("write json");
            }
        }
    });
}
