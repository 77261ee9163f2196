//! Remote alert sinks (generic webhook, Slack-compatible, Kafka): retries with
//! exponential backoff, then an on-disk spool re-sent in order. The spooling is the
//! same for every transport; [`Transport`] is what differs.

use std::io::Read;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use hmac::{Hmac, Mac};
use lineage_core::Alert;
use sha2::Sha256;

use super::kafka::{KafkaSettings, KafkaTransport};
use super::spool::{Spool, SpoolError};
use super::{io_error, SinkStats};
use crate::SinkError;

/// Longest single backoff delay.
const MAX_DELAY: Duration = Duration::from_secs(30);
/// Most of a response body read (and discarded) so the connection can be reused.
const MAX_DRAIN: u64 = 64 * 1024;

/// What the request body looks like.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Format {
    /// The alert itself as JSON.
    Webhook,
    /// `{"text": "<SEVERITY> <title>\n<lineage path>\n<summary>"}`.
    Slack,
}

/// How one delivery failed.
#[derive(Debug)]
pub(crate) enum Failure {
    /// Worth retrying later: a transport error, a timeout, a 5xx, a 429, any other
    /// non-2xx that is not a payload rejection.
    Transient(String),
    /// The receiver rejected this payload (400, 413, 415, 422): the same bytes will
    /// never be accepted, so it is set aside instead of blocking the spool.
    Rejected(String),
}

/// Where a remote sink delivers.
pub(crate) enum Target {
    /// POST to a URL.
    Http {
        format: Format,
        url: String,
        secret: Option<Vec<u8>>,
    },
    /// Produce to a Kafka topic.
    Kafka(KafkaSettings),
}

/// How a built sink delivers.
enum Transport {
    Http {
        format: Format,
        url: String,
        secret: Option<Vec<u8>>,
        agent: ureq::Agent,
    },
    Kafka(Box<KafkaTransport>),
}

/// The settings a remote sink is built from.
pub(crate) struct HttpSettings {
    pub(crate) name: String,
    pub(crate) target: Target,
    pub(crate) timeout: Duration,
    pub(crate) max_attempts: u32,
    pub(crate) backoff: Duration,
    pub(crate) cooldown: Duration,
    pub(crate) spool_dir: PathBuf,
    pub(crate) spool_max_bytes: u64,
}

/// One webhook, Slack or Kafka sink with its spool.
pub(crate) struct HttpSink {
    name: String,
    transport: Transport,
    max_attempts: u32,
    backoff: Duration,
    cooldown: Duration,
    /// When the last delivery failed every attempt, while the spool is not empty.
    down_since: Option<Instant>,
    spool: Spool,
    rejected: Spool,
    corrupt: PathBuf,
    pub(crate) stats: SinkStats,
}

impl std::fmt::Debug for HttpSink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Neither the URL (Slack's carries its token) nor the secret, nor the
        // librdkafka properties (SASL credentials).
        let mut d = f.debug_struct("HttpSink");
        d.field("name", &self.name);
        match &self.transport {
            Transport::Http { format, secret, .. } => {
                d.field("format", format).field("signed", &secret.is_some())
            }
            Transport::Kafka(k) => d.field("brokers", &k.brokers()).field("topic", &k.topic()),
        };
        d.field("spool", &self.spool.path()).finish()
    }
}

