//! acemux, engine emulators and fault relays as real processes: the slow or broken
//! VPN hop between acemux and its engines, on real sockets. Every test also checks
//! that `/health` answers within a second throughout.

use std::path::Path;
use std::time::Duration;

use acemux_core::ts::{packets, NULL_PID};
use acemux_tests::proxy::{open, read_for, viewer_client, without_nulls};
use acemux_tests::relay::RelayProcess;
use acemux_tests::{eventually, free_port, Acemux, Client};
use hyper::StatusCode;
use tokio::sync::watch;
use tokio::time::Instant;

/// Bound on each `/health` answer while the network misbehaves.
const HEALTH_BOUND: Duration = Duration::from_secs(1);

/// acemux bounds short enough for tests: one engine request may take 1 s, a start
/// 4 s, one second of upstream silence triggers a reconnect.
const QUICK_PROXY: &[&str] = &[
    "--db",
    ":memory:",
    "--engine-request-timeout",
    "1s",
    "--start-timeout",
    "4s",
    "--upstream-stall-timeout",
    "1s",
    "--recovery-timeout",
    "30s",
    "--idle-grace",
    "1s",
];

async fn engine(dir: &Path, name: &str) -> Acemux {
    Acemux::emulate_engine(free_port(), &[], &dir.join(format!("{name}.log"))).await
}

/// acemux with `QUICK_PROXY` bounds in front of `relays`.
async fn acemux_behind(relays: &[&RelayProcess], dir: &Path) -> Acemux {
    let mut args: Vec<String> = QUICK_PROXY.iter().map(|arg| (*arg).to_owned()).collect();
    for relay in relays {
        args.push("--engine".to_owned());
        args.push(relay.addr().to_string());
    }
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    Acemux::serve(free_port(), &args, &dir.join("acemux.log")).await
}

/// Asks `/health` every 100 ms in the background; each answer must be a 200 within
/// [`HEALTH_BOUND`].
struct HealthWatch {
    stop: watch::Sender<bool>,
    task: tokio::task::JoinHandle<(usize, Vec<String>)>,
}

impl HealthWatch {
    fn start(acemux: &Acemux) -> HealthWatch {
        let url = acemux.url("/health");
        let (stop, mut stopped) = watch::channel(false);
        let task = tokio::spawn(async move {
            let client = Client::new();
            let (mut answered, mut failures) = (0, Vec::new());
            while !*stopped.borrow() {
                let started = Instant::now();
                match tokio::time::timeout(HEALTH_BOUND, client.get(&url)).await {
                    Ok(Ok((StatusCode::OK, _))) => answered += 1,
                    Ok(Ok((status, body))) => failures.push(format!("{status}: {body}")),
                    Ok(Err(error)) => failures.push(error),
                    Err(_) => failures.push(format!("no answer within {HEALTH_BOUND:?}")),
                }
                let next = started + Duration::from_millis(100);
                let _ = tokio::time::timeout_at(next, stopped.changed()).await;
            }
            (answered, failures)
        });
        HealthWatch { stop, task }
    }

    async fn assert_fast_throughout(self, acemux: &Acemux) {
        self.stop.send_replace(true);
        let (answered, failures) = self.task.await.expect("health task");
        assert!(
            failures.is_empty(),
            "/health was slow or failing: {failures:?}; log:\n{}",
            acemux.log_text()
        );
        assert!(answered >= 5, "only {answered} health checks ran");
    }
}

/// Whole TS null packets in `bytes` (acemux's keepalive).
fn null_packets(bytes: &[u8]) -> usize {
    packets(bytes)
        .filter(|packet| packet.pid() == NULL_PID)
        .count()
}

/// Media (non-null) bytes read from `body` until `len` arrived or `bound` passed.
async fn read_media(body: &mut hyper::body::Incoming, len: usize, bound: Duration) -> usize {
    let deadline = Instant::now() + bound;
    let mut media = 0;
    while media < len && Instant::now() < deadline {
        let (bytes, ended) = read_for(body, Duration::from_millis(250)).await;
        media += without_nulls(&bytes).len();
        if ended {
            break;
        }
    }
    media
}

async fn sessions_started(client: &Client, engine: &Acemux, content: &str) -> u64 {
    let (_, stats) = client
        .get(&engine.url("/control/stats"))
        .await
        .expect("engine stats");
    stats["contents"][content]["sessions_started"]
        .as_u64()
        .unwrap_or(0)
}

