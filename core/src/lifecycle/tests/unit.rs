//! One behaviour per test.

use super::*;
use crate::lifecycle::{
    EndReason, EventKind, RegistryConfig, StreamStatus, MAX_ID_BYTES, MAX_LABELS, MAX_TEXT_BYTES,
};
use crate::rng::derived_uuid;
use crate::time::Duration;

fn registry() -> Registry {
    Registry::new(RegistryConfig::default())
}

fn with_config(edit: impl FnOnce(&mut RegistryConfig)) -> Registry {
    let mut config = RegistryConfig::default();
    edit(&mut config);
    Registry::new(config)
}

/// Starts a new stream, asserting that it is new; returns its state.
#[track_caller]
fn started(registry: &mut Registry, now: Instant, start: StreamStarted) -> StreamState {
    let outcome = registry.handle_input(now, Input::Started(start)).unwrap();
    assert!(outcome.updated, "expected a new stream");
    assert_eq!(outcome.stream.status, StreamStatus::Started);
    outcome.stream
}

/// Ends a started stream, asserting that it was active; returns its state.
#[track_caller]
fn ended(registry: &mut Registry, now: Instant, end: StreamEnded) -> StreamState {
    let outcome = registry.handle_input(now, Input::Ended(end)).unwrap();
    assert!(outcome.updated, "expected an active stream to end");
    assert_eq!(outcome.stream.status, StreamStatus::Ended);
    outcome.stream
}

/// Refuses a start with exactly `error`, changing nothing.
#[track_caller]
fn refuse_start(
    registry: &mut Registry,
    now: Instant,
    start: StreamStarted,
    error: LifecycleError,
) {
    assert_refused(registry, now, Input::Started(start), error);
}

/// Refuses an end with exactly `error`, changing nothing.
#[track_caller]
fn refuse_end(registry: &mut Registry, now: Instant, end: StreamEnded, error: LifecycleError) {
    assert_refused(registry, now, Input::Ended(end), error);
}

fn status(registry: &Registry, id: &str) -> Option<StreamStatus> {
    registry.stream(id).map(|stream| stream.status)
}

fn kinds(events: &[Event]) -> Vec<(u64, EventKind, &str)> {
    events
        .iter()
        .map(|event| (event.seq, event.kind, event.stream.id.as_str()))
        .collect()
}

// ---------------------------------------------------------------- stream ids

#[test]
fn stream_id_is_the_stream_id_label_when_present() {
    let mut registry = registry();
    let mut start = start("abc", "p1", None);
    start.labels.insert("stream_id".into(), "custom-7".into());
    assert_eq!(start.stream_id(), "custom-7");
    assert_eq!(started(&mut registry, secs(1), start).id, "custom-7");
    assert_eq!(status(&registry, "custom-7"), Some(StreamStatus::Started));
    assert_eq!(status(&registry, "abc|p1"), None);
}

#[test]
fn stream_id_is_key_pipe_session_without_the_label() {
    let mut registry = registry();
    let mut start = start("abc", "p1", None);
    start.labels.insert("channel".into(), "news".into());
    assert_eq!(started(&mut registry, secs(1), start).id, "abc|p1");
    assert_eq!(status(&registry, "abc|p1"), Some(StreamStatus::Started));
}

// -------------------------------------------------------------------- starts

#[test]
fn repeated_start_returns_the_same_state_without_a_second_event() {
    let mut registry = registry();
    let first = started(&mut registry, secs(1), start("abc", "p1", Some("c1")));
    assert_eq!(drain(&mut registry).len(), 1);

    let again = registry
        .handle_input(secs(5), Input::Started(start("abc", "p1", Some("c1"))))
        .unwrap();
    assert!(!again.updated);
    assert_eq!(again.stream, first);
    assert_eq!(again.stream.started_at, secs(1));
    assert_eq!(drain(&mut registry), Vec::new());
    assert_eq!(registry.last_seq(), 1);
    assert_eq!(registry.active_streams(), 1);
}

