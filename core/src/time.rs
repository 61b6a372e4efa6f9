//! Core time: a monotonic instant that the driver supplies.
//!
//! The core never reads a clock. The driver decides what `now` is (microseconds
//! since it started, or virtual time in the simulator) and passes it in.

use std::fmt;

use serde::{Deserialize, Serialize};
use std::ops::{Add, Sub};

pub use std::time::Duration;

/// A point on the driver's monotonic clock, in microseconds since the driver started.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize,
)]
#[serde(transparent)]
pub struct Instant(u64);

impl Instant {
    /// The driver's start.
    pub const ZERO: Instant = Instant(0);

    /// An instant `micros` microseconds after the driver started.
    pub const fn from_micros(micros: u64) -> Self {
        Instant(micros)
    }

    /// Microseconds since the driver started.
    pub const fn as_micros(self) -> u64 {
        self.0
    }

    /// Time elapsed since `earlier`, or zero when `earlier` is later.
    pub fn saturating_duration_since(self, earlier: Instant) -> Duration {
        Duration::from_micros(self.0.saturating_sub(earlier.0))
    }

    /// `self + duration`, saturating at the end of time instead of overflowing.
    pub fn saturating_add(self, duration: Duration) -> Instant {
        let micros = u64::try_from(duration.as_micros()).unwrap_or(u64::MAX);
        Instant(self.0.saturating_add(micros))
    }
}

impl Add<Duration> for Instant {
    type Output = Instant;

    fn add(self, rhs: Duration) -> Instant {
        self.saturating_add(rhs)
    }
}

impl Sub<Instant> for Instant {
    type Output = Duration;

    fn sub(self, rhs: Instant) -> Duration {
        self.saturating_duration_since(rhs)
    }
}

impl fmt::Display for Instant {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{:06}s", self.0 / 1_000_000, self.0 % 1_000_000)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn arithmetic_saturates_instead_of_panicking() {
        let late = Instant::from_micros(u64::MAX - 1);
        assert_eq!(
            late + Duration::from_secs(10),
            Instant::from_micros(u64::MAX)
        );
        assert_eq!(Instant::ZERO - late, Duration::ZERO);
        assert_eq!(
            Instant::from_micros(2_500_000) - Instant::from_micros(500_000),
            Duration::from_secs(2)
        );
    }

    #[test]
    fn display_shows_seconds_and_micros() {
        assert_eq!(Instant::from_micros(3_000_042).to_string(), "3.000042s");
    }
}
