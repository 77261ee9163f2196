//! A listener for the Vault/OpenBao `socket` audit device: the server connects and
//! writes one JSON entry per line. Each connection is read on its own thread;
//! complete lines go through a bounded channel (when the pipeline falls behind,
//! reading stops and Vault's writes block, which is the device's back-pressure) and
//! [`Connector::poll`] hands them out in batches.
//!
//! **Who may write.** The device does not authenticate, and a forged line can name
//! any token's accessor and any person, so the listener decides who may connect:
//!
//! * a Unix socket (`listen = "unix:/run/lineage/bao-audit.sock"`; device options
//!   `socket_type = "unix"`, `address = "/run/lineage/bao-audit.sock"`), created with
//!   mode `socket_mode` (default `0600`: only the user lineage runs as may connect;
//!   `0660` and a group shared with the server's user where they differ). The
//!   preferred form where the server runs on the same host;
//! * TCP, accepting only peers in `allowed_peers` (default loopback only); others are
//!   closed on accept, logged and counted (`skipped.connection_refused`). For a
//!   server on another host, list its address, and keep the port on a private
//!   network: the device has no TLS.
//!
//! At most `max_connections` connections are served at once (more are refused, the
//! same way), and a line is never held beyond `max_line_bytes`.
//!
//! A socket cannot be replayed, so there is no checkpoint: lines received but not
//! yet downstream when the process dies are lost from this path. Vault blocks a
//! request only when *every* audit device fails, so run the `file` device next to
//! it and tail that file ([`super::file_tail`]) where gap-free history matters; the
//! socket gives the low-latency copy.

use std::io::{BufRead, BufReader, Read};
use std::net::{IpAddr, SocketAddr, TcpListener, TcpStream};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::mpsc::{sync_channel, Receiver, RecvTimeoutError, SyncSender};
use std::sync::Arc;
use std::time::Duration;

use ipnet::IpNet;
use lineage_core::{DeadLetter, Provenance, Source};

use super::{AckQueue, BatchId, ConnectError, Connector, ConnectorStats, RawBatch, RawRecord};

/// Where the listener listens: a TCP address (`127.0.0.1:9090`) or a Unix socket
/// (`unix:/path/to/socket`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Listen {
    /// A TCP address.
    Tcp(SocketAddr),
    /// A Unix socket path.
    Unix(PathBuf),
}

impl std::str::FromStr for Listen {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        if let Some(path) = s.strip_prefix("unix:") {
            if path.is_empty() {
                return Err("`unix:` needs a socket path, e.g. unix:/run/lineage/bao.sock".into());
            }
            return Ok(Listen::Unix(PathBuf::from(path)));
        }
        s.parse().map(Listen::Tcp).map_err(|e| {
            format!("`{s}` is neither HOST:PORT (an IP address and port) nor unix:PATH: {e}")
        })
    }
}

impl std::fmt::Display for Listen {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Listen::Tcp(a) => write!(f, "{a}"),
            Listen::Unix(p) => write!(f, "unix:{}", p.display()),
        }
    }
}

