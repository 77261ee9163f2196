//! `lineage.toml`: one file configures every mode. Each table is the config struct
//! of the component it sets up (the detectors, the alert sinks, the responder, the
//! bus, each `[[source]]`), so the file, the defaults and the command line are one
//! definition. `lineage detectors --defaults` prints it with every default.

use std::path::PathBuf;

use lineage_detect::DetectorsConfig;
use lineage_ingest::connect::ConnectorSpec;
use lineage_respond::ResponseConfig;
use lineage_sinks::alerts::AlertSinksConfig;
use serde::{Deserialize, Serialize};

use crate::kafka::BusConfig;

/// The settings file.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Settings {
    /// Directory of Sigma rules evaluated on every raw record (same as
    /// `--sigma-rules`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sigma_rules: Option<PathBuf>,
    /// Detector settings.
    #[serde(default)]
    pub detectors: DetectorsConfig,
    /// Response: revocation policy, ledger and executors (dry-run by default).
    #[serde(default)]
    pub response: ResponseConfig,
    /// SOC alert sinks beyond `alerts.jsonl`: rotated JSON lines, OCSF, webhooks,
    /// Slack, Kafka; failing sinks retry and spool to disk.
    #[serde(default)]
    pub alerts: AlertSinksConfig,
    /// How the live pipeline's stages are connected (`embedded` or `kafka`).
    #[serde(default)]
    pub bus: BusConfig,
    /// `lineage run`: inventory, outputs, state, metrics address, batching.
    #[serde(default)]
    pub run: RunConfig,
    /// The live pipeline's lineage graph: how long it remembers idle credentials.
    #[serde(default)]
    pub graph: GraphSettings,
    /// The live sources `lineage run` follows on the embedded bus (and that a Kafka
    /// deployment feeds with `lineage ingest … --from-checkpoint`).
    #[serde(default, rename = "source", skip_serializing_if = "Vec::is_empty")]
    pub sources: Vec<SourceConfig>,
}

impl Settings {
    /// Reads and checks a settings file; errors name the file and the field.
    pub fn load(path: &std::path::Path) -> Result<Self, crate::PipelineError> {
        let text = std::fs::read_to_string(path).map_err(|e| {
            crate::PipelineError::Config(format!("reading {}: {e}", path.display()))
        })?;
        let settings: Settings = toml::from_str(&text)
            .map_err(|e| crate::PipelineError::Config(format!("{}: {e}", path.display())))?;
        settings.check()?;
        Ok(settings)
    }

    /// The response ledger: `[response] ledger`, else `<state_dir>/ledger.jsonl`.
    pub fn ledger(&self) -> PathBuf {
        self.response
            .ledger
            .clone()
            .unwrap_or_else(|| self.run.state_dir().join("ledger.jsonl"))
    }

    /// What the types cannot say: source names are unique, `[run] inputs` is gone.
    pub fn check(&self) -> Result<(), crate::PipelineError> {
        if !self.run.inputs.is_empty() {
            return Err(crate::PipelineError::Config(
                "`[run] inputs` is no longer read: `lineage run` follows live sources. Declare \
                 `[[source]] kind = \"directory\"` with `path = \"…\"` to follow a directory of \
                 log files, or run `lineage replay` on an archive"
                    .into(),
            ));
        }
        let mut names = std::collections::HashSet::new();
        for (i, s) in self.sources.iter().enumerate() {
            let name = s.name(i);
            if !names.insert(name.clone()) {
                return Err(crate::PipelineError::Config(format!(
                    "two [[source]] entries are named {name:?}: give each a distinct `name` (it names its checkpoint file)"
                )));
            }
            if name.is_empty()
                || !name
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
                || name.starts_with('.')
            {
                return Err(crate::PipelineError::Config(format!(
                    "[[source]] name {name:?}: use letters, digits, '-', '_' and '.'"
                )));
            }
        }
        Ok(())
    }
}

/// `[graph]`: retention of the live pipeline's lineage graph.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct GraphSettings {
    /// Days of event time a credential is remembered after its last use, issuance
    /// or status change (a deleted one keeps its tombstone as long). Credentials
    /// the inventory declares, and every ancestor of a remembered one, stay. 0 keeps
    /// everything. `lineage run` only: a replay reads a bounded archive and keeps
    /// its whole graph (default 90).
    pub retain_days: u64,
}

impl Default for GraphSettings {
    fn default() -> Self {
        Self { retain_days: 90 }
    }
}

