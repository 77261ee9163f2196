//! `lineage verify` against a trail copy built here the way CloudTrail delivers one:
//! two hours of log files, two chained digest files signed SHA256withRSA with the
//! suite's public test key (`testdata/cloudtrail/digest/`; its public half given as
//! `list-public-keys` output, the signatures as `.sig` sidecars). A clean copy verifies; then a log file changed after delivery, a
//! log file nobody listed, a deleted log file and a digest rewritten to cover a change
//! are each found, named, and make the exit status 1. Replay with
//! `--digest-public-keys` marks each revocation request with whether its record's file
//! validated, and `require_validated_cloudtrail` lets only those execute automatically.

mod common;

use std::io::Write;
use std::path::{Path, PathBuf};

use base64::Engine as _;
use ring::signature::{RsaKeyPair, RSA_PKCS1_SHA256};
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

const ACCOUNT: &str = "111122223333";
const BUCKET: &str = "org-trail";

fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    enc.write_all(bytes).unwrap();
    enc.finish().unwrap()
}

fn log_key(hour: u32, tag: &str) -> String {
    format!(
        "AWSLogs/{ACCOUNT}/CloudTrail/us-east-1/2026/12/01/{ACCOUNT}_CloudTrail_us-east-1_20261201T{hour:02}05Z_{tag}.json.gz"
    )
}

fn digest_key(hour: u32) -> String {
    format!(
        "AWSLogs/{ACCOUNT}/CloudTrail-Digest/us-east-1/2026/12/01/{ACCOUNT}_CloudTrail-Digest_us-east-1_trail_us-east-1_20261201T{hour:02}3000Z.json.gz"
    )
}

fn records(hour: u32, tag: &str) -> Vec<u8> {
    json!({ "Records": [{
        "eventVersion": "1.08", "eventID": format!("{tag}-{hour}"),
        "eventTime": format!("2026-12-01T{hour:02}:01:00Z"),
        "eventSource": "s3.amazonaws.com", "eventName": "ListBuckets", "awsRegion": "us-east-1",
        "userIdentity": {"type": "IAMUser", "accessKeyId": "AKIAEXAMPLE000000001", "userName": "u"}
    }]})
    .to_string()
    .into_bytes()
}

struct Trail {
    dir: tempfile::TempDir,
    key: RsaKeyPair,
}

impl Trail {
    fn path(&self, key: &str) -> PathBuf {
        self.dir.path().join(key)
    }

    fn write(&self, key: &str, bytes: &[u8]) {
        let p = self.path(key);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, gzip(bytes)).unwrap();
    }

    /// Writes the digest of `hour` listing `logs` (key, uncompressed bytes), chained
    /// to `previous` (uncompressed digest bytes and signature), signed; returns its
    /// uncompressed bytes and signature.
    fn digest(
        &self,
        hour: u32,
        logs: &[(String, Vec<u8>)],
        previous: Option<(&[u8], &str)>,
    ) -> (Vec<u8>, String) {
        let end = format!("2026-12-01T{hour:02}:30:00Z");
        let body = json!({
            "awsAccountId": ACCOUNT,
            "digestStartTime": format!("2026-12-01T{:02}:30:00Z", hour - 1),
            "digestEndTime": end,
            "digestS3Bucket": BUCKET,
            "digestS3Object": digest_key(hour),
            "digestPublicKeyFingerprint": "test-key-1",
            "digestSignatureAlgorithm": "SHA256withRSA",
            "previousDigestS3Bucket": previous.map(|_| BUCKET),
            "previousDigestS3Object": previous.map(|_| digest_key(hour - 1)),
            "previousDigestHashValue": previous.map(|(b, _)| hex::encode(Sha256::digest(b))),
            "previousDigestHashAlgorithm": "SHA-256",
            "previousDigestSignature": previous.map(|(_, s)| s),
            "logFiles": logs.iter().map(|(k, b)| json!({
                "s3Bucket": BUCKET, "s3Object": k,
                "hashValue": hex::encode(Sha256::digest(b)), "hashAlgorithm": "SHA-256"
            })).collect::<Vec<_>>()
        })
        .to_string()
        .into_bytes();
        let message = format!(
            "{end}\n{BUCKET}/{}\n{}\n{}",
            digest_key(hour),
            hex::encode(Sha256::digest(&body)),
            previous.map_or("null", |(_, s)| s)
        );
        let mut sig = vec![0u8; self.key.public().modulus_len()];
        self.key
            .sign(
                &RSA_PKCS1_SHA256,
                &ring::rand::SystemRandom::new(),
                message.as_bytes(),
                &mut sig,
            )
            .unwrap();
        let sig = hex::encode(sig);
        self.write(&digest_key(hour), &body);
        std::fs::write(
            format!("{}.sig", self.path(&digest_key(hour)).display()),
            &sig,
        )
        .unwrap();
        (body, sig)
    }

    fn keys_file(&self) -> PathBuf {
        // ring's public key is the DER RSAPublicKey (PKCS#1), as list-public-keys gives it.
        let der = self.key.public().as_ref().to_vec();
        let p = self.dir.path().join("public-keys.json");
        std::fs::write(
            &p,
            json!({ "PublicKeyList": [{
                "Value": base64::engine::general_purpose::STANDARD.encode(&der),
                "ValidityStartTime": "2026-01-01T00:00:00Z",
                "ValidityEndTime": "2027-01-01T00:00:00Z",
                "Fingerprint": "test-key-1"
            }]})
            .to_string(),
        )
        .unwrap();
        p
    }

    fn verify(&self) -> (i32, Value) {
        let out = common::lineage()
            .arg("verify")
            .arg(self.dir.path().join("AWSLogs"))
            .arg("--public-keys")
            .arg(self.keys_file())
            .arg("--json")
            .output()
            .unwrap();
        let report: Value = serde_json::from_slice(&out.stdout)
            .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&out.stderr)));
        (out.status.code().unwrap(), report)
    }
}