impl serde::Serialize for Listen {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> serde::Deserialize<'de> for Listen {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// The peers a TCP listener accepts by default: loopback.
pub fn loopback_peers() -> Vec<IpNet> {
    vec![
        "127.0.0.0/8".parse().expect("valid"),
        "::1/128".parse().expect("valid"),
    ]
}

/// Parses a Unix file mode written in octal (`600`, `0660`, `0o600`).
pub fn parse_mode(s: &str) -> Result<u32, String> {
    let digits = s.trim().trim_start_matches("0o");
    u32::from_str_radix(digits, 8)
        .ok()
        .filter(|m| *m <= 0o777)
        .ok_or_else(|| format!("`{s}` is not an octal file mode such as 0600"))
}

/// Settings of the socket listener.
#[derive(Clone, Debug)]
pub struct VaultSocketConfig {
    /// Where to listen (`127.0.0.1:0` picks a free port; see
    /// [`VaultSocketListener::local_addr`]).
    pub listen: Listen,
    /// TCP peers accepted (networks); others are refused on accept.
    pub allowed_peers: Vec<IpNet>,
    /// Mode of a Unix socket file (default `0o600`).
    pub socket_mode: u32,
    /// Most lines per batch.
    pub max_batch: usize,
    /// How long `poll` waits for the first line.
    pub poll_wait: Duration,
    /// Lines buffered between the socket readers and `poll`.
    pub buffer: usize,
    /// Longest accepted line: a longer one is never held whole (at most this much
    /// per connection is buffered); it becomes a dead letter with its length and the
    /// first [`CUT_PREFIX`] bytes.
    pub max_line_bytes: usize,
    /// Connections served at once; more are closed on accept with a warning (the
    /// device is meant to be one server's, or a few).
    pub max_connections: usize,
}

/// How much of an over-long line its dead letter keeps.
pub const CUT_PREFIX: usize = 4096;

impl VaultSocketConfig {
    /// Defaults: loopback peers only, socket mode 0600, 1000 lines per batch, 1 s
    /// wait, 10 000 lines buffered, 4 MiB lines, 16 connections.
    pub fn new(listen: Listen) -> Self {
        Self {
            listen,
            allowed_peers: loopback_peers(),
            socket_mode: 0o600,
            max_batch: 1000,
            poll_wait: Duration::from_secs(1),
            buffer: 10_000,
            max_line_bytes: 4 * 1024 * 1024,
            max_connections: 16,
        }
    }
}

/// The socket listener (see the module doc).
pub struct VaultSocketListener {
    cfg: VaultSocketConfig,
    /// Where it listens, the port resolved.
    bound: Listen,
    lines: Receiver<Line>,
    stop: Arc<AtomicBool>,
    refused: Arc<AtomicU64>,
    acks: AckQueue<()>,
    batches: u64,
    stats: ConnectorStats,
}

/// A bound listening socket.
enum Bound {
    Tcp(TcpListener, Vec<IpNet>),
    Unix(UnixListener),
}

/// A connection to read, with the label its records' origins carry.
type Accepted = (Box<dyn Read + Send>, String);

impl Bound {
    /// The next connection: `Ok(None)` when none is waiting or it was refused.
    fn accept(&self, refused: &AtomicU64) -> std::io::Result<Option<Accepted>> {
        let timeout = Some(Duration::from_millis(200));
        match self {
            Bound::Tcp(l, allowed) => {
                let (stream, peer): (TcpStream, SocketAddr) = l.accept()?;
                let ip = match peer.ip() {
                    IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(IpAddr::V6(v6), IpAddr::V4),
                    v4 => v4,
                };
                if !allowed.iter().any(|n| n.contains(&ip)) {
                    refused.fetch_add(1, Ordering::Relaxed);
                    tracing::warn!(%peer, "audit connection refused: peer not in allowed_peers");
                    return Ok(None);
                }
                stream.set_nonblocking(false)?;
                stream.set_read_timeout(timeout)?;
                Ok(Some((Box::new(stream), peer.to_string())))
            }
            Bound::Unix(l) => {
                let (stream, _): (UnixStream, _) = l.accept()?;
                stream.set_nonblocking(false)?;
                stream.set_read_timeout(timeout)?;
                static N: AtomicU64 = AtomicU64::new(0);
                let n = N.fetch_add(1, Ordering::Relaxed) + 1;
                Ok(Some((Box::new(stream), format!("unix-{n}"))))
            }
        }
    }
}

/// Binds a Unix socket at `path` with `mode`, replacing a stale socket file (one
/// nobody listens on) and refusing anything else at that path.
fn bind_unix(path: &std::path::Path, mode: u32) -> Result<UnixListener, ConnectError> {
    use std::os::unix::fs::{FileTypeExt, PermissionsExt};
    let what = || format!("listening on unix:{}", path.display());
    if let Ok(meta) = std::fs::symlink_metadata(path) {
        if !meta.file_type().is_socket() {
            return Err(ConnectError::Config(format!(
                "{} exists and is not a socket; refusing to replace it",
                path.display()
            )));
        }
        if UnixStream::connect(path).is_ok() {
            return Err(ConnectError::Config(format!(
                "another process listens on unix:{}",
                path.display()
            )));
        }
        std::fs::remove_file(path).map_err(|e| ConnectError::Io(what(), e))?;
    }
    let listener = UnixListener::bind(path).map_err(|e| ConnectError::Io(what(), e))?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
        .map_err(|e| ConnectError::Io(format!("setting the mode of {}", path.display()), e))?;
    Ok(listener)
}

impl VaultSocketListener {
    /// Binds and starts accepting connections.
    pub fn bind(cfg: VaultSocketConfig) -> Result<Self, ConnectError> {
        let (bound, listen) = match &cfg.listen {
            Listen::Tcp(addr) => {
                let l = TcpListener::bind(addr)
                    .map_err(|e| ConnectError::Io(format!("listening on {addr}"), e))?;
                let local = l
                    .local_addr()
                    .map_err(|e| ConnectError::Io("local address".into(), e))?;
                l.set_nonblocking(true)
                    .map_err(|e| ConnectError::Io("non-blocking listener".into(), e))?;
                (Bound::Tcp(l, cfg.allowed_peers.clone()), Listen::Tcp(local))
            }
            Listen::Unix(path) => {
                let l = bind_unix(path, cfg.socket_mode)?;
                l.set_nonblocking(true)
                    .map_err(|e| ConnectError::Io("non-blocking listener".into(), e))?;
                (Bound::Unix(l), Listen::Unix(path.clone()))
            }
        };
        let (tx, rx) = sync_channel(cfg.buffer.max(1));
        let stop = Arc::new(AtomicBool::new(false));
        let refused = Arc::new(AtomicU64::new(0));
        let limits = (
            cfg.max_line_bytes.max(CUT_PREFIX),
            cfg.max_connections.max(1),
        );
        let (stop_accept, refused_accept) = (stop.clone(), refused.clone());
        std::thread::Builder::new()
            .name("vault-socket-accept".into())
            .spawn(move || accept_loop(bound, tx, stop_accept, refused_accept, limits))
            .map_err(|e| ConnectError::Io("starting the accept thread".into(), e))?;
        tracing::info!(address = %listen, "listening for the Vault/OpenBao socket audit device");
        Ok(Self {
            cfg,
            bound: listen,
            lines: rx,
            stop,
            refused,
            acks: AckQueue::default(),
            batches: 0,
            stats: ConnectorStats::default(),
        })
    }

