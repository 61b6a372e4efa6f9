//! Cluster mode's instance directory: which instances are alive and which channels
//! each one owns, kept in Redis so that any instance can show the whole cluster.
//!
//! Each instance publishes a record of itself (`acemux:instance:{id}`: its id, address
//! and channels) with a time to live, refreshed every [`DirectoryConfig::publish_every`];
//! a record whose instance died expires by itself. The ids of the instances are listed
//! in one key (`acemux:instances`), changed only in a `WATCH`/`MULTI`/`EXEC`
//! transaction: after each publication the instance enrolls, adding itself to the list
//! and dropping the ids whose record is gone ([`next_list`]). Reading the directory is
//! `GET` of the list and of each listed record; no scans, no sets, no scripts.
//!
//! The machine decides every time bound: when to publish, the records' time to live,
//! how soon a failed call is tried again, how long one Redis call may take, how long a
//! reader waits before it is answered with what the machine has
//! ([`DirectoryConfig::read_wait`]), how long a directory read is reused
//! ([`DirectoryConfig::fresh_for`]), and how many records one read fetches
//! ([`DirectoryConfig::max_instances`]). At most one publication cycle and one read are
//! in flight at a time, and a read that failed is not tried again before
//! [`DirectoryConfig::retry_after`]: the Redis calls an instance makes are bounded
//! whatever the number of readers.

#[cfg(test)]
#[path = "directory_tests.rs"]
mod tests;

use std::collections::VecDeque;

use serde::{Deserialize, Serialize};

use crate::machine::Machine;
use crate::time::{Duration, Instant};

pub use super::vocab::{OpId, TicketId};

/// Timing and bounds of the directory.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DirectoryConfig {
    /// This instance's id.
    pub instance: String,
    /// How often this instance's record is published (and the list checked).
    pub publish_every: Duration,
    /// A record's time to live: how long a dead instance stays listed.
    pub ttl: Duration,
    /// Longest time one Redis command sequence may take.
    pub redis_timeout: Duration,
    /// Delay before a failed call is tried again.
    pub retry_after: Duration,
    /// Longest time a reader waits for Redis before it is answered with what the
    /// machine has.
    pub read_wait: Duration,
    /// How long a directory read answers later readers without asking Redis again.
    pub fresh_for: Duration,
    /// Most records one read fetches (and ids the list keeps).
    pub max_instances: usize,
}

impl DirectoryConfig {
    /// The defaults for `instance`: published every `publish_every`, records living
    /// three periods, calls bounded by a second (less for short periods), readers
    /// answered within half a second, reads reused for a second, 64 instances at most.
    pub fn new(instance: String, publish_every: Duration) -> Self {
        let publish_every = publish_every.max(Duration::from_millis(10));
        DirectoryConfig {
            instance,
            publish_every,
            ttl: publish_every * 3,
            redis_timeout: Duration::from_secs(1).min(publish_every),
            retry_after: Duration::from_secs(1).min(publish_every),
            read_wait: Duration::from_millis(500).min(publish_every),
            fresh_for: Duration::from_secs(1).min(publish_every),
            max_instances: 64,
        }
    }
}

/// A channel an instance owns, as its record shows it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChannelRecord {
    /// The stream id (as `GET /streams` shows it on the owner).
    pub stream_id: String,
    /// `content_id`, `infohash`, …
    pub key_type: String,
    /// The content id.
    pub key: String,
    /// `ts` or `hls`.
    pub format: String,
    /// Viewers on the owner (a relaying instance counts as one).
    pub viewers: u64,
    /// When the stream started (RFC 3339).
    pub started_at: String,
    /// The engine's container, when known.
    #[serde(default)]
    pub container_id: Option<String>,
}

/// An instance's record in Redis.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct InstanceRecord {
    /// Its id.
    pub id: String,
    /// How other instances reach it.
    pub advertise: String,
    /// When it published this record (RFC 3339, its own clock).
    pub published_at: String,
    /// The channels it owns.
    pub channels: Vec<ChannelRecord>,
}

impl InstanceRecord {
    /// The value stored in Redis.
    pub fn encode(&self) -> String {
        serde_json::to_string(self).unwrap_or_default()
    }

