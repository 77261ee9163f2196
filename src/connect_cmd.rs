//! `lineage connect`: runs one live connector and writes what it receives as raw
//! JSON-lines files, one file per batch (`<out>/<batch key>.jsonl`, written to a
//! temporary name, fsynced and renamed), then acks the batch so the connector
//! advances its checkpoint or deletes its SQS message. A batch re-delivered after a
//! crash has the same key and replaces its file: the output holds each record once.
//! Dead letters a connector produced go to `<out>/<batch key>.dead_letters.jsonl`.
//!
//! The connector definitions ([`ConnectKind`]), [`build`] and the poll → deliver →
//! ack loop ([`run_connector`]) are shared with `lineage ingest <source>
//! --from-checkpoint FILE <connector>`, which delivers to Kafka instead of files.

use std::io::Write;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use clap::{Args, Subcommand};
use lineage_core::Source;
use lineage_ingest::connect::aws::AwsSettings;
use lineage_ingest::connect::checkpoint::write_atomically;
use lineage_ingest::connect::entra_graph::{EntraGraphConfig, EntraGraphConnector, EntraStream};
use lineage_ingest::connect::file_tail::{FileTailConfig, FileTailConnector};
use lineage_ingest::connect::github_audit::{GitHubAuditConfig, GitHubAuditConnector, GitHubScope};
use lineage_ingest::connect::http::Secret;
use lineage_ingest::connect::lookup_events::{LookupEventsConfig, LookupEventsConnector};
use lineage_ingest::connect::s3_sqs::{S3SqsConfig, S3SqsConnector};
use lineage_ingest::connect::vault_socket::{VaultSocketConfig, VaultSocketListener};
use lineage_ingest::connect::{single_line, CheckpointStore, Connector, RawBatch};

/// Arguments of `lineage connect`.
#[derive(Debug, Args)]
#[command(
    after_help = "To send batches to Kafka (`lineage.raw.<source>`) instead of files, \
use `lineage ingest <source> --to kafka --brokers HOST:PORT --from-checkpoint FILE <connector> …` \
with the same connector arguments."
)]
pub(crate) struct ConnectArgs {
    #[command(subcommand)]
    kind: ConnectKind,
    /// Checkpoint file (JSON, replaced atomically). Without it every run starts over.
    /// S3+SQS keeps its position in the queue and needs none.
    #[arg(long, global = true, value_name = "FILE")]
    checkpoint: Option<PathBuf>,
    /// Output directory: one `<batch key>.jsonl` per batch.
    #[arg(long, short, global = true, value_name = "DIR")]
    out: Option<PathBuf>,
    #[command(flatten)]
    run: LoopArgs,
}

/// How long a connector runs; shared by `lineage connect` and `lineage ingest`.
#[derive(Debug, Args)]
pub(crate) struct LoopArgs {
    /// Exit 0 after this many seconds without new data (default: run until killed).
    #[arg(long, global = true, value_name = "SECS")]
    idle_exit: Option<u64>,
    /// Seconds to sleep when a poller is caught up.
    #[arg(long, global = true, default_value_t = 5, value_name = "SECS")]
    poll_interval: u64,
    /// Stop after this many batches (for backfills and tests).
    #[arg(long, global = true, value_name = "N")]
    max_batches: Option<u64>,
}