#[test]
fn start_for_an_ended_id_is_already_ended() {
    let mut registry = registry();
    started(&mut registry, secs(1), start("abc", "p1", None));
    ended(&mut registry, secs(2), end_id("abc|p1", None));
    drain(&mut registry);
    let error = LifecycleError::AlreadyEnded {
        id: "abc|p1".into(),
    };
    refuse_start(&mut registry, secs(3), start("abc", "p1", None), error);
}

// ---------------------------------------------------------------------- ends

#[test]
fn end_pairs_with_its_start() {
    let mut registry = registry();
    let begun = started(&mut registry, secs(1), start("abc", "p1", Some("c1")));
    let mut end = end_id("abc|p1", None);
    end.reason = Some("eof".into());
    let over = ended(&mut registry, secs(4), end);

    assert_eq!(over.started_at, secs(1));
    assert_eq!(over.ended_at, Some(secs(4)));
    assert_eq!(
        over.end_reason.as_ref().map(|reason| reason.as_str()),
        Some("eof")
    );
    assert_eq!(over.container_id, begun.container_id);
    assert_eq!(registry.stream("abc|p1"), Some(&over));
    assert_eq!(registry.active_streams(), 0);
    let events = drain(&mut registry);
    assert_eq!(
        kinds(&events),
        [
            (1, EventKind::StreamStarted, "abc|p1"),
            (2, EventKind::StreamEnded, "abc|p1")
        ]
    );
}

#[test]
fn repeated_end_returns_the_ended_state_without_an_event() {
    let mut registry = registry();
    started(&mut registry, secs(1), start("abc", "p1", None));
    let first = ended(&mut registry, secs(2), end_id("abc|p1", None));
    drain(&mut registry);

    let mut again = end_id("abc|p1", None);
    again.reason = Some("later report".into());
    let outcome = registry.handle_input(secs(9), Input::Ended(again)).unwrap();
    assert!(!outcome.updated);
    assert_eq!(outcome.stream, first);
    assert_eq!(drain(&mut registry), Vec::new());
    assert_eq!(registry.last_seq(), 2);
}

#[test]
fn end_for_an_unknown_id_is_unknown_stream_and_touches_nothing() {
    let mut registry = registry();
    started(&mut registry, secs(1), start("abc", "p1", Some("c1")));
    started(&mut registry, secs(1), start("def", "p2", Some("c2")));
    drain(&mut registry);
    let error = LifecycleError::UnknownStream {
        id: "abc|p2".into(),
    };
    refuse_end(&mut registry, secs(2), end_id("abc|p2", None), error);
    assert_eq!(registry.active_streams(), 2);
}

#[test]
fn end_by_container_ends_the_one_active_stream_on_it() {
    let mut registry = registry();
    started(&mut registry, secs(1), start("abc", "p1", Some("c1")));
    started(&mut registry, secs(1), start("def", "p2", Some("c2")));
    assert_eq!(
        ended(&mut registry, secs(2), end_container("c1")).id,
        "abc|p1"
    );
    assert_eq!(status(&registry, "def|p2"), Some(StreamStatus::Started));
    assert_eq!(registry.active_streams(), 1);
}

#[test]
fn end_by_container_skips_streams_already_ended_on_it() {
    let mut registry = registry();
    started(&mut registry, secs(1), start("abc", "p1", Some("c1")));
    ended(&mut registry, secs(2), end_id("abc|p1", None));
    started(&mut registry, secs(3), start("abc", "p2", Some("c1")));
    assert_eq!(
        ended(&mut registry, secs(4), end_container("c1")).id,
        "abc|p2"
    );
}

