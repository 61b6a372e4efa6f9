//! Hostile engines against a real acemux over loopback: bad session envelopes, playback
//! URLs pointing elsewhere, non-TS bytes, broken sync bytes, bad playlists, endless
//! bodies, zero and giant segments, redirect loops. Each ends in its defined answer
//! (a JSON error, or media with the bad parts dropped, counted in a metric); acemux
//! keeps answering `/health` at once, and nothing is ever fetched from anywhere but the
//! configured engine: a recorder on another port sees no request at all.

use std::sync::Arc;
use std::time::Duration;

use acemux_core::channel::ChannelConfig;
use acemux_core::ts::{PACKET_LEN, SYNC_BYTE};
use acemux_tests::hostile_engine::{session_envelope, Answer, HostileEngine};
use acemux_tests::hostile_rig::{
    assert_error, assert_healthy, get, get_watching, metric, param, rig, ts_media,
};
use acemux_tests::proxy::{open, read_at_least, viewer_client, without_nulls};
use acemux_tests::{eventually, Client};
use bytes::Bytes;
use hyper::{Method, StatusCode};
use serde_json::json;

#[tokio::test]
async fn bad_session_envelopes_are_502_engine_errors() {
    let cases: Vec<(&str, &str, &str)> = vec![
        ("html", "<html>not json</html>", "invalid engine answer"),
        ("empty", "", "invalid engine answer"),
        ("array", "[]", "neither a session nor an error"),
        (
            "wrong_types",
            r#"{"response": {"playback_url": 5}}"#,
            "invalid engine answer",
        ),
        (
            "refused",
            r#"{"response": null, "error": "content not found"}"#,
            "content not found",
        ),
        (
            "null",
            r#"{"response": null}"#,
            "neither a session nor an error",
        ),
        (
            "both_null",
            r#"{"response": null, "error": null}"#,
            "neither a session nor an error",
        ),
        (
            "empty_error",
            r#"{"response": null, "error": ""}"#,
            "neither a session nor an error",
        ),
    ];
    let answers: Arc<Vec<(String, String)>> = Arc::new(
        cases
            .iter()
            .map(|(id, body, _)| (id.to_string(), body.to_string()))
            .collect(),
    );
    let engine = HostileEngine::start(move |hit| {
        let id = param(hit, "id");
        match answers.iter().find(|(case, _)| case == id) {
            Some((_, body)) => Answer::body(200, "application/json", body.clone()),
            None => Answer::body(404, "text/plain", "unknown"),
        }
    })
    .await;
    let rig = rig(&engine).await;
    for (id, _, message) in &cases {
        let answer = get(&rig, &format!("/ace/getstream?id={id}")).await;
        assert_error(&answer, StatusCode::BAD_GATEWAY, "engine_error");
        let text = answer.1["message"].as_str().unwrap_or_default();
        assert!(text.contains(message), "{id}: {text}");
    }
    // The configured number of session attempts per case, and no playback was ever
    // opened.
    let attempts = ChannelConfig::default().session_attempts as usize;
    assert_eq!(engine.hits_on("/ace/getstream"), cases.len() * attempts);
    assert_eq!(engine.hits().len(), cases.len() * attempts);
    assert_eq!(
        metric(&rig, "acemux_events_total{type=\"stream_started\"}"),
        0.0
    );
    assert_healthy(&rig).await;
    rig.shutdown().await;
}

