//! The life of one accepted connection: refuse it, or dial upstream, pump both
//! directions under its faults, and close it the way its ending asks for.

use std::net::SocketAddr;
use std::sync::Arc;

use tokio::io::AsyncWriteExt;
use tokio::sync::watch;
use tokio::time::Instant;

use super::plan::ConnectionFaults;
use super::pump::{forward, DirectionContext, Ending, Way};
use super::Shared;
use acemux::net::Net;

/// Relays one accepted connection until it ends.
pub(super) async fn relay<N: Net>(
    net: N,
    shared: Arc<Shared>,
    mut client: N::Stream,
    peer: SocketAddr,
    connection: u64,
    faults: ConnectionFaults,
) {
    let accepted_at = Instant::now();
    let counters = &shared.counters;
    if faults.refuse {
        counters.faults.refuse.add(1);
        tracing::info!(connection, %peer, "relay fault: refused");
        let _ = tokio::time::timeout(super::CLOSE_BOUND, client.shutdown()).await;
        return;
    }
    let upstream = &shared.config.upstream;
    let dialled = tokio::time::timeout(
        shared.config.connect_timeout,
        net.connect(&upstream.host, upstream.port),
    )
    .await;
    let upstream_stream = match dialled {
        Ok(Ok(stream)) => stream,
        Ok(Err(error)) => {
            counters.upstream_failures.add(1);
            tracing::warn!(connection, %peer, upstream = %upstream, %error, "relay: upstream unreachable; closing the client");
            return;
        }
        Err(_) => {
            counters.upstream_failures.add(1);
            tracing::warn!(connection, %peer, upstream = %upstream, timeout = ?shared.config.connect_timeout, "relay: upstream connect timed out; closing the client");
            return;
        }
    };
    for (way, direction) in [("up", &faults.up), ("down", &faults.down)] {
        if direction.latency.is_some() {
            counters.faults.latency.add(1);
        }
        if direction.throttle_bps.is_some() {
            counters.faults.throttle.add(1);
        }
        if !direction.is_clean() {
            tracing::info!(connection, direction = way, faults = ?direction, "relay fault: shaping");
        }
    }
    let (mut client_read, mut client_write) = tokio::io::split(client);
    let (mut upstream_read, mut upstream_write) = tokio::io::split(upstream_stream);
    let (ending_tx, mut ending_rx) = watch::channel(None::<Ending>);
    let mut partition = shared.cut_epoch.subscribe();
    let mut shutdown = shared.shutdown.subscribe();
    let context = |way, faults| DirectionContext {
        way,
        connection,
        faults,
        accepted_at,
        bounds: shared.config.bounds,
        counters,
        ending: &ending_tx,
    };
    let ending = {
        let up = forward(
            &mut client_read,
            &mut upstream_write,
            context(Way::Up, faults.up),
        );
        let down = forward(
            &mut upstream_read,
            &mut client_write,
            context(Way::Down, faults.down),
        );
        let both = async { tokio::join!(up, down) };
        tokio::select! {
            biased;
            ending = ending_rx.wait_for(Option::is_some) => ending.ok().and_then(|ending| ending.clone()).unwrap_or(Ending::Finished),
            _ = partition.changed() => {
                counters.faults.partition_cut.add(1);
                Ending::Partitioned
            }
            _ = shutdown.wait_for(|stopping| *stopping) => Ending::Shutdown,
            _ = both => ending_tx.borrow().clone().unwrap_or(Ending::Finished),
        }
    };
    match &ending {
        Ending::Reset => {
            net.reset(client_read.unsplit(client_write));
            net.reset(upstream_read.unsplit(upstream_write));
        }
        Ending::Finished => {}
        _ => {
            // A clean FIN to both sides mid-body; whatever is unread is dropped.
            let _ = tokio::time::timeout(super::CLOSE_BOUND, client_write.shutdown()).await;
            let _ = tokio::time::timeout(super::CLOSE_BOUND, upstream_write.shutdown()).await;
        }
    }
    match ending {
        Ending::Failed(reason) => {
            tracing::info!(connection, %peer, ending = "failed", %reason, lasted = ?accepted_at.elapsed(), "relay: connection ended");
        }
        ending => {
            tracing::info!(connection, %peer, ending = ending.label(), lasted = ?accepted_at.elapsed(), "relay: connection ended");
        }
    }
}
