//! The lifecycle registry: which stream started and ended where, exactly once.

use std::collections::{BTreeMap, VecDeque};

use serde::{Deserialize, Serialize};

use super::model::{EngineAddr, StreamEnded, StreamStarted, StreamState, StreamStatus};
use super::{EndReason, LifecycleError};
use crate::rng::derived_uuid;
use crate::time::{Duration, Instant};

/// Limits and seed of a [`Registry`].
#[derive(Clone, Debug)]
pub struct RegistryConfig {
    /// Seed from which event ids are derived.
    pub seed: u64,
    /// Most streams that may be active at once; more starts get [`LifecycleError::Capacity`].
    pub max_active_streams: usize,
    /// Ended streams kept in memory (oldest forgotten first). A start for a forgotten id
    /// is a new stream again.
    pub max_ended_streams: usize,
    /// How long an ended stream stays in memory.
    pub ended_retention: Duration,
    /// Most engines remembered; idle ones are forgotten first.
    pub max_engines: usize,
}

impl Default for RegistryConfig {
    fn default() -> Self {
        RegistryConfig {
            seed: 0,
            max_active_streams: 10_000,
            max_ended_streams: 10_000,
            ended_retention: Duration::from_secs(24 * 3600),
            max_engines: 1_024,
        }
    }
}

/// What the registry is asked to apply.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Input {
    /// A stream started.
    Started(StreamStarted),
    /// A stream ended.
    Ended(StreamEnded),
    /// A stream another instance started ended (cluster mode: its owner died and this
    /// instance stopped its session). Its `stream_started` is in that instance's log;
    /// here only its `stream_ended` is recorded, built from what the start carried. A
    /// stream known here is ended as by [`Input::Ended`].
    EndedElsewhere {
        /// The stream as its start recorded it.
        started: Box<StreamStarted>,
        /// When it started.
        started_at: Instant,
        /// Why it ended.
        reason: EndReason,
    },
}

/// The kind of a lifecycle event.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EventKind {
    /// `stream_started`.
    StreamStarted,
    /// `stream_ended`.
    StreamEnded,
}

impl EventKind {
    /// The wire name (also the webhook path segment).
    pub fn as_str(self) -> &'static str {
        match self {
            EventKind::StreamStarted => "stream_started",
            EventKind::StreamEnded => "stream_ended",
        }
    }
}

/// One applied change, as appended to the outbox.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Event {
    /// Position in the outbox; strictly increasing, starting at 1.
    pub seq: u64,
    /// Unique id, derived from the seed and `seq`; used as the idempotency key.
    pub event_id: String,
    /// What happened.
    pub kind: EventKind,
    /// The stream right after the change.
    pub stream: StreamState,
    /// When it was applied.
    pub at: Instant,
}

/// What the registry emits.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Output {
    /// An event for the outbox.
    Event(Event),
}

/// The answer to one [`Input`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Outcome {
    /// The stream after the input was applied.
    pub stream: StreamState,
    /// `false` when the input repeated what was already known (no event emitted).
    pub updated: bool,
}

/// An engine learned from events.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct EngineState {
    /// The engine's address.
    pub engine: EngineAddr,
    /// Its container, as last reported.
    pub container_id: Option<String>,
    /// Streams active on it now.
    pub active_streams: usize,
    /// When an event last named it.
    pub last_seen: Instant,
}

/// Timers of the registry; each indexes one deadline.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum TimerKind {
    /// Forget the oldest ended stream.
    EndedRetention,
}

/// The lifecycle registry.
///
/// Sans-io: after every [`handle_input`](Self::handle_input) or
/// [`handle_timeout`](Self::handle_timeout) call, drain [`poll_output`](Self::poll_output),
/// then read [`poll_timeout`](Self::poll_timeout). `now` must never go backwards;
/// calling `handle_timeout` early is harmless.
#[derive(Debug)]
pub struct Registry {
    config: RegistryConfig,
    streams: BTreeMap<String, StreamState>,
    /// Ended stream ids, oldest end first (ends are applied in time order).
    ended_order: VecDeque<String>,
    active: usize,
    engines: BTreeMap<EngineAddr, EngineState>,
    last_seq: u64,
    outputs: VecDeque<Output>,
}

impl Registry {
    /// An empty registry.
    pub fn new(config: RegistryConfig) -> Self {
        Registry::restore(config, Vec::new(), 0)
    }