impl HttpSink {
    pub(crate) fn new(s: HttpSettings, kind: &str) -> Result<Self, SinkError> {
        let spool_path = s.spool_dir.join(format!("{}.jsonl", s.name));
        let rejected_path = s.spool_dir.join(format!("{}.rejected.jsonl", s.name));
        let spool = Spool::open(spool_path.clone(), s.spool_max_bytes)
            .map_err(|e| io_error(&spool_path, e))?;
        let rejected = Spool::open(rejected_path.clone(), s.spool_max_bytes)
            .map_err(|e| io_error(&rejected_path, e))?;
        if spool.pending() > 0 {
            tracing::warn!(
                sink = %s.name,
                pending = spool.pending(),
                spool = %spool_path.display(),
                "alerts left in the spool by an earlier run; they are re-sent first"
            );
        }
        let transport = match s.target {
            Target::Http {
                format,
                url,
                secret,
            } => Transport::Http {
                format,
                url,
                secret,
                agent: ureq::AgentBuilder::new()
                    .timeout(s.timeout)
                    .timeout_connect(s.timeout)
                    .redirects(0)
                    .user_agent(concat!("lineage/", env!("CARGO_PKG_VERSION")))
                    .build(),
            },
            Target::Kafka(k) => {
                Transport::Kafka(Box::new(KafkaTransport::new(k).map_err(|e| {
                    super::config_error(format!("alert sink {}: {e}", s.name))
                })?))
            }
        };
        let stats = SinkStats {
            name: s.name.clone(),
            kind: kind.to_owned(),
            pending: spool.pending(),
            ..SinkStats::default()
        };
        Ok(Self {
            corrupt: s.spool_dir.join(format!("{}.corrupt", s.name)),
            name: s.name,
            transport,
            max_attempts: s.max_attempts.max(1),
            backoff: s.backoff,
            cooldown: s.cooldown,
            down_since: None,
            spool,
            rejected,
            stats,
        })
    }

    /// Alerts waiting in the spool.
    pub(crate) fn pending(&self) -> u64 {
        self.spool.pending()
    }

    /// Delivers `alert`, after re-sending the spool. While anything is still spooled
    /// (the receiver is down) the alert joins the spool, behind the older ones, so
    /// the receiver sees alerts in order.
    pub(crate) fn send(&mut self, alert: &Alert) -> Result<(), SinkError> {
        let line = serde_json::to_vec(alert).map_err(|source| SinkError::Serialize {
            target: self.name.clone(),
            source,
        })?;
        let cooling = self
            .down_since
            .is_some_and(|t| t.elapsed() < self.cooldown && self.spool.pending() > 0);
        let flushed = if cooling { Ok(0) } else { self.flush() };
        if flushed.is_err() || self.spool.pending() > 0 {
            let spooled = self.spool_line(&line, &alert.id);
            return flushed.and(spooled);
        }
        match self.deliver(alert) {
            Ok(()) => {
                self.stats.delivered += 1;
                Ok(())
            }
            Err(Failure::Rejected(why)) => {
                self.stats.failed += 1;
                self.reject(&line, &alert.id, &why)
            }
            Err(Failure::Transient(why)) => {
                self.stats.failed += 1;
                self.down_since = Some(Instant::now());
                tracing::warn!(sink = %self.name, alert = %alert.id, %why, attempts = self.max_attempts, "alert not delivered; spooling it");
                self.spool_line(&line, &alert.id)
            }
        }
    }

    /// Re-sends the spool in order, each alert with the usual retries, and stops at
    /// the first that still fails. What was delivered (or set aside as rejected) is
    /// removed by rewriting the spool atomically. Returns how many were delivered.
    pub(crate) fn flush(&mut self) -> Result<u64, SinkError> {
        if self.spool.pending() == 0 {
            return Ok(0);
        }
        let path = self.spool.path().to_owned();
        let lines = self.spool.load().map_err(|e| io_error(&path, e))?;
        let mut remaining: Vec<Vec<u8>> = Vec::new();
        let mut resent = 0;
        let mut first_err: Option<SinkError> = None;
        let mut changed = false;
        for (i, line) in lines.iter().enumerate() {
            let alert: Alert = match serde_json::from_slice(line) {
                Ok(a) => a,
                Err(e) => {
                    // A torn last line after a crash, or a hand edit: keep it for a person.
                    tracing::error!(sink = %self.name, spool = %path.display(), error = %e, corrupt = %self.corrupt.display(), "unreadable line in the spool; moved aside");
                    match append_raw(&self.corrupt, line) {
                        Ok(()) => changed = true,
                        Err(e) => {
                            remaining.push(line.clone());
                            first_err.get_or_insert(io_error(&self.corrupt, e));
                        }
                    }
                    continue;
                }
            };
            match self.deliver(&alert) {
                Ok(()) => {
                    self.stats.delivered += 1;
                    self.stats.resent += 1;
                    resent += 1;
                    changed = true;
                }
                Err(Failure::Rejected(why)) => {
                    self.stats.failed += 1;
                    match self.reject(line, &alert.id, &why) {
                        Ok(()) => changed = true,
                        Err(e) => {
                            remaining.push(line.clone());
                            first_err.get_or_insert(e);
                        }
                    }
                }
                Err(Failure::Transient(why)) => {
                    self.stats.failed += 1;
                    tracing::warn!(sink = %self.name, alert = %alert.id, %why, pending = lines.len() - i, "spooled alert still not delivered; keeping the spool");
                    remaining.extend(lines[i..].iter().cloned());
                    break;
                }
            }
        }
        if changed {
            if let Err(e) = self.spool.rewrite(&remaining) {
                // The delivered ones stay spooled and will be sent again; their
                // Idempotency-Key lets the receiver drop the repeats.
                tracing::error!(sink = %self.name, spool = %path.display(), error = %e, "could not rewrite the spool");
                first_err.get_or_insert(io_error(&path, e));
            }
        }
        self.down_since = (self.spool.pending() > 0).then(Instant::now);
        self.stats.pending = self.spool.pending();
        match first_err {
            Some(e) => Err(e),
            None => Ok(resent),
        }
    }

