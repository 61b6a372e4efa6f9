//! SQLite event log on a dedicated writer thread.
//!
//! SQLite calls never run on the async runtime: requests send commands over a
//! channel to one thread, which applies everything queued in one transaction
//! (group commit) and answers each command when its transaction is durable.
//!
//! An append that fails for a passing reason (the database busy or locked, the disk
//! full, an I/O error, a failed commit) is kept and tried again, in order, with the
//! appends after it, until it commits: a change is never lost while the process lives,
//! and never committed after a later one.

use std::path::Path;
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::thread;

use acemux_core::lifecycle::{store_retry_delay, Event};
use rusqlite::Connection;
use tokio::sync::{oneshot, watch};

use super::notice::CommitNotice;

mod statements;

use super::{DeliveryOutcome, EventQuery, EventStore, GivenUp, Restored, StoreError, StoreFuture};
use statements::{
    append_events, finish_delivery, give_up_oldest, pending, pending_count, query_events, restore,
    Failed,
};

/// Most commands applied in one transaction; bounds the latency of a group commit.
const MAX_GROUP: usize = 512;

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS events (
    seq INTEGER PRIMARY KEY,
    event_id TEXT NOT NULL UNIQUE,
    kind TEXT NOT NULL,
    stream_id TEXT NOT NULL,
    at_us INTEGER NOT NULL,
    body TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS events_by_stream ON events (stream_id, seq);
CREATE TABLE IF NOT EXISTS streams (
    id TEXT PRIMARY KEY,
    status TEXT NOT NULL,
    ended_at_us INTEGER,
    body TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS streams_by_end ON streams (status, ended_at_us);
CREATE TABLE IF NOT EXISTS deliveries (
    webhook TEXT NOT NULL,
    seq INTEGER NOT NULL,
    state TEXT NOT NULL,
    PRIMARY KEY (webhook, seq)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS deliveries_pending ON deliveries (webhook, state, seq);
";

type Reply<T> = oneshot::Sender<Result<T, StoreError>>;

enum Command {
    Restore {
        max_ended: usize,
        fresh_seed: u64,
        reply: Reply<Restored>,
    },
    Append {
        events: Vec<Event>,
        reply: Reply<()>,
    },
    Events {
        query: EventQuery,
        reply: Reply<Vec<Event>>,
    },
    Pending {
        webhook: String,
        limit: usize,
        reply: Reply<Vec<Event>>,
    },
    PendingCount {
        webhook: String,
        reply: Reply<u64>,
    },
    Finish {
        webhook: String,
        seq: u64,
        outcome: DeliveryOutcome,
        reply: Reply<()>,
    },
    GiveUpOldest {
        webhook: String,
        keep: u64,
        reply: Reply<Option<GivenUp>>,
    },
    Close {
        reply: Reply<()>,
    },
}

/// The SQLite-backed [`EventStore`].
pub struct SqliteStore {
    // The sender is behind a mutex only to make the store `Sync`; it is held for a
    // non-blocking send and never across an await.
    commands: Mutex<Option<mpsc::Sender<Command>>>,
    committed: Arc<CommitNotice>,
    thread: Mutex<Option<thread::JoinHandle<()>>>,
}

impl SqliteStore {
    /// Opens (or creates) the database at `path` (`:memory:` for a throw-away one) and
    /// starts its writer thread. `webhooks` are the delivery targets of new events.
    #[expect(
        clippy::disallowed_methods,
        reason = "start-up: the database is opened before anything is served"
    )]
    pub fn open(path: &Path, webhooks: Vec<String>) -> Result<Arc<Self>, StoreError> {
        let connection = open_connection(path)?;
        let last_seq: u64 = connection
            .query_row("SELECT COALESCE(MAX(seq), 0) FROM events", [], |row| {
                row.get(0)
            })
            .map_err(db)?;
        let committed = Arc::new(CommitNotice::new(last_seq));
        let writer_committed = committed.clone();
        let (commands, receiver) = mpsc::channel();
        let thread = thread::Builder::new()
            .name("acemux-store".into())
            .spawn(move || {
                // However the writer stops (closed, or a panic), waiters learn it.
                let _close = CloseOnDrop(writer_committed.clone());
                Writer {
                    connection,
                    webhooks,
                    committed: writer_committed,
                    held: Vec::new(),
                    failures: 0,
                }
                .run(receiver)
            })
            .map_err(|error| StoreError::Database(format!("cannot start writer: {error}")))?;
        Ok(Arc::new(SqliteStore {
            commands: Mutex::new(Some(commands)),
            committed,
            thread: Mutex::new(Some(thread)),
        }))
    }

    fn send<T: Send + 'static>(&self, make: impl FnOnce(Reply<T>) -> Command) -> StoreFuture<T> {
        let (reply, answer) = oneshot::channel();
        let sent = {
            let guard = self
                .commands
                .lock()
                .unwrap_or_else(|poison| poison.into_inner());
            guard
                .as_ref()
                .map(|commands| commands.send(make(reply)).is_ok())
                .unwrap_or(false)
        };
        Box::pin(async move {
            if !sent {
                return Err(StoreError::Closed);
            }
            answer.await.unwrap_or(Err(StoreError::Closed))
        })
    }
}

