//! The durable event log and webhook outbox, behind a trait: SQLite in
//! production, memory in simulation (blocking calls would stall a simulated clock).

mod memory;
mod notice;
mod sqlite;

use std::future::Future;
use std::pin::Pin;

use acemux_core::lifecycle::{Event, StreamState};
use thiserror::Error;
use tokio::sync::watch;

pub use memory::{MemoryStore, StoreFaults};
pub use sqlite::SqliteStore;

/// A store operation in flight.
pub type StoreFuture<T> = Pin<Box<dyn Future<Output = Result<T, StoreError>> + Send>>;

/// Why a store operation failed.
#[derive(Debug, Clone, Error)]
#[non_exhaustive]
pub enum StoreError {
    /// The database reported an error.
    #[error("database error: {0}")]
    Database(String),
    /// The store has shut down.
    #[error("event store is closed")]
    Closed,
    /// A stored row could not be decoded.
    #[error("corrupt stored record: {0}")]
    Corrupt(String),
}

/// What was durable when the process last stopped.
#[derive(Debug, Clone, Default)]
pub struct Restored {
    /// Active streams, and the most recently ended ones (up to the limit asked).
    pub streams: Vec<StreamState>,
    /// The highest event sequence number committed.
    pub last_seq: u64,
    /// The seed that event ids of this database are derived from.
    pub seed: u64,
}

/// A filter for `GET /events`.
#[derive(Debug, Clone, Default)]
pub struct EventQuery {
    /// Only events with a greater sequence number.
    pub after: u64,
    /// At most this many.
    pub limit: usize,
    /// Only events of this stream.
    pub stream_id: Option<String>,
}

/// How a webhook delivery ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeliveryOutcome {
    /// The receiver accepted it.
    Delivered,
    /// The receiver refused it for good (a 4xx other than 408/429), or it was given up.
    Rejected,
}

/// Pending deliveries given up by [`EventStore::give_up_oldest`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GivenUp {
    /// How many deliveries were given up.
    pub count: u64,
    /// The sequence number of the oldest one.
    pub first_seq: u64,
    /// The sequence number of the newest one.
    pub last_seq: u64,
}

/// The durable side of the lifecycle: events, stream states, pending deliveries.
///
/// Ordering contract: `append` enqueues synchronously, before it returns, so the
/// order of `append` calls is the commit order. Callers hold the registry's lock
/// across the call to keep commit order equal to sequence order.
pub trait EventStore: Send + Sync + 'static {
    /// Loads what survives a restart; `max_ended` bounds the ended streams returned.
    /// `fresh_seed` becomes the database's seed if it has none yet.
    fn restore(&self, max_ended: usize, fresh_seed: u64) -> StoreFuture<Restored>;

    /// Commits `events` (with a pending delivery per configured webhook); resolves once
    /// they are durable.
    fn append(&self, events: Vec<Event>) -> StoreFuture<()>;

    /// The highest committed sequence number, updated after every commit.
    ///
    /// Every call subscribes anew, on a channel of its own: commits wake subscribers
    /// in subscription order, which a simulated run needs to replay from its seed.
    /// A task that waits calls this itself rather than cloning another's receiver
    /// (waiters of one cloned channel wake in a random order). Waiting fails once the
    /// store has stopped committing for good.
    fn committed(&self) -> watch::Receiver<u64>;

    /// Events matching `query`, in sequence order.
    fn events(&self, query: EventQuery) -> StoreFuture<Vec<Event>>;

    /// The oldest undelivered events for `webhook`, in sequence order.
    fn pending(&self, webhook: String, limit: usize) -> StoreFuture<Vec<Event>>;

    /// How many events await delivery to `webhook`.
    fn pending_count(&self, webhook: String) -> StoreFuture<u64>;

    /// Records how the delivery of event `seq` to `webhook` ended.
    fn finish_delivery(
        &self,
        webhook: String,
        seq: u64,
        outcome: DeliveryOutcome,
    ) -> StoreFuture<()>;

    /// Gives up every pending delivery to `webhook` but the newest `keep`, recording
    /// them as rejected (their events stay in the log); `None` when at most `keep` are
    /// pending.
    fn give_up_oldest(&self, webhook: String, keep: u64) -> StoreFuture<Option<GivenUp>>;

    /// Commits what is queued and stops; later calls fail with [`StoreError::Closed`].
    fn close(&self) -> StoreFuture<()>;
}

#[cfg(test)]
mod tests;
