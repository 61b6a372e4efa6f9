//! Cluster mode against a real redis-server: three acemux processes, one engine
//! emulator. Viewers of one channel spread over the instances get one engine session
//! between them; when the owner dies (`kill -9`), another instance takes the channel
//! over after the lease's time to live and the viewers on the survivors get media
//! again. redis-server must be installed (`scripts/test.sh` installs it).

use std::net::SocketAddr;
use std::time::Duration;

use acemux_tests::cluster::*;
use acemux_tests::{eventually, free_port, Acemux, Client};
use hyper::StatusCode;

mod cluster_sessions;

#[tokio::test]
async fn viewers_spread_over_instances_share_one_engine_session_and_survive_the_owners_death() {
    let dir = tempfile::tempdir().expect("temp dir");
    let redis = Redis::start(&dir.path().join("redis.log")).await;
    let engine = Acemux::emulate_engine(free_port(), &[], &dir.path().join("engine.log")).await;
    let client = Client::new();
    let mut instances = Vec::new();
    for n in 0..3 {
        instances.push(instance(dir.path(), n, &redis, &engine).await);
    }

    // Each instance has its own id, stable with its database.
    let mut ids = Vec::new();
    for acemux in &instances {
        ids.push(instance_id(&client, acemux).await);
        let (_, view) = client.get(&acemux.url("/cluster")).await.expect("/cluster");
        assert_eq!(
            view["advertise"].as_str(),
            Some(format!("http://{}", acemux.addr).as_str())
        );
    }
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), 3, "three distinct instance ids: {ids:?}");

    // Two viewers on each instance, all at once.
    let mut viewers = Vec::new();
    for _ in 0..2 {
        for acemux in &instances {
            viewers.push((acemux.addr, Viewer::connect(acemux.addr).await));
        }
    }
    let all_served = eventually(Duration::from_secs(20), || async {
        viewers.iter().all(|(_, viewer)| viewer.received() > 0)
    })
    .await;
    let all: Vec<&Acemux> = instances.iter().collect();
    assert!(
        all_served,
        "every viewer receives media; logs:\n{}",
        logs(&all)
    );
    let stats = channel_stats(&client, &engine).await;
    assert_eq!(
        stats["sessions_started"],
        1,
        "one engine session for every viewer on every instance: {stats}; logs:\n{}",
        logs(&all)
    );
    assert_eq!(stats["active_playbacks"], 1, "{stats}");

    // Exactly one instance holds the channel's lease.
    let mut owners = Vec::new();
    for (index, acemux) in instances.iter().enumerate() {
        let held = leases(&client, acemux).await;
        if !held.is_empty() {
            assert_eq!(held.len(), 1);
            assert!(
                held[0]["fencing"].as_u64().is_some_and(|n| n >= 1),
                "{held:?}"
            );
            assert!(held[0]["channel"]
                .as_str()
                .is_some_and(|c| c.contains(CHANNEL)));
            owners.push(index);
        }
    }
    assert_eq!(owners.len(), 1, "one owner: {owners:?}");
    for (index, acemux) in instances.iter().enumerate() {
        let relays = client
            .metric(&acemux.url(""), "acemux_cluster_relays_total")
            .await;
        if index == owners[0] {
            assert_eq!(relays, 0.0, "the owner relays from nobody");
        } else {
            assert!(relays >= 1.0, "{} relays from the owner", acemux.addr);
        }
    }
    let owner = instances.remove(owners[0]);
    let first_fencing = leases(&client, &owner).await[0]["fencing"]
        .as_u64()
        .expect("fencing");

    // A player cannot pose as an instance.
    let (status, body) = client
        .send(
            hyper::Method::GET,
            &owner.url(&format!("/ace/getstream?id={CHANNEL}")),
            &[("x-acemux-peer", "wrong")],
            None,
        )
        .await
        .expect("request");
    assert_eq!(status, StatusCode::FORBIDDEN, "{body:?}");
    assert_eq!(body["error"], "not_a_peer", "{body:?}");
    // An instance relays a channel only from its owner: a relaying instance refuses.
    let (status, body) = client
        .send(
            hyper::Method::GET,
            &instances[0].url(&format!("/ace/getstream?id={CHANNEL}")),
            &[("x-acemux-peer", SECRET)],
            None,
        )
        .await
        .expect("request");
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body:?}");
    assert_eq!(body["error"], "not_owner", "{body:?}");

    // The owner dies.
    let owner_addr = owner.addr;
    let killed = std::time::Instant::now();
    owner.kill();
    let survivors: Vec<&(SocketAddr, Viewer)> = viewers
        .iter()
        .filter(|(addr, _)| *addr != owner_addr)
        .collect();
    assert_eq!(survivors.len(), 4);
    let before: Vec<u64> = survivors
        .iter()
        .map(|(_, viewer)| viewer.received())
        .collect();
    let resumed = eventually(Duration::from_secs(40), || async {
        survivors
            .iter()
            .zip(&before)
            .all(|((_, viewer), before)| viewer.received() > before + 64 * 1024)
    })
    .await;
    let all: Vec<&Acemux> = instances.iter().collect();
    assert!(
        resumed,
        "the survivors' viewers get media again after the lease expires; logs:\n{}",
        logs(&all)
    );
    // The gap: the lease's 3 s time to live, the relays' reconnect backoff, the new
    // session's start, and 64 KiB of media.
    eprintln!(
        "failover: media again on every surviving viewer {:?} after the owner was killed",
        killed.elapsed()
    );

    // One new engine session, on the new owner, with a higher fencing number.
    let stats = channel_stats(&client, &engine).await;
    assert_eq!(
        stats["sessions_started"],
        2,
        "{stats}; logs:\n{}",
        logs(&all)
    );
    let mut new_owners = Vec::new();
    for acemux in &instances {
        for lease in leases(&client, acemux).await {
            new_owners.push(lease["fencing"].as_u64().expect("fencing"));
        }
    }
    assert_eq!(
        new_owners.len(),
        1,
        "one owner after the takeover: {new_owners:?}"
    );
    assert!(
        new_owners[0] > first_fencing,
        "{new_owners:?} after {first_fencing}"
    );
}

