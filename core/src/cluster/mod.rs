//! Cluster mode: which instance owns a channel, through leases kept in Redis.
//!
//! One lease per channel, cluster-wide. A channel that wants an engine session first
//! asks [`Leases`] for a [`Route`]: this instance takes the lease (set-if-absent with a
//! time to live) and opens the session itself ([`Route::Own`]), or another instance
//! holds it and the channel relays from that owner ([`Route::Relay`]), or Redis did not
//! answer within [`LeaseConfig::wait_for_redis`] and the channel starts here without a
//! lease ([`Route::Local`]; counted, and the lease is taken as soon as Redis answers).
//!
//! The machine decides every time bound: how long a Redis call may take, when a held
//! lease is renewed (every [`LeaseConfig::renew_every`], a third of the time to live by
//! default), how long a new channel waits for Redis, how soon a failed call is tried
//! again. The driver performs the [`Command`]s (each a short sequence of Redis commands:
//! `INCR`, `SET NX PX`, `GET`, `PEXPIRE`, `DEL`, `WATCH`/`MULTI`/`EXEC`) and reports
//! each one's [`Reply`], within the command's timeout.
//!
//! Rules:
//! - A lease carries a fencing number from a counter that only grows (`INCR`). The
//!   machine remembers the highest number it has seen per channel, its own or another
//!   owner's; a lease taken with a number not above it (the counter went back: Redis
//!   restarted without persistence) is never acted on: it is released, the counter is
//!   raised above the highest number seen, and the lease is taken again.
//! - A renewal that finds another owner loses the lease: [`Output::Lost`], and the
//!   driver stops the channel's engine session. A renewal that finds no lease at all
//!   (it expired while Redis was unreachable, or Redis restarted) takes it again; if
//!   another instance was faster, that is a loss too.
//! - A held lease whose confirmed expiry has passed (renewals unanswered) may be
//!   another instance's now: a channel wanting a new session on it waits for a renewal
//!   (kept: [`Route::Own`]; taken: [`Route::Relay`] and [`Output::Lost`]; gone: taken
//!   again, with a new fencing number), or [`Route::Local`] after `wait_for_redis`.
//!   A session is never opened on a fencing number that may have been superseded.
//! - A channel that ended releases its lease (only if it still holds it).
//! - Redis unreachable never stops a running channel: renewals are retried, and the
//!   channel keeps serving. Ownership converges when Redis answers again.

pub mod directory;
#[cfg(test)]
mod props;
mod slots;
#[cfg(test)]
mod slots_tests;
mod slots_vocab;
#[cfg(test)]
mod tests;
mod vocab;

use std::collections::{BTreeMap, VecDeque};

use crate::time::Instant;

pub use slots::Slots;
pub use slots_vocab::{
    ClaimRule, HeldSlot, LeftVerdict, Replace, ReservationId, SessionRecord, SlotCommand,
    SlotNotice, SlotOutput, SlotReply, SlotValue, SlotsConfig,
};
pub use vocab::{
    Command, HeldLease, Holder, Input, LeaseConfig, Notice, OpId, Output, Reply, Route, TicketId,
};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Step {
    /// Taking the lease.
    Acquire,
    /// Giving back a lease taken with a stale fencing number.
    ReleaseStale,
    /// Raising the counter above the highest number seen.
    Raise,
}

#[derive(Debug)]
enum State {
    /// Taking the lease. `local`: the channel runs here already without one.
    Acquiring {
        step: Step,
        stale: Option<Holder>,
        waiters: Vec<TicketId>,
        wait_until: Instant,
        local: bool,
        /// The channel ended meanwhile: give back whatever the reply brings.
        finished: bool,
    },
    /// Holding it; `expires` as last confirmed. `waiters`: channels that want a new
    /// engine session while that has passed (another instance may hold the lease now):
    /// answered by the next renewal's reply, or [`Route::Local`] at `wait_until`.
    Held {
        mine: Holder,
        expires: Instant,
        waiters: Vec<TicketId>,
        wait_until: Instant,
    },
}