    /// A value read from Redis; `None` when it is not a record.
    pub fn decode(value: &str) -> Option<InstanceRecord> {
        serde_json::from_str(value).ok()
    }
}

/// The list of instance ids as stored in Redis (`acemux:instances`).
pub fn encode_list(ids: &[String]) -> String {
    serde_json::to_string(ids).unwrap_or_default()
}

/// The list of instance ids read from Redis; a value that is not one reads as empty
/// (and is replaced at the next enrollment).
pub fn decode_list(value: &str) -> Vec<String> {
    serde_json::from_str(value).unwrap_or_default()
}

/// The list an enrolling instance writes, or `None` when `listed` is right already:
/// `listed` keeping only the ids in `present` (those whose record is still in Redis),
/// in their order (`me` where it is), with `me` added at the end if missing; duplicates
/// dropped; at most `max` ids (`me` always kept).
pub fn next_list(
    listed: &[String],
    me: &str,
    present: &[String],
    max: usize,
) -> Option<Vec<String>> {
    let mut next: Vec<String> = Vec::new();
    for id in listed {
        if (id == me || present.contains(id)) && !next.contains(id) {
            next.push(id.clone());
        }
    }
    // Where it is listed it stays (instances that each moved themselves to the end
    // would rewrite the list at every enrollment, and their transactions would keep
    // aborting each other's); within the bound, else last.
    let mine = next.iter().position(|id| id == me);
    if mine.is_none_or(|at| at >= max.max(1)) {
        next.retain(|id| id != me);
        next.truncate(max.saturating_sub(1));
        next.push(me.to_owned());
    } else {
        next.truncate(max.max(1));
    }
    (next != listed).then_some(next)
}

/// A Redis command sequence for the driver to perform.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DirCommand {
    /// `SET acemux:instance:{id} <this instance's record> PX ttl`. Replies
    /// [`DirReply::Done`].
    Publish {
        /// Time to live.
        ttl: Duration,
    },
    /// `WATCH acemux:instances`, `GET` it, `GET` each listed record (the first
    /// `max_instances`); if [`next_list`] asks for a change, `MULTI SET EXEC` it.
    /// Replies [`DirReply::Records`] (an aborted transaction is an error).
    Enroll {
        /// Most records fetched.
        max_instances: usize,
    },
    /// `GET acemux:instances`, then each listed record (the first `max_instances`).
    /// Replies [`DirReply::Records`].
    Read {
        /// Most records fetched.
        max_instances: usize,
    },
    /// `DEL acemux:instance:{id}` (shutting down). Replies [`DirReply::Done`].
    Withdraw,
}

impl DirCommand {
    /// The call's name in logs and metrics.
    pub fn call(&self) -> &'static str {
        match self {
            DirCommand::Publish { .. } => "publish",
            DirCommand::Enroll { .. } => "enroll",
            DirCommand::Read { .. } => "read",
            DirCommand::Withdraw => "withdraw",
        }
    }
}

/// What Redis answered to a [`DirCommand`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DirReply {
    /// Done.
    Done,
    /// The listed instances' records that were still there.
    Records(Vec<InstanceRecord>),
}

/// What the driver reports.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DirInput {
    /// The answer to [`DirOutput::Redis`] `op`, or why there is none (the driver's
    /// timeout included).
    Reply {
        /// The command.
        op: OpId,
        /// Redis's answer.
        result: Result<DirReply, String>,
    },
}

/// How current a [`DirectoryAnswer`] is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Freshness {
    /// Read from Redis within `fresh_for`.
    Ok,
    /// Redis did not answer in time; the last read, younger than the records' time to
    /// live.
    Stale,
    /// Redis did not answer in time and nothing recent was read: no records.
    Unavailable,
}

/// The answer to a [`Directory::read`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DirectoryAnswer {
    /// How current it is.
    pub freshness: Freshness,
    /// The records (none when unavailable).
    pub records: Vec<InstanceRecord>,
    /// When they were read from Redis.
    pub read_at: Option<Instant>,
}

