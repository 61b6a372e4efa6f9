//! The emulator's state: channels (content ids) with their live timeline, playback
//! sessions, faults and counters. Plain synchronous code behind one mutex, never
//! held across an `.await`.

use std::collections::{BTreeMap, VecDeque};

use acemux_core::rng::mix;
use serde::{Deserialize, Serialize};
use tokio::sync::watch;
use tokio::time::Instant;

use super::faults::{Faults, ANY_CONTENT};

/// Bounds of the state; every map is capped.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Limits {
    pub max_sessions: usize,
    pub max_remembered_sessions: usize,
    pub max_contents: usize,
    pub max_playbacks: usize,
    pub max_fault_entries: usize,
}

/// Counters of the whole emulator, as served at `GET /control/stats`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct EmulatorStats {
    /// Per content id (or infohash, for requests by infohash).
    pub contents: BTreeMap<String, ContentStats>,
    /// Sessions not stopped.
    pub active_sessions: u64,
    /// Playback connections open now.
    pub active_playbacks: u64,
    /// Playback, playlist, segment, stat and stop requests naming a session that is
    /// unknown (or, except for stop, stopped): a client holding on to dead sessions.
    pub unknown_session_requests: u64,
}

/// Session requests remembered for `GET /control/requests` (the oldest go first).
pub const MAX_RECORDED_REQUESTS: usize = 1024;

/// One session request (`getstream` or `manifest.m3u8`) as the emulator received it:
/// what a test checks to see which player parameters reached the engine.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SessionRequest {
    /// `getstream` or `manifest.m3u8`.
    pub route: String,
    /// The parameter that named the content (`id`, `content_id`, `infohash`, `url`,
    /// `magnet`) and its value.
    pub source: (String, String),
    /// `file_indexes=`, as given.
    pub file_indexes: Option<String>,
    /// `live_delay=`, as given.
    pub live_delay: Option<String>,
    /// `seekback=`, as given.
    pub seekback: Option<String>,
    /// `pid=`, as given.
    pub pid: Option<String>,
}

/// Counters of one content id.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ContentStats {
    /// The infohash reported for it (the `infohash=` given, else derived from the id).
    pub infohash: String,
    /// Sessions handed out by `getstream`.
    pub sessions_started: u64,
    /// Stop commands received for its sessions; a session stopped twice counts twice.
    pub sessions_stopped: u64,
    /// Its sessions not stopped.
    pub active_sessions: u64,
    /// Playback connections started.
    pub playbacks_started: u64,
    /// Playback connections open now.
    pub active_playbacks: u64,
    /// Media bytes sent to playback connections and in HLS segments.
    pub bytes_sent: u64,
    /// HLS playlist requests of its live sessions.
    pub playlist_requests: u64,
    /// HLS segment requests of its live sessions, served or not.
    pub segment_requests: u64,
    /// Of those, answered 404: not in the window, or a `segment_404_every` fault.
    pub segments_not_found: u64,
    /// Per session (the most recent ones; see `max_remembered_sessions`).
    pub sessions: BTreeMap<String, SessionStats>,
}

/// Counters of one session.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SessionStats {
    /// Stop commands received for it (more than one is a client bug).
    pub stop_commands: u64,
    /// Whether it has been stopped (by command, or by its direct playback ending).
    pub stopped: bool,
    /// Playback connections started.
    pub playbacks_started: u64,
    /// Playback connections open now.
    pub active_playbacks: u64,
    /// Media bytes sent (playback and HLS segments).
    pub bytes_sent: u64,
    /// HLS playlist requests.
    pub playlist_requests: u64,
    /// HLS segment requests, served or not.
    pub segment_requests: u64,
    /// Of those, answered 404.
    pub segments_not_found: u64,
}

/// An HLS request of a live session, for the counters.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum HlsRequest {
    Playlist,
    /// A segment served with this many bytes.
    Segment(u64),
    /// A segment answered 404.
    MissingSegment,
}

/// Why `getstream` gets an error envelope.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub(crate) enum OpenError {
    #[error("too many active sessions ({0}); stop some first")]
    TooManySessions(usize),
    #[error("too many channels ({0})")]
    TooManyContents(usize),
}

