//! Who watches what: a record per TS viewer and per HLS player (address, user agent,
//! since when, bytes, current rate), and each channel's state for the status page and
//! the viewer routes. Records are bounded like the viewers they describe (a TS record
//! lives as long as its connection; HLS records are at most the channel's viewer bound
//! and go once the player has been quiet for the HLS idle timeout).

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use acemux_core::lifecycle::EngineAddr;
use acemux_core::Instant;

use crate::clock::Clock;

/// Whole seconds a rate is averaged over.
const RATE_SECONDS: usize = 5;
/// Longest user agent kept (the rest is cut).
const MAX_USER_AGENT: usize = 256;

/// Who a request came from, as far as acemux can tell.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Client {
    /// The peer's address.
    pub ip: Option<IpAddr>,
    /// Its `User-Agent` header, cut to 256 characters.
    pub user_agent: Option<String>,
}

impl Client {
    /// A client from its address and `User-Agent` header.
    pub fn new(ip: Option<IpAddr>, user_agent: Option<&str>) -> Self {
        Client {
            ip,
            user_agent: user_agent
                .map(|agent| agent.chars().take(MAX_USER_AGENT).collect::<String>())
                .filter(|agent| !agent.is_empty()),
        }
    }
}

#[derive(Debug)]
struct Window {
    /// `total` when the second being counted began.
    base: u64,
    /// The seconds before it, newest first.
    previous: [u64; RATE_SECONDS],
}

/// Bytes counted as they pass, and their rate over the last whole seconds. Counting is
/// one atomic addition; the lock is taken once per second boundary (and to read).
#[derive(Debug)]
pub struct RateMeter {
    total: AtomicU64,
    /// The second (since the clock's epoch) being counted.
    second: AtomicU64,
    window: Mutex<Window>,
}

impl RateMeter {
    /// A meter starting at `now`.
    pub fn new(now: Instant) -> Self {
        RateMeter {
            total: AtomicU64::new(0),
            second: AtomicU64::new(now.as_micros() / 1_000_000),
            window: Mutex::new(Window {
                base: 0,
                previous: [0; RATE_SECONDS],
            }),
        }
    }

    /// Moves the window to `second` if it is later, under the lock.
    fn roll(&self, second: u64) -> MutexGuard<'_, Window> {
        let mut window = self
            .window
            .lock()
            .unwrap_or_else(|poison| poison.into_inner());
        let was = self.second.load(Ordering::Acquire);
        if second > was {
            let passed = usize::try_from(second - was).unwrap_or(usize::MAX);
            let total = self.total.load(Ordering::Acquire);
            let current = total.saturating_sub(window.base);
            window.base = total;
            if passed > RATE_SECONDS {
                window.previous = [0; RATE_SECONDS];
            } else {
                window.previous.rotate_right(passed);
                window.previous[passed - 1] = current;
                for empty in &mut window.previous[..passed - 1] {
                    *empty = 0;
                }
            }
            self.second.store(second, Ordering::Release);
        }
        window
    }

    /// Counts `bytes` at `now`.
    pub fn add(&self, now: Instant, bytes: u64) {
        let second = now.as_micros() / 1_000_000;
        if second > self.second.load(Ordering::Acquire) {
            drop(self.roll(second));
        }
        // A count racing a roll may land in the next second: a display figure.
        self.total.fetch_add(bytes, Ordering::Release);
    }

    /// Bytes counted in all.
    pub fn total(&self) -> u64 {
        self.total.load(Ordering::Relaxed)
    }

    /// Bytes per second over the last whole seconds before `now`.
    pub fn rate(&self, now: Instant) -> u64 {
        let window = self.roll(now.as_micros() / 1_000_000);
        window.previous.iter().sum::<u64>() / RATE_SECONDS as u64
    }
}

/// How a viewer reads.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ViewerKind {
    /// One MPEG-TS connection.
    Ts,
    /// An HLS player, by the token in the URIs it was served (or its address).
    Hls {
        /// The token.
        token: String,
    },
}

/// One viewer or player.
#[derive(Debug)]
pub struct ViewerRecord {
    /// Unique in the process.
    pub id: u64,
    /// TS or HLS.
    pub kind: ViewerKind,
    /// Who.
    pub client: Client,
    /// When it connected (TS) or first asked (HLS).
    pub connected_at: Instant,
    last_active_micros: AtomicU64,
    /// What it was sent.
    pub sent: RateMeter,
}

