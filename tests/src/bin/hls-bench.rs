//! HLS benchmark: time from a new channel's first request to its first playlist, and
//! playlist/segment request latency with many viewers polling, through acemux in
//! front of the engine emulator on loopback.
//!
//! `cargo run --release -p acemux-tests --bin hls-bench -- [viewers] [seconds] [requests_per_second]`
//! Prints a table and one JSON line.

use std::time::{Duration, Instant};

use acemux::proxy::ProxyConfig;
use acemux_tests::proxy::ProxyRig;
use acemux_tests::Client;
use futures::future::join_all;

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let viewers: usize = args.first().and_then(|v| v.parse().ok()).unwrap_or(200);
    let seconds: u64 = args.get(1).and_then(|v| v.parse().ok()).unwrap_or(10);
    let rate: u64 = args.get(2).and_then(|v| v.parse().ok()).unwrap_or(1000);
    let rig = ProxyRig::start(ProxyConfig::default()).await;
    let client = Client::with_pool(viewers + 16);
    let manifest = rig.url("/ace/manifest.m3u8?id=bench");
    eprintln!("hls-bench: {viewers} viewers, {seconds} s, {rate} playlist requests/s in all");

    let started = Instant::now();
    let (status, playlist) = client.get(&manifest).await.expect("first playlist");
    let first_playlist = started.elapsed();
    assert!(status.is_success(), "first playlist: {status} {playlist}");

    // Each viewer polls at rate/viewers per second and fetches each new segment once.
    let interval = Duration::from_secs_f64(viewers as f64 / rate as f64);
    let deadline = Instant::now() + Duration::from_secs(seconds);
    let tasks = (0..viewers).map(|n| {
        let client = client.clone();
        let url = format!("{manifest}&t=viewer{n}");
        let base = rig.url("");
        async move {
            let mut playlist_ms = Vec::new();
            let mut segment_ms = Vec::new();
            let mut last_segment: Option<String> = None;
            tokio::time::sleep(interval.mul_f64(n as f64 / viewers as f64)).await;
            while Instant::now() < deadline {
                let tick = Instant::now();
                let (_, playlist) = client.get(&url).await.expect("playlist");
                playlist_ms.push(tick.elapsed().as_secs_f64() * 1000.0);
                // Like a player: each new segment is fetched once.
                let newest = playlist
                    .as_str()
                    .and_then(|text| text.lines().rfind(|l| l.starts_with("/ace/hls/")))
                    .map(str::to_owned);
                if let Some(segment) =
                    newest.filter(|segment| Some(segment) != last_segment.as_ref())
                {
                    let tick = Instant::now();
                    let _ = client.get(&format!("{base}{segment}")).await;
                    segment_ms.push(tick.elapsed().as_secs_f64() * 1000.0);
                    last_segment = Some(segment);
                }
                tokio::time::sleep(interval.saturating_sub(tick.elapsed())).await;
            }
            (playlist_ms, segment_ms)
        }
    });
    let results = join_all(tasks).await;
    let mut playlists: Vec<f64> = results
        .iter()
        .flat_map(|(p, _)| p.iter().copied())
        .collect();
    let mut segments: Vec<f64> = results
        .iter()
        .flat_map(|(_, s)| s.iter().copied())
        .collect();
    playlists.sort_by(f64::total_cmp);
    segments.sort_by(f64::total_cmp);
    let achieved = playlists.len() as f64 / seconds as f64;
    println!("| measure | value |");
    println!("|---|---|");
    println!(
        "| first request → first playlist (new channel) | {:.0} ms |",
        first_playlist.as_secs_f64() * 1000.0
    );
    println!("| viewers | {viewers} |");
    println!("| playlist requests/s achieved | {achieved:.0} |");
    println!(
        "| playlist latency p50 / p99 | {:.2} / {:.2} ms |",
        percentile(&playlists, 0.5),
        percentile(&playlists, 0.99)
    );
    println!(
        "| segment latency p50 / p99 | {:.2} / {:.2} ms |",
        percentile(&segments, 0.5),
        percentile(&segments, 0.99)
    );
    println!(
        "{}",
        serde_json::json!({
            "first_playlist_ms": first_playlist.as_secs_f64() * 1000.0,
            "viewers": viewers,
            "playlist_rps": achieved,
            "playlist_ms_p50": percentile(&playlists, 0.5),
            "playlist_ms_p99": percentile(&playlists, 0.99),
            "segment_ms_p50": percentile(&segments, 0.5),
            "segment_ms_p99": percentile(&segments, 0.99),
        })
    );
    rig.shutdown().await;
}