/// The fencing number of the one lease `acemux` holds, if it holds one.
async fn held_fencing(client: &Client, acemux: &Acemux) -> Option<u64> {
    let held = leases(client, acemux).await;
    assert!(held.len() <= 1, "{held:?}");
    held.first().and_then(|lease| lease["fencing"].as_u64())
}

#[tokio::test]
async fn redis_trouble_never_disconnects_a_viewer_and_the_lease_comes_back() {
    let dir = tempfile::tempdir().expect("temp dir");
    let engine = Acemux::emulate_engine(free_port(), &[], &dir.path().join("engine.log")).await;
    let client = Client::new();
    // Redis is not there yet.
    let redis_port = free_port();
    let redis_url = format!("redis://127.0.0.1:{redis_port}");
    let acemux = instance_with(
        dir.path(),
        0,
        &redis_url,
        &engine,
        &["--cluster-lease-ttl", "3s", "--cluster-redis-wait", "1s"],
    )
    .await;
    let viewer = Viewer::connect(acemux.addr).await;
    let served = eventually(Duration::from_secs(15), || async { viewer.received() > 0 }).await;
    assert!(
        served,
        "a new channel starts without Redis after the wait; log:\n{}",
        acemux.log_text()
    );
    let fallbacks = "acemux_cluster_lease_events_total{event=\"local_fallback\"}";
    assert_eq!(client.metric(&acemux.url(""), fallbacks).await, 1.0);
    assert_eq!(
        held_fencing(&client, &acemux).await,
        None,
        "no lease without Redis"
    );

    // Redis comes: the running channel takes its lease.
    let redis = Redis::start_on(redis_port, &dir.path().join("redis1.log")).await;
    let leased = eventually(Duration::from_secs(15), || async {
        held_fencing(&client, &acemux).await.is_some()
    })
    .await;
    assert!(
        leased,
        "the lease is taken once Redis answers; log:\n{}",
        acemux.log_text()
    );
    let first = held_fencing(&client, &acemux).await.expect("fencing");

    // Redis restarts without its data (the fencing counter starts again): the lease is
    // taken again above every number seen, and the viewer never notices.
    drop(redis);
    let before = viewer.received();
    tokio::time::sleep(Duration::from_secs(2)).await;
    let _redis = Redis::start_on(redis_port, &dir.path().join("redis2.log")).await;
    let (by, at) = (&client, &acemux);
    let retaken = eventually(Duration::from_secs(20), move || async move {
        held_fencing(by, at)
            .await
            .is_some_and(|fencing| fencing > first)
    })
    .await;
    assert!(
        retaken,
        "the lease comes back with a fencing number above {first} (now {:?}); log:\n{}",
        held_fencing(&client, &acemux).await,
        acemux.log_text()
    );
    let stale = "acemux_cluster_lease_events_total{event=\"stale_fencing\"}";
    assert!(client.metric(&acemux.url(""), stale).await >= 1.0);
    assert!(
        client
            .metric(
                &acemux.url(""),
                "acemux_cluster_redis_failures_total{call=\"renew\"}"
            )
            .await
            >= 1.0,
        "the renewals while Redis was down failed and were counted"
    );
    let grew = eventually(Duration::from_secs(10), || async {
        viewer.received() > before + 64 * 1024
    })
    .await;
    assert!(grew, "the viewer kept receiving media");
    assert!(
        !viewer.task.is_finished(),
        "the viewer was never disconnected"
    );
    let stats = channel_stats(&client, &engine).await;
    assert_eq!(
        stats["sessions_started"], 1,
        "one session throughout: {stats}"
    );
}

