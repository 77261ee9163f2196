//! Helpers shared by the integration tests of the `lineage` binary.
#![allow(dead_code)] // each test crate uses a different subset

use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

/// The workspace root (where `testdata/` lives).
pub fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The Invictus CloudTrail directory and its inventory.
pub fn invictus() -> (PathBuf, PathBuf) {
    let dir = root().join("testdata/cloudtrail/invictus");
    (dir.join("CloudTrail"), dir.join("inventory.toml"))
}

/// Runs `lineage replay <inputs> --out <out> [extra…]` and returns its output.
pub fn replay(inputs: &[&Path], out: &Path, extra: &[&str]) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_lineage"));
    cmd.arg("replay");
    cmd.args(inputs);
    cmd.arg("--out").arg(out);
    cmd.args(extra);
    // Keep the tests independent of the caller's log settings.
    cmd.env_remove("LINEAGE_LOG");
    cmd.output().expect("the lineage binary runs")
}

/// Fails with stdout and stderr when the exit code is not `code`.
pub fn assert_exit(output: &Output, code: i32) {
    assert_eq!(
        output.status.code(),
        Some(code),
        "exit status {:?}\n--- stdout\n{}\n--- stderr\n{}",
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}

/// The fields of an alert that do not depend on when the pipeline looked at it
/// (count, last_seen, evidence ids and blast radius grow after an alert opens).
/// The departed-owner detector's `credentials_of_owner` evidence lists the owner's
/// credentials seen so far on *every* root, so it depends on how partitions
/// interleave; it is left out (documented in `pipeline/src/kafka/mod.rs`).
pub fn comparable_alert(a: &Value) -> Value {
    let mut evidence = a["evidence"].clone();
    if let Some(e) = evidence.as_object_mut() {
        e.remove("credentials_of_owner");
    }
    serde_json::json!({
        "id": a["id"], "detector": a["detector"], "severity": a["severity"],
        "title": a["title"], "dedup_key": a["dedup_key"], "first_seen": a["first_seen"],
        "credential": a["credential"], "root_credential": a["root_credential"],
        "agent": a["agent"], "owner": a["owner"], "lineage_path": a["lineage_path"],
        "mitre": a["mitre"], "evidence": evidence,
    })
}

/// `summary.json` of an output directory.
pub fn summary(out: &Path) -> Value {
    let text = std::fs::read_to_string(out.join("summary.json")).expect("summary.json written");
    serde_json::from_str(&text).expect("summary.json is JSON")
}

/// The lines of a JSON-lines output file (empty when the file is empty).
pub fn jsonl(path: &Path) -> Vec<Value> {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    text.lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{}: {e}", path.display())))
        .collect()
}

/// Every record of the Invictus `{"Records":[…]}` files, in file order.
pub fn invictus_records() -> Vec<Value> {
    let (dir, _) = invictus();
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "json"))
        .collect();
    files.sort();
    let mut out = Vec::new();
    for f in files {
        let doc: Value = serde_json::from_slice(&std::fs::read(&f).unwrap()).unwrap();
        match doc.get("Records") {
            Some(Value::Array(records)) => out.extend(records.iter().cloned()),
            _ => panic!("{}: not a Records file", f.display()),
        }
    }
    out
}

/// The number `read == normalized + dead_lettered` holds in a summary, overall and per source.
pub fn assert_counts_add_up(summary: &Value) {
    let n = |v: &Value, k: &str| v[k].as_u64().unwrap_or_else(|| panic!("no `{k}` in {v}"));
    assert_eq!(
        n(summary, "read"),
        n(summary, "normalized") + n(summary, "dead_lettered"),
        "{summary:#}"
    );
    for (source, c) in summary["by_source"].as_object().unwrap() {
        assert_eq!(
            n(c, "read"),
            n(c, "normalized") + n(c, "dead_lettered"),
            "{source}"
        );
    }
}

/// Every file under `dir`, recursively.
pub fn files_under(dir: &Path, out: &mut Vec<PathBuf>) {
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            files_under(&p, out);
        } else {
            out.push(p);
        }
    }
}

/// Each table under `<out>/tables` with its row count, read from the Parquet
/// footers (closed files only: in-progress files are hidden and not counted).
pub fn table_rows(out: &Path) -> Vec<(String, usize)> {
    use parquet::file::reader::FileReader;
    let mut names: Vec<(String, usize)> = std::fs::read_dir(out.join("tables"))
        .unwrap()
        .map(|e| {
            let p = e.unwrap().path();
            let mut parts = Vec::new();
            files_under(&p, &mut parts);
            let rows = parts
                .iter()
                .filter(|f| f.extension().is_some_and(|e| e == "parquet"))
                .map(|f| {
                    let file = std::fs::File::open(f).unwrap();
                    parquet::file::reader::SerializedFileReader::new(file)
                        .map(|r| r.metadata().file_metadata().num_rows() as usize)
                        .unwrap()
                })
                .sum();
            (p.file_name().unwrap().to_string_lossy().into_owned(), rows)
        })
        .collect();
    names.sort();
    names
}

