//! [`Net`] over turmoil's simulated TCP.

use std::io;
use std::net::{IpAddr, SocketAddr};

use acemux::net::{Net, NetListener};

/// Sockets of the simulated network. Only usable inside a turmoil host or client.
#[derive(Clone, Copy, Debug, Default)]
pub struct TurmoilNet;

impl TurmoilNet {
    /// Listens on `port` of every address of this host.
    pub async fn listen(port: u16) -> io::Result<TurmoilListener> {
        TurmoilNet
            .bind(
                SocketAddr::from(([0, 0, 0, 0], port)),
                acemux::net::DEFAULT_BACKLOG,
            )
            .await
    }
}

/// A listening socket of the simulated network.
pub struct TurmoilListener(turmoil::net::TcpListener);

impl Net for TurmoilNet {
    type Stream = turmoil::net::TcpStream;
    type Listener = TurmoilListener;

    /// The simulated network has no accept queue to size: `backlog` is ignored.
    async fn bind(&self, addr: SocketAddr, _backlog: u32) -> io::Result<Self::Listener> {
        turmoil::net::TcpListener::bind(addr)
            .await
            .map(TurmoilListener)
    }

    async fn connect(&self, host: &str, port: u16) -> io::Result<Self::Stream> {
        turmoil::net::TcpStream::connect((host, port)).await
    }

    /// A simulated host name has one address.
    async fn resolve(&self, host: &str) -> io::Result<Vec<IpAddr>> {
        let addresses = turmoil::net::lookup_host((host, 0)).await?;
        Ok(addresses.map(|addr| addr.ip()).collect())
    }
}

impl NetListener for TurmoilListener {
    type Stream = turmoil::net::TcpStream;

    async fn accept(&self) -> io::Result<(Self::Stream, SocketAddr)> {
        self.0.accept().await
    }

    fn local_addr(&self) -> io::Result<SocketAddr> {
        self.0.local_addr()
    }
}
