//! A household and a bar: TV apps read a content's MPEG-TS while phones play the same
//! content's HLS (`--hls-source ts`), coming and going. One engine session serves
//! both kinds of players of a content; the engine only ever sees TS session requests;
//! a playback that the engine drops mid-stream is reopened in the same session and
//! shows up to the HLS players as a discontinuity, with sequences that never go back.

use std::time::Duration;

use acemux::proxy::HlsSource;
use acemux_core::lifecycle::EventKind;
use acemux_testkit::emulator::Faults;

use crate::world::{Failure, Outcome, World, WorldConfig};

use super::churn::every_session_stopped_once;
use super::{health_probe, hls_poller, secs, ts_reader};

/// The content both kinds of players watch the whole time.
const HOUSEHOLD: &str = "mixed-household";
/// The content players come and go on.
const BAR: &str = "mixed-bar";

/// The mixed players scenario.
pub fn mixed_players(seed: u64) -> Result<Outcome, Failure> {
    let mut config = WorldConfig::new("mixed_players", seed, 2);
    config.proxy.hls_source = HlsSource::Ts;
    config.proxy.hls_segment_target = secs(2);
    // The household's playback drops after about 25 s of media; its TS viewers then
    // resume at a new entry point.
    let cut_after = crate::media_index::MediaIndex::simulated()
        .media()
        .bitrate_bps()
        / 8
        * 25;
    config.engine_faults.insert(
        HOUSEHOLD.into(),
        Faults {
            close_abruptly_after_bytes: Some(cut_after),
            ..Faults::default()
        },
    );
    let window = config.proxy.hls.window_segments;
    let bound = config.proxy.channel.start_timeout + secs(5);
    let mut world = World::build(config);

    // The household: the TV from the start, a phone soon after, both to the end;
    // a second TV and phone for a while.
    let phone_at = world.random_duration(secs(2), secs(8));
    let tv2_at = world.random_duration(secs(15), secs(35));
    let phone2_at = world.random_duration(secs(15), secs(35));
    let mut household = vec![
        ts_reader("tv", 1, secs(1), HOUSEHOLD, secs(70), bound),
        hls_poller("phone", 101, phone_at, HOUSEHOLD, secs(60), bound, window),
        ts_reader("tv2", 2, tv2_at, HOUSEHOLD, secs(15), bound),
        hls_poller("phone2", 102, phone2_at, HOUSEHOLD, secs(15), bound, window),
    ];
    // The bar: players of both kinds come and go; the channel may stop and start.
    let mut bar = Vec::new();
    for id in 0..6u64 {
        let start = world.random_duration(secs(1), secs(55));
        let watch = world.random_duration(secs(3), secs(20));
        let name = format!("bar{id}");
        bar.push(if world.random_below(2) == 0 {
            ts_reader(&name, 10 + id, start, BAR, watch, bound)
        } else {
            hls_poller(&name, 110 + id, start, BAR, watch, bound, window)
        });
    }
    household.push(health_probe("health", secs(80), Duration::from_secs(1)));
    world.players(household);
    world.players(bar);
    world.run_until(secs(80))?;
    let outcome = world.heal_then_converge(secs(60))?;
    only_ts_sessions_requested(&world)?;
    household_had_one_session(&world)?;
    phone_saw_the_reconnect(&world)?;
    every_session_stopped_once(&world)?;
    Ok(outcome)
}

/// The engines got session requests for TS only: HLS players never cost a session.
fn only_ts_sessions_requested(world: &World<'_>) -> Result<(), Failure> {
    for engine in &world.engines {
        for emulator in engine.emulators() {
            if let Some(request) = emulator
                .requests()
                .into_iter()
                .find(|request| request.route != "getstream")
            {
                return Err(world.fail(format!(
                    "{} got a {} session request for {:?}",
                    engine.name, request.route, request.source
                )));
            }
        }
    }
    Ok(())
}

/// The household's TS and HLS players overlapped the whole time: one session, one
/// `stream_started`, its reconnect included.
fn household_had_one_session(world: &World<'_>) -> Result<(), Failure> {
    let started = world
        .events()
        .into_iter()
        .filter(|event| {
            event.kind == EventKind::StreamStarted && event.stream.stream.key == HOUSEHOLD
        })
        .count();
    if started != 1 {
        return Err(world.fail(format!(
            "{HOUSEHOLD} had {started} stream_started events for one continuous audience"
        )));
    }
    Ok(())
}

/// The phone that watched throughout saw the dropped playback as a discontinuity.
fn phone_saw_the_reconnect(world: &World<'_>) -> Result<(), Failure> {
    let seen = world
        .observer
        .lock()
        .hls_discontinuities
        .get("phone")
        .copied()
        .unwrap_or(0);
    if seen == 0 {
        return Err(world.fail(
            "the phone saw no discontinuity though the household's playback was dropped".into(),
        ));
    }
    Ok(())
}
