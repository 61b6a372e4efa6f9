//! An in-memory [`EventStore`] for simulation and tests: the same contract as
//! SQLite, with no blocking call anywhere.
//!
//! Healthy, it commits at once. The simulation can make it slow or failing
//! ([`StoreFaults`]): appends then queue and commit in order (a failed commit is tried
//! again, as the SQLite writer does), and a crash of the process loses exactly what was
//! queued and never acknowledged, as SQLite with `synchronous=FULL` would.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::time::Duration;

use acemux_core::lifecycle::{store_retry_delay, Event, StreamState, StreamStatus};
use acemux_core::planted::{Bug, Planted};
use tokio::sync::{oneshot, watch};

use super::notice::CommitNotice;
use super::{DeliveryOutcome, EventQuery, EventStore, GivenUp, Restored, StoreError, StoreFuture};

/// Storage faults of the in-memory store.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct StoreFaults {
    /// Each commit becomes durable this long after its append (a slow disk).
    pub commit_delay: Duration,
    /// Commits fail (a full or failing disk): appends wait in order and are tried
    /// again until the fault is cleared.
    pub failing: bool,
}

/// An append not yet durable.
struct Queued {
    events: Vec<Event>,
    reply: oneshot::Sender<Result<(), StoreError>>,
    due: tokio::time::Instant,
}

#[derive(Default)]
struct State {
    seed: Option<u64>,
    events: BTreeMap<u64, Event>,
    streams: BTreeMap<String, StreamState>,
    /// (webhook, seq) → delivered/rejected? `None` while pending.
    deliveries: BTreeMap<(String, u64), Option<DeliveryOutcome>>,
    closed: bool,
    faults: StoreFaults,
    /// Appends accepted and not yet durable, in append order.
    queue: VecDeque<Queued>,
    /// The committer task's generation while one runs; a crash starts a new one.
    committer: Option<u64>,
    generation: u64,
    /// Failed commit attempts of the queue's head in a row.
    failures: u32,
    planted: Planted,
}

impl State {
    fn commit(&mut self, webhooks: &[String], notice: &CommitNotice, events: Vec<Event>) {
        for event in events {
            for webhook in webhooks {
                self.deliveries.insert((webhook.clone(), event.seq), None);
            }
            self.streams
                .insert(event.stream.id.clone(), event.stream.clone());
            let seq = event.seq;
            self.events.insert(seq, event);
            notice.advance(seq);
        }
    }
}

/// Events, streams and deliveries kept in memory; survives "restarts" that reuse it.
pub struct MemoryStore {
    me: Weak<MemoryStore>,
    webhooks: Vec<String>,
    state: Mutex<State>,
    committed: CommitNotice,
}

impl MemoryStore {
    /// An empty store delivering new events to `webhooks`.
    pub fn new(webhooks: Vec<String>) -> Arc<Self> {
        Arc::new_cyclic(|me| MemoryStore {
            me: me.clone(),
            webhooks,
            state: Mutex::new(State::default()),
            committed: CommitNotice::new(0),
        })
    }

    fn me(&self) -> Option<Arc<Self>> {
        self.me.upgrade()
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state
            .lock()
            .unwrap_or_else(|poison| poison.into_inner())
    }

