//! Channels: one engine session per channel, from the session request to the stop,
//! with reconnects, failover and idle shutdown, and the composed machines that put a
//! format's media part beside it.
//!
//! - [`Channel`] is the engine session alone: it decides *when* a session is requested,
//!   opened, reopened, replaced and stopped.
//! - [`TsChannel`] and [`HlsChannel`] are what a driver runs, one per channel: the
//!   engine session, its engine calls (the request deadline, the watch for late
//!   answers, stop retries) and the format's media part (the TS fan-out and its
//!   viewers; the HLS fetch loop, its players and the players waiting for the first
//!   playlist), composed in [`ComposedChannel`]. Their outputs are I/O commands with
//!   ids ([`RequestId`], [`StopId`], [`PlaybackId`], viewer and waiter ids); their
//!   inputs are the completions of those commands and the arrivals of viewers, bytes
//!   and time. Every deadline, retry, backoff and cap is a timer or a config field here.
//!
//! Drive order as for every core machine: after each `handle_*` call drain
//! `poll_output`, then re-arm the timer from `poll_timeout`. The driver answers
//! [`Output::PickEngine`] at once with [`Input::EnginePicked`] (from the shared
//! [`EnginePool`], updated by [`Output::Pool`]), answers every request, stop, playback
//! and fetch it performs, and may go once [`ComposedChannel::is_finished`].

mod answer;
mod composed;
mod cut;
mod discovery;
mod dns;
mod engine;
mod health;
mod hls;
mod leftover;
mod machine;
mod players;
mod pool;
mod relay;
mod stats;
mod ts;
mod vocab;

pub use answer::SessionAnswer;
pub use composed::{ComposedChannel, Context, Media, MediaCommand};
pub use cut::{CutHlsConfig, UNWATCHED_MARGIN_SEGMENTS};
pub use discovery::{parse_engine_list, ListSource, ListedEngine, Observed, SourceReport};
pub use dns::{is_name, DnsEngine};
pub use health::{Health, HealthState};
pub use hls::{FetchError, HlsChannel, HlsInput, HlsMedia, HlsMediaConfig, HlsOutput, WaitFailure};
pub use leftover::{
    leftovers, LeftoverInput, LeftoverStops, Leftovers, MAX_RESTOPS, RESTOP_WINDOW,
};
pub use machine::{
    Channel, ChannelConfig, EngineSession, Input as SessionInput, Output as SessionOutput,
    SessionError, StartFailure,
};
pub use pool::{EngineLoad, EnginePool, EngineSource, Listing, FLAG_LIST};
pub use relay::{
    for_player, HlsRelay, RelayConfig, RelayEnd, RelayFailure, RelayInput, RelayOutput,
};
pub use stats::{EngineStats, LivePos, StatPollId, StatsAction, StatsConfig, StatsWatch};
pub use ts::{TsChannel, TsInput, TsMedia, TsOutput};
pub use vocab::{
    CloseReason, EngineCallConfig, Input, Notice, Output, PlaybackId, PoolChange, RequestId,
    StopId, WaiterId,
};

#[cfg(test)]
mod tests;
