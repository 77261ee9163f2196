//! The attribute → detect stage, shared by replay and the live pipeline.

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};

use lineage_core::event::{AttributionMethod, PrincipalKind};
use lineage_core::event::{CredentialKind, CredentialRef};
use lineage_core::summary::Unattributed;
use lineage_core::{AgentId, AttributedEvent, CredentialId, HumanId, Inventory};
use lineage_detect::sigma::SigmaRules;
use lineage_detect::{build_detectors, AlertBook, Detector, DetectorsConfig, Recorded};
use lineage_graph::LineageGraph;
use lineage_ingest::Normalized;

/// Attaches the root credential's blast radius to a newly opened alert.
fn fill_blast_radius(
    book: &mut AlertBook,
    graph: &LineageGraph,
    recorded: Recorded,
    event: &AttributedEvent,
) {
    if let (Recorded::New(i), Some(root)) = (recorded, &event.attribution.root_credential) {
        book.set_blast_radius(i, graph.blast_radius(root));
    }
}

const METHODS: [AttributionMethod; 6] = [
    AttributionMethod::Declared,
    AttributionMethod::IssuanceChain,
    AttributionMethod::SessionChain,
    AttributionMethod::PrincipalAlias,
    AttributionMethod::Fingerprint,
    AttributionMethod::None,
];

fn method_slot(m: AttributionMethod) -> usize {
    METHODS
        .iter()
        .position(|x| *x == m)
        .unwrap_or(METHODS.len() - 1)
}

fn method_name(m: AttributionMethod) -> String {
    serde_json::to_value(m)
        .ok()
        .and_then(|v| v.as_str().map(str::to_owned))
        .unwrap_or_default()
}

/// Says on each revocation request of `finding` whether the CloudTrail record behind
/// it came from a file in `validated` (canonical paths of files that validated
/// against the trail's signed digests).
fn mark_record_integrity(
    validated: Option<&HashSet<std::path::PathBuf>>,
    finding: &mut lineage_detect::Finding,
    event: &AttributedEvent,
) {
    if finding.actions.is_empty() || event.use_.source != lineage_core::Source::CloudTrail {
        return;
    }
    let validated = match (validated, &event.use_.provenance) {
        (Some(files), lineage_core::Provenance::File { path, .. }) => {
            std::fs::canonicalize(path.as_str()).is_ok_and(|p| files.contains(&p))
        }
        _ => false,
    };
    let integrity = if validated {
        lineage_core::RecordIntegrity::DigestValidated
    } else {
        lineage_core::RecordIntegrity::NotValidated
    };
    for action in &mut finding.actions {
        if let Some(e) = action.evidence.as_mut() {
            e.record_integrity = Some(integrity);
        }
    }
}

