//! MPEG-TS fan-out end to end over real sockets: acemux in front of the engine
//! emulator, viewers reading the proxied stream, real ffmpeg/ffprobe.

use std::time::Duration;

use acemux::proxy::ProxyConfig;
use acemux_core::channel::ChannelConfig;
use acemux_core::fanout::FanoutConfig;
use acemux_testkit::emulator::{EmulatorConfig, Faults};
use acemux_tests::proxy::{
    assert_contiguous_slice, engine_stream, open, read_at_least, read_for, viewer_client,
    without_nulls, ProxyRig,
};
use acemux_tests::{eventually, probe_codecs, run_tool_ok, Client};
use futures::future::join_all;
use hyper::StatusCode;
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

fn quick_proxy() -> ProxyConfig {
    ProxyConfig {
        channel: ChannelConfig {
            start_timeout: Duration::from_secs(3),
            upstream_stall_timeout: Duration::from_secs(1),
            idle_grace: Duration::from_millis(800),
            initial_backoff: Duration::from_millis(100),
            max_backoff: Duration::from_millis(400),
            ..ChannelConfig::default()
        },
        engine_request_timeout: Duration::from_secs(2),
        ..ProxyConfig::default()
    }
}

async fn json(client: &Client, url: &str) -> Value {
    client.get(url).await.expect("request").1
}

#[tokio::test]
async fn fifty_viewers_each_receive_a_contiguous_slice_of_the_engine_stream() {
    let rig = ProxyRig::start(quick_proxy()).await;
    let client = viewer_client();
    let url = rig.stream_url("fifty");
    let (status, mut first) = open(&client, &url).await;
    assert_eq!(status, StatusCode::OK);
    let (mut received, _) = read_for(&mut first, Duration::from_millis(500)).await;
    let viewers = (0..49).map(|_| {
        let client = client.clone();
        let url = url.clone();
        async move {
            let (status, mut body) = open(&client, &url).await;
            assert_eq!(status, StatusCode::OK);
            read_for(&mut body, Duration::from_secs(2)).await.0
        }
    });
    let (others, (more, _)) = tokio::join!(
        join_all(viewers),
        read_for(&mut first, Duration::from_secs(2))
    );
    received.extend(more);
    let stream = engine_stream(rig.emulator().media(), 8 * 1024 * 1024);
    assert_contiguous_slice(&stream, &received);
    for bytes in &others {
        assert!(
            bytes.len() > 100 * 188,
            "a viewer got only {} bytes",
            bytes.len()
        );
        assert_contiguous_slice(&stream, bytes);
    }
    let stats = rig.emulator().stats();
    assert_eq!(
        stats.contents["fifty"].sessions_started, 1,
        "one engine session for all viewers"
    );
    drop(first);
    rig.shutdown().await;
}

