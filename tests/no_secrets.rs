//! Secret values in the input logs never reach any output file.
//!
//! CloudTrail records of `AssumeRole`, `GetSessionToken` and the like carry the
//! issued `sessionToken` (and, in some deliveries, `secretAccessKey`); the parser has
//! no field for them, so they must not appear in events, alerts, the summary or
//! anything else lineage writes.
//!
//! A record that cannot be parsed is dead-lettered with its original bytes, with the
//! values of known secret fields redacted (found without parsing, so broken and
//! truncated records are scrubbed too): the second test feeds broken records of all
//! four sources carrying secrets through replay and through the embedded live run,
//! and checks every output file, the tables and the logs.

mod common;

use std::collections::HashSet;
use std::path::Path;

use serde_json::{json, Value};

/// Window length: any leaked piece of a token at least this long is caught.
const WINDOW: usize = 24;

const FAKE_SECRET: &str = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYFAKESECRETKEY";
const FAKE_TOKEN: &str =
    "FwoGZXIvYXdzEFAKE+SESSION/TOKEN+0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOP==";
const FAKE_KEY_SECRET: &str = "Zm9vYmFyYmF6cXV4FAKECREATEACCESSKEYSECRET0";

/// Every string value under a `secretAccessKey` or `sessionToken` key, anywhere.
fn collect_secrets(v: &Value, out: &mut Vec<String>) {
    match v {
        Value::Object(m) => {
            for (k, v) in m {
                if k == "secretAccessKey" || k == "sessionToken" {
                    if let Value::String(s) = v {
                        out.push(s.clone());
                        continue;
                    }
                }
                collect_secrets(v, out);
            }
        }
        Value::Array(a) => a.iter().for_each(|v| collect_secrets(v, out)),
        _ => {}
    }
}

/// A valid, parseable AssumeRole and CreateAccessKey pair whose responses carry secrets.
fn synthetic_records() -> Value {
    let identity = json!({
        "type": "IAMUser",
        "principalId": "AIDAFAKEEXAMPLE00001",
        "arn": "arn:aws:iam::111122223333:user/alice",
        "accountId": "111122223333",
        "accessKeyId": "AKIAFAKEEXAMPLE00001",
        "userName": "alice"
    });
    json!({"Records": [
        {
            "eventVersion": "1.08",
            "userIdentity": identity,
            "eventTime": "2023-07-10T11:00:00Z",
            "eventSource": "sts.amazonaws.com",
            "eventName": "AssumeRole",
            "awsRegion": "us-east-1",
            "sourceIPAddress": "10.0.0.1",
            "userAgent": "aws-cli/2.13.0",
            "requestParameters": {
                "roleArn": "arn:aws:iam::111122223333:role/deployer",
                "roleSessionName": "alice-session"
            },
            "responseElements": {
                "credentials": {
                    "accessKeyId": "ASIAFAKEEXAMPLE00001",
                    "secretAccessKey": FAKE_SECRET,
                    "sessionToken": FAKE_TOKEN,
                    "expiration": "Jul 10, 2023, 12:00:00 PM"
                },
                "assumedRoleUser": {
                    "assumedRoleId": "AROAFAKEEXAMPLE00001:alice-session",
                    "arn": "arn:aws:sts::111122223333:assumed-role/deployer/alice-session"
                }
            },
            "eventID": "00000000-0000-0000-0000-0000000000a1",
            "readOnly": true,
            "eventType": "AwsApiCall",
            "recipientAccountId": "111122223333"
        },
        {
            "eventVersion": "1.08",
            "userIdentity": identity,
            "eventTime": "2023-07-10T11:00:05Z",
            "eventSource": "iam.amazonaws.com",
            "eventName": "CreateAccessKey",
            "awsRegion": "us-east-1",
            "sourceIPAddress": "10.0.0.1",
            "userAgent": "aws-cli/2.13.0",
            "requestParameters": {"userName": "backdoor"},
            "responseElements": {
                "accessKey": {
                    "accessKeyId": "AKIAFAKEEXAMPLE00002",
                    "status": "Active",
                    "userName": "backdoor",
                    "secretAccessKey": FAKE_KEY_SECRET,
                    "createDate": "Jul 10, 2023 11:00:05 AM"
                }
            },
            "eventID": "00000000-0000-0000-0000-0000000000a2",
            "readOnly": false,
            "eventType": "AwsApiCall",
            "recipientAccountId": "111122223333"
        }
    ]})
}

