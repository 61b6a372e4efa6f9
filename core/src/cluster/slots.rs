//! Engine slots shared cluster-wide, and the records of the owners' engine sessions.
//!
//! `--max-streams-per-engine` holds across the cluster: each engine has that many slot
//! keys in Redis, and an engine session is opened only on an engine one of whose slots
//! this instance reserved (set-if-absent, time to live the lease's). A held slot is
//! renewed with the leases; it is given back (only while it is still this instance's)
//! when the session is stopped; a dead instance's slots come back when they expire.
//!
//! Each owner also records its channel's running session (engine, stop URL, the stream
//! as its `stream_started` recorded it) in the channel's session record, which lives
//! three times as long as a lease. Rules, all decided here:
//! - An instance that takes a channel's lease claims any record of an older fencing
//!   number that is not ended (a dead owner's session): the claim marks it ended in one
//!   `WATCH`/`MULTI` transaction, so exactly one instance claims it, and the claimer
//!   stops that session on its engine and records its `stream_ended` (`owner_lost`).
//! - An owner that stops its session marks its record ended (only if it is still its
//!   own), before its lease is given back ([`Slots::busy`]).
//! - An instance that finds it lost a channel ([`Slots::lost`]) stops the session and
//!   records its end only if its record is still its own and not ended (it claims it,
//!   as above); otherwise a newer owner has handled (or will handle) it, and it does
//!   neither. A record is never written over a newer owner's, nor over its own once
//!   ended.
//! - Redis unreachable never blocks a viewer: a reservation that gets no answer opens
//!   the session without a slot (reserved again at each renewal); so does a slot that
//!   expired during a partition and finds the engine full (the cap is exceeded until the
//!   sessions end or a slot frees).

use std::collections::{BTreeMap, VecDeque};

use super::slots_vocab::{
    ClaimRule, HeldSlot, ReservationId, SessionRecord, SlotCommand, SlotNotice, SlotOutput,
    SlotReply, SlotValue, SlotsConfig,
};
use super::vocab::OpId;
use crate::lifecycle::EngineAddr;
use crate::time::Instant;

#[path = "slots_answers.rs"]
mod answers;
#[path = "slots_end.rs"]
mod end;

#[derive(Debug)]
struct Held {
    channel: String,
    fencing: u64,
    engine: EngineAddr,
    /// The slot number; `None`: running without one.
    slot: Option<usize>,
    value: SlotValue,
    record: Option<SessionRecord>,
    /// The record is in Redis (as far as the last answer said).
    written: bool,
    /// A record write was sent once: the record may be in Redis (written, in flight,
    /// failed without saying whether Redis applied it, or claimed since).
    attempted: bool,
    /// Whether this instance stops the session and records its end, once decided.
    decided: Option<bool>,
    /// The session's end is being decided: no record write starts any more.
    deciding: bool,
    /// A newer owner's record was found: this one is never written again.
    superseded: bool,
    next: Instant,
    op: Option<OpId>,
}

impl Held {
    fn slot(&self) -> Option<(EngineAddr, usize, SlotValue)> {
        self.slot
            .map(|slot| (self.engine.clone(), slot, self.value.clone()))
    }

    fn record(&self) -> Option<(String, SessionRecord)> {
        self.record
            .clone()
            .filter(|_| self.written && !self.superseded)
            .map(|record| (self.channel.clone(), record))
    }

    /// The record an end decision must claim: one that is or may have been in Redis.
    fn claimable(&self) -> Option<SessionRecord> {
        self.record.clone().filter(|_| self.attempted)
    }
}

/// An end decision held until the record write in flight is answered (else the write
/// could land after the decision and leave a live record for a later owner to claim).
#[derive(Debug)]
enum Decision {
    Ending {
        ticket: u64,
        id: ReservationId,
        lease: Option<(u64, Instant)>,
    },
    Lost {
        channel: String,
        id: ReservationId,
    },
}

#[derive(Debug)]
enum Op {
    Reserve {
        ticket: u64,
        id: ReservationId,
        rest: VecDeque<EngineAddr>,
        first: EngineAddr,
        value: SlotValue,
    },
    Rereserve(ReservationId),
    Record(ReservationId),
    Keep(ReservationId),
    Release(ReservationId),
    Claim {
        channel: String,
        /// The rule of a lost channel's claim and the reservation it decides; `None`: a
        /// claim of an older owner's record.
        lost: Option<(ClaimRule, Option<ReservationId>)>,
    },
    Ending(Box<Ending>),
    Mark(String),
}