    /// A registry resumed from durable state: the known streams and the last event
    /// sequence number that was committed.
    pub fn restore(config: RegistryConfig, streams: Vec<StreamState>, last_seq: u64) -> Self {
        let mut registry = Registry {
            config,
            streams: BTreeMap::new(),
            ended_order: VecDeque::new(),
            active: 0,
            engines: BTreeMap::new(),
            last_seq,
            outputs: VecDeque::new(),
        };
        let mut ended: Vec<&StreamState> = Vec::new();
        for stream in &streams {
            match stream.status {
                StreamStatus::Started => {
                    registry.active += 1;
                    let engine = registry.learn_engine(stream, stream.started_at);
                    engine.active_streams += 1;
                }
                StreamStatus::Ended => ended.push(stream),
            }
        }
        ended.sort_by_key(|stream| (stream.ended_at, stream.last_event_seq));
        registry.ended_order = ended.iter().map(|stream| stream.id.clone()).collect();
        registry.streams = streams
            .into_iter()
            .map(|stream| (stream.id.clone(), stream))
            .collect();
        registry.trim_ended(None);
        registry
    }

    /// Applies a start or an end. Errors leave the registry unchanged.
    pub fn handle_input(&mut self, now: Instant, input: Input) -> Result<Outcome, LifecycleError> {
        let outcome = match input {
            Input::Started(started) => self.start(now, started),
            Input::Ended(ended) => self.end(now, ended),
            Input::EndedElsewhere {
                started,
                started_at,
                reason,
            } => self.end_elsewhere(now, *started, started_at, reason),
        }?;
        self.trim_ended(Some(now));
        Ok(outcome)
    }

    /// Forgets ended streams whose retention has passed.
    pub fn handle_timeout(&mut self, now: Instant) {
        self.trim_ended(Some(now));
    }

    /// The next event for the outbox.
    #[must_use]
    pub fn poll_output(&mut self) -> Option<Output> {
        self.outputs.pop_front()
    }

