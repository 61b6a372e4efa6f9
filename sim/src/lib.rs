//! Deterministic simulation of acemux: the real `acemux` io code — server, proxy,
//! engine client, webhook outbox, engine emulator — running over a turmoil network,
//! with one seed driving the network's randomness, the workload and the faults.
//!
//! A world ([`World`]) holds acemux (with the in-memory event store), engine
//! emulators behind a "gluetun" relay, an external event receiver and players. The
//! invariants ([`invariants`]) run after every step; each scenario ends by healing
//! every fault and requiring a clean state within a step budget. A failure names
//! its seed and the command that replays it.

pub mod hosts;
pub mod instances;
pub mod invariants;
pub mod media_index;
pub mod naive;
pub mod net;
pub mod observe;
pub mod players;
pub mod redis;
pub mod relay;
pub mod runner;
pub mod scenarios;
pub mod trace;
pub mod world;

pub use net::{TurmoilListener, TurmoilNet};
pub use scenarios::{by_name, Scenario, SCENARIOS};
pub use world::{replay_command, Failure, Outcome, World, WorldConfig};

/// The seed from `SIM_SEED`, if set and a number.
pub fn env_seed() -> Option<u64> {
    std::env::var("SIM_SEED").ok()?.trim().parse().ok()
}
