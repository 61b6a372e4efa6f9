//! The driver's clock: core [`Instant`]s as microseconds since the Unix epoch,
//! advanced by `tokio::time` (virtual under simulation).
//!
//! The wall-clock origin is read once, by the caller that builds the clock, so
//! times stay comparable across restarts and the simulator can fix it.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use acemux_core::Instant;

/// Monotonic time anchored at a wall-clock origin.
#[derive(Clone, Copy, Debug)]
pub struct Clock {
    origin: tokio::time::Instant,
    origin_unix_micros: u64,
}

impl Clock {
    /// A clock whose start corresponds to `origin_unix_micros` on the wall clock.
    pub fn new(origin_unix_micros: u64) -> Self {
        Clock {
            origin: tokio::time::Instant::now(),
            origin_unix_micros,
        }
    }

    /// The current core instant.
    pub fn now(&self) -> Instant {
        let elapsed = u64::try_from(self.origin.elapsed().as_micros()).unwrap_or(u64::MAX);
        Instant::from_micros(self.origin_unix_micros.saturating_add(elapsed))
    }

    /// The tokio deadline at which core instant `at` falls.
    pub fn deadline(&self, at: Instant) -> tokio::time::Instant {
        let offset = at.as_micros().saturating_sub(self.origin_unix_micros);
        self.origin + Duration::from_micros(offset)
    }
}

impl Clock {
    /// Sleeps until the earliest of `deadlines`; for ever when there is none (a machine
    /// with no timer armed waits for input instead).
    pub async fn sleep_until_earliest(&self, deadlines: impl IntoIterator<Item = Option<Instant>>) {
        match deadlines.into_iter().flatten().min() {
            Some(at) => tokio::time::sleep_until(self.deadline(at)).await,
            None => std::future::pending().await,
        }
    }
}

/// RFC 3339 text (UTC, microseconds) of a core instant on this driver's clock.
pub fn rfc3339(at: Instant) -> String {
    let time = UNIX_EPOCH + Duration::from_micros(at.as_micros());
    humantime::format_rfc3339_micros(time).to_string()
}

/// The wall clock now, as microseconds since the Unix epoch. For the production
/// binary's start-up only; simulated runs pass a fixed origin instead.
pub fn unix_micros_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|since| u64::try_from(since.as_micros()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc3339_renders_utc_micros() {
        assert_eq!(
            rfc3339(Instant::from_micros(1_700_000_000_123_456)),
            "2023-11-14T22:13:20.123456Z"
        );
    }
}