/// A question of [`Slots::ending`].
#[derive(Clone, Debug)]
struct Ending {
    ticket: u64,
    id: ReservationId,
    command: SlotCommand,
    /// This instance's lease, as confirmed, still covers the record (for logs).
    covered: bool,
    /// Asked again until then while Redis does not answer; past it, acts.
    until: Instant,
    /// While Redis does not answer, the session is stopped then (its record has expired
    /// or was claimed by then): [`SlotOutput::StopDue`]; its end still waits.
    stop_at: Instant,
    stop_due: bool,
    /// An answer found nothing of the stream already ([`ClaimRule::finds_nothing`]).
    absent_seen: bool,
}

/// A release or an orphan claim: retried until confirmed or the record expired.
#[derive(Debug)]
struct Retried {
    command: SlotCommand,
    until: Instant,
    next: Option<Instant>,
}

/// The engine slots and session records of one instance.
#[derive(Debug)]
pub struct Slots {
    config: SlotsConfig,
    held: BTreeMap<ReservationId, Held>,
    ops: BTreeMap<OpId, Op>,
    /// Releases not yet confirmed, by reservation.
    releasing: BTreeMap<ReservationId, (String, Retried)>,
    /// Orphan claims not yet answered, by channel.
    claiming: BTreeMap<String, Retried>,
    /// Questions of [`Slots::ending`] to ask again, and when.
    asking: Vec<(Instant, Box<Ending>)>,
    /// Takeover marks of the streams this instance claimed, rewritten every
    /// `renew_every` until they lapse (a Redis restart without persistence loses them,
    /// and a cut-off owner returning after it must still find them): by stream, until
    /// when and when next.
    marks: BTreeMap<String, (Instant, Option<Instant>)>,
    /// End decisions waiting for a record write in flight, by that write.
    waiting: BTreeMap<OpId, (String, SessionRecord, Decision)>,
    next_id: u64,
    next_op: u64,
    out: VecDeque<SlotOutput>,
}

impl Slots {
    /// No slots yet.
    pub fn new(config: SlotsConfig) -> Self {
        Slots {
            config,
            held: BTreeMap::new(),
            ops: BTreeMap::new(),
            releasing: BTreeMap::new(),
            claiming: BTreeMap::new(),
            asking: Vec::new(),
            waiting: BTreeMap::new(),
            marks: BTreeMap::new(),
            next_id: 1,
            next_op: 1,
            out: VecDeque::new(),
        }
    }

    /// The configuration.
    pub fn config(&self) -> &SlotsConfig {
        &self.config
    }

    /// `channel` (fencing number `fencing`, 0 without a lease) wants an engine session
    /// on one of `candidates` (best first): a slot is reserved on the first that has one
    /// free. Answered with [`SlotOutput::Reserved`] for `ticket`.
    pub fn reserve(
        &mut self,
        now: Instant,
        ticket: u64,
        channel: &str,
        fencing: u64,
        candidates: Vec<EngineAddr>,
    ) {
        let mut rest: VecDeque<EngineAddr> = candidates.into();
        let Some(first) = rest.pop_front() else {
            self.out.push_back(SlotOutput::Reserved {
                ticket,
                reserved: None,
            });
            return;
        };
        let id = ReservationId(self.next_id);
        self.next_id += 1;
        let value = SlotValue {
            instance: self.config.instance.clone(),
            channel: channel.to_owned(),
            fencing,
            engine: first.clone(),
            reservation: id.0,
        };
        self.send_reserve(now, ticket, id, rest, first, value);
    }

    /// The session of reservation `id` started: its record is written.
    pub fn started(&mut self, now: Instant, id: ReservationId, record: SessionRecord) {
        let Some(held) = self.held.get_mut(&id) else {
            return;
        };
        held.record = Some(record);
        held.written = false;
        held.attempted = false;
        held.decided = None;
        held.deciding = false;
        if held.op.is_none() {
            held.next = now;
            self.send_due(now, id);
        }
    }

