//! Hostile clients against a real acemux over loopback: slow, huge and malformed
//! request heads, endless bodies, bad encodings, traversal attempts, absurd ids,
//! floods of channels and idle connections. Each gets its defined answer (a JSON
//! error, or a clean close counted in `acemux_limit_hits_total`), and acemux keeps
//! answering `/health` at once afterwards.

use std::time::Duration;

use acemux::proxy::ProxyConfig;
use acemux::server::ServerLimits;
use acemux::webhook::WebhookTarget;
use acemux::ServeOptions;
use acemux_core::channel::ChannelConfig;
use acemux_testkit::emulator::EmulatorConfig;
use acemux_tests::hostile_engine::{Answer, HostileEngine};
use acemux_tests::proxy::{open, viewer_client, ProxyRig};
use acemux_tests::raw::{closed_within, connect, exchange, read_answer, RawAnswer};
use acemux_tests::webhook_receiver::SwitchableReceiver;
use acemux_tests::{eventually, free_port, metric_sample, started_body, Acemux, Client};
use futures::future::join_all;
use hyper::StatusCode;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(1);
const MAX_HEADER_BYTES: usize = 16 * 1024;
const MAX_BODY_BYTES: usize = 4096;
const BODY_READ_TIMEOUT: Duration = Duration::from_secs(1);
const MAX_CONNECTIONS: usize = 16;
const MAX_CHANNELS: usize = 4;
/// Bound on an answer that needs no engine.
const PROMPT: Duration = Duration::from_secs(3);

fn options() -> ServeOptions {
    ServeOptions {
        server: ServerLimits {
            max_connections: MAX_CONNECTIONS,
            header_read_timeout: HEADER_READ_TIMEOUT,
            max_header_bytes: MAX_HEADER_BYTES,
            shutdown_timeout: Duration::from_secs(2),
        },
        max_body_bytes: MAX_BODY_BYTES,
        body_read_timeout: BODY_READ_TIMEOUT,
        proxy: ProxyConfig {
            max_channels: MAX_CHANNELS,
            channel: ChannelConfig {
                start_timeout: Duration::from_secs(5),
                idle_grace: Duration::from_millis(200),
                ..ChannelConfig::default()
            },
            engine_request_timeout: Duration::from_secs(5),
            ..ProxyConfig::default()
        },
        ..ServeOptions::default()
    }
}

/// acemux whose only engine never answers a session request: nothing a client sends
/// can get media, and any request that reaches the engine is recorded.
async fn rig_with_silent_engine() -> (ProxyRig, HostileEngine) {
    let engine = HostileEngine::start(|_| Answer::Hang).await;
    let mut options = options();
    options.engines = vec![engine.engine_addr()];
    (ProxyRig::start_options(Vec::new(), options).await, engine)
}

/// `/health` answers 200 within a second.
async fn assert_healthy(rig: &ProxyRig) {
    let health = tokio::time::timeout(
        Duration::from_secs(1),
        Client::new().get(&rig.url("/health")),
    )
    .await
    .expect("/health answered within 1 s")
    .expect("/health answered");
    assert_eq!(health.0, StatusCode::OK);
}

fn limit_hits(rig: &ProxyRig, limit: &str) -> f64 {
    rig.metric(&format!("acemux_limit_hits_total{{limit=\"{limit}\"}}"))
}

fn assert_json_error(answer: &RawAnswer, status: u16, code: &str) {
    assert_eq!(answer.status, status, "answer: {answer:?}");
    assert_eq!(answer.error_code(), code, "answer: {answer:?}");
    assert!(
        answer.json()["message"]
            .as_str()
            .is_some_and(|m| !m.is_empty()),
        "no message: {answer:?}"
    );
}

async fn get(rig: &ProxyRig, target: &[u8]) -> RawAnswer {
    let mut request = b"GET ".to_vec();
    request.extend_from_slice(target);
    request.extend_from_slice(b" HTTP/1.1\r\nhost: acemux\r\nconnection: close\r\n\r\n");
    exchange(rig.acemux.local_addr(), &request, PROMPT).await
}