/// The live connectors (`lineage connect <kind>`, `lineage ingest … <kind>`).
#[derive(Debug, Subcommand)]
pub(crate) enum ConnectKind {
    /// CloudTrail delivery files announced by S3 event notifications on an SQS queue.
    S3Sqs {
        /// The queue URL.
        #[arg(long)]
        queue_url: String,
        #[command(flatten)]
        aws: AwsArgs,
        /// Path-style S3 addressing (moto, MinIO).
        #[arg(long)]
        path_style: bool,
        /// Visibility timeout to request per receive, seconds.
        #[arg(long)]
        visibility_timeout: Option<i32>,
        /// Long-poll wait per receive, seconds (0–20).
        #[arg(long, default_value_t = 20)]
        wait_seconds: i32,
    },
    /// CloudTrail management events through the LookupEvents API.
    LookupEvents {
        #[command(flatten)]
        aws: AwsArgs,
        /// Start here when there is no checkpoint (RFC 3339; default 24 hours ago).
        #[arg(long)]
        since: Option<String>,
        /// Stop at this time (RFC 3339).
        #[arg(long)]
        until: Option<String>,
        /// Longest window per call series, seconds.
        #[arg(long, default_value_t = 3600)]
        max_window: u64,
        /// How far behind now to stay, seconds (CloudTrail makes events visible late).
        #[arg(long, default_value_t = 900)]
        lag: u64,
    },
    /// Listen for the Vault/OpenBao `socket` audit device (TCP, JSON lines).
    VaultSocket {
        /// Address to listen on.
        #[arg(long, default_value = "127.0.0.1:9090")]
        listen: SocketAddr,
    },
    /// Tail the Vault/OpenBao `file` audit device, following rotation.
    VaultFile {
        /// The audit log file.
        path: PathBuf,
        /// Largest batch in bytes (a batch ends at the last whole line within it).
        #[arg(long, default_value_t = 1024 * 1024, value_name = "BYTES")]
        max_batch_bytes: usize,
    },
    /// GitHub organization or enterprise audit log (REST API).
    GithubAudit {
        /// Organization login.
        #[arg(
            long,
            conflicts_with = "enterprise",
            required_unless_present = "enterprise"
        )]
        org: Option<String>,
        /// Enterprise slug.
        #[arg(long)]
        enterprise: Option<String>,
        /// Search phrase (e.g. `action:org.`).
        #[arg(long)]
        phrase: Option<String>,
        /// API base URL (GHES: https://HOST/api/v3).
        #[arg(long, default_value = "https://api.github.com")]
        api_url: String,
        /// Environment variable holding the token.
        #[arg(long, default_value = "GITHUB_TOKEN")]
        token_env: String,
        /// File holding the token (instead of the environment).
        #[arg(long)]
        token_file: Option<PathBuf>,
        /// Start here when there is no checkpoint (RFC 3339; default: all retained).
        #[arg(long)]
        since: Option<String>,
    },
    /// Entra ID sign-ins and directory audits through Microsoft Graph.
    EntraGraph {
        /// Tenant id or domain.
        #[arg(long)]
        tenant: String,
        /// App (client) id.
        #[arg(long)]
        client_id: String,
        /// Environment variable holding the client secret.
        #[arg(long, default_value = "AZURE_CLIENT_SECRET")]
        client_secret_env: String,
        /// File holding the client secret.
        #[arg(long)]
        client_secret_file: Option<PathBuf>,
        /// Graph base URL.
        #[arg(long, default_value = "https://graph.microsoft.com/beta")]
        graph_url: String,
        /// Token endpoint (default: the tenant's login.microsoftonline.com endpoint).
        #[arg(long)]
        token_url: Option<String>,
        /// signInEventTypes to read (empty string = sign-ins of every type).
        #[arg(
            long,
            value_delimiter = ',',
            default_value = "servicePrincipal,managedIdentity"
        )]
        sign_in_types: Vec<String>,
        /// Skip directory audits.
        #[arg(long)]
        no_directory_audits: bool,
        /// Start here when there is no checkpoint (RFC 3339; default: all retained).
        #[arg(long)]
        since: Option<String>,
    },
}

#[derive(Debug, Args)]
pub(crate) struct AwsArgs {
    /// AWS region (default: the standard chain).
    #[arg(long)]
    region: Option<String>,
    /// AWS profile.
    #[arg(long)]
    profile: Option<String>,
    /// Endpoint override (moto, a recorded server).
    #[arg(long)]
    endpoint_url: Option<String>,
}

impl AwsArgs {
    fn settings(&self) -> AwsSettings {
        AwsSettings {
            region: self.region.clone(),
            profile: self.profile.clone(),
            endpoint_url: self.endpoint_url.clone(),
        }
    }
}

fn time_ms(s: &str) -> Result<i64> {
    chrono::DateTime::parse_from_rfc3339(s)
        .map(|t| t.timestamp_millis())
        .with_context(|| format!("`{s}` is not an RFC 3339 time (2024-05-01T00:00:00Z)"))
}

impl ConnectKind {
    /// The source whose records this connector hands out.
    pub(crate) fn source(&self) -> Source {
        match self {
            ConnectKind::S3Sqs { .. } | ConnectKind::LookupEvents { .. } => Source::CloudTrail,
            ConnectKind::VaultSocket { .. } | ConnectKind::VaultFile { .. } => Source::Vault,
            ConnectKind::GithubAudit { .. } => Source::GitHub,
            ConnectKind::EntraGraph { .. } => Source::Entra,
        }
    }

