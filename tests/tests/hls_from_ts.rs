//! HLS cut by acemux from the channel's MPEG-TS (`--hls-source ts`, the default) over
//! real sockets: read by real ffmpeg, ffprobe and VLC; one engine session for TS and
//! HLS players of one content; a reconnect is one discontinuity.

use std::time::Duration;

use acemux::proxy::{HlsSource, ProxyConfig};
use acemux_core::channel::ChannelConfig;
use acemux_testkit::emulator::{EmulatorConfig, Faults};
use acemux_tests::proxy::{open, read_at_least, read_for, viewer_client, ProxyRig};
use acemux_tests::{
    assert_ffmpeg_plays_cleanly, assert_vlc_plays, eventually, ffmpeg, run_tool_ok, Client,
};
use hyper::StatusCode;
use serde_json::Value;

/// The segment target of these tests; the bound is three times it.
const TARGET: Duration = Duration::from_secs(2);

fn cut_proxy() -> ProxyConfig {
    ProxyConfig {
        hls_source: HlsSource::Ts,
        hls_segment_target: TARGET,
        channel: ChannelConfig {
            start_timeout: Duration::from_secs(20),
            upstream_stall_timeout: Duration::from_secs(4),
            idle_grace: Duration::from_secs(1),
            initial_backoff: Duration::from_millis(100),
            max_backoff: Duration::from_millis(400),
            ..ChannelConfig::default()
        },
        hls_idle_timeout: Duration::from_secs(3),
        engine_request_timeout: Duration::from_secs(5),
        ..ProxyConfig::default()
    }
}

fn manifest_url(rig: &ProxyRig, id: &str) -> String {
    rig.url(&format!("/ace/manifest.m3u8?id={id}"))
}

async fn playlist(api: &Client, url: &str) -> String {
    let (status, body) = api.get(url).await.expect("playlist request");
    assert_eq!(status, StatusCode::OK, "{body}");
    match body {
        Value::String(text) => text,
        other => panic!("not a playlist: {other}"),
    }
}

/// The `(EXTINF seconds, URI)` of each listed segment.
fn listed(playlist: &str) -> Vec<(f64, String)> {
    let mut segments = Vec::new();
    let mut duration = None;
    for line in playlist.lines() {
        if let Some(value) = line.strip_prefix("#EXTINF:") {
            duration = value.trim_end_matches(',').parse::<f64>().ok();
        } else if line.starts_with("/ace/hls/") {
            segments.push((
                duration.take().expect("EXTINF before the URI"),
                line.to_owned(),
            ));
        }
    }
    segments
}

/// `#EXT-X-DISCONTINUITY-SEQUENCE` plus the discontinuities listed: how many the
/// playlist has shown so far.
fn discontinuities(playlist: &str) -> u64 {
    let sequence = playlist
        .lines()
        .find_map(|line| line.strip_prefix("#EXT-X-DISCONTINUITY-SEQUENCE:"))
        .and_then(|value| value.parse::<u64>().ok())
        .unwrap_or(0);
    sequence + playlist.matches("#EXT-X-DISCONTINUITY\n").count() as u64
}

#[tokio::test]
async fn ffmpeg_reads_the_cut_hls_live_for_twenty_seconds_without_errors() {
    let rig = ProxyRig::start(cut_proxy()).await;
    let url = manifest_url(&rig, "cutlive");
    assert_ffmpeg_plays_cleanly(&url, 20).await;
    // Cut from the TS session: the engine never saw an HLS request.
    let routes: Vec<String> = rig
        .emulator()
        .requests()
        .into_iter()
        .map(|r| r.route)
        .collect();
    assert!(
        routes.iter().all(|route| route == "getstream"),
        "{routes:?}"
    );
    rig.shutdown().await;
}

