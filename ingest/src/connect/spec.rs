//! What a user writes to declare a live source: one definition per connector kind,
//! used as a `[[source]]` table in `lineage.toml` (serde, `kind = "…"`) and as the
//! `lineage connect <kind>` / `lineage ingest <source> --from-checkpoint F <kind>`
//! subcommand (clap). The doc comment of each field is its help text and its
//! documentation; each default is one `const fn` that both read. [`ConnectorSpec::build`]
//! turns a spec into the running [`Connector`].

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use lineage_core::Source;
use serde::{Deserialize, Serialize};

use super::aws::AwsSettings;
use super::directory::{DirectoryConfig, DirectoryConnector};
use super::entra_graph::{EntraGraphConfig, EntraGraphConnector, EntraStream};
use super::file_tail::{FileTailConfig, FileTailConnector};
use super::github_audit::{GitHubAuditConfig, GitHubAuditConnector, GitHubScope};
use super::http::Secret;
use super::lookup_events::{LookupEventsConfig, LookupEventsConnector};
use super::s3_sqs::{S3SqsConfig, S3SqsConnector};
use super::vault_socket::{parse_mode, Listen, VaultSocketConfig, VaultSocketListener};
use super::{CheckpointStore, ConnectError, Connector};

/// Which parser reads a source's records: `auto` tells each file's source from its
/// field names.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum SourceChoice {
    /// Tell each file's source from its field names.
    #[default]
    Auto,
    /// AWS CloudTrail.
    Cloudtrail,
    /// Microsoft Entra ID.
    Entra,
    /// GitHub audit log.
    Github,
    /// Vault / OpenBao audit device.
    Vault,
}

impl SourceChoice {
    /// The forced source, `None` for `auto`.
    pub fn source(self) -> Option<Source> {
        match self {
            SourceChoice::Auto => None,
            SourceChoice::Cloudtrail => Some(Source::CloudTrail),
            SourceChoice::Entra => Some(Source::Entra),
            SourceChoice::Github => Some(Source::GitHub),
            SourceChoice::Vault => Some(Source::Vault),
        }
    }
}

/// A live source and its settings (`[[source]] kind = "…"` in `lineage.toml`, or
/// `lineage connect <kind>`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, clap::Subcommand)]
#[serde(tag = "kind", rename_all = "kebab-case")]
pub enum ConnectorSpec {
    /// CloudTrail delivery files announced by S3 event notifications on an SQS queue.
    S3Sqs(S3SqsSpec),
    /// CloudTrail management events through the LookupEvents API.
    LookupEvents(LookupEventsSpec),
    /// Listen for the Vault/OpenBao `socket` audit device (TCP, JSON lines).
    VaultSocket(VaultSocketSpec),
    /// Tail the Vault/OpenBao `file` audit device, following rotation.
    VaultFile(VaultFileSpec),
    /// GitHub organization or enterprise audit log (REST API).
    GithubAudit(GitHubAuditSpec),
    /// Entra ID sign-ins and directory audits through Microsoft Graph.
    EntraGraph(EntraGraphSpec),
    /// A directory that audit-log files are delivered into (CloudTrail synced from
    /// S3, exports dropped by another tool): each new file is read once, whole.
    Directory(DirectorySpec),
}

const fn d_wait_seconds() -> i32 {
    20
}
const fn d_max_window() -> u64 {
    3600
}
const fn d_lag() -> u64 {
    900
}
fn d_listen() -> Listen {
    Listen::Tcp(SocketAddr::from(([127, 0, 0, 1], 9090)))
}
const fn d_max_batch_bytes() -> usize {
    1024 * 1024
}
fn d_github_api() -> String {
    "https://api.github.com".into()
}
fn d_github_token_env() -> String {
    "GITHUB_TOKEN".into()
}
fn d_entra_secret_env() -> String {
    "AZURE_CLIENT_SECRET".into()
}
fn d_graph_url() -> String {
    "https://graph.microsoft.com/beta".into()
}
fn d_sign_in_types() -> Vec<String> {
    vec!["servicePrincipal".into(), "managedIdentity".into()]
}
const fn d_settle_ms() -> u64 {
    2000
}
const fn d_max_file_bytes() -> u64 {
    1 << 30
}