#[tokio::test]
async fn slowloris_headers_are_cut_at_the_header_read_timeout() {
    let (rig, _engine) = rig_with_silent_engine().await;
    let mut stream = connect(rig.acemux.local_addr()).await;
    stream
        .write_all(b"GET /health HTTP/1.1\r\nhost: acemux\r\n")
        .await
        .expect("write");
    // One header byte every 100 ms: always something new, never a complete head.
    let started = tokio::time::Instant::now();
    let trickle = async {
        for _ in 0..100 {
            if stream.write_all(b"x").await.is_err() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    };
    let _ = tokio::time::timeout(HEADER_READ_TIMEOUT * 4, trickle).await;
    assert!(
        closed_within(&mut stream, Duration::from_millis(500)).await,
        "the trickling connection is still open after {:?}",
        started.elapsed()
    );
    assert!(
        started.elapsed() < HEADER_READ_TIMEOUT * 4,
        "closed only after {:?}",
        started.elapsed()
    );
    assert_eq!(limit_hits(&rig, "header_read_timeout"), 1.0);
    assert_healthy(&rig).await;
    rig.shutdown().await;
}

#[tokio::test]
async fn a_huge_header_gets_431_json() {
    let (rig, _engine) = rig_with_silent_engine().await;
    let mut request = b"GET /health HTTP/1.1\r\nhost: acemux\r\nx-huge: ".to_vec();
    request.extend(std::iter::repeat_n(b'a', MAX_HEADER_BYTES + 1024));
    request.extend_from_slice(b"\r\n\r\n");
    let answer = exchange(rig.acemux.local_addr(), &request, PROMPT).await;
    assert_json_error(&answer, 431, "header_too_large");
    assert_eq!(limit_hits(&rig, "header_bytes"), 1.0);
    assert_healthy(&rig).await;
    rig.shutdown().await;
}

#[tokio::test]
async fn too_many_headers_get_431_json() {
    let (rig, _engine) = rig_with_silent_engine().await;
    let mut request = b"GET /health HTTP/1.1\r\nhost: acemux\r\n".to_vec();
    for n in 0..200 {
        request.extend_from_slice(format!("x-{n}: y\r\n").as_bytes());
    }
    request.extend_from_slice(b"\r\n");
    let answer = exchange(rig.acemux.local_addr(), &request, PROMPT).await;
    assert_json_error(&answer, 431, "header_too_large");
    assert_healthy(&rig).await;
    rig.shutdown().await;
}

#[tokio::test]
async fn a_request_target_larger_than_the_head_limit_gets_431_json() {
    let (rig, _engine) = rig_with_silent_engine().await;
    let mut target = b"/ace/getstream?id=".to_vec();
    target.extend(std::iter::repeat_n(b'a', 100 * 1024));
    let answer = get(&rig, &target).await;
    assert_json_error(&answer, 431, "header_too_large");
    assert_healthy(&rig).await;
    rig.shutdown().await;
}

#[tokio::test]
async fn a_declared_huge_body_gets_413_json_before_it_is_sent() {
    let (rig, _engine) = rig_with_silent_engine().await;
    let request = format!(
        "POST /events/stream_started HTTP/1.1\r\nhost: acemux\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n{{",
        1024 * 1024 * 1024
    );
    let answer = exchange(rig.acemux.local_addr(), request.as_bytes(), PROMPT).await;
    assert_json_error(&answer, 413, "payload_too_large");
    assert_eq!(limit_hits(&rig, "body_bytes"), 1.0);
    assert_healthy(&rig).await;
    rig.shutdown().await;
}

#[tokio::test]
async fn an_endless_chunked_body_gets_413_json_and_a_close() {
    let (rig, _engine) = rig_with_silent_engine().await;
    let mut stream = connect(rig.acemux.local_addr()).await;
    stream
        .write_all(b"POST /events/stream_started HTTP/1.1\r\nhost: acemux\r\ncontent-type: application/json\r\ntransfer-encoding: chunked\r\n\r\n")
        .await
        .expect("write head");
    let (mut reader, mut writer) = stream.into_split();
    // Sends 1 KiB chunks until the server stops reading (bounded: 4 MiB or 10 s).
    let sender = tokio::spawn(async move {
        let chunk = format!("400\r\n{}\r\n", " ".repeat(1024));
        for _ in 0..4096 {
            let write = writer.write_all(chunk.as_bytes());
            match tokio::time::timeout(Duration::from_secs(10), write).await {
                Ok(Ok(())) => {}
                _ => return,
            }
        }
    });
    let answer = read_answer(&mut reader, PROMPT).await;
    assert_json_error(&answer, 413, "payload_too_large");
    assert!(
        closed_within(&mut reader, PROMPT).await,
        "the connection stays open after 413"
    );
    sender.abort();
    assert_eq!(limit_hits(&rig, "body_bytes"), 1.0);
    assert_healthy(&rig).await;
    rig.shutdown().await;
}

#[tokio::test]
async fn a_body_that_never_arrives_gets_408_json() {
    let (rig, _engine) = rig_with_silent_engine().await;
    let mut stream = connect(rig.acemux.local_addr()).await;
    stream
        .write_all(b"POST /events/stream_ended HTTP/1.1\r\nhost: acemux\r\ncontent-type: application/json\r\ncontent-length: 100\r\n\r\n{")
        .await
        .expect("write");
    let started = tokio::time::Instant::now();
    let answer = read_answer(&mut stream, BODY_READ_TIMEOUT * 4).await;
    assert_json_error(&answer, 408, "body_timeout");
    assert!(started.elapsed() >= BODY_READ_TIMEOUT, "answered early");
    assert_eq!(limit_hits(&rig, "body_read_timeout"), 1.0);
    assert_eq!(
        rig.metric("acemux_events_total{type=\"stream_ended\"}"),
        0.0
    );
    assert_healthy(&rig).await;
    rig.shutdown().await;
}

#[tokio::test]
async fn bad_encodings_get_400_json() {
    let (rig, engine) = rig_with_silent_engine().await;
    // Raw bytes that are not valid in a request target.
    let answer = get(&rig, b"/streams/\xff\xfe").await;
    assert_json_error(&answer, 400, "bad_request");
    // Escapes that are malformed or decode to invalid UTF-8.
    for target in [
        "/ace/getstream?id=%ZZ",
        "/ace/getstream?id=abc%",
        "/ace/getstream?id=%FF%FE",
        "/ace/manifest.m3u8?id=%C3",
        "/streams?status=%E2%82",
        "/events?after=%G1",
    ] {
        let answer = get(&rig, target.as_bytes()).await;
        assert_json_error(&answer, 400, "invalid_query");
    }
    // A path segment that decodes to invalid UTF-8.
    let answer = get(&rig, b"/streams/%FF").await;
    assert_json_error(&answer, 400, "bad_request");
    // A JSON body that is not UTF-8.
    let body = b"{\"stream_id\": \"\xff\xfe\"}";
    let mut request = format!(
        "POST /events/stream_ended HTTP/1.1\r\nhost: acemux\r\ncontent-type: application/json\r\nconnection: close\r\ncontent-length: {}\r\n\r\n",
        body.len()
    )
    .into_bytes();
    request.extend_from_slice(body);
    let answer = exchange(rig.acemux.local_addr(), &request, PROMPT).await;
    assert_json_error(&answer, 400, "invalid_json");
    assert_eq!(
        engine.hits(),
        Vec::new(),
        "a bad request reached the engine"
    );
    assert_healthy(&rig).await;
    rig.shutdown().await;
}

#[tokio::test]
async fn path_traversal_in_segment_names_finds_nothing() {
    let (rig, engine) = rig_with_silent_engine().await;
    for target in [
        "/ace/hls/../../etc/passwd",
        "/ace/hls/1/..%2F..%2Fetc%2Fpasswd",
        "/ace/hls/1/%2e%2e%2f%2e%2e%2fetc%2fpasswd.ts",
        "/ace/hls/..%2F1/0.ts",
        "/ace/hls/1/0.ts%00.m3u8",
        "/ace/hls/18446744073709551616/0.ts",
        "/ace/hls/1/-1.ts",
    ] {
        let answer = get(&rig, target.as_bytes()).await;
        assert_eq!(answer.status, 404, "{target}: {answer:?}");
        assert!(
            ["not_found", "unknown_segment"].contains(&answer.error_code().as_str()),
            "{target}: {answer:?}"
        );
    }
    assert_eq!(
        engine.hits(),
        Vec::new(),
        "a segment request reached the engine"
    );
    assert_healthy(&rig).await;
    rig.shutdown().await;
}

#[tokio::test]
async fn absurd_ids_are_refused_without_reaching_the_engine() {
    let (rig, engine) = rig_with_silent_engine().await;
    let long = "a".repeat(4096);
    for target in [
        format!("/ace/getstream?id={long}"),
        format!("/ace/manifest.m3u8?infohash={long}"),
        "/ace/getstream?id=abc%01def".to_owned(),
        "/ace/getstream?id=abc%0D%0Aset-cookie:x".to_owned(),
        "/ace/getstream?id=%20".to_owned(),
        "/ace/getstream?id=".to_owned(),
        "/ace/getstream?id=a&infohash=b".to_owned(),
    ] {
        let answer = get(&rig, target.as_bytes()).await;
        assert_json_error(&answer, 400, "invalid_query");
    }
    let answer = get(&rig, format!("/streams/{long}").as_bytes()).await;
    assert_json_error(&answer, 404, "unknown_stream");
    let answer = get(&rig, b"/streams/a%0Ab%00c").await;
    assert_json_error(&answer, 404, "unknown_stream");
    // Ids in event bodies are bounded too.
    let client = Client::new();
    let body = acemux_tests::started_body(&long, "s", None);
    let (status, answer) = client
        .post_json(&rig.url("/events/stream_started"), &body, None)
        .await
        .expect("answer");
    // The body is over --max-body-bytes here; a smaller absurd id is a field error.
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE, "{answer}");
    let body = acemux_tests::started_body(&"b".repeat(1024), "s", None);
    let (status, answer) = client
        .post_json(&rig.url("/events/stream_started"), &body, None)
        .await
        .expect("answer");
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{answer}");
    assert_eq!(answer["error"], "invalid_field", "{answer}");
    let body = acemux_tests::started_body("key", "bad\u{1}session", None);
    let (status, answer) = client
        .post_json(&rig.url("/events/stream_started"), &body, None)
        .await
        .expect("answer");
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{answer}");
    assert_eq!(engine.hits(), Vec::new(), "an absurd id reached the engine");
    assert_healthy(&rig).await;
    rig.shutdown().await;
}