#[tokio::test]
async fn every_cut_segment_starts_with_a_keyframe_and_lasts_at_most_the_bound() {
    let rig = ProxyRig::start(cut_proxy()).await;
    let url = manifest_url(&rig, "cutprobe");
    let api = Client::new();
    let dir = tempfile::tempdir().expect("temp dir");
    let mut seen = std::collections::BTreeMap::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(18);
    while tokio::time::Instant::now() < deadline && seen.len() < 6 {
        for (duration, uri) in listed(&playlist(&api, &url).await) {
            if seen.contains_key(&uri) {
                continue;
            }
            let (status, mut body) = open(&viewer_client(), &rig.url(&uri)).await;
            assert_eq!(status, StatusCode::OK, "{uri}");
            let (bytes, _) = read_for(&mut body, Duration::from_secs(5)).await;
            seen.insert(uri, (duration, bytes));
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    assert!(seen.len() >= 4, "only {} segments in 18 s", seen.len());
    let bound = 3.0 * TARGET.as_secs_f64();
    for (index, (uri, (extinf, bytes))) in seen.iter().enumerate() {
        assert!(*extinf > 0.0 && *extinf <= bound, "{uri}: EXTINF {extinf}");
        let file = dir.path().join(format!("{index}.ts"));
        std::fs::write(&file, bytes).expect("write segment");
        let file = file.to_str().expect("UTF-8 path");
        // The first video packet is a keyframe.
        let (packets, _) = run_tool_ok(
            "ffprobe",
            &[
                "-v",
                "error",
                "-select_streams",
                "v:0",
                "-show_entries",
                "packet=flags",
                "-of",
                "csv=p=0",
                file,
            ],
        )
        .await;
        let first = packets.lines().next().unwrap_or_default();
        assert!(
            first.starts_with('K'),
            "{uri} starts with a {first:?} packet"
        );
        // ffprobe's own duration stays within the bound (a frame of slack).
        let (duration, _) = run_tool_ok(
            "ffprobe",
            &[
                "-v",
                "error",
                "-show_entries",
                "format=duration",
                "-of",
                "csv=p=0",
                file,
            ],
        )
        .await;
        let duration: f64 = duration.trim().parse().expect("a duration");
        assert!(duration <= bound + 0.1, "{uri}: ffprobe says {duration} s");
    }
    // Every cut so far started at a keyframe, and the metric says so.
    let cut = |start: &str| {
        rig.metric(&format!(
            "acemux_hls_cut_segments_total{{channel=\"content_id:cutprobe\",start=\"{start}\"}}"
        ))
    };
    assert!(cut("keyframe") >= seen.len() as f64, "{}", cut("keyframe"));
    assert_eq!(cut("bound"), 0.0);
    rig.shutdown().await;
}

#[tokio::test]
async fn a_ts_viewer_and_an_hls_player_of_one_content_share_one_engine_session() {
    let rig = ProxyRig::start(cut_proxy()).await;
    let client = viewer_client();
    let (status, mut ts) = open(&client, &rig.stream_url("mixed")).await;
    assert_eq!(status, StatusCode::OK);
    let api = Client::new();
    // The HLS player arrives while the TS viewer watches; and the other way round.
    let url = manifest_url(&rig, "mixed");
    let text = playlist(&api, &url).await;
    let segments = listed(&text);
    assert!(!segments.is_empty(), "{text}");
    let (status, _) = api.get(&rig.url(&segments[0].1)).await.expect("segment");
    assert_eq!(status, StatusCode::OK);
    let bytes = read_at_least(&mut ts, 200_000, Duration::from_secs(10)).await;
    assert!(
        bytes.len() >= 200_000,
        "the TS viewer got {} bytes",
        bytes.len()
    );
    let (status, mut second_ts) = open(&client, &rig.stream_url("mixed")).await;
    assert_eq!(status, StatusCode::OK);
    let _ = read_at_least(&mut second_ts, 10_000, Duration::from_secs(5)).await;
    let requests: Vec<_> = rig
        .emulator()
        .requests()
        .into_iter()
        .filter(|request| request.source.1 == "mixed")
        .collect();
    assert_eq!(requests.len(), 1, "{requests:?}");
    assert_eq!(requests[0].route, "getstream");
    assert_eq!(rig.emulator().stats().contents["mixed"].sessions_started, 1);
    // One channel, counting both kinds of viewers.
    let (_, channels) = api.get(&rig.url("/channels")).await.expect("channels");
    let channels = channels.as_array().expect("a list").clone();
    assert_eq!(channels.len(), 1, "{channels:?}");
    assert_eq!(channels[0]["viewers"], 3, "{channels:?}");
    // One stream_started in the event log.
    let (_, events) = api.get(&rig.url("/events")).await.expect("events");
    let started = events
        .as_array()
        .expect("a list")
        .iter()
        .filter(|event| event["type"] == "stream_started")
        .count();
    assert_eq!(started, 1, "{events}");
    drop(ts);
    drop(second_ts);
    // The HLS player goes quiet too: one stop, one stream_ended.
    let ended = eventually(Duration::from_secs(15), || async {
        rig.emulator().stats().contents["mixed"].sessions_stopped == 1
    })
    .await;
    assert!(
        ended,
        "the shared session was not stopped once its viewers went"
    );
    rig.shutdown().await;
}

#[tokio::test]
async fn an_engine_reconnect_is_one_discontinuity_and_ffmpeg_plays_on() {
    let mut engine = EmulatorConfig::default();
    // About 12 s of media per playback connection, then the connection drops.
    let cut_after = engine.media.bitrate_bps() / 8 * 12;
    engine.faults.insert(
        "flaky".into(),
        Faults {
            close_abruptly_after_bytes: Some(cut_after),
            ..Faults::default()
        },
    );
    let rig = ProxyRig::start_with(engine, cut_proxy()).await;
    let url = manifest_url(&rig, "flaky");
    let api = Client::new();
    assert_eq!(discontinuities(&playlist(&api, &url).await), 0);
    let reader = {
        let url = url.clone();
        tokio::spawn(async move { ffmpeg(&["-t", "14", "-i", &url, "-f", "null", "-"]).await })
    };
    let marked = eventually(Duration::from_secs(25), || async {
        discontinuities(&playlist(&api, &url).await) >= 1
    })
    .await;
    assert!(marked, "the reconnect was not marked");
    let text = playlist(&api, &url).await;
    assert_eq!(discontinuities(&text), 1, "{text}");
    let (ok, errors) = reader.await.expect("ffmpeg task");
    assert!(ok, "ffmpeg failed across the reconnect: {errors}");
    // Still one engine session: the playback was reopened, not replaced.
    let stats = rig.emulator().stats();
    assert_eq!(stats.contents["flaky"].sessions_started, 1);
    rig.shutdown().await;
}

#[tokio::test]
async fn vlc_plays_the_cut_hls() {
    let rig = ProxyRig::start(cut_proxy()).await;
    let url = manifest_url(&rig, "cutvlc");
    assert_vlc_plays(&url).await;
    rig.shutdown().await;
}
