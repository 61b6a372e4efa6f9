//! The accept loop: a connection cap, a header-read timeout, and graceful shutdown.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use tokio::io::AsyncWriteExt;
use tokio::sync::{watch, Semaphore};
use tower::ServiceExt;

use crate::metrics::Metrics;
use crate::net::NetListener;
use crate::server_io::JsonParseErrors;

/// Bounds of the HTTP server.
#[derive(Clone, Debug)]
pub struct ServerLimits {
    /// Connections served at once; more get a 503 and are closed.
    pub max_connections: usize,
    /// Time a client has to send its request headers; the connection is closed beyond.
    pub header_read_timeout: Duration,
    /// Largest request head (request line and headers) accepted, in bytes; 431 beyond.
    /// At least 8192 (hyper's minimum buffer).
    pub max_header_bytes: usize,
    /// Time in-flight requests get to finish at shutdown.
    pub shutdown_timeout: Duration,
}

impl Default for ServerLimits {
    fn default() -> Self {
        ServerLimits {
            max_connections: 4096,
            header_read_timeout: Duration::from_secs(10),
            max_header_bytes: 64 * 1024,
            shutdown_timeout: Duration::from_secs(10),
        }
    }
}

/// hyper refuses a read buffer smaller than this.
const MIN_HEADER_BYTES: usize = 8192;

/// Closes the connection a request arrived on, even while a write to it is stuck.
///
/// Every request carries one in its extensions. A response body cannot close its own
/// connection when the peer stops reading (the body is no longer polled); whoever
/// decides to drop that peer calls [`ConnectionKill::kill`].
#[derive(Clone, Debug)]
pub struct ConnectionKill(Arc<watch::Sender<bool>>);

impl ConnectionKill {
    /// Closes the connection now.
    pub fn kill(&self) {
        self.0.send_replace(true);
    }
}

/// The peer address of the connection a request arrived on (in its extensions).
#[derive(Clone, Copy, Debug)]
pub struct PeerAddr(pub std::net::SocketAddr);

/// Written to a connection refused at the cap. Small enough for any socket buffer.
const CAPACITY_ANSWER: &[u8] = b"HTTP/1.1 503 Service Unavailable\r\ncontent-type: application/json\r\nconnection: close\r\ncontent-length: 70\r\n\r\n{\"error\":\"capacity\",\"message\":\"too many connections; try again later\"}";

/// Serves `router` on `listener` until `shutdown` resolves, then stops accepting and
/// gives in-flight requests up to `shutdown_timeout` to finish.
pub async fn serve<L: NetListener>(
    listener: L,
    router: Router,
    limits: ServerLimits,
    metrics: Arc<Metrics>,
    shutdown: impl Future<Output = ()>,
) {
    let graceful = GracefulShutdown::new();
    let permits = Arc::new(Semaphore::new(limits.max_connections));
    tokio::pin!(shutdown);
    loop {
        let accepted = tokio::select! {
            biased;
            () = &mut shutdown => break,
            accepted = listener.accept() => accepted,
        };
        let (mut stream, peer) = match accepted {
            Ok(accepted) => accepted,
            Err(error) => {
                // Typically out of file descriptors: back off instead of spinning.
                tracing::warn!(%error, "accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let Ok(permit) = permits.clone().try_acquire_owned() else {
            metrics.http_connections_rejected.inc();
            metrics.refused("connections");
            tracing::debug!(%peer, limit = limits.max_connections, "connection refused: at the connection cap");
            tokio::spawn(async move {
                let write = stream.write_all(CAPACITY_ANSWER);
                let _ = tokio::time::timeout(Duration::from_secs(1), write).await;
                let _ = stream.shutdown().await;
            });
            continue;
        };
        let (kill, mut killed) = watch::channel(false);
        let kill = ConnectionKill(Arc::new(kill));
        let router = router.clone();
        let service = hyper::service::service_fn(
            move |mut request: hyper::Request<hyper::body::Incoming>| {
                request.extensions_mut().insert(kill.clone());
                request.extensions_mut().insert(PeerAddr(peer));
                router.clone().oneshot(request)
            },
        );
        let connection = http1::Builder::new()
            .timer(TokioTimer::new())
            .header_read_timeout(limits.header_read_timeout)
            .max_buf_size(limits.max_header_bytes.max(MIN_HEADER_BYTES))
            .serve_connection(TokioIo::new(JsonParseErrors::new(stream)), service);
        let connection = graceful.watch(connection);
        let metrics = metrics.clone();
        metrics.http_connections.inc();
        tokio::spawn(async move {
            tokio::pin!(connection);
            tokio::select! {
                // Polled in order: a simulated run must not depend on tokio's random pick.
                biased;
                result = &mut connection => {
                    if let Err(error) = result {
                        connection_error(&metrics, peer, &error);
                    }
                }
                _ = killed.wait_for(|killed| *killed) => {
                    tracing::debug!(%peer, "connection closed by the server");
                }
            }
            metrics.http_connections.dec();
            drop(permit);
        });
    }
    drop(listener);
    tokio::select! {
        // Polled in order: a simulated run must not depend on tokio's random pick.
        biased;
        () = graceful.shutdown() => tracing::info!("all connections closed"),
        () = tokio::time::sleep(limits.shutdown_timeout) => {
            tracing::warn!(timeout = ?limits.shutdown_timeout, "connections still open at shutdown; closing them");
        }
    }
}

/// Logs (and counts, when a bound was hit) why a connection ended with an error.
fn connection_error(metrics: &Metrics, peer: std::net::SocketAddr, error: &hyper::Error) {
    if error.is_timeout() {
        metrics.limit_hit("header_read_timeout");
        tracing::info!(%peer, "connection closed: request headers not received in time");
    } else if error.is_parse_too_large() {
        metrics.limit_hit("header_bytes");
        tracing::info!(%peer, %error, "request refused: head too large (431)");
    } else if error.is_parse() {
        tracing::info!(%peer, %error, "request refused: malformed head (400)");
    } else {
        tracing::debug!(%peer, %error, "connection ended with an error");
    }
}

#[cfg(test)]
mod tests {
    use super::CAPACITY_ANSWER;

    #[test]
    fn capacity_answer_declares_its_body_length() {
        let text = std::str::from_utf8(CAPACITY_ANSWER).expect("ASCII");
        let (head, body) = text.split_once("\r\n\r\n").expect("head and body");
        assert!(head.contains(&format!("content-length: {}", body.len())));
        let body: serde_json::Value = serde_json::from_str(body).expect("JSON body");
        assert_eq!(body["error"], "capacity");
    }
}
