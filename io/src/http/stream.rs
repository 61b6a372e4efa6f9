//! The player route `GET /ace/getstream` and the operator route `DELETE /streams/{id}`.

use std::collections::BTreeMap;
use std::sync::Arc;

use acemux_core::channel::StartFailure;
use acemux_core::hls::SegmentBody;
use axum::extract::{Path, State};
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use http::{header, HeaderMap, HeaderValue, StatusCode};
use serde_json::{json, Value};

use super::error::ApiError;
use super::events::authorize;
use super::player::{channel_key, StreamMode};
use super::query::Params;
use super::segment_body::PartsBody;
use super::{views, AppState};
use crate::engine::StreamFormat;
use crate::proxy::{Asker, Client, EngineStop, JoinError, StopOutcome, Streams};
use crate::server::{ConnectionKill, PeerAddr};

impl From<JoinError> for ApiError {
    fn from(error: JoinError) -> Self {
        let message = error.to_string();
        match error {
            JoinError::Start(failure) => {
                let status = match failure {
                    StartFailure::NoEngine => StatusCode::SERVICE_UNAVAILABLE,
                    StartFailure::Timeout => StatusCode::GATEWAY_TIMEOUT,
                    _ => StatusCode::BAD_GATEWAY,
                };
                ApiError::new(status, failure.code(), message)
            }
            JoinError::Capacity(_) => {
                ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "capacity", message)
            }
            JoinError::Ended => ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "stream_unavailable",
                message,
            ),
        }
    }
}

/// Content type of a TS stream answer (also of the viewers served outside the router).
pub(super) const TS_CONTENT_TYPE: &str = "video/mp2t";
/// Caching of a TS stream answer: none, it is live.
pub(super) const TS_CACHE_CONTROL: &str = "no-store";

/// `GET /ace/getstream?id=…` (or `infohash=`): the channel's MPEG-TS, from a clean
/// point near live. Answers 200 only once media is in hand; otherwise a JSON error.
pub async fn getstream(
    State(app): State<AppState>,
    kill: Option<Extension<ConnectionKill>>,
    peer: Option<Extension<PeerAddr>>,
    headers: HeaderMap,
    uri: http::Uri,
    Params(params): Params,
) -> Result<Response, ApiError> {
    // A peer instance's relay always gets the TS it relays.
    let relay = headers.contains_key(crate::cluster::PEER_HEADER);
    if app.player.stream_mode == StreamMode::Hls && !relay {
        // The same channel's playlist: the query is checked there.
        let location = format!("/ace/manifest.m3u8?{}", uri.query().unwrap_or_default());
        let location = HeaderValue::from_str(&location).map_err(|_| {
            ApiError::bad_request("invalid_query", "the query cannot be put in a redirect")
        })?;
        return Ok((StatusCode::FOUND, [(header::LOCATION, location)]).into_response());
    }
    let key = channel_key(&params, StreamFormat::Ts, &app.player)?;
    let streams = proxy(&app)?;
    let peer_mark = headers
        .get(crate::cluster::PEER_HEADER)
        .map(|value| value.to_str().unwrap_or_default());
    check_peer(&app, peer_mark, &key)?;
    let viewer = streams
        .join(
            key,
            kill.map(|Extension(kill)| kill),
            client(peer.as_ref(), &headers),
        )
        .await?;
    let mut response = viewer.into_body().into_response();
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(TS_CONTENT_TYPE),
    );
    headers.insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static(TS_CACHE_CONTROL),
    );
    Ok(response)
}

/// A request marked as a peer instance's relay (`x-acemux-peer: <cluster secret>`)
/// is served only with the right secret (403 `not_a_peer`) and only while this
/// instance owns the channel (503 `not_owner`): a relayed request is never relayed
/// again. A request without the mark is a player's.
pub(super) fn check_peer(
    app: &AppState,
    mark: Option<&str>,
    key: &crate::proxy::ChannelKey,
) -> Result<(), ApiError> {
    let Some(mark) = mark else {
        return Ok(());
    };
    let cluster = app.cluster.as_ref().filter(|cluster| cluster.is_peer(mark));
    if cluster.is_none() {
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "not_a_peer",
            format!(
                "the {} header does not carry this cluster's secret",
                crate::cluster::PEER_HEADER
            ),
        ));
    }
    if !proxy(app)?.serves_peer(key) {
        return Err(ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "not_owner",
            format!("this instance does not own channel {key} now"),
        ));
    }
    Ok(())
}

