//! The engine emulator over real sockets: the engine API, byte-exact paced playback
//! that ffprobe/ffmpeg decode across the loop seam, stop, faults and stats.

use std::time::Duration;

use acemux::net::{http_client, HttpClient, Net, TokioNet};
use acemux_core::ts::packets;
use acemux_core::ts::restamp::timestamps;
use acemux_testkit::emulator::{
    Emulator, EmulatorConfig, EmulatorStats, Faults, RunningEmulator, OFFSET_HEADER,
};
use acemux_tests::{run_tool_ok, Client};
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::{Request, Response, StatusCode};
use serde_json::{json, Value};
use tokio::time::Instant;

async fn start(emulator: &Emulator) -> RunningEmulator {
    let listener = TokioNet
        .bind(
            "127.0.0.1:0".parse().expect("address"),
            acemux::net::DEFAULT_BACKLOG,
        )
        .await
        .expect("bind");
    emulator.spawn(listener).expect("serve")
}

/// `getstream` for `content_id`: the `response` object of the envelope.
async fn getstream(engine: &RunningEmulator, content_id: &str) -> Value {
    let url = engine.url(&format!("/ace/getstream?id={content_id}&format=json&pid=1"));
    let (status, body) = Client::new().get(&url).await.expect("getstream");
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["error"], Value::Null, "{body}");
    body["response"].clone()
}

async fn open_playback(client: &HttpClient<TokioNet>, url: &str) -> Response<Incoming> {
    let request = Request::get(url)
        .body(Full::new(Bytes::new()))
        .expect("request");
    client.request(request).await.expect("playback response")
}

/// Reads `body` for `duration`: the bytes, and how many had arrived after each
/// whole second.
async fn read_for(body: &mut Incoming, duration: Duration) -> (Vec<u8>, Vec<usize>) {
    let started = Instant::now();
    let deadline = started + duration;
    let mut bytes = Vec::new();
    let mut per_second = Vec::new();
    while let Ok(frame) = tokio::time::timeout_at(deadline, body.frame()).await {
        let frame = frame.expect("the body goes on").expect("no body error");
        if let Ok(data) = frame.into_data() {
            bytes.extend_from_slice(&data);
        }
        while started.elapsed() >= Duration::from_secs(per_second.len() as u64 + 1) {
            per_second.push(bytes.len());
        }
    }
    (bytes, per_second)
}

async fn stats(engine: &RunningEmulator) -> EmulatorStats {
    let (status, body) = Client::new()
        .get(&engine.url("/control/stats"))
        .await
        .expect("stats");
    assert_eq!(status, StatusCode::OK);
    serde_json::from_value(body).expect("stats JSON")
}

