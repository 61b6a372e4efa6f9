//! The shared lifecycle registry, its durable log, and the one place where they meet.
//!
//! The registry sits behind a short synchronous critical section that is never held
//! across an `.await`: apply the input, hand the events to the store (which enqueues
//! them in sequence order), release, and only then wait for the commit.

use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use acemux_core::lifecycle::{
    EndReason, EngineState, IdempotencyCache, Input, LifecycleError, Outcome, Output, Registry,
    StreamEnded, StreamState, StreamStatus, DEFAULT_IDEMPOTENCY_CAPACITY,
};
use thiserror::Error;
use tokio::sync::{watch, Notify, Semaphore};

use crate::clock::Clock;
use crate::metrics::{EventLabels, Metrics};
use crate::store::{EventStore, StoreError};

/// Most lifecycle changes waiting for their commit at once, answered or not (a change
/// whose answer timed out keeps its place until the store takes it). Past it, new
/// requests wait (up to the commit timeout) instead of queueing without bound behind a
/// slow or failing disk, and are then refused without being applied.
pub const MAX_IN_FLIGHT_CHANGES: usize = 1024;

/// Answers remembered by idempotency key (request keys and the ids of events acemux
/// emitted); the oldest is forgotten first.
pub const IDEMPOTENCY_CAPACITY: usize = DEFAULT_IDEMPOTENCY_CAPACITY;

/// Why a lifecycle change was not applied or not confirmed.
#[derive(Debug, Error)]
pub enum ApplyError {
    /// The registry refused the input.
    #[error(transparent)]
    Lifecycle(#[from] LifecycleError),
    /// Too many changes are waiting for the store.
    #[error("too many lifecycle changes in flight; retry later")]
    Busy,
    /// The change was applied but its commit failed.
    #[error("event store: {0}")]
    Store(#[from] StoreError),
    /// The change was applied but its commit did not finish in time.
    #[error("event store did not commit within {0:?}")]
    CommitTimeout(Duration),
}

/// The registry shared by the event API and (later) the proxied channels.
pub struct Lifecycle {
    registry: Mutex<Registry>,
    store: Arc<dyn EventStore>,
    /// Read for `health` only, never waited on (waiters subscribe on their own).
    committed: watch::Receiver<u64>,
    clock: Clock,
    metrics: Arc<Metrics>,
    in_flight: Arc<Semaphore>,
    commit_timeout: Duration,
    timer_changed: Notify,
    answers: Mutex<IdempotencyCache>,
}

/// A change applied to the registry, its commit not yet confirmed.
#[must_use = "a staged change is confirmed with Lifecycle::confirm"]
pub struct Staged {
    outcome: Outcome,
    commit: Option<crate::store::StoreFuture<()>>,
    /// Its place among the changes in flight, held until it is durable.
    permit: tokio::sync::OwnedSemaphorePermit,
}

/// The answer to an applied input, possibly a replay of an earlier one.
#[derive(Clone, Debug)]
pub struct Applied {
    /// The outcome (for a replay: the outcome first given under the key).
    pub outcome: Outcome,
    /// `true` when the outcome was replayed from the idempotency cache.
    pub replayed: bool,
}

impl Lifecycle {
    /// Wraps a (restored) registry.
    pub fn new(
        registry: Registry,
        store: Arc<dyn EventStore>,
        clock: Clock,
        metrics: Arc<Metrics>,
        commit_timeout: Duration,
    ) -> Self {
        metrics
            .active_streams
            .set(gauge_value(registry.active_streams()));
        Lifecycle {
            committed: store.committed(),
            registry: Mutex::new(registry),
            store,
            clock,
            metrics,
            in_flight: Arc::new(Semaphore::new(MAX_IN_FLIGHT_CHANGES)),
            commit_timeout,
            timer_changed: Notify::new(),
            answers: Mutex::new(IdempotencyCache::new(IDEMPOTENCY_CAPACITY)),
        }
    }

    fn registry(&self) -> MutexGuard<'_, Registry> {
        // A panic while holding the lock is a bug elsewhere; the registry itself is only
        // mutated through methods that leave it consistent, so keep serving.
        self.registry
            .lock()
            .unwrap_or_else(|poison| poison.into_inner())
    }

    fn answers(&self) -> MutexGuard<'_, IdempotencyCache> {
        self.answers
            .lock()
            .unwrap_or_else(|poison| poison.into_inner())
    }

