//! The corpus check: every file in `tests/corpus/` (odd, real-shaped exports of the
//! four sources: lake exports with lower-cased keys, concatenated and pretty-printed
//! documents, Graph pages, Azure Monitor and Event Hubs envelopes, Log Analytics
//! columns, UTF-8 BOM, UTF-16, nobody's records) is read the way every driver reads
//! a file (source sniffed, framed, parsed), plain and gzipped, and each record's
//! normalized form (or dead letter) must equal `<file>.expected` line for line.
//!
//! `LINEAGE_BLESS=1 cargo test --release --test corpus` rewrites the expected files;
//! read the diff before committing it: the expected files are the claims.

use std::io::Write;
use std::path::{Path, PathBuf};

use lineage_core::Provenance;
use lineage_ingest::ParseLimits;
use lineage_pipeline::normalize::{parse_buffer, ParsedFile};
use serde_json::{json, Value};

fn corpus_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/corpus")
}

fn record_number(p: &Provenance) -> u64 {
    match p {
        Provenance::File { record, .. } => *record,
        _ => 0,
    }
}

/// One line per record, in record order: what the record normalized to, or its dead
/// letter's source and reason.
fn project(parsed: &ParsedFile) -> Vec<Value> {
    let mut lines: Vec<(u64, Value)> = Vec::new();
    for n in &parsed.records {
        let u = &n.use_;
        let facts: Vec<Value> = n
            .facts
            .iter()
            .map(|f| serde_json::to_value(&f.kind).expect("fact serializes"))
            .collect();
        lines.push((
            record_number(&u.provenance),
            json!({
                "source": u.source.as_str(),
                "event_id": u.event_id.as_str(),
                "time": u.time.to_rfc3339(),
                "action": u.operation.action(),
                "credential": u.credential.as_ref().map(|c| json!([c.kind, c.id.as_str()])),
                "principal": u.principal.id.as_deref().or(u.principal.name.as_deref()),
                "success": u.outcome.success,
                "error_code": u.outcome.error_code.as_deref(),
                "facts": facts,
            }),
        ));
    }
    for d in &parsed.dead_letters {
        lines.push((
            record_number(&d.provenance),
            json!({"source": d.source.as_str(), "dead_letter": d.reason}),
        ));
    }
    lines.sort_by_key(|(n, _)| *n);
    let mut out: Vec<Value> = lines.into_iter().map(|(_, v)| v).collect();
    if parsed.joined > 0 {
        out.push(json!({"joined_request_halves": parsed.joined}));
    }
    out
}

fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    gz.write_all(bytes).unwrap();
    gz.finish().unwrap()
}

#[test]
fn every_corpus_file_reads_as_expected_plain_and_gzipped() {
    let bless = std::env::var_os("LINEAGE_BLESS").is_some();
    let mut inputs: Vec<PathBuf> = std::fs::read_dir(corpus_dir())
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| {
            let name = p.file_name().unwrap().to_string_lossy();
            !name.ends_with(".expected") && !name.ends_with(".md")
        })
        .collect();
    inputs.sort();
    assert!(inputs.len() >= 15, "{inputs:?}");
    let mut failures = Vec::new();
    for path in &inputs {
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        let bytes = std::fs::read(path).unwrap();
        let parsed = parse_buffer(&bytes, &name, None, ParseLimits::default(), None);
        let c = parsed.counts;
        assert_eq!(c.read, c.normalized + c.dead_lettered, "{name}");
        assert_eq!(
            c.read as usize,
            parsed.records.len() + parsed.dead_letters.len() + parsed.joined as usize,
            "{name}: every record counted once"
        );
        let got = project(&parsed);
        let gz = parse_buffer(&gzip(&bytes), &name, None, ParseLimits::default(), None);
        assert_eq!(project(&gz), got, "{name}: gzipped reads the same");
        // Secret values in the inputs (a session token in an S3 delivery record and
        // inside an export's `responseelements` JSON text) never reach a normalized
        // record, whole.
        for n in &parsed.records {
            let text = serde_json::to_string(&(&n.use_, &n.facts)).unwrap();
            assert!(!text.contains("FAKE-SESSION-TOKEN"), "{name}: {text}");
        }
        let expected_path = corpus_dir().join(format!("{name}.expected"));
        let rendered: String = got.iter().map(|v| format!("{v}\n")).collect();
        if bless {
            std::fs::write(&expected_path, &rendered).unwrap();
            continue;
        }
        let expected = std::fs::read_to_string(&expected_path).unwrap_or_default();
        if expected != rendered {
            failures.push(format!(
                "{name}:\n--- expected\n{expected}--- got\n{rendered}"
            ));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}