#[tokio::test]
async fn playback_is_the_media_loop_paced_and_decodes_across_the_seam() {
    let emulator = Emulator::new(EmulatorConfig::default());
    let media = emulator.media().clone();
    // Twice the media's rate: 6 s of reading cover 4 s of prebuffer burst and 12 s
    // of paced media, across the seam of the 8 s loop.
    let rate_bps = 2 * media.bitrate_bps();
    let faults = Faults {
        bitrate_bps: Some(rate_bps),
        ..Faults::default()
    };
    emulator.set_faults("seam", faults).expect("valid faults");
    let engine = start(&emulator).await;
    let session = getstream(&engine, "seam").await;
    let playback_url = session["playback_url"].as_str().expect("playback_url");
    assert!(
        playback_url.starts_with(&engine.url("/ace/r/")),
        "{playback_url}"
    );

    let client = http_client(TokioNet);
    let response = open_playback(&client, playback_url).await;
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(response.headers()["content-type"], "video/mp2t");
    let offset: u64 = response.headers()[OFFSET_HEADER]
        .to_str()
        .expect("ASCII")
        .parse()
        .expect("a number");
    assert_eq!(
        offset, 0,
        "the channel's first viewer starts at its first byte"
    );
    let mut body = response.into_body();
    let (bytes, per_second) = read_for(&mut body, Duration::from_secs(6)).await;
    drop(body);

    // Byte for byte what MediaLoop says, past the end of the first loop.
    assert!(bytes.len() as u64 > media.loop_len_bytes() + 100_000);
    assert!(
        bytes == media.read(offset, bytes.len()),
        "bytes differ from MediaLoop"
    );

    // Paced: the 2 s prebuffer at once, then the rate (generous margins).
    let bytes_per_second = (rate_bps / 8) as usize;
    let burst = 2 * bytes_per_second;
    assert!(per_second[0] >= burst, "burst {} < {burst}", per_second[0]);
    assert!(per_second[0] <= burst + 2 * bytes_per_second);
    let total = bytes.len();
    assert!(
        total >= burst + 9 * bytes_per_second / 2,
        "too slow: {total}"
    );
    assert!(
        total <= burst + 13 * bytes_per_second / 2,
        "too fast: {total}"
    );

    // Cut at an entry point so that no frame is truncated, then decode it.
    let complete = media.entry_point(offset + bytes.len() as u64) - offset;
    assert!(complete > media.loop_len_bytes(), "the seam is in the file");
    let dir = tempfile::tempdir().expect("temp dir");
    let file = dir.path().join("playback.ts");
    std::fs::write(&file, &bytes[..complete as usize]).expect("write");
    let path = file.to_str().expect("UTF-8 path");
    // Warnings too: a repeated continuity counter or a timestamp jump at the seam
    // is only a warning ("Packet corrupt", "Non-monotonous DTS").
    let (streams, errors) = run_tool_ok(
        "ffprobe",
        &["-v", "warning", "-show_streams", "-show_format", path],
    )
    .await;
    assert_eq!(errors, "", "ffprobe reported problems");
    assert!(streams.contains("codec_name=h264"), "{streams}");
    assert!(streams.contains("codec_name=aac"), "{streams}");
    let duration: f64 = streams
        .lines()
        .filter_map(|line| line.strip_prefix("duration="))
        .filter_map(|value| value.parse().ok())
        .fold(0.0, f64::max);
    assert!(
        duration > 9.0,
        "continuous timestamps past the seam: {duration}"
    );
    let (_, errors) =
        run_tool_ok("ffmpeg", &["-v", "warning", "-i", path, "-f", "null", "-"]).await;
    assert_eq!(errors, "", "ffmpeg reported decode problems");
    engine.shutdown().await;
}

#[tokio::test]
async fn stop_via_command_url_ends_playback_and_is_counted_once() {
    let emulator = Emulator::new(EmulatorConfig::default());
    let engine = start(&emulator).await;
    let session = getstream(&engine, "stopme").await;
    let playback_url = session["playback_url"].as_str().expect("playback_url");
    let command_url = session["command_url"].as_str().expect("command_url");
    let client = http_client(TokioNet);
    let mut body = open_playback(&client, playback_url).await.into_body();
    let (bytes, _) = read_for(&mut body, Duration::from_millis(300)).await;
    assert!(!bytes.is_empty());
    assert_eq!(stats(&engine).await.contents["stopme"].active_playbacks, 1);

    let (status, answer) = Client::new()
        .get(&format!("{command_url}?method=stop"))
        .await
        .expect("stop");
    assert_eq!(
        (status, answer),
        (StatusCode::OK, json!({ "response": "ok", "error": null }))
    );
    let ended = tokio::time::timeout(Duration::from_secs(5), async {
        while let Some(frame) = body.frame().await {
            frame.expect("a clean end");
        }
    });
    ended.await.expect("the playback ends after stop");

    let later = open_playback(&client, playback_url).await;
    assert_eq!(later.status(), StatusCode::NOT_FOUND);
    let stats = stats(&engine).await;
    let content = &stats.contents["stopme"];
    assert_eq!(content.sessions_started, 1);
    assert_eq!(content.sessions_stopped, 1);
    assert_eq!(content.active_playbacks, 0);
    let session_id = session["playback_session_id"].as_str().expect("id");
    assert_eq!(content.sessions[session_id].stop_commands, 1);
    engine.shutdown().await;
}

