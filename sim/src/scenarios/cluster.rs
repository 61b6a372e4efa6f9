//! Three acemux instances share their channels through Redis (cluster mode): TS
//! viewers of three channels are spread over the instances, so each channel is owned
//! by one instance and relayed by the others. Faults at seeded moments for seeded
//! lengths: an instance crashes and starts again, two instances cannot reach each
//! other, an instance cannot reach Redis, Redis restarts (empty). One engine session
//! per channel across the engines outside those faults' windows, every session
//! stopped, events paired in each instance's store and recorded by the owner only,
//! viewers on every instance served.

use std::time::Duration;

use crate::instances::{ClusterSetup, REDIS_HOST};
use crate::world::{Failure, Fault, Outcome, World, WorldConfig, ACEMUX_PORT};

use super::{health_probe, secs, ts_reader};

/// The instances' hosts.
const INSTANCES: [&str; 3] = ["acemux1", "acemux2", "acemux3"];
/// The channels.
const CONTENTS: [&str; 3] = ["cluster-a", "cluster-b", "cluster-c"];

/// The cluster scenario.
pub fn cluster(seed: u64) -> Result<Outcome, Failure> {
    let mut config = WorldConfig::new("cluster", seed, 2);
    config.cluster = Some(ClusterSetup::new(INSTANCES.len()));
    let start_bound = config.proxy.channel.start_timeout + secs(5);
    let mut world = World::build(config);
    let target = |instance: usize| format!("{}:{ACEMUX_PORT}", INSTANCES[instance]);

    // Each channel is watched on two instances from the start (the first to ask owns
    // it, the other relays), and joined on the third later, while faults strike.
    let mut viewers = Vec::new();
    let mut id = 0u64;
    for (index, content) in CONTENTS.iter().enumerate() {
        let first = (index + world.random_below(INSTANCES.len() as u64) as usize) % 3;
        let second = (first + 1 + world.random_below(2) as usize) % 3;
        let third = 3 - first - second;
        for (instance, from, watch) in [
            (first, secs(1), secs(85)),
            (second, secs(4), secs(80)),
            (third, secs(25), secs(50)),
        ] {
            id += 1;
            let start_at = from + world.random_duration(Duration::ZERO, secs(5));
            let mut viewer = ts_reader(
                &format!("tv{id}-{}", INSTANCES[instance]),
                id,
                start_at,
                content,
                watch,
                start_bound,
            );
            viewer.target = target(instance);
            viewers.push(viewer);
        }
    }
    world.players(viewers);
    let mut probe = health_probe("health", secs(90), secs(2));
    probe.target = target(world.random_below(3) as usize);
    world.players(vec![probe]);

    // An instance crashes, and starts again on its store.
    let crashed = INSTANCES[world.random_below(3) as usize];
    let crash_at = world.random_duration(secs(25), secs(50));
    let down_for = world.random_duration(secs(1), secs(10));
    world.at(crash_at, Fault::Crash(crashed.into()));
    world.at(crash_at + down_for, Fault::Restart(crashed.into()));
    // Two instances cannot reach each other.
    let a = world.random_below(3) as usize;
    let b = (a + 1 + world.random_below(2) as usize) % 3;
    let split_at = world.random_duration(secs(25), secs(65));
    let split_for = world.random_duration(secs(2), secs(15));
    world.at(
        split_at,
        Fault::Partition(INSTANCES[a], INSTANCES[b].into()),
    );
    world.at(
        split_at + split_for,
        Fault::Repair(INSTANCES[a], INSTANCES[b].into()),
    );
    // An instance cannot reach Redis.
    let cut = INSTANCES[world.random_below(3) as usize];
    let cut_at = world.random_duration(secs(25), secs(65));
    let cut_for = world.random_duration(secs(2), secs(15));
    world.at(cut_at, Fault::Partition(cut, REDIS_HOST.into()));
    world.at(cut_at + cut_for, Fault::Repair(cut, REDIS_HOST.into()));
    // Redis restarts without persistence: it comes back empty.
    let redis_at = world.random_duration(secs(25), secs(65));
    let redis_down = world.random_duration(Duration::from_millis(500), secs(5));
    world.at(redis_at, Fault::Crash(REDIS_HOST.into()));
    world.at(redis_at + redis_down, Fault::Restart(REDIS_HOST.into()));

    world.run_until(secs(95))?;
    // Every fault is over by 80 s: the directory lists every instance, each with the
    // channels it owns.
    if let Err(message) = check_directory(&world) {
        return Err(world.fail(message));
    }
    let redis_commands = world.redis.as_ref().map_or(0, |redis| redis.commands());
    let started: Vec<usize> = world
        .instances
        .iter()
        .map(|instance| {
            instance
                .events()
                .iter()
                .filter(|event| event.kind == acemux_core::lifecycle::EventKind::StreamStarted)
                .count()
        })
        .collect();
    let mut outcome = world.heal_then_converge(secs(90))?;
    outcome.summary.push_str(&format!(
        ", streams started per instance {started:?}, {crashed} down {down_for:?} from {crash_at:?}, {}-{} cut {split_for:?} from {split_at:?}, {cut}-redis cut {cut_for:?} from {cut_at:?}, redis down {redis_down:?} from {redis_at:?} ({redis_commands} commands since), {} requests excused",
        INSTANCES[a],
        INSTANCES[b],
        world.excused_requests()
    ));
    Ok(outcome)
}

/// The cluster's directory in Redis lists every instance, and each instance's record
/// names only streams that instance started.
fn check_directory(world: &World<'_>) -> Result<(), String> {
    use acemux_core::cluster::directory::{decode_list, InstanceRecord};
    let keys: std::collections::BTreeMap<String, String> = world
        .redis
        .as_ref()
        .map(|redis| redis.keys().into_iter().collect())
        .unwrap_or_default();
    let listed = keys
        .get("acemux:instances")
        .map(|value| decode_list(value))
        .unwrap_or_default();
    for (index, host) in INSTANCES.iter().enumerate() {
        if !listed.iter().any(|id| id == host) {
            return Err(format!(
                "the directory does not list {host} 15 s after the last fault: {listed:?}"
            ));
        }
        let record = keys
            .get(&format!("acemux:instance:{host}"))
            .and_then(|value| InstanceRecord::decode(value))
            .ok_or_else(|| format!("no readable directory record of {host}"))?;
        let started: std::collections::BTreeSet<String> = world.instances[index]
            .events()
            .iter()
            .filter(|event| event.kind == acemux_core::lifecycle::EventKind::StreamStarted)
            .map(|event| event.stream.id.clone())
            .collect();
        if let Some(foreign) = record
            .channels
            .iter()
            .find(|channel| !started.contains(&channel.stream_id))
        {
            return Err(format!(
                "{host}'s directory record names stream {} it never started",
                foreign.stream_id
            ));
        }
    }
    Ok(())
}
