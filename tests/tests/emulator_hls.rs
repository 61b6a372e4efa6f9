//! The engine emulator's live HLS over real sockets: a session from
//! `manifest.m3u8?format=json`, a playlist that ffmpeg follows live and decodes
//! without an error, segments that ffprobe identifies, stop, and stats.

use std::time::Duration;

use acemux::net::{Net, TokioNet};
use acemux_testkit::emulator::{Emulator, EmulatorConfig, RunningEmulator};
use acemux_tests::{run_tool_ok, Client};
use hyper::StatusCode;
use serde_json::Value;
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

/// `manifest.m3u8?format=json` for `content_id`: the `response` of the envelope.
async fn manifest(engine: &RunningEmulator, content_id: &str) -> Value {
    let url = engine.url(&format!(
        "/ace/manifest.m3u8?id={content_id}&format=json&pid=1"
    ));
    let (status, body) = Client::new().get(&url).await.expect("manifest");
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["error"], Value::Null, "{body}");
    body["response"].clone()
}

/// The playlist text at `url` and its media sequence.
async fn playlist(url: &str) -> (String, u64) {
    let (status, body) = Client::new().get(url).await.expect("playlist");
    assert_eq!(status, StatusCode::OK, "{body}");
    let text = body.as_str().expect("text").to_owned();
    let sequence = text
        .lines()
        .find_map(|line| line.strip_prefix("#EXT-X-MEDIA-SEQUENCE:"))
        .and_then(|value| value.parse().ok())
        .expect("a media sequence");
    (text, sequence)
}

/// Runs a tool without blocking the emulator's runtime: (stdout, stderr), failing
/// the test unless it exits 0 in time.
#[tokio::test]
async fn ffmpeg_follows_the_live_playlist_and_decodes_without_error() {
    let emulator = Emulator::new(EmulatorConfig::default());
    let engine = start(&emulator).await;
    let session = manifest(&engine, "live").await;
    let playback_url = session["playback_url"].as_str().expect("playback_url");
    let id = session["playback_session_id"].as_str().expect("session id");
    assert_eq!(playback_url, engine.url(&format!("/ace/m/{id}.m3u8")));
    assert_eq!(session["is_live"], 1);

    let (text, sequence) = playlist(playback_url).await;
    assert_eq!(sequence, 0, "a new channel starts at segment 0");
    assert!(text.starts_with("#EXTM3U\n#EXT-X-VERSION:3\n#EXT-X-TARGETDURATION:2\n"));
    assert!(text.contains(&format!("#EXTINF:2.000000,\n{}", engine.url("/ace/c/"))));

    // 8 s of media from a playlist that holds 2 s at first: ffmpeg has to reload
    // it as the live edge moves on, and crosses the media's loop seam at 8 s.
    let started = Instant::now();
    let (_, errors) = run_tool_ok(
        "ffmpeg",
        &[
            "-nostdin",
            "-v",
            "error",
            "-t",
            "8",
            "-i",
            playback_url,
            "-f",
            "null",
            "-",
        ],
    )
    .await;
    assert_eq!(errors, "", "ffmpeg reported errors");
    assert!(
        started.elapsed() >= Duration::from_secs(4),
        "live: ffmpeg waited for segments ({:?})",
        started.elapsed()
    );
    let (text, _) = playlist(playback_url).await;
    let listed = text.matches("#EXTINF:").count();
    assert!(listed >= 4, "the live edge moved on: {text}");

    let (streams, errors) =
        run_tool_ok("ffprobe", &["-v", "error", "-show_streams", playback_url]).await;
    assert_eq!(errors, "", "ffprobe reported errors");
    assert!(streams.contains("codec_name=h264"), "{streams}");
    assert!(streams.contains("codec_name=aac"), "{streams}");

    let stats = engine.emulator().stats();
    let counters = &stats.contents["live"].sessions[id];
    assert!(counters.playlist_requests >= 3, "{counters:?}");
    assert!(counters.segment_requests >= 4, "{counters:?}");
    assert_eq!(counters.segments_not_found, 0, "{counters:?}");
    assert!(counters.bytes_sent > 1_000_000, "{counters:?}");

    // Stopped: the playlist and its segments are gone.
    let command_url = session["command_url"].as_str().expect("command_url");
    let client = Client::new();
    let (status, _) = client
        .get(&format!("{command_url}?method=stop"))
        .await
        .expect("stop");
    assert_eq!(status, StatusCode::OK);
    let (status, _) = client.get(playback_url).await.expect("playlist");
    assert_eq!(status, StatusCode::NOT_FOUND);
    let segment = engine.url(&format!("/ace/c/{id}/0.ts"));
    let (status, _) = client.get(&segment).await.expect("segment");
    assert_eq!(status, StatusCode::NOT_FOUND);
    engine.shutdown().await;
}

#[tokio::test]
async fn a_player_reloading_the_direct_manifest_url_stays_in_one_session() {
    let emulator = Emulator::new(EmulatorConfig::default());
    let engine = start(&emulator).await;
    let url = engine.url("/ace/manifest.m3u8?id=direct&pid=9");
    let (_, errors) = run_tool_ok(
        "ffmpeg",
        &[
            "-nostdin", "-v", "error", "-t", "4", "-i", &url, "-f", "null", "-",
        ],
    )
    .await;
    assert_eq!(errors, "", "ffmpeg reported errors");
    let stats = engine.emulator().stats();
    let content = &stats.contents["direct"];
    assert_eq!(content.sessions_started, 1, "{content:?}");
    assert!(content.playlist_requests >= 2, "{content:?}");
    assert!(content.segment_requests >= 2, "{content:?}");
    assert_eq!(content.segments_not_found, 0, "{content:?}");
    engine.shutdown().await;
}
