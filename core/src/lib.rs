//! # acemux-core
//!
//! The state machines of acemux, with no I/O of their own.
//!
//! The contract: no sockets, no clock reads, no threads, no tasks, no ambient
//! randomness. Time arrives as an [`Instant`] argument, randomness from a seed in
//! configuration. For a given sequence of inputs every machine produces the same
//! outputs, bit for bit, so the same machine runs under the production driver and
//! under the deterministic simulator.
//!
//! Every machine speaks one vocabulary: `handle_input(now, input)` and
//! `handle_timeout(now)` feed it; after each call the driver drains `poll_output()`
//! and then reads `poll_timeout()` to know when to wake it next.
//!
//! ```no_run
//! use acemux_core::lifecycle::{Input, Output, Registry, RegistryConfig, StreamEnded};
//! use acemux_core::Instant;
//!
//! let mut registry = Registry::new(RegistryConfig::default());
//! # let clock_now = || Instant::ZERO;
//! let ended = StreamEnded { stream_id: Some("abc|1".into()), ..Default::default() };
//! match registry.handle_input(clock_now(), Input::Ended(ended)) {
//!     Ok(outcome) => println!("stream {} updated: {}", outcome.stream.id, outcome.updated),
//!     Err(error) => println!("refused: {error}"),
//! }
//! while let Some(Output::Event(event)) = registry.poll_output() {
//!     println!("append event {} to the outbox", event.seq);
//! }
//! if let Some(deadline) = registry.poll_timeout() {
//!     // Sleep until `deadline`, then call `registry.handle_timeout(now)`.
//!     let _ = deadline;
//! }
//! ```

pub mod channel;
pub mod channel_list;
pub mod cluster;
pub mod fanout;
/// Fuzz drivers and their checkers: test equipment, built for the core's own tests and
/// with the `fuzzing` feature (which `fuzz/` turns on).
#[cfg(any(test, feature = "fuzzing"))]
pub mod fuzzing;
pub mod hls;
pub mod lifecycle;
pub mod machine;
pub mod planted;
pub mod playlist;
pub mod refusals;
pub mod rng;
pub mod time;
pub mod ts;

pub use time::{Duration, Instant};