/// `[run]`: settings of `lineage run`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RunConfig {
    /// The inventory file (humans, agents, bindings, scopes).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub inventory: Option<PathBuf>,
    /// Where outputs go: `alerts.jsonl`, `alerts.ocsf.jsonl`, `actions.jsonl`,
    /// `dead_letters.jsonl`, `events.jsonl` (with `events`), the Parquet tables.
    pub out_dir: PathBuf,
    /// Where state goes: source checkpoints, the pipeline's checkpoint (embedded),
    /// the alert spool. Default `<out_dir>/state`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub state_dir: Option<PathBuf>,
    /// Address of `/metrics` and `/health` (e.g. `127.0.0.1:9464`); none when unset.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub metrics_addr: Option<String>,
    /// Also write every attributed event to `events.jsonl` (embedded bus).
    pub events: bool,
    /// Do not write the Parquet lineage tables (`<out_dir>/tables`).
    pub no_tables: bool,
    /// Embedded bus: how often the pipeline's state is checkpointed, its outputs made
    /// durable and the sources acknowledged, seconds.
    pub checkpoint_secs: u64,
    /// Embedded bus: how long a source's empty poll waits before the next, ms
    /// (sources that long-poll — SQS, the Vault socket — wait inside the poll).
    pub poll_interval_ms: u64,
    /// Records per batch between stages (Kafka: messages per poll).
    pub batch: usize,
    /// Kafka bus: how long a poll waits for the first message of a batch, ms.
    pub poll_ms: u64,
    /// Kafka bus: a quiet source (caught up, but behind in event time) stops
    /// holding back uses of credentials the graph does not know yet once no source
    /// has progressed for this long, ms.
    pub source_idle_ms: u64,
    /// Kafka bus: the longest a use of a credential the graph does not know yet
    /// waits for a quiet source's lineage facts, ms. Uses of known credentials never
    /// wait for a quiet source; a fact that comes later re-evaluates the uses it
    /// concerns (late alert, attribution correction).
    pub quiet_source_wait_ms: u64,
    /// The longest an event waits for a source that is behind (still reading records
    /// up to the event's time), ms.
    pub max_hold_ms: u64,
    /// Largest raw record accepted, bytes (larger ones are dead-lettered).
    pub max_record_bytes: usize,
    /// Removed (see [`Settings::check`]); kept so an old file gets a clear message.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub inputs: Vec<String>,
}

impl Default for RunConfig {
    fn default() -> Self {
        Self {
            inventory: None,
            out_dir: PathBuf::from("out"),
            state_dir: None,
            metrics_addr: None,
            events: false,
            no_tables: false,
            checkpoint_secs: 5,
            poll_interval_ms: 1000,
            batch: 2000,
            poll_ms: 200,
            source_idle_ms: 2000,
            quiet_source_wait_ms: 500,
            max_hold_ms: 30_000,
            max_record_bytes: 1024 * 1024,
            inputs: Vec::new(),
        }
    }
}

impl RunConfig {
    /// The state directory (`state_dir`, else `<out_dir>/state`).
    pub fn state_dir(&self) -> PathBuf {
        self.state_dir
            .clone()
            .unwrap_or_else(|| self.out_dir.join("state"))
    }
}

/// One `[[source]]`: a connector and, optionally, its name (default: its kind, with
/// `-2`, `-3`, … for repeats), which names its checkpoint file
/// `<state_dir>/sources/<name>.json`.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct SourceConfig {
    /// The name (checkpoint file, metrics label).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// The connector and its settings.
    #[serde(flatten)]
    pub connector: ConnectorSpec,
}

impl SourceConfig {
    /// The name of the `index`-th source: its `name`, else its kind (numbered when
    /// the kind repeats earlier in the list is not known here, so the index is used).
    pub fn name(&self, index: usize) -> String {
        match &self.name {
            Some(n) => n.clone(),
            None if index == 0 => self.connector.kind().to_owned(),
            None => format!("{}-{}", self.connector.kind(), index + 1),
        }
    }
}

impl<'de> Deserialize<'de> for SourceConfig {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        use serde::de::Error;
        // `name` is ours; everything else belongs to the connector, whose struct
        // refuses unknown fields (so a typo is an error, not a silent default).
        let mut table = toml::Table::deserialize(d)?;
        let name = match table.remove("name") {
            None => None,
            Some(toml::Value::String(s)) => Some(s),
            Some(other) => {
                return Err(D::Error::custom(format!(
                    "`name` must be a string, not {}",
                    other.type_str()
                )))
            }
        };
        let connector = ConnectorSpec::deserialize(toml::Value::Table(table))
            .map_err(|e| D::Error::custom(e.to_string()))?;
        Ok(SourceConfig { name, connector })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sources_parse_with_names_and_refuse_typos() {
        let s: Settings = toml::from_str(
            r#"
[run]
out_dir = "o"

[[source]]
kind = "vault-file"
path = "/var/log/bao/audit.log"

[[source]]
name = "trail"
kind = "directory"
path = "/srv/cloudtrail"
"#,
        )
        .unwrap();
        s.check().unwrap();
        assert_eq!(s.sources.len(), 2);
        assert_eq!(s.sources[0].name(0), "vault-file");
        assert_eq!(s.sources[1].name(1), "trail");
        assert_eq!(s.run.state_dir(), PathBuf::from("o/state"));
        let err =
            toml::from_str::<Settings>("[[source]]\nkind = \"directory\"\npath = \"x\"\npth = 1")
                .unwrap_err()
                .to_string();
        assert!(err.contains("pth"), "{err}");
        let old: Settings = toml::from_str("[run]\ninputs = [\"logs\"]").unwrap();
        assert!(old.check().unwrap_err().to_string().contains("directory"));
    }

    #[test]
    fn defaults_print_and_read_back() {
        let text = toml::to_string(&Settings::default()).unwrap();
        let back: Settings = toml::from_str(&text).unwrap();
        assert_eq!(back, Settings::default());
    }
}
