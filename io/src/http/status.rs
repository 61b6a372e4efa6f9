//! What acemux is doing, as JSON: its channels, each channel's viewers (also in the
//! orchestrator's shape), and its webhooks. The status page reads these. Viewer
//! addresses and user agents are personal data: with `--api-key` set, the viewer
//! routes need the key, like the write routes.

use axum::extract::{Path, State};
use axum::Json;
use http::{HeaderMap, Uri};
use serde_json::{json, Value};

use super::error::ApiError;
use super::events::authorize;
use super::query::Params;
use super::read::unknown_params;
use super::{views, AppState};
use crate::metrics::WebhookLabels;
use crate::proxy::ViewerSummary;

/// `GET /channels`: every proxied channel now (state, engine, bytes and rates, viewer
/// count), by key.
pub async fn channels(State(app): State<AppState>) -> Json<Value> {
    let now = app.lifecycle.clock().now();
    let channels = app
        .streams
        .as_ref()
        .map(|streams| streams.channel_summaries())
        .unwrap_or_default();
    Json(Value::Array(
        channels
            .iter()
            .map(|channel| views::channel(channel, now))
            .collect(),
    ))
}

/// `GET /streams/{id}/viewers` → `{stream_id, proxied, viewers: [...]}`: the viewers of
/// the channel playing stream `id` (none for a stream acemux does not proxy).
pub async fn stream_viewers(
    State(app): State<AppState>,
    headers: HeaderMap,
    uri: Uri,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    authorize(&app, &headers, &uri)?;
    let Params(params) = Params::from_uri(&uri)?;
    unknown_params(&params, &[])?;
    let viewers = app
        .streams
        .as_ref()
        .and_then(|streams| streams.viewers_of_stream(&id));
    if viewers.is_none() && app.lifecycle.stream(&id).is_none() {
        return Err(ApiError::not_found(
            "unknown_stream",
            format!("unknown stream {id:?}"),
        ));
    }
    Ok(Json(json!({
        "stream_id": id,
        "proxied": viewers.is_some(),
        "viewers": viewers.unwrap_or_default().iter().map(views::viewer).collect::<Vec<_>>(),
    })))
}

/// `GET /proxy/streams/{key}/clients` → `{clients: [{client_id, ip, user_agent,
/// connected_at, last_active, bytes_sent}]}`: the viewers of every channel of stream
/// key `key`, in the orchestrator's proxy shape.
pub async fn key_clients(
    State(app): State<AppState>,
    headers: HeaderMap,
    uri: Uri,
    Path(key): Path<String>,
) -> Result<Json<Value>, ApiError> {
    authorize(&app, &headers, &uri)?;
    let Params(params) = Params::from_uri(&uri)?;
    unknown_params(&params, &[])?;
    let clients: Vec<ViewerSummary> = app
        .streams
        .as_ref()
        .and_then(|streams| streams.viewers_of_key(key.trim()))
        .ok_or_else(|| {
            ApiError::not_found("unknown_stream", format!("no channel plays {key:?}"))
        })?;
    Ok(Json(json!({
        "stream_key": key.trim(),
        "clients": clients.iter().map(views::client).collect::<Vec<_>>(),
    })))
}

/// Each configured webhook's delivery state, as `/webhooks` and the status page show
/// it.
pub(super) fn webhook_rows(app: &AppState) -> Vec<Value> {
    app.webhooks
        .states()
        .iter()
        .map(|(webhook, state)| {
            let pending = app
                .metrics
                .webhook_pending
                .get_or_create(&WebhookLabels {
                    webhook: webhook.clone(),
                })
                .get();
            views::webhook(webhook, pending, state)
        })
        .collect()
}

/// `GET /webhooks` → each configured webhook's delivery state: pending deliveries,
/// delivered since start, the last delivery and the last failure.
pub async fn webhooks(
    State(app): State<AppState>,
    headers: HeaderMap,
    uri: Uri,
) -> Result<Json<Value>, ApiError> {
    authorize(&app, &headers, &uri)?;
    let rows = webhook_rows(&app);
    Ok(Json(Value::Array(rows)))
}