#[tokio::test]
async fn a_flood_of_new_channels_gets_503_capacity_at_the_channel_limit() {
    let (rig, engine) = rig_with_silent_engine().await;
    let addr = rig.acemux.local_addr();
    let flood = 12;
    let answers = join_all((0..flood).map(|n| async move {
        let request = format!("GET /ace/getstream?id=flood{n} HTTP/1.1\r\nhost: acemux\r\n\r\n");
        exchange(addr, request.as_bytes(), Duration::from_secs(2)).await
    }))
    .await;
    let refused = answers
        .iter()
        .filter(|answer| answer.status == 503 && answer.error_code() == "capacity")
        .count();
    let waiting = answers.iter().filter(|answer| answer.status == 0).count();
    assert_eq!(refused, flood - MAX_CHANNELS, "answers: {answers:?}");
    assert_eq!(waiting, MAX_CHANNELS, "answers: {answers:?}");
    assert_eq!(limit_hits(&rig, "channels"), (flood - MAX_CHANNELS) as f64);
    assert_eq!(
        engine.hits_on("/ace/getstream"),
        MAX_CHANNELS,
        "one session request per admitted channel"
    );
    assert_healthy(&rig).await;
    rig.shutdown().await;
}

#[tokio::test]
async fn idle_connections_are_capped_then_closed_at_the_header_read_timeout() {
    let (rig, _engine) = rig_with_silent_engine().await;
    let addr = rig.acemux.local_addr();
    let mut idle = Vec::new();
    // One kept alive after a request, the others never sending a byte.
    let mut kept_alive = connect(addr).await;
    kept_alive
        .write_all(b"GET /health HTTP/1.1\r\nhost: acemux\r\n\r\n")
        .await
        .expect("write");
    assert_eq!(read_answer(&mut kept_alive, PROMPT).await.status, 200);
    idle.push(kept_alive);
    for _ in 1..MAX_CONNECTIONS {
        idle.push(connect(addr).await);
    }
    // Give the server a moment to accept them all.
    tokio::time::sleep(Duration::from_millis(200)).await;
    let refused = exchange(
        addr,
        b"GET /health HTTP/1.1\r\nhost: acemux\r\n\r\n",
        PROMPT,
    )
    .await;
    assert_json_error(&refused, 503, "capacity");
    assert!(limit_hits(&rig, "connections") >= 1.0);
    for stream in &mut idle {
        assert!(
            closed_within(stream, HEADER_READ_TIMEOUT * 3).await,
            "an idle connection outlived the header read timeout"
        );
    }
    assert_healthy(&rig).await;
    rig.shutdown().await;
}

