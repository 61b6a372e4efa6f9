//! Many TS and HLS viewers join and leave; channels start and stop as the last
//! viewer leaves and a new one comes. Exactly one engine session per channel at a
//! time (the step invariants), exactly one stop per session (checked at the end).

use std::time::Duration;

use crate::world::{Failure, Outcome, World, WorldConfig};

use super::{health_probe, hls_poller, secs, ts_reader};

/// The viewer churn scenario.
pub fn viewer_churn(seed: u64) -> Result<Outcome, Failure> {
    let config = WorldConfig::new("viewer_churn", seed, 2);
    let window = config.proxy.hls.window_segments;
    let start_bound = config.proxy.channel.start_timeout + secs(5);
    let mut world = World::build(config);
    let ts_channels = ["churn-a", "churn-b", "churn-c"];
    let mut players = Vec::new();
    for id in 0..24u64 {
        let start = world.random_duration(secs(1), secs(60));
        let watch = world.random_duration(secs(1), secs(20));
        let channel = ts_channels[world.random_below(ts_channels.len() as u64) as usize];
        players.push(ts_reader(
            &format!("ts{id}"),
            id + 1,
            start,
            channel,
            watch,
            start_bound,
        ));
    }
    for id in 0..4u64 {
        let start = world.random_duration(secs(1), secs(50));
        let watch = world.random_duration(secs(5), secs(25));
        players.push(hls_poller(
            &format!("hls{id}"),
            100 + id,
            start,
            "churn-hls",
            watch,
            start_bound,
            window,
        ));
    }
    // Spread players over hosts as households would be.
    let hosts = 4;
    let mut per_host: Vec<Vec<_>> = vec![Vec::new(); hosts];
    for (index, player) in players.into_iter().enumerate() {
        per_host[index % hosts].push(player);
    }
    for group in per_host {
        world.players(group);
    }
    world.players(vec![health_probe(
        "health",
        secs(85),
        Duration::from_secs(1),
    )]);
    world.run_until(secs(90))?;
    let outcome = world.heal_then_converge(secs(60))?;
    every_session_stopped_once(&world)?;
    Ok(outcome)
}

/// Every engine session ended with exactly one stop command.
pub(crate) fn every_session_stopped_once(world: &World<'_>) -> Result<(), Failure> {
    for engine in &world.engines {
        for emulator in engine.emulators() {
            for (content_id, content) in emulator.stats().contents {
                for (session_id, session) in content.sessions {
                    if session.stop_commands != 1 {
                        return Err(world.fail(format!(
                            "{} session {session_id} of {content_id} got {} stop commands",
                            engine.name, session.stop_commands
                        )));
                    }
                }
            }
        }
    }
    Ok(())
}