/// Every file under `dir`, recursively.
fn files_under(dir: &Path, out: &mut Vec<std::path::PathBuf>) {
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            files_under(&p, out);
        } else {
            out.push(p);
        }
    }
}

/// Fails when any file under `dir` contains a secret, or a `WINDOW`-byte piece of one.
fn assert_no_secret_in(dir: &Path, secrets: &[String]) {
    let mut windows: HashSet<&[u8]> = HashSet::new();
    for s in secrets {
        let b = s.as_bytes();
        if b.len() < WINDOW {
            windows.insert(b);
        } else {
            windows.extend(b.windows(WINDOW));
        }
    }
    let short: Vec<&[u8]> = windows
        .iter()
        .copied()
        .filter(|w| w.len() < WINDOW)
        .collect();
    let mut files = Vec::new();
    files_under(dir, &mut files);
    assert!(!files.is_empty());
    for f in &files {
        let bytes = readable_bytes(f);
        for s in secrets {
            assert!(
                !contains(&bytes, s.as_bytes()),
                "{} contains a secret value",
                f.display()
            );
        }
        if let Some(w) = bytes
            .windows(WINDOW)
            .find(|w| windows.contains(w))
            .or_else(|| short.iter().copied().find(|s| contains(&bytes, s)))
        {
            panic!(
                "{} contains a piece of a secret value: {:?}",
                f.display(),
                String::from_utf8_lossy(w)
            );
        }
    }
}

/// What a file holds, as bytes a secret would show in: the file itself, except for
/// Parquet tables, whose compressed pages would hide a secret (and whose encodings
/// can hold runs like `abc…xyz` by chance), so their decoded rows are checked.
fn readable_bytes(path: &Path) -> Vec<u8> {
    if path.extension().is_some_and(|e| e == "parquet") {
        use parquet::file::reader::{FileReader, SerializedFileReader};
        let reader = SerializedFileReader::new(std::fs::File::open(path).unwrap()).unwrap();
        let mut text = String::new();
        for row in reader.get_row_iter(None).unwrap() {
            text.push_str(&row.unwrap().to_string());
            text.push('\n');
        }
        assert!(!text.is_empty(), "{} has no rows", path.display());
        return text.into_bytes();
    }
    std::fs::read(path).unwrap()
}

/// Writes `files` (name, body) under `dir`; their paths.
fn write_inputs(dir: &Path, files: &[(&str, String)]) -> Vec<std::path::PathBuf> {
    files
        .iter()
        .map(|(name, body)| {
            let p = dir.join(name);
            std::fs::write(&p, body).unwrap();
            p
        })
        .collect()
}

/// Replays `paths` into `out` (tables on, debug logs on the terminal) and checks
/// that no output file and nothing printed holds a secret; the summary.
fn replay_leaks_nothing(
    paths: &[std::path::PathBuf],
    out: &Path,
    extra: &[&str],
    secrets: &[String],
) -> Value {
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_lineage"))
        .arg("replay")
        .args(paths)
        .arg("--out")
        .arg(out)
        .args(extra)
        .env("LINEAGE_LOG", "debug")
        .output()
        .unwrap();
    common::assert_exit(&output, 0);
    let summary = common::summary(out);
    common::assert_counts_add_up(&summary);
    assert_no_secret_in(out, secrets);
    let printed = [output.stdout.as_slice(), output.stderr.as_slice()].concat();
    for s in secrets {
        assert!(!contains(&printed, s.as_bytes()), "the log has a secret");
    }
    summary
}

