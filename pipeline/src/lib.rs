//! `lineage-pipeline` owns the stage graph and builds it once, from one
//! [`Settings`] (`lineage.toml`) and the inventory:
//!
//! ```text
//! sources ─► normalize ─► attribute + detect ─► outputs
//!            (parsers,    (lineage graph,       (events JSONL and Parquet tables, dead letters,
//!             framing,     detectors, Sigma,     alert fan-out to every [alerts] sink,
//!             Vault join)  alert book)           the responder: policy, write-ahead ledger, executors)
//! ```
//!
//! [`Pipeline`] hands every driver the same pieces: [`normalize`] (bytes → records
//! or dead letters, Sigma hits included), [`Pipeline::attribute_stage`], and the
//! [`outputs`] ([`outputs::AlertOutput`], [`outputs::ActionOutput`]). A driver only
//! chooses where records come from and how the pieces are connected:
//!
//! - **archive replay** (`lineage-replay`): files, globs and `s3://` prefixes merged
//!   in event-time order, in one process;
//! - **live, embedded** ([`embedded`], the default `lineage run`): the `[[source]]`
//!   connectors followed until SIGTERM over bounded in-process channels; a source is
//!   acknowledged only once a checkpoint covers its records and their outputs are
//!   durable;
//! - **live, Kafka** ([`kafka`]): every stage a consumer group, so more processes
//!   share the partitions.
//!
//! [`land`] lands one source's raw records as files or raw Kafka messages without
//! detection (`lineage connect`, `lineage ingest --from-checkpoint`). It also owns
//! what every long-running mode needs: [`metrics`] and the `/metrics`
//! and `/health` endpoint ([`http`]), signal handling, and the allocator setting.
//! It must not parse a log format (that is `lineage-ingest`), decide attribution or
//! alerts (`lineage-graph`, `lineage-detect`) or talk to a provider's API
//! (`lineage-respond`, `lineage-sinks`).
#![warn(missing_docs, unreachable_pub)]

mod alloc;
pub mod attribute;
pub mod embedded;
pub mod http;
pub mod kafka;
pub mod land;
pub mod metrics;
pub mod normalize;
pub mod outputs;
pub mod settings;
pub mod state_files;

use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use lineage_core::Inventory;
use lineage_detect::sigma::SigmaRules;
use lineage_ingest::ParseLimits;

pub use alloc::tune_allocator;
pub use attribute::{AttributeStage, Correction, OwnedCredential, StageState};
pub use metrics::Metrics;
pub use settings::{GraphSettings, RunConfig, Settings, SourceConfig};

