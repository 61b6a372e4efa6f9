//! Drivers for fuzzing: each takes arbitrary bytes, decodes them into a bounded drive
//! of one part of the core, runs it, and checks that part's promises as it goes. A
//! broken promise panics; that is a bug in the core, never in the input.
//!
//! The `fuzz/` crate's cargo-fuzz targets call these functions and nothing else, so
//! the driving and checking logic builds and runs in every normal test run too: the
//! core's own tests run each driver over random bytes, replay every input kept in
//! `fuzz/regressions/`, and reuse the checkers in their property tests.
//!
//! | driver | what it drives |
//! |---|---|
//! | [`playlist`] | the m3u8 reader, renderer, resolver and rewriter |
//! | [`channel_list`] | the M3U channel-list reader and writer, and the M3U rewriter |
//! | [`lifecycle_events`] | `stream_started` / `stream_ended` JSON bodies into the registry |
//! | [`engine_envelope`] | the engine's session envelope |
//! | [`engine_list`] | an orchestrator's engine list, and what a list source makes of it |
//! | [`lifecycle`] | the lifecycle registry: starts, ends, clock moves, restarts |
//! | [`channel`] | the channel machine: engine reports, viewers, clock moves |
//! | [`ts_channel`] | the composed TS channel: engine calls, playback, viewers, clock moves |
//! | [`hls_channel`] | the composed HLS channel: engine calls, fetches, players, waiters |
//! | [`hls`] | the HLS session against a fake engine and driver |
//! | [`fanout`] | the TS fan-out: upstream bytes, viewers, clock moves |
//! | [`ts_aligner`] | the TS packet aligner, fed whole and in chunks |
//! | [`segmenter`] | the HLS segmenter: tables, frames, timestamp jumps, junk, new playbacks |
//!
//! ```
//! // Any bytes are a valid input; an empty one is the shortest drive.
//! acemux_core::fuzzing::channel(b"");
//! acemux_core::fuzzing::playlist(b"#EXTM3U\n#EXTINF:2.5,\nsegment.ts\n");
//! ```

pub(crate) mod channel;
mod channel_list;
pub(crate) mod composed;
mod engine_list;
mod envelope;
pub(crate) mod fanout;
pub(crate) mod hls;
pub(crate) mod lifecycle;
pub(crate) mod playlist;
mod reader;
pub(crate) mod segmenter;
mod ts;

pub use channel::channel;
pub use channel_list::channel_list;
pub use composed::{hls_channel, ts_channel};
pub use engine_list::engine_list;
pub use envelope::engine_envelope;
pub use fanout::fanout;
pub use hls::hls;
pub use lifecycle::{lifecycle, lifecycle_events};
pub use playlist::playlist;
pub use segmenter::segmenter;
pub use ts::ts_aligner;

/// Most inputs one drive feeds its machine, so that every run is short.
const MAX_STEPS: usize = 512;

/// A driver: a name (the fuzz target's) and its function.
pub type Driver = (&'static str, fn(&[u8]));

/// Every driver, by fuzz target name.
pub const DRIVERS: [Driver; 13] = [
    ("playlist", playlist),
    ("lifecycle_events", lifecycle_events),
    ("engine_envelope", engine_envelope),
    ("lifecycle", lifecycle),
    ("channel", channel),
    ("hls", hls),
    ("fanout", fanout),
    ("ts_aligner", ts_aligner),
    ("ts_channel", ts_channel),
    ("hls_channel", hls_channel),
    ("engine_list", engine_list),
    ("channel_list", channel_list),
    ("segmenter", segmenter),
];

#[cfg(test)]
mod tests;
