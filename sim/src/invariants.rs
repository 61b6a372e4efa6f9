//! The invariants, checked after every simulation step, and the clean state the
//! heal-then-converge phase must reach.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use acemux::metrics::Metrics;
use acemux::store::{EventQuery, EventStore, MemoryStore};
use acemux_core::lifecycle::EventKind;
use futures::FutureExt;

use crate::observe::Observer;
use crate::world::{EngineHandle, Rules, WorldConfig};

/// How often the engine-side checks run (they copy every engine's counters).
const ENGINE_CHECK_EVERY: Duration = Duration::from_millis(100);

/// A stream as the event log told it.
#[derive(Debug, Clone)]
struct StreamSeen {
    content_id: String,
    ended_at: Option<Duration>,
}

/// Checks the invariants; remembers what it needs between steps.
pub struct Checker {
    rules: Rules,
    last_seq: u64,
    streams: BTreeMap<String, StreamSeen>,
    event_lines: Vec<String>,
    next_engine_check: Duration,
    first_open_request: usize,
    /// Engine sessions running that the event log does not know (yet), and since when.
    unregistered_since: BTreeMap<String, Duration>,
    /// Engines cut off from acemux (`None`) or repaired (since when): a session cannot
    /// be stopped on an engine acemux cannot reach.
    reachable_since: BTreeMap<String, Option<Duration>>,
}

impl Checker {
    /// A checker with nothing seen.
    pub fn new(rules: Rules) -> Self {
        Checker {
            rules,
            last_seq: 0,
            streams: BTreeMap::new(),
            event_lines: Vec::new(),
            next_engine_check: Duration::ZERO,
            first_open_request: 0,
            unregistered_since: BTreeMap::new(),
            reachable_since: BTreeMap::new(),
        }
    }

    /// `engine` is cut off from acemux from now on.
    pub fn engine_cut_off(&mut self, engine: &str) {
        self.reachable_since.insert(engine.to_owned(), None);
    }

    /// `engine` can be reached again from `now` on.
    pub fn engine_repaired(&mut self, engine: &str, now: Duration) {
        if let Some(since) = self.reachable_since.get_mut(engine) {
            since.get_or_insert(now);
        }
    }

    /// Events checked so far.
    pub fn events_seen(&self) -> u64 {
        self.last_seq
    }

    /// One line per event checked, in order.
    pub fn event_lines(&self) -> &[String] {
        &self.event_lines
    }

    /// The invariants after one step at simulated time `now`.
    pub fn check_step(
        &mut self,
        now: Duration,
        observer: &Observer,
        store: &MemoryStore,
        engines: &[EngineHandle],
    ) -> Result<(), String> {
        self.check_players(now, observer)?;
        self.check_events(now, store)?;
        if now >= self.next_engine_check {
            self.next_engine_check = now + ENGINE_CHECK_EVERY;
            self.check_engines(now, engines)?;
        }
        Ok(())
    }

    fn check_players(&mut self, now: Duration, observer: &Observer) -> Result<(), String> {
        let record = observer.lock();
        if let Some(violation) = record.violations.first() {
            return Err(violation.clone());
        }
        // Every request is answered (a status) within its bound.
        let mut all_answered_so_far = true;
        for (index, request) in record
            .requests
            .iter()
            .enumerate()
            .skip(self.first_open_request)
        {
            let deadline = request.sent_at + request.bound;
            match request.answered_at {
                None if now > deadline => {
                    return Err(format!(
                        "{} {}: no answer within {:?} (sent at {:?})",
                        request.player, request.what, request.bound, request.sent_at
                    ))
                }
                None => all_answered_so_far = false,
                Some(at) => {
                    if at > deadline {
                        return Err(format!(
                            "{} {}: answered after {:?}, bound {:?}",
                            request.player,
                            request.what,
                            at - request.sent_at,
                            request.bound
                        ));
                    }
                    if let Some(failure) = &request.failure {
                        return Err(format!("{} {}: {failure}", request.player, request.what));
                    }
                    if all_answered_so_far {
                        self.first_open_request = index + 1;
                    }
                }
            }
        }
        // Each TS viewer's bytes are a contiguous slice of the engine stream, up to
        // jumps to entry points when the upstream was replaced.
        for (id, viewer) in &record.ts_viewers {
            if let Some(violation) = &viewer.tracker.check.violation {
                return Err(format!(
                    "TS viewer {id} ({}, {}): {violation}",
                    viewer.player, viewer.content_id
                ));
            }
            if viewer.tracker.check.resyncs > 0 && !self.rules.allow_resyncs {
                return Err(format!(
                    "TS viewer {id} ({}, {}): its bytes jumped in the engine stream with no upstream fault",
                    viewer.player, viewer.content_id
                ));
            }
        }
        Ok(())
    }

