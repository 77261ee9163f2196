//! Pipeline metrics, rendered in the Prometheus text format for `/metrics`: events
//! in/out/dead-lettered per stage and source, consumer lag per stage and partition,
//! alerts by detector, actions, and an ingest → output latency histogram.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Mutex;

/// Upper bounds (seconds) of the latency histogram buckets.
const LATENCY_BUCKETS: [f64; 14] = [
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0,
];

#[derive(Default)]
struct Histogram {
    buckets: [u64; LATENCY_BUCKETS.len()],
    count: u64,
    sum: f64,
}

/// Metrics shared by the stage loops and the HTTP endpoint.
#[derive(Default)]
pub struct Metrics {
    /// (stage, source, outcome) → count; outcome is `in`, `out`, `dead_lettered`, `duplicate`.
    events: Mutex<BTreeMap<(String, String, String), u64>>,
    /// (stage, topic, partition) → lag.
    lag: Mutex<BTreeMap<(String, String, i32), i64>>,
    alerts: Mutex<BTreeMap<String, u64>>,
    actions: Mutex<u64>,
    latency: Mutex<Histogram>,
    /// Stages that finished their start-up (identity table read, topics present).
    ready: Mutex<BTreeMap<String, bool>>,
    failed: AtomicBool,
    /// Events the graph stage holds until the sources' watermarks pass their time.
    held: AtomicU64,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Metrics").finish_non_exhaustive()
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Metrics {
    /// Adds `n` to the `outcome` counter of `stage` and `source`.
    pub fn count(&self, stage: &str, source: &str, outcome: &str, n: u64) {
        if n == 0 {
            return;
        }
        *lock(&self.events)
            .entry((stage.into(), source.into(), outcome.into()))
            .or_default() += n;
    }

    /// The counter's value (for tests and summaries).
    pub fn get(&self, stage: &str, source: &str, outcome: &str) -> u64 {
        lock(&self.events)
            .get(&(stage.into(), source.into(), outcome.into()))
            .copied()
            .unwrap_or(0)
    }

    /// Sets the consumer lag of one partition.
    pub fn set_lag(&self, stage: &str, topic: &str, partition: i32, lag: i64) {
        lock(&self.lag).insert((stage.into(), topic.into(), partition), lag);
    }

    /// Replaces the lag of every partition of `stage` (partitions it no longer owns disappear).
    pub fn replace_lag(&self, stage: &str, lags: Vec<(String, i32, i64)>) {
        let mut lag = lock(&self.lag);
        lag.retain(|(s, _, _), _| s != stage);
        for (topic, p, l) in lags {
            lag.insert((stage.into(), topic, p), l);
        }
    }

    /// Counts an alert emitted by `detector`.
    pub fn alert(&self, detector: &str) {
        *lock(&self.alerts).entry(detector.into()).or_default() += 1;
    }

    /// Counts an action emitted.
    pub fn action(&self) {
        *lock(&self.actions) += 1;
    }

    /// Records one ingest → output latency.
    pub fn observe_latency(&self, seconds: f64) {
        let mut h = lock(&self.latency);
        for (i, b) in LATENCY_BUCKETS.iter().enumerate() {
            if seconds <= *b {
                h.buckets[i] += 1;
            }
        }
        h.count += 1;
        h.sum += seconds.max(0.0);
    }

    /// Sets how many events the graph stage holds for the watermarks.
    pub fn set_held(&self, n: usize) {
        self.held.store(n as u64, Ordering::Relaxed);
    }

    /// Marks a stage ready (or not).
    pub fn set_ready(&self, stage: &str, ready: bool) {
        lock(&self.ready).insert(stage.into(), ready);
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

    /// The Prometheus text exposition.
    pub fn render(&self) -> String {
        let mut s = String::new();
        s.push_str("# HELP lineage_events_total Records per stage, source and outcome (in, out, dead_lettered, duplicate).\n# TYPE lineage_events_total counter\n");
        for ((stage, source, outcome), n) in lock(&self.events).iter() {
            let _ = writeln!(
                s,
                "lineage_events_total{{stage=\"{stage}\",source=\"{source}\",outcome=\"{outcome}\"}} {n}"
            );
        }
        s.push_str("# HELP lineage_consumer_lag Messages behind the high watermark per stage and partition.\n# TYPE lineage_consumer_lag gauge\n");
        for ((stage, topic, p), n) in lock(&self.lag).iter() {
            let _ = writeln!(
                s,
                "lineage_consumer_lag{{stage=\"{stage}\",topic=\"{topic}\",partition=\"{p}\"}} {n}"
            );
        }
        let _ = writeln!(
            s,
            "# HELP lineage_graph_held_events Events waiting for every source's event-time watermark.\n# TYPE lineage_graph_held_events gauge\nlineage_graph_held_events {}",
            self.held.load(Ordering::Relaxed)
        );
        s.push_str("# HELP lineage_alerts_total Alerts emitted by detector.\n# TYPE lineage_alerts_total counter\n");
        for (d, n) in lock(&self.alerts).iter() {
            let _ = writeln!(s, "lineage_alerts_total{{detector=\"{d}\"}} {n}");
        }
        let _ = writeln!(
            s,
            "# HELP lineage_actions_total Revocation requests emitted.\n# TYPE lineage_actions_total counter\nlineage_actions_total {}",
            *lock(&self.actions)
        );
        s.push_str("# HELP lineage_processing_latency_seconds Ingest (raw message timestamp) to graph/detect output.\n# TYPE lineage_processing_latency_seconds histogram\n");
        let h = lock(&self.latency);
        for (i, b) in LATENCY_BUCKETS.iter().enumerate() {
            let _ = writeln!(
                s,
                "lineage_processing_latency_seconds_bucket{{le=\"{b}\"}} {}",
                h.buckets[i]
            );
        }
        let _ = writeln!(
            s,
            "lineage_processing_latency_seconds_bucket{{le=\"+Inf\"}} {}\nlineage_processing_latency_seconds_sum {}\nlineage_processing_latency_seconds_count {}",
            h.count, h.sum, h.count
        );
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_counters_lag_and_a_cumulative_histogram() {
        let m = Metrics::default();
        m.count("normalize", "cloudtrail", "in", 3);
        m.count("normalize", "cloudtrail", "in", 2);
        m.set_lag("graph", "lineage.events", 2, 7);
        m.alert("departed-owner");
        m.observe_latency(0.02);
        m.observe_latency(3.0);
        let text = m.render();
        assert!(text.contains(
            "lineage_events_total{stage=\"normalize\",source=\"cloudtrail\",outcome=\"in\"} 5"
        ));
        assert!(text.contains(
            "lineage_consumer_lag{stage=\"graph\",topic=\"lineage.events\",partition=\"2\"} 7"
        ));
        assert!(text.contains("lineage_alerts_total{detector=\"departed-owner\"} 1"));
        assert!(text.contains("lineage_processing_latency_seconds_bucket{le=\"0.025\"} 1"));
        assert!(text.contains("lineage_processing_latency_seconds_bucket{le=\"5\"} 2"));
        assert!(text.contains("lineage_processing_latency_seconds_count 2"));
        m.set_ready("graph", false);
        assert!(!m.health().0);
        m.set_ready("graph", true);
        assert!(m.health().0);
    }
}