/// Applies lineage facts, attributes each use, runs the detectors and keeps the
/// alert book and attribution statistics.
pub struct AttributeStage {
    graph: LineageGraph,
    detectors: Vec<Box<dyn Detector>>,
    sigma: Option<std::sync::Arc<SigmaRules>>,
    book: AlertBook,
    /// Facts applied.
    pub facts: u64,
    /// Provider-service uses (excluded from the attribution rate).
    pub service_events: u64,
    /// Attributed uses.
    pub attributed: u64,
    /// Unattributed uses.
    pub unattributed: u64,
    method_counts: [u64; METHODS.len()],
    unattributed_subjects: HashMap<String, (String, u64)>,
    /// Credentials seen in use per owner: roots and non-session credentials, with the
    /// agent that used them and the last use (for `lineage revoke --owner`).
    owned: HashMap<HumanId, BTreeMap<CredentialId, OwnedCredential>>,
    /// CloudTrail files that validated against signed digests (canonical paths);
    /// every other CloudTrail record's revocation requests say `not-validated`.
    validated_files: Option<std::sync::Arc<HashSet<std::path::PathBuf>>>,
    /// The latest event time processed: a fact older than this is late.
    latest: Option<chrono::DateTime<chrono::Utc>>,
    /// Each owner's most recent uses, for re-evaluating them when a departure
    /// arrives after them (see [`AttributeStage::apply_identity_fact`]); kept only
    /// by the live drivers (replay merges its inputs in event-time order).
    recent: HashMap<HumanId, VecDeque<RecentUse>>,
    re_evaluate_late: bool,
    /// Uses processed with a weak attribution or none (see [`is_weak`]), by the
    /// credential presented, for late lineage facts that may complete it; kept only
    /// by the live drivers.
    weak: HashMap<CredentialId, VecDeque<WeakUse>>,
    /// Uses in `weak`.
    weak_len: usize,
    /// Attribution corrections not yet taken by the driver (see
    /// [`AttributeStage::take_corrections`]).
    corrections: Vec<Correction>,
    /// Forget credentials idle this long (event time); see [`AttributeStage::set_retention`].
    retain: Option<chrono::Duration>,
    /// Uses processed since the graph was last pruned.
    since_eviction: u64,
    /// Uses processed since closed alerts were last retired.
    since_retire: u64,
    /// Weakly attributed uses not kept for late facts because [`WEAK_USES_MAX`] were.
    pub late_window_full: u64,
}

/// Uses between two retention passes over the graph (each pass looks at every
/// credential once).
const EVICT_EVERY: u64 = 50_000;

/// Unattributed subjects counted before the least used half is dropped.
const MAX_UNATTRIBUTED_SUBJECTS: usize = 20_000;

/// Uses kept per owner for late departures (the most recent, within [`LATE_LOOK_BACK`]).
const RECENT_USES_PER_OWNER: usize = 64;

/// How far back in event time a late departure re-evaluates uses.
pub const LATE_LOOK_BACK: chrono::Duration = chrono::Duration::hours(24);

/// Weakly attributed uses kept per credential for late facts (the most recent, within
/// [`LATE_LOOK_BACK`]).
const WEAK_USES_PER_CREDENTIAL: usize = 8;

/// Weakly attributed uses kept in all: past this, new ones are not kept (a late fact
/// then cannot correct them; `late_window_full` counts them).
const WEAK_USES_MAX: usize = 50_000;

/// A use processed with a weak attribution, and how often it was corrected.
struct WeakUse {
    event: AttributedEvent,
    revision: u32,
}

/// An event's attribution as a late lineage fact corrected it: the event with its new
/// attribution, for the `events` table's next revision of the event.
#[derive(Clone, Debug)]
pub struct Correction {
    /// The event, with the corrected attribution.
    pub event: AttributedEvent,
    /// 1 for the first correction of this event, 2 for the next, …
    pub revision: u32,
}

/// An attribution a late fact could still complete: none, a guess (principal alias,
/// fingerprint), or an agent without a known owner.
fn is_weak(a: &lineage_core::Attribution) -> bool {
    !matches!(
        a.method,
        AttributionMethod::Declared
            | AttributionMethod::IssuanceChain
            | AttributionMethod::SessionChain
    ) || a.owner.is_none()
}

/// Detectors whose verdict depends on the attribution alone (not on a learned
/// baseline), re-run on a corrected use. The anomaly detector learns each use once,
/// as first attributed.
const ATTRIBUTION_DETECTORS: [&str; 3] =
    ["departed-owner", "out-of-scope", "long-lived-credential"];

/// The `late_fact` evidence of a finding a late fact raised.
fn late_fact_evidence(
    fact: &lineage_core::LineageFact,
    latest: chrono::DateTime<chrono::Utc>,
) -> serde_json::Value {
    let kind = match &fact.kind {
        lineage_core::FactKind::CredentialIssued { .. } => "credential-issued",
        lineage_core::FactKind::CredentialStatusChanged { .. } => "credential-status-changed",
        lineage_core::FactKind::OwnerAssigned { .. } => "owner-assigned",
        lineage_core::FactKind::OwnerDeparted { .. } => "owner-departed",
        lineage_core::FactKind::OwnerReinstated { .. } => "owner-reinstated",
    };
    serde_json::json!({
        "fact": kind,
        "fact_time": fact.time,
        "learned_after_event_time": latest,
        "late_secs": (latest - fact.time).num_seconds(),
    })
}

