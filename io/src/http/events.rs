//! `POST /events/stream_started` and `POST /events/stream_ended`.

use std::collections::{BTreeMap, VecDeque};

use acemux_core::lifecycle::{Input, Outcome};
use axum::extract::rejection::BytesRejection;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use http::{header, HeaderMap, HeaderValue, StatusCode};
use serde_json::json;
use subtle::ConstantTimeEq;

use super::error::ApiError;
use super::{views, AppState};

/// Idempotency keys remembered; the oldest is forgotten first.
const IDEMPOTENCY_CAPACITY: usize = 4096;
/// Longest idempotency key accepted.
const MAX_IDEMPOTENCY_KEY_BYTES: usize = 256;

/// Answers already given, by `Idempotency-Key`, so a retried delivery gets the same
/// answer without being applied twice.
#[derive(Default)]
pub struct IdempotencyCache {
    answers: BTreeMap<String, Bytes>,
    order: VecDeque<String>,
}

impl IdempotencyCache {
    fn get(&self, key: &str) -> Option<Bytes> {
        self.answers.get(key).cloned()
    }

    fn insert(&mut self, key: String, answer: Bytes) {
        if self.answers.insert(key.clone(), answer).is_none() {
            self.order.push_back(key);
        }
        while self.order.len() > IDEMPOTENCY_CAPACITY {
            if let Some(oldest) = self.order.pop_front() {
                self.answers.remove(&oldest);
            }
        }
    }
}

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

fn json_answer(body: Bytes) -> Response {
    (
        StatusCode::OK,
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        )],
        body,
    )
        .into_response()
}

/// The shared shape of both event routes: authorize, replay a known idempotency key,
/// decode, apply, remember the answer.
async fn handle_event<T: serde::de::DeserializeOwned>(
    app: &AppState,
    headers: &HeaderMap,
    body: Result<Bytes, BytesRejection>,
    to_input: impl FnOnce(T) -> Input,
    render: impl FnOnce(&Outcome) -> serde_json::Value,
) -> Result<Response, ApiError> {
    authorize(app, headers)?;
    let key = idempotency_key(headers)?;
    if let Some(key) = &key {
        let cached = app
            .idempotency
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(key);
        if let Some(answer) = cached {
            app.metrics.idempotent_replays.inc();
            let mut response = json_answer(answer);
            response
                .headers_mut()
                .insert("idempotent-replayed", HeaderValue::from_static("true"));
            return Ok(response);
        }
    }
    let body = body.map_err(ApiError::body)?;
    let request: T = serde_json::from_slice(&body).map_err(ApiError::json)?;
    let outcome = app.lifecycle.apply(to_input(request)).await?;
    let answer = Bytes::from(render(&outcome).to_string());
    if let Some(key) = key {
        app.idempotency
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(key, answer.clone());
    }
    Ok(json_answer(answer))
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
