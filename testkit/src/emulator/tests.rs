//! The emulator's routes, driven in-process through the router (no sockets).

use std::time::Duration;

use axum::body::Body;
use bytes::{Bytes, BytesMut};
use http::{Method, Request, StatusCode};
use http_body_util::BodyExt;
use serde_json::{json, Value};
use tower::ServiceExt;

use super::*;

/// An emulator whose bursts and pacing are fast enough for short tests.
fn fast_emulator() -> Emulator {
    Emulator::new(EmulatorConfig {
        pacing_interval: Duration::from_millis(10),
        ..EmulatorConfig::default()
    })
}

fn request(method: Method, uri: &str, body: &str) -> Request<Body> {
    Request::builder()
        .method(method)
        .uri(uri)
        .header("host", "engine.test:6878")
        .body(Body::from(body.to_owned()))
        .expect("valid request")
}

async fn call(emulator: &Emulator, method: Method, uri: &str, body: &str) -> (StatusCode, Value) {
    let response = emulator
        .router()
        .oneshot(request(method, uri, body))
        .await
        .expect("infallible router");
    let status = response.status();
    let bytes = response
        .into_body()
        .collect()
        .await
        .expect("a body")
        .to_bytes();
    let value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
    (status, value)
}

async fn get(emulator: &Emulator, uri: &str) -> (StatusCode, Value) {
    call(emulator, Method::GET, uri, "").await
}

/// Opens a session of `content_id`; its path-only playback, stat and command URLs.
async fn open(emulator: &Emulator, content_id: &str) -> (String, String, String) {
    let (status, body) = get(
        emulator,
        &format!("/ace/getstream?id={content_id}&format=json&pid=7"),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["error"], Value::Null, "{body}");
    let path = |field: &str| {
        body["response"][field]
            .as_str()
            .expect("a URL")
            .strip_prefix("http://engine.test:6878")
            .expect("URLs built from the Host header")
            .to_owned()
    };
    (path("playback_url"), path("stat_url"), path("command_url"))
}

async fn playback(emulator: &Emulator, path: &str) -> (u64, Body) {
    let response = emulator
        .router()
        .oneshot(request(Method::GET, path, ""))
        .await
        .expect("infallible router");
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(response.headers()["content-type"], "video/mp2t");
    let offset = response.headers()[OFFSET_HEADER]
        .to_str()
        .expect("ASCII")
        .parse()
        .expect("a number");
    (offset, response.into_body())
}

/// The next data frame, or `None` at the end of the body; panics on a body error.
async fn next_data(body: &mut Body) -> Option<Bytes> {
    loop {
        let frame = body.frame().await?.expect("no body error");
        if let Ok(data) = frame.into_data() {
            return Some(data);
        }
    }
}

#[tokio::test]
async fn getstream_answers_a_session_in_the_engine_envelope() {
    let emulator = fast_emulator();
    let (status, body) = get(&emulator, "/ace/getstream?id=abc&format=json&pid=1").await;
    assert_eq!(status, StatusCode::OK);
    let response = &body["response"];
    let session = response["playback_session_id"].as_str().expect("an id");
    assert_eq!(session.len(), 40);
    assert_eq!(
        response["playback_url"],
        format!("http://engine.test:6878/ace/r/{session}")
    );
    assert_eq!(response["is_live"], 1);
    assert_eq!(response["infohash"].as_str().map(str::len), Some(40));
    assert_eq!(response["client_session_id"], 1);
    assert_eq!(body["error"], Value::Null);
    // Same requests, same answers: ids are derived, not random.
    let (_, again) = get(&fast_emulator(), "/ace/getstream?id=abc&format=json&pid=1").await;
    assert_eq!(again, body);
}

