//! `lineage sql`: one query, an interactive shell, or the read-only Postgres-wire
//! server over a directory of lineage tables. The engine is `lineage-sql`; this
//! module only parses arguments, prints and sets exit codes.

use std::io::{BufRead, IsTerminal, Write};
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, Result};
use clap::ValueEnum;
use lineage_sql::{
    format_batches, open_session_with, run_query, OutputFormat, ServeConfig, SessionOptions,
};

/// How results are printed.
#[derive(Clone, Copy, Debug, ValueEnum)]
pub(crate) enum FormatArg {
    /// An aligned text table.
    Table,
    /// CSV with a header row.
    Csv,
    /// One JSON object per row (JSON lines).
    Json,
}

impl From<FormatArg> for OutputFormat {
    fn from(f: FormatArg) -> Self {
        match f {
            FormatArg::Table => OutputFormat::Table,
            FormatArg::Csv => OutputFormat::Csv,
            FormatArg::Json => OutputFormat::Json,
        }
    }
}

#[derive(Debug, clap::Args)]
pub(crate) struct SqlArgs {
    /// The query. Without one (and without --serve), an interactive shell reads
    /// queries from stdin, one per line or ending with `;`.
    #[arg(value_name = "QUERY")]
    query: Option<String>,
    /// Tables directory (what `lineage replay --out DIR` writes as DIR/tables).
    #[arg(long, value_name = "DIR", default_value = "out/tables")]
    tables: PathBuf,
    /// Output format.
    #[arg(long, value_enum, default_value_t = FormatArg::Table)]
    format: FormatArg,
    /// Serve the tables over the Postgres wire protocol on this address
    /// (read-only), e.g. 127.0.0.1:5433; psql, Grafana and Metabase connect. A
    /// non-loopback address needs --password-env (and should have --tls-cert).
    /// `SET` is limited to the session variables clients send on connect (the
    /// engine's settings are shared).
    #[arg(long, value_name = "ADDR", conflicts_with = "query")]
    serve: Option<String>,
    /// Require this password (SCRAM-SHA-256 authentication), read from the named
    /// environment variable; without it the server accepts anyone, so it is
    /// required unless the address is loopback.
    #[arg(long, value_name = "VAR", requires = "serve")]
    password_env: Option<String>,
    /// With --serve: TLS certificate chain (PEM). Clients must then connect with
    /// TLS (sslmode=require, or verify-full with this certificate's CA), and SCRAM
    /// binds to the certificate (channel_binding=require works).
    #[arg(long, value_name = "FILE", requires_all = ["serve", "tls_key"])]
    tls_cert: Option<PathBuf>,
    /// With --tls-cert: its private key (PEM).
    #[arg(long, value_name = "FILE", requires = "tls_cert")]
    tls_key: Option<PathBuf>,
    /// With --serve: a statement still running (or still sending rows) after this
    /// many seconds fails with SQLSTATE 57014 and its work stops; other
    /// connections are not affected.
    #[arg(long, value_name = "SECS", default_value_t = 60.0, requires = "serve")]
    statement_timeout: f64,
    /// Memory the queries may hold at once, in MiB; a query that needs more fails
    /// with "Resources exhausted" (nothing spills to disk).
    #[arg(long, value_name = "MIB", default_value_t = (lineage_sql::DEFAULT_MEMORY_LIMIT_BYTES >> 20) as u64)]
    memory_limit_mib: u64,
    /// Show `dead_letters.original` and `original_base64`: the raw bytes of
    /// records that could not be normalized (secret fields redacted, otherwise as
    /// sensitive as the logs). Hidden by default, over the wire and here.
    #[arg(long)]
    dead_letter_bytes: bool,
    /// With --password-env: also require this user name.
    #[arg(long, value_name = "NAME", requires = "password_env")]
    user: Option<String>,
    /// With --serve: connections served at once; more are closed on accept.
    #[arg(long, value_name = "N", default_value_t = 32, requires = "serve")]
    max_connections: usize,
}

pub(crate) fn run(args: SqlArgs) -> Result<ExitCode> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the query runtime")?;
    runtime.block_on(run_async(args))
}

async fn run_async(args: SqlArgs) -> Result<ExitCode> {
    let options = SessionOptions {
        memory_limit_bytes: usize::try_from(args.memory_limit_mib.saturating_mul(1 << 20))
            .unwrap_or(usize::MAX),
        dead_letter_bytes: args.dead_letter_bytes,
    };
    let ctx = open_session_with(&args.tables, &options).await?;
    let format = OutputFormat::from(args.format);
    if let Some(listen) = args.serve {
        let password = match &args.password_env {
            Some(var) => Some(std::env::var(var).with_context(|| {
                format!("--password-env {var}: the environment variable is not set")
            })?),
            None => None,
        };
        let config = ServeConfig {
            listen,
            user: args.user.clone(),
            password,
            max_connections: args.max_connections,
            statement_timeout_secs: args.statement_timeout,
            tls_cert: args.tls_cert.clone(),
            tls_key: args.tls_key.clone(),
        };
        let handle = lineage_sql::serve(ctx, &config).await?;
        // Tests and scripts read the real address from this line (port 0 picks one).
        println!("listening on {} (read-only)", handle.local_addr);
        std::io::stdout().flush().ok();
        handle.wait().await;
        return Ok(ExitCode::SUCCESS);
    }
    if let Some(query) = args.query {
        let batches = run_query(&ctx, &query).await?;
        print!("{}", format_batches(&batches, format)?);
        return Ok(ExitCode::SUCCESS);
    }
    shell(&ctx, format).await
}

/// Reads queries from stdin until EOF or `\q`; errors are printed and the shell goes on.
async fn shell(ctx: &lineage_sql::SessionContext, format: OutputFormat) -> Result<ExitCode> {
    let stdin = std::io::stdin();
    let interactive = stdin.is_terminal();
    let mut pending = String::new();
    let mut failed = false;
    let prompt = |pending: &str| {
        if interactive {
            print!(
                "{}",
                if pending.is_empty() {
                    "lineage> "
                } else {
                    "     ..> "
                }
            );
            std::io::stdout().flush().ok();
        }
    };
    prompt(&pending);
    for line in stdin.lock().lines() {
        let line = line.context("reading stdin")?;
        let trimmed = line.trim();
        if pending.is_empty() && (trimmed == "\\q" || trimmed == "exit" || trimmed == "quit") {
            break;
        }
        if !trimmed.is_empty() {
            pending.push_str(&line);
            pending.push('\n');
        }
        // A statement ends with `;`, or with its line when the shell is not interactive.
        let complete = trimmed.ends_with(';') || (!interactive && !pending.is_empty());
        if complete {
            let query = std::mem::take(&mut pending);
            let query = query.trim().trim_end_matches(';');
            match run_query(ctx, query).await {
                Ok(batches) => print!("{}", format_batches(&batches, format)?),
                Err(e) => {
                    failed = true;
                    eprintln!("error: {e}");
                }
            }
        }
        prompt(&pending);
    }
    Ok(if failed {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    })
}
