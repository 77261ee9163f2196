//! The live pipeline over Kafka (`lineage ingest`, `lineage run` with `[bus] kind =
//! "kafka"`): how the normalize, graph/detect and sinks stages of the one stage graph
//! ([`crate::Pipeline`]) are connected through topics, how each stage commits its
//! input, and how state survives crashes and rebalances.
//!
//! # Topics and keys
//!
//! | topic | key | value |
//! |---|---|---|
//! | `lineage.raw.<source>` | the source event id (content hash when the record has none) | the raw record bytes; headers `origin`, and `broken` (reason) for unframeable bytes |
//! | `lineage.events` | the *root* credential of the use's lineage chain (the credential id when the root is unknown) | [`WireEvent`] JSON: the normalized use, its facts, the raw key |
//! | `lineage.identity` (compacted) | hash of the fact | a `LineageFact` |
//! | `lineage.alerts` | alert dedup key | `Alert` JSON, header `alert-id` |
//! | `lineage.actions` | idempotency key | `Action` JSON |
//! | `lineage.dlq` | the raw record's key | `DeadLetter` JSON (reason + original bytes) |
//!
//! # Stages
//!
//! - **normalize** (group `<group_id>.normalize`, input: the raw topics). Parses each
//!   record with its source's parser; a record that does not parse goes to the DLQ.
//!   Facts go to `lineage.identity` (flushed *before* the events that carry them, so a
//!   graph instance that sees an event can already read its facts). Each use is keyed
//!   by its root credential, looked up in a lineage graph this stage keeps from the
//!   inventory, its own facts and the identity table. Vault/OpenBao log every call
//!   twice (request, response; same request id): a request is held until its
//!   response arrives and then dropped (the response repeats it), as replay's join
//!   does; a request whose response never comes is emitted alone after
//!   [`VAULT_REQUEST_HOLD`] further Vault records or when the input goes idle. The
//!   committed offset never passes a held request, so a crash cannot lose it.
//!   Raw topics have one partition by default: a source's records must be
//!   normalized in ingest order (an `AssumeRole` before the session's first use).
//! - **graph** + **detect** (group `<group_id>.graph`, input: `lineage.events`). One
//!   loop, because attribution and detection share the graph ([`AttributeStage`]).
//!   Keying events by root credential puts every event of a lineage chain on one
//!   partition, so per-credential detector state (baselines, dedup windows) is
//!   complete in whichever instance owns the partition. Facts learned on *other*
//!   partitions (an Entra departure that concerns an AWS key's owner, issuance
//!   edges) come from the identity table: every instance reads `lineage.identity` in
//!   full before it processes anything, then catches up to its high watermark before
//!   each batch, and applies a fact just before the first event at or after the
//!   fact's time (event-time order, as replay does). Events wait for the facts of
//!   every source (below, *Event-time order across sources*).
//!   *State after a crash or rebalance*: detector state is in memory, so when an
//!   instance gets its partitions (start, restart, rebalance) it first replays their
//!   history from offset 0 up to the first offset it is handed (the committed one),
//!   with outputs suppressed, all assigned partitions merged in event-time order as
//!   the gate released them, and so rebuilds the state it had. (Merged, not one
//!   partition after another: identity facts are applied by event time, so a later
//!   partition's earlier events would otherwise see facts from after their time.)
//!   Bounded by the topic's retention; a detector-state snapshot per partition would
//!   bound it further — not done yet. The graph itself forgets credentials idle
//!   for `[graph] retain_days` of event time (declared ones and the ancestors of
//!   kept ones stay: [`lineage_graph::LineageGraph::evict_inactive`]). On any revocation the whole state is dropped
//!   and rebuilt the same way, because it cannot be split by partition.
//! - **sinks** (group `<group_id>.sinks`, input: alerts, actions and the DLQ). Alerts
//!   go through [`crate::outputs::AlertOutput`] (`alerts.jsonl`, `alerts.ocsf.jsonl`
//!   and every `[alerts]` sink, each id once), actions through
//!   [`crate::outputs::ActionOutput`] with the responder of `[response]` (policy,
//!   dry-run default, approval queue, write-ahead ledger: the same gate as every
//!   other mode), dead letters to `dead_letters.jsonl`. An alert no sink could
//!   deliver or spool stops the stage before its offset is committed.
//!
//! # Event-time order across sources (watermarks)
//!
//! Raw topics are consumed independently (and, scaled out, by different processes),
//! so without care an Entra departure could reach the identity table after the
//! CloudTrail uses that follow it in event time, and the departed-owner detector
//! would miss them. Replay avoids this with its event-time merge; the live pipeline
//! uses per-source watermarks ([`watermark`]):
//!
//! - normalize publishes, for every raw partition it owns, a watermark record on
//!   `lineage.identity` (key `watermark:<topic>:<partition>`, header
//!   `lineage-watermark`): the highest event time it has normalized there (lowered
//!   below a held Vault request), the next offset, and whether it is caught up (at
//!   most a batch behind the partition's high watermark: a source streaming steadily
//!   has no backlog even though records keep arriving). It is sent *after* the facts of those records
//!   are acknowledged, and again whenever it changes (also when idle).
//! - the graph stage keeps every event in an event-time-ordered buffer and releases
//!   it when every raw partition's watermark has reached the event's time, except:
//!   a partition normalize is behind on (a backlog) holds it at most `[run]
//!   max_hold_ms` (30 s); a partition that is caught up (or never reported) but
//!   behind in event time — a quiet source, or one that delivers minutes late as
//!   CloudTrail does — holds only a use of a credential the graph does not know
//!   yet, until no raw partition has progressed for `[run] source_idle_ms` or the
//!   use has waited `[run] quiet_source_wait_ms` (500 ms). A use of a known
//!   credential never waits for a quiet source, and one waiting does not hold back
//!   the uses after it ([`watermark::Gate::releases`]). Watermarks take effect one
//!   identity catch-up after they are read, so the facts they cover (possibly on
//!   other identity partitions) are surely read first.
//! - the graph commits, per partition, the lowest offset it still holds, so a crash
//!   re-delivers held events; a state rebuild replays a partition's history in
//!   event-time order. The stage snapshots its state every 30 s and at shutdown
//!   (`<state_dir>/graph-snapshot/`: the stage state, the offsets it covers, the
//!   event ids it saw last); a fresh state given the same partitions restores it and
//!   rebuilds only from those offsets, so a restart does not re-read history. Not
//!   bounded yet: the alert and action ids read from their topics at start, to
//!   emit nothing twice.
//!
//! So while a backlog is read, the facts of every source up to an event's time are
//! applied before the event, as replay's merge does; once caught up, the stage
//! processes what it has (as Kafka Streams does with `max.task.idle.ms` = 0), and
//! what a quiet source delivers later is a late fact:
//!
//! *Late facts.* A fact older than events already processed is applied as soon as
//! it is read, not at the next event, and re-evaluates the recent uses it concerns
//! (kept by [`crate::AttributeStage`] in every live driver, within 24 h of event
//! time): a departure, the owner's last 64 uses at or after it with the
//! departed-owner detector; an issuance or owner assignment, the weakly attributed
//! uses of the credential (the last 8 per credential), re-attributed, written as
//! correction rows (`events.revision` ≥ 1) and run through the detectors that judge
//! attribution. What that raises goes out then, its evidence saying `late_fact`
//! and how late (tested in `pipeline/tests/late_facts.rs`,
//! `tests/kafka_pipeline.rs`).
//!
//! Two details keep a restarted or idle pipeline from holding events for ever: a
//! normalize consumer that has consumed nothing since its partitions were assigned
//! (a restart that finds them fully consumed) has no position, so its watermark
//! uses the group's committed offset to tell whether it is caught up; and reading
//! the identity table delivers every message the consumer fetched, not only those
//! below the high watermark read at the start (see *Tansu notes*: its watermark
//! lags the last batch, whose watermark records would otherwise never be read).
//!
//! # Lineage tables
//!
//! Unless `[run] no_tables`, `lineage run` writes `<out_dir>/tables` (the layout of
//! `lineage replay`, read by `lineage sql --tables`): the graph stage writes `events`
//! as it processes them and the snapshot tables `credentials`, `identities`, `edges`
//! from its graph; the sinks stage rewrites `alerts`, `actions`, `dead_letters` from
//! its de-duplicated files. Files are closed every 15 s and at SIGTERM (details and
//! crash behaviour in [`tables`]). Each process writes its own out dir: give
//! scaled-out processes distinct `out_dir`s (their tables together are the whole).
//!
//! *Known difference from replay*: the departed-owner detector's
//! `credentials_of_owner` evidence lists the owner's credentials it has seen on
//! every root so far, so on the Kafka bus it depends on how partitions interleave
//! (and, with several instances, covers only the instance's own partitions). Every
//! other alert field at open time equals replay's (tested).
//!
//! # Delivery
//!
//! Every stage commits its input offsets only after the outputs of those messages
//! are acknowledged by the broker (producer flush with per-message delivery
//! reports) or written by the sink. A crash therefore re-delivers; duplicates are
//! removed downstream: the graph stage drops an event whose id (source, event id,
//! half) it has seen, and never emits an alert id or action idempotency key that is
//! already on `lineage.alerts`/`lineage.actions` (it reads both in full at start);
//! the sinks stage drops alert ids / action keys already in its files. So alerts and
//! actions appear once despite at-least-once delivery. Transactions (exactly-once)
//! are not used: tansu, the broker the tests run on, does not implement them.
//!
//! Producer errors and broker loss are retried by librdkafka until
//! `message.timeout.ms`; a batch whose outputs still fail is not committed and the
//! stage stops with an error (exit 1, no panic); the next start resumes from the last
//! commit. SIGTERM/SIGINT finish the in-flight batch, flush, commit and exit 0.
//!
//! # Tansu (the test broker) notes
//!
//! Tansu 0.6 reports a partition's high watermark as the base offset of its last
//! record batch (Kafka: the offset after the last record). Nothing here waits for a
//! consumer position to reach the watermark exactly; readers that catch up deliver
//! what they fetched beyond it, and the lag gauge reads zero when caught up.
//!
//! The tests run tansu 0.6.0 with four fixes (`scripts/services/tansu-0.6.0-fixes.patch`,
//! applied by `scripts/services/tansu.sh install`): its in-memory engine answered a
//! fetch from an offset inside a record batch with the *next* batch, so a consumer
//! resuming from a committed offset that was not a batch boundary lost the rest of
//! that batch (found by the crash test: 100 GitHub records never normalized); its
//! group coordinator did not count a JoinGroup as contact (below), and never expired a
//! dead static member while only static members asked (a process restarted under
//! other member names, its config file moved, waited for ever); and its in-memory
//! engine ignored `retention.ms` (set through `[bus.topic_config]`), so it held every
//! record ever sent. All four are broker bugs; nothing in the pipeline works around
//! them.
//!
//! Tansu 0.6 does not auto-create topics (`lineage run`/`ingest` create them through
//! the admin API, identity with `cleanup.policy=compact`); its consumer groups,
//! idempotent producer and offset commits work with librdkafka.
//!
//! *Restarts and static membership.* Tansu's group coordinator
//! (`tansu-broker-0.6.0/src/coordinator/group/administrator.rs`) expires a member
//! whose last heartbeat is older than the group's `session_timeout_ms` only lazily,
//! inside a JoinGroup or Heartbeat request of a *dynamic* member
//! (`missed_heartbeat`, called when `group_instance_id` is `None`); it keeps the
//! session timeout of the member that formed the group, ignores
//! `rebalance_timeout_ms`, and a new member joining a formed group puts it back to
//! "forming" with the old (possibly dead) leader still named leader. After a SIGKILL
//! the restarted process therefore joined as a follower of the dead leader and was
//! not given partitions (observed: the final process of the crash test got none).
//! What tansu does implement is static membership: a JoinGroup with a
//! `group.instance.id` and no member id takes over the existing member with that
//! instance id (same member id, same generation; a leader gets the member list and
//! assigns), with a 3 s pause (`PAUSE_MS`). (Unpatched, the taken-over member kept
//! its previous incarnation's last contact, so its own first heartbeat expired it:
//! a rebalance after every restart, and at times a group that never assigned again —
//! the patched broker refreshes the contact on join.) So every stage consumer joins with
//! `group.instance.id = <instance_id>.<stage>` (`[bus] instance_id`; by default the
//! host name plus a hash of the config file's path, stable across restarts and
//! different for two processes with different config files). This is also right
//! for real Kafka (KIP-345): a restarted process gets its partitions back at once,
//! without a rebalance, and a process that stays away is expired after
//! `session.timeout.ms`. Two processes must not share an instance id (Kafka fences
//! the older one). `instance_id = ""` switches back to dynamic membership.

