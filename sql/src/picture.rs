//! Lineage pictures (`lineage graph show`): the lineage and blast radius of one
//! credential, agent or human, read from the lineage tables, as Graphviz DOT, JSON or
//! one self-contained HTML page (inline SVG, no scripts, no network).
//!
//! The picture starts at the subject and follows the `edges` table both ways:
//! outgoing edges lead to what the subject came from (parent credential, the agent it
//! is bound to, the agent's owner), incoming ones to what came from it (child
//! credentials, an owner's agents, an agent's credentials). Attribution the logs
//! taught but no edge records (a credential used by an agent through a principal
//! alias) comes from the `credentials` table as `used_by` edges. With `--as-of`, only
//! edges valid at that time are drawn. The blast radius is what the root credentials
//! in the picture reached (services and resources, from `credentials`).

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::fmt::Write as _;

use arrow::record_batch::RecordBatch;
use chrono::{DateTime, Utc};
use datafusion::prelude::SessionContext;
use serde::Serialize;

use crate::{run_query, SqlError};

/// Nodes drawn at most; a picture that reaches further says it was cut.
pub const MAX_NODES: usize = 400;

/// One vertex of a picture.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize)]
pub struct PictureNode {
    /// `credential`, `agent` or `human`.
    #[serde(rename = "type")]
    pub node_type: String,
    /// Its id.
    pub id: String,
    /// What the tables say about it (kind, status, owner, last use…), for labels.
    pub details: BTreeMap<String, String>,
}

/// One edge of a picture.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize)]
pub struct PictureEdge {
    /// From this node id.
    pub from: String,
    /// To this node id.
    pub to: String,
    /// `issued_from`, `bound_to`, `owned_by` or `used_by`.
    pub relation: String,
    /// How a credential was issued, when known.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub method: Option<String>,
}

/// What the lineage reaches from one root credential.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Reach {
    /// The root credential.
    pub root: String,
    /// Services used through its lineage.
    pub services: Vec<String>,
    /// Resources touched through its lineage.
    pub resources: Vec<String>,
}

/// The lineage of one subject.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Picture {
    /// The node the picture is about.
    pub subject: String,
    /// The time the picture shows (`None`: the tables' latest state).
    pub as_of: Option<String>,
    /// Nodes, subject first.
    pub nodes: Vec<PictureNode>,
    /// Edges.
    pub edges: Vec<PictureEdge>,
    /// Blast radius per root credential in the picture.
    pub blast_radius: Vec<Reach>,
    /// True when the picture stopped at [`MAX_NODES`].
    pub truncated: bool,
}

fn rows(
    batches: &[RecordBatch],
) -> Result<Vec<serde_json::Map<String, serde_json::Value>>, SqlError> {
    let mut out = Vec::new();
    {
        let mut w = arrow::json::ArrayWriter::new(&mut out);
        let refs: Vec<&RecordBatch> = batches.iter().collect();
        w.write_batches(&refs)
            .and_then(|_| w.finish())
            .map_err(|e| SqlError::Format(e.to_string()))?;
    }
    if out.is_empty() {
        return Ok(Vec::new());
    }
    serde_json::from_slice(&out).map_err(|e| SqlError::Format(e.to_string()))
}

fn text(row: &serde_json::Map<String, serde_json::Value>, key: &str) -> Option<String> {
    match row.get(key)? {
        serde_json::Value::Null => None,
        serde_json::Value::String(s) => Some(s.clone()),
        serde_json::Value::Array(a) if a.is_empty() => None,
        v => Some(v.to_string()),
    }
}

