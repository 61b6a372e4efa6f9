//! The vocabulary of the composed channel machines: ids of the I/O they ask for, the
//! inputs and outputs every format shares, and the notices drivers log and count.

use std::fmt;

use crate::lifecycle::{EndReason, EngineAddr};
use crate::time::Duration;

use super::stats::{EngineStats, StatPollId, StatsConfig};
use super::{EngineSession, SessionError, StartFailure};

macro_rules! id_type {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
        pub struct $name(pub u64);

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{}", self.0)
            }
        }
    };
}

id_type!(
    /// One session request to an engine; its answer names it.
    RequestId
);
id_type!(
    /// One stop of one session (all its attempts); answers name it.
    StopId
);
id_type!(
    /// One playback connection (TS body); its events name it, and events of a closed
    /// one are ignored.
    PlaybackId
);
id_type!(
    /// One player waiting for an HLS channel's first playlist; chosen by the driver.
    WaiterId
);

/// Timing and bounds of the engine calls of one channel.
#[derive(Clone, Debug)]
pub struct EngineCallConfig {
    /// A session request not answered this long counts as failed for the channel
    /// (which retries or fails over); the request itself is then watched for a late
    /// answer.
    pub request_timeout: Duration,
    /// A timed-out request is watched for `request_timeout × late_answer_factor` more…
    pub late_answer_factor: u32,
    /// …but at least this long: an engine that takes long to open a session (a slow
    /// peer-to-peer start) must not leave it running for ever.
    pub late_answer_min: Duration,
    /// Timed-out requests watched at once per channel; one more is abandoned at once.
    pub max_late_requests: usize,
    /// Attempts to stop one session before giving up on it.
    pub stop_attempts: u32,
    /// Delay before the second stop attempt; doubles per attempt…
    pub stop_retry_initial: Duration,
    /// …up to this. With the defaults a stop keeps trying for about ten minutes: an
    /// engine cut off for a while (its VPN reconnecting, a partition) must still have
    /// its session stopped when it comes back, or the session holds a slot for ever.
    pub stop_retry_max: Duration,
    /// Polling the session's stats, and the no-progress rule.
    pub stats: StatsConfig,
    /// Bugs planted for the simulation's self-test; none in the product.
    pub planted: crate::planted::Planted,
}

impl Default for EngineCallConfig {
    fn default() -> Self {
        EngineCallConfig {
            request_timeout: Duration::from_secs(10),
            late_answer_factor: 6,
            late_answer_min: Duration::from_secs(60),
            max_late_requests: 16,
            stop_attempts: 15,
            stop_retry_initial: Duration::from_secs(1),
            stop_retry_max: Duration::from_secs(60),
            stats: StatsConfig::default(),
            planted: crate::planted::Planted::NONE,
        }
    }
}

impl EngineCallConfig {
    /// How long a timed-out request is still watched for a late answer:
    /// `max(request_timeout × late_answer_factor, late_answer_min)`.
    pub fn late_answer_bound(&self) -> Duration {
        self.request_timeout
            .saturating_mul(self.late_answer_factor)
            .max(self.late_answer_min)
    }
}

/// What the driver reports to a composed channel machine.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Input<M> {
    /// The answer to [`Output::PickEngine`], given before any other input: the engine
    /// the pool picked, or none.
    EnginePicked(Option<EngineAddr>),
    /// The answer to [`Output::RequestSession`]. Every request gets one unless it was
    /// abandoned ([`Output::AbandonRequest`]).
    SessionAnswer {
        /// The request.
        request: RequestId,
        /// The session, or why there is none.
        result: Result<EngineSession, SessionError>,
    },
    /// The answer to one [`Output::StopSession`] attempt.
    StopAnswer {
        /// The stop.
        stop: StopId,
        /// Whether the engine confirmed it; the error for logs.
        result: Result<(), String>,
    },
    /// The answer to [`Output::FetchStats`]: the figures, or why there are none.
    StatsAnswer {
        /// The poll.
        poll: StatPollId,
        /// The figures, or the error for logs.
        result: Result<EngineStats, String>,
    },
    /// Stop the channel (an operator asked): viewers closed, session stopped.
    Stop(EndReason),
    /// The process is shutting down: stop the channel and watch no request any more.
    Shutdown,
    /// An input of the format's own part.
    Media(M),
}

