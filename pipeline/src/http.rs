//! The operations endpoint: `GET /metrics` (Prometheus text) and `GET /health`
//! (200 when every stage is ready and none failed, 503 otherwise), served by
//! `tiny_http` on its own thread until shutdown.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use crate::metrics::Metrics;
use crate::PipelineError as LiveError;

/// Serves `/metrics` and `/health` on `addr` until `shutdown`; returns the bound
/// address (port 0 picks a free one).
pub fn serve(
    addr: &str,
    metrics: Arc<Metrics>,
    shutdown: Arc<AtomicBool>,
) -> Result<(std::net::SocketAddr, std::thread::JoinHandle<()>), LiveError> {
    let server = tiny_http::Server::http(addr)
        .map_err(|e| LiveError::Config(format!("metrics address {addr}: {e}")))?;
    let bound = server
        .server_addr()
        .to_ip()
        .ok_or_else(|| LiveError::Config(format!("metrics address {addr} is not IP")))?;
    let handle = std::thread::Builder::new()
        .name("lineage-http".into())
        .spawn(move || {
            while !shutdown.load(Ordering::SeqCst) {
                let req = match server.recv_timeout(Duration::from_millis(200)) {
                    Ok(Some(r)) => r,
                    Ok(None) => continue,
                    Err(e) => {
                        tracing::warn!(error = %e, "metrics endpoint");
                        continue;
                    }
                };
                let path = req.url().split('?').next().unwrap_or("").to_owned();
                let (status, body, ctype) = match path.as_str() {
                    "/metrics" => (200, metrics.render(), "text/plain; version=0.0.4"),
                    "/health" => {
                        let (ok, body) = metrics.health();
                        (if ok { 200 } else { 503 }, body, "application/json")
                    }
                    _ => (404, "not found\n".to_owned(), "text/plain"),
                };
                let header = tiny_http::Header::from_bytes("Content-Type", ctype)
                    .expect("static header is valid");
                let resp = tiny_http::Response::from_string(body)
                    .with_status_code(status)
                    .with_header(header);
                if let Err(e) = req.respond(resp) {
                    tracing::debug!(error = %e, "metrics client went away");
                }
            }
        })
        .map_err(|e| LiveError::Config(format!("starting the metrics thread: {e}")))?;
    Ok((bound, handle))
}