#[tokio::test]
async fn viewers_beyond_the_per_channel_limit_get_503_capacity() {
    let mut options = options();
    options.proxy.fanout.max_viewers = 2;
    let rig = ProxyRig::start_options(vec![EmulatorConfig::default()], options).await;
    let client = viewer_client();
    let url = rig.stream_url("popular");
    let (first, _first_body) = open(&client, &url).await;
    let (second, _second_body) = open(&client, &url).await;
    assert_eq!((first, second), (StatusCode::OK, StatusCode::OK));
    let (status, answer) = Client::new().get(&url).await.expect("answer");
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{answer}");
    assert_eq!(answer["error"], "capacity", "{answer}");
    assert_eq!(limit_hits(&rig, "viewers_per_channel"), 1.0);
    assert_healthy(&rig).await;
    rig.shutdown().await;
}

#[tokio::test]
async fn streams_beyond_the_registry_limit_get_503_capacity() {
    let engine = HostileEngine::start(|_| Answer::Hang).await;
    let mut options = options();
    options.engines = vec![engine.engine_addr()];
    options.registry.max_active_streams = 1;
    let rig = ProxyRig::start_options(Vec::new(), options).await;
    let client = Client::new();
    let url = rig.url("/events/stream_started");
    let (first, _) = client
        .post_json(&url, &started_body("k1", "s1", None), None)
        .await
        .expect("answer");
    assert_eq!(first, StatusCode::OK);
    let (second, answer) = client
        .post_json(&url, &started_body("k2", "s2", None), None)
        .await
        .expect("answer");
    assert_eq!(second, StatusCode::SERVICE_UNAVAILABLE, "{answer}");
    assert_eq!(answer["error"], "capacity", "{answer}");
    assert_eq!(limit_hits(&rig, "active_streams"), 1.0);
    assert_healthy(&rig).await;
    rig.shutdown().await;
}

