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

#[test]
fn detector_state_carries_over_between_replays_and_bad_state_is_refused() {
    let (logs, inventory) = common::invictus();
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state.json");
    let run = |out: &std::path::Path| {
        common::replay(
            &[&logs],
            out,
            &[
                "--inventory",
                inventory.to_str().unwrap(),
                "--detector-state",
                state.to_str().unwrap(),
            ],
        )
    };
    let first = tempfile::tempdir().unwrap();
    common::assert_exit(&run(first.path()), 0);
    let snapshot: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&state).unwrap()).unwrap();
    assert!(
        snapshot["anomaly"]["credentials"]
            .as_object()
            .unwrap()
            .len()
            > 1,
        "baselines saved"
    );
    // The second replay starts from the saved baselines: bert-jan's key is past its
    // learning period from its first record on, so new-network/new-action rules are live.
    let second = tempfile::tempdir().unwrap();
    common::assert_exit(&run(second.path()), 0);
    let restored: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&state).unwrap()).unwrap();
    assert_eq!(
        restored["anomaly"]["credentials"]["AKIATFQR7NSC8Q4X20BJ"]["first_seen"],
        snapshot["anomaly"]["credentials"]["AKIATFQR7NSC8Q4X20BJ"]["first_seen"],
        "the baseline's first sighting survives the second run"
    );
    std::fs::write(&state, "{not json").unwrap();
    let third = tempfile::tempdir().unwrap();
    let out = run(third.path());
    common::assert_exit(&out, 1);
    assert!(String::from_utf8_lossy(&out.stderr).contains("state.json"));
}

#[test]
fn alert_sinks_from_the_settings_file_receive_every_alert() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("lineage.toml");
    let ocsf = dir.path().join("soc/findings.jsonl");
    std::fs::write(
        &config,
        format!(
            "[[alerts.sinks]]\ntype = \"ocsf\"\npath = \"{}\"\n\n[[alerts.sinks]]\ntype = \"webhook\"\nurl = \"http://127.0.0.1:9/closed\"\nmax_attempts = 1\nbackoff_ms = 1\ntimeout_secs = 1\n",
            ocsf.display()
        ),
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
    let findings = common::jsonl(&ocsf);
    assert_eq!(findings.len(), alerts.len());
    // The webhook receiver is down: nothing is lost, every alert waits in the spool.
    let spooled = common::jsonl(&out.path().join("spool/webhook.jsonl"));
    assert_eq!(spooled.len(), alerts.len());
    assert!(String::from_utf8_lossy(&output.stderr).contains("spooled"));
}
