//! Shared HTTP logic of the API pollers (GitHub, Entra): retries with exponential
//! backoff on 5xx and transport errors, rate-limit waits (`Retry-After`,
//! `x-ratelimit-remaining` / `x-ratelimit-reset`), `Link` header parsing, and a
//! [`Secret`] wrapper that keeps tokens out of logs and `Debug` output.

use std::io::Read;
use std::time::{Duration, Instant};

use super::{ConnectError, ConnectorStats};

/// How often and how long to retry.
#[derive(Clone, Debug)]
pub struct RetryPolicy {
    /// Attempts per request, rate-limit waits included.
    pub max_attempts: u32,
    /// First backoff after a server error; doubles each time.
    pub initial_backoff: Duration,
    /// Longest backoff between two attempts.
    pub max_backoff: Duration,
    /// Longest single wait for a rate limit to reset (longer resets are capped, then retried).
    pub max_rate_limit_wait: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            max_attempts: 8,
            initial_backoff: Duration::from_millis(500),
            max_backoff: Duration::from_secs(30),
            max_rate_limit_wait: Duration::from_secs(15 * 60),
        }
    }
}

impl RetryPolicy {
    /// The backoff before attempt `attempt + 1` (attempt counts from 1).
    pub fn backoff(&self, attempt: u32) -> Duration {
        let factor = 1u32 << attempt.saturating_sub(1).min(16);
        self.initial_backoff
            .saturating_mul(factor)
            .min(self.max_backoff)
    }
}

/// A secret (token, client secret): never printed, never serialized.
#[derive(Clone)]
pub struct Secret(String);

impl Secret {
    /// Wraps a secret value (surrounding whitespace, e.g. a file's newline, is trimmed).
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into().trim().to_owned())
    }

    /// Reads a secret from the environment variable `var` or the file `file`.
    pub fn from_env_or_file(
        var: Option<&str>,
        file: Option<&std::path::Path>,
    ) -> Result<Self, ConnectError> {
        if let Some(file) = file {
            let text = std::fs::read_to_string(file)
                .map_err(|e| ConnectError::Io(format!("reading {}", file.display()), e))?;
            let s = Self::new(text);
            if s.0.is_empty() {
                return Err(ConnectError::Config(format!("{} is empty", file.display())));
            }
            return Ok(s);
        }
        if let Some(var) = var {
            if let Some(v) = std::env::var(var).ok().filter(|v| !v.trim().is_empty()) {
                return Ok(Self::new(v));
            }
            return Err(ConnectError::Config(format!(
                "no secret: set ${var} or give a file"
            )));
        }
        Err(ConnectError::Config("no secret given".into()))
    }

    /// The value, for building a request header.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(<redacted>)")
    }
}

/// A successful response: status, the headers the pollers use, the body.
#[derive(Clone, Debug)]
pub struct Fetched {
    /// HTTP status (2xx).
    pub status: u16,
    /// The `Link` header, if any.
    pub link: Option<String>,
    /// The body.
    pub body: Vec<u8>,
}

/// A blocking HTTP client with the retry and rate-limit rules above.
pub struct HttpClient {
    agent: ureq::Agent,
    retry: RetryPolicy,
    /// A primary rate limit was used up: wait until then before the next request.
    pause_until: Option<Instant>,
}

impl HttpClient {
    /// A client with a 30 s timeout.
    pub fn new(retry: RetryPolicy) -> Self {
        Self {
            agent: ureq::AgentBuilder::new()
                .timeout(Duration::from_secs(30))
                .user_agent(concat!("lineage/", env!("CARGO_PKG_VERSION")))
                .build(),
            retry,
            pause_until: None,
        }
    }

    /// The underlying agent, to build requests.
    pub fn agent(&self) -> &ureq::Agent {
        &self.agent
    }

