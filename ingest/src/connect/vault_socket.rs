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

use lineage_core::Source;

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
    /// Longest accepted line; longer lines are cut there (the parser dead-letters them).
    pub max_line_bytes: usize,
}

impl VaultSocketConfig {
    /// Defaults: 1000 lines per batch, 1 s wait, 10 000 lines buffered, 4 MiB lines.
    pub fn new(listen: SocketAddr) -> Self {
        Self {
            listen,
            max_batch: 1000,
            poll_wait: Duration::from_secs(1),
            buffer: 10_000,
            max_line_bytes: 4 * 1024 * 1024,
        }
    }
}

/// The socket listener (see the module doc).
pub struct VaultSocketListener {
    cfg: VaultSocketConfig,
    addr: SocketAddr,
    lines: Receiver<(String, Vec<u8>)>,
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
        let max_line = cfg.max_line_bytes;
        std::thread::Builder::new()
            .name("vault-socket-accept".into())
            .spawn(move || accept_loop(listener, tx, stop_accept, max_line))
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

fn accept_loop(
    listener: TcpListener,
    tx: SyncSender<(String, Vec<u8>)>,
    stop: Arc<AtomicBool>,
    max_line: usize,
) {
    while !stop.load(Ordering::SeqCst) {
        match listener.accept() {
            Ok((stream, peer)) => {
                let tx = tx.clone();
                let stop = stop.clone();
                let _ = std::thread::Builder::new()
                    .name(format!("vault-socket-{peer}"))
                    .spawn(move || read_connection(stream, peer, tx, stop, max_line));
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

fn read_connection(
    stream: TcpStream,
    peer: SocketAddr,
    tx: SyncSender<(String, Vec<u8>)>,
    stop: Arc<AtomicBool>,
    max_line: usize,
) {
    tracing::debug!(%peer, "audit device connected");
    let _ = stream.set_nonblocking(false);
    let _ = stream.set_read_timeout(Some(Duration::from_millis(200)));
    let mut reader = BufReader::new(stream);
    let mut line = Vec::new();
    let mut n = 0u64;
    while !stop.load(Ordering::SeqCst) {
        match reader.read_until(b'\n', &mut line) {
            Ok(0) => break,
            Ok(_) if line.ends_with(b"\n") || line.len() >= max_line => {
                let mut bytes = std::mem::take(&mut line);
                while matches!(bytes.last(), Some(b'\n' | b'\r')) {
                    bytes.pop();
                }
                if bytes.iter().all(u8::is_ascii_whitespace) {
                    continue;
                }
                n += 1;
                if tx
                    .send((format!("vault-socket:{peer}#{n}"), bytes))
                    .is_err()
                {
                    return;
                }
            }
            Ok(_) => {}
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) => {}
            Err(e) => {
                tracing::warn!(%peer, error = %e, "audit connection failed");
                break;
            }
        }
    }
    if !line.is_empty() && !line.iter().all(u8::is_ascii_whitespace) {
        n += 1;
        let _ = tx.send((format!("vault-socket:{peer}#{n}"), line));
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
        let mut records = vec![RawRecord {
            origin: first.0,
            bytes: first.1,
        }];
        while records.len() < self.cfg.max_batch.max(1) {
            match self.lines.try_recv() {
                Ok((origin, bytes)) => records.push(RawRecord { bytes, origin }),
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
            dead_letters: Vec::new(),
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
