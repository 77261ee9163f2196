//! The `lineage replay` options for reading an archive: S3, the event-time merge,
//! a time range, and the progress display (a bar on a terminal, periodic lines
//! otherwise).

use std::io::IsTerminal;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{bail, Result};
use chrono::{DateTime, NaiveDate, Utc};
use lineage_replay::{ArchiveOptions, Progress, ProgressHook};

#[derive(Debug, clap::Args)]
pub(crate) struct ArchiveArgs {
    /// S3 endpoint for s3:// inputs instead of AWS (MinIO, LocalStack, moto);
    /// credentials and region come from the standard AWS chain (AWS_PROFILE,
    /// AWS_ACCESS_KEY_ID, instance role…). Also read from AWS_ENDPOINT_URL_S3.
    #[arg(long, value_name = "URL", env = "AWS_ENDPOINT_URL_S3")]
    s3_endpoint: Option<String>,
    /// How much older than the time in its name a file's records may be. Files are
    /// merged in event-time order with memory bounded by this window; records older
    /// than it are still replayed, out of order, and counted as late in summary.json.
    #[arg(long, value_name = "DURATION", default_value = "1h", value_parser = parse_window)]
    merge_window: chrono::Duration,
    /// Files parsed ahead of the merge (0 = four per parser thread).
    #[arg(long, default_value_t = 0, value_name = "FILES")]
    lookahead: usize,
    /// Replay uses from this time on (RFC 3339 or YYYY-MM-DD, UTC). Earlier records
    /// are still read for the lineage they teach (key issuance, owners), not alerted on.
    #[arg(long, value_name = "TIME", value_parser = parse_time)]
    since: Option<DateTime<Utc>>,
    /// Replay nothing after this time (RFC 3339 or YYYY-MM-DD, UTC; a bare date means
    /// the end of that day). Files whose names start later are not read.
    #[arg(long, value_name = "TIME", value_parser = parse_until)]
    until: Option<DateTime<Utc>>,
    /// Progress display: a bar on a terminal, a line every 10 seconds otherwise.
    #[arg(long, value_enum, default_value_t = ProgressMode::Auto)]
    progress: ProgressMode,
    /// How often to checkpoint (at most; at file boundaries): the manifest of
    /// finished files `<out>/replay-manifest.json` and the run's state under
    /// `<out>/replay-state/`, so `--resume` continues a killed replay. `off` disables.
    #[arg(long, value_name = "DURATION|off", default_value = "5m", value_parser = parse_every)]
    checkpoint_every: Every,
    /// Continue the interrupted replay whose checkpoint is in the output directory
    /// (same inputs and settings; refused otherwise). Without a checkpoint, starts over.
    #[arg(long)]
    resume: bool,
    /// Validate the CloudTrail files against the trail's digest files before
    /// replaying (as `lineage verify` does, over the same local inputs), with these
    /// public keys (`aws cloudtrail list-public-keys` output; each digest's
    /// signature from `<digest>.sig`). Revocation requests raised by a record then
    /// say whether its file validated (hash and signature); with `[response]
    /// require_validated_cloudtrail = true` only those execute automatically.
    #[arg(long, value_name = "FILE")]
    digest_public_keys: Option<std::path::PathBuf>,
}

/// A checkpoint interval, or none.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Every(Option<Duration>);