    /// True when the connector keeps no position of its own in a checkpoint file
    /// (the SQS queue is its position; a socket cannot be replayed).
    pub(crate) fn needs_no_checkpoint(&self) -> bool {
        matches!(
            self,
            ConnectKind::S3Sqs { .. } | ConnectKind::VaultSocket { .. }
        )
    }

    /// True when the connector waits inside `poll` (long poll, socket accept).
    fn waits_in_poll(&self) -> bool {
        self.needs_no_checkpoint()
    }
}

/// Builds the connector `kind`, keeping its checkpoint in `checkpoint` (none: every
/// run starts over).
pub(crate) fn build(kind: &ConnectKind, checkpoint: Option<&Path>) -> Result<Box<dyn Connector>> {
    let store = |name: &str| match checkpoint {
        Some(p) => CheckpointStore::new(p, name),
        None => CheckpointStore::ephemeral(name),
    };
    Ok(match kind {
        ConnectKind::S3Sqs {
            queue_url,
            aws,
            path_style,
            visibility_timeout,
            wait_seconds,
        } => {
            let mut cfg = S3SqsConfig::new(queue_url);
            cfg.aws = aws.settings();
            cfg.force_path_style = *path_style;
            cfg.visibility_timeout = *visibility_timeout;
            cfg.wait_time_seconds = *wait_seconds;
            Box::new(S3SqsConnector::new(cfg)?)
        }
        ConnectKind::LookupEvents {
            aws,
            since,
            until,
            max_window,
            lag,
        } => {
            let start = match since {
                Some(s) => time_ms(s)?,
                None => chrono::Utc::now().timestamp_millis() - 24 * 3600 * 1000,
            };
            let mut cfg = LookupEventsConfig::new(start, store("lookup-events"));
            cfg.aws = aws.settings();
            cfg.until_ms = until.as_deref().map(time_ms).transpose()?;
            cfg.max_window = Duration::from_secs(*max_window);
            cfg.end_lag = Duration::from_secs(*lag);
            Box::new(LookupEventsConnector::new(cfg)?)
        }
        ConnectKind::VaultSocket { listen } => {
            let l = VaultSocketListener::bind(VaultSocketConfig::new(*listen))?;
            eprintln!("listening on {}", l.local_addr());
            Box::new(l)
        }
        ConnectKind::VaultFile {
            path,
            max_batch_bytes,
        } => {
            let mut cfg = FileTailConfig::new(path, store("vault-file"));
            cfg.max_batch_bytes = (*max_batch_bytes).max(1);
            Box::new(FileTailConnector::new(cfg)?)
        }
        ConnectKind::GithubAudit {
            org,
            enterprise,
            phrase,
            api_url,
            token_env,
            token_file,
            since,
        } => {
            let scope = match (org, enterprise) {
                (Some(o), _) => GitHubScope::Org(o.clone()),
                (None, Some(e)) => GitHubScope::Enterprise(e.clone()),
                (None, None) => bail!("give --org or --enterprise"),
            };
            let token = Secret::from_env_or_file(Some(token_env.as_str()), token_file.as_deref())?;
            let mut cfg = GitHubAuditConfig::new(scope, token, store("github-audit"));
            cfg.api_base = api_url.clone();
            cfg.phrase = phrase.clone();
            cfg.start_ms = since.as_deref().map(time_ms).transpose()?;
            Box::new(GitHubAuditConnector::new(cfg)?)
        }
        ConnectKind::EntraGraph {
            tenant,
            client_id,
            client_secret_env,
            client_secret_file,
            graph_url,
            token_url,
            sign_in_types,
            no_directory_audits,
            since,
        } => {
            let secret = Secret::from_env_or_file(
                Some(client_secret_env.as_str()),
                client_secret_file.as_deref(),
            )?;
            let mut cfg = EntraGraphConfig::new(tenant, client_id, secret, store("entra-graph"));
            cfg.graph_base = graph_url.clone();
            if let Some(t) = token_url {
                cfg.token_url = t.clone();
            }
            cfg.streams = vec![EntraStream::SignIns {
                event_types: sign_in_types
                    .iter()
                    .filter(|t| !t.trim().is_empty())
                    .cloned()
                    .collect(),
            }];
            if !no_directory_audits {
                cfg.streams.push(EntraStream::DirectoryAudits);
            }
            cfg.start_ms = since.as_deref().map(time_ms).transpose()?;
            Box::new(EntraGraphConnector::new(cfg)?)
        }
    })
}

