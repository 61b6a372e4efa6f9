//! The vocabulary of the engine slot machine ([`Slots`](super::Slots)): its
//! configuration, the values it keeps in Redis, what it asks of the driver and what
//! the driver reports.

use serde::{Deserialize, Serialize};

use super::vocab::{LeaseConfig, OpId};
use crate::lifecycle::{EngineAddr, StreamStarted};
use crate::time::{Duration, Instant};

/// Timing of engine slots and session records.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SlotsConfig {
    /// This instance's id, stored in its slots and records.
    pub instance: String,
    /// `--max-streams-per-engine`: the slots of each engine, cluster-wide.
    pub max_per_engine: usize,
    /// A slot's time to live (the lease's): a dead instance's slots come back then.
    pub ttl: Duration,
    /// How often held slots and records are renewed (with the leases).
    pub renew_every: Duration,
    /// A session record's time to live: longer than a lease's, so that the instance
    /// that takes a dead owner's channel still finds the record of its session.
    pub record_ttl: Duration,
    /// How long a claimed stream's takeover mark lives: an owner cut off from Redis for
    /// up to this long still learns, when it returns, that its session was taken over.
    pub taken_ttl: Duration,
    /// How long after a first answer that found nothing of a stream
    /// ([`ClaimRule::finds_nothing`]) it is asked again before that is acted on: two
    /// renewals, by which a claimer has written its mark again after a Redis restart.
    pub confirm_absence: Duration,
    /// Longest time one Redis command sequence may take.
    pub redis_timeout: Duration,
    /// Delay before a failed call is tried again.
    pub retry_after: Duration,
    /// Bugs planted by the simulation's self-test; none otherwise.
    pub planted: crate::planted::Planted,
}

impl SlotsConfig {
    /// The timing of `lease` (slots live as long as leases and are renewed with them;
    /// records live three times as long, takeover marks 360 times: an hour with the
    /// default 10 s lease), `max_per_engine` slots per engine.
    pub fn new(lease: &LeaseConfig, max_per_engine: usize) -> Self {
        SlotsConfig {
            instance: lease.instance.clone(),
            max_per_engine,
            ttl: lease.ttl,
            renew_every: lease.renew_every,
            record_ttl: lease.ttl * 3,
            taken_ttl: lease.ttl * 360,
            confirm_absence: lease.renew_every * 2,
            redis_timeout: lease.redis_timeout,
            retry_after: lease.retry_after,
            planted: lease.planted,
        }
    }
}

/// What a slot key holds: who reserved it, for what. Stored as JSON.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SlotValue {
    /// The reserving instance.
    pub instance: String,
    /// The channel, as acemux names it in its logs.
    pub channel: String,
    /// The channel's lease fencing number (0: taken without a lease).
    pub fencing: u64,
    /// The engine (its address, as the pool names it).
    pub engine: EngineAddr,
    /// Tells reservations of one channel apart.
    pub reservation: u64,
}

impl SlotValue {
    /// The value stored in Redis.
    pub fn encode(&self) -> String {
        serde_json::to_string(self).unwrap_or_default()
    }

    /// A value read from Redis; `None` when it is not a slot.
    pub fn decode(value: &str) -> Option<SlotValue> {
        serde_json::from_str(value).ok()
    }
}

/// What a channel's session record holds: the owner's engine session, with what it
/// takes to stop it and to record its end. Stored as JSON.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SessionRecord {
    /// The owning instance.
    pub instance: String,
    /// The lease fencing number it runs under.
    pub fencing: u64,
    /// The engine.
    pub engine: EngineAddr,
    /// The session's command URL (its stop).
    pub command_url: String,
    /// The stream's lifecycle id.
    pub stream_id: String,
    /// The stream as its `stream_started` recorded it (in the owner's database).
    pub started: StreamStarted,
    /// When it started.
    pub started_at: Instant,
    /// The session was stopped and its end recorded (by its owner, or by the instance
    /// that took the channel over): nobody acts on it again.
    #[serde(default)]
    pub ended: bool,
}

impl SessionRecord {
    /// The value stored in Redis.
    pub fn encode(&self) -> String {
        serde_json::to_string(self).unwrap_or_default()
    }

    /// A value read from Redis; `None` when it is not a record.
    pub fn decode(value: &str) -> Option<SessionRecord> {
        serde_json::from_str(value).ok()
    }

