//! The engine slot machine's commands ([`SlotCommand`]) as short sequences of Redis
//! commands (`SET NX PX`, `GET`, `PEXPIRE`, `DEL`, `WATCH`/`MULTI`/`EXEC`; no scripts).
//! Keys: `acemux:engine:{engine}:slot:{n}` (a reserved slot of an engine, `n` below
//! `--max-streams-per-engine`), `acemux:session:{channel}` (the owner's session
//! record) and `acemux:taken:{stream}` (the instance that claimed a stream's record).

use acemux_core::cluster::{ClaimRule, Replace, SessionRecord, SlotCommand, SlotReply, SlotValue};
use acemux_core::lifecycle::EngineAddr;
use redis::aio::MultiplexedConnection;

use super::redis::{changed, millis, watch_get};

/// The key of slot `n` of `engine`.
pub fn slot_key(engine: &EngineAddr, n: usize) -> String {
    format!("acemux:engine:{engine}:slot:{n}")
}

/// The key of `channel`'s session record.
pub fn session_key(channel: &str) -> String {
    format!("acemux:session:{channel}")
}

/// The key of `stream`'s takeover mark: the instance that claimed its record.
pub fn taken_key(stream: &str) -> String {
    format!("acemux:taken:{stream}")
}

/// Runs `command`; returns the reply and whether the connection is clean for reuse (no
/// key left watched).
pub(super) async fn run(
    connection: &mut MultiplexedConnection,
    command: &SlotCommand,
) -> redis::RedisResult<(SlotReply, bool)> {
    match command {
        SlotCommand::Reserve {
            engine,
            slots,
            value,
            ttl,
        } => {
            let encoded = value.encode();
            for n in 0..*slots {
                let set: Option<String> = redis::cmd("SET")
                    .arg(slot_key(engine, n))
                    .arg(&encoded)
                    .arg("NX")
                    .arg("PX")
                    .arg(millis(*ttl))
                    .query_async(connection)
                    .await?;
                if set.is_some() {
                    return Ok((SlotReply::Reserved { slot: n }, true));
                }
            }
            Ok((SlotReply::Full, true))
        }
        SlotCommand::Record {
            channel,
            record,
            ttl,
        } => {
            let key = session_key(channel);
            let found = watch_get(connection, &key).await?;
            let found = found.as_deref().and_then(SessionRecord::decode);
            match (record.replaces(found.as_ref()), found) {
                (Replace::Write, _) => {}
                (Replace::Never, found) => {
                    return Ok((
                        SlotReply::Superseded(found.unwrap_or_else(|| record.clone())),
                        false,
                    ))
                }
                (Replace::Wait, _) => {
                    return Err(redis::RedisError::from((
                        redis::ErrorKind::Client,
                        "not yet",
                        "an older owner's session record is not claimed yet".to_owned(),
                    )))
                }
            }
            let done: Option<(String,)> = redis::pipe()
                .atomic()
                .cmd("SET")
                .arg(&key)
                .arg(record.encode())
                .arg("PX")
                .arg(millis(*ttl))
                .query_async(connection)
                .await?;
            match done {
                Some(_) => Ok((SlotReply::Done, true)),
                None => Err(changed("session record")),
            }
        }
        SlotCommand::Keep {
            slot,
            record,
            ttl,
            record_ttl,
        } => {
            let (slot_ours, record_ours) = watch_both(connection, slot, record).await?;
            if !slot_ours && !record_ours {
                return Ok((
                    SlotReply::Kept {
                        slot: false,
                        record: false,
                    },
                    false,
                ));
            }
            let mut pipe = redis::pipe();
            pipe.atomic();
            if let (true, Some((engine, n, _))) = (slot_ours, slot) {
                pipe.cmd("PEXPIRE")
                    .arg(slot_key(engine, *n))
                    .arg(millis(*ttl));
            }
            if let (true, Some((channel, _))) = (record_ours, record) {
                pipe.cmd("PEXPIRE")
                    .arg(session_key(channel))
                    .arg(millis(*record_ttl));
            }
            let done: Option<Vec<i64>> = pipe.query_async(connection).await?;
            match done {
                Some(done) => {
                    // An expiry between the read and the transaction answers 0.
                    let mut kept = done.into_iter();
                    let slot = slot_ours && kept.next() == Some(1);
                    let record = record_ours && kept.next() == Some(1);
                    Ok((SlotReply::Kept { slot, record }, true))
                }
                None => Err(changed("slot or session record")),
            }
        }
        SlotCommand::Release {
            slot,
            record,
            record_ttl,
        } => {
            let (slot_ours, record_ours) = watch_both(connection, slot, record).await?;
            if !slot_ours && !record_ours {
                return Ok((SlotReply::Done, false));
            }
            let mut pipe = redis::pipe();
            pipe.atomic();
            if let (true, Some((engine, n, _))) = (slot_ours, slot) {
                pipe.cmd("DEL").arg(slot_key(engine, *n));
            }
            if let (true, Some((channel, record))) = (record_ours, record) {
                pipe.cmd("SET")
                    .arg(session_key(channel))
                    .arg(record.ended().encode())
                    .arg("PX")
                    .arg(millis(*record_ttl));
            }
            let done: Option<redis::Value> = pipe.query_async(connection).await?;
            match done {
                Some(_) => Ok((SlotReply::Done, true)),
                None => Err(changed("slot or session record")),
            }
        }
        SlotCommand::Mark {
            stream,
            instance,
            ttl,
        } => {
            let () = redis::cmd("SET")
                .arg(taken_key(stream))
                .arg(instance)
                .arg("PX")
                .arg(millis(*ttl))
                .query_async(connection)
                .await?;
            Ok((SlotReply::Done, true))
        }
        SlotCommand::Claim {
            channel,
            rule,
            record_ttl,
            taken_ttl,
            instance,
        } => {
            let key = session_key(channel);
            let found = watch_get(connection, &key).await?;
            let found = found.as_deref().and_then(SessionRecord::decode);
            let found = match found {
                Some(found) if rule.allows(&found) => found,
                other => {
                    // Not the stream's record: whether an instance claimed it before
                    // its record was replaced or lost.
                    if let Some(stream) = rule
                        .stream_id()
                        .filter(|stream| other.as_ref().is_none_or(|f| f.stream_id != *stream))
                    {
                        let by: Option<String> = redis::cmd("GET")
                            .arg(taken_key(stream))
                            .query_async(connection)
                            .await?;
                        if let Some(by) = by {
                            return Ok((SlotReply::TakenOver { by }, false));
                        }
                    }
                    return Ok((SlotReply::NotClaimed(other), false));
                }
            };
            let mut pipe = redis::pipe();
            pipe.atomic()
                .cmd("SET")
                .arg(&key)
                .arg(found.ended().encode())
                .arg("PX")
                .arg(millis(*record_ttl));
            // A dead owner's stream: the mark tells its owner, should it return, that
            // this instance ended it.
            if matches!(rule, ClaimRule::Older { .. }) {
                pipe.cmd("SET")
                    .arg(taken_key(&found.stream_id))
                    .arg(instance)
                    .arg("PX")
                    .arg(millis(*taken_ttl));
            }
            let done: Option<redis::Value> = pipe.query_async(connection).await?;
            match done {
                Some(_) => Ok((SlotReply::Claimed(found), true)),
                None => Err(changed("session record")),
            }
        }
    }
}

/// `WATCH`es the slot and the record that are given, `GET`s them: whether each still
/// holds what this instance wrote (the record: not ended).
async fn watch_both(
    connection: &mut MultiplexedConnection,
    slot: &Option<(EngineAddr, usize, SlotValue)>,
    record: &Option<(String, SessionRecord)>,
) -> redis::RedisResult<(bool, bool)> {
    let slot_ours = match slot {
        Some((engine, n, value)) => {
            let found = watch_get(connection, &slot_key(engine, *n)).await?;
            found.as_deref().and_then(SlotValue::decode).as_ref() == Some(value)
        }
        None => false,
    };
    let record_ours = match record {
        Some((channel, record)) => {
            let found = watch_get(connection, &session_key(channel)).await?;
            found
                .as_deref()
                .and_then(SessionRecord::decode)
                .is_some_and(|found| found == *record && !found.ended)
        }
        None => false,
    };
    Ok((slot_ours, record_ours))
}