/// A processed use of an owner's credential, and whether the owner was already known
/// to have left when it was processed (then the departed-owner detector saw it).
struct RecentUse {
    event: AttributedEvent,
    departure_known: bool,
}

/// A credential an owner (or one of their agents) was seen using.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct OwnedCredential {
    /// The credential.
    pub credential: CredentialRef,
    /// The agent that used it last, when one did.
    pub agent: Option<AgentId>,
    /// Last use (event time).
    pub last_used: chrono::DateTime<chrono::Utc>,
    /// Uses seen.
    pub uses: u64,
}

/// Everything an [`AttributeStage`] has learned, for replay checkpoints: restoring
/// it into a stage built from the same inventory and settings continues the run
/// exactly where the checkpoint left it.
#[derive(serde::Serialize, serde::Deserialize)]
pub struct StageState {
    graph: LineageGraph,
    detectors: serde_json::Map<String, serde_json::Value>,
    book: AlertBook,
    facts: u64,
    service_events: u64,
    attributed: u64,
    unattributed: u64,
    method_counts: [u64; METHODS.len()],
    unattributed_subjects: HashMap<String, (String, u64)>,
    owned: HashMap<HumanId, BTreeMap<CredentialId, OwnedCredential>>,
}

impl std::fmt::Debug for AttributeStage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AttributeStage")
            .field("facts", &self.facts)
            .field("attributed", &self.attributed)
            .field("unattributed", &self.unattributed)
            .finish()
    }
}

impl AttributeStage {
    /// A stage over a graph seeded from `inventory`; fails when a detector's settings
    /// name a file that cannot be loaded.
    pub fn new(
        inventory: &Inventory,
        detectors: &DetectorsConfig,
        sigma: Option<std::sync::Arc<SigmaRules>>,
    ) -> Result<Self, lineage_detect::DetectError> {
        Ok(Self {
            sigma,
            graph: LineageGraph::from_inventory(inventory),
            detectors: build_detectors(detectors)?,
            book: AlertBook::with_suppression(chrono::Duration::seconds(
                detectors.suppression_secs.min(i64::MAX as u64) as i64,
            ))
            .with_budget(detectors.alert_budget),
            facts: 0,
            service_events: 0,
            attributed: 0,
            unattributed: 0,
            method_counts: [0; METHODS.len()],
            unattributed_subjects: HashMap::new(),
            owned: HashMap::new(),
            validated_files: None,
            latest: None,
            recent: HashMap::new(),
            re_evaluate_late: false,
            weak: HashMap::new(),
            weak_len: 0,
            corrections: Vec::new(),
            retain: None,
            since_eviction: 0,
            since_retire: 0,
            late_window_full: 0,
        })
    }

    /// Forgets, every [`EVICT_EVERY`] uses, the credentials nothing happened to for
    /// `retain` of event time before the latest use
    /// ([`LineageGraph::evict_inactive`]: declared ones and the ancestors of kept
    /// ones stay), so a long-running live pipeline's graph does not grow with every
    /// session key it ever saw.
    pub fn set_retention(&mut self, retain: chrono::Duration) {
        self.retain = Some(retain);
    }