/// A file name from a batch key.
fn file_stem(key: &str) -> String {
    key.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.') {
                c
            } else {
                '_'
            }
        })
        .take(200)
        .collect()
}

/// Writes a batch's records (and dead letters) under `out`, atomically.
fn write_batch(out: &Path, batch: &RawBatch) -> Result<()> {
    let stem = file_stem(&batch.key);
    if !batch.records.is_empty() {
        let mut body = Vec::new();
        for r in &batch.records {
            body.extend_from_slice(&single_line(&r.bytes));
            body.push(b'\n');
        }
        let path = out.join(format!("{stem}.jsonl"));
        write_atomically(&path, &body).with_context(|| format!("writing {}", path.display()))?;
    }
    if !batch.dead_letters.is_empty() {
        let mut body = Vec::new();
        for d in &batch.dead_letters {
            serde_json::to_writer(&mut body, d)?;
            body.push(b'\n');
        }
        let path = out.join(format!("{stem}.dead_letters.jsonl"));
        write_atomically(&path, &body).with_context(|| format!("writing {}", path.display()))?;
    }
    Ok(())
}

pub(crate) fn run(args: ConnectArgs) -> Result<ExitCode> {
    let Some(out) = args.out.clone() else {
        bail!("--out DIR is required");
    };
    std::fs::create_dir_all(&out).with_context(|| format!("creating {}", out.display()))?;
    let mut connector = build(&args.kind, args.checkpoint.as_deref())?;
    run_connector(&args.kind, &args.run, connector.as_mut(), |batch| {
        write_batch(&out, batch)
    })?;
    let stats = serde_json::to_string(connector.stats())?;
    let mut err = std::io::stderr().lock();
    writeln!(err, "connect: {stats}")?;
    Ok(ExitCode::SUCCESS)
}

/// Sleeps `d`, waking early when `stop` is raised.
fn sleep_unless(stop: &AtomicBool, d: Duration) {
    let until = Instant::now() + d;
    while !stop.load(Ordering::SeqCst) {
        let now = Instant::now();
        if now >= until {
            break;
        }
        std::thread::sleep((until - now).min(Duration::from_millis(100)));
    }
}

/// The connector loop: poll a batch, `deliver` it (durably: a file on disk, or
/// every message acknowledged by Kafka), and only then ack it, which advances the
/// checkpoint or deletes the SQS message. A crash before the ack re-delivers the
/// batch on the next start. Returns the number of batches delivered when
/// `--max-batches` or `--idle-exit` ends the run, or on SIGTERM/SIGINT (the
/// in-flight batch is finished and acked first).
pub(crate) fn run_connector(
    kind: &ConnectKind,
    opts: &LoopArgs,
    connector: &mut dyn Connector,
    mut deliver: impl FnMut(&RawBatch) -> Result<()>,
) -> Result<u64> {
    let stop = lineage_replay::live::shutdown_on_signals()?;
    let mut last_data = Instant::now();
    let mut batches = 0u64;
    let idle = |last_data: Instant| {
        opts.idle_exit
            .is_some_and(|s| last_data.elapsed() >= Duration::from_secs(s))
    };
    loop {
        if opts.max_batches.is_some_and(|m| batches >= m) || stop.load(Ordering::SeqCst) {
            break;
        }
        match connector.poll() {
            Ok(Some(batch)) => {
                batches += 1;
                let had_data = !batch.is_empty();
                deliver(&batch).with_context(|| format!("delivering batch {}", batch.key))?;
                connector
                    .ack(batch.id)
                    .with_context(|| format!("acking batch {}", batch.key))?;
                tracing::info!(key = %batch.key, records = batch.records.len(), dead_letters = batch.dead_letters.len(), position = %batch.position, "batch delivered");
                if had_data {
                    last_data = Instant::now();
                }
            }
            Ok(None) => {
                if idle(last_data) {
                    break;
                }
                // The SQS and socket connectors wait inside poll; the pollers sleep here.
                if !kind.waits_in_poll() {
                    sleep_unless(&stop, Duration::from_secs(opts.poll_interval));
                }
            }
            Err(e) => {
                tracing::warn!(error = %e, "poll failed; retrying after the poll interval");
                eprintln!("connector: {e}");
                if idle(last_data) {
                    bail!("{e}");
                }
                sleep_unless(&stop, Duration::from_secs(opts.poll_interval.max(1)));
            }
        }
    }
    Ok(batches)
}