/// A crowd that opens a channel that is not running yet, all at once: every viewer is
/// served (none refused), each over the direct TS path, and an HTTP/1.0 player gets the
/// stream unchunked.
#[tokio::test]
async fn a_crowd_opening_a_new_channel_at_once_is_served_whole() {
    // A crowd, kept well under the descriptors a default `ulimit -n` of 1024 allows for
    // both ends in this one process, beside the other tests running in parallel.
    const CROWD: usize = 250;
    let rig = ProxyRig::start(quick_proxy()).await;
    let addr = rig.acemux.local_addr();
    let request = b"GET /ace/getstream?id=crowd HTTP/1.1\r\nhost: acemux\r\n\r\n";
    let viewers = (0..CROWD).map(|_| async move {
        let mut stream = tokio::net::TcpStream::connect(addr).await.expect("connect");
        stream.write_all(request).await.expect("request");
        let mut received = Vec::new();
        let mut buffer = vec![0u8; 16 * 1024];
        while received.len() < 4096 {
            let read = tokio::time::timeout(Duration::from_secs(10), stream.read(&mut buffer))
                .await
                .expect("media within 10 s")
                .expect("read");
            assert!(
                read > 0,
                "closed after {:?}",
                String::from_utf8_lossy(&received)
            );
            received.extend_from_slice(&buffer[..read]);
        }
        received
    });
    for received in join_all(viewers).await {
        let text = String::from_utf8_lossy(&received[..64]).into_owned();
        assert!(text.starts_with("HTTP/1.1 200 OK\r\n"), "{text}");
        let head = String::from_utf8_lossy(&received).into_owned();
        assert!(head.contains("transfer-encoding: chunked"), "{head:.200}");
        assert!(head.contains("content-type: video/mp2t"));
    }
    assert_eq!(
        rig.metric("acemux_http_requests_total{route=\"/ace/getstream\",status=\"200\"}"),
        CROWD as f64
    );
    assert_eq!(
        rig.metric("acemux_limit_hits_total{limit=\"join_wait\"}"),
        0.0
    );
    assert_eq!(rig.emulator().stats().contents["crowd"].sessions_started, 1);

    let mut old = tokio::net::TcpStream::connect(addr).await.expect("connect");
    old.write_all(b"GET /ace/getstream?id=crowd HTTP/1.0\r\n\r\n")
        .await
        .expect("request");
    let mut received = vec![0u8; 64 * 1024];
    let mut len = 0;
    while !received[..len].windows(4).any(|w| w == b"\r\n\r\n") || len < 2048 {
        let read = old.read(&mut received[len..]).await.expect("read");
        assert!(read > 0);
        len += read;
    }
    let (head, body) = received[..len].split_at(
        received[..len]
            .windows(4)
            .position(|w| w == b"\r\n\r\n")
            .expect("head")
            + 4,
    );
    let head = String::from_utf8_lossy(head);
    assert!(head.starts_with("HTTP/1.0 200 OK\r\n"), "{head}");
    assert!(!head.contains("chunked"), "{head}");
    assert_eq!(body[0], 0x47, "the body starts with a TS packet");
    rig.shutdown().await;
}

/// Sends `requests` on a new connection and reads everything until the server closes it.
async fn answered_and_closed(addr: std::net::SocketAddr, requests: &[u8]) -> String {
    let mut stream = tokio::net::TcpStream::connect(addr).await.expect("connect");
    stream.write_all(requests).await.expect("requests");
    let mut answers = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), stream.read_to_end(&mut answers))
        .await
        .expect("answered and closed")
        .expect("read");
    String::from_utf8_lossy(&answers).into_owned()
}

/// The first request of a connection is sniffed, so a malformed stream request and
/// other routes on a kept-alive connection still reach the full HTTP server.
#[tokio::test]
async fn non_stream_requests_still_reach_the_http_server() {
    let rig = ProxyRig::start(quick_proxy()).await;
    let addr = rig.acemux.local_addr();
    let answers = answered_and_closed(addr, b"GET /health HTTP/1.1\r\nhost: a\r\n\r\nGET /ace/getstream HTTP/1.1\r\nhost: a\r\nconnection: close\r\n\r\n").await;
    assert!(answers.starts_with("HTTP/1.1 200 OK"), "{answers}");
    assert!(answers.contains("HTTP/1.1 400 Bad Request"), "{answers}");
    assert!(answers.contains("\"invalid_query\""), "{answers}");
    // A direct stream request without a key: the same JSON error, then a close.
    let answer =
        answered_and_closed(addr, b"GET /ace/getstream?x=1 HTTP/1.1\r\nhost: a\r\n\r\n").await;
    assert!(answer.starts_with("HTTP/1.1 400 Bad Request"), "{answer}");
    assert!(answer.contains("\"invalid_query\""), "{answer}");
    rig.shutdown().await;
}

#[tokio::test]
async fn ffprobe_and_ffmpeg_decode_the_proxied_stream() {
    let rig = ProxyRig::start(quick_proxy()).await;
    let url = rig.stream_url("decode");
    let codecs = probe_codecs(&url).await;
    assert!(codecs.contains("h264"), "no H.264 stream: {codecs}");
    assert!(codecs.contains("aac"), "no AAC stream: {codecs}");

    let args = [
        "-nostdin",
        "-v",
        "error",
        "-t",
        "4",
        "-i",
        url.as_str(),
        "-f",
        "null",
        "-",
    ];
    let (_, errors) = run_tool_ok("ffmpeg", &args).await;
    assert!(
        errors.trim().is_empty(),
        "ffmpeg reported decoding errors:\n{errors}"
    );
    rig.shutdown().await;
}

