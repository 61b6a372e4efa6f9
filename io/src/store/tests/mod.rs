//! One contract suite for every [`EventStore`]: each test body runs against the SQLite
//! store (reopened from the same file) and the in-memory twin (`MemoryStore::reopen`).

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use acemux_core::lifecycle::{
    EngineAddr, Event, Input, KeyType, Output, Registry, RegistryConfig, SessionInfo, StreamEnded,
    StreamKey, StreamStarted, StreamState, StreamStatus,
};
use acemux_core::Instant;

use super::{
    DeliveryOutcome, EventQuery, EventStore, GivenUp, MemoryStore, SqliteStore, StoreError,
};

/// The webhooks every store under test delivers to.
const HOOK_A: &str = "http://orchestrator.invalid/acemux/events";
const HOOK_B: &str = "http://audit.invalid/hooks/acemux";
/// A webhook no store under test is configured with.
const HOOK_UNKNOWN: &str = "http://nobody.invalid/hook";

const SEED: u64 = 0x5EED_0001;
const OTHER_SEED: u64 = 0xBAD_5EED;

/// Bound on anything a test waits for, so a broken store fails instead of hanging.
const PATIENCE: Duration = Duration::from_secs(30);

fn webhooks() -> Vec<String> {
    vec![HOOK_A.to_owned(), HOOK_B.to_owned()]
}

// ---------------------------------------------------------------------------------------
// Stores under test
// ---------------------------------------------------------------------------------------

#[derive(Clone, Copy, Debug)]
enum Backend {
    Memory,
    Sqlite,
}

enum Kind {
    Memory(Arc<MemoryStore>),
    Sqlite {
        path: PathBuf,
        _dir: tempfile::TempDir,
    },
}

/// A store under test and how to reopen it as a restarted process would.
struct Harness {
    store: Arc<dyn EventStore>,
    kind: Kind,
}

impl Harness {
    fn open(backend: Backend) -> Self {
        match backend {
            Backend::Memory => {
                let memory = MemoryStore::new(webhooks());
                Harness {
                    store: memory.clone(),
                    kind: Kind::Memory(memory),
                }
            }
            Backend::Sqlite => {
                let dir = tempfile::tempdir().expect("temporary directory");
                let path = dir.path().join("events.sqlite");
                let store = SqliteStore::open(&path, webhooks()).expect("open a new database");
                Harness {
                    store,
                    kind: Kind::Sqlite { path, _dir: dir },
                }
            }
        }
    }

    fn store(&self) -> Arc<dyn EventStore> {
        self.store.clone()
    }

    /// Closes the store (harmless when already closed) and opens it again.
    async fn reopen(&mut self) -> Arc<dyn EventStore> {
        self.store.close().await.expect("close before reopening");
        match &self.kind {
            Kind::Memory(memory) => memory.reopen(),
            Kind::Sqlite { path, .. } => {
                self.store = SqliteStore::open(path, webhooks()).expect("reopen the database");
            }
        }
        self.store()
    }
}

// ---------------------------------------------------------------------------------------
// Realistic events, made by the lifecycle registry itself
// ---------------------------------------------------------------------------------------

/// Drives a registry to produce the events a running proxy would append.
struct Feed {
    registry: Registry,
    clock: Instant,
}

impl Feed {
    fn new() -> Self {
        Feed::resuming_after(0, SEED)
    }

    /// A registry that lost its streams and numbers events from `last_seq + 1` again.
    fn resuming_after(last_seq: u64, seed: u64) -> Self {
        let config = RegistryConfig {
            seed,
            ..RegistryConfig::default()
        };
        Feed {
            registry: Registry::restore(config, Vec::new(), last_seq),
            clock: Instant::from_micros(1_000_000),
        }
    }

    fn apply(&mut self, input: Input) -> Event {
        self.clock = self.clock + Duration::from_millis(1_250);
        self.registry
            .handle_input(self.clock, input)
            .expect("the registry accepts the input");
        let Some(Output::Event(event)) = self.registry.poll_output() else {
            panic!("the input emitted no event");
        };
        assert!(
            self.registry.poll_output().is_none(),
            "one input, one event"
        );
        event
    }

    /// `stream_started` for a stream whose id is `name`.
    fn start(&mut self, name: &str) -> Event {
        let engine = 6878 + u16::try_from(name.len() % 4).expect("small");
        self.apply(Input::Started(StreamStarted {
            container_id: Some(format!("acestream-engine-{engine}")),
            engine: EngineAddr {
                host: "10.20.0.7".to_owned(),
                port: engine,
            },
            stream: StreamKey {
                key_type: KeyType::ContentId,
                key: format!(
                    "{:0>40}",
                    name.replace(|c: char| !c.is_ascii_hexdigit(), "")
                ),
            },
            session: SessionInfo {
                playback_session_id: format!("pbs-{name}"),
                stat_url: format!("http://10.20.0.7:{engine}/ace/stat/{name}"),
                command_url: format!("http://10.20.0.7:{engine}/ace/cmd/{name}"),
                is_live: true,
            },
            labels: BTreeMap::from([
                ("stream_id".to_owned(), name.to_owned()),
                ("client".to_owned(), "living-room-tv".to_owned()),
            ]),
        }))
    }

