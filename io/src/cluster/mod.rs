//! Cluster mode (`--redis`): the handle channels ask where their media comes from, and
//! the driver task behind it (`driver`) that owns the lease machine
//! ([`acemux_core::cluster::Leases`]) and the slot machine.
//!
//! The driver performs the machines' Redis commands (each on a task of its own,
//! bounded by the machine's timeout), answers the channels' route requests, and hands
//! the channels whose lease was lost to the proxy, which stops them. Nothing on a
//! viewer's or a request's path waits on Redis longer than the machine's wait bound.

mod args;
pub mod directory;
mod driver;
pub mod orphans;
pub mod redis;
pub mod slot_redis;
mod tls;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use acemux_core::cluster::{
    HeldLease, HeldSlot, LeaseConfig, Leases, LeftVerdict, ReservationId, Route, SessionRecord,
    Slots, SlotsConfig,
};
use acemux_core::lifecycle::EngineAddr;
use serde::Serialize;
use subtle::ConstantTimeEq as _;
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;

pub use args::ClusterArgs;

use self::driver::Driver;
use self::redis::{RedisClient, RedisTarget};
use crate::clock::Clock;
use crate::metrics::Metrics;
use crate::net::Net;

/// The label of a `stream_started` in cluster mode that names the stream's channel
/// (the key of its session record).
pub const CHANNEL_LABEL: &str = "cluster_channel";

/// At start, in cluster mode: whether this instance still ends a stream an earlier run
/// of it left started and stops its session. Not when the channel's session record
/// says a newer owner took it over (and ended it, `owner_lost`); the record is claimed
/// otherwise, so that no owner acts on it after this.
pub struct LeftoverCheck<N: Net> {
    redis: RedisClient<N>,
    instance: String,
    timeout: Duration,
    slots: SlotsConfig,
}

impl<N: Net> LeftoverCheck<N> {
    /// For instance `instance` in `options.redis`, over `net`.
    pub fn new(net: N, options: &ClusterOptions, instance: String) -> Self {
        let lease = LeaseConfig::new(
            instance.clone(),
            options.advertise.clone(),
            options.lease_ttl,
        );
        LeftoverCheck {
            redis: RedisClient::new(net, options.redis.clone()),
            instance,
            timeout: options.redis_timeout,
            slots: SlotsConfig::new(&lease, 0),
        }
    }

    /// Whether this instance ends `stream` (first asked about at `since`) and stops its
    /// session, leaves it alone, or asks again later (Redis did not answer, or a first
    /// answer found nothing of it: `absent_seen`, see [`LeftVerdict::of`]).
    pub async fn verdict(
        &self,
        stream: &acemux_core::lifecycle::StreamState,
        since: acemux_core::time::Instant,
        now: acemux_core::time::Instant,
        absent_seen: &mut bool,
    ) -> LeftVerdict {
        let Some(channel) = stream.labels.get(CHANNEL_LABEL) else {
            return LeftVerdict::Act;
        };
        let rule = acemux_core::cluster::ClaimRule::Left {
            instance: self.instance.clone(),
            stream_id: stream.id.clone(),
        };
        let claim = acemux_core::cluster::SlotCommand::Claim {
            channel: channel.clone(),
            rule: rule.clone(),
            record_ttl: self.slots.record_ttl,
            taken_ttl: self.slots.taken_ttl,
            instance: self.instance.clone(),
        };
        let reply = self.redis.perform_slot(&claim, self.timeout).await;
        let verdict = LeftVerdict::of(&self.slots, &rule, &reply, since, now, absent_seen);
        if let Err(error) = &reply {
            match verdict {
                LeftVerdict::AskAgain(_) => {
                    tracing::warn!(stream = %stream.id, %error, "Redis did not say whether another instance took over a stream left from before the restart; its channel waits for the answer (asked again)")
                }
                _ => {
                    tracing::warn!(stream = %stream.id, %error, "Redis did not say for too long whether another instance took over a stream left from before the restart; ending it here")
                }
            }
        }
        verdict
    }

    /// How long a first answer that found nothing of a stream waits for its second.
    pub fn confirm_absence(&self) -> Duration {
        self.slots.confirm_absence
    }

    /// The channel of `stream`, in cluster mode's label.
    pub fn channel_of(stream: &acemux_core::lifecycle::StreamState) -> Option<&str> {
        stream.labels.get(CHANNEL_LABEL).map(String::as_str)
    }
}

/// An answer to [`Cluster::session_ending`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EndAnswer {
    /// Stop the session now; its end waits for [`EndAnswer::Decided`].
    StopNow,
    /// Stop it (unless done) and record its end here (`true`), or leave both to the
    /// newer owner that claimed it.
    Decided(bool),
}

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
    Reserve {
        channel: String,
        fencing: u64,
        candidates: Vec<EngineAddr>,
        reply: oneshot::Sender<Option<(ReservationId, EngineAddr)>>,
    },
    Started {
        id: ReservationId,
        record: Box<SessionRecord>,
    },
    Stopped {
        id: ReservationId,
    },
    Ending {
        id: ReservationId,
        reply: mpsc::UnboundedSender<EndAnswer>,
    },
    HoldBack {
        channel: String,
    },
    Resolved {
        channel: String,
    },
    Shutdown {
        done: oneshot::Sender<()>,
    },
}