#[tokio::test]
async fn a_webhook_delivery_is_given_up_after_its_attempts_and_the_event_is_kept() {
    let receiver = HostileEngine::start(|_| Answer::body(500, "text/plain", "down")).await;
    let mut options = options();
    options.webhooks = vec![WebhookTarget::parse(&receiver.base()).expect("webhook URL")];
    options.delivery.max_attempts = 2;
    options.delivery.initial_backoff = Duration::from_millis(10);
    options.delivery.max_backoff = Duration::from_millis(20);
    let rig = ProxyRig::start_options(Vec::new(), options).await;
    let client = Client::new();
    for (key, session) in [("k1", "s1"), ("k2", "s2")] {
        let (status, _) = client
            .post_json(
                &rig.url("/events/stream_started"),
                &started_body(key, session, None),
                None,
            )
            .await
            .expect("answer");
        assert_eq!(status, StatusCode::OK);
    }
    let given_up = format!(
        "acemux_webhook_given_up_total{{webhook=\"{}\"}}",
        receiver.base()
    );
    let both = eventually(Duration::from_secs(5), || async {
        rig.metric(&given_up) == 2.0
    })
    .await;
    assert!(both, "given up: {}", rig.metric(&given_up));
    assert_eq!(limit_hits(&rig, "webhook_attempts"), 2.0);
    // Two attempts per event, then the next event: nothing blocks the outbox.
    assert_eq!(receiver.hits_on("/events/stream_started"), 4);
    let (status, events) = client.get(&rig.url("/events")).await.expect("events");
    assert_eq!(status, StatusCode::OK);
    assert_eq!(events.as_array().map(Vec::len), Some(2), "{events}");
    assert_healthy(&rig).await;
    rig.shutdown().await;
}

