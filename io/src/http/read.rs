//! The read API: streams, events, engines, health, metrics.

use std::collections::BTreeMap;

use acemux_core::channel::EngineStats;
use acemux_core::lifecycle::StreamStatus;
use axum::extract::{Path, State};
use axum::response::{IntoResponse, Response};
use axum::Json;
use http::{header, HeaderValue};
use serde_json::{json, Value};

use super::error::ApiError;
use super::events::KEY_PARAM;
use super::{views, AppState};
use crate::store::EventQuery;

/// Default page size of `GET /events`.
const DEFAULT_EVENTS_LIMIT: usize = 100;
/// Largest page size of `GET /events`.
const MAX_EVENTS_LIMIT: usize = 1000;

use super::query::Params;

/// 400 for a parameter not in `known` (the API key's `key` is always known).
pub(super) fn unknown_params(
    params: &BTreeMap<String, String>,
    known: &[&str],
) -> Result<(), ApiError> {
    let unknown = |name: &&String| name.as_str() != KEY_PARAM && !known.contains(&name.as_str());
    match params.keys().find(unknown) {
        Some(name) => Err(ApiError::bad_request(
            "invalid_query",
            format!(
                "unknown query parameter {name:?}; known: {}",
                known.join(", ")
            ),
        )),
        None => Ok(()),
    }
}

fn number<T: std::str::FromStr>(
    params: &BTreeMap<String, String>,
    name: &str,
) -> Result<Option<T>, ApiError> {
    params
        .get(name)
        .map(|text| {
            text.parse().map_err(|_| {
                ApiError::bad_request(
                    "invalid_query",
                    format!("{name} must be a non-negative integer, not {text:?}"),
                )
            })
        })
        .transpose()
}

/// `GET /streams?status=started|ended&container_id=…&scope=cluster|local` (the
/// filters the orchestrator's clients send, e.g. acexy's
/// `?container_id=…&status=started`). In cluster mode each row names its `owner`, and
/// the channels other instances own are added from the cluster's directory (unless
/// `scope=local`); the `x-acemux-cluster` header says how current they are.
pub async fn streams(
    State(app): State<AppState>,
    Params(params): Params,
) -> Result<Response, ApiError> {
    unknown_params(&params, &["status", "container_id", "scope"])?;
    let local_only = match params.get("scope").map(String::as_str) {
        None | Some("" | "cluster") => false,
        Some("local") => true,
        Some(other) => {
            return Err(ApiError::bad_request(
                "invalid_query",
                format!("scope must be cluster or local, not {other:?}"),
            ))
        }
    };
    let container_id = params.get("container_id").filter(|id| !id.is_empty());
    let status = match params.get("status").map(String::as_str) {
        None | Some("") => None,
        Some("started") => Some(StreamStatus::Started),
        Some("ended") => Some(StreamStatus::Ended),
        Some(other) => {
            return Err(ApiError::bad_request(
                "invalid_query",
                format!("status must be started or ended, not {other:?}"),
            ))
        }
    };
    let stats = session_stats(&app);
    let mut streams: Vec<Value> = app
        .lifecycle
        .streams(status)
        .iter()
        .filter(|stream| container_id.is_none_or(|id| stream.container_id.as_ref() == Some(id)))
        .map(|stream| views::stream_with_stats(stream, stats.get(&stream.id)))
        .collect();
    let Some(cluster) = &app.cluster else {
        return Ok(Json(Value::Array(streams)).into_response());
    };
    for row in &mut streams {
        if let Value::Object(row) = row {
            row.insert("owner".to_owned(), json!(cluster.instance()));
        }
    }
    let state = match app.directory.as_ref().filter(|_| !local_only) {
        None => "local",
        Some(directory) => {
            let answer = directory.read().await;
            streams.extend(super::directory::remote_streams(
                &answer,
                cluster.instance(),
                status,
                container_id,
            ));
            crate::cluster::directory::freshness_name(answer.freshness)
        }
    };
    Ok((
        [(
            super::directory::CLUSTER_HEADER,
            HeaderValue::from_static(state),
        )],
        Json(Value::Array(streams)),
    )
        .into_response())
}

/// The figures of the sessions the proxy polls (none without a proxy).
fn session_stats(app: &AppState) -> BTreeMap<String, EngineStats> {
    app.streams
        .as_ref()
        .map(|streams| streams.session_stats())
        .unwrap_or_default()
}

/// `GET /streams/{id}`.
pub async fn stream(
    State(app): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let stats = session_stats(&app);
    app.lifecycle
        .stream(&id)
        .map(|stream| Json(views::stream_with_stats(&stream, stats.get(&stream.id))))
        .ok_or_else(|| ApiError::not_found("unknown_stream", format!("unknown stream {id:?}")))
}

/// `GET /events?after=&limit=&stream_id=`.
pub async fn events(
    State(app): State<AppState>,
    Params(params): Params,
) -> Result<Json<Value>, ApiError> {
    unknown_params(&params, &["after", "limit", "stream_id"])?;
    let limit = number(&params, "limit")?.unwrap_or(DEFAULT_EVENTS_LIMIT);
    if limit > MAX_EVENTS_LIMIT {
        return Err(ApiError::bad_request(
            "invalid_query",
            format!("limit must be at most {MAX_EVENTS_LIMIT}"),
        ));
    }
    let query = EventQuery {
        after: number(&params, "after")?.unwrap_or(0),
        limit,
        stream_id: params.get("stream_id").cloned(),
    };
    let events = app.store.events(query).await.map_err(|error| {
        ApiError::new(
            http::StatusCode::SERVICE_UNAVAILABLE,
            "store_error",
            error.to_string(),
        )
    })?;
    Ok(Json(Value::Array(
        events.iter().map(views::event).collect(),
    )))
}

/// `GET /engines`: every engine acemux knows (see [`views::engines`]).
pub async fn engines(State(app): State<AppState>) -> Json<Value> {
    let pool = app.streams.as_ref().map(|streams| streams.engine_pool());
    let now = app.lifecycle.clock().now();
    Json(views::engines(pool.as_ref(), &app.lifecycle.engines(), now))
}

/// `GET /health`: answered from memory, never waits for the store or an engine.
pub async fn health(State(app): State<AppState>) -> Json<Value> {
    let (active_streams, last_seq, committed_seq) = app.lifecycle.health();
    Json(json!({
        "status": "ok",
        "active_streams": active_streams,
        "last_event_seq": last_seq,
        "committed_event_seq": committed_seq,
    }))
}

/// `GET /metrics`: Prometheus text format.
pub async fn metrics(State(app): State<AppState>) -> Response {
    (
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/openmetrics-text; version=1.0.0; charset=utf-8"),
        )],
        app.metrics.render(),
    )
        .into_response()
}
