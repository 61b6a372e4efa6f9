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

use super::{DeliveryOutcome, EventQuery, EventStore, MemoryStore, SqliteStore, StoreError};

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
            reason: Some("client disconnected".to_owned()),
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

// ---------------------------------------------------------------------------------------
// events()
// ---------------------------------------------------------------------------------------

async fn events_returns_appended_events_in_seq_order(backend: Backend) {
    let harness = Harness::open(backend);
    let store = harness.store();
    let mut feed = Feed::new();
    let first = [feed.start("alpha"), feed.start("bravo")];
    let second = [feed.end("alpha")];
    let third = [feed.start("charlie"), feed.end("bravo")];
    append(&*store, &first).await;
    append(&*store, &second).await;
    append(&*store, &third).await;

    let expected: Vec<Event> = first.into_iter().chain(second).chain(third).collect();
    assert_eq!(seqs(&expected), [1, 2, 3, 4, 5]);
    assert_eq!(all_events(&*store).await, expected);
}

async fn events_after_returns_only_later_seqs(backend: Backend) {
    let harness = Harness::open(backend);
    let store = harness.store();
    let mut feed = Feed::new();
    let events: Vec<Event> = ["a", "b", "c", "d", "e", "f"]
        .iter()
        .map(|name| feed.start(name))
        .collect();
    append(&*store, &events).await;

    let after = |after| store.events(query(after, usize::MAX, None));
    assert_eq!(seqs(&after(4).await.expect("read")), [5, 6]);
    assert_eq!(after(0).await.expect("read"), events);
    assert!(after(6).await.expect("read").is_empty());
    assert!(after(60).await.expect("read").is_empty());
}

async fn events_limit_returns_the_oldest_matching_events(backend: Backend) {
    let harness = Harness::open(backend);
    let store = harness.store();
    let mut feed = Feed::new();
    let events: Vec<Event> = ["a", "b", "c", "d", "e", "f"]
        .iter()
        .map(|name| feed.start(name))
        .collect();
    append(&*store, &events).await;

    let read = |after, limit| store.events(query(after, limit, None));
    assert_eq!(seqs(&read(0, 2).await.expect("read")), [1, 2]);
    assert_eq!(seqs(&read(3, 2).await.expect("read")), [4, 5]);
    assert_eq!(seqs(&read(5, 2).await.expect("read")), [6]);
    assert!(read(0, 0).await.expect("read").is_empty());
}

async fn events_stream_id_returns_only_that_streams_events(backend: Backend) {
    let harness = Harness::open(backend);
    let store = harness.store();
    let mut feed = Feed::new();
    let events = [
        feed.start("alpha"),
        feed.start("bravo"),
        feed.end("alpha"),
        feed.end("bravo"),
        feed.start("charlie"),
    ];
    append(&*store, &events).await;

    let read = |after, limit, id| store.events(query(after, limit, Some(id)));
    let alpha = read(0, usize::MAX, "alpha").await.expect("read");
    assert_eq!(alpha, [events[0].clone(), events[2].clone()]);
    assert_eq!(
        seqs(&read(1, usize::MAX, "alpha").await.expect("read")),
        [3]
    );
    assert_eq!(seqs(&read(0, 1, "bravo").await.expect("read")), [2]);
    assert!(read(0, usize::MAX, "zulu").await.expect("read").is_empty());
}

// ---------------------------------------------------------------------------------------
// committed()
// ---------------------------------------------------------------------------------------

async fn committed_is_the_highest_seq_once_append_resolves(backend: Backend) {
    let harness = Harness::open(backend);
    let store = harness.store();
    let committed = store.committed();
    assert_eq!(*committed.borrow(), 0);
    let mut feed = Feed::new();

    append(
        &*store,
        &[feed.start("a"), feed.start("b"), feed.start("c")],
    )
    .await;
    assert_eq!(*committed.borrow(), 3, "the highest seq of the batch");
    append(&*store, &[feed.end("b")]).await;
    assert_eq!(*committed.borrow(), 4);
    assert_eq!(*store.committed().borrow(), 4, "a new receiver sees it too");
}

