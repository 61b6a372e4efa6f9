//! acemux itself is killed mid-stream (twice), its disk slow or failing around the
//! first crash, and started again on the same durable state (the event store keeps exactly what it
//! acknowledged, and loses what it did not): the streams it proxied end
//! once (reason `restarted`) and their engine sessions are stopped, pending webhook
//! deliveries resume, and viewers that come back get a new channel. Requests that were
//! cut by the crash, or reached no listener while acemux was down, are excused; every
//! other invariant holds throughout.

use std::time::Duration;

use acemux::store::StoreFaults;

use crate::world::{Failure, Fault, Outcome, World, WorldConfig};

use super::{disk_trouble, health_probe, hls_poller, secs, ts_reader};

/// The acemux restart scenario.
pub fn acemux_restart(seed: u64) -> Result<Outcome, Failure> {
    let config = WorldConfig::new("acemux_restart", seed, 2);
    let start_bound = config.proxy.channel.start_timeout + secs(5);
    let window = config.proxy.hls.window_segments;
    let mut world = World::build(config);
    let watch = secs(70);
    world.players(vec![
        ts_reader("tv0", 1, secs(1), "restart-a", watch, start_bound),
        ts_reader("tv1", 2, secs(2), "restart-b", watch, start_bound),
    ]);
    world.players(vec![hls_poller(
        "phone",
        3,
        secs(3),
        "restart-h",
        watch,
        start_bound,
        window,
    )]);
    world.players(vec![health_probe("health", secs(75), secs(2))]);
    let crash_at = world.random_duration(secs(12), secs(30));
    let down_for = world.random_duration(secs(1), secs(8));
    world.at(crash_at, Fault::Crash("acemux".into()));
    world.at(crash_at + down_for, Fault::Restart("acemux".into()));
    // Killed again once it runs: the second start restores a log that already holds
    // the first start's ends.
    let second_crash_at = crash_at + down_for + world.random_duration(secs(8), secs(15));
    let second_down_for = world.random_duration(secs(1), secs(4));
    world.at(second_crash_at, Fault::Crash("acemux".into()));
    world.at(
        second_crash_at + second_down_for,
        Fault::Restart("acemux".into()),
    );
    // The disk is slow or failing around the crash: commits are pending when the
    // process dies, and the restarted one starts on a store that is not yet healthy.
    let store_fault = disk_trouble(&mut world, Duration::from_millis(500), secs(6));
    let store_from = crash_at.saturating_sub(world.random_duration(secs(1), secs(8)));
    let store_until = crash_at + down_for + world.random_duration(secs(2), secs(10));
    world.at(store_from, Fault::Store(store_fault));
    world.at(store_until, Fault::Store(StoreFaults::default()));
    world.run_until(secs(80))?;
    let started_before_crash = world
        .events()
        .iter()
        .filter(|event| event.kind == acemux_core::lifecycle::EventKind::StreamStarted)
        .count();
    if started_before_crash < 2 {
        return Err(world.fail(format!(
            "expected the channels to start before and after the crash, {started_before_crash} starts"
        )));
    }
    let restarted = world
        .events()
        .iter()
        .filter(|event| {
            event.stream.end_reason == Some(acemux_core::lifecycle::EndReason::Restarted)
        })
        .count();
    let mut outcome = world.heal_then_converge(secs(90))?;
    outcome.summary.push_str(&format!(
        ", acemux down {down_for:?} from {crash_at:?} and {second_down_for:?} from {second_crash_at:?}, store {store_fault:?} from {store_from:?} to {store_until:?}, {restarted} streams ended as restarted, {} requests excused",
        world.excused_requests()
    ));
    Ok(outcome)
}
