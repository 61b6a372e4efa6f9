//! Engine selection: healthy, listed, not draining, below the per-engine limit, least
//! loaded. Engines come from the command line (`--engine`) and from lists that change
//! (an orchestrator's engine list): an engine that leaves every list gets no new
//! sessions, but stays in the pool, with its load, until its last session is closed,
//! so a glitch in a list moves nobody.

use std::collections::BTreeMap;

use super::discovery::ListedEngine;
use super::health::Health;
use crate::lifecycle::EngineAddr;
use crate::time::{Duration, Instant};

/// Consecutive failures after which an engine is rested.
const FAILURES_BEFORE_COOLDOWN: u32 = 2;

/// The list name of the engines given on the command line.
pub const FLAG_LIST: &str = "flag";

/// How the pool learned of an engine.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum EngineSource {
    /// `--engine host:port`.
    Flag,
    /// A DNS name given with `--engine`, one engine per address.
    Dns,
    /// An orchestrator's engine list (`--engines-from`).
    Orchestrator,
}

impl EngineSource {
    /// The wire name, as `GET /engines` shows it.
    pub fn as_str(self) -> &'static str {
        match self {
            EngineSource::Flag => "flag",
            EngineSource::Dns => "dns",
            EngineSource::Orchestrator => "orchestrator",
        }
    }
}

/// One list's entry for an engine.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Listing {
    /// What kind of list it is.
    pub source: EngineSource,
    /// The container id the list gives.
    pub container_id: Option<String>,
    /// The list marks it draining: no new sessions.
    pub draining: bool,
}

/// What the pool knows about one engine.
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
    /// The lists that name it now, by list name ([`FLAG_LIST`], or a list's URL).
    /// None: it left every list and only waits for its sessions to close.
    pub listings: BTreeMap<String, Listing>,
    /// What its version API probes say.
    pub health: Health,
}

impl EngineLoad {
    /// Listed somewhere, and drained by no list: it may get new sessions.
    pub fn is_offered(&self) -> bool {
        !self.listings.is_empty() && !self.listings.values().any(|listing| listing.draining)
    }

    /// The container id a list gives, if any.
    pub fn container_id(&self) -> Option<&str> {
        self.listings
            .values()
            .find_map(|listing| listing.container_id.as_deref())
    }

    /// The first source that lists it (flags before DNS before orchestrators).
    pub fn source(&self) -> Option<EngineSource> {
        self.listings.values().map(|listing| listing.source).min()
    }
}

/// The known engines and their load. Shared by all channels; pure data.
#[derive(Clone, Debug)]
pub struct EnginePool {
    engines: BTreeMap<EngineAddr, EngineLoad>,
    max_sessions_per_engine: usize,
    cooldown: Duration,
    /// Engines' version APIs are probed: a health state can come back up.
    probing: bool,
}

impl EnginePool {
    /// A pool of the command line's `engines`, each taking at most
    /// `max_sessions_per_engine` sessions; an engine that fails repeatedly is rested
    /// for `cooldown`.
    pub fn new(
        engines: impl IntoIterator<Item = EngineAddr>,
        max_sessions_per_engine: usize,
        cooldown: Duration,
    ) -> Self {
        let mut pool = EnginePool {
            engines: BTreeMap::new(),
            max_sessions_per_engine,
            cooldown,
            probing: false,
        };
        let listed: Vec<ListedEngine> = engines.into_iter().map(ListedEngine::from).collect();
        pool.set_list(FLAG_LIST, EngineSource::Flag, &listed);
        pool
    }

    /// Replaces what the list `name` (of kind `source`) names: engines new to the pool
    /// join it; engines it no longer names lose this listing, and leave the pool once
    /// no list names them and their last session is closed.
    pub fn set_list(&mut self, name: &str, source: EngineSource, engines: &[ListedEngine]) {
        for load in self.engines.values_mut() {
            load.listings.remove(name);
        }
        for listed in engines {
            let load = self
                .engines
                .entry(listed.engine.clone())
                .or_insert_with(|| EngineLoad {
                    engine: listed.engine.clone(),
                    sessions: 0,
                    consecutive_failures: 0,
                    resting_until: None,
                    listings: BTreeMap::new(),
                    health: Health::new(),
                });
            load.listings.insert(
                name.to_owned(),
                Listing {
                    source,
                    container_id: listed.container_id.clone(),
                    draining: listed.draining,
                },
            );
        }
        self.engines
            .retain(|_, load| !load.listings.is_empty() || load.sessions > 0);
    }

    /// The engine for a new session: among engines that are offered, healthy and below
    /// the limit, the least loaded one not in `exclude`; failing that, the least loaded
    /// excluded one (a retry on the same engine beats no engine). Ties go to the lowest
    /// address.
    pub fn pick(&self, now: Instant, exclude: &[EngineAddr]) -> Option<EngineAddr> {
        self.candidates(now, exclude).into_iter().next()
    }

