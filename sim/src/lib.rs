//! `lineage-sim` writes a simulated enterprise: an inventory of humans and agents,
//! real-format CloudTrail delivery files (`AWSLogs/<account>/CloudTrail/<region>/
//! YYYY/MM/DD/*.json.gz`) of their activity, and the ground truth (who every event
//! belongs to, which alerts must fire). The same seed writes the same bytes.
//!
//! Agents behave as they do in real estates: AI coding agents and MCP servers with
//! their own IAM user keys that assume roles (sometimes chained), CI runners that
//! federate through GitHub's OIDC provider, services with long-lived keys, humans
//! with their own keys and SSO sessions, and the provider's own service events.
//! Seeded attacks (out-of-scope use by a prompt-injected agent) are recorded in the
//! ground truth with the event ids that show them. The simulator must not depend on
//! any pipeline crate but `lineage-core`: it is the independent witness.
#![warn(missing_docs, unreachable_pub)]

mod actors;
mod cloudtrail;
mod noise;
mod score;
mod sources;
mod truth;
mod write;

pub use score::{score, DetectorScore, Score};
pub use truth::{ExpectedAlert, ExpectedAttribution, GroundTruth};
pub use write::{simulate, SimConfig, SimReport, MARKER};

/// What can go wrong while simulating.
#[derive(Debug, thiserror::Error)]
pub enum SimError {
    /// Writing an output file failed.
    #[error("writing {0}: {1}")]
    Io(String, std::io::Error),
    /// The configuration cannot produce an enterprise.
    #[error("bad simulation settings: {0}")]
    Config(String),
}
