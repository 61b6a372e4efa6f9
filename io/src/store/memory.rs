//! An in-memory [`EventStore`] for simulation and tests: the same contract as
//! SQLite, answered at once, with no blocking call anywhere.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex, MutexGuard};

use acemux_core::lifecycle::{Event, StreamState, StreamStatus};
use tokio::sync::watch;

use super::notice::CommitNotice;
use super::{DeliveryOutcome, EventQuery, EventStore, GivenUp, Restored, StoreError, StoreFuture};

#[derive(Default)]
struct State {
    seed: Option<u64>,
    events: BTreeMap<u64, Event>,
    streams: BTreeMap<String, StreamState>,
    /// (webhook, seq) → delivered/rejected? `None` while pending.
    deliveries: BTreeMap<(String, u64), Option<DeliveryOutcome>>,
    closed: bool,
}

/// Events, streams and deliveries kept in memory; survives "restarts" that reuse it.
pub struct MemoryStore {
    webhooks: Vec<String>,
    state: Mutex<State>,
    committed: CommitNotice,
}

impl MemoryStore {
    /// An empty store delivering new events to `webhooks`.
    pub fn new(webhooks: Vec<String>) -> Arc<Self> {
        Arc::new(MemoryStore {
            webhooks,
            state: Mutex::new(State::default()),
            committed: CommitNotice::new(0),
        })
    }

    fn state(&self) -> Result<MutexGuard<'_, State>, StoreError> {
        let state = self
            .state
            .lock()
            .unwrap_or_else(|poison| poison.into_inner());
        if state.closed {
            return Err(StoreError::Closed);
        }
        Ok(state)
    }

    /// Reopens a closed store, as a restarted process would reopen its database.
    pub fn reopen(&self) {
        self.state
            .lock()
            .unwrap_or_else(|poison| poison.into_inner())
            .closed = false;
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
        let result = self.state().and_then(|mut state| {
            // Like SQLite's primary key: a seq already stored or repeated in the batch.
            let mut batch = BTreeSet::new();
            if let Some(event) = events
                .iter()
                .find(|event| state.events.contains_key(&event.seq) || !batch.insert(event.seq))
            {
                return Err(StoreError::Database(format!(
                    "duplicate event seq {}",
                    event.seq
                )));
            }
            for event in events {
                for webhook in &self.webhooks {
                    state.deliveries.insert((webhook.clone(), event.seq), None);
                }
                state
                    .streams
                    .insert(event.stream.id.clone(), event.stream.clone());
                let seq = event.seq;
                state.events.insert(seq, event);
                self.committed.advance(seq);
            }
            Ok(())
        });
        ready(result)
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
        self.state
            .lock()
            .unwrap_or_else(|poison| poison.into_inner())
            .closed = true;
        ready(Ok(()))
    }
}