#[tokio::test]
async fn session_requests_are_recorded_with_the_player_parameters() {
    let emulator = fast_emulator();
    let (status, body) = get(
        &emulator,
        "/ace/getstream?content_id=abc&file_indexes=0%2C2&live_delay=30&format=json&pid=9",
    )
    .await;
    assert_eq!(
        (status, &body["error"]),
        (StatusCode::OK, &Value::Null),
        "{body}"
    );
    let (status, _) = get(
        &emulator,
        "/ace/manifest.m3u8?magnet=magnet%3A%3Fxt%3Durn%3Abtih%3Aabc&seekback=5&format=json",
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    let requests = emulator.requests();
    assert_eq!(
        requests,
        vec![
            SessionRequest {
                route: "getstream".into(),
                source: ("content_id".into(), "abc".into()),
                file_indexes: Some("0,2".into()),
                live_delay: Some("30".into()),
                seekback: None,
                pid: Some("9".into()),
            },
            SessionRequest {
                route: "manifest.m3u8".into(),
                source: ("magnet".into(), "magnet:?xt=urn:btih:abc".into()),
                file_indexes: None,
                live_delay: None,
                seekback: Some("5".into()),
                pid: None,
            },
        ]
    );
    let (status, listed) = get(&emulator, "/control/requests").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(listed[0]["source"], json!(["content_id", "abc"]));
    // Bounded: the oldest go.
    for n in 0..MAX_RECORDED_REQUESTS {
        get(&emulator, &format!("/ace/getstream?id=n{n}&format=json")).await;
    }
    let requests = emulator.requests();
    assert_eq!(requests.len(), MAX_RECORDED_REQUESTS);
    assert_eq!(requests[0].source.1, "n0");
}

#[tokio::test]
async fn missing_and_refused_ids_get_error_envelopes() {
    let emulator = fast_emulator();
    let (status, body) = get(&emulator, "/ace/getstream?format=json").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["response"], Value::Null);
    assert!(body["error"]
        .as_str()
        .is_some_and(|e| e.contains("missing")));
    let refuse = Faults {
        refuse: Some("channel offline".to_owned()),
        ..Faults::default()
    };
    emulator.set_faults("gone", refuse).expect("valid faults");
    let (status, body) = get(&emulator, "/ace/getstream?id=gone&format=json").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        body,
        json!({ "response": null, "error": "channel offline" })
    );
    assert!(!emulator.stats().contents.contains_key("gone"));
}

#[tokio::test]
async fn stop_ends_the_session_and_every_stop_is_counted() {
    let emulator = fast_emulator();
    let (playback_path, stat_path, command_path) = open(&emulator, "abc").await;
    let (status, stat) = get(&emulator, &stat_path).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(stat["response"]["status"], "dl");
    let (_, mut body) = playback(&emulator, &playback_path).await;
    assert!(next_data(&mut body).await.is_some());
    assert_eq!(emulator.stats().contents["abc"].active_playbacks, 1);

    let stop = format!("{command_path}?method=stop");
    assert_eq!(
        get(&emulator, &stop).await,
        (StatusCode::OK, json!({ "response": "ok", "error": null }))
    );
    let rest = tokio::time::timeout(Duration::from_secs(5), async {
        while next_data(&mut body).await.is_some() {}
    });
    rest.await
        .expect("the playback ends when its session stops");
    drop(body);

    let refused = emulator
        .router()
        .oneshot(request(Method::GET, &playback_path, ""))
        .await
        .expect("infallible router");
    assert_eq!(refused.status(), StatusCode::NOT_FOUND);
    assert_eq!(get(&emulator, &stat_path).await.0, StatusCode::NOT_FOUND);
    // A second stop is harmless but visible.
    assert_eq!(get(&emulator, &stop).await.0, StatusCode::OK);
    let stats = emulator.stats();
    let content = &stats.contents["abc"];
    assert_eq!(content.sessions_started, 1);
    assert_eq!(content.sessions_stopped, 2);
    assert_eq!(content.active_playbacks, 0);
    let session = content.sessions.values().next().expect("one session");
    assert_eq!(session.stop_commands, 2);
    assert!(session.stopped);
    assert!(content.bytes_sent > 0);
    assert_eq!(session.bytes_sent, content.bytes_sent);
}

#[tokio::test]
async fn unknown_methods_and_sessions_are_errors() {
    let emulator = fast_emulator();
    let (_, _, command_path) = open(&emulator, "abc").await;
    let (status, body) = get(&emulator, &format!("{command_path}?method=pause")).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["response"], Value::Null);
    assert!(body["error"].is_string());
    let (status, body) = get(&emulator, "/ace/cmd/nope?method=stop").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert!(body["error"].is_string());
    assert_eq!(emulator.stats().unknown_session_requests, 1);
}

#[tokio::test]
async fn playback_bytes_are_the_media_loop_from_the_announced_offset() {
    let emulator = fast_emulator();
    let (playback_path, _, _) = open(&emulator, "abc").await;
    let (offset, mut body) = playback(&emulator, &playback_path).await;
    let mut received = BytesMut::new();
    while received.len() < 500_000 {
        received.extend_from_slice(&next_data(&mut body).await.expect("endless"));
    }
    let expected = emulator.media().read(offset, received.len());
    assert!(received[..] == expected[..], "bytes differ from MediaLoop");
}