#[test]
fn end_by_container_without_an_active_stream_is_no_active_stream() {
    let mut registry = registry();
    started(&mut registry, secs(1), start("abc", "p1", Some("c1")));
    ended(&mut registry, secs(2), end_id("abc|p1", None));
    drain(&mut registry);
    for container in ["c1", "never-seen"] {
        let error = LifecycleError::NoActiveStream {
            container_id: container.into(),
        };
        refuse_end(&mut registry, secs(3), end_container(container), error);
    }
}

#[test]
fn end_by_container_with_several_active_streams_is_ambiguous() {
    let mut registry = registry();
    started(&mut registry, secs(1), start("abc", "p1", Some("c1")));
    started(&mut registry, secs(1), start("def", "p2", Some("c1")));
    drain(&mut registry);
    let error = LifecycleError::AmbiguousEnd {
        container_id: "c1".into(),
        active: 2,
    };
    refuse_end(&mut registry, secs(2), end_container("c1"), error);

    started(&mut registry, secs(3), start("ghi", "p3", Some("c1")));
    drain(&mut registry);
    let error = LifecycleError::AmbiguousEnd {
        container_id: "c1".into(),
        active: 3,
    };
    refuse_end(&mut registry, secs(4), end_container("c1"), error);
}

#[test]
fn end_without_stream_or_container_is_missing_target() {
    let mut registry = registry();
    started(&mut registry, secs(1), start("abc", "p1", Some("c1")));
    drain(&mut registry);
    let end = StreamEnded {
        reason: Some("eof".into()),
        ..StreamEnded::default()
    };
    let error = LifecycleError::MissingTarget;
    refuse_end(&mut registry, secs(2), end, error);
}

#[test]
fn end_naming_the_stream_on_another_container_is_container_mismatch() {
    let mut registry = registry();
    started(&mut registry, secs(1), start("abc", "p1", Some("c1")));
    drain(&mut registry);
    let error = LifecycleError::ContainerMismatch {
        id: "abc|p1".into(),
        container_id: "c2".into(),
    };
    refuse_end(&mut registry, secs(2), end_id("abc|p1", Some("c2")), error);
}

#[test]
fn end_naming_the_stream_and_its_own_container_ends_it() {
    let mut registry = registry();
    started(&mut registry, secs(1), start("abc", "p1", Some("c1")));
    assert_eq!(
        ended(&mut registry, secs(2), end_id("abc|p1", Some("c1"))).id,
        "abc|p1"
    );
}

// ------------------------------------------------------------------- engines

#[test]
fn engines_are_learned_with_their_active_stream_counts() {
    fn counts(registry: &Registry) -> Vec<(u16, Option<&str>, usize, Instant)> {
        let engines = registry.engines();
        engines
            .map(|e| {
                (
                    e.engine.port,
                    e.container_id.as_deref(),
                    e.active_streams,
                    e.last_seen,
                )
            })
            .collect()
    }
    let mut registry = registry();
    let mut on_other = start("ghi", "p3", Some("c2"));
    on_other.engine.port = PORT + 1;
    started(&mut registry, secs(1), start("abc", "p1", Some("c1")));
    started(&mut registry, secs(2), start("def", "p2", Some("c1")));
    started(&mut registry, secs(3), on_other);
    assert_eq!(
        counts(&registry),
        [
            (PORT, Some("c1"), 2, secs(2)),
            (PORT + 1, Some("c2"), 1, secs(3))
        ]
    );

    ended(&mut registry, secs(4), end_id("abc|p1", None));
    assert_eq!(
        counts(&registry),
        [
            (PORT, Some("c1"), 1, secs(4)),
            (PORT + 1, Some("c2"), 1, secs(3))
        ]
    );
    ended(&mut registry, secs(5), end_id("def|p2", None));
    assert_eq!(
        counts(&registry),
        [
            (PORT, Some("c1"), 0, secs(5)),
            (PORT + 1, Some("c2"), 1, secs(3))
        ]
    );
}

// -------------------------------------------------------------------- outbox

