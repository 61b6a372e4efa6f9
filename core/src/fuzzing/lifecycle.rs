//! The lifecycle registry under arbitrary starts, ends, clock moves and restarts, and
//! the event JSON the registry is fed from (`POST /events/stream_started` and
//! `/stream_ended`).

use std::collections::{BTreeMap, BTreeSet};

use super::reader::ByteReader;
use super::MAX_STEPS;
use crate::lifecycle::{
    EndReason, EngineAddr, Event, EventKind, Input, KeyType, LifecycleError, Output, Registry,
    RegistryConfig, SessionInfo, StreamEnded, StreamKey, StreamStarted, StreamState, StreamStatus,
};
use crate::time::{Duration, Instant};

/// Small pools, so that repeated ids and shared containers are frequent; the empty
/// strings and the control character make invalid fields.
const KEYS: [&str; 4] = ["k0", "k1", "k2", ""];
const SESSIONS: [&str; 3] = ["s0", "s1", "s\u{7}"];
const CONTAINERS: [&str; 3] = ["c0", "c1", "c2"];
const HOSTS: [&str; 3] = ["engine", "::1", ""];
/// `stream_id` labels; "k1|s1" collides with a derived id on purpose.
const LABEL_IDS: [&str; 3] = ["L0", "k1|s1", ""];
/// Ids an end may name: derived ones, labels, and ones that never start.
const END_IDS: [&str; 8] = ["k0|s0", "k0|s1", "k1|s0", "k1|s1", "L0", "ghost", "k0|", ""];

/// Drives a registry with a configuration and steps decoded from `data`; see
/// [`Checker`] for what is checked after every step.
pub fn lifecycle(data: &[u8]) {
    let mut reader = ByteReader::new(data);
    let config = RegistryConfig {
        seed: u64::from(reader.u8()),
        max_active_streams: reader.index(6),
        max_ended_streams: reader.index(5),
        ended_retention: Duration::from_secs(reader.below(60)),
        max_engines: reader.index(4),
    };
    let mut checker = Checker::new(config);
    let mut steps = 0;
    while !reader.is_empty() && steps < MAX_STEPS {
        steps += 1;
        match reader.below(16) {
            // Refusals are checked inside; the answer itself is not needed here.
            0..=5 => drop(checker.input(Input::Started(decode_start(&mut reader)))),
            6..=10 => drop(checker.input(Input::Ended(decode_end(&mut reader)))),
            11..=13 => {
                let micros = reader.below(20_000_000);
                checker.advance(Duration::from_micros(micros), reader.bool());
            }
            _ => checker.restart(),
        }
    }
}

