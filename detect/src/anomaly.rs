//! Behavioural anomalies per credential (the root of the lineage chain, so an agent's
//! hourly role sessions share one baseline). After a learning period per
//! credential, these rules fire:
//!
//! | rule | fires when | severity |
//! |---|---|---|
//! | `new-network` | a source network (IPv4 /24, IPv6 /64, or the autonomous system when an ASN database is set) not seen for this credential | low |
//! | `concurrent-networks` | two different networks within `concurrent_window_secs` (token theft) | high |
//! | `new-action` | an action that matters (below) not seen for this credential, once it has a baseline of `baseline_uses` uses; or an action it was denied before, now allowed | low; medium when denied before |
//! | `volume-spike` | calls in one hour > `spike_factor` × the hourly baseline and ≥ `spike_min` | medium |
//! | `dormant-reactivated` | first use after `dormant_days` of silence (checked even during learning) | medium |
//! | `denied-burst` | ≥ `denied_burst` access-denied errors within `denied_window_secs` (enumeration) | medium |
//!
//! **One alert per credential and rule.** Every rule's dedup key is the rule and the
//! credential, so repeats within the suppression window fold into one alert whatever
//! the network or action; its evidence lists the distinct `networks`, `actions` or
//! `hours` folded into it (at most 20, with `*_total`). A credential that rotates
//! through addresses (fresh CI runners, serverless egress, NAT pools) makes one alert
//! a day, not one per event.
//!
//! **Multi-network credentials.** A credential seen from at least `multi_network_min`
//! distinct networks during its learning period is multi-network by nature: its
//! /24 and /64 networks no longer raise `new-network` or `concurrent-networks`.
//! A network the ASN database resolves (`asn_database`) still does: a change of
//! autonomous system or provider alerts. Without an ASN database such a credential
//! raises no network alerts at all; set one to keep them.
//!
//! **Actions that matter.** `new-action` ignores reads: it fires for writes (the
//! source's read-only flag, else a name that does not start with a read verb such as
//! Get, List, Describe, Head, Lookup, Query, Scan, Search, Filter or Select), for
//! any action of an identity, token, key or secret service (`iam`, `sts`, `kms`,
//! `secretsmanager`, `organizations`, `sso`, `identitystore`, `entra-directory`),
//! for reads of permissions (names containing `Policy`, `Acl` or `Permission`:
//! mapping what a credential reaches), and for an action the credential was denied
//! before and is now allowed (`evidence.denied_before`), whatever it is. An action
//! the agent's declared scope lists by its exact name (not through a glob) is one
//! its owner said it performs: new, but expected (a deployment day), so no alert.
//!
//! State is bounded: at most `max_credentials` credentials (oldest last use evicted
//! first, a tenth at a time), [`MAX_NETWORKS`] networks, [`MAX_ACTIONS`] actions
//! and `denied_burst` error times per credential. The test
//! `state_stays_bounded_for_a_million_credentials` feeds a million distinct
//! credentials through a 10,000-credential cap and checks both the count and the
//! snapshot size (BENCHMARKS-style figure in the test output).

use std::collections::VecDeque;

/// aHash, randomly seeded: looked up on every event (see `lineage_graph`'s maps).
type HashMap<K, V> = std::collections::HashMap<K, V, ahash::RandomState>;
type HashSet<T> = std::collections::HashSet<T, ahash::RandomState>;
use std::net::IpAddr;

use lineage_core::{AttributedEvent, LineageFact, Severity};
use lineage_graph::LineageGraph;
use serde::{Deserialize, Serialize};
use serde_json::json;
use smol_str::{format_smolstr, SmolStr, SmolStrBuilder};

use crate::asn::AsnDatabase;
use crate::{Detector, Finding};

pub(crate) const NAME: &str = "anomaly";

/// Networks remembered per credential.
pub const MAX_NETWORKS: usize = 32;
/// Actions remembered per credential.
pub const MAX_ACTIONS: usize = 256;