/// Events for logs and metrics.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DirNotice {
    /// A Redis call failed.
    RedisFailed {
        /// `publish`, `enroll`, `read` or `withdraw`.
        call: &'static str,
        /// Why.
        error: String,
    },
    /// A reader was answered without a fresh read.
    Degraded {
        /// `stale` or `unavailable`.
        freshness: Freshness,
    },
}

/// What the machine asks of the driver.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DirOutput {
    /// Perform `command` within `timeout`; answer with [`DirInput::Reply`].
    Redis {
        /// Echo it in the reply.
        op: OpId,
        /// What to do.
        command: DirCommand,
        /// Longest time it may take; past it, reply with an error.
        timeout: Duration,
    },
    /// The answer to [`Directory::read`] `ticket`.
    Answer {
        /// The read.
        ticket: TicketId,
        /// What the directory holds.
        answer: DirectoryAnswer,
    },
    /// For logs and metrics.
    Notice(DirNotice),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Step {
    Publish,
    Enroll,
    Withdraw,
}

/// The directory as one instance keeps it.
#[derive(Debug)]
pub struct Directory {
    config: DirectoryConfig,
    /// The publication cycle's command in flight.
    cycle_op: Option<(OpId, Step)>,
    /// When the cycle's next command goes (none: in flight, or withdrawn).
    next_publish: Option<Instant>,
    /// The read in flight.
    read_op: Option<OpId>,
    /// No read is sent before this (a read failed).
    read_blocked_until: Option<Instant>,
    /// Readers waiting, with the time they are answered by at the latest.
    waiters: Vec<(TicketId, Instant)>,
    /// The last records read, and when.
    snapshot: Option<(Instant, Vec<InstanceRecord>)>,
    /// Shutting down: no more publications.
    withdrawn: bool,
    next_op: u64,
    out: VecDeque<DirOutput>,
}

impl Directory {
    /// A directory that publishes at once.
    pub fn new(config: DirectoryConfig, now: Instant) -> Self {
        Directory {
            config,
            cycle_op: None,
            next_publish: Some(now),
            read_op: None,
            read_blocked_until: None,
            waiters: Vec::new(),
            snapshot: None,
            withdrawn: false,
            next_op: 1,
            out: VecDeque::new(),
        }
    }

    /// The configuration.
    pub fn config(&self) -> &DirectoryConfig {
        &self.config
    }

    /// A reader wants the cluster's records: answered with [`DirOutput::Answer`] for
    /// `ticket`, at once from a read younger than `fresh_for`, else when Redis answers,
    /// by `read_wait` at the latest.
    pub fn read(&mut self, now: Instant, ticket: TicketId) {
        if let Some((at, records)) = &self.snapshot {
            if now.saturating_duration_since(*at) <= self.config.fresh_for {
                let answer = DirectoryAnswer {
                    freshness: Freshness::Ok,
                    records: records.clone(),
                    read_at: Some(*at),
                };
                self.out.push_back(DirOutput::Answer { ticket, answer });
                return;
            }
        }
        if self.read_blocked_until.is_some_and(|until| until > now) {
            self.fallback(now, ticket);
            return;
        }
        self.waiters.push((ticket, now + self.config.read_wait));
        if self.read_op.is_none() {
            let max_instances = self.config.max_instances;
            self.read_op = Some(self.send(DirCommand::Read { max_instances }));
        }
    }

    /// Shutting down: no more publications; this instance's record is deleted.
    pub fn withdraw(&mut self) {
        if self.withdrawn {
            return;
        }
        self.withdrawn = true;
        self.next_publish = None;
        let op = self.send(DirCommand::Withdraw);
        self.cycle_op = Some((op, Step::Withdraw));
    }

    /// Whether the withdrawal is done (or nothing is in flight).
    pub fn is_idle(&self) -> bool {
        self.cycle_op.is_none() && self.read_op.is_none()
    }

    fn send(&mut self, command: DirCommand) -> OpId {
        let op = OpId(self.next_op);
        self.next_op += 1;
        self.out.push_back(DirOutput::Redis {
            op,
            command,
            timeout: self.config.redis_timeout,
        });
        op
    }

