//! A fault relay: a TCP relay that puts latency, throttling, stalls, cuts, resets
//! and refusals between a client and an upstream — the "slow gluetun" in front of an
//! engine, for real-process tests (this kernel has no netem).
//!
//! Every accepted connection is numbered from 1; the [`FaultPlan`]'s rules that
//! select it (all, the Nth, every Kth, or with a probability drawn from the seed)
//! decide at accept time what happens to each direction. Generic over [`Net`], time
//! only through `tokio::time`, randomness only from the seed: it runs over real
//! sockets ([`acemux::net::TokioNet`]) and can run inside the simulator.
//!
//! Rule text (`acemux relay --fault`): `[selector:]knob[=value][,knob[=value]…]`,
//! selectors `all` (default), `conn=N`, `every=K`, `p=0.25`; knobs `dir=up|down|both`
//! (default both), `latency=200ms`, `throttle=64KB/s`, `stall_after_bytes=N` or
//! `stall_after=5s` with `stall_for=10s`, `cut_after_bytes=N` (FIN both ways),
//! `rst_after_bytes=N` (RST both ways), `refuse` (accept, then close at once).
//!
//! Control API (see [`Relay::control_router`]): `GET`/`PUT`/`DELETE /control/rules`,
//! `POST /control/partition` (refuse new connections and cut open ones),
//! `POST /control/repair` (clear the rules), `GET /control/stats` ([`RelayStats`]).

mod connection;
mod control;
mod counters;
mod plan;
mod pump;
#[cfg(test)]
mod tests;

use std::fmt;
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use tokio::sync::{oneshot, watch, Semaphore};
use tokio::task::JoinHandle;

pub use counters::{FaultStats, RelayStats};
pub use plan::{
    ConnectionFaults, DirectionFaults, Directions, FaultPlan, FaultRule, RuleError, RulesUpdate,
    Selector, Stall, StallStart, MAX_RULES,
};

use acemux::net::{Net, NetListener};
use counters::Counters;
use pump::PumpBounds;

/// Bound on sending a FIN to a peer that stopped reading.
const CLOSE_BOUND: Duration = Duration::from_secs(1);

/// Where the relay forwards to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Upstream {
    /// Host name or address, resolved by the [`Net`].
    pub host: String,
    /// Port.
    pub port: u16,
}

impl fmt::Display for Upstream {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.host, self.port)
    }
}

/// What the relay does and what it holds at most.
#[derive(Clone, Debug)]
pub struct RelayConfig {
    /// Where every connection is forwarded.
    pub upstream: Upstream,
    /// Seed of the probability selectors.
    pub seed: u64,
    /// The rules at start.
    pub plan: FaultPlan,
    /// Connections relayed at once; more are closed at once (and counted).
    pub max_connections: usize,
    /// Bound on dialling the upstream.
    pub connect_timeout: Duration,
    /// Largest chunk read at once, per direction.
    pub chunk_bytes: usize,
    /// Bytes read but not yet forwarded, per direction (the relay holds at most
    /// twice this per connection). Added latency caps a direction's rate at
    /// `queue_bytes / latency`, like a TCP window.
    pub queue_bytes: usize,
}

impl RelayConfig {
    /// A relay to `upstream` with no faults and default bounds.
    pub fn new(upstream: Upstream) -> Self {
        RelayConfig {
            upstream,
            seed: 0,
            plan: FaultPlan::default(),
            max_connections: 1024,
            connect_timeout: Duration::from_secs(5),
            chunk_bytes: 16 * 1024,
            queue_bytes: 1024 * 1024,
        }
    }

    fn bounds(&self) -> PumpBounds {
        let chunk_bytes = self.chunk_bytes.clamp(1, 1024 * 1024);
        PumpBounds {
            chunk_bytes,
            // A chunk must fit the budget, and permits are counted in u32.
            queue_bytes: self.queue_bytes.clamp(chunk_bytes, 256 * 1024 * 1024),
        }
    }
}

struct SharedConfig {
    upstream: Upstream,
    seed: u64,
    max_connections: usize,
    connect_timeout: Duration,
    bounds: PumpBounds,
}

/// What the accept loop, the connections and the control API share.
struct Shared {
    config: SharedConfig,
    plan: Mutex<FaultPlan>,
    next_connection: AtomicU64,
    counters: Counters,
    /// Bumped to cut every open connection.
    cut_epoch: watch::Sender<u64>,
    /// Set once at shutdown.
    shutdown: watch::Sender<bool>,
}

impl Shared {
    /// The plan. Held only for short synchronous reads and swaps.
    fn plan(&self) -> MutexGuard<'_, FaultPlan> {
        // A panic while holding the lock cannot leave a half-written plan: writes
        // are whole-value swaps.
        self.plan.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// A fault relay. Cheap to clone; clones share rules and counters.
#[derive(Clone)]
pub struct Relay<N: Net> {
    net: N,
    shared: Arc<Shared>,
}

impl<N: Net> fmt::Debug for Relay<N> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Relay")
            .field("upstream", &self.shared.config.upstream)
            .finish_non_exhaustive()
    }
}

impl<N: Net> Relay<N> {
    /// A relay over `net`.
    pub fn new(net: N, config: RelayConfig) -> Self {
        let bounds = config.bounds();
        let (cut_epoch, _) = watch::channel(0);
        let (shutdown, _) = watch::channel(false);
        Relay {
            net,
            shared: Arc::new(Shared {
                config: SharedConfig {
                    upstream: config.upstream,
                    seed: config.seed,
                    max_connections: config.max_connections.max(1),
                    connect_timeout: config.connect_timeout,
                    bounds,
                },
                plan: Mutex::new(config.plan),
                next_connection: AtomicU64::new(1),
                counters: Counters::default(),
                cut_epoch,
                shutdown,
            }),
        }
    }

