//! Microsoft Entra ID through the Graph API: `/auditLogs/signIns` (with a
//! `signInEventTypes` filter, so service-principal and managed-identity sign-ins are
//! included) and `/auditLogs/directoryAudits`, each a separate stream with its own
//! cursor, polled in turn. One page = one batch.
//!
//! * **Token**: OAuth 2.0 client credentials (`client_id` + `client_secret` posted
//!   to the tenant's token endpoint, configurable for tests and sovereign clouds),
//!   cached until a minute before it expires, refreshed once on a 401. The secret
//!   and the token are [`Secret`]s: never logged or persisted.
//! * **Paging**: `$filter=createdDateTime ge <cursor>` (`activityDateTime` for
//!   directory audits), `$top`, then `@odata.nextLink` until it is absent.
//! * **Throttling**: 429 with `Retry-After` waits that long; 5xx back off
//!   ([`HttpClient`]).
//! * **Checkpoint** (`state`): `{"streams": {"signIns": {"next_link", "cursor",
//!   "progress"}, "directoryAudits": {…}}}`, where `cursor` = `{since_ms,
//!   ids_at_since}` is the time the current run's filter starts at plus the ids
//!   already delivered at exactly that time (the filter is inclusive), `progress` the
//!   newest time and ids delivered so far, and `next_link` the page to read next
//!   while a run is under way (a Graph URL with a skip token; no secret). When a run
//!   ends, `cursor` becomes `progress`. The order of results does not matter.
//!
//! Signing-in with `signInEventTypes` needs the Graph **beta** endpoint (the
//! default base); v1.0 returns interactive user sign-ins only. The app needs the
//! `AuditLog.Read.All` application permission.
//!
//! For continuous, high-volume tenants prefer the Event Hubs route (diagnostic
//! settings → Event Hubs → its Kafka endpoint → `lineage run`'s Kafka source); see
//! [`super`].

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use lineage_core::{DeadLetter, Provenance, Source};

use super::http::{HttpClient, RetryPolicy, Secret};
use super::{
    AckQueue, BatchId, CheckpointStore, ConnectError, Connector, ConnectorStats, RawBatch,
    TimeCursor,
};

/// One Graph collection to follow.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum EntraStream {
    /// `/auditLogs/signIns`, filtered to these `signInEventTypes` (empty = no type filter).
    SignIns {
        /// E.g. `servicePrincipal`, `managedIdentity`, `interactiveUser`, `nonInteractiveUser`.
        event_types: Vec<String>,
    },
    /// `/auditLogs/directoryAudits`.
    DirectoryAudits,
}

impl EntraStream {
    /// The stream's name in the checkpoint.
    pub fn name(&self) -> &'static str {
        match self {
            EntraStream::SignIns { .. } => "signIns",
            EntraStream::DirectoryAudits => "directoryAudits",
        }
    }

    fn path(&self) -> &'static str {
        match self {
            EntraStream::SignIns { .. } => "/auditLogs/signIns",
            EntraStream::DirectoryAudits => "/auditLogs/directoryAudits",
        }
    }

    fn time_field(&self) -> &'static str {
        match self {
            EntraStream::SignIns { .. } => "createdDateTime",
            EntraStream::DirectoryAudits => "activityDateTime",
        }
    }

    fn filter(&self, since_ms: Option<i64>) -> Option<String> {
        let mut parts = Vec::new();
        if let Some(since) = since_ms {
            parts.push(format!(
                "{} ge {}",
                self.time_field(),
                super::ms_rfc3339(since)
            ));
        }
        if let EntraStream::SignIns { event_types } = self {
            if !event_types.is_empty() {
                let any = event_types
                    .iter()
                    .map(|t| format!("signInEventTypes/any(t: t eq '{t}')"))
                    .collect::<Vec<_>>()
                    .join(" or ");
                parts.push(format!("({any})"));
            }
        }
        (!parts.is_empty()).then(|| parts.join(" and "))
    }
}

