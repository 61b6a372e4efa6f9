//! Model-based property test: random sequences of starts, ends, clock advances
//! and restarts, applied to the registry and to a plain reference model.

use std::collections::{BTreeMap, BTreeSet};

use proptest::prelude::*;
use proptest::sample::select;
use proptest_state_machine::{prop_state_machine, ReferenceStateMachine, StateMachineTest};

use super::*;
use crate::lifecycle::{EventKind, RegistryConfig, StreamStatus};
use crate::time::Duration;

/// Small pools, so that repeated ids and shared containers are frequent.
const KEYS: [&str; 3] = ["k0", "k1", "k2"];
const SESSIONS: [&str; 2] = ["s0", "s1"];
const CONTAINERS: [&str; 3] = ["c0", "c1", "c2"];
const PORTS: [u16; 2] = [PORT, PORT + 1];
/// `stream_id` labels; "k1|s1" collides with a derived id on purpose.
const LABEL_IDS: [&str; 2] = ["L0", "k1|s1"];
/// Every id a start can produce, plus ids that never start.
const ALL_IDS: [&str; 10] = [
    "k0|s0", "k0|s1", "k1|s0", "k1|s1", "k2|s0", "k2|s1", "L0", "ghost", "k3|s0", "k0|",
];

#[derive(Clone, Debug)]
enum Step {
    Start {
        key: usize,
        session: usize,
        container: Option<usize>,
        port: usize,
        label: Option<usize>,
    },
    /// A start refused by validation (port 0).
    StartInvalid {
        key: usize,
    },
    EndById {
        id: String,
        container: Option<usize>,
    },
    EndByContainer {
        container: usize,
    },
    EndWithoutTarget,
    /// The clock moves on; the driver may wake the registry, or not yet (an input
    /// may arrive before the timer fires).
    Advance {
        micros: u64,
        wake: bool,
    },
    /// The registry is rebuilt from its streams and last sequence number.
    Restart,
}

impl Step {
    fn start(&self) -> StreamStarted {
        match *self {
            Step::Start {
                key,
                session,
                container,
                port,
                label,
            } => {
                let mut start = start(
                    KEYS[key],
                    SESSIONS[session],
                    container.map(|c| CONTAINERS[c]),
                );
                start.engine.port = PORTS[port];
                if let Some(label) = label {
                    start
                        .labels
                        .insert("stream_id".into(), LABEL_IDS[label].into());
                }
                start
            }
            Step::StartInvalid { key } => {
                let mut start = start(KEYS[key], SESSIONS[0], None);
                start.engine.port = 0;
                start
            }
            _ => unreachable!("not a start"),
        }
    }

