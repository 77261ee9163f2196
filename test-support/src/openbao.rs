//! An OpenBao dev server: started from `$LINEAGE_BAO_BIN` (exported by
//! `scripts/test.sh`) or `bao` on `PATH`, on a free 127.0.0.1 port, with the audit
//! devices the test declares (OpenBao enables audit devices only from its
//! configuration file), killed on drop.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const INSTALL_HINT: &str = "the OpenBao server binary `bao` is needed: run \
     `scripts/services/openbao.sh install` and export LINEAGE_BAO_BIN=<the path it prints> \
     (scripts/test.sh does both)";

/// A running dev server.
pub struct OpenBao {
    child: Child,
    /// `http://127.0.0.1:PORT`.
    pub addr: String,
    /// The root token (random per start).
    pub root_token: String,
    dir: PathBuf,
}

impl Drop for OpenBao {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn audit_hcl(kind: &str, name: &str, options: &[(&str, String)]) -> String {
    let opts: Vec<String> = options
        .iter()
        .map(|(k, v)| format!("    {k} = {v:?}"))
        .collect();
    format!(
        "audit \"{kind}\" \"{name}\" {{\n  options {{\n{}\n  }}\n}}\n",
        opts.join("\n")
    )
}

/// A `file` audit device writing to `path` (with OpenBao's defaults: accessors
/// HMAC'd).
pub fn file_device(name: &str, path: &Path) -> String {
    audit_hcl("file", name, &[("file_path", path.display().to_string())])
}

/// A TCP `socket` audit device writing to `address`.
pub fn socket_device(name: &str, address: &str) -> String {
    audit_hcl(
        "socket",
        name,
        &[
            ("address", address.to_owned()),
            ("socket_type", "tcp".to_owned()),
        ],
    )
}

/// A `socket` audit device writing to the Unix socket at `path`.
pub fn unix_socket_device(name: &str, path: &Path) -> String {
    audit_hcl(
        "socket",
        name,
        &[
            ("address", path.display().to_string()),
            ("socket_type", "unix".to_owned()),
        ],
    )
}

impl OpenBao {
    /// Starts a dev server in `dir` with `audit` (HCL: [`file_device`],
    /// [`socket_device`]) and waits until it is healthy; `ready` is checked too
    /// (e.g. that an audit file exists).
    pub fn start(dir: &Path, audit: &str, ready: impl Fn() -> bool) -> OpenBao {
        let bin = crate::service_binary("LINEAGE_BAO_BIN", "bao", INSTALL_HINT);
        let config = dir.join("openbao.hcl");
        std::fs::write(&config, audit).unwrap();
        let agent = ureq::AgentBuilder::new()
            .timeout(Duration::from_secs(5))
            .build();
        let log_path = dir.join("server.log");
        let mut last = String::new();
        for attempt in 0..3 {
            let port = crate::free_port();
            let root_token = format!("root-{port}-{}-{attempt}", std::process::id());
            let log = std::fs::File::create(&log_path).unwrap();
            let child = Command::new(&bin)
                .arg("server")
                .arg("-dev")
                .arg(format!("-dev-root-token-id={root_token}"))
                .arg(format!("-dev-listen-address=127.0.0.1:{port}"))
                .arg(format!("-config={}", config.display()))
                // Dev mode keeps the root token under $HOME; keep it in the temp dir.
                .env("HOME", dir)
                .env_remove("BAO_ADDR")
                .env_remove("BAO_TOKEN")
                .env_remove("VAULT_ADDR")
                .env_remove("VAULT_TOKEN")
                .stdin(Stdio::null())
                .stdout(log.try_clone().unwrap())
                .stderr(log)
                .spawn()
                .unwrap_or_else(|e| panic!("starting {}: {e}. {INSTALL_HINT}", bin.display()));
            let mut bao = OpenBao {
                child,
                addr: format!("http://127.0.0.1:{port}"),
                root_token,
                dir: dir.to_owned(),
            };
            let deadline = Instant::now() + Duration::from_secs(60);
            while Instant::now() < deadline {
                if let Ok(Some(status)) = bao.child.try_wait() {
                    last = format!("exited with {status}");
                    break;
                }
                let healthy = agent
                    .get(&format!("{}/v1/sys/health", bao.addr))
                    .call()
                    .is_ok();
                if healthy && ready() {
                    return bao;
                }
                std::thread::sleep(Duration::from_millis(100));
            }
            let _ = bao.child.kill();
            let _ = bao.child.wait();
            last = format!("{last}\n{}", crate::tail(&log_path, 40));
        }
        panic!("OpenBao did not start: {last}");
    }

    /// The server's pid (for signals).
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The server's log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("server.log")).unwrap_or_default()
    }

    /// A request to `path` (`/v1/…`) with the root token.
    pub fn request(&self, method: &str, path: &str) -> ureq::Request {
        ureq::request(method, &format!("{}{path}", self.addr))
            .set("X-Vault-Token", &self.root_token)
            .timeout(Duration::from_secs(10))
    }
}
