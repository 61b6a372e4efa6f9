//! `isolation`: players wait for a channel whose engine takes 12 s per segment; what
//! happens meanwhile to everybody else? The system acemux replaces froze every other
//! request for 30 s in this situation. Unrelated requests (health, the playlist and
//! segments of another HLS channel, the stream list, joins of a running TS channel) are
//! sent at a steady rate for as long as the slow start lasts, and their latency is set
//! against the same requests to the plain baseline.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::Duration;

use serde_json::{json, Value};
use tokio::sync::watch;
use tokio::time::Instant;

use super::{or, progress, Crowd, Rig};
use crate::load::{self, Conn};
use crate::report::{finite, latency_json, ms, quantile, ratio, Row, ScenarioReport};
use crate::Options;

const RING_BYTES: usize = 16 * 1024 * 1024;
const TARGET_P99_MS: f64 = 10.0;
/// Players waiting for the slow channel.
const SLOW_PLAYERS: usize = 10;
/// Clients sending the unrelated requests.
const CLIENTS: usize = 20;
/// Every this many unrelated requests, one is a TS join (new connection, first byte).
const JOIN_EVERY: u64 = 20;
/// The baseline's share of the window: its figures settle long before the slow start ends.
const BASELINE_SECONDS: f64 = 10.0;

/// The URLs of one side.
struct Targets {
    health: String,
    playlist: String,
    api: String,
    stream: String,
}

/// Sends the unrelated requests of `targets` at `rate` until `stop`; latency per kind.
async fn unrelated(
    addr: SocketAddr,
    targets: &Targets,
    rate: f64,
    stop: watch::Receiver<bool>,
) -> BTreeMap<&'static str, Vec<f64>> {
    let interval = Duration::from_secs_f64(CLIENTS as f64 / rate.max(1.0));
    let clients: Vec<_> = (0..CLIENTS)
        .map(|n| {
            let health = targets.health.clone();
            let playlist = format!("{}{}", targets.playlist, n);
            let api = targets.api.clone();
            let stream = targets.stream.clone();
            let mut stop = stop.clone();
            let phase = interval.mul_f64(n as f64 / CLIENTS as f64);
            tokio::spawn(async move {
                let mut seen: Vec<(&'static str, f64)> = Vec::new();
                let mut conn = Conn::new(addr);
                let mut segment: Option<String> = None;
                tokio::time::sleep(phase).await;
                let mut tick = Instant::now();
                for turn in (n as u64).. {
                    if *stop.borrow() {
                        break;
                    }
                    let started = Instant::now();
                    let kind = if turn % JOIN_EVERY == JOIN_EVERY - 1 {
                        let answer = load::first_byte(addr, &stream, Duration::from_secs(60)).await;
                        answer.is_ok().then_some("ts join (first byte)")
                    } else {
                        let (kind, path) = match turn % 4 {
                            0 => ("health", health.as_str()),
                            1 => ("playlist", playlist.as_str()),
                            2 => ("segment", segment.as_deref().unwrap_or(playlist.as_str())),
                            _ => ("stream list", api.as_str()),
                        };
                        match conn.get(path).await {
                            Ok(answer) if answer.status == 200 => {
                                if kind == "playlist" {
                                    segment = std::str::from_utf8(&answer.body)
                                        .ok()
                                        .and_then(|text| {
                                            text.lines()
                                                .rfind(|l| !l.is_empty() && !l.starts_with('#'))
                                        })
                                        .map(str::to_owned);
                                }
                                Some(kind)
                            }
                            _ => None,
                        }
                    };
                    let elapsed = started.elapsed().as_secs_f64() * 1000.0;
                    seen.push((kind.unwrap_or("failed"), elapsed));
                    tick += interval;
                    tokio::select! {
                        _ = stop.changed() => {}
                        () = tokio::time::sleep_until(tick) => {}
                    }
                }
                seen
            })
        })
        .collect();
    let mut by_kind: BTreeMap<&'static str, Vec<f64>> = BTreeMap::new();
    for client in clients {
        for (kind, elapsed) in client.await.unwrap_or_default() {
            by_kind.entry(kind).or_default().push(elapsed);
        }
    }
    by_kind
}

fn all_of(by_kind: &BTreeMap<&'static str, Vec<f64>>) -> Vec<f64> {
    by_kind
        .iter()
        .filter(|(kind, _)| **kind != "failed")
        .flat_map(|(_, values)| values.iter().copied())
        .collect()
}

fn kinds_json(by_kind: &BTreeMap<&'static str, Vec<f64>>) -> Value {
    let mut object = serde_json::Map::new();
    for (kind, values) in by_kind {
        object.insert((*kind).to_owned(), latency_json(values));
    }
    Value::Object(object)
}

