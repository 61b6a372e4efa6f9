//! Playlists for media servers: `GET /playlist.m3u` (the channel list of `--channels`
//! with acemux's player URLs) and `POST /playlist/rewrite` (any M3U with its AceStream
//! sources pointed at acemux). Neither fetches anything; neither needs the API key (they
//! change nothing, and the playlist is for players, as the player routes are).

use acemux_core::channel_list::{self, BaseUrl, Format};
use axum::extract::rejection::BytesRejection;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use http::{header, HeaderMap, HeaderValue, StatusCode, Uri};

use super::error::ApiError;
use super::query::Params;
use super::AppState;

/// The rewrite route (its body has its own bound, `--max-playlist-bytes`).
pub(super) const REWRITE_ROUTE: &str = "/playlist/rewrite";

/// Content type of an M3U answer.
const M3U_CONTENT_TYPE: &str = "audio/x-mpegurl";

/// The header of a rewrite answer that counts the lines rewritten.
const REWRITTEN_HEADER: &str = "acemux-rewritten-lines";

fn invalid_query(message: String) -> ApiError {
    ApiError::bad_request("invalid_query", message)
}

/// 400 for a parameter not in `known`.
fn only_params(params: &Params, known: &[&str]) -> Result<(), ApiError> {
    match params.0.keys().find(|name| !known.contains(&name.as_str())) {
        Some(name) => Err(invalid_query(format!(
            "unknown query parameter {name:?}; known: {}",
            known.join(", ")
        ))),
        None => Ok(()),
    }
}

/// `format=ts|hls`, if given.
fn format(params: &Params) -> Result<Option<Format>, ApiError> {
    params
        .0
        .get("format")
        .map(|text| {
            Format::parse(text)
                .ok_or_else(|| invalid_query(format!("format must be ts or hls, not {text:?}")))
        })
        .transpose()
}

/// Where the URLs a playlist hands out start: `--public-url`, else `http://` and the
/// request's `Host` (or the authority of an absolute request target).
fn request_base(app: &AppState, headers: &HeaderMap, uri: &Uri) -> Result<BaseUrl, ApiError> {
    if let Some(base) = &app.public_url {
        return Ok(base.clone());
    }
    let host =
        match headers.get(header::HOST) {
            Some(value) => Some(value.to_str().map_err(|_| {
                ApiError::bad_request("invalid_host", "the Host header is not text")
            })?),
            None => uri.authority().map(|authority| authority.as_str()),
        };
    let host = host.filter(|host| !host.trim().is_empty()).ok_or_else(|| {
        ApiError::bad_request(
            "missing_host",
            "the request has no Host header and acemux has no --public-url, so it cannot \
             tell the address players reach it at",
        )
    })?;
    BaseUrl::from_host(host).map_err(|reason| {
        ApiError::bad_request(
            "invalid_host",
            format!("{reason}; set --public-url to the address players reach acemux at"),
        )
    })
}

fn m3u_answer(body: impl Into<axum::body::Body>) -> Response {
    let mut response = (StatusCode::OK, body.into()).into_response();
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(M3U_CONTENT_TYPE),
    );
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    response
}

/// `GET /playlist.m3u?format=ts|hls`: every channel of `--channels`, with its name,
/// `tvg-id`, `tvg-logo` and `group-title`, and acemux's player URL (`/ace/getstream`,
/// or `/ace/manifest.m3u8` with `format=hls`) under `--public-url` or the request's
/// `Host`. 404 `no_channels` without `--channels`.
pub async fn playlist(
    State(app): State<AppState>,
    headers: HeaderMap,
    uri: Uri,
    params: Params,
) -> Result<Response, ApiError> {
    only_params(&params, &["format"])?;
    let format = format(&params)?.unwrap_or_default();
    let channels = app.playlists.channels.as_ref().ok_or_else(|| {
        ApiError::not_found(
            "no_channels",
            "no channel list is configured: start acemux with --channels FILE (M3U or TOML)",
        )
    })?;
    let base = request_base(&app, &headers, &uri)?;
    Ok(m3u_answer(channel_list::render_m3u(
        channels, &base, format,
    )))
}

/// `POST /playlist/rewrite?base=URL&format=ts|hls` with an M3U playlist as the body (at
/// most `--max-playlist-bytes`): the same playlist with every AceStream source
/// (`acestream://`, `ace://`, engine `/ace/getstream` and `/ace/manifest.m3u8` URLs)
/// pointing at acemux under `base` (else `--public-url`, else the request's `Host`),
/// every other byte kept. The `acemux-rewritten-lines` header counts the lines
/// rewritten.
pub async fn rewrite(
    State(app): State<AppState>,
    headers: HeaderMap,
    uri: Uri,
    params: Params,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    only_params(&params, &["base", "format"])?;
    let format = format(&params)?;
    let base = match params.0.get("base") {
        Some(text) => {
            BaseUrl::parse(text).map_err(|reason| invalid_query(format!("base: {reason}")))?
        }
        None => request_base(&app, &headers, &uri)?,
    };
    let body = body.map_err(ApiError::body)?;
    if body.is_empty() {
        return Err(ApiError::bad_request(
            "invalid_playlist",
            "the request body is empty: send the M3U playlist as the body",
        ));
    }
    let rewritten = channel_list::rewrite(&body, &base, format);
    let mut response = m3u_answer(rewritten.bytes);
    response
        .headers_mut()
        .insert(REWRITTEN_HEADER, rewritten.rewritten.into());
    Ok(response)
}