/// Settings of the anomaly detector.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AnomalyConfig {
    /// Run this detector (default true).
    #[serde(default = "yes")]
    pub enabled: bool,
    /// Seconds after a credential's first use during which it only learns (default 86,400).
    #[serde(default = "d_learning")]
    pub learning_secs: i64,
    /// Days of silence after which a use is a reactivation (default 30).
    #[serde(default = "d_dormant")]
    pub dormant_days: i64,
    /// Window for two different networks at once (default 300 s).
    #[serde(default = "d_window")]
    pub concurrent_window_secs: i64,
    /// Hourly volume above this multiple of the baseline is a spike (default 5).
    #[serde(default = "d_factor")]
    pub spike_factor: f64,
    /// …and at least this many calls in the hour (default 200).
    #[serde(default = "d_spike_min")]
    pub spike_min: u32,
    /// Access-denied errors within the window that make a burst (default 10).
    #[serde(default = "d_burst")]
    pub denied_burst: usize,
    /// Window for the access-denied burst (default 300 s).
    #[serde(default = "d_window")]
    pub denied_window_secs: i64,
    /// Distinct networks during the learning period that make a credential
    /// multi-network by nature (default 8; 0: never).
    #[serde(default = "d_multi_network")]
    pub multi_network_min: usize,
    /// Uses a credential must have had before `new-action` fires for it (default 50):
    /// its own baseline, on top of the learning period.
    #[serde(default = "d_baseline_uses")]
    pub baseline_uses: u32,
    /// Credentials tracked at most (default 100,000).
    #[serde(default = "d_cap")]
    pub max_credentials: usize,
    /// An `ip2asn`-style TSV (iptoasn.com format). When set, a source network is its
    /// autonomous system (`AS64500 EXAMPLE-NET`) where the database knows the address,
    /// and the /24 or /64 otherwise.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub asn_database: Option<std::path::PathBuf>,
    /// Rules to run (default all): new-network, concurrent-networks, new-action,
    /// volume-spike, dormant-reactivated, denied-burst.
    #[serde(default = "d_rules")]
    pub rules: Vec<String>,
}

const fn yes() -> bool {
    true
}
const fn d_learning() -> i64 {
    86_400
}
const fn d_dormant() -> i64 {
    30
}
const fn d_window() -> i64 {
    300
}
const fn d_factor() -> f64 {
    5.0
}
const fn d_spike_min() -> u32 {
    200
}
const fn d_burst() -> usize {
    10
}
const fn d_cap() -> usize {
    100_000
}
const fn d_multi_network() -> usize {
    8
}
const fn d_baseline_uses() -> u32 {
    50
}
fn d_rules() -> Vec<String> {
    [
        "new-network",
        "concurrent-networks",
        "new-action",
        "volume-spike",
        "dormant-reactivated",
        "denied-burst",
    ]
    .map(String::from)
    .to_vec()
}

impl Default for AnomalyConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            learning_secs: d_learning(),
            dormant_days: d_dormant(),
            concurrent_window_secs: d_window(),
            spike_factor: d_factor(),
            spike_min: d_spike_min(),
            denied_burst: d_burst(),
            denied_window_secs: d_window(),
            max_credentials: d_cap(),
            multi_network_min: d_multi_network(),
            baseline_uses: d_baseline_uses(),
            asn_database: None,
            rules: d_rules(),
        }
    }
}

/// What is remembered about one credential.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct CredentialBaseline {
    first_seen: i64,
    last_seen: i64,
    /// (network, last seen).
    networks: Vec<(SmolStr, i64)>,
    actions: HashSet<String>,
    hour: i64,
    hour_count: u32,
    /// Exponentially weighted hourly volume.
    baseline: f64,
    hours_observed: u32,
    denied: VecDeque<i64>,
    /// Uses seen (saturating).
    #[serde(default)]
    uses: u32,
    /// Distinct networks first seen during the learning period (saturating).
    #[serde(default)]
    learned_networks: u16,
    /// Actions denied to this credential and not allowed since (at most [`MAX_DENIED_ACTIONS`]).
    #[serde(default)]
    denied_actions: Vec<SmolStr>,
}

/// Denied actions remembered per credential (for denied-then-allowed).
const MAX_DENIED_ACTIONS: usize = 16;

/// Services whose every action matters to `new-action`: identity, tokens, keys, secrets.
const SENSITIVE_SERVICES: &[&str] = &[
    "iam",
    "sts",
    "kms",
    "secretsmanager",
    "organizations",
    "sso",
    "identitystore",
    "entra-directory",
];

