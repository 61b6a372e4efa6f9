//! HLS in cluster mode against a real redis-server: three acemux processes, one engine
//! emulator. A player whose requests land on different instances reads the owner's
//! playlist and segments everywhere (same media sequence, same segment URIs, same
//! bytes), the engine serves one session, the owner sees one player per peer instance,
//! and when the owner dies another instance takes the channel over with sequence
//! numbers above the old ones.

use std::collections::BTreeSet;
use std::time::Duration;

use acemux_tests::cluster::{
    channel_stats, instance_id, instance_with, logs, Redis, CHANNEL, SECRET,
};
use acemux_tests::{free_port, probe_codecs, Acemux, Client};
use hyper::{Method, StatusCode};

/// The playlist `acemux` serves to player `token`.
async fn playlist(client: &Client, acemux: &Acemux, token: &str) -> Option<String> {
    let url = acemux.url(&format!("/ace/manifest.m3u8?id={CHANNEL}&t={token}"));
    match client.get(&url).await {
        Ok((StatusCode::OK, body)) => body.as_str().map(str::to_owned),
        _ => None,
    }
}

/// `#EXT-X-MEDIA-SEQUENCE` of `text`.
fn media_sequence(text: &str) -> u64 {
    text.lines()
        .find_map(|line| line.strip_prefix("#EXT-X-MEDIA-SEQUENCE:"))
        .and_then(|seq| seq.trim().parse().ok())
        .unwrap_or_else(|| panic!("no media sequence in {text}"))
}

/// The segment URIs of `text` without the player's token.
fn segments(text: &str) -> Vec<String> {
    text.lines()
        .filter(|line| line.starts_with("/ace/hls/"))
        .map(|line| line.split(['?', '&']).next().unwrap_or(line).to_owned())
        .collect()
}

/// The owner's players as its viewer route lists them.
async fn owner_players(client: &Client, owner: &Acemux) -> BTreeSet<String> {
    let (status, body) = client
        .get(&owner.url(&format!("/proxy/streams/{CHANNEL}/clients")))
        .await
        .expect("clients");
    assert_eq!(status, StatusCode::OK, "{body}");
    body["clients"]
        .as_array()
        .expect("clients")
        .iter()
        .filter_map(|client| client["client_id"].as_str().map(str::to_owned))
        .collect()
}