/// What stops a pipeline (bad records never do: they are dead-lettered).
#[derive(Debug, thiserror::Error)]
pub enum PipelineError {
    /// Bad settings, with the file and field where known.
    #[error("config: {0}")]
    Config(String),
    /// A file could not be read or written.
    #[error("{0}")]
    Io(String),
    /// An alert could be neither delivered nor spooled by a sink.
    #[error("alert sinks: {0}")]
    Sink(#[from] lineage_sinks::SinkError),
    /// A lineage table could not be written.
    #[error(transparent)]
    Table(#[from] lineage_tables::TableError),
    /// The response ledger could not be read or written.
    #[error(transparent)]
    Ledger(#[from] lineage_respond::ledger::LedgerError),
    /// A live source failed for good.
    #[error("source {0}: {1}")]
    Source(String, String),
    /// Kafka refused or failed.
    #[error("kafka: {0}")]
    Kafka(String),
    /// A stage failed.
    #[error("stage {0}: {1}")]
    Stage(&'static str, String),
}

/// The stage graph's parts, built once from the settings and the inventory; every
/// driver takes its stages from here.
pub struct Pipeline {
    /// The settings file.
    pub settings: Settings,
    /// The inventory.
    pub inventory: Inventory,
    /// Sigma rules evaluated on every raw record of their log source.
    pub sigma: Option<Arc<SigmaRules>>,
}

impl std::fmt::Debug for Pipeline {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pipeline")
            .field("sources", &self.settings.sources.len())
            .field("sigma_rules", &self.sigma.as_ref().map(|s| s.rules().len()))
            .finish_non_exhaustive()
    }
}

impl Pipeline {
    /// A pipeline from its settings, the inventory and the loaded Sigma rules.
    pub fn new(settings: Settings, inventory: Inventory, sigma: Option<Arc<SigmaRules>>) -> Self {
        Self {
            settings,
            inventory,
            sigma,
        }
    }

    /// Limits every normalize applies.
    pub fn limits(&self) -> ParseLimits {
        ParseLimits {
            max_record_bytes: self.settings.run.max_record_bytes,
        }
    }

    /// The attribute + detect stage: the lineage graph seeded from the inventory,
    /// every enabled detector, the Sigma rules and the alert book.
    pub fn attribute_stage(&self) -> Result<AttributeStage, PipelineError> {
        AttributeStage::new(
            &self.inventory,
            &self.settings.detectors,
            self.sigma.clone(),
        )
        .map_err(|e| PipelineError::Config(format!("detectors: {e}")))
    }

    /// The stage of the live drivers (embedded and Kafka): [`Pipeline::attribute_stage`]
    /// that also re-evaluates recent uses when a departure arrives late, and forgets
    /// credentials idle for `[graph] retain_days` of event time.
    pub fn live_attribute_stage(&self) -> Result<AttributeStage, PipelineError> {
        let mut stage = self.attribute_stage()?;
        stage.re_evaluate_late_facts();
        let days = self.settings.graph.retain_days;
        if days > 0 {
            stage.set_retention(chrono::Duration::days(days.min(365_000) as i64));
        }
        Ok(stage)
    }

    /// Where alerts leave the pipeline: `<out_dir>/alerts.jsonl`,
    /// `alerts.ocsf.jsonl` and every `[alerts]` sink (spooling under `spool_dir`
    /// unless the settings name one).
    pub fn alert_output(
        &self,
        out_dir: &Path,
        spool_dir: &Path,
    ) -> Result<outputs::AlertOutput, PipelineError> {
        outputs::AlertOutput::open(out_dir, &self.settings.alerts, spool_dir)
    }

    /// [`Pipeline::alert_output`] replacing the directory's alert files (replay).
    pub fn alert_output_fresh(
        &self,
        out_dir: &Path,
        spool_dir: &Path,
    ) -> Result<outputs::AlertOutput, PipelineError> {
        outputs::AlertOutput::create(out_dir, &self.settings.alerts, spool_dir)
    }

    /// Where revocation requests go: `<out_dir>/actions.jsonl` and, with `respond`,
    /// the responder of `[response]` (policy, write-ahead ledger, executors).
    pub fn action_output(
        &self,
        out_dir: &Path,
        respond: bool,
    ) -> Result<outputs::ActionOutput, PipelineError> {
        outputs::ActionOutput::open(out_dir, self.responder(respond)?)
    }

    /// [`Pipeline::action_output`] replacing the directory's `actions.jsonl` (replay).
    pub fn action_output_fresh(
        &self,
        out_dir: &Path,
        respond: bool,
    ) -> Result<outputs::ActionOutput, PipelineError> {
        outputs::ActionOutput::create(out_dir, self.responder(respond)?)
    }

    /// The responder of `[response]`, with what a crash left in its ledger settled
    /// first (`Responder::reconcile`).
    fn responder(
        &self,
        respond: bool,
    ) -> Result<Option<lineage_respond::Responder>, PipelineError> {
        if !respond {
            return Ok(None);
        }
        let mut r =
            lineage_respond::build_responder(&self.settings.response, &self.settings.ledger())?;
        r.reconcile()?;
        Ok(Some(r))
    }
}

/// Raises the returned flag on SIGTERM or SIGINT.
pub fn shutdown_on_signals() -> Result<Arc<AtomicBool>, PipelineError> {
    let flag = Arc::new(AtomicBool::new(false));
    for signal in [libc::SIGTERM, libc::SIGINT] {
        let f = flag.clone();
        // SAFETY: the action only stores to an atomic, which is async-signal-safe.
        unsafe { signal_hook_registry::register(signal, move || f.store(true, Ordering::SeqCst)) }
            .map_err(|e| PipelineError::Config(format!("installing a signal handler: {e}")))?;
    }
    Ok(flag)
}