/// Name prefixes of operations that only read, for sources that do not say.
const READ_VERBS: &[&str] = &[
    "Get", "List", "Describe", "Head", "Lookup", "Query", "Scan", "BatchGet", "Search", "Filter",
    "Select", "get", "list", "read", "help",
];

/// Whether a new action is worth an alert: a write, an action of an identity or
/// secret service, or a read of permissions (module docs).
fn action_matters(op: &lineage_core::Operation) -> bool {
    if SENSITIVE_SERVICES.contains(&op.service.as_str()) {
        return true;
    }
    let name = op.name.as_str();
    if ["Policy", "Acl", "Permission"]
        .iter()
        .any(|p| name.contains(p))
    {
        return true;
    }
    match op.read_only {
        Some(read_only) => !read_only,
        None => !(READ_VERBS.iter().any(|v| name.starts_with(v)) || name.ends_with("SignIn")),
    }
}

/// The detector's learned state (what snapshots hold).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct AnomalyState {
    credentials: HashMap<String, CredentialBaseline>,
}

impl AnomalyState {
    /// Credentials tracked.
    pub fn len(&self) -> usize {
        self.credentials.len()
    }

    /// True when nothing is tracked.
    pub fn is_empty(&self) -> bool {
        self.credentials.is_empty()
    }
}

/// One rule's hit: rule, severity, title, summary, MITRE ids, evidence.
type RuleHit = (
    &'static str,
    Severity,
    String,
    String,
    &'static [&'static str],
    serde_json::Value,
);

/// The anomaly detector.
#[derive(Debug)]
pub struct AnomalyDetector {
    config: AnomalyConfig,
    /// Which of the six rules run, in `d_rules()` order (resolved once, not per event).
    enabled: [bool; 6],
    state: AnomalyState,
    asn: Option<AsnDatabase>,
    /// Scratch buffer for the current event's `service:operation`.
    action: String,
}

/// The numeric settings the hot path reads, copied out of the config once per event.
#[derive(Clone, Copy)]
struct Limits {
    learning_secs: i64,
    dormant_days: i64,
    concurrent_window_secs: i64,
    spike_factor: f64,
    spike_min: u32,
    denied_burst: usize,
    denied_window_secs: i64,
    multi_network_min: usize,
    baseline_uses: u32,
}

impl From<&AnomalyConfig> for Limits {
    fn from(c: &AnomalyConfig) -> Self {
        Self {
            learning_secs: c.learning_secs,
            dormant_days: c.dormant_days,
            concurrent_window_secs: c.concurrent_window_secs,
            spike_factor: c.spike_factor,
            spike_min: c.spike_min,
            denied_burst: c.denied_burst,
            denied_window_secs: c.denied_window_secs,
            multi_network_min: c.multi_network_min,
            baseline_uses: c.baseline_uses,
        }
    }
}

fn enabled_rules(config: &AnomalyConfig) -> [bool; 6] {
    let all = d_rules();
    std::array::from_fn(|i| config.rules.iter().any(|r| *r == all[i]))
}

/// The network of an address: IPv4 /24 or IPv6 /64; `None` for non-addresses
/// (CloudTrail writes a service name when a service called on someone's behalf).
fn network_of(ip: &str) -> Option<SmolStr> {
    // Both forms fit a SmolStr inline, so no allocation per event.
    match ip.parse::<IpAddr>().ok()? {
        IpAddr::V4(v4) => {
            // By hand, not `format_smolstr!`: one per event, and `fmt::write` showed
            // in the profile.
            let o = v4.octets();
            let mut net = SmolStrBuilder::new();
            let mut digits = itoa::Buffer::new();
            for octet in &o[..3] {
                net.push_str(digits.format(*octet));
                net.push('.');
            }
            net.push_str("0/24");
            Some(net.finish())
        }
        IpAddr::V6(v6) => {
            let s = v6.segments();
            Some(format_smolstr!(
                "{:x}:{:x}:{:x}:{:x}::/64",
                s[0],
                s[1],
                s[2],
                s[3]
            ))
        }
    }
}

