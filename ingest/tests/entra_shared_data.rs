//! Every record of the real public Entra samples normalizes.
//!
//! The samples (Elastic License 2.0: read locally, never copied into this repository)
//! live outside the repository, in `$LINEAGE_SHARED_DATA/entra/` (default
//! `../shared/data/entra/` next to the workspace). Without them this test only says
//! it was skipped, so a fresh clone passes.

use std::path::PathBuf;

use lineage_core::FactKind;
use lineage_ingest::{parse_bytes, EntraParser, ParseLimits};

fn shared_entra_dir() -> Option<PathBuf> {
    let base = std::env::var_os("LINEAGE_SHARED_DATA")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../shared/data"));
    let dir = base.join("entra");
    dir.is_dir().then_some(dir)
}

#[test]
fn every_shared_entra_record_normalizes() {
    let Some(dir) = shared_entra_dir() else {
        eprintln!("skipped: no shared Entra samples (set LINEAGE_SHARED_DATA)");
        return;
    };
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap()
        .filter_map(|e| Some(e.ok()?.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "log" || x == "json"))
        .collect();
    files.sort();
    assert!(!files.is_empty(), "{} holds no samples", dir.display());

    let (mut total, mut sign_ins, mut audits, mut issued, mut failed) = (0, 0, 0, 0, 0);
    for path in &files {
        let bytes = std::fs::read(path).unwrap();
        let mut dead = Vec::new();
        let counts = parse_bytes(
            &EntraParser,
            &bytes,
            &path.display().to_string(),
            ParseLimits::default(),
            |r| match r {
                Ok(n) => {
                    match n.use_.operation.service.as_str() {
                        "entra" => sign_ins += 1,
                        "entra-directory" => audits += 1,
                        other => panic!("unexpected service {other}"),
                    }
                    if !n.use_.outcome.success {
                        failed += 1;
                    }
                    issued += n
                        .facts
                        .iter()
                        .filter(|f| matches!(f.kind, FactKind::CredentialIssued { .. }))
                        .count();
                }
                Err(d) => dead.push(d.reason),
            },
        );
        eprintln!("{}: {counts:?}", path.display());
        assert!(counts.read >= 1, "{}: no records", path.display());
        assert!(
            dead.is_empty(),
            "{}: dead-lettered: {dead:?}",
            path.display()
        );
        total += counts.read;
    }
    assert_eq!(total, sign_ins + audits);
    // The samples hold an "Add service principal credentials" record (one new key)
    // and a service-principal sign-in failing with 7000222.
    if audits > 0 {
        assert!(
            issued >= 1,
            "no credential-issued fact from the audit sample"
        );
    }
    if sign_ins > 0 {
        assert!(failed >= 1, "the 7000222 sign-in should be a failure");
    }
}