/// Why a playback request is refused.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum PlaybackRefusal {
    /// Unknown or stopped session: 404.
    NoSession,
    /// At the playback connection cap: 503.
    Busy(usize),
}

/// A session handed out by `getstream`.
#[derive(Clone, Debug)]
pub(crate) struct OpenedSession {
    pub id: String,
    pub number: u64,
    pub infohash: String,
}

/// What a playback connection needs to know about its session.
#[derive(Clone, Debug)]
pub(crate) struct SessionView {
    pub content_id: String,
    pub infohash: String,
    /// When the content id's live timeline started.
    pub origin: Instant,
    /// When the session was handed out.
    pub started: Instant,
    pub faults: Faults,
    pub stop: watch::Receiver<bool>,
}

struct Content {
    origin: Instant,
    stats: ContentStats,
}

struct Session {
    content_id: String,
    started: Instant,
    /// The key in `State::direct_hls` of a session opened by a direct (non-JSON)
    /// manifest request.
    direct_key: Option<String>,
    stop: watch::Sender<bool>,
    stats: SessionStats,
}

pub(crate) struct State {
    limits: Limits,
    contents: BTreeMap<String, Content>,
    sessions: BTreeMap<String, Session>,
    /// Stopped sessions, oldest first, forgotten beyond `max_remembered_sessions`.
    stopped_order: VecDeque<String>,
    faults: BTreeMap<String, Faults>,
    /// Live sessions opened by direct manifest requests, by content id and pid, so
    /// that a player reloading the manifest URL stays in one session.
    direct_hls: BTreeMap<String, String>,
    next_number: u64,
    active_sessions: usize,
    active_playbacks: usize,
    unknown_session_requests: u64,
    /// The latest session requests, oldest first.
    requests: VecDeque<SessionRequest>,
}

impl State {
    /// Remembers a session request (at most [`MAX_RECORDED_REQUESTS`], the oldest go).
    pub fn record_request(&mut self, request: SessionRequest) {
        if self.requests.len() >= MAX_RECORDED_REQUESTS {
            self.requests.pop_front();
        }
        self.requests.push_back(request);
    }

    /// The latest session requests, oldest first.
    pub fn requests(&self) -> Vec<SessionRequest> {
        self.requests.iter().cloned().collect()
    }

    /// Numbers sessions from `number` on (before any session is opened).
    pub fn set_first_session_number(&mut self, number: u64) {
        self.next_number = number;
    }

    pub fn new(limits: Limits, faults: BTreeMap<String, Faults>) -> Self {
        State {
            limits,
            contents: BTreeMap::new(),
            sessions: BTreeMap::new(),
            stopped_order: VecDeque::new(),
            faults,
            direct_hls: BTreeMap::new(),
            next_number: 1,
            active_sessions: 0,
            active_playbacks: 0,
            unknown_session_requests: 0,
            requests: VecDeque::new(),
        }
    }

    /// The faults of `content_id`: its own, else those of `*`, else none.
    pub fn faults_for(&self, content_id: &str) -> Faults {
        self.faults
            .get(content_id)
            .or_else(|| self.faults.get(ANY_CONTENT))
            .cloned()
            .unwrap_or_default()
    }

    /// Replaces the faults of `content_id`; false when the table is full.
    pub fn set_faults(&mut self, content_id: &str, faults: Faults) -> bool {
        if !self.faults.contains_key(content_id)
            && self.faults.len() >= self.limits.max_fault_entries
        {
            return false;
        }
        self.faults.insert(content_id.to_owned(), faults);
        true
    }

    /// Removes the faults of `content_id`; whether there were any.
    pub fn clear_faults(&mut self, content_id: &str) -> bool {
        self.faults.remove(content_id).is_some()
    }

    pub fn all_faults(&self) -> BTreeMap<String, Faults> {
        self.faults.clone()
    }

