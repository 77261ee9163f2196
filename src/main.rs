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
    // A live `lineage run` keeps mimalloc's default, which decommits freed memory:
    // with `MADV_FREE` (the batch commands' setting) freed pages stay in RSS until the
    // kernel needs them, and a 20-minute soak at 5,000 events/s then showed RSS
    // climbing about 5 MiB a minute while the same run with decommits held 100–130
    // MiB (BENCHMARKS.md, soak). Page faults matter to a replay's speed, not to a
    // follower's.
    let live = std::env::args_os().nth(1).is_some_and(|a| a == "run");
    if !live {
        // SAFETY: the first thing `main` does; no other thread exists yet.
        unsafe { lineage_pipeline::tune_allocator() };
    }
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
