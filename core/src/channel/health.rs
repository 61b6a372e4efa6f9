//! Engine health from probes of each engine's version API
//! (`GET /webui/api/service?method=get_version`, as engines and orchestrators check
//! them): when each engine is due for a probe, and what an answer means. A probe that
//! fails marks the engine down, and the next probe comes later each time (doubling from
//! the interval up to a bound); one that succeeds marks it up. Only engines that are up,
//! or not probed yet, get new sessions.

use crate::time::{Duration, Instant};

/// Most times the interval a down engine waits for its next probe.
const MAX_BACKOFF_FACTOR: u32 = 8;

/// What the last probe said.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum HealthState {
    /// Not probed yet (or probing is off): it may get sessions.
    #[default]
    Unknown,
    /// The last probe was answered.
    Up,
    /// The last probe failed.
    Down,
}

impl HealthState {
    /// The wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            HealthState::Unknown => "unknown",
            HealthState::Up => "up",
            HealthState::Down => "down",
        }
    }
}

/// One engine's probe state.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Health {
    /// What the last probe said.
    pub state: HealthState,
    /// When the last probe was answered or failed.
    pub last_check: Option<Instant>,
    /// When the next probe is due (while none is in flight).
    next_probe: Instant,
    /// A probe was handed out and has not been reported.
    in_flight: bool,
    /// Probes failed in a row.
    failures: u32,
}

impl Health {
    /// A new engine: due for a probe at once.
    pub fn new() -> Self {
        Health {
            state: HealthState::Unknown,
            last_check: None,
            next_probe: Instant::ZERO,
            in_flight: false,
            failures: 0,
        }
    }

    /// Whether it may get new sessions.
    pub fn usable(&self) -> bool {
        self.state != HealthState::Down
    }

    /// When its next probe is due; none while one is in flight.
    pub fn due_at(&self) -> Option<Instant> {
        (!self.in_flight).then_some(self.next_probe)
    }

    /// Hands out its probe if due at `now`.
    pub fn take_due(&mut self, now: Instant) -> bool {
        if self.in_flight || self.next_probe > now {
            return false;
        }
        self.in_flight = true;
        true
    }

    /// A request to the engine found it unreachable at `now`: down until a probe
    /// answers, and due for one at once (unless one is in flight: its answer decides).
    pub fn request_failed(&mut self, now: Instant) {
        self.state = HealthState::Down;
        if !self.in_flight {
            self.next_probe = self.next_probe.min(now);
        }
    }

    /// A probe's answer: `up` or not. The next probe is due an interval later, or,
    /// after failures, the interval doubled per failure (at most 8 intervals).
    pub fn probed(&mut self, now: Instant, up: bool, interval: Duration) {
        self.in_flight = false;
        self.last_check = Some(now);
        if up {
            self.state = HealthState::Up;
            self.failures = 0;
            self.next_probe = now + interval;
        } else {
            self.state = HealthState::Down;
            self.failures = self.failures.saturating_add(1);
            let factor = 1u32
                .checked_shl(self.failures - 1)
                .unwrap_or(u32::MAX)
                .min(MAX_BACKOFF_FACTOR);
            self.next_probe = now + interval * factor;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failed_probes_back_off_and_one_answer_brings_the_engine_back() {
        let interval = Duration::from_secs(10);
        let at = |secs| Instant::ZERO + Duration::from_secs(secs);
        let mut health = Health::new();
        assert!(health.usable(), "not probed yet");
        assert!(health.take_due(at(0)));
        assert!(!health.take_due(at(0)), "one probe in flight at a time");
        assert_eq!(health.due_at(), None);
        health.probed(at(0), false, interval);
        assert!(!health.usable());
        assert_eq!(health.state, HealthState::Down);
        assert_eq!(health.due_at(), Some(at(10)));
        assert!(health.take_due(at(10)));
        health.probed(at(10), false, interval);
        assert_eq!(health.due_at(), Some(at(30)), "doubled");
        for _ in 0..5 {
            let due = health.due_at().expect("due");
            assert!(health.take_due(due));
            health.probed(due, false, interval);
        }
        let due = health.due_at().expect("due");
        assert!(health.take_due(due));
        health.probed(due, true, interval);
        assert!(health.usable());
        assert_eq!(health.last_check, Some(due));
        assert_eq!(health.due_at(), Some(due + interval));
    }

    #[test]
    fn backoff_is_bounded() {
        let interval = Duration::from_secs(1);
        let mut health = Health::new();
        let mut now = Instant::ZERO;
        for _ in 0..40 {
            assert!(health.take_due(now));
            health.probed(now, false, interval);
            let due = health.due_at().expect("due");
            assert!(due - now <= interval * MAX_BACKOFF_FACTOR);
            now = due;
        }
    }
}