#[tokio::test]
async fn a_viewer_that_stops_reading_is_dropped_and_does_not_slow_the_others() {
    // A fast stream fills socket buffers quickly, so the stuck viewer stalls at once.
    let bitrate_bps: u64 = 24_000_000;
    let mut engine = EmulatorConfig::default();
    engine.faults.insert(
        "busy".into(),
        Faults {
            bitrate_bps: Some(bitrate_bps),
            ..Faults::default()
        },
    );
    let proxy = ProxyConfig {
        fanout: FanoutConfig {
            ring_capacity_bytes: 256 * 1024 * 1024,
            viewer_stall_timeout: Duration::from_secs(2),
            ..FanoutConfig::default()
        },
        ..quick_proxy()
    };
    let rig = ProxyRig::start_with(engine, proxy).await;
    let client = viewer_client();
    let url = rig.stream_url("busy");
    let (status, mut first) = open(&client, &url).await;
    assert_eq!(status, StatusCode::OK);
    read_at_least(&mut first, 188 * 100, Duration::from_secs(2)).await;

    // The stuck viewer: a raw socket with a tiny receive buffer that reads nothing.
    let socket = tokio::net::TcpSocket::new_v4().expect("socket");
    socket.set_recv_buffer_size(4096).expect("small buffer");
    let mut stuck = socket
        .connect(rig.acemux.local_addr())
        .await
        .expect("connect");
    stuck
        .write_all(b"GET /ace/getstream?id=busy HTTP/1.1\r\nhost: acemux\r\n\r\n")
        .await
        .expect("request");

    let readers = (0..3).map(|_| {
        let client = client.clone();
        let url = url.clone();
        async move {
            let (status, mut body) = open(&client, &url).await;
            assert_eq!(status, StatusCode::OK);
            read_for(&mut body, Duration::from_secs(5)).await.0.len()
        }
    });
    let ((first_bytes, _), others) = tokio::join!(
        read_for(&mut first, Duration::from_secs(5)),
        join_all(readers)
    );
    // Everyone else kept the stream's rate (half of it, allowing for a loaded machine).
    let expected = (bitrate_bps / 8 * 5 / 2) as usize;
    assert!(
        first_bytes.len() > expected,
        "first viewer got {} bytes, expected > {expected}",
        first_bytes.len()
    );
    for got in others {
        assert!(
            got > expected,
            "a viewer got {got} bytes, expected > {expected}"
        );
    }
    let dropped = eventually(Duration::from_secs(5), || async {
        rig.metric("acemux_viewer_drops_total{channel=\"content_id:busy\",reason=\"stalled\"}")
            == 1.0
    })
    .await;
    assert!(
        dropped,
        "the stuck viewer was not dropped as stalled:\n{}",
        rig.acemux.metrics().render()
    );
    assert_eq!(
        rig.metric("acemux_limit_hits_total{limit=\"viewer_stall_timeout\"}"),
        1.0
    );
    // Its connection is closed: draining what is buffered ends in EOF or a reset.
    let mut sink = vec![0u8; 64 * 1024];
    let closed = tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            match stuck.read(&mut sink).await {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
        }
    })
    .await;
    assert!(
        closed.is_ok(),
        "the dropped viewer's connection stayed open"
    );
    drop(first);
    rig.shutdown().await;
}