impl EventStore for SqliteStore {
    fn restore(&self, max_ended: usize, fresh_seed: u64) -> StoreFuture<Restored> {
        self.send(|reply| Command::Restore {
            max_ended,
            fresh_seed,
            reply,
        })
    }

    fn append(&self, events: Vec<Event>) -> StoreFuture<()> {
        self.send(|reply| Command::Append { events, reply })
    }

    fn committed(&self) -> watch::Receiver<u64> {
        self.committed.subscribe()
    }

    fn events(&self, query: EventQuery) -> StoreFuture<Vec<Event>> {
        self.send(|reply| Command::Events { query, reply })
    }

    fn pending(&self, webhook: String, limit: usize) -> StoreFuture<Vec<Event>> {
        self.send(|reply| Command::Pending {
            webhook,
            limit,
            reply,
        })
    }

    fn pending_count(&self, webhook: String) -> StoreFuture<u64> {
        self.send(|reply| Command::PendingCount { webhook, reply })
    }

    fn finish_delivery(
        &self,
        webhook: String,
        seq: u64,
        outcome: DeliveryOutcome,
    ) -> StoreFuture<()> {
        self.send(|reply| Command::Finish {
            webhook,
            seq,
            outcome,
            reply,
        })
    }

    fn give_up_oldest(&self, webhook: String, keep: u64) -> StoreFuture<Option<GivenUp>> {
        self.send(|reply| Command::GiveUpOldest {
            webhook,
            keep,
            reply,
        })
    }

    fn close(&self) -> StoreFuture<()> {
        let closing = self.send(|reply| Command::Close { reply });
        // Later commands fail at once instead of queueing behind a stopped writer.
        self.commands
            .lock()
            .unwrap_or_else(|poison| poison.into_inner())
            .take();
        let thread = self
            .thread
            .lock()
            .unwrap_or_else(|poison| poison.into_inner())
            .take();
        Box::pin(async move {
            let result = closing.await;
            if let Some(thread) = thread {
                // The writer has answered Close, so it is returning; joining is brief.
                let _ = thread.join();
            }
            match result {
                Err(StoreError::Closed) => Ok(()),
                other => other,
            }
        })
    }
}

fn db(error: rusqlite::Error) -> StoreError {
    StoreError::Database(error.to_string())
}

#[expect(
    clippy::disallowed_methods,
    reason = "start-up: the database is opened before anything is served"
)]
fn open_connection(path: &Path) -> Result<Connection, StoreError> {
    let connection = Connection::open(path).map_err(db)?;
    // WAL keeps readers off the writer's back; FULL sync makes a commit survive power loss,
    // which is what a 200 from the event API promises.
    connection
        .execute_batch(
            "PRAGMA journal_mode = WAL; PRAGMA synchronous = FULL; PRAGMA foreign_keys = ON;",
        )
        .map_err(db)?;
    connection
        .busy_timeout(std::time::Duration::from_secs(5))
        .map_err(db)?;
    connection.execute_batch(SCHEMA).map_err(db)?;
    Ok(connection)
}

