//! What browsers and retrying clients read in the answers' heads, over real sockets:
//! cross-origin headers on the player routes (TS served directly and through the
//! router, HLS playlists and segments, errors, preflights; any origin or a list), none
//! on the API, and `Retry-After` on every 503.

use std::net::SocketAddr;
use std::time::Duration;

use acemux::http::{CorsPolicy, PlayerRules};
use acemux::ServeOptions;
use acemux_tests::proxy::{patient_proxy, ProxyRig};
use acemux_tests::raw::{connect, exchange, read_answer, RawAnswer};
use tokio::io::AsyncWriteExt;

const ORIGIN: &str = "https://tv.example";
/// Bound on an answer (a stream's head arrives well within it).
const PROMPT: Duration = Duration::from_secs(10);
/// How long a streaming answer is read for its head.
const HEAD_READ: Duration = Duration::from_millis(1500);

fn options(cors: CorsPolicy) -> ServeOptions {
    ServeOptions {
        player: PlayerRules {
            cors,
            ..PlayerRules::default()
        },
        proxy: patient_proxy(),
        ..ServeOptions::default()
    }
}

fn get(target: &str, origin: Option<&str>) -> Vec<u8> {
    let origin = origin
        .map(|origin| format!("origin: {origin}\r\n"))
        .unwrap_or_default();
    format!("GET {target} HTTP/1.1\r\nhost: acemux\r\n{origin}\r\n").into_bytes()
}

/// The value of header `name` in `answer`'s head (case-insensitive), if present.
fn header(answer: &RawAnswer, name: &str) -> Option<String> {
    answer.head.lines().find_map(|line| {
        let (key, value) = line.split_once(':')?;
        key.trim()
            .eq_ignore_ascii_case(name)
            .then(|| value.trim().to_owned())
    })
}

/// A GET of a stream: the answer as far as it arrived within [`HEAD_READ`].
async fn stream_head(addr: SocketAddr, target: &str, origin: Option<&str>) -> RawAnswer {
    exchange(addr, &get(target, origin), HEAD_READ).await
}

#[tokio::test]
async fn player_routes_answer_every_origin_and_preflights_while_the_api_does_not() {
    let rig = ProxyRig::start_options(vec![Default::default()], options(CorsPolicy::Any)).await;
    let addr = rig.acemux.local_addr();

    // TS served directly (a connection's first request).
    let direct = stream_head(addr, "/ace/getstream?id=web", Some(ORIGIN)).await;
    assert_eq!(direct.status, 200, "{}", direct.head);
    assert_eq!(
        header(&direct, "access-control-allow-origin").as_deref(),
        Some("*")
    );
    assert_eq!(
        header(&direct, "content-type").as_deref(),
        Some("video/mp2t")
    );
    // TS through the router (a second request on a kept-alive connection).
    let mut stream = connect(addr).await;
    stream
        .write_all(&get("/health", None))
        .await
        .expect("write");
    assert_eq!(read_answer(&mut stream, PROMPT).await.status, 200);
    stream
        .write_all(&get("/ace/getstream?id=web", Some(ORIGIN)))
        .await
        .expect("write");
    let routed = read_answer(&mut stream, HEAD_READ).await;
    assert_eq!(routed.status, 200, "{}", routed.head);
    assert_eq!(
        header(&routed, "access-control-allow-origin").as_deref(),
        Some("*")
    );
    assert_eq!(
        header(&routed, "content-type").as_deref(),
        Some("video/mp2t")
    );
    drop(stream);

    // Errors too, on both paths, so that a page can read them.
    let bad = exchange(addr, &get("/ace/getstream", Some(ORIGIN)), PROMPT).await;
    assert_eq!(
        (bad.status, bad.error_code().as_str()),
        (400, "invalid_query")
    );
    assert_eq!(
        header(&bad, "access-control-allow-origin").as_deref(),
        Some("*")
    );
    let missing = exchange(addr, &get("/ace/hls/1/999999.ts", Some(ORIGIN)), PROMPT).await;
    assert_eq!(
        (missing.status, missing.error_code().as_str()),
        (404, "unknown_segment")
    );
    assert_eq!(
        header(&missing, "access-control-allow-origin").as_deref(),
        Some("*")
    );

    // HLS: the playlist and a segment it lists.
    let playlist = exchange(
        addr,
        &get("/ace/manifest.m3u8?id=webhls", Some(ORIGIN)),
        PROMPT,
    )
    .await;
    assert_eq!(playlist.status, 200, "{}", playlist.head);
    assert_eq!(
        header(&playlist, "access-control-allow-origin").as_deref(),
        Some("*")
    );
    let text = String::from_utf8_lossy(&playlist.body).into_owned();
    let segment = text
        .lines()
        .find(|line| line.starts_with("/ace/hls/"))
        .unwrap_or_else(|| panic!("a segment URI in:\n{text}"));
    let segment = exchange(addr, &get(segment, Some(ORIGIN)), PROMPT).await;
    assert_eq!(segment.status, 200, "{}", segment.head);
    assert_eq!(
        header(&segment, "access-control-allow-origin").as_deref(),
        Some("*")
    );

    // A preflight, as a browser sends one before a request with a Range header.
    let preflight = exchange(
        addr,
        format!(
            "OPTIONS /ace/manifest.m3u8?id=webhls HTTP/1.1\r\nhost: acemux\r\norigin: {ORIGIN}\r\n\
             access-control-request-method: GET\r\naccess-control-request-headers: range\r\n\r\n"
        )
        .as_bytes(),
        PROMPT,
    )
    .await;
    assert_eq!(preflight.status, 204, "{}", preflight.head);
    assert_eq!(
        header(&preflight, "access-control-allow-origin").as_deref(),
        Some("*")
    );
    assert_eq!(
        header(&preflight, "access-control-allow-methods").as_deref(),
        Some("GET, HEAD, OPTIONS")
    );
    assert_eq!(
        header(&preflight, "access-control-allow-headers").as_deref(),
        Some("range")
    );
    assert!(
        header(&preflight, "access-control-max-age").is_some(),
        "{}",
        preflight.head
    );

    // The API is not for other origins' pages.
    let api = exchange(addr, &get("/streams", Some(ORIGIN)), PROMPT).await;
    assert_eq!(api.status, 200);
    assert_eq!(
        header(&api, "access-control-allow-origin"),
        None,
        "{}",
        api.head
    );
    rig.shutdown().await;
}