    /// The session of reservation `id` was stopped (or never opened): its slot is given
    /// back and its record marked ended, both only while they are still this
    /// instance's.
    pub fn stopped(&mut self, now: Instant, id: ReservationId) {
        let Some(held) = self.held.remove(&id) else {
            return;
        };
        // A record whose end is being decided is the decision's to mark.
        let deciding = self
            .ops
            .values()
            .any(|op| matches!(op, Op::Ending(ending) if ending.id == id))
            || self.asking.iter().any(|(_, ending)| ending.id == id)
            || self.waiting.values().any(
                |(_, _, decision)| matches!(decision, Decision::Ending { id: of, .. } if *of == id),
            );
        let command = SlotCommand::Release {
            slot: held.slot(),
            record: held.record().filter(|_| !deciding),
            record_ttl: self.config.record_ttl,
        };
        let retried = Retried {
            command,
            until: now + self.config.record_ttl,
            next: Some(now),
        };
        self.releasing.insert(id, (held.channel, retried));
        self.send_release(now, id);
    }

    /// Whether a release of `channel`'s record is unconfirmed: the channel's lease is
    /// given back only after it (else a new owner could claim a session that ended).
    pub fn busy(&self, channel: &str) -> bool {
        self.releasing.values().any(|(of, _)| of == channel)
    }

    /// This instance took `channel`'s lease with `fencing`: a dead owner's session
    /// record (older fencing, not ended) is claimed, and [`SlotOutput::Orphan`] asks
    /// that its session be stopped and its end recorded.
    pub fn acquired(&mut self, now: Instant, channel: &str, fencing: u64) {
        let except = self
            .held
            .values()
            .filter(|held| held.channel == channel)
            .find_map(|held| held.record.clone());
        let command = SlotCommand::Claim {
            channel: channel.to_owned(),
            rule: ClaimRule::Older {
                below: fencing,
                except,
            },
            record_ttl: self.config.record_ttl,
            taken_ttl: self.config.taken_ttl,
            instance: self.config.instance.clone(),
        };
        self.claiming.insert(
            channel.to_owned(),
            Retried {
                command,
                until: now + self.config.record_ttl,
                next: Some(now),
            },
        );
        self.send_claim(now, channel);
    }

    /// The channel of reservation `id`, while it is held.
    pub fn channel_of(&self, id: ReservationId) -> Option<String> {
        self.held.get(&id).map(|held| held.channel.clone())
    }

    /// The slots held, by reservation.
    pub fn held(&self) -> Vec<HeldSlot> {
        self.held
            .values()
            .map(|held| HeldSlot {
                channel: held.channel.clone(),
                engine: held.engine.clone(),
                slot: held.slot,
                fencing: held.fencing,
                stream_id: held.record.as_ref().map(|record| record.stream_id.clone()),
            })
            .collect()
    }

    /// Whether no Redis command is in flight.
    pub fn is_idle(&self) -> bool {
        self.ops.is_empty()
    }

    /// The next output.
    pub fn poll_output(&mut self) -> Option<SlotOutput> {
        self.out.pop_front()
    }

    /// When [`handle_timeout`](Self::handle_timeout) is due next.
    pub fn poll_timeout(&self) -> Option<Instant> {
        let held = self
            .held
            .values()
            .filter(|held| held.op.is_none())
            .map(|held| held.next);
        let retried = self
            .releasing
            .values()
            .map(|(_, retried)| retried)
            .chain(self.claiming.values())
            .filter_map(|retried| retried.next);
        let asking = self.asking.iter().map(|(at, _)| *at);
        let marks = self.marks.values().filter_map(|(_, next)| *next);
        held.chain(retried).chain(asking).chain(marks).min()
    }

    /// Renewals and retries due at `now`.
    pub fn handle_timeout(&mut self, now: Instant) {
        self.marks.retain(|_, (until, _)| *until > now);
        let due: Vec<(String, Instant)> = self
            .marks
            .iter()
            .filter(|(_, (_, next))| next.is_some_and(|next| next <= now))
            .map(|(stream, (until, _))| (stream.clone(), *until))
            .collect();
        for (stream, until) in due {
            if let Some((_, next)) = self.marks.get_mut(&stream) {
                *next = None;
            }
            let command = SlotCommand::Mark {
                stream: stream.clone(),
                instance: self.config.instance.clone(),
                ttl: until.saturating_duration_since(now),
            };
            self.send(now, command, Op::Mark(stream));
        }
        let ids: Vec<ReservationId> = self.held.keys().copied().collect();
        for id in ids {
            self.send_due(now, id);
        }
        let releases: Vec<ReservationId> = self.releasing.keys().copied().collect();
        for id in releases {
            self.send_release(now, id);
        }
        let claims: Vec<String> = self.claiming.keys().cloned().collect();
        for channel in claims {
            self.send_claim(now, &channel);
        }
        let (due, later): (Vec<_>, Vec<_>) = std::mem::take(&mut self.asking)
            .into_iter()
            .partition(|(at, _)| *at <= now);
        self.asking = later;
        for (_, ending) in due {
            let command = ending.command.clone();
            self.send(now, command, Op::Ending(ending));
        }
    }