    /// A new session of `content_id`, starting the channel's timeline at `now` if
    /// this is its first request.
    pub fn open_session(
        &mut self,
        content_id: &str,
        infohash: Option<&str>,
        now: Instant,
    ) -> Result<OpenedSession, OpenError> {
        if self.active_sessions >= self.limits.max_sessions {
            return Err(OpenError::TooManySessions(self.limits.max_sessions));
        }
        if !self.contents.contains_key(content_id) {
            if self.contents.len() >= self.limits.max_contents {
                return Err(OpenError::TooManyContents(self.limits.max_contents));
            }
            let infohash = infohash
                .filter(|hash| hash.len() == 40 && hash.bytes().all(|b| b.is_ascii_hexdigit()))
                .map(str::to_ascii_lowercase)
                .unwrap_or_else(|| derived_infohash(content_id));
            let stats = ContentStats {
                infohash,
                ..ContentStats::default()
            };
            self.contents
                .insert(content_id.to_owned(), Content { origin: now, stats });
        }
        let content = self
            .contents
            .get_mut(content_id)
            .expect("inserted above when missing");
        let number = self.next_number;
        self.next_number += 1;
        let id = session_id(content_id, number);
        content.stats.sessions_started += 1;
        content.stats.active_sessions += 1;
        self.active_sessions += 1;
        let (stop, _) = watch::channel(false);
        self.sessions.insert(
            id.clone(),
            Session {
                content_id: content_id.to_owned(),
                started: now,
                direct_key: None,
                stop,
                stats: SessionStats::default(),
            },
        );
        Ok(OpenedSession {
            id,
            number,
            infohash: content.stats.infohash.clone(),
        })
    }

    /// The live session `id`, or `None` (and counted) when unknown or stopped.
    pub fn live_session(&mut self, id: &str) -> Option<SessionView> {
        let view = self
            .sessions
            .get(id)
            .filter(|session| !session.stats.stopped)
            .and_then(|session| {
                let content = self.contents.get(&session.content_id)?;
                Some(SessionView {
                    content_id: session.content_id.clone(),
                    infohash: content.stats.infohash.clone(),
                    origin: content.origin,
                    started: session.started,
                    faults: self.faults_for(&session.content_id),
                    stop: session.stop.subscribe(),
                })
            });
        if view.is_none() {
            self.unknown_session_requests += 1;
        }
        view
    }

    /// Registers a playback connection of session `id`.
    pub fn begin_playback(&mut self, id: &str) -> Result<SessionView, PlaybackRefusal> {
        if self.active_playbacks >= self.limits.max_playbacks {
            return Err(PlaybackRefusal::Busy(self.limits.max_playbacks));
        }
        let view = self.live_session(id).ok_or(PlaybackRefusal::NoSession)?;
        self.active_playbacks += 1;
        if let Some(session) = self.sessions.get_mut(id) {
            session.stats.playbacks_started += 1;
            session.stats.active_playbacks += 1;
        }
        if let Some(content) = self.contents.get_mut(&view.content_id) {
            content.stats.playbacks_started += 1;
            content.stats.active_playbacks += 1;
        }
        Ok(view)
    }

    /// A playback connection of session `id` ended.
    pub fn end_playback(&mut self, id: &str, content_id: &str) {
        self.active_playbacks = self.active_playbacks.saturating_sub(1);
        if let Some(session) = self.sessions.get_mut(id) {
            session.stats.active_playbacks = session.stats.active_playbacks.saturating_sub(1);
        }
        if let Some(content) = self.contents.get_mut(content_id) {
            content.stats.active_playbacks = content.stats.active_playbacks.saturating_sub(1);
        }
    }

    /// `bytes` more were sent to a playback connection of session `id`.
    pub fn record_bytes(&mut self, id: &str, content_id: &str, bytes: u64) {
        if let Some(session) = self.sessions.get_mut(id) {
            session.stats.bytes_sent += bytes;
        }
        if let Some(content) = self.contents.get_mut(content_id) {
            content.stats.bytes_sent += bytes;
        }
    }

    /// The live session of direct manifest requests with `key` (content id and
    /// pid), if one is open.
    pub fn direct_hls_session(&self, key: &str) -> Option<String> {
        let id = self.direct_hls.get(key)?;
        let live = self.sessions.get(id).is_some_and(|s| !s.stats.stopped);
        live.then(|| id.clone())
    }

    /// Remembers session `id` as the one of direct manifest requests with `key`.
    pub fn set_direct_hls_session(&mut self, key: &str, id: &str) {
        if let Some(session) = self.sessions.get_mut(id) {
            session.direct_key = Some(key.to_owned());
            self.direct_hls.insert(key.to_owned(), id.to_owned());
        }
    }