/// Runs the embedded live pipeline (tables on, debug logs) following a directory,
/// copies `paths` into it, waits until `summary.json`'s `counter` reaches `want`,
/// stops it and checks that no output file and no log line holds a secret.
fn live_run_leaks_nothing(
    paths: &[std::path::PathBuf],
    counter: &str,
    want: u64,
    secrets: &[String],
) {
    let live = tempfile::tempdir().unwrap();
    let watch = live.path().join("watch");
    std::fs::create_dir_all(&watch).unwrap();
    let port = lineage_test_support::free_port();
    let cfg = live.path().join("lineage.toml");
    let out = live.path().join("out");
    std::fs::write(
        &cfg,
        format!(
            "[run]\nout_dir = {:?}\nmetrics_addr = \"127.0.0.1:{port}\"\ncheckpoint_secs = 1\npoll_interval_ms = 100\n\n[[source]]\nkind = \"directory\"\npath = {:?}\nsettle_ms = 0\n",
            out.display().to_string(),
            watch.display().to_string()
        ),
    )
    .unwrap();
    let log = live.path().join("run.log");
    let mut run = common::Runner::start_with(&cfg, port, log.clone(), &[("LINEAGE_LOG", "debug")]);
    run.wait_healthy();
    // Each file appears whole (written beside the directory, then renamed into it),
    // as the directory source asks: with `settle_ms = 0` a file copied in place can be
    // read while still empty.
    let staging = live.path().join("staging");
    std::fs::create_dir_all(&staging).unwrap();
    for p in paths {
        let name = p.file_name().unwrap();
        std::fs::copy(p, staging.join(name)).unwrap();
        std::fs::rename(staging.join(name), watch.join(name)).unwrap();
    }
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    loop {
        let got = std::fs::read(out.join("summary.json"))
            .ok()
            .and_then(|b| serde_json::from_slice::<Value>(&b).ok())
            .and_then(|s| s[counter].as_u64())
            .unwrap_or(0);
        if got >= want {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "{counter}: {got} of {want}:\n{}",
            run.log()
        );
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    assert!(run.sigterm().success());
    assert_no_secret_in(&out, secrets);
    let logged = std::fs::read(&log).unwrap();
    for s in secrets {
        assert!(
            !contains(&logged, s.as_bytes()),
            "the live log has a secret"
        );
    }
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    needle.is_empty() || haystack.windows(needle.len()).any(|w| w == needle)
}

#[test]
fn no_secret_reaches_any_output_file() {
    // The secrets in the real dataset.
    let mut secrets = Vec::new();
    for r in common::invictus_records() {
        collect_secrets(&r, &mut secrets);
    }
    assert!(
        secrets.len() >= 10,
        "expected the Invictus records to carry session tokens, found {}",
        secrets.len()
    );
    // Plus a synthetic file whose responses carry a secret access key and a token.
    let inputs = tempfile::tempdir().unwrap();
    let synthetic = inputs.path().join("synthetic-secrets.json");
    let doc = synthetic_records();
    let before = secrets.len();
    collect_secrets(&doc, &mut secrets);
    assert_eq!(secrets.len(), before + 3);
    std::fs::write(&synthetic, doc.to_string()).unwrap();

    let (logs, inventory) = common::invictus();
    let out = tempfile::tempdir().unwrap();
    let output = common::replay(
        &[&logs, &synthetic],
        out.path(),
        &["--inventory", inventory.to_str().unwrap(), "--events"],
    );
    common::assert_exit(&output, 0);

    // Everything was parsed (so dead letters, which keep raw bytes, hold nothing) and
    // the synthetic records really went through the parser.
    let summary = common::summary(out.path());
    assert_eq!(summary["read"], 2902, "{summary:#}");
    assert_eq!(summary["dead_lettered"], 0, "{summary:#}");
    let events = std::fs::read_to_string(out.path().join("events.jsonl")).unwrap();
    for id in ["0000000000a1", "0000000000a2"] {
        assert!(events.contains(id), "synthetic record {id} not normalized");
    }
    // Alone, the synthetic file yields its two issuance facts (the secrets sat right
    // next to the key ids the parser did read).
    let alone = tempfile::tempdir().unwrap();
    common::assert_exit(
        &common::replay(&[&synthetic], alone.path(), &["--events"]),
        0,
    );
    let alone_summary = common::summary(alone.path());
    assert_eq!(alone_summary["normalized"], 2, "{alone_summary:#}");
    assert_eq!(alone_summary["lineage_facts"], 2, "{alone_summary:#}");
    assert_no_secret_in(alone.path(), &secrets);

    assert_no_secret_in(out.path(), &secrets);

    // Nor on the terminal.
    let printed = [output.stdout.as_slice(), output.stderr.as_slice()].concat();
    for s in &secrets {
        assert!(
            !contains(&printed, s.as_bytes()),
            "stdout/stderr has a secret"
        );
    }
}

/// Broken records carrying secrets, one or more per source: what must be redacted.
fn broken_records_with_secrets() -> (Vec<(&'static str, String)>, Vec<String>) {
    let secrets = vec![
        FAKE_TOKEN.to_owned(),
        FAKE_SECRET.to_owned(),
        "hvs.CAESIFAKEVAULTTOKENVALUE0123456789abcdefgh".to_owned(),
        "ghp_FAKEGITHUBTOKENVALUE0123456789abcdefABCD".to_owned(),
        "FAKE~ENTRA~CLIENT~SECRET~VALUE~0123456789abc".to_owned(),
    ];
    let files = vec![
        // CloudTrail without eventTime (refused), and a record cut off mid-token.
        (
            "cloudtrail-broken.json",
            format!(
                r#"{{"Records":[{{"eventVersion":"1.08","eventID":"no-time-1","eventSource":"sts.amazonaws.com","eventName":"GetSessionToken","userIdentity":{{"type":"IAMUser","accessKeyId":"AKIAFAKE","userName":"x"}},"responseElements":{{"credentials":{{"accessKeyId":"ASIAFAKE","sessionToken":"{FAKE_TOKEN}","secretAccessKey":"{FAKE_SECRET}"}}}}}}]}}"#
            ),
        ),
        (
            "cloudtrail-torn.jsonl",
            format!(
                r#"{{"eventName":"AssumeRole","responseElements":{{"credentials":{{"sessionToken":"{FAKE_TOKEN}"#
            ),
        ),
        // A Vault entry with no request (refused), token in the clear.
        (
            "vault-broken.log",
            format!(
                r#"{{"type":"response","auth":{{"client_token":"{}","accessor":"x"}},"response":{{"auth":{{"client_token":"{}"}}}}}}"#,
                secrets[2], secrets[2]
            ),
        ),
        // GitHub and Entra records whose shape is wrong, with token values.
        (
            "github-broken.json",
            format!(
                r#"{{"_document_id":"d1","action":"oauth_access.create","token":"{}","@timestamp":"not a time"}}"#,
                secrets[3]
            ),
        ),
        (
            "entra-broken.json",
            format!(
                r#"{{"records":[{{"operationName":"Add service principal credentials","clientSecret":"{}","time":"bad"}}]}}"#,
                secrets[4]
            ),
        ),
    ];
    (files, secrets)
}

#[test]
fn broken_records_are_dead_lettered_without_their_secrets_in_replay_and_live() {
    let (files, secrets) = broken_records_with_secrets();
    let inputs = tempfile::tempdir().unwrap();
    let paths = write_inputs(inputs.path(), &files);
    // Replay, with tables and with debug logs on the terminal.
    let out = tempfile::tempdir().unwrap();
    let summary = replay_leaks_nothing(&paths, out.path(), &[], &secrets);
    assert!(
        summary["dead_lettered"].as_u64().unwrap() >= files.len() as u64,
        "{summary:#}"
    );
    let dead = std::fs::read_to_string(out.path().join("dead_letters.jsonl")).unwrap();
    assert!(dead.contains("[REDACTED]"), "{dead}");
    // The embedded live run, following a directory the same files are written into.
    live_run_leaks_nothing(&paths, "read", summary["read"].as_u64().unwrap(), &secrets);
}

/// Valid records of Entra, GitHub and Vault with secret values in them: Vault's
/// audit device with `log_raw` on writes tokens and secret data in the clear, and
/// any source can carry a stray secret field. They are normalized (so the test is
/// not about dead letters) by replay with tables and by the embedded live run, and
/// no output file, table or log holds a secret.
fn parseable_records_with_secrets() -> (Vec<(&'static str, String)>, Vec<String>) {
    let secrets = vec![
        "hvs.CAESIFAKERAWVAULTTOKEN0123456789abcdefghijk".to_owned(),
        "FAKE-raw-secret-data-password-0123456789abc".to_owned(),
        "ghp_FAKEVALIDRECORDTOKEN0123456789abcdefABCDE".to_owned(),
        "FAKE~ENTRA~VALID~RECORD~SECRET~0123456789xyz".to_owned(),
    ];
    let golden = |path: &str| -> Value {
        let file = common::root().join("testdata").join(path);
        serde_json::from_slice(&std::fs::read(&file).unwrap()).unwrap()
    };
    // Vault, log_raw: the token in auth and in the response, secret data written.
    let mut vault = golden("vault/golden/openbao_batch_token_create.input.json");
    vault["auth"]["client_token"] = json!(secrets[0]);
    vault["request"]["client_token"] = json!(secrets[0]);
    vault["request"]["data"]["password"] = json!(secrets[1]);
    vault["response"]["auth"]["client_token"] = json!(secrets[0]);
    // GitHub and Entra with a stray secret field.
    let mut github = golden("github/golden/pat_access_granted.input.json");
    github["token"] = json!(secrets[2]);
    let mut entra = golden("entra/golden/sp_signin_client_secret_graph.input.json");
    entra["clientSecret"] = json!(secrets[3]);
    entra["additionalDetails"] = json!([{"key": "secret", "value": secrets[3]}]);
    let files = vec![
        ("vault-raw.log", vault.to_string()),
        ("github-audit.json", github.to_string()),
        ("entra-signins.json", entra.to_string()),
    ];
    (files, secrets)
}

#[test]
fn secrets_in_valid_entra_github_and_vault_records_reach_no_output() {
    let (files, secrets) = parseable_records_with_secrets();
    for s in &secrets[..2] {
        assert!(
            files[0].1.contains(s.as_str()),
            "the Vault input carries the secret"
        );
    }
    let inputs = tempfile::tempdir().unwrap();
    let paths = write_inputs(inputs.path(), &files);
    let out = tempfile::tempdir().unwrap();
    let summary = replay_leaks_nothing(&paths, out.path(), &["--events"], &secrets);
    assert_eq!(summary["dead_lettered"], 0, "{summary:#}");
    assert_eq!(summary["read"], files.len() as u64, "{summary:#}");
    for source in ["vault", "github", "entra"] {
        assert_eq!(
            summary["by_source"][source]["normalized"], 1,
            "{source}: {summary:#}"
        );
    }
    assert!(out.path().join("tables").is_dir());
    // The embedded live run, with tables, following a directory.
    live_run_leaks_nothing(&paths, "normalized", files.len() as u64, &secrets);
}

/// The checker itself catches a leak (so a passing run above means something).
#[test]
fn the_checker_catches_a_partial_leak() {
    let dir = tempfile::tempdir().unwrap();
    let piece = &FAKE_TOKEN[10..10 + WINDOW];
    std::fs::write(dir.path().join("leak.txt"), format!("xx{piece}yy")).unwrap();
    let caught = std::panic::catch_unwind(|| {
        assert_no_secret_in(dir.path(), &[FAKE_TOKEN.to_owned()]);
    });
    assert!(caught.is_err());
}