    /// The answer to [`SlotOutput::Redis`] `op`, or why there is none.
    pub fn reply(&mut self, now: Instant, op: OpId, result: Result<SlotReply, String>) {
        let op_id = op;
        let Some(op) = self.ops.remove(&op) else {
            return;
        };
        match op {
            Op::Reserve {
                ticket,
                id,
                rest,
                first,
                value,
            } => self.reserved(now, ticket, id, rest, first, value, result),
            Op::Rereserve(id) => {
                let Some(held) = self.held.get_mut(&id) else {
                    return;
                };
                held.op = None;
                held.next = now + self.config.renew_every;
                match result {
                    Ok(SlotReply::Reserved { slot }) => {
                        held.slot = Some(slot);
                        let notice = SlotNotice::Reserved {
                            channel: held.channel.clone(),
                            engine: held.engine.clone(),
                            slot,
                        };
                        self.notice(notice);
                    }
                    Ok(_) => {
                        let notice = SlotNotice::Unreserved {
                            channel: held.channel.clone(),
                            engine: held.engine.clone(),
                        };
                        self.notice(notice);
                    }
                    Err(error) => self.failed("reserve", error),
                }
            }
            Op::Record(id) => {
                self.resume_decision(now, op_id);
                let Some(held) = self.held.get_mut(&id) else {
                    return;
                };
                held.op = None;
                match result {
                    Ok(SlotReply::Done) => {
                        held.written = true;
                        held.next = now + self.config.renew_every;
                    }
                    Ok(SlotReply::Superseded(newer)) => {
                        held.superseded = true;
                        held.next = now + self.config.renew_every;
                        let notice = SlotNotice::Superseded {
                            channel: held.channel.clone(),
                            instance: newer.instance,
                            fencing: newer.fencing,
                        };
                        self.notice(notice);
                    }
                    other => {
                        held.next = now + self.config.retry_after;
                        self.failed("record", unexpected(other));
                    }
                }
            }
            Op::Keep(id) => {
                let Some(held) = self.held.get_mut(&id) else {
                    return;
                };
                held.op = None;
                held.next = now + self.config.renew_every;
                match result {
                    Ok(SlotReply::Kept { slot, record }) => {
                        if !slot && held.slot.is_some() {
                            // Expired (a partition): reserved again at once.
                            held.slot = None;
                            held.next = now;
                        }
                        if !record && held.written {
                            // Gone, ended by a claimer, or another's: written again only
                            // if nobody newer holds it (the record command checks).
                            held.written = false;
                            held.next = now;
                        }
                    }
                    other => {
                        held.next = now + self.config.retry_after;
                        self.failed("keep", unexpected(other));
                    }
                }
                self.send_due(now, id);
            }
            Op::Release(id) => {
                let Some((_, retried)) = self.releasing.get_mut(&id) else {
                    return;
                };
                match result {
                    Ok(_) => {
                        self.releasing.remove(&id);
                    }
                    Err(error) => {
                        retried.next =
                            Some(now + self.config.retry_after).filter(|at| *at < retried.until);
                        if retried.next.is_none() {
                            self.releasing.remove(&id);
                        }
                        self.failed("release", error);
                    }
                }
            }
            Op::Claim { channel, lost } => self.claimed(now, &channel, lost, result),
            Op::Mark(stream) => {
                if let Err(error) = result {
                    self.failed("mark", error);
                }
                if let Some((_, next)) = self.marks.get_mut(&stream) {
                    *next = Some(now + self.config.renew_every);
                }
            }
            Op::Ending(mut ending) => {
                if let Err(error) = &result {
                    self.failed("claim", error.clone());
                    // Even under its own lease: the record must be marked ended before
                    // the lease can lapse, or a later owner would claim it too.
                    if now < ending.until {
                        if !ending.stop_due && now >= ending.stop_at {
                            // Its record expired or was claimed by now: the session is
                            // stopped (again, if a newer owner did); its end waits for
                            // the takeover mark's word.
                            ending.stop_due = true;
                            self.out.push_back(SlotOutput::StopDue {
                                ticket: ending.ticket,
                            });
                        }
                        // Not known whether a newer owner claimed it: asked again.
                        self.asking.push((now + self.config.retry_after, ending));
                        return;
                    }
                }
                let (act, absent) = match &ending.command {
                    SlotCommand::Claim { rule, .. } => {
                        (rule.owner_acts(&result), rule.finds_nothing(&result))
                    }
                    _ => (true, false),
                };
                if absent && !ending.absent_seen {
                    // Confirmed by a second answer: right after a Redis restart, a
                    // taken-over stream's mark is not written again yet.
                    ending.absent_seen = true;
                    self.asking
                        .push((now + self.config.confirm_absence, ending));
                    return;
                }
                if let Some(held) = self.held.get_mut(&ending.id) {
                    // Marked ended (or another's): never written nor renewed again.
                    held.superseded = true;
                    held.decided = Some(act);
                }
                if ending.covered && result.is_err() {
                    self.failed(
                        "claim",
                        "acting on an unmarked record under this instance's own lease".into(),
                    );
                }
                self.out.push_back(SlotOutput::EndDecided {
                    ticket: ending.ticket,
                    act,
                });
            }
        }
    }