    /// Counts an HLS request of session `id` (of `content_id`).
    pub fn record_hls(&mut self, id: &str, content_id: &str, request: HlsRequest) {
        let count =
            |playlists: &mut u64, segments: &mut u64, missing: &mut u64, bytes: &mut u64| {
                match request {
                    HlsRequest::Playlist => *playlists += 1,
                    HlsRequest::Segment(sent) => {
                        *segments += 1;
                        *bytes += sent;
                    }
                    HlsRequest::MissingSegment => {
                        *segments += 1;
                        *missing += 1;
                    }
                }
            };
        if let Some(session) = self.sessions.get_mut(id) {
            let s = &mut session.stats;
            count(
                &mut s.playlist_requests,
                &mut s.segment_requests,
                &mut s.segments_not_found,
                &mut s.bytes_sent,
            );
        }
        if let Some(content) = self.contents.get_mut(content_id) {
            let c = &mut content.stats;
            count(
                &mut c.playlist_requests,
                &mut c.segment_requests,
                &mut c.segments_not_found,
                &mut c.bytes_sent,
            );
        }
    }

    /// A stop command for session `id`: counted (repeats too) and applied once.
    /// False when the session is unknown.
    pub fn stop_command(&mut self, id: &str) -> bool {
        let Some(session) = self.sessions.get_mut(id) else {
            self.unknown_session_requests += 1;
            return false;
        };
        session.stats.stop_commands += 1;
        let content_id = session.content_id.clone();
        if let Some(content) = self.contents.get_mut(&content_id) {
            content.stats.sessions_stopped += 1;
        }
        self.end_session(id);
        true
    }

    /// Stops session `id` if it is live: its playbacks end and it is remembered as
    /// stopped (the oldest stopped sessions are forgotten beyond the bound).
    pub fn end_session(&mut self, id: &str) {
        let Some(session) = self.sessions.get_mut(id) else {
            return;
        };
        if session.stats.stopped {
            return;
        }
        session.stats.stopped = true;
        session.stop.send_replace(true);
        if let Some(key) = session.direct_key.take() {
            if self.direct_hls.get(&key).is_some_and(|direct| direct == id) {
                self.direct_hls.remove(&key);
            }
        }
        self.active_sessions = self.active_sessions.saturating_sub(1);
        if let Some(content) = self.contents.get_mut(&session.content_id) {
            content.stats.active_sessions = content.stats.active_sessions.saturating_sub(1);
        }
        self.stopped_order.push_back(id.to_owned());
        while self.stopped_order.len() > self.limits.max_remembered_sessions {
            if let Some(old) = self.stopped_order.pop_front() {
                self.sessions.remove(&old);
            }
        }
    }

    pub fn stats(&self) -> EmulatorStats {
        let mut contents: BTreeMap<String, ContentStats> = self
            .contents
            .iter()
            .map(|(id, content)| (id.clone(), content.stats.clone()))
            .collect();
        for (id, session) in &self.sessions {
            if let Some(content) = contents.get_mut(&session.content_id) {
                content.sessions.insert(id.clone(), session.stats.clone());
            }
        }
        EmulatorStats {
            contents,
            active_sessions: self.active_sessions as u64,
            active_playbacks: self.active_playbacks as u64,
            unknown_session_requests: self.unknown_session_requests,
        }
    }
}

/// FNV-1a: a stable hash of a content id (std's hasher is not stable across builds).
fn fnv1a(text: &str) -> u64 {
    text.bytes().fold(0xCBF2_9CE4_8422_2325, |hash, byte| {
        (hash ^ u64::from(byte)).wrapping_mul(0x0100_0000_01B3)
    })
}

/// 40 hex digits derived from `content_id` and the session `number`; distinct
/// numbers give distinct ids (the number is the last 8 digits, mixed into the rest).
pub(crate) fn session_id(content_id: &str, number: u64) -> String {
    let hash = fnv1a(content_id);
    format!(
        "{:016x}{:016x}{:08x}",
        mix(hash ^ number),
        mix(hash.rotate_left(17) ^ number),
        number as u32
    )
}

