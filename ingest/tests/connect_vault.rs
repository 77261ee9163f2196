//! The Vault/OpenBao socket listener and file tailer against a real OpenBao dev
//! server (`$LINEAGE_BAO_BIN`, else `bao` on `PATH`; `scripts/services/openbao.sh
//! install` installs it) whose config file declares a `socket` audit device pointing
//! at the listener and a `file` audit device. While requests are made over the HTTP
//! API, the tailer is stopped without acking, the file is rotated by rename +
//! SIGHUP while it is down (the resumed tailer finds the rotated file by inode), and
//! later rotated by copytruncate. Every (entry type, request id) arrives exactly
//! once through each connector, and both connectors see the same set.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use lineage_ingest::connect::file_tail::{FileTailConfig, FileTailConnector};
use lineage_ingest::connect::vault_socket::{Listen, VaultSocketConfig, VaultSocketListener};
use lineage_ingest::connect::{CheckpointStore, Connector, RawBatch};
use lineage_ingest::{parse_bytes, ParseLimits, VaultParser};
use lineage_test_support::{file_device, socket_device, unix_socket_device, OpenBao};

struct Bao {
    server: OpenBao,
    addr: String,
    token: String,
    agent: ureq::Agent,
}

impl Bao {
    /// A dev server with a `file` device writing `audit_log` and a `socket` device
    /// sending to `socket`.
    fn start(dir: &Path, audit_log: &Path, socket: std::net::SocketAddr) -> Bao {
        Bao::with_socket_device(dir, audit_log, &socket_device("sock", &socket.to_string()))
    }

    /// A dev server with a `file` device writing `audit_log` and `socket_device`.
    fn with_socket_device(dir: &Path, audit_log: &Path, socket_device: &str) -> Bao {
        let devices = file_device("tail", audit_log) + socket_device;
        let server = OpenBao::start(dir, &devices, || audit_log.exists());
        Bao {
            addr: server.addr.clone(),
            token: server.root_token.clone(),
            server,
            agent: ureq::AgentBuilder::new()
                .timeout(Duration::from_secs(5))
                .build(),
        }
    }

    /// Writes and reads `n` KV v2 secrets: 2n audited requests.
    fn traffic(&self, tag: &str, n: usize) {
        for i in 0..n {
            let path = format!("{}/v1/secret/data/{tag}-{i}", self.addr);
            self.agent
                .post(&path)
                .set("X-Vault-Token", &self.token)
                .send_json(serde_json::json!({"data": {"value": format!("v{i}")}}))
                .unwrap();
            self.agent
                .get(&path)
                .set("X-Vault-Token", &self.token)
                .call()
                .unwrap();
        }
    }

    fn sighup(&self) {
        let ok = Command::new("kill")
            .arg("-HUP")
            .arg(self.server.pid().to_string())
            .status()
            .unwrap()
            .success();
        assert!(ok, "kill -HUP failed");
    }
}

/// (type, request id) of an audit entry; the entries OpenBao writes for its own
/// internal requests carry no request id, so their timestamp stands in.
fn entry_key(v: &serde_json::Value) -> (String, String, String) {
    let id = v["request"]["id"]
        .as_str()
        .map(str::to_owned)
        .unwrap_or_else(|| format!("time:{}", v["time"].as_str().unwrap_or_default()));
    let path = v["request"]["path"].as_str().unwrap_or_default().to_owned();
    (v["type"].as_str().unwrap_or_default().to_owned(), id, path)
}

/// (type, request id) of each audit entry in a batch.
fn entries(batch: &RawBatch) -> Vec<(String, String, String)> {
    batch
        .records
        .iter()
        .map(|r| {
            let v: serde_json::Value = serde_json::from_slice(&r.bytes)
                .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&r.bytes)));
            entry_key(&v)
        })
        .collect()
}

fn drain(tail: &mut FileTailConnector, into: &mut Vec<(String, String, String)>) {
    while let Some(b) = tail.poll().unwrap() {
        into.extend(entries(&b));
        tail.ack(b.id).unwrap();
    }
}

fn once_each(list: &[(String, String, String)]) -> BTreeMap<(String, String, String), usize> {
    let mut m = BTreeMap::new();
    for e in list {
        *m.entry(e.clone()).or_insert(0) += 1;
    }
    let dups: Vec<_> = m.iter().filter(|(_, n)| **n > 1).collect();
    assert!(dups.is_empty(), "delivered more than once: {dups:?}");
    m
}

