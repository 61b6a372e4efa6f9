//! Tests of the lifecycle registry: behaviour by behaviour in `unit`, what it takes in
//! (field validation, the JSON bodies) in `input`, and a model-based property test in
//! `model`.

mod input;
mod model;
mod unit;

use crate::fuzzing::lifecycle::snapshot;
use std::collections::BTreeMap;

use super::{
    EngineAddr, Event, Input, KeyType, LifecycleError, Outcome, Output, Registry, RegistryConfig,
    SessionInfo, StreamEnded, StreamKey, StreamStarted, StreamState,
};
use crate::time::Instant;

/// The engine every fixture stream plays on unless a test moves it.
const PORT: u16 = 6878;

/// `s` seconds after the driver started.
fn secs(s: u64) -> Instant {
    Instant::from_micros(s * 1_000_000)
}

/// A valid start of `key` in playback session `session`, on engine `engine:6878`.
fn start(key: &str, session: &str, container: Option<&str>) -> StreamStarted {
    StreamStarted {
        container_id: container.map(str::to_owned),
        engine: EngineAddr {
            host: "engine".into(),
            port: PORT,
        },
        stream: StreamKey {
            key_type: KeyType::ContentId,
            key: key.into(),
        },
        session: SessionInfo {
            playback_session_id: session.into(),
            stat_url: format!("http://engine:{PORT}/stat/{session}"),
            command_url: format!("http://engine:{PORT}/cmd/{session}"),
            is_live: true,
        },
        labels: BTreeMap::new(),
    }
}

/// An end naming the stream (and optionally its container).
fn end_id(id: &str, container: Option<&str>) -> StreamEnded {
    StreamEnded {
        stream_id: Some(id.into()),
        container_id: container.map(str::to_owned),
        reason: None,
    }
}

/// An end naming only the container.
fn end_container(container: &str) -> StreamEnded {
    StreamEnded {
        container_id: Some(container.into()),
        ..StreamEnded::default()
    }
}

/// Every event the registry has queued, in order.
fn drain(registry: &mut Registry) -> Vec<Event> {
    let mut events = Vec::new();
    while let Some(Output::Event(event)) = registry.poll_output() {
        events.push(event);
    }
    events
}

/// Applies `input`, expecting exactly `expected`, no event, and no change at all.
/// The registry's queue must be drained before.
#[track_caller]
fn assert_refused(registry: &mut Registry, now: Instant, input: Input, expected: LifecycleError) {
    let before = snapshot(registry);
    assert_eq!(registry.handle_input(now, input), Err(expected));
    assert_eq!(
        drain(registry),
        Vec::new(),
        "a refused input emitted an event"
    );
    assert_eq!(
        snapshot(registry),
        before,
        "a refused input changed the registry"
    );
}

/// The outcome of starting stream `key` (session `p1`) in a fresh registry.
pub(super) fn outcome_for(key: &str) -> Outcome {
    let mut registry = Registry::new(RegistryConfig::default());
    registry
        .handle_input(secs(1), Input::Started(start(key, "p1", None)))
        .expect("a valid start")
}
