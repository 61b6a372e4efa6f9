//! `join`: time to first byte.
//!
//! - Viewers joining a running channel, one every few milliseconds, each staying on:
//!   acemux answers from its ring; the baseline from its newest piece.
//! - A channel's first viewer: acemux must request a session from the engine and open
//!   its playback before it has a byte. Its time is set against a client that does the
//!   same directly with the engine (session request, then playback), in alternating
//!   trials on fresh channels: the difference is what acemux adds.

use std::net::SocketAddr;
use std::time::Duration;

use serde_json::{json, Value};
use tokio::time::Instant;

use super::{or, progress, Crowd, Rig};
use crate::load::{self, Conn};
use crate::report::{finite, latency_json, mbit, ms, quantile, ratio, Row, ScenarioReport};
use crate::Options;

const RING_BYTES: usize = 16 * 1024 * 1024;
const TARGET_JOIN_P99_MS: f64 = 20.0;
const TARGET_FIRST_ADDED_MS: f64 = 5.0;
/// Time between two joining viewers.
const JOIN_INTERVAL: Duration = Duration::from_millis(10);
const FIRST_BYTE_BOUND: Duration = Duration::from_secs(15);

/// Joins `viewers` viewers to the running stream at `path`; their times to first byte.
async fn joins(
    addr: SocketAddr,
    path: &str,
    viewers: usize,
    label: &str,
) -> Result<Vec<f64>, String> {
    let holder = Crowd::holder(addr, path, label).await?;
    let ramp = JOIN_INTERVAL * u32::try_from(viewers).unwrap_or(u32::MAX);
    progress(&format!("{label}: {viewers} viewers joining over {ramp:?}"));
    let crowd = Crowd::start(addr, path, viewers, ramp);
    crowd.wait_started(ramp + FIRST_BYTE_BOUND).await;
    let watched = crowd.finish().await;
    holder.finish().await;
    let ttfb: Vec<f64> = watched
        .iter()
        .filter_map(|w| w.ttfb.map(|t| t.as_secs_f64() * 1000.0))
        .collect();
    if ttfb.len() < viewers {
        progress(&format!(
            "{label}: only {}/{viewers} viewers got a first byte",
            ttfb.len()
        ));
    }
    Ok(ttfb)
}

/// A direct engine client: session request, then its playback, to the first byte.
async fn direct_first_byte(engine: SocketAddr, content_id: &str) -> Result<f64, String> {
    let started = Instant::now();
    let mut conn = Conn::new(engine);
    let answer = conn
        .get(&format!("/ace/getstream?id={content_id}&format=json"))
        .await?;
    let body: Value = serde_json::from_slice(&answer.body).map_err(|e| e.to_string())?;
    let path_of = |url: &str| {
        url.split_once("://")
            .and_then(|(_, rest)| rest.find('/').map(|at| rest[at..].to_owned()))
    };
    let playback = body["response"]["playback_url"]
        .as_str()
        .and_then(path_of)
        .ok_or_else(|| format!("no playback_url in {body}"))?;
    load::first_byte(engine, &playback, FIRST_BYTE_BOUND).await?;
    let elapsed = started.elapsed().as_secs_f64() * 1000.0;
    if let Some(stop) = body["response"]["command_url"].as_str().and_then(path_of) {
        let _ = conn.get(&format!("{stop}?method=stop")).await;
    }
    Ok(elapsed)
}