    /// The rules new connections get.
    pub fn plan(&self) -> FaultPlan {
        self.shared.plan().clone()
    }

    /// Replaces the rules for new connections; with `cut_existing`, open connections
    /// are closed (FIN) as well. Returns how many connections were open.
    pub fn set_plan(&self, plan: FaultPlan, cut_existing: bool) -> u64 {
        tracing::info!(rules = ?plan.texts(), cut_existing, "relay: rules replaced");
        *self.shared.plan() = plan;
        let open = self.shared.counters.active.get();
        if cut_existing {
            self.shared.cut_epoch.send_modify(|epoch| *epoch += 1);
        }
        open
    }

    /// Refuses new connections and cuts open ones; returns how many were open.
    pub fn partition(&self) -> u64 {
        self.set_plan(FaultPlan::refuse_all(), true)
    }

    /// Clears every rule: new connections are relayed untouched.
    pub fn repair(&self) {
        self.set_plan(FaultPlan::default(), false);
    }

    /// The counters.
    pub fn stats(&self) -> RelayStats {
        self.shared.counters.snapshot()
    }

    /// The control API (see the module documentation).
    pub fn control_router(&self) -> axum::Router {
        control::router(self.clone())
    }

    /// Relays connections accepted on `listener` until `shutdown` resolves; then
    /// open connections are cut.
    pub async fn serve<L>(&self, listener: L, shutdown: impl Future<Output = ()>)
    where
        L: NetListener<Stream = N::Stream>,
    {
        let permits = Arc::new(Semaphore::new(self.shared.config.max_connections));
        tokio::pin!(shutdown);
        loop {
            let accepted = tokio::select! {
                biased;
                () = &mut shutdown => break,
                accepted = listener.accept() => accepted,
            };
            let (stream, peer) = match accepted {
                Ok(accepted) => accepted,
                Err(error) => {
                    // Typically out of file descriptors: back off instead of spinning.
                    tracing::warn!(%error, "relay: accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            };
            self.accept(stream, peer, &permits);
        }
        self.shared.shutdown.send_replace(true);
        tracing::info!("relay stopped accepting; open connections cut");
    }

    fn accept(&self, stream: N::Stream, peer: SocketAddr, permits: &Arc<Semaphore>) {
        let shared = &self.shared;
        shared.counters.accepted.add(1);
        let connection = shared.next_connection.fetch_add(1, Ordering::Relaxed);
        let Ok(permit) = permits.clone().try_acquire_owned() else {
            shared.counters.rejected_at_cap.add(1);
            tracing::warn!(connection, %peer, limit = shared.config.max_connections, "relay: connection closed at the connection cap");
            drop(stream);
            return;
        };
        let faults = shared.plan().faults_for(shared.config.seed, connection);
        tracing::info!(connection, %peer, upstream = %shared.config.upstream, "relay: connection accepted");
        shared.counters.active.add(1);
        let net = self.net.clone();
        let shared = shared.clone();
        tokio::spawn(async move {
            connection::relay(net, shared.clone(), stream, peer, connection, faults).await;
            shared.counters.active.sub(1);
            drop(permit);
        });
    }

    /// Relays on `listener` in a task; the handle stops it when shut down or dropped.
    pub fn spawn<L>(&self, listener: L) -> io::Result<RunningRelay>
    where
        L: NetListener<Stream = N::Stream>,
    {
        let addr = listener.local_addr()?;
        let (stop, stopped) = oneshot::channel::<()>();
        let relay = self.clone();
        let task = tokio::spawn(async move {
            relay
                .serve(listener, async move {
                    // A dropped handle stops the relay too.
                    let _ = stopped.await;
                })
                .await;
        });
        tracing::info!(%addr, upstream = %self.shared.config.upstream, "relay listening");
        Ok(RunningRelay {
            addr,
            stop: Some(stop),
            task: Some(task),
        })
    }
}

/// A relay serving in a task (see [`Relay::spawn`]). Dropping it stops it.
#[derive(Debug)]
pub struct RunningRelay {
    addr: SocketAddr,
    stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<()>>,
}

impl RunningRelay {
    /// The address relayed from.
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// Stops accepting, cuts open connections and waits for the accept loop.
    pub async fn shutdown(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(task) = self.task.take() {
            if let Err(error) = task.await {
                tracing::error!(%error, "relay task failed");
            }
        }
    }
}

impl Drop for RunningRelay {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

/// Relays on `listener` and, when given, serves the control API on `control`, until
/// `shutdown` resolves.
pub async fn run<N, L>(
    relay: &Relay<N>,
    listener: L,
    control: Option<L>,
    shutdown: impl Future<Output = ()>,
) where
    N: Net,
    L: NetListener<Stream = N::Stream>,
{
    let (stop, stopped) = watch::channel(false);
    let stopped_for = |mut stopped: watch::Receiver<bool>| async move {
        let _ = stopped.wait_for(|stop| *stop).await;
    };
    let control_server = async {
        if let Some(control) = control {
            let limits = acemux::server::ServerLimits {
                max_connections: 64,
                shutdown_timeout: Duration::from_secs(1),
                ..acemux::server::ServerLimits::default()
            };
            let metrics = Arc::new(acemux::metrics::Metrics::new());
            let router = relay.control_router();
            acemux::server::serve(
                control,
                router,
                None,
                limits,
                metrics,
                stopped_for(stopped.clone()),
            )
            .await;
        }
    };
    let relay_server = relay.serve(listener, stopped_for(stopped.clone()));
    let signal = async {
        shutdown.await;
        stop.send_replace(true);
    };
    tokio::join!(control_server, relay_server, signal);
}
