//! The invariants, checked after every simulation step, and the clean state the
//! heal-then-converge phase must reach.

use std::collections::BTreeMap;
use std::time::Duration;

use acemux::store::{EventQuery, EventStore, MemoryStore};
use acemux_core::lifecycle::{EndReason, EventKind};
use futures::FutureExt;

mod cluster;
mod delivery;

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

    /// The new events of instance `index`'s store: each stream started once across
    /// every store (a session's events are recorded by its owner only), ended at most
    /// once, and no second stream of a content while one is active in that store.
    fn check_events(
        &mut self,
        now: Duration,
        index: usize,
        instances: &[Instance],
    ) -> Result<(), String> {
        if self.last_seq.len() <= index {
            self.last_seq.resize(index + 1, 0);
        }
        let store = &instances[index].store;
        // One instance's lines are as they always were; a cluster's name their store.
        let prefix = if instances.len() > 1 {
            format!("{} ", instances[index].host)
        } else {
            String::new()
        };
        let query = EventQuery {
            after: self.last_seq[index],
            limit: 1000,
            stream_id: None,
        };
        let events = match store.events(query).now_or_never() {
            Some(Ok(events)) => events,
            Some(Err(error)) => return Err(format!("the event store failed: {error}")),
            None => return Err("the memory store did not answer at once".into()),
        };
        for event in events {
            if event.seq != self.last_seq[index] + 1 {
                return Err(format!(
                    "{prefix}event sequence jumped from {} to {}",
                    self.last_seq[index], event.seq
                ));
            }
            self.last_seq[index] = event.seq;
            let id = event.stream.id.clone();
            self.event_lines.push(format!(
                "{prefix}{} {} {} {} {:?}",
                event.seq,
                event.event_id,
                event.kind.as_str(),
                id,
                event.stream.end_reason
            ));
            match event.kind {
                EventKind::StreamStarted => {
                    if let Some(seen) = self.streams.get(&id) {
                        return Err(if seen.instance == index {
                            format!("{prefix}stream_started twice for {id}")
                        } else {
                            format!(
                                "stream_started for {id} recorded by {} and {}",
                                instances[seen.instance].host, instances[index].host
                            )
                        });
                    }
                    let content_id = event.stream.stream.key.clone();
                    let active_same_content = self
                        .streams
                        .values()
                        .filter(|s| {
                            s.content_id == content_id
                                && s.ended_at.is_none()
                                && s.instance == index
                        })
                        .count();
                    if active_same_content > 0 {
                        return Err(format!(
                            "{prefix}a second stream of {content_id} started while one is active ({id})"
                        ));
                    }
                    self.streams.insert(
                        id,
                        StreamSeen {
                            content_id,
                            ended_at: None,
                            ended_elsewhere: false,
                            instance: index,
                        },
                    );
                }
                EventKind::StreamEnded => {
                    let marks_lost = self.streams.get(&id).is_some_and(|seen| {
                        seen.ended_elsewhere
                            && seen
                                .ended_at
                                .is_some_and(|at| self.takeover_marks_lost(at, now))
                    });
                    match self.streams.get_mut(&id) {
                    // A dead owner's stream, ended by the instance that took it over.
                    Some(seen)
                        if seen.instance != index
                            && event.stream.end_reason == Some(EndReason::OwnerLost)
                            && seen.ended_at.is_none() =>
                    {
                        seen.ended_at = Some(now);
                        seen.ended_elsewhere = true;
                        self.caps.owner_lost_ends += 1;
                    }
                    Some(seen) if seen.instance != index => {
                        return Err(format!(
                            "{prefix}stream_ended for {id}, whose stream_started another instance recorded"
                        ))
                    }
                    None => {
                        return Err(format!(
                            "{prefix}stream_ended for {id} without stream_started"
                        ))
                    }
                    Some(_) if marks_lost => {
                        self.waive("a taken-over stream ended again by its returning owner: Redis restarted empty while its claimer could not write its mark again");
                    }
                    Some(seen) if seen.ended_at.is_some() => {
                        return Err(format!("{prefix}stream_ended twice for {id}"))
                    }
                    Some(seen) => seen.ended_at = Some(now),
                    }
                }
            }
        }
        Ok(())
    }

    fn check_engines(&mut self, now: Duration, engines: &[EngineHandle]) -> Result<(), String> {
        let mut running = BTreeMap::new();
        let mut repeated_stops = Vec::new();
        // The engines running a session of each content (one entry per session).
        let mut across: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for engine in engines {
            // A crashed engine's sessions died with it.
            if self.down_hosts.contains(&engine.name) {
                continue;
            }
            let emulators = engine.emulators();
            let last = emulators.len().saturating_sub(1);
            for (index, emulator) in emulators.into_iter().enumerate() {
                let stats = emulator.stats();
                let mut playing: BTreeMap<&str, usize> = BTreeMap::new();
                for (content_id, content) in &stats.contents {
                    for (session_id, session) in &content.sessions {
                        if session.stop_commands > 1 {
                            repeated_stops.push((
                                engine.name.clone(),
                                format!("{content_id}|{session_id}"),
                                session.stop_commands,
                            ));
                        }
                        // A crashed engine's sessions died with it.
                        if !session.stopped && index == last {
                            let id = format!("{content_id}|{session_id}");
                            // A session acemux cannot know (waived above) is not one of
                            // its channel's.
                            if !self.orphans_waived.contains(&id) {
                                *playing.entry(content_id.as_str()).or_default() += 1;
                            }
                            running.insert(id, engine.name.clone());
                        }
                    }
                }
                // One channel per content, one session per channel: an engine never
                // runs two sessions of one content for long (a replaced session ends
                // within the stop bound, like any other).
                for (content_id, count) in playing {
                    across
                        .entry(content_id.to_owned())
                        .or_default()
                        .extend(std::iter::repeat_n(engine.name.clone(), count));
                    if count > 1 {
                        let since = *self
                            .doubled_since
                            .entry(format!("{}|{content_id}", engine.name))
                            .or_insert(now);
                        // Explained by a fault on the engine's path (a stop delayed), an
                        // acemux crash (a grant lost with the process that asked), or a
                        // cluster fault (two instances each took the channel).
                        let explained = self.disturbed(Some(&engine.name), now)
                            || self.any_acemux_down(now)
                            || self.cluster_disturbed(now);
                        if now > since + self.rules.stop_bound && !explained {
                            return Err(format!(
                                "{} runs {count} sessions of {content_id} for {:?}",
                                engine.name,
                                now - since
                            ));
                        }
                    } else {
                        self.doubled_since
                            .remove(&format!("{}|{content_id}", engine.name));
                    }
                }
            }
        }
        self.check_one_owner(now, &across)?;
        self.check_engine_cap(now, &running)?;
        // A stop sent again is only explained by a fault on that engine's path: the
        // first one's answer was lost, so acemux could not know it arrived.
        for (engine, stream_id, stops) in repeated_stops {
            if self.stops_waived.contains(&stream_id) {
                continue;
            }
            // A restarted acemux does not know which of its stops arrived: it stops the
            // sessions of streams that ended shortly before again. An owner cut off from
            // Redis for a session record's time to live stops its session although a
            // newer owner may have stopped it already.
            if !self.disturbed(Some(&engine), now)
                && self.acemux_down.is_empty()
                && !self.cluster_disturbed(now)
            {
                return Err(format!(
                    "{engine} session {stream_id} was told to stop {stops} times"
                ));
            }
            self.stops_waived.insert(stream_id);
            self.waive("stop sent again after a fault on the engine's path or the cluster's");
        }
        self.unregistered_since
            .retain(|stream_id, _| running.contains_key(stream_id));
        for (stream_id, engine) in &running {
            // Waived once for the fault that explains it; no longer checked while it
            // runs (a recorded one must still be stopped by the clean state).
            if self.orphans_waived.contains(stream_id) {
                continue;
            }
            // A session whose grant or stop was lost to a fault on its engine's path is
            // scoped out (and counted): acemux cannot know it exists, or that its stop
            // arrived.
            let excused = self.lost_messages(engine, now);
            match self.streams.get(stream_id) {
                Some(StreamSeen {
                    ended_at: Some(ended_at),
                    ..
                }) if now > *ended_at + self.rules.stop_bound => {
                    // A stop delayed by a slow or stalled path, or cut short by an
                    // acemux crash (the restarted one stops it again), is late, not
                    // lost: the clean state after healing still requires it.
                    let delayed = self.disturbed(Some(engine), now)
                        || self.any_acemux_down(now)
                        || self.cluster_disturbed(now);
                    if !excused && !delayed {
                        return Err(format!(
                            "{engine} session {stream_id} still runs {:?} after its stream_ended",
                            now - *ended_at
                        ));
                    }
                    if self.orphans_waived.insert(stream_id.clone()) {
                        self.waive("session stopped late after a fault");
                    }
                }
                Some(_) => {}
                None => {
                    let since = *self
                        .unregistered_since
                        .entry(stream_id.clone())
                        .or_insert(now);
                    // Granted around an acemux crash: the answer died with the
                    // process that asked, and the new one cannot know the session.
                    // (Granted before the crash but not yet recorded, or around the
                    // restart.)
                    let answer_lost_in_crash = self.acemux_down.iter().any(|(_, down, up)| {
                        *down <= now && since <= up.unwrap_or(now) + self.rules.recovery
                    });
                    // A slow or failing store records the session late, not never: the
                    // bound runs from when the store was healthy again (unless the
                    // process that could record it is gone).
                    let store_healthy_from = self
                        .fault_log
                        .iter()
                        .filter(|(key, _, _)| key.starts_with("store"))
                        .map(|(_, _, end)| end.unwrap_or(now))
                        .max()
                        .unwrap_or(Duration::ZERO);
                    let bound_from = if answer_lost_in_crash {
                        since
                    } else {
                        since.max(store_healthy_from)
                    };
                    if now > bound_from + self.rules.stop_bound * 2 {
                        if !excused && !answer_lost_in_crash {
                            return Err(format!(
                                "{engine} session {stream_id} runs unrecorded for {:?}",
                                now - since
                            ));
                        }
                        if self.orphans_waived.insert(stream_id.clone()) {
                            self.waive("session unrecorded after a fault on its engine");
                        }
                    }
                }
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
