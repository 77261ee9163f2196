//! The `[alerts]` configuration: which sinks, and where undeliverable alerts wait.

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

/// Every alert sink, used all at once, and the spool shared by the HTTP ones.
///
/// ```toml
/// spool_max_bytes = 104857600
///
/// [[sinks]]
/// type = "jsonl"
/// path = "out/alerts.jsonl"
///
/// [[sinks]]
/// type = "webhook"
/// url = "https://soc.example/hooks/lineage"
/// secret_env = "LINEAGE_WEBHOOK_SECRET"
/// ```
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AlertSinksConfig {
    /// The sinks; every alert goes to each of them.
    #[serde(default)]
    pub sinks: Vec<AlertSinkConfig>,
    /// Where HTTP sinks keep the alerts they could not deliver (one JSON-lines file
    /// per sink, named after it). Default: the directory the caller passes to
    /// [`AlertFanout::build`](super::AlertFanout::build), `<out or state dir>/spool`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub spool_dir: Option<PathBuf>,
    /// Size limit of each sink's spool file (default 100 MiB). A full spool refuses
    /// further alerts with an error; it never drops old ones.
    #[serde(default = "d_spool_max_bytes")]
    pub spool_max_bytes: u64,
}

impl Default for AlertSinksConfig {
    fn default() -> Self {
        Self {
            sinks: Vec::new(),
            spool_dir: None,
            spool_max_bytes: d_spool_max_bytes(),
        }
    }
}

/// One alert sink, tagged by `type`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "kebab-case", deny_unknown_fields)]
pub enum AlertSinkConfig {
    /// Alerts as JSON lines in a rotated file.
    Jsonl(FileSinkConfig),
    /// Alerts as OCSF Detection Findings (class 2004), JSON lines in a rotated file.
    Ocsf(FileSinkConfig),
    /// Alerts as JSON POSTed to a URL, optionally signed with HMAC-SHA256.
    Webhook(WebhookConfig),
    /// A Slack-compatible incoming webhook (`{"text": …}`).
    Slack(SlackConfig),
    /// A Kafka topic: the alert's JSON as the value, its `dedup_key` as the key.
    Kafka(KafkaSinkConfig),
}

impl AlertSinkConfig {
    /// The `type` tag.
    pub fn kind(&self) -> &'static str {
        match self {
            AlertSinkConfig::Jsonl(_) => "jsonl",
            AlertSinkConfig::Ocsf(_) => "ocsf",
            AlertSinkConfig::Webhook(_) => "webhook",
            AlertSinkConfig::Slack(_) => "slack",
            AlertSinkConfig::Kafka(_) => "kafka",
        }
    }

    /// The configured name, if any.
    pub fn name(&self) -> Option<&str> {
        match self {
            AlertSinkConfig::Jsonl(c) | AlertSinkConfig::Ocsf(c) => c.name.as_deref(),
            AlertSinkConfig::Webhook(c) => c.name.as_deref(),
            AlertSinkConfig::Slack(c) => c.name.as_deref(),
            AlertSinkConfig::Kafka(c) => c.name.as_deref(),
        }
    }
}

/// A file sink (`jsonl` or `ocsf`), appended to and rotated by size.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileSinkConfig {
    /// Name in stats and logs (default: the type, then `<type>-2`, `<type>-3`…).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// The file; created with its directory if missing, appended to if present.
    pub path: PathBuf,
    /// Rotate before a write would take the file past this size (default 10 MiB):
    /// `path` becomes `path.1`, `path.1` becomes `path.2`, and so on.
    #[serde(default = "d_max_bytes")]
    pub max_bytes: u64,
    /// Rotated files to keep, `path.1` … `path.<keep>` (default 5); older ones are
    /// deleted. 0 keeps none.
    #[serde(default = "d_keep")]
    pub keep: u32,
}