#[derive(Debug)]
struct Entry {
    state: State,
    /// The command in flight for this channel.
    op: Option<OpId>,
    /// When the next command is sent (none in flight).
    next: Option<Instant>,
    /// Calls that failed in a row (each waits twice as long, up to `renew_every`).
    failures: u32,
}

/// The leases of one instance.
#[derive(Debug)]
pub struct Leases {
    config: LeaseConfig,
    channels: BTreeMap<String, Entry>,
    /// The highest fencing number seen per channel.
    highest: BTreeMap<String, u64>,
    /// Commands in flight: their channel and when they were sent.
    ops: BTreeMap<OpId, (String, Instant)>,
    /// Channels with a session of this instance not known yet to be ended here or
    /// taken over ([`Leases::hold_back`]), and how many: a new channel of theirs is
    /// neither taken nor started here meanwhile.
    held_back: BTreeMap<String, usize>,
    next_op: u64,
    out: VecDeque<Output>,
}

impl Leases {
    /// No leases yet.
    pub fn new(config: LeaseConfig) -> Self {
        Leases {
            config,
            channels: BTreeMap::new(),
            highest: BTreeMap::new(),
            ops: BTreeMap::new(),
            held_back: BTreeMap::new(),
            next_op: 1,
            out: VecDeque::new(),
        }
    }

    /// The configuration.
    pub fn config(&self) -> &LeaseConfig {
        &self.config
    }

    /// A channel wants an engine session: where should it get its media? Answered with
    /// [`Output::Route`] for `ticket`, at once when the lease is held and confirmed
    /// (or the channel runs without one), else when Redis answers, by `wait_for_redis`
    /// at the latest. A held lease whose confirmed expiry has passed (renewals failed)
    /// is renewed first: a session is never opened on a fencing number another
    /// instance may have superseded meanwhile.
    pub fn want(&mut self, now: Instant, ticket: TicketId, channel: &str) {
        if let Some(entry) = self.channels.get_mut(channel) {
            match &mut entry.state {
                State::Held { mine, expires, .. } if *expires > now => {
                    let fencing = mine.fencing;
                    self.route(ticket, Route::Own { fencing });
                }
                State::Held {
                    waiters,
                    wait_until,
                    ..
                } => {
                    if waiters.is_empty() {
                        *wait_until = now + self.config.wait_for_redis;
                    }
                    waiters.push(ticket);
                    // Asked now, not at the next backoff step.
                    entry.next = Some(now);
                    self.send_due(now, channel);
                }
                State::Acquiring {
                    local: true,
                    finished,
                    ..
                } => {
                    // Runs here already (or its successor does): keep taking the lease.
                    *finished = false;
                    self.route(ticket, Route::Local);
                }
                State::Acquiring {
                    waiters, finished, ..
                } => {
                    // A successor of an ended channel wants what it was taking.
                    *finished = false;
                    waiters.push(ticket);
                }
            }
            return;
        }
        self.channels.insert(
            channel.to_owned(),
            Entry {
                state: State::Acquiring {
                    step: Step::Acquire,
                    stale: None,
                    waiters: vec![ticket],
                    wait_until: now + self.config.wait_for_redis,
                    local: false,
                    finished: false,
                },
                op: None,
                next: Some(now),
                failures: 0,
            },
        );
        self.send_due(now, channel);
    }

    /// A session of `channel` this instance ran (or an earlier run of it left) is not
    /// known yet to be ended here or taken over by another instance (Redis has not
    /// answered): until as many [`resolved`](Self::resolved), a new channel of it waits
    /// (its lease is not taken, nor does it start here without one), so that no second
    /// session of it is opened from here while the first's end is undecided, nor that
    /// end recorded after a newer stream of it started. A channel running here keeps
    /// its lease (renewed) or its local start.
    pub fn hold_back(&mut self, channel: &str) {
        *self.held_back.entry(channel.to_owned()).or_default() += 1;
    }

