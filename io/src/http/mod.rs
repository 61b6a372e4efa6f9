//! HTTP routes (axum) and their shared state.

mod cors;
mod direct;
pub mod directory;
mod error;
mod events;
mod page;
mod player;
mod playlists;
mod query;
mod read;
mod segment_body;
mod status;
mod stream;
mod views;

use std::sync::Arc;
use std::time::Duration;

use acemux_core::channel_list::BaseUrl;
use axum::extract::{DefaultBodyLimit, MatchedPath, Request, State};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use http::StatusCode;

pub use cors::CorsPolicy;
pub use direct::{sniff, DirectStreams, Sniff, StreamRequest};
pub use error::{ApiError, LimitHit};
pub use events::authorize;
pub use player::{PlayerRules, StreamMode};
pub use query::Params;

use crate::lifecycle::Lifecycle;
use crate::metrics::{HttpLabels, Metrics};
use crate::playlists::Playlists;
use crate::proxy::Streams;
use crate::store::EventStore;
use crate::webhook::WebhookBoard;

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
    /// The rules of the player routes.
    pub player: PlayerRules,
    /// The proxy; `None` when no engine is configured.
    pub streams: Option<Arc<dyn Streams>>,
    /// Each webhook's delivery state.
    pub webhooks: Arc<WebhookBoard>,
    /// acemux's address as players reach it (`--public-url`); `None`: each request's
    /// `Host`.
    pub public_url: Option<BaseUrl>,
    /// The channel list and the bound of the playlist routes.
    pub playlists: Playlists,
    /// Cluster mode (`--redis`): this instance among the others.
    pub cluster: Option<crate::cluster::Cluster>,
    /// Cluster mode: the directory of instances and their channels.
    pub directory: Option<crate::cluster::directory::ClusterDirectory>,
}

impl std::ops::Deref for AppState {
    type Target = AppInner;

    fn deref(&self) -> &AppInner {
        &self.0
    }
}

impl AppState {
    /// Shared state for the routes.
    pub fn new(inner: AppInner) -> Self {
        AppState(Arc::new(inner))
    }
}

/// Playlist rewrites at once: each holds up to `--max-playlist-bytes` twice (the body
/// and the answer), far more than any other request.
const MAX_PLAYLIST_REWRITES: usize = 8;

/// The bounds on request bodies: every route's, and the playlist rewrite's.
#[derive(Clone, Debug)]
struct BodyBounds {
    /// `--max-body-bytes`.
    body: usize,
    /// `--max-playlist-bytes`, for [`playlists::REWRITE_ROUTE`].
    playlist: usize,
    /// Room for [`MAX_PLAYLIST_REWRITES`] rewrites.
    rewrites: Arc<tokio::sync::Semaphore>,
    /// `--body-read-timeout`.
    timeout: Duration,
}

impl BodyBounds {
    /// The largest body of a request to `path`, the flag that sets it, and the name of
    /// the bound in the metrics.
    fn of(&self, path: &str) -> (usize, &'static str, &'static str) {
        if path == playlists::REWRITE_ROUTE {
            (self.playlist, "--max-playlist-bytes", "playlist_bytes")
        } else {
            (self.body, "--max-body-bytes", "body_bytes")
        }
    }
}