pub async fn run(options: &Options) -> Result<ScenarioReport, String> {
    let viewers = or(options.viewers, 200);
    let trials = or(options.trials, 15).max(1);
    let bitrate = or(options.bitrate_bps, 8_000_000);
    let rig = Rig::start(RING_BYTES).await?;
    let outcome = measure(&rig, viewers, trials, bitrate).await;
    rig.stop().await;
    let (acemux_joins, baseline_joins, direct, proxied) = outcome?;

    let added: Vec<f64> = proxied.iter().zip(&direct).map(|(p, d)| p - d).collect();
    let join_p99 = quantile(&acemux_joins, 0.99);
    let base_p99 = quantile(&baseline_joins, 0.99);
    let added_p50 = quantile(&added, 0.5);
    let cell = |values: &[f64]| {
        format!(
            "{} / {}",
            ms(quantile(values, 0.5)),
            ms(quantile(values, 0.99))
        )
    };
    let rows = vec![
        Row::compared(
            "joining a running channel: TTFB p50 / p99",
            cell(&acemux_joins),
            cell(&baseline_joins),
            ratio(join_p99, base_p99),
        )
        .target("p99 ≤ 20 ms", join_p99 <= TARGET_JOIN_P99_MS),
        Row::compared(
            "first viewer of a new channel: TTFB p50 / p99",
            cell(&proxied),
            format!("{} (engine direct)", cell(&direct)),
            ratio(quantile(&proxied, 0.5), quantile(&direct, 0.5)),
        ),
        Row::alone(
            "first viewer: added to the engine's first byte, p50 / max",
            format!("{} / {}", ms(added_p50), ms(quantile(&added, 1.0))),
        )
        .target("p50 ≤ 5 ms added", added_p50 <= TARGET_FIRST_ADDED_MS),
    ];
    let setup = format!(
        "{viewers} viewers join a running {} channel, one every {JOIN_INTERVAL:?}, and stay; \
         then {trials} new channels each get a first viewer, alternating with a client that \
         asks the engine directly (time from the first request, connect included, to the \
         first media byte).",
        mbit(bitrate as f64)
    );
    let json = json!({
        "viewers": viewers,
        "trials": trials,
        "bitrate_bps": bitrate,
        "acemux": {
            "join_ttfb": latency_json(&acemux_joins),
            "first_viewer_ttfb": latency_json(&proxied),
            "first_viewer_added_ms_p50": finite(added_p50),
            "first_viewer_added_ms_max": finite(quantile(&added, 1.0)),
        },
        "baseline": {
            "join_ttfb": latency_json(&baseline_joins),
            "engine_direct_first_byte": latency_json(&direct),
        },
        "ratios": {
            "join_ttfb_p99": finite(ratio(join_p99, base_p99)),
            "first_viewer_ttfb_p50": finite(ratio(quantile(&proxied, 0.5), quantile(&direct, 0.5))),
        },
    });
    Ok(ScenarioReport {
        name: "join",
        setup,
        rows,
        json,
    })
}

#[allow(clippy::type_complexity)]
async fn measure(
    rig: &Rig,
    viewers: usize,
    trials: usize,
    bitrate: u64,
) -> Result<(Vec<f64>, Vec<f64>, Vec<f64>, Vec<f64>), String> {
    rig.set_faults("join", json!({ "bitrate_bps": bitrate }))
        .await?;
    let acemux_joins = joins(
        rig.acemux.addr(),
        "/ace/getstream?id=join",
        viewers,
        "acemux",
    )
    .await?;
    let baseline_joins = joins(
        rig.baseline.addr(),
        &format!("/ts/{bitrate}"),
        viewers,
        "baseline",
    )
    .await?;
    progress(&format!("first viewers: {trials} trials"));
    let mut direct = Vec::new();
    let mut proxied = Vec::new();
    for trial in 0..trials {
        direct.push(direct_first_byte(rig.engine.addr(), &format!("direct{trial}")).await?);
        let path = format!("/ace/getstream?id=first{trial}");
        let ttfb = load::first_byte(rig.acemux.addr(), &path, FIRST_BYTE_BOUND)
            .await
            .map_err(|error| format!("acemux first viewer: {error}"))?;
        proxied.push(ttfb.as_secs_f64() * 1000.0);
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    progress(&format!(
        "first viewers: engine direct p50 {}, through acemux p50 {}",
        ms(quantile(&direct, 0.5)),
        ms(quantile(&proxied, 0.5))
    ));
    Ok((acemux_joins, baseline_joins, direct, proxied))
}