    fn end(&self) -> StreamEnded {
        match self {
            Step::EndById { id, container } => end_id(id, container.map(|c| CONTAINERS[c])),
            Step::EndByContainer { container } => end_container(CONTAINERS[*container]),
            Step::EndWithoutTarget => StreamEnded {
                reason: Some("gone".into()),
                ..StreamEnded::default()
            },
            _ => unreachable!("not an end"),
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
struct ModelStream {
    status: StreamStatus,
    container: Option<String>,
    port: u16,
    /// Time and sequence number of the end.
    ended: Option<(Instant, u64)>,
}

/// What the registry must answer to the latest step.
type Expected = Option<Result<(String, bool, StreamStatus), LifecycleError>>;

#[derive(Clone, Debug)]
struct Model {
    /// Tight limits (eviction and capacity refusals happen) or roomy ones (never).
    tight: bool,
    now: Instant,
    streams: BTreeMap<String, ModelStream>,
    /// Active streams per engine port, for every engine the registry must know.
    engines: BTreeMap<u16, usize>,
    last_seq: u64,
    expected: Expected,
}

impl Model {
    fn config(&self) -> RegistryConfig {
        if self.tight {
            RegistryConfig {
                seed: 11,
                max_active_streams: 4,
                max_ended_streams: 3,
                ended_retention: Duration::from_secs(30),
                max_engines: 8,
            }
        } else {
            // 60 steps of at most 15 s never reach the retention.
            RegistryConfig {
                seed: 11,
                ..RegistryConfig::default()
            }
        }
    }

    fn active(&self) -> usize {
        self.streams
            .values()
            .filter(|s| s.status == StreamStatus::Started)
            .count()
    }

    fn deadline(&self) -> Option<Instant> {
        let oldest = self
            .streams
            .values()
            .filter_map(|s| s.ended)
            .min_by_key(|&(_, seq)| seq);
        oldest.map(|(at, _)| at + self.config().ended_retention)
    }

    /// Forgets ended streams past their retention.
    fn forget_expired(&mut self) {
        let (retention, now) = (self.config().ended_retention, self.now);
        self.streams
            .retain(|_, s| s.ended.is_none_or(|(at, _)| at + retention > now));
    }

    /// Forgets the oldest ended streams past the count cap.
    fn forget_over_cap(&mut self) {
        let config = self.config();
        loop {
            let ended = self
                .streams
                .iter()
                .filter_map(|(id, s)| Some((s.ended?.1, id.clone())));
            let ended: Vec<(u64, String)> = ended.collect();
            if ended.len() <= config.max_ended_streams {
                break;
            }
            let oldest = ended.into_iter().min().map(|(_, id)| id);
            self.streams.remove(&oldest.unwrap());
        }
    }

    fn start(&mut self, step: &Step) -> Result<(String, bool, StreamStatus), LifecycleError> {
        let Step::Start {
            container, port, ..
        } = *step
        else {
            let reason = "must be 1..=65535";
            return Err(LifecycleError::Invalid {
                field: "engine.port",
                reason,
            });
        };
        let id = step.start().stream_id();
        match self.streams.get(&id).map(|s| s.status) {
            Some(StreamStatus::Started) => return Ok((id, false, StreamStatus::Started)),
            Some(StreamStatus::Ended) => return Err(LifecycleError::AlreadyEnded { id }),
            None => {}
        }
        let limit = self.config().max_active_streams;
        if self.active() >= limit {
            return Err(LifecycleError::Capacity { limit });
        }
        let stream = ModelStream {
            status: StreamStatus::Started,
            container: container.map(|c| CONTAINERS[c].to_owned()),
            port: PORTS[port],
            ended: None,
        };
        *self.engines.entry(stream.port).or_default() += 1;
        self.streams.insert(id.clone(), stream);
        self.last_seq += 1;
        Ok((id, true, StreamStatus::Started))
    }

    fn end(&mut self, step: &Step) -> Result<(String, bool, StreamStatus), LifecycleError> {
        let end = step.end();
        let id = match (&end.stream_id, &end.container_id) {
            (Some(id), given) => {
                let stream = self.streams.get(id);
                let stream =
                    stream.ok_or_else(|| LifecycleError::UnknownStream { id: id.clone() })?;
                if let (Some(given), Some(known)) = (given, &stream.container) {
                    if given != known {
                        let container_id = given.clone();
                        return Err(LifecycleError::ContainerMismatch {
                            id: id.clone(),
                            container_id,
                        });
                    }
                }
                id.clone()
            }
            (None, Some(container)) => {
                let on = |s: &ModelStream| {
                    s.status == StreamStatus::Started && s.container.as_ref() == Some(container)
                };
                let active: Vec<&String> = self
                    .streams
                    .iter()
                    .filter(|(_, s)| on(s))
                    .map(|(id, _)| id)
                    .collect();
                let container_id = container.clone();
                match active[..] {
                    [] => return Err(LifecycleError::NoActiveStream { container_id }),
                    [id] => id.clone(),
                    _ => {
                        return Err(LifecycleError::AmbiguousEnd {
                            container_id,
                            active: active.len(),
                        })
                    }
                }
            }
            (None, None) => return Err(LifecycleError::MissingTarget),
        };
        let stream = self.streams.get_mut(&id).unwrap();
        if stream.status == StreamStatus::Ended {
            return Ok((id, false, StreamStatus::Ended));
        }
        self.last_seq += 1;
        stream.status = StreamStatus::Ended;
        stream.ended = Some((self.now, self.last_seq));
        *self.engines.get_mut(&stream.port).unwrap() -= 1;
        Ok((id, true, StreamStatus::Ended))
    }
}

impl ReferenceStateMachine for Model {
    type State = Model;
    type Transition = Step;

    fn init_state() -> BoxedStrategy<Model> {
        any::<bool>()
            .prop_map(|tight| Model {
                tight,
                now: Instant::ZERO,
                streams: BTreeMap::new(),
                engines: BTreeMap::new(),
                last_seq: 0,
                expected: None,
            })
            .boxed()
    }

    fn transitions(state: &Model) -> BoxedStrategy<Step> {
        let known: Vec<String> = state.streams.keys().cloned().collect();
        let all: Vec<String> = ALL_IDS.iter().map(|id| id.to_string()).collect();
        let id = if known.is_empty() {
            select(all).boxed()
        } else {
            prop_oneof![3 => select(known), 1 => select(all)].boxed()
        };
        let container = |some| prop_oneof![4 - some => Just(None), some => (0..CONTAINERS.len()).prop_map(Some)];
        let start = (
            0..KEYS.len(),
            0..SESSIONS.len(),
            container(3),
            0..PORTS.len(),
        );
        let label = prop_oneof![4 => Just(None), 1 => (0..LABEL_IDS.len()).prop_map(Some)];
        prop_oneof![
            6 => (start, label).prop_map(|((key, session, container, port), label)| {
                Step::Start { key, session, container, port, label }
            }),
            1 => (0..KEYS.len()).prop_map(|key| Step::StartInvalid { key }),
            5 => (id, container(1)).prop_map(|(id, container)| Step::EndById { id, container }),
            2 => (0..CONTAINERS.len()).prop_map(|container| Step::EndByContainer { container }),
            1 => Just(Step::EndWithoutTarget),
            2 => (0..15_000_000u64, any::<bool>()).prop_map(|(micros, wake)| Step::Advance { micros, wake }),
            1 => Just(Step::Restart),
        ]
        .boxed()
    }

    fn apply(mut state: Model, step: &Step) -> Model {
        state.expected = match step {
            Step::Start { .. } | Step::StartInvalid { .. } => Some(state.start(step)),
            Step::EndById { .. } | Step::EndByContainer { .. } | Step::EndWithoutTarget => {
                Some(state.end(step))
            }
            Step::Advance { micros, .. } => {
                state.now = state.now + Duration::from_micros(*micros);
                None
            }
            // Idle engines are not part of the durable state.
            Step::Restart => {
                state.engines.retain(|_, active| *active > 0);
                None
            }
        };
        // Refused inputs change nothing, not even what has expired; applied ones and
        // wake-ups forget what has; a restart only enforces the count cap.
        let applied = matches!(state.expected, Some(Ok(_)));
        if applied || matches!(step, Step::Advance { wake: true, .. }) {
            state.forget_expired();
        }
        if applied || matches!(step, Step::Advance { wake: true, .. } | Step::Restart) {
            state.forget_over_cap();
        }
        state
    }
}

struct RegistryMachine {
    registry: Registry,
    /// Every event emitted so far, across restarts.
    outbox: Vec<Event>,
}

impl StateMachineTest for RegistryMachine {
    type SystemUnderTest = Self;
    type Reference = Model;

    fn init_test(model: &Model) -> Self {
        RegistryMachine {
            registry: Registry::new(model.config()),
            outbox: Vec::new(),
        }
    }

    fn apply(mut sut: Self, model: &Model, step: Step) -> Self {
        let result = match &step {
            Step::Start { .. } | Step::StartInvalid { .. } => Some(
                sut.registry
                    .handle_input(model.now, Input::Started(step.start())),
            ),
            Step::EndById { .. } | Step::EndByContainer { .. } | Step::EndWithoutTarget => Some(
                sut.registry
                    .handle_input(model.now, Input::Ended(step.end())),
            ),
            Step::Advance { wake, .. } => {
                if *wake {
                    sut.registry.handle_timeout(model.now);
                }
                None
            }
            Step::Restart => {
                let streams = sut.registry.streams().cloned().collect();
                sut.registry = Registry::restore(model.config(), streams, sut.registry.last_seq());
                None
            }
        };
        let actual = result.map(|r| r.map(|o| (o.stream.id, o.updated, o.stream.status)));
        assert_eq!(actual, model.expected, "answer to {step:?}");

        let events = drain(&mut sut.registry);
        match &model.expected {
            Some(Ok((id, true, status))) => {
                let kind = match status {
                    StreamStatus::Started => EventKind::StreamStarted,
                    StreamStatus::Ended => EventKind::StreamEnded,
                };
                assert_eq!(events.len(), 1, "one event for {step:?}");
                let event = &events[0];
                assert_eq!(
                    (event.kind, &event.stream.id, event.at),
                    (kind, id, model.now)
                );
                assert_eq!(event.stream.status, *status);
            }
            _ => assert_eq!(events, Vec::new(), "no event for {step:?}"),
        }
        sut.outbox.extend(events);
        sut
    }

    fn check_invariants(sut: &Self, model: &Model) {
        let registry = &sut.registry;
        // The outbox is numbered 1, 2, 3... and event ids never repeat.
        let seqs: Vec<u64> = sut.outbox.iter().map(|event| event.seq).collect();
        assert_eq!(seqs, (1..=model.last_seq).collect::<Vec<_>>());
        assert_eq!(registry.last_seq(), model.last_seq);
        let ids: BTreeSet<&str> = sut.outbox.iter().map(|e| e.event_id.as_str()).collect();
        assert_eq!(ids.len(), sut.outbox.len(), "repeated event id");

        // Per stream id: started, ended, started (only once forgotten), ...
        let mut history: BTreeMap<&str, Vec<EventKind>> = BTreeMap::new();
        for event in &sut.outbox {
            history
                .entry(&event.stream.id)
                .or_default()
                .push(event.kind);
        }
        for (id, kinds) in &history {
            let alternating = kinds.iter().enumerate().all(|(n, kind)| {
                *kind == [EventKind::StreamStarted, EventKind::StreamEnded][n % 2]
            });
            assert!(alternating, "events of {id}: {kinds:?}");
            if !model.tight {
                assert!(
                    kinds.len() <= 2,
                    "without eviction, {id} restarted: {kinds:?}"
                );
            }
        }

        // The registry's state is the model's.
        let streams: BTreeMap<String, ModelStream> = registry
            .streams()
            .map(|s| {
                let ended = s.ended_at.map(|at| (at, s.last_event_seq));
                let port = s.engine.port;
                let stream = ModelStream {
                    status: s.status,
                    container: s.container_id.clone(),
                    port,
                    ended,
                };
                (s.id.clone(), stream)
            })
            .collect();
        assert_eq!(streams, model.streams);
        assert_eq!(registry.active_streams(), model.active());
        let engines: BTreeMap<u16, usize> = registry
            .engines()
            .map(|e| (e.engine.port, e.active_streams))
            .collect();
        assert_eq!(engines, model.engines);
        assert_eq!(registry.poll_timeout(), model.deadline());
    }
}

prop_state_machine! {
    #![proptest_config(ProptestConfig {
        cases: 1000,
        failure_persistence: None,
        ..ProptestConfig::default()
    })]

    #[test]
    fn registry_matches_the_reference_model(sequential 1..60 => RegistryMachine);
}