/// Closes the commit notice when the writer thread ends.
struct CloseOnDrop(Arc<CommitNotice>);

impl Drop for CloseOnDrop {
    fn drop(&mut self) {
        self.0.close();
    }
}

struct Writer {
    connection: Connection,
    webhooks: Vec<String>,
    committed: Arc<CommitNotice>,
    /// Appends whose commit failed for a passing reason, oldest first: tried again
    /// before anything appended after them.
    held: Vec<HeldAppend>,
    /// Failed attempts in a row.
    failures: u32,
}

type HeldAppend = (Vec<Event>, Reply<()>);

/// An answer to send once the batch's transaction has committed.
type Deferred = Box<dyn FnOnce(Result<(), StoreError>) + Send>;

#[expect(
    clippy::disallowed_methods,
    reason = "on the store's writer thread, the one place SQLite runs"
)]
impl Writer {
    fn run(mut self, receiver: mpsc::Receiver<Command>) {
        loop {
            let mut batch = Vec::new();
            if self.held.is_empty() {
                match receiver.recv() {
                    Ok(first) => batch.push(first),
                    Err(_) => return,
                }
            } else {
                // Commands arriving meanwhile wait in the channel, behind the held ones.
                thread::sleep(store_retry_delay(self.failures));
            }
            let mut disconnected = false;
            while batch.len() < MAX_GROUP {
                match receiver.try_recv() {
                    Ok(command) => batch.push(command),
                    Err(mpsc::TryRecvError::Empty) => break,
                    Err(mpsc::TryRecvError::Disconnected) => {
                        disconnected = true;
                        break;
                    }
                }
            }
            let keep_running = self.apply_batch(batch);
            if !keep_running || (disconnected && !self.held.is_empty()) {
                // Closing, or nobody left to append: what still cannot commit fails.
                for (events, reply) in self.held.drain(..) {
                    tracing::error!(
                        events = events.len(),
                        "event store closed with changes it could not commit"
                    );
                    let _ = reply.send(Err(StoreError::Closed));
                }
            }
            if !keep_running || (disconnected && self.held.is_empty()) {
                return;
            }
        }
    }