/// The infohash reported for a content id requested by id: 40 stable hex digits.
pub(crate) fn derived_infohash(content_id: &str) -> String {
    let hash = fnv1a(content_id);
    // Salts keep these digits apart from the session ids' `mix(hash ^ number)`.
    format!(
        "{:016x}{:016x}{:08x}",
        mix(hash ^ 0x1F0A_0000_0000_0000),
        mix(hash ^ 0x1F0B_0000_0000_0000),
        mix(hash ^ 0x1F0C_0000_0000_0000) as u32
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits() -> Limits {
        Limits {
            max_sessions: 2,
            max_remembered_sessions: 2,
            max_contents: 2,
            max_playbacks: 1,
            max_fault_entries: 1,
        }
    }

    #[test]
    fn session_ids_are_deterministic_and_distinct() {
        assert_eq!(session_id("abc", 1), session_id("abc", 1));
        assert_ne!(session_id("abc", 1), session_id("abc", 2));
        assert_ne!(session_id("abc", 1), session_id("abd", 1));
        assert_eq!(session_id("abc", 1).len(), 40);
        assert_eq!(derived_infohash("abc").len(), 40);
    }

    #[test]
    fn sessions_are_bounded_and_stops_are_counted() {
        let mut state = State::new(limits(), BTreeMap::new());
        let now = Instant::now();
        let first = state.open_session("a", None, now).expect("room");
        let second = state.open_session("b", None, now).expect("room");
        assert_eq!(
            state.open_session("a", None, now).map(|s| s.id),
            Err(OpenError::TooManySessions(2))
        );
        assert!(state.stop_command(&first.id));
        assert!(state.stop_command(&first.id));
        assert!(!state.stop_command("nope"));
        assert_eq!(
            state.open_session("c", None, now).map(|s| s.id),
            Err(OpenError::TooManyContents(2))
        );
        let stats = state.stats();
        assert_eq!(stats.contents["a"].sessions_stopped, 2);
        assert_eq!(stats.contents["a"].sessions[&first.id].stop_commands, 2);
        assert_eq!(stats.contents["a"].active_sessions, 0);
        assert_eq!(stats.contents["b"].sessions_started, 1);
        assert_eq!(stats.active_sessions, 1);
        assert_eq!(stats.unknown_session_requests, 1);
        assert!(state.begin_playback(&second.id).is_ok());
        assert_eq!(
            state.begin_playback(&second.id).err(),
            Some(PlaybackRefusal::Busy(1))
        );
        state.end_playback(&second.id, "b");
        assert_eq!(
            state.begin_playback(&first.id).err(),
            Some(PlaybackRefusal::NoSession)
        );
    }

    #[test]
    fn stopped_sessions_are_forgotten_beyond_the_bound() {
        let mut state = State::new(limits(), BTreeMap::new());
        let mut ids = Vec::new();
        for _ in 0..3 {
            let session = state.open_session("a", None, Instant::now()).expect("room");
            state.stop_command(&session.id);
            ids.push(session.id);
        }
        let stats = state.stats();
        assert_eq!(stats.contents["a"].sessions_stopped, 3);
        assert_eq!(stats.contents["a"].sessions.len(), 2);
        assert!(!stats.contents["a"].sessions.contains_key(&ids[0]));
    }

    #[tokio::test]
    async fn stopping_a_session_signals_its_playbacks() {
        let mut state = State::new(limits(), BTreeMap::new());
        let session = state.open_session("a", None, Instant::now()).expect("room");
        let mut view = state.begin_playback(&session.id).expect("live");
        assert!(!*view.stop.borrow());
        state.stop_command(&session.id);
        view.stop.changed().await.expect("sender alive");
        assert!(*view.stop.borrow());
    }

    #[test]
    fn wildcard_faults_apply_to_content_without_its_own() {
        let mut faults = BTreeMap::new();
        faults.insert(
            ANY_CONTENT.to_owned(),
            Faults {
                no_data: true,
                ..Faults::default()
            },
        );
        let mut state = State::new(limits(), faults);
        assert!(state.faults_for("x").no_data);
        assert!(!state.set_faults("x", Faults::default()), "table full");
        assert!(state.clear_faults(ANY_CONTENT));
        assert!(state.set_faults("x", Faults::default()));
        assert!(!state.faults_for("y").no_data);
    }
}