impl ViewerRecord {
    fn new(id: u64, kind: ViewerKind, client: Client, now: Instant) -> Self {
        ViewerRecord {
            id,
            kind,
            client,
            connected_at: now,
            last_active_micros: AtomicU64::new(now.as_micros()),
            sent: RateMeter::new(now),
        }
    }

    /// When it last received something (or asked, for HLS).
    pub fn last_active(&self) -> Instant {
        Instant::from_micros(self.last_active_micros.load(Ordering::Relaxed))
    }

    /// It was sent `bytes` at `now` (a plain store of the time: a TS viewer has one
    /// writer, its stream; two concurrent segments of an HLS player may leave the older
    /// of two nearly equal times).
    pub fn sent(&self, now: Instant, bytes: u64) {
        self.sent.add(now, bytes);
        self.last_active_micros
            .store(now.as_micros(), Ordering::Relaxed);
    }

    /// It asked for something at `now`.
    pub fn touch(&self, now: Instant) {
        self.last_active_micros
            .fetch_max(now.as_micros(), Ordering::Relaxed);
    }
}

/// What a channel is doing, as its task last said.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ChannelState {
    /// `starting`, `playing`, `recovering` (reconnecting or replacing its session).
    pub phase: &'static str,
    /// The engine of its current session.
    pub engine: Option<EngineAddr>,
    /// The last thing that went wrong, for people.
    pub last_error: Option<String>,
    /// When it went wrong.
    pub last_error_at: Option<Instant>,
}

/// A channel's shared status: its state, bytes in and out, its viewers.
#[derive(Debug)]
pub struct ChannelStatus {
    /// When the channel was created.
    pub created_at: Instant,
    state: Mutex<ChannelState>,
    /// Media from the engine.
    pub bytes_in: RateMeter,
    /// Segments to HLS players. What TS viewers are sent is counted by each viewer
    /// alone (a meter every viewer of a crowd wrote to would be contended on every
    /// delivery): see [`ts_bytes_out`](Self::ts_bytes_out).
    pub bytes_out: RateMeter,
    /// What TS viewers that left were sent.
    ts_departed: AtomicU64,
    viewers: Mutex<BTreeMap<u64, Arc<ViewerRecord>>>,
}

impl ChannelStatus {
    /// A channel created at `now`, starting.
    pub fn new(now: Instant) -> Self {
        ChannelStatus {
            created_at: now,
            state: Mutex::new(ChannelState {
                phase: "starting",
                engine: None,
                last_error: None,
                last_error_at: None,
            }),
            bytes_in: RateMeter::new(now),
            bytes_out: RateMeter::new(now),
            ts_departed: AtomicU64::new(0),
            viewers: Mutex::new(BTreeMap::new()),
        }
    }

    fn viewers(&self) -> MutexGuard<'_, BTreeMap<u64, Arc<ViewerRecord>>> {
        self.viewers
            .lock()
            .unwrap_or_else(|poison| poison.into_inner())
    }

    /// The state now.
    pub fn state(&self) -> ChannelState {
        self.state
            .lock()
            .unwrap_or_else(|poison| poison.into_inner())
            .clone()
    }

    /// Changes the state.
    pub fn update(&self, change: impl FnOnce(&mut ChannelState)) {
        change(
            &mut self
                .state
                .lock()
                .unwrap_or_else(|poison| poison.into_inner()),
        );
    }

    /// Bytes sent to TS viewers, those that left included, and their rate now (bytes
    /// per second over the last whole seconds).
    pub fn ts_bytes_out(&self, now: Instant) -> (u64, u64) {
        let viewers = self.viewers();
        viewers
            .values()
            .filter(|record| record.kind == ViewerKind::Ts)
            .fold(
                (self.ts_departed.load(Ordering::Relaxed), 0),
                |(total, rate), record| (total + record.sent.total(), rate + record.sent.rate(now)),
            )
    }

    /// Media arrived from the engine at `now`: the channel plays.
    pub fn media_in(&self, now: Instant, bytes: u64) {
        self.bytes_in.add(now, bytes);
        let mut state = self
            .state
            .lock()
            .unwrap_or_else(|poison| poison.into_inner());
        if state.phase != "playing" && state.engine.is_some() {
            state.phase = "playing";
        }
    }

    /// Notes what went wrong at `now`.
    pub fn error(&self, now: Instant, error: String) {
        self.update(|state| {
            state.last_error = Some(error);
            state.last_error_at = Some(now);
        });
    }

    /// Registers a TS viewer; it leaves with the returned guard.
    pub fn join_ts(self: &Arc<Self>, id: u64, client: Client, clock: Clock) -> TsRegistration {
        let record = Arc::new(ViewerRecord::new(id, ViewerKind::Ts, client, clock.now()));
        self.viewers().insert(id, record.clone());
        TsRegistration {
            channel: self.clone(),
            record,
            clock,
        }
    }

    /// The record of HLS player `token`, made at its first request (at most `limit`
    /// players are recorded; players quiet for `idle` are forgotten first).
    pub fn hls_player(
        &self,
        token: &str,
        client: impl FnOnce() -> Client,
        next_id: impl FnOnce() -> u64,
        now: Instant,
        idle: std::time::Duration,
        limit: usize,
    ) -> Option<Arc<ViewerRecord>> {
        let mut viewers = self.viewers();
        prune_idle(&mut viewers, now, idle);
        if let Some(record) = viewers.values().find(
            |record| matches!(&record.kind, ViewerKind::Hls { token: known } if known == token),
        ) {
            record.touch(now);
            return Some(record.clone());
        }
        if viewers.len() >= limit {
            return None;
        }
        let id = next_id();
        let record = Arc::new(ViewerRecord::new(
            id,
            ViewerKind::Hls {
                token: token.to_owned(),
            },
            client(),
            now,
        ));
        viewers.insert(id, record.clone());
        Some(record)
    }

    /// Every viewer and player now (players quiet for `idle` left), oldest first.
    pub fn viewer_list(&self, now: Instant, idle: std::time::Duration) -> Vec<Arc<ViewerRecord>> {
        let mut viewers = self.viewers();
        prune_idle(&mut viewers, now, idle);
        viewers.values().cloned().collect()
    }
}

