//! JSON shapes of the read API, with the orchestrator's field names.

use std::collections::{BTreeMap, BTreeSet};

use acemux_core::channel::{EnginePool, EngineSource, EngineStats, HealthState};
use acemux_core::lifecycle::{EngineAddr, EngineState, Event, StreamState};
use acemux_core::Instant;
use serde_json::{json, Value};

use crate::clock::rfc3339;
use crate::engine::StreamFormat;
use crate::proxy::{ChannelSummary, ViewerSummary};
use crate::webhook::WebhookState;

/// A stream as `GET /streams` shows it.
pub fn stream(stream: &StreamState) -> Value {
    json!({
        "id": stream.id,
        "status": stream.status,
        "key_type": stream.stream.key_type,
        "key": stream.stream.key,
        "container_id": stream.container_id,
        "engine": { "host": stream.engine.host, "port": stream.engine.port },
        "playback_session_id": stream.session.playback_session_id,
        "stat_url": stream.session.stat_url,
        "command_url": stream.session.command_url,
        "is_live": stream.session.is_live,
        "labels": stream.labels,
        "started_at": rfc3339(stream.started_at),
        "ended_at": stream.ended_at.map(rfc3339),
        "end_reason": stream.end_reason,
        "last_event_seq": stream.last_event_seq,
    })
}

/// A stream as `GET /streams` shows it, with the figures its engine last reported
/// under the orchestrator's names (`peers`, `speed_down`, `speed_up` in KB/s,
/// `downloaded`, `uploaded` in bytes, `livepos`, `stats_status`): null for streams
/// acemux does not poll (registered through the event API, ended, or not polled yet).
pub fn stream_with_stats(stream_state: &StreamState, stats: Option<&EngineStats>) -> Value {
    let mut value = stream(stream_state);
    let figures = json!({
        "stats_status": stats.and_then(|stats| stats.status.clone()),
        "peers": stats.map(|stats| stats.peers),
        "speed_down": stats.map(|stats| stats.speed_down),
        "speed_up": stats.map(|stats| stats.speed_up),
        "downloaded": stats.map(|stats| stats.downloaded),
        "uploaded": stats.map(|stats| stats.uploaded),
        "livepos": stats.and_then(|stats| stats.livepos.as_ref()).map(|livepos| json!({
            "pos": livepos.pos,
            "first_ts": livepos.first_ts,
            "last_ts": livepos.last_ts,
            "buffer_pieces": livepos.buffer_pieces,
        })),
    });
    if let (Value::Object(item), Value::Object(figures)) = (&mut value, figures) {
        item.extend(figures);
    }
    value
}

/// A proxied channel as `GET /channels` shows it. Rates are bytes per second over the
/// last whole seconds; `uptime_s` counts from the channel's creation.
pub fn channel(channel: &ChannelSummary, now: Instant) -> Value {
    let key = &channel.key;
    json!({
        "channel": key.to_string(),
        "id": channel.id,
        "format": match key.format {
            StreamFormat::Ts => "ts",
            StreamFormat::Hls => "hls",
        },
        "key_type": key.key_type,
        "key": key.key,
        "params": key.params.to_string(),
        "stream_id": channel.stream_id,
        "state": channel.phase,
        "engine": channel.engine.as_ref().map(|engine| json!({ "host": engine.host, "port": engine.port })),
        "created_at": rfc3339(channel.created_at),
        "uptime_s": now.saturating_duration_since(channel.created_at).as_secs(),
        "last_error": channel.last_error.as_ref().map(|(message, at)| json!({ "message": message, "at": rfc3339(*at) })),
        "bytes_in": channel.bytes_in.0,
        "rate_in": channel.bytes_in.1,
        "bytes_out": channel.bytes_out.0,
        "rate_out": channel.bytes_out.1,
        "viewers": channel.viewers.len(),
    })
}

/// A viewer or HLS player as `GET /streams/{id}/viewers` shows it.
pub fn viewer(viewer: &ViewerSummary) -> Value {
    json!({
        "id": viewer.id,
        "kind": viewer.kind,
        "token": viewer.token,
        "ip": viewer.ip.map(|ip| ip.to_string()),
        "user_agent": viewer.user_agent,
        "connected_at": rfc3339(viewer.connected_at),
        "last_active": rfc3339(viewer.last_active),
        "bytes_sent": viewer.bytes_sent,
        "rate": viewer.rate,
    })
}