#[tokio::test]
async fn the_engine_is_stopped_once_after_the_idle_grace_and_a_returning_viewer_reuses_it() {
    let rig = ProxyRig::start(quick_proxy()).await;
    let client = viewer_client();
    let url = rig.stream_url("idle");
    let (status, mut body) = open(&client, &url).await;
    assert_eq!(status, StatusCode::OK);
    read_for(&mut body, Duration::from_millis(300)).await;
    drop(body);
    tokio::time::sleep(Duration::from_millis(300)).await;
    // Back within the grace: the same session.
    let (status, mut body) = open(&client, &url).await;
    assert_eq!(status, StatusCode::OK);
    read_for(&mut body, Duration::from_millis(300)).await;
    assert_eq!(rig.emulator().stats().contents["idle"].sessions_started, 1);
    drop(body);
    let stopped = eventually(Duration::from_secs(5), || async {
        rig.emulator().stats().contents["idle"].sessions_stopped == 1
    })
    .await;
    assert!(
        stopped,
        "the engine session was not stopped after the grace"
    );
    tokio::time::sleep(Duration::from_millis(500)).await;
    let content = &rig.emulator().stats().contents["idle"];
    assert_eq!(content.sessions_started, 1);
    for (session, stats) in &content.sessions {
        assert_eq!(
            stats.stop_commands, 1,
            "session {session} got {} stops",
            stats.stop_commands
        );
    }
    let api = Client::new();
    let events = json(&api, &rig.url("/events")).await;
    let kinds: Vec<(&str, &str)> = events
        .as_array()
        .expect("events")
        .iter()
        .map(|e| {
            (
                e["type"].as_str().unwrap_or(""),
                e["stream"]["end_reason"].as_str().unwrap_or(""),
            )
        })
        .collect();
    assert_eq!(kinds, [("stream_started", ""), ("stream_ended", "idle")]);
    rig.shutdown().await;
}

#[tokio::test]
async fn a_refused_id_gets_502_with_the_engine_message() {
    let rig = ProxyRig::start(quick_proxy()).await;
    rig.emulator()
        .set_faults(
            "refused",
            Faults {
                refuse: Some("no such content".into()),
                ..Faults::default()
            },
        )
        .expect("faults");
    let (status, body) = Client::new()
        .get(&rig.stream_url("refused"))
        .await
        .expect("request");
    assert_eq!(status, StatusCode::BAD_GATEWAY, "{body}");
    assert_eq!(body["error"], "engine_error");
    assert!(
        body["message"]
            .as_str()
            .is_some_and(|m| m.contains("no such content")),
        "{body}"
    );
    rig.shutdown().await;
}

