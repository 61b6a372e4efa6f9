//! JSON shapes of the read API, with the orchestrator's field names.

use acemux_core::lifecycle::{EngineState, Event, StreamState};
use serde_json::{json, Value};

use crate::clock::rfc3339;

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

/// An engine as `GET /engines` shows it.
pub fn engine(engine: &EngineState) -> Value {
    json!({
        "host": engine.engine.host,
        "port": engine.engine.port,
        "container_id": engine.container_id,
        "active_streams": engine.active_streams,
        "last_seen": rfc3339(engine.last_seen),
    })
}