#[tokio::test]
async fn a_list_of_origins_admits_only_those() {
    let policy = CorsPolicy::parse(&[ORIGIN.to_owned()]).expect("an origin");
    let rig = ProxyRig::start_options(vec![Default::default()], options(policy)).await;
    let addr = rig.acemux.local_addr();
    let admitted = stream_head(addr, "/ace/getstream?id=list", Some(ORIGIN)).await;
    assert_eq!(admitted.status, 200, "{}", admitted.head);
    assert_eq!(
        header(&admitted, "access-control-allow-origin").as_deref(),
        Some(ORIGIN)
    );
    assert_eq!(header(&admitted, "vary").as_deref(), Some("origin"));
    let other = stream_head(
        addr,
        "/ace/getstream?id=list",
        Some("https://other.example"),
    )
    .await;
    assert_eq!(other.status, 200, "{}", other.head);
    assert_eq!(
        header(&other, "access-control-allow-origin"),
        None,
        "{}",
        other.head
    );
    let playlist = exchange(
        addr,
        &get(
            "/ace/manifest.m3u8?id=listhls",
            Some("https://other.example"),
        ),
        PROMPT,
    )
    .await;
    assert_eq!(playlist.status, 200, "{}", playlist.head);
    assert_eq!(header(&playlist, "access-control-allow-origin"), None);
    assert_eq!(header(&playlist, "vary").as_deref(), Some("origin"));
    rig.shutdown().await;
}

#[tokio::test]
async fn every_503_says_when_to_retry() {
    // No engine at all: the player routes cannot start anything.
    let rig = ProxyRig::start_options(Vec::new(), options(CorsPolicy::Any)).await;
    let addr = rig.acemux.local_addr();
    for target in ["/ace/getstream?id=none", "/ace/manifest.m3u8?id=none"] {
        let answer = exchange(addr, &get(target, None), PROMPT).await;
        assert_eq!(answer.status, 503, "{target}: {}", answer.head);
        assert_eq!(answer.error_code(), "no_engine_available");
        assert_eq!(
            header(&answer, "retry-after").as_deref(),
            Some("5"),
            "{target}"
        );
    }
    let health = exchange(addr, &get("/health", None), PROMPT).await;
    assert_eq!(health.status, 200);
    assert_eq!(header(&health, "retry-after"), None);
    rig.shutdown().await;
}
