//! Durability across restarts: a 200 means committed, state and sequence numbers
//! come back, and undelivered webhook events are delivered by the next process. And a
//! process killed while proxying leaves nothing behind for good: the next one ends its
//! streams and stops their engine sessions.

use std::time::Duration;

use acemux_tests::raw::ts_viewer;
use acemux_tests::{eventually, free_port, started_body, Acemux, Client};
use hyper::StatusCode;
use serde_json::json;

#[tokio::test]
async fn state_sequence_and_pending_deliveries_survive_a_restart() {
    let dir = tempfile::tempdir().expect("temp dir");
    let db = dir.path().join("events.db");
    let db = db.to_str().expect("utf-8 path");
    let receiver_port = free_port();
    let receiver_url = format!("http://127.0.0.1:{receiver_port}");
    let client = Client::new();

    // First life: the webhook receiver is down, so deliveries stay pending.
    let port = free_port();
    let webhook_args = [
        "--db",
        db,
        "--event-webhook",
        &receiver_url,
        "--webhook-max-backoff",
        "200ms",
    ];
    let first = Acemux::serve(port, &webhook_args, &dir.path().join("first.log")).await;
    for (key, session) in [("a", "1"), ("b", "2")] {
        let (status, body) = client
            .post_json(
                &first.url("/events/stream_started"),
                &started_body(key, session, Some(key)),
                None,
            )
            .await
            .expect("start");
        assert_eq!(status, StatusCode::OK, "{body}");
    }
    let (status, _) = client
        .post_json(
            &first.url("/events/stream_ended"),
            &json!({"stream_id": "a|1", "reason": "done"}),
            None,
        )
        .await
        .expect("end");
    assert_eq!(status, StatusCode::OK);
    let status = first.terminate().await;
    assert!(status.success(), "graceful shutdown exits 0, got {status}");

    // The receiver: another acemux with its own database.
    let receiver_db = dir.path().join("receiver.db");
    let receiver = Acemux::serve(
        receiver_port,
        &["--db", receiver_db.to_str().expect("utf-8 path")],
        &dir.path().join("receiver.log"),
    )
    .await;

    // Second life: same database; state, numbering and pending deliveries come back.
    let second = Acemux::serve(port, &webhook_args, &dir.path().join("second.log")).await;
    let (_, started) = client
        .get(&second.url("/streams?status=started"))
        .await
        .expect("streams");
    let ids: Vec<&str> = started
        .as_array()
        .expect("list")
        .iter()
        .map(|stream| stream["id"].as_str().expect("id"))
        .collect();
    assert_eq!(ids, ["b|2"]);
    let (status, restart) = client
        .post_json(
            &second.url("/events/stream_started"),
            &started_body("a", "1", Some("a")),
            None,
        )
        .await
        .expect("start");
    assert_eq!(
        status,
        StatusCode::CONFLICT,
        "an ended stream stays ended: {restart}"
    );
    let (_, c) = client
        .post_json(
            &second.url("/events/stream_started"),
            &started_body("c", "3", Some("c")),
            None,
        )
        .await
        .expect("start");
    assert_eq!(
        c["last_event_seq"], 4,
        "numbering continues after the restart"
    );

    let delivered = eventually(Duration::from_secs(20), || async {
        let (_, events) = client
            .get(&receiver.url("/events?limit=100"))
            .await
            .expect("events");
        events.as_array().map(Vec::len) == Some(4)
    })
    .await;
    assert!(
        delivered,
        "pending deliveries were not made; log:\n{}",
        second.log_text()
    );
    let (_, on_receiver) = client
        .get(&receiver.url("/streams?status=started"))
        .await
        .expect("streams");
    let mut ids: Vec<&str> = on_receiver
        .as_array()
        .expect("list")
        .iter()
        .map(|stream| stream["id"].as_str().expect("id"))
        .collect();
    ids.sort_unstable();
    assert_eq!(
        ids,
        ["b|2", "c|3"],
        "the receiver saw the same lifecycle, in order"
    );
    assert!(second.terminate().await.success());
    assert!(receiver.terminate().await.success());
}

#[tokio::test]
async fn streams_of_a_killed_process_are_ended_and_their_engine_sessions_stopped() {
    let dir = tempfile::tempdir().expect("temp dir");
    let db = dir.path().join("events.db");
    let db = db.to_str().expect("utf-8 path");
    let engine = Acemux::emulate_engine(free_port(), &[], &dir.path().join("engine.log")).await;
    let engine_arg = engine.addr.to_string();
    let args = ["--db", db, "--engine", &engine_arg];
    let client = Client::new();
    let started = |acemux: &Acemux, status: &str| {
        let url = acemux.url(&format!("/streams?status={status}"));
        let client = client.clone();
        async move {
            let (_, streams) = client.get(&url).await.expect("streams");
            streams.as_array().cloned().unwrap_or_default()
        }
    };
    let active_sessions = || {
        let url = engine.url("/control/stats");
        let client = client.clone();
        async move {
            let (_, stats) = client.get(&url).await.expect("engine stats");
            stats["active_sessions"].as_u64().expect("a count")
        }
    };

    // First life: two channels playing, then kill -9.
    let first = Acemux::serve(free_port(), &args, &dir.path().join("first.log")).await;
    let viewers = [
        ts_viewer(first.addr, "left1", "VLC").await,
        ts_viewer(first.addr, "left2", "VLC").await,
    ];
    let playing = eventually(Duration::from_secs(15), || async {
        started(&first, "started").await.len() == 2
    })
    .await;
    assert!(playing, "two streams started:\n{}", first.log_text());
    first.kill();
    for viewer in viewers {
        viewer.abort();
    }
    assert_eq!(
        active_sessions().await,
        2,
        "the engine still runs both sessions"
    );

    // Second life on the same database: both ended once, both sessions stopped.
    let second = Acemux::serve(free_port(), &args, &dir.path().join("second.log")).await;
    let cleaned = eventually(Duration::from_secs(15), || async {
        started(&second, "started").await.is_empty() && active_sessions().await == 0
    })
    .await;
    assert!(cleaned, "leftovers handled:\n{}", second.log_text());
    let ended = started(&second, "ended").await;
    assert_eq!(ended.len(), 2, "{ended:?}");
    for stream in &ended {
        assert_eq!(stream["end_reason"], "restarted", "{stream}");
    }
    let (_, events) = client
        .get(&second.url("/events?limit=100"))
        .await
        .expect("events");
    let ends = events
        .as_array()
        .expect("events")
        .iter()
        .filter(|event| event["type"] == "stream_ended")
        .count();
    assert_eq!(ends, 2, "one stream_ended each: {events}");
    // A third life finds nothing left to do.
    second.terminate().await;
    let third = Acemux::serve(free_port(), &args, &dir.path().join("third.log")).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let (_, events) = client
        .get(&third.url("/events?limit=100"))
        .await
        .expect("events");
    assert_eq!(
        events.as_array().map(Vec::len),
        Some(4),
        "no event added: {events}"
    );
    assert!(!third.log_text().contains("still started"));
    third.terminate().await;
}