    /// `stream_ended` for the stream `id`.
    fn end(&mut self, id: &str) -> Event {
        self.apply(Input::Ended(StreamEnded {
            container_id: None,
            stream_id: Some(id.to_owned()),
            reason: Some("client disconnected".into()),
        }))
    }
}

// ---------------------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------------------

fn query(after: u64, limit: usize, stream_id: Option<&str>) -> EventQuery {
    EventQuery {
        after,
        limit,
        stream_id: stream_id.map(str::to_owned),
    }
}

async fn all_events(store: &dyn EventStore) -> Vec<Event> {
    store
        .events(query(0, usize::MAX, None))
        .await
        .expect("read events")
}

async fn append(store: &dyn EventStore, events: &[Event]) {
    store
        .append(events.to_vec())
        .await
        .expect("append is committed");
}

async fn pending_seqs(store: &dyn EventStore, webhook: &str) -> Vec<u64> {
    seqs(
        &store
            .pending(webhook.to_owned(), usize::MAX)
            .await
            .expect("read pending deliveries"),
    )
}

async fn pending_count(store: &dyn EventStore, webhook: &str) -> u64 {
    store
        .pending_count(webhook.to_owned())
        .await
        .expect("count pending deliveries")
}

async fn finish(store: &dyn EventStore, webhook: &str, seq: u64, outcome: DeliveryOutcome) {
    store
        .finish_delivery(webhook.to_owned(), seq, outcome)
        .await
        .expect("record the delivery outcome");
}

fn seqs(events: &[Event]) -> Vec<u64> {
    events.iter().map(|event| event.seq).collect()
}

/// Streams by id, for comparing restored streams regardless of their order.
fn by_id(streams: Vec<StreamState>) -> BTreeMap<String, StreamState> {
    let count = streams.len();
    let map: BTreeMap<String, StreamState> = streams
        .into_iter()
        .map(|stream| (stream.id.clone(), stream))
        .collect();
    assert_eq!(map.len(), count, "a stream was restored twice");
    map
}

/// The latest state of every stream the events mention.
fn latest_states(events: &[Event]) -> BTreeMap<String, StreamState> {
    let mut states = BTreeMap::new();
    for event in events {
        states.insert(event.stream.id.clone(), event.stream.clone());
    }
    states
}

fn is_closed<T: std::fmt::Debug>(result: &Result<T, StoreError>) -> bool {
    matches!(result, Err(StoreError::Closed))
}

mod faults;
mod reads;
mod writes;

use reads::*;
use writes::*;

// ---------------------------------------------------------------------------------------
// Every test, for every store
// ---------------------------------------------------------------------------------------

macro_rules! contract {
    ($($test:ident),* $(,)?) => {
        mod memory {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
                async fn $test() {
                    super::$test(super::Backend::Memory).await;
                }
            )*
        }

        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
                async fn $test() {
                    super::$test(super::Backend::Sqlite).await;
                }
            )*
        }
    };
}

contract! {
    events_returns_appended_events_in_seq_order,
    events_after_returns_only_later_seqs,
    events_limit_returns_the_oldest_matching_events,
    events_stream_id_returns_only_that_streams_events,
    committed_is_the_highest_seq_once_append_resolves,
    committed_wakes_a_waiting_receiver,
    committed_does_not_advance_for_a_failed_append,
    committed_starts_at_the_last_seq_after_reopen,
    restore_on_a_fresh_store_returns_the_fresh_seed,
    restore_keeps_the_first_seed_it_stored,
    restore_after_reopen_returns_the_stored_seed,
    restore_after_reopen_returns_the_last_seq,
    restore_returns_every_active_stream,
    restore_returns_only_the_newest_max_ended_ended_streams,
    pending_returns_undelivered_events_in_seq_order_for_each_webhook,
    pending_limit_returns_the_oldest_undelivered_events,
    pending_count_matches_pending,
    finish_delivery_delivered_removes_the_event_from_pending,
    finish_delivery_rejected_removes_the_event_from_pending,
    finish_delivery_leaves_other_webhooks_pending,
    pending_deliveries_survive_a_reopen,
    give_up_oldest_leaves_only_the_newest_keep_pending,
    give_up_oldest_within_the_bound_gives_up_nothing,
    give_up_oldest_with_keep_zero_gives_up_every_pending_delivery,
    given_up_deliveries_stay_given_up_after_a_reopen,
    append_with_a_duplicate_seq_fails,
    append_with_a_seq_repeated_within_the_batch_fails,
    append_with_a_duplicate_seq_leaves_earlier_data_intact,
    append_succeeds_after_a_failed_append,
    calls_after_close_fail_with_closed,
    close_commits_appends_queued_before_it,
    reopen_after_close_shows_exactly_the_acknowledged_appends,
    concurrent_appends_all_commit,
}
