//! Engine sessions across the cluster: one per channel whatever instance its viewers
//! use, `--max-streams-per-engine` holds cluster-wide (over one engine and over two),
//! and the session a killed owner left on its engine is stopped once, by the instance
//! that takes its channel, which records its end (`owner_lost`).

use std::time::Duration;

use acemux_tests::cluster::*;
use acemux_tests::{eventually, free_port, Acemux, Client};
use hyper::StatusCode;
use serde_json::Value;

const OTHER: &str = "c1a57e4000000000000000000000000000000002";

/// What `GET /cluster` shows of `acemux`'s engine reservations.
async fn reservations(client: &Client, acemux: &Acemux) -> Vec<Value> {
    let (status, view) = client.get(&acemux.url("/cluster")).await.expect("/cluster");
    assert_eq!(status, StatusCode::OK, "{view}");
    view["reservations"].as_array().cloned().unwrap_or_default()
}

/// The events `acemux` logged.
async fn events(client: &Client, acemux: &Acemux) -> Vec<Value> {
    let (status, events) = client
        .get(&acemux.url("/events?limit=1000"))
        .await
        .expect("/events");
    assert_eq!(status, StatusCode::OK, "{events}");
    events.as_array().cloned().unwrap_or_default()
}

#[tokio::test]
async fn the_engine_cap_holds_across_instances() {
    let dir = tempfile::tempdir().expect("temp dir");
    let redis = Redis::start(&dir.path().join("redis.log")).await;
    let engine = Acemux::emulate_engine(free_port(), &[], &dir.path().join("engine.log")).await;
    let client = Client::new();
    let flags = [
        "--cluster-lease-ttl",
        "3s",
        "--max-streams-per-engine",
        "1",
        "--idle-grace",
        "1s",
    ];
    let first = instance_with(dir.path(), 0, &redis.url(), &engine, &flags).await;
    let second = instance_with(dir.path(), 1, &redis.url(), &engine, &flags).await;
    let all = [&first, &second];

    let viewer = Viewer::connect_to(first.addr, CHANNEL).await;
    let playing = eventually(Duration::from_secs(20), || async { viewer.received() > 0 }).await;
    assert!(playing, "the first channel plays; logs:\n{}", logs(&all));
    let held = reservations(&client, &first).await;
    assert_eq!(held.len(), 1, "{held:?}");
    assert_eq!(held[0]["engine"], engine.addr.to_string(), "{held:?}");
    assert_eq!(held[0]["slot"], 0, "{held:?}");
    assert!(held[0]["channel"]
        .as_str()
        .is_some_and(|channel| channel.contains(CHANNEL)));

    // The one engine is full cluster-wide: the other instance's other channel gets the
    // answer of full engines, though that instance opened no session itself.
    let (status, body) = client
        .get(&second.url(&format!("/ace/getstream?id={OTHER}")))
        .await
        .expect("request");
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
    assert_eq!(body["error"], "no_engine_available", "{body}");
    assert!(reservations(&client, &second).await.is_empty());
    let full = client
        .metric(
            &second.url(""),
            "acemux_cluster_slot_events_total{event=\"full\"}",
        )
        .await;
    assert!(full >= 1.0, "counted: {full}");

    // Once the first channel ends, its slot is given back and the other channel plays.
    drop(viewer);
    let released = eventually(Duration::from_secs(20), || async {
        reservations(&client, &first).await.is_empty()
    })
    .await;
    assert!(released, "the slot is given back; logs:\n{}", logs(&all));
    let other = Viewer::connect_to(second.addr, OTHER).await;
    let playing = eventually(Duration::from_secs(20), || async { other.received() > 0 }).await;
    assert!(
        playing,
        "the other channel plays now; logs:\n{}",
        logs(&all)
    );
    let (_, stats) = client
        .get(&engine.url("/control/stats"))
        .await
        .expect("emulator stats");
    assert_eq!(stats["contents"][OTHER]["sessions_started"], 1, "{stats}");
    assert_eq!(stats["contents"][CHANNEL]["sessions_stopped"], 1, "{stats}");
}

/// Engine sessions started of `content` on the emulator `engine`.
async fn sessions_started(client: &Client, engine: &Acemux, content: &str) -> u64 {
    let (_, stats) = client
        .get(&engine.url("/control/stats"))
        .await
        .expect("emulator stats");
    stats["contents"][content]["sessions_started"]
        .as_u64()
        .unwrap_or(0)
}

