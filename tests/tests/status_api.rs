//! What acemux shows of itself, over real sockets: `/channels` (state, engine, bytes and
//! rates, viewer counts), each channel's viewers at `/streams/{id}/viewers` and, in the
//! orchestrator's shape, at `/proxy/streams/{key}/clients` (address, user agent, since
//! when, bytes, rate; TS viewers and HLS players; the API key required), and each
//! webhook's delivery state at `/webhooks`.

use std::time::Duration;

use acemux::webhook::WebhookTarget;
use acemux::ServeOptions;
use acemux_tests::proxy::{patient_proxy, ProxyRig};
use acemux_tests::raw::{exchange, ts_viewer};
use acemux_tests::webhook_receiver::SwitchableReceiver;
use acemux_tests::{eventually, Client};
use hyper::{Method, StatusCode};
use serde_json::Value;

const KEY: &str = "operator-key";

async fn get(rig: &ProxyRig, path: &str, key: Option<&str>) -> (StatusCode, Value) {
    let headers: Vec<(&str, &str)> = key.map(|key| ("x-api-key", key)).into_iter().collect();
    Client::new()
        .send(Method::GET, &rig.url(path), &headers, None)
        .await
        .expect("answered")
}

fn channel<'a>(channels: &'a Value, name: &str) -> &'a Value {
    channels
        .as_array()
        .expect("a list")
        .iter()
        .find(|channel| channel["channel"] == name)
        .unwrap_or_else(|| panic!("no channel {name} in {channels}"))
}

