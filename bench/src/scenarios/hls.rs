//! `hls`: playlist and segment latency with many players polling one channel, while
//! other channels start, stall and answer slowly next to it; and the time from a new
//! channel's first request to its first playlist. Run against both HLS sources: the
//! engine's own HLS and the segments acemux cuts from the TS session.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use serde_json::{json, Value};
use tokio::sync::watch;
use tokio::time::Instant;

use super::{or, progress, Rig};
use crate::load::Conn;
use crate::report::{finite, latency_json, ms, quantile, ratio, Row, ScenarioReport};
use crate::Options;

const RING_BYTES: usize = 16 * 1024 * 1024;
const TARGET_PLAYLIST_P99_MS: f64 = 2.0;
/// A new side channel starts this often while the load runs.
const CHURN_INTERVAL: Duration = Duration::from_secs(1);
/// How side channels misbehave, in turn.
const CHURN_FAULTS: [&str; 4] = [
    r#"{"playlist_stall_after": "3s"}"#,
    r#"{"segment_delay": "3s"}"#,
    r#"{"playlist_delay": "1500ms"}"#,
    "{}",
];
const FIRST_PLAYLIST_BOUND: Duration = Duration::from_secs(40);

/// Latencies one side saw.
#[derive(Default)]
struct Seen {
    playlist_ms: Vec<f64>,
    segment_ms: Vec<f64>,
    errors: u64,
    first_error: Option<String>,
}

impl Seen {
    fn merge(&mut self, other: Seen) {
        self.playlist_ms.extend(other.playlist_ms);
        self.segment_ms.extend(other.segment_ms);
        self.errors += other.errors;
        self.first_error = self.first_error.take().or(other.first_error);
    }

    fn json(&self, seconds: f64) -> Value {
        json!({
            "playlist": latency_json(&self.playlist_ms),
            "segment": latency_json(&self.segment_ms),
            "playlist_requests_per_second": self.playlist_ms.len() as f64 / seconds,
            "errors": self.errors,
        })
    }
}

/// The newest segment a playlist lists (its path).
fn newest_segment(playlist: &[u8]) -> Option<String> {
    std::str::from_utf8(playlist)
        .ok()?
        .lines()
        .rfind(|line| !line.is_empty() && !line.starts_with('#'))
        .map(str::to_owned)
}

/// One player: polls `playlist` every `interval` until `until`, fetching each new
/// segment once.
async fn player(
    addr: SocketAddr,
    playlist: String,
    interval: Duration,
    phase: Duration,
    until: Instant,
    done: Arc<AtomicU64>,
) -> Seen {
    let mut seen = Seen::default();
    let mut conn = Conn::new(addr);
    let mut last_segment: Option<String> = None;
    tokio::time::sleep(phase).await;
    let mut tick = Instant::now();
    while tick < until {
        let started = Instant::now();
        match conn.get(&playlist).await {
            Ok(answer) if answer.status == 200 => {
                seen.playlist_ms
                    .push(started.elapsed().as_secs_f64() * 1000.0);
                done.fetch_add(1, Ordering::Relaxed);
                let newest = newest_segment(&answer.body);
                if let Some(segment) = newest.filter(|s| Some(s) != last_segment.as_ref()) {
                    let started = Instant::now();
                    match conn.get(&segment).await {
                        Ok(answer) if answer.status == 200 => {
                            seen.segment_ms
                                .push(started.elapsed().as_secs_f64() * 1000.0);
                        }
                        Ok(answer) => {
                            seen.errors += 1;
                            seen.first_error
                                .get_or_insert(format!("segment: {}", answer.status));
                        }
                        Err(error) => {
                            seen.errors += 1;
                            seen.first_error.get_or_insert(error);
                        }
                    }
                    last_segment = Some(segment);
                }
            }
            Ok(answer) => {
                seen.errors += 1;
                seen.first_error
                    .get_or_insert(format!("playlist: {}", answer.status));
            }
            Err(error) => {
                seen.errors += 1;
                seen.first_error.get_or_insert(error);
            }
        }
        tick += interval;
        tokio::time::sleep_until(tick).await;
    }
    seen
}

/// `viewers` players polling `playlist(n)` at `rate` playlists per second in all.
async fn load(
    addr: SocketAddr,
    playlist: impl Fn(usize) -> String,
    viewers: usize,
    rate: f64,
    seconds: f64,
    label: &str,
) -> Seen {
    let interval = Duration::from_secs_f64(viewers as f64 / rate.max(1.0));
    let started = Instant::now();
    let until = started + Duration::from_secs_f64(seconds);
    let done = Arc::new(AtomicU64::new(0));
    let players: Vec<_> = (0..viewers)
        .map(|n| {
            let phase = interval.mul_f64(n as f64 / viewers.max(1) as f64);
            tokio::spawn(player(
                addr,
                playlist(n),
                interval,
                phase,
                until,
                done.clone(),
            ))
        })
        .collect();
    let mut last = 0;
    while Instant::now() < until {
        tokio::time::sleep(Duration::from_secs(1)).await;
        let now = done.load(Ordering::Relaxed);
        progress(&format!(
            "{label}: {:>4.1}/{seconds:.0} s  {} playlists/s",
            started.elapsed().as_secs_f64(),
            now - last
        ));
        last = now;
    }
    let mut seen = Seen::default();
    for player in players {
        if let Ok(player) = player.await {
            seen.merge(player);
        }
    }
    seen
}