    fn spool_line(&mut self, line: &[u8], id: &str) -> Result<(), SinkError> {
        let path = self.spool.path().to_owned();
        let r = self.spool.append(line);
        self.stats.pending = self.spool.pending();
        match r {
            Ok(()) => {
                self.stats.spooled += 1;
                Ok(())
            }
            Err(e) => {
                self.stats.spool_refused += 1;
                tracing::error!(sink = %self.name, alert = %id, spool = %path.display(), error = %e, "ALERT NOT SPOOLED: the receiver is unreachable and the spool refused it");
                Err(spool_error(&path, id, e))
            }
        }
    }

    fn reject(&mut self, line: &[u8], id: &str, why: &str) -> Result<(), SinkError> {
        let path = self.rejected.path().to_owned();
        tracing::error!(sink = %self.name, alert = %id, %why, file = %path.display(), "receiver rejected the alert; set aside, not retried");
        match self.rejected.append(line) {
            Ok(()) => {
                self.stats.rejected += 1;
                Ok(())
            }
            Err(e) => {
                self.stats.spool_refused += 1;
                tracing::error!(sink = %self.name, alert = %id, file = %path.display(), error = %e, "ALERT LOST: rejected by the receiver and could not be set aside");
                Err(spool_error(&path, id, e))
            }
        }
    }

    /// One delivery: up to `max_attempts` requests with exponential backoff between them.
    fn deliver(&mut self, alert: &Alert) -> Result<(), Failure> {
        let body = self
            .body(alert)
            .map_err(|e| Failure::Rejected(e.to_string()))?;
        let key = idempotency_key(alert);
        let signature = match &self.transport {
            Transport::Http { secret, .. } => secret.as_deref().map(|s| signature(s, &body)),
            Transport::Kafka(_) => None,
        };
        let mut attempt = 1;
        loop {
            let once = match &mut self.transport {
                Transport::Http { url, agent, .. } => {
                    post_once(agent, url, &body, &key, signature.as_deref())
                }
                Transport::Kafka(k) => k.deliver(alert, &body),
            };
            match once {
                Ok(()) => return Ok(()),
                Err(Failure::Transient(why)) if attempt < self.max_attempts => {
                    let delay = backoff_delay(self.backoff, attempt);
                    tracing::debug!(sink = %self.name, alert = %alert.id, attempt, %why, ?delay, "delivery failed, retrying");
                    self.stats.retries += 1;
                    std::thread::sleep(delay);
                    attempt += 1;
                }
                Err(e) => return Err(e),
            }
        }
    }

    fn body(&self, alert: &Alert) -> Result<Vec<u8>, serde_json::Error> {
        match &self.transport {
            Transport::Http {
                format: Format::Slack,
                ..
            } => serde_json::to_vec(&serde_json::json!({ "text": slack_text(alert) })),
            _ => serde_json::to_vec(alert),
        }
    }
}

