//! CloudTrail log file integrity validation (`lineage verify`): checks a local copy of
//! a trail (the S3 delivery layout, as `aws s3 sync` leaves it) against the trail's
//! digest files, the way `aws cloudtrail validate-logs` does, without AWS access.
//!
//! For each digest file (`…/CloudTrail-Digest/…_CloudTrail-Digest_….json[.gz]`):
//!
//! * every log file it lists is found by its S3 key under the given roots and its
//!   SHA-256 (of the uncompressed content) compared with `hashValue`: a difference is
//!   **tampering**, an absent file is **missing** (deleted, or not copied);
//! * the chain: `previousDigestHashValue` must be the SHA-256 of the previous digest
//!   file (uncompressed), when that file is present;
//! * the signature, when the public keys (`aws cloudtrail list-public-keys` output,
//!   `--public-keys`) and the digest's signature are at hand: the signature lives in
//!   the S3 object's metadata (`x-amz-meta-signature`), which a sync does not copy, so
//!   it is read from a sidecar `<digest file>.sig` holding its hex text. Verified with
//!   RSA PKCS#1 v1.5 / SHA-256 (ring) over `digestEndTime \n bucket/key \n
//!   hex(SHA-256(digest)) \n previousDigestSignature`. Without both, the signature is
//!   reported as not checked, never as valid.
//!
//! Log files under the roots that no digest lists are reported as **not covered**: a
//! file written into the bucket by someone other than CloudTrail has no digest entry
//! (the newest hour's files are legitimately uncovered until the next digest).

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};

/// Why verification could not run at all.
#[derive(Debug, thiserror::Error)]
pub enum VerifyError {
    /// A root or the public keys could not be read.
    #[error("{0}: {1}")]
    Io(String, std::io::Error),
    /// The public keys file is not `list-public-keys` output.
    #[error("public keys {0}: {1}")]
    Keys(String, String),
}

/// One problem found, with the file it concerns.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Finding {
    /// `tampered`, `missing`, `not_covered`, `chain_broken`, `bad_signature`,
    /// `unreadable_digest`.
    pub kind: String,
    /// The file (log or digest) it concerns: a local path, or the S3 key when absent.
    pub file: String,
    /// What was found, in words.
    pub detail: String,
}

/// What `lineage verify` found.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct VerifyReport {
    /// Digest files read.
    pub digest_files: u64,
    /// Log files whose hash matched their digest entry.
    pub log_files_valid: u64,
    /// Digest files whose signature was verified.
    pub signatures_valid: u64,
    /// Digest files whose signature could not be checked (no keys, no `.sig`).
    pub signatures_not_checked: u64,
    /// Digest files whose predecessor was present and matched.
    pub chain_links_valid: u64,
    /// Every problem, in file order.
    pub findings: Vec<Finding>,
    /// The local log files whose hash matched their digest entry, by path.
    #[serde(skip)]
    pub valid_log_paths: Vec<PathBuf>,
    /// Of those, the ones listed by a digest whose signature verified: the files
    /// that may drive automatic revocation under `require_validated_cloudtrail`.
    #[serde(skip)]
    pub signed_log_paths: Vec<PathBuf>,
}

impl VerifyReport {
    /// True when nothing was tampered with, missing, uncovered, broken or badly signed.
    pub fn clean(&self) -> bool {
        self.findings.is_empty()
    }
}

/// The fields of a digest file lineage reads.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct DigestFile {
    digest_end_time: String,
    digest_s3_bucket: String,
    digest_s3_object: String,
    #[serde(default)]
    digest_public_key_fingerprint: Option<String>,
    #[serde(default)]
    previous_digest_s3_object: Option<String>,
    #[serde(default)]
    previous_digest_hash_value: Option<String>,
    #[serde(default)]
    previous_digest_signature: Option<String>,
    #[serde(default)]
    log_files: Vec<LogFileEntry>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct LogFileEntry {
    s3_object: String,
    hash_value: String,
}

/// `aws cloudtrail list-public-keys` output.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct PublicKeys {
    public_key_list: Vec<PublicKey>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct PublicKey {
    /// Base64 of the DER (PKCS#1 RSAPublicKey).
    value: String,
    fingerprint: String,
}