    fn check_events(&mut self, now: Duration, store: &MemoryStore) -> Result<(), String> {
        let query = EventQuery {
            after: self.last_seq,
            limit: 1000,
            stream_id: None,
        };
        let events = match store.events(query).now_or_never() {
            Some(Ok(events)) => events,
            Some(Err(error)) => return Err(format!("the event store failed: {error}")),
            None => return Err("the memory store did not answer at once".into()),
        };
        for event in events {
            if event.seq != self.last_seq + 1 {
                return Err(format!(
                    "event sequence jumped from {} to {}",
                    self.last_seq, event.seq
                ));
            }
            self.last_seq = event.seq;
            let id = event.stream.id.clone();
            self.event_lines.push(format!(
                "{} {} {} {} {:?}",
                event.seq,
                event.event_id,
                event.kind.as_str(),
                id,
                event.stream.end_reason
            ));
            match event.kind {
                EventKind::StreamStarted => {
                    if self.streams.contains_key(&id) {
                        return Err(format!("stream_started twice for {id}"));
                    }
                    let content_id = event.stream.stream.key.clone();
                    let active_same_content = self
                        .streams
                        .values()
                        .filter(|s| s.content_id == content_id && s.ended_at.is_none())
                        .count();
                    if active_same_content > 0 {
                        return Err(format!(
                            "a second stream of {content_id} started while one is active ({id})"
                        ));
                    }
                    self.streams.insert(
                        id,
                        StreamSeen {
                            content_id,
                            ended_at: None,
                        },
                    );
                }
                EventKind::StreamEnded => match self.streams.get_mut(&id) {
                    None => return Err(format!("stream_ended for {id} without stream_started")),
                    Some(seen) if seen.ended_at.is_some() => {
                        return Err(format!("stream_ended twice for {id}"))
                    }
                    Some(seen) => seen.ended_at = Some(now),
                },
            }
        }
        Ok(())
    }

    fn check_engines(&mut self, now: Duration, engines: &[EngineHandle]) -> Result<(), String> {
        let mut running = BTreeMap::new();
        for engine in engines {
            for emulator in engine.emulators() {
                let stats = emulator.stats();
                for (content_id, content) in &stats.contents {
                    for (session_id, session) in &content.sessions {
                        if session.stop_commands > 1 && !self.rules.allow_repeated_stops {
                            return Err(format!(
                                "{} session {session_id} of {content_id} was told to stop {} times",
                                engine.name, session.stop_commands
                            ));
                        }
                        if !session.stopped {
                            running
                                .insert(format!("{content_id}|{session_id}"), engine.name.clone());
                        }
                    }
                }
            }
        }
        self.unregistered_since
            .retain(|stream_id, _| running.contains_key(stream_id));
        if self.rules.allow_orphan_engine_sessions {
            return Ok(());
        }
        for (stream_id, engine) in &running {
            // The stop bound runs from the stream's end, or from the engine's repair
            // when it was cut off meanwhile (none while it is).
            let reachable = self.reachable_since.get(engine.as_str());
            match self.streams.get(stream_id) {
                Some(StreamSeen {
                    ended_at: Some(ended_at),
                    ..
                }) if reachable.is_none_or(|since| {
                    since.is_some_and(|since| now > (*ended_at).max(since) + self.rules.stop_bound)
                }) && now > *ended_at + self.rules.stop_bound =>
                {
                    return Err(format!(
                        "{engine} session {stream_id} still runs {:?} after its stream_ended",
                        now - *ended_at
                    ));
                }
                Some(_) => {}
                None => {
                    let since = *self
                        .unregistered_since
                        .entry(stream_id.clone())
                        .or_insert(now);
                    if now > since + self.rules.stop_bound * 2 {
                        return Err(format!(
                            "{engine} session {stream_id} runs unrecorded for {:?}",
                            now - since
                        ));
                    }
                }
            }
        }
        Ok(())
    }

