//! The accept loop: a connection cap, a header-read timeout, TS streams served directly,
//! everything else by hyper, and graceful shutdown.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use bytes::BytesMut;
use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::{GracefulShutdown, Watcher};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::{watch, Semaphore};
use tower::ServiceExt;

use crate::http::{sniff, DirectStreams, Sniff, StreamRequest};
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
            max_connections: 16_384,
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
const CAPACITY_ANSWER: &[u8] = b"HTTP/1.1 503 Service Unavailable\r\ncontent-type: application/json\r\nretry-after: 1\r\nconnection: close\r\ncontent-length: 70\r\n\r\n{\"error\":\"capacity\",\"message\":\"too many connections; try again later\"}";

/// Serves `router` on `listener` until `shutdown` resolves, then stops accepting and
/// gives in-flight requests up to `shutdown_timeout` to finish. A connection whose first
/// request is a TS stream is served by `direct` when given (see
/// [`DirectStreams`](crate::http::DirectStreams)); every other connection by hyper.
pub async fn serve<L: NetListener>(
    listener: L,
    router: Router,
    direct: Option<Arc<DirectStreams>>,
    limits: ServerLimits,
    metrics: Arc<Metrics>,
    shutdown: impl Future<Output = ()>,
) {
    let graceful = GracefulShutdown::new();
    let max_connections = limits.max_connections.clamp(1, Semaphore::MAX_PERMITS);
    let permits = Arc::new(Semaphore::new(max_connections));
    let limits = Arc::new(limits);
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
        metrics.http_connections.inc();
        let connection = Connection {
            peer,
            router: router.clone(),
            direct: direct.clone(),
            limits: limits.clone(),
            metrics: metrics.clone(),
            graceful: graceful.watcher(),
        };
        tokio::spawn(async move {
            let metrics = connection.metrics.clone();
            connection.run(stream).await;
            metrics.http_connections.dec();
            drop(permit);
        });
    }
    drop(listener);
    // Every connection holds a permit until it is closed.
    let all_closed = async {
        graceful.shutdown().await;
        let _ = permits
            .acquire_many(u32::try_from(max_connections).unwrap_or(u32::MAX))
            .await;
    };
    tokio::select! {
        // Polled in order: a simulated run must not depend on tokio's random pick.
        biased;
        () = all_closed => tracing::info!("all connections closed"),
        () = tokio::time::sleep(limits.shutdown_timeout) => {
            tracing::warn!(timeout = ?limits.shutdown_timeout, "connections still open at shutdown; closing them");
        }
    }
}

/// One accepted connection.
struct Connection {
    peer: std::net::SocketAddr,
    router: Router,
    direct: Option<Arc<DirectStreams>>,
    limits: Arc<ServerLimits>,
    metrics: Arc<Metrics>,
    graceful: Watcher,
}

/// First bytes read to tell a connection's first request; grown up to the head limit.
const FIRST_READ_BYTES: usize = 1024;

impl Connection {
    async fn run<S>(self, mut stream: S)
    where
        S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        let mut first = BytesMut::new();
        if let Some(direct) = self.direct.clone() {
            match self.first_head(&mut stream, &mut first).await {
                First::Stream(request) => {
                    // The head is parsed into `request`: its read buffer is not kept
                    // for the stream's life (a kilobyte per viewer).
                    drop(first);
                    direct.serve(&mut stream, request, self.peer).await;
                    return;
                }
                First::Gone => return,
                First::Other => {}
            }
        }
        // Boxed: hyper's connection state is large, and inline it would size every
        // connection's task, the many TS viewers' included, by it.
        Box::pin(self.hyper(JsonParseErrors::with_prefix(stream, first.freeze()))).await;
    }

    /// Reads the connection's first request head far enough to tell whether it is a
    /// TS stream, within the header read timeout.
    async fn first_head<S: AsyncRead + Unpin>(
        &self,
        stream: &mut S,
        buffer: &mut BytesMut,
    ) -> First {
        let deadline = tokio::time::Instant::now() + self.limits.header_read_timeout;
        let max = self.limits.max_header_bytes.max(MIN_HEADER_BYTES);
        loop {
            match sniff(buffer) {
                Sniff::Stream(request) => return First::Stream(request),
                Sniff::Other => return First::Other,
                Sniff::Undecided if buffer.len() >= max => return First::Other,
                Sniff::Undecided => {}
            }
            let room = FIRST_READ_BYTES.max(buffer.len()).min(max - buffer.len());
            buffer.reserve(room);
            match tokio::time::timeout_at(deadline, stream.read_buf(buffer)).await {
                Ok(Ok(0)) => {
                    return if buffer.is_empty() {
                        First::Gone
                    } else {
                        First::Other
                    }
                }
                Ok(Ok(_)) => {}
                Ok(Err(error)) => {
                    tracing::debug!(peer = %self.peer, %error, "connection failed before its first request");
                    return First::Gone;
                }
                Err(_) => {
                    header_read_timed_out(&self.metrics, self.peer);
                    return First::Gone;
                }
            }
        }
    }

    /// Serves the connection with hyper and the router.
    async fn hyper<S>(self, stream: JsonParseErrors<S>)
    where
        S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        let (kill, mut killed) = watch::channel(false);
        let kill = ConnectionKill(Arc::new(kill));
        let router = self.router;
        let peer = self.peer;
        let service = hyper::service::service_fn(
            move |mut request: hyper::Request<hyper::body::Incoming>| {
                request.extensions_mut().insert(kill.clone());
                request.extensions_mut().insert(PeerAddr(peer));
                router.clone().oneshot(request)
            },
        );
        let connection = http1::Builder::new()
            .timer(TokioTimer::new())
            .header_read_timeout(self.limits.header_read_timeout)
            .max_buf_size(self.limits.max_header_bytes.max(MIN_HEADER_BYTES))
            .serve_connection(TokioIo::new(stream), service);
        let connection = self.graceful.watch(connection);
        tokio::pin!(connection);
        tokio::select! {
            // Polled in order: a simulated run must not depend on tokio's random pick.
            biased;
            result = &mut connection => {
                if let Err(error) = result {
                    connection_error(&self.metrics, peer, &error);
                }
            }
            _ = killed.wait_for(|killed| *killed) => {
                tracing::debug!(%peer, "connection closed by the server");
            }
        }
    }
}

/// What a connection's first bytes were.
enum First {
    /// A TS stream request, served directly.
    Stream(StreamRequest),
    /// Anything else, for hyper.
    Other,
    /// Closed, failed or timed out before a request.
    Gone,
}

/// Counts and logs a connection closed because its request head did not arrive in time.
fn header_read_timed_out(metrics: &Metrics, peer: std::net::SocketAddr) {
    metrics.limit_hit("header_read_timeout");
    tracing::info!(%peer, "connection closed: request headers not received in time");
}

/// Logs (and counts, when a bound was hit) why a connection ended with an error.
fn connection_error(metrics: &Metrics, peer: std::net::SocketAddr, error: &hyper::Error) {
    if error.is_timeout() {
        header_read_timed_out(metrics, peer);
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
