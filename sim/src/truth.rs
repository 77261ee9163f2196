//! The ground truth written beside the simulated logs.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// Who an event belongs to.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExpectedAttribution {
    /// The agent, `None` for a human acting directly.
    pub agent: Option<String>,
    /// The accountable human.
    pub owner: Option<String>,
}

/// An alert that must fire.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExpectedAlert {
    /// Detector name.
    pub detector: String,
    /// Agent that misbehaved (`None` when a human acted directly, e.g. an admin change).
    pub agent: Option<String>,
    /// The human behind it.
    pub owner: String,
    /// The action involved.
    pub action: String,
    /// What happened, in words.
    pub scenario: String,
    /// Event ids that show it.
    pub event_ids: Vec<String>,
}

/// Everything the simulator knows to be true.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct GroundTruth {
    /// Seed used.
    pub seed: u64,
    /// Attribution of every event that carries a credential or names a person,
    /// by event id. Provider-service events are absent.
    pub attributions: BTreeMap<String, ExpectedAttribution>,
    /// Provider-service events (no credential, nobody to attribute).
    pub service_events: u64,
    /// Alerts that must fire; no other alert should.
    pub alerts: Vec<ExpectedAlert>,
}