    /// The TCP address it listens on (`None` on a Unix socket).
    pub fn local_addr(&self) -> Option<SocketAddr> {
        match &self.bound {
            Listen::Tcp(a) => Some(*a),
            Listen::Unix(_) => None,
        }
    }

    /// Where it listens, the port resolved.
    pub fn listening_on(&self) -> &Listen {
        &self.bound
    }
}

impl Drop for VaultSocketListener {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Listen::Unix(path) = &self.bound {
            let _ = std::fs::remove_file(path);
        }
    }
}

/// One line read from a connection.
enum Line {
    /// A whole line (origin, bytes).
    Whole(String, Vec<u8>),
    /// A line over the limit: its origin, first bytes and full length.
    Cut(String, Vec<u8>, u64),
}

fn accept_loop(
    bound: Bound,
    tx: SyncSender<Line>,
    stop: Arc<AtomicBool>,
    refused: Arc<AtomicU64>,
    (max_line, max_connections): (usize, usize),
) {
    let open = Arc::new(AtomicUsize::new(0));
    while !stop.load(Ordering::SeqCst) {
        match bound.accept(&refused) {
            Ok(Some((stream, peer))) => {
                if open.load(Ordering::SeqCst) >= max_connections {
                    refused.fetch_add(1, Ordering::Relaxed);
                    tracing::warn!(%peer, max_connections, "audit connection refused: too many open");
                    drop(stream);
                    continue;
                }
                open.fetch_add(1, Ordering::SeqCst);
                let tx = tx.clone();
                let stop = stop.clone();
                let open = open.clone();
                let spawned = std::thread::Builder::new()
                    .name(format!("vault-socket-{peer}"))
                    .spawn(move || {
                        read_connection(stream, &peer, tx, stop, max_line);
                        open.fetch_sub(1, Ordering::SeqCst);
                    });
                if spawned.is_err() {
                    tracing::warn!("could not start a reader thread");
                }
            }
            Ok(None) => {}
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                std::thread::sleep(Duration::from_millis(20));
            }
            Err(e) => {
                tracing::warn!(error = %e, "accepting an audit connection failed");
                std::thread::sleep(Duration::from_millis(100));
            }
        }
    }
}

