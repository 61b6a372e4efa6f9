//! The engine's HTTP API (`/ace/…`, answered in the engine's JSON envelope
//! `{"response": …, "error": …}`) and the emulator's control API (`/control/…`,
//! answered like acemux's own API).

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::body::Body;
use axum::extract::rejection::{BytesRejection, QueryRejection};
use axum::extract::{DefaultBodyLimit, Path, Query, State};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use bytes::Bytes;
use http::header::{CACHE_CONTROL, CONTENT_TYPE, HOST};
use http::{HeaderMap, HeaderValue, StatusCode};
use serde::Deserialize;
use serde_json::{json, Value};
use tokio::time::Instant;

use super::faults::{FaultError, Faults};
use super::hls;
use super::playback::{bytes_in, plan_start, Cut, Pacer, Playback, PlaybackGuard};
use super::sessions::{OpenedSession, PlaybackRefusal, SessionRequest};
use super::Shared;
use acemux::http::ApiError;

/// Response header with the stream offset a playback starts at, so that tests can
/// compare the body with [`super::MediaLoop::read`].
pub const OFFSET_HEADER: &str = "x-emulator-offset";
/// Longest accepted content id or infohash.
const MAX_CONTENT_ID_BYTES: usize = 256;

pub(crate) fn router(shared: Arc<Shared>) -> Router {
    let max_body_bytes = shared.config.max_control_body_bytes;
    Router::new()
        .route("/ace/getstream", get(getstream))
        .route("/ace/r/{session}", get(playback))
        .route("/ace/manifest.m3u8", get(hls::manifest))
        .route("/ace/m/{file}", get(hls::playlist))
        .route("/ace/c/{session}/{file}", get(hls::segment))
        .route("/ace/stat/{session}", get(stat))
        .route("/ace/cmd/{session}", get(command))
        .route("/control/faults", get(all_faults))
        .route(
            "/control/faults/{content_id}",
            get(faults).put(put_faults).delete(delete_faults),
        )
        .route("/control/stats", get(stats))
        .route("/control/requests", get(requests))
        .route("/control/version", axum::routing::put(put_version))
        .route("/webui/api/service", get(service))
        .fallback(not_found)
        .layer(DefaultBodyLimit::max(max_body_bytes))
        .with_state(shared)
}

fn envelope(response: Value) -> Response {
    Json(json!({ "response": response, "error": null })).into_response()
}

pub(super) fn envelope_error(status: StatusCode, error: impl Into<String>) -> Response {
    let body = json!({ "response": null, "error": error.into() });
    (status, Json(body)).into_response()
}

/// An error answered in the engine's envelope.
#[derive(Debug)]
pub(super) struct EngineError {
    status: StatusCode,
    message: String,
}

impl EngineError {
    pub(super) fn new(status: StatusCode, message: impl Into<String>) -> Self {
        EngineError {
            status,
            message: message.into(),
        }
    }
}

impl IntoResponse for EngineError {
    fn into_response(self) -> Response {
        envelope_error(self.status, self.message)
    }
}

pub(super) fn unknown_session() -> Response {
    envelope_error(StatusCode::NOT_FOUND, "unknown playback session")
}

/// `http://<Host>` when the request names a plausible host, else the listen address.
pub(super) fn base_url(headers: &HeaderMap, shared: &Shared) -> String {
    let host = headers
        .get(HOST)
        .and_then(|value| value.to_str().ok())
        .filter(|host| {
            !host.is_empty()
                && host.len() <= 255
                && host
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b".-_:[]".contains(&b))
        });
    match (host, shared.listen_addr.get()) {
        (Some(host), _) => format!("http://{host}"),
        (None, Some(addr)) => format!("http://{addr}"),
        (None, None) => "http://127.0.0.1:6878".to_owned(),
    }
}

/// The query of `getstream` and `manifest.m3u8`.
#[derive(Debug, Deserialize)]
pub(super) struct GetStreamQuery {
    id: Option<String>,
    content_id: Option<String>,
    infohash: Option<String>,
    url: Option<String>,
    magnet: Option<String>,
    file_indexes: Option<String>,
    live_delay: Option<String>,
    seekback: Option<String>,
    pub format: Option<String>,
    pub pid: Option<String>,
}

