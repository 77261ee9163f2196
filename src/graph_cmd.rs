//! `lineage graph show`: a picture of one identity's lineage and blast radius, read
//! from the lineage tables, as DOT, JSON or a self-contained HTML page.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, Result};
use chrono::{DateTime, Utc};
use clap::ValueEnum;
use lineage_sql::open_session;
use lineage_sql::picture::build_picture;

#[derive(Debug, clap::Subcommand)]
pub(crate) enum GraphCommand {
    /// Draw the lineage of a credential, agent or human: what it came from (parent
    /// credentials, agent, owner), what came from it (child credentials, agents,
    /// credentials), and what its root credentials reached.
    ///
    /// Example: lineage graph show AKIAEXAMPLE --tables out/tables --format html --output key.html
    Show(ShowArgs),
}

#[derive(Debug, clap::Args)]
pub(crate) struct ShowArgs {
    /// A credential id (access key, session key, token id or accessor), an agent id,
    /// a human id or a human's e-mail.
    #[arg(value_name = "CREDENTIAL|AGENT|HUMAN")]
    subject: String,
    /// Tables directory (what `lineage replay --out DIR` writes as DIR/tables).
    #[arg(long, value_name = "DIR", default_value = "out/tables")]
    tables: PathBuf,
    /// Draw the lineage as it stood at this time (RFC 3339): edges issued later or
    /// revoked earlier are left out.
    #[arg(long, value_name = "TIME")]
    as_of: Option<DateTime<Utc>>,
    /// dot (Graphviz), json, or html (one self-contained page to open in a browser).
    #[arg(long, value_enum, default_value_t = PictureFormat::Dot)]
    format: PictureFormat,
    /// Write to this file instead of stdout.
    #[arg(long, short, value_name = "FILE")]
    output: Option<PathBuf>,
}

#[derive(Clone, Copy, Debug, ValueEnum)]
pub(crate) enum PictureFormat {
    /// Graphviz DOT: `dot -Tsvg`.
    Dot,
    /// JSON: nodes, edges, blast radius.
    Json,
    /// A self-contained HTML page with an SVG drawing.
    Html,
}

pub(crate) fn run(command: GraphCommand) -> Result<ExitCode> {
    let GraphCommand::Show(args) = command;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("starting the query runtime")?;
    let picture = runtime.block_on(async {
        let ctx = open_session(&args.tables).await?;
        build_picture(&ctx, &args.subject, args.as_of).await
    })?;
    let text = match args.format {
        PictureFormat::Dot => picture.to_dot(),
        PictureFormat::Json => picture.to_json(),
        PictureFormat::Html => picture.to_html(),
    };
    match &args.output {
        Some(path) => {
            std::fs::write(path, text).with_context(|| format!("writing {}", path.display()))?
        }
        None => print!("{text}"),
    }
    if picture.truncated {
        eprintln!(
            "note: the picture stopped at {} nodes",
            lineage_sql::picture::MAX_NODES
        );
    }
    Ok(ExitCode::SUCCESS)
}
