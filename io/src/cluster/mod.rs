//! Cluster mode (`--redis`): the driver of the lease machine
//! ([`acemux_core::cluster::Leases`]) and the handle channels ask where their media
//! comes from.
//!
//! The driver task owns the machine; it performs the machine's Redis commands (each
//! on a task of its own, bounded by the machine's timeout), answers the channels'
//! route requests, and hands the channels whose lease was lost to the proxy, which
//! stops them. Nothing on a viewer's or a request's path waits on Redis longer than
//! the machine's wait bound.

mod args;
pub mod directory;
pub mod redis;
mod tls;

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use acemux_core::cluster::{
    HeldLease, Input, LeaseConfig, Leases, Notice, Output, Route, TicketId,
};
use acemux_core::machine::Machine as _;
use serde::Serialize;
use subtle::ConstantTimeEq as _;
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;

pub use args::ClusterArgs;

use self::redis::{RedisClient, RedisTarget};
use crate::clock::Clock;
use crate::metrics::{LeaseEventLabels, Metrics, RedisCallLabels};
use crate::net::Net;

/// The header that marks a request as an instance's relay of a channel, carrying the
/// cluster secret.
pub const PEER_HEADER: &str = "x-acemux-peer";

/// Cluster mode's configuration.
#[derive(Clone, Debug)]
pub struct ClusterOptions {
    /// Where Redis is.
    pub redis: RedisTarget,
    /// `--instance-id`; `None`: derived from the database's seed.
    pub instance: Option<String>,
    /// How other instances reach this one.
    pub advertise: String,
    /// The shared secret of relayed requests.
    pub secret: String,
    /// A lease's time to live.
    pub lease_ttl: Duration,
    /// Bound on one Redis call.
    pub redis_timeout: Duration,
    /// Bound on a new channel's wait for Redis.
    pub redis_wait: Duration,
    /// How often this instance's directory record is published.
    pub publish_every: Duration,
}

/// The instance id derived from a database's seed: stable for as long as the database
/// is kept, and different for every database.
pub fn instance_id_from_seed(seed: u64) -> String {
    // splitmix64: the seed itself is not shown.
    let mut z = seed.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^= z >> 31;
    format!("acemux-{:012x}", z & 0xffff_ffff_ffff)
}

enum Msg {
    Want {
        channel: String,
        reply: oneshot::Sender<Route>,
    },
    Finished {
        channel: String,
    },
    Shutdown {
        done: oneshot::Sender<()>,
    },
}

struct Inner {
    messages: mpsc::UnboundedSender<Msg>,
    held: Mutex<Vec<HeldLease>>,
    instance: String,
    advertise: String,
    secret: String,
}

/// The cluster as channels and routes see it; cheap to clone.
#[derive(Clone)]
pub struct Cluster(Arc<Inner>);

impl std::fmt::Debug for Cluster {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Cluster")
            .field("instance", &self.0.instance)
            .finish_non_exhaustive()
    }
}

/// `GET /cluster`.
#[derive(Clone, Debug, Serialize)]
pub struct ClusterView {
    /// This instance's id.
    pub instance_id: String,
    /// How other instances reach it.
    pub advertise: String,
    /// The channel leases it holds.
    pub leases: Vec<LeaseView>,
}

/// A lease in [`ClusterView`].
#[derive(Clone, Debug, Serialize)]
pub struct LeaseView {
    /// The channel, as acemux names it in its logs.
    pub channel: String,
    /// The lease's fencing number.
    pub fencing: u64,
    /// When it expires unless renewed (RFC 3339).
    pub expires: String,
}

impl Cluster {
    /// Starts the driver: leases for instance `instance` in `options.redis`, over
    /// `net`. Channels whose lease is lost are sent to `lost`. `planted`: the
    /// simulation's self-test only.
    pub fn start<N: Net>(
        net: N,
        options: &ClusterOptions,
        instance: String,
        clock: Clock,
        metrics: Arc<Metrics>,
        lost: mpsc::UnboundedSender<String>,
        planted: acemux_core::planted::Planted,
    ) -> (Cluster, JoinHandle<()>) {
        let mut config = LeaseConfig::new(
            instance.clone(),
            options.advertise.clone(),
            options.lease_ttl,
        );
        config.redis_timeout = options.redis_timeout;
        config.wait_for_redis = options.redis_wait;
        config.planted = planted;
        let (messages, inbox) = mpsc::unbounded_channel();
        let cluster = Cluster(Arc::new(Inner {
            messages,
            held: Mutex::new(Vec::new()),
            instance,
            advertise: options.advertise.clone(),
            secret: options.secret.clone(),
        }));
        tracing::info!(
            instance = %cluster.0.instance,
            advertise = %cluster.0.advertise,
            redis = %options.redis.address(),
            lease_ttl = ?options.lease_ttl,
            "cluster mode: channel leases in Redis"
        );
        let driver = Driver {
            machine: Leases::new(config),
            redis: Arc::new(RedisClient::new(net, options.redis.clone())),
            clock,
            metrics,
            lost,
            cluster: cluster.clone(),
            tickets: BTreeMap::new(),
            next_ticket: 1,
        };
        let task = tokio::spawn(driver.run(inbox));
        (cluster, task)
    }

