//! `POST /events/stream_started` and `POST /events/stream_ended`.

use acemux_core::lifecycle::{Input, Outcome};
use axum::extract::rejection::BytesRejection;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use axum::Json;
use bytes::Bytes;
use http::{header, HeaderMap, HeaderValue, StatusCode, Uri};
use serde_json::json;
use subtle::ConstantTimeEq;

use super::error::ApiError;
use super::query::Params;
use super::{views, AppState};

/// Longest idempotency key accepted.
const MAX_IDEMPOTENCY_KEY_BYTES: usize = 256;

/// The query parameter that may carry the API key.
pub const KEY_PARAM: &str = "key";

/// Checks the API key, given as `Authorization: Bearer <key>`, `X-API-Key: <key>` or
/// `?key=<key>` (compared in constant time): 401 when none is given, 403 when a given
/// one is wrong; open when no key is configured.
pub fn authorize(app: &AppState, headers: &HeaderMap, uri: &Uri) -> Result<(), ApiError> {
    let Some(expected) = &app.api_key else {
        return Ok(());
    };
    let bearer = headers
        .get(header::AUTHORIZATION)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| {
            value
                .strip_prefix("Bearer ")
                .or_else(|| value.strip_prefix("bearer "))
        })
        .map(|key| key.trim().to_owned());
    let header_key = headers
        .get("x-api-key")
        .and_then(|value| value.to_str().ok())
        .map(|key| key.trim().to_owned());
    let Params(params) = Params::from_uri(uri)?;
    let query_key = params.get(KEY_PARAM).cloned();
    let given: Vec<String> = [bearer, header_key, query_key]
        .into_iter()
        .flatten()
        .collect();
    if given.is_empty() {
        return Err(ApiError::new(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            "missing API key (Authorization: Bearer <key>, X-API-Key: <key> or ?key=<key>)",
        ));
    }
    // Every given key is compared, so the time taken does not tell which one matched.
    let matches = given.iter().fold(false, |any, key| {
        any | bool::from(key.as_bytes().ct_eq(expected.as_bytes()))
    });
    if matches {
        Ok(())
    } else {
        Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "forbidden",
            "wrong API key",
        ))
    }
}

fn idempotency_key(headers: &HeaderMap) -> Result<Option<String>, ApiError> {
    let Some(value) = headers.get("idempotency-key") else {
        return Ok(None);
    };
    let key = value
        .to_str()
        .ok()
        .filter(|key| !key.is_empty() && key.len() <= MAX_IDEMPOTENCY_KEY_BYTES)
        .ok_or_else(|| {
            ApiError::bad_request(
                "invalid_idempotency_key",
                "Idempotency-Key must be 1 to 256 visible ASCII characters",
            )
        })?;
    Ok(Some(key.to_owned()))
}

/// The shared shape of both event routes: authorize, decode, apply (or replay a known
/// idempotency key), render.
async fn handle_event<T: serde::de::DeserializeOwned>(
    app: &AppState,
    headers: &HeaderMap,
    uri: &Uri,
    body: Result<Bytes, BytesRejection>,
    to_input: impl FnOnce(T) -> Input,
    render: impl FnOnce(&Outcome) -> serde_json::Value,
) -> Result<Response, ApiError> {
    authorize(app, headers, uri)?;
    let key = idempotency_key(headers)?;
    let body = body.map_err(ApiError::body)?;
    let request: T = serde_json::from_slice(&body).map_err(ApiError::json)?;
    let applied = app.lifecycle.apply(to_input(request), key).await?;
    let mut response = (StatusCode::OK, Json(render(&applied.outcome))).into_response();
    if applied.replayed {
        response
            .headers_mut()
            .insert("idempotent-replayed", HeaderValue::from_static("true"));
    }
    Ok(response)
}

/// `POST /events/stream_started` → the stream's state.
pub async fn stream_started(
    State(app): State<AppState>,
    headers: HeaderMap,
    uri: Uri,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    handle_event(&app, &headers, &uri, body, Input::Started, |outcome| {
        views::stream(&outcome.stream)
    })
    .await
}

/// `POST /events/stream_ended` → `{updated, stream}`.
pub async fn stream_ended(
    State(app): State<AppState>,
    headers: HeaderMap,
    uri: Uri,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    handle_event(
        &app,
        &headers,
        &uri,
        body,
        Input::Ended,
        |outcome| json!({ "updated": outcome.updated, "stream": views::stream(&outcome.stream) }),
    )
    .await
}
