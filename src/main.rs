//! The `lineage` command line: parses arguments, builds the pipeline from the
//! library crates and reports. It holds no pipeline logic of its own.

mod archive_args;
mod cli;
mod connect_cmd;
mod demo;
mod graph_cmd;
mod ingest_cmd;
mod run_cmd;
mod sql_cmd;
mod verify_cmd;

use std::process::ExitCode;

use clap::Parser;

/// mimalloc instead of the system allocator: the pipeline allocates many short-lived
/// strings per record, and glibc's malloc/free was ~17% of a replay profile.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    // SAFETY: the first thing `main` does; no other thread exists yet.
    unsafe { lineage_pipeline::tune_allocator() };
    let args = cli::Cli::parse();
    let filter = tracing_subscriber::EnvFilter::try_from_env("LINEAGE_LOG").unwrap_or_else(|_| {
        tracing_subscriber::EnvFilter::new(if args.verbose { "debug" } else { "warn" })
    });
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_writer(std::io::stderr)
        .init();
    match cli::run(args) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(1)
        }
    }
}
