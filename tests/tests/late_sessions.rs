//! Engine sessions granted after acemux's session request timed out: each is stopped
//! exactly once, in the background, while the channel has moved on (a 504, or a retry
//! that serves the viewer), and shutdown does not wait for answers that never come.

use std::sync::Arc;
use std::time::Duration;

use acemux_core::ts::PACKET_LEN;
use acemux_tests::eventually;
use acemux_tests::hostile_engine::{Answer, Hit, HostileEngine};
use acemux_tests::hostile_rig::{
    assert_error, assert_healthy, get, metric, options, param, rig, ts_media,
};
use acemux_tests::proxy::{open, read_at_least, viewer_client, ProxyRig};
use hyper::StatusCode;
use serde_json::json;

/// A session envelope whose session (id, command URL) is named after the player id of
/// the request, so each stop can be matched to the request that opened it.
fn session_of(hit: &Hit, playback_url: &str) -> Answer {
    let pid = param(hit, "pid");
    Answer::Json(
        json!({
            "response": {
                "playback_url": playback_url,
                "stat_url": format!("http://e/ace/stat/{pid}"),
                "command_url": format!("http://e/ace/cmd/{pid}"),
                "playback_session_id": pid,
                "is_live": 1
            },
            "error": null
        })
        .to_string(),
    )
}

/// Player ids the engine was asked for a session, in order.
fn session_pids(engine: &HostileEngine) -> Vec<String> {
    engine
        .hits()
        .iter()
        .filter(|hit| hit.path == "/ace/getstream")
        .map(|hit| param(hit, "pid").to_owned())
        .collect()
}

/// Player ids whose session was stopped, once per stop, in order.
fn stopped_pids(engine: &HostileEngine) -> Vec<String> {
    engine
        .hits()
        .iter()
        .filter(|hit| hit.path.starts_with("/ace/cmd/") && param(hit, "method") == "stop")
        .map(|hit| hit.path.trim_start_matches("/ace/cmd/").to_owned())
        .collect()
}

/// How long the engine takes to answer a late session request: past the 1 s request
/// timeout, well within the late-answer bound (60 s).
const LATE_ANSWER: Duration = Duration::from_millis(2500);

#[tokio::test]
async fn sessions_granted_after_the_request_timed_out_are_stopped_once() {
    let engine = HostileEngine::start(|hit| match hit.path.as_str() {
        "/ace/getstream" => Answer::Delayed {
            after: LATE_ANSWER,
            answer: Box::new(session_of(hit, "http://e/play/late")),
        },
        _ => Answer::ok(),
    })
    .await;
    let rig = rig(&engine).await;
    let answer = get(&rig, "/ace/getstream?id=late").await;
    assert_error(&answer, StatusCode::GATEWAY_TIMEOUT, "engine_timeout");
    let requested = session_pids(&engine);
    assert!(!requested.is_empty(), "no session was requested");
    // Every session the engine opened after acemux gave up is stopped.
    let all_stopped = eventually(LATE_ANSWER + Duration::from_secs(10), || async {
        let mut stopped = stopped_pids(&engine);
        stopped.sort();
        stopped.dedup();
        let mut requested = session_pids(&engine);
        requested.sort();
        stopped == requested
    })
    .await;
    assert!(
        all_stopped,
        "requested {:?}, stopped {:?}",
        session_pids(&engine),
        stopped_pids(&engine)
    );
    // Exactly once each: no second stop arrives later.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let requested = session_pids(&engine);
    let mut stopped = stopped_pids(&engine);
    stopped.sort();
    let mut expected = requested.clone();
    expected.sort();
    assert_eq!(
        stopped, expected,
        "each late session is stopped exactly once"
    );
    let late = metric(
        &rig,
        &format!(
            "acemux_engine_late_sessions_total{{engine=\"{}\"}}",
            engine.engine_addr()
        ),
    );
    assert_eq!(late, requested.len() as f64);
    // The channel never took a late session: nothing was played or registered.
    assert_eq!(engine.hits_on("/play/late"), 0);
    assert_eq!(
        metric(&rig, "acemux_events_total{type=\"stream_started\"}"),
        0.0
    );
    assert_healthy(&rig).await;
    rig.shutdown().await;
}