#[tokio::test]
async fn odd_playback_urls_are_only_ever_fetched_from_the_engine() {
    let elsewhere = HostileEngine::recorder().await;
    let other = elsewhere.base();
    let media = ts_media(2000);
    let engine = HostileEngine::start(move |hit| match (hit.path.as_str(), param(hit, "id")) {
        ("/ace/getstream", "elsewhere") => {
            Answer::Json(session_envelope(&other, &format!("{other}/play/elsewhere")))
        }
        ("/ace/getstream", "file") => Answer::Json(session_envelope(&other, "file:///etc/passwd")),
        ("/ace/getstream", "relative") => Answer::Json(session_envelope(&other, "play/relative")),
        ("/ace/getstream", "garbage") => Answer::Json(session_envelope(&other, "http://[::1")),
        ("/ace/getstream", "empty") => Answer::Json(session_envelope(&other, "")),
        ("/play/elsewhere", _) => Answer::body(200, "video/mp2t", media.clone()),
        _ => Answer::ok(),
    })
    .await;
    let rig = rig(&engine).await;
    // An engine that names another host is read at its own address (engines often
    // report an address only they can reach), never at the one it named.
    let client = viewer_client();
    let (status, mut body) = open(&client, &rig.stream_url("elsewhere")).await;
    assert_eq!(status, StatusCode::OK);
    let bytes = read_at_least(&mut body, 64 * 1024, Duration::from_secs(5)).await;
    assert!(bytes.len() >= 64 * 1024, "got {} bytes", bytes.len());
    drop(body);
    assert!(engine.hits_on("/play/elsewhere") >= 1);
    for id in ["file", "relative", "garbage", "empty"] {
        let answer = get(&rig, &format!("/ace/getstream?id={id}")).await;
        assert_error(&answer, StatusCode::BAD_GATEWAY, "engine_error");
    }
    assert_healthy(&rig).await;
    // Shutdown stops the session through its command URL: on the engine too.
    rig.shutdown().await;
    assert!(
        engine.hits_on("/ace/cmd/hostile") >= 1,
        "{:?}",
        engine.hits()
    );
    assert_eq!(
        elsewhere.hits(),
        Vec::new(),
        "acemux fetched a URL off the engine"
    );
}

#[tokio::test]
async fn non_ts_bytes_are_discarded_and_the_viewer_gets_504() {
    let engine = HostileEngine::start(|hit| match hit.path.as_str() {
        "/ace/getstream" => Answer::Json(session_envelope("http://e", "http://e/play/html")),
        "/play/html" => Answer::Endless {
            content_type: "text/html",
            chunk: Bytes::from("<html><body>no media here</body></html>\n".repeat(100)),
            every: Duration::from_millis(20),
        },
        _ => Answer::ok(),
    })
    .await;
    let rig = rig(&engine).await;
    let (answer, discarded) = get_watching(
        &rig,
        "/ace/getstream?id=html",
        &["acemux_ts_discarded_bytes_total{channel=\"content_id:html\"}".into()],
    )
    .await;
    assert_error(&answer, StatusCode::GATEWAY_TIMEOUT, "engine_timeout");
    assert!(discarded[0] > 0.0, "discarded bytes counted while it ran");
    // Junk is not media: no stream was registered as started.
    assert_eq!(
        metric(&rig, "acemux_events_total{type=\"stream_started\"}"),
        0.0
    );
    assert_healthy(&rig).await;
    rig.shutdown().await;
}

#[tokio::test]
async fn packets_with_broken_sync_bytes_are_dropped_and_the_rest_is_served() {
    let mut media = ts_media(600).to_vec();
    for packet in media.chunks_mut(PACKET_LEN).skip(3).step_by(7) {
        packet[0] = 0x00;
    }
    let media = Bytes::from(media);
    let engine = HostileEngine::start(move |hit| match hit.path.as_str() {
        "/ace/getstream" => Answer::Json(session_envelope("http://e", "http://e/play/broken")),
        "/play/broken" => Answer::Endless {
            content_type: "video/mp2t",
            chunk: media.clone(),
            every: Duration::from_millis(100),
        },
        _ => Answer::ok(),
    })
    .await;
    let rig = rig(&engine).await;
    let client = viewer_client();
    let (status, mut body) = open(&client, &rig.stream_url("broken")).await;
    assert_eq!(status, StatusCode::OK);
    let bytes = read_at_least(&mut body, 100 * PACKET_LEN, Duration::from_secs(5)).await;
    let clean = without_nulls(&bytes[..bytes.len() / PACKET_LEN * PACKET_LEN]);
    assert!(clean.len() >= 50 * PACKET_LEN, "got {} bytes", clean.len());
    assert!(
        bytes
            .chunks_exact(PACKET_LEN)
            .all(|packet| packet[0] == SYNC_BYTE),
        "a packet without a sync byte reached the viewer"
    );
    assert!(
        metric(
            &rig,
            "acemux_ts_discarded_bytes_total{channel=\"content_id:broken\"}"
        ) > 0.0
    );
    drop(body);
    assert_healthy(&rig).await;
    rig.shutdown().await;
}

