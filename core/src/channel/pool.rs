//! Engine selection: healthy, below the per-engine limit, least loaded.

use std::collections::BTreeMap;

use crate::lifecycle::EngineAddr;
use crate::time::{Duration, Instant};

/// Consecutive failures after which an engine is rested.
const FAILURES_BEFORE_COOLDOWN: u32 = 2;

/// What the pool knows about one configured engine.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EngineLoad {
    /// The engine.
    pub engine: EngineAddr,
    /// Sessions open on it through this proxy.
    pub sessions: usize,
    /// Failures since its last success.
    pub consecutive_failures: u32,
    /// Not picked before this instant (after repeated failures).
    pub resting_until: Option<Instant>,
}

/// The configured engines and their load. Shared by all channels; pure data.
#[derive(Clone, Debug)]
pub struct EnginePool {
    engines: BTreeMap<EngineAddr, EngineLoad>,
    max_sessions_per_engine: usize,
    cooldown: Duration,
}

impl EnginePool {
    /// A pool of `engines`, each taking at most `max_sessions_per_engine` sessions;
    /// an engine that fails repeatedly is rested for `cooldown`.
    pub fn new(
        engines: impl IntoIterator<Item = EngineAddr>,
        max_sessions_per_engine: usize,
        cooldown: Duration,
    ) -> Self {
        EnginePool {
            engines: engines
                .into_iter()
                .map(|engine| {
                    let load = EngineLoad {
                        engine: engine.clone(),
                        sessions: 0,
                        consecutive_failures: 0,
                        resting_until: None,
                    };
                    (engine, load)
                })
                .collect(),
            max_sessions_per_engine,
            cooldown,
        }
    }

    /// The engine for a new session: among healthy engines below the limit, the least
    /// loaded one not in `exclude`; failing that, the least loaded excluded one (a
    /// retry on the same engine beats no engine). Ties go to the lowest address.
    pub fn pick(&self, now: Instant, exclude: &[EngineAddr]) -> Option<EngineAddr> {
        let usable = self.engines.values().filter(|load| {
            load.sessions < self.max_sessions_per_engine
                && load.resting_until.is_none_or(|until| until <= now)
        });
        let (fresh, excluded): (Vec<&EngineLoad>, Vec<&EngineLoad>) =
            usable.partition(|load| !exclude.contains(&load.engine));
        let least = |loads: Vec<&EngineLoad>| {
            loads
                .into_iter()
                .min_by_key(|load| (load.sessions, load.consecutive_failures))
                .map(|load| load.engine.clone())
        };
        least(fresh).or_else(|| least(excluded))
    }

    /// A session was opened on `engine`.
    pub fn session_opened(&mut self, engine: &EngineAddr) {
        if let Some(load) = self.engines.get_mut(engine) {
            load.sessions += 1;
            load.consecutive_failures = 0;
            load.resting_until = None;
        }
    }

    /// A session on `engine` was stopped.
    pub fn session_closed(&mut self, engine: &EngineAddr) {
        if let Some(load) = self.engines.get_mut(engine) {
            load.sessions = load.sessions.saturating_sub(1);
        }
    }

    /// A request to `engine` failed; repeated failures rest it for the cooldown.
    pub fn failed(&mut self, now: Instant, engine: &EngineAddr) {
        if let Some(load) = self.engines.get_mut(engine) {
            load.consecutive_failures = load.consecutive_failures.saturating_add(1);
            if load.consecutive_failures >= FAILURES_BEFORE_COOLDOWN {
                load.resting_until = Some(now + self.cooldown);
            }
        }
    }

    /// Every configured engine and its load, ordered by address.
    pub fn loads(&self) -> impl Iterator<Item = &EngineLoad> {
        self.engines.values()
    }

    /// Whether no engine is configured.
    pub fn is_empty(&self) -> bool {
        self.engines.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addr(port: u16) -> EngineAddr {
        EngineAddr {
            host: "127.0.0.1".into(),
            port,
        }
    }

    fn pool() -> EnginePool {
        EnginePool::new([addr(1), addr(2)], 2, Duration::from_secs(5))
    }

    #[test]
    fn least_loaded_engine_is_picked() {
        let mut pool = pool();
        assert_eq!(pool.pick(Instant::ZERO, &[]), Some(addr(1)));
        pool.session_opened(&addr(1));
        assert_eq!(pool.pick(Instant::ZERO, &[]), Some(addr(2)));
    }

    #[test]
    fn engines_at_their_limit_are_skipped() {
        let mut pool = pool();
        for _ in 0..2 {
            pool.session_opened(&addr(1));
            pool.session_opened(&addr(2));
        }
        assert_eq!(pool.pick(Instant::ZERO, &[]), None);
        pool.session_closed(&addr(2));
        assert_eq!(pool.pick(Instant::ZERO, &[]), Some(addr(2)));
    }

    #[test]
    fn excluded_engines_are_a_last_resort() {
        let pool = pool();
        assert_eq!(pool.pick(Instant::ZERO, &[addr(1)]), Some(addr(2)));
        assert_eq!(pool.pick(Instant::ZERO, &[addr(1), addr(2)]), Some(addr(1)));
    }

    #[test]
    fn repeatedly_failing_engines_rest_for_the_cooldown() {
        let mut pool = pool();
        let now = Instant::from_micros(1_000_000);
        pool.failed(now, &addr(1));
        assert_eq!(
            pool.pick(now, &[addr(2)]),
            Some(addr(1)),
            "one failure does not rest it"
        );
        pool.failed(now, &addr(1));
        assert_eq!(pool.pick(now, &[]), Some(addr(2)));
        assert_eq!(pool.pick(now, &[addr(2)]), Some(addr(2)));
        let later = now + Duration::from_secs(5);
        assert_eq!(pool.pick(later, &[addr(2)]), Some(addr(1)));
    }
}