    /// Ends the stream `stream_id` for `reason` (an end by id, as `stream_ended` with a
    /// `stream_id`); whether this ended it (false: it had already ended).
    pub async fn end_stream(&self, stream_id: &str, reason: EndReason) -> Result<bool, ApplyError> {
        let staged = self.stage_end(stream_id, reason).await?;
        Ok(self.confirm(staged).await?.updated)
    }

    /// Stages the end of the stream `stream_id` for `reason` (see [`Lifecycle::stage`]).
    pub async fn stage_end(
        &self,
        stream_id: &str,
        reason: EndReason,
    ) -> Result<Staged, ApplyError> {
        let ended = StreamEnded {
            container_id: None,
            stream_id: Some(stream_id.to_owned()),
            reason: Some(reason),
        };
        self.stage(Input::Ended(ended)).await
    }

    /// Applies a start or an end and returns once the resulting event (if any, or the
    /// event it repeats) is durable.
    ///
    /// With an idempotency key already seen — a key a client sent before, or the id of
    /// an event this process emitted (its own webhook delivery) — the first answer is
    /// replayed and nothing is applied.
    pub async fn apply(
        &self,
        input: Input,
        idempotency_key: Option<String>,
    ) -> Result<Applied, ApplyError> {
        if let Some(key) = &idempotency_key {
            let known = self.answers().get(key).cloned();
            if let Some(outcome) = known {
                self.metrics.idempotent_replays.inc();
                self.wait_committed(outcome.stream.last_event_seq).await?;
                return Ok(Applied {
                    outcome,
                    replayed: true,
                });
            }
        }
        let staged = self.stage(input).await?;
        // Remembered once applied, durable or not yet: a retry after a commit timeout
        // gets this answer (once it is durable), not "already started".
        if let Some(key) = idempotency_key {
            self.answers().insert(key, staged.outcome.clone());
        }
        let outcome = self.confirm(staged).await?;
        Ok(Applied {
            outcome,
            replayed: false,
        })
    }

    /// Applies `input` to the registry at once (its events numbered and handed to the
    /// store in order) without waiting for their commit: [`Lifecycle::confirm`] does.
    /// Changes staged one after another are numbered, and committed, in that order.
    pub async fn stage(&self, input: Input) -> Result<Staged, ApplyError> {
        let permit =
            tokio::time::timeout(self.commit_timeout, self.in_flight.clone().acquire_owned())
                .await
                .map_err(|_| ApplyError::Busy)?
                .map_err(|_| ApplyError::Busy)?;
        let (outcome, commit) = {
            let mut registry = self.registry();
            let outcome = registry.handle_input(self.clock.now(), input)?;
            let mut events = Vec::new();
            while let Some(Output::Event(event)) = registry.poll_output() {
                self.metrics
                    .events
                    .get_or_create(&EventLabels {
                        r#type: event.kind.as_str().to_owned(),
                    })
                    .inc();
                events.push(event);
            }
            {
                let mut answers = self.answers();
                for event in &events {
                    let outcome = Outcome {
                        stream: event.stream.clone(),
                        updated: true,
                    };
                    answers.insert(event.event_id.clone(), outcome);
                }
            }
            self.metrics
                .active_streams
                .set(gauge_value(registry.active_streams()));
            // Enqueued under the lock, so commit order is sequence order.
            let commit = (!events.is_empty()).then(|| self.store.append(events));
            (outcome, commit)
        };
        self.timer_changed.notify_one();
        Ok(Staged {
            outcome,
            commit,
            permit,
        })
    }

