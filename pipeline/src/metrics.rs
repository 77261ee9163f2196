//! Pipeline metrics as typed signals on a `prometheus-client` registry, rendered for
//! `GET /metrics`: records in/out/dead-lettered per stage and source, consumer lag
//! per partition, alerts by detector, actions, events held for the sources'
//! watermarks, and an ingest → output latency histogram. `/health` reads the stages'
//! readiness kept beside them.
//!
//! A stage reports through [`Metrics::record`] with a [`Stage`] and an [`Outcome`],
//! never a free-form string, so every series name and label set is fixed here.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;

use prometheus_client::encoding::{EncodeLabelSet, EncodeLabelValue, LabelValueEncoder};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

/// Upper bounds (seconds) of the latency histogram buckets.
const LATENCY_BUCKETS: [f64; 14] = [
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0,
];

/// A pipeline stage, as metrics name it.
#[derive(Clone, Copy, Debug, Hash, PartialEq, Eq)]
pub enum Stage {
    /// Raw records → normalized events (or dead letters).
    Normalize,
    /// Attribution and detection.
    Graph,
    /// Alerts, actions and dead letters → files, alert sinks, the responder.
    Sinks,
    /// A live source of the embedded bus (the source label is its name).
    Source,
}

impl Stage {
    /// The label value.
    pub fn as_str(self) -> &'static str {
        match self {
            Stage::Normalize => "normalize",
            Stage::Graph => "graph",
            Stage::Sinks => "sinks",
            Stage::Source => "source",
        }
    }
}

/// What happened to a record at a stage.
#[derive(Clone, Copy, Debug, Hash, PartialEq, Eq)]
pub enum Outcome {
    /// Taken in.
    In,
    /// Passed on.
    Out,
    /// Could not be used: went to the dead letters with the reason.
    DeadLettered,
    /// Seen before (a re-delivery after a crash); dropped.
    Duplicate,
    /// A Vault request folded into its response.
    Joined,
    /// A source poll that failed (retried).
    Error,
}

impl Outcome {
    fn as_str(self) -> &'static str {
        match self {
            Outcome::In => "in",
            Outcome::Out => "out",
            Outcome::DeadLettered => "dead_lettered",
            Outcome::Duplicate => "duplicate",
            Outcome::Joined => "joined",
            Outcome::Error => "error",
        }
    }
}