    /// What writing this record where `found` is does: write it (nothing there, an
    /// ended record of an older owner, or this very record not yet ended); wait (an
    /// older owner's session not claimed yet: the claim comes first, so that its
    /// session is not forgotten); or never (a newer owner's record, or this one ended).
    pub fn replaces(&self, found: Option<&SessionRecord>) -> Replace {
        let Some(found) = found else {
            return Replace::Write;
        };
        let same = found.instance == self.instance
            && found.fencing == self.fencing
            && found.stream_id == self.stream_id;
        if same {
            return if found.ended {
                Replace::Never
            } else {
                Replace::Write
            };
        }
        if found.fencing > self.fencing || (found.fencing == self.fencing && !found.ended) {
            return Replace::Never;
        }
        if found.ended {
            Replace::Write
        } else {
            Replace::Wait
        }
    }

    /// The same record, marked ended.
    pub fn ended(&self) -> SessionRecord {
        SessionRecord {
            ended: true,
            ..self.clone()
        }
    }
}

/// What [`SessionRecord::replaces`] decides.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Replace {
    /// Write it.
    Write,
    /// Not yet: an older owner's session is not claimed.
    Wait,
    /// Never: a newer owner's, or this record ended.
    Never,
}

/// Identifies a reservation of this instance.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ReservationId(pub u64);

/// Which record a [`SlotCommand::Claim`] may take.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ClaimRule {
    /// A record not ended, of a fencing number below `below`, and not `except` (this
    /// instance's own running session): a dead owner's session.
    Older {
        /// The claimer's fencing number.
        below: u64,
        /// This instance's record of the channel, if it runs a session of it now.
        except: Option<SessionRecord>,
    },
    /// Exactly `record`, not ended: this instance's own, nobody took it over.
    Mine {
        /// The record as this instance wrote it.
        record: SessionRecord,
    },
    /// This instance's record of stream `stream_id`, not ended: a stream an earlier
    /// run of this instance left started (found at start).
    Left {
        /// This instance's id.
        instance: String,
        /// The stream.
        stream_id: String,
    },
}

impl ClaimRule {
    /// Whether `found` may be claimed under this rule.
    pub fn allows(&self, found: &SessionRecord) -> bool {
        if found.ended {
            return false;
        }
        match self {
            ClaimRule::Older { below, except } => {
                found.fencing < *below && except.as_ref() != Some(found)
            }
            ClaimRule::Mine { record } => found == record,
            ClaimRule::Left {
                instance,
                stream_id,
            } => found.instance == *instance && found.stream_id == *stream_id,
        }
    }

    /// The stream whose record the rule claims, when it names one.
    pub fn stream_id(&self) -> Option<&str> {
        match self {
            ClaimRule::Older { .. } => None,
            ClaimRule::Mine { record } => Some(&record.stream_id),
            ClaimRule::Left { stream_id, .. } => Some(stream_id),
        }
    }

    /// Whether `reply` found nothing of the rule's stream: no record of it and no
    /// takeover mark. Right after a Redis restart without persistence that is also
    /// what a taken-over stream looks like until its claimer writes its mark again
    /// (within `renew_every`): such an answer is confirmed by a second one
    /// ([`SlotsConfig::confirm_absence`]) before it is acted on.
    pub fn finds_nothing(&self, reply: &Result<SlotReply, String>) -> bool {
        match reply {
            Ok(SlotReply::NotClaimed(None)) => self.stream_id().is_some(),
            Ok(SlotReply::NotClaimed(Some(found))) => {
                self.stream_id().is_some_and(|ours| found.stream_id != ours)
            }
            _ => false,
        }
    }

    /// Whether the claimer of a [`ClaimRule::Left`] or [`ClaimRule::Mine`] claim that got
    /// `reply` still stops the session and records its end: when it claimed the record,
    /// when nothing of its stream is there (no record, or another stream's: it expired,
    /// or Redis restarted) and no instance took the stream over, or when Redis does not
    /// answer (as a single instance does); never once another instance claimed it (its
    /// record found ended, or the stream's takeover mark found).
    pub fn owner_acts(&self, reply: &Result<SlotReply, String>) -> bool {
        match reply {
            Ok(SlotReply::Claimed(_)) | Ok(SlotReply::NotClaimed(None)) | Err(_) => true,
            Ok(SlotReply::NotClaimed(Some(found))) => {
                self.stream_id().is_some_and(|ours| found.stream_id != ours)
            }
            Ok(_) => false,
        }
    }
}