    /// One session [`hold_back`](Self::hold_back) named is decided: once none is left,
    /// a channel that waits takes its lease now (and waits for Redis from now on).
    pub fn resolved(&mut self, now: Instant, channel: &str) {
        match self.held_back.get_mut(channel) {
            Some(count) if *count > 1 => {
                *count -= 1;
                return;
            }
            Some(_) => {
                self.held_back.remove(channel);
            }
            None => return,
        }
        if let Some(entry) = self.channels.get_mut(channel) {
            if let State::Acquiring {
                wait_until,
                local: false,
                ..
            } = &mut entry.state
            {
                *wait_until = now + self.config.wait_for_redis;
                entry.next = Some(now);
            }
        }
        self.send_due(now, channel);
    }

    /// The local channel ended: its lease is given back (if held).
    pub fn finished(&mut self, now: Instant, channel: &str) {
        let Some(entry) = self.channels.get_mut(channel) else {
            return;
        };
        match &mut entry.state {
            State::Held { mine, .. } => {
                let mine = mine.clone();
                self.channels.remove(channel);
                let release = Command::Release {
                    channel: channel.to_owned(),
                    mine,
                };
                self.send(now, channel, release);
            }
            State::Acquiring {
                finished, waiters, ..
            } => {
                if entry.op.is_some() {
                    // The reply decides: a lease it brings is given back.
                    *finished = true;
                    waiters.clear();
                } else {
                    self.channels.remove(channel);
                }
            }
        }
    }

    /// Whether this instance holds `channel`'s lease now (a peer's request for it is
    /// served here only then).
    pub fn holds(&self, channel: &str) -> bool {
        matches!(
            self.channels.get(channel).map(|entry| &entry.state),
            Some(State::Held { .. })
        )
    }

    /// The leases held, by channel.
    pub fn held(&self) -> Vec<HeldLease> {
        self.channels
            .iter()
            .filter_map(|(channel, entry)| match &entry.state {
                State::Held { mine, expires, .. } => Some(HeldLease {
                    channel: channel.clone(),
                    fencing: mine.fencing,
                    expires: *expires,
                }),
                State::Acquiring { .. } => None,
            })
            .collect()
    }

    /// The highest fencing number seen for `channel`.
    pub fn highest_fencing(&self, channel: &str) -> Option<u64> {
        self.highest.get(channel).copied()
    }

    /// Whether no Redis command is in flight (at shutdown: every release answered).
    pub fn is_idle(&self) -> bool {
        self.ops.is_empty()
    }

    fn route(&mut self, ticket: TicketId, route: Route) {
        self.out.push_back(Output::Route { ticket, route });
    }

    fn notice(&mut self, notice: Notice) {
        self.out.push_back(Output::Notice(notice));
    }

    fn seen(&mut self, channel: &str, fencing: u64) {
        let highest = self.highest.entry(channel.to_owned()).or_insert(0);
        *highest = (*highest).max(fencing);
    }

    /// Sends `command` for `channel`; returns its id.
    fn send(&mut self, now: Instant, channel: &str, command: Command) -> OpId {
        let op = OpId(self.next_op);
        self.next_op += 1;
        self.ops.insert(op, (channel.to_owned(), now));
        self.out.push_back(Output::Redis {
            op,
            command,
            timeout: self.config.redis_timeout,
        });
        op
    }

    /// Sends `channel`'s next command if it is due and none is in flight.
    /// Whether `channel` is held back and not running here: its lease is not taken.
    fn waits(&self, channel: &str, entry: &Entry) -> bool {
        self.held_back.contains_key(channel)
            && matches!(entry.state, State::Acquiring { local: false, .. })
    }

