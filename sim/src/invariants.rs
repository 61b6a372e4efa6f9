//! The invariants, checked after every simulation step, and the clean state the
//! heal-then-converge phase must reach.

use std::collections::BTreeMap;
use std::time::Duration;

use acemux::store::{EventStore, MemoryStore};
use futures::FutureExt;

mod cluster;
mod delivery;
mod engines;
mod events;

use crate::instances::Instance;
use crate::observe::Observer;
use crate::world::{EngineHandle, Rules};

/// How often the engine-side checks run (they copy every engine's counters).
const ENGINE_CHECK_EVERY: Duration = Duration::from_millis(100);

/// A stream as the event log told it.
#[derive(Debug, Clone)]
struct StreamSeen {
    content_id: String,
    ended_at: Option<Duration>,
    /// Its end was recorded by another instance that took its channel over
    /// (`owner_lost`).
    ended_elsewhere: bool,
    /// The instance whose store recorded it (its owner).
    instance: usize,
}

/// Checks the invariants; remembers what it needs between steps.
pub struct Checker {
    rules: Rules,
    /// The last event checked, per instance.
    last_seq: Vec<u64>,
    streams: BTreeMap<String, StreamSeen>,
    event_lines: Vec<String>,
    next_engine_check: Duration,
    first_open_request: usize,
    /// Engine sessions running that the event log does not know (yet), and since when.
    unregistered_since: BTreeMap<String, Duration>,
    /// Faults in effect now.
    active_faults: std::collections::BTreeSet<String>,
    /// The media-gap rule applies again from here (the last fault's end + recovery).
    quiet_from: Duration,
    /// When an acemux instance was down: its host, its crash and its restart (open
    /// while down).
    acemux_down: Vec<(String, Duration, Option<Duration>)>,
    /// The instance each player asks (its host), by player name.
    player_targets: BTreeMap<String, String>,
    /// A cluster world's instance hosts and the Redis host (empty for one instance).
    cluster_hosts: Vec<String>,
    /// Since when more than one engine session of a content has run across the
    /// engines (cluster worlds), by content.
    duplicated_since: BTreeMap<String, Duration>,
    /// Duplicates across engines waived, once each (content and since when).
    duplicates_waived: std::collections::BTreeSet<(String, Duration)>,
    /// Every fault window: its key (naming the hosts it touches), start, and end (open
    /// while in effect; a crash is a window of no length).
    fault_log: Vec<(String, Duration, Option<Duration>)>,
    /// Resyncs seen per TS viewer.
    viewer_resyncs: BTreeMap<u64, u64>,
    /// Hosts crashed and not started again: their sessions died with them.
    down_hosts: std::collections::BTreeSet<String>,
    /// Since when an engine has run two sessions of one content, by "engine|content".
    doubled_since: BTreeMap<String, Duration>,
    /// Sessions whose repeated stop or orphaning was waived (once each).
    stops_waived: std::collections::BTreeSet<String>,
    orphans_waived: std::collections::BTreeSet<String>,
    /// A cluster's engine cap and its windows over it.
    caps: cluster::CapSeen,
    /// The host each player runs on, by player name.
    player_hosts: BTreeMap<String, String>,
    /// Unread bodies checked so far.
    unread_checked: usize,
    /// Times a rule was waived because a fault explains it, by rule: every waiver is
    /// scoped to the fault's hosts and window, and counted in the run's summary.
    pub waivers: BTreeMap<&'static str, u64>,
}