// ---------------------------------------------------------------- lineage run

/// The `lineage` binary, with the caller's log settings removed.
pub fn lineage() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_lineage"));
    c.env_remove("LINEAGE_LOG");
    c
}

/// A `lineage run` process; killed on drop.
pub struct Runner {
    child: Child,
    metrics: String,
    log: PathBuf,
}

impl Runner {
    /// Starts `lineage run --config CONFIG`, logging to `log` (appended).
    pub fn start(config: &Path, metrics_port: u16, log: PathBuf) -> Self {
        Self::start_with(config, metrics_port, log, &[])
    }

    /// [`Runner::start`] with extra environment variables.
    pub fn start_with(
        config: &Path,
        metrics_port: u16,
        log: PathBuf,
        env: &[(&str, &str)],
    ) -> Self {
        let out = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log)
            .unwrap();
        let child = lineage()
            .args(["run", "--config"])
            .arg(config)
            .env("LINEAGE_LOG", "info")
            .envs(env.iter().copied())
            .stdin(Stdio::null())
            .stdout(out.try_clone().unwrap())
            .stderr(out)
            .spawn()
            .expect("lineage run starts");
        Runner {
            child,
            metrics: format!("http://127.0.0.1:{metrics_port}"),
            log,
        }
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// The process's peak resident memory so far, in KiB (`VmHWM`).
    pub fn peak_rss_kib(&self) -> u64 {
        proc_status_kib(self.child.id(), "VmHWM:")
    }

    pub fn get(&self, path: &str) -> Option<(u16, String)> {
        ureq_get(&format!("{}{path}", self.metrics)).ok()
    }

    /// Waits until `/health` says every stage is ready.
    pub fn wait_healthy(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                panic!("lineage run exited ({status}):\n{}", self.log());
            }
            if let Some((200, _)) = self.get("/health") {
                return;
            }
            assert!(Instant::now() < deadline, "never healthy:\n{}", self.log());
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// A counter from `/metrics` summed over the lines that contain every `filter`.
    pub fn metric(&self, name: &str, filters: &[&str]) -> f64 {
        let Some((_, text)) = self.get("/metrics") else {
            return 0.0;
        };
        text.lines()
            .filter(|l| l.starts_with(name) && filters.iter().all(|f| l.contains(f)))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .sum()
    }

