//! The channel machine: one engine session per channel, from the session request to
//! the stop, with reconnects, failover and idle shutdown.
//!
//! The machine decides *when* and *what*; the driver performs the HTTP calls, picks
//! the engine from an [`EnginePool`], reads the playback body into a
//! [`Fanout`](crate::fanout) and reports back. Drive order as for every core machine:
//! after each `handle_*` call drain [`Channel::poll_output`], then re-arm the timer
//! from [`Channel::poll_timeout`].

mod answer;
mod machine;
mod pool;

pub use answer::SessionAnswer;
pub use machine::{
    Channel, ChannelConfig, EngineSession, Input, Output, SessionError, StartFailure,
};
pub use pool::{EngineLoad, EnginePool};

#[cfg(test)]
mod tests;
