//! What the players and the event receiver saw, shared with the step loop that checks
//! it. All hosts run on the simulation's one thread; the mutex is never contended.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use crate::media_index::{MediaIndex, SliceTracker};
use crate::trace::TraceHasher;

/// Simulated time since the start, as seen from inside a host.
pub fn sim_now() -> Duration {
    turmoil::sim_elapsed().unwrap_or_default()
}

/// One request a player made and what became of it.
#[derive(Clone, Debug)]
pub struct RequestRecord {
    /// The player.
    pub player: String,
    /// Method and path.
    pub what: String,
    /// When it was sent.
    pub sent_at: Duration,
    /// It must be answered (status line and headers) within this.
    pub bound: Duration,
    /// When its status arrived.
    pub answered_at: Option<Duration>,
    /// The status.
    pub status: Option<u16>,
    /// A transport failure before any status.
    pub failure: Option<String>,
}

/// One TS viewer's body.
#[derive(Debug)]
pub struct TsViewerRecord {
    /// The player.
    pub player: String,
    /// The channel's content id.
    pub content_id: String,
    /// Its bytes against the engine stream.
    pub tracker: SliceTracker,
    /// Bytes received.
    pub bytes: u64,
    /// Whether the body ended (closed by acemux or by an error).
    pub ended: bool,
    /// Whether the player still reads (false once it ended, or stopped reading on
    /// purpose).
    pub reading: bool,
    /// When media (not keepalive) last arrived.
    pub last_media_at: Option<Duration>,
}

/// How far an HLS player got.
#[derive(Clone, Debug)]
pub struct HlsProgress {
    /// The channel's content id.
    pub content_id: String,
    /// The newest media sequence number listed so far.
    pub newest: u64,
    /// When `newest` last grew (or the player first saw segments).
    pub advanced_at: Duration,
    /// Whether the player still polls.
    pub polling: bool,
}

/// One event the external receiver got.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReceivedEvent {
    /// `stream_started` or `stream_ended`.
    pub kind: String,
    /// The `Idempotency-Key` header (the event id).
    pub idempotency_key: String,
    /// The JSON body.
    pub body: String,
}

/// Everything observed.
#[derive(Default)]
pub struct Observations {
    /// Every player request, in the order sent.
    pub requests: Vec<RequestRecord>,
    /// Index of the first request that may still be unanswered.
    pub first_open_request: usize,
    /// TS viewers by id.
    pub ts_viewers: BTreeMap<u64, TsViewerRecord>,
    /// Problems players found at once (HLS sequences, segments, bodies).
    pub violations: Vec<String>,
    /// Events the receiver got, in arrival order.
    pub received: Vec<ReceivedEvent>,
    /// Event ids the receiver refused for good (a 4xx other than 408/429): acemux must
    /// not send them again.
    pub rejected: Vec<String>,
    /// HLS playlists fetched with status 200.
    pub hls_playlists: u64,
    /// HLS segments fetched and checked.
    pub hls_segments: u64,
    /// Times acemux was started again after a crash.
    pub acemux_restarts: u64,
    /// The most discontinuities each HLS player has seen announced (the playlist's
    /// discontinuity sequence plus those it lists), by player.
    pub hls_discontinuities: BTreeMap<String, u64>,
    /// Viewers that stopped reading, with the time by which acemux must drop them.
    pub stopped_reading: Vec<(String, Duration)>,
    /// Each HLS player's progress, by player: once it had a playlist with segments,
    /// the newest segment it has seen listed and when that last moved on.
    pub hls_progress: BTreeMap<String, HlsProgress>,
    /// Bodies a player could not read whole within its bound: player, what, when
    /// the read started and when it gave up.
    pub unread_bodies: Vec<(String, String, Duration, Duration)>,
    /// Streams an operator's `DELETE /streams/{id}` ended (answered `updated`).
    pub deleted_streams: Vec<String>,
    /// Hash of everything players received, with the time.
    pub trace: TraceHasher,
}

/// A cheap handle on the shared [`Observations`].
#[derive(Clone, Default)]
pub struct Observer(Arc<Mutex<Observations>>);

impl Observer {
    /// A fresh, empty record.
    pub fn new() -> Self {
        Observer::default()
    }

