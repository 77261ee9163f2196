//! SOC alert sinks: every alert goes to each configured sink (rotated JSON-lines
//! files, OCSF files, signed webhooks, Slack-compatible webhooks, Kafka topics),
//! several at once.
//!
//! A Kafka sink is spooled like the HTTP sinks below: an alert the broker has not
//! acknowledged within `timeout_secs` (librdkafka retrying meanwhile) goes to its
//! spool and is re-sent, in order, first (see [`KafkaSinkConfig`]).
//!
//! HTTP sinks retry a failed delivery with exponential backoff; an alert that still
//! fails is appended to that sink's spool (`<spool_dir>/<name>.jsonl`) and re-sent,
//! oldest first, before the next alert or on [`AlertFanout::flush_spool`]. While a
//! sink's spool is not empty, new alerts queue behind it, so a receiver sees alerts
//! in order. Each request carries `Idempotency-Key: <alert id>:<count>`, the same
//! for every retry and re-send, so a receiver can drop repeats (which only a crash
//! between delivery and the spool rewrite, or a response lost after the receiver
//! accepted, can cause). A full spool refuses the alert with an error and a
//! `tracing::error`, and counts it in [`SinkStats::spool_refused`]; it never drops
//! older alerts. A receiver that rejects the payload itself (HTTP 400, 413, 415,
//! 422) gets no retries: the alert is set aside in `<name>.rejected.jsonl`.
//!
//! HTTP sinks run in parallel with each other and with the file sinks, so a slow or
//! dead receiver never delays delivery to the others; `send` returns once every sink
//! has delivered, spooled or failed.

mod config;
mod file;
mod http;
mod kafka;
mod spool;

use std::path::{Path, PathBuf};
use std::time::Duration;

use lineage_core::Alert;
use serde::Serialize;

use crate::SinkError;
use file::RotatingFile;
use http::{Format, HttpSettings, HttpSink, Target};
use kafka::KafkaSettings;

pub use config::{
    AlertSinkConfig, AlertSinksConfig, FileSinkConfig, KafkaSinkConfig, SlackConfig, WebhookConfig,
};
pub use http::{idempotency_key, signature, slack_text};

/// What one sink has done since it was built.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct SinkStats {
    /// The sink's name (its spool file is `<spool_dir>/<name>.jsonl`).
    pub name: String,
    /// `jsonl`, `ocsf`, `webhook`, `slack` or `kafka`.
    pub kind: String,
    /// Alerts delivered (written, for a file sink), re-sent ones included.
    pub delivered: u64,
    /// Of `delivered`, how many came out of the spool.
    pub resent: u64,
    /// Deliveries that failed every attempt (a spooled alert that fails again counts
    /// again), or file writes that failed.
    pub failed: u64,
    /// Requests repeated after a transient failure.
    pub retries: u64,
    /// Alerts appended to the spool.
    pub spooled: u64,
    /// Alerts the spool refused (full or unwritable): these were NOT kept.
    pub spool_refused: u64,
    /// Alerts the receiver rejected as a bad payload, set aside in `<name>.rejected.jsonl`.
    pub rejected: u64,
    /// Alerts in the spool now.
    pub pending: u64,
}

/// Every configured alert sink, fed together.
pub struct AlertFanout {
    files: Vec<FileSink>,
    http: Vec<HttpSink>,
    /// Config order, for [`AlertFanout::stats`].
    order: Vec<(bool, usize)>,
    spool_dir: PathBuf,
}

impl std::fmt::Debug for AlertFanout {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AlertFanout")
            .field("files", &self.files)
            .field("http", &self.http)
            .field("spool_dir", &self.spool_dir)
            .finish()
    }
}

#[derive(Debug)]
struct FileSink {
    path: PathBuf,
    ocsf: bool,
    file: RotatingFile,
    stats: SinkStats,
}

impl FileSink {
    fn send(&mut self, alert: &Alert) -> Result<(), SinkError> {
        let serialized = if self.ocsf {
            serde_json::to_vec(&crate::ocsf::detection_finding(alert))
        } else {
            serde_json::to_vec(alert)
        };
        let mut line = serialized.map_err(|source| SinkError::Serialize {
            target: self.path.display().to_string(),
            source,
        })?;
        line.push(b'\n');
        match self.file.write_line(&line) {
            Ok(()) => {
                self.stats.delivered += 1;
                Ok(())
            }
            Err(e) => {
                self.stats.failed += 1;
                tracing::error!(sink = %self.stats.name, alert = %alert.id, path = %self.path.display(), error = %e, "could not write the alert");
                Err(io_error(&self.path, e))
            }
        }
    }
}

