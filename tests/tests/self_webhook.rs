//! The deadlock acemux is built against, on real sockets: one worker thread, the
//! webhook pointing at acemux itself, many concurrent starts and ends.

use std::time::Duration;

use acemux_tests::{eventually, free_port, started_body, Acemux, Client};
use futures::future::join_all;
use hyper::StatusCode;
use serde_json::json;

const STREAMS: usize = 40;
/// Bound on any single answer; the system acemux replaces froze for 30 s.
const ANSWER_BOUND: Duration = Duration::from_secs(5);

async fn start_and_end_concurrently(client: &Client, acemux: &Acemux) {
    let starts = (0..STREAMS).map(|n| {
        let client = client.clone();
        let url = acemux.url("/events/stream_started");
        async move {
            let body = started_body(&format!("content{n}"), &format!("session{n}"), None);
            tokio::time::timeout(ANSWER_BOUND, client.post_json(&url, &body, None)).await
        }
    });
    for answer in join_all(starts).await {
        let (status, body) = answer
            .expect("start answered within the bound")
            .expect("start sent");
        assert_eq!(status, StatusCode::OK, "{body}");
        assert_eq!(body["status"], "started");
    }
    let ends = (0..STREAMS).map(|n| {
        let client = client.clone();
        let url = acemux.url("/events/stream_ended");
        async move {
            let body = json!({ "stream_id": format!("content{n}|session{n}"), "reason": "test" });
            tokio::time::timeout(ANSWER_BOUND, client.post_json(&url, &body, None)).await
        }
    });
    for answer in join_all(ends).await {
        let (status, body) = answer
            .expect("end answered within the bound")
            .expect("end sent");
        assert_eq!(status, StatusCode::OK, "{body}");
        assert_eq!(body["updated"], true);
    }
}

#[tokio::test]
async fn single_worker_delivers_every_event_to_itself_exactly_once() {
    let dir = tempfile::tempdir().expect("temp dir");
    let port = free_port();
    let own_url = format!("http://127.0.0.1:{port}");
    let db = dir.path().join("events.db");
    let acemux = Acemux::serve(
        port,
        &[
            "--worker-threads",
            "1",
            "--db",
            db.to_str().expect("utf-8 path"),
            "--event-webhook",
            &own_url,
            "--webhook-initial-backoff",
            "50ms",
        ],
        &dir.path().join("acemux.log"),
    )
    .await;
    let client = Client::new();
    start_and_end_concurrently(&client, &acemux).await;

    let events = (2 * STREAMS) as f64;
    let base = acemux.url("");
    let delivered_sample = format!("acemux_webhook_delivered_total{{webhook=\"{own_url}\"}}");
    let all_delivered = eventually(Duration::from_secs(20), || async {
        client.metric(&base, &delivered_sample).await >= events
    })
    .await;
    assert!(
        all_delivered,
        "not every event was delivered; log:\n{}",
        acemux.log_text()
    );
    // Delivered exactly once: no retries, nothing pending, and the self-deliveries were
    // recognised as repeats (no event was created by them).
    let retried_sample = format!("acemux_webhook_retried_total{{webhook=\"{own_url}\"}}");
    let pending_sample = format!("acemux_webhook_pending{{webhook=\"{own_url}\"}}");
    assert_eq!(client.metric(&base, &delivered_sample).await, events);
    assert_eq!(client.metric(&base, &retried_sample).await, 0.0);
    assert_eq!(client.metric(&base, &pending_sample).await, 0.0);
    assert_eq!(
        client
            .metric(&base, "acemux_events_total{type=\"stream_started\"}")
            .await,
        STREAMS as f64
    );
    assert_eq!(
        client
            .metric(&base, "acemux_events_total{type=\"stream_ended\"}")
            .await,
        STREAMS as f64
    );
    // Each route answered the players' calls plus exactly one delivery per event.
    assert_eq!(
        client
            .metric(
                &base,
                "acemux_http_requests_total{route=\"/events/stream_started\",status=\"200\"}"
            )
            .await,
        2.0 * STREAMS as f64
    );
    assert_eq!(
        client
            .metric(
                &base,
                "acemux_http_requests_total{route=\"/events/stream_ended\",status=\"200\"}"
            )
            .await,
        2.0 * STREAMS as f64
    );
    let (status, log) = client
        .get(&acemux.url("/events?limit=1000"))
        .await
        .expect("events");
    assert_eq!(status, StatusCode::OK);
    assert_eq!(log.as_array().expect("event list").len(), 2 * STREAMS);
    assert!(acemux.terminate().await.success());
}

#[tokio::test]
async fn unreachable_webhook_leaves_requests_unaffected_and_deliveries_pending() {
    let dir = tempfile::tempdir().expect("temp dir");
    let port = free_port();
    // Nothing listens here: every delivery attempt is refused.
    let dead_url = format!("http://127.0.0.1:{}", free_port());
    let db = dir.path().join("events.db");
    let acemux = Acemux::serve(
        port,
        &[
            "--worker-threads",
            "1",
            "--db",
            db.to_str().expect("utf-8 path"),
            "--event-webhook",
            &dead_url,
            "--webhook-initial-backoff",
            "20ms",
            "--webhook-max-backoff",
            "100ms",
        ],
        &dir.path().join("acemux.log"),
    )
    .await;
    let client = Client::new();
    start_and_end_concurrently(&client, &acemux).await;

    let base = acemux.url("");
    let pending_sample = format!("acemux_webhook_pending{{webhook=\"{dead_url}\"}}");
    let retried_sample = format!("acemux_webhook_retried_total{{webhook=\"{dead_url}\"}}");
    let retrying = eventually(Duration::from_secs(10), || async {
        client.metric(&base, &pending_sample).await == (2 * STREAMS) as f64
            && client.metric(&base, &retried_sample).await >= 3.0
    })
    .await;
    assert!(
        retrying,
        "deliveries are not pending and retrying; log:\n{}",
        acemux.log_text()
    );
    let delivered_sample = format!("acemux_webhook_delivered_total{{webhook=\"{dead_url}\"}}");
    assert_eq!(client.metric(&base, &delivered_sample).await, 0.0);
    // Requests are still answered at once while deliveries retry.
    let health = tokio::time::timeout(ANSWER_BOUND, client.get(&acemux.url("/health")))
        .await
        .expect("health answered within the bound")
        .expect("health");
    assert_eq!(health.0, StatusCode::OK);
    assert!(acemux.terminate().await.success());
}