/// Whether the event's agent declares `action` by exact name (case-insensitive, not a
/// glob) in a scope of the event's source.
fn declared_by_name(event: &AttributedEvent, graph: &LineageGraph, action: &str) -> bool {
    let Some(agent) = &event.attribution.agent else {
        return false;
    };
    let inventory = graph.inventory();
    let Some(index) = inventory.agent_index(agent) else {
        return false;
    };
    inventory.scopes_of(index).iter().any(|s| {
        s.declared.source == event.use_.source
            && s.declared
                .actions
                .iter()
                .any(|a| !a.contains('*') && a.eq_ignore_ascii_case(action))
    })
}

impl AnomalyDetector {
    /// A detector with these settings.
    pub fn new(config: AnomalyConfig) -> Self {
        Self {
            enabled: enabled_rules(&config),
            config,
            state: AnomalyState::default(),
            asn: None,
            action: String::new(),
        }
    }

    /// A detector with these settings, loading the ASN database they name.
    pub fn from_config(config: AnomalyConfig) -> Result<Self, String> {
        let known = d_rules();
        if let Some(bad) = config.rules.iter().find(|r| !known.contains(r)) {
            return Err(format!(
                "unknown rule `{bad}` in `rules` (known: {})",
                known.join(", ")
            ));
        }
        let asn = match &config.asn_database {
            Some(path) => Some(AsnDatabase::load(path)?),
            None => None,
        };
        Ok(Self {
            enabled: enabled_rules(&config),
            config,
            state: AnomalyState::default(),
            asn,
            action: String::new(),
        })
    }

    fn network(&self, ip: &str) -> Option<SmolStr> {
        let addr: IpAddr = ip.parse().ok()?;
        if let Some((asn, name)) = self.asn.as_ref().and_then(|db| db.lookup(addr)) {
            return Some(SmolStr::new(format!("AS{asn} {name}").trim_end()));
        }
        network_of(ip)
    }

    /// The learned state.
    pub fn state(&self) -> &AnomalyState {
        &self.state
    }

    fn evict_if_full(&mut self) {
        let cap = self.config.max_credentials.max(1);
        if self.state.credentials.len() < cap {
            return;
        }
        let mut by_age: Vec<(i64, String)> = self
            .state
            .credentials
            .iter()
            .map(|(k, v)| (v.last_seen, k.clone()))
            .collect();
        by_age.sort_unstable();
        let drop = (cap / 10).max(1).min(by_age.len());
        for (_, k) in by_age.into_iter().take(drop) {
            self.state.credentials.remove(&k);
        }
    }
}