#[tokio::test]
async fn latency_above_the_engine_request_timeout_gets_a_bounded_json_error() {
    let dir = tempfile::tempdir().expect("temp dir");
    let engine = engine(dir.path(), "engine").await;
    let relay = RelayProcess::start(
        engine.addr,
        &["dir=down,latency=2s"],
        &dir.path().join("relay.log"),
    )
    .await;
    let acemux = acemux_behind(&[&relay], dir.path()).await;
    let health = HealthWatch::start(&acemux);
    let client = Client::new();
    let started = Instant::now();
    let (status, body) = client
        .get(&acemux.url("/ace/getstream?id=slow"))
        .await
        .expect("an answer, not a hang");
    let elapsed = started.elapsed();
    assert!(
        status == StatusCode::GATEWAY_TIMEOUT || status == StatusCode::BAD_GATEWAY,
        "{status}: {body}"
    );
    let code = body["error"].as_str().unwrap_or_default();
    assert!(
        ["engine_timeout", "engine_error"].contains(&code),
        "not a clear error: {body}"
    );
    assert!(body["message"].as_str().is_some_and(|m| !m.is_empty()));
    // The start timeout (4 s) plus slack for a loaded machine.
    assert!(
        elapsed < Duration::from_secs(8),
        "answered after {elapsed:?}"
    );
    let stats = relay.stats().await;
    assert!(stats["faults"]["latency"].as_u64() >= Some(1), "{stats}");
    health.assert_fast_throughout(&acemux).await;
}

#[tokio::test]
async fn a_relay_stall_gets_keepalives_to_viewers_and_media_resumes_after_repair() {
    let dir = tempfile::tempdir().expect("temp dir");
    let engine = engine(dir.path(), "engine").await;
    let relay = RelayProcess::start(engine.addr, &[], &dir.path().join("relay.log")).await;
    let acemux = acemux_behind(&[&relay], dir.path()).await;
    let health = HealthWatch::start(&acemux);
    let client = viewer_client();
    let (status, mut body) = open(&client, &acemux.url("/ace/getstream?id=stall")).await;
    assert_eq!(status, StatusCode::OK);
    let media = read_media(&mut body, 188 * 50, Duration::from_secs(5)).await;
    assert!(
        media >= 188 * 50,
        "no media before the stall ({media} bytes)"
    );

    // Every connection from now on stalls before its first byte back, and the open
    // playback is cut: acemux reconnects into the stall.
    relay
        .set_rules(&["dir=down,stall_after_bytes=0,stall_for=60s"], true)
        .await;
    let (during, ended) = read_for(&mut body, Duration::from_secs(4)).await;
    assert!(!ended, "the viewer was disconnected during the stall");
    assert!(
        null_packets(&during) >= 7,
        "no keepalive during the stall: {} bytes, {} media",
        during.len(),
        without_nulls(&during).len()
    );
    let stats = relay.stats().await;
    assert!(stats["faults"]["stall"].as_u64() >= Some(1), "{stats}");
    assert!(
        stats["faults"]["partition_cut"].as_u64() >= Some(1),
        "{stats}"
    );

    relay.repair().await;
    let resumed_within = Duration::from_secs(15);
    let media = read_media(&mut body, 188 * 100, resumed_within).await;
    assert!(
        media >= 188 * 100,
        "media did not resume within {resumed_within:?} of the repair; log:\n{}",
        acemux.log_text()
    );
    let api = Client::new();
    let reconnects = api
        .metric(
            &acemux.url(""),
            "acemux_channel_reconnects_total{channel=\"content_id:stall\"}",
        )
        .await;
    assert!(reconnects >= 1.0, "no reconnect was counted");
    health.assert_fast_throughout(&acemux).await;
}

#[tokio::test]
async fn cuts_and_resets_mid_body_reconnect_while_the_viewer_stays() {
    let dir = tempfile::tempdir().expect("temp dir");
    let engine = engine(dir.path(), "engine").await;
    // About 2.5 s of media per connection: odd connections end with a FIN, even
    // ones with a reset.
    let rules = [
        "dir=down,cut_after_bytes=400000",
        "every=2:dir=down,rst_after_bytes=400000",
    ];
    let relay = RelayProcess::start(engine.addr, &rules, &dir.path().join("relay.log")).await;
    let acemux = acemux_behind(&[&relay], dir.path()).await;
    let health = HealthWatch::start(&acemux);
    let client = viewer_client();
    let (status, mut body) = open(&client, &acemux.url("/ace/getstream?id=choppy")).await;
    assert_eq!(status, StatusCode::OK);
    // Keep reading (a viewer that stops reading is dropped) until both faults fired.
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut stats = relay.stats().await;
    while !(stats["faults"]["cut"].as_u64() >= Some(1)
        && stats["faults"]["rst"].as_u64() >= Some(1))
    {
        assert!(
            Instant::now() < deadline,
            "no cut and reset within 20 s: {stats}"
        );
        let (_, ended) = read_for(&mut body, Duration::from_millis(200)).await;
        assert!(
            !ended,
            "the viewer was disconnected by a cut or reset upstream"
        );
        stats = relay.stats().await;
    }
    let media = read_media(&mut body, 188 * 100, Duration::from_secs(10)).await;
    assert!(
        media >= 188 * 100,
        "media did not continue after the cuts and resets; log:\n{}",
        acemux.log_text()
    );
    health.assert_fast_throughout(&acemux).await;
}