pub async fn run(options: &Options) -> Result<ScenarioReport, String> {
    let bound = or(options.seconds, 35.0);
    let rate = or(options.rate, 200.0);
    let rig = Rig::start(RING_BYTES).await?;
    let outcome = measure(&rig, bound, rate).await;
    rig.stop().await;
    let (acemux, slow, window, baseline) = outcome?;

    let acemux_all = all_of(&acemux);
    let baseline_all = all_of(&baseline);
    let p99 = quantile(&acemux_all, 0.99);
    let base_p99 = quantile(&baseline_all, 0.99);
    let cell = |values: &[f64]| {
        format!(
            "{} / {}",
            ms(quantile(values, 0.5)),
            ms(quantile(values, 0.99))
        )
    };
    let mut rows = vec![Row::compared(
        "unrelated requests, all: p50 / p99",
        cell(&acemux_all),
        cell(&baseline_all),
        ratio(p99, base_p99),
    )
    .target("p99 ≤ 10 ms", p99 <= TARGET_P99_MS)];
    for (kind, values) in &acemux {
        let base = baseline.get(kind).map(Vec::as_slice).unwrap_or_default();
        rows.push(Row::compared(
            &format!("— {kind}: p50 / p99"),
            cell(values),
            if base.is_empty() {
                "–".to_owned()
            } else {
                cell(base)
            },
            ratio(quantile(values, 0.99), quantile(base, 0.99)),
        ));
    }
    let answered: Vec<&(u16, f64)> = slow.iter().filter(|(status, _)| *status != 0).collect();
    rows.push(Row::alone(
        "the slow channel's players: answer after",
        match answered.first() {
            Some((status, elapsed)) => format!(
                "{} (HTTP {status}; {}/{} answered)",
                ms(*elapsed),
                answered.len(),
                slow.len()
            ),
            None => format!("still waiting after {window:.1} s (not measured longer)"),
        },
    ));
    let setup = format!(
        "{SLOW_PLAYERS} players ask for an HLS channel whose engine answers each segment after \
         12 s; for as long as they wait (up to {bound:.0} s; this run: {window:.1} s), {CLIENTS} \
         clients send {rate:.0} unrelated requests/s to acemux. The baseline gets the same mix \
         for {BASELINE_SECONDS:.0} s."
    );
    let json = json!({
        "rate": rate,
        "window_seconds": window,
        "acemux": {
            "all": latency_json(&acemux_all),
            "kinds": kinds_json(&acemux),
            "slow_players": slow.iter().map(|(status, ms)| json!({"status": status, "ms": finite(*ms)})).collect::<Vec<_>>(),
        },
        "baseline": {
            "all": latency_json(&baseline_all),
            "kinds": kinds_json(&baseline),
        },
        "ratios": { "p99": finite(ratio(p99, base_p99)) },
    });
    Ok(ScenarioReport {
        name: "isolation",
        setup,
        rows,
        json,
    })
}

#[allow(clippy::type_complexity)]
async fn measure(
    rig: &Rig,
    bound: f64,
    rate: f64,
) -> Result<
    (
        BTreeMap<&'static str, Vec<f64>>,
        Vec<(u16, f64)>,
        f64,
        BTreeMap<&'static str, Vec<f64>>,
    ),
    String,
> {
    let acemux = rig.acemux.addr();
    rig.set_faults("slow", json!({ "segment_delay": "12s" }))
        .await?;
    rig.set_faults("live", json!({ "bitrate_bps": 8_000_000 }))
        .await?;
    // The unrelated channels run before the slow start begins.
    let first = Conn::new(acemux)
        .get("/ace/manifest.m3u8?id=other&t=warm")
        .await?;
    if first.status != 200 {
        return Err(format!(
            "the other HLS channel did not start: {}",
            first.status
        ));
    }
    let holder = Crowd::start(acemux, "/ace/getstream?id=live", 1, Duration::ZERO);
    if holder.wait_started(Duration::from_secs(15)).await == 0 {
        return Err("the TS channel did not start".into());
    }
    progress("other channels running; the slow channel's players arrive");
    let started = Instant::now();
    let slow_players: Vec<_> = (0..SLOW_PLAYERS)
        .map(|n| {
            tokio::spawn(async move {
                let mut conn = Conn::new(acemux);
                let answer = conn
                    .get(&format!("/ace/manifest.m3u8?id=slow&t=s{n}"))
                    .await;
                let status = answer.map_or(0, |a| a.status);
                (status, started.elapsed().as_secs_f64() * 1000.0)
            })
        })
        .collect();
    let (stop, stopped) = watch::channel(false);
    let targets = Targets {
        health: "/health".into(),
        playlist: "/ace/manifest.m3u8?id=other&t=u".into(),
        api: "/streams?status=started".into(),
        stream: "/ace/getstream?id=live".into(),
    };
    let bound_at = started + Duration::from_secs_f64(bound);
    let (acemux_seen, slow) = tokio::join!(unrelated(acemux, &targets, rate, stopped), async {
        let mut ticker = tokio::time::interval(Duration::from_secs(1));
        loop {
            ticker.tick().await;
            let waiting = slow_players.iter().filter(|p| !p.is_finished()).count();
            progress(&format!(
                "acemux: {:>4.1} s, {waiting}/{SLOW_PLAYERS} slow players still waiting",
                started.elapsed().as_secs_f64()
            ));
            if waiting == 0 || Instant::now() >= bound_at {
                break;
            }
        }
        let _ = stop.send(true);
        let mut slow = Vec::new();
        for player in slow_players {
            if player.is_finished() {
                slow.push(player.await.unwrap_or((0, f64::NAN)));
            } else {
                player.abort();
                slow.push((0, f64::NAN));
            }
        }
        slow
    });
    let window = started.elapsed().as_secs_f64();
    holder.finish().await;
    let (stop, stopped) = watch::channel(false);
    let baseline_targets = Targets {
        health: "/health".into(),
        playlist: "/hls/playlist.m3u8?t=".into(),
        api: "/health".into(),
        stream: "/ts/8000000".into(),
    };
    let baseline_seconds = window.min(BASELINE_SECONDS);
    progress(&format!(
        "baseline: the same mix for {baseline_seconds:.1} s"
    ));
    let (baseline_seen, ()) = tokio::join!(
        unrelated(rig.baseline.addr(), &baseline_targets, rate, stopped),
        async {
            tokio::time::sleep(Duration::from_secs_f64(baseline_seconds)).await;
            let _ = stop.send(true);
        }
    );
    Ok((acemux_seen, slow, window, baseline_seen))
}
