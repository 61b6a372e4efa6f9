//! The rule parser, and the pump over real loopback sockets. Timings are asserted as
//! bounds with slack: the lower bound is what the fault promises, the upper bound
//! only catches a fault that never ends.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use http::{Request, StatusCode};
use http_body_util::BodyExt;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::Instant;
use tower::ServiceExt;

use super::*;
use acemux::net::TokioNet;

fn rule(text: &str) -> FaultRule {
    text.parse()
        .unwrap_or_else(|error| panic!("{text}: {error}"))
}

#[test]
fn rules_parse_selectors_directions_and_knobs() {
    let parsed = rule("conn=3:dir=down,latency=200ms,throttle=64KB/s");
    assert_eq!(parsed.selector, Selector::Nth(3));
    assert_eq!(parsed.directions, Directions::Down);
    assert_eq!(parsed.faults.latency, Some(Duration::from_millis(200)));
    assert_eq!(parsed.faults.throttle_bps, Some(64_000));
    assert_eq!(
        parsed.to_string(),
        "conn=3:dir=down,latency=200ms,throttle=64KB/s"
    );

    let parsed = rule("stall_after_bytes=1000,stall_for=2s");
    assert_eq!(parsed.selector, Selector::All);
    assert_eq!(parsed.directions, Directions::Both);
    assert_eq!(
        parsed.faults.stall,
        Some(Stall {
            start: StallStart::AfterBytes(1000),
            duration: Duration::from_secs(2)
        })
    );
    let parsed = rule("every=2:stall_after=5s,stall_for=10s");
    assert_eq!(parsed.selector, Selector::Every(2));
    assert_eq!(
        parsed.faults.stall.map(|stall| stall.start),
        Some(StallStart::After(Duration::from_secs(5)))
    );
    assert_eq!(
        rule("p=0.25:cut_after_bytes=10").selector,
        Selector::Probability(0.25)
    );
    assert_eq!(
        rule("all:rst_after_bytes=0").faults.rst_after_bytes,
        Some(0)
    );
    assert!(rule("refuse").refuse);
    assert_eq!(rule("throttle=1MiB/s").faults.throttle_bps, Some(1_048_576));
    assert_eq!(rule("throttle=500").faults.throttle_bps, Some(500));
}

#[test]
fn bad_rules_are_refused_with_the_reason() {
    type Expected = fn(&RuleError) -> bool;
    let cases: &[(&str, Expected)] = &[
        ("", |e| matches!(e, RuleError::Shape(_))),
        ("all:", |e| matches!(e, RuleError::Shape(_))),
        ("some:latency=1s", |e| {
            matches!(e, RuleError::UnknownSelector(_))
        }),
        ("conn=0:latency=1s", |e| {
            matches!(e, RuleError::Value { knob: "conn", .. })
        }),
        ("every=0:latency=1s", |e| {
            matches!(e, RuleError::Value { knob: "every", .. })
        }),
        ("p=1.5:latency=1s", |e| {
            matches!(e, RuleError::Value { knob: "p", .. })
        }),
        ("jitter=1s", |e| matches!(e, RuleError::UnknownKnob(_))),
        ("latency=soon", |e| {
            matches!(
                e,
                RuleError::Value {
                    knob: "latency",
                    ..
                }
            )
        }),
        ("latency=25h", |e| {
            matches!(
                e,
                RuleError::Value {
                    knob: "latency",
                    ..
                }
            )
        }),
        ("throttle=64XB/s", |e| {
            matches!(
                e,
                RuleError::Value {
                    knob: "throttle",
                    ..
                }
            )
        }),
        ("throttle=0", |e| {
            matches!(
                e,
                RuleError::Value {
                    knob: "throttle",
                    ..
                }
            )
        }),
        ("dir=sideways,latency=1s", |e| {
            matches!(e, RuleError::Value { knob: "dir", .. })
        }),
        ("stall_after=1s", |e| matches!(e, RuleError::Combination(_))),
        ("stall_for=1s", |e| matches!(e, RuleError::Combination(_))),
        ("stall_after=1s,stall_after_bytes=5,stall_for=1s", |e| {
            matches!(e, RuleError::Combination(_))
        }),
        ("refuse,latency=1s", |e| {
            matches!(e, RuleError::Combination(_))
        }),
        ("cut_after_bytes=1,rst_after_bytes=2", |e| {
            matches!(e, RuleError::Combination(_))
        }),
        ("dir=down", |e| matches!(e, RuleError::Combination(_))),
        ("cut_after_bytes=-1", |e| {
            matches!(e, RuleError::Value { .. })
        }),
    ];
    for (text, expected) in cases {
        let error = text
            .parse::<FaultRule>()
            .expect_err(&format!("{text:?} must be refused"));
        assert!(expected(&error), "{text:?} gave {error:?}");
        assert!(!error.to_string().is_empty());
    }
    let too_many = vec!["latency=1ms"; MAX_RULES + 1];
    assert_eq!(FaultPlan::parse(&too_many), Err(RuleError::TooMany));
}

