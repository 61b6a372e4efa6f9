//! HLS end to end over real sockets: acemux re-serving the engine emulator's live HLS
//! (`--hls-source engine`), read by real ffmpeg/ffprobe and VLC.

use std::time::Duration;

use acemux::proxy::{HlsSource, ProxyConfig};
use acemux_core::channel::ChannelConfig;
use acemux_testkit::emulator::{EmulatorConfig, Faults};
use acemux_tests::proxy::ProxyRig;
use acemux_tests::{assert_ffmpeg_plays_cleanly, assert_vlc_plays, eventually, ffmpeg, Client};
use futures::future::join_all;
use hyper::StatusCode;
use serde_json::Value;

fn hls_proxy() -> ProxyConfig {
    ProxyConfig {
        channel: ChannelConfig {
            start_timeout: Duration::from_secs(20),
            upstream_stall_timeout: Duration::from_secs(8),
            idle_grace: Duration::from_secs(1),
            initial_backoff: Duration::from_millis(100),
            max_backoff: Duration::from_millis(400),
            ..ChannelConfig::default()
        },
        hls_idle_timeout: Duration::from_secs(2),
        engine_request_timeout: Duration::from_secs(5),
        hls_source: HlsSource::Engine,
        ..ProxyConfig::default()
    }
}

fn manifest_url(rig: &ProxyRig, id: &str) -> String {
    rig.url(&format!("/ace/manifest.m3u8?id={id}"))
}

/// The first segment URI listed in a served playlist.
fn first_segment(playlist: &str) -> String {
    playlist
        .lines()
        .find(|line| line.starts_with("/ace/hls/"))
        .expect("a segment URI")
        .to_owned()
}

#[tokio::test]
async fn ffmpeg_reads_the_proxied_hls_live_for_twenty_seconds_without_errors() {
    let rig = ProxyRig::start(hls_proxy()).await;
    let url = manifest_url(&rig, "live");
    assert_ffmpeg_plays_cleanly(&url, 20).await;
    rig.shutdown().await;
}

#[tokio::test]
async fn vlc_plays_the_proxied_hls() {
    let rig = ProxyRig::start(hls_proxy()).await;
    let url = manifest_url(&rig, "vlc");
    assert_vlc_plays(&url).await;
    rig.shutdown().await;
}

#[tokio::test]
async fn two_hundred_viewers_poll_one_channel_while_another_starts_against_a_slow_engine() {
    let mut engine = EmulatorConfig::default();
    engine.faults.insert(
        "slow".into(),
        Faults {
            start_delay: Some(Duration::from_secs(4)),
            playlist_delay: Some(Duration::from_secs(2)),
            ..Faults::default()
        },
    );
    let rig = ProxyRig::start_with(engine, hls_proxy()).await;
    let api = Client::new();
    let (status, playlist) = api.get(&manifest_url(&rig, "busy")).await.expect("request");
    assert_eq!(status, StatusCode::OK, "{playlist}");
    // The slow channel starts while the busy one is polled.
    let slow = tokio::spawn({
        let api = api.clone();
        let url = manifest_url(&rig, "slow");
        async move { api.get(&url).await.expect("request") }
    });
    let viewers = (0..200).map(|n| {
        let api = api.clone();
        let url = rig.url(&format!("/ace/manifest.m3u8?id=busy&t=viewer{n}"));
        let base = rig.url("");
        async move {
            let started = tokio::time::Instant::now();
            let (status, playlist) = api.get(&url).await.expect("request");
            assert_eq!(status, StatusCode::OK);
            let segment = first_segment(playlist.as_str().expect("text"));
            let (status, _) = api.get(&format!("{base}{segment}")).await.expect("request");
            assert_eq!(status, StatusCode::OK);
            started.elapsed()
        }
    });
    let latencies = join_all(viewers).await;
    let slowest = latencies.iter().max().copied().unwrap_or_default();
    assert!(
        slowest < Duration::from_secs(2),
        "a viewer of the running channel waited {slowest:?} while another channel started"
    );
    let (status, _) = slow.await.expect("task");
    assert_eq!(status, StatusCode::OK, "the slow channel started too");
    rig.shutdown().await;
}

#[tokio::test]
async fn failed_segments_and_sequence_jumps_become_discontinuities_and_ffmpeg_keeps_decoding() {
    let mut engine = EmulatorConfig::default();
    // A jump past the engine's 5-segment window: the skipped segments are never listed.
    engine.faults.insert(
        "jumpy".into(),
        Faults {
            sequence_jump_after: Some(Duration::from_secs(8)),
            sequence_jump_by: Some(8),
            ..Faults::default()
        },
    );
    engine.faults.insert(
        "lossy".into(),
        Faults {
            segment_404_every: Some(4),
            ..Faults::default()
        },
    );
    let rig = ProxyRig::start_with(engine, hls_proxy()).await;
    let api = Client::new();
    let check = |id: &'static str| {
        let url = manifest_url(&rig, id);
        let api = api.clone();
        async move {
            // Watch the served playlist while ffmpeg plays it.
            let watch = async {
                for _ in 0..80 {
                    let (_, playlist) = api.get(&url).await.expect("request");
                    let text = playlist.as_str().unwrap_or_default().to_owned();
                    if text.contains("#EXT-X-DISCONTINUITY\n") {
                        return true;
                    }
                    tokio::time::sleep(Duration::from_millis(250)).await;
                }
                false
            };
            let args = ["-t", "16", "-i", url.as_str(), "-f", "null", "-"];
            let ((ok, errors), marked) = tokio::join!(ffmpeg(&args), watch);
            assert!(ok, "{id}: ffmpeg stopped decoding: {errors}");
            assert!(
                marked,
                "{id}: the missing media was not marked as a discontinuity"
            );
        }
    };
    tokio::join!(check("jumpy"), check("lossy"));
    rig.shutdown().await;
}

