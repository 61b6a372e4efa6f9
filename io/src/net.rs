//! Sockets behind a small trait, so the same server and clients run over real
//! tokio sockets in production and over a simulated network in `sim`.
//!
//! Nothing in this crate opens a socket except through [`Net`].

use std::future::Future;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::task::{Context, Poll};

use http::Uri;
use hyper_util::client::legacy::connect::{Connected, Connection};
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite};

/// Connections a listener queues before they are accepted, unless configured
/// (`--listen-backlog`): room for a crowd that connects at once.
pub const DEFAULT_BACKLOG: u32 = 4096;

/// Bind, accept and connect.
pub trait Net: Clone + Send + Sync + 'static {
    /// A connected byte stream.
    type Stream: AsyncRead + AsyncWrite + Unpin + Send + 'static;
    /// A bound listening socket.
    type Listener: NetListener<Stream = Self::Stream>;

    /// Listens on `addr` (port 0 picks a free port), queueing up to `backlog`
    /// connections not yet accepted (where the network has such a queue; the kernel
    /// caps it at `net.core.somaxconn`).
    fn bind(
        &self,
        addr: SocketAddr,
        backlog: u32,
    ) -> impl Future<Output = io::Result<Self::Listener>> + Send;

    /// Connects to `host:port`, resolving `host` as this network does.
    fn connect(
        &self,
        host: &str,
        port: u16,
    ) -> impl Future<Output = io::Result<Self::Stream>> + Send;

    /// The addresses `host` resolves to on this network (an address resolves to
    /// itself).
    fn resolve(&self, host: &str) -> impl Future<Output = io::Result<Vec<IpAddr>>> + Send;

    /// Closes `stream` abruptly: a TCP reset where this network can send one (the
    /// fault relay's `rst_after_bytes`), else a plain close.
    fn reset(&self, stream: Self::Stream) {
        drop(stream);
    }
}

/// The accepting half of [`Net`].
pub trait NetListener: Send + Sync + 'static {
    /// A connected byte stream.
    type Stream: AsyncRead + AsyncWrite + Unpin + Send + 'static;

    /// The next incoming connection and its peer address.
    fn accept(&self) -> impl Future<Output = io::Result<(Self::Stream, SocketAddr)>> + Send;

    /// The address actually bound.
    fn local_addr(&self) -> io::Result<SocketAddr>;
}

/// Real sockets, through tokio.
#[derive(Clone, Copy, Debug, Default)]
pub struct TokioNet;

impl Net for TokioNet {
    type Stream = tokio::net::TcpStream;
    type Listener = tokio::net::TcpListener;

    async fn bind(&self, addr: SocketAddr, backlog: u32) -> io::Result<Self::Listener> {
        let socket = if addr.is_ipv4() {
            tokio::net::TcpSocket::new_v4()?
        } else {
            tokio::net::TcpSocket::new_v6()?
        };
        // As std and tokio listeners do: a restarted server can bind while old
        // connections linger in TIME_WAIT.
        socket.set_reuseaddr(true)?;
        socket.bind(addr)?;
        socket.listen(backlog)
    }

    async fn connect(&self, host: &str, port: u16) -> io::Result<Self::Stream> {
        let stream = tokio::net::TcpStream::connect((host, port)).await?;
        // Small request/response exchanges: latency matters more than packet count.
        stream.set_nodelay(true)?;
        Ok(stream)
    }

    async fn resolve(&self, host: &str) -> io::Result<Vec<IpAddr>> {
        let addresses = tokio::net::lookup_host((host, 0)).await?;
        Ok(addresses.map(|addr| addr.ip()).collect())
    }

    fn reset(&self, stream: Self::Stream) {
        // Linger 0: closing sends RST instead of FIN.
        if let Err(error) = stream.set_zero_linger() {
            tracing::debug!(%error, "cannot set linger 0; closing with FIN");
        }
        drop(stream);
    }
}

impl NetListener for tokio::net::TcpListener {
    type Stream = tokio::net::TcpStream;

    async fn accept(&self) -> io::Result<(Self::Stream, SocketAddr)> {
        let (stream, peer) = tokio::net::TcpListener::accept(self).await?;
        stream.set_nodelay(true)?;
        Ok((stream, peer))
    }

    fn local_addr(&self) -> io::Result<SocketAddr> {
        tokio::net::TcpListener::local_addr(self)
    }
}

/// A hyper-util connector that dials through a [`Net`].
#[derive(Clone, Debug)]
pub struct NetConnector<N> {
    net: N,
}

impl<N: Net> NetConnector<N> {
    /// A connector over `net`.
    pub fn new(net: N) -> Self {
        NetConnector { net }
    }
}

type ConnectFuture<S> = Pin<Box<dyn Future<Output = io::Result<NetConnection<S>>> + Send>>;

impl<N: Net> tower::Service<Uri> for NetConnector<N> {
    type Response = NetConnection<N::Stream>;
    type Error = io::Error;
    type Future = ConnectFuture<N::Stream>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, uri: Uri) -> Self::Future {
        let net = self.net.clone();
        Box::pin(async move {
            if uri.scheme_str().is_some_and(|scheme| scheme != "http") {
                return Err(io::Error::new(
                    io::ErrorKind::Unsupported,
                    format!("only http:// is supported, not {uri}"),
                ));
            }
            let host = uri
                .host()
                .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "URI without host"))?;
            let host = host.trim_start_matches('[').trim_end_matches(']');
            let port = uri.port_u16().unwrap_or(80);
            let stream = net.connect(host, port).await?;
            Ok(NetConnection(TokioIo::new(stream)))
        })
    }
}

/// A client connection made by [`NetConnector`].
#[derive(Debug)]
pub struct NetConnection<S>(TokioIo<S>);

impl<S: AsyncRead + AsyncWrite + Unpin> hyper::rt::Read for NetConnection<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: hyper::rt::ReadBufCursor<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_read(cx, buf)
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> hyper::rt::Write for NetConnection<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.0).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_shutdown(cx)
    }
}

impl<S> Connection for NetConnection<S> {
    fn connected(&self) -> Connected {
        Connected::new()
    }
}

/// The HTTP client used for engines and webhooks: hyper-util over [`Net`].
pub type HttpClient<N> =
    hyper_util::client::legacy::Client<NetConnector<N>, http_body_util::Full<bytes::Bytes>>;

/// How long an idle pooled connection is kept for reuse. Shorter than the idle
/// timeouts servers commonly close kept-alive connections after (acemux's own is its
/// 10 s header read timeout; nginx's 75 s), so that a request is not sent on a
/// connection the server is closing at that moment: that race fails the request with
/// nothing to retry on.
pub const POOL_IDLE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(4);

/// A client over `net` with the tokio executor and timer (virtual under simulation).
pub fn http_client<N: Net>(net: N) -> HttpClient<N> {
    hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
        .timer(hyper_util::rt::TokioTimer::new())
        .pool_timer(hyper_util::rt::TokioTimer::new())
        .pool_idle_timeout(POOL_IDLE_TIMEOUT)
        .pool_max_idle_per_host(8)
        .build(NetConnector::new(net))
}