#[tokio::test]
async fn a_webhook_backlog_beyond_max_pending_gives_up_the_oldest_and_keeps_the_events() {
    const EVENTS: usize = 10;
    const MAX_PENDING: u64 = 3;
    let receiver = SwitchableReceiver::start_down().await;
    let mut options = options();
    options.webhooks = vec![WebhookTarget::parse(&receiver.base()).expect("webhook URL")];
    options.delivery.max_attempts = 0;
    options.delivery.max_pending = MAX_PENDING;
    options.delivery.initial_backoff = Duration::from_millis(10);
    options.delivery.max_backoff = Duration::from_millis(20);
    let rig = ProxyRig::start_options(Vec::new(), options).await;
    let client = Client::new();
    for n in 1..=EVENTS {
        let (status, answer) = client
            .post_json(
                &rig.url("/events/stream_started"),
                &started_body(&format!("k{n}"), &format!("s{n}"), None),
                None,
            )
            .await
            .expect("answer");
        assert_eq!(status, StatusCode::OK, "{answer}");
    }
    let webhook = format!("{{webhook=\"{}\"}}", receiver.base());
    let given_up = format!("acemux_webhook_given_up_total{webhook}");
    let pending = format!("acemux_webhook_pending{webhook}");
    let trimmed = eventually(Duration::from_secs(10), || async {
        rig.metric(&given_up) == 7.0 && rig.metric(&pending) == 3.0
    })
    .await;
    assert!(
        trimmed,
        "given up: {}, pending: {}",
        rig.metric(&given_up),
        rig.metric(&pending)
    );
    assert_eq!(limit_hits(&rig, "webhook_pending"), 7.0);
    assert!(
        receiver.refused() > 0,
        "deliveries were attempted while down"
    );
    assert!(
        receiver.accepted().is_empty(),
        "nothing delivered while down"
    );

    // Every event stays in the log, whatever became of its delivery.
    let (status, events) = client.get(&rig.url("/events")).await.expect("events");
    assert_eq!(status, StatusCode::OK);
    let events = events.as_array().expect("a list of events");
    let seqs: Vec<u64> = events
        .iter()
        .map(|event| event["seq"].as_u64().expect("seq"))
        .collect();
    assert_eq!(seqs, (1..=10).collect::<Vec<u64>>());
    let ids: Vec<String> = events
        .iter()
        .map(|event| event["event_id"].as_str().expect("event_id").to_owned())
        .collect();

    // Back up: the three newest are delivered, in order, and none of the seven oldest.
    receiver.come_back();
    let delivered = eventually(Duration::from_secs(10), || async {
        rig.metric(&pending) == 0.0 && receiver.accepted().len() >= 3
    })
    .await;
    assert!(delivered, "accepted: {:?}", receiver.accepted());
    assert_eq!(receiver.accepted(), ids[7..]);
    assert_eq!(
        rig.metric(&format!("acemux_webhook_delivered_total{webhook}")),
        3.0
    );
    assert_eq!(rig.metric(&given_up), 7.0, "nothing more given up");
    assert_healthy(&rig).await;
    rig.shutdown().await;
}