    /// The record. Held only for short synchronous updates.
    pub fn lock(&self) -> MutexGuard<'_, Observations> {
        self.0.lock().unwrap_or_else(|poison| poison.into_inner())
    }

    /// Records a request being sent; its id.
    pub fn request_sent(&self, player: &str, what: &str, bound: Duration) -> usize {
        let mut record = self.lock();
        let now = sim_now();
        record
            .trace
            .add_text(&format!("{}ms {player} -> {what}", now.as_millis()));
        record.requests.push(RequestRecord {
            player: player.to_owned(),
            what: what.to_owned(),
            sent_at: now,
            bound,
            answered_at: None,
            status: None,
            failure: None,
        });
        record.requests.len() - 1
    }

    /// Records the status of request `id`.
    pub fn request_answered(&self, id: usize, status: u16) {
        let mut record = self.lock();
        let now = sim_now();
        let request = &mut record.requests[id];
        request.answered_at = Some(now);
        request.status = Some(status);
        let line = format!("{}ms {} <- {status}", now.as_millis(), request.player);
        record.trace.add_text(&line);
    }

    /// Records request `id` failing without a status.
    pub fn request_failed(&self, id: usize, failure: String) {
        let mut record = self.lock();
        let now = sim_now();
        let request = &mut record.requests[id];
        request.answered_at = Some(now);
        let line = format!("{}ms {} <- {failure}", now.as_millis(), request.player);
        request.failure = Some(failure);
        record.trace.add_text(&line);
    }

    /// Records a body `player` could not read whole (started at `started`).
    pub fn body_not_read(&self, player: &str, what: String, started: Duration) {
        let mut record = self.lock();
        let now = sim_now();
        record.trace.add_text(&format!(
            "{}ms {player} body not read: {what}",
            now.as_millis()
        ));
        record
            .unread_bodies
            .push((player.to_owned(), what, started, now));
    }

    /// Adds a problem found by a player.
    pub fn violation(&self, text: String) {
        let mut record = self.lock();
        record.trace.add_text(&text);
        record.violations.push(text);
    }

    /// HLS player `player` was served a playlist whose newest segment is `newest`.
    pub fn hls_newest(&self, player: &str, content_id: &str, newest: u64) {
        let now = sim_now();
        let mut record = self.lock();
        let progress = record
            .hls_progress
            .entry(player.to_owned())
            .or_insert_with(|| HlsProgress {
                content_id: content_id.to_owned(),
                newest,
                advanced_at: now,
                polling: true,
            });
        if newest > progress.newest {
            progress.newest = newest;
            progress.advanced_at = now;
        }
        progress.polling = true;
    }

    /// HLS player `player` stopped polling.
    pub fn hls_stopped(&self, player: &str) {
        if let Some(progress) = self.lock().hls_progress.get_mut(player) {
            progress.polling = false;
        }
    }

    /// Starts following TS viewer `id`'s body.
    pub fn ts_viewer_started(&self, id: u64, player: &str, content_id: &str) {
        self.lock().ts_viewers.insert(
            id,
            TsViewerRecord {
                player: player.to_owned(),
                content_id: content_id.to_owned(),
                tracker: SliceTracker::default(),
                bytes: 0,
                ended: false,
                reading: true,
                last_media_at: None,
            },
        );
    }

    /// Bytes TS viewer `id` read.
    pub fn ts_bytes(&self, id: u64, bytes: &[u8]) {
        let mut record = self.lock();
        record.trace.add_bytes(bytes);
        let viewer = record
            .ts_viewers
            .get_mut(&id)
            .expect("a viewer is registered before it reads");
        viewer.bytes += bytes.len() as u64;
        let media_before = viewer.tracker.check.packets;
        viewer.tracker.feed(MediaIndex::simulated(), bytes);
        if viewer.tracker.check.packets > media_before {
            viewer.last_media_at = Some(sim_now());
        }
    }

    /// TS viewer `id` stops reading (its watch is over, or it stalls on purpose).
    pub fn ts_stopped(&self, id: u64) {
        if let Some(viewer) = self.lock().ts_viewers.get_mut(&id) {
            viewer.reading = false;
        }
    }

    /// TS viewer `id`'s body ended.
    pub fn ts_ended(&self, id: u64) {
        let mut record = self.lock();
        if let Some(viewer) = record.ts_viewers.get_mut(&id) {
            viewer.ended = true;
            viewer.reading = false;
        }
        let line = format!("{}ms viewer {id} ended", sim_now().as_millis());
        record.trace.add_text(&line);
    }
}