    fn send_due(&mut self, now: Instant, channel: &str) {
        let Some(entry) = self.channels.get(channel) else {
            return;
        };
        if self.waits(channel, entry) {
            return;
        }
        if entry.op.is_some() || entry.next.is_none_or(|next| next > now) {
            return;
        }
        let command = match &entry.state {
            State::Held { mine, .. } => Command::Renew {
                channel: channel.to_owned(),
                mine: mine.clone(),
                ttl: self.config.ttl,
            },
            State::Acquiring { step, stale, .. } => match step {
                Step::Acquire => Command::Acquire {
                    channel: channel.to_owned(),
                    instance: self.config.instance.clone(),
                    advertise: self.config.advertise.clone(),
                    ttl: self.config.ttl,
                },
                Step::ReleaseStale => Command::Release {
                    channel: channel.to_owned(),
                    mine: stale.clone().unwrap_or_else(|| Holder {
                        instance: self.config.instance.clone(),
                        advertise: self.config.advertise.clone(),
                        fencing: 0,
                    }),
                },
                Step::Raise => Command::RaiseFencing {
                    channel: channel.to_owned(),
                    at_least: self.highest_fencing(channel).unwrap_or(0) + 1,
                },
            },
        };
        let op = self.send(now, channel, command);
        if let Some(entry) = self.channels.get_mut(channel) {
            entry.op = Some(op);
            entry.next = None;
        }
    }

    fn reply(&mut self, now: Instant, op: OpId, result: Result<Reply, String>) {
        let Some((channel, sent)) = self.ops.remove(&op) else {
            return;
        };
        let Some(entry) = self.channels.get_mut(&channel) else {
            // A release, or the reply of a channel that ended meanwhile.
            return;
        };
        if entry.op != Some(op) {
            return;
        }
        entry.op = None;
        if result.is_ok() {
            entry.failures = 0;
        }
        match &entry.state {
            State::Held { .. } => self.renewed(now, sent, &channel, result),
            State::Acquiring { step, .. } => match step {
                Step::Acquire => self.acquired(now, sent, &channel, result),
                Step::ReleaseStale => {
                    if let Err(error) = result {
                        self.failed(&channel, "release", error);
                    }
                    self.set_step(&channel, Step::Raise, Some(now));
                }
                Step::Raise => match result {
                    Ok(_) => self.set_step(&channel, Step::Acquire, Some(now)),
                    Err(error) => {
                        self.failed(&channel, "raise", error);
                        let retry = self.backoff(&channel, now);
                        self.set_step(&channel, Step::Raise, Some(retry));
                    }
                },
            },
        }
        self.send_due(now, &channel);
    }

    /// When `channel`'s next call goes after one more failure: `retry_after`, doubled
    /// per failure in a row, at most `renew_every` (a Redis that is down is not
    /// hammered; a held lease is still tried several times before it expires).
    fn backoff(&mut self, channel: &str, now: Instant) -> Instant {
        let longest = self.config.renew_every.max(self.config.retry_after);
        let Some(entry) = self.channels.get_mut(channel) else {
            return now + self.config.retry_after;
        };
        let doublings = entry.failures.min(16);
        entry.failures = entry.failures.saturating_add(1);
        now + self
            .config
            .retry_after
            .saturating_mul(1 << doublings)
            .min(longest)
    }

    fn set_step(&mut self, channel: &str, new: Step, next: Option<Instant>) {
        if let Some(entry) = self.channels.get_mut(channel) {
            if let State::Acquiring { step, .. } = &mut entry.state {
                *step = new;
            }
            entry.next = next;
        }
    }

    fn failed(&mut self, channel: &str, call: &'static str, error: String) {
        self.notice(Notice::RedisFailed {
            channel: channel.to_owned(),
            call,
            error,
        });
    }