#[test]
fn events_are_numbered_from_one_without_gaps_and_carry_kind_snapshot_and_time() {
    let mut registry = registry();
    let a = started(&mut registry, secs(1), start("abc", "p1", None));
    let b = started(&mut registry, secs(2), start("def", "p2", None));
    let a_over = ended(&mut registry, secs(3), end_id("abc|p1", None));
    let b_over = ended(&mut registry, secs(3), end_id("def|p2", None));
    let events = drain(&mut registry);
    let expected = [
        (1, EventKind::StreamStarted, a, secs(1)),
        (2, EventKind::StreamStarted, b, secs(2)),
        (3, EventKind::StreamEnded, a_over, secs(3)),
        (4, EventKind::StreamEnded, b_over, secs(3)),
    ];
    assert_eq!(events.len(), expected.len());
    for (event, (seq, kind, stream, at)) in events.iter().zip(expected) {
        assert_eq!((event.seq, event.kind, event.at), (seq, kind, at));
        assert_eq!(event.stream.last_event_seq, seq);
        assert_eq!(event.stream, stream);
    }
    assert_eq!(registry.last_seq(), 4);
}

#[test]
fn event_ids_are_distinct_and_derived_from_the_seed() {
    fn ids(seed: u64) -> Vec<String> {
        let mut registry = with_config(|config| config.seed = seed);
        for (n, key) in ["a", "b", "c"].into_iter().enumerate() {
            started(&mut registry, secs(n as u64), start(key, "p", None));
            ended(
                &mut registry,
                secs(n as u64 + 1),
                end_id(&format!("{key}|p"), None),
            );
        }
        let events = drain(&mut registry);
        for event in &events {
            assert_eq!(event.event_id, derived_uuid(seed, event.seq));
        }
        events.into_iter().map(|event| event.event_id).collect()
    }
    let seven = ids(7);
    assert_eq!(seven.len(), 6);
    assert_eq!(ids(7), seven);
    let eight = ids(8);
    let distinct: std::collections::BTreeSet<_> = seven.iter().chain(&eight).collect();
    assert_eq!(
        distinct.len(),
        12,
        "ids repeat within a seed or across seeds"
    );
}

// ---------------------------------------------------------------- validation

const EMPTY: &str = "must not be empty";
const CONTROL: &str = "contains control characters";
const LONG_ID: &str = "longer than 512 bytes";
const LONG_TEXT: &str = "longer than 2048 bytes";