/// An engine whose HLS session playlist is `playlist(id)`, with valid TS segments
/// under `/seg/`.
async fn hls_engine(playlist: impl Fn(&str) -> Answer + Send + Sync + 'static) -> HostileEngine {
    let segment = ts_media(500);
    HostileEngine::start(move |hit| {
        let path = hit.path.as_str();
        if path == "/ace/manifest.m3u8" {
            let id = param(hit, "id");
            Answer::Json(session_envelope(
                "http://e",
                &format!("http://e/hls/{id}.m3u8"),
            ))
        } else if let Some(id) = path
            .strip_prefix("/hls/")
            .and_then(|p| p.strip_suffix(".m3u8"))
        {
            playlist(id)
        } else if path.starts_with("/seg/good") {
            Answer::body(200, "video/mp2t", segment.clone())
        } else if path.starts_with("/seg/empty") {
            Answer::body(200, "video/mp2t", Bytes::new())
        } else if path.starts_with("/seg/giant") {
            Answer::Endless {
                content_type: "video/mp2t",
                chunk: Bytes::from(vec![0x47; 64 * 1024]),
                every: Duration::from_millis(1),
            }
        } else {
            Answer::ok()
        }
    })
    .await
}

fn m3u8(body: &str) -> Answer {
    Answer::body(200, "application/vnd.apple.mpegurl", body.to_owned())
}

#[tokio::test]
async fn playlists_with_bad_durations_never_serve_and_end_in_504() {
    let cases = [
        ("missing", "#EXTINF:,\n"),
        ("negative", "#EXTINF:-4.0,\n"),
        ("nan", "#EXTINF:NaN,\n"),
        ("inf", "#EXTINF:inf,\n"),
        ("huge", "#EXTINF:1e308,\n"),
        ("overflow", "#EXTINF:99999999999999999999999,\n"),
    ];
    let engine = hls_engine(move |id| {
        let extinf = cases
            .iter()
            .find(|(case, _)| *case == id)
            .map(|(_, extinf)| *extinf)
            .unwrap_or("#EXTINF:2.0,\n");
        m3u8(&format!(
            "#EXTM3U\n#EXT-X-VERSION:3\n#EXT-X-TARGETDURATION:2\n#EXT-X-MEDIA-SEQUENCE:1\n{extinf}/seg/good1.ts\n"
        ))
    })
    .await;
    let rig = rig(&engine).await;
    // Each case waits out the start timeout: all at once.
    let errors_of =
        |id: &str| format!("acemux_hls_playlist_errors_total{{channel=\"hls:content_id:{id}\"}}");
    let answers = futures::future::join_all(cases.iter().map(|(id, _)| {
        let samples = [errors_of(id)];
        let path = format!("/ace/manifest.m3u8?id={id}");
        let rig = &rig;
        async move { get_watching(rig, &path, &samples).await }
    }))
    .await;
    for ((id, _), (answer, errors)) in cases.iter().zip(&answers) {
        assert_error(answer, StatusCode::GATEWAY_TIMEOUT, "engine_timeout");
        assert!(
            errors[0] >= 1.0,
            "{id}: {} playlist errors counted",
            errors[0]
        );
    }
    assert_eq!(
        engine.hits_on("/seg/"),
        0,
        "a segment of an invalid playlist was fetched"
    );
    assert_healthy(&rig).await;
    rig.shutdown().await;
}

#[tokio::test]
async fn playlist_uris_on_another_origin_are_fetched_from_the_engine_only() {
    let elsewhere = HostileEngine::recorder().await;
    let other = elsewhere.base();
    let engine = hls_engine(move |_| {
        m3u8(&format!(
            "#EXTM3U\n#EXT-X-VERSION:3\n#EXT-X-TARGETDURATION:2\n#EXT-X-MEDIA-SEQUENCE:1\n#EXTINF:2.0,\n{other}/seg/good1.ts\n"
        ))
    })
    .await;
    let rig = rig(&engine).await;
    let (status, playlist) = get(&rig, "/ace/manifest.m3u8?id=elsewhere").await;
    assert_eq!(status, StatusCode::OK, "{playlist}");
    assert!(engine.hits_on("/seg/good1.ts") >= 1);
    assert_healthy(&rig).await;
    rig.shutdown().await;
    assert_eq!(
        elsewhere.hits(),
        Vec::new(),
        "a segment was fetched off the engine"
    );
}