/// `GET /cluster`: this instance's id, address and leases (404 without `--redis`).
pub async fn cluster(State(app): State<AppState>) -> Result<Response, ApiError> {
    let cluster = app.cluster.as_ref().ok_or_else(|| {
        ApiError::new(
            StatusCode::NOT_FOUND,
            "not_clustered",
            "cluster mode is off (--redis)",
        )
    })?;
    let mut view = serde_json::to_value(cluster.view()).unwrap_or_default();
    if let (Some(directory), Value::Object(view)) = (&app.directory, &mut view) {
        let answer = directory.read().await;
        view.insert("instances".to_owned(), super::directory::instances(&answer));
        view.insert(
            "directory".to_owned(),
            super::directory::directory_state(&answer),
        );
    }
    Ok(Json(view).into_response())
}

pub(super) fn proxy(app: &AppState) -> Result<&Arc<dyn Streams>, ApiError> {
    app.streams.as_ref().ok_or_else(|| {
        ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "no_engine_available",
            "no engines are configured (--engine host:port)",
        )
    })
}

/// Who sent a request: its address and user agent, for the viewer list.
fn client(peer: Option<&Extension<PeerAddr>>, headers: &HeaderMap) -> Client {
    Client::new(
        peer.map(|Extension(PeerAddr(addr))| addr.ip()),
        headers
            .get(header::USER_AGENT)
            .and_then(|agent| agent.to_str().ok()),
    )
}

/// Who a player is: the token acemux put in the URIs it served, else its address.
fn viewer_token(params: &BTreeMap<String, String>, peer: Option<Extension<PeerAddr>>) -> String {
    match (params.get("t"), peer) {
        (Some(token), _) if !token.is_empty() && token.len() <= 128 => token.clone(),
        (_, Some(Extension(PeerAddr(addr)))) => format!("addr-{}", addr.ip()),
        _ => "anonymous".to_owned(),
    }
}

/// `GET /ace/manifest.m3u8?id=…` (or `infohash=`): the channel's live HLS playlist. A
/// new channel's first request waits (bounded by the start timeout) until enough is
/// held for players to start; later requests are answered from memory at once. In
/// cluster mode the playlist is the owning instance's (see [`check_peer`] for a peer's
/// request).
pub async fn manifest(
    State(app): State<AppState>,
    peer: Option<Extension<PeerAddr>>,
    headers: HeaderMap,
    Params(params): Params,
) -> Result<Response, ApiError> {
    let key = channel_key(&params, StreamFormat::Hls, &app.player)?;
    let asker = hls_asker(&app, &headers, &key)?;
    let client = client(peer.as_ref(), &headers);
    let viewer = viewer_token(&params, peer);
    let playlist = proxy(&app)?
        .hls_playlist(key, viewer, client, asker)
        .await?;
    let mut response = playlist.into_response();
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/vnd.apple.mpegurl"),
    );
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    Ok(response)
}

/// Whether an HLS request is a peer instance's (checked as [`check_peer`] says) or a
/// player's.
fn hls_asker(
    app: &AppState,
    headers: &HeaderMap,
    key: &crate::proxy::ChannelKey,
) -> Result<Asker, ApiError> {
    let mark = headers
        .get(crate::cluster::PEER_HEADER)
        .map(|value| value.to_str().unwrap_or_default());
    check_peer(app, mark, key)?;
    Ok(if mark.is_some() {
        Asker::Peer
    } else {
        Asker::Player
    })
}

/// The segment number in a segment URI's last part (`<seq>.ts`).
fn segment_seq(name: &str) -> Option<u64> {
    name.strip_suffix(".ts").and_then(|seq| seq.parse().ok())
}

fn unknown_segment() -> ApiError {
    ApiError::not_found("unknown_segment", "no such segment is held")
}

