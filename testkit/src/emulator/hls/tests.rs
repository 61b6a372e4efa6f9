//! The HLS routes, driven in-process through the router (no sockets). How the
//! window moves with time is tested on the pure functions in `timeline`; here the
//! window is also read at chosen instants through [`session_window`].

use std::time::Duration;

use axum::body::Body;
use bytes::Bytes;
use http::{HeaderMap, Request, StatusCode};
use http_body_util::BodyExt;
use serde_json::Value;
use tokio::time::Instant;
use tower::ServiceExt;

use super::*;
use crate::emulator::{Emulator, EmulatorConfig, Faults};

const HOST: &str = "http://engine.test:6878";

fn emulator(prebuffer: Duration) -> Emulator {
    Emulator::new(EmulatorConfig {
        prebuffer,
        ..EmulatorConfig::default()
    })
}

async fn fetch(emulator: &Emulator, uri: &str) -> (StatusCode, HeaderMap, Bytes) {
    let request = Request::get(uri)
        .header("host", "engine.test:6878")
        .body(Body::empty())
        .expect("valid request");
    let response = emulator
        .router()
        .oneshot(request)
        .await
        .expect("infallible router");
    let (parts, body) = response.into_parts();
    let bytes = body.collect().await.expect("a body").to_bytes();
    (parts.status, parts.headers, bytes)
}

async fn json(emulator: &Emulator, uri: &str) -> Value {
    let (status, _, body) = fetch(emulator, uri).await;
    assert_eq!(status, StatusCode::OK, "{uri}");
    serde_json::from_slice(&body).expect("JSON")
}

/// Opens an HLS session of `content_id`: its id and path-only playlist URL.
async fn open(emulator: &Emulator, content_id: &str) -> (String, String) {
    let uri = format!("/ace/manifest.m3u8?id={content_id}&format=json&pid=3");
    let body = json(emulator, &uri).await;
    assert_eq!(body["error"], Value::Null, "{body}");
    let session = body["response"]["playback_session_id"]
        .as_str()
        .expect("an id")
        .to_owned();
    let playlist = body["response"]["playback_url"]
        .as_str()
        .expect("a URL")
        .strip_prefix(HOST)
        .expect("URLs built from the Host header")
        .to_owned();
    (session, playlist)
}

/// The playlist at `path`: its text, else the status.
async fn playlist_text(emulator: &Emulator, path: &str) -> Result<String, StatusCode> {
    let (status, headers, body) = fetch(emulator, path).await;
    if status != StatusCode::OK {
        return Err(status);
    }
    assert_eq!(headers["content-type"], PLAYLIST_TYPE);
    Ok(String::from_utf8(body.to_vec()).expect("UTF-8"))
}

/// The segment URIs (path only) a playlist lists, and its media sequence.
fn listed(text: &str) -> (u64, Vec<String>) {
    let sequence = text
        .lines()
        .find_map(|line| line.strip_prefix("#EXT-X-MEDIA-SEQUENCE:"))
        .expect("a media sequence")
        .parse()
        .expect("a number");
    let uris = text
        .lines()
        .filter(|line| !line.starts_with('#'))
        .map(|line| line.strip_prefix(HOST).expect("absolute").to_owned())
        .collect();
    (sequence, uris)
}

fn session_view(emulator: &Emulator, session: &str) -> SessionView {
    emulator
        .shared
        .state()
        .live_session(session)
        .expect("a live session")
}

#[tokio::test]
async fn manifest_answers_a_session_in_the_engine_envelope() {
    let emulator = emulator(Duration::from_secs(2));
    let body = json(&emulator, "/ace/manifest.m3u8?id=abc&format=json&pid=1").await;
    let response = &body["response"];
    let session = response["playback_session_id"].as_str().expect("an id");
    assert_eq!(session.len(), 40);
    assert_eq!(
        response["playback_url"],
        format!("{HOST}/ace/m/{session}.m3u8")
    );
    assert_eq!(response["stat_url"], format!("{HOST}/ace/stat/{session}"));
    assert_eq!(response["command_url"], format!("{HOST}/ace/cmd/{session}"));
    assert_eq!(response["is_live"], 1);
    assert_eq!(response["infohash"].as_str().map(str::len), Some(40));
    assert_eq!(body["error"], Value::Null);
    // One session table with getstream, one timeline per content id.
    let ts = json(&emulator, "/ace/getstream?id=abc&format=json").await;
    assert_eq!(ts["response"]["client_session_id"], 2);
    let ts_session = ts["response"]["playback_session_id"].as_str().expect("id");
    let (hls_view, ts_view) = (
        session_view(&emulator, session),
        session_view(&emulator, ts_session),
    );
    assert_eq!(hls_view.origin, ts_view.origin);
    assert_eq!(emulator.stats().contents["abc"].sessions_started, 2);
    let stat = json(&emulator, &format!("/ace/stat/{session}")).await;
    assert_eq!(stat["response"]["status"], "dl");
    let missing = json(&emulator, "/ace/manifest.m3u8?format=json").await;
    assert!(missing["error"]
        .as_str()
        .is_some_and(|e| e.contains("missing")));
}