    /// Sends the request `make` builds (boxing ureq's large error), retrying per the policy. `what` names the
    /// request in logs and errors (never include secrets in it).
    pub fn send(
        &mut self,
        what: &str,
        stats: &mut ConnectorStats,
        make: impl Fn(&ureq::Agent) -> Result<ureq::Response, Box<ureq::Error>>,
    ) -> Result<Fetched, ConnectError> {
        let mut last = String::new();
        for attempt in 1..=self.retry.max_attempts {
            if let Some(until) = self.pause_until.take() {
                let now = Instant::now();
                if until > now {
                    tracing::info!(
                        what,
                        wait_ms = (until - now).as_millis() as u64,
                        "rate limit used up; waiting for reset"
                    );
                    std::thread::sleep(until - now);
                }
            }
            let wait = match make(&self.agent).map_err(|e| *e) {
                Ok(resp) => {
                    if header_u64(&resp, "x-ratelimit-remaining") == Some(0) {
                        let wait = reset_wait(&resp).unwrap_or(self.retry.initial_backoff);
                        self.pause_until =
                            Some(Instant::now() + wait.min(self.retry.max_rate_limit_wait));
                    }
                    let status = resp.status();
                    let link = resp.header("link").map(str::to_owned);
                    let mut body = Vec::new();
                    match resp.into_reader().read_to_end(&mut body) {
                        Ok(_) => return Ok(Fetched { status, link, body }),
                        Err(e) => {
                            last = format!("{what}: reading the body: {e}");
                            stats.retried += 1;
                            self.retry.backoff(attempt)
                        }
                    }
                }
                Err(ureq::Error::Status(code, resp)) => {
                    let retry_after = header_u64(&resp, "retry-after").map(Duration::from_secs);
                    let exhausted = header_u64(&resp, "x-ratelimit-remaining") == Some(0);
                    let reset = reset_wait(&resp);
                    let body = resp.into_string().unwrap_or_default();
                    let snippet: String = body.chars().take(300).collect();
                    last = format!("{what}: HTTP {code}: {snippet}");
                    if code == 429 || (code == 403 && (retry_after.is_some() || exhausted)) {
                        stats.throttled += 1;
                        let wait = retry_after
                            .or(if exhausted { reset } else { None })
                            .unwrap_or_else(|| {
                                self.retry.backoff(attempt).max(Duration::from_secs(60))
                            })
                            .min(self.retry.max_rate_limit_wait);
                        tracing::warn!(
                            what,
                            code,
                            wait_ms = wait.as_millis() as u64,
                            "rate limited; waiting"
                        );
                        wait
                    } else if code >= 500 || code == 408 {
                        stats.retried += 1;
                        let wait = retry_after.unwrap_or_else(|| self.retry.backoff(attempt));
                        tracing::warn!(
                            what,
                            code,
                            wait_ms = wait.as_millis() as u64,
                            "server error; retrying"
                        );
                        wait
                    } else {
                        return Err(ConnectError::Status(code, last));
                    }
                }
                Err(e) => {
                    stats.retried += 1;
                    last = format!("{what}: {e}");
                    tracing::warn!(what, error = %e, "request failed; retrying");
                    self.retry.backoff(attempt)
                }
            };
            if attempt < self.retry.max_attempts {
                std::thread::sleep(wait);
            }
        }
        Err(ConnectError::RetriesExhausted {
            attempts: self.retry.max_attempts,
            last,
        })
    }
}

fn header_u64(resp: &ureq::Response, name: &str) -> Option<u64> {
    resp.header(name)?.trim().parse().ok()
}

/// Time until `x-ratelimit-reset` (epoch seconds).
fn reset_wait(resp: &ureq::Response) -> Option<Duration> {
    let reset = header_u64(resp, "x-ratelimit-reset")?;
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .ok()?
        .as_secs();
    Some(Duration::from_secs(reset.saturating_sub(now).max(1)))
}

/// The `rel="next"` URL of a `Link` header.
pub fn link_next(link: &str) -> Option<String> {
    link.split(',').find_map(|part| {
        let (url, params) = part.split_once(';')?;
        let is_next = params
            .split(';')
            .any(|p| p.trim().replace(' ', "") == "rel=\"next\"");
        is_next.then(|| {
            url.trim()
                .trim_start_matches('<')
                .trim_end_matches('>')
                .to_owned()
        })
    })
}

/// The decoded value of query parameter `name` in `url`.
pub fn query_param(url: &str, name: &str) -> Option<String> {
    let query = url.split_once('?')?.1;
    query.split('&').find_map(|kv| {
        let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
        let k = percent_encoding::percent_decode_str(k).decode_utf8_lossy();
        (k == name).then(|| {
            percent_encoding::percent_decode_str(&v.replace('+', " "))
                .decode_utf8_lossy()
                .into_owned()
        })
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_the_next_link_and_its_cursor() {
        let link = r#"<https://api.github.com/orgs/o/audit-log?per_page=2&after=MS42%3D&before=>; rel="next", <https://api.github.com/orgs/o/audit-log?before=X>; rel="prev""#;
        let next = link_next(link).unwrap();
        assert_eq!(query_param(&next, "after").as_deref(), Some("MS42="));
        assert_eq!(link_next(r#"<https://x/?before=1>; rel="prev""#), None);
    }

    #[test]
    fn secrets_do_not_print() {
        let s = Secret::new("ghp_supersecret\n");
        assert_eq!(s.expose(), "ghp_supersecret");
        assert!(!format!("{s:?}").contains("supersecret"));
    }

    #[test]
    fn backoff_doubles_up_to_the_cap() {
        let p = RetryPolicy {
            max_attempts: 5,
            initial_backoff: Duration::from_millis(100),
            max_backoff: Duration::from_millis(350),
            max_rate_limit_wait: Duration::from_secs(1),
        };
        assert_eq!(p.backoff(1), Duration::from_millis(100));
        assert_eq!(p.backoff(2), Duration::from_millis(200));
        assert_eq!(p.backoff(3), Duration::from_millis(350));
    }
}