#[tokio::test]
async fn an_engine_that_never_sends_a_byte_gets_504_while_health_stays_fast() {
    let rig = ProxyRig::start(quick_proxy()).await;
    rig.emulator()
        .set_faults(
            "silent",
            Faults {
                no_data: true,
                ..Faults::default()
            },
        )
        .expect("faults");
    let api = Client::new();
    let url = rig.stream_url("silent");
    let started = tokio::time::Instant::now();
    let waiting = tokio::spawn({
        let api = api.clone();
        async move { api.get(&url).await.expect("request") }
    });
    for _ in 0..10 {
        let health = tokio::time::timeout(Duration::from_millis(500), api.get(&rig.url("/health")))
            .await
            .expect("health answers while a channel waits for its engine")
            .expect("request");
        assert_eq!(health.0, StatusCode::OK);
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let (status, body) = waiting.await.expect("task");
    assert_eq!(status, StatusCode::GATEWAY_TIMEOUT, "{body}");
    assert_eq!(body["error"], "engine_timeout");
    assert!(
        started.elapsed() < Duration::from_secs(6),
        "answered after {:?}",
        started.elapsed()
    );
    let stopped = eventually(Duration::from_secs(3), || async {
        rig.emulator().stats().contents["silent"].sessions_stopped == 1
    })
    .await;
    assert!(stopped, "the silent session was not stopped");
    rig.shutdown().await;
}

#[tokio::test]
async fn an_engine_stall_mid_stream_reconnects_while_viewers_stay_connected() {
    let rig = ProxyRig::start(quick_proxy()).await;
    rig.emulator()
        .set_faults(
            "stalls",
            Faults {
                stall_after: Some(Duration::from_millis(1500)),
                stall_for: Some(Duration::from_secs(5)),
                ..Faults::default()
            },
        )
        .expect("faults");
    let client = viewer_client();
    let (status, mut body) = open(&client, &rig.stream_url("stalls")).await;
    assert_eq!(status, StatusCode::OK);
    let (before, ended) = read_for(&mut body, Duration::from_millis(1400)).await;
    assert!(!ended);
    assert!(without_nulls(&before).len() > 188 * 50);
    // The stall: silence past the stall timeout, a reconnect, media again.
    let (during, ended) = read_for(&mut body, Duration::from_secs(4)).await;
    assert!(!ended, "the viewer was disconnected during the stall");
    let reconnected = rig.metric("acemux_channel_reconnects_total{channel=\"content_id:stalls\"}");
    assert!(
        reconnected >= 1.0,
        "no reconnect happened:\n{}",
        rig.acemux.metrics().render()
    );
    assert!(
        without_nulls(&during).len() > 188 * 50,
        "media did not resume after the reconnect"
    );
    rig.shutdown().await;
}

#[tokio::test]
async fn deleting_a_stream_closes_viewers_stops_the_engine_and_ends_it_once() {
    let rig = ProxyRig::start(quick_proxy()).await;
    let client = viewer_client();
    let (status, mut body) = open(&client, &rig.stream_url("doomed")).await;
    assert_eq!(status, StatusCode::OK);
    read_for(&mut body, Duration::from_millis(300)).await;
    let api = Client::new();
    let streams = json(&api, &rig.url("/streams?status=started")).await;
    let id = streams[0]["id"]
        .as_str()
        .expect("a started stream")
        .to_owned();
    let path = format!("/streams/{}", id.replace('|', "%7C"));
    let (status, answer) = api
        .send(hyper::Method::DELETE, &rig.url(&path), &[], None)
        .await
        .expect("request");
    assert_eq!(status, StatusCode::OK, "{answer}");
    assert_eq!(answer["stream"]["status"], "ended");
    assert_eq!(answer["stream"]["end_reason"], "deleted");
    let (_, ended) = read_for(&mut body, Duration::from_secs(3)).await;
    assert!(ended, "the viewer was not closed");
    let content = &rig.emulator().stats().contents["doomed"];
    assert_eq!(content.sessions_stopped, 1);
    let events = json(
        &api,
        &rig.url(&format!("/events?stream_id={}", id.replace('|', "%7C"))),
    )
    .await;
    assert_eq!(
        events.as_array().map(Vec::len),
        Some(2),
        "one start and one end: {events}"
    );
    rig.shutdown().await;
}

#[tokio::test]
async fn a_refusing_engine_is_failed_over_to_another_engine() {
    let refusing = EmulatorConfig {
        faults: [(
            "*".to_owned(),
            Faults {
                refuse: Some("engine overloaded".into()),
                ..Faults::default()
            },
        )]
        .into(),
        ..EmulatorConfig::default()
    };
    let rig =
        ProxyRig::start_engines(vec![refusing, EmulatorConfig::default()], quick_proxy()).await;
    let client = viewer_client();
    for channel in ["one", "two", "three"] {
        let (status, mut body) = open(&client, &rig.stream_url(channel)).await;
        assert_eq!(
            status,
            StatusCode::OK,
            "channel {channel} was not failed over"
        );
        let bytes = read_at_least(&mut body, 188 * 10, Duration::from_secs(2)).await;
        assert!(bytes.len() >= 188 * 10);
    }
    let served = rig.engines[1].emulator().stats();
    for channel in ["one", "two", "three"] {
        assert_eq!(
            served.contents[channel].sessions_started, 1,
            "{channel} runs on the healthy engine"
        );
    }
    rig.shutdown().await;
}

#[tokio::test]
async fn deleting_an_event_registered_stream_stops_it_on_an_engine_acemux_uses() {
    let rig = ProxyRig::start(quick_proxy()).await;
    let engine_port = rig.engines[0].local_addr().port();
    let api = Client::new();
    // A session some other proxy opened on the engine, and reported as an event; the
    // command URL names the engine the way an orchestrator sees it (behind gluetun).
    let (status, envelope) = api
        .get(&rig.engines[0].url("/ace/getstream?id=elsewhere&format=json"))
        .await
        .expect("session");
    assert_eq!(status, StatusCode::OK);
    let session = envelope["response"]["playback_session_id"]
        .as_str()
        .expect("a session id")
        .to_owned();
    let mut body = acemux_tests::started_body("elsewhere", &session, Some("c1"));
    body["engine"] = serde_json::json!({ "host": "127.0.0.1", "port": engine_port });
    body["session"]["command_url"] = format!("http://gluetun:19000/ace/cmd/{session}").into();
    let (status, _) = api
        .post_json(&rig.url("/events/stream_started"), &body, None)
        .await
        .expect("started");
    assert_eq!(status, StatusCode::OK);
    // And one on an engine acemux does not use.
    let foreign = acemux_tests::started_body("foreign", "f1", None);
    api.post_json(&rig.url("/events/stream_started"), &foreign, None)
        .await
        .expect("started");

    let delete = |id: String| {
        let (api, url) = (api.clone(), rig.url(&format!("/streams/{id}")));
        async move {
            api.send(hyper::Method::DELETE, &url, &[], None)
                .await
                .expect("deleted")
        }
    };
    let (status, answer) = delete(format!("elsewhere%7C{session}")).await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    assert_eq!(answer["updated"], true);
    assert_eq!(answer["engine_stop"]["done"], "stopped", "{answer}");
    let stats = rig.emulator().stats();
    assert_eq!(stats.contents["elsewhere"].sessions_stopped, 1);
    let (status, answer) = delete("foreign%7Cf1".into()).await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    assert_eq!(answer["stream"]["status"], "ended");
    assert_eq!(answer["engine_stop"]["done"], "not_sent", "{answer}");
    assert!(
        answer["engine_stop"]["detail"]
            .as_str()
            .is_some_and(|detail| detail.contains("not one acemux uses")),
        "{answer}"
    );
    let (_, again) = delete(format!("elsewhere%7C{session}")).await;
    assert_eq!(again["updated"], false);
    assert_eq!(again["engine_stop"]["done"], "not_sent");
    rig.shutdown().await;
}

#[tokio::test]
async fn a_low_bitrate_stream_is_served_to_every_viewer_never_an_empty_answer() {
    // 250 kbit/s, far below the ~0.85 Mbit/s under which the system acemux replaces
    // answered every client an empty 200.
    let mut engine = EmulatorConfig::default();
    engine.faults.insert(
        "radio".into(),
        Faults {
            bitrate_bps: Some(250_000),
            ..Faults::default()
        },
    );
    let rig = ProxyRig::start_with(engine, acemux_tests::proxy::patient_proxy()).await;
    let client = viewer_client();
    let mut bodies = Vec::new();
    for _ in 0..3 {
        let (status, body) = open(&client, &rig.stream_url("radio")).await;
        assert_eq!(status, StatusCode::OK);
        bodies.push(body);
    }
    for body in &mut bodies {
        // Two seconds at 250 kbit/s is about 62 KB; half of it must arrive.
        let (bytes, ended) = read_for(body, Duration::from_secs(2)).await;
        assert!(!ended, "the stream goes on");
        let media = without_nulls(&bytes);
        assert!(media.len() >= 30_000, "{} media bytes in 2 s", media.len());
    }
    rig.shutdown().await;
}

#[tokio::test]
async fn joiners_of_a_running_channel_need_no_free_engine_slot() {
    // The only engine takes one session: channel "one" holds it.
    let proxy = ProxyConfig {
        max_streams_per_engine: 1,
        ..acemux_tests::proxy::patient_proxy()
    };
    let rig = ProxyRig::start(proxy).await;
    let client = viewer_client();
    let (status, mut first) = open(&client, &rig.stream_url("one")).await;
    assert_eq!(status, StatusCode::OK);
    read_at_least(&mut first, 188 * 50, Duration::from_secs(5)).await;
    // Every engine is at its cap, yet a joiner of the running channel is served…
    let (status, mut joiner) = open(&client, &rig.stream_url("one")).await;
    assert_eq!(
        status,
        StatusCode::OK,
        "a joiner shares the running session"
    );
    let bytes = read_at_least(&mut joiner, 188 * 50, Duration::from_secs(5)).await;
    assert!(bytes.len() >= 188 * 50);
    // …while a new channel gets the clear error.
    let (status, body) = Client::new()
        .get(&rig.stream_url("two"))
        .await
        .expect("answered");
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
    assert_eq!(body["error"], "no_engine_available");
    assert_eq!(rig.emulator().stats().contents["one"].sessions_started, 1);
    rig.shutdown().await;
}