/// A generic JSON webhook.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WebhookConfig {
    /// Name in stats and logs, and of its spool file (default: `webhook`, then
    /// `webhook-2`…). Set it when there are several, so spools stay matched to
    /// their sink when the list is reordered.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// `http://` or `https://` URL the alert is POSTed to.
    pub url: String,
    /// Environment variable holding the HMAC-SHA256 key; when set, each request
    /// carries `X-Lineage-Signature: sha256=<hex of HMAC(body)>`. The variable must
    /// exist and be non-empty when the sink is built.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret_env: Option<String>,
    /// Per-request timeout, connecting included (default 10 s).
    #[serde(default = "d_timeout_secs")]
    pub timeout_secs: u64,
    /// Attempts per delivery, the first included (default 5).
    #[serde(default = "d_max_attempts")]
    pub max_attempts: u32,
    /// Delay before the second attempt, doubled after each (default 500 ms, each
    /// delay capped at 30 s).
    #[serde(default = "d_backoff_ms")]
    pub backoff_ms: u64,
    /// After a delivery has failed every attempt, later alerts go straight to the
    /// spool, untried, for this long (default 30 s), so a dead receiver costs one
    /// retry cycle per period instead of one per alert; the first send after it
    /// re-sends the spool. [`flush_spool`](super::AlertFanout::flush_spool) always tries.
    #[serde(default = "d_cooldown_secs")]
    pub cooldown_secs: u64,
}

/// A Slack-compatible incoming webhook (Slack, Mattermost, Rocket.Chat…).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SlackConfig {
    /// Name in stats and logs, and of its spool file (default: `slack`, then
    /// `slack-2`…).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// The incoming-webhook URL (a secret: it is never logged).
    pub url: String,
    /// Per-request timeout, connecting included (default 10 s).
    #[serde(default = "d_timeout_secs")]
    pub timeout_secs: u64,
    /// Attempts per delivery, the first included (default 5).
    #[serde(default = "d_max_attempts")]
    pub max_attempts: u32,
    /// Delay before the second attempt, doubled after each (default 500 ms).
    #[serde(default = "d_backoff_ms")]
    pub backoff_ms: u64,
    /// As for the webhook: untried spooling for this long after a failed delivery
    /// (default 30 s).
    #[serde(default = "d_cooldown_secs")]
    pub cooldown_secs: u64,
}

/// A Kafka topic the alerts are produced to (any Kafka-protocol broker).
///
/// Each alert is one message: key = the alert's `dedup_key` (so every update of one
/// finding lands in one partition, in order, and a compacted topic keeps the
/// latest), value = the alert as JSON, headers `idempotency-key` (`<id>:<count>`,
/// as for the webhook) and `content-type: application/json`. The producer is
/// idempotent with `acks=all`; a send waits for the broker's acknowledgement. An
/// alert not acknowledged within `timeout_secs` is spooled and re-sent like the
/// HTTP sinks' (see [`AlertSinksConfig::spool_dir`]).
///
/// ```toml
/// [[sinks]]
/// type = "kafka"
/// brokers = "kafka-1.example:9093,kafka-2.example:9093"
/// topic = "lineage.alerts"
/// [sinks.librdkafka]
/// "security.protocol" = "SASL_SSL"
/// "sasl.mechanism" = "SCRAM-SHA-512"
/// "sasl.username" = "lineage"
/// "sasl.password" = "…"
/// ```
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KafkaSinkConfig {
    /// Name in stats and logs, and of its spool file (default: `kafka`, then
    /// `kafka-2`…).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Bootstrap brokers, `host:port[,host:port…]` (librdkafka `bootstrap.servers`).
    pub brokers: String,
    /// The topic (default `lineage.alerts`). It must exist unless the broker
    /// auto-creates topics.
    #[serde(default = "d_topic")]
    pub topic: String,
    /// How long librdkafka may keep trying to deliver one alert, connecting and its
    /// own retries included (default 10 s; librdkafka `message.timeout.ms`).
    #[serde(default = "d_timeout_secs")]
    pub timeout_secs: u64,
    /// As for the webhook: untried spooling for this long after a failed delivery
    /// (default 30 s).
    #[serde(default = "d_cooldown_secs")]
    pub cooldown_secs: u64,
    /// librdkafka properties passed through verbatim, applied after lineage's own
    /// (`enable.idempotence=true`, `acks=all`, `message.timeout.ms`), e.g. TLS and
    /// SASL settings. Values are never logged.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub librdkafka: BTreeMap<String, String>,
}

