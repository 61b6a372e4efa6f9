//! The cluster's directory against a real redis-server: every instance shows the whole
//! cluster's channels in `GET /streams` (each row naming its owner) and the instances
//! in `GET /cluster`; with Redis gone, `GET /streams` answers promptly with this
//! instance's rows and says the rest is unavailable.

use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use acemux_tests::cluster::named_instance;
use acemux_tests::raw::{exchange, ts_viewer, RawAnswer};
use acemux_tests::redis::Redis;
use acemux_tests::{eventually, free_port, Acemux, Client};
use hyper::StatusCode;
use serde_json::Value;

const CHANNEL: &str = "d1a57e4000000000000000000000000000000001";

async fn instance(dir: &Path, id: &str, redis_url: &str, engine: &Acemux) -> Acemux {
    let flags = [
        "--cluster-lease-ttl",
        "3s",
        "--cluster-publish-interval",
        "300ms",
        "--cluster-redis-wait",
        "500ms",
    ];
    named_instance(dir, id, redis_url, engine, &flags).await
}

async fn get(addr: SocketAddr, path: &str) -> RawAnswer {
    let request = format!("GET {path} HTTP/1.1\r\nhost: acemux\r\nconnection: close\r\n\r\n");
    exchange(addr, request.as_bytes(), Duration::from_secs(10)).await
}

/// The `x-acemux-cluster` header of an answer.
fn cluster_header(answer: &RawAnswer) -> String {
    answer
        .head
        .lines()
        .find_map(|line| {
            let (name, value) = line.split_once(':')?;
            name.eq_ignore_ascii_case("x-acemux-cluster")
                .then(|| value.trim().to_owned())
        })
        .unwrap_or_default()
}

/// The rows of `GET /streams` for the test's channel.
fn rows_of_channel(answer: &RawAnswer) -> Vec<Value> {
    answer
        .json()
        .as_array()
        .cloned()
        .unwrap_or_default()
        .into_iter()
        .filter(|row| row["key"] == CHANNEL)
        .collect()
}

fn logs(instances: &[&Acemux]) -> String {
    instances
        .iter()
        .map(|acemux| format!("--- {}\n{}", acemux.addr, acemux.log_text()))
        .collect()
}