fn strings(row: &serde_json::Map<String, serde_json::Value>, key: &str) -> Vec<String> {
    row.get(key)
        .and_then(|v| v.as_array())
        .map(|a| {
            a.iter()
                .filter_map(|v| v.as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default()
}

/// Builds the picture of `subject` (a credential id, agent id, human id or e-mail).
pub async fn build_picture(
    ctx: &SessionContext,
    subject: &str,
    as_of: Option<DateTime<Utc>>,
) -> Result<Picture, SqlError> {
    let valid = match as_of {
        Some(t) => {
            let t = t.format("%Y-%m-%dT%H:%M:%S%.6fZ");
            format!(
                " WHERE (valid_from IS NULL OR valid_from <= TIMESTAMP '{t}') \
                 AND (valid_to IS NULL OR valid_to > TIMESTAMP '{t}')"
            )
        }
        None => String::new(),
    };
    let edges = rows(
        &run_query(
            ctx,
            &format!(
                "SELECT DISTINCT from_type, from_id, relation, to_type, to_id, method FROM edges{valid}"
            ),
        )
        .await?,
    )?;
    // Every credential is a node; only those in use by `as_of` get their learned
    // `used_by` edge.
    let in_time = match as_of {
        Some(t) => format!(
            "(first_used IS NULL OR first_used <= TIMESTAMP '{}')",
            t.format("%Y-%m-%dT%H:%M:%S%.6fZ")
        ),
        None => "TRUE".into(),
    };
    let credentials = rows(
        &run_query(
            ctx,
            &format!(
                "SELECT credential_id, kind, status, agent, owner, root_credential, uses, \
                 CAST(last_used AS VARCHAR) AS last_used, services, resources, \
                 {in_time} AS in_time FROM credentials"
            ),
        )
        .await?,
    )?;
    let identities = rows(
        &run_query(
            ctx,
            "SELECT id, identity_type, kind, email, owner, status FROM identities",
        )
        .await?,
    )?;

    // Node details, by id.
    let mut kinds: BTreeMap<String, (String, BTreeMap<String, String>)> = BTreeMap::new();
    let mut reach: BTreeMap<String, Reach> = BTreeMap::new();
    let mut adjacency: Vec<PictureEdge> = Vec::new();
    for r in &identities {
        let Some(id) = text(r, "id") else { continue };
        let mut d = BTreeMap::new();
        for k in ["kind", "email", "owner", "status"] {
            if let Some(v) = text(r, k) {
                d.insert(k.to_string(), v);
            }
        }
        kinds.insert(id, (text(r, "identity_type").unwrap_or_default(), d));
    }
    for r in &credentials {
        let Some(id) = text(r, "credential_id") else {
            continue;
        };
        let mut d = BTreeMap::new();
        for k in ["kind", "status", "uses", "last_used"] {
            if let Some(v) = text(r, k) {
                d.insert(k.to_string(), v);
            }
        }
        if text(r, "root_credential").as_deref() == Some(id.as_str()) {
            let (services, resources) = (strings(r, "services"), strings(r, "resources"));
            if !services.is_empty() || !resources.is_empty() {
                reach.insert(
                    id.clone(),
                    Reach {
                        root: id.clone(),
                        services,
                        resources,
                    },
                );
            }
        }
        let in_time = r.get("in_time").and_then(|v| v.as_bool()).unwrap_or(true);
        if let Some(agent) = text(r, "agent").filter(|_| in_time) {
            adjacency.push(PictureEdge {
                from: id.clone(),
                to: agent,
                relation: "used_by".into(),
                method: None,
            });
        } else if let Some(owner) = text(r, "owner").filter(|_| in_time) {
            adjacency.push(PictureEdge {
                from: id.clone(),
                to: owner,
                relation: "used_by".into(),
                method: None,
            });
        }
        kinds.insert(id, ("credential".into(), d));
    }
    for r in &edges {
        let (Some(from), Some(to)) = (text(r, "from_id"), text(r, "to_id")) else {
            continue;
        };
        for (id, ty) in [(&from, "from_type"), (&to, "to_type")] {
            kinds
                .entry(id.clone())
                .or_insert_with(|| (text(r, ty).unwrap_or_default(), BTreeMap::new()));
        }
        adjacency.push(PictureEdge {
            from,
            to,
            relation: text(r, "relation").unwrap_or_default(),
            method: text(r, "method"),
        });
    }
    // A declared binding makes the learned `used_by` edge to the same agent redundant.
    let declared: BTreeSet<(String, String)> = adjacency
        .iter()
        .filter(|e| e.relation != "used_by")
        .map(|e| (e.from.clone(), e.to.clone()))
        .collect();
    adjacency
        .retain(|e| e.relation != "used_by" || !declared.contains(&(e.from.clone(), e.to.clone())));
    adjacency.sort();
    adjacency.dedup();

    let start = if kinds.contains_key(subject) {
        subject.to_string()
    } else {
        let lower = subject.to_ascii_lowercase();
        let by_email: Vec<&String> = kinds
            .iter()
            .filter(|(_, (_, d))| {
                d.get("email")
                    .is_some_and(|e| e.to_ascii_lowercase() == lower)
            })
            .map(|(id, _)| id)
            .collect();
        match by_email.as_slice() {
            [one] => (*one).clone(),
            _ => {
                return Err(SqlError::Query(format!(
                    "`{subject}` is no credential, agent or human in the lineage tables \
                     (try `lineage sql \"SELECT credential_id FROM credentials\"`)"
                )))
            }
        }
    };

    // Up (what the subject came from) and down (what came from it), breadth first.
    let mut seen: BTreeSet<String> = BTreeSet::from([start.clone()]);
    let mut order = vec![start.clone()];
    let mut truncated = false;
    for upward in [true, false] {
        let mut queue = VecDeque::from([start.clone()]);
        while let Some(id) = queue.pop_front() {
            for e in &adjacency {
                let next = match (upward, e.from == id, e.to == id) {
                    (true, true, _) => &e.to,
                    (false, _, true) => &e.from,
                    _ => continue,
                };
                if seen.contains(next) {
                    continue;
                }
                if seen.len() >= MAX_NODES {
                    truncated = true;
                    break;
                }
                seen.insert(next.clone());
                order.push(next.clone());
                queue.push_back(next.clone());
            }
        }
    }
    let nodes: Vec<PictureNode> = order
        .iter()
        .map(|id| {
            let (node_type, details) = kinds.get(id).cloned().unwrap_or_default();
            PictureNode {
                node_type,
                id: id.clone(),
                details,
            }
        })
        .collect();
    let edges: Vec<PictureEdge> = adjacency
        .into_iter()
        .filter(|e| seen.contains(&e.from) && seen.contains(&e.to))
        .collect();
    let blast_radius = order
        .iter()
        .filter_map(|id| reach.get(id).cloned())
        .collect();
    Ok(Picture {
        subject: start,
        as_of: as_of.map(|t| t.to_rfc3339()),
        nodes,
        edges,
        blast_radius,
        truncated,
    })
}

fn dot_escape(s: &str) -> String {
    s.replace('\\', "\\\\").replace('"', "\\\"")
}

fn label(n: &PictureNode) -> String {
    let mut l = n.id.clone();
    for k in ["kind", "email", "status", "last_used"] {
        if let Some(v) = n.details.get(k) {
            l.push('\n');
            l.push_str(&format!("{k}: {v}"));
        }
    }
    l
}

impl Picture {
    /// Graphviz DOT (`dot -Tsvg picture.dot > picture.svg`).
    pub fn to_dot(&self) -> String {
        let mut out = String::from(
            "digraph lineage {\n  rankdir=BT;\n  node [fontname=\"Helvetica\", fontsize=10];\n",
        );
        for n in &self.nodes {
            let (shape, color) = match n.node_type.as_str() {
                "human" => ("ellipse", "#fde68a"),
                "agent" => ("box", "#bfdbfe"),
                _ => ("note", "#e5e7eb"),
            };
            let pen = if n.id == self.subject {
                ", penwidth=3"
            } else {
                ""
            };
            let _ = writeln!(
                out,
                "  \"{}\" [label=\"{}\", shape={shape}, style=filled, fillcolor=\"{color}\"{pen}];",
                dot_escape(&n.id),
                dot_escape(&label(n))
            );
        }
        for e in &self.edges {
            let l = match &e.method {
                Some(m) => format!("{} ({m})", e.relation),
                None => e.relation.clone(),
            };
            let style = if e.relation == "used_by" {
                ", style=dashed"
            } else {
                ""
            };
            let _ = writeln!(
                out,
                "  \"{}\" -> \"{}\" [label=\"{}\"{style}];",
                dot_escape(&e.from),
                dot_escape(&e.to),
                dot_escape(&l)
            );
        }
        for r in &self.blast_radius {
            let target = format!("reach:{}", r.root);
            let mut items: Vec<String> = r.services.clone();
            items.extend(r.resources.iter().take(8).cloned());
            let _ = writeln!(
                out,
                "  \"{}\" [label=\"reaches\n{}\", shape=folder, style=filled, fillcolor=\"#fecaca\"];\n  \"{}\" -> \"{}\" [label=\"blast radius\", color=\"#dc2626\"];",
                dot_escape(&target),
                dot_escape(&items.join("\n")),
                dot_escape(&r.root),
                dot_escape(&target)
            );
        }
        out.push_str("}\n");
        out
    }

    /// Pretty JSON.
    pub fn to_json(&self) -> String {
        serde_json::to_string_pretty(self).expect("a picture serializes") + "\n"
    }

    /// One self-contained HTML page: an SVG drawing (humans on top, then agents,
    /// then credentials by depth in their chain, then what they reach) and the details.
    pub fn to_html(&self) -> String {
        // Layers: human 0, agent 1, credentials 2 + distance from their chain's top.
        let mut layer: BTreeMap<&str, usize> = BTreeMap::new();
        for n in &self.nodes {
            let l = match n.node_type.as_str() {
                "human" => 0,
                "agent" => 1,
                _ => 2,
            };
            layer.insert(&n.id, l);
        }
        // Children sit one layer below their parent credential.
        for _ in 0..self.nodes.len().min(32) {
            let mut changed = false;
            for e in self.edges.iter().filter(|e| e.relation == "issued_from") {
                let parent = layer.get(e.to.as_str()).copied().unwrap_or(2);
                if let Some(l) = layer.get_mut(e.from.as_str()) {
                    if *l <= parent {
                        *l = parent + 1;
                        changed = true;
                    }
                }
            }
            if !changed {
                break;
            }
        }
        let reach_layer = layer.values().copied().max().unwrap_or(0) + 1;
        let mut rows: BTreeMap<usize, Vec<(String, String, &str)>> = BTreeMap::new();
        for n in &self.nodes {
            let short = if n.id.chars().count() > 28 {
                format!("{}…", n.id.chars().take(27).collect::<String>())
            } else {
                n.id.clone()
            };
            rows.entry(layer[n.id.as_str()]).or_default().push((
                n.id.clone(),
                short,
                n.node_type.as_str(),
            ));
        }
        for r in &self.blast_radius {
            let mut what = r.services.join(", ");
            if what.chars().count() > 28 {
                what = format!("{}…", what.chars().take(27).collect::<String>());
            }
            rows.entry(reach_layer)
                .or_default()
                .push((format!("reach:{}", r.root), what, "reach"));
        }
        let (w, h) = (200.0, 70.0);
        let width = rows.values().map(Vec::len).max().unwrap_or(1) as f64 * w + 40.0;
        let height = rows.len() as f64 * h * 1.6 + 40.0;
        let mut pos: BTreeMap<String, (f64, f64)> = BTreeMap::new();
        for (row_index, (_, items)) in rows.iter().enumerate() {
            let offset = (width - items.len() as f64 * w) / 2.0;
            for (i, (id, _, _)) in items.iter().enumerate() {
                pos.insert(
                    id.clone(),
                    (
                        offset + i as f64 * w + w / 2.0,
                        30.0 + row_index as f64 * h * 1.6 + h / 2.0,
                    ),
                );
            }
        }
        let esc = |s: &str| {
            s.replace('&', "&amp;")
                .replace('<', "&lt;")
                .replace('>', "&gt;")
                .replace('"', "&quot;")
        };
        let mut svg = format!(
            "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{width:.0}\" height=\"{height:.0}\" font-family=\"Helvetica,Arial,sans-serif\" font-size=\"11\">\
             <defs><marker id=\"arrow\" viewBox=\"0 0 10 10\" refX=\"10\" refY=\"5\" markerWidth=\"7\" markerHeight=\"7\" orient=\"auto-start-reverse\"><path d=\"M0,0 L10,5 L0,10 z\" fill=\"#555\"/></marker></defs>"
        );
        let mut lines: Vec<(String, String, &str)> = self
            .edges
            .iter()
            .map(|e| (e.from.clone(), e.to.clone(), e.relation.as_str()))
            .collect();
        for r in &self.blast_radius {
            lines.push((r.root.clone(), format!("reach:{}", r.root), "reaches"));
        }
        for (from, to, relation) in &lines {
            let (Some(a), Some(b)) = (pos.get(from), pos.get(to)) else {
                continue;
            };
            let dash = if *relation == "used_by" {
                " stroke-dasharray=\"4 3\""
            } else {
                ""
            };
            let _ = write!(
                svg,
                "<line x1=\"{:.0}\" y1=\"{:.0}\" x2=\"{:.0}\" y2=\"{:.0}\" stroke=\"#555\"{dash} marker-end=\"url(#arrow)\"><title>{}</title></line>",
                a.0,
                a.1 + if b.1 < a.1 { -h / 2.0 } else { h / 2.0 },
                b.0,
                b.1 + if b.1 < a.1 { h / 2.0 } else { -h / 2.0 },
                esc(relation)
            );
        }
        for items in rows.values() {
            for (id, short, ty) in items {
                let (x, y) = pos[id];
                let fill = match *ty {
                    "human" => "#fde68a",
                    "agent" => "#bfdbfe",
                    "reach" => "#fecaca",
                    _ => "#e5e7eb",
                };
                let stroke = if *id == self.subject { "#111" } else { "#888" };
                let _ = write!(
                    svg,
                    "<g><title>{}</title><rect x=\"{:.0}\" y=\"{:.0}\" width=\"{:.0}\" height=\"{:.0}\" rx=\"8\" fill=\"{fill}\" stroke=\"{stroke}\" stroke-width=\"{}\"/>\
                     <text x=\"{x:.0}\" y=\"{:.0}\" text-anchor=\"middle\" font-weight=\"bold\">{}</text>\
                     <text x=\"{x:.0}\" y=\"{:.0}\" text-anchor=\"middle\">{}</text></g>",
                    esc(id),
                    x - w / 2.0 + 8.0,
                    y - h / 2.0 + 8.0,
                    w - 16.0,
                    h - 16.0,
                    if *id == self.subject { 3 } else { 1 },
                    y - 4.0,
                    esc(if *ty == "reach" { "reaches" } else { ty }),
                    y + 12.0,
                    esc(short)
                );
            }
        }
        svg.push_str("</svg>");
        let mut details = String::new();
        for n in &self.nodes {
            let info: Vec<String> = n
                .details
                .iter()
                .map(|(k, v)| format!("{}: {}", esc(k), esc(v)))
                .collect();
            let _ = write!(
                details,
                "<tr><td>{}</td><td><code>{}</code></td><td>{}</td></tr>",
                esc(&n.node_type),
                esc(&n.id),
                info.join("; ")
            );
        }
        let mut reach = String::new();
        for r in &self.blast_radius {
            let _ = write!(
                reach,
                "<tr><td><code>{}</code></td><td>{}</td><td>{}</td></tr>",
                esc(&r.root),
                esc(&r.services.join(", ")),
                esc(&r.resources.join(", "))
            );
        }
        let as_of = self
            .as_of
            .as_deref()
            .unwrap_or("latest state of the tables");
        let cut = if self.truncated {
            format!("<p><strong>Cut at {MAX_NODES} nodes.</strong></p>")
        } else {
            String::new()
        };
        format!(
            "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>Lineage of {subject}</title>\
             <style>body{{font-family:Helvetica,Arial,sans-serif;margin:24px;color:#111}}table{{border-collapse:collapse;margin:12px 0}}td,th{{border:1px solid #ddd;padding:4px 8px;text-align:left;font-size:13px}}.svg{{overflow-x:auto;border:1px solid #eee}}</style></head>\
             <body><h1>Lineage of <code>{subject}</code></h1><p>As of: {as_of}. Arrows point from a credential to what it came from (parent credential, agent, owner); dashed arrows are attributions learned from the logs; red boxes are what a root credential reached.</p>{cut}\
             <div class=\"svg\">{svg}</div>\
             <h2>Identities and credentials</h2><table><tr><th>type</th><th>id</th><th>details</th></tr>{details}</table>\
             <h2>Blast radius</h2><table><tr><th>root credential</th><th>services</th><th>resources</th></tr>{reach}</table></body></html>\n",
            subject = esc(&self.subject),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn picture() -> Picture {
        Picture {
            subject: "AKIA1".into(),
            as_of: None,
            nodes: vec![
                PictureNode {
                    node_type: "credential".into(),
                    id: "AKIA1".into(),
                    details: BTreeMap::from([("kind".into(), "aws-access-key".into())]),
                },
                PictureNode {
                    node_type: "agent".into(),
                    id: "bot <x>".into(),
                    details: BTreeMap::new(),
                },
                PictureNode {
                    node_type: "human".into(),
                    id: "alice".into(),
                    details: BTreeMap::new(),
                },
            ],
            edges: vec![
                PictureEdge {
                    from: "AKIA1".into(),
                    to: "bot <x>".into(),
                    relation: "bound_to".into(),
                    method: None,
                },
                PictureEdge {
                    from: "bot <x>".into(),
                    to: "alice".into(),
                    relation: "owned_by".into(),
                    method: None,
                },
            ],
            blast_radius: vec![Reach {
                root: "AKIA1".into(),
                services: vec!["s3".into()],
                resources: vec!["arn:aws:s3:::b".into()],
            }],
            truncated: false,
        }
    }

    #[test]
    fn renderings_name_every_node_and_edge_and_escape_them() {
        let p = picture();
        let dot = p.to_dot();
        assert!(dot.starts_with("digraph lineage {"));
        assert!(dot.contains("\"AKIA1\" -> \"bot <x>\" [label=\"bound_to\"]"));
        assert!(dot.contains("\"bot <x>\" -> \"alice\""));
        assert!(dot.contains("reach:AKIA1"));
        let html = p.to_html();
        assert!(html.starts_with("<!DOCTYPE html>"));
        assert!(html.contains("bot &lt;x&gt;") && !html.contains("bot <x>"));
        assert!(html.contains("<svg") && html.contains("arn:aws:s3:::b"));
        assert!(
            !html.contains("<script") && !html.contains("http://")
                || html.contains("http://www.w3.org/2000/svg")
        );
        assert_eq!(
            html.matches("<line ").count(),
            3,
            "two edges and the reach arrow"
        );
        let json: serde_json::Value = serde_json::from_str(&p.to_json()).unwrap();
        assert_eq!(json["nodes"].as_array().unwrap().len(), 3);
        assert_eq!(json["edges"][1]["relation"], "owned_by");
    }
}
