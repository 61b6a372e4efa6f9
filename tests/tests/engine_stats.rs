//! Engine stats over real sockets: acemux polls each playing session's `stat_url` on
//! the engine emulator, shows the figures on `/streams` (the orchestrator's names) and
//! as per-channel metrics, keeps the last figures while polls fail, and replaces a
//! session whose engine reports zero peers and no download progress for the bound,
//! on another engine, while its viewer keeps reading.

use std::time::Duration;

use acemux::proxy::ProxyConfig;
use acemux_core::channel::StatsConfig;
use acemux_testkit::emulator::{EmulatorConfig, Faults};
use acemux_tests::proxy::{open, patient_proxy, read_at_least, read_for, viewer_client, ProxyRig};
use acemux_tests::{eventually, Client};
use hyper::StatusCode;
use serde_json::Value;

const CONTENT: &str = "stats";
const CHANNEL: &str = "content_id:stats";

fn polled_proxy(no_peers_timeout: Option<Duration>) -> ProxyConfig {
    ProxyConfig {
        stats: StatsConfig {
            interval: Some(Duration::from_millis(200)),
            no_peers_timeout,
        },
        ..patient_proxy()
    }
}

async fn streams(rig: &ProxyRig, query: &str) -> Vec<Value> {
    let (status, body) = Client::new()
        .get(&rig.url(&format!("/streams{query}")))
        .await
        .expect("streams answered");
    assert_eq!(status, StatusCode::OK, "{body}");
    body.as_array().expect("a list").clone()
}

#[tokio::test]
async fn figures_show_on_streams_and_metrics_and_stay_while_polls_fail() {
    let rig = ProxyRig::start(polled_proxy(None)).await;
    let client = viewer_client();
    let (status, mut body) = open(&client, &rig.stream_url(CONTENT)).await;
    assert_eq!(status, StatusCode::OK);
    read_at_least(&mut body, 188 * 100, Duration::from_secs(10)).await;

    let shown = eventually(Duration::from_secs(10), || async {
        streams(&rig, "?status=started")
            .await
            .first()
            .is_some_and(|stream| stream["peers"].as_u64().is_some_and(|peers| peers > 0))
    })
    .await;
    assert!(shown, "figures on /streams: {:?}", streams(&rig, "").await);
    let stream = streams(&rig, "?status=started").await.remove(0);
    assert_eq!(stream["stats_status"], "dl");
    assert!(stream["speed_down"].as_u64() > Some(0), "{stream}");
    assert!(stream["downloaded"].as_u64() > Some(0), "{stream}");
    assert!(stream["uploaded"].as_u64().is_some(), "{stream}");
    assert!(stream["livepos"]["last_ts"].as_i64() > Some(0), "{stream}");
    let id = stream["id"].as_str().expect("an id").to_owned();
    let (_, one) = Client::new()
        .get(&rig.url(&format!("/streams/{}", id.replace('|', "%7C"))))
        .await
        .expect("one stream");
    assert_eq!(one["peers"], stream["peers"], "{one}");
    let peers_sample = format!("acemux_channel_engine_peers{{channel=\"{CHANNEL}\"}}");
    assert!(rig.metric(&peers_sample) > 0.0);

    // The download grows between polls.
    let grows = eventually(Duration::from_secs(10), || async {
        streams(&rig, "?status=started").await[0]["downloaded"].as_u64()
            > stream["downloaded"].as_u64()
    })
    .await;
    assert!(grows);

    // Failing polls are counted; the last figures stay; nothing is replaced.
    rig.emulator()
        .set_faults(
            CONTENT,
            Faults {
                stats_fail: true,
                ..Faults::default()
            },
        )
        .expect("valid faults");
    let failures = format!("acemux_channel_stat_failures_total{{channel=\"{CHANNEL}\"}}");
    let counted = eventually(Duration::from_secs(10), || async {
        rig.metric(&failures) >= 3.0
    })
    .await;
    assert!(counted, "failed polls counted");
    let now = streams(&rig, "?status=started").await;
    assert_eq!(now.len(), 1);
    assert_eq!(now[0]["id"], stream["id"], "the same session");
    assert!(now[0]["peers"].as_u64() > Some(0), "the last figures stay");
    let (still, ended) = read_for(&mut body, Duration::from_millis(300)).await;
    assert!(!ended && !still.is_empty(), "the viewer still plays");

    drop(body);
    // Once the session is over its figures and series go.
    let gone = eventually(Duration::from_secs(10), || async {
        streams(&rig, "?status=started").await.is_empty()
    })
    .await;
    assert!(gone);
    let ended = streams(&rig, "?status=ended").await;
    assert_eq!(ended[0]["peers"], Value::Null, "{ended:?}");
    assert_eq!(
        rig.metric(&peers_sample),
        0.0,
        "the channel's series is removed"
    );
    rig.shutdown().await;
}

#[tokio::test]
async fn a_session_with_no_peers_and_no_progress_is_replaced_on_another_engine() {
    let rig = ProxyRig::start_engines(
        vec![EmulatorConfig::default(), EmulatorConfig::default()],
        polled_proxy(Some(Duration::from_secs(1))),
    )
    .await;
    let client = viewer_client();
    let (status, mut body) = open(&client, &rig.stream_url(CONTENT)).await;
    assert_eq!(status, StatusCode::OK);
    read_at_least(&mut body, 188 * 100, Duration::from_secs(10)).await;
    let first = streams(&rig, "?status=started").await.remove(0);
    let first_port = first["engine"]["port"].as_u64().expect("a port");
    let (quiet, other) = if rig.engines[0].local_addr().port() == first_port as u16 {
        (0, 1)
    } else {
        (1, 0)
    };
    // The swarm of the engine playing it goes quiet; its media keeps flowing, so only
    // the stats can tell.
    rig.engines[quiet]
        .emulator()
        .set_faults(
            CONTENT,
            Faults {
                zero_peers: true,
                ..Faults::default()
            },
        )
        .expect("valid faults");

    let replaced = eventually(Duration::from_secs(15), || async {
        streams(&rig, "?status=started")
            .await
            .first()
            .is_some_and(|stream| stream["id"] != first["id"])
    })
    .await;
    assert!(replaced, "replaced: {:?}", streams(&rig, "").await);
    let now = streams(&rig, "?status=started").await.remove(0);
    assert_eq!(
        now["engine"]["port"].as_u64(),
        Some(u64::from(rig.engines[other].local_addr().port())),
        "on the other engine"
    );
    let ended = streams(&rig, "?status=ended").await;
    let old = ended
        .iter()
        .find(|stream| stream["id"] == first["id"])
        .expect("the first session ended");
    assert_eq!(old["end_reason"], "no_peers");
    assert_eq!(
        rig.engines[quiet].emulator().stats().contents[CONTENT].active_sessions,
        0,
        "the quiet session was stopped on its engine"
    );
    assert_eq!(
        rig.metric(&format!(
            "acemux_channel_no_peers_replacements_total{{channel=\"{CHANNEL}\"}}"
        )),
        1.0
    );
    // The viewer never left: it reads on from the new session.
    let (more, ended) = read_for(&mut body, Duration::from_millis(500)).await;
    assert!(!ended && !more.is_empty(), "the viewer still plays");
    rig.shutdown().await;
}