#[tokio::test]
async fn every_instance_shows_the_cluster_s_channels_with_their_owner() {
    let dir = tempfile::tempdir().expect("temp dir");
    let redis = Redis::start(&dir.path().join("redis.log")).await;
    let engine = Acemux::emulate_engine(free_port(), &[], &dir.path().join("engine.log")).await;
    let client = Client::new();
    let a = instance(dir.path(), "east", &redis.url(), &engine).await;
    let b = instance(dir.path(), "west", &redis.url(), &engine).await;

    // A viewer on east: east owns the channel.
    let viewer = ts_viewer(a.addr, CHANNEL, "directory-test").await;
    let on_a = eventually(Duration::from_secs(15), || async {
        rows_of_channel(&get(a.addr, "/streams?status=started").await).len() == 1
    })
    .await;
    assert!(on_a, "logs:\n{}", logs(&[&a, &b]));
    let local = get(a.addr, "/streams?status=started").await;
    let row = &rows_of_channel(&local)[0];
    assert_eq!(row["owner"], "east", "{row}");
    let stream_id = row["id"].clone();

    // West shows east's channel, named by its owner, with the owner's stream id.
    let on_b = eventually(Duration::from_secs(10), || async {
        let answer = get(b.addr, "/streams").await;
        cluster_header(&answer) == "ok" && rows_of_channel(&answer).len() == 1
    })
    .await;
    assert!(on_b, "logs:\n{}", logs(&[&a, &b]));
    let answer = get(b.addr, "/streams").await;
    let row = &rows_of_channel(&answer)[0];
    assert_eq!(row["owner"], "east", "{row}");
    assert_eq!(row["owner_advertise"], format!("http://{}", a.addr));
    assert_eq!(row["id"], stream_id);
    assert_eq!(row["status"], "started");
    assert_eq!(row["format"], "ts");
    // The old answer is one query away; ended streams are this instance's only.
    let local = get(b.addr, "/streams?scope=local").await;
    assert_eq!(cluster_header(&local), "local");
    assert!(rows_of_channel(&local).is_empty(), "{}", local.json());
    assert!(rows_of_channel(&get(b.addr, "/streams?status=ended").await).is_empty());
    assert_eq!(get(b.addr, "/streams?scope=all").await.status, 400);

    // GET /cluster lists both instances; east with its channel.
    let (status, view) = client.get(&b.url("/cluster")).await.expect("/cluster");
    assert_eq!(status, StatusCode::OK, "{view}");
    assert_eq!(view["directory"]["state"], "ok", "{view}");
    let instances = view["instances"].as_array().cloned().unwrap_or_default();
    let ids: Vec<&str> = instances.iter().filter_map(|i| i["id"].as_str()).collect();
    assert!(ids.contains(&"east") && ids.contains(&"west"), "{view}");
    let east = instances.iter().find(|i| i["id"] == "east").expect("east");
    assert_eq!(east["channels"][0]["key"], CHANNEL, "{view}");
    assert!(
        east["last_seen"].as_str().is_some_and(|t| t.ends_with('Z')),
        "{view}"
    );

    // East stops: its record is deleted at shutdown and west stops showing it.
    viewer.abort();
    drop(a);
    let gone = eventually(Duration::from_secs(10), || async {
        let answer = get(b.addr, "/streams").await;
        cluster_header(&answer) == "ok" && rows_of_channel(&answer).is_empty()
    })
    .await;
    assert!(gone, "log:\n{}", b.log_text());
    let left = eventually(Duration::from_secs(10), || async {
        let (_, view) = client.get(&b.url("/cluster")).await.expect("/cluster");
        view["instances"]
            .as_array()
            .is_some_and(|instances| instances.iter().all(|i| i["id"] != "east"))
    })
    .await;
    assert!(left, "log:\n{}", b.log_text());
}

#[tokio::test]
async fn without_redis_streams_answers_promptly_with_this_instance_s_rows() {
    let dir = tempfile::tempdir().expect("temp dir");
    let redis = Redis::start(&dir.path().join("redis.log")).await;
    let engine = Acemux::emulate_engine(free_port(), &[], &dir.path().join("engine.log")).await;
    let a = instance(dir.path(), "north", &redis.url(), &engine).await;
    let _viewer = ts_viewer(a.addr, CHANNEL, "directory-test").await;
    let playing = eventually(Duration::from_secs(15), || async {
        let answer = get(a.addr, "/streams").await;
        cluster_header(&answer) == "ok" && rows_of_channel(&answer).len() == 1
    })
    .await;
    assert!(playing, "log:\n{}", a.log_text());

    drop(redis);
    // Within the records' time to live the last read is shown, marked stale; after
    // it, only this instance's rows, marked unavailable. Never an error, never a hang.
    let unavailable = eventually(Duration::from_secs(15), || async {
        let answer = tokio::time::timeout(Duration::from_secs(3), get(a.addr, "/streams"))
            .await
            .expect("/streams answers within its bound");
        assert_eq!(answer.status, 200, "{}", answer.json());
        let rows = rows_of_channel(&answer);
        assert_eq!(
            rows.len(),
            1,
            "this instance's row stays: {}",
            answer.json()
        );
        assert_eq!(rows[0]["owner"], "north");
        cluster_header(&answer) == "unavailable"
    })
    .await;
    assert!(unavailable, "log:\n{}", a.log_text());
    let client = Client::new();
    let (status, view) = client.get(&a.url("/cluster")).await.expect("/cluster");
    assert_eq!(status, StatusCode::OK, "{view}");
    assert_eq!(view["directory"]["state"], "unavailable", "{view}");
    let reads = client
        .metric(
            &a.url(""),
            "acemux_cluster_directory_reads_total{result=\"unavailable\"}",
        )
        .await;
    assert!(reads >= 1.0, "log:\n{}", a.log_text());
}