#[test]
fn invalid_starts_are_refused_naming_the_field() {
    fn label(name: &'static str, value: &str) -> impl Fn(&mut StreamStarted) {
        let value = value.to_owned();
        move |s| drop(s.labels.insert(name.into(), value.clone()))
    }
    let long_id = "x".repeat(MAX_ID_BYTES + 1);
    let long_url = "x".repeat(MAX_TEXT_BYTES + 1);
    let mut registry = registry();
    started(&mut registry, secs(1), start("def", "p0", Some("c1")));
    drain(&mut registry);
    let base = start("abc", "p1", Some("c1"));
    let mut refuse = |field, reason, edit: &dyn Fn(&mut StreamStarted)| {
        let mut invalid = base.clone();
        edit(&mut invalid);
        let error = LifecycleError::Invalid { field, reason };
        refuse_start(&mut registry, secs(2), invalid, error);
    };
    refuse("stream.key", EMPTY, &|s| s.stream.key.clear());
    refuse("stream.key", CONTROL, &|s| s.stream.key.push('\n'));
    refuse("stream.key", LONG_ID, &|s| {
        s.stream.key.clone_from(&long_id)
    });
    let session_id = "session.playback_session_id";
    refuse(session_id, EMPTY, &|s| {
        s.session.playback_session_id.clear()
    });
    let container = |id: &str| Some(id.to_owned());
    refuse("container_id", CONTROL, &|s| {
        s.container_id = container("c\u{7f}")
    });
    refuse("container_id", LONG_ID, &|s| {
        s.container_id = container(&long_id)
    });
    refuse("container_id", EMPTY, &|s| s.container_id = container(""));
    refuse("engine.port", "must be 1..=65535", &|s| s.engine.port = 0);
    refuse("engine.host", EMPTY, &|s| s.engine.host.clear());
    let stat_url = "session.stat_url";
    refuse(stat_url, LONG_TEXT, &|s| {
        s.session.stat_url.clone_from(&long_url)
    });
    let command_url = "session.command_url";
    refuse(command_url, CONTROL, &|s| s.session.command_url.push('\0'));
    let too_many = (0..=MAX_LABELS).map(|n| (n.to_string(), String::new()));
    let too_many: BTreeMap<String, String> = too_many.collect();
    refuse("labels", "too many labels", &|s| {
        s.labels.clone_from(&too_many)
    });
    refuse("labels value", CONTROL, &label("note", "a\tb"));
    refuse("labels.stream_id", EMPTY, &label("stream_id", ""));
    refuse("labels.stream_id", LONG_ID, &label("stream_id", &long_id));
    // The derived id "{key}|{session}" is a stream id too, and must fit in an end.
    refuse("stream_id", LONG_ID, &|s| {
        s.stream.key = "k".repeat(300);
        s.session.playback_session_id = "p".repeat(300);
    });

    // Refusals leave no gap in the numbering.
    started(&mut registry, secs(3), base);
    assert_eq!(drain(&mut registry)[0].seq, 2);
}

#[test]
fn invalid_ends_are_refused_naming_the_field() {
    let mut registry = registry();
    started(&mut registry, secs(1), start("abc", "p1", Some("c1")));
    drain(&mut registry);
    let mut refuse = |end, field, reason| {
        let error = LifecycleError::Invalid { field, reason };
        refuse_end(&mut registry, secs(2), end, error);
    };
    refuse(end_id("", None), "stream_id", EMPTY);
    refuse(
        end_id(&"x".repeat(MAX_ID_BYTES + 1), None),
        "stream_id",
        LONG_ID,
    );
    refuse(end_id("abc|p1", Some("c\t1")), "container_id", CONTROL);
    refuse(end_container(""), "container_id", EMPTY);
    let reason = Some("r".repeat(MAX_TEXT_BYTES + 1).into());
    refuse(
        StreamEnded {
            reason,
            ..end_id("abc|p1", None)
        },
        "reason",
        LONG_TEXT,
    );
}

#[test]
fn fields_at_their_limits_are_accepted() {
    let mut registry = registry();
    let session = "p1";
    // The derived id is exactly MAX_ID_BYTES long.
    let key = "k".repeat(MAX_ID_BYTES - 1 - session.len());
    let mut start = start(&key, session, Some(&"c".repeat(MAX_ID_BYTES)));
    start.session.stat_url = "u".repeat(MAX_TEXT_BYTES);
    start.labels = (0..MAX_LABELS)
        .map(|n| (n.to_string(), "v".into()))
        .collect();
    let id = started(&mut registry, secs(1), start).id;
    assert_eq!(id.len(), MAX_ID_BYTES);
    // ... and the stream can be ended by that id.
    assert_eq!(ended(&mut registry, secs(2), end_id(&id, None)).id, id);
}

// ------------------------------------------------------------------ capacity

#[test]
fn start_beyond_max_active_streams_is_capacity() {
    let mut registry = with_config(|config| config.max_active_streams = 2);
    started(&mut registry, secs(1), start("a", "p", None));
    started(&mut registry, secs(1), start("b", "p", None));
    drain(&mut registry);
    let error = LifecycleError::Capacity { limit: 2 };
    refuse_start(&mut registry, secs(2), start("c", "p", None), error);
    // A repeated start of a known stream is not a new stream, so it is not refused.
    let repeat = registry.handle_input(secs(2), Input::Started(start("a", "p", None)));
    assert!(!repeat.unwrap().updated);
}

