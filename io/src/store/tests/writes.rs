//! The write side of the contract: deliveries, failed appends, `close()`, concurrency.

use super::*;

// ---------------------------------------------------------------------------------------
// pending(), pending_count(), finish_delivery()
// ---------------------------------------------------------------------------------------

/// Appends four events in two batches.
pub(super) async fn four_events(store: &dyn EventStore) -> Vec<Event> {
    let mut feed = Feed::new();
    let first = [feed.start("alpha"), feed.start("bravo")];
    let second = [feed.end("alpha"), feed.start("charlie")];
    append(store, &first).await;
    append(store, &second).await;
    first.into_iter().chain(second).collect()
}

pub(super) async fn pending_returns_undelivered_events_in_seq_order_for_each_webhook(
    backend: Backend,
) {
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

pub(super) async fn pending_limit_returns_the_oldest_undelivered_events(backend: Backend) {
    let harness = Harness::open(backend);
    let store = harness.store();
    four_events(&*store).await;
    finish(&*store, HOOK_A, 1, DeliveryOutcome::Delivered).await;

    let pending = store.pending(HOOK_A.to_owned(), 2).await.expect("read");
    assert_eq!(seqs(&pending), [2, 3]);
}

pub(super) async fn pending_count_matches_pending(backend: Backend) {
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

pub(super) async fn finish_delivery_delivered_removes_the_event_from_pending(backend: Backend) {
    let harness = Harness::open(backend);
    let store = harness.store();
    four_events(&*store).await;

    finish(&*store, HOOK_A, 2, DeliveryOutcome::Delivered).await;
    assert_eq!(pending_seqs(&*store, HOOK_A).await, [1, 3, 4]);
    finish(&*store, HOOK_A, 1, DeliveryOutcome::Delivered).await;
    assert_eq!(pending_seqs(&*store, HOOK_A).await, [3, 4]);
}

pub(super) async fn finish_delivery_rejected_removes_the_event_from_pending(backend: Backend) {
    let harness = Harness::open(backend);
    let store = harness.store();
    four_events(&*store).await;

    finish(&*store, HOOK_A, 3, DeliveryOutcome::Rejected).await;
    assert_eq!(pending_seqs(&*store, HOOK_A).await, [1, 2, 4]);
    assert_eq!(pending_count(&*store, HOOK_A).await, 3);
}

pub(super) async fn finish_delivery_leaves_other_webhooks_pending(backend: Backend) {
    let harness = Harness::open(backend);
    let store = harness.store();
    four_events(&*store).await;

    finish(&*store, HOOK_A, 1, DeliveryOutcome::Delivered).await;
    finish(&*store, HOOK_A, 2, DeliveryOutcome::Rejected).await;
    assert_eq!(pending_seqs(&*store, HOOK_B).await, [1, 2, 3, 4]);
    assert_eq!(pending_count(&*store, HOOK_B).await, 4);
}

pub(super) async fn pending_deliveries_survive_a_reopen(backend: Backend) {
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
// give_up_oldest()
// ---------------------------------------------------------------------------------------

async fn give_up_oldest(store: &dyn EventStore, webhook: &str, keep: u64) -> Option<GivenUp> {
    store
        .give_up_oldest(webhook.to_owned(), keep)
        .await
        .expect("give up the oldest deliveries")
}

pub(super) async fn give_up_oldest_leaves_only_the_newest_keep_pending(backend: Backend) {
    let harness = Harness::open(backend);
    let store = harness.store();
    let events = four_events(&*store).await;
    finish(&*store, HOOK_A, 2, DeliveryOutcome::Delivered).await;

    let given_up = give_up_oldest(&*store, HOOK_A, 1).await;
    assert_eq!(
        given_up,
        Some(GivenUp {
            count: 2,
            first_seq: 1,
            last_seq: 3
        })
    );
    assert_eq!(pending_seqs(&*store, HOOK_A).await, [4]);
    assert_eq!(pending_count(&*store, HOOK_A).await, 1);
    assert_eq!(pending_seqs(&*store, HOOK_B).await, [1, 2, 3, 4]);
    assert_eq!(
        all_events(&*store).await,
        events,
        "the log keeps every event"
    );
}

pub(super) async fn give_up_oldest_within_the_bound_gives_up_nothing(backend: Backend) {
    let harness = Harness::open(backend);
    let store = harness.store();
    four_events(&*store).await;

    assert_eq!(give_up_oldest(&*store, HOOK_A, 4).await, None);
    assert_eq!(give_up_oldest(&*store, HOOK_A, u64::MAX).await, None);
    assert_eq!(give_up_oldest(&*store, HOOK_UNKNOWN, 0).await, None);
    assert_eq!(pending_seqs(&*store, HOOK_A).await, [1, 2, 3, 4]);
    assert_eq!(
        give_up_oldest(&*store, HOOK_A, 3).await.map(|up| up.count),
        Some(1)
    );
    assert_eq!(
        give_up_oldest(&*store, HOOK_A, 3).await,
        None,
        "already trimmed"
    );
}

pub(super) async fn give_up_oldest_with_keep_zero_gives_up_every_pending_delivery(
    backend: Backend,
) {
    let harness = Harness::open(backend);
    let store = harness.store();
    four_events(&*store).await;
    finish(&*store, HOOK_B, 4, DeliveryOutcome::Rejected).await;

    let given_up = give_up_oldest(&*store, HOOK_B, 0).await;
    assert_eq!(
        given_up,
        Some(GivenUp {
            count: 3,
            first_seq: 1,
            last_seq: 3
        })
    );
    assert_eq!(pending_count(&*store, HOOK_B).await, 0);
    assert_eq!(pending_seqs(&*store, HOOK_A).await, [1, 2, 3, 4]);
}

pub(super) async fn given_up_deliveries_stay_given_up_after_a_reopen(backend: Backend) {
    let mut harness = Harness::open(backend);
    let store = harness.store();
    let events = four_events(&*store).await;
    give_up_oldest(&*store, HOOK_A, 2).await;

    let store = harness.reopen().await;
    assert_eq!(pending_seqs(&*store, HOOK_A).await, [3, 4]);
    assert_eq!(pending_count(&*store, HOOK_A).await, 2);
    assert_eq!(all_events(&*store).await, events);
}

// ---------------------------------------------------------------------------------------
// append() failures
// ---------------------------------------------------------------------------------------

pub(super) async fn append_with_a_duplicate_seq_fails(backend: Backend) {
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

pub(super) async fn append_with_a_seq_repeated_within_the_batch_fails(backend: Backend) {
    let harness = Harness::open(backend);
    let store = harness.store();
    let first = Feed::new().start("alpha");
    let twin = Feed::resuming_after(0, OTHER_SEED).start("intruder");
    assert_eq!(first.seq, twin.seq);

    let result = store.append(vec![first, twin]).await;
    assert!(matches!(result, Err(StoreError::Database(_))), "{result:?}");
    assert!(all_events(&*store).await.is_empty(), "nothing of it stored");
}

pub(super) async fn append_with_a_duplicate_seq_leaves_earlier_data_intact(backend: Backend) {
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

pub(super) async fn append_succeeds_after_a_failed_append(backend: Backend) {
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

pub(super) async fn calls_after_close_fail_with_closed(backend: Backend) {
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
    let given_up = store.give_up_oldest(HOOK_A.to_owned(), 0).await;
    assert!(is_closed(&given_up), "give_up_oldest: {given_up:?}");
}

pub(super) async fn close_commits_appends_queued_before_it(backend: Backend) {
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

pub(super) async fn reopen_after_close_shows_exactly_the_acknowledged_appends(backend: Backend) {
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

pub(super) async fn concurrent_appends_all_commit(backend: Backend) {
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
