//! A moto server (local AWS API emulator) for the binary's tests: started from
//! `$LINEAGE_MOTO_SERVER` (exported by `scripts/test.sh`) or `PATH` on a free
//! 127.0.0.1 port, killed on drop. Without moto the test fails with an install hint.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const INSTALL_HINT: &str = "moto_server not found: run `scripts/services/moto.sh install` and \
     export LINEAGE_MOTO_SERVER=<the path it prints> (scripts/test.sh does both)";

/// A running moto server.
pub struct Moto {
    child: Child,
    /// `http://127.0.0.1:PORT`.
    pub endpoint: String,
    _dir: tempfile::TempDir,
}

impl Drop for Moto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn binary() -> PathBuf {
    if let Some(p) = std::env::var_os("LINEAGE_MOTO_SERVER").filter(|p| !p.is_empty()) {
        let p = PathBuf::from(p);
        assert!(
            p.is_file(),
            "LINEAGE_MOTO_SERVER={} does not exist. {INSTALL_HINT}",
            p.display()
        );
        return p;
    }
    std::env::var_os("PATH")
        .and_then(|path| {
            std::env::split_paths(&path)
                .map(|d| d.join("moto_server"))
                .find(|p| p.is_file())
        })
        .unwrap_or_else(|| panic!("{INSTALL_HINT}"))
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn tail(log: &Path) -> String {
    let text = std::fs::read_to_string(log).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(20)..].join("\n")
}

impl Moto {
    /// Starts moto and waits until it answers.
    pub fn start() -> Self {
        let bin = binary();
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("moto.log");
        let mut last = String::new();
        for _ in 0..3 {
            let port = free_port();
            let out = std::fs::File::create(&log).unwrap();
            let mut child = Command::new(&bin)
                .args(["-H", "127.0.0.1", "-p", &port.to_string()])
                .stdin(Stdio::null())
                .stdout(out.try_clone().unwrap())
                .stderr(out)
                .spawn()
                .unwrap_or_else(|e| panic!("starting {}: {e}. {INSTALL_HINT}", bin.display()));
            let endpoint = format!("http://127.0.0.1:{port}");
            let deadline = Instant::now() + Duration::from_secs(60);
            let agent = ureq::AgentBuilder::new()
                .timeout(Duration::from_secs(2))
                .build();
            loop {
                if let Some(status) = child.try_wait().unwrap() {
                    last = format!("moto_server exited ({status}):\n{}", tail(&log));
                    break;
                }
                if agent.get(&format!("{endpoint}/moto-api/")).call().is_ok() {
                    return Moto {
                        child,
                        endpoint,
                        _dir: dir,
                    };
                }
                if Instant::now() > deadline {
                    let _ = child.kill();
                    last = format!("moto_server did not answer within 60 s:\n{}", tail(&log));
                    break;
                }
                std::thread::sleep(Duration::from_millis(100));
            }
        }
        panic!("{last}");
    }

    /// Creates a bucket (path-style; moto does not check signatures).
    pub fn create_bucket(&self, bucket: &str) {
        ureq::put(&format!("{}/{bucket}", self.endpoint))
            .send_bytes(b"")
            .unwrap_or_else(|e| panic!("creating bucket {bucket}: {e}"));
    }

    /// Uploads one object.
    pub fn put_object(&self, bucket: &str, key: &str, body: &[u8]) {
        ureq::put(&format!("{}/{bucket}/{key}", self.endpoint))
            .send_bytes(body)
            .unwrap_or_else(|e| panic!("uploading s3://{bucket}/{key}: {e}"));
    }
}
