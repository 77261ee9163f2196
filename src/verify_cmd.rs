//! `lineage verify`: CloudTrail log file integrity validation of a local trail copy
//! (see `lineage_replay::verify`).

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, Result};

/// Arguments of `lineage verify`.
#[derive(clap::Args, Debug)]
pub(crate) struct VerifyArgs {
    /// Directories (or files) holding the trail's log and digest files in the S3
    /// delivery layout (`…/AWSLogs/<account>/CloudTrail[-Digest]/…`), as
    /// `aws s3 sync s3://BUCKET/AWSLogs ./AWSLogs` leaves them.
    #[arg(required = true, value_name = "PATH")]
    paths: Vec<PathBuf>,
    /// The output of `aws cloudtrail list-public-keys` (JSON), to check the digest
    /// files' signatures. Each digest's signature is read from `<digest file>.sig`
    /// (its hex text: the object's `x-amz-meta-signature`, which `aws s3 sync` does
    /// not copy; `aws s3api head-object --bucket B --key K --query Metadata.signature
    /// --output text` prints it). Without this, signatures are reported unchecked.
    #[arg(long, value_name = "FILE")]
    public_keys: Option<PathBuf>,
    /// Print the report as JSON on stdout.
    #[arg(long)]
    json: bool,
}

/// Runs it: exit 0 when every listed log file matched its digest and nothing was
/// missing, uncovered, broken or badly signed; 1 otherwise, each problem listed.
pub(crate) fn run(args: VerifyArgs) -> Result<ExitCode> {
    let report = lineage_replay::verify::verify(&args.paths, args.public_keys.as_deref())
        .context("verifying the trail")?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        println!(
            "{} digest files: {} log files match their digests, {} chain links hold, signatures {} verified / {} not checked",
            report.digest_files,
            report.log_files_valid,
            report.chain_links_valid,
            report.signatures_valid,
            report.signatures_not_checked,
        );
        for f in &report.findings {
            println!("{:<14} {}: {}", f.kind, f.file, f.detail);
        }
        if report.digest_files == 0 {
            println!("no digest files found: turn on log file validation for the trail and copy CloudTrail-Digest/ too");
        }
    }
    Ok(if report.clean() && report.digest_files > 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}
