//! Folding findings into alerts by dedup key within a suppression window, and
//! collecting the revocation requests findings carry.

/// aHash, randomly seeded: one lookup per finding.
type HashMap<K, V> = std::collections::HashMap<K, V, ahash::RandomState>;

use chrono::Duration;
use lineage_core::{Action, Alert, AttributedEvent};
use sha2::{Digest, Sha256};
use smol_str::SmolStr;

use crate::Finding;

/// Evidence event ids kept per alert; `count` keeps the total.
const MAX_EVIDENCE_IDS: usize = 50;

/// Distinct values an alert's evidence lists per [`Finding::distinct`] name; the
/// `<name>_total` beside the list keeps counting.
pub const MAX_DISTINCT_LISTED: usize = 20;

/// The detector name of the summary alerts the [`AlertBudget`] folds into.
pub const BUDGET_DETECTOR: &str = "alert-budget";

/// How many alerts may open per hour of event time before further Low and Medium
/// findings fold into one summary alert per credential (or one for all) and hour,
/// which counts them by detector: nothing is dropped, and the SOC queue gets at most
/// `per_hour` alerts an hour from noise. High and Critical findings, and findings
/// that ask for a revocation, always open their own alert (they still use up budget).
/// The `[detectors.alert_budget]` table of the config.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AlertBudget {
    /// Alerts one root credential may open per hour (default 10; 0: no limit).
    #[serde(default = "d_per_credential")]
    pub per_credential_per_hour: u32,
    /// Alerts all credentials together may open per hour (default 50; 0: no limit).
    #[serde(default = "d_per_hour")]
    pub per_hour: u32,
}

const fn d_per_credential() -> u32 {
    10
}
const fn d_per_hour() -> u32 {
    50
}

impl Default for AlertBudget {
    fn default() -> Self {
        Self {
            per_credential_per_hour: d_per_credential(),
            per_hour: d_per_hour(),
        }
    }
}

impl AlertBudget {
    /// No limit (tests and replays that want every alert on its own).
    pub const UNLIMITED: Self = Self {
        per_credential_per_hour: 0,
        per_hour: 0,
    };
}

/// Alerts opened per hour, overall and per root credential (fingerprint), for the
/// budget; hours more than a day behind the latest are forgotten.
#[derive(Debug, Default, serde::Serialize, serde::Deserialize)]
struct BudgetSpent {
    all: std::collections::BTreeMap<i64, u32>,
    /// Hour → root credential fingerprint → alerts (nested, so JSON keys are numbers).
    by_credential: std::collections::BTreeMap<i64, HashMap<u64, u32>>,
    /// The latest hour seen (pruning runs when it advances).
    hour: i64,
}

/// The alerts of a run, one per dedup key and suppression window, in order of first sighting.
///
/// It serializes whole (replay checkpoints carry it).
#[derive(Debug, serde::Serialize, serde::Deserialize)]
pub struct AlertBook {
    alerts: Vec<Alert>,
    by_key: HashMap<String, usize>,
    actions: Vec<Action>,
    #[serde(with = "seconds")]
    suppression: Duration,
    /// The latest event time recorded.
    #[serde(default)]
    latest: Option<chrono::DateTime<chrono::Utc>>,
    /// Alerts opened in all (also those retired), by detector.
    #[serde(default)]
    opened: std::collections::BTreeMap<SmolStr, u64>,
    /// Revocation requests in all (also those retired).
    #[serde(default)]
    actions_requested: u64,
    /// Fingerprints of the dedup keys of retired alerts: a later window's alert of
    /// such a key still gets a window id, not the key's first id again.
    #[serde(default)]
    retired_keys: std::collections::HashSet<u64>,
    #[serde(default)]
    budget: AlertBudget,
    #[serde(default)]
    spent: BudgetSpent,
}

/// A `chrono::Duration` as whole seconds.
mod seconds {
    use chrono::Duration;
    use serde::{Deserialize, Deserializer, Serializer};

    pub(super) fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_i64(d.num_seconds())
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        i64::deserialize(d).map(Duration::seconds)
    }
}

impl Default for AlertBook {
    fn default() -> Self {
        Self::with_suppression(Duration::days(1))
    }
}

/// Whether a finding opened a new alert or was folded into an existing one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Recorded {
    /// A new alert (index into [`AlertBook::alerts`]).
    New(usize),
    /// Folded into an existing alert.
    Repeat(usize),
}

impl AlertBook {
    /// A book whose repeats of a finding fold into one alert while they come less
    /// than `suppression` apart (event time).
    pub fn with_suppression(suppression: Duration) -> Self {
        Self {
            alerts: Vec::new(),
            by_key: HashMap::default(),
            actions: Vec::new(),
            suppression,
            latest: None,
            opened: Default::default(),
            actions_requested: 0,
            retired_keys: Default::default(),
            budget: AlertBudget::UNLIMITED,
            spent: BudgetSpent::default(),
        }
    }