fn parse_every(s: &str) -> Result<Every, String> {
    if s.eq_ignore_ascii_case("off") || s.eq_ignore_ascii_case("never") {
        return Ok(Every(None));
    }
    humantime::parse_duration(s)
        .map(|d| Every(Some(d)))
        .map_err(|e| format!("{e}: expected a duration such as 30s, 5m, 1h, or `off`"))
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub(crate) enum ProgressMode {
    /// A bar when stderr is a terminal, else periodic lines.
    Auto,
    /// Always the bar.
    Bar,
    /// Periodic lines.
    Lines,
    /// Nothing.
    None,
}

impl ArchiveArgs {
    pub(crate) fn options(&self) -> Result<ArchiveOptions> {
        if let (Some(s), Some(u)) = (self.since, self.until) {
            if s > u {
                bail!("--since {s} is after --until {u}");
            }
        }
        let mode = match self.progress {
            ProgressMode::Auto if std::io::stderr().is_terminal() => ProgressMode::Bar,
            ProgressMode::Auto => ProgressMode::Lines,
            m => m,
        };
        Ok(ArchiveOptions {
            s3_endpoint: self.s3_endpoint.clone().filter(|s| !s.is_empty()),
            merge_window: self.merge_window,
            lookahead: self.lookahead,
            since: self.since,
            until: self.until,
            progress: progress_hook(mode),
            checkpoint_every: self.checkpoint_every.0,
            resume: self.resume,
            digest_public_keys: self.digest_public_keys.clone(),
        })
    }
}

fn progress_hook(mode: ProgressMode) -> Option<ProgressHook> {
    match mode {
        ProgressMode::None | ProgressMode::Auto => None,
        ProgressMode::Bar => {
            let bar = indicatif::ProgressBar::new(0);
            bar.set_style(
                indicatif::ProgressStyle::with_template(
                    "{spinner} [{elapsed_precise}] {wide_bar} {pos}/{len} files · {msg} · ETA {eta}",
                )
                .expect("valid template"),
            );
            let started = Instant::now();
            Some(ProgressHook(Arc::new(move |p: &Progress| {
                bar.set_length(p.files_total);
                bar.set_position(p.files_done);
                let secs = started.elapsed().as_secs_f64().max(1e-3);
                bar.set_message(format!(
                    "{} records · {:.0} records/s",
                    p.records,
                    p.records as f64 / secs
                ));
                if p.finished {
                    bar.finish_and_clear();
                }
            })))
        }
        ProgressMode::Lines => {
            let started = Instant::now();
            let last = Mutex::new(Instant::now());
            Some(ProgressHook(Arc::new(move |p: &Progress| {
                let mut last = last.lock().unwrap_or_else(|e| e.into_inner());
                if p.finished || last.elapsed() < Duration::from_secs(10) {
                    return;
                }
                *last = Instant::now();
                let secs = started.elapsed().as_secs_f64().max(1e-3);
                let done = if p.bytes_total > 0 {
                    p.bytes_done as f64 / p.bytes_total as f64
                } else {
                    p.files_done as f64 / p.files_total.max(1) as f64
                };
                let eta = if done > 0.0 {
                    format!("{:.0}s", secs * (1.0 - done) / done)
                } else {
                    "?".into()
                };
                eprintln!(
                    "replay: {}/{} files ({:.1}%), {} records, {:.0} records/s, ETA {eta}",
                    p.files_done,
                    p.files_total,
                    100.0 * done,
                    p.records,
                    p.records as f64 / secs
                );
            })))
        }
    }
}

fn parse_window(s: &str) -> Result<chrono::Duration, String> {
    let d =
        humantime::parse_duration(s).map_err(|e| format!("{e} (write e.g. 30m, 1h, 2h30m, 1d)"))?;
    chrono::Duration::from_std(d).map_err(|e| e.to_string())
}

fn parse_date_or_time(s: &str, end_of_day: bool) -> Result<DateTime<Utc>, String> {
    if let Ok(t) = DateTime::parse_from_rfc3339(s) {
        return Ok(t.with_timezone(&Utc));
    }
    let day = NaiveDate::parse_from_str(s, "%Y-%m-%d").map_err(|_| {
        format!("`{s}` is not a time: write RFC 3339 (2024-01-02T03:04:05Z) or a date (2024-01-02)")
    })?;
    let t = if end_of_day {
        day.and_hms_micro_opt(23, 59, 59, 999_999)
    } else {
        day.and_hms_opt(0, 0, 0)
    };
    Ok(t.expect("valid time of day").and_utc())
}

fn parse_time(s: &str) -> Result<DateTime<Utc>, String> {
    parse_date_or_time(s, false)
}

fn parse_until(s: &str) -> Result<DateTime<Utc>, String> {
    parse_date_or_time(s, true)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_and_windows_parse_with_clear_errors() {
        assert_eq!(parse_window("90m").unwrap(), chrono::Duration::minutes(90));
        assert!(parse_window("soon").unwrap_err().contains("30m"));
        assert_eq!(
            parse_time("2024-01-02").unwrap().to_rfc3339(),
            "2024-01-02T00:00:00+00:00"
        );
        assert_eq!(
            parse_until("2024-01-02").unwrap().timestamp(),
            parse_time("2024-01-03").unwrap().timestamp() - 1
        );
        assert_eq!(
            parse_time("2024-01-02T03:04:05+01:00")
                .unwrap()
                .to_rfc3339(),
            "2024-01-02T02:04:05+00:00"
        );
        assert!(parse_time("yesterday").unwrap_err().contains("RFC 3339"));
    }
}
