//! Human-readable rendering of the run summary and of alerts.

use std::fmt::Write;

use lineage_core::{Alert, RunSummary};

/// The run summary as a few aligned lines of text.
pub fn render_summary(s: &RunSummary) -> String {
    let mut out = String::new();
    let mut files = format!("{} files", s.files);
    if s.empty_files > 0 {
        let _ = write!(files, ", {} empty", s.empty_files);
    }
    if s.digest_files > 0 {
        let _ = write!(
            files,
            ", {} CloudTrail digest files not read as logs",
            s.digest_files
        );
    }
    let _ = writeln!(
        out,
        "records: {} read = {} normalized + {} dead-lettered ({files}, {:.1}s, {:.0} records/s)",
        s.read, s.normalized, s.dead_lettered, s.elapsed_secs, s.records_per_sec
    );
    for (source, c) in &s.by_source {
        let _ = writeln!(
            out,
            "  {source:<10} {} read, {} normalized, {} dead-lettered",
            c.read, c.normalized, c.dead_lettered
        );
    }
    let uses = s.attributed + s.unattributed;
    let share = if uses == 0 {
        "no credential uses".to_owned()
    } else {
        format!(
            "{:.2}% of {uses} credential uses attributed",
            s.attributed_pct
        )
    };
    let _ = writeln!(
        out,
        "attribution: {share} ({} provider-service events not counted), {} lineage facts",
        s.service_events, s.lineage_facts
    );
    if !s.by_method.is_empty() {
        let methods: Vec<String> = s
            .by_method
            .iter()
            .map(|(m, n)| format!("{m} {n}"))
            .collect();
        let _ = writeln!(out, "  by method: {}", methods.join(", "));
    }
    for u in s.top_unattributed.iter().take(5) {
        let _ = writeln!(
            out,
            "  unattributed: {} ({} uses): {}",
            u.subject, u.uses, u.reason
        );
    }
    let detectors: Vec<String> = s
        .alerts_by_detector
        .iter()
        .map(|(d, n)| format!("{d} {n}"))
        .collect();
    let _ = writeln!(
        out,
        "alerts: {}{}",
        s.alerts,
        if detectors.is_empty() {
            String::new()
        } else {
            format!(" ({})", detectors.join(", "))
        }
    );
    if s.actions_requested > 0 {
        let _ = writeln!(
            out,
            "revocations requested: {} (in actions.jsonl; nothing is executed by replay)",
            s.actions_requested
        );
    }
    out
}

/// One alert as a short block: severity, title, lineage path, summary.
pub fn render_alert(a: &Alert) -> String {
    let path: Vec<String> = a
        .lineage_path
        .iter()
        .map(|s| format!("{}:{}", s.node, s.id))
        .collect();
    let reach = a
        .blast_radius
        .as_ref()
        .map(|b| {
            format!(
                "\n    blast radius: {} credential(s) issued from the root; services {}{}",
                b.descendant_credentials,
                if b.services.is_empty() {
                    "-".to_owned()
                } else {
                    b.services.join(", ")
                },
                if b.truncated { " (and more)" } else { "" }
            )
        })
        .unwrap_or_default();
    format!(
        "[{:?}] {} (x{}, {} → {})\n    lineage: {}{reach}\n    {}\n",
        a.severity,
        a.title,
        a.count,
        a.first_seen.format("%Y-%m-%d %H:%M:%S"),
        a.last_seen.format("%H:%M:%S"),
        if path.is_empty() {
            "-".to_owned()
        } else {
            path.join(" → ")
        },
        a.summary
    )
}
