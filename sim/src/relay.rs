//! The "gluetun" hop: a TCP relay host between acemux and the engines, as the VPN
//! container is in production. Link faults (latency, hold, partition) come from
//! turmoil's link controls; a stall (the relay stops forwarding, connections stay
//! open) is switched here by the scenario's fault schedule.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use acemux::net::{Net, NetListener};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use crate::net::TurmoilNet;

/// Bytes one relay read moves at most; with turmoil's per-socket segment capacity
/// this bounds what the relay holds in flight per connection.
const CHUNK_BYTES: usize = 16 * 1024;
/// How often a stalled relay looks whether the stall is over.
const STALL_POLL: Duration = Duration::from_millis(50);

/// Switches shared by the relay host and the scenario driving it.
#[derive(Debug, Default)]
pub struct RelayControl {
    stalled: AtomicBool,
    connections: AtomicU64,
    bytes_forwarded: AtomicU64,
}

impl RelayControl {
    /// A relay that forwards.
    pub fn new() -> Arc<Self> {
        Arc::new(RelayControl::default())
    }

    /// Stops (`true`) or resumes forwarding on every connection.
    pub fn set_stalled(&self, stalled: bool) {
        self.stalled.store(stalled, Ordering::SeqCst);
    }

    /// Whether forwarding is stopped.
    pub fn is_stalled(&self) -> bool {
        self.stalled.load(Ordering::SeqCst)
    }

    /// Connections accepted so far.
    pub fn connections(&self) -> u64 {
        self.connections.load(Ordering::SeqCst)
    }

    /// Bytes forwarded so far, both directions.
    pub fn bytes_forwarded(&self) -> u64 {
        self.bytes_forwarded.load(Ordering::SeqCst)
    }
}

/// One listening port and where it leads.
#[derive(Clone, Debug)]
pub struct Route {
    /// Port on the relay host.
    pub listen_port: u16,
    /// Upstream host name.
    pub upstream_host: String,
    /// Upstream port.
    pub upstream_port: u16,
}

/// Runs the relay: one accept loop per route, a task per direction per connection.
pub async fn run_relay(routes: Vec<Route>, control: Arc<RelayControl>) -> turmoil::Result {
    let mut accept_loops = Vec::new();
    for route in routes {
        let listener = TurmoilNet::listen(route.listen_port).await?;
        let control = control.clone();
        accept_loops.push(tokio::spawn(async move {
            loop {
                let Ok((downstream, _peer)) = listener.accept().await else {
                    continue;
                };
                control.connections.fetch_add(1, Ordering::SeqCst);
                let route = route.clone();
                let control = control.clone();
                tokio::spawn(async move {
                    // The upstream refusing is a closed downstream, as a VPN hop does.
                    let Ok(upstream) = TurmoilNet
                        .connect(&route.upstream_host, route.upstream_port)
                        .await
                    else {
                        return;
                    };
                    let (down_read, down_write) = tokio::io::split(downstream);
                    let (up_read, up_write) = tokio::io::split(upstream);
                    let there = tokio::spawn(copy(down_read, up_write, control.clone()));
                    copy(up_read, down_write, control).await;
                    there.abort();
                });
            }
        }));
    }
    for accept_loop in accept_loops {
        accept_loop.await?;
    }
    Ok(())
}

async fn copy(
    mut from: impl AsyncRead + Unpin,
    mut to: impl AsyncWrite + Unpin,
    control: Arc<RelayControl>,
) {
    let mut buf = vec![0u8; CHUNK_BYTES];
    loop {
        while control.is_stalled() {
            tokio::time::sleep(STALL_POLL).await;
        }
        let read = match from.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(read) => read,
        };
        while control.is_stalled() {
            tokio::time::sleep(STALL_POLL).await;
        }
        if to.write_all(&buf[..read]).await.is_err() {
            return;
        }
        control
            .bytes_forwarded
            .fetch_add(read as u64, Ordering::SeqCst);
    }
    let _ = to.shutdown().await;
}
