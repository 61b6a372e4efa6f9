//! What every machine shares: the drive vocabulary as a trait, timer tables, and the
//! fake-clock harness that tests and fuzz drivers step machines with.
//!
//! A [`Machine`] is fed with `handle_input(now, input)` and `handle_timeout(now)`; after
//! every such call the driver drains [`Machine::poll_output`], then reads
//! [`Machine::poll_timeout`] and calls `handle_timeout` no later than that instant.
//! `now` never goes backwards; an early `handle_timeout` is harmless.

mod harness;
mod timer;

pub use harness::Harness;
pub use timer::{Deadlines, TimerKind, TimerTable};

use crate::time::Instant;

/// The sans-io drive vocabulary, for drivers and harnesses that work with any machine.
pub trait Machine {
    /// What the driver reports.
    type Input;
    /// What the machine asks of the driver.
    type Output;

    /// Feeds one report at `now`.
    fn handle_input(&mut self, now: Instant, input: Self::Input);

    /// Fires every timer due at `now`.
    fn handle_timeout(&mut self, now: Instant);

    /// The next output, in order.
    #[must_use]
    fn poll_output(&mut self) -> Option<Self::Output>;

    /// When `handle_timeout` should next be called; `None` while no timer runs.
    #[must_use]
    fn poll_timeout(&self) -> Option<Instant>;
}