#[tokio::test]
async fn a_partition_in_front_of_the_serving_engine_fails_over_to_the_other_one() {
    let dir = tempfile::tempdir().expect("temp dir");
    let engines = [
        engine(dir.path(), "engine-a").await,
        engine(dir.path(), "engine-b").await,
    ];
    let relays = [
        RelayProcess::start(engines[0].addr, &[], &dir.path().join("relay-a.log")).await,
        RelayProcess::start(engines[1].addr, &[], &dir.path().join("relay-b.log")).await,
    ];
    let acemux = acemux_behind(&[&relays[0], &relays[1]], dir.path()).await;
    let health = HealthWatch::start(&acemux);
    let client = viewer_client();
    let (status, mut body) = open(&client, &acemux.url("/ace/getstream?id=moves")).await;
    assert_eq!(status, StatusCode::OK);
    let media = read_media(&mut body, 188 * 50, Duration::from_secs(5)).await;
    assert!(media >= 188 * 50, "no media before the partition");

    let api = Client::new();
    let mut serving = Vec::new();
    for engine in &engines {
        serving.push(sessions_started(&api, engine, "moves").await);
    }
    let first = serving
        .iter()
        .position(|started| *started == 1)
        .unwrap_or_else(|| panic!("one engine serves the channel: {serving:?}"));
    let other = 1 - first;
    assert_eq!(serving[other], 0, "{serving:?}");

    relays[first].partition().await;
    let failed_over_within = Duration::from_secs(20);
    let media = read_media(&mut body, 188 * 100, failed_over_within).await;
    assert!(
        media >= 188 * 100,
        "media did not resume within {failed_over_within:?} of the partition; log:\n{}",
        acemux.log_text()
    );
    let moved = sessions_started(&api, &engines[other], "moves").await;
    assert!(moved >= 1, "the channel did not move to the other engine");
    let stats = relays[first].stats().await;
    assert!(
        stats["faults"]["partition_cut"].as_u64() >= Some(1),
        "{stats}"
    );
    health.assert_fast_throughout(&acemux).await;
}

#[tokio::test]
async fn every_engine_down_gets_a_clean_error_quickly() {
    let dir = tempfile::tempdir().expect("temp dir");
    let engine = engine(dir.path(), "engine").await;
    let relays = [
        RelayProcess::start(engine.addr, &["refuse"], &dir.path().join("relay-a.log")).await,
        RelayProcess::start(engine.addr, &["refuse"], &dir.path().join("relay-b.log")).await,
    ];
    let acemux = acemux_behind(&[&relays[0], &relays[1]], dir.path()).await;
    let health = HealthWatch::start(&acemux);
    let client = Client::new();
    let started = Instant::now();
    let (status, body) = client
        .get(&acemux.url("/ace/getstream?id=nowhere"))
        .await
        .expect("an answer, not a hang");
    let elapsed = started.elapsed();
    assert!(
        status == StatusCode::BAD_GATEWAY
            || status == StatusCode::SERVICE_UNAVAILABLE
            || status == StatusCode::GATEWAY_TIMEOUT,
        "{status}: {body}"
    );
    assert!(
        body["error"].as_str().is_some_and(|code| !code.is_empty())
            && body["message"].as_str().is_some_and(|m| !m.is_empty()),
        "not a JSON error: {body}"
    );
    assert!(
        elapsed < Duration::from_secs(8),
        "answered after {elapsed:?}"
    );
    for relay in &relays {
        let stats = relay.stats().await;
        assert!(stats["faults"]["refuse"].as_u64() >= Some(1), "{stats}");
    }
    // Nothing is left running: the channel is gone and no session was opened.
    let gone = eventually(Duration::from_secs(3), || async {
        let (_, streams) = client
            .get(&acemux.url("/streams?status=started"))
            .await
            .expect("streams");
        streams.as_array().is_some_and(Vec::is_empty)
    })
    .await;
    assert!(gone, "a stream is still registered as started");
    assert_eq!(sessions_started(&client, &engine, "nowhere").await, 0);
    health.assert_fast_throughout(&acemux).await;
}