#[tokio::test]
async fn refused_content_gets_the_error_envelope() {
    let emulator = Emulator::new(EmulatorConfig::default());
    let engine = start(&emulator).await;
    let client = Client::new();
    let body = json!({ "refuse": "content is offline" }).to_string();
    let (status, _) = client
        .send(
            hyper::Method::PUT,
            &engine.url("/control/faults/offline"),
            &[("content-type", "application/json")],
            Some(body.into_bytes()),
        )
        .await
        .expect("put faults");
    assert_eq!(status, StatusCode::OK);
    let url = engine.url("/ace/getstream?id=offline&format=json");
    let (status, answer) = client.get(&url).await.expect("getstream");
    assert_eq!(
        (status, answer),
        (
            StatusCode::OK,
            json!({ "response": null, "error": "content is offline" })
        )
    );
    assert_eq!(stats(&engine).await.contents.get("offline"), None);
    engine.shutdown().await;
}

#[tokio::test]
async fn an_abrupt_close_cuts_the_connection_after_that_many_bytes() {
    let emulator = Emulator::new(EmulatorConfig::default());
    let faults = Faults {
        close_abruptly_after_bytes: Some(50_000),
        ..Faults::default()
    };
    emulator.set_faults("flaky", faults).expect("valid faults");
    let engine = start(&emulator).await;
    let session = getstream(&engine, "flaky").await;
    let client = http_client(TokioNet);
    let playback_url = session["playback_url"].as_str().expect("playback_url");
    let mut body = open_playback(&client, playback_url).await.into_body();
    let mut received = 0;
    let outcome = tokio::time::timeout(Duration::from_secs(5), async {
        while let Some(frame) = body.frame().await {
            match frame {
                Ok(frame) => received += frame.into_data().map_or(0, |data| data.len()),
                Err(error) => return Err(error),
            }
        }
        Ok(())
    })
    .await
    .expect("the connection ends");
    assert!(outcome.is_err(), "the body must not end cleanly");
    assert_eq!(received, 50_000);
    engine.shutdown().await;
}

#[tokio::test]
async fn a_clean_cut_ends_the_body_after_that_many_bytes() {
    let emulator = Emulator::new(EmulatorConfig::default());
    let faults = Faults {
        cut_after_bytes: Some(50_000),
        ..Faults::default()
    };
    emulator.set_faults("short", faults).expect("valid faults");
    let engine = start(&emulator).await;
    let session = getstream(&engine, "short").await;
    let client = http_client(TokioNet);
    let playback_url = session["playback_url"].as_str().expect("playback_url");
    let body = open_playback(&client, playback_url).await.into_body();
    let bytes = tokio::time::timeout(Duration::from_secs(5), body.collect())
        .await
        .expect("the body ends")
        .expect("cleanly")
        .to_bytes();
    assert_eq!(bytes, emulator.media().read(0, 50_000));
    engine.shutdown().await;
}

#[tokio::test]
async fn the_stream_decodes_cleanly_where_timestamps_wrap() {
    let media = Emulator::new(EmulatorConfig::default()).media().clone();
    // PTS wrap at 2^33 ticks of 90 kHz (about 26.5 h of loops): start in the last loop
    // before the wrap and read two loops.
    let wrap_loop = (1u64 << 33) / media.loop_duration_ticks();
    let start = media.entry_point(wrap_loop * media.loop_len_bytes());
    let end = media.entry_point(start + 2 * media.loop_len_bytes());
    let bytes = media.read(start, (end - start) as usize);
    let pts: Vec<u64> = packets(&bytes)
        .filter_map(|packet| timestamps(packet.bytes()).pts)
        .collect();
    assert!(pts.first() > Some(&(1u64 << 32)) && pts.iter().any(|&pts| pts < 1 << 32));
    let dir = tempfile::tempdir().expect("temp dir");
    let file = dir.path().join("wrap.ts");
    std::fs::write(&file, &bytes).expect("write");
    let path = file.to_str().expect("UTF-8 path");
    let (_, errors) =
        run_tool_ok("ffmpeg", &["-v", "warning", "-i", path, "-f", "null", "-"]).await;
    assert_eq!(errors, "", "ffmpeg reported decode problems");
}