    /// Waits until [`Runner::metric`] reaches `at_least`; fails with the log when the
    /// process exits or `within` passes.
    pub fn wait_metric(&mut self, name: &str, filters: &[&str], at_least: f64, within: Duration) {
        let deadline = Instant::now() + within;
        while self.metric(name, filters) < at_least {
            assert!(self.running(), "{}", self.log());
            assert!(
                Instant::now() < deadline,
                "{name} {filters:?} below {at_least} after {within:?}:\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    pub fn sigterm(mut self) -> std::process::ExitStatus {
        let pid = self.child.id().to_string();
        let ok = Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .unwrap()
            .success();
        assert!(ok, "kill -TERM {pid}");
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Some(s) = self.child.try_wait().unwrap() {
                return s;
            }
            assert!(
                Instant::now() < deadline,
                "no exit after SIGTERM:\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Waits (up to 90 s) until `point` is reached, panicking with the metrics and
    /// the log if it is not.
    pub fn wait_for(&self, name: &str, point: &KillPoint) {
        let started = Instant::now();
        let (metric, filters, at_least) = match point {
            KillPoint::AfterMs(ms) => {
                std::thread::sleep(Duration::from_millis(*ms));
                return;
            }
            KillPoint::Metric(metric, filters, at_least) => (*metric, *filters, *at_least),
        };
        loop {
            if self.metric(metric, filters) >= at_least {
                return;
            }
            if started.elapsed() > Duration::from_secs(90) {
                let metrics = self.get("/metrics").map(|(_, t)| t).unwrap_or_default();
                panic!(
                    "kill point {name:?} ({metric} {filters:?} >= {at_least}) not reached in 90 s\n{metrics}\n{}",
                    self.log()
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Waits (up to 60 s) for the process to exit by itself; its status.
    pub fn wait_exit(&mut self) -> std::process::ExitStatus {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Some(s) = self.child.try_wait().unwrap() {
                return s;
            }
            assert!(Instant::now() < deadline, "still running:\n{}", self.log());
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// True while the process runs.
    pub fn running(&mut self) -> bool {
        self.child.try_wait().unwrap().is_none()
    }

    pub fn sigkill(mut self) {
        self.child.kill().unwrap(); // SIGKILL
        self.child.wait().unwrap();
    }
}

/// When the crash test kills a process.
pub enum KillPoint {
    /// This long after the process reports healthy.
    AfterMs(u64),
    /// Once this process's counter (summed over lines with every filter) reaches the value.
    Metric(&'static str, &'static [&'static str], f64),
}

impl Drop for Runner {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A tiny HTTP GET over std (status, body); the metrics endpoint is plain HTTP/1.1.
pub fn ureq_get(url: &str) -> std::io::Result<(u16, String)> {
    use std::io::{Read, Write};
    let rest = url.strip_prefix("http://").unwrap();
    let (host, path) = rest
        .split_once('/')
        .map_or((rest, "/".to_string()), |(h, p)| (h, format!("/{p}")));
    let mut s = TcpStream::connect(host)?;
    s.set_read_timeout(Some(Duration::from_secs(5)))?;
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n"
    )?;
    let mut buf = String::new();
    s.read_to_string(&mut buf)?;
    let status = buf
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let body = buf
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_owned())
        .unwrap_or_default();
    Ok((status, body))
}

/// Simulates an enterprise into `dir`; returns the log directories (all sources).
pub fn simulate(dir: &Path, extra: &[&str]) -> Vec<String> {
    let out = lineage()
        .args(["simulate", "--out"])
        .arg(dir)
        .args(extra)
        .output()
        .unwrap();
    assert_exit(&out, 0);
    let mut inputs: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.is_dir())
        .map(|p| p.display().to_string())
        .collect();
    inputs.sort();
    assert!(inputs.len() >= 4, "all four sources simulated: {inputs:?}");
    inputs
}

/// `lineage ingest auto --to kafka` of `inputs`; its JSON report.
pub fn ingest(brokers: &str, inputs: &[String]) -> Value {
    let out = lineage()
        .args([
            "ingest",
            "auto",
            "--to",
            "kafka",
            "--brokers",
            brokers,
            "--from",
        ])
        .args(inputs)
        .output()
        .unwrap();
    assert_exit(&out, 0);
    serde_json::from_slice(&out.stdout).expect("ingest prints a JSON report")
}

/// A `/proc/<pid>/status` line's value in KiB (0 when the process is gone).
pub fn proc_status_kib(pid: u32, key: &str) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix(key))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap_or(0)
}

/// Runs `cmd` to the end; its output and its peak resident memory in KiB, as the
/// kernel accounted it for that one child (`wait4`'s `ru_maxrss`).
pub fn output_with_peak_rss(cmd: &mut Command) -> (Output, u64) {
    use std::os::unix::process::ExitStatusExt;
    let dir = tempfile::tempdir().unwrap();
    let (out_path, err_path) = (dir.path().join("stdout"), dir.path().join("stderr"));
    let child = cmd
        .stdin(Stdio::null())
        .stdout(std::fs::File::create(&out_path).unwrap())
        .stderr(std::fs::File::create(&err_path).unwrap())
        .spawn()
        .unwrap();
    let pid = child.id() as libc::pid_t;
    let mut status = 0;
    // SAFETY: `rusage` is plain integers and timevals, for which all zeros is valid.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: both pointers are to live locals; `pid` is our own child, which
    // `child` never waits for (it is dropped without a wait), so it is reaped once.
    let reaped = unsafe { libc::wait4(pid, &mut status, 0, &mut usage) };
    assert_eq!(reaped, pid, "wait4: {}", std::io::Error::last_os_error());
    drop(child);
    let output = Output {
        status: std::process::ExitStatus::from_raw(status),
        stdout: std::fs::read(&out_path).unwrap(),
        stderr: std::fs::read(&err_path).unwrap(),
    };
    (output, usage.ru_maxrss as u64)
}

/// The late-departure fixture: an agent's key used at 07:59, 08:05 and 08:10, and an
/// Entra "Disable account" of its owner at 08:00:03 (`testdata/entra/golden`), as
/// two files to deliver in that order (the departure after the uses).
pub struct LateDeparture {
    pub inventory: PathBuf,
    pub trail: PathBuf,
    pub disable: PathBuf,
}

impl LateDeparture {
    pub fn write(dir: &Path) -> Self {
        let inventory = dir.join("inventory.toml");
        std::fs::write(
            &inventory,
            r#"[[human]]
id = "marek"
aliases = { entra_upn = ["marek.nowak@contoso-labs.onmicrosoft.com"] }

[[agent]]
id = "deploy-bot"
kind = "ci"
owner = "marek"
credentials = ["AKIALATEFACT00000001"]
"#,
        )
        .unwrap();
        let uses: Vec<Value> = [
            ("late-0759", "07:59"),
            ("late-0805", "08:05"),
            ("late-0810", "08:10"),
        ]
        .iter()
        .map(|(id, hm)| {
            serde_json::json!({
                "eventVersion": "1.08", "eventID": id, "eventTime": format!("2025-04-01T{hm}:00Z"),
                "eventSource": "s3.amazonaws.com", "eventName": "PutObject", "awsRegion": "us-east-1",
                "sourceIPAddress": "198.51.100.7", "userAgent": "aws-cli/2.15.0",
                "userIdentity": {"type": "IAMUser", "accessKeyId": "AKIALATEFACT00000001",
                    "userName": "deploy", "accountId": "111122223333"},
                "requestParameters": {"bucketName": "releases", "key": "app.tar.gz"}
            })
        })
        .collect();
        let trail = dir.join("trail.json");
        std::fs::write(&trail, serde_json::json!({ "Records": uses }).to_string()).unwrap();
        let disable = dir.join("entra-disable.json");
        std::fs::copy(
            root().join("testdata/entra/golden/audit_disable_account_diagnostic.input.json"),
            &disable,
        )
        .unwrap();
        Self {
            inventory,
            trail,
            disable,
        }
    }

    /// The departed-owner alert replay raises over both files (its one).
    pub fn replay_alert(&self, out: &Path) -> Value {
        let inv = self.inventory.display().to_string();
        let o = replay(
            &[&self.trail, &self.disable],
            out,
            &["--inventory", &inv, "--no-tables"],
        );
        assert_exit(&o, 0);
        let departed: Vec<Value> = jsonl(&out.join("alerts.jsonl"))
            .into_iter()
            .filter(|a| a["detector"] == "departed-owner")
            .collect();
        assert_eq!(departed.len(), 1, "{departed:#?}");
        departed.into_iter().next().unwrap()
    }

    /// `got` is replay's alert `want`, marked late by at least the 5 minutes between
    /// the departure and the first use after it.
    pub fn assert_late_alert(got: &Value, want: &Value) {
        let late = &got["evidence"]["late_fact"];
        assert_eq!(late["fact"], "owner-departed", "{got:#}");
        assert!(late["late_secs"].as_i64().unwrap() >= 5 * 60, "{late}");
        let mut live = comparable_alert(got);
        live["evidence"]
            .as_object_mut()
            .unwrap()
            .remove("late_fact");
        assert_eq!(live, comparable_alert(want));
        assert_eq!(got["first_seen"], "2025-04-01T08:05:00Z", "{got:#}");
    }
}

/// A `lineage run` config on the Kafka bus, as the Kafka tests write it: short polls,
/// metadata refreshed every second, metrics on `metrics_port`.
pub struct KafkaRunConfig<'a> {
    pub brokers: &'a str,
    pub group: &'a str,
    pub inventory: &'a Path,
    pub out: &'a Path,
    pub metrics_port: u16,
    /// TOML before `[bus]` (top-level keys such as `sigma_rules`).
    pub top: &'a str,
    /// More `[run]` settings (TOML lines).
    pub extra_run: &'a str,
}

impl<'a> KafkaRunConfig<'a> {
    /// Nothing before `[bus]` and no more `[run]` settings.
    pub fn new(
        brokers: &'a str,
        group: &'a str,
        inventory: &'a Path,
        out: &'a Path,
        metrics_port: u16,
    ) -> Self {
        Self {
            brokers,
            group,
            inventory,
            out,
            metrics_port,
            top: "",
            extra_run: "",
        }
    }

    pub fn write(&self, path: &Path) {
        let text = format!(
            r#"{top}
[bus]
kind = "kafka"
brokers = "{brokers}"
group_id = "{group}"

[bus.librdkafka]
"topic.metadata.refresh.interval.ms" = "1000"

[run]
metrics_addr = "127.0.0.1:{port}"
inventory = "{inv}"
out_dir = "{out}"
batch = 2000
poll_ms = 100
{extra_run}
"#,
            top = self.top,
            brokers = self.brokers,
            group = self.group,
            port = self.metrics_port,
            inv = self.inventory.display(),
            out = self.out.display(),
            extra_run = self.extra_run,
        );
        std::fs::write(path, text).unwrap();
    }
}