/// The same facts in the orchestrator's proxy shape (`/proxy/streams/{key}/clients`).
pub fn client(viewer: &ViewerSummary) -> Value {
    json!({
        "client_id": viewer.token.clone().unwrap_or_else(|| format!("viewer-{}", viewer.id)),
        "ip": viewer.ip.map(|ip| ip.to_string()),
        "user_agent": viewer.user_agent,
        "connected_at": rfc3339(viewer.connected_at),
        "last_active": rfc3339(viewer.last_active),
        "bytes_sent": viewer.bytes_sent,
    })
}

/// A webhook as `GET /webhooks` shows it.
pub fn webhook(url: &str, pending: i64, state: &WebhookState) -> Value {
    json!({
        "url": url,
        "pending": pending,
        "delivered": state.delivered,
        "last_delivered_at": state.last_delivered_at.map(rfc3339),
        "last_error": state.last_error.as_ref().map(|(message, at)| json!({ "message": message, "at": rfc3339(*at) })),
    })
}

/// An event as `GET /events` shows it.
pub fn event(event: &Event) -> Value {
    json!({
        "seq": event.seq,
        "event_id": event.event_id,
        "type": event.kind,
        "stream_id": event.stream.id,
        "at": rfc3339(event.at),
        "stream": stream(&event.stream),
    })
}

/// Every engine acemux knows, as `GET /engines` shows it: those of the command line,
/// the DNS and the engine lists (the pool, with their load and health) and those that
/// events named, by address. Today's fields (`host`, `port`, `container_id`,
/// `active_streams`, `last_seen`) plus `source` (`flag`, `dns`, `orchestrator`,
/// `event`: the first that names it), `sources` (all of them), `health`, `last_check`
/// (the last version probe), `sessions` (acemux's own on it) and `cap` (the most acemux
/// opens).
pub fn engines(pool: Option<&EnginePool>, events: &[EngineState], now: Instant) -> Value {
    let mut rows: BTreeMap<EngineAddr, Value> = BTreeMap::new();
    let cap = pool.map(EnginePool::max_sessions_per_engine);
    let by_event: BTreeMap<&EngineAddr, &EngineState> =
        events.iter().map(|state| (&state.engine, state)).collect();
    for load in pool.into_iter().flat_map(EnginePool::loads) {
        let event = by_event.get(&load.engine);
        let mut sources: Vec<&str> = load
            .listings
            .values()
            .map(|listing| listing.source)
            .collect::<BTreeSet<_>>()
            .into_iter()
            .map(EngineSource::as_str)
            .collect();
        if event.is_some() {
            sources.push("event");
        }
        let health = if load.listings.is_empty() {
            "unlisted"
        } else if !load.is_offered() {
            "draining"
        } else if !load.health.usable() {
            "down"
        } else if load.resting_until.is_some_and(|until| until > now) {
            "resting"
        } else if load.health.state == HealthState::Up {
            "ok"
        } else {
            // Usable, but no version probe has answered (yet, or probing is off).
            "unchecked"
        };
        rows.insert(
            load.engine.clone(),
            json!({
                "host": load.engine.host,
                "port": load.engine.port,
                "container_id": event
                    .and_then(|state| state.container_id.clone())
                    .or_else(|| load.container_id().map(str::to_owned)),
                "active_streams": event.map_or(0, |state| state.active_streams),
                "last_seen": event.map(|state| rfc3339(state.last_seen)),
                "source": sources.first(),
                "sources": sources,
                "health": health,
                "last_check": load.health.last_check.map(rfc3339),
                "consecutive_failures": load.consecutive_failures,
                "sessions": load.sessions,
                "cap": cap,
            }),
        );
    }
    for state in events {
        rows.entry(state.engine.clone()).or_insert_with(|| {
            json!({
                "host": state.engine.host,
                "port": state.engine.port,
                "container_id": state.container_id,
                "active_streams": state.active_streams,
                "last_seen": rfc3339(state.last_seen),
                "source": "event",
                "sources": ["event"],
                // Known only from what an orchestrator reported: acemux does not use it.
                "health": "unknown",
                "last_check": null,
                "consecutive_failures": 0,
                "sessions": 0,
                "cap": null,
            })
        });
    }
    Value::Array(rows.into_values().collect())
}