fn pick<'a>(reader: &mut ByteReader<'_>, pool: &[&'a str]) -> &'a str {
    pool[reader.index(pool.len())]
}

fn maybe<'a>(reader: &mut ByteReader<'_>, pool: &[&'a str]) -> Option<&'a str> {
    // One slot past the pool means "absent".
    pool.get(reader.index(pool.len() + 1)).copied()
}

fn decode_start(reader: &mut ByteReader<'_>) -> StreamStarted {
    let key = pick(reader, &KEYS);
    let session = pick(reader, &SESSIONS);
    let mut labels = BTreeMap::new();
    if let Some(label) = maybe(reader, &LABEL_IDS) {
        labels.insert("stream_id".to_owned(), label.to_owned());
    }
    StreamStarted {
        container_id: maybe(reader, &CONTAINERS).map(str::to_owned),
        engine: EngineAddr {
            host: pick(reader, &HOSTS).to_owned(),
            // Port 0 is invalid.
            port: reader.below(3) as u16,
        },
        stream: StreamKey {
            key_type: KeyType::ContentId,
            key: key.to_owned(),
        },
        session: SessionInfo {
            playback_session_id: session.to_owned(),
            stat_url: format!("http://engine/stat/{session}"),
            command_url: format!("http://engine/cmd/{session}"),
            is_live: reader.bool(),
        },
        labels,
    }
}

fn decode_end(reader: &mut ByteReader<'_>) -> StreamEnded {
    StreamEnded {
        stream_id: maybe(reader, &END_IDS).map(str::to_owned),
        container_id: maybe(reader, &CONTAINERS).map(str::to_owned),
        reason: reader.bool().then(|| EndReason::from("gone")),
    }
}

/// Everything observable about a registry, for "unchanged" checks.
#[derive(Debug, PartialEq)]
pub(crate) struct Snapshot {
    pub(crate) streams: Vec<StreamState>,
    engines: Vec<crate::lifecycle::EngineState>,
    active: usize,
    last_seq: u64,
    deadline: Option<Instant>,
}

pub(crate) fn snapshot(registry: &Registry) -> Snapshot {
    Snapshot {
        streams: registry.streams().cloned().collect(),
        engines: registry.engines().cloned().collect(),
        active: registry.active_streams(),
        last_seq: registry.last_seq(),
        deadline: registry.poll_timeout(),
    }
}

/// A registry and what its outputs so far promise:
///
/// - a refused input emits nothing and changes nothing; an applied one emits exactly
///   one event when it updated the stream, of its kind, at `now`, else none;
/// - the outbox is numbered 1, 2, 3… across restarts and event ids never repeat;
/// - per stream id the events alternate started, ended, started (only once the ended
///   stream was forgotten)…;
/// - the counts agree: active streams, per-engine active streams, ended streams under
///   their cap, engines under theirs (or the stream cap), the deadline is the oldest
///   end's retention, and a wake-up forgets every end past it.
pub(crate) struct Checker {
    config: RegistryConfig,
    registry: Registry,
    now: Instant,
    outbox: Vec<Event>,
    event_ids: BTreeSet<String>,
    /// The kind of the latest event per stream id.
    latest: BTreeMap<String, EventKind>,
}

impl Checker {
    pub(crate) fn new(config: RegistryConfig) -> Self {
        Checker {
            registry: Registry::new(config.clone()),
            config,
            now: Instant::ZERO,
            outbox: Vec::new(),
            event_ids: BTreeSet::new(),
            latest: BTreeMap::new(),
        }
    }

    /// Applies `input` at the current time and checks the answer and the state.
    pub(crate) fn input(&mut self, input: Input) -> Result<(), LifecycleError> {
        let before = snapshot(&self.registry);
        let invalid = match &input {
            Input::Started(started) => started.validate().err(),
            Input::Ended(ended) => ended.validate().err(),
            Input::EndedElsewhere { started, .. } => started.validate().err(),
        };
        let kind = match input {
            Input::Started(_) => EventKind::StreamStarted,
            Input::Ended(_) | Input::EndedElsewhere { .. } => EventKind::StreamEnded,
        };
        let answer = self.registry.handle_input(self.now, input);
        let events = self.drain();
        match &answer {
            Err(error) => {
                assert!(events.is_empty(), "a refused input emitted {events:?}");
                assert_eq!(snapshot(&self.registry), before, "a refused input changed");
                if let Some(invalid) = invalid {
                    assert_eq!(*error, invalid, "validation comes first");
                }
            }
            Ok(outcome) => {
                assert_eq!(invalid, None, "an invalid input was applied");
                let status = match kind {
                    EventKind::StreamStarted => StreamStatus::Started,
                    EventKind::StreamEnded => StreamStatus::Ended,
                };
                assert_eq!(outcome.stream.status, status);
                if outcome.updated {
                    assert_eq!(events.len(), 1, "one event per update");
                    let event = &events[0];
                    assert_eq!((event.kind, event.at), (kind, self.now));
                    assert_eq!(event.stream, outcome.stream);
                } else {
                    assert!(events.is_empty(), "no event without an update");
                }
            }
        }
        self.check_state();
        answer.map(drop)
    }

    /// Moves the clock; with `wake`, the driver wakes the registry.
    pub(crate) fn advance(&mut self, by: Duration, wake: bool) {
        self.now = self.now + by;
        if wake {
            self.registry.handle_timeout(self.now);
            let events = self.drain();
            assert!(events.is_empty(), "a wake-up emitted {events:?}");
            let expired = self.registry.streams().any(|stream| {
                stream
                    .ended_at
                    .is_some_and(|at| at + self.config.ended_retention <= self.now)
            });
            assert!(!expired, "a wake-up kept an expired end");
        }
        self.check_state();
    }

    /// Rebuilds the registry from its streams and last sequence number, as a restart
    /// from the durable store does.
    pub(crate) fn restart(&mut self) {
        let streams: Vec<StreamState> = self.registry.streams().cloned().collect();
        let active = self.registry.active_streams();
        let last_seq = self.registry.last_seq();
        self.registry = Registry::restore(self.config.clone(), streams, last_seq);
        assert_eq!(self.drain(), Vec::new(), "a restart emitted events");
        assert_eq!(self.registry.active_streams(), active);
        assert_eq!(self.registry.last_seq(), last_seq);
        self.check_state();
    }

    fn drain(&mut self) -> Vec<Event> {
        let mut events = Vec::new();
        while let Some(Output::Event(event)) = self.registry.poll_output() {
            assert_eq!(event.seq, self.outbox.len() as u64 + 1, "outbox numbering");
            assert!(
                self.event_ids.insert(event.event_id.clone()),
                "event id {} repeated",
                event.event_id
            );
            let previous = self.latest.insert(event.stream.id.clone(), event.kind);
            match event.kind {
                EventKind::StreamStarted => assert_ne!(
                    previous,
                    Some(EventKind::StreamStarted),
                    "{} started twice",
                    event.stream.id
                ),
                EventKind::StreamEnded => assert_eq!(
                    previous,
                    Some(EventKind::StreamStarted),
                    "{} ended without a start",
                    event.stream.id
                ),
            }
            self.outbox.push(event.clone());
            events.push(event);
        }
        events
    }

    fn check_state(&self) {
        let registry = &self.registry;
        assert_eq!(registry.last_seq(), self.outbox.len() as u64);
        let streams: Vec<&StreamState> = registry.streams().collect();
        let started: Vec<&&StreamState> = streams
            .iter()
            .filter(|stream| stream.status == StreamStatus::Started)
            .collect();
        assert_eq!(registry.active_streams(), started.len());
        assert!(started.len() <= self.config.max_active_streams);
        let ended: Vec<Instant> = streams.iter().filter_map(|s| s.ended_at).collect();
        assert!(
            ended.len() <= self.config.max_ended_streams,
            "ended over cap"
        );
        for stream in &streams {
            assert_eq!(
                stream.ended_at.is_some(),
                stream.status == StreamStatus::Ended
            );
            assert!(stream.last_event_seq <= registry.last_seq());
            // The latest event about a known stream is the one it records.
            let latest = &self.outbox[(stream.last_event_seq - 1) as usize];
            assert_eq!(latest.stream.id, stream.id);
            assert_eq!(self.latest.get(&stream.id), Some(&latest.kind));
        }
        let deadline = ended
            .iter()
            .min()
            .map(|&at| at + self.config.ended_retention);
        assert_eq!(registry.poll_timeout(), deadline);

        let mut busy: BTreeMap<&EngineAddr, usize> = BTreeMap::new();
        for stream in &started {
            *busy.entry(&stream.engine).or_default() += 1;
        }
        let engines: BTreeMap<&EngineAddr, usize> = registry
            .engines()
            .map(|engine| (&engine.engine, engine.active_streams))
            .collect();
        for (engine, count) in &busy {
            assert_eq!(
                engines.get(engine),
                Some(count),
                "active streams of {engine}"
            );
        }
        let idle = engines.values().filter(|&&count| count == 0).count();
        assert_eq!(
            engines.len() - idle,
            busy.len(),
            "engines with active streams"
        );
        // Idle engines are forgotten when a start needs room, so the cap can be passed
        // by engines that went idle since; busy ones are bounded by the stream cap.
        let cap = self.config.max_engines.max(self.config.max_active_streams);
        assert!(engines.len() <= cap, "{} engines remembered", engines.len());
    }
}

/// Decodes `data` as an event body, as the event routes do: the first byte says which
/// route (`stream_started` or `stream_ended`), the rest is the JSON body. Whatever
/// decodes must survive a JSON round trip, and be applied or refused by a registry
/// that holds a stream, with the registry's promises kept.
pub fn lifecycle_events(data: &[u8]) {
    let Some((&route, body)) = data.split_first() else {
        return;
    };
    let mut checker = Checker::new(RegistryConfig::default());
    if route & 1 == 0 {
        let Ok(started) = serde_json::from_slice::<StreamStarted>(body) else {
            return;
        };
        let json = serde_json::to_vec(&started).expect("a decoded start encodes");
        let again: StreamStarted = serde_json::from_slice(&json).expect("and decodes");
        assert_eq!(again, started, "JSON round trip");
        let valid = started.validate().is_ok();
        let id = started.stream_id();
        let applied = checker.input(Input::Started(started.clone()));
        assert_eq!(
            applied.is_ok(),
            valid,
            "a valid start is applied: {applied:?}"
        );
        if valid {
            assert!(checker.input(Input::Started(started)).is_ok(), "idempotent");
            let end = StreamEnded {
                stream_id: Some(id),
                ..StreamEnded::default()
            };
            assert!(checker.input(Input::Ended(end)).is_ok(), "its end applies");
        }
    } else {
        let Ok(ended) = serde_json::from_slice::<StreamEnded>(body) else {
            return;
        };
        let json = serde_json::to_vec(&ended).expect("a decoded end encodes");
        let again: StreamEnded = serde_json::from_slice(&json).expect("and decodes");
        assert_eq!(again, ended, "JSON round trip");
        // A registry holding one stream on container "c", which the end may name.
        let mut known = StreamStarted {
            container_id: Some("c".into()),
            engine: EngineAddr {
                host: "engine".into(),
                port: 6878,
            },
            stream: StreamKey {
                key_type: KeyType::ContentId,
                key: "k".into(),
            },
            session: SessionInfo {
                playback_session_id: "s".into(),
                stat_url: String::new(),
                command_url: String::new(),
                is_live: true,
            },
            labels: BTreeMap::new(),
        };
        known.labels.insert("stream_id".into(), "k|s".into());
        checker
            .input(Input::Started(known))
            .expect("the fixture start is valid");
        let _ = checker.input(Input::Ended(ended.clone()));
        // An end is idempotent: the same end again is applied without an update, or
        // refused the same way.
        let _ = checker.input(Input::Ended(ended));
    }
}