#[tokio::test]
async fn channels_viewers_and_clients_show_who_watches_what() {
    let receiver = SwitchableReceiver::start_down().await;
    let options = ServeOptions {
        api_key: Some(KEY.into()),
        webhooks: vec![WebhookTarget::parse(&receiver.base()).expect("webhook URL")],
        proxy: patient_proxy(),
        ..ServeOptions::default()
    };
    let rig = ProxyRig::start_options(vec![Default::default()], options).await;
    let addr = rig.acemux.local_addr();
    let vlc = ts_viewer(addr, "tsch", "VLC/3.0.18 LibVLC/3.0.18").await;
    let kodi = ts_viewer(addr, "tsch", "Kodi/20.2").await;
    // An HLS player: a playlist, then a segment of it.
    let playlist = exchange(
        addr,
        b"GET /ace/manifest.m3u8?id=hlsch HTTP/1.1\r\nhost: acemux\r\nuser-agent: hls.js\r\n\r\n",
        Duration::from_secs(20),
    )
    .await;
    assert_eq!(playlist.status, 200, "{}", playlist.head);
    let segment = String::from_utf8_lossy(&playlist.body)
        .lines()
        .find(|line| line.starts_with("/ace/hls/"))
        .expect("a segment URI")
        .to_owned();
    let answer = exchange(
        addr,
        format!("GET {segment} HTTP/1.1\r\nhost: acemux\r\nuser-agent: hls.js\r\n\r\n").as_bytes(),
        Duration::from_secs(10),
    )
    .await;
    assert_eq!(answer.status, 200);

    // Channels: no key needed (no personal data).
    let both = eventually(Duration::from_secs(10), || async {
        let (_, channels) = get(&rig, "/channels", None).await;
        channels.as_array().is_some_and(|list| list.len() == 2)
            && channel(&channels, "content_id:tsch")["viewers"] == 2
    })
    .await;
    assert!(both, "{:?}", get(&rig, "/channels", None).await);
    let (status, channels) = get(&rig, "/channels", None).await;
    assert_eq!(status, StatusCode::OK);
    let ts = channel(&channels, "content_id:tsch");
    assert_eq!(ts["format"], "ts");
    assert_eq!(ts["state"], "playing");
    assert_eq!(
        ts["engine"]["port"],
        u64::from(rig.engines[0].local_addr().port())
    );
    assert!(ts["bytes_in"].as_u64() > Some(0), "{ts}");
    assert!(ts["bytes_out"].as_u64() > Some(0), "{ts}");
    // The HLS player's channel is the content's TS channel, which cuts the segments
    // (`--hls-source ts`, the default); its player is listed as an HLS viewer.
    let hls = channel(&channels, "content_id:hlsch");
    assert_eq!(hls["format"], "ts");
    assert_eq!(hls["viewers"], 1, "{hls}");
    let hls_stream = hls["stream_id"]
        .as_str()
        .expect("started")
        .replace('|', "%7C");
    let (_, body) = get(&rig, &format!("/streams/{hls_stream}/viewers"), Some(KEY)).await;
    let kinds: Vec<&Value> = body["viewers"]
        .as_array()
        .expect("viewers")
        .iter()
        .map(|viewer| &viewer["kind"])
        .collect();
    assert_eq!(kinds, [&Value::from("hls")], "{body}");

    // Viewers: the key is needed.
    let stream_id = ts["stream_id"]
        .as_str()
        .expect("started")
        .replace('|', "%7C");
    let path = format!("/streams/{stream_id}/viewers");
    assert_eq!(get(&rig, &path, None).await.0, StatusCode::UNAUTHORIZED);
    let (status, body) = get(&rig, &path, Some(KEY)).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["proxied"], true);
    let viewers = body["viewers"].as_array().expect("viewers").clone();
    let mut agents: Vec<&str> = viewers
        .iter()
        .map(|viewer| viewer["user_agent"].as_str().expect("agent"))
        .collect();
    agents.sort_unstable();
    assert_eq!(agents, ["Kodi/20.2", "VLC/3.0.18 LibVLC/3.0.18"]);
    for viewer in &viewers {
        assert_eq!(viewer["kind"], "ts");
        assert_eq!(viewer["ip"], "127.0.0.1");
        assert!(viewer["bytes_sent"].as_u64() > Some(0), "{viewer}");
        assert!(viewer["connected_at"].is_string());
    }
    // Over whole seconds the rate shows.
    let rated = eventually(Duration::from_secs(10), || async {
        let (_, body) = get(&rig, &path, Some(KEY)).await;
        body["viewers"]
            .as_array()
            .is_some_and(|list| list.iter().all(|viewer| viewer["rate"].as_u64() > Some(0)))
    })
    .await;
    assert!(rated, "{:?}", get(&rig, &path, Some(KEY)).await);

    // The orchestrator's shape, for the TS key and the HLS player.
    let (status, body) = get(&rig, "/proxy/streams/tsch/clients", Some(KEY)).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let clients = body["clients"].as_array().expect("clients");
    assert_eq!(clients.len(), 2);
    for client in clients {
        for field in [
            "client_id",
            "ip",
            "user_agent",
            "connected_at",
            "last_active",
        ] {
            assert!(client[field].is_string(), "{field} in {client}");
        }
        assert!(client["bytes_sent"].as_u64() > Some(0));
    }
    let (_, body) = get(&rig, "/proxy/streams/hlsch/clients", Some(KEY)).await;
    let player = &body["clients"][0];
    assert_eq!(player["user_agent"], "hls.js", "{body}");
    assert!(
        player["bytes_sent"].as_u64() > Some(0),
        "the segment counts: {body}"
    );
    assert!(
        player["client_id"]
            .as_str()
            .is_some_and(|id| !id.is_empty()),
        "{body}"
    );
    assert_eq!(
        get(&rig, "/proxy/streams/nothing/clients", Some(KEY))
            .await
            .0,
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        get(&rig, "/streams/nothing/viewers", Some(KEY)).await.0,
        StatusCode::NOT_FOUND
    );

    // A viewer that leaves is gone from the list.
    vlc.abort();
    let left = eventually(Duration::from_secs(10), || async {
        let (_, body) = get(&rig, &path, Some(KEY)).await;
        body["viewers"]
            .as_array()
            .is_some_and(|list| list.len() == 1)
    })
    .await;
    assert!(left, "{:?}", get(&rig, &path, Some(KEY)).await);

    // Webhooks: the receiver is down, so deliveries wait and the failure shows.
    assert_eq!(
        get(&rig, "/webhooks", None).await.0,
        StatusCode::UNAUTHORIZED
    );
    let failing = eventually(Duration::from_secs(10), || async {
        let (_, hooks) = get(&rig, "/webhooks", Some(KEY)).await;
        hooks[0]["pending"].as_i64() > Some(0) && hooks[0]["last_error"]["message"].is_string()
    })
    .await;
    assert!(failing, "{:?}", get(&rig, "/webhooks", Some(KEY)).await);
    receiver.come_back();
    let delivered = eventually(Duration::from_secs(20), || async {
        let (_, hooks) = get(&rig, "/webhooks", Some(KEY)).await;
        hooks[0]["pending"] == 0 && hooks[0]["delivered"].as_u64() >= Some(2)
    })
    .await;
    assert!(delivered, "{:?}", get(&rig, "/webhooks", Some(KEY)).await);
    let (_, hooks) = get(&rig, "/webhooks", Some(KEY)).await;
    assert_eq!(hooks[0]["url"], receiver.base());
    assert!(hooks[0]["last_delivered_at"].is_string());

    kodi.abort();
    rig.shutdown().await;
}

#[tokio::test]
async fn per_channel_series_go_when_the_channel_ends() {
    let rig = ProxyRig::start(patient_proxy()).await;
    let addr = rig.acemux.local_addr();
    let series = |rig: &ProxyRig| {
        rig.acemux
            .metrics()
            .render()
            .lines()
            .filter(|line| line.contains("channel=\"content_id:gone\""))
            .map(str::to_owned)
            .collect::<Vec<_>>()
    };
    let viewer = ts_viewer(addr, "gone", "VLC").await;
    let counted = eventually(Duration::from_secs(10), || async {
        series(&rig)
            .iter()
            .any(|line| line.starts_with("acemux_channel_bytes_in_total"))
    })
    .await;
    assert!(counted, "{:?}", series(&rig));
    viewer.abort();
    // The idle grace passes, the channel ends, and its series with it.
    let gone = eventually(Duration::from_secs(10), || async {
        series(&rig).is_empty()
    })
    .await;
    assert!(gone, "left behind: {:?}", series(&rig));
    rig.shutdown().await;
}