#[tokio::test]
async fn endless_playlists_are_cut_at_their_bound() {
    let engine = hls_engine(|id| Answer::Endless {
        content_type: "application/vnd.apple.mpegurl",
        chunk: Bytes::from(match id {
            "lines" => "#EXTINF:2.0,\n/seg/good.ts\n".repeat(2000),
            _ => "a".repeat(64 * 1024),
        }),
        every: Duration::from_millis(1),
    })
    .await;
    let rig = rig(&engine).await;
    for id in ["lines", "one_line"] {
        let (answer, errors) = get_watching(
            &rig,
            &format!("/ace/manifest.m3u8?id={id}"),
            &[format!(
                "acemux_hls_playlist_errors_total{{channel=\"hls:content_id:{id}\"}}"
            )],
        )
        .await;
        assert_error(&answer, StatusCode::GATEWAY_TIMEOUT, "engine_timeout");
        assert!(
            errors[0] >= 1.0,
            "{id}: {} playlist errors counted",
            errors[0]
        );
    }
    assert_healthy(&rig).await;
    rig.shutdown().await;
}

#[tokio::test]
async fn zero_and_giant_segments_become_a_discontinuity() {
    let engine = hls_engine(|_| {
        m3u8("#EXTM3U\n#EXT-X-VERSION:3\n#EXT-X-TARGETDURATION:2\n#EXT-X-MEDIA-SEQUENCE:1\n#EXTINF:2.0,\n/seg/good1.ts\n#EXTINF:2.0,\n/seg/empty.ts\n#EXTINF:2.0,\n/seg/giant.ts\n#EXTINF:2.0,\n/seg/good2.ts\n")
    })
    .await;
    let rig = rig(&engine).await;
    let url = rig.url("/ace/manifest.m3u8?id=gaps");
    let client = Client::new();
    let served = eventually(Duration::from_secs(8), || {
        let client = client.clone();
        let url = url.clone();
        async move {
            let (status, playlist) = client.get(&url).await.expect("answer");
            let text = playlist.as_str().unwrap_or_default();
            status == StatusCode::OK
                && text.matches("/ace/hls/").count() == 2
                && text.contains("#EXT-X-DISCONTINUITY")
        }
    })
    .await;
    let (_, last) = client.get(&url).await.expect("answer");
    assert!(served, "never served both good segments with a gap: {last}");
    assert!(
        metric(&rig, "acemux_limit_hits_total{limit=\"hls_segment_bytes\"}") >= 1.0,
        "the giant segment was not cut at its bound"
    );
    assert_healthy(&rig).await;
    rig.shutdown().await;
}

#[tokio::test]
async fn redirects_are_never_followed() {
    let elsewhere = HostileEngine::recorder().await;
    let other = elsewhere.base();
    let engine = HostileEngine::start(move |hit| match (hit.path.as_str(), param(hit, "id")) {
        // A session request that redirects to a loop.
        ("/ace/getstream", "loop") => Answer::Redirect(format!("/ace/loop?{}", hit.query)),
        ("/ace/loop", _) => Answer::Redirect(format!("/ace/loop?{}", hit.query)),
        ("/ace/getstream", "away") => {
            Answer::Json(session_envelope("http://e", "http://e/play/away"))
        }
        ("/play/away", _) => Answer::Redirect(format!("{other}/play/stolen")),
        ("/ace/manifest.m3u8", _) => {
            Answer::Json(session_envelope("http://e", "http://e/hls/away.m3u8"))
        }
        ("/hls/away.m3u8", _) => Answer::Redirect(format!("{other}/hls/stolen.m3u8")),
        _ => Answer::ok(),
    })
    .await;
    let rig = rig(&engine).await;
    let answer = get(&rig, "/ace/getstream?id=loop").await;
    assert_error(&answer, StatusCode::BAD_GATEWAY, "engine_error");
    assert_eq!(engine.hits_on("/ace/loop"), 0, "the redirect was followed");
    let attempts = ChannelConfig::default().session_attempts as usize;
    assert_eq!(engine.hits_on("/ace/getstream"), attempts);
    let answer = get(&rig, "/ace/getstream?id=away").await;
    assert_error(&answer, StatusCode::GATEWAY_TIMEOUT, "engine_timeout");
    let answer = get(&rig, "/ace/manifest.m3u8?id=away").await;
    assert_error(&answer, StatusCode::GATEWAY_TIMEOUT, "engine_timeout");
    assert_healthy(&rig).await;
    rig.shutdown().await;
    assert_eq!(
        elsewhere.hits(),
        Vec::new(),
        "a redirect was followed off the engine"
    );
}

