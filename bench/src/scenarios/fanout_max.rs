//! `fanout-max`: the most egress acemux sustains to 200 viewers, against the plain
//! sender's, unpaced by the benchmark: the stream's rate is pushed as high as it goes.
//!
//! A live channel has a rate: acemux never slows its engine down for a viewer, it
//! drops the viewer that cannot keep up. So the figure of each side is found by the
//! same search over the stream's rate: the highest rate at which every viewer keeps
//! it (≥ 95 %, none dropped), times the viewers. The plain sender writing unpaced,
//! as fast as its clients read, is reported too (with that many full socket buffers
//! it is usually below the paced figure, and is not the ceiling).

use serde_json::{json, Value};

use super::fanout::{side, Side};
use super::{or, progress, Rig};
use crate::report::{finite, mbit, quantile, ratio, Row, ScenarioReport};
use crate::Options;

/// The ring holds ten seconds and more of the fastest streams tried, so that a viewer
/// is dropped for not keeping up, not for the engine's start burst.
const RING_BYTES: usize = 128 * 1024 * 1024;
/// The engine's start burst (the emulator's default prebuffer).
const ENGINE_PREBUFFER_MS: u64 = 2000;
const KEEPS_RATE: f64 = 0.95;
const TARGET_RATIO: f64 = 0.7;
/// The emulator's highest pacing rate.
const MAX_RATE_BPS: f64 = 1e9;
/// The search stops once the passing and failing rates are this close.
const RESOLUTION: f64 = 1.08;

fn keeps(side: &Side, rate_bps: f64) -> bool {
    quantile(&side.window.rates_bps, 0.01) >= KEEPS_RATE * rate_bps && side.dropped() == 0
}

/// The highest rate `open(trial, rate)` sustains, found in `trials` trials from
/// `start`: the passing side (rate, figures) if any, and every step as JSON.
async fn search(
    rig: &Rig,
    acemux: bool,
    viewers: usize,
    seconds: f64,
    trials: usize,
    start: f64,
) -> Result<(Option<(f64, Side)>, Vec<Value>), String> {
    let mut rate = start.clamp(1e6, MAX_RATE_BPS);
    let mut passed: Option<(f64, Side)> = None;
    let mut failed: Option<f64> = None;
    let mut steps: Vec<Value> = Vec::new();
    let name = if acemux { "acemux" } else { "baseline" };
    for trial in 0..trials {
        let rate_bps = rate.round() as u64;
        let (server, path) = if acemux {
            let id = format!("max{trial}");
            rig.set_faults(&id, json!({ "bitrate_bps": rate_bps }))
                .await?;
            (&rig.acemux, format!("/ace/getstream?id={id}"))
        } else {
            (&rig.baseline, format!("/ts/{rate_bps}"))
        };
        let label = format!("{name} at {}", mbit(rate));
        let outcome = side(server, &path, viewers, seconds, &label).await;
        let ok = outcome.as_ref().is_ok_and(|side| keeps(side, rate));
        steps.push(json!({
            "rate_bps": rate_bps,
            "sustained": ok,
            "egress_bps": outcome.as_ref().map_or(0.0, |side| side.window.egress_bps),
            "rate_bps_p1": outcome.as_ref().map_or(Value::Null, |side| finite(quantile(&side.window.rates_bps, 0.01))),
            "viewers_dropped": outcome.as_ref().map_or(viewers, Side::dropped),
        }));
        progress(&format!(
            "{label}: {}",
            if ok { "sustained" } else { "not sustained" }
        ));
        match outcome {
            Ok(side) if ok => passed = Some((rate, side)),
            _ => failed = Some(rate),
        }
        // Let the trial's channel end (idle grace) before the next one.
        tokio::time::sleep(std::time::Duration::from_millis(1500)).await;
        let low = passed.as_ref().map(|(rate, _)| *rate);
        rate = match (low, failed) {
            (Some(low), Some(high)) if high / low <= RESOLUTION => break,
            (Some(low), Some(high)) => (low + high) / 2.0,
            (Some(low), None) if low >= MAX_RATE_BPS => break,
            (Some(low), None) => (low * 1.5).min(MAX_RATE_BPS),
            (None, Some(high)) if high <= 1e6 => break,
            (None, Some(high)) => (high / 2.0).max(1e6),
            (None, None) => break,
        };
    }
    Ok((passed, steps))
}