    fn state(&self) -> Result<MutexGuard<'_, State>, StoreError> {
        let state = self.lock();
        if state.closed {
            return Err(StoreError::Closed);
        }
        Ok(state)
    }

    /// Reopens a closed store, as a restarted process would reopen its database.
    pub fn reopen(&self) {
        self.lock().closed = false;
    }

    /// Plants a bug (the simulation's self-test only).
    pub fn plant(&self, planted: Planted) {
        self.lock().planted = planted;
    }

    /// Sets the storage faults from now on (appends already queued keep their due time).
    pub fn set_faults(&self, faults: StoreFaults) {
        self.lock().faults = faults;
    }

    /// The process using the store died: appends not yet durable are lost (their
    /// callers never had an answer). Returns how many events were lost.
    pub fn lose_uncommitted(&self) -> usize {
        let mut state = self.lock();
        state.generation += 1;
        state.committer = None;
        state.failures = 0;
        state
            .queue
            .drain(..)
            .map(|queued| queued.events.len())
            .sum()
    }

    /// Events appended and not yet durable.
    pub fn uncommitted(&self) -> usize {
        self.lock()
            .queue
            .iter()
            .map(|queued| queued.events.len())
            .sum()
    }

    /// Whether every event up to the commit watermark is durable (the watermark never
    /// runs ahead of a hole in the log).
    pub fn watermark_is_durable(&self) -> Result<(), String> {
        let watermark = self.committed.current();
        let state = self.lock();
        // Sequence numbers start at 1: the durable prefix ends at the first hole.
        let durable = u64::try_from(state.events.range(..=watermark).count()).unwrap_or(u64::MAX);
        if durable == watermark {
            return Ok(());
        }
        match (1..=watermark).find(|seq| !state.events.contains_key(seq)) {
            Some(missing) => Err(format!(
                "the commit watermark is {watermark} but event {missing} is not durable"
            )),
            None => Ok(()),
        }
    }

    /// Deliveries to `webhook` given up or refused for good, by sequence number.
    pub fn rejected(&self, webhook: &str) -> BTreeSet<u64> {
        self.lock()
            .deliveries
            .iter()
            .filter(|((hook, _), outcome)| {
                hook == webhook && **outcome == Some(DeliveryOutcome::Rejected)
            })
            .map(|((_, seq), _)| *seq)
            .collect()
    }

    /// Commits the queue in order, as its entries fall due, until it is empty or the
    /// process that started this task crashed.
    async fn run_committer(self: Arc<Self>, generation: u64) {
        loop {
            let wait = {
                let mut state = self.lock();
                if state.committer != Some(generation) {
                    return;
                }
                let now = tokio::time::Instant::now();
                match state.queue.front() {
                    None => {
                        state.committer = None;
                        return;
                    }
                    Some(_) if state.faults.failing => {
                        state.failures = state.failures.saturating_add(1);
                        store_retry_delay(state.failures)
                    }
                    Some(head) if head.due > now => head.due - now,
                    Some(_) => {
                        state.failures = 0;
                        if let Some(head) = state.queue.pop_front() {
                            state.commit(&self.webhooks, &self.committed, head.events);
                            let _ = head.reply.send(Ok(()));
                        }
                        continue;
                    }
                }
            };
            tokio::time::sleep(wait).await;
        }
    }
}

fn ready<T: Send + 'static>(result: Result<T, StoreError>) -> StoreFuture<T> {
    Box::pin(std::future::ready(result))
}

impl EventStore for MemoryStore {
    fn restore(&self, max_ended: usize, fresh_seed: u64) -> StoreFuture<Restored> {
        ready(self.state().map(|mut state| {
            let seed = *state.seed.get_or_insert(fresh_seed);
            let mut ended: Vec<&StreamState> = state
                .streams
                .values()
                .filter(|stream| stream.status == StreamStatus::Ended)
                .collect();
            ended.sort_by_key(|stream| std::cmp::Reverse(stream.ended_at));
            ended.truncate(max_ended);
            let mut streams: Vec<StreamState> = state
                .streams
                .values()
                .filter(|stream| stream.status == StreamStatus::Started)
                .cloned()
                .collect();
            streams.extend(ended.into_iter().cloned());
            Restored {
                streams,
                last_seq: state.events.keys().next_back().copied().unwrap_or(0),
                seed,
            }
        }))
    }