/// `kind = "s3-sqs"`: CloudTrail via S3 event notifications on SQS.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, clap::Args)]
#[serde(deny_unknown_fields)]
pub struct S3SqsSpec {
    /// The queue URL receiving the bucket's notifications.
    #[arg(long)]
    pub queue_url: String,
    /// The trail's bucket(s): the only buckets objects are fetched from. A
    /// notification naming another bucket is dead-lettered, not fetched (anyone who
    /// can send to the queue can name any bucket). Repeat `--bucket` for several.
    #[arg(long = "bucket", required = true, value_name = "NAME")]
    pub buckets: Vec<String>,
    /// The account id that owns the buckets: sent as `ExpectedBucketOwner` with every
    /// `GetObject`, so S3 refuses a same-named bucket in another account.
    #[arg(long, value_name = "ACCOUNT_ID")]
    #[serde(default)]
    pub expected_bucket_owner: Option<String>,
    /// AWS region (default: the standard chain).
    #[arg(long)]
    #[serde(default)]
    pub region: Option<String>,
    /// AWS profile.
    #[arg(long)]
    #[serde(default)]
    pub profile: Option<String>,
    /// Endpoint override (moto, MinIO, LocalStack).
    #[arg(long)]
    #[serde(default)]
    pub endpoint_url: Option<String>,
    /// Path-style S3 addressing (moto, MinIO).
    #[arg(long)]
    #[serde(default)]
    pub path_style: bool,
    /// Visibility timeout to request per receive, seconds (default: the queue's).
    /// Give it more than `[run] checkpoint_secs`: a message is deleted only once its
    /// records are durably processed.
    #[arg(long)]
    #[serde(default)]
    pub visibility_timeout: Option<i32>,
    /// Long-poll wait per receive, seconds (0–20).
    #[arg(long, default_value_t = d_wait_seconds())]
    #[serde(default = "d_wait_seconds")]
    pub wait_seconds: i32,
}

/// `kind = "lookup-events"`: CloudTrail management events through LookupEvents.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, clap::Args)]
#[serde(deny_unknown_fields)]
pub struct LookupEventsSpec {
    /// AWS region (default: the standard chain).
    #[arg(long)]
    #[serde(default)]
    pub region: Option<String>,
    /// AWS profile.
    #[arg(long)]
    #[serde(default)]
    pub profile: Option<String>,
    /// Endpoint override (a recorded server).
    #[arg(long)]
    #[serde(default)]
    pub endpoint_url: Option<String>,
    /// Start here when there is no checkpoint (RFC 3339; default 24 hours ago).
    #[arg(long)]
    #[serde(default)]
    pub since: Option<String>,
    /// Stop at this time (RFC 3339).
    #[arg(long)]
    #[serde(default)]
    pub until: Option<String>,
    /// Longest window per call series, seconds.
    #[arg(long, default_value_t = d_max_window())]
    #[serde(default = "d_max_window")]
    pub max_window: u64,
    /// How far behind now to stay, seconds (CloudTrail makes events visible late).
    #[arg(long, default_value_t = d_lag())]
    #[serde(default = "d_lag")]
    pub lag: u64,
}

/// `kind = "vault-socket"`: the Vault/OpenBao `socket` audit device.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, clap::Args)]
#[serde(deny_unknown_fields)]
pub struct VaultSocketSpec {
    /// Where to listen: `HOST:PORT`, or `unix:PATH` for a Unix socket (the preferred
    /// form on the server's host: only who may open the socket file can write). The
    /// device does not authenticate: keep TCP on loopback or a private network.
    #[arg(long, default_value_t = d_listen())]
    #[serde(default = "d_listen")]
    pub listen: Listen,
    /// TCP peers allowed to connect (IP networks, e.g. `10.0.4.7/32`; repeat the
    /// flag for several); others are refused and counted. Default: loopback only.
    #[arg(long = "allow-peer", value_name = "NETWORK")]
    #[serde(default)]
    pub allowed_peers: Vec<ipnet::IpNet>,
    /// Mode of the Unix socket file, octal (default 0600: only lineage's user; 0660
    /// with a group shared with the server's user).
    #[arg(long, value_parser = parse_mode, default_value = "0600")]
    #[serde(default = "d_socket_mode", deserialize_with = "octal_mode")]
    pub socket_mode: u32,
}

const fn d_socket_mode() -> u32 {
    0o600
}

/// A mode given as an octal string (`"0660"`) or as a TOML integer (`0o660`).
fn octal_mode<'de, D: serde::Deserializer<'de>>(d: D) -> Result<u32, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Mode {
        Number(u32),
        Text(String),
    }
    match Mode::deserialize(d)? {
        Mode::Number(n) if n <= 0o777 => Ok(n),
        Mode::Number(n) => Err(serde::de::Error::custom(format!(
            "socket_mode {n} is over 0o777: write it in octal, 0o660 or \"0660\""
        ))),
        Mode::Text(s) => parse_mode(&s).map_err(serde::de::Error::custom),
    }
}

