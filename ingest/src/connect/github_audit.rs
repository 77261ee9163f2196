//! GitHub audit-log REST API poller: `GET /orgs/{org}/audit-log` or
//! `GET /enterprises/{enterprise}/audit-log` with `include=all` (web, git and API
//! events), `order=asc`, `per_page`, an optional `phrase` search filter, and cursor
//! pagination from the `Link` header (`after=`). One page = one batch.
//!
//! * **Token**: from an environment variable (default `GITHUB_TOKEN`) or a file; held
//!   in a [`Secret`], sent only as the `Authorization` header, never logged or
//!   persisted.
//! * **Rate limits**: a 403/429 with `retry-after` (secondary limit) waits that long;
//!   with `x-ratelimit-remaining: 0` waits until `x-ratelimit-reset`; a successful
//!   response announcing `x-ratelimit-remaining: 0` pauses before the next call.
//!   5xx and transport errors back off exponentially ([`HttpClient`]).
//! * **Checkpoint** (`state`):
//!   `{"after": "<Link cursor>"|null, "cursor": {"since_ms", "ids_at_since"}, "progress": {…}}`.
//!   While a paging run is under way, `after` is the cursor of the next page; when
//!   it ends (no `rel="next"`), `cursor` becomes `progress` (the newest `@timestamp`
//!   delivered and the `_document_id`s at it) and the next run asks
//!   `phrase=… created:>=<cursor>`, dropping the `_document_id`s already delivered.
//!   Records without `@timestamp`/`created_at` or `_document_id` are passed on
//!   but cannot move the cursor.

use lineage_core::{DeadLetter, Provenance, Source};

use super::http::{link_next, query_param, HttpClient, RetryPolicy, Secret};
use super::{
    AckQueue, BatchId, CheckpointStore, ConnectError, Connector, ConnectorStats, RawBatch,
    TimeCursor,
};

/// Whose audit log.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum GitHubScope {
    /// An organization.
    Org(String),
    /// An enterprise (slug).
    Enterprise(String),
}

impl GitHubScope {
    fn path(&self) -> String {
        match self {
            GitHubScope::Org(o) => format!("/orgs/{o}/audit-log"),
            GitHubScope::Enterprise(e) => format!("/enterprises/{e}/audit-log"),
        }
    }
}

/// Settings of the GitHub audit-log poller.
#[derive(Clone, Debug)]
pub struct GitHubAuditConfig {
    /// API base, `https://api.github.com` (or `https://HOST/api/v3` for GHES).
    pub api_base: String,
    /// Org or enterprise.
    pub scope: GitHubScope,
    /// Extra search phrase (`action:org.`, `actor:octocat`, …).
    pub phrase: Option<String>,
    /// `include` parameter: `all`, `web` or `git`.
    pub include: String,
    /// Page size (max 100).
    pub per_page: u32,
    /// Where to start without a checkpoint (ms); `None` = everything retained.
    pub start_ms: Option<i64>,
    /// The token.
    pub token: Secret,
    /// Retries and rate-limit waits.
    pub retry: RetryPolicy,
    /// The checkpoint.
    pub checkpoint: CheckpointStore,
}

impl GitHubAuditConfig {
    /// Defaults: api.github.com, `include=all`, 100 per page.
    pub fn new(scope: GitHubScope, token: Secret, checkpoint: CheckpointStore) -> Self {
        Self {
            api_base: "https://api.github.com".into(),
            scope,
            phrase: None,
            include: "all".into(),
            per_page: 100,
            start_ms: None,
            token,
            retry: RetryPolicy::default(),
            checkpoint,
        }
    }
}

/// The checkpoint state (see the module doc).
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct GitHubAuditState {
    /// The `after` cursor of the next page of the current run.
    pub after: Option<String>,
    /// Delivered before the current run.
    pub cursor: TimeCursor,
    /// Delivered so far (cursor + the current run).
    pub progress: TimeCursor,
}

/// The GitHub audit-log connector (see the module doc).
pub struct GitHubAuditConnector {
    cfg: GitHubAuditConfig,
    http: HttpClient,
    state: GitHubAuditState,
    acks: AckQueue<GitHubAuditState>,
    stats: ConnectorStats,
}

/// Milliseconds of an audit-log entry: `@timestamp` or `created_at`, as epoch ms or ISO.
fn entry_ms(v: &serde_json::Value) -> Option<i64> {
    let t = v.get("@timestamp").or_else(|| v.get("created_at"))?;
    t.as_i64()
        .or_else(|| t.as_f64().map(|f| f as i64))
        .or_else(|| t.as_str().and_then(super::rfc3339_ms))
}