#[tokio::test]
async fn a_clean_stop_gives_the_lease_back_at_once() {
    let dir = tempfile::tempdir().expect("temp dir");
    let redis = Redis::start(&dir.path().join("redis.log")).await;
    let engine = Acemux::emulate_engine(free_port(), &[], &dir.path().join("engine.log")).await;
    let client = Client::new();
    // A lease that would outlive the test: a takeover within it is the release's doing.
    let ttl = ["--cluster-lease-ttl", "60s"];
    let owner = instance_with(dir.path(), 0, &redis.url(), &engine, &ttl).await;
    let first = Viewer::connect(owner.addr).await;
    let served = eventually(Duration::from_secs(15), || async { first.received() > 0 }).await;
    assert!(served, "log:\n{}", owner.log_text());
    let other = instance_with(dir.path(), 1, &redis.url(), &engine, &ttl).await;
    let relayed = Viewer::connect(other.addr).await;
    let served = eventually(Duration::from_secs(15), || async { relayed.received() > 0 }).await;
    assert!(served, "log:\n{}", other.log_text());
    assert!(held_fencing(&client, &owner).await.is_some());
    assert_eq!(
        held_fencing(&client, &other).await,
        None,
        "the other relays"
    );

    let id = instance_id(&client, &owner).await;
    let status = owner.terminate().await;
    assert!(status.success(), "{status}");
    let before = relayed.received();
    let took_over = eventually(Duration::from_secs(20), || async {
        held_fencing(&client, &other).await.is_some() && relayed.received() > before + 64 * 1024
    })
    .await;
    assert!(
        took_over,
        "the other instance owns the channel well within the lease's 60 s; log:\n{}",
        other.log_text()
    );
    let stats = channel_stats(&client, &engine).await;
    assert_eq!(stats["sessions_started"], 2, "{stats}");
    assert_eq!(
        stats["active_sessions"], 1,
        "the first owner stopped its session: {stats}"
    );

    // Restarted on its database, the first instance has the same id.
    let again = instance_with(dir.path(), 0, &redis.url(), &engine, &ttl).await;
    assert_eq!(instance_id(&client, &again).await, id);
}

#[tokio::test]
async fn the_redis_login_comes_from_the_url() {
    let dir = tempfile::tempdir().expect("temp dir");
    let port = free_port();
    let _redis = Redis::start_with(
        port,
        &["--requirepass", "pa55word"],
        &dir.path().join("redis.log"),
    )
    .await;
    let engine = Acemux::emulate_engine(free_port(), &[], &dir.path().join("engine.log")).await;
    let client = Client::new();
    let fast = ["--cluster-redis-wait", "500ms"];
    let good = format!("redis://default:pa55word@127.0.0.1:{port}");
    let logged_in = instance_with(dir.path(), 0, &good, &engine, &fast).await;
    let bad = format!("redis://default:n0t-the-pa55@127.0.0.1:{port}");
    let refused = instance_with(dir.path(), 1, &bad, &engine, &fast).await;

    let viewer = Viewer::connect(logged_in.addr).await;
    let served = eventually(Duration::from_secs(15), || async { viewer.received() > 0 }).await;
    assert!(served, "log:\n{}", logged_in.log_text());
    assert!(
        held_fencing(&client, &logged_in).await.is_some(),
        "the lease is taken with the URL's password; log:\n{}",
        logged_in.log_text()
    );

    // A wrong password is a Redis failure like any other: counted, logged, and the
    // viewer is served all the same (here without a lease).
    let other = Viewer::connect(refused.addr).await;
    let served = eventually(Duration::from_secs(15), || async { other.received() > 0 }).await;
    assert!(served, "log:\n{}", refused.log_text());
    assert_eq!(held_fencing(&client, &refused).await, None);
    let failures = client
        .metric(
            &refused.url(""),
            "acemux_cluster_redis_failures_total{call=\"acquire\"}",
        )
        .await;
    assert!(failures >= 1.0, "log:\n{}", refused.log_text());
    let log = refused.log_text();
    assert!(
        !log.contains("n0t-the-pa55"),
        "the password is not logged:\n{log}"
    );
}