/// `kind = "vault-file"`: tail the Vault/OpenBao `file` audit device.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, clap::Args)]
#[serde(deny_unknown_fields)]
pub struct VaultFileSpec {
    /// The audit log file.
    pub path: PathBuf,
    /// Largest batch in bytes (a batch ends at the last whole line within it).
    #[arg(long, default_value_t = d_max_batch_bytes(), value_name = "BYTES")]
    #[serde(default = "d_max_batch_bytes")]
    pub max_batch_bytes: usize,
}

/// `kind = "github-audit"`: the GitHub org or enterprise audit log.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, clap::Args)]
#[serde(deny_unknown_fields)]
pub struct GitHubAuditSpec {
    /// Organization login.
    #[arg(
        long,
        conflicts_with = "enterprise",
        required_unless_present = "enterprise"
    )]
    #[serde(default)]
    pub org: Option<String>,
    /// Enterprise slug.
    #[arg(long)]
    #[serde(default)]
    pub enterprise: Option<String>,
    /// Search phrase (e.g. `action:org.`).
    #[arg(long)]
    #[serde(default)]
    pub phrase: Option<String>,
    /// API base URL (GHES: https://HOST/api/v3).
    #[arg(long, default_value_t = d_github_api())]
    #[serde(default = "d_github_api")]
    pub api_url: String,
    /// Environment variable holding the token.
    #[arg(long, default_value_t = d_github_token_env())]
    #[serde(default = "d_github_token_env")]
    pub token_env: String,
    /// File holding the token (instead of the environment).
    #[arg(long)]
    #[serde(default)]
    pub token_file: Option<PathBuf>,
    /// Start here when there is no checkpoint (RFC 3339; default: all retained).
    #[arg(long)]
    #[serde(default)]
    pub since: Option<String>,
}

/// `kind = "entra-graph"`: Entra ID sign-ins and directory audits through Graph.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, clap::Args)]
#[serde(deny_unknown_fields)]
pub struct EntraGraphSpec {
    /// Tenant id or domain.
    #[arg(long)]
    pub tenant: String,
    /// App (client) id.
    #[arg(long)]
    pub client_id: String,
    /// Environment variable holding the client secret.
    #[arg(long, default_value_t = d_entra_secret_env())]
    #[serde(default = "d_entra_secret_env")]
    pub client_secret_env: String,
    /// File holding the client secret.
    #[arg(long)]
    #[serde(default)]
    pub client_secret_file: Option<PathBuf>,
    /// Graph base URL.
    #[arg(long, default_value_t = d_graph_url())]
    #[serde(default = "d_graph_url")]
    pub graph_url: String,
    /// Token endpoint (default: the tenant's login.microsoftonline.com endpoint).
    #[arg(long)]
    #[serde(default)]
    pub token_url: Option<String>,
    /// signInEventTypes to read (empty = sign-ins of every type).
    #[arg(long, value_delimiter = ',', default_values_t = d_sign_in_types())]
    #[serde(default = "d_sign_in_types")]
    pub sign_in_types: Vec<String>,
    /// Skip directory audits.
    #[arg(long)]
    #[serde(default)]
    pub no_directory_audits: bool,
    /// Start here when there is no checkpoint (RFC 3339; default: all retained).
    #[arg(long)]
    #[serde(default)]
    pub since: Option<String>,
}

/// `kind = "directory"`: files delivered into a directory, read once each.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, clap::Args)]
#[serde(deny_unknown_fields)]
pub struct DirectorySpec {
    /// The directory (walked recursively for `.json`, `.json.gz`, `.jsonl`, `.log`
    /// files; CloudTrail digest files are skipped and counted).
    pub path: PathBuf,
    /// Which parser reads the files.
    #[arg(long, value_enum, default_value_t = SourceChoice::Auto)]
    #[serde(default)]
    pub source: SourceChoice,
    /// A file is read once its size and modification time have not changed for this
    /// long, ms (writers that rename a finished file into place are read at once).
    #[arg(long, default_value_t = d_settle_ms(), value_name = "MS")]
    #[serde(default = "d_settle_ms")]
    pub settle_ms: u64,
    /// Files larger than this are dead-lettered unread, bytes.
    #[arg(long, default_value_t = d_max_file_bytes(), value_name = "BYTES")]
    #[serde(default = "d_max_file_bytes")]
    pub max_file_bytes: u64,
}