    /// Answers `ticket` without a fresh read.
    fn fallback(&mut self, now: Instant, ticket: TicketId) {
        let recent = self
            .snapshot
            .as_ref()
            .filter(|(at, _)| now.saturating_duration_since(*at) <= self.config.ttl);
        let answer = match recent {
            Some((at, records)) => DirectoryAnswer {
                freshness: Freshness::Stale,
                records: records.clone(),
                read_at: Some(*at),
            },
            None => DirectoryAnswer {
                freshness: Freshness::Unavailable,
                records: Vec::new(),
                read_at: None,
            },
        };
        self.out.push_back(DirOutput::Notice(DirNotice::Degraded {
            freshness: answer.freshness,
        }));
        self.out.push_back(DirOutput::Answer { ticket, answer });
    }

    fn records_read(&mut self, now: Instant, records: Vec<InstanceRecord>) {
        self.snapshot = Some((now, records.clone()));
        self.read_blocked_until = None;
        for (ticket, _) in std::mem::take(&mut self.waiters) {
            let answer = DirectoryAnswer {
                freshness: Freshness::Ok,
                records: records.clone(),
                read_at: Some(now),
            };
            self.out.push_back(DirOutput::Answer { ticket, answer });
        }
    }

    fn failed(&mut self, call: &'static str, error: String) {
        self.out
            .push_back(DirOutput::Notice(DirNotice::RedisFailed { call, error }));
    }

    fn send_due(&mut self, now: Instant) {
        if self.cycle_op.is_none() && self.next_publish.is_some_and(|at| at <= now) {
            self.next_publish = None;
            let ttl = self.config.ttl;
            let op = self.send(DirCommand::Publish { ttl });
            self.cycle_op = Some((op, Step::Publish));
        }
    }
}

impl Machine for Directory {
    type Input = DirInput;
    type Output = DirOutput;

    fn handle_input(&mut self, now: Instant, input: DirInput) {
        let DirInput::Reply { op, result } = input;
        if self.read_op == Some(op) {
            self.read_op = None;
            match result {
                Ok(DirReply::Records(records)) => self.records_read(now, records),
                Ok(DirReply::Done) => self.failed("read", "unexpected reply".to_owned()),
                Err(error) => {
                    self.failed("read", error);
                    self.read_blocked_until = Some(now + self.config.retry_after);
                    for (ticket, _) in std::mem::take(&mut self.waiters) {
                        self.fallback(now, ticket);
                    }
                }
            }
            return;
        }
        let Some((cycle_op, step)) = self.cycle_op else {
            return;
        };
        if cycle_op != op {
            return;
        }
        self.cycle_op = None;
        if self.withdrawn {
            if let (Step::Withdraw, Err(error)) = (step, result) {
                self.failed("withdraw", error);
            }
            return;
        }
        match (step, result) {
            (Step::Publish, Ok(_)) => {
                let max_instances = self.config.max_instances;
                let op = self.send(DirCommand::Enroll { max_instances });
                self.cycle_op = Some((op, Step::Enroll));
            }
            (Step::Enroll, Ok(reply)) => {
                if let DirReply::Records(records) = reply {
                    self.records_read(now, records);
                }
                self.next_publish = Some(now + self.config.publish_every);
            }
            (step, Err(error)) => {
                self.failed(
                    if step == Step::Publish {
                        "publish"
                    } else {
                        "enroll"
                    },
                    error,
                );
                // The record outlives a few failed tries: `ttl` is three periods.
                self.next_publish = Some(now + self.config.retry_after);
            }
            (Step::Withdraw, Ok(_)) => {}
        }
        self.send_due(now);
    }

    fn handle_timeout(&mut self, now: Instant) {
        self.send_due(now);
        let (due, waiting): (Vec<_>, Vec<_>) = std::mem::take(&mut self.waiters)
            .into_iter()
            .partition(|(_, by)| *by <= now);
        self.waiters = waiting;
        for (ticket, _) in due {
            self.fallback(now, ticket);
        }
    }

    fn poll_output(&mut self) -> Option<DirOutput> {
        self.out.pop_front()
    }

    fn poll_timeout(&self) -> Option<Instant> {
        let publish = if self.cycle_op.is_none() {
            self.next_publish
        } else {
            None
        };
        let waiter = self.waiters.iter().map(|(_, by)| *by).min();
        [publish, waiter].into_iter().flatten().min()
    }
}
