//! One playback connection: where in the channel's live timeline it starts, and the
//! paced body that sends the looped media from there.
//!
//! A channel's timeline starts when its content id is first requested. At `t` after
//! that, an engine holds `prebuffer + t × rate` bytes; a new connection starts one
//! prebuffer behind that, moved back to an entry point (the PAT before a keyframe,
//! so players decode from the first byte), gets what the engine holds at once (the
//! burst), and then the rest at `rate`. Everything is a function of
//! `tokio::time`, so under a virtual clock the bytes and their timing are exact.

use std::io;
use std::sync::Arc;
use std::time::Duration;

use acemux_core::ts::PACKET_LEN;
use bytes::Bytes;
use futures::Stream;
use tokio::sync::watch;
use tokio::time::Instant;

use super::media::MediaLoop;
use super::Shared;

/// Largest chunk handed to the connection at once: bounds memory per wake-up and
/// splits the burst into socket-sized pieces.
const MAX_CHUNK_BYTES: u64 = 348 * PACKET_LEN as u64;
/// Time between the last byte and an abrupt close, so the bytes reach the socket
/// before the connection is dropped.
const ABRUPT_CLOSE_GRACE: Duration = Duration::from_millis(50);

/// Bytes sent at `rate_bps` in `duration`.
pub(crate) fn bytes_in(rate_bps: u64, duration: Duration) -> u64 {
    let bytes = u128::from(rate_bps) * duration.as_micros() / 8_000_000;
    u64::try_from(bytes).unwrap_or(u64::MAX)
}

/// Where a connection made `since_origin` after the timeline started begins, and
/// how many bytes it gets at once: `(start offset, burst bytes)`.
pub(crate) fn plan_start(
    media: &MediaLoop,
    rate_bps: u64,
    prebuffer: Duration,
    since_origin: Duration,
) -> (u64, u64) {
    let live = bytes_in(rate_bps, since_origin);
    let available = bytes_in(rate_bps, prebuffer) + live;
    let start = media.entry_point(live);
    (start, available - start)
}

/// The send schedule of one connection, as a pure function of the time since it
/// started.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Pacer {
    /// Due at once.
    pub burst_bytes: u64,
    /// Then this many bits per second.
    pub rate_bps: u64,
    /// Nothing is sent during `[start, start + length)`; the schedule resumes after
    /// it where it stopped.
    pub stall: Option<(Duration, Duration)>,
}

impl Pacer {
    /// Whether `elapsed` falls in the stall.
    pub fn stalled(&self, elapsed: Duration) -> bool {
        self.stall
            .is_some_and(|(start, length)| elapsed >= start && elapsed < start + length)
    }

    /// Bytes due by `elapsed` (not packet aligned).
    pub fn due(&self, elapsed: Duration) -> u64 {
        let active = match self.stall {
            Some((start, length)) => elapsed - elapsed.saturating_sub(start).min(length),
            None => elapsed,
        };
        self.burst_bytes + bytes_in(self.rate_bps, active)
    }

    /// The earliest time since the start, outside the stall, by which `bytes` are due.
    pub fn time_due(&self, bytes: u64) -> Duration {
        let active = match bytes.checked_sub(self.burst_bytes) {
            None | Some(0) => Duration::ZERO,
            Some(more) => {
                let micros =
                    (u128::from(more) * 8_000_000).div_ceil(u128::from(self.rate_bps.max(1)));
                Duration::from_micros(u64::try_from(micros).unwrap_or(u64::MAX))
            }
        };
        match self.stall {
            Some((start, length)) if active >= start => active + length,
            _ => active,
        }
    }
}

/// How a body ends before the session does.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Cut {
    /// Ends cleanly after this many bytes.
    Clean(u64),
    /// The connection drops after this many bytes, mid-body.
    Abrupt(u64),
}