#[tokio::test]
async fn urls_supplied_by_clients_are_never_fetched() {
    let target = HostileEngine::recorder().await;
    let url = format!("{}/stolen", target.base());
    let authority = url
        .trim_start_matches("http://")
        .split('/')
        .next()
        .unwrap_or_default()
        .to_owned();
    let engine = HostileEngine::start(|hit| match hit.path.as_str() {
        "/ace/getstream" | "/ace/manifest.m3u8" => {
            Answer::Json(r#"{"response": null, "error": "unknown content"}"#.to_owned())
        }
        _ => Answer::ok(),
    })
    .await;
    let rig = rig(&engine).await;
    let client = Client::new();
    let escaped = acemux::engine::percent_encode(&url);
    // In queries and paths.
    for path in [
        format!("/ace/getstream?id={escaped}"),
        format!("/ace/getstream?url={escaped}"),
        format!("/ace/getstream?id=x&url={escaped}&playback_url={escaped}"),
        format!("/ace/manifest.m3u8?infohash={escaped}"),
        format!("/ace/manifest.m3u8?id=x&playlist={escaped}"),
        format!("/ace/hls/1/0.ts?t={escaped}"),
        format!("/ace/hls/{escaped}/0.ts"),
        format!("/streams/{escaped}"),
    ] {
        let (status, answer) = client.get(&rig.url(&path)).await.expect("answer");
        assert!(
            status.is_client_error() || status.is_server_error(),
            "{path}: {status} {answer}"
        );
    }
    let (status, events) = client
        .get(&rig.url(&format!("/events?stream_id={escaped}")))
        .await
        .expect("answer");
    assert_eq!((status, events), (StatusCode::OK, json!([])));
    // In headers.
    let headers = [
        ("host", authority.as_str()),
        ("x-forwarded-host", authority.as_str()),
        ("forwarded", "host=evil"),
        ("referer", url.as_str()),
        ("x-original-url", url.as_str()),
        ("location", url.as_str()),
    ];
    let (status, _) = client
        .send(
            Method::GET,
            &rig.url("/ace/getstream?id=headers"),
            &headers,
            None,
        )
        .await
        .expect("answer");
    assert_eq!(status, StatusCode::BAD_GATEWAY);
    // In event bodies: a stream whose engine, stat and command URLs are the target,
    // then stopped in every way there is.
    let started = json!({
        "container_id": "c1",
        "engine": { "host": "127.0.0.1", "port": target.engine_addr().port },
        "stream": { "key_type": "url", "key": url },
        "session": {
            "playback_session_id": "s1",
            "stat_url": format!("{url}/stat"),
            "command_url": format!("{url}/cmd"),
            "is_live": 1
        },
        "labels": { "callback": url }
    });
    let (status, stream) = client
        .post_json(&rig.url("/events/stream_started"), &started, None)
        .await
        .expect("answer");
    assert_eq!(status, StatusCode::OK, "{stream}");
    let id = stream["id"].as_str().expect("stream id").to_owned();
    let (status, _) = client
        .send(
            Method::DELETE,
            &rig.url(&format!("/streams/{}", acemux::engine::percent_encode(&id))),
            &[],
            None,
        )
        .await
        .expect("answer");
    assert_eq!(status, StatusCode::OK);
    let mut second = started.clone();
    second["session"]["playback_session_id"] = json!("s2");
    let (status, _) = client
        .post_json(&rig.url("/events/stream_started"), &second, None)
        .await
        .expect("answer");
    assert_eq!(status, StatusCode::OK);
    let ended = json!({ "container_id": "c1", "reason": url });
    let (status, answer) = client
        .post_json(&rig.url("/events/stream_ended"), &ended, None)
        .await
        .expect("answer");
    assert_eq!(status, StatusCode::OK, "{answer}");
    assert_healthy(&rig).await;
    rig.shutdown().await;
    assert_eq!(
        target.hits(),
        Vec::new(),
        "acemux fetched a URL a client supplied"
    );
}
