//! The event API over real sockets: answers, error codes and idempotency.

use std::sync::Arc;

use acemux::net::{Net, TokioNet};
use acemux::store::{EventStore, SqliteStore};
use acemux::{Running, ServeOptions};
use acemux_tests::{started_body, Client};
use hyper::{Method, StatusCode};
use serde_json::{json, Value};

const KEY: &str = "s3cret";

async fn start(options: ServeOptions) -> (Running, tempfile::TempDir) {
    let dir = tempfile::tempdir().expect("temp dir");
    let store: Arc<dyn EventStore> =
        SqliteStore::open(&dir.path().join("events.db"), Vec::new()).expect("open store");
    let listener = TokioNet
        .bind(
            "127.0.0.1:0".parse().expect("address"),
            acemux::net::DEFAULT_BACKLOG,
        )
        .await
        .expect("bind");
    let running = acemux::start(TokioNet, listener, store, options)
        .await
        .expect("start");
    (running, dir)
}

fn with_key() -> ServeOptions {
    ServeOptions {
        api_key: Some(KEY.to_owned()),
        max_body_bytes: 4096,
        ..ServeOptions::default()
    }
}

fn url(running: &Running, path: &str) -> String {
    format!("http://{}{}", running.local_addr(), path)
}

async fn post(running: &Running, path: &str, body: &Value) -> (StatusCode, Value) {
    Client::new()
        .post_json(&url(running, path), body, Some(KEY))
        .await
        .expect("request")
}

fn assert_error(answer: &(StatusCode, Value), status: StatusCode, code: &str) {
    assert_eq!(answer.0, status, "{}", answer.1);
    assert_eq!(answer.1["error"], code, "{}", answer.1);
    assert!(
        answer.1["message"].as_str().is_some_and(|m| !m.is_empty()),
        "error without a message: {}",
        answer.1
    );
}

#[tokio::test]
async fn bearer_key_is_required_for_writes() {
    let (running, _dir) = start(with_key()).await;
    let client = Client::new();
    let started = url(&running, "/events/stream_started");
    let body = started_body("abc", "p1", None);
    let missing = client
        .post_json(&started, &body, None)
        .await
        .expect("request");
    assert_error(&missing, StatusCode::UNAUTHORIZED, "unauthorized");
    let wrong = client
        .post_json(&started, &body, Some("nope"))
        .await
        .expect("request");
    assert_error(&wrong, StatusCode::FORBIDDEN, "forbidden");
    let right = client
        .post_json(&started, &body, Some(KEY))
        .await
        .expect("request");
    assert_eq!(right.0, StatusCode::OK);
    // Reads stay open.
    let streams = client
        .get(&url(&running, "/streams"))
        .await
        .expect("request");
    assert_eq!(streams.0, StatusCode::OK);
    running.shutdown().await;
}

#[tokio::test]
async fn the_key_is_taken_as_bearer_x_api_key_or_query_parameter() {
    let (running, _dir) = start(with_key()).await;
    let client = Client::new();
    let body = |n: u32| {
        started_body("forms", &n.to_string(), None)
            .to_string()
            .into_bytes()
    };
    let json = ("content-type", "application/json");
    let started = url(&running, "/events/stream_started");
    let bearer = format!("Bearer {KEY}");
    let forms: [(String, Vec<(&str, &str)>); 3] = [
        (
            started.clone(),
            vec![json, ("authorization", bearer.as_str())],
        ),
        (started.clone(), vec![json, ("x-api-key", KEY)]),
        (format!("{started}?key={KEY}"), vec![json]),
    ];
    for (n, (target, headers)) in (1..).zip(&forms) {
        let answer = client
            .send(Method::POST, target, headers, Some(body(n)))
            .await
            .expect("request");
        assert_eq!(answer.0, StatusCode::OK, "form {n}: {}", answer.1);
    }
    let wrong_header = client
        .send(
            Method::POST,
            &started,
            &[json, ("x-api-key", "nope")],
            Some(body(9)),
        )
        .await
        .expect("request");
    assert_error(&wrong_header, StatusCode::FORBIDDEN, "forbidden");
    let wrong_query = client
        .send(
            Method::POST,
            &format!("{started}?key=nope"),
            &[json],
            Some(body(9)),
        )
        .await
        .expect("request");
    assert_error(&wrong_query, StatusCode::FORBIDDEN, "forbidden");
    // A right key beside a wrong one is enough.
    let both = client
        .send(
            Method::POST,
            &format!("{started}?key=nope"),
            &[json, ("x-api-key", KEY)],
            Some(body(4)),
        )
        .await
        .expect("request");
    assert_eq!(both.0, StatusCode::OK, "{}", both.1);
    let deleted = client
        .send(
            Method::DELETE,
            &url(&running, &format!("/streams/forms%7C1?key={KEY}")),
            &[],
            None,
        )
        .await
        .expect("request");
    assert_eq!(deleted.0, StatusCode::OK, "{}", deleted.1);
    assert_eq!(deleted.1["stream"]["status"], "ended");
    // `key` is never an unknown parameter of a read route.
    let read = client
        .get(&url(
            &running,
            &format!("/streams?key={KEY}&status=started"),
        ))
        .await
        .expect("request");
    assert_eq!(read.0, StatusCode::OK, "{}", read.1);
    assert_eq!(read.1.as_array().map(Vec::len), Some(3));
    running.shutdown().await;
}