impl GetStreamQuery {
    /// The parameter naming the content and its value, in the engine's order of
    /// precedence.
    fn source(&self) -> Option<(&'static str, &str)> {
        [
            ("content_id", &self.content_id),
            ("id", &self.id),
            ("infohash", &self.infohash),
            ("url", &self.url),
            ("magnet", &self.magnet),
        ]
        .into_iter()
        .find_map(|(name, value)| {
            value
                .as_deref()
                .filter(|value| !value.is_empty())
                .map(|value| (name, value))
        })
    }

    /// The request as recorded for `GET /control/requests`.
    pub(super) fn record(&self, route: &str) -> SessionRequest {
        let (name, value) = self.source().unwrap_or_default();
        SessionRequest {
            route: route.to_owned(),
            source: (name.to_owned(), value.to_owned()),
            file_indexes: self.file_indexes.clone(),
            live_delay: self.live_delay.clone(),
            seekback: self.seekback.clone(),
            pid: self.pid.clone(),
        }
    }
}

/// A valid session request: the query and its content id; else the error envelope.
pub(super) fn requested_content(
    query: Result<Query<GetStreamQuery>, QueryRejection>,
) -> Result<(GetStreamQuery, String), EngineError> {
    let Ok(Query(query)) = query else {
        return Err(EngineError::new(StatusCode::OK, "invalid query string"));
    };
    let Some(content_id) = query.source().map(|(_, value)| value.to_owned()) else {
        return Err(EngineError::new(
            StatusCode::OK,
            "missing content id (content_id=, id=, infohash=, url= or magnet=)",
        ));
    };
    if content_id.len() > MAX_CONTENT_ID_BYTES || content_id.chars().any(char::is_control) {
        return Err(EngineError::new(StatusCode::OK, "invalid content id"));
    }
    Ok((query, content_id))
}

/// A new session of `content_id`, after the `start_delay` and `refuse` faults; else
/// the error envelope.
pub(super) async fn open_requested(
    shared: &Shared,
    content_id: &str,
    query: &GetStreamQuery,
) -> Result<OpenedSession, EngineError> {
    let faults = shared.state().faults_for(content_id);
    if let Some(delay) = faults.start_delay {
        let mut shutdown = shared.shutdown.subscribe();
        tokio::select! {
            // Polled in order: a simulated run must not depend on tokio's random pick.
            biased;
            () = tokio::time::sleep(delay) => {}
            _ = shutdown.wait_for(|stop| *stop) => {
                return Err(EngineError::new(StatusCode::SERVICE_UNAVAILABLE, "engine shutting down"));
            }
        }
    }
    if let Some(reason) = faults.refuse {
        tracing::info!(content_id, %reason, "emulator: refusing session (fault)");
        return Err(EngineError::new(StatusCode::OK, reason));
    }
    let opened = shared
        .state()
        .open_session(content_id, query.infohash.as_deref(), Instant::now());
    let opened = opened.map_err(|error| EngineError::new(StatusCode::OK, error.to_string()))?;
    tracing::info!(content_id, session = %opened.id, pid = ?query.pid, "emulator: session started");
    Ok(opened)
}

/// The engine's answer to a session request with `format=json`.
pub(super) fn session_envelope(
    base: &str,
    opened: &OpenedSession,
    playback_url: String,
) -> Response {
    let session = &opened.id;
    envelope(json!({
        "playback_url": playback_url,
        "stat_url": format!("{base}/ace/stat/{session}"),
        "command_url": format!("{base}/ace/cmd/{session}"),
        "playback_session_id": session,
        "is_live": 1,
        "infohash": opened.infohash,
        "client_session_id": opened.number,
    }))
}

async fn getstream(
    State(shared): State<Arc<Shared>>,
    headers: HeaderMap,
    query: Result<Query<GetStreamQuery>, QueryRejection>,
) -> Response {
    let (query, content_id) = match requested_content(query) {
        Ok(request) => request,
        Err(error) => return error.into_response(),
    };
    shared.state().record_request(query.record("getstream"));
    let opened = match open_requested(&shared, &content_id, &query).await {
        Ok(opened) => opened,
        Err(error) => return error.into_response(),
    };
    if query.format.as_deref() != Some("json") {
        // Without format=json an engine streams at once; the session lives as long
        // as this connection.
        return start_playback(&shared, &opened.id, true);
    }
    let base = base_url(&headers, &shared);
    let playback_url = format!("{base}/ace/r/{}", opened.id);
    session_envelope(&base, &opened, playback_url)
}

async fn playback(State(shared): State<Arc<Shared>>, Path(session): Path<String>) -> Response {
    start_playback(&shared, &session, false)
}