#[tokio::test]
async fn the_command_line_bounds_reach_a_real_acemux_process() {
    let dir = tempfile::tempdir().expect("temp dir");
    let acemux = Acemux::serve(
        free_port(),
        &[
            "--db",
            ":memory:",
            "--max-header-bytes",
            "8192",
            "--max-body-bytes",
            "1024",
            "--body-read-timeout",
            "1s",
            "--header-read-timeout",
            "1s",
        ],
        &dir.path().join("acemux.log"),
    )
    .await;
    let mut request = b"GET /health HTTP/1.1\r\nhost: acemux\r\nx-huge: ".to_vec();
    request.extend(std::iter::repeat_n(b'a', 9000));
    request.extend_from_slice(b"\r\n\r\n");
    let answer = exchange(acemux.addr, &request, PROMPT).await;
    assert_json_error(&answer, 431, "header_too_large");
    let body = format!("{{\"stream_id\": \"{}\"}}", "x".repeat(2000));
    let (status, answer) = Client::new()
        .post_json(
            &acemux.url("/events/stream_ended"),
            &serde_json::from_str(&body).expect("JSON"),
            None,
        )
        .await
        .expect("answer");
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE, "{answer}");
    let mut stream = connect(acemux.addr).await;
    stream
        .write_all(
            b"POST /events/stream_ended HTTP/1.1\r\nhost: acemux\r\ncontent-length: 10\r\n\r\n{",
        )
        .await
        .expect("write");
    let answer = read_answer(&mut stream, PROMPT).await;
    assert_json_error(&answer, 408, "body_timeout");
    let (_, metrics) = Client::new()
        .get(&acemux.url("/metrics"))
        .await
        .expect("metrics");
    let metrics = metrics.as_str().unwrap_or_default().to_owned();
    for limit in ["header_bytes", "body_bytes", "body_read_timeout"] {
        let sample = format!("acemux_limit_hits_total{{limit=\"{limit}\"}}");
        assert_eq!(metric_sample(&metrics, &sample), 1.0, "{limit}:\n{metrics}");
    }
    let log = acemux.log_text();
    assert!(
        log.contains("head too large"),
        "no log line for the 431:\n{log}"
    );
    let status = acemux.terminate().await;
    assert!(status.success(), "{status:?}");
}

#[tokio::test]
async fn players_waiting_for_a_new_hls_channel_are_capped() {
    // io/src/proxy/hls.rs MAX_WAITERS.
    const MAX_WAITERS: usize = 1024;
    let engine = HostileEngine::start(|_| Answer::Hang).await;
    let mut options = options();
    options.engines = vec![engine.engine_addr()];
    options.server.max_connections = 4096;
    // The admitted players must still be waiting when the refused ones have all been
    // answered, even on a loaded machine: a long start bound, a generous client wait.
    options.proxy.channel.start_timeout = Duration::from_secs(60);
    options.proxy.engine_request_timeout = Duration::from_secs(60);
    let rig = ProxyRig::start_options(Vec::new(), options).await;
    let addr = rig.acemux.local_addr();
    let players = MAX_WAITERS + 40;
    let answers = join_all((0..players).map(|_| async move {
        let request = b"GET /ace/manifest.m3u8?id=crowd HTTP/1.1\r\nhost: acemux\r\n\r\n";
        exchange(addr, request, Duration::from_secs(10)).await
    }))
    .await;
    let refused = answers
        .iter()
        .filter(|answer| answer.status == 503 && answer.error_code() == "capacity")
        .count();
    let waiting = answers.iter().filter(|answer| answer.status == 0).count();
    assert_eq!((refused, waiting), (players - MAX_WAITERS, MAX_WAITERS));
    assert_eq!(
        limit_hits(&rig, "hls_start_waiters"),
        (players - MAX_WAITERS) as f64
    );
    assert_healthy(&rig).await;
    rig.shutdown().await;
}