/// The part of a path or key from `AWSLogs/` on: how a local copy and an S3 key meet.
fn layout_key(path: &str) -> &str {
    path.find("AWSLogs/").map_or(path, |i| &path[i..])
}

fn is_digest(name: &str) -> bool {
    name.contains("_CloudTrail-Digest_") && (name.ends_with(".json.gz") || name.ends_with(".json"))
}

fn is_log(name: &str) -> bool {
    name.contains("_CloudTrail_") && (name.ends_with(".json.gz") || name.ends_with(".json"))
}

/// The files under `root`; symbolic links to directories are not followed (no loops).
fn walk(root: &Path, out: &mut Vec<PathBuf>, top: bool) -> Result<(), VerifyError> {
    let meta =
        std::fs::metadata(root).map_err(|e| VerifyError::Io(root.display().to_string(), e))?;
    let linked_dir =
        meta.is_dir() && std::fs::symlink_metadata(root).is_ok_and(|m| m.file_type().is_symlink());
    if linked_dir && !top {
        return Ok(());
    }
    if meta.is_file() {
        out.push(root.to_owned());
        return Ok(());
    }
    let entries =
        std::fs::read_dir(root).map_err(|e| VerifyError::Io(root.display().to_string(), e))?;
    for entry in entries {
        let entry = entry.map_err(|e| VerifyError::Io(root.display().to_string(), e))?;
        walk(&entry.path(), out, false)?;
    }
    Ok(())
}

/// SHA-256 (hex) of a file's uncompressed content.
fn content_hash(path: &Path) -> Result<(String, Vec<u8>), String> {
    let raw = std::fs::read(path).map_err(|e| format!("cannot be read: {e}"))?;
    let (plain, err) = lineage_ingest::decompress(&raw);
    if let Some(e) = err {
        return Err(format!("cannot be decompressed: {e}"));
    }
    Ok((hex::encode(Sha256::digest(&plain)), plain.into_owned()))
}

fn load_keys(path: &Path) -> Result<HashMap<String, Vec<u8>>, VerifyError> {
    use base64::Engine as _;
    let name = path.display().to_string();
    let text = std::fs::read_to_string(path).map_err(|e| VerifyError::Io(name.clone(), e))?;
    let keys: PublicKeys = serde_json::from_str(&text).map_err(|e| {
        VerifyError::Keys(
            name.clone(),
            format!("not `aws cloudtrail list-public-keys` JSON output: {e}"),
        )
    })?;
    keys.public_key_list
        .into_iter()
        .map(|k| {
            let der = base64::engine::general_purpose::STANDARD
                .decode(k.value.trim())
                .map_err(|e| {
                    VerifyError::Keys(name.clone(), format!("key {}: {e}", k.fingerprint))
                })?;
            Ok((k.fingerprint, der))
        })
        .collect()
}