    fn append(&self, events: Vec<Event>) -> StoreFuture<()> {
        let mut state = match self.state() {
            Ok(state) => state,
            Err(error) => return ready(Err(error)),
        };
        // Like SQLite's primary key: a seq already stored, queued, or repeated in the batch.
        let mut batch = BTreeSet::new();
        let queued: BTreeSet<u64> = state
            .queue
            .iter()
            .flat_map(|queued| queued.events.iter().map(|event| event.seq))
            .collect();
        if let Some(event) = events.iter().find(|event| {
            state.events.contains_key(&event.seq)
                || queued.contains(&event.seq)
                || !batch.insert(event.seq)
        }) {
            return ready(Err(StoreError::Database(format!(
                "duplicate event seq {}",
                event.seq
            ))));
        }
        if state.queue.is_empty() && state.faults == StoreFaults::default() {
            state.commit(&self.webhooks, &self.committed, events);
            return ready(Ok(()));
        }
        let (reply, answer) = oneshot::channel();
        let due = tokio::time::Instant::now() + state.faults.commit_delay;
        let early = state.planted.has(Bug::CommitAcknowledgedEarly);
        if let (true, Some(last)) = (early, events.last()) {
            self.committed.advance(last.seq);
        }
        state.queue.push_back(Queued { events, reply, due });
        if state.committer.is_none() {
            let generation = state.generation;
            state.committer = Some(generation);
            drop(state);
            let Some(this) = self.me() else {
                return ready(Err(StoreError::Closed));
            };
            tokio::spawn(this.run_committer(generation));
        }
        if early {
            return ready(Ok(()));
        }
        Box::pin(async move { answer.await.unwrap_or(Err(StoreError::Closed)) })
    }

    fn committed(&self) -> watch::Receiver<u64> {
        self.committed.subscribe()
    }

    fn events(&self, query: EventQuery) -> StoreFuture<Vec<Event>> {
        ready(self.state().map(|state| {
            state
                .events
                .range(query.after.saturating_add(1)..)
                .map(|(_, event)| event)
                .filter(|event| {
                    query
                        .stream_id
                        .as_ref()
                        .is_none_or(|id| &event.stream.id == id)
                })
                .take(query.limit)
                .cloned()
                .collect()
        }))
    }

    fn pending(&self, webhook: String, limit: usize) -> StoreFuture<Vec<Event>> {
        ready(self.state().map(|state| {
            state
                .deliveries
                .range((webhook.clone(), 0)..=(webhook, u64::MAX))
                .filter(|(_, outcome)| outcome.is_none())
                .filter_map(|((_, seq), _)| state.events.get(seq).cloned())
                .take(limit)
                .collect()
        }))
    }

    fn pending_count(&self, webhook: String) -> StoreFuture<u64> {
        ready(self.state().map(|state| {
            let pending = state
                .deliveries
                .range((webhook.clone(), 0)..=(webhook, u64::MAX))
                .filter(|(_, outcome)| outcome.is_none())
                .count();
            u64::try_from(pending).unwrap_or(u64::MAX)
        }))
    }

    fn finish_delivery(
        &self,
        webhook: String,
        seq: u64,
        outcome: DeliveryOutcome,
    ) -> StoreFuture<()> {
        ready(self.state().map(|mut state| {
            match outcome {
                DeliveryOutcome::Delivered => state.deliveries.remove(&(webhook, seq)),
                DeliveryOutcome::Rejected => state.deliveries.insert((webhook, seq), Some(outcome)),
            };
        }))
    }

    fn give_up_oldest(&self, webhook: String, keep: u64) -> StoreFuture<Option<GivenUp>> {
        ready(self.state().map(|mut state| {
            let pending: Vec<u64> = state
                .deliveries
                .range((webhook.clone(), 0)..=(webhook.clone(), u64::MAX))
                .filter(|(_, outcome)| outcome.is_none())
                .map(|((_, seq), _)| *seq)
                .collect();
            let keep = usize::try_from(keep).unwrap_or(usize::MAX);
            let oldest = &pending[..pending.len().saturating_sub(keep)];
            let (&first_seq, &last_seq) = (oldest.first()?, oldest.last()?);
            for &seq in oldest {
                state
                    .deliveries
                    .insert((webhook.clone(), seq), Some(DeliveryOutcome::Rejected));
            }
            Some(GivenUp {
                count: u64::try_from(oldest.len()).unwrap_or(u64::MAX),
                first_seq,
                last_seq,
            })
        }))
    }

    fn close(&self) -> StoreFuture<()> {
        let mut state = self.lock();
        state.closed = true;
        state.committer = None;
        // What is queued is committed now, unless commits fail.
        let failing = state.faults.failing;
        while let Some(queued) = state.queue.pop_front() {
            if failing {
                let _ = queued.reply.send(Err(StoreError::Database(
                    "commit failed while closing".into(),
                )));
            } else {
                state.commit(&self.webhooks, &self.committed, queued.events);
                let _ = queued.reply.send(Ok(()));
            }
        }
        ready(Ok(()))
    }
}
