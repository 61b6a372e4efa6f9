//! The in-process rig the hostile-engine tests share: acemux in front of one
//! [`HostileEngine`], with short bounds, and the assertions they all make.

use std::time::Duration;

use acemux::proxy::{HlsSource, ProxyConfig};
use acemux::ServeOptions;
use acemux_core::channel::ChannelConfig;
use acemux_core::hls::HlsConfig;
use acemux_core::ts::PACKET_LEN;
use acemux_testkit::emulator::MediaLoop;
use bytes::Bytes;
use hyper::StatusCode;
use serde_json::Value;

use crate::hostile_engine::{Hit, HostileEngine};
use crate::proxy::ProxyRig;
use crate::Client;

/// Bound on a new channel's start in [`options`].
pub const START_TIMEOUT: Duration = Duration::from_secs(2);
/// Largest HLS segment acemux takes in [`options`].
pub const MAX_SEGMENT_BYTES: usize = 256 * 1024;

/// acemux with `engine` as its only engine, short bounds, and every HLS segment of a
/// test playlist fetched.
pub fn options(engine: &HostileEngine) -> ServeOptions {
    ServeOptions {
        engines: vec![engine.engine_addr()],
        proxy: ProxyConfig {
            channel: ChannelConfig {
                start_timeout: START_TIMEOUT,
                upstream_stall_timeout: Duration::from_secs(1),
                initial_backoff: Duration::from_millis(50),
                max_backoff: Duration::from_millis(100),
                idle_grace: Duration::from_millis(200),
                ..ChannelConfig::default()
            },
            engine_request_timeout: Duration::from_secs(1),
            // Every test case gets the engine afresh.
            engine_cooldown: Duration::ZERO,
            hls: HlsConfig {
                ready_segments: 1,
                // Every segment of a test playlist is fetched, not only the live edge.
                start_segments: 10,
                error_backoff_initial: Duration::from_millis(100),
                error_backoff_max: Duration::from_millis(200),
                segment_retry_delay: Duration::from_millis(50),
                ..HlsConfig::default()
            },
            hls_idle_timeout: Duration::from_secs(2),
            hls_max_segment_bytes: MAX_SEGMENT_BYTES,
            // The hostile engines script their HLS output: re-serve it.
            hls_source: HlsSource::Engine,
            ..ProxyConfig::default()
        },
        ..ServeOptions::default()
    }
}

/// acemux in-process with [`options`].
pub async fn rig(engine: &HostileEngine) -> ProxyRig {
    ProxyRig::start_options(Vec::new(), options(engine)).await
}

/// `/health` answers 200 within a second.
pub async fn assert_healthy(rig: &ProxyRig) {
    let health = tokio::time::timeout(
        Duration::from_secs(1),
        Client::new().get(&rig.url("/health")),
    )
    .await
    .expect("/health answered within 1 s")
    .expect("/health answered");
    assert_eq!(health.0, StatusCode::OK);
}

/// GET `path` on acemux; the status and the JSON body, bounded well past the start
/// timeout so a hang fails the test.
pub async fn get(rig: &ProxyRig, path: &str) -> (StatusCode, Value) {
    tokio::time::timeout(START_TIMEOUT * 4, Client::new().get(&rig.url(path)))
        .await
        .unwrap_or_else(|_| panic!("{path} did not answer within {:?}", START_TIMEOUT * 4))
        .expect("an answer")
}

/// `answer` is `status` with the JSON error `code` and a message.
pub fn assert_error(answer: &(StatusCode, Value), status: StatusCode, code: &str) {
    assert_eq!(answer.0, status, "{}", answer.1);
    assert_eq!(answer.1["error"], code, "{}", answer.1);
    assert!(
        answer.1["message"].as_str().is_some_and(|m| !m.is_empty()),
        "no message: {}",
        answer.1
    );
}

/// The value of query parameter `name` in `hit` (empty when absent).
pub fn param<'a>(hit: &'a Hit, name: &str) -> &'a str {
    hit.query
        .split('&')
        .find_map(|pair| pair.strip_prefix(name)?.strip_prefix('='))
        .unwrap_or_default()
}

/// The first `packets` packets of the built-in test media (a PAT and a keyframe first).
pub fn ts_media(packets: usize) -> Bytes {
    MediaLoop::builtin().read(0, packets * PACKET_LEN)
}

/// The value of metric `sample` on `rig`.
pub fn metric(rig: &ProxyRig, sample: &str) -> f64 {
    rig.metric(sample)
}

/// `GET path`, watching `samples` while its answer is pending: the highest value of
/// each seen meanwhile. A channel's series go when it ends, which a failed start's
/// answer follows: what it counted is read while it still runs.
pub async fn get_watching(
    rig: &ProxyRig,
    path: &str,
    samples: &[String],
) -> ((StatusCode, Value), Vec<f64>) {
    let mut highest = vec![0.0_f64; samples.len()];
    let note = |highest: &mut Vec<f64>| {
        for (seen, sample) in highest.iter_mut().zip(samples) {
            *seen = seen.max(rig.metric(sample));
        }
    };
    let answer = get(rig, path);
    tokio::pin!(answer);
    loop {
        tokio::select! {
            answer = &mut answer => {
                note(&mut highest);
                return (answer, highest);
            }
            () = tokio::time::sleep(std::time::Duration::from_millis(10)) => note(&mut highest),
        }
    }
}