/// `GET /ace/hls/{key type}/{key}/{seq}.ts`: a segment of the channel named by its key
/// (`content_id`, `infohash`, `url` or `magnet`, with the engine parameters in the
/// query), from memory; the same URI on every instance. In cluster mode a segment of a
/// channel another instance owns is fetched from it once and held for every player
/// here.
pub async fn segment_of(
    State(app): State<AppState>,
    peer: Option<Extension<PeerAddr>>,
    headers: HeaderMap,
    Path((key_type, key, name)): Path<(String, String, String)>,
    Params(mut params): Params,
) -> Result<Response, ApiError> {
    let seq = segment_seq(&name).ok_or_else(unknown_segment)?;
    if !matches!(
        key_type.as_str(),
        "content_id" | "infohash" | "url" | "magnet"
    ) {
        return Err(unknown_segment());
    }
    params.insert(key_type, key);
    let key = channel_key(&params, StreamFormat::Hls, &app.player)?;
    let asker = hls_asker(&app, &headers, &key)?;
    let client = client(peer.as_ref(), &headers);
    let viewer = viewer_token(&params, peer);
    let bytes = proxy(&app)?
        .hls_segment_of(key, seq, viewer, client, asker)
        .await?
        .ok_or_else(unknown_segment)?;
    Ok(segment_response(bytes))
}

/// `GET /ace/hls/{channel}/{seq}.ts`: a held segment of a channel named by this
/// process's number for it (the URIs of earlier versions), from memory.
pub async fn segment(
    State(app): State<AppState>,
    peer: Option<Extension<PeerAddr>>,
    headers: HeaderMap,
    Path((channel, name)): Path<(String, String)>,
    Params(params): Params,
) -> Result<Response, ApiError> {
    let channel: u64 = channel.parse().map_err(|_| unknown_segment())?;
    let seq = segment_seq(&name).ok_or_else(unknown_segment)?;
    let client = client(peer.as_ref(), &headers);
    let viewer = viewer_token(&params, peer);
    let bytes = proxy(&app)?
        .hls_segment(channel, seq, viewer, client)
        .ok_or_else(unknown_segment)?;
    Ok(segment_response(bytes))
}

fn segment_response(body: SegmentBody) -> Response {
    let mut response = axum::body::Body::new(PartsBody::from(body)).into_response();
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("video/mp2t"));
    headers.insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("max-age=60"),
    );
    response
}

/// `DELETE /streams/{id}`: stops the stream (viewers closed, engine stopped, one
/// `stream_ended`) → `{updated, stream, engine_stop: {done, detail}}`. A stream
/// registered through the event API is stopped on its engine when that engine is one
/// acemux uses; otherwise only its record ends, and `engine_stop` says why.
pub async fn delete_stream(
    State(app): State<AppState>,
    headers: HeaderMap,
    uri: http::Uri,
    Path(id): Path<String>,
) -> Result<Json<serde_json::Value>, ApiError> {
    authorize(&app, &headers, &uri)?;
    let known = app.lifecycle.stream(&id);
    let outcome = match (&app.streams, &known) {
        (Some(streams), _) => streams.stop_stream(id.clone(), "deleted".into()).await?,
        (None, Some(_)) => StopOutcome {
            updated: app.lifecycle.end_stream(&id, "deleted".into()).await?,
            engine: EngineStop::NotSent("no engines are configured"),
        },
        (None, None) => StopOutcome {
            updated: false,
            engine: EngineStop::NotSent("unknown stream"),
        },
    };
    let stream = app
        .lifecycle
        .stream(&id)
        .ok_or_else(|| ApiError::not_found("unknown_stream", format!("unknown stream {id:?}")))?;
    let (done, detail) = match &outcome.engine {
        EngineStop::Channel => ("channel", None),
        EngineStop::Stopped => ("stopped", None),
        EngineStop::Failed(error) => ("failed", Some(error.clone())),
        EngineStop::NotSent(why) => ("not_sent", Some((*why).to_owned())),
    };
    Ok(Json(json!({
        "updated": outcome.updated,
        "stream": views::stream(&stream),
        "engine_stop": { "done": done, "detail": detail },
    })))
}