#[tokio::test]
async fn the_playlist_lists_exact_segments_served_byte_for_byte() {
    let emulator = emulator(Duration::from_secs(10));
    let (session, playlist) = open(&emulator, "abc").await;
    let text = playlist_text(&emulator, &playlist)
        .await
        .expect("a playlist");
    let mut lines = text.lines();
    assert_eq!(lines.next(), Some("#EXTM3U"));
    assert_eq!(lines.next(), Some("#EXT-X-VERSION:3"));
    assert_eq!(lines.next(), Some("#EXT-X-TARGETDURATION:2"));
    let (sequence, uris) = listed(&text);
    // Ten seconds held at once: five complete segments (unless the clock ticked
    // past another segment boundary, which takes two seconds).
    assert_eq!(sequence, 0);
    let expected: Vec<String> = (0..5).map(|n| format!("/ace/c/{session}/{n}.ts")).collect();
    assert_eq!(uris, expected);
    assert_eq!(text.matches("#EXTINF:2.000000,\n").count(), 5);
    for (number, uri) in uris.iter().enumerate() {
        let (status, headers, body) = fetch(&emulator, uri).await;
        assert_eq!(status, StatusCode::OK, "{uri}");
        assert_eq!(headers["content-type"], "video/mp2t");
        let segment = emulator.shared.hls.segment(number as u64);
        assert_eq!(headers[OFFSET_HEADER], segment.offset.to_string().as_str());
        assert!(body == emulator.media().read(segment.offset, segment.len as usize));
        assert!(acemux_core::ts::packets(&body)
            .next()
            .expect("a packet")
            .starts_pat());
    }
    // Not yet in the window: 404, counted.
    let (status, _, _) = fetch(&emulator, &format!("/ace/c/{session}/9.ts")).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let stats = emulator.stats();
    let content = &stats.contents["abc"];
    assert_eq!(content.playlist_requests, 1);
    assert_eq!(content.segment_requests, 6);
    assert_eq!(content.segments_not_found, 1);
    assert!(content.bytes_sent > 1_000_000);
    assert_eq!(content.sessions[&session].segment_requests, 6);
    assert_eq!(content.sessions[&session].bytes_sent, content.bytes_sent);
}

#[tokio::test]
async fn the_window_moves_on_with_the_clock() {
    let emulator = emulator(Duration::from_secs(2));
    let (session, _) = open(&emulator, "abc").await;
    let view = session_view(&emulator, &session);
    let at = |seconds| {
        let now = view.origin + Duration::from_secs(seconds);
        session_window(&emulator.shared, &view, now)
    };
    assert_eq!(at(0), Window { first: 0, end: 1 });
    assert_eq!(at(30), Window { first: 11, end: 16 });
    assert_eq!(
        at(3600),
        Window {
            first: 1796,
            end: 1801
        }
    );
}

#[tokio::test]
async fn stopped_and_unknown_sessions_get_404() {
    let emulator = emulator(Duration::from_secs(2));
    let (session, playlist) = open(&emulator, "abc").await;
    let segment = format!("/ace/c/{session}/0.ts");
    assert_eq!(fetch(&emulator, &segment).await.0, StatusCode::OK);
    for bad in [
        format!("/ace/c/{session}/x.ts"),
        format!("/ace/c/{session}/0.mp4"),
        format!("/ace/c/{session}/+0.ts"),
        format!("/ace/m/{session}"),
        "/ace/c/nope/0.ts".to_owned(),
        "/ace/m/nope.m3u8".to_owned(),
    ] {
        assert_eq!(
            fetch(&emulator, &bad).await.0,
            StatusCode::NOT_FOUND,
            "{bad}"
        );
    }
    json(&emulator, &format!("/ace/cmd/{session}?method=stop")).await;
    assert_eq!(
        playlist_text(&emulator, &playlist).await,
        Err(StatusCode::NOT_FOUND)
    );
    assert_eq!(fetch(&emulator, &segment).await.0, StatusCode::NOT_FOUND);
    let stats = emulator.stats();
    assert_eq!(stats.contents["abc"].sessions_stopped, 1);
    assert_eq!(stats.unknown_session_requests, 4);
}