    fn acquired(
        &mut self,
        now: Instant,
        sent: Instant,
        channel: &str,
        result: Result<Reply, String>,
    ) {
        let Some(Entry {
            state:
                State::Acquiring {
                    waiters,
                    local,
                    finished,
                    ..
                },
            ..
        }) = self.channels.get_mut(channel)
        else {
            return;
        };
        let (local, finished) = (*local, *finished);
        let waiters = std::mem::take(waiters);
        match result {
            Ok(Reply::Acquired { fencing }) => {
                let highest = self.highest_fencing(channel).unwrap_or(0);
                let mine = Holder {
                    instance: self.config.instance.clone(),
                    advertise: self.config.advertise.clone(),
                    fencing,
                };
                if fencing <= highest {
                    // Never act on a number older than one seen: give it back, raise
                    // the counter, take the lease again. The waiters keep waiting.
                    self.notice(Notice::StaleFencing {
                        channel: channel.to_owned(),
                        got: fencing,
                        highest,
                    });
                    if let Some(entry) = self.channels.get_mut(channel) {
                        if let State::Acquiring {
                            step,
                            stale,
                            waiters: still,
                            ..
                        } = &mut entry.state
                        {
                            *step = Step::ReleaseStale;
                            *stale = Some(mine);
                            *still = waiters;
                        }
                        entry.next = Some(now);
                    }
                    return;
                }
                self.seen(channel, fencing);
                if finished {
                    self.channels.remove(channel);
                    let release = Command::Release {
                        channel: channel.to_owned(),
                        mine,
                    };
                    self.send(now, channel, release);
                    return;
                }
                self.notice(Notice::Acquired {
                    channel: channel.to_owned(),
                    fencing,
                });
                for ticket in waiters {
                    self.route(ticket, Route::Own { fencing });
                }
                // Redis counts the time to live from when it set the key, at the
                // latest now; this instance counts from when it asked.
                let expires = sent + self.config.ttl;
                let renew_at = (!self
                    .config
                    .planted
                    .has(crate::planted::Bug::LeaseNotRenewed))
                .then(|| now + self.config.renew_every);
                if let Some(entry) = self.channels.get_mut(channel) {
                    entry.state = State::Held {
                        mine,
                        expires,
                        waiters: Vec::new(),
                        wait_until: now,
                    };
                    entry.next = renew_at;
                }
            }
            Ok(Reply::Taken(Some(holder))) if holder.instance != self.config.instance => {
                self.seen(channel, holder.fencing);
                self.channels.remove(channel);
                if finished {
                    return;
                }
                for ticket in waiters {
                    self.route(ticket, Route::Relay(holder.clone()));
                }
                if local {
                    self.out.push_back(Output::Lost {
                        channel: channel.to_owned(),
                        owner: Some(holder),
                    });
                }
            }
            other => {
                // An error; a lease of this instance's own (given back just now, or
                // left by an earlier life with the same id), or a value that is not a
                // lease: both expire within the time to live. Tried again shortly; a
                // new channel starts without a lease at `wait_for_redis`.
                match other {
                    Err(error) => self.failed(channel, "acquire", error),
                    Ok(Reply::Taken(_)) => {}
                    Ok(reply) => {
                        self.failed(channel, "acquire", format!("unexpected reply {reply:?}"));
                    }
                }
                if finished {
                    self.channels.remove(channel);
                    return;
                }
                let retry = self.backoff(channel, now);
                if let Some(entry) = self.channels.get_mut(channel) {
                    if let State::Acquiring { waiters: still, .. } = &mut entry.state {
                        *still = waiters;
                    }
                    entry.next = Some(retry);
                }
            }
        }
    }

