//! The VPN hop goes bad: latency between acemux and an engine above the read
//! timeout, windows where the relay forwards nothing, a partition then its repair.
//! Every player request is answered within its bound (media or a clear error),
//! `/health` stays fast, and a viewer arriving after the repair is served.

use std::time::Duration;

use crate::world::{Failure, Fault, Outcome, World, WorldConfig};

use super::{health_probe, hls_poller, secs, ts_reader};

/// The slow gluetun scenario.
pub fn slow_gluetun(seed: u64) -> Result<Outcome, Failure> {
    let config = WorldConfig::new("slow_gluetun", seed, 2);
    let window = config.proxy.hls.window_segments;
    let start_bound = config.proxy.channel.start_timeout + secs(5);
    let mut world = World::build(config);

    // Latency above the 10 s engine read timeout on one engine's link.
    let slow_at = world.random_duration(secs(10), secs(20));
    let slow_for = world.random_duration(secs(10), secs(25));
    let latency = world.random_duration(secs(11), secs(15));
    world.at(
        slow_at,
        Fault::Latency("gluetun", "engine1".into(), latency),
    );
    world.at(
        slow_at + slow_for,
        Fault::Latency("gluetun", "engine1".into(), Duration::from_millis(5)),
    );
    // A window where the relay forwards nothing at all.
    let stall_at = world.random_duration(secs(15), secs(40));
    let stall_for = world.random_duration(secs(3), secs(15));
    world.at(stall_at, Fault::RelayStall(true));
    world.at(stall_at + stall_for, Fault::RelayStall(false));
    // A partition of the other engine, then its repair.
    let cut_at = world.random_duration(secs(30), secs(50));
    let cut_for = world.random_duration(secs(5), secs(20));
    let repaired_at = cut_at + cut_for;
    world.at(cut_at, Fault::Partition("gluetun", "engine2".into()));
    world.at(repaired_at, Fault::Repair("gluetun", "engine2".into()));
    let last_fault_over = (slow_at + slow_for)
        .max(stall_at + stall_for)
        .max(repaired_at);

    let mut first = Vec::new();
    for id in 0..3u64 {
        first.push(ts_reader(
            &format!("a{id}"),
            id + 1,
            secs(1 + id),
            "slow-a",
            secs(70),
            start_bound,
        ));
    }
    for id in 0..2u64 {
        first.push(ts_reader(
            &format!("b{id}"),
            10 + id,
            secs(3 + id),
            "slow-b",
            secs(70),
            start_bound,
        ));
    }
    first.push(hls_poller(
        "h0",
        20,
        secs(2),
        "slow-hls",
        secs(70),
        start_bound,
        window,
    ));
    world.players(first);
    world.players(vec![health_probe(
        "health",
        secs(95),
        Duration::from_secs(1),
    )]);
    // Service must be back within a bound of the last repair.
    let recovery_bound = secs(30);
    let after = last_fault_over + secs(5);
    world.players(vec![ts_reader(
        "after-repair",
        30,
        after,
        "slow-after",
        secs(10),
        start_bound,
    )]);
    world.run_until(after + recovery_bound)?;
    {
        let record = world.observer.lock();
        let served = record
            .ts_viewers
            .values()
            .any(|viewer| viewer.player == "after-repair" && viewer.bytes > 0);
        drop(record);
        if !served {
            return Err(world.fail(format!(
                "a viewer arriving {:?} after the last repair got no media within {recovery_bound:?}",
                after - last_fault_over
            )));
        }
    }
    world.run_until(secs(100).max(after + recovery_bound))?;
    world.heal_then_converge(secs(90))
}
