//! Many TS and HLS viewers join and leave; channels start and stop as the last
//! viewer leaves and a new one comes, and as an operator deletes running streams
//! (`DELETE /streams/{id}`) at seeded moments while viewers keep joining, so TS
//! channels flap. Exactly one engine session per channel at a time (the step
//! invariants), exactly one stop per session, and every stream the operator ended
//! has its `stream_ended` with the delete's reason (checked at the end).

use std::time::Duration;

use acemux::store::{EventQuery, EventStore};
use acemux_core::lifecycle::{EndReason, EventKind};
use futures::FutureExt;

use crate::players::{Plan, Player, DELETE_REASON};
use crate::world::{Failure, Outcome, World, WorldConfig};

use super::{health_probe, hls_poller, secs, ts_reader};

/// How many times the operator stops a running stream.
const OPERATOR_STOPS: u64 = 6;

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
    let operator = operator(&mut world, &ts_channels, start_bound);
    world.players(vec![
        health_probe("health", secs(85), Duration::from_secs(1)),
        operator,
    ]);
    world.run_until(secs(90))?;
    let outcome = world.heal_then_converge(secs(60))?;
    every_session_stopped_once(&world)?;
    deleted_streams_ended_by_delete(&world)?;
    Ok(outcome)
}

/// The operator: stops a running TS channel at seeded moments while viewers come.
/// (HLS pollers keep one window's sequence numbers; a restart under them is another
/// scenario's matter.)
fn operator(world: &mut World<'_>, channels: &[&str], bound: Duration) -> Player {
    let mut moments: Vec<Duration> = (0..OPERATOR_STOPS)
        .map(|_| world.random_duration(secs(5), secs(70)))
        .collect();
    moments.sort();
    Player {
        name: "operator".into(),
        id: 0,
        start_at: Duration::ZERO,
        plan: Plan::Operator {
            moments,
            channels: channels.iter().map(|channel| channel.to_string()).collect(),
            until: secs(80),
        },
        bound,
        target: crate::players::ACEMUX.into(),
    }
}

/// Every stream the operator's DELETE ended has exactly one `stream_ended`, with the
/// delete's reason; every `stream_ended` with that reason came from an answered
/// DELETE; and the operator did end streams (the flapping happened).
fn deleted_streams_ended_by_delete(world: &World<'_>) -> Result<(), Failure> {
    let deleted = world.observer.lock().deleted_streams.clone();
    if deleted.is_empty() {
        return Err(world.fail("the operator ended no stream".into()));
    }
    let query = EventQuery {
        after: 0,
        limit: 100_000,
        stream_id: None,
    };
    let events = match world.store.events(query).now_or_never() {
        Some(Ok(events)) => events,
        other => return Err(world.fail(format!("the event log cannot be read: {other:?}"))),
    };
    let ended: Vec<_> = events
        .iter()
        .filter(|event| event.kind == EventKind::StreamEnded)
        .collect();
    for stream_id in &deleted {
        let reasons: Vec<_> = ended
            .iter()
            .filter(|event| &event.stream.id == stream_id)
            .map(|event| event.stream.end_reason.clone())
            .collect();
        if reasons != [Some(EndReason::Deleted)] {
            return Err(world.fail(format!(
                "stream {stream_id} deleted, its stream_ended reasons: {reasons:?}"
            )));
        }
    }
    let by_delete = ended
        .iter()
        .filter(|event| event.stream.end_reason == Some(EndReason::Deleted))
        .count();
    if by_delete != deleted.len() {
        return Err(world.fail(format!(
            "{by_delete} streams ended with reason {DELETE_REASON:?}, the operator ended {}",
            deleted.len()
        )));
    }
    Ok(())
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