impl AlertFanout {
    /// Opens every sink of `cfg`. `spool_dir` is where HTTP sinks spool when the
    /// configuration sets no `spool_dir` (the caller's `<out or state dir>/spool`);
    /// it is created only if there is an HTTP sink. Fails on a bad URL, a missing
    /// `secret_env` variable, a zero `max_bytes`, two sinks with one name, or a file
    /// or spool that cannot be opened.
    pub fn build(cfg: &AlertSinksConfig, spool_dir: &Path) -> Result<AlertFanout, SinkError> {
        let spool_dir = cfg
            .spool_dir
            .clone()
            .unwrap_or_else(|| spool_dir.to_owned());
        let mut fanout = AlertFanout {
            files: Vec::new(),
            http: Vec::new(),
            order: Vec::new(),
            spool_dir: spool_dir.clone(),
        };
        let mut names: Vec<String> = Vec::new();
        for sink in &cfg.sinks {
            let kind = sink.kind();
            let name = match sink.name() {
                Some(n) => {
                    if n.is_empty()
                        || !n
                            .chars()
                            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
                        || n.starts_with('.')
                    {
                        return Err(config_error(format!(
                            "alert sink name {n:?}: use letters, digits, '-', '_' and '.' (it names the spool file)"
                        )));
                    }
                    n.to_owned()
                }
                None => {
                    let mut n = kind.to_owned();
                    let mut i = 1;
                    while names.contains(&n) {
                        i += 1;
                        n = format!("{kind}-{i}");
                    }
                    n
                }
            };
            if names.contains(&name) {
                return Err(config_error(format!(
                    "two alert sinks are named {name:?}; give each a distinct `name`"
                )));
            }
            names.push(name.clone());
            match sink {
                AlertSinkConfig::Jsonl(c) | AlertSinkConfig::Ocsf(c) => {
                    if c.max_bytes == 0 {
                        return Err(config_error(format!(
                            "alert sink {name}: max_bytes must be > 0"
                        )));
                    }
                    let file = RotatingFile::open(&c.path, c.max_bytes, c.keep)
                        .map_err(|e| io_error(&c.path, e))?;
                    fanout.order.push((false, fanout.files.len()));
                    fanout.files.push(FileSink {
                        path: c.path.clone(),
                        ocsf: matches!(sink, AlertSinkConfig::Ocsf(_)),
                        file,
                        stats: SinkStats {
                            name,
                            kind: kind.to_owned(),
                            ..SinkStats::default()
                        },
                    });
                }
                AlertSinkConfig::Webhook(c) => {
                    let secret = match &c.secret_env {
                        None => None,
                        Some(var) => match std::env::var(var) {
                            Ok(v) if !v.is_empty() => Some(v.into_bytes()),
                            _ => {
                                return Err(config_error(format!(
                                    "alert sink {name}: secret_env {var} is not set (or empty)"
                                )))
                            }
                        },
                    };
                    let settings = HttpSettings {
                        name,
                        target: Target::Http {
                            format: Format::Webhook,
                            url: c.url.clone(),
                            secret,
                        },
                        timeout: Duration::from_secs(c.timeout_secs),
                        max_attempts: c.max_attempts,
                        backoff: Duration::from_millis(c.backoff_ms),
                        cooldown: Duration::from_secs(c.cooldown_secs),
                        spool_dir: spool_dir.clone(),
                        spool_max_bytes: cfg.spool_max_bytes,
                    };
                    fanout.add_http(settings, kind, c.timeout_secs, c.max_attempts)?;
                }
                AlertSinkConfig::Slack(c) => {
                    let settings = HttpSettings {
                        name,
                        target: Target::Http {
                            format: Format::Slack,
                            url: c.url.clone(),
                            secret: None,
                        },
                        timeout: Duration::from_secs(c.timeout_secs),
                        max_attempts: c.max_attempts,
                        backoff: Duration::from_millis(c.backoff_ms),
                        cooldown: Duration::from_secs(c.cooldown_secs),
                        spool_dir: spool_dir.clone(),
                        spool_max_bytes: cfg.spool_max_bytes,
                    };
                    fanout.add_http(settings, kind, c.timeout_secs, c.max_attempts)?;
                }
                AlertSinkConfig::Kafka(c) => {
                    if c.brokers.trim().is_empty() || c.topic.is_empty() {
                        return Err(config_error(format!(
                            "alert sink {name}: brokers and topic must not be empty"
                        )));
                    }
                    if c.timeout_secs == 0 {
                        return Err(config_error(format!(
                            "alert sink {name}: timeout_secs must be > 0"
                        )));
                    }
                    let settings = HttpSettings {
                        name: name.clone(),
                        target: Target::Kafka(KafkaSettings {
                            name,
                            brokers: c.brokers.clone(),
                            topic: c.topic.clone(),
                            timeout: Duration::from_secs(c.timeout_secs),
                            librdkafka: c.librdkafka.clone(),
                        }),
                        timeout: Duration::from_secs(c.timeout_secs),
                        // librdkafka retries within its message timeout.
                        max_attempts: 1,
                        backoff: Duration::ZERO,
                        cooldown: Duration::from_secs(c.cooldown_secs),
                        spool_dir: spool_dir.clone(),
                        spool_max_bytes: cfg.spool_max_bytes,
                    };
                    std::fs::create_dir_all(&spool_dir).map_err(|e| io_error(&spool_dir, e))?;
                    let sink = HttpSink::new(settings, kind)?;
                    fanout.order.push((true, fanout.http.len()));
                    fanout.http.push(sink);
                }
            }
        }
        Ok(fanout)
    }