#[test]
fn later_rules_override_earlier_ones_per_direction() {
    let plan = FaultPlan::parse(&[
        "latency=100ms",
        "dir=down,latency=300ms,cut_after_bytes=50",
        "conn=2:dir=up,rst_after_bytes=7",
        "every=3:refuse",
    ])
    .expect("valid plan");
    let first = plan.faults_for(0, 1);
    assert!(!first.refuse);
    assert_eq!(first.up.latency, Some(Duration::from_millis(100)));
    assert_eq!(first.down.latency, Some(Duration::from_millis(300)));
    assert_eq!(first.down.cut_after_bytes, Some(50));
    assert_eq!(first.up.cut_after_bytes, None);
    let second = plan.faults_for(0, 2);
    assert_eq!(second.up.rst_after_bytes, Some(7));
    assert_eq!(second.down.cut_after_bytes, Some(50));
    assert!(plan.faults_for(0, 3).refuse);
    assert!(plan.faults_for(0, 6).refuse);
    assert!(!plan.faults_for(0, 4).refuse);
}

#[test]
fn probability_selection_is_fixed_by_the_seed() {
    let plan = FaultPlan::parse(&["p=0.3:cut_after_bytes=1"]).expect("valid plan");
    let selected = |seed| -> Vec<bool> {
        (1..=10_000)
            .map(|n| plan.faults_for(seed, n).down.cut_after_bytes.is_some())
            .collect()
    };
    let first = selected(7);
    assert_eq!(
        first,
        selected(7),
        "the same seed selects the same connections"
    );
    assert_ne!(first, selected(8), "another seed selects others");
    let count = first.iter().filter(|hit| **hit).count();
    assert!(
        (2_700..=3_300).contains(&count),
        "{count} of 10000 selected at p=0.3"
    );
    let never = FaultPlan::parse(&["p=0:refuse"]).expect("valid");
    let always = FaultPlan::parse(&["p=1:refuse"]).expect("valid");
    assert!((1..=1000).all(|n| !never.faults_for(3, n).refuse && always.faults_for(3, n).refuse));
}

/// What a test upstream does with each connection.
#[derive(Clone)]
enum Upstream {
    /// Echoes everything back.
    Echo,
    /// Sends these bytes, then closes.
    Send(Arc<Vec<u8>>),
}

/// A loopback upstream; the count of connections it accepted.
async fn upstream(behaviour: Upstream) -> (SocketAddr, Arc<AtomicUsize>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind upstream");
    let addr = listener.local_addr().expect("address");
    let accepted = Arc::new(AtomicUsize::new(0));
    let count = accepted.clone();
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            count.fetch_add(1, Ordering::SeqCst);
            let behaviour = behaviour.clone();
            tokio::spawn(async move {
                match behaviour {
                    Upstream::Echo => {
                        let (mut read, mut write) = stream.split();
                        let _ = tokio::io::copy(&mut read, &mut write).await;
                        let _ = write.shutdown().await;
                    }
                    Upstream::Send(bytes) => {
                        let _ = stream.write_all(&bytes).await;
                        let _ = stream.shutdown().await;
                    }
                }
            });
        }
    });
    (addr, accepted)
}