/// What a restarted instance does with a stream an earlier run of it left started,
/// after asking Redis ([`ClaimRule::Left`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LeftVerdict {
    /// End it (`restarted`) and stop its session here.
    Act,
    /// Another instance took it over (and recorded its end): leave it alone.
    Leave,
    /// Redis did not answer: ask again at this time. Meanwhile its channel neither
    /// takes a lease nor starts here ([`Leases::hold_back`](super::Leases::hold_back)).
    AskAgain(Instant),
}

impl LeftVerdict {
    /// The verdict on `reply` to the claim `rule` of a stream first asked about at
    /// `since`: Redis silent is asked again every `retry_after` while a takeover mark
    /// could still say the stream was taken over (`taken_ttl`); past that it acts, as a
    /// single instance does. An answer that found nothing of the stream is asked again
    /// after `confirm_absence` unless one did already (`absent_seen`, set here).
    pub fn of(
        config: &SlotsConfig,
        rule: &ClaimRule,
        reply: &Result<SlotReply, String>,
        since: Instant,
        now: Instant,
        absent_seen: &mut bool,
    ) -> LeftVerdict {
        match reply {
            Err(_) if now < since + config.taken_ttl => {
                LeftVerdict::AskAgain(now + config.retry_after)
            }
            reply if rule.finds_nothing(reply) && !*absent_seen => {
                *absent_seen = true;
                LeftVerdict::AskAgain(now + config.confirm_absence)
            }
            reply if rule.owner_acts(reply) => LeftVerdict::Act,
            _ => LeftVerdict::Leave,
        }
    }
}

/// A Redis command sequence for the driver to perform.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SlotCommand {
    /// For `n` in `0..slots`: `SET acemux:engine:{engine}:slot:{n} value NX PX ttl`,
    /// until one is set. Replies [`SlotReply::Reserved`] or [`SlotReply::Full`].
    Reserve {
        /// The engine.
        engine: EngineAddr,
        /// How many slots it has.
        slots: usize,
        /// The value.
        value: SlotValue,
        /// Time to live.
        ttl: Duration,
    },
    /// `WATCH` the channel's record, `GET` it; unless it is a newer owner's (a higher
    /// fencing number), `MULTI SET record PX ttl EXEC`. Replies [`SlotReply::Done`] or
    /// [`SlotReply::Superseded`].
    Record {
        /// The channel.
        channel: String,
        /// The record.
        record: SessionRecord,
        /// Time to live.
        ttl: Duration,
    },
    /// `WATCH` the slot and the record, `GET` both; `MULTI`, `PEXPIRE` each that still
    /// holds what this instance wrote, `EXEC`. Replies [`SlotReply::Kept`].
    Keep {
        /// The slot, if one is held: engine, number and value.
        slot: Option<(EngineAddr, usize, SlotValue)>,
        /// The record, if one was written: channel and record.
        record: Option<(String, SessionRecord)>,
        /// The slot's time to live.
        ttl: Duration,
        /// The record's.
        record_ttl: Duration,
    },
    /// `WATCH` the slot and the record, `GET` both; `MULTI`, `DEL` the slot if it is
    /// still this instance's, `SET` the record marked ended `PX record_ttl` if it is
    /// still this instance's and not ended, `EXEC`. Replies [`SlotReply::Done`].
    Release {
        /// The slot, if one is held.
        slot: Option<(EngineAddr, usize, SlotValue)>,
        /// The record, if one was written.
        record: Option<(String, SessionRecord)>,
        /// The ended record's time to live.
        record_ttl: Duration,
    },
    /// `WATCH` the channel's record, `GET` it; if `rule` allows it, `MULTI SET` it
    /// marked ended `PX record_ttl`, `SET acemux:taken:{stream} {instance} PX taken_ttl`
    /// (the stream's takeover mark) `EXEC`. Replies [`SlotReply::Claimed`]; else, when
    /// the rule names a stream and what was found is not that stream's record, `GET`
    /// the stream's takeover mark: [`SlotReply::TakenOver`] if it is there; else
    /// [`SlotReply::NotClaimed`].
    Claim {
        /// The channel.
        channel: String,
        /// Which record may be taken.
        rule: ClaimRule,
        /// The ended record's time to live.
        record_ttl: Duration,
        /// The takeover mark's time to live.
        taken_ttl: Duration,
        /// This instance's id (the mark's value).
        instance: String,
    },
    /// `SET acemux:taken:{stream} {instance} PX ttl`: a claimed stream's takeover mark
    /// written again (Redis may have restarted without it). Replies [`SlotReply::Done`].
    Mark {
        /// The stream.
        stream: String,
        /// This instance's id.
        instance: String,
        /// What is left of the mark's time to live.
        ttl: Duration,
    },
}

