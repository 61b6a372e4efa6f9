//! Both webhook body formats against receivers that check the bodies as each
//! orchestrator decodes them, over real processes: `acemux serve` with an engine
//! emulator process, a player that opens a channel and leaves, and the events the
//! receiver accepted for that channel.

use std::time::Duration;

use acemux_tests::orchestrator_receiver::{Contract, OrchestratorReceiver, Received};
use acemux_tests::proxy::{open, read_at_least, viewer_client};
use acemux_tests::{eventually, free_port, Acemux};
use hyper::StatusCode;

const CONTENT: &str = "0123456789abcdef0123456789abcdef01234567";

/// Runs a channel's whole life through `acemux serve --event-webhook-format <format>`
/// and returns what `receiver` accepted.
async fn one_channel_life(format: &str, receiver: &OrchestratorReceiver) -> (u16, Vec<Received>) {
    let dir = tempfile::tempdir().expect("temp dir");
    let engine_port = free_port();
    let engine = Acemux::emulate_engine(engine_port, &[], &dir.path().join("engine.log")).await;
    let db = dir.path().join("events.db");
    let engine_arg = format!("127.0.0.1:{engine_port}");
    let base = receiver.base();
    let acemux = Acemux::serve(
        free_port(),
        &[
            "--engine",
            &engine_arg,
            "--db",
            db.to_str().expect("utf-8 path"),
            "--event-webhook",
            &base,
            "--event-webhook-format",
            format,
            "--idle-grace",
            "200ms",
            "--webhook-initial-backoff",
            "50ms",
        ],
        &dir.path().join("acemux.log"),
    )
    .await;
    {
        let client = viewer_client();
        let (status, mut body) = open(
            &client,
            &acemux.url(&format!("/ace/getstream?id={CONTENT}")),
        )
        .await;
        assert_eq!(status, StatusCode::OK);
        let media = read_at_least(&mut body, 64 * 1024, Duration::from_secs(10)).await;
        assert!(
            media.len() >= 64 * 1024,
            "media flows: {} bytes",
            media.len()
        );
    }
    let both = eventually(Duration::from_secs(20), || async {
        receiver.accepted().len() + receiver.refused().len() >= 2
    })
    .await;
    assert!(both, "two deliveries; log:\n{}", acemux.log_text());
    let accepted = receiver.accepted();
    acemux.terminate().await;
    engine.terminate().await;
    (engine_port, accepted)
}

fn events(accepted: &[Received]) -> Vec<&str> {
    accepted.iter().map(|r| r.event.as_str()).collect()
}

#[tokio::test]
async fn the_python_orchestrator_format_carries_the_engine_session_and_stream_id() {
    let receiver = OrchestratorReceiver::start(Contract::Python).await;
    let (engine_port, accepted) = one_channel_life("orchestrator-py", &receiver).await;
    assert_eq!(receiver.refused(), Vec::<String>::new());
    assert_eq!(events(&accepted), ["stream_started", "stream_ended"]);
    let started = &accepted[0].body;
    assert_eq!(started["stream"]["key"], CONTENT);
    assert_eq!(started["stream"]["key_type"], "content_id");
    assert_eq!(started["engine"]["port"], engine_port);
    let stat_url = started["session"]["stat_url"].as_str().expect("stat_url");
    assert!(
        stat_url.starts_with(&format!("http://127.0.0.1:{engine_port}/")),
        "{stat_url}"
    );
    let ended = &accepted[1].body;
    let session = started["session"]["playback_session_id"]
        .as_str()
        .expect("session id");
    assert_eq!(ended["stream_id"], format!("{CONTENT}|{session}"));
    assert_eq!(ended["reason"], "idle");
}

#[tokio::test]
async fn the_go_orchestrator_format_keys_the_stream_by_content_and_engine() {
    let receiver = OrchestratorReceiver::start(Contract::Go).await;
    let (engine_port, accepted) = one_channel_life("orchestrator-go", &receiver).await;
    assert_eq!(receiver.refused(), Vec::<String>::new());
    assert_eq!(events(&accepted), ["stream_started", "stream_ended"]);
    // A plain --engine address has no container id: the engine is named by address,
    // the same in both events, so the Go orchestrator matches the end to the start.
    let engine = format!("127.0.0.1:{engine_port}");
    assert_eq!(
        accepted[0].body,
        serde_json::json!({ "content_id": CONTENT, "engine_id": engine, "engine_name": engine })
    );
    assert_eq!(
        accepted[1].body,
        serde_json::json!({ "content_id": CONTENT, "engine_id": engine })
    );
}

#[tokio::test]
async fn each_receiver_refuses_the_other_orchestrators_bodies() {
    // The checks can fail: a Go receiver refuses the Python bodies, and the other way.
    let go = OrchestratorReceiver::start(Contract::Go).await;
    let (_, accepted) = one_channel_life("orchestrator-py", &go).await;
    assert!(accepted.is_empty(), "{accepted:?}");
    assert_eq!(go.refused().len(), 2, "{:?}", go.refused());
    let python = OrchestratorReceiver::start(Contract::Python).await;
    let (_, accepted) = one_channel_life("orchestrator-go", &python).await;
    assert!(accepted.is_empty(), "{accepted:?}");
    assert_eq!(python.refused().len(), 2, "{:?}", python.refused());
}