/// Settings of the Graph poller.
#[derive(Clone, Debug)]
pub struct EntraGraphConfig {
    /// Graph base URL (default `https://graph.microsoft.com/beta`).
    pub graph_base: String,
    /// Token endpoint (default `https://login.microsoftonline.com/<tenant>/oauth2/v2.0/token`).
    pub token_url: String,
    /// App (client) id.
    pub client_id: String,
    /// Client secret.
    pub client_secret: Secret,
    /// OAuth scope (default `https://graph.microsoft.com/.default`).
    pub scope: String,
    /// Streams to follow.
    pub streams: Vec<EntraStream>,
    /// `$top` page size.
    pub page_size: u32,
    /// Where to start without a checkpoint (ms); `None` = everything retained.
    pub start_ms: Option<i64>,
    /// Retries and throttling waits.
    pub retry: RetryPolicy,
    /// The checkpoint.
    pub checkpoint: CheckpointStore,
}

impl EntraGraphConfig {
    /// Defaults for a tenant: beta Graph, both streams (sign-ins of service
    /// principals and managed identities, directory audits), 500 per page.
    pub fn new(
        tenant: &str,
        client_id: impl Into<String>,
        client_secret: Secret,
        checkpoint: CheckpointStore,
    ) -> Self {
        Self {
            graph_base: "https://graph.microsoft.com/beta".into(),
            token_url: format!("https://login.microsoftonline.com/{tenant}/oauth2/v2.0/token"),
            client_id: client_id.into(),
            client_secret,
            scope: "https://graph.microsoft.com/.default".into(),
            streams: vec![
                EntraStream::SignIns {
                    event_types: vec!["servicePrincipal".into(), "managedIdentity".into()],
                },
                EntraStream::DirectoryAudits,
            ],
            page_size: 500,
            start_ms: None,
            retry: RetryPolicy::default(),
            checkpoint,
        }
    }
}

/// One stream's checkpoint.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct EntraStreamState {
    /// The next page of the current run.
    pub next_link: Option<String>,
    /// Delivered before the current run (the filter's start).
    pub cursor: TimeCursor,
    /// Delivered so far.
    pub progress: TimeCursor,
}

/// The checkpoint state: one entry per stream name.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct EntraGraphState {
    /// Per stream.
    pub streams: BTreeMap<String, EntraStreamState>,
}

/// The Entra Graph connector (see the module doc).
pub struct EntraGraphConnector {
    cfg: EntraGraphConfig,
    http: HttpClient,
    token: Option<(Secret, Instant)>,
    state: EntraGraphState,
    turn: usize,
    acks: AckQueue<EntraGraphState>,
    stats: ConnectorStats,
}

impl EntraGraphConnector {
    /// Loads the checkpoint and prepares the client (the token is fetched on first poll).
    pub fn new(cfg: EntraGraphConfig) -> Result<Self, ConnectError> {
        if cfg.streams.is_empty() {
            return Err(ConnectError::Config("no Entra stream selected".into()));
        }
        let mut state = cfg
            .checkpoint
            .load::<EntraGraphState>()?
            .unwrap_or_default();
        for s in &cfg.streams {
            state.streams.entry(s.name().to_owned()).or_insert_with(|| {
                let c = TimeCursor::starting_at(cfg.start_ms);
                EntraStreamState {
                    next_link: None,
                    cursor: c.clone(),
                    progress: c,
                }
            });
        }
        Ok(Self {
            http: HttpClient::new(cfg.retry.clone()),
            cfg,
            token: None,
            state,
            turn: 0,
            acks: AckQueue::default(),
            stats: ConnectorStats::default(),
        })
    }

    /// The in-memory state.
    pub fn state(&self) -> &EntraGraphState {
        &self.state
    }

