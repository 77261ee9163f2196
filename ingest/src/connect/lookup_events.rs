//! CloudTrail `LookupEvents` poller (management events, 90 days of history, no trail
//! needed). Each poll reads one time window `[since, end]` completely (following
//! `NextToken`; LookupEvents returns newest first), drops what the cursor says was
//! delivered, and hands out the rest oldest first as one batch. Each result's
//! `CloudTrailEvent` string is the raw record.
//!
//! * **Window**: `end = min(since + max_window, now − end_lag, until)`, whole
//!   seconds. `end_lag` (default 15 min) leaves CloudTrail time to make late events
//!   visible; a window shorter than `min_window` is not polled (`poll` returns
//!   `None`, caught up).
//! * **Checkpoint** (`state`): `{"cursor": {"since_ms": …, "ids_at_since": [EventId…]}}`
//!   = the window end and the ids of events at exactly that instant, so the next
//!   window (which starts there, inclusive) skips them: no duplicates at the boundary.
//! * **Throttling** (`ThrottlingException`, 429) and 5xx back off exponentially
//!   ([`RetryPolicy`]); the SDK's own retries are off so every wait is counted.
//! * The batch key is `lookup-<since_ms>`: a re-delivery after a crash starts at the
//!   same place and holds at least the same events.

use aws_sdk_cloudtrail::primitives::DateTime;
use lineage_core::Source;

use super::aws::{load_sdk_config, runtime, with_retries, AwsSettings};
use super::http::RetryPolicy;
use super::{
    AckQueue, BatchId, CheckpointStore, ConnectError, Connector, ConnectorStats, RawBatch,
    RawRecord, TimeCursor,
};

/// Settings of the LookupEvents poller.
#[derive(Clone, Debug)]
pub struct LookupEventsConfig {
    /// AWS settings (region, profile, endpoint override).
    pub aws: AwsSettings,
    /// Where to start when there is no checkpoint (ms since the epoch).
    pub start_ms: i64,
    /// Stop at this time (ms; `None` = follow forever).
    pub until_ms: Option<i64>,
    /// Longest window per poll.
    pub max_window: std::time::Duration,
    /// Shortest window worth a poll.
    pub min_window: std::time::Duration,
    /// How far behind now the window ends.
    pub end_lag: std::time::Duration,
    /// Results per page (1–50).
    pub page_size: i32,
    /// Retries on throttling / 5xx.
    pub retry: RetryPolicy,
    /// The checkpoint.
    pub checkpoint: CheckpointStore,
}

impl LookupEventsConfig {
    /// Defaults: 1 h windows, 15 min lag, 60 s minimum window, 50 per page.
    pub fn new(start_ms: i64, checkpoint: CheckpointStore) -> Self {
        Self {
            aws: AwsSettings::default(),
            start_ms,
            until_ms: None,
            max_window: std::time::Duration::from_secs(3600),
            min_window: std::time::Duration::from_secs(60),
            end_lag: std::time::Duration::from_secs(15 * 60),
            page_size: 50,
            retry: RetryPolicy::default(),
            checkpoint,
        }
    }
}

/// The checkpoint state.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct LookupEventsState {
    /// Delivered up to here.
    pub cursor: TimeCursor,
}

/// The LookupEvents connector (see the module doc).
pub struct LookupEventsConnector {
    cfg: LookupEventsConfig,
    rt: tokio::runtime::Runtime,
    client: aws_sdk_cloudtrail::Client,
    state: LookupEventsState,
    acks: AckQueue<LookupEventsState>,
    stats: ConnectorStats,
}

impl LookupEventsConnector {
    /// Connects with the standard AWS chain plus the overrides in `cfg.aws`.
    pub fn new(cfg: LookupEventsConfig) -> Result<Self, ConnectError> {
        let rt = runtime()?;
        let sdk = load_sdk_config(&rt, &cfg.aws);
        Self::with_sdk_config(cfg, rt, &sdk)
    }

