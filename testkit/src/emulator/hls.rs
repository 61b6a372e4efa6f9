//! Live HLS, as engines serve it next to MPEG-TS.
//!
//! - `GET /ace/manifest.m3u8?id=<content id>&format=json&pid=<p>` → a session in the
//!   same envelope as `getstream` (same session table, stats, stop command, limits,
//!   `start_delay` and `refuse` faults), whose `playback_url` is
//!   `http://<host>/ace/m/<session>.m3u8`. Without `format=json` the playlist itself
//!   is answered; reloads of the same content id and `pid` stay in one session.
//! - `GET /ace/m/<session>.m3u8` → a live sliding window of the newest
//!   [`timeline::WINDOW_SEGMENTS`] complete segments: `#EXT-X-VERSION:3`,
//!   `#EXT-X-TARGETDURATION`, `#EXT-X-MEDIA-SEQUENCE`, and per segment
//!   `#EXTINF:<seconds, 6 decimals>,` + `http://<host>/ace/c/<session>/<n>.ts`.
//! - `GET /ace/c/<session>/<n>.ts` → segment `n` (`video/mp2t`), or 404 when it is
//!   not in the session's window now (or a `segment_404_every` fault hits
//!   it); a `segment_delay` fault holds each answer that long first.
//!
//! Segments are [`GOPS_PER_SEGMENT`] GOP(s) of the looped media, cut at the PAT
//! before each video keyframe (see [`Segmenter`]): 2 s for the built-in media.
//! Segment `n`'s bytes are always the same: the [`super::MediaLoop`] range of
//! GOP `n`. The window follows the channel's shared timeline (origin at its first
//! session request, TS or HLS): `t` after the origin, the engine holds
//! `prebuffer + t` of media and lists the segments complete within it (see
//! [`timeline::window`]). Stopped or unknown sessions get 404 for everything.
//! The playlist faults apply per request, with the content id's current faults.

mod timeline;

#[cfg(test)]
mod tests;

use std::sync::Arc;
use std::time::Duration;

use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use axum::response::{IntoResponse, Response};
use http::header::{CACHE_CONTROL, CONTENT_TYPE};
use http::{HeaderMap, HeaderValue, StatusCode};
use tokio::time::Instant;

use timeline::{Moment, Window};
pub(crate) use timeline::{Segmenter, GOPS_PER_SEGMENT};

use super::routes::{
    base_url, envelope_error, open_requested, requested_content, session_envelope, unknown_session,
    GetStreamQuery, OFFSET_HEADER,
};
use super::sessions::{HlsRequest, SessionView};
use super::Shared;

/// Longest `pid` of a direct manifest request (it keys the reused session).
const MAX_PID_BYTES: usize = 256;
/// The playlist media type.
const PLAYLIST_TYPE: &str = "application/vnd.apple.mpegurl";

/// `GET /ace/manifest.m3u8`.
pub(super) async fn manifest(
    State(shared): State<Arc<Shared>>,
    headers: HeaderMap,
    query: Result<Query<GetStreamQuery>, QueryRejection>,
) -> Response {
    let (query, content_id) = match requested_content(query) {
        Ok(request) => request,
        Err(error) => return error.into_response(),
    };
    shared.state().record_request(query.record("manifest.m3u8"));
    let base = base_url(&headers, &shared);
    if query.format.as_deref() == Some("json") {
        return match open_requested(&shared, &content_id, &query).await {
            Ok(opened) => {
                let playback_url = format!("{base}/ace/m/{}.m3u8", opened.id);
                session_envelope(&base, &opened, playback_url)
            }
            Err(error) => error.into_response(),
        };
    }
    let pid = query.pid.as_deref().unwrap_or_default();
    if pid.len() > MAX_PID_BYTES {
        return envelope_error(StatusCode::OK, "invalid pid");
    }
    // Content ids have no control characters, so the key is unambiguous.
    let key = format!("{content_id}\n{pid}");
    let existing = shared.state().direct_hls_session(&key);
    let session = match existing {
        Some(session) => session,
        None => match open_requested(&shared, &content_id, &query).await {
            Ok(opened) => {
                shared.state().set_direct_hls_session(&key, &opened.id);
                opened.id
            }
            Err(error) => return error.into_response(),
        },
    };
    answer_playlist(&shared, &session, &base).await
}

