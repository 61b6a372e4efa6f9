//! `join-storm`: a crowd opens one running channel at the same instant (all viewers
//! connect within 100 ms), as when a match starts. Every viewer must be served: how
//! many were, how long they waited for their first byte next to the plain sender's
//! crowd, and why any were refused.
//!
//! acemux starts a joining player at the last place it can start decoding (the PAT
//! before the newest keyframe) and sends it everything from there to the live edge at
//! once: with the built-in media at 1 Mbit/s about 170 KB on average, some thirty
//! times the plain sender's newest piece. Under a storm those bytes, not the joins, are
//! most of the work. So the crowd is measured against the plain sender twice: sending
//! each joiner the same bytes (`?start=entry`, the target's baseline: the cost of
//! serving the crowd), and sending only the newest piece (for reference: the cost of
//! the join bytes as well).

use std::collections::BTreeMap;
use std::time::Duration;

use serde_json::json;

use super::{metric, or, progress, Crowd, Rig};
use crate::load::Watched;
use crate::report::{finite, latency_json, mbit, ms, quantile, ratio, Row, ScenarioReport};
use crate::Options;

const RING_BYTES: usize = 16 * 1024 * 1024;
/// The crowd connects within this.
const STORM: Duration = Duration::from_millis(100);
/// Bound on the crowd's first bytes.
const FIRST_BYTE_BOUND: Duration = Duration::from_secs(40);
/// Target: join p99 at most this multiple of the baseline's.
const TARGET_P99_RATIO: f64 = 2.0;

/// What one side's crowd saw.
struct Storm {
    ttfb_ms: Vec<f64>,
    /// Viewers not served, by what they got (status or error).
    refused: BTreeMap<String, usize>,
}

impl Storm {
    fn served(&self) -> usize {
        self.ttfb_ms.len()
    }
}

async fn storm(
    addr: std::net::SocketAddr,
    path: &str,
    viewers: usize,
    label: &str,
) -> Result<Storm, String> {
    let holder = Crowd::holder(addr, path, label).await?;
    progress(&format!(
        "{label}: {viewers} viewers connecting within {STORM:?}"
    ));
    let crowd = Crowd::start(addr, path, viewers, STORM);
    let started = crowd.wait_started(STORM + FIRST_BYTE_BOUND).await;
    progress(&format!("{label}: {started}/{viewers} viewers have media"));
    let watched = crowd.finish().await;
    holder.finish().await;
    Ok(outcome(&watched))
}

fn outcome(watched: &[Watched]) -> Storm {
    let mut refused = BTreeMap::new();
    let mut ttfb_ms = Vec::new();
    for viewer in watched {
        match viewer.ttfb {
            Some(ttfb) => ttfb_ms.push(ttfb.as_secs_f64() * 1000.0),
            None => {
                let why = match viewer.status {
                    0 => viewer.error.clone().unwrap_or_else(|| "no answer".into()),
                    status => format!("HTTP {status}"),
                };
                *refused.entry(why).or_insert(0) += 1;
            }
        }
    }
    Storm { ttfb_ms, refused }
}

pub async fn run(options: &Options) -> Result<ScenarioReport, String> {
    let viewers = or(options.viewers, 5000);
    let bitrate = or(options.bitrate_bps, 1_000_000);
    let rig = Rig::start(RING_BYTES).await?;
    rig.set_faults("storm", json!({ "bitrate_bps": bitrate }))
        .await?;
    let acemux = storm(
        rig.acemux.addr(),
        "/ace/getstream?id=storm",
        viewers,
        "acemux",
    )
    .await;
    let limit_hits = metric(rig.acemux.addr(), "acemux_limit_hits_total", "").await;
    let baseline = storm(
        rig.baseline.addr(),
        &format!("/ts/{bitrate}?start=entry"),
        viewers,
        "baseline (same join bytes)",
    )
    .await;
    let newest = storm(
        rig.baseline.addr(),
        &format!("/ts/{bitrate}"),
        viewers,
        "baseline (newest piece)",
    )
    .await;
    rig.stop().await;
    let (acemux, baseline, newest) = (acemux?, baseline?, newest?);

    let cell = |storm: &Storm| {
        format!(
            "{} / {}",
            ms(quantile(&storm.ttfb_ms, 0.5)),
            ms(quantile(&storm.ttfb_ms, 0.99))
        )
    };
    let refusals = |storm: &Storm| {
        if storm.refused.is_empty() {
            "none".to_owned()
        } else {
            storm
                .refused
                .iter()
                .map(|(why, count)| format!("{count} × {why}"))
                .collect::<Vec<_>>()
                .join(", ")
        }
    };
    let p99_ratio = ratio(
        quantile(&acemux.ttfb_ms, 0.99),
        quantile(&baseline.ttfb_ms, 0.99),
    );
    let newest_p99_ratio = ratio(
        quantile(&acemux.ttfb_ms, 0.99),
        quantile(&newest.ttfb_ms, 0.99),
    );
    let rows = vec![
        Row::compared(
            "viewers served",
            format!("{} of {viewers}", acemux.served()),
            format!("{} of {viewers}", baseline.served()),
            f64::NAN,
        )
        .target("all served", acemux.served() == viewers),
        Row::compared(
            "join TTFB p50 / p99",
            cell(&acemux),
            cell(&baseline),
            p99_ratio,
        )
        .target(
            &format!("p99 ≤ {TARGET_P99_RATIO}× baseline"),
            p99_ratio <= TARGET_P99_RATIO,
        ),
        Row::compared(
            "refused, by answer",
            refusals(&acemux),
            refusals(&baseline),
            f64::NAN,
        ),
        Row::compared(
            "join TTFB p50 / p99, baseline sending the newest piece only",
            cell(&acemux),
            cell(&newest),
            newest_p99_ratio,
        ),
    ];
    let setup = format!(
        "{viewers} viewers open one running {} channel, all connecting within {STORM:?} \
         (time from the connect to the first media byte). The baseline sends each joiner \
         what acemux sends it: the media from the PAT before the newest keyframe to the \
         live edge, at once; the last row is the same crowd against a baseline that sends \
         only its newest piece (no start at a keyframe: fewer bytes, for reference).",
        mbit(bitrate as f64)
    );
    let json = json!({
        "viewers": viewers,
        "bitrate_bps": bitrate,
        "acemux": {
            "served": acemux.served(),
            "join_ttfb": latency_json(&acemux.ttfb_ms),
            "refused": acemux.refused,
            "limit_hits": finite(limit_hits),
        },
        "baseline": {
            "start": "entry",
            "served": baseline.served(),
            "join_ttfb": latency_json(&baseline.ttfb_ms),
            "refused": baseline.refused,
        },
        "baseline_newest_piece": {
            "start": "newest",
            "served": newest.served(),
            "join_ttfb": latency_json(&newest.ttfb_ms),
            "refused": newest.refused,
        },
        "ratios": {
            "join_ttfb_p99": finite(p99_ratio),
            "join_ttfb_p99_against_newest_piece": finite(newest_p99_ratio),
        },
    });
    Ok(ScenarioReport {
        name: "join-storm",
        setup,
        rows,
        json,
    })
}