macro_rules! label_value {
    ($t:ty) => {
        impl EncodeLabelValue for $t {
            fn encode(&self, w: &mut LabelValueEncoder<'_>) -> Result<(), std::fmt::Error> {
                std::fmt::Write::write_str(w, self.as_str())
            }
        }
    };
}
label_value!(Stage);
label_value!(Outcome);

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct EventLabels {
    stage: Stage,
    source: String,
    outcome: Outcome,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct LagLabels {
    stage: Stage,
    topic: String,
    partition: i32,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct DetectorLabels {
    detector: String,
}

/// Metrics shared by the stage loops and the HTTP endpoint.
pub struct Metrics {
    registry: Registry,
    events: Family<EventLabels, Counter>,
    lag: Family<LagLabels, Gauge>,
    lag_keys: Mutex<Vec<LagLabels>>,
    alerts: Family<DetectorLabels, Counter>,
    actions: Counter,
    held: Gauge,
    rebuild_events: Gauge,
    output_ids_read: Gauge,
    restored: Gauge,
    latency: Histogram,
    /// Stages that finished their start-up (identity table read, topics present).
    ready: Mutex<BTreeMap<&'static str, bool>>,
    failed: AtomicBool,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Metrics").finish_non_exhaustive()
    }
}

impl Default for Metrics {
    fn default() -> Self {
        let mut registry = Registry::default();
        let events = Family::<EventLabels, Counter>::default();
        registry.register(
            "lineage_events",
            "Records per stage, source and outcome (in, out, dead_lettered, duplicate, joined, error)",
            events.clone(),
        );
        let lag = Family::<LagLabels, Gauge>::default();
        registry.register(
            "lineage_consumer_lag",
            "Messages behind the high watermark per stage and partition",
            lag.clone(),
        );
        let held = Gauge::default();
        registry.register(
            "lineage_graph_held_events",
            "Events waiting for every source's event-time watermark",
            held.clone(),
        );
        let rebuild_events = Gauge::default();
        registry.register(
            "lineage_graph_rebuild_events",
            "Events the graph stage re-read from lineage.events to rebuild its state at its last start or rebalance",
            rebuild_events.clone(),
        );
        let output_ids_read = Gauge::default();
        registry.register(
            "lineage_graph_output_ids_read",
            "Messages the graph stage read from lineage.alerts and lineage.actions to emit nothing twice (at start: only those after its snapshot when one restores; all of them otherwise)",
            output_ids_read.clone(),
        );
        let restored = Gauge::default();
        registry.register(
            "lineage_graph_restored_from_snapshot",
            "1 when the graph stage's state was restored from its snapshot at its last start or rebalance",
            restored.clone(),
        );
        let alerts = Family::<DetectorLabels, Counter>::default();
        registry.register(
            "lineage_alerts",
            "Alerts emitted, by detector",
            alerts.clone(),
        );
        let actions = Counter::default();
        registry.register(
            "lineage_actions",
            "Revocation requests emitted",
            actions.clone(),
        );
        let latency = Histogram::new(LATENCY_BUCKETS);
        registry.register(
            "lineage_processing_latency_seconds",
            "Ingest (record available at the source, or raw message timestamp) to graph/detect output",
            latency.clone(),
        );
        Self {
            registry,
            events,
            lag,
            lag_keys: Mutex::new(Vec::new()),
            alerts,
            actions,
            held,
            rebuild_events,
            output_ids_read,
            restored,
            latency,
            ready: Mutex::new(BTreeMap::new()),
            failed: AtomicBool::new(false),
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Metrics {
    fn labels(stage: Stage, source: &str, outcome: Outcome) -> EventLabels {
        EventLabels {
            stage,
            source: source.to_owned(),
            outcome,
        }
    }

    /// Adds `n` records of `source` with `outcome` at `stage`.
    pub fn record(&self, stage: Stage, source: &str, outcome: Outcome, n: u64) {
        if n > 0 {
            self.events
                .get_or_create(&Self::labels(stage, source, outcome))
                .inc_by(n);
        }
    }

    /// The counter's value (for tests and summaries).
    pub fn get(&self, stage: Stage, source: &str, outcome: Outcome) -> u64 {
        self.events
            .get_or_create(&Self::labels(stage, source, outcome))
            .get()
    }

    /// Replaces the lag of every partition of `stage` (partitions it no longer owns
    /// disappear).
    pub fn replace_lag(&self, stage: Stage, lags: Vec<(String, i32, i64)>) {
        let mut keys = lock(&self.lag_keys);
        keys.retain(|k| {
            if k.stage == stage {
                self.lag.remove(k);
                false
            } else {
                true
            }
        });
        for (topic, partition, lag) in lags {
            let k = LagLabels {
                stage,
                topic,
                partition,
            };
            self.lag.get_or_create(&k).set(lag);
            keys.push(k);
        }
    }

    /// Counts an alert emitted by `detector`.
    pub fn alert(&self, detector: &str) {
        self.alerts
            .get_or_create(&DetectorLabels {
                detector: detector.to_owned(),
            })
            .inc();
    }

    /// Counts an action emitted.
    pub fn action(&self) {
        self.actions.inc();
    }

    /// Records one ingest → output latency.
    pub fn observe_latency(&self, seconds: f64) {
        self.latency.observe(seconds.max(0.0));
    }

    /// Sets how many events wait for the sources' watermarks.
    pub fn set_held(&self, n: usize) {
        self.held.set(n as i64);
    }

    /// Records how the graph stage's state was built at its last start: restored from
    /// a snapshot or not, and how many events it re-read from `lineage.events`.
    pub fn set_rebuild(&self, restored: bool, events: usize) {
        self.restored.set(i64::from(restored));
        self.rebuild_events.set(events as i64);
    }

    /// Records how many output-topic messages the graph stage has read to know what
    /// it already emitted.
    pub fn set_output_ids_read(&self, messages: u64) {
        self.output_ids_read.set(messages as i64);
    }

    /// Marks a stage ready (or not).
    pub fn set_ready(&self, stage: &'static str, ready: bool) {
        lock(&self.ready).insert(stage, ready);
    }

    /// Marks the process failed (a stage stopped with an error).
    pub fn set_failed(&self) {
        self.failed.store(true, Ordering::SeqCst);
    }

    /// `/health`: healthy when no stage failed and every stage is ready.
    pub fn health(&self) -> (bool, String) {
        let ready = lock(&self.ready).clone();
        let failed = self.failed.load(Ordering::SeqCst);
        let ok = !failed && !ready.is_empty() && ready.values().all(|r| *r);
        let body = serde_json::json!({
            "status": if ok { "ok" } else if failed { "failed" } else { "starting" },
            "stages": ready,
        });
        (ok, body.to_string())
    }

    /// The exposition (OpenMetrics text, which Prometheus reads).
    pub fn render(&self) -> String {
        let mut s = String::new();
        if let Err(e) = prometheus_client::encoding::text::encode(&mut s, &self.registry) {
            tracing::warn!(error = %e, "encoding metrics");
        }
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_counters_lag_and_a_cumulative_histogram() {
        let m = Metrics::default();
        m.record(Stage::Normalize, "cloudtrail", Outcome::In, 3);
        m.record(Stage::Normalize, "cloudtrail", Outcome::In, 2);
        m.replace_lag(Stage::Graph, vec![("lineage.events".into(), 2, 7)]);
        m.alert("departed-owner");
        m.observe_latency(0.02);
        m.observe_latency(3.0);
        let text = m.render();
        assert!(
            text.contains(
                "lineage_events_total{stage=\"normalize\",source=\"cloudtrail\",outcome=\"in\"} 5"
            ),
            "{text}"
        );
        assert!(text.contains(
            "lineage_consumer_lag{stage=\"graph\",topic=\"lineage.events\",partition=\"2\"} 7"
        ));
        assert!(text.contains("lineage_alerts_total{detector=\"departed-owner\"} 1"));
        assert!(text.contains("lineage_processing_latency_seconds_bucket{le=\"0.025\"} 1"));
        assert!(text.contains("lineage_processing_latency_seconds_bucket{le=\"5.0\"} 2"));
        assert!(text.contains("lineage_processing_latency_seconds_count 2"));
        m.replace_lag(Stage::Graph, Vec::new());
        assert!(!m.render().contains("lineage_consumer_lag{"));
        assert_eq!(m.get(Stage::Normalize, "cloudtrail", Outcome::In), 5);
        m.set_ready("graph", false);
        assert!(!m.health().0);
        m.set_ready("graph", true);
        assert!(m.health().0);
    }
}