async fn committed_wakes_a_waiting_receiver(backend: Backend) {
    let harness = Harness::open(backend);
    let store = harness.store();
    let mut committed = store.committed();
    let waiter = tokio::spawn(async move {
        *committed
            .wait_for(|seq| *seq >= 2)
            .await
            .expect("the store keeps the sender")
    });
    tokio::task::yield_now().await;
    let mut feed = Feed::new();
    append(&*store, &[feed.start("a"), feed.start("b")]).await;

    let seen = tokio::time::timeout(PATIENCE, waiter)
        .await
        .expect("the waiter is woken")
        .expect("the waiter does not panic");
    assert_eq!(seen, 2);
}

async fn committed_does_not_advance_for_a_failed_append(backend: Backend) {
    let harness = Harness::open(backend);
    let store = harness.store();
    let mut feed = Feed::new();
    append(&*store, &[feed.start("a"), feed.start("b")]).await;
    let committed = store.committed();
    let duplicate = Feed::new().start("intruder");

    let failed = store.append(vec![feed.start("c"), duplicate]).await;
    assert!(failed.is_err(), "a batch with a duplicate seq fails");
    assert_eq!(*committed.borrow(), 2, "seq 3 was never committed");
}

async fn committed_starts_at_the_last_seq_after_reopen(backend: Backend) {
    let mut harness = Harness::open(backend);
    let mut feed = Feed::new();
    append(&*harness.store(), &[feed.start("a"), feed.start("b")]).await;
    append(&*harness.store(), &[feed.end("a")]).await;

    let store = harness.reopen().await;
    assert_eq!(*store.committed().borrow(), 3);
}

// ---------------------------------------------------------------------------------------
// restore()
// ---------------------------------------------------------------------------------------

async fn restore_on_a_fresh_store_returns_the_fresh_seed(backend: Backend) {
    let harness = Harness::open(backend);
    let restored = harness.store().restore(10, SEED).await.expect("restore");
    assert_eq!(restored.seed, SEED);
    assert_eq!(restored.last_seq, 0);
    assert!(restored.streams.is_empty());
}

async fn restore_keeps_the_first_seed_it_stored(backend: Backend) {
    let harness = Harness::open(backend);
    let store = harness.store();
    store.restore(10, SEED).await.expect("first restore");
    let again = store.restore(10, OTHER_SEED).await.expect("second restore");
    assert_eq!(again.seed, SEED);
}

async fn restore_after_reopen_returns_the_stored_seed(backend: Backend) {
    let mut harness = Harness::open(backend);
    harness.store().restore(10, SEED).await.expect("restore");

    let store = harness.reopen().await;
    let restored = store.restore(10, OTHER_SEED).await.expect("restore");
    assert_eq!(restored.seed, SEED, "not the new fresh seed");
}

async fn restore_after_reopen_returns_the_last_seq(backend: Backend) {
    let mut harness = Harness::open(backend);
    let store = harness.store();
    store.restore(10, SEED).await.expect("restore");
    let mut feed = Feed::new();
    append(&*store, &[feed.start("a"), feed.start("b")]).await;
    append(&*store, &[feed.end("a"), feed.start("c")]).await;

    let store = harness.reopen().await;
    let restored = store.restore(10, OTHER_SEED).await.expect("restore");
    assert_eq!(restored.last_seq, 4);
}

async fn restore_returns_every_active_stream(backend: Backend) {
    let mut harness = Harness::open(backend);
    let store = harness.store();
    store.restore(1, SEED).await.expect("restore");
    let mut feed = Feed::new();
    let mut events = Vec::new();
    for name in ["s1", "s2", "s3", "s4", "s5", "s6"] {
        events.push(feed.start(name));
    }
    events.push(feed.end("s2"));
    append(&*store, &events).await;

    let store = harness.reopen().await;
    let restored = by_id(store.restore(0, SEED).await.expect("restore").streams);
    let mut expected = latest_states(&events);
    expected.remove("s2");
    assert_eq!(
        restored, expected,
        "all five active streams, as last changed"
    );
    assert!(restored
        .values()
        .all(|stream| stream.status == StreamStatus::Started));
}