    /// This book with an alert budget (a book is unlimited until given one).
    pub fn with_budget(mut self, budget: AlertBudget) -> Self {
        self.budget = budget;
        self
    }

    /// A stable 64-bit fingerprint of a dedup key.
    fn key_fingerprint(key: &str) -> u64 {
        let d = Sha256::digest(key.as_bytes());
        u64::from_le_bytes(d[..8].try_into().expect("8 bytes"))
    }

    /// Forgets the alerts closed for good (nothing folded into them for the
    /// suppression window, in event time, before the latest event recorded) and the
    /// revocation requests already handed out, so a long-running live book holds only
    /// open alerts. A later finding of a retired alert's key opens a new alert, as it
    /// would anyway after the window. Counts ([`AlertBook::opened_by_detector`],
    /// [`AlertBook::actions_requested`]) keep everything. Only call it once every
    /// alert and action so far has been taken out (indexes into
    /// [`AlertBook::alerts`] and [`AlertBook::actions`] change). Returns the alerts
    /// retired.
    pub fn retire_closed(&mut self) -> usize {
        self.actions.clear();
        let Some(latest) = self.latest else {
            return 0;
        };
        let suppression = self.suppression;
        let open = |a: &Alert| latest - a.last_seen <= suppression;
        if self.alerts.iter().all(open) {
            return 0;
        }
        let mut new_index = vec![usize::MAX; self.alerts.len()];
        let mut kept = Vec::with_capacity(self.alerts.len());
        for (i, a) in std::mem::take(&mut self.alerts).into_iter().enumerate() {
            if open(&a) {
                new_index[i] = kept.len();
                kept.push(a);
            }
        }
        let retired = new_index.len() - kept.len();
        self.alerts = kept;
        let mut gone = Vec::new();
        for (key, i) in self.by_key.iter_mut() {
            match new_index[*i] {
                usize::MAX => gone.push(key.clone()),
                n => *i = n,
            }
        }
        for key in gone {
            self.by_key.remove(&key);
            self.retired_keys.insert(Self::key_fingerprint(&key));
        }
        retired
    }

    /// Alerts opened so far by detector (also those [`AlertBook::retire_closed`]
    /// forgot).
    pub fn opened_by_detector(&self) -> &std::collections::BTreeMap<SmolStr, u64> {
        &self.opened
    }

    /// Revocation requests so far (also those [`AlertBook::retire_closed`] forgot).
    pub fn actions_requested(&self) -> u64 {
        self.actions_requested
    }

    /// True when a finding with `dedup_key` at `time` would fold into an open alert
    /// (what [`AlertBook::record`] calls a repeat).
    pub fn folds(&self, dedup_key: &str, time: chrono::DateTime<chrono::Utc>) -> bool {
        self.open_alert(dedup_key, time).is_some()
    }

    /// The alert a finding with `dedup_key` at `time` folds into, if one is open.
    fn open_alert(&self, dedup_key: &str, time: chrono::DateTime<chrono::Utc>) -> Option<usize> {
        let i = *self.by_key.get(dedup_key)?;
        (time - self.alerts[i].last_seen <= self.suppression).then_some(i)
    }

    /// Records a finding about `event`.
    pub fn record(&mut self, mut finding: Finding, event: &AttributedEvent) -> Recorded {
        let time = event.use_.time;
        self.latest = self.latest.max(Some(time));
        self.actions_requested += finding.actions.len() as u64;
        if let Some(i) = self.open_alert(&finding.dedup_key, time) {
            self.actions.extend(finding.actions);
            let alert = &mut self.alerts[i];
            alert.count += 1;
            alert.last_seen = alert.last_seen.max(time);
            alert.first_seen = alert.first_seen.min(time);
            // A denied attempt (medium) then a success (high) of the same finding: the
            // alert says the worst that happened.
            alert.severity = alert.severity.max(finding.severity);
            if alert.event_ids.len() < MAX_EVIDENCE_IDS {
                alert.event_ids.push(event.use_.event_id.clone());
            }
            if let Some((name, value)) = &finding.distinct {
                add_distinct(&mut alert.evidence, name, value);
            }
            return Recorded::Repeat(i);
        }
        let credential = event
            .attribution
            .root_credential
            .as_ref()
            .or(event.use_.credential.as_ref().map(|c| &c.id))
            .map(|c| c.as_str());
        let exempt =
            finding.severity >= lineage_core::Severity::High || !finding.actions.is_empty();
        self.actions.extend(std::mem::take(&mut finding.actions));
        if !exempt {
            if let Some(over) = self.over_budget(credential, time) {
                return self.fold_into_summary(over, credential, &finding, event);
            }
        }
        self.spend(credential, time);
        self.open(finding, event)
    }

