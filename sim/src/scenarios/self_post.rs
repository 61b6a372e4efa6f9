//! The seed's deadlock. First a small model of the original orchestrator under a
//! slow gluetun: the self-POST times out, the event is lost, the player gets 503
//! "timeout waiting for initial buffer", other requests wait. Then acemux under the
//! same conditions (one current-thread runtime per host, its webhook pointing at
//! itself, the same slow engine) answers every request within its bound and records
//! and delivers every event exactly once.

use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, UNIX_EPOCH};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::Request;

use acemux::net::http_client;
use acemux_core::rng::SeededRng;

use crate::naive::{naive_orchestrator, NaiveLog, NAIVE_PORT};
use crate::net::TurmoilNet;
use crate::observe::sim_now;
use crate::relay::{run_relay, RelayControl, Route};
use crate::world::{Failure, Fault, Outcome, World, WorldConfig, ENGINE_PORT, GLUETUN_BASE_PORT};

use super::{health_probe, hls_poller, secs, ts_reader};

/// One-way latency of the slow gluetun ↔ engine link: a round trip is above the 10 s
/// read timeout.
const SLOW_LINK: Duration = Duration::from_secs(6);
/// How long the link stays slow in the acemux half.
const SLOW_FOR: Duration = Duration::from_secs(45);

/// The seed of the naive model's run that every seed of the scenario checks.
const NAIVE_SEED: u64 = 7;

/// What the naive model showed.
#[derive(Debug, Clone)]
pub struct NaiveSymptoms {
    /// The model's log.
    pub log: NaiveLog,
    /// Status and body of the player's manifest request.
    pub player_answer: Option<(u16, String)>,
    /// How long the other client's `/health` waited.
    pub health_wait: Option<Duration>,
}

/// Runs the naive model under a slow gluetun and reports what happened.
pub fn naive_model_deadlocks(seed: u64) -> NaiveSymptoms {
    let mut rng = SeededRng::new(seed);
    let mut sim = turmoil::Builder::new()
        .rng_seed(rng.next_u64())
        .simulation_duration(Duration::from_secs(600))
        .epoch(UNIX_EPOCH + Duration::from_secs(1_700_000_000))
        .min_message_latency(Duration::from_millis(1))
        .max_message_latency(Duration::from_millis(10))
        .build();
    sim.host("engine1", || async {
        let emulator = acemux_testkit::emulator::Emulator::new(Default::default());
        let listener = TurmoilNet::listen(ENGINE_PORT).await?;
        emulator.serve(listener, std::future::pending()).await;
        Ok(())
    });
    let relay = RelayControl::new();
    sim.host("gluetun", move || {
        run_relay(
            vec![Route {
                listen_port: GLUETUN_BASE_PORT,
                upstream_host: "engine1".into(),
                upstream_port: ENGINE_PORT,
            }],
            relay.clone(),
        )
    });
    let log = Arc::new(Mutex::new(NaiveLog::default()));
    {
        let log = log.clone();
        sim.host("naive", move || {
            naive_orchestrator(log.clone(), ("gluetun".into(), GLUETUN_BASE_PORT))
        });
    }
    sim.set_link_latency("gluetun", "engine1", SLOW_LINK);
    let player_answer = Arc::new(Mutex::new(None));
    let health_wait = Arc::new(Mutex::new(None));
    {
        let player_answer = player_answer.clone();
        sim.client("player", async move {
            tokio::time::sleep(secs(1)).await;
            let client = http_client(TurmoilNet);
            let request = Request::get(format!(
                "http://naive:{NAIVE_PORT}/ace/manifest.m3u8?id=seed"
            ))
            .body(Full::new(Bytes::new()))?;
            let response = tokio::time::timeout(secs(120), client.request(request)).await??;
            let status = response.status().as_u16();
            let body = response.into_body().collect().await?.to_bytes();
            *player_answer.lock().unwrap_or_else(|p| p.into_inner()) =
                Some((status, String::from_utf8_lossy(&body).into_owned()));
            Ok(())
        });
    }
    {
        let health_wait = health_wait.clone();
        sim.client("other", async move {
            tokio::time::sleep(secs(3)).await;
            let client = http_client(TurmoilNet);
            let request = Request::get(format!("http://naive:{NAIVE_PORT}/health"))
                .body(Full::new(Bytes::new()))?;
            let sent = sim_now();
            let _ = tokio::time::timeout(secs(120), client.request(request)).await??;
            *health_wait.lock().unwrap_or_else(|p| p.into_inner()) = Some(sim_now() - sent);
            Ok(())
        });
    }
    // The clients end (or the bound above fails them); either way the log tells.
    let _ = sim.run();
    let log = log.lock().unwrap_or_else(|p| p.into_inner()).clone();
    let player_answer = player_answer
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .clone();
    let health_wait = *health_wait.lock().unwrap_or_else(|p| p.into_inner());
    NaiveSymptoms {
        log,
        player_answer,
        health_wait,
    }
}