async fn restore_returns_only_the_newest_max_ended_ended_streams(backend: Backend) {
    let mut harness = Harness::open(backend);
    let store = harness.store();
    store.restore(10, SEED).await.expect("restore");
    let mut feed = Feed::new();
    let mut events = Vec::new();
    for name in ["s1", "s2", "s3", "s4", "s5"] {
        events.push(feed.start(name));
    }
    append(&*store, &events).await;
    // Ended in an order that is neither id order nor start order.
    for name in ["s3", "s1", "s5", "s2"] {
        append(&*store, &[feed.end(name)]).await;
    }
    let all = all_events(&*store).await;
    let latest = latest_states(&all);
    let restored_ids = |streams: Vec<StreamState>| -> Vec<String> {
        let streams = by_id(streams);
        for (id, stream) in &streams {
            assert_eq!(stream, &latest[id], "{id} as last changed");
        }
        streams.into_keys().collect()
    };

    let store = harness.reopen().await;
    let two = store.restore(2, SEED).await.expect("restore");
    assert_eq!(restored_ids(two.streams), ["s2", "s4", "s5"]);
    let none = store.restore(0, SEED).await.expect("restore");
    assert_eq!(restored_ids(none.streams), ["s4"]);
    let every = store.restore(10, SEED).await.expect("restore");
    assert_eq!(restored_ids(every.streams), ["s1", "s2", "s3", "s4", "s5"]);
}

// ---------------------------------------------------------------------------------------
// pending(), pending_count(), finish_delivery()
// ---------------------------------------------------------------------------------------

/// Appends four events in two batches.
async fn four_events(store: &dyn EventStore) -> Vec<Event> {
    let mut feed = Feed::new();
    let first = [feed.start("alpha"), feed.start("bravo")];
    let second = [feed.end("alpha"), feed.start("charlie")];
    append(store, &first).await;
    append(store, &second).await;
    first.into_iter().chain(second).collect()
}

async fn pending_returns_undelivered_events_in_seq_order_for_each_webhook(backend: Backend) {
    let harness = Harness::open(backend);
    let store = harness.store();
    let events = four_events(&*store).await;

    for webhook in [HOOK_A, HOOK_B] {
        let pending = store
            .pending(webhook.to_owned(), usize::MAX)
            .await
            .expect("read pending deliveries");
        assert_eq!(pending, events, "{webhook}");
    }
    assert!(pending_seqs(&*store, HOOK_UNKNOWN).await.is_empty());
}

async fn pending_limit_returns_the_oldest_undelivered_events(backend: Backend) {
    let harness = Harness::open(backend);
    let store = harness.store();
    four_events(&*store).await;
    finish(&*store, HOOK_A, 1, DeliveryOutcome::Delivered).await;

    let pending = store.pending(HOOK_A.to_owned(), 2).await.expect("read");
    assert_eq!(seqs(&pending), [2, 3]);
}

async fn pending_count_matches_pending(backend: Backend) {
    let harness = Harness::open(backend);
    let store = harness.store();
    four_events(&*store).await;
    assert_eq!(pending_count(&*store, HOOK_A).await, 4);
    finish(&*store, HOOK_A, 2, DeliveryOutcome::Delivered).await;
    finish(&*store, HOOK_A, 3, DeliveryOutcome::Rejected).await;

    for webhook in [HOOK_A, HOOK_B, HOOK_UNKNOWN] {
        let listed = pending_seqs(&*store, webhook).await.len();
        let counted = pending_count(&*store, webhook).await;
        assert_eq!(counted, u64::try_from(listed).expect("small"), "{webhook}");
    }
    assert_eq!(pending_count(&*store, HOOK_A).await, 2);
}

async fn finish_delivery_delivered_removes_the_event_from_pending(backend: Backend) {
    let harness = Harness::open(backend);
    let store = harness.store();
    four_events(&*store).await;

    finish(&*store, HOOK_A, 2, DeliveryOutcome::Delivered).await;
    assert_eq!(pending_seqs(&*store, HOOK_A).await, [1, 3, 4]);
    finish(&*store, HOOK_A, 1, DeliveryOutcome::Delivered).await;
    assert_eq!(pending_seqs(&*store, HOOK_A).await, [3, 4]);
}

async fn finish_delivery_rejected_removes_the_event_from_pending(backend: Backend) {
    let harness = Harness::open(backend);
    let store = harness.store();
    four_events(&*store).await;

    finish(&*store, HOOK_A, 3, DeliveryOutcome::Rejected).await;
    assert_eq!(pending_seqs(&*store, HOOK_A).await, [1, 2, 4]);
    assert_eq!(pending_count(&*store, HOOK_A).await, 3);
}

async fn finish_delivery_leaves_other_webhooks_pending(backend: Backend) {
    let harness = Harness::open(backend);
    let store = harness.store();
    four_events(&*store).await;

    finish(&*store, HOOK_A, 1, DeliveryOutcome::Delivered).await;
    finish(&*store, HOOK_A, 2, DeliveryOutcome::Rejected).await;
    assert_eq!(pending_seqs(&*store, HOOK_B).await, [1, 2, 3, 4]);
    assert_eq!(pending_count(&*store, HOOK_B).await, 4);
}