    fn access_token(&mut self) -> Result<Secret, ConnectError> {
        if let Some((t, until)) = &self.token {
            if Instant::now() < *until {
                return Ok(t.clone());
            }
        }
        let (url, id, secret, scope) = (
            self.cfg.token_url.clone(),
            self.cfg.client_id.clone(),
            self.cfg.client_secret.clone(),
            self.cfg.scope.clone(),
        );
        let fetched = self
            .http
            .send("Entra token request", &mut self.stats, |agent| {
                agent
                    .post(&url)
                    .send_form(&[
                        ("grant_type", "client_credentials"),
                        ("client_id", &id),
                        ("client_secret", secret.expose()),
                        ("scope", &scope),
                    ])
                    .map_err(Box::new)
            })?;
        #[derive(serde::Deserialize)]
        struct TokenResponse {
            access_token: String,
            #[serde(default)]
            expires_in: Option<u64>,
        }
        let t: TokenResponse = serde_json::from_slice(&fetched.body).map_err(|e| {
            ConnectError::Source(format!("token endpoint answered without a token: {e}"))
        })?;
        let life = Duration::from_secs(t.expires_in.unwrap_or(3600).saturating_sub(60).max(1));
        let token = Secret::new(t.access_token);
        self.token = Some((token.clone(), Instant::now() + life));
        Ok(token)
    }

    /// GETs a page; `first` = a run's first page (add `$filter` and `$top`), else a
    /// nextLink (checked to be on the configured Graph host first).
    fn get_page(
        &mut self,
        url: &str,
        first: bool,
        filter: Option<&str>,
    ) -> Result<Vec<u8>, ConnectError> {
        for attempt in 0..2 {
            let token = self.access_token()?;
            let top = self.cfg.page_size.to_string();
            let result = self
                .http
                .send("Graph audit-log page", &mut self.stats, |agent| {
                    let mut req = agent
                        .get(url)
                        .set("Authorization", &format!("Bearer {}", token.expose()))
                        .set("Accept", "application/json");
                    if first {
                        if let Some(f) = filter {
                            req = req.query("$filter", f);
                        }
                        req = req.query("$top", &top);
                    }
                    req.call().map_err(Box::new)
                });
            match result {
                Err(ConnectError::Status(401, _)) if attempt == 0 => {
                    tracing::info!("Graph answered 401; refreshing the token");
                    self.token = None;
                }
                other => return other.map(|f| f.body),
            }
        }
        unreachable!("the second attempt returns")
    }

    fn poll_stream(&mut self, index: usize) -> Result<Option<RawBatch>, ConnectError> {
        let stream = self.cfg.streams[index].clone();
        let name = stream.name();
        let st = self.state.streams[name].clone();
        let body = match &st.next_link {
            Some(link) => {
                // The page (or a checkpoint file) names the next URL; the token goes
                // only to the Graph host this connector was configured with.
                if !same_origin(link, &self.cfg.graph_base) {
                    return Err(ConnectError::Source(format!(
                        "@odata.nextLink points at {}, not at the configured Graph host {}; refusing to send the token there",
                        origin_of(link),
                        origin_of(&self.cfg.graph_base)
                    )));
                }
                self.get_page(link, false, None)?
            }
            None => {
                let url = format!(
                    "{}{}",
                    self.cfg.graph_base.trim_end_matches('/'),
                    stream.path()
                );
                let filter = stream.filter(st.cursor.since_ms);
                self.get_page(&url, true, filter.as_deref())?
            }
        };
        let origin = format!("graph:{}", stream.path());
        let mut records = Vec::new();
        let mut dead = Vec::new();
        let mut progress = st.progress.clone();
        let page: Option<serde_json::Value> = serde_json::from_slice(&body).ok();
        let next_link = page
            .as_ref()
            .and_then(|p| p.get("@odata.nextLink"))
            .and_then(|l| l.as_str())
            .map(str::to_owned);
        if page
            .as_ref()
            .and_then(|p| p.get("value"))
            .is_some_and(|v| v.is_array())
        {
            let time_field = stream.time_field();
            let page = super::split_page(
                Source::Entra,
                &body,
                &["value"],
                &origin,
                &st.cursor,
                &mut progress,
                |v| {
                    let ts = v
                        .get(time_field)
                        .and_then(|t| t.as_str())
                        .and_then(super::rfc3339_ms);
                    (ts, v.get("id").and_then(|i| i.as_str()))
                },
            );
            self.stats.duplicates_skipped += page.duplicates;
            records.extend(page.records);
            dead.extend(page.dead);
        } else {
            dead.push(DeadLetter::new(
                Source::Entra,
                "Graph page is not a JSON object with a `value` array",
                Provenance::file(&origin, 0),
                &body,
            ));
        }
        let key = format!(
            "entra-{name}-{}-{}",
            st.cursor.since_ms.unwrap_or(0),
            st.next_link
                .as_deref()
                .map(|l| format!("{:016x}", fnv1a(l.as_bytes())))
                .unwrap_or_else(|| "start".into())
        );
        let new = match next_link {
            Some(link) => EntraStreamState {
                next_link: Some(link),
                cursor: st.cursor.clone(),
                progress,
            },
            None => EntraStreamState {
                next_link: None,
                cursor: progress.clone(),
                progress,
            },
        };
        if records.is_empty() && dead.is_empty() && new == st {
            return Ok(None);
        }
        self.state.streams.insert(name.to_owned(), new);
        let id = self.acks.push(self.state.clone());
        let batch = RawBatch {
            id,
            key,
            source: Source::Entra,
            records,
            dead_letters: dead,
            position: format!("{name} page"),
        };
        self.stats.handed_out(&batch);
        Ok(Some(batch))
    }
}