#[tokio::test]
async fn every_nth_segment_answers_404_while_listed() {
    let emulator = emulator(Duration::from_secs(10));
    let faults = Faults {
        segment_404_every: Some(2),
        ..Faults::default()
    };
    emulator.set_faults("abc", faults).expect("valid faults");
    let (session, playlist) = open(&emulator, "abc").await;
    let (_, uris) = listed(&playlist_text(&emulator, &playlist).await.expect("playlist"));
    assert_eq!(uris.len(), 5);
    let mut statuses = Vec::new();
    for uri in &uris {
        statuses.push(fetch(&emulator, uri).await.0.as_u16());
    }
    assert_eq!(statuses, [200, 404, 200, 404, 200]);
    let stats = emulator.stats();
    assert_eq!(
        stats.contents["abc"].sessions[&session].segments_not_found,
        2
    );
}

#[tokio::test]
async fn playlist_delay_holds_each_answer_and_stop_cuts_it_short() {
    let emulator = emulator(Duration::from_secs(2));
    let faults = Faults {
        playlist_delay: Some(Duration::from_millis(300)),
        ..Faults::default()
    };
    emulator.set_faults("abc", faults).expect("valid faults");
    let (session, playlist) = open(&emulator, "abc").await;
    for _ in 0..2 {
        let started = Instant::now();
        playlist_text(&emulator, &playlist)
            .await
            .expect("a playlist");
        assert!(started.elapsed() >= Duration::from_millis(300));
    }
    let waiting = tokio::spawn({
        let emulator = emulator.clone();
        async move { playlist_text(&emulator, &playlist).await }
    });
    tokio::time::sleep(Duration::from_millis(50)).await;
    json(&emulator, &format!("/ace/cmd/{session}?method=stop")).await;
    let answer = waiting.await.expect("the request ends");
    assert_eq!(answer, Err(StatusCode::NOT_FOUND));
    assert_eq!(emulator.stats().contents["abc"].playlist_requests, 3);
}

#[tokio::test]
async fn segment_delay_holds_each_segment_and_stop_cuts_it_short() {
    let emulator = emulator(Duration::from_secs(6));
    let faults = Faults {
        segment_delay: Some(Duration::from_millis(300)),
        ..Faults::default()
    };
    emulator.set_faults("abc", faults).expect("valid faults");
    let (session, playlist) = open(&emulator, "abc").await;
    let started = Instant::now();
    let text = playlist_text(&emulator, &playlist)
        .await
        .expect("a playlist");
    assert!(
        started.elapsed() < Duration::from_millis(300),
        "playlists are not delayed"
    );
    let (_, segments) = listed(&text);
    let first = segments.first().expect("a listed segment").clone();
    let started = Instant::now();
    let (status, _, body) = fetch(&emulator, &first).await;
    assert_eq!(status, StatusCode::OK);
    assert!(!body.is_empty());
    assert!(started.elapsed() >= Duration::from_millis(300));
    let waiting = tokio::spawn({
        let emulator = emulator.clone();
        async move { fetch(&emulator, &first).await.0 }
    });
    tokio::time::sleep(Duration::from_millis(50)).await;
    json(&emulator, &format!("/ace/cmd/{session}?method=stop")).await;
    assert_eq!(
        waiting.await.expect("the request ends"),
        StatusCode::NOT_FOUND
    );
}