    /// When [`handle_timeout`](Self::handle_timeout) should next be called.
    #[must_use]
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.deadline(TimerKind::EndedRetention)
    }

    /// One stream by id.
    pub fn stream(&self, id: &str) -> Option<&StreamState> {
        self.streams.get(id)
    }

    /// All remembered streams, ordered by id.
    pub fn streams(&self) -> impl Iterator<Item = &StreamState> {
        self.streams.values()
    }

    /// Engines learned from events, ordered by address.
    pub fn engines(&self) -> impl Iterator<Item = &EngineState> {
        self.engines.values()
    }

    /// Streams active now.
    pub fn active_streams(&self) -> usize {
        self.active
    }

    /// Sequence number of the latest event emitted (0 before the first).
    pub fn last_seq(&self) -> u64 {
        self.last_seq
    }

    fn deadline(&self, timer: TimerKind) -> Option<Instant> {
        match timer {
            TimerKind::EndedRetention => {
                let oldest = self.ended_order.front()?;
                let ended_at = self.streams.get(oldest)?.ended_at?;
                Some(ended_at + self.config.ended_retention)
            }
        }
    }

    fn start(&mut self, now: Instant, started: StreamStarted) -> Result<Outcome, LifecycleError> {
        started.validate()?;
        let id = started.stream_id();
        if let Some(existing) = self.streams.get(&id) {
            return match existing.status {
                StreamStatus::Started => Ok(Outcome {
                    stream: existing.clone(),
                    updated: false,
                }),
                StreamStatus::Ended => Err(LifecycleError::AlreadyEnded { id }),
            };
        }
        if self.active >= self.config.max_active_streams {
            return Err(LifecycleError::Capacity {
                limit: self.config.max_active_streams,
            });
        }
        let seq = self.last_seq + 1;
        let stream = StreamState {
            id: id.clone(),
            status: StreamStatus::Started,
            container_id: started.container_id,
            engine: started.engine,
            stream: started.stream,
            session: started.session,
            labels: started.labels,
            started_at: now,
            ended_at: None,
            end_reason: None,
            last_event_seq: seq,
        };
        let engine = self.learn_engine(&stream, now);
        engine.active_streams += 1;
        self.active += 1;
        self.streams.insert(id, stream.clone());
        self.emit(seq, EventKind::StreamStarted, &stream, now);
        self.forget_idle_engines();
        Ok(Outcome {
            stream,
            updated: true,
        })
    }

    fn end(&mut self, now: Instant, ended: StreamEnded) -> Result<Outcome, LifecycleError> {
        ended.validate()?;
        let id = self.resolve_end_target(&ended)?;
        let stream = self
            .streams
            .get_mut(&id)
            .expect("resolve_end_target only returns ids of remembered streams");
        if stream.status == StreamStatus::Ended {
            return Ok(Outcome {
                stream: stream.clone(),
                updated: false,
            });
        }
        let seq = self.last_seq + 1;
        stream.status = StreamStatus::Ended;
        stream.ended_at = Some(now);
        stream.end_reason = ended.reason;
        stream.last_event_seq = seq;
        let stream = stream.clone();
        self.active -= 1;
        if let Some(engine) = self.engines.get_mut(&stream.engine) {
            engine.active_streams = engine.active_streams.saturating_sub(1);
            engine.last_seen = now;
        }
        self.ended_order.push_back(id);
        self.emit(seq, EventKind::StreamEnded, &stream, now);
        Ok(Outcome {
            stream,
            updated: true,
        })
    }

    fn end_elsewhere(
        &mut self,
        now: Instant,
        started: StreamStarted,
        started_at: Instant,
        reason: EndReason,
    ) -> Result<Outcome, LifecycleError> {
        started.validate()?;
        let id = started.stream_id();
        if self.streams.contains_key(&id) {
            let ended = StreamEnded {
                container_id: None,
                stream_id: Some(id),
                reason: Some(reason),
            };
            return self.end(now, ended);
        }
        let seq = self.last_seq + 1;
        let stream = StreamState {
            id: id.clone(),
            status: StreamStatus::Ended,
            container_id: started.container_id,
            engine: started.engine,
            stream: started.stream,
            session: started.session,
            labels: started.labels,
            started_at: started_at.min(now),
            ended_at: Some(now),
            end_reason: Some(reason),
            last_event_seq: seq,
        };
        self.streams.insert(id.clone(), stream.clone());
        self.ended_order.push_back(id);
        self.emit(seq, EventKind::StreamEnded, &stream, now);
        Ok(Outcome {
            stream,
            updated: true,
        })
    }

    /// The one stream an end refers to, or why there is none.
    fn resolve_end_target(&self, ended: &StreamEnded) -> Result<String, LifecycleError> {
        match (&ended.stream_id, &ended.container_id) {
            (Some(id), container) => {
                let stream = self
                    .streams
                    .get(id)
                    .ok_or_else(|| LifecycleError::UnknownStream { id: id.clone() })?;
                if let (Some(given), Some(known)) = (container, &stream.container_id) {
                    if given != known {
                        return Err(LifecycleError::ContainerMismatch {
                            id: id.clone(),
                            container_id: given.clone(),
                        });
                    }
                }
                Ok(id.clone())
            }
            (None, Some(container_id)) => {
                let mut active = self.streams.values().filter(|stream| {
                    stream.status == StreamStatus::Started
                        && stream.container_id.as_deref() == Some(container_id.as_str())
                });
                match (active.next(), active.next()) {
                    (Some(only), None) => Ok(only.id.clone()),
                    (None, _) => Err(LifecycleError::NoActiveStream {
                        container_id: container_id.clone(),
                    }),
                    (Some(_), Some(_)) => Err(LifecycleError::AmbiguousEnd {
                        container_id: container_id.clone(),
                        active: 2 + active.count(),
                    }),
                }
            }
            (None, None) => Err(LifecycleError::MissingTarget),
        }
    }

    fn learn_engine(&mut self, stream: &StreamState, now: Instant) -> &mut EngineState {
        let engine = self
            .engines
            .entry(stream.engine.clone())
            .or_insert_with(|| EngineState {
                engine: stream.engine.clone(),
                container_id: None,
                active_streams: 0,
                last_seen: now,
            });
        if stream.container_id.is_some() {
            engine.container_id = stream.container_id.clone();
        }
        engine.last_seen = now;
        engine
    }

    fn forget_idle_engines(&mut self) {
        while self.engines.len() > self.config.max_engines {
            let idle = self
                .engines
                .values()
                .filter(|engine| engine.active_streams == 0)
                .min_by_key(|engine| engine.last_seen)
                .map(|engine| engine.engine.clone());
            match idle {
                Some(addr) => {
                    self.engines.remove(&addr);
                }
                // Every engine has active streams; the stream cap bounds them.
                None => break,
            }
        }
    }

    /// Forgets ended streams past the count cap, and (given `now`) past their retention.
    fn trim_ended(&mut self, now: Option<Instant>) {
        loop {
            let over_cap = self.ended_order.len() > self.config.max_ended_streams;
            let expired = match (now, self.deadline(TimerKind::EndedRetention)) {
                (Some(now), Some(deadline)) => deadline <= now,
                _ => false,
            };
            if !(over_cap || expired) {
                break;
            }
            let Some(id) = self.ended_order.pop_front() else {
                break;
            };
            self.streams.remove(&id);
        }
    }

    fn emit(&mut self, seq: u64, kind: EventKind, stream: &StreamState, now: Instant) {
        debug_assert_eq!(seq, self.last_seq + 1, "events are numbered without gaps");
        self.last_seq = seq;
        self.outputs.push_back(Output::Event(Event {
            seq,
            event_id: derived_uuid(self.config.seed, seq),
            kind,
            stream: stream.clone(),
            at: now,
        }));
    }
}