/// What a composed channel machine asks of the driver, or tells it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Output<M> {
    /// Pick an engine from the shared pool, preferring ones not in `exclude`, and
    /// answer at once with [`Input::EnginePicked`].
    PickEngine {
        /// Engines that failed this round.
        exclude: Vec<EngineAddr>,
    },
    /// Request a session from `engine`; answer with [`Input::SessionAnswer`].
    RequestSession {
        /// Echo it in the answer.
        request: RequestId,
        /// The engine to ask.
        engine: EngineAddr,
    },
    /// Drop request `request`: its answer is no longer wanted.
    AbandonRequest {
        /// The request.
        request: RequestId,
    },
    /// Send the stop command of a session; answer with [`Input::StopAnswer`].
    StopSession {
        /// Echo it in the answer.
        stop: StopId,
        /// 1 for the first attempt.
        attempt: u32,
        /// The session's engine.
        engine: EngineAddr,
        /// Its command URL.
        command_url: String,
    },
    /// Fetch the session's stats; answer with [`Input::StatsAnswer`] (always, within a
    /// bound of the driver's).
    FetchStats {
        /// Echo it in the answer.
        poll: StatPollId,
        /// The session's engine.
        engine: EngineAddr,
        /// Its stat URL, pointed at that engine.
        url: String,
    },
    /// New figures for the current session (publish them with its stream).
    Stats(EngineStats),
    /// The shared engine pool's count changes.
    Pool(PoolChange),
    /// A session delivered its first media: record `stream_started`.
    Started(EngineSession),
    /// A started session is over: record `stream_ended`.
    SessionEnded {
        /// The session.
        session: EngineSession,
        /// Why.
        reason: EndReason,
    },
    /// The channel is over for viewers (every one was closed): new viewers need a new
    /// channel. Engine work (stops, watched requests) may go on until
    /// [`is_finished`](super::ComposedChannel::is_finished).
    Ended {
        /// Why.
        reason: EndReason,
    },
    /// Something for logs and metrics; nothing to perform.
    Notice(Notice),
    /// An output of the format's own part.
    Media(M),
}

/// A change of the shared engine pool's bookkeeping.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PoolChange {
    /// A session was opened on the engine.
    Opened(EngineAddr),
    /// A session on the engine is being stopped.
    Closed(EngineAddr),
    /// A request to the engine failed (repeated failures rest it).
    Failed {
        /// The engine.
        engine: EngineAddr,
        /// It could not be reached or did not answer in time (not a refusal of the
        /// content): while engines are probed, it is down until a probe answers.
        unreachable: bool,
    },
}

/// Facts for logs and metrics.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Notice {
    /// The pool had no engine for a session request.
    NoEngine,
    /// An engine did not grant a session.
    SessionFailed {
        /// The engine.
        engine: EngineAddr,
        /// Why.
        error: SessionError,
    },
    /// An engine granted a session to a request the channel no longer waited for; the
    /// session is being stopped.
    LateSession {
        /// The engine.
        engine: EngineAddr,
        /// The session's id.
        session_id: String,
    },
    /// A timed-out request is watched for a late answer until `for_at_most` passes.
    RequestWatched {
        /// The request.
        request: RequestId,
        /// The engine.
        engine: EngineAddr,
        /// How long.
        for_at_most: Duration,
    },
    /// A timed-out request was abandoned without an answer: the watch ran out, too
    /// many were watched (`limit` true), or the process is shutting down.
    RequestAbandoned {
        /// The request.
        request: RequestId,
        /// The engine.
        engine: EngineAddr,
        /// Whether [`EngineCallConfig::max_late_requests`] was the reason.
        limit: bool,
    },
    /// A stop attempt failed; another follows in `retry_in`, or none (`retry_in` is
    /// `None`: given up).
    StopFailed {
        /// The engine.
        engine: EngineAddr,
        /// The attempt that failed.
        attempt: u32,
        /// The engine's error.
        error: String,
        /// Delay until the next attempt.
        retry_in: Option<Duration>,
    },
    /// The channel could not start; its waiting viewers are told why.
    StartFailed(StartFailure),
    /// Upstream went silent: the playback is closed and reopened.
    UpstreamStalled,
    /// Playback (re)opened after media had flowed: a reconnect.
    Reconnecting,
    /// The channel now has this many viewers (or HLS players).
    Viewers(usize),
    /// A stat poll failed; the last good figures stay shown.
    StatsFailed {
        /// The engine.
        engine: EngineAddr,
        /// Why.
        error: String,
        /// Polls failed in a row, this one included.
        consecutive: u32,
    },
    /// The session reported zero peers and no download progress for the bound: it is
    /// being replaced.
    NoPeers {
        /// The engine.
        engine: EngineAddr,
        /// How long.
        for_at_least: Duration,
    },
}

/// Why a viewer's connection is closed.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum CloseReason {
    /// The channel could not start (or sent nothing before the viewer's first-media
    /// bound); the viewer gets this error.
    StartFailed(StartFailure),
    /// The channel has its most viewers; the viewer gets 503.
    Full {
        /// The limit.
        limit: usize,
    },
    /// The viewer was dropped (it stopped reading or fell behind).
    Dropped(crate::fanout::DropReason),
    /// The channel ended.
    ChannelEnded(EndReason),
}

impl CloseReason {
    /// A stable name for logs.
    pub fn as_str(&self) -> &str {
        match self {
            CloseReason::StartFailed(failure) => failure.code(),
            CloseReason::Full { .. } => "capacity",
            CloseReason::Dropped(reason) => reason.as_str(),
            CloseReason::ChannelEnded(_) => "channel_ended",
        }
    }
}
