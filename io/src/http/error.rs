//! Every error answer is JSON: `{"error": <code>, "message": <text>}`.

use axum::extract::rejection::BytesRejection;
use axum::response::{IntoResponse, Response};
use axum::Json;
use http::StatusCode;
use serde_json::json;

use crate::lifecycle::ApplyError;
use acemux_core::lifecycle::LifecycleError;

/// An error answer.
#[derive(Debug)]
pub struct ApiError {
    /// HTTP status.
    pub status: StatusCode,
    /// Stable machine-readable code.
    pub code: &'static str,
    /// Human-readable explanation.
    pub message: String,
    /// The configured bound this answer is about, counted in `acemux_limit_hits_total`.
    pub limit: Option<&'static str>,
}

/// Marks a response that was refused at a configured bound (read by the request
/// metrics middleware).
#[derive(Clone, Copy, Debug)]
pub struct LimitHit(pub &'static str);

impl ApiError {
    /// An error with `status`, `code` and `message`.
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        ApiError {
            status,
            code,
            message: message.into(),
            limit: None,
        }
    }

    /// The same answer, counted as a hit of the bound `limit`.
    pub fn at_limit(mut self, limit: &'static str) -> Self {
        self.limit = Some(limit);
        self
    }

    /// 400 with `code`.
    pub fn bad_request(code: &'static str, message: impl Into<String>) -> Self {
        ApiError::new(StatusCode::BAD_REQUEST, code, message)
    }

    /// 404 for something that does not exist.
    pub fn not_found(code: &'static str, message: impl Into<String>) -> Self {
        ApiError::new(StatusCode::NOT_FOUND, code, message)
    }

    /// A body that could not be read (too large, or cut).
    pub fn body(rejection: BytesRejection) -> Self {
        let status = rejection.status();
        if status == StatusCode::PAYLOAD_TOO_LARGE {
            ApiError::new(status, "payload_too_large", rejection.body_text()).at_limit("body_bytes")
        } else {
            ApiError::new(status, "bad_body", rejection.body_text())
        }
    }

    /// A JSON body that does not decode into the expected shape.
    pub fn json(error: serde_json::Error) -> Self {
        use serde_json::error::Category;
        match error.classify() {
            Category::Data => ApiError::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "invalid_field",
                error.to_string(),
            ),
            Category::Syntax | Category::Eof | Category::Io => {
                ApiError::bad_request("invalid_json", error.to_string())
            }
        }
    }
}

impl From<ApplyError> for ApiError {
    fn from(error: ApplyError) -> Self {
        let message = error.to_string();
        match error {
            ApplyError::Lifecycle(error) => {
                let status = match &error {
                    LifecycleError::UnknownStream { .. }
                    | LifecycleError::NoActiveStream { .. } => StatusCode::NOT_FOUND,
                    LifecycleError::AlreadyEnded { .. }
                    | LifecycleError::AmbiguousEnd { .. }
                    | LifecycleError::ContainerMismatch { .. } => StatusCode::CONFLICT,
                    LifecycleError::Capacity { .. } => StatusCode::SERVICE_UNAVAILABLE,
                    _ => StatusCode::UNPROCESSABLE_ENTITY,
                };
                let limit = matches!(error, LifecycleError::Capacity { .. });
                let answer = ApiError::new(status, error.code(), message);
                if limit {
                    answer.at_limit("active_streams")
                } else {
                    answer
                }
            }
            ApplyError::Busy => ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "busy", message)
                .at_limit("changes_in_flight"),
            ApplyError::Store(_) => {
                ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "store_error", message)
            }
            ApplyError::CommitTimeout(_) => {
                ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "store_timeout", message)
            }
        }
    }
}

impl ApiError {
    /// For a 503, the seconds a client should wait before trying again
    /// (`Retry-After`): longer when no engine can take a session (engines that failed
    /// rest for a while), short for a momentary bound.
    pub fn retry_after_secs(&self) -> Option<u32> {
        (self.status == StatusCode::SERVICE_UNAVAILABLE).then(|| retry_after_secs(self.code))
    }
}

/// The `Retry-After` of a 503 with `code`.
pub fn retry_after_secs(code: &str) -> u32 {
    match code {
        "no_engine_available" => 5,
        "stream_unavailable" | "store_timeout" => 2,
        _ => 1,
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = json!({ "error": self.code, "message": self.message });
        let mut response = (self.status, Json(body)).into_response();
        if let Some(secs) = self.retry_after_secs() {
            response
                .headers_mut()
                .insert(http::header::RETRY_AFTER, secs.into());
        }
        if let Some(limit) = self.limit {
            response.extensions_mut().insert(LimitHit(limit));
        }
        response
    }
}