fn kinds(report: &Value) -> Vec<(String, String)> {
    report["findings"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| {
            let file = f["file"].as_str().unwrap();
            let name = Path::new(file).file_name().unwrap().to_str().unwrap();
            (f["kind"].as_str().unwrap().to_owned(), name.to_owned())
        })
        .collect()
}

fn name(key: &str) -> String {
    key.rsplit('/').next().unwrap().to_owned()
}

#[test]
fn a_trail_copy_verifies_and_every_change_to_it_is_named() {
    let key = std::fs::read(common::root().join("testdata/cloudtrail/digest/test-signing-key.der"))
        .unwrap();
    let trail = Trail {
        dir: tempfile::tempdir().unwrap(),
        key: RsaKeyPair::from_der(&key).unwrap(),
    };
    let hour10 = vec![
        (log_key(10, "a"), records(10, "a")),
        (log_key(10, "b"), records(10, "b")),
    ];
    let hour11 = vec![(log_key(11, "c"), records(11, "c"))];
    for (k, b) in hour10.iter().chain(&hour11) {
        trail.write(k, b);
    }
    let (first, first_sig) = trail.digest(10, &hour10, None);
    trail.digest(11, &hour11, Some((&first, &first_sig)));

    let (code, report) = trail.verify();
    assert_eq!(code, 0, "{report:#}");
    assert_eq!(report["digest_files"], 2);
    assert_eq!(report["log_files_valid"], 3);
    assert_eq!(report["chain_links_valid"], 1);
    assert_eq!(report["signatures_valid"], 2);
    assert_eq!(report["signatures_not_checked"], 0);

    // A log file changed after delivery (an event renamed), a file nobody listed
    // (forged into the bucket), and a deleted one.
    let changed = String::from_utf8(records(10, "a"))
        .unwrap()
        .replace("ListBuckets", "DeleteBucket");
    trail.write(&log_key(10, "a"), changed.as_bytes());
    trail.write(&log_key(11, "forged"), &records(11, "forged"));
    std::fs::remove_file(trail.path(&log_key(11, "c"))).unwrap();
    let (code, report) = trail.verify();
    assert_eq!(code, 1, "{report:#}");
    let mut found = kinds(&report);
    found.sort();
    assert_eq!(
        found,
        vec![
            ("missing".to_owned(), name(&log_key(11, "c"))),
            ("not_covered".to_owned(), name(&log_key(11, "forged"))),
            ("tampered".to_owned(), name(&log_key(10, "a"))),
        ],
        "{report:#}"
    );
    assert_eq!(report["log_files_valid"], 1);

    // Rewriting the digest to cover the change: its signature no longer verifies,
    // and the next digest's link to it breaks.
    let forged_hour10 = vec![
        (log_key(10, "a"), changed.into_bytes()),
        (log_key(10, "b"), records(10, "b")),
    ];
    // Whoever rewrites it cannot sign it: the original signature stays.
    let sig_path = format!("{}.sig", trail.path(&digest_key(10)).display());
    let original_sig = std::fs::read(&sig_path).unwrap();
    trail.digest(10, &forged_hour10, None);
    std::fs::write(&sig_path, original_sig).unwrap();
    let (code, report) = trail.verify();
    assert_eq!(code, 1, "{report:#}");
    let found = kinds(&report);
    assert!(
        found.contains(&("bad_signature".to_owned(), name(&digest_key(10)))),
        "{report:#}"
    );
    assert!(
        found.contains(&("chain_broken".to_owned(), name(&digest_key(11)))),
        "{report:#}"
    );
    assert!(
        !found
            .iter()
            .any(|(k, n)| k == "tampered" && *n == name(&log_key(10, "a"))),
        "the rewritten digest matches the changed file, so only the signature tells: {report:#}"
    );
}