#[tokio::test]
async fn refusals_at_the_connection_cap_are_logged_as_one_counted_line_per_second() {
    const CAP: usize = 3;
    const REFUSED: usize = 30;
    let dir = tempfile::tempdir().expect("temp dir");
    let cap = CAP.to_string();
    let acemux = Acemux::serve(
        free_port(),
        &[
            "--log-format",
            "json",
            "--db",
            ":memory:",
            "--max-connections",
            &cap,
            "--header-read-timeout",
            "20s",
        ],
        &dir.path().join("acemux.log"),
    )
    .await;
    // Connections that never send a request hold every permit. One opened while a
    // permit is still held by a connection on its way out (the start-up probe's) is
    // refused at once: it is counted, and another is opened in its place.
    let mut idle = Vec::new();
    let mut refused_before = 0;
    for _ in 0..20 {
        if idle.len() == CAP {
            break;
        }
        let mut stream = connect(acemux.addr).await;
        let mut byte = [0u8; 1];
        match tokio::time::timeout(Duration::from_millis(300), stream.read(&mut byte)).await {
            // Silence: it holds a permit.
            Err(_) => idle.push(stream),
            Ok(_) => {
                refused_before += 1;
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
    assert_eq!(idle.len(), CAP, "the idle connections hold every permit");
    for _ in 0..REFUSED {
        let answer = exchange(
            acemux.addr,
            b"GET /health HTTP/1.1\r\nhost: acemux\r\n\r\n",
            PROMPT,
        )
        .await;
        assert_json_error(&answer, 503, "capacity");
        assert!(
            answer.head.contains("\r\nretry-after: 1\r\n"),
            "{}",
            answer.head
        );
    }
    // The summaries: one line per bound and second, with the count.
    let summaries = || {
        acemux
            .log_text()
            .lines()
            .filter_map(|line| serde_json::from_str::<serde_json::Value>(line).ok())
            .filter(|line| line["fields"]["limit"] == "connections")
            .map(|line| {
                let message = line["fields"]["message"].as_str().unwrap_or_default();
                assert!(
                    message.contains("at the connections bound (--max-connections)"),
                    "{line}"
                );
                line["fields"]["refused"].as_u64().expect("a count")
            })
            .collect::<Vec<u64>>()
    };
    let all_logged = eventually(Duration::from_secs(5), || async {
        summaries().iter().sum::<u64>() == (REFUSED + refused_before) as u64
    })
    .await;
    let log = acemux.log_text();
    assert!(all_logged, "summaries {:?}; log:\n{log}", summaries());
    assert!(
        summaries().len() <= 4,
        "a line per refusal, not per second: {:?}",
        summaries()
    );
    // Closing the idle connections frees their permits (the server sees them close).
    drop(idle);
    // Until the server has seen them close, a request is refused too (and counted).
    let (mut metrics, mut refused_meanwhile) = (None, 0);
    for _ in 0..50 {
        match Client::new().get(&acemux.url("/metrics")).await {
            Ok((StatusCode::OK, text)) => {
                metrics = text.as_str().map(str::to_owned);
                break;
            }
            Ok((StatusCode::SERVICE_UNAVAILABLE, _)) => refused_meanwhile += 1,
            _ => {}
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let metrics = metrics.expect("/metrics answers once the idle connections closed");
    let sample = "acemux_limit_hits_total{limit=\"connections\"}";
    assert_eq!(
        metric_sample(&metrics, sample),
        (REFUSED + refused_before + refused_meanwhile) as f64,
        "{metrics}"
    );
    let status = acemux.terminate().await;
    assert!(status.success(), "{status:?}");
}