    /// Waits until a staged change is durable (bounded by the commit timeout) and
    /// returns its outcome.
    pub async fn confirm(&self, staged: Staged) -> Result<Outcome, ApplyError> {
        let Staged {
            outcome,
            commit,
            permit,
        } = staged;
        match commit {
            Some(mut commit) => {
                match tokio::time::timeout(self.commit_timeout, &mut commit).await {
                    Ok(Ok(())) => {}
                    Ok(Err(error)) => {
                        self.metrics.store_commit_errors.inc();
                        tracing::error!(stream = %outcome.stream.id, %error, "lifecycle change applied in memory but not stored");
                        return Err(error.into());
                    }
                    Err(_) => {
                        // The store keeps the change and commits it in order once it can;
                        // until then it holds its place among the changes in flight.
                        let (stream, metrics) = (outcome.stream.id.clone(), self.metrics.clone());
                        tokio::spawn(async move {
                            let _permit = permit;
                            if let Err(error) = commit.await {
                                metrics.store_commit_errors.inc();
                                tracing::error!(%stream, %error, "lifecycle change applied in memory but not stored");
                            }
                        });
                        return Err(ApplyError::CommitTimeout(self.commit_timeout));
                    }
                }
            }
            None => self.wait_committed(outcome.stream.last_event_seq).await?,
        }
        drop(permit);
        Ok(outcome)
    }

    /// Waits until event `seq` is committed (a repeat must not answer before the
    /// change it repeats is durable).
    async fn wait_committed(&self, seq: u64) -> Result<(), ApplyError> {
        // A subscription of its own: concurrent waiters must not share one channel.
        let mut committed = self.store.committed();
        let waited = tokio::time::timeout(
            self.commit_timeout,
            committed.wait_for(|committed| *committed >= seq),
        )
        .await
        .map(|result| result.map(drop));
        match waited {
            Ok(Ok(_)) => Ok(()),
            Ok(Err(_)) => Err(StoreError::Closed.into()),
            Err(_) => Err(ApplyError::CommitTimeout(self.commit_timeout)),
        }
    }

    /// Runs the registry's timers until `shutdown` turns true.
    pub async fn run_timers(&self, mut shutdown: watch::Receiver<bool>) {
        loop {
            let deadline = self.registry().poll_timeout();
            let sleep = self.clock.sleep_until_earliest([deadline]);
            tokio::select! {
                biased;
                _ = shutdown.wait_for(|stop| *stop) => return,
                () = self.timer_changed.notified() => {}
                () = sleep => self.registry().handle_timeout(self.clock.now()),
            }
        }
    }

    /// One stream by id.
    pub fn stream(&self, id: &str) -> Option<StreamState> {
        self.registry().stream(id).cloned()
    }

    /// Remembered streams, optionally only those with `status`, ordered by id.
    pub fn streams(&self, status: Option<StreamStatus>) -> Vec<StreamState> {
        self.registry()
            .streams()
            .filter(|stream| status.is_none_or(|status| stream.status == status))
            .cloned()
            .collect()
    }

    /// Engines learned from events.
    pub fn engines(&self) -> Vec<EngineState> {
        self.registry().engines().cloned().collect()
    }

    /// (active streams, last sequence applied, last sequence committed).
    pub fn health(&self) -> (usize, u64, u64) {
        let registry = self.registry();
        (
            registry.active_streams(),
            registry.last_seq(),
            *self.committed.borrow(),
        )
    }

    /// The clock this registry is driven by.
    pub fn clock(&self) -> Clock {
        self.clock
    }
}