impl Detector for AnomalyDetector {
    fn name(&self) -> &'static str {
        NAME
    }

    fn observe(
        &mut self,
        event: &AttributedEvent,
        _facts: &[LineageFact],
        graph: &LineageGraph,
    ) -> Vec<Finding> {
        let use_ = &event.use_;
        let Some(key) = event
            .attribution
            .root_credential
            .as_ref()
            .map(|c| c.as_str())
            .or_else(|| use_.credential.as_ref().map(|c| c.id.as_str()))
        else {
            return Vec::new();
        };
        let now = use_.time.timestamp();
        // Allocations only for a new credential: this runs once per event.
        if !self.state.credentials.contains_key(key) {
            self.evict_if_full();
            self.state.credentials.insert(
                key.to_owned(),
                CredentialBaseline {
                    first_seen: now,
                    last_seen: now,
                    hour: now / 3600,
                    ..CredentialBaseline::default()
                },
            );
        }
        let cfg = Limits::from(&self.config);
        let [new_network, concurrent, new_action, spike, dormant, denied_burst] = self.enabled;
        let network = use_
            .client
            .source_ip
            .as_deref()
            .and_then(|ip| self.network(ip));
        let b = self
            .state
            .credentials
            .get_mut(key)
            .expect("inserted above when missing");
        let learning = now - b.first_seen < cfg.learning_secs;
        let who = event
            .attribution
            .agent
            .as_ref()
            .map(|a| a.as_str())
            .or_else(|| event.attribution.owner.as_ref().map(|h| h.as_str()))
            .unwrap_or("an unattributed identity");
        let mut found: Vec<RuleHit> = Vec::new();

        let gap = now - b.last_seen;
        if dormant && gap >= cfg.dormant_days * 86_400 {
            found.push((
                "dormant-reactivated",
                Severity::Medium,
                format!(
                    "credential {key} of {who} reactivated after {} days",
                    gap / 86_400
                ),
                format!(
                    "Credential {key} was silent for {} days and is in use again.",
                    gap / 86_400
                ),
                &["T1078"],
                json!({ "silent_days": gap / 86_400 }),
            ));
        }

        b.uses = b.uses.saturating_add(1);
        if let Some(net) = &network {
            let known = b.networks.iter().any(|(n, _)| n == net);
            // Multi-network by nature: only an autonomous system (resolved by the ASN
            // database) is still worth a network alert.
            let multi = cfg.multi_network_min > 0
                && usize::from(b.learned_networks) >= cfg.multi_network_min
                && !net.starts_with("AS");
            if learning && !known {
                b.learned_networks = b.learned_networks.saturating_add(1);
            }
            if !learning && !known && !multi {
                if let Some((other, at)) = b
                    .networks
                    .iter()
                    .filter(|(n, at)| n != net && now - at <= cfg.concurrent_window_secs)
                    .max_by_key(|(_, at)| *at)
                {
                    if concurrent {
                        found.push((
                            "concurrent-networks",
                            Severity::High,
                            format!("credential {key} of {who} used from {net} while in use from {other}"),
                            format!(
                                "The same credential was used from two networks {}s apart ({other}, then {net}): a copy of it is probably in someone else's hands.",
                                now - at
                            ),
                            &["T1528", "T1550"],
                            json!({ "network": net, "other_network": other, "seconds_apart": now - at }),
                        ));
                    }
                } else if new_network {
                    found.push((
                        "new-network",
                        Severity::Low,
                        format!("credential {key} of {who} used from new network {net}"),
                        format!("First use of credential {key} from {net} after its learning period."),
                        &["T1078"],
                        json!({ "network": net, "known_networks": b.networks.iter().map(|(n, _)| n).collect::<Vec<_>>() }),
                    ));
                }
            }
            match b.networks.iter_mut().find(|(n, _)| n == net) {
                Some(entry) => entry.1 = now,
                None => {
                    if b.networks.len() >= MAX_NETWORKS {
                        let oldest = (0..b.networks.len())
                            .min_by_key(|&i| b.networks[i].1)
                            .unwrap_or(0);
                        b.networks.swap_remove(oldest);
                    }
                    b.networks.push((net.clone(), now));
                }
            }
        }

        // `service:operation` written into a reused buffer (no allocation per event).
        self.action.clear();
        let _ = use_.operation.write_action(&mut self.action);
        let action = self.action.as_str();
        let denied_now = use_.outcome.is_access_denied();
        let allowed_now = use_.outcome.error_code.is_none();
        let denied_before = allowed_now
            && match b.denied_actions.iter().position(|a| a == action) {
                Some(i) => {
                    b.denied_actions.swap_remove(i);
                    true
                }
                None => false,
            };
        if denied_now
            && b.denied_actions.len() < MAX_DENIED_ACTIONS
            && !b.denied_actions.iter().any(|a| a == action)
        {
            b.denied_actions.push(SmolStr::new(action));
        }
        let baseline = !learning && b.uses > cfg.baseline_uses;
        if denied_before && new_action && baseline {
            found.push((
                "new-action",
                Severity::Medium,
                format!("credential {key} of {who} was allowed {action} after being denied it"),
                format!("`{action}` was denied to credential {key} before and is allowed now: its permissions grew, or someone else holds it."),
                &["T1078", "T1098"],
                json!({ "action": action, "denied_before": true }),
            ));
        } else if !b.actions.contains(action)
            && new_action
            && baseline
            && action_matters(&use_.operation)
            && !declared_by_name(event, graph, action)
        {
            found.push((
                "new-action",
                Severity::Low,
                format!("credential {key} of {who} performed {action} for the first time"),
                format!("`{action}` had not been seen for credential {key} during or since its learning period of {} uses.", b.uses - 1),
                &["T1078"],
                json!({ "action": action, "read_only": use_.operation.read_only }),
            ));
        }
        if !b.actions.contains(action) && b.actions.len() < MAX_ACTIONS {
            b.actions.insert(action.to_owned());
        }

        let hour = now / 3600;
        if hour != b.hour {
            // Close the previous hour(s): empty hours pull the baseline down too.
            let closed = (hour - b.hour).clamp(1, 24 * 7) as u32;
            for i in 0..closed {
                let count = if i == 0 { b.hour_count } else { 0 };
                b.baseline = if b.hours_observed == 0 {
                    count as f64
                } else {
                    0.9 * b.baseline + 0.1 * count as f64
                };
                b.hours_observed += 1;
            }
            b.hour = hour;
            b.hour_count = 0;
        }
        b.hour_count += 1;
        if spike
            && !learning
            && b.hours_observed >= 24
            && b.hour_count
                == cfg
                    .spike_min
                    .max((cfg.spike_factor * b.baseline).ceil() as u32 + 1)
        {
            found.push((
                "volume-spike",
                Severity::Medium,
                format!(
                    "credential {key} of {who}: {} calls this hour, baseline {:.1}",
                    b.hour_count, b.baseline
                ),
                format!(
                    "Hourly volume passed {}× the baseline of {:.1} calls.",
                    cfg.spike_factor, b.baseline
                ),
                &["T1530", "T1119"],
                json!({ "hour_count": b.hour_count, "baseline": b.baseline, "hour": hour }),
            ));
        }

        if use_.outcome.is_access_denied() {
            b.denied.push_back(now);
            while b
                .denied
                .front()
                .is_some_and(|t| now - t > cfg.denied_window_secs)
            {
                b.denied.pop_front();
            }
            if b.denied.len() > cfg.denied_burst {
                b.denied.pop_front();
            }
            if denied_burst && b.denied.len() == cfg.denied_burst {
                found.push((
                    "denied-burst",
                    Severity::Medium,
                    format!("credential {key} of {who}: {} access-denied errors in {}s", cfg.denied_burst, cfg.denied_window_secs),
                    "A burst of access-denied errors usually means someone is enumerating what a credential can do.".into(),
                    &["T1580", "T1087.004"],
                    json!({ "errors": cfg.denied_burst, "window_secs": cfg.denied_window_secs, "last_error": use_.outcome.error_code }),
                ));
            }
        }
        b.last_seen = now;

        found
            .into_iter()
            .map(|(rule, severity, title, summary, mitre, mut evidence)| {
                evidence["rule"] = json!(rule);
                evidence["source_ip"] = json!(use_.client.source_ip);
                // One alert per credential and rule: what varies is listed in it.
                let distinct = match rule {
                    "new-network" | "concurrent-networks" => {
                        network.as_deref().map(|n| ("networks", n.to_owned()))
                    }
                    "new-action" => Some(("actions", action.to_owned())),
                    "volume-spike" => Some(("hours", hour.to_string())),
                    _ => None,
                };
                Finding {
                    detector: NAME,
                    severity,
                    title,
                    summary,
                    dedup_key: format!("{NAME}|{rule}|{key}"),
                    distinct,
                    mitre,
                    evidence,
                    actions: Vec::new(),
                }
            })
            .collect()
    }

    fn snapshot(&self) -> Option<serde_json::Value> {
        serde_json::to_value(&self.state).ok()
    }

    fn forget_credentials(&mut self, known: &dyn Fn(&str) -> bool) {
        self.state.credentials.retain(|k, _| known(k));
    }

    fn restore(&mut self, state: serde_json::Value) -> Result<(), String> {
        self.state = serde_json::from_value(state).map_err(|e| format!("anomaly state: {e}"))?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::network_of;

    #[test]
    fn network_is_the_v4_slash_24_or_v6_slash_64() {
        for (address, network) in [
            ("203.0.113.77", Some("203.0.113.0/24")),
            ("10.1.2.3", Some("10.1.2.0/24")),
            ("0.0.0.0", Some("0.0.0.0/24")),
            ("2001:db8:abcd:12:1::5", Some("2001:db8:abcd:12::/64")),
            ("ec2.amazonaws.com", None),
            ("", None),
        ] {
            assert_eq!(network_of(address).as_deref(), network, "{address}");
        }
    }
}
