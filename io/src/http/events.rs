//! `POST /events/stream_started` and `POST /events/stream_ended`.

use acemux_core::lifecycle::{Input, Outcome};
use axum::extract::rejection::BytesRejection;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use axum::Json;
use bytes::Bytes;
use http::{header, HeaderMap, HeaderValue, StatusCode};
use serde_json::json;
use subtle::ConstantTimeEq;

use super::error::ApiError;
use super::{views, AppState};

/// Longest idempotency key accepted.
const MAX_IDEMPOTENCY_KEY_BYTES: usize = 256;

/// Checks the bearer key: 401 when missing, 403 when wrong; open when none is configured.
pub fn authorize(app: &AppState, headers: &HeaderMap) -> Result<(), ApiError> {
    let Some(expected) = &app.api_key else {
        return Ok(());
    };
    let given = headers
        .get(header::AUTHORIZATION)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| {
            value
                .strip_prefix("Bearer ")
                .or_else(|| value.strip_prefix("bearer "))
        })
        .map(str::trim);
    match given {
        None => Err(ApiError::new(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            "missing bearer API key (Authorization: Bearer <key>)",
        )),
        Some(given) if bool::from(given.as_bytes().ct_eq(expected.as_bytes())) => Ok(()),
        Some(_) => Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "forbidden",
            "wrong API key",
        )),
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
    body: Result<Bytes, BytesRejection>,
    to_input: impl FnOnce(T) -> Input,
    render: impl FnOnce(&Outcome) -> serde_json::Value,
) -> Result<Response, ApiError> {
    authorize(app, headers)?;
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
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    handle_event(&app, &headers, body, Input::Started, |outcome| {
        views::stream(&outcome.stream)
    })
    .await
}

/// `POST /events/stream_ended` → `{updated, stream}`.
pub async fn stream_ended(
    State(app): State<AppState>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    handle_event(
        &app,
        &headers,
        body,
        Input::Ended,
        |outcome| json!({ "updated": outcome.updated, "stream": views::stream(&outcome.stream) }),
    )
    .await
}
