//! Faults chosen by the seed (swarm testing): each seed draws which kinds of fault are
//! on, how often and how long each strikes, and acemux's timing knobs within their
//! documented ranges; players of both formats watch three channels meanwhile. A seed
//! that turns few faults on explores them deeply, one that turns many on explores
//! their mixtures. Every invariant holds throughout, scoped to each fault's hosts and
//! window where the fault makes a rule impossible (and counted).

use std::time::Duration;

use acemux::store::StoreFaults;
use acemux_testkit::emulator::Faults;

use crate::world::{Failure, Fault, Outcome, World, WorldConfig};

use super::{disk_trouble, health_probe, hls_poller, secs, ts_reader};

/// The channels the TS players watch.
const CONTENTS: [&str; 3] = ["swarm-a", "swarm-b", "swarm-c"];
/// A channel only the HLS player may watch.
const HLS_CONTENT: &str = "swarm-h";

/// A kind of fault the menu offers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    /// Slow link between the relay and an engine.
    EngineLatency,
    /// The relay stops forwarding.
    RelayStall,
    /// The relay and an engine cannot reach each other.
    EnginePartition,
    /// An engine crashes and comes back.
    EngineCrash,
    /// acemux is killed and started again.
    AcemuxCrash,
    /// Slow link to the players.
    PlayerLatency,
    /// The link to the players holds everything for a while (a stalled Wi-Fi).
    PlayerStall,
    /// Slow or cut link to the event receiver.
    ReceiverLink,
    /// The event receiver answers errors.
    ReceiverErrors,
    /// An emulator fault knob on one content.
    EngineKnob,
    /// acemux's event store commits slowly (beyond the commit timeout at times) or
    /// fails its commits.
    StoreFaults,
}

const MENU: [Kind; 11] = [
    Kind::EngineLatency,
    Kind::RelayStall,
    Kind::EnginePartition,
    Kind::EngineCrash,
    Kind::AcemuxCrash,
    Kind::PlayerLatency,
    Kind::PlayerStall,
    Kind::ReceiverLink,
    Kind::ReceiverErrors,
    Kind::EngineKnob,
    Kind::StoreFaults,
];

/// The swarm scenario.
pub fn swarm(seed: u64) -> Result<Outcome, Failure> {
    let mut config = WorldConfig::new("swarm", seed, 2);
    let mut knobs = acemux_core::rng::SeededRng::new(seed ^ 0x5ca1_ab1e);
    let mut between = |low: u64, high: u64| low + knobs.next_u64() % (high - low + 1);
    // acemux's knobs, within the ranges the documentation gives.
    config.proxy.engine_request_timeout = secs(between(5, 15));
    config.proxy.channel.upstream_stall_timeout = secs(between(5, 15));
    config.proxy.channel.idle_grace = secs(between(2, 10));
    config.proxy.fanout.viewer_stall_timeout = secs(between(5, 20));
    config.proxy.hls_stall_timeout = secs(between(10, 30));
    // Half the seeds keep a small webhook outbox: a receiver fault fills it, and the
    // oldest deliveries are given up (their events stay in the log).
    if between(0, 1) == 0 {
        config.delivery.max_pending = between(2, 6);
    }
    let knob_summary = format!(
        "request timeout {:?}, upstream stall {:?}, idle grace {:?}, viewer stall {:?}, outbox {}",
        config.proxy.engine_request_timeout,
        config.proxy.channel.upstream_stall_timeout,
        config.proxy.channel.idle_grace,
        config.proxy.fanout.viewer_stall_timeout,
        config.delivery.max_pending
    );
    let start_bound = config.proxy.channel.start_timeout + config.proxy.engine_request_timeout;
    let window = config.proxy.hls.window_segments;
    let mut world = World::build(config);

    let watch = secs(65);
    let mut players = Vec::new();
    for (index, content) in CONTENTS.iter().enumerate() {
        let index = index as u64;
        let start = world.random_duration(secs(1), secs(6));
        players.push(ts_reader(
            &format!("tv{index}"),
            index + 1,
            start,
            content,
            watch,
            start_bound,
        ));
        if world.random_below(2) == 0 {
            let start = world.random_duration(secs(1), secs(10));
            players.push(ts_reader(
                &format!("tv{index}b"),
                index + 10,
                start,
                content,
                watch - secs(10),
                start_bound,
            ));
        }
    }
    world.players(players);
    // The phone plays HLS cut from a TS channel: one of the TV channels (sharing its
    // engine session) or one of its own.
    let phone_content =
        [CONTENTS[0], CONTENTS[1], CONTENTS[2], HLS_CONTENT][world.random_below(4) as usize];
    world.players(vec![hls_poller(
        "phone",
        20,
        secs(2),
        phone_content,
        watch,
        start_bound,
        window,
    )]);
    world.players(vec![health_probe("health", secs(75), secs(2))]);

    // The menu: each kind is on with probability one half.
    let chosen: Vec<Kind> = MENU
        .into_iter()
        .filter(|_| world.random_below(2) == 0)
        .collect();
    for &kind in &chosen {
        let strikes = 1 + world.random_below(3);
        for _ in 0..strikes {
            let at = world.random_duration(secs(5), secs(55));
            let length = world.random_duration(secs(1), secs(15));
            schedule(&mut world, kind, at, length);
        }
    }
    world.run_until(secs(80))?;
    let mut outcome = world.heal_then_converge(secs(120))?;
    let names: Vec<String> = chosen.iter().map(|kind| format!("{kind:?}")).collect();
    outcome.summary.push_str(&format!(
        ", faults [{}], {knob_summary}, {} requests excused",
        names.join(" "),
        world.excused_requests()
    ));
    Ok(outcome)
}

