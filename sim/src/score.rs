//! Scoring a pipeline run against the ground truth.

use std::collections::HashSet;

use lineage_core::{Alert, AttributedEvent};
use serde::{Deserialize, Serialize};

use crate::GroundTruth;

/// Per-detector precision and recall.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct DetectorScore {
    /// Detector name.
    pub detector: String,
    /// Expected alerts.
    pub expected: usize,
    /// Expected alerts that some alert matched.
    pub found: usize,
    /// Alerts raised.
    pub raised: usize,
    /// Alerts that match no expected alert.
    pub false_positives: usize,
    /// found / expected (1 when nothing was expected).
    pub recall: f64,
    /// (raised - false_positives) / raised (1 when nothing was raised).
    pub precision: f64,
}

/// How well a run matched the ground truth.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Score {
    /// Events with an expected attribution.
    pub expected_events: usize,
    /// Of those, attributed to exactly the expected agent and owner.
    pub correct: usize,
    /// Of those, not seen in the output at all.
    pub missing: usize,
    /// correct / expected_events, in percent.
    pub attribution_accuracy_pct: f64,
    /// A few wrong attributions, for debugging: (event id, expected, got).
    pub wrong_examples: Vec<(String, String, String)>,
    /// Per detector.
    pub detectors: Vec<DetectorScore>,
}

impl Score {
    /// True when attribution ≥ `min_accuracy_pct`, every expected alert fired and no other alert did.
    pub fn meets(&self, min_accuracy_pct: f64) -> bool {
        self.attribution_accuracy_pct >= min_accuracy_pct
            && self
                .detectors
                .iter()
                .all(|d| d.found == d.expected && d.false_positives == 0)
    }
}

impl Score {
    /// Alerts that match no expected alert, over all detectors.
    pub fn benign_alerts(&self) -> usize {
        self.detectors.iter().map(|d| d.false_positives).sum()
    }

    /// True when attribution ≥ `min_accuracy_pct`, every expected alert fired, and at
    /// most `max_benign` alerts matched nothing expected (the bar under benign noise).
    pub fn meets_under_noise(&self, min_accuracy_pct: f64, max_benign: usize) -> bool {
        self.attribution_accuracy_pct >= min_accuracy_pct
            && self.detectors.iter().all(|d| d.found == d.expected)
            && self.benign_alerts() <= max_benign
    }
}

fn show(agent: Option<&str>, owner: Option<&str>) -> String {
    format!("{}/{}", agent.unwrap_or("-"), owner.unwrap_or("-"))
}

/// Scores attributed events and alerts against the truth.
pub fn score<'a>(
    truth: &GroundTruth,
    events: impl IntoIterator<Item = &'a AttributedEvent>,
    alerts: &[Alert],
) -> Score {
    let mut s = Score {
        expected_events: truth.attributions.len(),
        ..Score::default()
    };
    let mut seen = HashSet::new();
    for e in events {
        let Some(expected) = truth.attributions.get(e.use_.event_id.as_str()) else {
            continue;
        };
        seen.insert(e.use_.event_id.as_str());
        let agent = e.attribution.agent.as_ref().map(|a| a.as_str());
        let owner = e.attribution.owner.as_ref().map(|h| h.as_str());
        if agent == expected.agent.as_deref() && owner == expected.owner.as_deref() {
            s.correct += 1;
        } else if s.wrong_examples.len() < 10 {
            s.wrong_examples.push((
                e.use_.event_id.to_string(),
                show(expected.agent.as_deref(), expected.owner.as_deref()),
                format!(
                    "{} ({})",
                    show(agent, owner),
                    e.attribution
                        .unattributed_reason
                        .as_deref()
                        .unwrap_or("attributed")
                ),
            ));
        }
    }
    s.missing = truth.attributions.len() - seen.len();
    s.attribution_accuracy_pct = if s.expected_events == 0 {
        100.0
    } else {
        100.0 * s.correct as f64 / s.expected_events as f64
    };
    let mut detectors: Vec<String> = truth.alerts.iter().map(|a| a.detector.clone()).collect();
    detectors.extend(alerts.iter().map(|a| a.detector.to_string()));
    detectors.sort();
    detectors.dedup();
    for d in detectors {
        let expected: Vec<_> = truth.alerts.iter().filter(|a| a.detector == d).collect();
        let raised: Vec<_> = alerts.iter().filter(|a| a.detector == d).collect();
        let matches = |x: &crate::ExpectedAlert, a: &Alert| {
            a.agent.as_ref().map(|g| g.as_str()) == x.agent.as_deref()
                && a.event_ids
                    .iter()
                    .any(|id| x.event_ids.iter().any(|e| e == id.as_str()))
        };
        let found = expected
            .iter()
            .filter(|x| raised.iter().any(|a| matches(x, a)))
            .count();
        let false_positives = raised
            .iter()
            .filter(|a| !expected.iter().any(|x| matches(x, a)))
            .count();
        s.detectors.push(DetectorScore {
            recall: if expected.is_empty() {
                1.0
            } else {
                found as f64 / expected.len() as f64
            },
            precision: if raised.is_empty() {
                1.0
            } else {
                (raised.len() - false_positives) as f64 / raised.len() as f64
            },
            detector: d,
            expected: expected.len(),
            found,
            raised: raised.len(),
            false_positives,
        });
    }
    s
}