mod client;
mod raw;
mod stages;
pub mod tables;
pub mod watermark;

use lineage_core::{CredentialUse, LineageFact};
use serde::{Deserialize, Serialize};
use smol_str::SmolStr;

pub use client::{ensure_topics, BusConfig, BusKind, PartitionCounts, TopicNames};
pub use raw::{ingest_to_kafka, IngestConfig, IngestReport, RawProducer};
pub use stages::{run_kafka, LiveConfig, StageName};

/// The Kafka runtime reports the pipeline's errors.
pub type LiveError = crate::PipelineError;

/// Vault records a held request waits for its response before it is emitted alone.
pub const VAULT_REQUEST_HOLD: u64 = 5_000;

/// Which half of a call logged twice (Vault/OpenBao) a record is.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum WireHalf {
    /// The request entry of the call with this id.
    Request(SmolStr),
    /// The response entry.
    Response(SmolStr),
}

/// A normalized record on `lineage.events`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct WireEvent {
    /// The raw record's key (source event id): what accounting by event id uses.
    pub raw_key: String,
    /// When the raw record was produced (ms since the epoch), for latency.
    pub ingested_ms: i64,
    /// Which half, for sources that log a call twice.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub half: Option<WireHalf>,
    /// The use.
    pub use_: CredentialUse,
    /// The lineage facts the record implies.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub facts: Vec<LineageFact>,
    /// Sigma rules (indices in the loaded rule set) that matched the raw record;
    /// every process of a deployment loads the same `sigma_rules` directory.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub rule_hits: Vec<u32>,
}

impl WireEvent {
    /// The id duplicates are recognised by: source, event id and half.
    pub fn dedup_id(&self) -> String {
        let half = match &self.half {
            None => "",
            Some(WireHalf::Request(_)) => ":req",
            Some(WireHalf::Response(_)) => ":resp",
        };
        format!("{}:{}{half}", self.use_.source, self.use_.event_id)
    }
}