async fn relay_to(upstream: SocketAddr, rules: &[&str]) -> (Relay<TokioNet>, RunningRelay) {
    let mut config = RelayConfig::new(super::Upstream {
        host: "127.0.0.1".into(),
        port: upstream.port(),
    });
    config.plan = FaultPlan::parse(rules).expect("valid rules");
    relay_with(config).await
}

async fn relay_with(config: RelayConfig) -> (Relay<TokioNet>, RunningRelay) {
    let relay = Relay::new(TokioNet, config);
    let listener = TokioNet
        .bind(
            "127.0.0.1:0".parse().expect("address"),
            acemux::net::DEFAULT_BACKLOG,
        )
        .await
        .expect("bind relay");
    let running = relay.spawn(listener).expect("spawn relay");
    (relay, running)
}

fn pattern(len: usize) -> Arc<Vec<u8>> {
    Arc::new((0..len).map(|i| (i % 251) as u8).collect())
}

/// Reads until the end of the stream or an error (bounded by `within`).
async fn read_to_end(stream: &mut TcpStream, within: Duration) -> (Vec<u8>, std::io::Result<()>) {
    let mut bytes = Vec::new();
    let mut buffer = vec![0; 64 * 1024];
    let deadline = Instant::now() + within;
    loop {
        match tokio::time::timeout_at(deadline, stream.read(&mut buffer)).await {
            Err(_) => panic!(
                "the stream did not end within {within:?} ({} bytes)",
                bytes.len()
            ),
            Ok(Ok(0)) => return (bytes, Ok(())),
            Ok(Ok(n)) => bytes.extend_from_slice(&buffer[..n]),
            Ok(Err(error)) => return (bytes, Err(error)),
        }
    }
}

#[tokio::test]
async fn untouched_bytes_pass_both_ways_and_are_counted() {
    let (upstream, _) = upstream(Upstream::Echo).await;
    let (relay, running) = relay_to(upstream, &[]).await;
    let mut client = TcpStream::connect(running.local_addr())
        .await
        .expect("connect");
    let sent = pattern(1 << 20);
    let (mut read, mut write) = client.split();
    let writing = async {
        write.write_all(&sent).await.expect("write");
        write.shutdown().await.expect("half-close");
    };
    let reading = async {
        let mut echoed = Vec::new();
        read.read_to_end(&mut echoed).await.expect("read");
        echoed
    };
    let ((), echoed) = tokio::join!(writing, reading);
    assert!(echoed == *sent, "the echo differs from what was sent");
    let stats = relay.stats();
    assert_eq!(stats.bytes_up, 1 << 20);
    assert_eq!(stats.bytes_down, 1 << 20);
    assert_eq!(stats.connections_accepted, 1);
    running.shutdown().await;
}

#[tokio::test]
async fn latency_delays_each_chunk_and_keeps_order() {
    let (upstream, _) = upstream(Upstream::Echo).await;
    let (relay, running) = relay_to(upstream, &["dir=down,latency=300ms"]).await;
    let mut client = TcpStream::connect(running.local_addr())
        .await
        .expect("connect");
    for round in 0u8..3 {
        let started = Instant::now();
        let message = [round; 100];
        client.write_all(&message).await.expect("write");
        let mut echoed = [0u8; 100];
        client.read_exact(&mut echoed).await.expect("read");
        let elapsed = started.elapsed();
        assert_eq!(echoed, message, "round {round} came back out of order");
        assert!(
            elapsed >= Duration::from_millis(300),
            "round {round} took {elapsed:?}"
        );
        assert!(
            elapsed < Duration::from_secs(3),
            "round {round} took {elapsed:?}"
        );
    }
    assert_eq!(relay.stats().faults.latency, 1);
    running.shutdown().await;
}

#[tokio::test]
async fn throttle_caps_the_rate() {
    let body = pattern(200_000);
    let (upstream, _) = upstream(Upstream::Send(body.clone())).await;
    let (relay, running) = relay_to(upstream, &["dir=down,throttle=400KB/s"]).await;
    let started = Instant::now();
    let mut client = TcpStream::connect(running.local_addr())
        .await
        .expect("connect");
    let (bytes, result) = read_to_end(&mut client, Duration::from_secs(10)).await;
    let elapsed = started.elapsed();
    result.expect("clean end");
    assert!(bytes == *body, "the throttled bytes differ");
    // 200 KB at 400 KB/s: half a second at least (one 20 ms step may go at once).
    assert!(elapsed >= Duration::from_millis(450), "took {elapsed:?}");
    assert!(elapsed < Duration::from_secs(5), "took {elapsed:?}");
    assert_eq!(relay.stats().faults.throttle, 1);
    running.shutdown().await;
}

