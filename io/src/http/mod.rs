//! HTTP routes (axum) and their shared state.

mod error;
mod events;
mod read;
mod stream;
mod views;

use std::sync::Arc;

use axum::extract::{DefaultBodyLimit, MatchedPath, Request, State};
use axum::middleware::{self, Next};
use axum::response::Response;
use axum::routing::{get, post};
use axum::Router;
use http::StatusCode;

pub use error::ApiError;
pub use events::authorize;

use crate::lifecycle::Lifecycle;
use crate::metrics::{HttpLabels, Metrics};
use crate::proxy::Streams;
use crate::store::EventStore;

/// What every handler can reach.
#[derive(Clone)]
pub struct AppState(Arc<AppInner>);

/// The contents of [`AppState`].
pub struct AppInner {
    /// The lifecycle registry.
    pub lifecycle: Arc<Lifecycle>,
    /// The event log.
    pub store: Arc<dyn EventStore>,
    /// Metrics.
    pub metrics: Arc<Metrics>,
    /// Bearer key for write routes; `None` leaves them open.
    pub api_key: Option<String>,
    /// The proxy; `None` when no engine is configured.
    pub streams: Option<Arc<dyn Streams>>,
}

impl std::ops::Deref for AppState {
    type Target = AppInner;

    fn deref(&self) -> &AppInner {
        &self.0
    }
}

impl AppState {
    /// Shared state for the routes.
    pub fn new(
        lifecycle: Arc<Lifecycle>,
        store: Arc<dyn EventStore>,
        metrics: Arc<Metrics>,
        api_key: Option<String>,
        streams: Option<Arc<dyn Streams>>,
    ) -> Self {
        AppState(Arc::new(AppInner {
            lifecycle,
            store,
            metrics,
            api_key,
            streams,
        }))
    }
}

/// All routes, with the body limit and request metrics applied.
pub fn router(state: AppState, max_body_bytes: usize) -> Router {
    Router::new()
        .route("/events/stream_started", post(events::stream_started))
        .route("/events/stream_ended", post(events::stream_ended))
        .route("/events", get(read::events))
        .route("/streams", get(read::streams))
        .route(
            "/streams/{id}",
            get(read::stream).delete(stream::delete_stream),
        )
        .route("/ace/getstream", get(stream::getstream))
        .route("/ace/manifest.m3u8", get(stream::manifest))
        .route("/ace/hls/{channel}/{segment}", get(stream::segment))
        .route("/engines", get(read::engines))
        .route("/health", get(read::health))
        .route("/metrics", get(read::metrics))
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(DefaultBodyLimit::max(max_body_bytes))
        .layer(middleware::from_fn_with_state(
            state.clone(),
            count_requests,
        ))
        .with_state(state)
}

async fn not_found() -> ApiError {
    ApiError::not_found("not_found", "no such route")
}

async fn method_not_allowed() -> ApiError {
    ApiError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        "method_not_allowed",
        "method not allowed on this route",
    )
}

async fn count_requests(State(app): State<AppState>, request: Request, next: Next) -> Response {
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map(|path| path.as_str().to_owned())
        .unwrap_or_else(|| "unmatched".to_owned());
    let response = next.run(request).await;
    app.metrics
        .http_requests
        .get_or_create(&HttpLabels {
            route,
            status: response.status().as_u16(),
        })
        .inc();
    response
}
