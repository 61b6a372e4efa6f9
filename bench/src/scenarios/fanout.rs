//! `fanout`: N viewers of one channel at the stream's rate. Every viewer must keep
//! the rate; what does it cost acemux in CPU and memory, next to the plain sender?

use std::time::Duration;

use serde_json::{json, Value};

use super::{measure, metric, or, progress, Crowd, Rig, Window};
use crate::load::Watched;
use crate::procs::{Server, Usage};
use crate::report::{finite, kib, mbit, mib, quantile, ratio, Row, ScenarioReport};
use crate::Options;

/// acemux's ring per channel here (its default).
const RING_BYTES: usize = 16 * 1024 * 1024;
/// Per-viewer memory target beyond the shared ring.
const TARGET_BYTES_PER_VIEWER: f64 = 8.0 * 1024.0;
/// Server CPU target, as a multiple of the plain sender's.
const TARGET_CPU_RATIO: f64 = 1.1;
/// A viewer keeps the rate when it gets at least this share of it over the window.
const KEEPS_RATE: f64 = 0.95;
/// Time for joining viewers to take their join burst before the window.
const WARMUP: Duration = Duration::from_secs(2);

/// One side (acemux or baseline) of the scenario.
pub(super) struct Side {
    pub window: Window,
    pub watched: Vec<Watched>,
    pub idle: Usage,
}

impl Side {
    pub fn dropped(&self) -> usize {
        self.watched.iter().filter(|w| w.ended_early).count()
    }

    pub fn json(&self, extra_bytes: f64, viewers: usize) -> Value {
        let rates = &self.window.rates_bps;
        json!({
            "rate_bps_min": finite(quantile(rates, 0.0)),
            "rate_bps_p1": finite(quantile(rates, 0.01)),
            "rate_bps_p50": finite(quantile(rates, 0.5)),
            "egress_bps": self.window.egress_bps,
            "viewers_dropped": self.dropped(),
            "cpu_cores": self.window.cpu_cores,
            "rss_bytes": self.window.usage.rss_bytes,
            "peak_rss_bytes": self.window.usage.peak_rss_bytes,
            "idle_rss_bytes": self.idle.rss_bytes,
            "rss_bytes_per_viewer": self.per_viewer_bytes(extra_bytes, viewers),
        })
    }

    /// Resident memory per viewer beyond the idle process and `shared_bytes`.
    pub fn per_viewer_bytes(&self, shared_bytes: f64, viewers: usize) -> f64 {
        let grown = self.window.usage.rss_bytes as f64 - self.idle.rss_bytes as f64;
        (grown - shared_bytes).max(0.0) / viewers.max(1) as f64
    }
}

/// Runs `viewers` viewers of `path` on `server`: ramp, warm-up, then `seconds` measured.
pub(super) async fn side(
    server: &Server,
    path: &str,
    viewers: usize,
    seconds: f64,
    label: &str,
) -> Result<Side, String> {
    let idle = server.usage();
    let ramp = Duration::from_secs_f64((viewers as f64 / 500.0).clamp(0.2, 5.0));
    progress(&format!(
        "{label}: {viewers} viewers joining {path} over {ramp:?}"
    ));
    let crowd = Crowd::start(server.addr(), path, viewers, ramp);
    let started = crowd.wait_started(ramp + Duration::from_secs(40)).await;
    if started == 0 {
        let watched = crowd.finish().await;
        let error = watched
            .iter()
            .find_map(|w| w.error.clone())
            .unwrap_or_default();
        return Err(format!("{label}: no viewer got media ({error})"));
    }
    progress(&format!("{label}: {started}/{viewers} viewers have media"));
    tokio::time::sleep(WARMUP).await;
    let window = measure(&crowd, server, seconds, label).await;
    let watched = crowd.finish().await;
    Ok(Side {
        window,
        watched,
        idle,
    })
}

pub async fn run(options: &Options) -> Result<ScenarioReport, String> {
    run_as(options, "fanout", 1000, 8_000_000).await
}

/// `c10k`: the same measure with ten thousand viewers of a 1 Mbit/s channel.
pub async fn run_c10k(options: &Options) -> Result<ScenarioReport, String> {
    run_as(options, "c10k", 10_000, 1_000_000).await
}

