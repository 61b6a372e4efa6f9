//! Fan-out benchmark: time to first byte for viewers joining a running channel, and
//! egress with many viewers, through acemux in front of the engine emulator on loopback.
//!
//! `cargo run --release -p acemux-tests --bin fanout-bench -- [viewers] [seconds] [bitrate_bps]`
//! Prints a table and one JSON line.

use std::time::{Duration, Instant};

use acemux::emulator::{EmulatorConfig, Faults};
use acemux::proxy::ProxyConfig;
use acemux_core::fanout::FanoutConfig;
use acemux_tests::proxy::{open, read_at_least, viewer_client, ProxyRig};
use futures::future::join_all;
use http_body_util::BodyExt;

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let rank = ((sorted.len() - 1) as f64 * p).round() as usize;
    sorted[rank]
}

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let viewers: usize = args.first().and_then(|v| v.parse().ok()).unwrap_or(100);
    let seconds: u64 = args.get(1).and_then(|v| v.parse().ok()).unwrap_or(10);
    let bitrate_bps: u64 = args
        .get(2)
        .and_then(|v| v.parse().ok())
        .unwrap_or(8_000_000);
    let mut engine = EmulatorConfig::default();
    engine.faults.insert(
        "bench".into(),
        Faults {
            bitrate_bps: Some(bitrate_bps),
            ..Faults::default()
        },
    );
    let proxy = ProxyConfig {
        fanout: FanoutConfig {
            max_viewers: viewers + 10,
            ring_capacity_bytes: 64 * 1024 * 1024,
            ..FanoutConfig::default()
        },
        ..ProxyConfig::default()
    };
    let rig = ProxyRig::start_with(engine, proxy).await;
    let client = viewer_client();
    let url = rig.stream_url("bench");
    eprintln!("fanout-bench: {viewers} viewers, {seconds} s, {bitrate_bps} bit/s stream");

    // The channel's first viewer starts the engine session.
    let first_started = Instant::now();
    let (_, mut first) = open(&client, &url).await;
    read_at_least(&mut first, 1, Duration::from_secs(30)).await;
    let first_ttfb = first_started.elapsed();

    let deadline = Instant::now() + Duration::from_secs(seconds);
    let tasks = (0..viewers).map(|n| {
        let client = client.clone();
        let url = url.clone();
        async move {
            // Stagger joins over the first second so they join a running channel.
            tokio::time::sleep(Duration::from_millis((n as u64 * 1000) / viewers as u64)).await;
            let started = Instant::now();
            let (_, mut body) = open(&client, &url).await;
            let mut ttfb = None;
            let mut bytes = 0usize;
            let mut reading_since = None;
            while Instant::now() < deadline {
                match tokio::time::timeout_at(deadline.into(), body.frame()).await {
                    Ok(Some(Ok(frame))) => {
                        if let Ok(data) = frame.into_data() {
                            if ttfb.is_none() {
                                ttfb = Some(started.elapsed());
                                reading_since = Some(Instant::now());
                            }
                            bytes += data.len();
                        }
                    }
                    _ => break,
                }
            }
            let elapsed = reading_since
                .map(|since| since.elapsed())
                .unwrap_or_default();
            (ttfb, bytes, elapsed)
        }
    });
    let drain_first = async {
        while Instant::now() < deadline {
            if tokio::time::timeout_at(deadline.into(), first.frame())
                .await
                .is_err()
            {
                break;
            }
        }
    };
    let (results, ()) = tokio::join!(join_all(tasks), drain_first);

    let mut ttfbs: Vec<f64> = results
        .iter()
        .filter_map(|(ttfb, _, _)| ttfb.map(|t| t.as_secs_f64() * 1000.0))
        .collect();
    ttfbs.sort_by(f64::total_cmp);
    let mut rates: Vec<f64> = results
        .iter()
        .filter(|(_, _, elapsed)| !elapsed.is_zero())
        .map(|(_, bytes, elapsed)| *bytes as f64 * 8.0 / elapsed.as_secs_f64())
        .collect();
    rates.sort_by(f64::total_cmp);
    let total_bytes: usize = results.iter().map(|(_, bytes, _)| bytes).sum();
    let egress_mbps = total_bytes as f64 * 8.0 / seconds as f64 / 1e6;
    println!("| measure | value |");
    println!("|---|---|");
    println!("| viewers | {viewers} |");
    println!(
        "| stream bitrate | {:.1} Mbit/s |",
        bitrate_bps as f64 / 1e6
    );
    println!(
        "| first viewer TTFB (engine session start) | {:.1} ms |",
        first_ttfb.as_secs_f64() * 1000.0
    );
    println!(
        "| joining viewer TTFB p50 / p99 | {:.2} / {:.2} ms |",
        percentile(&ttfbs, 0.5),
        percentile(&ttfbs, 0.99)
    );
    println!(
        "| per-viewer rate p1 / p50 | {:.2} / {:.2} Mbit/s |",
        percentile(&rates, 0.01) / 1e6,
        percentile(&rates, 0.5) / 1e6
    );
    println!("| egress total | {egress_mbps:.1} Mbit/s |");
    println!(
        "{}",
        serde_json::json!({
            "viewers": viewers,
            "bitrate_bps": bitrate_bps,
            "first_ttfb_ms": first_ttfb.as_secs_f64() * 1000.0,
            "join_ttfb_ms_p50": percentile(&ttfbs, 0.5),
            "join_ttfb_ms_p99": percentile(&ttfbs, 0.99),
            "rate_bps_p1": percentile(&rates, 0.01),
            "rate_bps_p50": percentile(&rates, 0.5),
            "egress_mbps": egress_mbps,
        })
    );
    drop(first);
    rig.shutdown().await;
}