struct Inner {
    messages: mpsc::UnboundedSender<Msg>,
    held: Mutex<Vec<HeldLease>>,
    slots: Mutex<Vec<HeldSlot>>,
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
    /// The engine slots it holds (cluster-wide engine capacity).
    pub reservations: Vec<ReservationView>,
}

/// An engine slot in [`ClusterView`].
#[derive(Clone, Debug, Serialize)]
pub struct ReservationView {
    /// The channel.
    pub channel: String,
    /// The engine (`host:port`).
    pub engine: String,
    /// The slot number; `null` while the session runs without one (Redis unreachable,
    /// or the slot expired and the engine is full).
    pub slot: Option<usize>,
    /// The channel's lease fencing number (0: started without a lease).
    pub fencing: u64,
    /// The session's stream id, once it started.
    pub stream_id: Option<String>,
}

/// Where the driver sends what the proxy and the lifecycle act on.
#[derive(Clone, Debug)]
pub struct ClusterSinks {
    /// Channels whose lease another instance took, once the slot machine has decided
    /// who stops the session they ran (each session's own end asks it again: a session
    /// opened after the decision is this instance's to stop).
    pub lost: mpsc::UnboundedSender<String>,
    /// Sessions of dead owners this instance claimed: stop each, record its end.
    pub orphans: mpsc::UnboundedSender<SessionRecord>,
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
    /// `net`, and engine slots of `max_per_engine` per engine. What the proxy acts on
    /// goes to `sinks`. `planted`: the simulation's self-test only.
    #[allow(clippy::too_many_arguments)]
    pub fn start<N: Net>(
        net: N,
        options: &ClusterOptions,
        instance: String,
        clock: Clock,
        metrics: Arc<Metrics>,
        sinks: ClusterSinks,
        max_per_engine: usize,
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
        let slots = SlotsConfig::new(&config, max_per_engine);
        let (messages, inbox) = mpsc::unbounded_channel();
        let cluster = Cluster(Arc::new(Inner {
            messages,
            held: Mutex::new(Vec::new()),
            slots: Mutex::new(Vec::new()),
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
        let driver = Driver::new(
            Leases::new(config),
            Slots::new(slots),
            Arc::new(RedisClient::new(net, options.redis.clone())),
            clock,
            metrics,
            sinks,
            cluster.clone(),
        );
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

    /// A slot for `channel` (lease fencing number `fencing`, 0 without a lease) on the
    /// first of `candidates` (best first) that has one free cluster-wide: the engine and
    /// the reservation, or `None` when every candidate is full. Without the driver
    /// (shutting down): the best candidate, unreserved.
    pub async fn reserve(
        &self,
        channel: &str,
        fencing: u64,
        candidates: Vec<EngineAddr>,
    ) -> Option<(Option<ReservationId>, EngineAddr)> {
        let first = candidates.first().cloned();
        let (reply, answer) = oneshot::channel();
        let reserve = Msg::Reserve {
            channel: channel.to_owned(),
            fencing,
            candidates,
            reply,
        };
        if self.0.messages.send(reserve).is_err() {
            return first.map(|engine| (None, engine));
        }
        match answer.await {
            Ok(reserved) => reserved.map(|(id, engine)| (Some(id), engine)),
            Err(_) => first.map(|engine| (None, engine)),
        }
    }

    /// The session of reservation `id` started: recorded in Redis.
    pub fn session_started(&self, id: ReservationId, record: SessionRecord) {
        let _ = self.0.messages.send(Msg::Started {
            id,
            record: Box::new(record),
        });
    }

    /// A session of `channel` an earlier run left is not known yet to be ended or taken
    /// over: the channel waits ([`Leases::hold_back`]) until [`resolved`](Self::resolved).
    pub fn hold_back(&self, channel: &str) {
        let _ = self.0.messages.send(Msg::HoldBack {
            channel: channel.to_owned(),
        });
    }

    /// The session `channel`'s earlier run left is ended or taken over.
    pub fn resolved(&self, channel: &str) {
        let _ = self.0.messages.send(Msg::Resolved {
            channel: channel.to_owned(),
        });
    }

    /// The session of reservation `id` was stopped (or never opened): its slot is given
    /// back and its record marked ended.
    pub fn session_stopped(&self, id: ReservationId) {
        let _ = self.0.messages.send(Msg::Stopped { id });
    }

    /// The session of reservation `id` ends here: whether this instance stops it and
    /// records its end (its record is still its own; it is marked ended now), or a
    /// newer owner claimed both. Asked at once (before anything later about the same
    /// reservation); answered through the receiver: [`EndAnswer::StopNow`] first when
    /// Redis stays silent for long, then [`EndAnswer::Decided`]. Without the driver
    /// (shutting down): it does.
    pub fn session_ending(&self, id: ReservationId) -> mpsc::UnboundedReceiver<EndAnswer> {
        let (reply, answers) = mpsc::unbounded_channel();
        if let Err(mpsc::error::SendError(Msg::Ending { reply, .. })) =
            self.0.messages.send(Msg::Ending { id, reply })
        {
            let _ = reply.send(EndAnswer::Decided(true));
        }
        answers
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
            reservations: self
                .0
                .slots
                .lock()
                .unwrap_or_else(|poison| poison.into_inner())
                .iter()
                .map(|slot| ReservationView {
                    channel: slot.channel.clone(),
                    engine: slot.engine.to_string(),
                    slot: slot.slot,
                    fencing: slot.fencing,
                    stream_id: slot.stream_id.clone(),
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
