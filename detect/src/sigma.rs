//! Sigma rules on raw events.
//!
//! Rules are parsed and evaluated by the `sigma-rust` crate (Sigma specification 2.0:
//! field modifiers `contains`, `startswith`, `endswith`, `re`, `cidr`, `all`, `windash`,
//! `base64`/`base64offset`, numeric comparisons, wildcards, keyword lists, and
//! conditions with `and`/`or`/`not`/`1 of`/`all of`). Events are the raw records as the
//! source wrote them, so rules written for CloudTrail, GitHub audit or Entra exports
//! match field names as SigmaHQ writes them (`eventName`, `action`,
//! `properties.activityDisplayName`).
//!
//! Supported log sources: `product: aws, service: cloudtrail`; `product: azure,
//! service: signinlogs | auditlogs`; `product: github, service: audit`. A rule for
//! any other log source, a rule that does not parse, or one using a feature the
//! engine lacks (correlation rules, field references) is reported at load time with
//! the file and the reason, never silently dropped.

use std::path::{Path, PathBuf};

use lineage_core::{AttributedEvent, Severity, Source};
use serde_json::json;
use sigma_rust::Rule;

use crate::Finding;

pub(crate) const NAME: &str = "sigma";

/// One loaded rule.
#[derive(Debug)]
pub struct SigmaRule {
    /// The file it came from.
    pub path: PathBuf,
    /// The source its log source maps to.
    pub source: Source,
    rule: Rule,
    /// ATT&CK ids from `attack.tNNNN` tags; leaked once per loaded rule (rules live
    /// for the whole process) so findings can carry them without allocating.
    mitre: &'static [&'static str],
}

impl SigmaRule {
    /// The rule's id, or its file name when it has none.
    pub fn id(&self) -> String {
        self.rule
            .id
            .clone()
            .unwrap_or_else(|| self.path.display().to_string())
    }

    /// The rule's title.
    pub fn title(&self) -> &str {
        &self.rule.title
    }
}

/// A rule that could not be loaded, and why.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct SigmaProblem {
    /// The file.
    pub path: PathBuf,
    /// Why it was not loaded.
    pub reason: String,
}

/// A set of rules, indexed by the source they apply to.
#[derive(Debug, Default)]
pub struct SigmaRules {
    rules: Vec<SigmaRule>,
}

fn source_of(product: Option<&str>, service: Option<&str>) -> Option<Source> {
    match (product?, service?) {
        ("aws", "cloudtrail") => Some(Source::CloudTrail),
        ("azure", "signinlogs" | "auditlogs") => Some(Source::Entra),
        ("github", "audit") => Some(Source::GitHub),
        _ => None,
    }
}

impl SigmaRules {
    /// Loads every `.yml`/`.yaml` file under `dir` (recursively). Returns the rules
    /// that loaded and a problem for every file that did not.
    pub fn load_dir(dir: &Path) -> Result<(Self, Vec<SigmaProblem>), std::io::Error> {
        let mut files = Vec::new();
        collect(dir, &mut files)?;
        files.sort();
        let mut rules = Vec::new();
        let mut problems = Vec::new();
        for path in files {
            let text = match std::fs::read_to_string(&path) {
                Ok(t) => t,
                Err(e) => {
                    problems.push(SigmaProblem {
                        path,
                        reason: format!("unreadable: {e}"),
                    });
                    continue;
                }
            };
            match Self::parse(&path, &text) {
                Ok(rule) => rules.push(rule),
                Err(reason) => problems.push(SigmaProblem { path, reason }),
            }
        }
        Ok((Self { rules }, problems))
    }

    fn parse(path: &Path, text: &str) -> Result<SigmaRule, String> {
        if text
            .lines()
            .any(|l| l.trim_start().starts_with("correlation:"))
        {
            return Err("correlation rules are not supported".into());
        }
        let rule =
            sigma_rust::rule_from_yaml(text).map_err(|e| format!("not a valid Sigma rule: {e}"))?;
        let ls = &rule.logsource;
        let source = source_of(ls.product.as_deref(), ls.service.as_deref()).ok_or_else(|| {
            format!(
                "unsupported log source product={:?} service={:?} (supported: aws/cloudtrail, azure/signinlogs, azure/auditlogs, github/audit)",
                ls.product, ls.service
            )
        })?;
        let mitre: Vec<&'static str> = rule
            .tags
            .iter()
            .flatten()
            .filter_map(|t| t.strip_prefix("attack.t"))
            .map(|t| &*Box::leak(format!("T{}", t.to_ascii_uppercase()).into_boxed_str()))
            .collect();
        let mitre: &'static [&'static str] = Box::leak(mitre.into_boxed_slice());
        Ok(SigmaRule {
            path: path.to_owned(),
            source,
            rule,
            mitre,
        })
    }

    /// The loaded rules.
    pub fn rules(&self) -> &[SigmaRule] {
        &self.rules
    }

    /// True when no rule applies to `source` (callers can skip re-reading the record).
    pub fn none_for(&self, source: Source) -> bool {
        !self.rules.iter().any(|r| r.source == source)
    }

    /// Indices of the rules that match a raw record of `source`. A record that is
    /// not a JSON object matches nothing (the parser has already dead-lettered it).
    pub fn matching(&self, source: Source, raw: &[u8]) -> Vec<u32> {
        if self.none_for(source) {
            return Vec::new();
        }
        let Ok(event) = serde_json::from_slice::<sigma_rust::Event>(raw) else {
            return Vec::new();
        };
        self.rules
            .iter()
            .enumerate()
            .filter(|(_, r)| r.source == source && r.rule.is_match(&event))
            .map(|(i, _)| i as u32)
            .collect()
    }

    /// The finding for rule `index` matching `event`.
    pub fn finding(&self, index: u32, event: &AttributedEvent) -> Option<Finding> {
        let r = self.rules.get(index as usize)?;
        // The crate's `Level` is not exported by path, but prints its variant name.
        let level = r
            .rule
            .level
            .as_ref()
            .map(|l| format!("{l:?}").to_ascii_lowercase());
        let severity = match level.as_deref() {
            Some("critical") => Severity::Critical,
            Some("high") => Severity::High,
            Some("medium") => Severity::Medium,
            _ => Severity::Low,
        };
        let who = event
            .attribution
            .root_credential
            .as_ref()
            .map(|c| c.to_string())
            .or_else(|| event.use_.principal.name.as_ref().map(|n| n.to_string()))
            .unwrap_or_else(|| "-".into());
        Some(Finding {
            detector: NAME,
            severity,
            title: format!("Sigma: {}", r.rule.title),
            summary: r
                .rule
                .description
                .clone()
                .unwrap_or_else(|| r.rule.title.clone())
                .trim()
                .to_owned(),
            dedup_key: format!("{NAME}|{}|{who}", r.id()),
            distinct: None,
            mitre: r.mitre,
            evidence: json!({
                "rule_id": r.id(),
                "rule_file": r.path.file_name().map(|f| f.to_string_lossy().to_string()),
                "author": r.rule.author,
                "action": event.use_.operation.action(),
            }),
            actions: Vec::new(),
        })
    }
}

fn collect(dir: &Path, out: &mut Vec<PathBuf>) -> Result<(), std::io::Error> {
    for entry in std::fs::read_dir(dir)? {
        let p = entry?.path();
        if p.is_dir() {
            collect(&p, out)?;
        } else if p.extension().is_some_and(|e| e == "yml" || e == "yaml") {
            out.push(p);
        }
    }
    Ok(())
}