impl Checker {
    /// A checker with nothing seen.
    pub fn new(rules: Rules) -> Self {
        Checker {
            rules,
            last_seq: Vec::new(),
            streams: BTreeMap::new(),
            event_lines: Vec::new(),
            next_engine_check: Duration::ZERO,
            first_open_request: 0,
            unregistered_since: BTreeMap::new(),
            active_faults: std::collections::BTreeSet::new(),
            quiet_from: Duration::ZERO,
            acemux_down: Vec::new(),
            player_targets: BTreeMap::new(),
            cluster_hosts: Vec::new(),
            duplicated_since: BTreeMap::new(),
            duplicates_waived: std::collections::BTreeSet::new(),
            fault_log: Vec::new(),
            viewer_resyncs: BTreeMap::new(),
            waivers: BTreeMap::new(),
            doubled_since: BTreeMap::new(),
            down_hosts: std::collections::BTreeSet::new(),
            stops_waived: std::collections::BTreeSet::new(),
            orphans_waived: std::collections::BTreeSet::new(),
            caps: cluster::CapSeen::default(),
            player_hosts: BTreeMap::new(),
            unread_checked: 0,
        }
    }

    /// Player `player` runs on host `host`.
    pub fn player_host(&mut self, player: &str, host: &str) {
        self.player_hosts.insert(player.to_owned(), host.to_owned());
    }

    /// Player `player` asks the instance on host `host`.
    pub fn player_target(&mut self, player: &str, host: &str) {
        self.player_targets
            .insert(player.to_owned(), host.to_owned());
    }

    /// Whether an acemux instance was down at `at`, or restarted less than the
    /// recovery time before it.
    fn any_acemux_down(&self, at: Duration) -> bool {
        self.acemux_down
            .iter()
            .any(|(_, down, up)| *down <= at && at <= up.unwrap_or(at) + self.rules.recovery)
    }

    /// Whether a fault on `player`'s own link (held, cut or slow) was in effect at
    /// `at`, or recovering: its answers may come late or not whole.
    fn player_link_disturbed(&self, player: &str, at: Duration) -> bool {
        self.player_hosts.get(player).is_some_and(|host| {
            self.disturbed_by(Some(host), at, |key| {
                key.starts_with("hold")
                    || key.starts_with("partition")
                    || key.starts_with("latency")
            })
        })
    }

    /// Whether a fault touching `host` (any host when `None`; the relay touches every
    /// engine) was in effect at `at` or ended less than the recovery time before it.
    fn disturbed(&self, host: Option<&str>, at: Duration) -> bool {
        self.disturbed_by(host, at, |_| true)
    }

    /// Like [`Checker::disturbed`], counting only faults that lose messages
    /// (partitions, crashes): a slow or stalled path delays an answer, and acemux
    /// must still act on it when it comes.
    fn lost_messages(&self, host: &str, at: Duration) -> bool {
        self.disturbed_by(Some(host), at, |key| {
            key.starts_with("partition") || key.starts_with("crash")
        })
    }

    fn disturbed_by(&self, host: Option<&str>, at: Duration, kind: impl Fn(&str) -> bool) -> bool {
        self.fault_log.iter().any(|(key, start, end)| {
            if !kind(key) {
                return false;
            }
            let touches = host.is_none_or(|host| {
                key == "relay stall"
                    || key
                        .split(|c: char| !c.is_ascii_alphanumeric())
                        .any(|part| part == host)
            });
            touches && *start <= at && end.is_none_or(|end| at <= end + self.rules.recovery)
        })
    }

    /// Whether every trace of a takeover recorded at `from` could be gone from Redis by
    /// `to`: Redis restarted (empty) in between, and meanwhile an instance was cut off
    /// from it or crashed (a claimer that could not write its mark again).
    fn takeover_marks_lost(&self, from: Duration, to: Duration) -> bool {
        let during = |start: &Duration, end: &Option<Duration>| {
            *start <= to && end.is_none_or(|end| end >= from)
        };
        let redis_restarted = self.fault_log.iter().any(|(key, start, _)| {
            key.starts_with("crash") && key.contains("redis") && (from..=to).contains(start)
        });
        let claimer_away = self.fault_log.iter().any(|(key, start, end)| {
            ((key.starts_with("partition") && key.contains("redis"))
                || (key.starts_with("crash") && !key.contains("redis")))
                && during(start, end)
        });
        redis_restarted && claimer_away
    }