/// A stable 64-bit hash for batch keys (not for security).
fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf29ce484222325, |h, b| {
        (h ^ u64::from(*b)).wrapping_mul(0x100000001b3)
    })
}

impl Connector for EntraGraphConnector {
    fn poll(&mut self) -> Result<Option<RawBatch>, ConnectError> {
        let n = self.cfg.streams.len();
        for i in 0..n {
            let index = (self.turn + i) % n;
            if let Some(batch) = self.poll_stream(index)? {
                self.turn = (index + 1) % n;
                return Ok(Some(batch));
            }
        }
        Ok(None)
    }

    fn ack(&mut self, batch: BatchId) -> Result<(), ConnectError> {
        if let Some(state) = self.acks.ack(batch)? {
            self.cfg.checkpoint.save(&state)?;
        }
        self.stats.acked += 1;
        Ok(())
    }

    fn stats(&self) -> &ConnectorStats {
        &self.stats
    }
}

/// `scheme://host[:port]` of a URL, lower-cased.
fn origin_of(url: &str) -> String {
    let (scheme, rest) = url.split_once("://").unwrap_or(("", url));
    let host = rest.split(['/', '?', '#']).next().unwrap_or("");
    format!(
        "{}://{}",
        scheme.to_ascii_lowercase(),
        host.to_ascii_lowercase()
    )
}

/// True when both URLs have the same scheme, host and port.
fn same_origin(a: &str, b: &str) -> bool {
    origin_of(a) == origin_of(b)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sign_in_filter_names_the_event_types() {
        let s = EntraStream::SignIns {
            event_types: vec!["servicePrincipal".into(), "managedIdentity".into()],
        };
        assert_eq!(
            s.filter(Some(1_714_564_800_000)).unwrap(),
            "createdDateTime ge 2024-05-01T12:00:00.000Z and (signInEventTypes/any(t: t eq 'servicePrincipal') or signInEventTypes/any(t: t eq 'managedIdentity'))"
        );
        assert_eq!(
            EntraStream::DirectoryAudits.filter(Some(0)).unwrap(),
            "activityDateTime ge 1970-01-01T00:00:00.000Z"
        );
    }

    #[test]
    fn next_links_are_followed_only_on_the_graph_host() {
        let graph = "https://graph.microsoft.com/beta";
        assert!(same_origin(
            "https://graph.microsoft.com/beta/auditLogs/signIns?$skiptoken=x",
            graph
        ));
        assert!(same_origin("HTTPS://Graph.Microsoft.com/v1.0/x", graph));
        assert!(!same_origin(
            "https://attacker.example/beta/auditLogs/signIns",
            graph
        ));
        assert!(!same_origin(
            "https://graph.microsoft.com.attacker.example/x",
            graph
        ));
        assert!(!same_origin("http://graph.microsoft.com/beta/x", graph));
        assert!(!same_origin(
            "https://graph.microsoft.com:8443/beta/x",
            graph
        ));
    }
}