#[tokio::test]
async fn a_late_session_is_stopped_while_the_retry_serves_the_viewer() {
    let media = ts_media(600);
    let requests = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let counter = requests.clone();
    let engine = HostileEngine::start(move |hit| match hit.path.as_str() {
        "/ace/getstream" => {
            let session = session_of(hit, "http://e/play/live");
            if counter.fetch_add(1, std::sync::atomic::Ordering::SeqCst) == 0 {
                Answer::Delayed {
                    after: LATE_ANSWER,
                    answer: Box::new(session),
                }
            } else {
                session
            }
        }
        "/play/live" => Answer::Endless {
            content_type: "video/mp2t",
            chunk: media.clone(),
            every: Duration::from_millis(50),
        },
        _ => Answer::ok(),
    })
    .await;
    let mut options = options(&engine);
    // Room for the timed-out first request and the retry.
    options.proxy.channel.start_timeout = Duration::from_secs(5);
    let rig = ProxyRig::start_options(Vec::new(), options).await;
    let client = viewer_client();
    let (status, mut body) = open(&client, &rig.stream_url("retry")).await;
    assert_eq!(status, StatusCode::OK);
    let bytes = read_at_least(&mut body, 100 * PACKET_LEN, Duration::from_secs(5)).await;
    assert!(bytes.len() >= 100 * PACKET_LEN, "got {} bytes", bytes.len());
    let pids = session_pids(&engine);
    assert_eq!(pids.len(), 2, "one timed-out request, one retry: {pids:?}");
    let (late, live) = (pids[0].clone(), pids[1].clone());
    let stopped = eventually(LATE_ANSWER + Duration::from_secs(10), || async {
        stopped_pids(&engine).contains(&late)
    })
    .await;
    assert!(stopped, "the late session was not stopped");
    // The viewer keeps its stream: the late answer did not replace the live session.
    let more = read_at_least(&mut body, 100 * PACKET_LEN, Duration::from_secs(5)).await;
    assert!(more.len() >= 100 * PACKET_LEN, "got {} bytes", more.len());
    assert_eq!(stopped_pids(&engine), vec![late.clone()]);
    assert_eq!(
        metric(
            &rig,
            &format!(
                "acemux_engine_late_sessions_total{{engine=\"{}\"}}",
                engine.engine_addr()
            ),
        ),
        1.0
    );
    assert_eq!(
        metric(&rig, "acemux_events_total{type=\"stream_started\"}"),
        1.0
    );
    drop(body);
    rig.shutdown().await;
    // The live session is stopped by the channel as it ends, once.
    let live_stopped = eventually(Duration::from_secs(5), || async {
        stopped_pids(&engine).contains(&live)
    })
    .await;
    assert!(live_stopped, "the live session was not stopped");
    let stops = stopped_pids(&engine);
    assert_eq!(
        stops.iter().filter(|pid| **pid == live).count(),
        1,
        "{stops:?}"
    );
    assert_eq!(
        stops.iter().filter(|pid| **pid == late).count(),
        1,
        "{stops:?}"
    );
}

#[tokio::test]
async fn shutdown_ends_the_watch_of_an_unanswered_session_request() {
    let engine = HostileEngine::start(|hit| match hit.path.as_str() {
        "/ace/getstream" => Answer::Hang,
        _ => Answer::ok(),
    })
    .await;
    let rig = rig(&engine).await;
    let answer = get(&rig, "/ace/getstream?id=silent").await;
    assert_error(&answer, StatusCode::GATEWAY_TIMEOUT, "engine_timeout");
    // The timed-out requests are still watched (the late-answer bound is 60 s), yet
    // shutdown does not wait for them.
    tokio::time::timeout(Duration::from_secs(4), rig.shutdown())
        .await
        .expect("shutdown ended the watches at once");
    assert_eq!(engine.hits_on("/ace/cmd"), 0, "nothing was granted to stop");
}