    fn prune(&mut self) {
        self.since_retire += 1;
        self.since_eviction += 1;
        if self.since_eviction < EVICT_EVERY {
            return;
        }
        self.since_eviction = 0;
        if let Some(latest) = self.latest {
            let horizon = latest - LATE_LOOK_BACK;
            self.weak.retain(|_, uses| {
                uses.retain(|u| u.event.use_.time >= horizon);
                !uses.is_empty()
            });
            self.weak_len = self.weak.values().map(VecDeque::len).sum();
        }
        if let (Some(retain), Some(latest)) = (self.retain, self.latest) {
            let evicted = self.graph.evict_inactive(latest - retain);
            if evicted > 0 {
                let graph = &self.graph;
                let known = |id: &str| graph.credential(&CredentialId::new(id)).is_some();
                for d in &mut self.detectors {
                    d.forget_credentials(&known);
                }
                tracing::debug!(
                    evicted,
                    kept = self.graph.credential_count(),
                    "forgot idle credentials"
                );
            }
        }
    }

    /// In a live run, every [`EVICT_EVERY`] uses: forgets the alerts closed for good
    /// and the revocation requests already handed out ([`AlertBook::retire_closed`]),
    /// so the book holds open alerts only. Call it once the alerts and actions so far
    /// have been taken out. Returns the alerts retired.
    pub fn retire_closed_alerts(&mut self) -> usize {
        if !self.re_evaluate_late || self.since_retire < EVICT_EVERY {
            return 0;
        }
        self.since_retire = 0;
        self.book.retire_closed()
    }

    /// Keeps recent uses so that a lineage fact arriving after them re-evaluates
    /// them (the live drivers, whose sources are not merged in event time): each
    /// owner's recent uses for a late departure (at most [`RECENT_USES_PER_OWNER`]
    /// per owner), and weakly attributed uses for a late issuance or owner fact (at
    /// most [`WEAK_USES_PER_CREDENTIAL`] per credential, [`WEAK_USES_MAX`] in all),
    /// within [`LATE_LOOK_BACK`] of event time.
    pub fn re_evaluate_late_facts(&mut self) {
        self.re_evaluate_late = true;
    }

    /// Marks the revocation requests raised by records of these CloudTrail files
    /// (canonical paths) `digest-validated`; other CloudTrail records' requests are
    /// `not-validated` either way.
    pub fn set_validated_files(&mut self, files: std::sync::Arc<HashSet<std::path::PathBuf>>) {
        self.validated_files = Some(files);
    }

    /// Applies a record's lineage facts only (a record before `--since`: it teaches
    /// the graph but is not attributed, detected or written).
    pub fn apply_facts(&mut self, record: &Normalized) {
        for fact in &record.facts {
            self.graph.apply(fact);
            self.facts += 1;
        }
    }

    /// Applies one lineage fact learned elsewhere (the live pipeline's identity table:
    /// facts from other partitions). Not counted in `facts`; detectors do not see it.
    ///
    /// A departure that arrives *late* (its time before uses already processed: the
    /// HR source or Entra delivered it after the uses, or the live pipeline stopped
    /// waiting for it) re-evaluates the owner's recent uses at or after the
    /// departure (the last [`RECENT_USES_PER_OWNER`] within [`LATE_LOOK_BACK`]) with
    /// the departed-owner detector, in event-time order, so the alert replay raises
    /// is raised now; its evidence says `late_fact` and by how much event time it
    /// came late. Returns the number of findings recorded.
    ///
    /// A late issuance (`CredentialIssued`) or owner assignment re-attributes the
    /// weakly attributed recent uses it may complete (see
    /// [`AttributeStage::re_evaluate_late_facts`]): each whose attribution changes
    /// gives a [`Correction`] (the `events` table's next revision of the event) and
    /// is run again through the detectors that judge attribution
    /// ([`ATTRIBUTION_DETECTORS`]), their findings marked `late_fact`.
    pub fn apply_identity_fact(&mut self, fact: &lineage_core::LineageFact) -> usize {
        self.graph.apply(fact);
        self.re_evaluate_if_late(fact)
    }

    /// The attribution corrections since the last call (live drivers write them as
    /// the events' next revisions).
    pub fn take_corrections(&mut self) -> Vec<Correction> {
        std::mem::take(&mut self.corrections)
    }