/// A use by `key` (an IAM user's access key) at `hour`:01.
fn use_by(hour: u32, tag: &str, key: &str, user: &str) -> Vec<u8> {
    json!({ "Records": [{
        "eventVersion": "1.08", "eventID": format!("{tag}-{hour}"),
        "eventTime": format!("2026-12-01T{hour:02}:01:00Z"),
        "eventSource": "s3.amazonaws.com", "eventName": "ListBuckets", "awsRegion": "us-east-1",
        "sourceIPAddress": "198.51.100.9", "userAgent": "aws-cli/2.13.0",
        "userIdentity": {"type": "IAMUser", "accessKeyId": key, "userName": user,
            "accountId": ACCOUNT, "arn": format!("arn:aws:iam::{ACCOUNT}:user/{user}")},
        "recipientAccountId": ACCOUNT
    }]})
    .to_string()
    .into_bytes()
}

/// With `require_validated_cloudtrail`, a departed owner's key seen in a file that
/// validated against the signed digests is revoked automatically (here: a dry run
/// says it would be), and one seen only in a file no digest covers (written into the
/// bucket by someone else) waits for a person, with the reason.
#[test]
fn only_digest_validated_cloudtrail_files_drive_automatic_revocation() {
    let key = std::fs::read(common::root().join("testdata/cloudtrail/digest/test-signing-key.der"))
        .unwrap();
    let trail = Trail {
        dir: tempfile::tempdir().unwrap(),
        key: RsaKeyPair::from_der(&key).unwrap(),
    };
    let (valid_key, forged_key) = ("AKIADANAVALID0000001", "AKIAERIKFORGED000001");
    let hour10 = vec![(log_key(10, "a"), use_by(10, "a", valid_key, "dana-bot"))];
    trail.write(&hour10[0].0, &hour10[0].1);
    trail.digest(10, &hour10, None);
    // Not in any digest: what someone with write access to the bucket could add.
    trail.write(
        &log_key(10, "forged"),
        &use_by(10, "forged", forged_key, "erik-bot"),
    );

    let dir = trail.dir.path();
    let inventory = dir.join("inventory.toml");
    std::fs::write(
        &inventory,
        format!(
            r#"[[human]]
id = "dana"
status = "departed"
departed_at = "2026-11-01T00:00:00Z"

[[human]]
id = "erik"
status = "departed"
departed_at = "2026-11-01T00:00:00Z"

[[agent]]
id = "dana-bot"
kind = "ai-agent"
owner = "dana"
credentials = ["{valid_key}"]

[[agent]]
id = "erik-bot"
kind = "ai-agent"
owner = "erik"
credentials = ["{forged_key}"]
"#
        ),
    )
    .unwrap();
    let cfg = dir.join("lineage.toml");
    std::fs::write(
        &cfg,
        format!(
            "[response]\nledger = {:?}\n\n[response.policy]\ndry_run = true\nrequire_validated_cloudtrail = true\n\n[[response.policy.allow]]\nowner = \"*\"\n",
            dir.join("ledger.jsonl").display().to_string()
        ),
    )
    .unwrap();
    let replay = |out: &Path, validate: bool| -> Vec<Value> {
        let mut args = vec![
            "--inventory".to_owned(),
            inventory.display().to_string(),
            "--config".to_owned(),
            cfg.display().to_string(),
            "--respond".to_owned(),
            "--no-tables".to_owned(),
        ];
        if validate {
            args.push("--digest-public-keys".to_owned());
            args.push(trail.keys_file().display().to_string());
        }
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let o = common::replay(&[&dir.join("AWSLogs")], out, &args);
        common::assert_exit(&o, 0);
        common::jsonl(&out.join("actions.jsonl"))
    };
    let on = |actions: &[Value], key: &str| -> Value {
        actions
            .iter()
            .find(|a| a["credential"]["id"] == key)
            .unwrap_or_else(|| panic!("no action on {key}: {actions:#?}"))
            .clone()
    };

    let actions = replay(&dir.join("out-validated"), true);
    let valid = on(&actions, valid_key);
    assert_eq!(
        valid["evidence"]["record_integrity"], "digest-validated",
        "{valid:#}"
    );
    assert_eq!(valid["status"], "dry-run", "{valid:#}");
    let forged = on(&actions, forged_key);
    assert_eq!(
        forged["evidence"]["record_integrity"], "not-validated",
        "{forged:#}"
    );
    assert_eq!(forged["status"], "pending-approval", "{forged:#}");
    assert!(
        forged.to_string().contains("require_validated_cloudtrail"),
        "{forged:#}"
    );

    // Without validation nothing is known to be CloudTrail's own: both wait.
    let actions = replay(&dir.join("out-unvalidated"), false);
    for key in [valid_key, forged_key] {
        let a = on(&actions, key);
        assert_eq!(a["evidence"]["record_integrity"], "not-validated", "{a:#}");
        assert_eq!(a["status"], "pending-approval", "{a:#}");
    }
}