    /// This instance's id.
    pub fn instance(&self) -> &str {
        &self.0.instance
    }

    /// How other instances reach this one.
    pub fn advertise(&self) -> &str {
        &self.0.advertise
    }

    /// Where `channel` gets its media: answered within the wait bound for Redis (plus
    /// one call's bound); should the driver be gone (shutting down), here.
    pub async fn route(&self, channel: &str) -> Route {
        let (reply, answer) = oneshot::channel();
        let want = Msg::Want {
            channel: channel.to_owned(),
            reply,
        };
        if self.0.messages.send(want).is_err() {
            return Route::Local;
        }
        answer.await.unwrap_or(Route::Local)
    }

    /// `channel` ended here: its lease is given back.
    pub fn finished(&self, channel: &str) {
        let _ = self.0.messages.send(Msg::Finished {
            channel: channel.to_owned(),
        });
    }

    /// Whether this instance holds `channel`'s lease now.
    pub fn holds(&self, channel: &str) -> bool {
        self.held().iter().any(|lease| lease.channel == channel)
    }

    fn held(&self) -> std::sync::MutexGuard<'_, Vec<HeldLease>> {
        self.0
            .held
            .lock()
            .unwrap_or_else(|poison| poison.into_inner())
    }

    /// Whether `value` (of [`PEER_HEADER`]) is the cluster secret, compared in
    /// constant time.
    pub fn is_peer(&self, value: &str) -> bool {
        bool::from(value.as_bytes().ct_eq(self.0.secret.as_bytes()))
    }

    /// The secret relayed requests carry.
    pub fn secret(&self) -> &str {
        &self.0.secret
    }

    /// What `GET /cluster` shows.
    pub fn view(&self) -> ClusterView {
        ClusterView {
            instance_id: self.0.instance.clone(),
            advertise: self.0.advertise.clone(),
            leases: self
                .held()
                .iter()
                .map(|lease| LeaseView {
                    channel: lease.channel.clone(),
                    fencing: lease.fencing,
                    expires: crate::clock::rfc3339(lease.expires),
                })
                .collect(),
        }
    }

    /// Waits until the leases of the channels stopped so far are given back (bounded
    /// by two Redis calls), then stops the driver.
    pub async fn shutdown(&self) {
        let (done, finished) = oneshot::channel();
        if self.0.messages.send(Msg::Shutdown { done }).is_ok() {
            let _ = finished.await;
        }
    }
}

struct Driver<N: Net> {
    machine: Leases,
    redis: Arc<RedisClient<N>>,
    clock: Clock,
    metrics: Arc<Metrics>,
    lost: mpsc::UnboundedSender<String>,
    cluster: Cluster,
    /// Route requests waiting for their answer, with their channel.
    tickets: BTreeMap<TicketId, (String, oneshot::Sender<Route>)>,
    next_ticket: u64,
}