fn gauge_value(count: usize) -> i64 {
    i64::try_from(count).unwrap_or(i64::MAX)
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use acemux_core::lifecycle::{
        EngineAddr, KeyType, RegistryConfig, SessionInfo, StreamKey, StreamStarted,
    };

    use super::*;
    use crate::store::{EventQuery, MemoryStore, StoreFaults};

    const COMMIT_TIMEOUT: Duration = Duration::from_millis(200);

    fn lifecycle(store: Arc<MemoryStore>) -> Lifecycle {
        Lifecycle::new(
            Registry::new(RegistryConfig::default()),
            store,
            Clock::new(1_700_000_000_000_000),
            Arc::new(Metrics::new()),
            COMMIT_TIMEOUT,
        )
    }

    fn started(name: &str) -> Input {
        Input::Started(StreamStarted {
            container_id: None,
            engine: EngineAddr {
                host: "10.0.0.2".into(),
                port: 6878,
            },
            stream: StreamKey {
                key_type: KeyType::ContentId,
                key: name.into(),
            },
            session: SessionInfo {
                playback_session_id: format!("pbs-{name}"),
                stat_url: format!("http://10.0.0.2:6878/ace/stat/{name}"),
                command_url: format!("http://10.0.0.2:6878/ace/cmd/{name}"),
                is_live: true,
            },
            labels: BTreeMap::new(),
        })
    }

    async fn durable(store: &MemoryStore) -> usize {
        store
            .events(EventQuery {
                after: 0,
                limit: 100,
                stream_id: None,
            })
            .await
            .expect("readable")
            .len()
    }

    #[tokio::test]
    async fn a_failing_store_answers_a_timeout_never_a_success_until_the_change_is_durable() {
        let store = MemoryStore::new(Vec::new());
        let lifecycle = lifecycle(store.clone());
        store.set_faults(StoreFaults {
            commit_delay: Duration::ZERO,
            failing: true,
        });

        let first = lifecycle.apply(started("a"), Some("key-1".into())).await;
        assert!(
            matches!(first, Err(ApplyError::CommitTimeout(_))),
            "{first:?}"
        );
        // The same request again, and the same start without its key: still not durable.
        let replay = lifecycle.apply(started("a"), Some("key-1".into())).await;
        assert!(
            matches!(replay, Err(ApplyError::CommitTimeout(_))),
            "{replay:?}"
        );
        let repeat = lifecycle.apply(started("a"), None).await;
        assert!(
            matches!(repeat, Err(ApplyError::CommitTimeout(_))),
            "{repeat:?}"
        );
        assert_eq!(durable(&store).await, 0);

        store.set_faults(StoreFaults::default());
        let replay = lifecycle
            .apply(started("a"), Some("key-1".into()))
            .await
            .expect("answered once durable");
        assert!(replay.replayed);
        assert_eq!(durable(&store).await, 1, "kept and committed, once");
        let later = lifecycle.apply(started("b"), None).await.expect("healthy");
        assert!(later.outcome.updated);
        assert_eq!(durable(&store).await, 2);
    }

    #[tokio::test]
    async fn changes_waiting_for_a_dead_store_keep_their_place_among_those_in_flight() {
        let store = MemoryStore::new(Vec::new());
        let lifecycle = lifecycle(store.clone());
        store.set_faults(StoreFaults {
            commit_delay: Duration::ZERO,
            failing: true,
        });
        let answered = lifecycle.apply(started("a"), None).await;
        assert!(matches!(answered, Err(ApplyError::CommitTimeout(_))));
        assert_eq!(
            lifecycle.in_flight.available_permits(),
            MAX_IN_FLIGHT_CHANGES - 1,
            "the timed-out change still holds its place"
        );
        store.set_faults(StoreFaults::default());
        tokio::time::timeout(Duration::from_secs(10), async {
            while lifecycle.in_flight.available_permits() != MAX_IN_FLIGHT_CHANGES {
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        })
        .await
        .expect("its place is freed once it commits");
        assert_eq!(durable(&store).await, 1);
    }
}