async fn pending_deliveries_survive_a_reopen(backend: Backend) {
    let mut harness = Harness::open(backend);
    let store = harness.store();
    let events = four_events(&*store).await;
    finish(&*store, HOOK_A, 1, DeliveryOutcome::Delivered).await;
    finish(&*store, HOOK_A, 2, DeliveryOutcome::Rejected).await;

    let store = harness.reopen().await;
    let pending_a = store.pending(HOOK_A.to_owned(), usize::MAX).await;
    assert_eq!(pending_a.expect("read"), events[2..]);
    assert_eq!(pending_seqs(&*store, HOOK_B).await, [1, 2, 3, 4]);
    assert_eq!(pending_count(&*store, HOOK_A).await, 2);
    assert_eq!(pending_count(&*store, HOOK_B).await, 4);
}

// ---------------------------------------------------------------------------------------
// append() failures
// ---------------------------------------------------------------------------------------

async fn append_with_a_duplicate_seq_fails(backend: Backend) {
    let harness = Harness::open(backend);
    let store = harness.store();
    let mut feed = Feed::new();
    append(&*store, &[feed.start("alpha"), feed.start("bravo")]).await;

    // A registry that forgot its state numbers from 1 again.
    let duplicate = Feed::resuming_after(1, OTHER_SEED).start("intruder");
    assert_eq!(duplicate.seq, 2);
    let result = store.append(vec![duplicate]).await;
    assert!(matches!(result, Err(StoreError::Database(_))), "{result:?}");
}

async fn append_with_a_seq_repeated_within_the_batch_fails(backend: Backend) {
    let harness = Harness::open(backend);
    let store = harness.store();
    let first = Feed::new().start("alpha");
    let twin = Feed::resuming_after(0, OTHER_SEED).start("intruder");
    assert_eq!(first.seq, twin.seq);

    let result = store.append(vec![first, twin]).await;
    assert!(matches!(result, Err(StoreError::Database(_))), "{result:?}");
    assert!(all_events(&*store).await.is_empty(), "nothing of it stored");
}

async fn append_with_a_duplicate_seq_leaves_earlier_data_intact(backend: Backend) {
    let harness = Harness::open(backend);
    let store = harness.store();
    store.restore(10, SEED).await.expect("restore");
    let mut feed = Feed::new();
    let stored = [feed.start("alpha"), feed.start("bravo")];
    append(&*store, &stored).await;

    // A new event (ending alpha) in one batch with a seq-2 event of another stream.
    let duplicate = Feed::resuming_after(1, OTHER_SEED).start("intruder");
    let result = store.append(vec![feed.end("alpha"), duplicate]).await;
    assert!(result.is_err(), "the batch is refused");

    assert_eq!(all_events(&*store).await, stored);
    let restored = store.restore(10, SEED).await.expect("restore");
    assert_eq!(restored.last_seq, 2);
    assert_eq!(by_id(restored.streams), latest_states(&stored));
    for webhook in [HOOK_A, HOOK_B] {
        assert_eq!(pending_seqs(&*store, webhook).await, [1, 2], "{webhook}");
    }
}

async fn append_succeeds_after_a_failed_append(backend: Backend) {
    let harness = Harness::open(backend);
    let store = harness.store();
    let mut feed = Feed::new();
    append(&*store, &[feed.start("alpha")]).await;
    let duplicate = Feed::new().start("intruder");
    assert!(store.append(vec![duplicate]).await.is_err());

    let next = feed.start("bravo");
    append(&*store, std::slice::from_ref(&next)).await;
    assert_eq!(seqs(&all_events(&*store).await), [1, 2]);
    assert_eq!(*store.committed().borrow(), 2);
}

// ---------------------------------------------------------------------------------------
// close()
// ---------------------------------------------------------------------------------------