pub async fn run(options: &Options) -> Result<ScenarioReport, String> {
    let viewers = or(options.viewers, 200);
    let seconds = or(options.seconds, 3.0);
    let trials = or(options.trials, 6).max(1);
    let rig = Rig::start_with(RING_BYTES, ENGINE_PREBUFFER_MS).await?;
    let outcome = measure(&rig, viewers, seconds, trials).await;
    rig.stop().await;
    let (unpaced, (baseline, baseline_steps), (acemux, acemux_steps)) = outcome?;
    let figures = |passed: &Option<(f64, Side)>| match passed {
        Some((rate, side)) => (*rate, side.window.egress_bps, side.window.cpu_cores),
        None => (0.0, 0.0, f64::NAN),
    };
    let (acemux_rate, egress, acemux_cpu) = figures(&acemux);
    let (baseline_rate, baseline_egress, baseline_cpu) = figures(&baseline);
    let egress_ratio = ratio(egress, baseline_egress);
    let rows = vec![
        Row::compared(
            &format!("egress sustained to {viewers} viewers"),
            mbit(egress),
            mbit(baseline_egress),
            egress_ratio,
        )
        .target(
            &format!("≥ {TARGET_RATIO}× baseline"),
            egress_ratio >= TARGET_RATIO,
        ),
        Row::compared(
            "highest stream rate every viewer kept",
            mbit(acemux_rate),
            mbit(baseline_rate),
            ratio(acemux_rate, baseline_rate),
        ),
        Row::compared(
            "server CPU at that rate (cores)",
            format!("{acemux_cpu:.2}"),
            format!("{baseline_cpu:.2}"),
            ratio(acemux_cpu, baseline_cpu),
        ),
        Row::alone(
            "baseline writing unpaced (as fast as read)",
            format!(
                "{} ({:.2} cores)",
                mbit(unpaced.window.egress_bps),
                unpaced.window.cpu_cores
            ),
        ),
    ];
    let setup = format!(
        "{viewers} viewers; for each side the stream rate is searched ({trials} trials of \
         {seconds:.0} s at most) for the highest rate at which every viewer keeps ≥ {:.0}% of \
         it with none dropped; the search starts at half the unpaced baseline's per-viewer \
         share. acemux keeps a {} ring (the engine's start burst is 2 s of the stream).",
        KEEPS_RATE * 100.0,
        crate::report::mib(RING_BYTES as f64),
    );
    let json = json!({
        "viewers": viewers,
        "seconds_per_trial": seconds,
        "acemux": {
            "egress_bps": egress,
            "stream_rate_bps": acemux_rate,
            "cpu_cores": finite(acemux_cpu),
            "search": acemux_steps,
        },
        "baseline": {
            "egress_bps": baseline_egress,
            "stream_rate_bps": baseline_rate,
            "cpu_cores": finite(baseline_cpu),
            "search": baseline_steps,
            "unpaced_egress_bps": unpaced.window.egress_bps,
            "unpaced_cpu_cores": unpaced.window.cpu_cores,
        },
        "ratios": { "egress": finite(egress_ratio) },
    });
    Ok(ScenarioReport {
        name: "fanout-max",
        setup,
        rows,
        json,
    })
}

#[allow(clippy::type_complexity)]
async fn measure(
    rig: &Rig,
    viewers: usize,
    seconds: f64,
    trials: usize,
) -> Result<
    (
        Side,
        (Option<(f64, Side)>, Vec<Value>),
        (Option<(f64, Side)>, Vec<Value>),
    ),
    String,
> {
    let unpaced = side(
        &rig.baseline,
        "/ts-unpaced",
        viewers,
        seconds,
        "baseline unpaced",
    )
    .await?;
    let start = unpaced.window.egress_bps / viewers as f64 * 0.5;
    let baseline = search(rig, false, viewers, seconds, trials, start).await?;
    let acemux = search(rig, true, viewers, seconds, trials, start).await?;
    Ok((unpaced, baseline, acemux))
}