#[test]
fn capacity_is_freed_when_a_stream_ends() {
    let mut registry = with_config(|config| config.max_active_streams = 1);
    started(&mut registry, secs(1), start("a", "p", None));
    ended(&mut registry, secs(2), end_id("a|p", None));
    assert_eq!(
        started(&mut registry, secs(3), start("b", "p", None)).id,
        "b|p"
    );
}

// ------------------------------------------------------------------ retention

fn retaining(retention_secs: u64, max_ended_streams: usize) -> Registry {
    with_config(|config| {
        config.ended_retention = Duration::from_secs(retention_secs);
        config.max_ended_streams = max_ended_streams;
    })
}

#[test]
fn poll_timeout_is_the_oldest_end_plus_retention() {
    let mut registry = retaining(60, 100);
    started(&mut registry, secs(1), start("a", "p", None));
    started(&mut registry, secs(1), start("b", "p", None));
    assert_eq!(registry.poll_timeout(), None);
    ended(&mut registry, secs(10), end_id("a|p", None));
    assert_eq!(registry.poll_timeout(), Some(secs(70)));
    ended(&mut registry, secs(20), end_id("b|p", None));
    assert_eq!(registry.poll_timeout(), Some(secs(70)));
}

#[test]
fn handle_timeout_at_the_deadline_forgets_the_ended_stream() {
    let mut registry = retaining(60, 100);
    started(&mut registry, secs(1), start("a", "p", None));
    ended(&mut registry, secs(10), end_id("a|p", None));
    started(&mut registry, secs(20), start("b", "p", None));
    ended(&mut registry, secs(30), end_id("b|p", None));
    drain(&mut registry);

    registry.handle_timeout(Instant::from_micros(secs(70).as_micros() - 1));
    assert_eq!(status(&registry, "a|p"), Some(StreamStatus::Ended));
    registry.handle_timeout(secs(70));
    assert_eq!(status(&registry, "a|p"), None);
    assert_eq!(status(&registry, "b|p"), Some(StreamStatus::Ended));
    assert_eq!(registry.poll_timeout(), Some(secs(90)));
    assert_eq!(drain(&mut registry), Vec::new());
    let error = LifecycleError::UnknownStream { id: "a|p".into() };
    refuse_end(&mut registry, secs(71), end_id("a|p", None), error);
}

#[test]
fn start_for_a_forgotten_id_is_a_new_stream() {
    let mut registry = retaining(60, 100);
    started(&mut registry, secs(1), start("a", "p", None));
    ended(&mut registry, secs(10), end_id("a|p", None));
    registry.handle_timeout(secs(70));
    drain(&mut registry);

    let again = started(&mut registry, secs(80), start("a", "p", None));
    assert_eq!((again.started_at, again.ended_at), (secs(80), None));
    let events = drain(&mut registry);
    assert_eq!(kinds(&events), [(3, EventKind::StreamStarted, "a|p")]);
    assert_eq!(registry.active_streams(), 1);
}

#[test]
fn max_ended_streams_forgets_the_oldest_first() {
    let mut registry = retaining(60, 2);
    for (n, key) in ["a", "b", "c"].into_iter().enumerate() {
        started(&mut registry, secs(0), start(key, "p", None));
        ended(
            &mut registry,
            secs(n as u64 + 1),
            end_id(&format!("{key}|p"), None),
        );
    }
    let ids: Vec<_> = registry
        .streams()
        .map(|stream| stream.id.as_str())
        .collect();
    assert_eq!(ids, ["b|p", "c|p"]);
    assert_eq!(registry.poll_timeout(), Some(secs(62)));
}

// ------------------------------------------------------------------- restore

