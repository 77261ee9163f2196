//! A TCP listener for the Vault/OpenBao `socket` audit device
//! (`audit "socket" "x" { options { address = "127.0.0.1:9090" socket_type = "tcp" } }`):
//! the server connects and writes one JSON entry per line. Each connection is read
//! on its own thread; complete lines go through a bounded channel (when the pipeline
//! falls behind, reading stops and Vault's writes block, which is the device's
//! back-pressure) and [`Connector::poll`] hands them out in batches.
//!
//! A socket cannot be replayed, so there is no checkpoint: lines received but not
//! yet downstream when the process dies are lost from this path. Vault blocks a
//! request only when *every* audit device fails, so run the `file` device next to
//! it and tail that file ([`super::file_tail`]) where gap-free history matters; the
//! socket gives the low-latency copy.

use std::io::{BufRead, BufReader};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{sync_channel, Receiver, RecvTimeoutError, SyncSender};
use std::sync::Arc;
use std::time::Duration;

use lineage_core::{DeadLetter, Provenance, Source};

use super::{AckQueue, BatchId, ConnectError, Connector, ConnectorStats, RawBatch, RawRecord};

/// Settings of the socket listener.
#[derive(Clone, Debug)]
pub struct VaultSocketConfig {
    /// Address to listen on (`127.0.0.1:0` picks a free port; see [`VaultSocketListener::local_addr`]).
    pub listen: SocketAddr,
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
    /// Defaults: 1000 lines per batch, 1 s wait, 10 000 lines buffered, 4 MiB lines,
    /// 16 connections.
    pub fn new(listen: SocketAddr) -> Self {
        Self {
            listen,
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
    addr: SocketAddr,
    lines: Receiver<Line>,
    stop: Arc<AtomicBool>,
    acks: AckQueue<()>,
    batches: u64,
    stats: ConnectorStats,
}

impl VaultSocketListener {
    /// Binds and starts accepting connections.
    pub fn bind(cfg: VaultSocketConfig) -> Result<Self, ConnectError> {
        let listener = TcpListener::bind(cfg.listen)
            .map_err(|e| ConnectError::Io(format!("listening on {}", cfg.listen), e))?;
        let addr = listener
            .local_addr()
            .map_err(|e| ConnectError::Io("local address".into(), e))?;
        listener
            .set_nonblocking(true)
            .map_err(|e| ConnectError::Io("non-blocking listener".into(), e))?;
        let (tx, rx) = sync_channel(cfg.buffer.max(1));
        let stop = Arc::new(AtomicBool::new(false));
        let stop_accept = stop.clone();
        let limits = (
            cfg.max_line_bytes.max(CUT_PREFIX),
            cfg.max_connections.max(1),
        );
        std::thread::Builder::new()
            .name("vault-socket-accept".into())
            .spawn(move || accept_loop(listener, tx, stop_accept, limits))
            .map_err(|e| ConnectError::Io("starting the accept thread".into(), e))?;
        tracing::info!(%addr, "listening for the Vault/OpenBao socket audit device");
        Ok(Self {
            cfg,
            addr,
            lines: rx,
            stop,
            acks: AckQueue::default(),
            batches: 0,
            stats: ConnectorStats::default(),
        })
    }

    /// The address it listens on.
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }
}

impl Drop for VaultSocketListener {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
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
    listener: TcpListener,
    tx: SyncSender<Line>,
    stop: Arc<AtomicBool>,
    (max_line, max_connections): (usize, usize),
) {
    let open = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    while !stop.load(Ordering::SeqCst) {
        match listener.accept() {
            Ok((stream, peer)) => {
                if open.load(Ordering::SeqCst) >= max_connections {
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
                        read_connection(stream, peer, tx, stop, max_line);
                        open.fetch_sub(1, Ordering::SeqCst);
                    });
                if spawned.is_err() {
                    tracing::warn!(%peer, "could not start a reader thread");
                }
            }
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
    stream: TcpStream,
    peer: SocketAddr,
    tx: SyncSender<Line>,
    stop: Arc<AtomicBool>,
    max_line: usize,
) {
    tracing::debug!(%peer, "audit device connected");
    let _ = stream.set_nonblocking(false);
    let _ = stream.set_read_timeout(Some(Duration::from_millis(200)));
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
                self.addr.port(),
                std::process::id(),
                self.batches
            ),
            source: Source::Vault,
            records,
            dead_letters,
            position: format!("socket {} batch {}", self.addr, self.batches),
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
        let addr = l.local_addr();
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
    fn connections_over_the_cap_are_refused() {
        let mut cfg = VaultSocketConfig::new("127.0.0.1:0".parse().unwrap());
        cfg.max_connections = 1;
        let mut l = VaultSocketListener::bind(cfg).unwrap();
        let addr = l.local_addr();
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