    /// Re-attributes the kept weak uses a late issuance or owner fact may complete.
    fn re_attribute_if_late(&mut self, fact: &lineage_core::LineageFact) -> usize {
        if !self.re_evaluate_late || self.weak.is_empty() {
            return 0;
        }
        let Some(latest) = self.latest.filter(|l| fact.time < *l) else {
            return 0;
        };
        let credentials: Vec<CredentialId> = match &fact.kind {
            lineage_core::FactKind::CredentialIssued { child, .. } => {
                if !self.weak.contains_key(&child.id) {
                    return 0;
                }
                vec![child.id.clone()]
            }
            lineage_core::FactKind::OwnerAssigned { .. } => self.weak.keys().cloned().collect(),
            _ => return 0,
        };
        let mut recorded = 0;
        let mut due: Vec<(CredentialId, usize)> = Vec::new();
        for c in &credentials {
            if let Some(uses) = self.weak.get(c) {
                for (i, u) in uses.iter().enumerate() {
                    if u.event.use_.time >= fact.time {
                        due.push((c.clone(), i));
                    }
                }
            }
        }
        due.sort_by_key(|(c, i)| self.weak[c][*i].event.use_.time);
        for (c, i) in due {
            let (old, revision) = {
                let u = &self.weak[&c][i];
                (u.event.clone(), u.revision)
            };
            let attribution = self.graph.attribute(&old.use_);
            if attribution == old.attribution {
                continue;
            }
            self.count_attribution(&old.use_, &old.attribution, -1);
            self.count_attribution(&old.use_, &attribution, 1);
            if let Some(root) = &attribution.root_credential {
                self.graph.record_reach(root, &old.use_);
            }
            let event = AttributedEvent {
                use_: old.use_,
                attribution,
            };
            self.note_owned(&event);
            self.remember_recent(&event);
            let u = &mut self.weak.get_mut(&c).expect("kept")[i];
            u.event = event.clone();
            u.revision = revision + 1;
            self.corrections.push(Correction {
                event: event.clone(),
                revision: revision + 1,
            });
            for d in self
                .detectors
                .iter_mut()
                .filter(|d| ATTRIBUTION_DETECTORS.contains(&d.name()))
            {
                for mut finding in d.observe_folding(&event, &[], &self.graph, &self.book) {
                    if let Some(e) = finding.evidence.as_object_mut() {
                        e.insert("late_fact".into(), late_fact_evidence(fact, latest));
                    }
                    mark_record_integrity(self.validated_files.as_deref(), &mut finding, &event);
                    let r = self.book.record(finding, &event);
                    fill_blast_radius(&mut self.book, &self.graph, r, &event);
                    recorded += 1;
                }
            }
        }
        // Uses the fact completed are no longer weak.
        for c in &credentials {
            if let Some(uses) = self.weak.get_mut(c) {
                let before = uses.len();
                uses.retain(|u| is_weak(&u.event.attribution));
                self.weak_len -= before - uses.len();
                if uses.is_empty() {
                    self.weak.remove(c);
                }
            }
        }
        recorded
    }

    /// Remembers a weakly attributed use for late issuance and owner facts.
    fn remember_weak(&mut self, event: &AttributedEvent) {
        if !self.re_evaluate_late || !is_weak(&event.attribution) {
            return;
        }
        let Some(c) = &event.use_.credential else {
            return;
        };
        let uses = match self.weak.get_mut(&c.id) {
            Some(uses) => uses,
            None if self.weak_len >= WEAK_USES_MAX => {
                self.late_window_full += 1;
                return;
            }
            None => self.weak.entry(c.id.clone()).or_default(),
        };
        if uses.len() >= WEAK_USES_PER_CREDENTIAL {
            uses.pop_front();
            self.weak_len -= 1;
        }
        uses.push_back(WeakUse {
            event: event.clone(),
            revision: 0,
        });
        self.weak_len += 1;
    }