#[tokio::test]
async fn segments_are_only_served_from_memory() {
    let rig = ProxyRig::start(hls_proxy()).await;
    let api = Client::new();
    let (status, playlist) = api.get(&manifest_url(&rig, "held")).await.expect("request");
    assert_eq!(status, StatusCode::OK);
    let segment = first_segment(playlist.as_str().expect("text"));
    let (status, _) = api.get(&rig.url(&segment)).await.expect("request");
    assert_eq!(status, StatusCode::OK);
    for path in [
        "/ace/hls/1/999999.ts",
        "/ace/hls/999/0.ts",
        "/ace/hls/1/0.m3u8",
        "/ace/hls/1/..%2F..%2Fetc%2Fpasswd",
        "/ace/hls/x/0.ts",
    ] {
        let (status, body): (StatusCode, Value) = api.get(&rig.url(path)).await.expect("request");
        assert_eq!(status, StatusCode::NOT_FOUND, "{path}: {body}");
        assert_eq!(body["error"], "unknown_segment", "{path}");
    }
    rig.shutdown().await;
}

#[tokio::test]
async fn an_hls_channel_nobody_polls_stops_its_engine_once() {
    let rig = ProxyRig::start(hls_proxy()).await;
    let api = Client::new();
    let (status, _) = api.get(&manifest_url(&rig, "idle")).await.expect("request");
    assert_eq!(status, StatusCode::OK);
    let stopped = eventually(Duration::from_secs(10), || async {
        rig.emulator().stats().contents["idle"].sessions_stopped == 1
    })
    .await;
    assert!(stopped, "the engine session was not stopped");
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(rig.emulator().stats().contents["idle"].sessions_stopped, 1);
    let (_, events) = api.get(&rig.url("/events")).await.expect("request");
    let kinds: Vec<&str> = events
        .as_array()
        .expect("events")
        .iter()
        .map(|event| event["type"].as_str().unwrap_or(""))
        .collect();
    assert_eq!(kinds, ["stream_started", "stream_ended"]);
    assert_eq!(events[1]["stream"]["end_reason"], "idle");
    rig.shutdown().await;
}

#[tokio::test]
async fn a_refused_hls_channel_gets_the_same_json_error_as_ts() {
    let mut engine = EmulatorConfig::default();
    engine.faults.insert(
        "refused".into(),
        Faults {
            refuse: Some("no such content".into()),
            ..Faults::default()
        },
    );
    let rig = ProxyRig::start_with(engine, hls_proxy()).await;
    let (status, body) = Client::new()
        .get(&manifest_url(&rig, "refused"))
        .await
        .expect("request");
    assert_eq!(status, StatusCode::BAD_GATEWAY, "{body}");
    assert_eq!(body["error"], "engine_error");
    rig.shutdown().await;
}

#[tokio::test]
async fn a_stalled_engine_playlist_gets_a_new_session_while_players_keep_polling() {
    let mut engine = EmulatorConfig::default();
    engine.faults.insert(
        "frozen".into(),
        Faults {
            playlist_stall_after: Some(Duration::from_secs(6)),
            ..Faults::default()
        },
    );
    let proxy = ProxyConfig {
        hls_stall_timeout: Duration::from_secs(3),
        hls_idle_timeout: Duration::from_secs(30),
        channel: ChannelConfig {
            reconnects_per_session: 1,
            ..hls_proxy().channel
        },
        ..hls_proxy()
    };
    let rig = ProxyRig::start_with(engine, proxy).await;
    let api = Client::new();
    let url = manifest_url(&rig, "frozen");
    let replaced = eventually(Duration::from_secs(30), || async {
        let (status, _) = api.get(&url).await.expect("request");
        assert_eq!(status, StatusCode::OK, "players keep getting the playlist");
        rig.emulator().stats().contents["frozen"].sessions_started >= 2
    })
    .await;
    assert!(replaced, "the stalled session was not replaced");
    let content = &rig.emulator().stats().contents["frozen"];
    assert!(
        content.sessions_stopped >= 1,
        "the stalled session was not stopped"
    );
    let marked = eventually(Duration::from_secs(15), || async {
        let (_, playlist) = api.get(&url).await.expect("request");
        playlist
            .as_str()
            .is_some_and(|text| text.contains("#EXT-X-DISCONTINUITY\n"))
    })
    .await;
    assert!(
        marked,
        "the new session's media was not marked as a discontinuity"
    );
    rig.shutdown().await;
}