/// Starts a side channel every second until `stop`, each with the next fault of
/// [`CHURN_FAULTS`]; a player asks for its playlist and keeps polling. Returns, per
/// channel started, its time to the first playlist and its status (0 and NaN: still
/// waiting when the load ended).
async fn churn(rig: &Rig, mut stop: watch::Receiver<bool>) -> Vec<(u16, f64)> {
    let addr = rig.acemux.addr();
    let mut players = Vec::new();
    // One report per side channel; at most one channel starts per interval.
    let (firsts, mut reported) = tokio::sync::mpsc::channel::<(u16, f64)>(1024);
    for k in 0..1024 {
        let id = format!("side{k}");
        let faults: Value = serde_json::from_str(CHURN_FAULTS[k % CHURN_FAULTS.len()])
            .expect("the side channel faults are valid JSON");
        if let Err(error) = rig.set_faults(&id, faults).await {
            progress(&error);
        }
        let mut stopped = stop.clone();
        let firsts = firsts.clone();
        players.push(tokio::spawn(async move {
            let mut conn = Conn::new(addr);
            let path = format!("/ace/manifest.m3u8?id={id}&t=side");
            let started = Instant::now();
            let first = tokio::time::timeout(FIRST_PLAYLIST_BOUND, conn.get(&path)).await;
            let first = match first {
                Ok(Ok(answer)) => (answer.status, started.elapsed().as_secs_f64() * 1000.0),
                _ => (0, f64::NAN),
            };
            let _ = firsts.send(first).await;
            // Keep polling, as a player does, so that the channel stays watched.
            while !*stopped.borrow() {
                tokio::select! {
                    _ = stopped.changed() => {}
                    () = tokio::time::sleep(Duration::from_secs(1)) => {
                        let _ = conn.get(&path).await;
                    }
                }
            }
        }));
        tokio::select! {
            _ = stop.changed() => break,
            () = tokio::time::sleep(CHURN_INTERVAL) => {}
        }
    }
    let mut answered = Vec::new();
    while let Ok(first) = reported.try_recv() {
        answered.push(first);
    }
    for player in &players {
        player.abort();
    }
    answered.resize(players.len(), (0, f64::NAN));
    answered
}

/// Where acemux's HLS comes from in a side of the run, as `--hls-source` names it.
const SOURCES: [&str; 2] = ["engine", "ts"];

/// What one source's run measured.
struct Measured {
    source: &'static str,
    first_playlist_ms: f64,
    acemux: Seen,
    churned: Vec<(u16, f64)>,
    baseline: Seen,
}

