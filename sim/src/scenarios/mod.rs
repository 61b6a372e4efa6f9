//! The named scenarios. Each takes a seed and runs one world to a clean end, or
//! returns the failure with its replay command.

mod churn;
mod cluster;
mod failover;
mod mixed;
mod orchestrator;
mod restart;
mod self_post;
mod slow_gluetun;
mod slow_viewers;
mod swarm;

use std::time::Duration;

use crate::players::{Plan, Player};
use crate::world::{Failure, Outcome};

pub use churn::viewer_churn;
pub use cluster::cluster;
pub use failover::engine_death_failover;
pub use mixed::mixed_players;
pub use orchestrator::orchestrator_churn;
pub use restart::acemux_restart;
pub use self_post::{naive_model_deadlocks, single_worker_self_post, NaiveSymptoms};
pub use slow_gluetun::slow_gluetun;
pub use slow_viewers::slow_viewers;
pub use swarm::swarm;

/// A scenario: a seed in, a clean run or a failure out.
pub type Scenario = fn(u64) -> Result<Outcome, Failure>;

/// Every scenario by name, in the order the runner cycles through them.
pub const SCENARIOS: &[(&str, Scenario)] = &[
    ("single_worker_self_post", single_worker_self_post),
    ("slow_gluetun", slow_gluetun),
    ("viewer_churn", viewer_churn),
    ("slow_viewers", slow_viewers),
    ("engine_death_failover", engine_death_failover),
    ("orchestrator_churn", orchestrator_churn),
    ("mixed_players", mixed_players),
    ("acemux_restart", acemux_restart),
    ("swarm", swarm),
    ("cluster", cluster),
];

/// The scenario named `name`.
pub fn by_name(name: &str) -> Option<Scenario> {
    SCENARIOS
        .iter()
        .find(|(known, _)| *known == name)
        .map(|(_, scenario)| *scenario)
}

/// A TS reader.
pub(crate) fn ts_reader(
    name: &str,
    id: u64,
    start_at: Duration,
    content_id: &str,
    watch: Duration,
    bound: Duration,
) -> Player {
    Player {
        name: name.to_owned(),
        id,
        start_at,
        plan: Plan::TsReader {
            content_id: content_id.to_owned(),
            watch,
        },
        bound,
        target: crate::players::ACEMUX.into(),
    }
}

/// An HLS poller (polls every second).
pub(crate) fn hls_poller(
    name: &str,
    id: u64,
    start_at: Duration,
    content_id: &str,
    watch: Duration,
    bound: Duration,
    window_segments: usize,
) -> Player {
    Player {
        name: name.to_owned(),
        id,
        start_at,
        plan: Plan::HlsPoller {
            content_id: content_id.to_owned(),
            watch,
            poll: Duration::from_secs(1),
            window_segments,
        },
        bound,
        target: crate::players::ACEMUX.into(),
    }
}

/// A `/health` prober.
pub(crate) fn health_probe(name: &str, watch: Duration, bound: Duration) -> Player {
    Player {
        name: name.to_owned(),
        id: 0,
        start_at: Duration::from_millis(500),
        plan: Plan::HealthProbe {
            watch,
            every: Duration::from_secs(1),
        },
        bound,
        target: crate::players::ACEMUX.into(),
    }
}

/// A disk in trouble, drawn: commits late by `low`..`high`, or (one time in two)
/// failing until the fault is cleared.
pub(crate) fn disk_trouble(
    world: &mut crate::world::World<'_>,
    low: Duration,
    high: Duration,
) -> acemux::store::StoreFaults {
    if world.random_below(2) == 0 {
        acemux::store::StoreFaults {
            commit_delay: world.random_duration(low, high),
            failing: false,
        }
    } else {
        acemux::store::StoreFaults {
            commit_delay: Duration::ZERO,
            failing: true,
        }
    }
}

/// Seconds, for readable schedules.
pub(crate) fn secs(seconds: u64) -> Duration {
    Duration::from_secs(seconds)
}