#[tokio::test]
async fn streams_filter_by_container_and_status_as_acexy_asks() {
    let (running, _dir) = start(with_key()).await;
    for (key, session, container) in [("a", "1", "c1"), ("b", "2", "c1"), ("c", "3", "c2")] {
        let answer = post(
            &running,
            "/events/stream_started",
            &started_body(key, session, Some(container)),
        )
        .await;
        assert_eq!(answer.0, StatusCode::OK, "{}", answer.1);
    }
    post(
        &running,
        "/events/stream_ended",
        &json!({"stream_id": "b|2"}),
    )
    .await;
    let ids = |answer: (StatusCode, Value)| {
        assert_eq!(answer.0, StatusCode::OK, "{}", answer.1);
        let mut ids: Vec<String> = answer
            .1
            .as_array()
            .expect("a list")
            .iter()
            .map(|stream| stream["id"].as_str().expect("an id").to_owned())
            .collect();
        ids.sort();
        ids
    };
    let client = Client::new();
    let get = |path: &str| {
        let (client, target) = (client.clone(), url(&running, path));
        async move { client.get(&target).await }
    };
    assert_eq!(
        ids(get("/streams?container_id=c1&status=started")
            .await
            .expect("request")),
        ["a|1"]
    );
    assert_eq!(
        ids(get("/streams?container_id=c1").await.expect("request")),
        ["a|1", "b|2"]
    );
    assert_eq!(
        ids(get("/streams?status=started").await.expect("request")),
        ["a|1", "c|3"]
    );
    assert!(ids(get("/streams?container_id=c9").await.expect("request")).is_empty());
    let bad = get("/streams?container=c1").await.expect("request");
    assert_error(&bad, StatusCode::BAD_REQUEST, "invalid_query");
    running.shutdown().await;
}

