//! `lineage-graph` owns the identity-lineage graph: credentials, the credentials
//! they were issued from, the agents they are bound to and the humans who own those
//! agents. It is built from the inventory and from [`LineageFact`]s applied in
//! event-time order, so attributing an event against the graph as it stands when
//! the event is processed is attributing it as of the event's time.
//!
//! [`LineageGraph::attribute`] walks used credential → parent → … → root → agent →
//! human and says how it got there; "unattributed" is an explicit answer with a
//! reason, never a panic. This crate must not parse logs or raise alerts.
#![warn(missing_docs, unreachable_pub)]

mod attribute;
mod model;

pub use attribute::lineage_path;
pub use model::{
    CredentialMeta, Edge, LineageGraph, Node, MAX_REACH_RESOURCES, MAX_REACH_SERVICES,
};