pub async fn run(options: &Options) -> Result<ScenarioReport, String> {
    let viewers = or(options.viewers, 200);
    let seconds = or(options.seconds, 10.0);
    let rate = or(options.rate, 1000.0);
    let mut runs = Vec::new();
    for source in SOURCES {
        progress(&format!("--hls-source {source}"));
        let rig = Rig::start_full(
            RING_BYTES,
            super::ENGINE_PREBUFFER_MS,
            &["--hls-source", source],
        )
        .await?;
        let outcome = measure(&rig, viewers, seconds, rate).await;
        rig.stop().await;
        let (first_playlist_ms, acemux, churned, baseline) = outcome?;
        if let Some(error) = &acemux.first_error {
            progress(&format!("acemux ({source}): first failed request: {error}"));
        }
        runs.push(Measured {
            source,
            first_playlist_ms,
            acemux,
            churned,
            baseline,
        });
    }
    let cell = |values: &[f64]| {
        format!(
            "{} / {}",
            ms(quantile(values, 0.5)),
            ms(quantile(values, 0.99))
        )
    };
    let mut rows = Vec::new();
    let mut sides = serde_json::Map::new();
    for run in &runs {
        let Measured {
            source,
            first_playlist_ms,
            acemux,
            churned,
            baseline,
        } = run;
        let playlist_p99 = quantile(&acemux.playlist_ms, 0.99);
        let base_p99 = quantile(&baseline.playlist_ms, 0.99);
        let side_ok: Vec<f64> = churned
            .iter()
            .filter(|(status, _)| *status == 200)
            .map(|(_, ms)| *ms)
            .collect();
        rows.extend([
            Row::compared(
                &format!("{source}: playlist latency p50 / p99"),
                cell(&acemux.playlist_ms),
                cell(&baseline.playlist_ms),
                ratio(playlist_p99, base_p99),
            )
            .target("p99 ≤ 2 ms", playlist_p99 <= TARGET_PLAYLIST_P99_MS),
            Row::compared(
                &format!("{source}: segment latency p50 / p99"),
                cell(&acemux.segment_ms),
                cell(&baseline.segment_ms),
                ratio(
                    quantile(&acemux.segment_ms, 0.99),
                    quantile(&baseline.segment_ms, 0.99),
                ),
            ),
            Row::compared(
                &format!("{source}: playlist requests answered per second"),
                format!("{:.0}", acemux.playlist_ms.len() as f64 / seconds),
                format!("{:.0}", baseline.playlist_ms.len() as f64 / seconds),
                ratio(
                    acemux.playlist_ms.len() as f64,
                    baseline.playlist_ms.len() as f64,
                ),
            ),
            Row::compared(
                &format!("{source}: failed requests"),
                acemux.errors.to_string(),
                baseline.errors.to_string(),
                f64::NAN,
            ),
            Row::alone(
                &format!("{source}: new channel: first request → first playlist"),
                ms(*first_playlist_ms),
            ),
            Row::alone(
                &format!("{source}: side channels started meanwhile: first playlist p50 / max"),
                format!(
                    "{} / {} ({} of {} answered)",
                    ms(quantile(&side_ok, 0.5)),
                    ms(quantile(&side_ok, 1.0)),
                    side_ok.len(),
                    churned.len()
                ),
            ),
        ]);
        sides.insert(
            (*source).to_owned(),
            json!({
                "acemux": {
                    "requests": acemux.json(seconds),
                    "first_playlist_ms": finite(*first_playlist_ms),
                    "side_channels": churned.len(),
                    "side_first_playlist": latency_json(&side_ok),
                },
                "baseline": { "requests": baseline.json(seconds) },
                "ratios": {
                    "playlist_p99": finite(ratio(playlist_p99, base_p99)),
                    "segment_p99": finite(ratio(quantile(&acemux.segment_ms, 0.99), quantile(&baseline.segment_ms, 0.99))),
                },
            }),
        );
    }
    let setup = format!(
        "Run once per HLS source: `--hls-source engine` (the engine's own HLS, re-served) \
         and `--hls-source ts` (segments cut by acemux from the channel's TS session). \
         {viewers} players poll one channel's playlist, {rate:.0} playlists/s in all, and \
         fetch each new segment once, for {seconds:.0} s; meanwhile a new channel starts \
         every {CHURN_INTERVAL:?} whose engine stalls its playlist after 3 s, answers \
         segments after 3 s, or answers playlists after 1.5 s (in turn; the engine's HLS \
         faults, which a cut channel never meets). The baseline serves a playlist and \
         segments of the same shape from memory, measured after each source."
    );
    let json = json!({
        "viewers": viewers,
        "seconds": seconds,
        "rate": rate,
        "sources": sides,
    });
    Ok(ScenarioReport {
        name: "hls",
        setup,
        rows,
        json,
    })
}

async fn measure(
    rig: &Rig,
    viewers: usize,
    seconds: f64,
    rate: f64,
) -> Result<(f64, Seen, Vec<(u16, f64)>, Seen), String> {
    let acemux = rig.acemux.addr();
    let started = Instant::now();
    let first = tokio::time::timeout(
        FIRST_PLAYLIST_BOUND,
        Conn::new(acemux).get("/ace/manifest.m3u8?id=main&t=first"),
    )
    .await
    .map_err(|_| "no first playlist in time".to_owned())??;
    let first_playlist_ms = started.elapsed().as_secs_f64() * 1000.0;
    if first.status != 200 {
        return Err(format!(
            "first playlist: {} {}",
            first.status,
            String::from_utf8_lossy(&first.body)
        ));
    }
    progress(&format!(
        "acemux: first playlist after {}",
        ms(first_playlist_ms)
    ));
    let (stop, stopped) = watch::channel(false);
    let (seen, churned) = tokio::join!(
        async {
            let seen = load(
                acemux,
                |n| format!("/ace/manifest.m3u8?id=main&t=p{n}"),
                viewers,
                rate,
                seconds,
                "acemux",
            )
            .await;
            let _ = stop.send(true);
            seen
        },
        churn(rig, stopped),
    );
    let baseline = load(
        rig.baseline.addr(),
        |_| "/hls/playlist.m3u8".to_owned(),
        viewers,
        rate,
        seconds,
        "baseline",
    )
    .await;
    Ok((first_playlist_ms, seen, churned, baseline))
}