    /// Every engine that could take a new session, best first in [`pick`](Self::pick)'s
    /// order: usable engines not in `exclude` by load, then the excluded ones by load.
    /// Cluster mode tries them in turn for a slot free cluster-wide.
    pub fn candidates(&self, now: Instant, exclude: &[EngineAddr]) -> Vec<EngineAddr> {
        let usable = self.engines.values().filter(|load| {
            load.is_offered()
                && load.health.usable()
                && load.sessions < self.max_sessions_per_engine
                && load.resting_until.is_none_or(|until| until <= now)
        });
        let (mut fresh, mut excluded): (Vec<&EngineLoad>, Vec<&EngineLoad>) =
            usable.partition(|load| !exclude.contains(&load.engine));
        // Stable: ties keep the address order.
        fresh.sort_by_key(|load| (load.sessions, load.consecutive_failures));
        excluded.sort_by_key(|load| (load.sessions, load.consecutive_failures));
        fresh
            .into_iter()
            .chain(excluded)
            .map(|load| load.engine.clone())
            .collect()
    }

    /// A session was opened on `engine`.
    pub fn session_opened(&mut self, engine: &EngineAddr) {
        if let Some(load) = self.engines.get_mut(engine) {
            load.sessions += 1;
            load.consecutive_failures = 0;
            load.resting_until = None;
        }
    }

    /// A session on `engine` was stopped; an engine no list names leaves with its last.
    pub fn session_closed(&mut self, engine: &EngineAddr) {
        if let Some(load) = self.engines.get_mut(engine) {
            load.sessions = load.sessions.saturating_sub(1);
            if load.sessions == 0 && load.listings.is_empty() {
                self.engines.remove(engine);
            }
        }
    }

    /// Engines are probed from now on (see [`failed`](Self::failed)).
    pub fn set_probing(&mut self, probing: bool) {
        self.probing = probing;
    }

    /// A request to `engine` failed; repeated failures rest it for the cooldown. One
    /// that found it `unreachable`, while engines are probed, also marks it down until
    /// a probe answers (probed again at the next round); returns its health before
    /// when that changed it.
    pub fn failed(
        &mut self,
        now: Instant,
        engine: &EngineAddr,
        unreachable: bool,
    ) -> Option<super::health::HealthState> {
        let load = self.engines.get_mut(engine)?;
        load.consecutive_failures = load.consecutive_failures.saturating_add(1);
        if load.consecutive_failures >= FAILURES_BEFORE_COOLDOWN {
            load.resting_until = Some(now + self.cooldown);
        }
        if !(unreachable && self.probing) {
            return None;
        }
        let before = load.health.state;
        load.health.request_failed(now);
        (load.health.state != before).then_some(before)
    }

    /// Every engine and its load, ordered by address.
    pub fn loads(&self) -> impl Iterator<Item = &EngineLoad> {
        self.engines.values()
    }

    /// Hands out the version probes due at `now` (of listed engines; one in flight per
    /// engine), and when the next one is due.
    pub fn take_due_probes(&mut self, now: Instant) -> (Vec<EngineAddr>, Option<Instant>) {
        let mut due = Vec::new();
        for load in self.engines.values_mut() {
            if !load.listings.is_empty() && load.health.take_due(now) {
                due.push(load.engine.clone());
            }
        }
        let next = self
            .engines
            .values()
            .filter(|load| !load.listings.is_empty())
            .filter_map(|load| load.health.due_at())
            .min();
        (due, next)
    }

    /// A version probe of `engine` was answered (`up`) or failed; probes come every
    /// `interval`, later after failures. The health before, when it changed.
    pub fn probed(
        &mut self,
        now: Instant,
        engine: &EngineAddr,
        up: bool,
        interval: Duration,
    ) -> Option<super::health::HealthState> {
        let load = self.engines.get_mut(engine)?;
        let before = load.health.state;
        load.health.probed(now, up, interval);
        (load.health.state != before).then_some(before)
    }

    /// Whether `engine` is in the pool (listed, or still serving sessions).
    pub fn contains(&self, engine: &EngineAddr) -> bool {
        self.engines.contains_key(engine)
    }

    /// Whether the pool holds no engine.
    pub fn is_empty(&self) -> bool {
        self.engines.is_empty()
    }

    /// The most sessions an engine takes.
    pub fn max_sessions_per_engine(&self) -> usize {
        self.max_sessions_per_engine
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
        pool.failed(now, &addr(1), false);
        assert_eq!(
            pool.pick(now, &[addr(2)]),
            Some(addr(1)),
            "one failure does not rest it"
        );
        pool.failed(now, &addr(1), false);
        assert_eq!(pool.pick(now, &[]), Some(addr(2)));
        assert_eq!(pool.pick(now, &[addr(2)]), Some(addr(2)));
        let later = now + Duration::from_secs(5);
        assert_eq!(pool.pick(later, &[addr(2)]), Some(addr(1)));
    }