    /// Connects with a ready SDK configuration (tests pass static credentials).
    pub fn with_sdk_config(
        cfg: LookupEventsConfig,
        rt: tokio::runtime::Runtime,
        sdk: &aws_config::SdkConfig,
    ) -> Result<Self, ConnectError> {
        let state = cfg
            .checkpoint
            .load::<LookupEventsState>()?
            .unwrap_or_else(|| LookupEventsState {
                cursor: TimeCursor::starting_at(Some(cfg.start_ms)),
            });
        Ok(Self {
            client: aws_sdk_cloudtrail::Client::new(sdk),
            cfg,
            rt,
            state,
            acks: AckQueue::default(),
            stats: ConnectorStats::default(),
        })
    }

    /// The in-memory state (what the checkpoint will hold once everything is acked).
    pub fn state(&self) -> &LookupEventsState {
        &self.state
    }
}

impl Connector for LookupEventsConnector {
    fn poll(&mut self) -> Result<Option<RawBatch>, ConnectError> {
        let since = self.state.cursor.since_ms.unwrap_or(self.cfg.start_ms);
        let now = chrono::Utc::now().timestamp_millis();
        let mut end = (since + self.cfg.max_window.as_millis() as i64)
            .min(now - self.cfg.end_lag.as_millis() as i64);
        if let Some(until) = self.cfg.until_ms {
            end = end.min(until);
        }
        end -= end.rem_euclid(1000);
        if end <= since || end - since < self.cfg.min_window.as_millis() as i64 {
            return Ok(None);
        }
        let mut events: Vec<(i64, String, String)> = Vec::new();
        let mut token: Option<String> = None;
        let mut pages = 0u32;
        loop {
            let (client, cfg) = (&self.client, &self.cfg);
            let out = self.rt.block_on(with_retries(
                "cloudtrail:LookupEvents",
                &cfg.retry,
                &mut self.stats,
                || {
                    client
                        .lookup_events()
                        .start_time(DateTime::from_millis(since))
                        .end_time(DateTime::from_millis(end))
                        .max_results(cfg.page_size)
                        .set_next_token(token.clone())
                        .send()
                },
            ))?;
            pages += 1;
            for e in out.events() {
                let (Some(id), Some(raw)) = (e.event_id(), e.cloud_trail_event()) else {
                    self.stats.skip("result_without_event");
                    continue;
                };
                let ts = e
                    .event_time()
                    .and_then(|t| t.to_millis().ok())
                    .unwrap_or(since);
                events.push((ts, id.to_owned(), raw.to_owned()));
            }
            token = out
                .next_token()
                .filter(|t| !t.is_empty())
                .map(str::to_owned);
            if token.is_none() {
                break;
            }
        }
        events.sort();
        events.dedup_by(|a, b| a.1 == b.1);
        let cursor = &self.state.cursor;
        let before = events.len();
        events.retain(|(ts, id, _)| cursor.is_new(*ts, id));
        self.stats.duplicates_skipped += (before - events.len()) as u64;
        let mut next = TimeCursor::starting_at(Some(end));
        for (ts, id, _) in &events {
            if *ts == end {
                next.ids_at_since.insert(id.clone());
            }
        }
        // Events stamped after the requested end (clock skew) still move the cursor.
        for (ts, id, _) in &events {
            if *ts > end {
                next.advance(*ts, id);
            }
        }
        let records = events
            .into_iter()
            .map(|(_, id, raw)| RawRecord {
                bytes: raw.into_bytes(),
                origin: format!("cloudtrail:LookupEvents#{id}"),
            })
            .collect();
        tracing::debug!(since, end, pages, "LookupEvents window read");
        self.state = LookupEventsState { cursor: next };
        let id = self.acks.push(self.state.clone());
        let batch = RawBatch {
            id,
            key: format!("lookup-{since}"),
            source: Source::CloudTrail,
            records,
            dead_letters: Vec::new(),
            position: format!("{} .. {}", super::ms_rfc3339(since), super::ms_rfc3339(end)),
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
