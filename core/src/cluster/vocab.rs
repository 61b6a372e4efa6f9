//! The vocabulary of the lease machine: its configuration, what it asks of the
//! driver and what the driver reports.

use serde::{Deserialize, Serialize};

use crate::time::{Duration, Instant};

/// Lease timing and the bounds on Redis.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LeaseConfig {
    /// This instance's id, stored in the leases it holds.
    pub instance: String,
    /// How other instances reach this one (`http://host:port`).
    pub advertise: String,
    /// A lease's time to live: how long a dead owner's channels wait for a new owner.
    pub ttl: Duration,
    /// How often a held lease is renewed; well below `ttl`.
    pub renew_every: Duration,
    /// Longest time one Redis command sequence may take.
    pub redis_timeout: Duration,
    /// Longest time a new channel waits for Redis before it starts here without a
    /// lease.
    pub wait_for_redis: Duration,
    /// Delay before a failed Redis call is tried again.
    pub retry_after: Duration,
    /// Bugs planted by the simulation's self-test; none otherwise.
    pub planted: crate::planted::Planted,
}

impl LeaseConfig {
    /// The defaults for `instance` reachable at `advertise` with leases of `ttl`:
    /// renewed every third of it, Redis calls bounded by a second (less for short
    /// leases), a new channel waiting two seconds for Redis at most.
    pub fn new(instance: String, advertise: String, ttl: Duration) -> Self {
        let renew_every = ttl / 3;
        LeaseConfig {
            instance,
            advertise,
            ttl,
            renew_every,
            redis_timeout: Duration::from_secs(1).min(renew_every),
            wait_for_redis: Duration::from_secs(2),
            retry_after: Duration::from_millis(500).min(renew_every),
            planted: crate::planted::Planted::NONE,
        }
    }
}

/// What a lease holds: its owner and fencing number. Stored in Redis as JSON.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Holder {
    /// The owning instance's id.
    pub instance: String,
    /// Where other instances reach it.
    pub advertise: String,
    /// The lease's fencing number.
    pub fencing: u64,
}

impl Holder {
    /// The value stored in Redis.
    pub fn encode(&self) -> String {
        serde_json::to_string(self).unwrap_or_default()
    }

    /// A value read from Redis; `None` when it is not a lease.
    pub fn decode(value: &str) -> Option<Holder> {
        serde_json::from_str(value).ok()
    }
}

/// Identifies a [`Leases::want`](super::Leases::want) call, echoed in its [`Output::Route`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct TicketId(pub u64);

/// Identifies a [`Command`], echoed in its [`Input::Reply`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct OpId(pub u64);

/// Where a channel gets its media from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Route {
    /// This instance holds the lease: open the engine session here.
    Own {
        /// The lease's fencing number.
        fencing: u64,
    },
    /// Another instance holds it: relay from it.
    Relay(Holder),
    /// Redis did not answer in time: start here without a lease (the lease is taken
    /// when Redis answers; should another instance hold it then, the channel is lost).
    Local,
}

/// A Redis command sequence for the driver to perform.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Command {
    /// `INCR` the channel's fencing counter to `n`, then `SET` the lease to this
    /// instance with fencing `n` `NX PX ttl`; if it is set already, `GET` it.
    /// Replies [`Reply::Acquired`] or [`Reply::Taken`].
    Acquire {
        /// The channel.
        channel: String,
        /// The lease's owner and address (the fencing number is the counter's).
        instance: String,
        /// Where other instances reach it.
        advertise: String,
        /// Time to live.
        ttl: Duration,
    },
    /// `WATCH` the lease, `GET` it; if it is still `mine`, `MULTI PEXPIRE ttl EXEC`.
    /// Replies [`Reply::Kept`] or [`Reply::Gone`].
    Renew {
        /// The channel.
        channel: String,
        /// The lease as this instance holds it.
        mine: Holder,
        /// Time to live.
        ttl: Duration,
    },
    /// `WATCH` the lease, `GET` it; if it is still `mine`, `MULTI DEL EXEC`.
    /// Replies [`Reply::Done`].
    Release {
        /// The channel.
        channel: String,
        /// The lease as this instance holds it.
        mine: Holder,
    },
    /// `WATCH` the fencing counter, `GET` it; if it is below `at_least`,
    /// `MULTI SET at_least EXEC`. Replies [`Reply::Done`].
    RaiseFencing {
        /// The channel.
        channel: String,
        /// The lowest value the counter may have afterwards.
        at_least: u64,
    },
}

/// What Redis answered to a [`Command`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Reply {
    /// The lease is this instance's, with this fencing number.
    Acquired {
        /// Its fencing number.
        fencing: u64,
    },
    /// Another holder has the lease (or a value that is not a lease: `None`).
    Taken(Option<Holder>),
    /// The lease was renewed.
    Kept,
    /// The lease is no longer this instance's: another holder, or none.
    Gone(Option<Holder>),
    /// Done (a release or a raise).
    Done,
}

/// What the driver reports.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Input {
    /// The answer to [`Output::Redis`] `op`, or why there is none (the driver's
    /// timeout included).
    Reply {
        /// The command.
        op: OpId,
        /// Redis's answer.
        result: Result<Reply, String>,
    },
}

/// Events for logs and metrics.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Notice {
    /// This instance took the lease of `channel`.
    Acquired {
        /// The channel.
        channel: String,
        /// The fencing number.
        fencing: u64,
    },
    /// A new channel starts without a lease: Redis did not answer in time.
    LocalFallback {
        /// The channel.
        channel: String,
    },
    /// A Redis call failed.
    RedisFailed {
        /// The channel.
        channel: String,
        /// What was asked: `acquire`, `renew`, `release` or `raise`.
        call: &'static str,
        /// Why.
        error: String,
    },
    /// A lease was taken with a fencing number not above one already seen; it is
    /// given back and the counter raised.
    StaleFencing {
        /// The channel.
        channel: String,
        /// The number the counter gave.
        got: u64,
        /// The highest number seen for the channel.
        highest: u64,
    },
    /// A held lease was gone from Redis (expired or Redis restarted); taking it again.
    Expired {
        /// The channel.
        channel: String,
    },
}

/// What the machine asks of the driver.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Output {
    /// Perform `command` within `timeout`; answer with [`Input::Reply`].
    Redis {
        /// Echo it in the reply.
        op: OpId,
        /// What to do.
        command: Command,
        /// Longest time it may take; past it, reply with an error.
        timeout: Duration,
    },
    /// The answer to a [`Leases::want`](super::Leases::want).
    Route {
        /// The call.
        ticket: TicketId,
        /// Where the channel gets its media.
        route: Route,
    },
    /// Another instance owns `channel` now: stop its engine session here.
    Lost {
        /// The channel.
        channel: String,
        /// The new owner, if known.
        owner: Option<Holder>,
    },
    /// For logs and metrics.
    Notice(Notice),
}

/// A lease held, as `GET /cluster` shows it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HeldLease {
    /// The channel.
    pub channel: String,
    /// Its fencing number.
    pub fencing: u64,
    /// When it expires unless renewed (as of the last confirmed renewal).
    pub expires: Instant,
}