    #[test]
    fn an_unreachable_engine_is_down_until_a_probe_answers_while_probing() {
        let mut pool = pool();
        let now = Instant::from_micros(1_000_000);
        let interval = Duration::from_secs(10);
        // Without probes nothing would bring it back: only the cooldown applies.
        assert_eq!(pool.failed(now, &addr(1), true), None);
        assert_eq!(pool.pick(now, &[addr(2)]), Some(addr(1)));
        pool.session_opened(&addr(1));
        pool.session_closed(&addr(1));

        pool.set_probing(true);
        // A refusal (unknown content) says nothing about the engine's health.
        assert_eq!(pool.failed(now, &addr(1), false), None);
        assert_eq!(pool.pick(now, &[addr(2)]), Some(addr(1)));
        assert_eq!(
            pool.failed(now, &addr(1), true),
            Some(crate::channel::HealthState::Unknown)
        );
        assert_eq!(
            pool.pick(now, &[addr(2)]),
            Some(addr(2)),
            "down: not even as a last resort"
        );
        // Probed at the next round, and back once its probe answers.
        let (due, _) = pool.take_due_probes(now);
        assert!(due.contains(&addr(1)));
        let later = now + Duration::from_secs(20);
        assert_eq!(
            pool.probed(later, &addr(1), true, interval),
            Some(crate::channel::HealthState::Down)
        );
        assert_eq!(pool.pick(later, &[addr(2)]), Some(addr(1)));
    }

    fn listed(port: u16, draining: bool) -> ListedEngine {
        ListedEngine {
            engine: addr(port),
            container_id: Some(format!("c{port}")),
            draining,
        }
    }

    #[test]
    fn listed_engines_join_and_leave_once_their_sessions_close() {
        let mut pool = EnginePool::new([], 2, Duration::from_secs(5));
        assert_eq!(pool.pick(Instant::ZERO, &[]), None);
        let list = "http://orchestrator/engines";
        pool.set_list(
            list,
            EngineSource::Orchestrator,
            &[listed(7, false), listed(8, false)],
        );
        assert_eq!(pool.pick(Instant::ZERO, &[]), Some(addr(7)));
        pool.session_opened(&addr(7));
        let seven = pool.loads().next().expect("listed").clone();
        assert_eq!(seven.container_id(), Some("c7"));
        assert_eq!(seven.source(), Some(EngineSource::Orchestrator));
        // 7 leaves the list: no new sessions, but its session is still counted.
        pool.set_list(list, EngineSource::Orchestrator, &[listed(8, false)]);
        assert!(pool.contains(&addr(7)));
        assert_eq!(pool.pick(Instant::ZERO, &[addr(8)]), Some(addr(8)));
        pool.session_closed(&addr(7));
        assert!(!pool.contains(&addr(7)), "gone with its last session");
        // An unlisted engine without sessions goes at once.
        pool.set_list(list, EngineSource::Orchestrator, &[]);
        assert!(pool.is_empty());
    }

    #[test]
    fn engines_that_fail_their_probe_get_no_new_sessions() {
        let mut pool = pool();
        let interval = Duration::from_secs(10);
        let (due, next) = pool.take_due_probes(Instant::ZERO);
        assert_eq!(due, vec![addr(1), addr(2)]);
        assert_eq!(next, None, "both in flight");
        assert_eq!(
            pool.probed(Instant::ZERO, &addr(1), false, interval),
            Some(super::super::health::HealthState::Unknown)
        );
        assert_eq!(
            pool.probed(Instant::ZERO, &addr(2), true, interval),
            Some(super::super::health::HealthState::Unknown)
        );
        assert_eq!(pool.pick(Instant::ZERO, &[]), Some(addr(2)));
        assert_eq!(
            pool.pick(Instant::ZERO, &[addr(2)]),
            Some(addr(2)),
            "1 is down"
        );
        let later = Instant::ZERO + interval;
        let (due, _) = pool.take_due_probes(later);
        assert_eq!(due, vec![addr(1), addr(2)]);
        assert_eq!(
            pool.probed(later, &addr(1), true, interval),
            Some(super::super::health::HealthState::Down)
        );
        assert_eq!(pool.pick(later, &[addr(2)]), Some(addr(1)));
    }

    #[test]
    fn draining_engines_get_no_new_sessions_and_flags_stay() {
        let mut pool = pool();
        let list = "http://orchestrator/api/v1/engines";
        pool.set_list(
            list,
            EngineSource::Orchestrator,
            &[listed(1, true), listed(3, false)],
        );
        // 1 is on the command line too, but a list drains it.
        assert_eq!(pool.pick(Instant::ZERO, &[addr(2), addr(3)]), Some(addr(2)));
        pool.set_list(list, EngineSource::Orchestrator, &[]);
        assert_eq!(
            pool.pick(Instant::ZERO, &[]),
            Some(addr(1)),
            "the flag keeps it"
        );
        let sources: Vec<_> = pool.loads().map(EngineLoad::source).collect();
        assert_eq!(sources, vec![Some(EngineSource::Flag); 2]);
    }
}