    /// Counts one exception to `rule` that a fault explains.
    pub fn waive(&mut self, rule: &'static str) {
        *self.waivers.entry(rule).or_default() += 1;
    }

    /// The acemux instance on `host` crashed (`down`) or was started again at `now`.
    pub fn acemux_down(&mut self, host: &str, now: Duration, down: bool) {
        if down {
            self.acemux_down.push((host.to_owned(), now, None));
        } else if let Some((_, _, end @ None)) = self
            .acemux_down
            .iter_mut()
            .rev()
            .find(|(crashed, _, _)| crashed == host)
        {
            *end = Some(now);
        }
    }

    /// Requests that failed while acemux was down (excused), for the summary.
    pub fn excused_requests(&self, observer: &Observer) -> usize {
        observer
            .lock()
            .requests
            .iter()
            .filter(|request| {
                request.answered_at.is_some_and(|at| {
                    (request.failure.is_some() || at > request.sent_at + request.bound)
                        && self.explained_by_a_crash(&request.player, request.sent_at, at)
                })
            })
            .count()
    }

    /// Whether a request of `player` sent at `sent` that failed at `failed` (no
    /// status) overlapped a time the instance it asked was down: its connection died
    /// with the process, or it reached no listener. Only such failures are excused.
    fn explained_by_a_crash(&self, player: &str, sent: Duration, failed: Duration) -> bool {
        const SETTLE: Duration = Duration::from_secs(1);
        let target = self.player_targets.get(player).map(String::as_str);
        self.acemux_down.iter().any(|(host, down, up)| {
            target.is_none_or(|target| target == host)
                && sent <= up.map_or(failed, |up| up + SETTLE)
                && failed >= *down
        })
    }

    /// A fault starts (`active`) or ends at `now`; `key` names it. The media-gap rule
    /// is scoped out while any fault is in effect and for the recovery time after.
    pub fn fault_window(&mut self, now: Duration, key: String, active: bool) {
        if active {
            if self.active_faults.insert(key.clone()) {
                self.fault_log.push((key, now, None));
            }
        } else {
            self.active_faults.remove(&key);
            match self
                .fault_log
                .iter_mut()
                .rev()
                .find(|(logged, _, end)| *logged == key && end.is_none())
            {
                Some((_, _, end)) => *end = Some(now),
                // A fault without length (a crash), or the end of one never started.
                None => self.fault_log.push((key, now, Some(now))),
            }
        }
        self.quiet_from = self.quiet_from.max(now + self.rules.recovery);
    }

    /// `host` crashed (`down`) or was started again.
    pub fn host_down(&mut self, host: &str, down: bool) {
        if down {
            self.down_hosts.insert(host.to_owned());
        } else {
            self.down_hosts.remove(host);
        }
    }

    /// Every fault was removed at `now`.
    pub fn healed(&mut self, now: Duration) {
        self.active_faults.clear();
        for (_, _, end) in &mut self.fault_log {
            end.get_or_insert(now);
        }
        self.quiet_from = self.quiet_from.max(now + self.rules.recovery);
    }

    /// Events checked so far.
    pub fn events_seen(&self) -> u64 {
        self.last_seq.iter().sum()
    }

    /// One line per event checked, in order.
    pub fn event_lines(&self) -> &[String] {
        &self.event_lines
    }

    /// The invariants after one step at simulated time `now`.
    pub fn check_step(
        &mut self,
        now: Duration,
        observer: &Observer,
        instances: &[Instance],
        engines: &[EngineHandle],
    ) -> Result<(), String> {
        self.check_players(now, observer)?;
        for (index, instance) in instances.iter().enumerate() {
            // An answer waits for its commit, so the watermark it waits on never runs
            // ahead of an event that is not durable.
            instance.store.watermark_is_durable()?;
            self.check_events(now, index, instances)?;
        }
        if now >= self.next_engine_check {
            self.next_engine_check = now + ENGINE_CHECK_EVERY;
            self.check_engines(now, engines)?;
        }
        Ok(())
    }

