//! One behaviour per test.

use super::*;
use crate::lifecycle::{EndReason, EventKind, RegistryConfig, StreamStatus};
use crate::rng::derived_uuid;
use crate::time::Duration;

pub(super) fn registry() -> Registry {
    Registry::new(RegistryConfig::default())
}

fn with_config(edit: impl FnOnce(&mut RegistryConfig)) -> Registry {
    let mut config = RegistryConfig::default();
    edit(&mut config);
    Registry::new(config)
}

/// Starts a new stream, asserting that it is new; returns its state.
#[track_caller]
pub(super) fn started(registry: &mut Registry, now: Instant, start: StreamStarted) -> StreamState {
    let outcome = registry.handle_input(now, Input::Started(start)).unwrap();
    assert!(outcome.updated, "expected a new stream");
    assert_eq!(outcome.stream.status, StreamStatus::Started);
    outcome.stream
}

/// Ends a started stream, asserting that it was active; returns its state.
#[track_caller]
pub(super) fn ended(registry: &mut Registry, now: Instant, end: StreamEnded) -> StreamState {
    let outcome = registry.handle_input(now, Input::Ended(end)).unwrap();
    assert!(outcome.updated, "expected an active stream to end");
    assert_eq!(outcome.stream.status, StreamStatus::Ended);
    outcome.stream
}

/// Refuses a start with exactly `error`, changing nothing.
#[track_caller]
pub(super) fn refuse_start(
    registry: &mut Registry,
    now: Instant,
    start: StreamStarted,
    error: LifecycleError,
) {
    assert_refused(registry, now, Input::Started(start), error);
}

/// Refuses an end with exactly `error`, changing nothing.
#[track_caller]
pub(super) fn refuse_end(
    registry: &mut Registry,
    now: Instant,
    end: StreamEnded,
    error: LifecycleError,
) {
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