/// A registry with streams on two engines, one ended; events drained.
fn history() -> Registry {
    let mut registry = with_config(|config| config.seed = 3);
    let mut elsewhere = start("b", "p", Some("c2"));
    elsewhere.engine.port = PORT + 1;
    started(&mut registry, secs(1), start("a", "p", Some("c1")));
    started(&mut registry, secs(2), elsewhere);
    started(&mut registry, secs(3), start("c", "p", Some("c1")));
    ended(&mut registry, secs(4), end_id("b|p", None));
    drain(&mut registry);
    registry
}

fn restored(original: &Registry) -> Registry {
    let config = RegistryConfig {
        seed: 3,
        ..RegistryConfig::default()
    };
    Registry::restore(
        config,
        original.streams().cloned().collect(),
        original.last_seq(),
    )
}

#[test]
fn restored_registry_continues_numbering_after_last_seq() {
    let mut original = history();
    let mut restored = restored(&original);
    assert_eq!(restored.last_seq(), 4);
    for registry in [&mut original, &mut restored] {
        started(registry, secs(5), start("d", "p", None));
        ended(registry, secs(6), end_id("a|p", None));
    }
    let events = drain(&mut restored);
    assert_eq!(
        kinds(&events),
        [
            (5, EventKind::StreamStarted, "d|p"),
            (6, EventKind::StreamEnded, "a|p")
        ]
    );
    assert_eq!(events, drain(&mut original));
}

#[test]
fn restored_registry_keeps_active_streams_and_engines() {
    fn busy(registry: &Registry) -> Vec<(u16, Option<String>, usize)> {
        let engines = registry
            .engines()
            .filter(|engine| engine.active_streams > 0);
        engines
            .map(|e| (e.engine.port, e.container_id.clone(), e.active_streams))
            .collect()
    }
    let original = history();
    let mut restored = restored(&original);
    assert_eq!(restored.active_streams(), 2);
    assert_eq!(busy(&restored), [(PORT, Some("c1".to_owned()), 2)]);
    assert_eq!(busy(&restored), busy(&original));
    assert_eq!(snapshot(&restored).streams, snapshot(&original).streams);

    ended(&mut restored, secs(5), end_id("a|p", None));
    assert_eq!(busy(&restored), [(PORT, Some("c1".to_owned()), 1)]);
    assert_eq!(restored.active_streams(), 1);
}

#[test]
fn restored_registry_refuses_a_start_for_a_restored_ended_id() {
    let original = history();
    let mut restored = restored(&original);
    let error = LifecycleError::AlreadyEnded { id: "b|p".into() };
    refuse_start(&mut restored, secs(5), start("b", "p", None), error);
}

#[test]
fn restored_registry_keeps_the_retention_deadline() {
    let original = history();
    assert_eq!(
        original.poll_timeout(),
        Some(secs(4) + Duration::from_secs(24 * 3600))
    );
    assert_eq!(restored(&original).poll_timeout(), original.poll_timeout());
}

// ---------------------------------------------------------------------- JSON

const ORCHESTRATOR_START: &str = r#"{"container_id":"c1","engine":{"host":"gluetun","port":19000},"stream":{"key_type":"content_id","key":"abc"},"session":{"playback_session_id":"p1","stat_url":"http://x/stat","command_url":"http://x/cmd","is_live":1},"labels":{},"extra_unknown_field":true}"#;

#[test]
fn orchestrator_start_body_deserializes_ignoring_unknown_fields() {
    let start: StreamStarted = serde_json::from_str(ORCHESTRATOR_START).unwrap();
    let expected = StreamStarted {
        container_id: Some("c1".into()),
        engine: EngineAddr {
            host: "gluetun".into(),
            port: 19000,
        },
        stream: StreamKey {
            key_type: KeyType::ContentId,
            key: "abc".into(),
        },
        session: SessionInfo {
            playback_session_id: "p1".into(),
            stat_url: "http://x/stat".into(),
            command_url: "http://x/cmd".into(),
            is_live: true,
        },
        labels: BTreeMap::new(),
    };
    assert_eq!(start, expected);
    assert_eq!(started(&mut registry(), secs(1), start).id, "abc|p1");
}

