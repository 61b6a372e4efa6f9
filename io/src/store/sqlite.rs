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

use acemux_core::lifecycle::{store_retry_delay, Event, StreamState, StreamStatus};
use rusqlite::{params, Connection, OptionalExtension};
use tokio::sync::{oneshot, watch};

use super::notice::CommitNotice;
use super::{DeliveryOutcome, EventQuery, EventStore, GivenUp, Restored, StoreError, StoreFuture};

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

fn to_json<T: serde::Serialize>(value: &T) -> Result<String, StoreError> {
    serde_json::to_string(value).map_err(|error| StoreError::Corrupt(error.to_string()))
}

fn from_json<T: serde::de::DeserializeOwned>(text: &str) -> Result<T, StoreError> {
    serde_json::from_str(text).map_err(|error| StoreError::Corrupt(error.to_string()))
}

fn seq_param(seq: u64) -> Result<i64, StoreError> {
    i64::try_from(seq).map_err(|_| StoreError::Corrupt(format!("sequence {seq} out of range")))
}

/// Why an append failed, and whether trying it again may succeed.
struct Failed {
    error: StoreError,
    /// The database was busy or locked, the disk full, or an I/O failed: kept and
    /// tried again. Otherwise (a constraint, an unencodable record) refused for good.
    passing: bool,
}

impl Failed {
    fn sql(error: rusqlite::Error) -> Self {
        use rusqlite::ErrorCode;
        let passing = matches!(
            error.sqlite_error_code(),
            Some(
                ErrorCode::DatabaseBusy
                    | ErrorCode::DatabaseLocked
                    | ErrorCode::DiskFull
                    | ErrorCode::SystemIoFailure
                    | ErrorCode::OutOfMemory
                    | ErrorCode::CannotOpen
                    | ErrorCode::ReadOnly
            )
        );
        Failed {
            error: db(error),
            passing,
        }
    }

    fn refused(error: StoreError) -> Self {
        Failed {
            error,
            passing: false,
        }
    }
}

#[expect(
    clippy::disallowed_methods,
    reason = "on the store's writer thread, the one place SQLite runs"
)]
fn append_events(
    transaction: &mut rusqlite::Transaction<'_>,
    webhooks: &[String],
    events: &[Event],
) -> Result<(), Failed> {
    let savepoint = transaction
        .savepoint_with_name("append")
        .map_err(Failed::sql)?;
    for event in events {
        let seq = seq_param(event.seq).map_err(Failed::refused)?;
        let stream = &event.stream;
        savepoint
            .execute(
                "INSERT INTO events (seq, event_id, kind, stream_id, at_us, body) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                params![
                    seq,
                    event.event_id,
                    event.kind.as_str(),
                    stream.id,
                    seq_param(event.at.as_micros()).map_err(Failed::refused)?,
                    to_json(event).map_err(Failed::refused)?
                ],
            )
            .map_err(Failed::sql)?;
        let ended_at = stream
            .ended_at
            .map(|at| seq_param(at.as_micros()))
            .transpose()
            .map_err(Failed::refused)?;
        savepoint
            .execute(
                "INSERT INTO streams (id, status, ended_at_us, body) VALUES (?1, ?2, ?3, ?4)
                 ON CONFLICT (id) DO UPDATE SET status = excluded.status,
                     ended_at_us = excluded.ended_at_us, body = excluded.body",
                params![
                    stream.id,
                    stream.status.as_str(),
                    ended_at,
                    to_json(stream).map_err(Failed::refused)?
                ],
            )
            .map_err(Failed::sql)?;
        for webhook in webhooks {
            savepoint
                .execute(
                    "INSERT INTO deliveries (webhook, seq, state) VALUES (?1, ?2, 'pending')",
                    params![webhook, seq],
                )
                .map_err(Failed::sql)?;
        }
    }
    savepoint.commit().map_err(Failed::sql)
}

#[expect(
    clippy::disallowed_methods,
    reason = "on the store's writer thread, the one place SQLite runs"
)]
fn finish_delivery(
    transaction: &rusqlite::Transaction<'_>,
    webhook: &str,
    seq: u64,
    outcome: DeliveryOutcome,
) -> Result<(), StoreError> {
    let seq = seq_param(seq)?;
    match outcome {
        // Delivered rows are removed: the table holds only what still needs attention.
        DeliveryOutcome::Delivered => transaction.execute(
            "DELETE FROM deliveries WHERE webhook = ?1 AND seq = ?2",
            params![webhook, seq],
        ),
        DeliveryOutcome::Rejected => transaction.execute(
            "UPDATE deliveries SET state = 'rejected' WHERE webhook = ?1 AND seq = ?2",
            params![webhook, seq],
        ),
    }
    .map(drop)
    .map_err(db)
}

