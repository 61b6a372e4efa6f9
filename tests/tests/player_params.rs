//! Player parameters over real sockets, as the engines take them: every source and
//! parameter reaches the engine emulator's own request (it records what it was asked),
//! distinct values are distinct channels, url= and magnet= only with the flag, and the
//! orchestrator's HLS stream mode.

use std::time::Duration;

use acemux::http::{PlayerRules, StreamMode};
use acemux::proxy::{HlsSource, ProxyConfig};
use acemux::ServeOptions;
use acemux_testkit::emulator::SessionRequest;
use acemux_tests::proxy::{patient_proxy, ProxyRig};
use acemux_tests::raw::{exchange, RawAnswer};

const PROMPT: Duration = Duration::from_secs(10);
/// How long a streaming answer is read (its head and first media arrive within it).
const STREAM_READ: Duration = Duration::from_millis(1500);
const HASH: &str = "0123456789ABCDEF0123456789ABCDEF01234567";

async fn rig(player: PlayerRules) -> ProxyRig {
    let options = ServeOptions {
        player,
        // Each route's own engine request is what these tests check.
        proxy: ProxyConfig {
            hls_source: HlsSource::Engine,
            ..patient_proxy()
        },
        ..ServeOptions::default()
    };
    ProxyRig::start_options(vec![Default::default()], options).await
}

async fn get(rig: &ProxyRig, target: &str, bound: Duration) -> RawAnswer {
    let request = format!("GET {target} HTTP/1.1\r\nhost: acemux\r\n\r\n");
    exchange(rig.acemux.local_addr(), request.as_bytes(), bound).await
}

fn asked(source: (&str, &str), route: &str) -> SessionRequest {
    SessionRequest {
        route: route.into(),
        source: (source.0.into(), source.1.into()),
        ..SessionRequest::default()
    }
}

/// The emulator's records without the player id (acemux's own).
fn requests(rig: &ProxyRig) -> Vec<SessionRequest> {
    rig.emulator()
        .requests()
        .into_iter()
        .map(|request| SessionRequest {
            pid: None,
            ..request
        })
        .collect()
}

#[tokio::test]
async fn every_source_and_parameter_reaches_the_engine() {
    let rig = rig(PlayerRules {
        allow_url_sources: true,
        ..PlayerRules::default()
    })
    .await;
    let targets = [
        format!("/ace/getstream?content_id=%20{HASH}%20&file_indexes=0,2&live_delay=30"),
        "/ace/getstream?infohash=abcdef0123456789abcdef0123456789abcdef01&seekback=12".into(),
        "/ace/getstream?url=http%3A%2F%2Ftracker.example%2Fa.torrent".into(),
        "/ace/manifest.m3u8?magnet=magnet%3A%3Fxt%3Durn%3Abtih%3Aabc&file_indexes=1".into(),
    ];
    for target in &targets {
        // A playlist is whole at once; a stream is read for a while.
        let bound = if target.contains(".m3u8") {
            PROMPT
        } else {
            STREAM_READ
        };
        let answer = get(&rig, target, bound).await;
        assert_eq!(answer.status, 200, "{target}: {}", answer.head);
    }
    let hash = HASH.to_ascii_lowercase();
    assert_eq!(
        requests(&rig),
        vec![
            SessionRequest {
                file_indexes: Some("0,2".into()),
                live_delay: Some("30".into()),
                ..asked(("id", &hash), "getstream")
            },
            SessionRequest {
                seekback: Some("12".into()),
                ..asked(
                    ("infohash", "abcdef0123456789abcdef0123456789abcdef01"),
                    "getstream"
                )
            },
            asked(("url", "http://tracker.example/a.torrent"), "getstream"),
            SessionRequest {
                file_indexes: Some("1".into()),
                ..asked(("magnet", "magnet:?xt=urn:btih:abc"), "manifest.m3u8")
            },
        ]
    );
    rig.shutdown().await;
}

#[tokio::test]
async fn distinct_values_are_distinct_channels_and_case_is_not() {
    let rig = rig(PlayerRules::default()).await;
    let lower = HASH.to_ascii_lowercase();
    // Held open together, so that each is served by a running channel.
    let answers = futures::future::join_all(
        [
            format!("/ace/getstream?id={HASH}"),
            format!("/ace/getstream?id={lower}"),
            format!("/ace/getstream?content_id={lower}"),
            format!("/ace/getstream?id={HASH}&file_indexes=1"),
            format!("/ace/getstream?id={HASH}&live_delay=10"),
        ]
        .iter()
        .map(|target| get(&rig, target, STREAM_READ)),
    )
    .await;
    for answer in &answers {
        assert_eq!(answer.status, 200, "{}", answer.head);
    }
    let sessions = requests(&rig);
    assert_eq!(
        sessions.len(),
        3,
        "one session per distinct channel: {sessions:?}"
    );
    assert!(sessions
        .iter()
        .all(|request| request.source == ("id".into(), lower.clone())));
    rig.shutdown().await;
}

#[tokio::test]
async fn url_and_magnet_are_refused_without_the_flag_and_bad_values_get_400() {
    let rig = rig(PlayerRules::default()).await;
    for target in [
        "/ace/getstream?url=http%3A%2F%2Finternal.example%2F",
        "/ace/manifest.m3u8?magnet=magnet%3A%3Fxt%3Durn%3Abtih%3Aabc",
    ] {
        let answer = get(&rig, target, PROMPT).await;
        assert_eq!(
            (answer.status, answer.error_code().as_str()),
            (403, "source_not_allowed"),
            "{target}"
        );
    }
    for target in [
        "/ace/getstream?id=a&infohash=b",
        "/ace/getstream?id=a&file_indexes=first",
        "/ace/getstream?id=a&live_delay=-3",
        "/ace/getstream?id=a&live_delay=3&seekback=3",
        "/ace/manifest.m3u8?content_id=",
    ] {
        let answer = get(&rig, target, PROMPT).await;
        assert_eq!(
            (answer.status, answer.error_code().as_str()),
            (400, "invalid_query"),
            "{target}"
        );
    }
    assert!(requests(&rig).is_empty(), "nothing reached the engine");
    rig.shutdown().await;
}

#[tokio::test]
async fn hls_stream_mode_sends_getstream_to_the_playlist_of_the_same_channel() {
    let rig = rig(PlayerRules {
        stream_mode: StreamMode::Hls,
        ..PlayerRules::default()
    })
    .await;
    let answer = get(&rig, "/ace/getstream?id=modal&file_indexes=0", PROMPT).await;
    assert_eq!(answer.status, 302, "{}", answer.head);
    let location = answer
        .head
        .lines()
        .find_map(|line| line.strip_prefix("location: "))
        .unwrap_or_else(|| panic!("no location: {}", answer.head));
    assert_eq!(location, "/ace/manifest.m3u8?id=modal&file_indexes=0");
    let playlist = get(&rig, location, PROMPT).await;
    assert_eq!(playlist.status, 200, "{}", playlist.head);
    assert!(String::from_utf8_lossy(&playlist.body).starts_with("#EXTM3U"));
    assert_eq!(
        requests(&rig),
        vec![SessionRequest {
            file_indexes: Some("0".into()),
            ..asked(("id", "modal"), "manifest.m3u8")
        }]
    );
    rig.shutdown().await;
}