/// HLS players quiet for `idle` are not watching any more.
fn prune_idle(
    viewers: &mut BTreeMap<u64, Arc<ViewerRecord>>,
    now: Instant,
    idle: std::time::Duration,
) {
    viewers.retain(|_, record| {
        record.kind == ViewerKind::Ts || now.saturating_duration_since(record.last_active()) < idle
    });
}

/// A TS viewer's place in its channel's list; it leaves when this is dropped.
#[derive(Debug)]
pub struct TsRegistration {
    channel: Arc<ChannelStatus>,
    record: Arc<ViewerRecord>,
    clock: Clock,
}

impl TsRegistration {
    /// The viewer was handed `bytes` to write.
    pub fn sent(&self, bytes: u64) {
        self.record.sent(self.clock.now(), bytes);
    }
}

impl Drop for TsRegistration {
    fn drop(&mut self) {
        let mut viewers = self.channel.viewers();
        viewers.remove(&self.record.id);
        self.channel
            .ts_departed
            .fetch_add(self.record.sent.total(), Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(millis: u64) -> Instant {
        Instant::from_micros(1_000_000_000 + millis * 1000)
    }

    #[test]
    fn the_rate_is_the_average_of_the_last_whole_seconds() {
        let meter = RateMeter::new(at(0));
        for second in 0..10 {
            meter.add(at(second * 1000 + 100), 1000);
            meter.add(at(second * 1000 + 600), 1000);
        }
        assert_eq!(meter.total(), 20_000);
        assert_eq!(meter.rate(at(10_000)), 2000);
        // A gap of two seconds counts as zeros.
        assert_eq!(meter.rate(at(12_500)), 1200);
        assert_eq!(
            meter.rate(at(60_000)),
            0,
            "quiet for longer than the window"
        );
        meter.add(at(60_100), 5000);
        assert_eq!(
            meter.rate(at(60_900)),
            0,
            "the current second is not whole yet"
        );
        assert_eq!(meter.rate(at(61_000)), 1000);
    }

    #[test]
    fn hls_players_are_bounded_and_forgotten_when_quiet() {
        let status = ChannelStatus::new(at(0));
        let idle = crate::config::ProxyConfig::default().hls_idle_timeout;
        let mut ids = 0..;
        let mut player = |token: &str, now| {
            status.hls_player(
                token,
                || Client::new(None, Some("hls.js")),
                || ids.next().expect("ids"),
                now,
                idle,
                2,
            )
        };
        let a = player("a", at(0)).expect("recorded");
        assert_eq!(
            player("a", at(1000)).map(|r| r.id),
            Some(a.id),
            "the same player"
        );
        assert!(player("b", at(1000)).is_some());
        assert!(player("c", at(1000)).is_none(), "beyond the bound");
        // b and a go quiet; after the idle timeout c takes a place.
        let later = at(1000) + idle;
        assert!(player("c", later).is_some());
        assert_eq!(status.viewer_list(later, idle).len(), 1);
    }
}