#[tokio::test]
async fn cut_after_bytes_ends_the_body_cleanly_at_that_byte() {
    let emulator = fast_emulator();
    let faults = Faults {
        cut_after_bytes: Some(10_000),
        ..Faults::default()
    };
    emulator.set_faults("abc", faults).expect("valid faults");
    let (playback_path, _, _) = open(&emulator, "abc").await;
    let (offset, body) = playback(&emulator, &playback_path).await;
    let bytes = body.collect().await.expect("a clean end").to_bytes();
    assert_eq!(bytes, emulator.media().read(offset, 10_000));
}

#[tokio::test]
async fn close_abruptly_fails_the_body_after_that_byte() {
    let emulator = fast_emulator();
    let faults = Faults {
        close_abruptly_after_bytes: Some(1000),
        ..Faults::default()
    };
    emulator.set_faults("abc", faults).expect("valid faults");
    let (playback_path, _, _) = open(&emulator, "abc").await;
    let (_, mut body) = playback(&emulator, &playback_path).await;
    let mut received = 0;
    loop {
        match body.frame().await {
            Some(Ok(frame)) => received += frame.into_data().map_or(0, |data| data.len()),
            Some(Err(_)) => break,
            None => panic!("the body ended cleanly"),
        }
    }
    assert_eq!(received, 1000);
}

#[tokio::test]
async fn no_data_answers_headers_and_never_a_byte() {
    let emulator = fast_emulator();
    let faults = Faults {
        no_data: true,
        ..Faults::default()
    };
    emulator.set_faults("abc", faults).expect("valid faults");
    let (playback_path, _, command_path) = open(&emulator, "abc").await;
    let (_, mut body) = playback(&emulator, &playback_path).await;
    let silent = tokio::time::timeout(Duration::from_millis(300), body.frame()).await;
    assert!(silent.is_err(), "no byte may arrive");
    get(&emulator, &format!("{command_path}?method=stop")).await;
    let end = tokio::time::timeout(Duration::from_secs(5), body.frame()).await;
    assert!(matches!(end, Ok(None)), "stop ends the silent body");
}

#[tokio::test]
async fn a_stall_sends_nothing_for_its_length() {
    let emulator = fast_emulator();
    let faults = Faults {
        stall_after: Some(Duration::from_millis(100)),
        stall_for: Some(Duration::from_millis(600)),
        ..Faults::default()
    };
    emulator.set_faults("abc", faults).expect("valid faults");
    let (playback_path, _, _) = open(&emulator, "abc").await;
    let (_, mut body) = playback(&emulator, &playback_path).await;
    let started = tokio::time::Instant::now();
    let mut last = started;
    let mut longest_gap = Duration::ZERO;
    while started.elapsed() < Duration::from_millis(1200) {
        next_data(&mut body).await.expect("endless");
        longest_gap = longest_gap.max(last.elapsed());
        last = tokio::time::Instant::now();
    }
    assert!(longest_gap >= Duration::from_millis(450), "{longest_gap:?}");
    assert!(longest_gap < Duration::from_millis(1000), "{longest_gap:?}");
}

#[tokio::test]
async fn start_delay_holds_the_getstream_answer() {
    let emulator = fast_emulator();
    let faults = Faults {
        start_delay: Some(Duration::from_millis(300)),
        ..Faults::default()
    };
    emulator
        .set_faults(ANY_CONTENT, faults)
        .expect("valid faults");
    let started = tokio::time::Instant::now();
    open(&emulator, "slow").await;
    assert!(started.elapsed() >= Duration::from_millis(300));
}

#[tokio::test]
async fn direct_getstream_streams_and_ends_its_session_with_the_connection() {
    let emulator = fast_emulator();
    let (offset, mut body) = playback(&emulator, "/ace/getstream?id=direct").await;
    assert_eq!(offset, 0);
    assert!(next_data(&mut body).await.is_some());
    assert_eq!(emulator.stats().active_sessions, 1);
    drop(body);
    let stats = emulator.stats();
    assert_eq!(stats.active_sessions, 0);
    assert_eq!(
        stats.contents["direct"].sessions_stopped, 0,
        "not a stop command"
    );
}

