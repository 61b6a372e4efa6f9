//! Storage faults: a commit that fails for a passing reason is kept and tried again in
//! order, never lost while the process lives and never answered as done before it is
//! durable; a crash loses exactly what was never acknowledged.

use std::sync::Arc;
use std::time::Duration;

use futures::FutureExt;

use super::{all_events, append, seqs, Feed, Harness, PATIENCE};
use crate::store::{EventStore, MemoryStore, StoreFaults};

/// A second connection holding the database's write lock, as another process (a
/// backup, a manual `sqlite3` session) would.
struct Locker(rusqlite::Connection);

#[expect(
    clippy::disallowed_methods,
    reason = "the test's own second connection, standing in for another process"
)]
impl Locker {
    fn lock(path: &std::path::Path) -> Self {
        let connection = rusqlite::Connection::open(path).expect("a second connection");
        connection
            .execute_batch("BEGIN EXCLUSIVE")
            .expect("take the write lock");
        Locker(connection)
    }

    fn unlock(self) {
        self.0
            .execute_batch("COMMIT")
            .expect("release the write lock");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_appends_wait_out_a_locked_database_in_order() {
    let harness = Harness::open(super::Backend::Sqlite);
    let super::Kind::Sqlite { path, .. } = &harness.kind else {
        unreachable!("a SQLite harness");
    };
    let store = harness.store();
    let mut feed = Feed::new();
    append(&*store, &[feed.start("a")]).await;
    let committed = store.committed();

    let locker = Locker::lock(path);
    let first = tokio::spawn(store.append(vec![feed.start("b")]));
    let second = tokio::spawn(store.append(vec![feed.start("c")]));
    // Longer than the writer's busy timeout (5 s): its first attempt has failed.
    tokio::time::sleep(Duration::from_secs(7)).await;
    assert!(
        !first.is_finished() && !second.is_finished(),
        "appends against a locked database are kept, not failed"
    );
    assert_eq!(*committed.borrow(), 1, "nothing past seq 1 is durable yet");

    locker.unlock();
    let first = tokio::time::timeout(PATIENCE, first)
        .await
        .expect("the kept append commits once the lock is gone")
        .expect("no panic");
    let second = tokio::time::timeout(PATIENCE, second)
        .await
        .expect("the append behind it commits too")
        .expect("no panic");
    assert!(first.is_ok() && second.is_ok(), "{first:?} {second:?}");
    assert_eq!(seqs(&all_events(&*store).await), vec![1, 2, 3]);
    assert_eq!(*committed.borrow(), 3);
}

#[tokio::test]
async fn memory_store_commits_late_when_slow_and_in_order_after_failing() {
    let memory = MemoryStore::new(super::webhooks());
    let store: Arc<dyn EventStore> = memory.clone();
    let mut feed = Feed::new();
    append(&*store, &[feed.start("a")]).await;

    memory.set_faults(StoreFaults {
        commit_delay: Duration::from_millis(50),
        failing: false,
    });
    let slow = store.append(vec![feed.start("b")]);
    assert_eq!(
        memory.uncommitted(),
        1,
        "a slow commit is not durable at once"
    );
    tokio::time::timeout(PATIENCE, slow)
        .await
        .expect("a slow commit ends")
        .expect("and succeeds");

    memory.set_faults(StoreFaults {
        commit_delay: Duration::ZERO,
        failing: true,
    });
    let mut first = store.append(vec![feed.start("c")]);
    let mut second = store.append(vec![feed.start("d")]);
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(
        first.as_mut().now_or_never().is_none(),
        "failing: kept, not answered"
    );
    assert!(second.as_mut().now_or_never().is_none());
    assert_eq!(memory.uncommitted(), 2);
    memory
        .watermark_is_durable()
        .expect("the watermark stays on durable events");

    memory.set_faults(StoreFaults::default());
    tokio::time::timeout(PATIENCE, first)
        .await
        .expect("committed once the fault is cleared")
        .expect("and succeeds");
    tokio::time::timeout(PATIENCE, second)
        .await
        .expect("committed once the fault is cleared")
        .expect("and succeeds");
    assert_eq!(seqs(&all_events(&*store).await), vec![1, 2, 3, 4]);
}

#[tokio::test]
async fn memory_store_crash_loses_only_what_was_never_acknowledged() {
    let memory = MemoryStore::new(super::webhooks());
    let store: Arc<dyn EventStore> = memory.clone();
    let mut feed = Feed::new();
    append(&*store, &[feed.start("a")]).await;
    memory.set_faults(StoreFaults {
        commit_delay: Duration::ZERO,
        failing: true,
    });
    let lost = store.append(vec![feed.start("b")]);
    assert_eq!(memory.lose_uncommitted(), 1);
    assert!(lost.await.is_err(), "its caller never hears it committed");

    memory.set_faults(StoreFaults::default());
    assert_eq!(seqs(&all_events(&*store).await), vec![1]);
    // The restarted process numbers on from what was durable.
    let mut feed = Feed::resuming_after(1, super::SEED);
    append(&*store, &[feed.start("c")]).await;
    assert_eq!(seqs(&all_events(&*store).await), vec![1, 2]);
    memory
        .watermark_is_durable()
        .expect("no hole under the watermark");
}