fn start_playback(shared: &Arc<Shared>, session: &str, direct: bool) -> Response {
    let view = match shared.state().begin_playback(session) {
        Ok(view) => view,
        Err(PlaybackRefusal::NoSession) => return unknown_session(),
        Err(PlaybackRefusal::Busy(limit)) => {
            return envelope_error(
                StatusCode::SERVICE_UNAVAILABLE,
                format!("too many playback connections ({limit})"),
            )
        }
    };
    let guard = PlaybackGuard {
        shared: shared.clone(),
        session_id: session.to_owned(),
        content_id: view.content_id.clone(),
        end_session: direct,
    };
    let media = shared.config.media.clone();
    let faults = view.faults;
    let rate_bps = faults.bitrate_bps.unwrap_or_else(|| media.bitrate_bps());
    let now = Instant::now();
    let since_origin = now.saturating_duration_since(view.origin);
    let (start_offset, burst_bytes) =
        plan_start(&media, rate_bps, shared.config.prebuffer, since_origin);
    let cut = match (faults.cut_after_bytes, faults.close_abruptly_after_bytes) {
        (Some(clean), Some(abrupt)) if clean < abrupt => Some(Cut::Clean(clean)),
        (_, Some(abrupt)) => Some(Cut::Abrupt(abrupt)),
        (Some(clean), None) => Some(Cut::Clean(clean)),
        (None, None) => None,
    };
    tracing::debug!(
        session,
        start_offset,
        burst_bytes,
        rate_bps,
        "emulator: playback started"
    );
    let playback = Playback {
        guard,
        started: now,
        media,
        start_offset,
        pacer: Pacer {
            burst_bytes,
            rate_bps,
            stall: faults
                .stall_for
                .map(|length| (faults.stall_after.unwrap_or_default(), length)),
        },
        cut,
        no_data: faults.no_data,
        pacing_interval: shared.config.pacing_interval,
        stop: view.stop,
        shutdown: shared.shutdown.subscribe(),
    };
    let mut response = Response::new(Body::from_stream(playback.into_stream()));
    let headers = response.headers_mut();
    headers.insert(CONTENT_TYPE, HeaderValue::from_static("video/mp2t"));
    headers.insert(CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    headers.insert(OFFSET_HEADER, HeaderValue::from(start_offset));
    response
}

/// Where the emulator's broadcast clock starts (Unix seconds): `livepos` timestamps are
/// this plus the seconds since the content's live timeline began, so they advance like
/// an engine's without reading the wall clock.
const BROADCAST_EPOCH: u64 = 1_700_000_000;
/// Seconds of the live timeline an engine holds behind its edge (`first_ts`).
const LIVE_WINDOW_SECS: u64 = 600;

async fn stat(State(shared): State<Arc<Shared>>, Path(session): Path<String>) -> Response {
    let Some(view) = shared.state().live_session(&session) else {
        return unknown_session();
    };
    if view.faults.stats_fail {
        return envelope_error(
            StatusCode::INTERNAL_SERVER_ERROR,
            "stat temporarily unavailable",
        );
    }
    let rate_bps = view
        .faults
        .bitrate_bps
        .unwrap_or_else(|| shared.config.media.bitrate_bps());
    let now = Instant::now();
    let since_start = now.saturating_duration_since(view.started);
    let since_origin = now.saturating_duration_since(view.origin).as_secs();
    // A stable swarm size derived from the infohash, drifting by a few peers a minute.
    let base = 5 + view
        .infohash
        .get(..2)
        .and_then(|digits| u64::from_str_radix(digits, 16).ok())
        .unwrap_or(0)
        % 30;
    let drift = (since_start.as_secs() / 10) % 4;
    let (peers, speed_down, downloaded) = if view.faults.zero_peers {
        // A quiet swarm: nothing arrives after what the session buffered first.
        (0, 0, bytes_in(rate_bps, shared.config.prebuffer))
    } else {
        // Speeds in kilobytes per second, as engines report them.
        (
            base + drift,
            rate_bps / 8 / 1000,
            bytes_in(rate_bps, shared.config.prebuffer + since_start),
        )
    };
    let last_ts = BROADCAST_EPOCH + since_origin;
    let first_ts = last_ts
        .saturating_sub(LIVE_WINDOW_SECS)
        .max(BROADCAST_EPOCH);
    envelope(json!({
        "status": "dl",
        "peers": peers,
        "speed_down": speed_down,
        "speed_up": speed_down * peers.min(8) / 32,
        "downloaded": downloaded,
        "uploaded": downloaded / 4,
        "total_progress": 0,
        "is_live": 1,
        "livepos": {
            "is_live": 1,
            "first_ts": first_ts,
            "last_ts": last_ts,
            "pos": last_ts
                .saturating_sub(shared.config.prebuffer.as_secs())
                .max(first_ts),
            "buffer_pieces": 15,
        },
    }))
}

#[derive(Debug, Deserialize)]
struct CommandQuery {
    method: Option<String>,
}

async fn command(
    State(shared): State<Arc<Shared>>,
    Path(session): Path<String>,
    query: Result<Query<CommandQuery>, QueryRejection>,
) -> Response {
    let method = query.ok().and_then(|Query(query)| query.method);
    match method.as_deref() {
        Some("stop") => {
            if shared.state().stop_command(&session) {
                tracing::info!(session, "emulator: session stopped by command");
                envelope(json!("ok"))
            } else {
                unknown_session()
            }
        }
        Some(other) => envelope_error(StatusCode::OK, format!("unknown method {other:?}")),
        None => envelope_error(StatusCode::OK, "missing method"),
    }
}

async fn all_faults(State(shared): State<Arc<Shared>>) -> Json<BTreeMap<String, Faults>> {
    Json(shared.state().all_faults())
}

async fn faults(State(shared): State<Arc<Shared>>, Path(content_id): Path<String>) -> Json<Faults> {
    Json(shared.state().faults_for(&content_id))
}

async fn put_faults(
    State(shared): State<Arc<Shared>>,
    Path(content_id): Path<String>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<Faults>, ApiError> {
    let body = body.map_err(ApiError::body)?;
    let faults: Faults = serde_json::from_slice(&body).map_err(ApiError::json)?;
    match shared.set_faults(&content_id, faults.clone()) {
        Ok(()) => Ok(Json(faults)),
        Err(error @ FaultError::TableFull(_)) => Err(ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "capacity",
            error.to_string(),
        )),
        Err(error) => Err(ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_field",
            error.to_string(),
        )),
    }
}