impl Cut {
    fn bytes(self) -> u64 {
        match self {
            Cut::Clean(bytes) | Cut::Abrupt(bytes) => bytes,
        }
    }
}

/// Unregisters a playback connection when its body is dropped.
pub(crate) struct PlaybackGuard {
    pub shared: Arc<Shared>,
    pub session_id: String,
    pub content_id: String,
    /// Direct (non-JSON) `getstream` playback: the session ends with its connection.
    pub end_session: bool,
}

impl Drop for PlaybackGuard {
    fn drop(&mut self) {
        let mut state = self.shared.state();
        state.end_playback(&self.session_id, &self.content_id);
        if self.end_session {
            state.end_session(&self.session_id);
        }
    }
}

/// Everything one playback body needs.
pub(crate) struct Playback {
    pub guard: PlaybackGuard,
    /// When the connection started: the schedule's and the stall's zero.
    pub started: Instant,
    pub media: MediaLoop,
    pub start_offset: u64,
    pub pacer: Pacer,
    pub cut: Option<Cut>,
    pub no_data: bool,
    pub pacing_interval: Duration,
    pub stop: watch::Receiver<bool>,
    pub shutdown: watch::Receiver<bool>,
}

struct Progress {
    playback: Playback,
    started: Instant,
    sent: u64,
    min_chunk: u64,
    done: bool,
}

impl Playback {
    /// The paced body. It ends cleanly when the session stops or the emulator
    /// shuts down.
    pub fn into_stream(self) -> impl Stream<Item = Result<Bytes, io::Error>> + Send + 'static {
        let interval_bytes = bytes_in(self.pacer.rate_bps, self.pacing_interval);
        let min_chunk =
            (interval_bytes - interval_bytes % PACKET_LEN as u64).max(PACKET_LEN as u64);
        let progress = Progress {
            started: self.started,
            playback: self,
            sent: 0,
            min_chunk,
            done: false,
        };
        futures::stream::unfold(progress, |mut progress| async move {
            let item = progress.next_chunk().await?;
            Some((item, progress))
        })
    }
}

impl Progress {
    async fn next_chunk(&mut self) -> Option<Result<Bytes, io::Error>> {
        if self.done {
            return None;
        }
        let limit = self.playback.cut.map_or(u64::MAX, Cut::bytes);
        loop {
            if *self.playback.stop.borrow() || *self.playback.shutdown.borrow() {
                return None;
            }
            if self.sent >= limit {
                return self.finish().await;
            }
            let wake = if self.playback.no_data {
                None
            } else {
                let elapsed = self.started.elapsed();
                let due = self.playback.pacer.due(elapsed);
                // Whole packets, except the last bytes before a cut that is not on a
                // packet boundary: those are due once the cut is (else the body would
                // wait for a packet that never comes, and a virtual clock would spin).
                let target = if due >= limit {
                    limit
                } else {
                    due - due % PACKET_LEN as u64
                };
                let ready = target.saturating_sub(self.sent);
                let stalled = self.playback.pacer.stalled(elapsed);
                if !stalled && ready > 0 && (ready >= self.min_chunk || target == limit) {
                    return Some(Ok(self.send(ready.min(MAX_CHUNK_BYTES))));
                }
                let want = (self.sent + self.min_chunk).min(limit);
                Some(self.started + self.playback.pacer.time_due(want))
            };
            let playback = &mut self.playback;
            // A dropped sender (session forgotten, emulator gone) ends the body too.
            let live = tokio::select! {
                // Polled in order: a simulated run must not depend on tokio's random pick.
                biased;
                () = sleep_until(wake) => true,
                changed = playback.stop.changed() => changed.is_ok(),
                changed = playback.shutdown.changed() => changed.is_ok(),
            };
            if !live {
                return None;
            }
        }
    }