#[tokio::test]
async fn start_and_end_answer_with_the_stream_state() {
    let (running, _dir) = start(with_key()).await;
    let (status, stream) = post(
        &running,
        "/events/stream_started",
        &started_body("abc", "p1", Some("c1")),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(stream["id"], "abc|p1");
    assert_eq!(stream["status"], "started");
    assert_eq!(stream["container_id"], "c1");
    assert_eq!(stream["is_live"], true);

    let again = post(
        &running,
        "/events/stream_started",
        &started_body("abc", "p1", Some("c1")),
    )
    .await;
    assert_eq!(
        again,
        (StatusCode::OK, stream.clone()),
        "a repeated start returns the same state"
    );

    let (status, ended) = post(
        &running,
        "/events/stream_ended",
        &json!({"container_id": "c1", "reason": "idle"}),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(ended["updated"], true);
    assert_eq!(ended["stream"]["status"], "ended");
    assert_eq!(ended["stream"]["end_reason"], "idle");

    let (status, repeated) = post(
        &running,
        "/events/stream_ended",
        &json!({"stream_id": "abc|p1"}),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(repeated["updated"], false);

    let client = Client::new();
    let (status, one) = client
        .get(&url(&running, "/streams/abc%7Cp1"))
        .await
        .expect("request");
    assert_eq!(status, StatusCode::OK);
    assert_eq!(one["status"], "ended");
    let (_, ended_list) = client
        .get(&url(&running, "/streams?status=ended"))
        .await
        .expect("request");
    assert_eq!(ended_list.as_array().map(Vec::len), Some(1));
    let (_, started_list) = client
        .get(&url(&running, "/streams?status=started"))
        .await
        .expect("request");
    assert_eq!(started_list.as_array().map(Vec::len), Some(0));

    let (status, events) = client
        .get(&url(&running, "/events?stream_id=abc%7Cp1"))
        .await
        .expect("request");
    assert_eq!(status, StatusCode::OK);
    let kinds: Vec<&str> = events
        .as_array()
        .expect("list")
        .iter()
        .map(|event| event["type"].as_str().expect("type"))
        .collect();
    assert_eq!(kinds, ["stream_started", "stream_ended"]);
    let (_, after) = client
        .get(&url(&running, "/events?after=1&limit=10"))
        .await
        .expect("request");
    assert_eq!(after.as_array().map(Vec::len), Some(1));
    assert_eq!(after[0]["seq"], 2);

    let (status, engines) = client
        .get(&url(&running, "/engines"))
        .await
        .expect("request");
    assert_eq!(status, StatusCode::OK);
    assert_eq!(engines[0]["host"], "gluetun");
    assert_eq!(engines[0]["active_streams"], 0);
    running.shutdown().await;
}

#[tokio::test]
async fn lifecycle_refusals_have_their_own_codes() {
    let (running, _dir) = start(with_key()).await;
    post(
        &running,
        "/events/stream_started",
        &started_body("a", "1", Some("c1")),
    )
    .await;
    post(
        &running,
        "/events/stream_started",
        &started_body("b", "2", Some("c1")),
    )
    .await;

    let ambiguous = post(
        &running,
        "/events/stream_ended",
        &json!({"container_id": "c1"}),
    )
    .await;
    assert_error(&ambiguous, StatusCode::CONFLICT, "ambiguous_end");
    let unknown = post(
        &running,
        "/events/stream_ended",
        &json!({"stream_id": "zzz|9"}),
    )
    .await;
    assert_error(&unknown, StatusCode::NOT_FOUND, "unknown_stream");
    let no_active = post(
        &running,
        "/events/stream_ended",
        &json!({"container_id": "c9"}),
    )
    .await;
    assert_error(&no_active, StatusCode::NOT_FOUND, "unknown_stream");
    let missing = post(&running, "/events/stream_ended", &json!({})).await;
    assert_error(&missing, StatusCode::UNPROCESSABLE_ENTITY, "missing_target");

    post(
        &running,
        "/events/stream_ended",
        &json!({"stream_id": "a|1"}),
    )
    .await;
    let restart = post(
        &running,
        "/events/stream_started",
        &started_body("a", "1", Some("c1")),
    )
    .await;
    assert_error(&restart, StatusCode::CONFLICT, "stream_already_ended");
    // Nothing above touched the other stream.
    let (_, b) = Client::new()
        .get(&url(&running, "/streams/b%7C2"))
        .await
        .expect("request");
    assert_eq!(b["status"], "started");
    running.shutdown().await;
}

#[tokio::test]
async fn malformed_bodies_get_json_errors() {
    let (running, _dir) = start(with_key()).await;
    let client = Client::new();
    let started = url(&running, "/events/stream_started");
    let auth = format!("Bearer {KEY}");
    let headers = [("authorization", auth.as_str())];
    let send = |body: Vec<u8>| client.send(Method::POST, &started, &headers, Some(body));

    assert_error(
        &send(b"{not json".to_vec()).await.expect("request"),
        StatusCode::BAD_REQUEST,
        "invalid_json",
    );
    assert_error(
        &send(Vec::new()).await.expect("request"),
        StatusCode::BAD_REQUEST,
        "invalid_json",
    );
    assert_error(
        &send(vec![0xff, 0xfe, b'{']).await.expect("request"),
        StatusCode::BAD_REQUEST,
        "invalid_json",
    );
    let wrong_type = json!({"engine": {"host": "h", "port": "eighty"}, "stream": {"key_type": "content_id", "key": "k"},
        "session": {"playback_session_id": "p", "stat_url": "", "command_url": "", "is_live": 1}});
    assert_error(
        &send(wrong_type.to_string().into_bytes())
            .await
            .expect("request"),
        StatusCode::UNPROCESSABLE_ENTITY,
        "invalid_field",
    );
    let mut bad_key_type = started_body("k", "p", None);
    bad_key_type["stream"]["key_type"] = json!("torrent");
    assert_error(
        &send(bad_key_type.to_string().into_bytes())
            .await
            .expect("request"),
        StatusCode::UNPROCESSABLE_ENTITY,
        "invalid_field",
    );
    let mut control = started_body("k\u{7}", "p", None);
    control["extra_field_from_a_newer_orchestrator"] = json!(true);
    assert_error(
        &send(control.to_string().into_bytes())
            .await
            .expect("request"),
        StatusCode::UNPROCESSABLE_ENTITY,
        "invalid_field",
    );
    let huge = started_body(&"k".repeat(8192), "p", None);
    assert_error(
        &send(huge.to_string().into_bytes()).await.expect("request"),
        StatusCode::PAYLOAD_TOO_LARGE,
        "payload_too_large",
    );

    let mut extra = started_body("k", "p", None);
    extra["extra_field_from_a_newer_orchestrator"] = json!({"nested": [1, 2]});
    let accepted = send(extra.to_string().into_bytes()).await.expect("request");
    assert_eq!(
        accepted.0,
        StatusCode::OK,
        "unknown fields are accepted: {}",
        accepted.1
    );
    running.shutdown().await;
}

#[tokio::test]
async fn read_routes_reject_bad_queries_and_unknown_ids() {
    let (running, _dir) = start(with_key()).await;
    let client = Client::new();
    let base = url(&running, "");
    let get = |path: &str| {
        let client = client.clone();
        let target = format!("{base}{path}");
        async move { client.get(&target).await }
    };
    assert_error(
        &get("/streams?status=paused").await.expect("request"),
        StatusCode::BAD_REQUEST,
        "invalid_query",
    );
    assert_error(
        &get("/streams?colour=red").await.expect("request"),
        StatusCode::BAD_REQUEST,
        "invalid_query",
    );
    assert_error(
        &get("/events?limit=-1").await.expect("request"),
        StatusCode::BAD_REQUEST,
        "invalid_query",
    );
    assert_error(
        &get("/events?limit=100000").await.expect("request"),
        StatusCode::BAD_REQUEST,
        "invalid_query",
    );
    assert_error(
        &get("/events?after=x").await.expect("request"),
        StatusCode::BAD_REQUEST,
        "invalid_query",
    );
    assert_error(
        &get("/streams/nothing").await.expect("request"),
        StatusCode::NOT_FOUND,
        "unknown_stream",
    );
    assert_error(
        &get("/no/such/route").await.expect("request"),
        StatusCode::NOT_FOUND,
        "not_found",
    );
    let put = client
        .send(Method::PUT, &url(&running, "/health"), &[], None)
        .await
        .expect("request");
    assert_error(&put, StatusCode::METHOD_NOT_ALLOWED, "method_not_allowed");
    let (status, health) = get("/health").await.expect("request");
    assert_eq!(status, StatusCode::OK);
    assert_eq!(health["status"], "ok");
    running.shutdown().await;
}

#[tokio::test]
async fn an_idempotency_key_replays_the_first_answer() {
    let (running, _dir) = start(with_key()).await;
    let client = Client::new();
    let ended = url(&running, "/events/stream_ended");
    post(
        &running,
        "/events/stream_started",
        &started_body("k", "p", None),
    )
    .await;
    let auth = format!("Bearer {KEY}");
    let headers = [
        ("authorization", auth.as_str()),
        ("idempotency-key", "delivery-1"),
    ];
    let body = json!({"stream_id": "k|p"}).to_string().into_bytes();
    let first = client
        .send(Method::POST, &ended, &headers, Some(body.clone()))
        .await
        .expect("request");
    let second = client
        .send(Method::POST, &ended, &headers, Some(body))
        .await
        .expect("request");
    assert_eq!(first.0, StatusCode::OK);
    assert_eq!(first.1["updated"], true);
    assert_eq!(
        second, first,
        "the replay is the first answer, updated=true included"
    );
    let metrics = running.metrics().render();
    assert!(
        metrics.contains("acemux_idempotent_replays_total 1"),
        "{metrics}"
    );
    assert!(
        metrics.contains("acemux_events_total{type=\"stream_ended\"} 1"),
        "{metrics}"
    );
    running.shutdown().await;
}