fn post_once(
    agent: &ureq::Agent,
    url: &str,
    body: &[u8],
    key: &str,
    signature: Option<&str>,
) -> Result<(), Failure> {
    let mut req = agent
        .post(url)
        .set("Content-Type", "application/json")
        .set("Idempotency-Key", key);
    if let Some(sig) = signature {
        req = req.set("X-Lineage-Signature", sig);
    }
    // Errors are described without the URL: a Slack webhook URL is a credential.
    match req.send_bytes(body) {
        Ok(resp) => {
            let status = resp.status();
            drain(resp);
            if (200..300).contains(&status) {
                Ok(())
            } else {
                Err(Failure::Transient(format!("HTTP {status}")))
            }
        }
        Err(ureq::Error::Status(status, resp)) => {
            drain(resp);
            if matches!(status, 400 | 413 | 415 | 422) {
                Err(Failure::Rejected(format!("HTTP {status}")))
            } else {
                Err(Failure::Transient(format!("HTTP {status}")))
            }
        }
        Err(ureq::Error::Transport(t)) => Err(Failure::Transient(match t.message() {
            Some(m) => format!("{}: {m}", t.kind()),
            None => t.kind().to_string(),
        })),
    }
}

fn drain(resp: ureq::Response) {
    let _ = std::io::copy(
        &mut resp.into_reader().take(MAX_DRAIN),
        &mut std::io::sink(),
    );
}

fn append_raw(path: &std::path::Path, line: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)?;
    let mut buf = line.to_vec();
    buf.push(b'\n');
    f.write_all(&buf)
}

fn spool_error(path: &std::path::Path, id: &str, e: SpoolError) -> SinkError {
    let source = match e {
        SpoolError::Io(e) => e,
        full @ SpoolError::Full { .. } => std::io::Error::other(format!(
            "{full}: alert {id} was refused (raise spool_max_bytes or bring the receiver back)"
        )),
    };
    io_error(path, source)
}

/// `Idempotency-Key`: the alert id and its event count. The same alert state always
/// gets the same key, retries and spool re-sends included; an alert that grew
/// (more events folded in) is a new delivery.
pub fn idempotency_key(alert: &Alert) -> String {
    format!("{}:{}", alert.id, alert.count)
}

/// `X-Lineage-Signature` value: `sha256=` and the hex HMAC-SHA256 of `body` under `secret`.
pub fn signature(secret: &[u8], body: &[u8]) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret).expect("HMAC takes a key of any length");
    mac.update(body);
    format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
}

/// The Slack message: `<SEVERITY> <title>`, the lineage path, the summary. `&`, `<`
/// and `>` are escaped as Slack requires, so alert text (which can carry names an
/// attacker chose) cannot form links or `<!channel>` mentions.
pub fn slack_text(alert: &Alert) -> String {
    let severity = format!("{:?}", alert.severity).to_uppercase();
    let path = if alert.lineage_path.is_empty() {
        "(no lineage path)".to_owned()
    } else {
        alert
            .lineage_path
            .iter()
            .map(|s| format!("{} {}", s.node, s.id))
            .collect::<Vec<_>>()
            .join(" → ")
    };
    let text = format!("{severity} {}\n{path}\n{}", alert.title, alert.summary);
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

fn backoff_delay(base: Duration, attempt: u32) -> Duration {
    let factor = 1u32
        .checked_shl(attempt.saturating_sub(1))
        .unwrap_or(u32::MAX);
    base.saturating_mul(factor).min(MAX_DELAY)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_and_is_capped() {
        let b = Duration::from_millis(500);
        assert_eq!(backoff_delay(b, 1), Duration::from_millis(500));
        assert_eq!(backoff_delay(b, 2), Duration::from_millis(1000));
        assert_eq!(backoff_delay(b, 4), Duration::from_millis(4000));
        assert_eq!(backoff_delay(b, 40), MAX_DELAY);
    }

    #[test]
    fn signature_matches_a_known_vector() {
        // RFC 4231 test case 2.
        assert_eq!(
            signature(b"Jefe", b"what do ya want for nothing?"),
            "sha256=5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
    }
}