    /// Adds (`sign` 1) or takes back (-1) one use's attribution in the statistics.
    fn count_attribution(
        &mut self,
        use_: &lineage_core::CredentialUse,
        attribution: &lineage_core::Attribution,
        sign: i64,
    ) {
        let add = |n: &mut u64| *n = n.saturating_add_signed(sign);
        if use_.principal.kind == PrincipalKind::Service && use_.credential.is_none() {
            add(&mut self.service_events);
        } else if attribution.is_attributed() {
            add(&mut self.attributed);
            add(&mut self.method_counts[method_slot(attribution.method)]);
        } else {
            add(&mut self.unattributed);
            let subject = attribution
                .root_credential
                .as_ref()
                .map(|c| c.to_string())
                .or_else(|| use_.principal.arn.as_ref().map(|a| a.to_string()))
                .or_else(|| use_.principal.name.as_ref().map(|a| a.to_string()))
                .unwrap_or_else(|| "-".into());
            if sign < 0 {
                if let Some(entry) = self.unattributed_subjects.get_mut(&subject) {
                    entry.1 = entry.1.saturating_sub(1);
                    if entry.1 == 0 {
                        self.unattributed_subjects.remove(&subject);
                    }
                }
                return;
            }
            let entry = self
                .unattributed_subjects
                .entry(subject)
                .or_insert_with(|| {
                    (
                        attribution.unattributed_reason.clone().unwrap_or_default(),
                        0,
                    )
                });
            entry.1 += 1;
            if self.unattributed_subjects.len() > MAX_UNATTRIBUTED_SUBJECTS {
                self.keep_top_unattributed();
            }
        }
    }

    /// Keeps the half of the unattributed subjects with the most uses: a live run
    /// sees a new unattributed session key every few seconds, and the summary only
    /// lists the top 20. (Replay's counts are exact up to the cap.)
    fn keep_top_unattributed(&mut self) {
        let mut counts: Vec<u64> = self.unattributed_subjects.values().map(|v| v.1).collect();
        let keep = MAX_UNATTRIBUTED_SUBJECTS / 2;
        counts.select_nth_unstable_by(keep, |a, b| b.cmp(a));
        let threshold = counts[keep];
        self.unattributed_subjects.retain(|_, v| v.1 > threshold);
    }

    /// Notes the credentials an owner (or their agent) used, for `revoke --owner`.
    fn note_owned(&mut self, event: &AttributedEvent) {
        let (use_, attribution) = (&event.use_, &event.attribution);
        let Some(owner) = &attribution.owner else {
            return;
        };
        let owned = self.owned.entry(owner.clone()).or_default();
        let mut note = |c: CredentialRef| {
            let entry = owned
                .entry(c.id.clone())
                .or_insert_with(|| OwnedCredential {
                    credential: c,
                    agent: None,
                    last_used: use_.time,
                    uses: 0,
                });
            entry.uses += 1;
            entry.last_used = entry.last_used.max(use_.time);
            if attribution.agent.is_some() {
                entry.agent = attribution.agent.clone();
            }
        };
        // Hourly session keys are covered by their root; keep the long-lived ones.
        if let Some(c) = use_
            .credential
            .as_ref()
            .filter(|c| c.kind != CredentialKind::AwsSessionKey)
        {
            note(c.clone());
        }
        if let Some(root) = attribution.root_credential.as_ref() {
            if use_.credential.as_ref().map(|c| &c.id) != Some(root) {
                let kind = self
                    .graph
                    .credential(root)
                    .map(|m| m.kind)
                    .unwrap_or(CredentialKind::Unknown);
                note(CredentialRef {
                    kind,
                    id: root.clone(),
                    issuer: None,
                });
            }
        }
    }