/// Reads lines, holding at most `max_line` bytes of one: the rest of a longer line
/// is counted and dropped as it arrives.
fn read_connection(
    stream: Box<dyn Read + Send>,
    peer: &str,
    tx: SyncSender<Line>,
    stop: Arc<AtomicBool>,
    max_line: usize,
) {
    tracing::debug!(%peer, "audit device connected");
    let mut reader = BufReader::new(stream);
    let mut line: Vec<u8> = Vec::new();
    // Set once the line passed the limit: its length so far.
    let mut cut: Option<u64> = None;
    let mut n = 0u64;
    let emit = |line: &mut Vec<u8>, cut: &mut Option<u64>, n: &mut u64| -> bool {
        let bytes = std::mem::take(line);
        let was_cut = cut.take();
        if was_cut.is_none() && bytes.iter().all(u8::is_ascii_whitespace) {
            return true;
        }
        *n += 1;
        let origin = format!("vault-socket:{peer}#{n}");
        let msg = match was_cut {
            Some(len) => Line::Cut(origin, bytes, len),
            None => Line::Whole(origin, bytes),
        };
        tx.send(msg).is_ok()
    };
    while !stop.load(Ordering::SeqCst) {
        let buf = match reader.fill_buf() {
            Ok([]) => break,
            Ok(b) => b,
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock
                        | std::io::ErrorKind::TimedOut
                        | std::io::ErrorKind::Interrupted
                ) =>
            {
                continue
            }
            Err(e) => {
                tracing::warn!(%peer, error = %e, "audit connection failed");
                break;
            }
        };
        let (part, ends_line) = match buf.iter().position(|&b| b == b'\n') {
            Some(i) => (&buf[..i], true),
            None => (buf, false),
        };
        let used = part.len() + usize::from(ends_line);
        match cut.as_mut() {
            Some(len) => *len += part.len() as u64,
            None if line.len() + part.len() <= max_line => line.extend_from_slice(part),
            None => {
                let total = (line.len() + part.len()) as u64;
                let keep = CUT_PREFIX.saturating_sub(line.len()).min(part.len());
                line.extend_from_slice(&part[..keep]);
                line.truncate(CUT_PREFIX);
                line.shrink_to(CUT_PREFIX);
                cut = Some(total);
            }
        }
        reader.consume(used);
        if ends_line {
            while matches!(line.last(), Some(b'\r')) {
                line.pop();
            }
            if !emit(&mut line, &mut cut, &mut n) {
                return;
            }
        }
    }
    if !line.is_empty() && (cut.is_some() || !line.iter().all(u8::is_ascii_whitespace)) {
        let _ = emit(&mut line, &mut cut, &mut n);
    }
    tracing::debug!(%peer, lines = n, "audit device disconnected");
}

impl Connector for VaultSocketListener {
    fn poll(&mut self) -> Result<Option<RawBatch>, ConnectError> {
        let refused = self.refused.load(Ordering::Relaxed);
        if refused > 0 {
            self.stats
                .skipped
                .insert("connection_refused".into(), refused);
        }
        let first = match self.lines.recv_timeout(self.cfg.poll_wait) {
            Ok(l) => l,
            Err(RecvTimeoutError::Timeout) | Err(RecvTimeoutError::Disconnected) => {
                return Ok(None)
            }
        };
        let mut records = Vec::new();
        let mut dead_letters = Vec::new();
        let max = self.cfg.max_line_bytes;
        let mut take = |line: Line| {
            match line {
            Line::Whole(origin, bytes) => records.push(RawRecord { bytes, origin }),
            Line::Cut(origin, prefix, len) => dead_letters.push(DeadLetter::new(
                Source::Vault,
                format!(
                    "audit line of {len} bytes is over the {max}-byte limit (max_line_bytes); only its first {} bytes are kept here",
                    prefix.len()
                ),
                Provenance::file(&origin, 0),
                &prefix,
            )),
        }
        };
        take(first);
        let mut n = 1;
        while n < self.cfg.max_batch.max(1) {
            match self.lines.try_recv() {
                Ok(line) => {
                    take(line);
                    n += 1;
                }
                Err(_) => break,
            }
        }
        self.batches += 1;
        let id = self.acks.push(());
        let batch = RawBatch {
            id,
            key: format!(
                "vault-socket-{}-{}-{}",
                match &self.bound {
                    Listen::Tcp(a) => a.port().to_string(),
                    Listen::Unix(_) => "unix".into(),
                },
                std::process::id(),
                self.batches
            ),
            source: Source::Vault,
            records,
            dead_letters,
            position: format!("socket {} batch {}", self.bound, self.batches),
        };
        self.stats.handed_out(&batch);
        Ok(Some(batch))
    }