    /// `Ok` once the system is clean: every player done and answered, no stream
    /// active, no engine session of a recorded stream running, outboxes drained.
    pub fn clean_state(
        &self,
        observer: &Observer,
        store: &MemoryStore,
        engines: &[EngineHandle],
        metrics: &Arc<Mutex<Option<Arc<Metrics>>>>,
    ) -> Result<(), String> {
        {
            let record = observer.lock();
            if let Some(request) = record.requests.iter().find(|r| r.answered_at.is_none()) {
                return Err(format!("{} {} unanswered", request.player, request.what));
            }
        }
        if let Some((id, _)) = self.streams.iter().find(|(_, s)| s.ended_at.is_none()) {
            return Err(format!("stream {id} still active"));
        }
        for webhook in store_webhooks(store) {
            let pending = store.pending_count(webhook.clone()).now_or_never();
            match pending {
                Some(Ok(0)) => {}
                Some(Ok(pending)) => {
                    return Err(format!("{pending} events still pending for {webhook}"))
                }
                other => return Err(format!("pending count for {webhook}: {other:?}")),
            }
        }
        let metrics = metrics.lock().unwrap_or_else(|p| p.into_inner()).clone();
        if let Some(metrics) = metrics {
            if metrics.channels.get() != 0 {
                return Err(format!("{} channels still running", metrics.channels.get()));
            }
        }
        for engine in engines {
            // A crashed engine's sessions died with it: only the running one counts.
            if let Some(emulator) = engine.emulators().last() {
                for (content_id, content) in emulator.stats().contents {
                    for (session_id, session) in content.sessions {
                        let id = format!("{content_id}|{session_id}");
                        let recorded = self.streams.contains_key(&id);
                        let orphan_allowed = self.rules.allow_orphan_engine_sessions;
                        if !session.stopped && (recorded || !orphan_allowed) {
                            return Err(format!("{} session {id} still runs", engine.name));
                        }
                    }
                }
            }
        }
        Ok(())
    }

    /// After convergence: events delivered to the receiver are exactly the store's,
    /// each received with one body; every session stopped once.
    pub fn final_checks(
        &self,
        observer: &Observer,
        store: &MemoryStore,
        config: &WorldConfig,
    ) -> Result<(), String> {
        let events = store
            .events(EventQuery {
                after: 0,
                limit: 100_000,
                stream_id: None,
            })
            .now_or_never()
            .and_then(Result::ok)
            .ok_or("the event log cannot be read")?;
        if config.receiver_webhook {
            let record = observer.lock();
            let mut received: BTreeMap<&str, &str> = BTreeMap::new();
            for event in &record.received {
                if let Some(previous) = received.insert(&event.idempotency_key, &event.body) {
                    if previous != event.body {
                        return Err(format!(
                            "event {} received twice with different bodies",
                            event.idempotency_key
                        ));
                    }
                }
            }
            for event in &events {
                if !received.contains_key(event.event_id.as_str()) {
                    return Err(format!(
                        "event {} ({} {}) never reached the receiver",
                        event.event_id,
                        event.kind.as_str(),
                        event.stream.id
                    ));
                }
            }
            if received.len() != events.len() {
                return Err(format!(
                    "the receiver got {} distinct events, the log holds {}",
                    received.len(),
                    events.len()
                ));
            }
        }
        Ok(())
    }
}

fn store_webhooks(_store: &MemoryStore) -> Vec<String> {
    // The store delivers to the webhooks it was created with; the world uses only these.
    vec![
        crate::world::self_webhook_url(),
        crate::world::receiver_webhook_url(),
    ]
}