    /// Opens a new alert for `finding`.
    fn open(&mut self, mut finding: Finding, event: &AttributedEvent) -> Recorded {
        let time = event.use_.time;
        // The first alert of a key keeps the key's fingerprint as its id (stable across
        // runs); a later window's alert gets the window start mixed in.
        let id_input = if self.by_key.contains_key(&finding.dedup_key)
            || (!self.retired_keys.is_empty()
                && self
                    .retired_keys
                    .contains(&Self::key_fingerprint(&finding.dedup_key)))
        {
            format!("{}|{}", finding.dedup_key, time.timestamp())
        } else {
            finding.dedup_key.clone()
        };
        if let Some((name, value)) = &finding.distinct {
            add_distinct(&mut finding.evidence, name, value);
        }
        let digest = Sha256::digest(id_input.as_bytes());
        let a = &event.attribution;
        let alert = Alert {
            id: SmolStr::new(hex::encode(&digest[..8])),
            detector: SmolStr::new_static(finding.detector),
            severity: finding.severity,
            title: finding.title,
            summary: finding.summary,
            first_seen: time,
            last_seen: time,
            count: 1,
            dedup_key: finding.dedup_key.clone(),
            credential: event.use_.credential.clone(),
            root_credential: a.root_credential.clone(),
            agent: a.agent.clone(),
            owner: a.owner.clone(),
            lineage_path: lineage_graph::lineage_path(a),
            mitre: finding
                .mitre
                .iter()
                .map(|m| SmolStr::new_static(m))
                .collect(),
            evidence: finding.evidence,
            event_ids: vec![event.use_.event_id.clone()],
            blast_radius: None,
        };
        *self.opened.entry(alert.detector.clone()).or_default() += 1;
        self.alerts.push(alert);
        let i = self.alerts.len() - 1;
        self.by_key.insert(finding.dedup_key, i);
        Recorded::New(i)
    }

    /// Which budget a new alert about `credential` at `time` would exceed, if any.
    fn over_budget(
        &self,
        credential: Option<&str>,
        time: chrono::DateTime<chrono::Utc>,
    ) -> Option<Over> {
        let hour = time.timestamp().div_euclid(3600);
        let b = self.budget;
        if b.per_credential_per_hour > 0 {
            if let Some(c) = credential {
                let spent = self
                    .spent
                    .by_credential
                    .get(&hour)
                    .and_then(|m| m.get(&Self::key_fingerprint(c)))
                    .copied()
                    .unwrap_or(0);
                if spent >= b.per_credential_per_hour {
                    return Some(Over::Credential(b.per_credential_per_hour));
                }
            }
        }
        if b.per_hour > 0 && self.spent.all.get(&hour).copied().unwrap_or(0) >= b.per_hour {
            return Some(Over::All(b.per_hour));
        }
        None
    }

    /// Counts a new alert against the budget of its hour.
    fn spend(&mut self, credential: Option<&str>, time: chrono::DateTime<chrono::Utc>) {
        if self.budget == AlertBudget::UNLIMITED {
            return;
        }
        let hour = time.timestamp().div_euclid(3600);
        *self.spent.all.entry(hour).or_default() += 1;
        if let Some(c) = credential {
            *self
                .spent
                .by_credential
                .entry(hour)
                .or_default()
                .entry(Self::key_fingerprint(c))
                .or_default() += 1;
        }
        if hour > self.spent.hour {
            self.spent.hour = hour;
            let keep_from = hour - 24;
            self.spent.all.retain(|h, _| *h >= keep_from);
            self.spent.by_credential.retain(|h, _| *h >= keep_from);
        }
    }