async fn delete_faults(
    State(shared): State<Arc<Shared>>,
    Path(content_id): Path<String>,
) -> Json<Value> {
    let removed = shared.state().clear_faults(&content_id);
    Json(json!({ "content_id": content_id, "removed": removed }))
}

async fn stats(State(shared): State<Arc<Shared>>) -> Response {
    Json(shared.state().stats()).into_response()
}

/// The engine version the emulator reports.
const VERSION: (u64, &str) = (3_020_700, "3.2.7");

#[derive(Debug, Deserialize)]
struct ServiceQuery {
    method: Option<String>,
}

/// `GET /webui/api/service?method=get_version`: the version, as engines answer it.
async fn service(
    State(shared): State<Arc<Shared>>,
    query: Result<Query<ServiceQuery>, QueryRejection>,
) -> Response {
    let method = query.ok().and_then(|Query(query)| query.method);
    if method.as_deref() != Some("get_version") {
        return Json(json!({ "result": null, "error": "unknown method" })).into_response();
    }
    if shared
        .version_fails
        .load(std::sync::atomic::Ordering::SeqCst)
    {
        return (
            StatusCode::INTERNAL_SERVER_ERROR,
            Json(json!({ "result": null, "error": "internal error (fault)" })),
        )
            .into_response();
    }
    let (code, version) = VERSION;
    Json(json!({
        "result": { "code": code, "platform": "linux", "version": version },
        "error": null,
    }))
    .into_response()
}

#[derive(Debug, Deserialize)]
struct VersionFault {
    fails: bool,
}

/// `PUT /control/version {"fails": bool}`: the version fault.
async fn put_version(
    State(shared): State<Arc<Shared>>,
    body: Result<Json<VersionFault>, axum::extract::rejection::JsonRejection>,
) -> Response {
    match body {
        Ok(Json(fault)) => {
            shared
                .version_fails
                .store(fault.fails, std::sync::atomic::Ordering::SeqCst);
            Json(json!({ "fails": fault.fails })).into_response()
        }
        Err(rejection) => (
            StatusCode::BAD_REQUEST,
            Json(json!({ "error": "invalid_body", "message": rejection.body_text() })),
        )
            .into_response(),
    }
}

/// `GET /control/requests`: the latest session requests, oldest first.
async fn requests(State(shared): State<Arc<Shared>>) -> Response {
    Json(shared.state().requests()).into_response()
}

async fn not_found() -> ApiError {
    ApiError::not_found("not_found", "no such route")
}