#[expect(
    clippy::disallowed_methods,
    reason = "on the store's writer thread, the one place SQLite runs"
)]
fn give_up_oldest(
    transaction: &rusqlite::Transaction<'_>,
    webhook: &str,
    keep: u64,
) -> Result<Option<GivenUp>, StoreError> {
    let keep = i64::try_from(keep).unwrap_or(i64::MAX);
    // Everything past the newest `keep` pending rows; LIMIT -1 means no limit.
    let (count, first_seq, last_seq): (i64, Option<i64>, Option<i64>) = transaction
        .query_row(
            "SELECT COUNT(*), MIN(seq), MAX(seq) FROM (
                 SELECT seq FROM deliveries WHERE webhook = ?1 AND state = 'pending'
                 ORDER BY seq DESC LIMIT -1 OFFSET ?2)",
            params![webhook, keep],
            |row| Ok((row.get(0)?, row.get(1)?, row.get(2)?)),
        )
        .map_err(db)?;
    let (Some(first_seq), Some(last_seq)) = (first_seq, last_seq) else {
        return Ok(None);
    };
    // The oldest pending rows are exactly the pending ones up to the newest of them.
    transaction
        .execute(
            "UPDATE deliveries SET state = 'rejected'
             WHERE webhook = ?1 AND state = 'pending' AND seq <= ?2",
            params![webhook, last_seq],
        )
        .map_err(db)?;
    let decode =
        |seq: i64| u64::try_from(seq).map_err(|_| StoreError::Corrupt(format!("sequence {seq}")));
    Ok(Some(GivenUp {
        count: decode(count)?,
        first_seq: decode(first_seq)?,
        last_seq: decode(last_seq)?,
    }))
}

#[expect(
    clippy::disallowed_methods,
    reason = "on the store's writer thread, the one place SQLite runs"
)]
fn restore(
    transaction: &rusqlite::Transaction<'_>,
    max_ended: usize,
    fresh_seed: u64,
) -> Result<Restored, StoreError> {
    let stored_seed: Option<String> = transaction
        .query_row("SELECT value FROM meta WHERE key = 'seed'", [], |row| {
            row.get(0)
        })
        .optional()
        .map_err(db)?;
    let seed = match stored_seed {
        Some(text) => text
            .parse()
            .map_err(|_| StoreError::Corrupt(format!("seed {text:?}")))?,
        None => {
            transaction
                .execute(
                    "INSERT INTO meta (key, value) VALUES ('seed', ?1)",
                    params![fresh_seed.to_string()],
                )
                .map_err(db)?;
            fresh_seed
        }
    };
    let last_seq: i64 = transaction
        .query_row("SELECT COALESCE(MAX(seq), 0) FROM events", [], |row| {
            row.get(0)
        })
        .map_err(db)?;
    let mut streams: Vec<StreamState> = Vec::new();
    let limit = i64::try_from(max_ended).unwrap_or(i64::MAX);
    let mut statement = transaction
        .prepare(
            "SELECT body FROM streams WHERE status = 'started'
             UNION ALL
             SELECT body FROM (SELECT body FROM streams WHERE status = 'ended'
                               ORDER BY ended_at_us DESC LIMIT ?1)",
        )
        .map_err(db)?;
    let rows = statement
        .query_map(params![limit], |row| row.get::<_, String>(0))
        .map_err(db)?;
    for body in rows {
        let stream: StreamState = from_json(&body.map_err(db)?)?;
        debug_assert!(matches!(
            stream.status,
            StreamStatus::Started | StreamStatus::Ended
        ));
        streams.push(stream);
    }
    Ok(Restored {
        streams,
        last_seq: u64::try_from(last_seq).unwrap_or(0),
        seed,
    })
}

fn collect_events(
    statement: &mut rusqlite::Statement<'_>,
    params: impl rusqlite::Params,
) -> Result<Vec<Event>, StoreError> {
    let rows = statement
        .query_map(params, |row| row.get::<_, String>(0))
        .map_err(db)?;
    let mut events = Vec::new();
    for body in rows {
        events.push(from_json(&body.map_err(db)?)?);
    }
    Ok(events)
}

#[expect(
    clippy::disallowed_methods,
    reason = "on the store's writer thread, the one place SQLite runs"
)]
fn query_events(
    transaction: &rusqlite::Transaction<'_>,
    query: &EventQuery,
) -> Result<Vec<Event>, StoreError> {
    let after = seq_param(query.after)?;
    let limit = i64::try_from(query.limit).unwrap_or(i64::MAX);
    match &query.stream_id {
        Some(stream_id) => {
            let mut statement = transaction
                .prepare_cached(
                    "SELECT body FROM events WHERE stream_id = ?1 AND seq > ?2 ORDER BY seq LIMIT ?3",
                )
                .map_err(db)?;
            collect_events(&mut statement, params![stream_id, after, limit])
        }
        None => {
            let mut statement = transaction
                .prepare_cached("SELECT body FROM events WHERE seq > ?1 ORDER BY seq LIMIT ?2")
                .map_err(db)?;
            collect_events(&mut statement, params![after, limit])
        }
    }
}

#[expect(
    clippy::disallowed_methods,
    reason = "on the store's writer thread, the one place SQLite runs"
)]
fn pending(
    transaction: &rusqlite::Transaction<'_>,
    webhook: &str,
    limit: usize,
) -> Result<Vec<Event>, StoreError> {
    let limit = i64::try_from(limit).unwrap_or(i64::MAX);
    let mut statement = transaction
        .prepare_cached(
            "SELECT e.body FROM deliveries d JOIN events e ON e.seq = d.seq
             WHERE d.webhook = ?1 AND d.state = 'pending' ORDER BY d.seq LIMIT ?2",
        )
        .map_err(db)?;
    collect_events(&mut statement, params![webhook, limit])
}

#[expect(
    clippy::disallowed_methods,
    reason = "on the store's writer thread, the one place SQLite runs"
)]
fn pending_count(
    transaction: &rusqlite::Transaction<'_>,
    webhook: &str,
) -> Result<u64, StoreError> {
    let count: i64 = transaction
        .query_row(
            "SELECT COUNT(*) FROM deliveries WHERE webhook = ?1 AND state = 'pending'",
            params![webhook],
            |row| row.get(0),
        )
        .map_err(db)?;
    Ok(u64::try_from(count).unwrap_or(0))
}