#[tokio::test]
async fn a_stall_after_bytes_pauses_then_resumes_where_it_stopped() {
    let body = pattern(100_000);
    let (upstream, _) = upstream(Upstream::Send(body.clone())).await;
    let (relay, running) = relay_to(
        upstream,
        &["dir=down,stall_after_bytes=10000,stall_for=1500ms"],
    )
    .await;
    let started = Instant::now();
    let mut client = TcpStream::connect(running.local_addr())
        .await
        .expect("connect");
    let mut first = vec![0; 10_000];
    client.read_exact(&mut first).await.expect("first part");
    assert!(
        started.elapsed() < Duration::from_millis(1200),
        "the first part was late"
    );
    let mut probe = [0u8; 1];
    let during = tokio::time::timeout(Duration::from_millis(500), client.read(&mut probe)).await;
    assert!(during.is_err(), "bytes arrived during the stall");
    let (rest, result) = read_to_end(&mut client, Duration::from_secs(5)).await;
    result.expect("clean end");
    assert!(started.elapsed() >= Duration::from_millis(1500));
    first.extend_from_slice(&rest);
    assert!(
        first == *body,
        "the bytes after the stall do not continue the stream"
    );
    assert_eq!(relay.stats().faults.stall, 1);
    running.shutdown().await;
}

#[tokio::test]
async fn a_timed_stall_begins_after_its_delay() {
    let (upstream, _) = upstream(Upstream::Echo).await;
    let (relay, running) = relay_to(upstream, &["dir=down,stall_after=1s,stall_for=700ms"]).await;
    let mut client = TcpStream::connect(running.local_addr())
        .await
        .expect("connect");
    let started = Instant::now();
    client.write_all(b"early").await.expect("write");
    let mut echoed = [0u8; 5];
    client.read_exact(&mut echoed).await.expect("read");
    assert!(
        started.elapsed() < Duration::from_secs(1),
        "no stall before its delay"
    );
    tokio::time::sleep_until(started + Duration::from_millis(1100)).await;
    client.write_all(b"later").await.expect("write");
    client.read_exact(&mut echoed).await.expect("read");
    assert_eq!(&echoed, b"later");
    // The stall ends 1.7 s after the connection was accepted (about `started`).
    let elapsed = started.elapsed();
    assert!(
        elapsed >= Duration::from_millis(1600),
        "answered after {elapsed:?}"
    );
    assert!(
        elapsed < Duration::from_secs(4),
        "answered after {elapsed:?}"
    );
    assert_eq!(relay.stats().faults.stall, 1);
    running.shutdown().await;
}

#[tokio::test]
async fn a_cut_ends_with_a_clean_fin_after_exactly_n_bytes() {
    let body = pattern(100_000);
    let (upstream, _) = upstream(Upstream::Send(body.clone())).await;
    let (relay, running) = relay_to(upstream, &["dir=down,cut_after_bytes=5000"]).await;
    let mut client = TcpStream::connect(running.local_addr())
        .await
        .expect("connect");
    let (bytes, result) = read_to_end(&mut client, Duration::from_secs(5)).await;
    result.expect("a FIN, not a reset");
    assert_eq!(bytes.len(), 5000);
    assert!(bytes[..] == body[..5000]);
    assert_eq!(relay.stats().faults.cut, 1);
    running.shutdown().await;
}