    fn ack(&mut self, batch: BatchId) -> Result<(), ConnectError> {
        self.acks.ack(batch)?;
        self.stats.acked += 1;
        Ok(())
    }

    fn stats(&self) -> &ConnectorStats {
        &self.stats
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    #[test]
    fn a_100_mb_line_is_dead_lettered_without_being_held_and_the_next_line_is_read() {
        let mut l =
            VaultSocketListener::bind(VaultSocketConfig::new("127.0.0.1:0".parse().unwrap()))
                .unwrap();
        let addr = l.local_addr().unwrap();
        let writer = std::thread::spawn(move || {
            let mut s = TcpStream::connect(addr).unwrap();
            let chunk = vec![b'a'; 1 << 20];
            s.write_all(b"{\"type\":\"request\",\"x\":\"").unwrap();
            for _ in 0..100 {
                s.write_all(&chunk).unwrap();
            }
            s.write_all(b"\"}\n{\"type\":\"request\",\"ok\":true}\n")
                .unwrap();
        });
        let mut records = Vec::new();
        let mut dead = Vec::new();
        let deadline = std::time::Instant::now() + Duration::from_secs(60);
        while records.is_empty() || dead.is_empty() {
            assert!(std::time::Instant::now() < deadline, "{records:?} {dead:?}");
            if let Some(b) = l.poll().unwrap() {
                records.extend(b.records);
                dead.extend(b.dead_letters);
                l.ack(b.id).unwrap();
            }
        }
        writer.join().unwrap();
        assert_eq!(dead.len(), 1);
        assert!(
            dead[0].reason.contains("max_line_bytes"),
            "{}",
            dead[0].reason
        );
        assert!(
            dead[0].reason.contains("104857625 bytes"),
            "{}",
            dead[0].reason
        );
        assert_eq!(dead[0].original_len, CUT_PREFIX);
        assert_eq!(records.len(), 1);
        assert_eq!(records[0].bytes, br#"{"type":"request","ok":true}"#);
    }

    #[test]
    fn tcp_peers_outside_allowed_peers_are_refused_and_counted() {
        let mut cfg = VaultSocketConfig::new("127.0.0.1:0".parse().unwrap());
        cfg.allowed_peers = vec!["10.0.0.0/8".parse().unwrap()];
        let mut l = VaultSocketListener::bind(cfg).unwrap();
        let addr = l.local_addr().unwrap();
        let mut s = TcpStream::connect(addr).unwrap();
        let _ = s.write_all(b"{\"forged\":true}\n");
        std::thread::sleep(Duration::from_millis(300));
        assert!(l.poll().unwrap().is_none(), "nothing from a refused peer");
        assert_eq!(l.stats().skipped.get("connection_refused"), Some(&1));
    }

    #[test]
    fn listen_addresses_parse_with_clear_errors() {
        assert_eq!(
            "unix:/run/x.sock".parse::<Listen>().unwrap(),
            Listen::Unix("/run/x.sock".into())
        );
        assert!(matches!(
            "127.0.0.1:9090".parse::<Listen>(),
            Ok(Listen::Tcp(_))
        ));
        let err = "localhost:9090".parse::<Listen>().unwrap_err();
        assert!(err.contains("neither HOST:PORT"), "{err}");
        assert_eq!(parse_mode("0660"), Ok(0o660));
        assert!(parse_mode("999").is_err());
    }

    #[test]
    fn connections_over_the_cap_are_refused() {
        let mut cfg = VaultSocketConfig::new("127.0.0.1:0".parse().unwrap());
        cfg.max_connections = 1;
        let mut l = VaultSocketListener::bind(cfg).unwrap();
        let addr = l.local_addr().unwrap();
        let mut first = TcpStream::connect(addr).unwrap();
        std::thread::sleep(Duration::from_millis(200));
        let mut second = TcpStream::connect(addr).unwrap();
        std::thread::sleep(Duration::from_millis(200));
        let _ = second.write_all(b"{\"from\":\"second\"}\n");
        first.write_all(b"{\"from\":\"first\"}\n").unwrap();
        let b = l.poll().unwrap().expect("the first connection's line");
        assert_eq!(b.records.len(), 1);
        assert_eq!(b.records[0].bytes, br#"{"from":"first"}"#);
        assert!(l.poll().unwrap().is_none(), "nothing from the refused one");
    }
}