/// What Redis answered to a [`SlotCommand`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SlotReply {
    /// Slot `slot` is this instance's.
    Reserved {
        /// Its number.
        slot: usize,
    },
    /// Every slot of the engine is taken.
    Full,
    /// Done.
    Done,
    /// A newer owner's record is there; this one was not written.
    Superseded(SessionRecord),
    /// What [`SlotCommand::Keep`] found still this instance's (and renewed).
    Kept {
        /// The slot.
        slot: bool,
        /// The record.
        record: bool,
    },
    /// The record was this one, and is marked ended now: act on it, once.
    Claimed(SessionRecord),
    /// Not claimed: the record found (ended, another's, or none).
    NotClaimed(Option<SessionRecord>),
    /// The stream the claim names was taken over by instance `by` (its takeover mark):
    /// its record was claimed, and may have been replaced since.
    TakenOver {
        /// The instance that claimed it.
        by: String,
    },
}

/// Events for logs and metrics.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum SlotNotice {
    /// A slot was reserved.
    Reserved {
        /// The channel.
        channel: String,
        /// The engine.
        engine: EngineAddr,
        /// The slot number.
        slot: usize,
    },
    /// An engine's slots are all taken cluster-wide.
    Full {
        /// The channel.
        channel: String,
        /// The engine.
        engine: EngineAddr,
    },
    /// A session runs without a slot: Redis did not answer, or the slot expired (a
    /// partition) and the engine is full now. Reserved again at the next renewal.
    Unreserved {
        /// The channel.
        channel: String,
        /// The engine.
        engine: EngineAddr,
    },
    /// A newer owner's session record was found where this instance wrote its own.
    Superseded {
        /// The channel.
        channel: String,
        /// The newer owner.
        instance: String,
        /// Its fencing number.
        fencing: u64,
    },
    /// A Redis call failed.
    RedisFailed {
        /// What was asked: `reserve`, `record`, `keep`, `release` or `claim`.
        call: &'static str,
        /// Why.
        error: String,
    },
}

/// What the machine asks of the driver. (Outputs are drained as they come, never
/// stored in bulk: the size of a command is no concern.)
#[derive(Clone, Debug, PartialEq, Eq)]
#[allow(clippy::large_enum_variant)]
pub enum SlotOutput {
    /// Perform `command` within `timeout`; answer with [`Slots::reply`](super::Slots::reply).
    Redis {
        /// Echo it in the reply.
        op: OpId,
        /// What to do.
        command: SlotCommand,
        /// Longest time it may take.
        timeout: Duration,
    },
    /// The answer to a [`Slots::reserve`](super::Slots::reserve): the engine to open the
    /// session on and its reservation, or none (every candidate is full cluster-wide).
    Reserved {
        /// The caller's ticket.
        ticket: u64,
        /// The engine and the reservation to report the session's start and stop to.
        reserved: Option<(ReservationId, EngineAddr)>,
    },
    /// A dead (or returned) owner's session, claimed by this instance: stop it on its
    /// engine and record its end (`owner_lost`), once.
    Orphan(SessionRecord),
    /// The answer to [`Slots::ending`](super::Slots::ending) for `ticket`: whether this
    /// instance stops the session and records its end (`act`), or a newer owner has
    /// claimed both.
    EndDecided {
        /// The caller's ticket.
        ticket: u64,
        /// Stop and record here.
        act: bool,
    },
    /// Redis has not answered [`Slots::ending`](super::Slots::ending) for a record's
    /// time to live: the session is stopped now (a newer owner that claimed it stopped
    /// it too); its end still waits for [`SlotOutput::EndDecided`].
    StopDue {
        /// The caller's ticket.
        ticket: u64,
    },
    /// The answer to [`Slots::lost`](super::Slots::lost): whether this instance still
    /// stops the channel's session and records its end (`act`), or a newer owner has
    /// (or will).
    LostDecided {
        /// The channel.
        channel: String,
        /// Stop and record here.
        act: bool,
    },
    /// For logs and metrics.
    Notice(SlotNotice),
}

/// A slot this instance holds, as `GET /cluster` shows it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HeldSlot {
    /// The channel.
    pub channel: String,
    /// The engine.
    pub engine: EngineAddr,
    /// The slot number; `None` while the session runs without one.
    pub slot: Option<usize>,
    /// The channel's fencing number.
    pub fencing: u64,
    /// The session's stream id, once it started.
    pub stream_id: Option<String>,
}