#[test]
fn vault_socket_and_rotating_file_tail_lose_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let audit_log = dir.path().join("audit.log");
    let cp = dir.path().join("tail-checkpoint.json");

    let mut listener = VaultSocketListener::bind(VaultSocketConfig {
        poll_wait: Duration::from_millis(200),
        ..VaultSocketConfig::new("127.0.0.1:0".parse().unwrap())
    })
    .unwrap();
    let socket_addr = listener.local_addr().unwrap();
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let stop_reader = stop.clone();
    let socket_reader = std::thread::spawn(move || {
        let mut got = Vec::new();
        let mut raw = Vec::new();
        while !stop_reader.load(std::sync::atomic::Ordering::SeqCst) {
            if let Some(b) = listener.poll().unwrap() {
                got.extend(entries(&b));
                for r in &b.records {
                    raw.extend_from_slice(&r.bytes);
                    raw.push(b'\n');
                }
                listener.ack(b.id).unwrap();
            }
        }
        (got, raw)
    });

    let bao = Bao::start(dir.path(), &audit_log, socket_addr);
    let config = || FileTailConfig {
        max_batch_bytes: 8 * 1024,
        ..FileTailConfig::new(&audit_log, CheckpointStore::new(&cp, "vault-file"))
    };
    let mut from_file = Vec::new();

    // Phase 1: tail, then stop with a batch handed out but not acked.
    let mut first = FileTailConnector::new(config()).unwrap();
    bao.traffic("one", 10);
    drain(&mut first, &mut from_file);
    bao.traffic("two", 5);
    let unacked = first.poll().unwrap().expect("new lines");
    assert!(!unacked.records.is_empty());
    drop(first);

    // Phase 2: rename + SIGHUP while the tailer is down; more traffic to both files.
    bao.traffic("three", 3);
    std::fs::rename(&audit_log, dir.path().join("audit.log.1")).unwrap();
    bao.sighup();
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        bao.traffic("four", 1);
        if audit_log.exists() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "OpenBao did not reopen its audit file after SIGHUP"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    bao.traffic("five", 5);

    // Phase 3: a new tailer resumes from the checkpoint: the rest of the rotated file
    // (found by inode), then the new file.
    let mut second = FileTailConnector::new(config()).unwrap();
    drain(&mut second, &mut from_file);
    assert!(
        second
            .stats()
            .skipped
            .get("rotations_followed")
            .is_some_and(|n| *n >= 1),
        "{:?}",
        second.stats()
    );

    // Phase 4: copytruncate while the tailer runs.
    std::fs::copy(&audit_log, dir.path().join("audit.log.2")).unwrap();
    std::fs::OpenOptions::new()
        .write(true)
        .open(&audit_log)
        .unwrap()
        .set_len(0)
        .unwrap();
    drain(&mut second, &mut from_file);
    bao.traffic("six", 5);
    drain(&mut second, &mut from_file);
    assert!(
        second
            .stats()
            .skipped
            .get("truncated")
            .is_some_and(|n| *n >= 1),
        "{:?}",
        second.stats()
    );

    // What the server wrote, across all files, is what the tailer delivered, once each.
    let mut written = Vec::new();
    for name in ["audit.log.1", "audit.log.2", "audit.log"] {
        for line in std::fs::read_to_string(dir.path().join(name))
            .unwrap()
            .lines()
        {
            if line.trim().is_empty() {
                continue;
            }
            let v: serde_json::Value = serde_json::from_str(line).unwrap();
            written.push(entry_key(&v));
        }
    }
    let written = once_each(&written);
    let tailed = once_each(&from_file);
    assert_eq!(
        tailed.keys().collect::<Vec<_>>(),
        written.keys().collect::<Vec<_>>()
    );
    let requests: std::collections::BTreeSet<&String> =
        tailed.keys().map(|(_, id, _)| id).collect();
    assert!(
        requests.len() >= 2 * (10 + 5 + 3 + 1 + 5 + 5),
        "{} request ids",
        requests.len()
    );

    // The socket saw the same entries, once each (give it a moment for the last lines).
    std::thread::sleep(Duration::from_millis(1500));
    stop.store(true, std::sync::atomic::Ordering::SeqCst);
    let (from_socket, raw) = socket_reader.join().unwrap();
    let socketed = once_each(&from_socket);
    // Each device writes OpenBao's internal entries independently; compare the
    // test's own traffic (KV paths), which both devices must carry in full.
    let kv = |m: &BTreeMap<(String, String, String), usize>| -> Vec<(String, String, String)> {
        m.keys()
            .filter(|k| k.2.starts_with("secret/"))
            .cloned()
            .collect()
    };
    // request + response of a write and a read per secret, at least 29 secrets.
    assert!(
        kv(&tailed).len() >= 2 * 2 * (10 + 5 + 3 + 1 + 5 + 5),
        "{}",
        kv(&tailed).len()
    );
    assert_eq!(kv(&socketed), kv(&tailed));

    // And the socket's records parse like the file's.
    let counts = parse_bytes(&VaultParser, &raw, "socket", ParseLimits::default(), |_| {});
    assert_eq!(counts.read as usize, from_socket.len());
    assert_eq!(counts.read, counts.normalized + counts.dead_lettered);
    assert!(counts.normalized > 0);
}

#[test]
fn vault_socket_on_a_unix_socket_owner_only() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bao-audit.sock");
    let mut listener = VaultSocketListener::bind(VaultSocketConfig {
        poll_wait: Duration::from_millis(200),
        ..VaultSocketConfig::new(Listen::Unix(path.clone()))
    })
    .unwrap();
    let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600, "only lineage's user may connect");
    let audit_log = dir.path().join("audit.log");
    let bao = Bao::with_socket_device(dir.path(), &audit_log, &unix_socket_device("sock", &path));
    bao.traffic("unix", 5);
    let mut got = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(30);
    while got
        .iter()
        .filter(|(_, _, p): &&(String, String, String)| p.starts_with("secret/data/unix-"))
        .count()
        < 20
    {
        assert!(Instant::now() < deadline, "{got:?}");
        if let Some(b) = listener.poll().unwrap() {
            assert!(b.dead_letters.is_empty(), "{:?}", b.dead_letters);
            got.extend(entries(&b));
            listener.ack(b.id).unwrap();
        }
    }
    drop(listener);
    assert!(!path.exists(), "the socket file is removed on drop");
}