#[tokio::test]
async fn a_reset_after_n_bytes_reaches_the_client_as_connection_reset() {
    let body = pattern(100_000);
    let (upstream, _) = upstream(Upstream::Send(body.clone())).await;
    let (relay, running) = relay_to(upstream, &["dir=down,rst_after_bytes=5000"]).await;
    let mut client = TcpStream::connect(running.local_addr())
        .await
        .expect("connect");
    let (bytes, result) = read_to_end(&mut client, Duration::from_secs(5)).await;
    let error = result.expect_err("a reset, not a FIN");
    assert_eq!(error.kind(), std::io::ErrorKind::ConnectionReset);
    assert!(
        bytes.len() <= 5000,
        "{} bytes passed a 5000-byte reset",
        bytes.len()
    );
    assert!(bytes[..] == body[..bytes.len()]);
    assert_eq!(relay.stats().faults.rst, 1);
    running.shutdown().await;
}

#[tokio::test]
async fn a_refused_connection_closes_at_once_without_dialling_upstream() {
    let (upstream, dialled) = upstream(Upstream::Echo).await;
    let (relay, running) = relay_to(upstream, &["conn=1:refuse"]).await;
    let mut refused = TcpStream::connect(running.local_addr())
        .await
        .expect("connect");
    let (bytes, _) = read_to_end(&mut refused, Duration::from_secs(1)).await;
    assert!(bytes.is_empty());
    // The second connection is not selected: it is relayed.
    let mut relayed = TcpStream::connect(running.local_addr())
        .await
        .expect("connect");
    relayed.write_all(b"ping").await.expect("write");
    let mut echoed = [0u8; 4];
    relayed.read_exact(&mut echoed).await.expect("read");
    assert_eq!(&echoed, b"ping");
    assert_eq!(
        dialled.load(Ordering::SeqCst),
        1,
        "only the relayed one dials upstream"
    );
    assert_eq!(relay.stats().faults.refuse, 1);
    running.shutdown().await;
}

#[tokio::test]
async fn a_partition_cuts_open_connections_refuses_new_ones_and_repair_heals() {
    let (upstream, _) = upstream(Upstream::Echo).await;
    let (relay, running) = relay_to(upstream, &[]).await;
    let mut open = TcpStream::connect(running.local_addr())
        .await
        .expect("connect");
    open.write_all(b"ping").await.expect("write");
    let mut echoed = [0u8; 4];
    open.read_exact(&mut echoed).await.expect("read");
    assert_eq!(relay.partition(), 1);
    let (bytes, result) = read_to_end(&mut open, Duration::from_secs(2)).await;
    assert!(
        bytes.is_empty() && result.is_ok(),
        "the open connection was not cut cleanly"
    );
    let mut refused = TcpStream::connect(running.local_addr())
        .await
        .expect("connect");
    let (bytes, _) = read_to_end(&mut refused, Duration::from_secs(2)).await;
    assert!(bytes.is_empty());
    relay.repair();
    let mut healed = TcpStream::connect(running.local_addr())
        .await
        .expect("connect");
    healed.write_all(b"pong").await.expect("write");
    healed
        .read_exact(&mut echoed)
        .await
        .expect("read after repair");
    assert_eq!(&echoed, b"pong");
    let stats = relay.stats();
    assert_eq!(stats.faults.partition_cut, 1);
    assert_eq!(stats.faults.refuse, 1);
    running.shutdown().await;
}

#[tokio::test]
async fn connections_past_the_cap_are_closed_at_once() {
    let (upstream, _) = upstream(Upstream::Echo).await;
    let mut config = RelayConfig::new(super::Upstream {
        host: "127.0.0.1".into(),
        port: upstream.port(),
    });
    config.max_connections = 1;
    let (relay, running) = relay_with(config).await;
    let mut first = TcpStream::connect(running.local_addr())
        .await
        .expect("connect");
    first.write_all(b"ping").await.expect("write");
    let mut echoed = [0u8; 4];
    first.read_exact(&mut echoed).await.expect("read");
    let mut second = TcpStream::connect(running.local_addr())
        .await
        .expect("connect");
    let (bytes, _) = read_to_end(&mut second, Duration::from_secs(2)).await;
    assert!(bytes.is_empty());
    assert_eq!(relay.stats().connections_rejected_at_cap, 1);
    first
        .write_all(b"pong")
        .await
        .expect("the first still works");
    first.read_exact(&mut echoed).await.expect("read");
    running.shutdown().await;
}