impl<N: Net> Driver<N> {
    async fn run(mut self, mut inbox: mpsc::UnboundedReceiver<Msg>) {
        let (replies_tx, mut replies) = mpsc::unbounded_channel();
        let mut shutdown: Option<(oneshot::Sender<()>, acemux_core::Instant)> = None;
        loop {
            self.perform(&replies_tx);
            if shutdown.is_some() && self.machine.is_idle() {
                break;
            }
            let deadline = shutdown.as_ref().map(|(_, at)| *at);
            let sleep = self
                .clock
                .sleep_until_earliest([self.machine.poll_timeout(), deadline]);
            tokio::select! {
                biased;
                Some((op, result)) = replies.recv() => {
                    self.machine.handle_input(self.clock.now(), Input::Reply { op, result });
                }
                message = inbox.recv(), if shutdown.is_none() => match message {
                    Some(Msg::Want { channel, reply }) => {
                        let ticket = TicketId(self.next_ticket);
                        self.next_ticket += 1;
                        self.machine.want(self.clock.now(), ticket, &channel);
                        self.tickets.insert(ticket, (channel, reply));
                    }
                    Some(Msg::Finished { channel }) => {
                        self.machine.finished(self.clock.now(), &channel);
                        // Requests of the ended channel get no answer any more: their
                        // askers see the driver's answer dropped.
                        self.tickets.retain(|_, (asked_for, _)| *asked_for != channel);
                    }
                    Some(Msg::Shutdown { done }) => {
                        let bound = self.machine.config().redis_timeout * 2;
                        shutdown = Some((done, self.clock.now() + bound));
                    }
                    None => break,
                },
                () = sleep => {
                    let now = self.clock.now();
                    if deadline.is_some_and(|at| at <= now) {
                        tracing::warn!("leases not all given back in time at shutdown; they expire by themselves");
                        break;
                    }
                    self.machine.handle_timeout(now);
                }
            }
        }
        if let Some((done, _)) = shutdown {
            let _ = done.send(());
        }
        // Nothing answers routes any more: waiting channels start here.
        for (_, (_, reply)) in std::mem::take(&mut self.tickets) {
            let _ = reply.send(Route::Local);
        }
    }

    fn perform(
        &mut self,
        replies: &mpsc::UnboundedSender<(
            acemux_core::cluster::OpId,
            Result<acemux_core::cluster::Reply, String>,
        )>,
    ) {
        let mut changed = false;
        while let Some(output) = self.machine.poll_output() {
            match output {
                Output::Redis {
                    op,
                    command,
                    timeout,
                } => {
                    let redis = self.redis.clone();
                    let replies = replies.clone();
                    tokio::spawn(async move {
                        let result = redis.perform(&command, timeout).await;
                        let _ = replies.send((op, result));
                    });
                }
                Output::Route { ticket, route } => {
                    if let Some((_, reply)) = self.tickets.remove(&ticket) {
                        let _ = reply.send(route);
                    }
                    changed = true;
                }
                Output::Lost { channel, owner } => {
                    let owner = owner.map(|owner| owner.instance).unwrap_or_default();
                    tracing::warn!(%channel, %owner, "another instance owns the channel now; stopping it here");
                    self.event("lost");
                    let _ = self.lost.send(channel);
                    changed = true;
                }
                Output::Notice(notice) => {
                    self.notice(notice);
                    changed = true;
                }
            }
        }
        if changed {
            let held = self.machine.held();
            self.metrics
                .cluster_leases
                .set(i64::try_from(held.len()).unwrap_or(i64::MAX));
            *self.cluster.held() = held;
        } else {
            // Renewals move expiries; keep the view current.
            *self.cluster.held() = self.machine.held();
        }
    }

    fn event(&self, event: &str) {
        self.metrics
            .cluster_lease_events
            .get_or_create(&LeaseEventLabels {
                event: event.to_owned(),
            })
            .inc();
    }

    fn notice(&self, notice: Notice) {
        match notice {
            Notice::Acquired { channel, fencing } => {
                tracing::info!(%channel, fencing, "took the channel's lease: its engine session is opened here");
                self.event("acquired");
            }
            Notice::LocalFallback { channel } => {
                tracing::warn!(%channel, "Redis did not answer in time: starting the channel here without a lease (--cluster-redis-wait)");
                self.event("local_fallback");
            }
            Notice::RedisFailed {
                channel,
                call,
                error,
            } => {
                tracing::warn!(%channel, call, %error, "Redis call failed");
                self.metrics
                    .cluster_redis_failures
                    .get_or_create(&RedisCallLabels {
                        call: call.to_owned(),
                    })
                    .inc();
            }
            Notice::StaleFencing {
                channel,
                got,
                highest,
            } => {
                tracing::warn!(%channel, got, highest, "lease taken with a fencing number not above one already seen (Redis restarted?); giving it back and raising the counter");
                self.event("stale_fencing");
            }
            Notice::Expired { channel } => {
                tracing::warn!(%channel, "the channel's lease was gone from Redis; taking it again");
                self.event("expired");
            }
            other => tracing::debug!(?other, "cluster notice"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn instance_ids_from_seeds_are_stable_distinct_and_hide_the_seed() {
        assert_eq!(instance_id_from_seed(7), instance_id_from_seed(7));
        assert_ne!(instance_id_from_seed(7), instance_id_from_seed(8));
        let id = instance_id_from_seed(0x1234);
        assert!(id.starts_with("acemux-") && id.len() == 19, "{id}");
        assert!(!id.contains("1234"), "{id}");
    }
}