#[tokio::test]
async fn viewers_spread_over_three_instances_and_two_engines_get_one_session_per_channel() {
    let dir = tempfile::tempdir().expect("temp dir");
    let redis = Redis::start(&dir.path().join("redis.log")).await;
    let engine_a = Acemux::emulate_engine(free_port(), &[], &dir.path().join("engine-a.log")).await;
    let engine_b = Acemux::emulate_engine(free_port(), &[], &dir.path().join("engine-b.log")).await;
    let client = Client::new();
    let second_engine = engine_b.addr.to_string();
    // One session per engine cluster-wide: the two channels must land on the two
    // engines, whichever instance opens each.
    let flags = [
        "--cluster-lease-ttl",
        "3s",
        "--max-streams-per-engine",
        "1",
        "--engine",
        second_engine.as_str(),
    ];
    let mut instances = Vec::new();
    for n in 0..3 {
        instances.push(instance_with(dir.path(), n, &redis.url(), &engine_a, &flags).await);
    }
    let all: Vec<&Acemux> = instances.iter().collect();

    // Each channel watched on every instance, the first viewers on different ones.
    let mut viewers = Vec::new();
    for (content, order) in [(CHANNEL, [0, 1, 2]), (OTHER, [2, 0, 1])] {
        for n in order {
            viewers.push(Viewer::connect_to(instances[n].addr, content).await);
        }
    }
    let playing = eventually(Duration::from_secs(30), || async {
        viewers.iter().all(|viewer| viewer.received() > 0)
    })
    .await;
    assert!(playing, "every viewer plays; logs:\n{}", logs(&all));

    for content in [CHANNEL, OTHER] {
        let a = sessions_started(&client, &engine_a, content).await;
        let b = sessions_started(&client, &engine_b, content).await;
        assert_eq!(
            a + b,
            1,
            "one engine session of {content} across both engines (a: {a}, b: {b}); logs:\n{}",
            logs(&all)
        );
    }
    // One per engine: the cap held cluster-wide.
    for engine in [&engine_a, &engine_b] {
        let on = sessions_started(&client, engine, CHANNEL).await
            + sessions_started(&client, engine, OTHER).await;
        assert_eq!(
            on,
            1,
            "one session on {}; logs:\n{}",
            engine.addr,
            logs(&all)
        );
    }
    let mut held = Vec::new();
    for acemux in &instances {
        held.extend(reservations(&client, acemux).await);
    }
    assert_eq!(held.len(), 2, "two slots held across the cluster: {held:?}");
}

#[tokio::test]
async fn a_killed_owners_session_is_stopped_once_and_its_end_recorded_by_the_new_owner() {
    let dir = tempfile::tempdir().expect("temp dir");
    let redis = Redis::start(&dir.path().join("redis.log")).await;
    let engine = Acemux::emulate_engine(free_port(), &[], &dir.path().join("engine.log")).await;
    let client = Client::new();
    let owner = instance(dir.path(), 0, &redis, &engine).await;
    let survivor = instance(dir.path(), 1, &redis, &engine).await;

    // The first viewer makes the first instance the owner; the second relays.
    let first = Viewer::connect_to(owner.addr, CHANNEL).await;
    let playing = eventually(Duration::from_secs(20), || async { first.received() > 0 }).await;
    assert!(
        playing,
        "the owner plays; logs:\n{}",
        logs(&[&owner, &survivor])
    );
    assert_eq!(leases(&client, &owner).await.len(), 1);
    let relayed = Viewer::connect_to(survivor.addr, CHANNEL).await;
    let playing = eventually(Duration::from_secs(20), || async { relayed.received() > 0 }).await;
    assert!(playing, "the relay plays");

    // The owner's stream_started, and its engine session.
    let started: Vec<Value> = events(&client, &owner)
        .await
        .into_iter()
        .filter(|event| event["type"] == "stream_started")
        .collect();
    assert_eq!(started.len(), 1, "{started:?}");
    let stream_id = started[0]["stream_id"]
        .as_str()
        .expect("stream id")
        .to_owned();
    let session = started[0]["stream"]["playback_session_id"]
        .as_str()
        .expect("session id")
        .to_owned();
    let stats = channel_stats(&client, &engine).await;
    assert!(
        stats["sessions"].get(&session).is_some(),
        "the emulator knows session {session}: {stats}"
    );

    owner.kill();

    // The survivor takes the channel over, stops the dead owner's session once and
    // records its end.
    let stopped = eventually(Duration::from_secs(40), || async {
        channel_stats(&client, &engine).await["sessions"][&session]["stopped"] == true
    })
    .await;
    assert!(
        stopped,
        "the dead owner's session is stopped; logs:\n{}",
        logs(&[&survivor])
    );
    let ended = eventually(Duration::from_secs(20), || async {
        events(&client, &survivor).await.iter().any(|event| {
            event["type"] == "stream_ended" && event["stream_id"] == stream_id.as_str()
        })
    })
    .await;
    assert!(ended, "the end is recorded; logs:\n{}", logs(&[&survivor]));
    let survivor_events = events(&client, &survivor).await;
    let ends: Vec<&Value> = survivor_events
        .iter()
        .filter(|event| event["type"] == "stream_ended" && event["stream_id"] == stream_id.as_str())
        .collect();
    assert_eq!(ends.len(), 1, "one end: {ends:?}");
    assert_eq!(ends[0]["stream"]["end_reason"], "owner_lost", "{ends:?}");
    assert!(
        !survivor_events
            .iter()
            .any(|event| event["type"] == "stream_started"
                && event["stream_id"] == stream_id.as_str()),
        "its start stays the dead owner's"
    );
    let claimed = client
        .metric(
            &survivor.url(""),
            "acemux_cluster_slot_events_total{event=\"orphan_claimed\"}",
        )
        .await;
    assert_eq!(claimed, 1.0);

    // The survivor's viewer plays from the survivor's own session; the dead owner's
    // got exactly one stop.
    let before = relayed.received();
    let resumed = eventually(Duration::from_secs(40), || async {
        relayed.received() > before + 64 * 1024
    })
    .await;
    assert!(resumed, "the survivor's viewer plays again");
    let stats = channel_stats(&client, &engine).await;
    assert_eq!(stats["sessions"][&session]["stop_commands"], 1, "{stats}");
    assert_eq!(stats["sessions_started"], 2, "{stats}");
}