    fn check_players(&mut self, now: Duration, observer: &Observer) -> Result<(), String> {
        let record = observer.lock();
        if let Some(violation) = record.violations.first() {
            return Err(violation.clone());
        }
        // Every request is answered (a status) within its bound.
        let mut all_answered_so_far = true;
        for (index, request) in record
            .requests
            .iter()
            .enumerate()
            .skip(self.first_open_request)
        {
            let deadline = request.sent_at + request.bound;
            match request.answered_at {
                // A request that met a crashed acemux, or a held link, may wait for
                // its own timeout.
                None if now > deadline
                    && (self.explained_by_a_crash(&request.player, request.sent_at, now)
                        || self.player_link_disturbed(&request.player, now)) =>
                {
                    all_answered_so_far = false;
                }
                None if now > deadline => {
                    return Err(format!(
                        "{} {}: no answer within {:?} (sent at {:?})",
                        request.player, request.what, request.bound, request.sent_at
                    ))
                }
                None => all_answered_so_far = false,
                Some(at) => {
                    // A request that met a crashed acemux (cut, refused, or answered
                    // late by the restarted one), or whose own link a fault held or
                    // cut, is excused, and counted.
                    let excused = self.explained_by_a_crash(&request.player, request.sent_at, at)
                        || self.player_link_disturbed(&request.player, at);
                    if at > deadline && !excused {
                        return Err(format!(
                            "{} {}: answered after {:?}, bound {:?}",
                            request.player,
                            request.what,
                            at - request.sent_at,
                            request.bound
                        ));
                    }
                    if let (Some(failure), false) = (&request.failure, excused) {
                        return Err(format!("{} {}: {failure}", request.player, request.what));
                    }
                    // A request must succeed unless a fault explains why it could not:
                    // a server error with nothing disturbed is a failure.
                    if let Some(status @ 500..) = request.status {
                        if !excused
                            && !self.disturbed(None, request.sent_at)
                            && !self.disturbed(None, at)
                        {
                            return Err(format!(
                                "{} {}: answered {status} with no fault in effect",
                                request.player, request.what
                            ));
                        }
                    }
                    if all_answered_so_far {
                        self.first_open_request = index + 1;
                    }
                }
            }
        }
        // Every body is read whole within its bound, unless a fault on the player's
        // link or an acemux crash explains it.
        let mut unread_excused = 0;
        for (player, what, started, failed) in &record.unread_bodies[self.unread_checked..] {
            if self.explained_by_a_crash(player, *started, *failed)
                || self.player_link_disturbed(player, *failed)
            {
                unread_excused += 1;
                continue;
            }
            return Err(format!("{player}: {what} (body started at {started:?})"));
        }
        self.unread_checked = record.unread_bodies.len();
        // Each TS viewer's bytes are a contiguous slice of the engine stream, up to
        // jumps to entry points when the upstream was replaced.
        let mut jumped = Vec::new();
        for (id, viewer) in &record.ts_viewers {
            if let Some(violation) = &viewer.tracker.check.violation {
                return Err(format!(
                    "TS viewer {id} ({}, {}): {violation}",
                    viewer.player, viewer.content_id
                ));
            }
            // Viewers are served: outside fault windows, media keeps coming.
            if let (true, Some(last)) = (viewer.reading, viewer.last_media_at) {
                let from = last.max(self.quiet_from);
                if self.active_faults.is_empty() && now > from + self.rules.media_gap {
                    return Err(format!(
                        "TS viewer {id} ({}, {}): no media for {:?} (since {last:?}), no fault in effect",
                        viewer.player,
                        viewer.content_id,
                        now - last
                    ));
                }
            }
            // A jump in the engine stream is a replaced upstream: only a fault explains
            // one, and one fault at most a few.
            let resyncs = viewer.tracker.check.resyncs;
            let seen = self.viewer_resyncs.get(id).copied().unwrap_or(0);
            if resyncs > seen {
                if !self.disturbed(None, now) {
                    return Err(format!(
                        "TS viewer {id} ({}, {}): its bytes jumped in the engine stream with no fault",
                        viewer.player, viewer.content_id
                    ));
                }
                let faults = self.fault_log.len() as u64;
                if resyncs > 3 * faults {
                    return Err(format!(
                        "TS viewer {id} ({}, {}): {resyncs} jumps in the engine stream for {faults} faults",
                        viewer.player, viewer.content_id
                    ));
                }
                jumped.push((*id, resyncs));
            }
        }
        // HLS players are served: outside fault windows, the newest segment listed
        // moves on.
        for (player, progress) in &record.hls_progress {
            let from = progress.advanced_at.max(self.quiet_from);
            if progress.polling
                && self.active_faults.is_empty()
                && now > from + self.rules.media_gap * 2
            {
                return Err(format!(
                    "HLS player {player} ({}): newest segment {} listed since {:?}, no fault in effect",
                    progress.content_id, progress.newest, progress.advanced_at
                ));
            }
        }
        drop(record);
        for _ in 0..unread_excused {
            self.waive("body cut or late across a fault on the player's link or a crash");
        }
        for (id, resyncs) in jumped {
            let seen = self.viewer_resyncs.insert(id, resyncs).unwrap_or(0);
            for _ in seen..resyncs {
                self.waive("viewer jumped in the engine stream after a fault");
            }
        }
        Ok(())
    }