#[tokio::test]
async fn start_delay_refuse_and_no_data_apply_to_hls() {
    let emulator = emulator(Duration::from_secs(10));
    let slow = Faults {
        start_delay: Some(Duration::from_millis(300)),
        ..Faults::default()
    };
    emulator.set_faults("slow", slow).expect("valid faults");
    let started = Instant::now();
    open(&emulator, "slow").await;
    assert!(started.elapsed() >= Duration::from_millis(300));

    let refuse = Faults {
        refuse: Some("channel offline".to_owned()),
        ..Faults::default()
    };
    emulator.set_faults("gone", refuse).expect("valid faults");
    for uri in [
        "/ace/manifest.m3u8?id=gone&format=json",
        "/ace/manifest.m3u8?id=gone",
    ] {
        let body = json(&emulator, uri).await;
        assert_eq!(body["error"], "channel offline", "{uri}");
    }

    let silent = Faults {
        no_data: true,
        ..Faults::default()
    };
    emulator.set_faults("silent", silent).expect("valid faults");
    let (session, playlist) = open(&emulator, "silent").await;
    let text = playlist_text(&emulator, &playlist)
        .await
        .expect("a playlist");
    assert_eq!(listed(&text), (0, Vec::new()));
    let segment = format!("/ace/c/{session}/0.ts");
    assert_eq!(fetch(&emulator, &segment).await.0, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn sequence_faults_show_in_the_served_playlist() {
    let emulator = emulator(Duration::from_secs(10));
    let faults = Faults {
        sequence_jump_by: Some(40),
        ..Faults::default()
    };
    emulator.set_faults("jumpy", faults).expect("valid faults");
    let (session, playlist) = open(&emulator, "jumpy").await;
    let (sequence, uris) = listed(&playlist_text(&emulator, &playlist).await.expect("ok"));
    assert_eq!(sequence, 40);
    assert_eq!(uris[0], format!("/ace/c/{session}/40.ts"));
    let (status, _, body) = fetch(&emulator, &uris[0]).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        body,
        emulator.shared.hls.bytes(&emulator.shared.hls.segment(40))
    );
    let skipped = format!("/ace/c/{session}/0.ts");
    assert_eq!(fetch(&emulator, &skipped).await.0, StatusCode::NOT_FOUND);

    // A stalled playlist keeps serving its frozen window.
    let stalled = Faults {
        playlist_stall_after: Some(Duration::ZERO),
        sequence_reset_after: Some(Duration::ZERO),
        ..Faults::default()
    };
    emulator.set_faults("stuck", stalled).expect("valid faults");
    let (session, playlist) = open(&emulator, "stuck").await;
    let view = session_view(&emulator, &session);
    let later = session_window(
        &emulator.shared,
        &view,
        view.started + Duration::from_secs(60),
    );
    assert_eq!(later, Window { first: 0, end: 5 });
    let (sequence, uris) = listed(&playlist_text(&emulator, &playlist).await.expect("ok"));
    assert_eq!((sequence, uris.len()), (0, 5));
    assert_eq!(fetch(&emulator, &uris[4]).await.0, StatusCode::OK);
}

#[tokio::test]
async fn direct_manifest_requests_reuse_one_session_per_pid() {
    let emulator = emulator(Duration::from_secs(2));
    let direct = |pid: &str| format!("/ace/manifest.m3u8?id=abc&pid={pid}");
    let first = playlist_text(&emulator, &direct("1"))
        .await
        .expect("a playlist");
    let again = playlist_text(&emulator, &direct("1"))
        .await
        .expect("a playlist");
    let (_, uris) = listed(&first);
    assert_eq!(listed(&again).1[0], uris[0]);
    let session = uris[0]
        .strip_prefix("/ace/c/")
        .and_then(|rest| rest.split('/').next())
        .expect("a session in the URI")
        .to_owned();
    assert_eq!(fetch(&emulator, &uris[0]).await.0, StatusCode::OK);
    let other = playlist_text(&emulator, &direct("2"))
        .await
        .expect("a playlist");
    assert_ne!(listed(&other).1[0], uris[0]);
    assert_eq!(emulator.stats().contents["abc"].sessions_started, 2);
    assert_eq!(emulator.stats().contents["abc"].playlist_requests, 3);
    // Once stopped, the next direct request opens a new session.
    json(&emulator, &format!("/ace/cmd/{session}?method=stop")).await;
    let renewed = playlist_text(&emulator, &direct("1"))
        .await
        .expect("a playlist");
    assert!(!renewed.contains(&session));
    assert_eq!(emulator.stats().contents["abc"].sessions_started, 3);
    let long_pid = direct(&"p".repeat(300));
    assert_eq!(json(&emulator, &long_pid).await["error"], "invalid pid");
}

#[tokio::test]
async fn the_control_route_sets_and_validates_hls_knobs() {
    let emulator = emulator(Duration::from_secs(2));
    let put = |body: &'static str| {
        let request = Request::put("/control/faults/abc")
            .body(Body::from(body))
            .expect("valid request");
        emulator.router().oneshot(request)
    };
    let good = put(r#"{"playlist_delay": "1s", "segment_404_every": 4, "sequence_jump_by": 7}"#);
    assert_eq!(good.await.expect("infallible").status(), StatusCode::OK);
    let faults = json(&emulator, "/control/faults/abc").await;
    assert_eq!(faults["playlist_delay"], "1s");
    assert_eq!(faults["segment_404_every"], 4);
    assert_eq!(faults["sequence_jump_by"], 7);
    for bad in [
        r#"{"segment_404_every": 0}"#,
        r#"{"sequence_jump_by": 0}"#,
        r#"{"sequence_reset_after": "2days"}"#,
    ] {
        let status = put(bad).await.expect("infallible").status();
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{bad}");
    }
}