async fn run_as(
    options: &Options,
    name: &'static str,
    default_viewers: usize,
    default_bitrate: u64,
) -> Result<ScenarioReport, String> {
    let viewers = or(options.viewers, default_viewers);
    let seconds = or(options.seconds, 10.0);
    let bitrate = or(options.bitrate_bps, default_bitrate);
    let rig = Rig::start(RING_BYTES).await?;
    rig.set_faults(name, json!({ "bitrate_bps": bitrate }))
        .await?;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let acemux = side(
        &rig.acemux,
        &format!("/ace/getstream?id={name}"),
        viewers,
        seconds,
        "acemux",
    )
    .await;
    let bytes_in = metric(
        rig.acemux.addr(),
        "acemux_channel_bytes_in",
        &format!("\"content_id:{name}\""),
    )
    .await;
    let acemux = match acemux {
        Ok(acemux) => acemux,
        Err(error) => {
            rig.stop().await;
            return Err(error);
        }
    };
    let baseline = side(
        &rig.baseline,
        &format!("/ts/{bitrate}"),
        viewers,
        seconds,
        "baseline",
    )
    .await;
    rig.stop().await;
    let baseline = baseline?;

    // The ring holds the newest `RING_BYTES` of what came in (no less than nothing).
    let ring_bytes = bytes_in.min(RING_BYTES as f64);
    let keeps = |side: &Side| {
        quantile(&side.window.rates_bps, 0.01) >= KEEPS_RATE * bitrate as f64 && side.dropped() == 0
    };
    let rate_cell = |side: &Side| {
        format!(
            "{} / {}",
            mbit(quantile(&side.window.rates_bps, 0.01)),
            mbit(quantile(&side.window.rates_bps, 0.5))
        )
    };
    let acemux_per_viewer = acemux.per_viewer_bytes(ring_bytes, viewers);
    let baseline_per_viewer = baseline.per_viewer_bytes(0.0, viewers);
    // The CPU target is the steady crowd's (1,000 × 8 Mbit/s); c10k is judged on rates.
    let cpu_target = format!("≤ {TARGET_CPU_RATIO}× baseline");
    let rows = vec![
        Row::compared(
            "per-viewer rate p1 / p50",
            rate_cell(&acemux),
            rate_cell(&baseline),
            ratio(
                quantile(&acemux.window.rates_bps, 0.01),
                quantile(&baseline.window.rates_bps, 0.01),
            ),
        )
        .target(
            &format!(
                "every viewer ≥ {:.0}% of {}",
                KEEPS_RATE * 100.0,
                mbit(bitrate as f64)
            ),
            keeps(&acemux),
        ),
        Row::compared(
            "viewers dropped",
            acemux.dropped().to_string(),
            baseline.dropped().to_string(),
            f64::NAN,
        ),
        Row::compared(
            "egress, all viewers",
            mbit(acemux.window.egress_bps),
            mbit(baseline.window.egress_bps),
            ratio(acemux.window.egress_bps, baseline.window.egress_bps),
        ),
        Row::compared(
            "server CPU (cores)",
            format!("{:.2}", acemux.window.cpu_cores),
            format!("{:.2}", baseline.window.cpu_cores),
            ratio(acemux.window.cpu_cores, baseline.window.cpu_cores),
        )
        .target_if(
            name == "fanout",
            &cpu_target,
            ratio(acemux.window.cpu_cores, baseline.window.cpu_cores) <= TARGET_CPU_RATIO,
        ),
        Row::compared(
            "server RSS (idle → with viewers)",
            format!(
                "{} → {}",
                mib(acemux.idle.rss_bytes as f64),
                mib(acemux.window.usage.rss_bytes as f64)
            ),
            format!(
                "{} → {}",
                mib(baseline.idle.rss_bytes as f64),
                mib(baseline.window.usage.rss_bytes as f64)
            ),
            ratio(
                acemux.window.usage.rss_bytes as f64,
                baseline.window.usage.rss_bytes as f64,
            ),
        ),
        Row::compared(
            "RSS per viewer beyond the ring",
            kib(acemux_per_viewer),
            kib(baseline_per_viewer),
            ratio(acemux_per_viewer, baseline_per_viewer),
        )
        .target("≤ 8 KiB", acemux_per_viewer <= TARGET_BYTES_PER_VIEWER),
    ];
    let setup = format!(
        "{viewers} viewers of one channel at {} (acemux ring {}: {} held), {seconds:.0} s measured after a {:?} warm-up.",
        mbit(bitrate as f64),
        mib(RING_BYTES as f64),
        mib(ring_bytes),
        WARMUP,
    );
    let json = json!({
        "viewers": viewers,
        "seconds": seconds,
        "bitrate_bps": bitrate,
        "ring_bytes": ring_bytes,
        "acemux": acemux.json(ring_bytes, viewers),
        "baseline": baseline.json(0.0, viewers),
        "ratios": {
            "rate_p1": finite(ratio(quantile(&acemux.window.rates_bps, 0.01), quantile(&baseline.window.rates_bps, 0.01))),
            "egress": finite(ratio(acemux.window.egress_bps, baseline.window.egress_bps)),
            "cpu": finite(ratio(acemux.window.cpu_cores, baseline.window.cpu_cores)),
        },
    });
    Ok(ScenarioReport {
        name,
        setup,
        rows,
        json,
    })
}