/// The single-worker self-POST scenario: the model deadlocks, acemux does not.
pub fn single_worker_self_post(seed: u64) -> Result<Outcome, Failure> {
    let fail = |at: Duration, message: String| Failure {
        scenario: "single_worker_self_post",
        seed,
        at,
        message,
    };
    // The model is the same demonstration for every seed (its own seeds are covered
    // by the scenario tests): it runs once per process, and each seed checks it.
    static NAIVE: OnceLock<NaiveSymptoms> = OnceLock::new();
    let naive = NAIVE.get_or_init(|| naive_model_deadlocks(NAIVE_SEED));
    let reproduced = naive.log.has("self-POST read timed out")
        && naive.log.has("Read timed out (read timeout=10)")
        && naive.log.has("timeout waiting for initial buffer")
        && naive.player_answer.as_ref().is_some_and(|(status, body)| {
            *status == 503 && body.contains("timeout waiting for initial buffer")
        })
        && naive.health_wait.is_some_and(|wait| wait > secs(20))
        && !naive.log.lines.iter().any(|(at, line)| {
            line.starts_with("registered") && *at < secs(1) + crate::naive::INITIAL_BUFFER_TIMEOUT
        });
    if !reproduced {
        return Err(fail(
            Duration::ZERO,
            format!("the naive model did not show the deadlock: {naive:?}"),
        ));
    }

    let mut config = WorldConfig::new("single_worker_self_post", seed, 1);
    config.self_webhook = true;
    config.receiver_webhook = true;
    config.proxy.engine_request_timeout = secs(10);
    let window = config.proxy.hls.window_segments;
    let start_bound = config.proxy.channel.start_timeout + secs(5);
    let mut world = World::build(config);
    world.at(
        Duration::ZERO,
        Fault::Latency("gluetun", "engine1".into(), SLOW_LINK),
    );
    world.at(
        SLOW_FOR,
        Fault::Latency("gluetun", "engine1".into(), Duration::from_millis(5)),
    );
    world.players(vec![hls_poller(
        "player",
        1,
        secs(1),
        "seed",
        secs(80),
        start_bound,
        window,
    )]);
    world.players(vec![ts_reader(
        "tv",
        2,
        secs(2),
        "seed-ts",
        secs(80),
        start_bound,
    )]);
    world.players(vec![health_probe("other", secs(85), secs(1))]);
    world.run_until(secs(90))?;
    let outcome = world.heal_then_converge(secs(60))?;

    // Both channels started once the engine answered, and ended once; every event
    // was delivered to acemux itself and recognised rather than applied again.
    let events = world.events();
    let started = events
        .iter()
        .filter(|event| event.kind == acemux_core::lifecycle::EventKind::StreamStarted)
        .count();
    if started < 2 || events.len() != 2 * started {
        return Err(world.fail(format!(
            "expected both channels started and ended once each, the log holds {} events, {started} starts",
            events.len()
        )));
    }
    let metrics = world
        .metrics
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .clone()
        .ok_or_else(|| world.fail("acemux never started".into()))?;
    let replays = metrics.idempotent_replays.get();
    if replays < events.len() as u64 {
        return Err(world.fail(format!(
            "{} events were delivered to acemux itself but only {replays} recognised as its own",
            events.len()
        )));
    }
    Ok(outcome)
}