    /// See [`AttributeStage::apply_identity_fact`].
    fn re_evaluate_if_late(&mut self, fact: &lineage_core::LineageFact) -> usize {
        let lineage_core::FactKind::OwnerDeparted { .. } = &fact.kind else {
            return self.re_attribute_if_late(fact);
        };
        if !self.re_evaluate_late {
            return 0;
        }
        let Some(latest) = self.latest.filter(|l| fact.time < *l) else {
            return 0;
        };
        let mut recorded = 0;
        let owners: Vec<HumanId> = self.recent.keys().cloned().collect();
        for owner in owners {
            let Some(departed_at) = self.graph.departed_at(&owner) else {
                continue;
            };
            let Some(uses) = self.recent.get_mut(&owner) else {
                continue;
            };
            let mut due: Vec<AttributedEvent> = Vec::new();
            for u in uses.iter_mut() {
                if !u.departure_known && u.event.use_.time >= departed_at {
                    u.departure_known = true;
                    due.push(u.event.clone());
                }
            }
            due.sort_by_key(|e| e.use_.time);
            for event in &due {
                for d in self
                    .detectors
                    .iter_mut()
                    .filter(|d| d.name() == "departed-owner")
                {
                    for mut finding in d.observe_folding(event, &[], &self.graph, &self.book) {
                        if let Some(e) = finding.evidence.as_object_mut() {
                            e.insert("late_fact".into(), late_fact_evidence(fact, latest));
                        }
                        mark_record_integrity(self.validated_files.as_deref(), &mut finding, event);
                        let r = self.book.record(finding, event);
                        fill_blast_radius(&mut self.book, &self.graph, r, event);
                        recorded += 1;
                    }
                }
            }
        }
        recorded
    }

    /// Remembers a processed use of an owner's credential for late departures.
    fn remember_recent(&mut self, event: &AttributedEvent) {
        if !self.re_evaluate_late {
            return;
        }
        let Some(owner) = &event.attribution.owner else {
            return;
        };
        let departure_known = self
            .graph
            .departed_at(owner)
            .is_some_and(|d| d <= event.use_.time);
        let uses = self.recent.entry(owner.clone()).or_default();
        let horizon = event.use_.time - LATE_LOOK_BACK;
        while uses
            .front()
            .is_some_and(|u| uses.len() >= RECENT_USES_PER_OWNER || u.event.use_.time < horizon)
        {
            uses.pop_front();
        }
        uses.push_back(RecentUse {
            event: event.clone(),
            departure_known,
        });
    }

    /// Processes one normalized record: facts into the graph, then attribution and detection.
    pub fn process(&mut self, record: Normalized) -> AttributedEvent {
        let Normalized {
            use_,
            facts,
            rule_hits,
            ..
        } = record;
        for fact in &facts {
            self.graph.apply(fact);
            self.facts += 1;
            self.re_evaluate_if_late(fact);
        }
        self.graph.observe(&use_);
        let attribution = self.graph.attribute(&use_);
        self.count_attribution(&use_, &attribution, 1);
        if let Some(root) = &attribution.root_credential {
            self.graph.record_reach(root, &use_);
        }
        let event = AttributedEvent { use_, attribution };
        self.note_owned(&event);
        self.latest = self.latest.max(Some(event.use_.time));
        self.remember_recent(&event);
        self.remember_weak(&event);
        self.prune();
        for d in &mut self.detectors {
            for mut finding in d.observe_folding(&event, &facts, &self.graph, &self.book) {
                mark_record_integrity(self.validated_files.as_deref(), &mut finding, &event);
                let recorded = self.book.record(finding, &event);
                fill_blast_radius(&mut self.book, &self.graph, recorded, &event);
            }
        }
        if let Some(rules) = &self.sigma {
            for hit in rule_hits {
                if let Some(finding) = rules.finding(hit, &event) {
                    let recorded = self.book.record(finding, &event);
                    fill_blast_radius(&mut self.book, &self.graph, recorded, &event);
                }
            }
        }
        event
    }

    /// Attributed uses by method name (`declared`, `issuance-chain`, …).
    pub fn by_method(&self) -> BTreeMap<String, u64> {
        METHODS
            .iter()
            .zip(self.method_counts)
            .filter(|(_, n)| *n > 0)
            .map(|(m, n)| (method_name(*m), n))
            .collect()
    }