/// Verifies the trail copies under `roots` (see the module doc); `public_keys` is the
/// `list-public-keys` output, when signatures are to be checked.
pub fn verify(roots: &[PathBuf], public_keys: Option<&Path>) -> Result<VerifyReport, VerifyError> {
    let keys = public_keys.map(load_keys).transpose()?;
    let mut files = Vec::new();
    for root in roots {
        walk(root, &mut files, true)?;
    }
    files.sort();
    let name_of = |p: &Path| {
        p.file_name()
            .and_then(|n| n.to_str())
            .unwrap_or_default()
            .to_owned()
    };
    let mut logs: BTreeMap<String, PathBuf> = BTreeMap::new();
    let mut digests: Vec<PathBuf> = Vec::new();
    for f in files {
        let name = name_of(&f);
        let key = layout_key(&f.to_string_lossy()).to_owned();
        if is_digest(&name) {
            digests.push(f);
        } else if is_log(&name) {
            logs.insert(key, f);
        }
    }
    let mut report = VerifyReport::default();
    let finding = |kind: &str, file: String, detail: String| Finding {
        kind: kind.to_owned(),
        file,
        detail,
    };
    // Each digest's uncompressed hash by its own key, for the chain.
    let mut digest_hash: HashMap<String, String> = HashMap::new();
    let mut parsed: Vec<(PathBuf, DigestFile, String)> = Vec::new();
    for path in &digests {
        let shown = path.display().to_string();
        let (hash, plain) = match content_hash(path) {
            Ok(x) => x,
            Err(why) => {
                report.findings.push(finding(
                    "unreadable_digest",
                    shown,
                    format!("digest file {why}"),
                ));
                continue;
            }
        };
        match serde_json::from_slice::<DigestFile>(&plain) {
            Ok(d) => {
                report.digest_files += 1;
                digest_hash.insert(layout_key(&d.digest_s3_object).to_owned(), hash.clone());
                parsed.push((path.clone(), d, hash));
            }
            Err(e) => report.findings.push(finding(
                "unreadable_digest",
                shown,
                format!("not a CloudTrail digest file: {e}"),
            )),
        }
    }
    let mut covered: std::collections::HashSet<String> = std::collections::HashSet::new();
    for (path, d, hash) in &parsed {
        let shown = path.display().to_string();
        let mut matched: Vec<PathBuf> = Vec::new();
        for entry in &d.log_files {
            let key = layout_key(&entry.s3_object).to_owned();
            covered.insert(key.clone());
            let Some(local) = logs.get(&key) else {
                report.findings.push(finding(
                    "missing",
                    entry.s3_object.clone(),
                    format!("listed in {shown} but not found under the given roots (deleted, or not copied)"),
                ));
                continue;
            };
            match content_hash(local) {
                Ok((h, _)) if h.eq_ignore_ascii_case(&entry.hash_value) => {
                    report.log_files_valid += 1;
                    report.valid_log_paths.push(local.clone());
                    matched.push(local.clone());
                }
                Ok((h, _)) => report.findings.push(finding(
                    "tampered",
                    local.display().to_string(),
                    format!(
                        "SHA-256 of its content is {h}, the digest {shown} says {}: the file changed after CloudTrail delivered it",
                        entry.hash_value
                    ),
                )),
                Err(why) => report.findings.push(finding(
                    "tampered",
                    local.display().to_string(),
                    format!("log file {why}"),
                )),
            }
        }
        if let (Some(prev), Some(want)) =
            (&d.previous_digest_s3_object, &d.previous_digest_hash_value)
        {
            match digest_hash.get(layout_key(prev)) {
                Some(got) if got.eq_ignore_ascii_case(want) => report.chain_links_valid += 1,
                Some(got) => report.findings.push(finding(
                    "chain_broken",
                    shown.clone(),
                    format!("its previous digest {prev} hashes to {got}, not the {want} recorded here: a digest file was changed or replaced"),
                )),
                None => {} // the chain starts before the copied range
            }
        }
        // The signature.
        let sig_path = PathBuf::from(format!("{}.sig", path.display()));
        let sig_hex = std::fs::read_to_string(&sig_path).ok();
        match (&keys, sig_hex) {
            (Some(keys), Some(sig_hex)) => {
                let fingerprint = d.digest_public_key_fingerprint.clone().unwrap_or_default();
                let Some(der) = keys.get(&fingerprint) else {
                    report.findings.push(finding(
                        "bad_signature",
                        shown.clone(),
                        format!(
                            "signed with key {fingerprint}, which is not in the public keys given"
                        ),
                    ));
                    continue;
                };
                let message = format!(
                    "{}\n{}/{}\n{}\n{}",
                    d.digest_end_time,
                    d.digest_s3_bucket,
                    d.digest_s3_object,
                    hash,
                    d.previous_digest_signature.as_deref().unwrap_or("null")
                );
                let verified = hex::decode(sig_hex.trim()).ok().is_some_and(|sig| {
                    ring::signature::UnparsedPublicKey::new(
                        &ring::signature::RSA_PKCS1_2048_8192_SHA256,
                        der,
                    )
                    .verify(message.as_bytes(), &sig)
                    .is_ok()
                });
                if verified {
                    report.signatures_valid += 1;
                    report.signed_log_paths.append(&mut matched);
                } else {
                    report.findings.push(finding(
                        "bad_signature",
                        shown.clone(),
                        format!("the signature in {} does not verify with key {fingerprint}: the digest file is not CloudTrail's", sig_path.display()),
                    ));
                }
            }
            _ => report.signatures_not_checked += 1,
        }
    }
    for (key, local) in &logs {
        if !covered.contains(key) {
            report.findings.push(finding(
                "not_covered",
                local.display().to_string(),
                "no digest file lists it: written by someone other than CloudTrail, or newer than the last digest".into(),
            ));
        }
    }
    Ok(report)
}