/// Puts one strike of `kind` at `at`, lasting `length`, on the schedule.
fn schedule(world: &mut World<'_>, kind: Kind, at: Duration, length: Duration) {
    let engine = format!("engine{}", 1 + world.random_below(2));
    let end = at + length;
    match kind {
        Kind::EngineLatency => {
            let latency = world.random_duration(Duration::from_millis(100), secs(3));
            world.at(at, Fault::Latency("gluetun", engine.clone(), latency));
            world.at(
                end,
                Fault::Latency("gluetun", engine, Duration::from_millis(5)),
            );
        }
        Kind::RelayStall => {
            world.at(at, Fault::RelayStall(true));
            world.at(end, Fault::RelayStall(false));
        }
        Kind::EnginePartition => {
            world.at(at, Fault::Partition("gluetun", engine.clone()));
            world.at(end, Fault::Repair("gluetun", engine));
        }
        Kind::EngineCrash => {
            world.at(at, Fault::Crash(engine.clone()));
            world.at(end, Fault::Restart(engine));
        }
        Kind::AcemuxCrash => {
            let down = world.random_duration(secs(1), secs(6));
            world.at(at, Fault::Crash("acemux".into()));
            world.at(at + down, Fault::Restart("acemux".into()));
        }
        Kind::PlayerLatency => {
            let host = format!("players{}", 1 + world.random_below(2));
            let latency = world.random_duration(Duration::from_millis(50), secs(1));
            world.at(at, Fault::Latency("acemux", host.clone(), latency));
            world.at(
                end,
                Fault::Latency("acemux", host, Duration::from_millis(5)),
            );
        }
        Kind::PlayerStall => {
            let host = format!("players{}", 1 + world.random_below(2));
            world.at(at, Fault::Hold("acemux", host.clone()));
            world.at(end, Fault::Release("acemux", host));
        }
        Kind::ReceiverLink => {
            if world.random_below(2) == 0 {
                world.at(at, Fault::Partition("acemux", "receiver".into()));
                world.at(end, Fault::Repair("acemux", "receiver".into()));
            } else {
                let latency = world.random_duration(secs(1), secs(8));
                world.at(at, Fault::Latency("acemux", "receiver".into(), latency));
                world.at(
                    end,
                    Fault::Latency("acemux", "receiver".into(), Duration::from_millis(5)),
                );
            }
        }
        Kind::ReceiverErrors => {
            let status = [500, 503, 429, 400][world.random_below(4) as usize];
            world.at(at, Fault::ReceiverStatus(status));
            world.at(end, Fault::ReceiverStatus(200));
        }
        Kind::EngineKnob => {
            let content = [CONTENTS[0], CONTENTS[1], CONTENTS[2], HLS_CONTENT]
                [world.random_below(4) as usize]
                .to_owned();
            let faults = knob(world);
            world.at(
                at,
                Fault::EngineFaults(engine.clone(), content.clone(), Box::new(faults)),
            );
            world.at(end, Fault::ClearEngineFaults(engine, content));
        }
        Kind::StoreFaults => {
            // Commits up to beyond the 5 s commit timeout, or failing.
            let faults = disk_trouble(world, Duration::from_millis(100), secs(8));
            world.at(at, Fault::Store(faults));
            world.at(end, Fault::Store(StoreFaults::default()));
        }
    }
}

/// One emulator fault knob, with its parameter drawn.
fn knob(world: &mut World<'_>) -> Faults {
    let mut faults = Faults::default();
    match world.random_below(10) {
        0 => {
            faults.stall_after = Some(world.random_duration(secs(1), secs(6)));
            faults.stall_for = Some(world.random_duration(secs(1), secs(12)));
        }
        1 => faults.cut_after_bytes = Some(20_000 + world.random_below(200_000)),
        2 => faults.close_abruptly_after_bytes = Some(20_000 + world.random_below(200_000)),
        3 => faults.refuse = Some("content not available".into()),
        4 => faults.no_data = true,
        5 => faults.start_delay = Some(world.random_duration(secs(1), secs(8))),
        6 => {
            faults.playlist_delay = Some(world.random_duration(Duration::from_millis(200), secs(4)))
        }
        7 => {
            faults.segment_delay = Some(world.random_duration(Duration::from_millis(200), secs(4)))
        }
        8 => faults.sequence_jump_by = Some(2 + world.random_below(8)),
        _ => faults.zero_peers = true,
    }
    faults
}
