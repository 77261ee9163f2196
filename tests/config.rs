//! Detectors are tuned from a TOML settings file; a bad one is refused with its name.

mod common;

#[test]
fn settings_file_turns_detectors_off_and_tunes_them() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("lineage.toml");
    std::fs::write(
        &config,
        "[detectors.out_of_scope]\nenabled = false\n\n[detectors.anomaly]\ndenied_burst = 1000\n",
    )
    .unwrap();
    let (logs, inventory) = common::invictus();
    let out = tempfile::tempdir().unwrap();
    let output = common::replay(
        &[&logs],
        out.path(),
        &[
            "--inventory",
            inventory.to_str().unwrap(),
            "--config",
            config.to_str().unwrap(),
        ],
    );
    common::assert_exit(&output, 0);
    let alerts = common::jsonl(&out.path().join("alerts.jsonl"));
    assert!(!alerts.is_empty());
    assert!(alerts.iter().all(|a| a["detector"] != "out-of-scope"));
    assert!(
        alerts
            .iter()
            .all(|a| a["evidence"]["rule"] != "denied-burst"),
        "the burst threshold was raised"
    );
    // Every alert also went out as an OCSF Detection Finding.
    let ocsf = common::jsonl(&out.path().join("alerts.ocsf.jsonl"));
    assert_eq!(ocsf.len(), alerts.len());
    assert!(ocsf.iter().all(|f| f["class_uid"] == 2004));
}

#[test]
fn unknown_setting_is_refused_naming_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("lineage.toml");
    std::fs::write(&config, "[detectors.anomaly]\nlearning_hours = 3\n").unwrap();
    let (logs, _) = common::invictus();
    let out = tempfile::tempdir().unwrap();
    let output = common::replay(
        &[&logs],
        out.path(),
        &["--config", config.to_str().unwrap()],
    );
    common::assert_exit(&output, 1);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("lineage.toml") && stderr.contains("learning_hours"),
        "{stderr}"
    );
}
