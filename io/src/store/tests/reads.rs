//! The read side of the contract: `events()`, `committed()`, `restore()`.

use super::*;

// ---------------------------------------------------------------------------------------
// events()
// ---------------------------------------------------------------------------------------

pub(super) async fn events_returns_appended_events_in_seq_order(backend: Backend) {
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

pub(super) async fn events_after_returns_only_later_seqs(backend: Backend) {
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

pub(super) async fn events_limit_returns_the_oldest_matching_events(backend: Backend) {
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

pub(super) async fn events_stream_id_returns_only_that_streams_events(backend: Backend) {
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

pub(super) async fn committed_is_the_highest_seq_once_append_resolves(backend: Backend) {
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

pub(super) async fn committed_wakes_a_waiting_receiver(backend: Backend) {
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

pub(super) async fn committed_does_not_advance_for_a_failed_append(backend: Backend) {
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

pub(super) async fn committed_starts_at_the_last_seq_after_reopen(backend: Backend) {
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

pub(super) async fn restore_on_a_fresh_store_returns_the_fresh_seed(backend: Backend) {
    let harness = Harness::open(backend);
    let restored = harness.store().restore(10, SEED).await.expect("restore");
    assert_eq!(restored.seed, SEED);
    assert_eq!(restored.last_seq, 0);
    assert!(restored.streams.is_empty());
}

pub(super) async fn restore_keeps_the_first_seed_it_stored(backend: Backend) {
    let harness = Harness::open(backend);
    let store = harness.store();
    store.restore(10, SEED).await.expect("first restore");
    let again = store.restore(10, OTHER_SEED).await.expect("second restore");
    assert_eq!(again.seed, SEED);
}

pub(super) async fn restore_after_reopen_returns_the_stored_seed(backend: Backend) {
    let mut harness = Harness::open(backend);
    harness.store().restore(10, SEED).await.expect("restore");

    let store = harness.reopen().await;
    let restored = store.restore(10, OTHER_SEED).await.expect("restore");
    assert_eq!(restored.seed, SEED, "not the new fresh seed");
}

pub(super) async fn restore_after_reopen_returns_the_last_seq(backend: Backend) {
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

pub(super) async fn restore_returns_every_active_stream(backend: Backend) {
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

pub(super) async fn restore_returns_only_the_newest_max_ended_ended_streams(backend: Backend) {
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