    fn send(&mut self, len: u64) -> Bytes {
        let offset = self.playback.start_offset + self.sent;
        let len = usize::try_from(len).expect("chunks are at most MAX_CHUNK_BYTES");
        let bytes = self.playback.media.read(offset, len);
        self.sent += len as u64;
        let guard = &self.playback.guard;
        guard
            .shared
            .state()
            .record_bytes(&guard.session_id, &guard.content_id, len as u64);
        bytes
    }

    async fn finish(&mut self) -> Option<Result<Bytes, io::Error>> {
        self.done = true;
        match self.playback.cut? {
            Cut::Clean(_) => None,
            Cut::Abrupt(_) => {
                tokio::time::sleep(ABRUPT_CLOSE_GRACE).await;
                Some(Err(io::Error::new(
                    io::ErrorKind::ConnectionAborted,
                    "emulated fault: connection closed mid-body",
                )))
            }
        }
    }
}

/// Sleeps until `deadline`, or forever without one.
async fn sleep_until(deadline: Option<Instant>) {
    match deadline {
        Some(deadline) => tokio::time::sleep_until(deadline).await,
        None => std::future::pending().await,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const RATE: u64 = 8_000_000; // 1 MB/s: one byte per µs.

    #[test]
    fn the_burst_is_due_at_once_then_the_rate() {
        let pacer = Pacer {
            burst_bytes: 1000,
            rate_bps: RATE,
            stall: None,
        };
        assert_eq!(pacer.due(Duration::ZERO), 1000);
        assert_eq!(pacer.due(Duration::from_millis(1)), 2000);
        assert_eq!(pacer.time_due(500), Duration::ZERO);
        assert_eq!(pacer.time_due(2000), Duration::from_millis(1));
        assert_eq!(pacer.time_due(2001), Duration::from_micros(1001));
    }

    #[test]
    fn a_stall_pauses_the_schedule_without_catching_up() {
        let stall = (Duration::from_millis(10), Duration::from_millis(5));
        let pacer = Pacer {
            burst_bytes: 0,
            rate_bps: RATE,
            stall: Some(stall),
        };
        assert!(!pacer.stalled(Duration::from_millis(9)));
        assert!(pacer.stalled(Duration::from_millis(10)));
        assert!(!pacer.stalled(Duration::from_millis(15)));
        assert_eq!(pacer.due(Duration::from_millis(12)), 10_000);
        assert_eq!(pacer.due(Duration::from_millis(16)), 11_000);
        assert_eq!(pacer.time_due(9_000), Duration::from_millis(9));
        assert_eq!(pacer.time_due(11_000), Duration::from_millis(16));
        for bytes in [1, 9_999, 10_000, 10_001, 50_000] {
            let at = pacer.time_due(bytes);
            assert!(
                pacer.due(at) >= bytes && !pacer.stalled(at),
                "{bytes} at {at:?}"
            );
        }
    }

    #[test]
    fn a_stall_at_the_start_withholds_the_burst() {
        let pacer = Pacer {
            burst_bytes: 5000,
            rate_bps: RATE,
            stall: Some((Duration::ZERO, Duration::from_secs(2))),
        };
        assert!(pacer.stalled(Duration::ZERO));
        assert_eq!(pacer.time_due(1), Duration::from_secs(2));
    }

    #[test]
    fn connections_start_one_prebuffer_behind_live_at_an_entry_point() {
        let media = MediaLoop::builtin();
        let rate = media.bitrate_bps();
        let prebuffer = Duration::from_secs(2);
        let (start, burst) = plan_start(&media, rate, prebuffer, Duration::ZERO);
        assert_eq!((start, burst), (0, bytes_in(rate, prebuffer)));
        let later = Duration::from_secs(13);
        let (start, burst) = plan_start(&media, rate, prebuffer, later);
        let live = bytes_in(rate, later);
        assert_eq!(start, media.entry_point(live));
        assert_eq!(start + burst, live + bytes_in(rate, prebuffer));
        assert!(burst >= bytes_in(rate, prebuffer));
    }
}