fn with_is_live(value: &str) -> Result<StreamStarted, serde_json::Error> {
    serde_json::from_str(
        &ORCHESTRATOR_START.replace(r#""is_live":1"#, &format!(r#""is_live":{value}"#)),
    )
}

#[test]
fn is_live_accepts_zero_one_true_and_false() {
    for (value, expected) in [("0", false), ("1", true), ("false", false), ("true", true)] {
        assert_eq!(
            with_is_live(value).unwrap().session.is_live,
            expected,
            "is_live {value}"
        );
    }
}

#[test]
fn is_live_rejects_other_values() {
    for value in ["2", "-1", r#""1""#, "null"] {
        assert!(with_is_live(value).is_err(), "is_live {value} was accepted");
    }
}

#[test]
fn start_body_without_engine_is_rejected() {
    let body = ORCHESTRATOR_START.replace(r#""engine":{"host":"gluetun","port":19000},"#, "");
    let error = serde_json::from_str::<StreamStarted>(&body).unwrap_err();
    assert!(error.to_string().contains("engine"), "{error}");
}

#[test]
fn end_body_fields_are_all_optional() {
    let empty: StreamEnded = serde_json::from_str("{}").unwrap();
    assert_eq!(empty, StreamEnded::default());
    let body = r#"{"stream_id":"abc|p1","container_id":"c1","reason":"eof","extra":[1]}"#;
    let full: StreamEnded = serde_json::from_str(body).unwrap();
    let expected = StreamEnded {
        container_id: Some("c1".into()),
        stream_id: Some("abc|p1".into()),
        reason: Some("eof".into()),
    };
    assert_eq!(full, expected);
    let only_container: StreamEnded = serde_json::from_str(r#"{"container_id":"c1"}"#).unwrap();
    assert_eq!(only_container, end_container("c1"));
}

#[test]
fn an_end_of_a_stream_started_elsewhere_is_one_ended_event_and_repeats_change_nothing() {
    let mut registry = registry();
    let start = start("c", "s1", None);
    let id = start.stream_id();
    let input = Input::EndedElsewhere {
        started: Box::new(start.clone()),
        started_at: secs(1),
        reason: EndReason::OwnerLost,
    };
    let outcome = registry.handle_input(secs(5), input.clone()).unwrap();
    assert!(outcome.updated);
    assert_eq!(outcome.stream.status, StreamStatus::Ended);
    assert_eq!(outcome.stream.started_at, secs(1));
    assert_eq!(outcome.stream.end_reason, Some(EndReason::OwnerLost));
    assert_eq!(registry.active_streams(), 0);
    assert_eq!(
        kinds(&drain(&mut registry)),
        vec![(1, EventKind::StreamEnded, id.as_str())]
    );
    let again = registry.handle_input(secs(6), input).unwrap();
    assert!(!again.updated);
    assert!(drain(&mut registry).is_empty());
    refuse_start(
        &mut registry,
        secs(7),
        start,
        LifecycleError::AlreadyEnded { id },
    );

    // A stream started here is ended as any end by id.
    let here = start_here(&mut registry);
    let outcome = registry
        .handle_input(
            secs(9),
            Input::EndedElsewhere {
                started: Box::new(here),
                started_at: secs(0),
                reason: EndReason::OwnerLost,
            },
        )
        .unwrap();
    assert!(outcome.updated);
    assert_eq!(outcome.stream.started_at, secs(8));
    assert_eq!(registry.active_streams(), 0);
}

fn start_here(registry: &mut Registry) -> StreamStarted {
    let here = start("d", "s2", None);
    started(registry, secs(8), here.clone());
    drain(registry);
    here
}