    fn add_http(
        &mut self,
        s: HttpSettings,
        kind: &str,
        timeout_secs: u64,
        max_attempts: u32,
    ) -> Result<(), SinkError> {
        let url = match &s.target {
            Target::Http { url, .. } => url.as_str(),
            Target::Kafka(_) => "",
        };
        let scheme_ok = url
            .get(..8)
            .is_some_and(|p| p.eq_ignore_ascii_case("https://"))
            || url
                .get(..7)
                .is_some_and(|p| p.eq_ignore_ascii_case("http://"));
        if !scheme_ok || url.len() <= 8 {
            // The URL itself is not quoted: a Slack webhook URL is a credential.
            return Err(config_error(format!(
                "alert sink {}: url must start with http:// or https://",
                s.name
            )));
        }
        if timeout_secs == 0 || max_attempts == 0 {
            return Err(config_error(format!(
                "alert sink {}: timeout_secs and max_attempts must be > 0",
                s.name
            )));
        }
        std::fs::create_dir_all(&s.spool_dir).map_err(|e| io_error(&s.spool_dir, e))?;
        let sink = HttpSink::new(s, kind)?;
        self.order.push((true, self.http.len()));
        self.http.push(sink);
        Ok(())
    }

    /// Sends `alert` to every sink. An HTTP sink first re-sends its spool; a
    /// delivery that fails every attempt is spooled. Returns the first error of any
    /// sink (a file that could not be written, an alert the spool refused) after
    /// every sink has had the alert: an `Ok` means each sink delivered or spooled it.
    pub fn send(&mut self, alert: &Alert) -> Result<(), SinkError> {
        let (files, http) = (&mut self.files, &mut self.http);
        let (http_results, file_results) = if http.is_empty() {
            (
                Vec::new(),
                files.iter_mut().map(|f| f.send(alert)).collect(),
            )
        } else {
            std::thread::scope(|s| {
                let handles: Vec<_> = http
                    .iter_mut()
                    .map(|h| s.spawn(move || h.send(alert)))
                    .collect();
                let file_results: Vec<_> = files.iter_mut().map(|f| f.send(alert)).collect();
                let http_results: Vec<_> = handles.into_iter().map(join).collect();
                (http_results, file_results)
            })
        };
        first_error(file_results.into_iter().chain(http_results))
    }

    /// Re-sends every HTTP sink's spool now (in order, with retries, stopping at a
    /// sink's first alert that still fails), ignoring any cooldown; returns how many
    /// alerts were delivered. Call it before exiting so nothing waits in a spool
    /// that could have gone out.
    pub fn flush_spool(&mut self) -> Result<u64, SinkError> {
        let results: Vec<Result<u64, SinkError>> = match self.http.len() {
            0 => Vec::new(),
            1 => vec![self.http[0].flush()],
            _ => std::thread::scope(|s| {
                let handles: Vec<_> = self
                    .http
                    .iter_mut()
                    .map(|h| s.spawn(move || h.flush()))
                    .collect();
                handles.into_iter().map(join).collect()
            }),
        };
        let mut total = 0;
        let mut err = None;
        for r in results {
            match r {
                Ok(n) => total += n,
                Err(e) => {
                    err.get_or_insert(e);
                }
            }
        }
        err.map_or(Ok(total), Err)
    }

    /// Alerts waiting in all spools.
    pub fn pending(&self) -> u64 {
        self.http.iter().map(HttpSink::pending).sum()
    }

    /// The directory the HTTP sinks spool to.
    pub fn spool_dir(&self) -> &Path {
        &self.spool_dir
    }

    /// Per-sink counters, in configuration order.
    pub fn stats(&self) -> Vec<SinkStats> {
        self.order
            .iter()
            .map(|&(is_http, i)| {
                if is_http {
                    let h = &self.http[i];
                    SinkStats {
                        pending: h.pending(),
                        ..h.stats.clone()
                    }
                } else {
                    self.files[i].stats.clone()
                }
            })
            .collect()
    }

    /// True when no sink is configured.
    pub fn is_empty(&self) -> bool {
        self.order.is_empty()
    }
}

fn join<T>(h: std::thread::ScopedJoinHandle<'_, Result<T, SinkError>>) -> Result<T, SinkError> {
    h.join().unwrap_or_else(|_| {
        Err(SinkError::Io {
            target: "alert sink".into(),
            source: std::io::Error::other("an alert sink thread panicked"),
        })
    })
}

fn first_error(results: impl IntoIterator<Item = Result<(), SinkError>>) -> Result<(), SinkError> {
    let mut err = None;
    for r in results {
        if let Err(e) = r {
            err.get_or_insert(e);
        }
    }
    err.map_or(Ok(()), Err)
}

pub(crate) fn io_error(path: &Path, source: std::io::Error) -> SinkError {
    SinkError::Io {
        target: path.display().to_string(),
        source,
    }
}

pub(crate) fn config_error(msg: String) -> SinkError {
    SinkError::Io {
        target: "alert sink configuration".into(),
        source: std::io::Error::new(std::io::ErrorKind::InvalidInput, msg),
    }
}