    /// `Ok` once the system is clean: every player done and answered, no stream
    /// active, no engine session of a recorded stream running, outboxes drained.
    pub fn clean_state(
        &self,
        observer: &Observer,
        instances: &[Instance],
        engines: &[EngineHandle],
    ) -> Result<(), String> {
        {
            let record = observer.lock();
            if let Some(request) = record.requests.iter().find(|r| r.answered_at.is_none()) {
                return Err(format!("{} {} unanswered", request.player, request.what));
            }
        }
        if let Some((id, _)) = self.streams.iter().find(|(_, s)| s.ended_at.is_none()) {
            return Err(format!("stream {id} still active"));
        }
        for instance in instances {
            let store = &instance.store;
            for webhook in store_webhooks(store) {
                let pending = store.pending_count(webhook.clone()).now_or_never();
                match pending {
                    Some(Ok(0)) => {}
                    Some(Ok(pending)) => {
                        return Err(format!("{pending} events still pending for {webhook}"))
                    }
                    other => return Err(format!("pending count for {webhook}: {other:?}")),
                }
            }
            let metrics = instance
                .metrics
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .clone();
            if let Some(metrics) = metrics {
                if metrics.channels.get() != 0 {
                    return Err(format!("{} channels still running", metrics.channels.get()));
                }
            }
        }
        for engine in engines {
            // A crashed engine's sessions died with it: only the running one counts.
            if let Some(emulator) = engine.emulators().last() {
                for (content_id, content) in emulator.stats().contents {
                    for (session_id, session) in content.sessions {
                        let id = format!("{content_id}|{session_id}");
                        let recorded = self.streams.contains_key(&id);
                        // An unrecorded session on an engine whose messages a fault
                        // lost: its grant was lost, acemux cannot know it (waived and
                        // counted while running).
                        let orphan_allowed = !recorded && self.orphans_waived.contains(&id);
                        if !session.stopped && !orphan_allowed {
                            return Err(format!("{} session {id} still runs", engine.name));
                        }
                    }
                }
            }
        }
        Ok(())
    }
}

fn store_webhooks(_store: &MemoryStore) -> Vec<String> {
    // The store delivers to the webhooks it was created with; the world uses only these.
    vec![
        crate::world::self_webhook_url(),
        crate::world::receiver_webhook_url(),
    ]
}
