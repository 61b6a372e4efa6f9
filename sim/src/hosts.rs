//! The hosts a world runs besides acemux, the engines and the players: the event
//! receiver and the orchestrator's engine list.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use acemux::metrics::Metrics;
use acemux::server::ServerLimits;
use axum::extract::{Path, State};
use axum::http::HeaderMap;
use axum::routing::{get, post};
use axum::Router;

use crate::net::TurmoilNet;
use crate::observe::{Observer, ReceivedEvent};
use crate::world::{ORCHESTRATOR_PORT, RECEIVER_PORT};

/// The external event receiver: answers every POST with the status `status` holds,
/// and records the events it accepted and those it refused for good.
pub(crate) async fn receiver(
    observer: Observer,
    status: Arc<std::sync::atomic::AtomicU16>,
) -> turmoil::Result {
    async fn event(
        State((observer, status)): State<(Observer, Arc<std::sync::atomic::AtomicU16>)>,
        Path(kind): Path<String>,
        headers: HeaderMap,
        body: String,
    ) -> (axum::http::StatusCode, &'static str) {
        let idempotency_key = headers
            .get("idempotency-key")
            .and_then(|value| value.to_str().ok())
            .unwrap_or_default()
            .to_owned();
        let mut record = observer.lock();
        record
            .trace
            .add_text(&format!("received {kind} {idempotency_key} {body}"));
        let status = status.load(std::sync::atomic::Ordering::SeqCst);
        let status = axum::http::StatusCode::from_u16(status).unwrap_or(axum::http::StatusCode::OK);
        // Only an event answered with success counts as received: a failed answer is
        // retried (5xx, 408, 429) or refused for good (other 4xx, recorded apart).
        if status.is_success() {
            record.received.push(ReceivedEvent {
                kind,
                idempotency_key,
                body,
            });
        } else if acemux::webhook::refused_for_good(status) {
            record.rejected.push(idempotency_key);
        }
        (status, "{}")
    }
    let router = Router::new()
        .route("/events/{kind}", post(event))
        .with_state((observer, status));
    serve_forever(router, RECEIVER_PORT, 1024).await
}

/// Serves `router` on `port` of the current host, for the whole run.
async fn serve_forever(router: Router, port: u16, max_connections: usize) -> turmoil::Result {
    let listener = TurmoilNet::listen(port).await?;
    acemux::server::serve(
        listener,
        router,
        None,
        ServerLimits {
            max_connections,
            shutdown_timeout: Duration::from_secs(1),
            ..ServerLimits::default()
        },
        Arc::new(Metrics::new()),
        std::future::pending(),
    )
    .await;
    Ok(())
}

/// The orchestrator host: its engine list at `/engines`, whatever it holds now.
pub(crate) async fn orchestrator(list: Arc<Mutex<String>>) -> turmoil::Result {
    let router = Router::new()
        .route(
            "/engines",
            get(|State(list): State<Arc<Mutex<String>>>| async move {
                list.lock().unwrap_or_else(|p| p.into_inner()).clone()
            }),
        )
        .with_state(list);
    serve_forever(router, ORCHESTRATOR_PORT, 64).await
}