#[tokio::test]
async fn control_routes_set_read_and_clear_faults() {
    let emulator = fast_emulator();
    let (status, body) = call(
        &emulator,
        Method::PUT,
        "/control/faults/abc",
        r#"{"start_delay": "2s", "no_data": true}"#,
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["start_delay"], "2s");
    assert_eq!(
        get(&emulator, "/control/faults/abc").await.1["no_data"],
        true
    );
    assert!(get(&emulator, "/control/faults").await.1["abc"].is_object());
    let bad = call(
        &emulator,
        Method::PUT,
        "/control/faults/abc",
        r#"{"bitrate_bps": 0}"#,
    )
    .await;
    assert_eq!(bad.0, StatusCode::UNPROCESSABLE_ENTITY);
    let bad = call(&emulator, Method::PUT, "/control/faults/abc", "{").await;
    assert_eq!(bad.0, StatusCode::BAD_REQUEST);
    let huge = format!(r#"{{"refuse": "{}"}}"#, "x".repeat(64 * 1024));
    let bad = call(&emulator, Method::PUT, "/control/faults/abc", &huge).await;
    assert_eq!(bad.0, StatusCode::PAYLOAD_TOO_LARGE);
    let (status, body) = call(&emulator, Method::DELETE, "/control/faults/abc", "").await;
    assert_eq!(
        (status, body["removed"].clone()),
        (StatusCode::OK, json!(true))
    );
    assert_eq!(
        get(&emulator, "/control/faults/abc").await.1["no_data"],
        false
    );

    open(&emulator, "abc").await;
    let (status, stats) = get(&emulator, "/control/stats").await;
    assert_eq!(status, StatusCode::OK);
    let stats: EmulatorStats = serde_json::from_value(stats).expect("stats JSON");
    assert_eq!(stats, emulator.stats());
    assert_eq!(stats.contents["abc"].sessions_started, 1);
}

#[tokio::test]
async fn sessions_beyond_the_cap_get_an_error_envelope() {
    let emulator = Emulator::new(EmulatorConfig {
        max_sessions: 1,
        ..EmulatorConfig::default()
    });
    open(&emulator, "a").await;
    let (status, body) = get(&emulator, "/ace/getstream?id=b&format=json").await;
    assert_eq!(status, StatusCode::OK);
    assert!(body["error"]
        .as_str()
        .is_some_and(|e| e.contains("too many")));
}

#[tokio::test(start_paused = true)]
async fn stats_change_over_time_and_their_faults_quiet_or_fail_them() {
    let emulator = fast_emulator();
    let (_, stat, _) = open(&emulator, "abc").await;
    let (status, first) = get(&emulator, &stat).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(first["error"], Value::Null);
    let figures = &first["response"];
    assert_eq!(figures["status"], "dl");
    assert!(figures["peers"].as_u64().expect("peers") >= 5, "{figures}");
    assert!(figures["speed_down"].as_u64().expect("speed") > 0);
    let live = &figures["livepos"];
    assert!(live["first_ts"].as_u64() <= live["pos"].as_u64());
    assert!(live["pos"].as_u64() <= live["last_ts"].as_u64());

    tokio::time::advance(Duration::from_secs(30)).await;
    let (_, later) = get(&emulator, &stat).await;
    let later = &later["response"];
    assert!(
        later["downloaded"].as_u64() > figures["downloaded"].as_u64(),
        "the download grows: {figures} then {later}"
    );
    assert_eq!(
        later["livepos"]["last_ts"].as_u64(),
        live["last_ts"].as_u64().map(|ts| ts + 30),
        "the live edge moves with time"
    );
    assert_ne!(later["peers"], figures["peers"], "the swarm drifts");

    emulator
        .set_faults(
            "abc",
            Faults {
                zero_peers: true,
                ..Faults::default()
            },
        )
        .expect("valid faults");
    let (_, quiet) = get(&emulator, &stat).await;
    tokio::time::advance(Duration::from_secs(30)).await;
    let (_, still) = get(&emulator, &stat).await;
    for answer in [&quiet, &still] {
        assert_eq!(answer["response"]["peers"], 0, "{answer}");
        assert_eq!(answer["response"]["speed_down"], 0, "{answer}");
    }
    assert_eq!(
        quiet["response"]["downloaded"], still["response"]["downloaded"],
        "no progress"
    );

    emulator
        .set_faults(
            "abc",
            Faults {
                stats_fail: true,
                ..Faults::default()
            },
        )
        .expect("valid faults");
    let (status, failed) = get(&emulator, &stat).await;
    assert_eq!(status, StatusCode::INTERNAL_SERVER_ERROR);
    assert_eq!(failed["response"], Value::Null);
    assert!(failed["error"].as_str().is_some_and(|e| !e.is_empty()));
    assert_eq!(
        "abc:zero_peers".parse::<FaultFlag>().map(|f| f.knob),
        Ok("zero_peers".to_owned())
    );
}