    fn renewed(
        &mut self,
        now: Instant,
        sent: Instant,
        channel: &str,
        result: Result<Reply, String>,
    ) {
        let Some(Entry {
            state:
                State::Held {
                    mine,
                    expires,
                    waiters,
                    wait_until,
                },
            next,
            ..
        }) = self.channels.get_mut(channel)
        else {
            return;
        };
        match result {
            Ok(Reply::Kept) => {
                *expires = sent + self.config.ttl;
                *next = Some(now + self.config.renew_every);
                let fencing = mine.fencing;
                for ticket in std::mem::take(waiters) {
                    self.route(ticket, Route::Own { fencing });
                }
            }
            Ok(Reply::Gone(Some(holder))) if holder != *mine => {
                let waiters = std::mem::take(waiters);
                self.seen(channel, holder.fencing);
                self.channels.remove(channel);
                for ticket in waiters {
                    self.route(ticket, Route::Relay(holder.clone()));
                }
                self.out.push_back(Output::Lost {
                    channel: channel.to_owned(),
                    owner: Some(holder),
                });
            }
            Ok(Reply::Gone(_)) => {
                // Expired (or Redis restarted): the channel runs here, take it again;
                // who waits for a session gets the lease's new number.
                let (waiters, wait_until) = (std::mem::take(waiters), *wait_until);
                if let Some(entry) = self.channels.get_mut(channel) {
                    entry.state = State::Acquiring {
                        step: Step::Acquire,
                        stale: None,
                        waiters,
                        wait_until,
                        local: true,
                        finished: false,
                    };
                    entry.next = Some(now);
                }
                self.notice(Notice::Expired {
                    channel: channel.to_owned(),
                });
            }
            other => {
                // Keep serving; try again soon.
                let retry = self.backoff(channel, now);
                if let Some(entry) = self.channels.get_mut(channel) {
                    entry.next = Some(retry);
                }
                let error = match other {
                    Err(error) => error,
                    Ok(reply) => format!("unexpected reply {reply:?}"),
                };
                self.failed(channel, "renew", error);
            }
        }
    }
}

impl crate::machine::Machine for Leases {
    type Input = Input;
    type Output = Output;

    fn handle_input(&mut self, now: Instant, input: Input) {
        match input {
            Input::Reply { op, result } => self.reply(now, op, result),
        }
    }

    fn handle_timeout(&mut self, now: Instant) {
        let channels: Vec<String> = self
            .channels
            .iter()
            .filter(|(channel, entry)| !self.waits(channel, entry))
            .map(|(channel, _)| channel.clone())
            .collect();
        for channel in channels {
            let mut fallback = Vec::new();
            match self
                .channels
                .get_mut(&channel)
                .map(|entry| &mut entry.state)
            {
                Some(State::Acquiring {
                    waiters,
                    wait_until,
                    local,
                    finished: false,
                    ..
                }) if *wait_until <= now && (!*local || !waiters.is_empty()) => {
                    *local = true;
                    fallback = std::mem::take(waiters);
                }
                Some(State::Held {
                    waiters,
                    wait_until,
                    ..
                }) if *wait_until <= now => fallback = std::mem::take(waiters),
                _ => {}
            }
            if !fallback.is_empty() {
                self.notice(Notice::LocalFallback {
                    channel: channel.clone(),
                });
                for ticket in fallback {
                    self.route(ticket, Route::Local);
                }
            }
            self.send_due(now, &channel);
        }
    }

    fn poll_output(&mut self) -> Option<Output> {
        self.out.pop_front()
    }

    fn poll_timeout(&self) -> Option<Instant> {
        self.channels
            .iter()
            .filter(|(channel, entry)| !self.waits(channel, entry))
            .flat_map(|(_, entry)| {
                let next = entry.next.filter(|_| entry.op.is_none());
                let wait = match &entry.state {
                    State::Acquiring {
                        waiters,
                        wait_until,
                        local,
                        finished: false,
                        ..
                    } if !*local || !waiters.is_empty() => Some(*wait_until),
                    State::Held {
                        waiters,
                        wait_until,
                        ..
                    } if !waiters.is_empty() => Some(*wait_until),
                    _ => None,
                };
                [next, wait]
            })
            .flatten()
            .min()
    }
}
