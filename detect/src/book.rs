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
        }
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
    pub fn record(&mut self, finding: Finding, event: &AttributedEvent) -> Recorded {
        let time = event.use_.time;
        self.latest = self.latest.max(Some(time));
        self.actions_requested += finding.actions.len() as u64;
        self.actions.extend(finding.actions);
        if let Some(i) = self.open_alert(&finding.dedup_key, time) {
            let alert = &mut self.alerts[i];
            alert.count += 1;
            alert.last_seen = alert.last_seen.max(time);
            alert.first_seen = alert.first_seen.min(time);
            if alert.event_ids.len() < MAX_EVIDENCE_IDS {
                alert.event_ids.push(event.use_.event_id.clone());
            }
            return Recorded::Repeat(i);
        }
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