#[tokio::test]
async fn an_unreachable_upstream_closes_the_client_and_is_counted() {
    let closed_port = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        listener.local_addr().expect("address")
    };
    let (relay, running) = relay_to(closed_port, &[]).await;
    let mut client = TcpStream::connect(running.local_addr())
        .await
        .expect("connect");
    let (bytes, _) = read_to_end(&mut client, Duration::from_secs(6)).await;
    assert!(bytes.is_empty());
    assert_eq!(relay.stats().upstream_connect_failures, 1);
    running.shutdown().await;
}

async fn control(
    router: &axum::Router,
    method: &str,
    path: &str,
    body: &str,
) -> (StatusCode, serde_json::Value) {
    let request = Request::builder()
        .method(method)
        .uri(path)
        .body(Body::from(body.to_owned()))
        .expect("request");
    let response = router.clone().oneshot(request).await.expect("infallible");
    let status = response.status();
    let bytes = response
        .into_body()
        .collect()
        .await
        .expect("body")
        .to_bytes();
    (status, serde_json::from_slice(&bytes).expect("JSON answer"))
}

#[tokio::test]
async fn the_control_api_replaces_rules_and_reports_errors_as_json() {
    let relay = Relay::new(
        TokioNet,
        RelayConfig::new(super::Upstream {
            host: "127.0.0.1".into(),
            port: 9,
        }),
    );
    let router = relay.control_router();
    let (status, body) = control(
        &router,
        "PUT",
        "/control/rules",
        r#"{"rules": ["dir=down,latency=200ms", "every=2:refuse"]}"#,
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let (_, body) = control(&router, "GET", "/control/rules", "").await;
    assert_eq!(body["rules"][0], "dir=down,latency=200ms");
    assert_eq!(body["rules"][1], "every=2:refuse");
    let (status, body) = control(
        &router,
        "PUT",
        "/control/rules",
        r#"{"rules": ["jitter=1s"]}"#,
    )
    .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(body["error"], "invalid_rule");
    assert!(body["message"]
        .as_str()
        .is_some_and(|m| m.contains("jitter")));
    let (status, body) = control(&router, "PUT", "/control/rules", "{not json").await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(body["error"], "invalid_json");
    assert_eq!(
        relay.plan().rules().len(),
        2,
        "a refused update changes nothing"
    );
    let (status, body) = control(&router, "POST", "/control/partition", "").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["rules"][0], "all:refuse");
    let (_, body) = control(&router, "POST", "/control/repair", "").await;
    assert_eq!(body["rules"], serde_json::json!([]));
    let (status, body) = control(&router, "GET", "/control/stats", "").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["connections_accepted"], 0);
    assert_eq!(body["faults"]["refuse"], 0);
    let (status, body) = control(&router, "GET", "/control/nothing", "").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(body["error"], "not_found");
}

#[test]
fn the_relay_subcommand_parses_its_flags_and_refuses_bad_rules() {
    use clap::Parser;

    use crate::cli::RelayArgs;

    /// `acemux relay` alone, as the binary parses it.
    #[derive(Debug, Parser)]
    struct Cli {
        #[command(flatten)]
        args: RelayArgs,
    }

    let cli = Cli::try_parse_from([
        "relay",
        "--listen",
        "127.0.0.1:7000",
        "--upstream",
        "gluetun:19000",
        "--seed",
        "9",
        "--fault",
        "dir=down,latency=200ms",
        "--fault",
        "every=3:refuse",
        "--control",
        "127.0.0.1:7001",
    ])
    .expect("valid flags");
    let config = cli.args.config().expect("valid config");
    assert_eq!(config.upstream.to_string(), "gluetun:19000");
    assert_eq!(config.seed, 9);
    assert_eq!(
        config.plan.texts(),
        ["dir=down,latency=200ms", "every=3:refuse"]
    );
    assert!(config.plan.faults_for(9, 3).refuse);
    let error = Cli::try_parse_from([
        "relay",
        "--listen",
        "127.0.0.1:7000",
        "--upstream",
        "gluetun:19000",
        "--fault",
        "latency=later",
    ])
    .expect_err("a bad rule is refused at parse time");
    assert!(error.to_string().contains("latency"), "{error}");
}
