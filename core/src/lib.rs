//! `lineage-core` owns the vocabulary every other crate speaks: the event model
//! ([`CredentialUse`], [`LineageFact`], [`AttributedEvent`], [`Alert`], [`Action`]),
//! the typed identifiers they carry, the inventory file (humans, agents, bindings,
//! declared scopes), dead letters, secret hashing and the embedded in-process bus.
//!
//! It must not know about any log format, graph algorithm or output target: parsers
//! live in `lineage-ingest`, attribution in `lineage-graph`, detectors in
//! `lineage-detect` and writers in `lineage-sinks`. Everything here is plain data
//! with serde round-trips, so any stage can hand it to any other over any bus.
#![warn(missing_docs, unreachable_pub)]

pub mod alert;
pub mod bus;
pub mod dead_letter;
pub mod error;
pub mod event;
pub mod ids;
pub mod inventory;
pub mod secret;
pub mod summary;

pub use alert::{
    Action, ActionKind, ActionStatus, Alert, BlastRadius, Evidence, LineageStep, RecordIntegrity,
    Severity,
};
pub use dead_letter::DeadLetter;
pub use error::CoreError;
pub use event::{
    AttributedEvent, Attribution, AttributionMethod, ClientHints, CredentialKind, CredentialRef,
    CredentialUse, FactKind, IssuanceMethod, LineageFact, Operation, Outcome, Principal,
    PrincipalKind, Provenance, SessionContext, Source,
};
pub use ids::{AgentId, CredentialId, HumanId};
pub use inventory::Inventory;
pub use summary::RunSummary;