async fn players_moving_between_instances(source: &str) {
    let dir = tempfile::tempdir().expect("temp dir");
    let redis = Redis::start(&dir.path().join("redis.log")).await;
    let engine = Acemux::emulate_engine(free_port(), &[], &dir.path().join("engine.log")).await;
    let client = Client::new();
    let flags = ["--cluster-lease-ttl", "3s", "--hls-source", source];
    let mut instances = Vec::new();
    for n in 0..3 {
        instances.push(instance_with(dir.path(), n, &redis.url(), &engine, &flags).await);
    }
    let all = || instances.iter().collect::<Vec<_>>();

    // The first request makes instance 0 the owner.
    let first = playlist(&client, &instances[0], "player1").await;
    assert!(first.is_some(), "logs:\n{}", logs(&all()));

    // The player asks every instance in turn: the same playlist everywhere (a relay's
    // copy may be one segment behind for a moment, never renumbered).
    let mut agreed = 0;
    let mut newest_seen = 0;
    for _ in 0..60 {
        let mut texts = Vec::new();
        for acemux in &instances {
            let text = playlist(&client, acemux, "player1")
                .await
                .unwrap_or_else(|| {
                    panic!("no playlist from {}; logs:\n{}", acemux.addr, logs(&all()))
                });
            texts.push(text);
        }
        let sequences: Vec<u64> = texts.iter().map(|text| media_sequence(text)).collect();
        let lowest = *sequences.iter().min().expect("three");
        let highest = *sequences.iter().max().expect("three");
        assert!(
            highest - lowest <= 1,
            "instances serve different numberings: {sequences:?}\n{texts:#?}"
        );
        // Relayed segment URIs name the same segments as the owner's.
        for text in &texts[1..] {
            for uri in segments(text) {
                assert!(
                    uri.starts_with(&format!("/ace/hls/content_id/{CHANNEL}/")),
                    "{uri}"
                );
            }
        }
        newest_seen = newest_seen.max(highest);
        if texts
            .iter()
            .all(|text| segments(text) == segments(&texts[0]))
            && sequences.iter().all(|&seq| seq == sequences[0])
            && !segments(&texts[0]).is_empty()
        {
            agreed += 1;
            if agreed == 3 {
                break;
            }
        }
        tokio::time::sleep(Duration::from_millis(700)).await;
    }
    assert_eq!(
        agreed,
        3,
        "the instances never served one playlist; logs:\n{}",
        logs(&all())
    );

    // The newest segment, asked of a relaying instance by five players at once: one
    // fetch from the owner, the owner's bytes for all.
    let owner_text = playlist(&client, &instances[0], "player1")
        .await
        .expect("playlist");
    let newest = segments(&owner_text).pop().expect("a segment");
    let fetches = "acemux_cluster_hls_relay_fetches_total{kind=\"segment\",result=\"ok\"}";
    let before = client.metric(&instances[1].url(""), fetches).await;
    let asks = (1..=5).map(|n| {
        let url = instances[1].url(&format!("{newest}?t=player{n}"));
        let client = client.clone();
        async move { client.get(&url).await.expect("segment") }
    });
    let answers = futures::future::join_all(asks).await;
    let (status, from_owner) = client
        .get(&instances[0].url(&format!("{newest}?t=player1")))
        .await
        .expect("segment from the owner");
    assert_eq!(status, StatusCode::OK);
    for (status, body) in &answers {
        assert_eq!(*status, StatusCode::OK, "{body}");
        assert_eq!(body, &from_owner, "the owner's segment, unchanged");
    }
    let after = client.metric(&instances[1].url(""), fetches).await;
    assert_eq!(
        after - before,
        1.0,
        "five players, one fetch from the owner"
    );
    // A third instance's copy plays.
    let codecs = probe_codecs(&instances[2].url(&format!("{newest}?t=player1"))).await;
    assert!(codecs.contains("h264"), "ffprobe found {codecs:?}");

    // One engine session; the owner sees player1 (who asked it directly) and one
    // player per peer instance, not the players behind them.
    let stats = channel_stats(&client, &engine).await;
    assert_eq!(stats["sessions_started"], 1, "{stats}");
    let peers = [
        format!("peer-{}", instance_id(&client, &instances[1]).await),
        format!("peer-{}", instance_id(&client, &instances[2]).await),
    ];
    let expected: BTreeSet<String> = peers
        .iter()
        .cloned()
        .chain(["player1".to_owned()])
        .collect();
    assert_eq!(owner_players(&client, &instances[0]).await, expected);

    // A peer's request is served only by the owner, and only with the secret.
    let manifest = format!("/ace/manifest.m3u8?id={CHANNEL}");
    let peer = |secret| [("x-acemux-peer", secret)];
    let ask = |acemux: &Acemux, path: &str, secret: &'static str| {
        let url = acemux.url(path);
        let client = client.clone();
        async move {
            client
                .send(Method::GET, &url, &peer(secret), None)
                .await
                .expect("answer")
        }
    };
    let (status, body) = ask(&instances[1], &manifest, SECRET).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (StatusCode::SERVICE_UNAVAILABLE, Some("not_owner"))
    );
    let (status, body) = ask(&instances[1], &newest, SECRET).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (StatusCode::SERVICE_UNAVAILABLE, Some("not_owner"))
    );
    let (status, body) = ask(&instances[0], &manifest, "wrong").await;
    assert_eq!(
        (status, body["error"].as_str()),
        (StatusCode::FORBIDDEN, Some("not_a_peer"))
    );

    // The owner dies: another instance takes the channel over, and the player's
    // sequence numbers keep growing.
    let owner = instances.remove(0);
    owner.kill();
    let survivors = || instances.iter().collect::<Vec<_>>();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    let resumed = loop {
        let mut texts = Vec::new();
        for acemux in &instances {
            match playlist(&client, acemux, "player1").await {
                Some(text) if !segments(&text).is_empty() => {
                    // Never behind what the player saw (a relay's copy may still be
                    // the dead owner's last one for a moment).
                    assert!(
                        media_sequence(&text) + 1 >= newest_seen,
                        "the sequence went back: {} after {newest_seen}",
                        media_sequence(&text)
                    );
                    if media_sequence(&text) <= newest_seen {
                        break;
                    }
                    texts.push(text);
                }
                _ => break,
            }
        }
        if texts.len() == instances.len() {
            break texts.pop();
        }
        if tokio::time::Instant::now() >= deadline {
            break None;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    };
    let Some(resumed) = resumed else {
        panic!(
            "no playlist after the owner died; logs:\n{}",
            logs(&survivors())
        );
    };
    assert!(
        media_sequence(&resumed) > newest_seen,
        "the new owner numbers above the old one: {} after {newest_seen}",
        media_sequence(&resumed)
    );
    let stats = channel_stats(&client, &engine).await;
    assert_eq!(stats["sessions_started"], 2, "{stats}");
}

#[tokio::test]
async fn hls_cut_from_ts_is_served_by_its_owner_on_every_instance_and_survives_its_death() {
    players_moving_between_instances("ts").await;
}

#[tokio::test]
async fn engine_hls_is_served_by_its_owner_on_every_instance_and_survives_its_death() {
    players_moving_between_instances("engine").await;
}