fn time_ms(s: &str) -> Result<i64, ConnectError> {
    chrono::DateTime::parse_from_rfc3339(s)
        .map(|t| t.timestamp_millis())
        .map_err(|_| {
            ConnectError::Config(format!(
                "`{s}` is not an RFC 3339 time (2024-05-01T00:00:00Z)"
            ))
        })
}

impl ConnectorSpec {
    /// The kind as written in `kind = "…"` (and the default source name).
    pub fn kind(&self) -> &'static str {
        match self {
            ConnectorSpec::S3Sqs(_) => "s3-sqs",
            ConnectorSpec::LookupEvents(_) => "lookup-events",
            ConnectorSpec::VaultSocket(_) => "vault-socket",
            ConnectorSpec::VaultFile(_) => "vault-file",
            ConnectorSpec::GithubAudit(_) => "github-audit",
            ConnectorSpec::EntraGraph(_) => "entra-graph",
            ConnectorSpec::Directory(_) => "directory",
        }
    }

    /// The source whose records this connector hands out; `None` when each file
    /// says (a directory in `auto` mode).
    pub fn source(&self) -> Option<Source> {
        match self {
            ConnectorSpec::S3Sqs(_) | ConnectorSpec::LookupEvents(_) => Some(Source::CloudTrail),
            ConnectorSpec::VaultSocket(_) | ConnectorSpec::VaultFile(_) => Some(Source::Vault),
            ConnectorSpec::GithubAudit(_) => Some(Source::GitHub),
            ConnectorSpec::EntraGraph(_) => Some(Source::Entra),
            ConnectorSpec::Directory(d) => d.source.source(),
        }
    }

    /// True when the connector keeps no position of its own in a checkpoint file
    /// (the SQS queue is its position; a socket cannot be replayed).
    pub fn needs_no_checkpoint(&self) -> bool {
        matches!(
            self,
            ConnectorSpec::S3Sqs(_) | ConnectorSpec::VaultSocket(_)
        )
    }

    /// True when the connector waits inside `poll` (long poll, socket accept), so a
    /// caller need not sleep between empty polls.
    pub fn waits_in_poll(&self) -> bool {
        self.needs_no_checkpoint()
    }

    /// Builds the running connector, keeping its position in `checkpoint`.
    pub fn build(&self, checkpoint: CheckpointStore) -> Result<Box<dyn Connector>, ConnectError> {
        let aws = |region: &Option<String>, profile: &Option<String>, endpoint: &Option<String>| {
            AwsSettings {
                region: region.clone(),
                profile: profile.clone(),
                endpoint_url: endpoint.clone(),
            }
        };
        Ok(match self {
            ConnectorSpec::S3Sqs(s) => {
                let mut cfg = S3SqsConfig::new(&s.queue_url, s.buckets.clone());
                cfg.expected_bucket_owner = s.expected_bucket_owner.clone();
                cfg.aws = aws(&s.region, &s.profile, &s.endpoint_url);
                cfg.force_path_style = s.path_style;
                cfg.visibility_timeout = s.visibility_timeout;
                cfg.wait_time_seconds = s.wait_seconds;
                Box::new(S3SqsConnector::new(cfg)?)
            }
            ConnectorSpec::LookupEvents(s) => {
                let start = match &s.since {
                    Some(t) => time_ms(t)?,
                    None => chrono::Utc::now().timestamp_millis() - 24 * 3600 * 1000,
                };
                let mut cfg = LookupEventsConfig::new(start, checkpoint);
                cfg.aws = aws(&s.region, &s.profile, &s.endpoint_url);
                cfg.until_ms = s.until.as_deref().map(time_ms).transpose()?;
                cfg.max_window = Duration::from_secs(s.max_window);
                cfg.end_lag = Duration::from_secs(s.lag);
                Box::new(LookupEventsConnector::new(cfg)?)
            }
            ConnectorSpec::VaultSocket(s) => {
                let mut cfg = VaultSocketConfig::new(s.listen.clone());
                if !s.allowed_peers.is_empty() {
                    cfg.allowed_peers = s.allowed_peers.clone();
                }
                cfg.socket_mode = s.socket_mode;
                let listener = VaultSocketListener::bind(cfg)?;
                tracing::info!(address = %listener.listening_on(), "vault socket audit device listener");
                Box::new(listener)
            }
            ConnectorSpec::VaultFile(s) => {
                let mut cfg = FileTailConfig::new(&s.path, checkpoint);
                cfg.max_batch_bytes = s.max_batch_bytes.max(1);
                Box::new(FileTailConnector::new(cfg)?)
            }
            ConnectorSpec::GithubAudit(s) => {
                let scope = match (&s.org, &s.enterprise) {
                    (Some(o), _) => GitHubScope::Org(o.clone()),
                    (None, Some(e)) => GitHubScope::Enterprise(e.clone()),
                    (None, None) => {
                        return Err(ConnectError::Config(
                            "github-audit: give `org` or `enterprise`".into(),
                        ))
                    }
                };
                let token =
                    Secret::from_env_or_file(Some(s.token_env.as_str()), s.token_file.as_deref())?;
                let mut cfg = GitHubAuditConfig::new(scope, token, checkpoint);
                cfg.api_base = s.api_url.clone();
                cfg.phrase = s.phrase.clone();
                cfg.start_ms = s.since.as_deref().map(time_ms).transpose()?;
                Box::new(GitHubAuditConnector::new(cfg)?)
            }
            ConnectorSpec::EntraGraph(s) => {
                let secret = Secret::from_env_or_file(
                    Some(s.client_secret_env.as_str()),
                    s.client_secret_file.as_deref(),
                )?;
                let mut cfg = EntraGraphConfig::new(&s.tenant, &s.client_id, secret, checkpoint);
                cfg.graph_base = s.graph_url.clone();
                if let Some(t) = &s.token_url {
                    cfg.token_url = t.clone();
                }
                cfg.streams = vec![EntraStream::SignIns {
                    event_types: s
                        .sign_in_types
                        .iter()
                        .filter(|t| !t.trim().is_empty())
                        .cloned()
                        .collect(),
                }];
                if !s.no_directory_audits {
                    cfg.streams.push(EntraStream::DirectoryAudits);
                }
                cfg.start_ms = s.since.as_deref().map(time_ms).transpose()?;
                Box::new(EntraGraphConnector::new(cfg)?)
            }
            ConnectorSpec::Directory(s) => Box::new(DirectoryConnector::new(DirectoryConfig {
                path: s.path.clone(),
                source: s.source.source(),
                settle: Duration::from_millis(s.settle_ms),
                max_file_bytes: s.max_file_bytes,
                checkpoint,
            })?),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn toml_and_defaults_are_one_definition() {
        let spec: ConnectorSpec = toml::from_str(
            r#"kind = "s3-sqs"
queue_url = "http://127.0.0.1:1/q"
buckets = ["trail"]
path_style = true"#,
        )
        .unwrap();
        let ConnectorSpec::S3Sqs(s) = &spec else {
            panic!("{spec:?}")
        };
        assert_eq!(s.wait_seconds, d_wait_seconds());
        assert!(s.path_style);
        assert_eq!(spec.source(), Some(Source::CloudTrail));
        let err = toml::from_str::<ConnectorSpec>("kind = \"vault-file\"\npath = \"a\"\nbogus = 1")
            .unwrap_err()
            .to_string();
        assert!(err.contains("bogus"), "{err}");
        let sock: ConnectorSpec = toml::from_str(
            "kind = \"vault-socket\"\nlisten = \"unix:/run/l.sock\"\nsocket_mode = 0o660",
        )
        .unwrap();
        let ConnectorSpec::VaultSocket(v) = &sock else {
            panic!("{sock:?}")
        };
        assert_eq!(v.listen, Listen::Unix("/run/l.sock".into()));
        assert_eq!(v.socket_mode, 0o660);
        let sock: ConnectorSpec =
            toml::from_str("kind = \"vault-socket\"\nallowed_peers = [\"10.0.4.7/32\"]").unwrap();
        let ConnectorSpec::VaultSocket(v) = &sock else {
            panic!("{sock:?}")
        };
        assert_eq!(v.socket_mode, 0o600, "the default");
        assert_eq!(v.listen, d_listen());
        assert_eq!(v.allowed_peers.len(), 1);
        let err = toml::from_str::<ConnectorSpec>("kind = \"vault-socket\"\nsocket_mode = 660")
            .unwrap_err()
            .to_string();
        assert!(err.contains("octal"), "{err}");
        let dir: ConnectorSpec = toml::from_str("kind = \"directory\"\npath = \"logs\"").unwrap();
        assert_eq!(dir.source(), None);
        assert_eq!(dir.kind(), "directory");
    }
}