/// All routes, with the body bounds and request metrics applied: a request body larger
/// than `max_body_bytes` (the playlist rewrite's: `--max-playlist-bytes`) gets 413, one
/// not received within `body_read_timeout` 408.
pub fn router(state: AppState, max_body_bytes: usize, body_read_timeout: Duration) -> Router {
    let bounds = BodyBounds {
        body: max_body_bytes,
        playlist: state.playlists.max_bytes,
        rewrites: Arc::new(tokio::sync::Semaphore::new(MAX_PLAYLIST_REWRITES)),
        timeout: body_read_timeout,
    };
    // Web players on other origins read these (preflight answered).
    let players = Router::new()
        .route(
            "/ace/getstream",
            get(stream::getstream).options(cors::options),
        )
        .route(
            "/ace/manifest.m3u8",
            get(stream::manifest).options(cors::options),
        )
        .route(
            "/ace/hls/{channel}/{segment}",
            get(stream::segment).options(cors::options),
        )
        .route(
            "/ace/hls/{key_type}/{key}/{segment}",
            get(stream::segment_of).options(cors::options),
        )
        .route(
            "/playlist.m3u",
            get(playlists::playlist).options(cors::options),
        )
        .layer(middleware::from_fn_with_state(
            state.player.cors.clone(),
            cors::player_cors,
        ));
    Router::new()
        .merge(players)
        .route("/events/stream_started", post(events::stream_started))
        .route("/events/stream_ended", post(events::stream_ended))
        .route("/events", get(read::events))
        .route("/streams", get(read::streams))
        .route(
            "/streams/{id}",
            get(read::stream).delete(stream::delete_stream),
        )
        .route("/streams/{id}/viewers", get(status::stream_viewers))
        .route("/proxy/streams/{key}/clients", get(status::key_clients))
        .route("/", get(page::status_page))
        .route("/channels", get(status::channels))
        .route("/webhooks", get(status::webhooks))
        .route(
            playlists::REWRITE_ROUTE,
            post(playlists::rewrite).layer(DefaultBodyLimit::max(bounds.playlist)),
        )
        .route("/engines", get(read::engines))
        .route("/health", get(read::health))
        .route("/cluster", get(stream::cluster))
        .route("/metrics", get(read::metrics))
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(DefaultBodyLimit::max(max_body_bytes))
        .layer(middleware::from_fn(move |request, next| {
            read_body(request, next, bounds.clone())
        }))
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

/// Reads the body of a request that carries one (POST, PUT, PATCH) whole before any
/// handler runs, within its route's bound and the timeout: a declared length over the
/// bound is refused before anything is read, an endless body at the bound, and a body
/// that trickles in (or never comes) at the timeout, so no handler ever waits on a
/// client. Playlist rewrites beyond [`MAX_PLAYLIST_REWRITES`] at once get 503
/// `capacity` before their body is read.
async fn read_body(request: Request, next: Next, bounds: BodyBounds) -> Response {
    use http::Method;
    if !matches!(
        *request.method(),
        Method::POST | Method::PUT | Method::PATCH
    ) {
        return next.run(request).await;
    }
    let (max_bytes, flag, limit) = bounds.of(request.uri().path());
    let timeout = bounds.timeout;
    // Held until the answer is made.
    let _rewrite = if request.uri().path() == playlists::REWRITE_ROUTE {
        match bounds.rewrites.clone().try_acquire_owned() {
            Ok(permit) => Some(permit),
            Err(_) => {
                return ApiError::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "capacity",
                    format!("{MAX_PLAYLIST_REWRITES} playlist rewrites are under way; try again"),
                )
                .at_limit("playlist_rewrites")
                .into_response()
            }
        }
    } else {
        None
    };
    let too_large = || {
        ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "payload_too_large",
            format!("the request body is larger than {max_bytes} bytes ({flag})"),
        )
        .at_limit(limit)
        .into_response()
    };
    let declared = request
        .headers()
        .get(http::header::CONTENT_LENGTH)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.parse::<u64>().ok());
    if declared.is_some_and(|length| length > max_bytes as u64) {
        return too_large();
    }
    let (parts, body) = request.into_parts();
    match tokio::time::timeout(timeout, axum::body::to_bytes(body, max_bytes)).await {
        Ok(Ok(bytes)) => {
            next.run(Request::from_parts(parts, axum::body::Body::from(bytes)))
                .await
        }
        Ok(Err(error)) => {
            let too_long = std::error::Error::source(&error)
                .is_some_and(|source| source.is::<http_body_util::LengthLimitError>());
            if too_long {
                too_large()
            } else {
                ApiError::bad_request("bad_body", format!("cannot read the request body: {error}"))
                    .into_response()
            }
        }
        Err(_) => ApiError::new(
            StatusCode::REQUEST_TIMEOUT,
            "body_timeout",
            format!("the request body did not arrive within {timeout:?} (--body-read-timeout)"),
        )
        .at_limit("body_read_timeout")
        .into_response(),
    }
}

/// Longest plain-text error body turned into JSON; longer ones are cut.
const MAX_PLAIN_ERROR_BYTES: usize = 4096;

/// An error answer that is not JSON (an extractor's rejection) as `{error, message}`,
/// so that every error a client gets has the same shape.
async fn json_errors(response: Response) -> Response {
    let status = response.status();
    let is_json = response
        .headers()
        .get(http::header::CONTENT_TYPE)
        .and_then(|value| value.to_str().ok())
        .is_some_and(|value| value.starts_with("application/json"));
    if !(status.is_client_error() || status.is_server_error()) || is_json {
        return response;
    }
    let code = match status {
        StatusCode::BAD_REQUEST => "bad_request",
        StatusCode::NOT_FOUND => "not_found",
        StatusCode::METHOD_NOT_ALLOWED => "method_not_allowed",
        StatusCode::PAYLOAD_TOO_LARGE => "payload_too_large",
        StatusCode::UNSUPPORTED_MEDIA_TYPE => "unsupported_media_type",
        StatusCode::UNPROCESSABLE_ENTITY => "invalid_field",
        status if status.is_client_error() => "bad_request",
        _ => "internal_error",
    };
    let (parts, body) = response.into_parts();
    let text = match axum::body::to_bytes(body, MAX_PLAIN_ERROR_BYTES).await {
        Ok(bytes) => String::from_utf8_lossy(&bytes).into_owned(),
        Err(_) => String::new(),
    };
    let message = if text.trim().is_empty() {
        status.canonical_reason().unwrap_or("error").to_owned()
    } else {
        text
    };
    let mut answer = ApiError::new(status, code, message);
    if status == StatusCode::PAYLOAD_TOO_LARGE {
        answer = answer.at_limit("body_bytes");
    }
    let mut json = answer.into_response();
    json.extensions_mut().extend(parts.extensions);
    // Cross-origin headers stay, so that a web page can read the error.
    for (name, value) in &parts.headers {
        if name.as_str().starts_with("access-control-") || name == http::header::VARY {
            json.headers_mut().append(name, value.clone());
        }
    }
    json
}

async fn count_requests(State(app): State<AppState>, request: Request, next: Next) -> Response {
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map(|path| path.as_str().to_owned())
        .unwrap_or_else(|| "unmatched".to_owned());
    let response = json_errors(next.run(request).await).await;
    let limit = response
        .extensions()
        .get::<LimitHit>()
        .map(|LimitHit(limit)| *limit);
    count_answer(&app.metrics, route, response.status(), limit);
    response
}

/// Counts an answer of `route` with `status`; one given at the bound `limit` also
/// counts as a hit of it (a 503 as a refusal, logged in the bound's summary line).
fn count_answer(metrics: &Metrics, route: String, status: StatusCode, limit: Option<&'static str>) {
    if let Some(limit) = limit {
        if status == StatusCode::SERVICE_UNAVAILABLE {
            metrics.refused(limit);
        } else {
            metrics.limit_hit(limit);
        }
    }
    metrics
        .http_requests
        .get_or_create(&HttpLabels {
            route,
            status: status.as_u16(),
        })
        .inc();
}
