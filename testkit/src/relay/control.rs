//! The relay's control API: replace the rules, partition, repair, read counters.
//! Errors are JSON `{error, message}` like acemux's own API.

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{DefaultBodyLimit, State};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use http::StatusCode;
use serde_json::json;

use super::plan::{FaultPlan, RulesUpdate};
use super::Relay;
use acemux::http::ApiError;
use acemux::net::Net;

/// Largest control request body: 64 rules of 512 bytes fit.
const MAX_CONTROL_BODY_BYTES: usize = 64 * 1024;

pub(super) fn router<N: Net>(relay: Relay<N>) -> Router {
    Router::new()
        .route(
            "/control/rules",
            get(rules::<N>).put(put_rules::<N>).delete(repair::<N>),
        )
        .route("/control/partition", post(partition::<N>))
        .route("/control/repair", post(repair::<N>))
        .route("/control/stats", get(stats::<N>))
        .fallback(not_found)
        .layer(DefaultBodyLimit::max(MAX_CONTROL_BODY_BYTES))
        .with_state(relay)
}

fn rules_answer(plan: &FaultPlan) -> Json<serde_json::Value> {
    Json(json!({ "rules": plan.texts() }))
}

async fn rules<N: Net>(State(relay): State<Relay<N>>) -> Response {
    rules_answer(&relay.plan()).into_response()
}

async fn put_rules<N: Net>(
    State(relay): State<Relay<N>>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let body = body.map_err(ApiError::body)?;
    let update: RulesUpdate = serde_json::from_slice(&body).map_err(ApiError::json)?;
    let plan = FaultPlan::parse(&update.rules).map_err(|error| {
        tracing::warn!(%error, "relay control: rules refused");
        ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_rule",
            error.to_string(),
        )
    })?;
    let open = relay.set_plan(plan.clone(), update.cut_existing);
    let cut = if update.cut_existing { open } else { 0 };
    Ok(Json(json!({ "rules": plan.texts(), "cut_connections": cut })).into_response())
}

async fn partition<N: Net>(State(relay): State<Relay<N>>) -> Response {
    let cut = relay.partition();
    Json(json!({ "rules": relay.plan().texts(), "cut_connections": cut })).into_response()
}

async fn repair<N: Net>(State(relay): State<Relay<N>>) -> Response {
    relay.repair();
    rules_answer(&relay.plan()).into_response()
}

async fn stats<N: Net>(State(relay): State<Relay<N>>) -> Response {
    Json(relay.stats()).into_response()
}

async fn not_found() -> ApiError {
    ApiError::not_found(
        "not_found",
        "no such route (routes: /control/rules, /control/partition, /control/repair, /control/stats)",
    )
}