impl GitHubAuditConnector {
    /// Loads the checkpoint and prepares the client.
    pub fn new(cfg: GitHubAuditConfig) -> Result<Self, ConnectError> {
        let state = cfg
            .checkpoint
            .load::<GitHubAuditState>()?
            .unwrap_or_else(|| {
                let c = TimeCursor::starting_at(cfg.start_ms);
                GitHubAuditState {
                    after: None,
                    cursor: c.clone(),
                    progress: c,
                }
            });
        Ok(Self {
            http: HttpClient::new(cfg.retry.clone()),
            cfg,
            state,
            acks: AckQueue::default(),
            stats: ConnectorStats::default(),
        })
    }

    /// The in-memory state.
    pub fn state(&self) -> &GitHubAuditState {
        &self.state
    }

    fn phrase(&self) -> Option<String> {
        let mut parts = Vec::new();
        if let Some(p) = self.cfg.phrase.as_deref().filter(|p| !p.trim().is_empty()) {
            parts.push(p.trim().to_owned());
        }
        if let Some(since) = self.state.cursor.since_ms {
            // The search is second-precise and inclusive; the ids drop the repeats.
            let secs = since.div_euclid(1000);
            let t = chrono::DateTime::from_timestamp(secs, 0).unwrap_or_default();
            parts.push(format!("created:>={}", t.format("%Y-%m-%dT%H:%M:%SZ")));
        }
        (!parts.is_empty()).then(|| parts.join(" "))
    }
}

impl Connector for GitHubAuditConnector {
    fn poll(&mut self) -> Result<Option<RawBatch>, ConnectError> {
        let url = format!(
            "{}{}",
            self.cfg.api_base.trim_end_matches('/'),
            self.cfg.scope.path()
        );
        let phrase = self.phrase();
        let after = self.state.after.clone();
        let (token, include, per_page) = (
            self.cfg.token.clone(),
            self.cfg.include.clone(),
            self.cfg.per_page.to_string(),
        );
        let fetched = self
            .http
            .send("GitHub audit-log page", &mut self.stats, |agent| {
                let mut req = agent
                    .get(&url)
                    .set("Authorization", &format!("Bearer {}", token.expose()))
                    .set("Accept", "application/vnd.github+json")
                    .set("X-GitHub-Api-Version", "2022-11-28")
                    .query("include", &include)
                    .query("order", "asc")
                    .query("per_page", &per_page);
                if let Some(p) = &phrase {
                    req = req.query("phrase", p);
                }
                if let Some(a) = &after {
                    req = req.query("after", a);
                }
                req.call().map_err(Box::new)
            })?;
        let origin = format!("github:{}", self.cfg.scope.path());
        let mut records = Vec::new();
        let mut dead = Vec::new();
        let mut progress = self.state.progress.clone();
        let trimmed = fetched.body.trim_ascii();
        if !trimmed.starts_with(b"[") {
            dead.push(DeadLetter::new(
                Source::GitHub,
                "audit-log page is not a JSON array",
                Provenance::file(&origin, 0),
                &fetched.body,
            ));
        } else {
            let page = super::split_page(
                Source::GitHub,
                trimmed,
                &[],
                &origin,
                &self.state.cursor,
                &mut progress,
                |v| (entry_ms(v), v.get("_document_id").and_then(|d| d.as_str())),
            );
            self.stats.duplicates_skipped += page.duplicates;
            records.extend(page.records);
            dead.extend(page.dead);
        }
        let next_after = fetched
            .link
            .as_deref()
            .and_then(link_next)
            .and_then(|next| query_param(&next, "after"))
            .filter(|a| !a.is_empty());
        let key = format!(
            "github-{}-{}",
            self.state.cursor.since_ms.unwrap_or(0),
            self.state.after.as_deref().unwrap_or("start")
        );
        let new_state = match next_after {
            Some(a) => GitHubAuditState {
                after: Some(a),
                cursor: self.state.cursor.clone(),
                progress,
            },
            None => GitHubAuditState {
                after: None,
                cursor: progress.clone(),
                progress,
            },
        };
        if records.is_empty() && dead.is_empty() && new_state == self.state {
            return Ok(None);
        }
        self.state = new_state;
        let id = self.acks.push(self.state.clone());
        let batch = RawBatch {
            id,
            key,
            source: Source::GitHub,
            records,
            dead_letters: dead,
            position: format!(
                "after={} since={}",
                self.state.after.as_deref().unwrap_or("-"),
                self.state
                    .cursor
                    .since_ms
                    .map(super::ms_rfc3339)
                    .unwrap_or_else(|| "-".into())
            ),
        };
        self.stats.handed_out(&batch);
        Ok(Some(batch))
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
