//! Viewers that stop reading (small socket buffers): the others keep their rate,
//! the slow ones are dropped after the viewer stall timeout.

use std::time::Duration;

use crate::media_index::MediaIndex;
use crate::players::{Plan, Player};
use crate::world::{Failure, Outcome, World, WorldConfig};

use super::{health_probe, secs, ts_reader};

/// The slow viewers scenario.
pub fn slow_viewers(seed: u64) -> Result<Outcome, Failure> {
    let mut config = WorldConfig::new("slow_viewers", seed, 1);
    config.tcp_capacity = 8;
    config.proxy.fanout.viewer_stall_timeout = secs(5);
    let stall_timeout = config.proxy.fanout.viewer_stall_timeout;
    let start_bound = config.proxy.channel.start_timeout + secs(5);
    let mut world = World::build(config);
    let watch = secs(40);
    let mut steady = Vec::new();
    for id in 0..4u64 {
        steady.push(ts_reader(
            &format!("steady{id}"),
            id + 1,
            secs(1 + id),
            "slow-viewers",
            watch,
            start_bound,
        ));
    }
    world.players(steady);
    let mut stallers = Vec::new();
    let staller_count = 3u64;
    for id in 0..staller_count {
        let start = world.random_duration(secs(2), secs(10));
        let read_for = world.random_duration(secs(1), secs(8));
        stallers.push(Player {
            name: format!("staller{id}"),
            id: 10 + id,
            start_at: start,
            plan: Plan::TsStaller {
                content_id: "slow-viewers".into(),
                read_for,
                drop_within: stall_timeout + secs(5),
            },
            bound: start_bound,
            target: crate::players::ACEMUX.into(),
        });
    }
    world.players(stallers);
    world.players(vec![health_probe(
        "health",
        secs(50),
        Duration::from_secs(1),
    )]);
    // Step in slices: by each staller's deadline acemux must have dropped it.
    while world.elapsed() < secs(55) {
        let until = world.elapsed() + Duration::from_millis(100);
        world.run_until(until)?;
        let now = world.elapsed();
        let due = world
            .observer
            .lock()
            .stopped_reading
            .iter()
            .filter(|(_, deadline)| *deadline <= now)
            .count() as u64;
        let dropped = stalled_drops(&world);
        if dropped < due {
            return Err(world.fail(format!(
                "{due} viewers stopped reading long enough to be dropped, acemux dropped {dropped}"
            )));
        }
    }
    let bytes_per_second = MediaIndex::simulated().media().bitrate_bps() / 8;
    {
        let record = world.observer.lock();
        let stalled = record.stopped_reading.len() as u64;
        let steady: Vec<(String, u64)> = record
            .ts_viewers
            .values()
            .filter(|viewer| viewer.player.starts_with("steady"))
            .map(|viewer| (viewer.player.clone(), viewer.bytes))
            .collect();
        drop(record);
        let dropped = stalled_drops(&world);
        if stalled != staller_count || dropped != staller_count {
            return Err(world.fail(format!(
                "{stalled} of {staller_count} viewers stopped reading, {dropped} were dropped as stalled"
            )));
        }
        // Joining and the start burst aside, a steady viewer gets the media's rate.
        let floor = bytes_per_second * (watch.as_secs() - 10);
        for (player, bytes) in steady {
            if bytes < floor {
                return Err(world.fail(format!(
                    "{player} got {bytes} bytes in {watch:?}, less than the stream's rate allows ({floor})"
                )));
            }
        }
    }
    world.heal_then_converge(secs(60))
}

/// Viewers acemux dropped for not reading, from its metrics.
fn stalled_drops(world: &World<'_>) -> u64 {
    let metrics = world
        .metrics
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .clone();
    let Some(metrics) = metrics else { return 0 };
    // The process-wide count: per-channel series go when their channel ends, and the
    // channel ends once its last steady viewer is done.
    metrics
        .render()
        .lines()
        .filter(|line| {
            line.starts_with("acemux_limit_hits_total{")
                && line.contains("limit=\"viewer_stall_timeout\"")
        })
        .filter_map(|line| line.rsplit(' ').next()?.parse::<f64>().ok())
        .sum::<f64>() as u64
}