    /// Folds a finding the budget holds back into its hour's summary alert.
    fn fold_into_summary(
        &mut self,
        over: Over,
        credential: Option<&str>,
        finding: &Finding,
        event: &AttributedEvent,
    ) -> Recorded {
        let time = event.use_.time;
        let hour = time.timestamp().div_euclid(3600);
        let (key, limit, scope) = match over {
            Over::Credential(limit) => (
                format!(
                    "{BUDGET_DETECTOR}|credential|{}|{hour}",
                    credential.unwrap_or("-")
                ),
                limit,
                format!("credential {}", credential.unwrap_or("-")),
            ),
            Over::All(limit) => (
                format!("{BUDGET_DETECTOR}|all|{hour}"),
                limit,
                "all credentials".to_owned(),
            ),
        };
        if let Some(&i) = self.by_key.get(&key) {
            let alert = &mut self.alerts[i];
            alert.count += 1;
            alert.last_seen = alert.last_seen.max(time);
            alert.severity = alert.severity.max(finding.severity);
            if alert.event_ids.len() < MAX_EVIDENCE_IDS {
                alert.event_ids.push(event.use_.event_id.clone());
            }
            note_folded(&mut alert.evidence, finding);
            add_distinct(
                &mut alert.evidence,
                "credentials",
                credential.unwrap_or("-"),
            );
            return Recorded::Repeat(i);
        }
        let hour_start = chrono::DateTime::from_timestamp(hour * 3600, 0).unwrap_or(time);
        let mut evidence = serde_json::json!({
            "rule": "alert-budget",
            "limit_per_hour": limit,
            "scope": scope,
            "hour_start": hour_start,
            "folded_by_detector": {},
            "folded_titles": [],
        });
        note_folded(&mut evidence, finding);
        // Which credentials it folded for: a flood on one key that uses up the
        // budget for all is visible as such.
        add_distinct(&mut evidence, "credentials", credential.unwrap_or("-"));
        let summary = Finding {
            detector: BUDGET_DETECTOR,
            severity: finding.severity,
            title: format!("alert budget of {limit} an hour reached for {scope}: further low and medium alerts of the hour folded here"),
            summary: format!(
                "{limit} alerts opened for {scope} in the hour from {hour_start}. Each further Low or Medium finding of that hour is counted here by detector instead of opening its own alert (`count` is how many; `evidence.folded_titles` lists the first {MAX_DISTINCT_LISTED}). High and Critical findings still open their own. Settings: [detectors.alert_budget]."
            ),
            dedup_key: key,
            distinct: None,
            mitre: &[],
            evidence,
            actions: Vec::new(),
        };
        self.open(summary, event)
    }

    /// Attaches what the root credential reaches to alert `index`.
    pub fn set_blast_radius(&mut self, index: usize, radius: lineage_core::BlastRadius) {
        if let Some(a) = self.alerts.get_mut(index) {
            a.blast_radius = Some(radius);
        }
    }

    /// Recomputes every alert's blast radius (at the end of a replay, so the figure
    /// covers everything the root credential's lineage did in the run).
    pub fn refresh_blast_radius(
        &mut self,
        radius: impl Fn(&lineage_core::CredentialId) -> lineage_core::BlastRadius,
    ) {
        for a in &mut self.alerts {
            if let Some(root) = &a.root_credential {
                a.blast_radius = Some(radius(root));
            }
        }
    }

    /// The alerts, in order of first sighting.
    pub fn alerts(&self) -> &[Alert] {
        &self.alerts
    }

    /// Revocation requests, in the order findings asked for them.
    pub fn actions(&self) -> &[Action] {
        &self.actions
    }

    /// Takes the alerts and actions out.
    pub fn into_parts(self) -> (Vec<Alert>, Vec<Action>) {
        (self.alerts, self.actions)
    }

    /// Takes the alerts out.
    pub fn into_alerts(self) -> Vec<Alert> {
        self.alerts
    }
}

/// Which budget a finding ran into, and its limit.
#[derive(Clone, Copy)]
enum Over {
    Credential(u32),
    All(u32),
}

/// Adds `value` to the evidence list `name` (at most [`MAX_DISTINCT_LISTED`]) and
/// counts it in `<name>_total` unless already listed.
fn add_distinct(evidence: &mut serde_json::Value, name: &str, value: &str) {
    if !evidence.is_object() {
        *evidence = serde_json::json!({});
    }
    let Some(obj) = evidence.as_object_mut() else {
        return;
    };
    let list = obj
        .entry(name)
        .or_insert_with(|| serde_json::Value::Array(Vec::new()));
    if !list.is_array() {
        *list = serde_json::Value::Array(Vec::new());
    }
    let list = list.as_array_mut().expect("an array");
    if list.iter().any(|v| v.as_str() == Some(value)) {
        return;
    }
    if list.len() < MAX_DISTINCT_LISTED {
        list.push(serde_json::Value::String(value.to_owned()));
    }
    let total = obj
        .entry(format!("{name}_total"))
        .or_insert(serde_json::json!(0));
    *total = serde_json::json!(total.as_u64().unwrap_or(0) + 1);
}

/// Counts a finding folded into a budget summary by detector and lists its title.
fn note_folded(evidence: &mut serde_json::Value, finding: &Finding) {
    if let Some(by) = evidence
        .get_mut("folded_by_detector")
        .and_then(|v| v.as_object_mut())
    {
        let n = by.entry(finding.detector).or_insert(serde_json::json!(0));
        *n = serde_json::json!(n.as_u64().unwrap_or(0) + 1);
    }
    if let Some(titles) = evidence
        .get_mut("folded_titles")
        .and_then(|v| v.as_array_mut())
    {
        if titles.len() < MAX_DISTINCT_LISTED {
            titles.push(serde_json::Value::String(finding.title.clone()));
        }
    }
}