async fn calls_after_close_fail_with_closed(backend: Backend) {
    let harness = Harness::open(backend);
    let store = harness.store();
    let mut feed = Feed::new();
    append(&*store, &[feed.start("alpha")]).await;
    store.close().await.expect("close");

    let restore = store.restore(10, SEED).await;
    assert!(is_closed(&restore), "restore: {restore:?}");
    let appended = store.append(vec![feed.start("bravo")]).await;
    assert!(is_closed(&appended), "append: {appended:?}");
    let events = store.events(query(0, 10, None)).await;
    assert!(is_closed(&events), "events: {events:?}");
    let pending = store.pending(HOOK_A.to_owned(), 10).await;
    assert!(is_closed(&pending), "pending: {pending:?}");
    let count = store.pending_count(HOOK_A.to_owned()).await;
    assert!(is_closed(&count), "pending_count: {count:?}");
    let finished = store
        .finish_delivery(HOOK_A.to_owned(), 1, DeliveryOutcome::Delivered)
        .await;
    assert!(is_closed(&finished), "finish_delivery: {finished:?}");
}

async fn close_commits_appends_queued_before_it(backend: Backend) {
    let mut harness = Harness::open(backend);
    let store = harness.store();
    let mut feed = Feed::new();
    let events: Vec<Event> = (0..50).map(|n| feed.start(&format!("s{n}"))).collect();
    let appends: Vec<_> = events
        .iter()
        .map(|event| store.append(vec![event.clone()]))
        .collect();
    let closing = store.close();

    for (n, append) in appends.into_iter().enumerate() {
        append
            .await
            .unwrap_or_else(|error| panic!("append {n} queued before close: {error}"));
    }
    closing.await.expect("close");
    let store = harness.reopen().await;
    assert_eq!(all_events(&*store).await, events);
    assert_eq!(pending_count(&*store, HOOK_A).await, 50);
}

async fn reopen_after_close_shows_exactly_the_acknowledged_appends(backend: Backend) {
    let mut harness = Harness::open(backend);
    let store = harness.store();
    let feed = Arc::new(Mutex::new(Feed::new()));
    let tasks: Vec<_> = (0..200)
        .map(|n| {
            let (store, feed) = (store.clone(), feed.clone());
            tokio::spawn(async move {
                let (event, append) = {
                    let mut feed = feed.lock().expect("feed lock");
                    let event = feed.start(&format!("s{n}"));
                    let append = store.append(vec![event.clone()]);
                    (event, append)
                };
                (event, append.await)
            })
        })
        .collect();
    let mut committed = store.committed();
    tokio::time::timeout(PATIENCE, committed.wait_for(|seq| *seq >= 50))
        .await
        .expect("appends commit")
        .expect("the store keeps the sender");
    store.close().await.expect("close");

    let mut acknowledged = Vec::new();
    for task in tasks {
        let (event, result) = task.await.expect("task does not panic");
        match result {
            Ok(()) => acknowledged.push(event),
            Err(StoreError::Closed) => {}
            Err(error) => panic!("append failed with {error}"),
        }
    }
    acknowledged.sort_by_key(|event| event.seq);
    assert!(acknowledged.len() >= 50);
    let store = harness.reopen().await;
    assert_eq!(all_events(&*store).await, acknowledged);
}

// ---------------------------------------------------------------------------------------
// Concurrency
// ---------------------------------------------------------------------------------------

async fn concurrent_appends_all_commit(backend: Backend) {
    let harness = Harness::open(backend);
    let store = harness.store();
    let feed = Arc::new(Mutex::new(Feed::new()));
    // Like the lifecycle service: number and enqueue under one lock, await outside it.
    let tasks: Vec<_> = (0..200)
        .map(|n| {
            let (store, feed) = (store.clone(), feed.clone());
            tokio::spawn(async move {
                let append = {
                    let mut feed = feed.lock().expect("feed lock");
                    store.append(vec![feed.start(&format!("s{n}"))])
                };
                append.await
            })
        })
        .collect();
    for task in tasks {
        tokio::time::timeout(PATIENCE, task)
            .await
            .expect("append resolves")
            .expect("task does not panic")
            .expect("append is committed");
    }

    let events = all_events(&*store).await;
    assert_eq!(seqs(&events), (1..=200).collect::<Vec<u64>>());
    assert_eq!(*store.committed().borrow(), 200);
    assert_eq!(pending_count(&*store, HOOK_B).await, 200);
}

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
    append_with_a_duplicate_seq_fails,
    append_with_a_seq_repeated_within_the_batch_fails,
    append_with_a_duplicate_seq_leaves_earlier_data_intact,
    append_succeeds_after_a_failed_append,
    calls_after_close_fail_with_closed,
    close_commits_appends_queued_before_it,
    reopen_after_close_shows_exactly_the_acknowledged_appends,
    concurrent_appends_all_commit,
}
