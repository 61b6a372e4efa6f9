//! The commit notice: the highest committed sequence number, told to every subscriber
//! in the order they subscribed.
//!
//! One `watch` channel shared by several waiting tasks wakes them in an order picked by
//! tokio's unseeded random number generator (its waiters sit in buckets chosen at
//! random), so a simulated run would not replay from its seed. Here every subscriber
//! gets a channel of its own, so a channel has at most one waiter (as long as its
//! receiver is not cloned to wait concurrently) and a commit wakes the subscribers in
//! subscription order.

use std::sync::{Mutex, MutexGuard};

use tokio::sync::watch;

#[derive(Default)]
struct State {
    committed: u64,
    /// One sender per live subscriber, oldest first; `None` once closed.
    subscribers: Option<Vec<watch::Sender<u64>>>,
}

/// The highest committed sequence number and its subscribers.
pub(super) struct CommitNotice {
    state: Mutex<State>,
}

impl CommitNotice {
    /// A notice starting at `committed`.
    pub(super) fn new(committed: u64) -> Self {
        CommitNotice {
            state: Mutex::new(State {
                committed,
                subscribers: Some(Vec::new()),
            }),
        }
    }

    fn state(&self) -> MutexGuard<'_, State> {
        // Held only for non-blocking channel sends; a panic under it left valid data.
        self.state
            .lock()
            .unwrap_or_else(|poison| poison.into_inner())
    }

    /// A receiver of its own, holding the current value. After [`close`](Self::close)
    /// its sender is already gone, so waiting on it fails at once.
    pub(super) fn subscribe(&self) -> watch::Receiver<u64> {
        let mut state = self.state();
        let (sender, receiver) = watch::channel(state.committed);
        if let Some(subscribers) = &mut state.subscribers {
            // Pruned here too, so that subscribers that come and go between commits
            // do not pile up.
            subscribers.retain(|subscriber| !subscriber.is_closed());
            subscribers.push(sender);
        }
        receiver
    }

    /// The current value.
    pub(super) fn current(&self) -> u64 {
        self.state().committed
    }

    /// Raises the value to `seq` (never lowers it) and, if it rose, tells every live
    /// subscriber, oldest first.
    pub(super) fn advance(&self, seq: u64) {
        let mut state = self.state();
        if seq <= state.committed {
            return;
        }
        state.committed = seq;
        if let Some(subscribers) = &mut state.subscribers {
            // `send` fails only for a subscriber that has gone: it is dropped.
            subscribers.retain(|subscriber| subscriber.send(seq).is_ok());
        }
    }

    /// Drops every sender: waiting subscribers see the channel closed, as they would
    /// when a store's writer stops.
    pub(super) fn close(&self) {
        self.state().subscribers = None;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn subscribers_see_the_value_rise_and_never_fall() {
        let notice = CommitNotice::new(3);
        let mut first = notice.subscribe();
        assert_eq!(*first.borrow_and_update(), 3);
        notice.advance(5);
        notice.advance(4);
        assert!(first.has_changed().unwrap());
        assert_eq!(*first.borrow_and_update(), 5);
        assert!(!first.has_changed().unwrap(), "a lower seq is not a change");
        assert_eq!(*notice.subscribe().borrow(), 5, "a late subscriber sees it");
    }

    #[tokio::test]
    async fn commits_wake_subscribers_in_subscription_order() {
        let notice = std::sync::Arc::new(CommitNotice::new(0));
        let order = std::sync::Arc::new(Mutex::new(Vec::new()));
        let local = tokio::task::LocalSet::new();
        for waiter in 0..20 {
            let mut committed = notice.subscribe();
            let order = order.clone();
            local.spawn_local(async move {
                committed.changed().await.unwrap();
                order.lock().unwrap().push(waiter);
            });
        }
        local
            .run_until(async {
                tokio::task::yield_now().await;
                notice.advance(1);
                for _ in 0..5 {
                    tokio::task::yield_now().await;
                }
            })
            .await;
        assert_eq!(*order.lock().unwrap(), (0..20).collect::<Vec<_>>());
    }

    #[tokio::test]
    async fn gone_subscribers_are_pruned_and_close_ends_the_waits() {
        let notice = CommitNotice::new(0);
        for _ in 0..10 {
            drop(notice.subscribe());
        }
        let mut kept = notice.subscribe();
        notice.advance(1);
        let count = notice.state().subscribers.as_ref().map(Vec::len);
        assert_eq!(count, Some(1), "only the live subscriber is kept");
        kept.borrow_and_update();
        notice.close();
        assert!(kept.changed().await.is_err());
        assert!(notice.subscribe().changed().await.is_err());
    }
}
