//! The SQL of the event log: each statement the writer thread runs, and the encoding
//! of records into rows.

use acemux_core::lifecycle::{Event, StreamState, StreamStatus};
use rusqlite::{params, OptionalExtension};

use super::db;
use crate::store::{DeliveryOutcome, EventQuery, GivenUp, Restored, StoreError};

pub(super) fn to_json<T: serde::Serialize>(value: &T) -> Result<String, StoreError> {
    serde_json::to_string(value).map_err(|error| StoreError::Corrupt(error.to_string()))
}

pub(super) fn from_json<T: serde::de::DeserializeOwned>(text: &str) -> Result<T, StoreError> {
    serde_json::from_str(text).map_err(|error| StoreError::Corrupt(error.to_string()))
}

pub(super) fn seq_param(seq: u64) -> Result<i64, StoreError> {
    i64::try_from(seq).map_err(|_| StoreError::Corrupt(format!("sequence {seq} out of range")))
}

/// Why an append failed, and whether trying it again may succeed.
pub(super) struct Failed {
    pub(super) error: StoreError,
    /// The database was busy or locked, the disk full, or an I/O failed: kept and
    /// tried again. Otherwise (a constraint, an unencodable record) refused for good.
    pub(super) passing: bool,
}

impl Failed {
    pub(super) fn sql(error: rusqlite::Error) -> Self {
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

    pub(super) fn refused(error: StoreError) -> Self {
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
pub(super) fn append_events(
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
pub(super) fn finish_delivery(
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
pub(super) fn give_up_oldest(
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
pub(super) fn restore(
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

pub(super) fn collect_events(
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
pub(super) fn query_events(
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
pub(super) fn pending(
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
pub(super) fn pending_count(
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