/// `GET /ace/m/<session>.m3u8`.
pub(super) async fn playlist(
    State(shared): State<Arc<Shared>>,
    headers: HeaderMap,
    Path(file): Path<String>,
) -> Response {
    let Some(session) = file.strip_suffix(".m3u8") else {
        return envelope_error(StatusCode::NOT_FOUND, "no such playlist");
    };
    answer_playlist(&shared, session, &base_url(&headers, &shared)).await
}

async fn answer_playlist(shared: &Shared, session: &str, base: &str) -> Response {
    let Some(view) = shared.state().live_session(session) else {
        return unknown_session();
    };
    shared
        .state()
        .record_hls(session, &view.content_id, HlsRequest::Playlist);
    if let Some(delay) = view.faults.playlist_delay {
        if let Err(response) = delay_answer(shared, &view, delay).await {
            return response;
        }
    }
    let window = session_window(shared, &view, Instant::now());
    let text = timeline::render(&shared.hls, window, base, session);
    let mut response = text.into_response();
    let headers = response.headers_mut();
    headers.insert(CONTENT_TYPE, HeaderValue::from_static(PLAYLIST_TYPE));
    headers.insert(CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    response
}

/// `GET /ace/c/<session>/<n>.ts`.
pub(super) async fn segment(
    State(shared): State<Arc<Shared>>,
    Path((session, file)): Path<(String, String)>,
) -> Response {
    let number = file
        .strip_suffix(".ts")
        .filter(|digits| !digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit()))
        .and_then(|digits| digits.parse::<u64>().ok());
    let Some(number) = number else {
        return envelope_error(StatusCode::NOT_FOUND, "no such segment");
    };
    let Some(view) = shared.state().live_session(&session) else {
        return unknown_session();
    };
    let window = session_window(&shared, &view, Instant::now());
    let refused = view
        .faults
        .segment_404_every
        .is_some_and(|every| number % every == every - 1);
    if !window.contains(number) || refused {
        shared
            .state()
            .record_hls(&session, &view.content_id, HlsRequest::MissingSegment);
        let reason = if refused {
            "segment unavailable (fault)"
        } else {
            "segment not in the live window"
        };
        return envelope_error(StatusCode::NOT_FOUND, reason);
    }
    if let Some(delay) = view.faults.segment_delay {
        if let Err(response) = delay_answer(&shared, &view, delay).await {
            return response;
        }
    }
    let segment = shared.hls.segment(number);
    let bytes = shared.hls.bytes(&segment);
    shared.state().record_hls(
        &session,
        &view.content_id,
        HlsRequest::Segment(bytes.len() as u64),
    );
    let mut response = bytes.into_response();
    let headers = response.headers_mut();
    headers.insert(CONTENT_TYPE, HeaderValue::from_static("video/mp2t"));
    headers.insert(OFFSET_HEADER, HeaderValue::from(segment.offset));
    response
}

/// Holds an answer for `delay` (a fault); a stop or shutdown meanwhile is the answer.
async fn delay_answer(
    shared: &Shared,
    view: &SessionView,
    delay: Duration,
) -> Result<(), Response> {
    let mut shutdown = shared.shutdown.subscribe();
    let mut stop = view.stop.clone();
    tokio::select! {
        // Polled in order: a simulated run must not depend on tokio's random pick.
        biased;
        () = tokio::time::sleep(delay) => Ok(()),
        _ = shutdown.wait_for(|stop| *stop) => {
            Err(envelope_error(StatusCode::SERVICE_UNAVAILABLE, "engine shutting down"))
        }
        _ = stop.wait_for(|stopped| *stopped) => Err(unknown_session()),
    }
}

/// The window of the session seen in `view`, at `now`.
fn session_window(shared: &Shared, view: &SessionView, now: Instant) -> Window {
    let moment = Moment {
        origin: view.origin,
        started: view.started,
        now,
    };
    timeline::window(&shared.hls, &view.faults, shared.config.prebuffer, moment)
}
