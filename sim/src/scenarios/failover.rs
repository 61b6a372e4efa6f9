//! The engine serving a channel crashes or is cut off mid-stream: viewers stay
//! connected and resume from the other engine; events stay paired.

use std::time::Duration;

use crate::world::{Failure, Fault, Outcome, World, WorldConfig, GLUETUN_BASE_PORT};

use super::{health_probe, secs, ts_reader};

/// The engine death scenario.
pub fn engine_death_failover(seed: u64) -> Result<Outcome, Failure> {
    let config = WorldConfig::new("engine_death_failover", seed, 2);
    let start_bound = config.proxy.channel.start_timeout + secs(5);
    let mut world = World::build(config);
    let watch = secs(80);
    let mut viewers = Vec::new();
    for id in 0..3u64 {
        viewers.push(ts_reader(
            &format!("v{id}"),
            id + 1,
            secs(1 + id),
            "failover",
            watch,
            start_bound,
        ));
    }
    world.players(viewers);
    world.players(vec![health_probe(
        "health",
        secs(85),
        Duration::from_secs(1),
    )]);
    let death_at = world.random_duration(secs(15), secs(30));
    world.run_until(death_at)?;
    // The engine that serves the channel now.
    let events = world.events();
    let Some(serving) = events.last().map(|event| event.stream.engine.port) else {
        return Err(world.fail("the channel never started".into()));
    };
    let engine = format!("engine{}", serving - GLUETUN_BASE_PORT + 1);
    let crash = world.random_below(2) == 0;
    let now = world.elapsed();
    if crash {
        world.at(now, Fault::Crash(engine.clone()));
    } else {
        // Cut off, then back within acemux's stop retries: the old session must end.
        let cut_for = world.random_duration(secs(5), secs(25));
        world.at(now, Fault::Partition("gluetun", engine.clone()));
        world.at(now + cut_for, Fault::Repair("gluetun", engine.clone()));
    }
    world.run_until(secs(90))?;
    {
        let record = world.observer.lock();
        for id in 1..=3u64 {
            let requests = record
                .requests
                .iter()
                .filter(|request| request.player == format!("v{}", id - 1))
                .count();
            let viewer = record.ts_viewers.get(&(id * 1000));
            let kept = viewer.is_some_and(|viewer| !viewer.ended);
            if requests != 1 || !kept {
                return Err(world.fail(format!(
                    "viewer v{} did not stay connected through the loss of {engine} ({requests} requests)",
                    id - 1
                )));
            }
        }
    }
    let how = if crash { "crash" } else { "partition" };
    let mut outcome = world.heal_then_converge(secs(90))?;
    outcome
        .summary
        .push_str(&format!(", {engine} lost by {how}"));
    Ok(outcome)
}