#[tokio::test]
async fn two_instances_that_started_a_channel_without_redis_converge_to_one_owner() {
    let dir = tempfile::tempdir().expect("temp dir");
    let engine = Acemux::emulate_engine(free_port(), &[], &dir.path().join("engine.log")).await;
    let client = Client::new();
    let redis_port = free_port();
    let redis_url = format!("redis://127.0.0.1:{redis_port}");
    let flags = ["--cluster-lease-ttl", "3s", "--cluster-redis-wait", "500ms"];
    let a = instance_with(dir.path(), 0, &redis_url, &engine, &flags).await;
    let b = instance_with(dir.path(), 1, &redis_url, &engine, &flags).await;
    let on_a = Viewer::connect(a.addr).await;
    let on_b = Viewer::connect(b.addr).await;
    let served = eventually(Duration::from_secs(15), || async {
        on_a.received() > 0 && on_b.received() > 0
    })
    .await;
    assert!(served, "logs:\n{}", logs(&[&a, &b]));
    let stats = channel_stats(&client, &engine).await;
    assert_eq!(
        stats["active_sessions"], 2,
        "without Redis each instance runs the channel: {stats}"
    );

    // Redis comes: one instance keeps the channel, the other stops its session.
    let _redis = Redis::start_on(redis_port, &dir.path().join("redis.log")).await;
    let converged = eventually(Duration::from_secs(20), || async {
        let owners = usize::from(held_fencing(&client, &a).await.is_some())
            + usize::from(held_fencing(&client, &b).await.is_some());
        owners == 1 && channel_stats(&client, &engine).await["active_sessions"] == 1
    })
    .await;
    assert!(
        converged,
        "one owner, one session: {}; logs:\n{}",
        channel_stats(&client, &engine).await,
        logs(&[&a, &b])
    );
    let (owner, loser, loser_viewer) = if held_fencing(&client, &a).await.is_some() {
        (&a, &b, &on_b)
    } else {
        (&b, &a, &on_a)
    };
    let lost = "acemux_cluster_lease_events_total{event=\"lost\"}";
    assert_eq!(client.metric(&loser.url(""), lost).await, 1.0);
    assert_eq!(client.metric(&owner.url(""), lost).await, 0.0);
    let closed = eventually(Duration::from_secs(10), || async {
        loser_viewer.task.is_finished()
    })
    .await;
    assert!(closed, "the stopped duplicate's viewer is closed");

    // Its player comes back and is relayed from the owner: no new session.
    let again = Viewer::connect(loser.addr).await;
    let served = eventually(Duration::from_secs(15), || async { again.received() > 0 }).await;
    assert!(served, "logs:\n{}", logs(&[&a, &b]));
    let stats = channel_stats(&client, &engine).await;
    assert_eq!(stats["sessions_started"], 2, "{stats}");
    assert_eq!(stats["active_sessions"], 1, "{stats}");
}

#[tokio::test]
async fn without_redis_there_is_no_cluster_view() {
    let dir = tempfile::tempdir().expect("temp dir");
    let alone = Acemux::serve(free_port(), &[], &dir.path().join("alone.log")).await;
    let (status, body) = Client::new()
        .get(&alone.url("/cluster"))
        .await
        .expect("/cluster");
    assert_eq!(status, StatusCode::NOT_FOUND, "{body}");
    assert_eq!(body["error"], "not_clustered", "{body}");
}

#[tokio::test]
async fn an_hls_player_on_another_instance_gets_the_owners_segments_of_the_ts_channel() {
    let dir = tempfile::tempdir().expect("temp dir");
    let redis = Redis::start(&dir.path().join("redis.log")).await;
    let engine = Acemux::emulate_engine(free_port(), &[], &dir.path().join("engine.log")).await;
    let client = Client::new();
    let owner = instance(dir.path(), 0, &redis, &engine).await;
    let viewer = Viewer::connect(owner.addr).await;
    let served = eventually(Duration::from_secs(15), || async { viewer.received() > 0 }).await;
    assert!(served, "log:\n{}", owner.log_text());
    let relay = instance(dir.path(), 1, &redis, &engine).await;

    let manifest = relay.url(&format!("/ace/manifest.m3u8?id={CHANNEL}"));
    let (status, body) = client.get(&manifest).await.expect("playlist");
    assert_eq!(status, StatusCode::OK, "{body}; log:\n{}", relay.log_text());
    let playlist = body.as_str().expect("a playlist").to_owned();
    let segment = playlist
        .lines()
        .find(|line| line.starts_with("/ace/hls/"))
        .unwrap_or_else(|| panic!("no segment in {playlist}"));
    let (status, bytes) = client.get(&relay.url(segment)).await.expect("segment");
    assert_eq!(status, StatusCode::OK);
    // Not JSON, so the client hands the body back as (lossy) text.
    let text = bytes.as_str().unwrap_or_default();
    assert!(
        text.starts_with('G') && text.len() >= 188,
        "a segment of MPEG-TS packets (sync byte 0x47 first)"
    );
    let stats = channel_stats(&client, &engine).await;
    assert_eq!(
        stats["sessions_started"], 1,
        "the HLS player costs no second session: {stats}"
    );
    assert!(
        client
            .metric(&relay.url(""), "acemux_cluster_relays_total")
            .await
            >= 1.0
    );
}