    /// Asks for a slot on `value.engine` (`first`: the best candidate, `rest`: the
    /// others still to try).
    fn send_reserve(
        &mut self,
        now: Instant,
        ticket: u64,
        id: ReservationId,
        rest: VecDeque<EngineAddr>,
        first: EngineAddr,
        value: SlotValue,
    ) {
        let command = self.reserve_command(&value.engine, &value);
        self.send(
            now,
            command,
            Op::Reserve {
                ticket,
                id,
                rest,
                first,
                value,
            },
        );
    }

    fn reserve_command(&self, engine: &EngineAddr, value: &SlotValue) -> SlotCommand {
        SlotCommand::Reserve {
            engine: engine.clone(),
            slots: self.config.max_per_engine,
            value: value.clone(),
            ttl: self.config.ttl,
        }
    }

    fn send(&mut self, _now: Instant, command: SlotCommand, op: Op) -> OpId {
        let id = OpId(self.next_op);
        self.next_op += 1;
        self.ops.insert(id, op);
        self.out.push_back(SlotOutput::Redis {
            op: id,
            command,
            timeout: self.config.redis_timeout,
        });
        id
    }

    fn send_due(&mut self, now: Instant, id: ReservationId) {
        let Some(held) = self.held.get(&id) else {
            return;
        };
        if held.op.is_some() || held.next > now {
            return;
        }
        let (command, op) = if held.slot.is_none() {
            (
                self.reserve_command(&held.engine.clone(), &held.value.clone()),
                Op::Rereserve(id),
            )
        } else if let Some(record) = held
            .record
            .clone()
            .filter(|_| !held.written && !held.superseded && !held.deciding)
        {
            let command = SlotCommand::Record {
                channel: held.channel.clone(),
                record,
                ttl: self.config.record_ttl,
            };
            (command, Op::Record(id))
        } else {
            let command = SlotCommand::Keep {
                slot: held.slot(),
                record: held.record(),
                ttl: self.config.ttl,
                record_ttl: self.config.record_ttl,
            };
            (command, Op::Keep(id))
        };
        let writes = matches!(op, Op::Record(_));
        let op = self.send(now, command, op);
        if let Some(held) = self.held.get_mut(&id) {
            held.op = Some(op);
            held.attempted |= writes;
        }
    }

    fn send_release(&mut self, now: Instant, id: ReservationId) {
        let Some((_, retried)) = self.releasing.get_mut(&id) else {
            return;
        };
        if retried.next.is_none_or(|next| next > now) {
            return;
        }
        retried.next = None;
        let command = retried.command.clone();
        self.send(now, command, Op::Release(id));
    }

    fn send_claim(&mut self, now: Instant, channel: &str) {
        let Some(retried) = self.claiming.get_mut(channel) else {
            return;
        };
        if retried.next.is_none_or(|next| next > now) {
            return;
        }
        retried.next = None;
        let command = retried.command.clone();
        self.send(
            now,
            command,
            Op::Claim {
                channel: channel.to_owned(),
                lost: None,
            },
        );
    }

    fn notice(&mut self, notice: SlotNotice) {
        self.out.push_back(SlotOutput::Notice(notice));
    }

    fn failed(&mut self, call: &'static str, error: String) {
        self.notice(SlotNotice::RedisFailed { call, error });
    }
}

fn unexpected(result: Result<SlotReply, String>) -> String {
    match result {
        Err(error) => error,
        Ok(reply) => format!("unexpected reply {reply:?}"),
    }
}