    /// Applies the held appends and then `batch` in one transaction; returns `false`
    /// once asked to close.
    fn apply_batch(&mut self, batch: Vec<Command>) -> bool {
        let held = std::mem::take(&mut self.held);
        let mut deferred: Vec<Deferred> = Vec::with_capacity(batch.len());
        let mut keep_running = true;
        // Appends written in this transaction, and those held behind a failed one.
        let mut appended: Vec<HeldAppend> = Vec::new();
        let mut holding: Vec<HeldAppend> = Vec::new();
        let mut transaction = match self.connection.transaction() {
            Ok(transaction) => transaction,
            Err(error) => {
                let error = db(error);
                self.failures = self.failures.saturating_add(1);
                tracing::error!(%error, attempt = self.failures, "event store cannot begin a transaction; appends are kept and tried again");
                self.held = held;
                for command in batch {
                    match command {
                        Command::Append { events, reply } => self.held.push((events, reply)),
                        Command::Close { reply } => {
                            keep_running = false;
                            let _ = reply.send(Err(error.clone()));
                        }
                        other => fail(other, error.clone()),
                    }
                }
                return keep_running;
            }
        };
        let mut append = |transaction: &mut rusqlite::Transaction<'_>,
                          events: Vec<Event>,
                          reply: Reply<()>,
                          deferred: &mut Vec<Deferred>| {
            if !holding.is_empty() {
                holding.push((events, reply));
                return;
            }
            match append_events(transaction, &self.webhooks, &events) {
                Ok(()) => appended.push((events, reply)),
                Err(Failed {
                    error,
                    passing: true,
                }) => {
                    tracing::warn!(%error, "event store append failed; kept and tried again in order");
                    holding.push((events, reply));
                }
                Err(Failed { error, .. }) => {
                    tracing::error!(%error, "event store refused an append");
                    deferred.push(Box::new(move |_| {
                        let _ = reply.send(Err(error));
                    }));
                }
            }
        };
        for (events, reply) in held {
            append(&mut transaction, events, reply, &mut deferred);
        }
        for command in batch {
            match command {
                Command::Append { events, reply } => {
                    append(&mut transaction, events, reply, &mut deferred)
                }
                Command::Finish {
                    webhook,
                    seq,
                    outcome,
                    reply,
                } => {
                    let result = finish_delivery(&transaction, &webhook, seq, outcome);
                    deferred.push(Box::new(move |commit| {
                        let _ = reply.send(result.and(commit));
                    }));
                }
                Command::GiveUpOldest {
                    webhook,
                    keep,
                    reply,
                } => {
                    let result = give_up_oldest(&transaction, &webhook, keep);
                    deferred.push(Box::new(move |commit| {
                        let _ = reply.send(commit.and(result));
                    }));
                }
                Command::Restore {
                    max_ended,
                    fresh_seed,
                    reply,
                } => {
                    let result = restore(&transaction, max_ended, fresh_seed);
                    deferred.push(Box::new(move |commit| {
                        let _ = reply.send(commit.and(result));
                    }));
                }
                Command::Events { query, reply } => {
                    let _ = reply.send(query_events(&transaction, &query));
                }
                Command::Pending {
                    webhook,
                    limit,
                    reply,
                } => {
                    let _ = reply.send(pending(&transaction, &webhook, limit));
                }
                Command::PendingCount { webhook, reply } => {
                    let _ = reply.send(pending_count(&transaction, &webhook));
                }
                Command::Close { reply } => {
                    keep_running = false;
                    deferred.push(Box::new(move |commit| {
                        let _ = reply.send(commit);
                    }));
                }
            }
        }
        let commit = transaction.commit().map_err(db);
        match &commit {
            Err(error) => {
                self.failures = self.failures.saturating_add(1);
                tracing::error!(%error, attempt = self.failures, kept = appended.len() + holding.len(),
                    "event store commit failed; its appends are kept and tried again in order");
                // Written in the transaction that failed: held, ahead of the rest.
                appended.append(&mut holding);
                self.held = appended;
            }
            Ok(()) => {
                if let Some(seq) = appended
                    .iter()
                    .flat_map(|(events, _)| events.iter().map(|event| event.seq))
                    .max()
                {
                    self.committed.advance(seq);
                }
                for (_, reply) in appended {
                    let _ = reply.send(Ok(()));
                }
                if holding.is_empty() {
                    if self.failures > 0 {
                        tracing::info!(
                            failed_attempts = self.failures,
                            "event store commits again"
                        );
                    }
                    self.failures = 0;
                } else {
                    self.failures = self.failures.saturating_add(1);
                }
                self.held = holding;
            }
        }
        for answer in deferred {
            answer(commit.clone());
        }
        keep_running
    }
}

fn fail(command: Command, error: StoreError) {
    let error = Err(error);
    match command {
        Command::Restore { reply, .. } => {
            drop(reply.send(error.clone().map(|()| Restored::default())))
        }
        Command::Append { reply, .. }
        | Command::Finish { reply, .. }
        | Command::Close { reply } => drop(reply.send(error)),
        Command::Events { reply, .. } | Command::Pending { reply, .. } => {
            drop(reply.send(error.map(|()| Vec::new())))
        }
        Command::PendingCount { reply, .. } => drop(reply.send(error.map(|()| 0))),
        Command::GiveUpOldest { reply, .. } => drop(reply.send(error.map(|()| None))),
    }
}