    /// Credentials seen in use by an owner and their agents.
    pub fn credentials_of(&self, owner: &HumanId) -> Vec<OwnedCredential> {
        self.owned
            .get(owner)
            .map(|m| m.values().cloned().collect())
            .unwrap_or_default()
    }

    /// The graph.
    pub fn graph(&self) -> &LineageGraph {
        &self.graph
    }

    /// The alerts so far.
    pub fn alerts(&self) -> &AlertBook {
        &self.book
    }

    /// Detector state snapshots by detector name (stateless detectors are absent).
    pub fn snapshot(&self) -> serde_json::Map<String, serde_json::Value> {
        self.detectors
            .iter()
            .filter_map(|d| d.snapshot().map(|s| (d.name().to_owned(), s)))
            .collect()
    }

    /// Restores detector state from [`AttributeStage::snapshot`] output.
    pub fn restore(
        &mut self,
        snapshot: &serde_json::Map<String, serde_json::Value>,
    ) -> Result<(), String> {
        for d in &mut self.detectors {
            if let Some(state) = snapshot.get(d.name()) {
                d.restore(state.clone())?;
            }
        }
        Ok(())
    }

    /// Serializes everything the stage has learned (graph, detector state, alert
    /// book, statistics) to `out`.
    pub fn write_state(&self, out: impl std::io::Write) -> serde_json::Result<()> {
        #[derive(serde::Serialize)]
        struct StateRef<'a> {
            graph: &'a LineageGraph,
            detectors: serde_json::Map<String, serde_json::Value>,
            book: &'a AlertBook,
            facts: u64,
            service_events: u64,
            attributed: u64,
            unattributed: u64,
            method_counts: [u64; METHODS.len()],
            unattributed_subjects: &'a HashMap<String, (String, u64)>,
            owned: &'a HashMap<HumanId, BTreeMap<CredentialId, OwnedCredential>>,
        }
        serde_json::to_writer(
            out,
            &StateRef {
                graph: &self.graph,
                detectors: self.snapshot(),
                book: &self.book,
                facts: self.facts,
                service_events: self.service_events,
                attributed: self.attributed,
                unattributed: self.unattributed,
                method_counts: self.method_counts,
                unattributed_subjects: &self.unattributed_subjects,
                owned: &self.owned,
            },
        )
    }

    /// Restores what [`AttributeStage::write_state`] wrote into this stage (built
    /// from the same inventory and detector settings).
    pub fn restore_state(
        &mut self,
        state: StageState,
        inventory: &Inventory,
    ) -> Result<(), String> {
        self.restore(&state.detectors)?;
        self.graph = state.graph.restore(inventory);
        self.book = state.book;
        self.facts = state.facts;
        self.service_events = state.service_events;
        self.attributed = state.attributed;
        self.unattributed = state.unattributed;
        self.method_counts = state.method_counts;
        self.unattributed_subjects = state.unattributed_subjects;
        self.owned = state.owned;
        Ok(())
    }

    /// Takes the alert book out (end of run), with every alert's blast radius as of now.
    pub fn into_alerts(mut self) -> AlertBook {
        let graph = &self.graph;
        self.book
            .refresh_blast_radius(|root| graph.blast_radius(root));
        self.book
    }

    /// The most frequent unattributed subjects, most uses first.
    pub fn top_unattributed(&self, n: usize) -> Vec<Unattributed> {
        let mut v: Vec<Unattributed> = self
            .unattributed_subjects
            .iter()
            .map(|(s, (r, c))| Unattributed {
                subject: s.clone(),
                reason: r.clone(),
                uses: *c,
            })
            .collect();
        v.sort_by(|a, b| b.uses.cmp(&a.uses).then_with(|| a.subject.cmp(&b.subject)));
        v.truncate(n);
        v
    }
}