impl KafkaSinkConfig {
    /// A sink producing to the default topic on `brokers`.
    pub fn new(brokers: impl Into<String>) -> Self {
        Self {
            name: None,
            brokers: brokers.into(),
            topic: d_topic(),
            timeout_secs: d_timeout_secs(),
            cooldown_secs: d_cooldown_secs(),
            librdkafka: BTreeMap::new(),
        }
    }
}

fn d_topic() -> String {
    "lineage.alerts".to_owned()
}
const fn d_spool_max_bytes() -> u64 {
    100 * 1024 * 1024
}
const fn d_max_bytes() -> u64 {
    10 * 1024 * 1024
}
const fn d_keep() -> u32 {
    5
}
const fn d_timeout_secs() -> u64 {
    10
}
const fn d_max_attempts() -> u32 {
    5
}
const fn d_backoff_ms() -> u64 {
    500
}
const fn d_cooldown_secs() -> u64 {
    30
}

impl FileSinkConfig {
    /// A file sink at `path` with the default rotation.
    pub fn new(path: impl Into<PathBuf>) -> Self {
        Self {
            name: None,
            path: path.into(),
            max_bytes: d_max_bytes(),
            keep: d_keep(),
        }
    }
}

impl WebhookConfig {
    /// A webhook to `url` with the default timeout and retries, unsigned.
    pub fn new(url: impl Into<String>) -> Self {
        Self {
            name: None,
            url: url.into(),
            secret_env: None,
            timeout_secs: d_timeout_secs(),
            max_attempts: d_max_attempts(),
            backoff_ms: d_backoff_ms(),
            cooldown_secs: d_cooldown_secs(),
        }
    }
}

impl SlackConfig {
    /// A Slack webhook to `url` with the default timeout and retries.
    pub fn new(url: impl Into<String>) -> Self {
        Self {
            name: None,
            url: url.into(),
            timeout_secs: d_timeout_secs(),
            max_attempts: d_max_attempts(),
            backoff_ms: d_backoff_ms(),
            cooldown_secs: d_cooldown_secs(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kafka_sink_parses_with_defaults_and_passes_librdkafka_through() {
        let cfg: AlertSinksConfig = serde_json::from_value(serde_json::json!({
            "sinks": [
                { "type": "kafka", "brokers": "127.0.0.1:9092" },
                {
                    "type": "kafka", "name": "soc", "brokers": "a:9093,b:9093",
                    "topic": "soc.alerts", "timeout_secs": 3,
                    "librdkafka": { "security.protocol": "SASL_SSL", "sasl.mechanism": "PLAIN" }
                }
            ]
        }))
        .unwrap();
        assert_eq!(
            cfg.sinks[0],
            AlertSinkConfig::Kafka(KafkaSinkConfig::new("127.0.0.1:9092"))
        );
        let AlertSinkConfig::Kafka(k) = &cfg.sinks[0] else {
            unreachable!()
        };
        assert_eq!((k.topic.as_str(), k.timeout_secs), ("lineage.alerts", 10));
        assert_eq!(cfg.sinks[1].kind(), "kafka");
        assert_eq!(cfg.sinks[1].name(), Some("soc"));
        let AlertSinkConfig::Kafka(k) = &cfg.sinks[1] else {
            unreachable!()
        };
        assert_eq!(k.topic, "soc.alerts");
        assert_eq!(k.timeout_secs, 3);
        assert_eq!(k.librdkafka["security.protocol"], "SASL_SSL");
        assert_eq!(k.librdkafka.len(), 2);

        let unknown = serde_json::from_value::<AlertSinksConfig>(serde_json::json!({
            "sinks": [{ "type": "kafka", "brokers": "x:1", "acks": "1" }]
        }));
        assert!(unknown.is_err());
    }
}
