//! The HLS session machine: polls, fetches, ordering, gaps.

use std::collections::VecDeque;

use super::queue::FetchQueue;
use super::served::{HlsSnapshot, ServedBuffer};
use super::{Gap, HlsConfig, HlsStats, Input, Output, UpstreamPlaylist};
use crate::time::{Duration, Instant};

/// The shortest delay the session arms: a deadline is always after `now`, so a zero
/// knob cannot make the driver spin without time passing.
const MIN_DELAY: Duration = Duration::from_micros(1);

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum TimerKind {
    /// The next playlist poll (regular, or after a backoff).
    Poll = 0,
    /// The earliest segment retry.
    SegmentRetry = 1,
}

const TIMERS: [TimerKind; 2] = [TimerKind::Poll, TimerKind::SegmentRetry];

/// What is known of the upstream numbering in the current generation.
#[derive(Debug, Default)]
struct Upstream {
    /// Media sequence of the last accepted playlist.
    media_sequence: Option<u64>,
    /// Upstream number of the next new segment: one past the newest one seen.
    next_seq: Option<u64>,
    /// The last accepted playlist had `#EXT-X-ENDLIST`.
    ended: bool,
}

/// One HLS session: polls the engine's playlist, fetches its segments, serves them.
///
/// Drive order: after every [`handle_input`](Self::handle_input) or
/// [`handle_timeout`](Self::handle_timeout) call, drain
/// [`poll_output`](Self::poll_output), then read [`poll_timeout`](Self::poll_timeout).
/// See the [module documentation](super) for the promises.
#[derive(Debug)]
pub struct HlsSession {
    config: HlsConfig,
    /// Bumped on every `Open`, `Close` and upstream renumbering; answers to requests of
    /// another generation are ignored.
    generation: u64,
    /// The playlist URL while open.
    url: Option<String>,
    playlist_in_flight: bool,
    upstream: Upstream,
    /// Playlist fetches failed in a row.
    playlist_failures: u32,
    queue: FetchQueue,
    served: ServedBuffer,
    ready: bool,
    /// `Output::Ended` was emitted since the last `Open`.
    ended_reported: bool,
    timers: [Option<Instant>; 2],
    outputs: VecDeque<Output>,
    stats: HlsStats,
    /// Segments fetched, counted only with a planted bug (see [`crate::planted`]).
    planted_fetched: u64,
}

impl HlsSession {
    /// A closed session: nothing happens until [`Input::Open`].
    pub fn new(config: HlsConfig) -> Self {
        let served = ServedBuffer::starting_at(config.first_seq);
        HlsSession {
            config,
            generation: 0,
            url: None,
            playlist_in_flight: false,
            upstream: Upstream::default(),
            playlist_failures: 0,
            queue: FetchQueue::default(),
            served,
            ready: false,
            ended_reported: false,
            timers: [None; 2],
            outputs: VecDeque::new(),
            stats: HlsStats::default(),
            planted_fetched: 0,
        }
    }

    /// The next request or report for the driver.
    #[must_use]
    pub fn poll_output(&mut self) -> Option<Output> {
        self.outputs.pop_front()
    }

    /// When [`handle_timeout`](Self::handle_timeout) should next be called.
    #[must_use]
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.timers.iter().flatten().min().copied()
    }

    /// Whether the session polls upstream (between `Open` and `Close`).
    pub fn is_open(&self) -> bool {
        self.url.is_some()
    }

    /// Whether enough is held for players to start ([`Output::Ready`] was emitted).
    pub fn snapshot_ready(&self) -> bool {
        self.ready
    }

    /// The served playlist and segments, for players to read.
    pub fn snapshot(&self) -> HlsSnapshot {
        self.served
            .snapshot(self.config.window_segments, self.is_ended(), self.ready)
    }

    /// Counters and levels.
    pub fn stats(&self) -> HlsStats {
        HlsStats {
            generation: self.generation,
            fetches_in_flight: self.queue.in_flight(),
            pending_segments: self.queue.len(),
            segments_served: self.served.served(),
            held_segments: self.served.len(),
            held_bytes: self.served.bytes(),
            ..self.stats.clone()
        }
    }

    /// Feeds one report from the driver. Answers that are not awaited (another
    /// generation, a segment not in flight, a playlist not asked for) are ignored.
    pub fn handle_input(&mut self, now: Instant, input: Input) {
        match input {
            Input::Open { playlist_url } => self.open(playlist_url),
            Input::Close => self.close(),
            Input::PlaylistFetched { generation, result } => {
                if generation != self.generation || !self.playlist_in_flight {
                    return;
                }
                self.playlist_in_flight = false;
                let checked = result.and_then(|playlist| match playlist.validate() {
                    Ok(()) => Ok(playlist),
                    Err(error) => Err(format!("invalid playlist: {error}")),
                });
                match checked {
                    Ok(playlist) => self.playlist(now, &playlist),
                    Err(reason) => self.playlist_failed(now, reason),
                }
            }
            Input::SegmentFetched {
                generation,
                upstream_seq,
                result,
            } => {
                if generation != self.generation || !self.queue.is_in_flight(upstream_seq) {
                    return;
                }
                match result {
                    Ok(bytes) if !bytes.is_empty() => {
                        self.stats.segments_fetched += 1;
                        self.queue.complete(upstream_seq, bytes);
                    }
                    Ok(_) => self.segment_failed(now, upstream_seq, "empty body".into()),
                    Err(error) => self.segment_failed(now, upstream_seq, error),
                }
            }
        }
        self.settle();
    }

    /// Fires every timer due at `now`.
    pub fn handle_timeout(&mut self, now: Instant) {
        for kind in TIMERS {
            if self.timer(kind).is_some_and(|deadline| deadline <= now) {
                self.clear(kind);
                match kind {
                    TimerKind::Poll => self.fetch_playlist(),
                    TimerKind::SegmentRetry => self.queue.wake(now),
                }
            }
        }
        self.settle();
    }

    fn open(&mut self, url: String) {
        self.close();
        self.generation += 1;
        self.upstream = Upstream::default();
        self.playlist_failures = 0;
        self.ended_reported = false;
        // A new upstream session: whatever it sends does not continue what was served.
        self.queue.mark_gap();
        self.url = Some(url);
        self.fetch_playlist();
    }

    fn close(&mut self) {
        if self.url.take().is_none() {
            return;
        }
        let ended = self.is_ended();
        self.generation += 1;
        self.playlist_in_flight = false;
        self.clear(TimerKind::Poll);
        self.drain_queue();
        // An end that was not reached stays unreached: the rest was dropped.
        self.upstream.ended = ended;
    }

    fn fetch_playlist(&mut self) {
        let Some(url) = &self.url else {
            return;
        };
        if self.playlist_in_flight || self.upstream.ended {
            return;
        }
        self.playlist_in_flight = true;
        self.outputs.push_back(Output::FetchPlaylist {
            generation: self.generation,
            url: url.clone(),
        });
    }

    fn playlist_failed(&mut self, now: Instant, reason: String) {
        self.stats.playlist_errors += 1;
        self.playlist_failures = self.playlist_failures.saturating_add(1);
        let doublings = (self.playlist_failures - 1).min(30);
        let retry_in = self
            .config
            .error_backoff_initial
            .saturating_mul(1 << doublings)
            .min(self.config.error_backoff_max)
            .max(MIN_DELAY);
        self.set(TimerKind::Poll, now + retry_in);
        self.outputs.push_back(Output::Backoff { reason, retry_in });
    }

    fn playlist(&mut self, now: Instant, playlist: &UpstreamPlaylist) {
        self.stats.playlists_fetched += 1;
        self.playlist_failures = 0;
        let first = playlist.media_sequence;
        // `validate` checked that this does not overflow.
        let end = first + playlist.segments.len() as u64;
        if let Some(previous) = self.upstream.media_sequence.filter(|&p| first < p) {
            // The media sequence never goes backwards within one numbering: upstream
            // restarted. Every segment of the new numbering is new.
            self.outputs.push_back(Output::Gap(Gap::SequenceReset {
                previous,
                media_sequence: first,
            }));
            self.renumber();
            self.upstream.next_seq = Some(first);
        }
        let start = match self.upstream.next_seq {
            None => end
                .saturating_sub(self.config.start_segments as u64)
                .max(first),
            Some(next) if next < first => {
                self.skipped(next, first - next);
                self.queue.mark_gap();
                first
            }
            Some(next) => next.min(end),
        };
        let max_new = self.config.max_segments.max(1) as u64;
        let start = if end - start > max_new {
            self.skipped(start, end - start - max_new);
            self.queue.mark_gap();
            end - max_new
        } else {
            start
        };
        for (index, segment) in (0u64..).zip(&playlist.segments) {
            let upstream_seq = first + index;
            if upstream_seq >= start {
                self.queue.push(upstream_seq, segment);
            }
        }
        // Fetching falls behind upstream: the oldest unfetched make room (the queue
        // marks the gap where each was).
        for upstream_seq in self.queue.trim(self.config.max_segments.max(1)) {
            self.skipped(upstream_seq, 1);
        }
        self.upstream.media_sequence = Some(first);
        self.upstream.next_seq = Some(self.upstream.next_seq.map_or(end, |n| n.max(end)));
        self.upstream.ended = playlist.ended;
        if !playlist.ended {
            self.set(TimerKind::Poll, now + self.poll_interval(playlist));
        }
    }

    /// Upstream restarted its numbering: what was fetched of the old one is served, the
    /// rest dropped, and a new generation keeps old answers out.
    fn renumber(&mut self) {
        self.drain_queue();
        self.queue.mark_gap();
        self.generation += 1;
        self.upstream = Upstream::default();
    }

    fn skipped(&mut self, first_upstream_seq: u64, count: u64) {
        self.stats.segments_missed += count;
        self.outputs.push_back(Output::Gap(Gap::Skipped {
            first_upstream_seq,
            count,
        }));
    }

    fn segment_failed(&mut self, now: Instant, upstream_seq: u64, error: String) {
        self.stats.segment_errors += 1;
        if self.queue.attempts(upstream_seq) < self.config.segment_attempts.max(1) {
            let delay = self.config.segment_retry_delay.max(MIN_DELAY);
            self.queue.retry_at(upstream_seq, now + delay);
            return;
        }
        self.stats.segments_missed += 1;
        self.queue.remove(upstream_seq);
        self.outputs.push_back(Output::Gap(Gap::SegmentFailed {
            upstream_seq,
            error,
        }));
    }

    fn poll_interval(&self, playlist: &UpstreamPlaylist) -> Duration {
        let micros = u128::from(playlist.target_duration_s)
            * 1_000
            * u128::from(self.config.poll_factor_permille);
        Duration::from_micros(u64::try_from(micros).unwrap_or(u64::MAX))
            .min(self.config.max_poll_interval)
            .max(self.config.min_poll_interval)
            .max(MIN_DELAY)
    }

    /// Everything not fetched yet is dropped; what is fetched is served.
    fn drain_queue(&mut self) {
        self.queue.abandon_unfetched();
        self.serve_fetched();
    }

    /// After any change: serve what is next in order, start fetches, emit what became
    /// true, re-arm the retry timer.
    fn settle(&mut self) {
        self.serve_fetched();
        if self.is_open() {
            let max_in_flight = self.config.max_concurrent_fetches.max(1);
            while self.queue.in_flight() < max_in_flight {
                let Some((upstream_seq, url)) = self.queue.start_next() else {
                    break;
                };
                self.outputs.push_back(Output::FetchSegment {
                    generation: self.generation,
                    upstream_seq,
                    url,
                });
            }
        }
        let ended = self.is_ended();
        let ready_at = self
            .config
            .ready_segments
            .min(self.config.max_segments.max(1)) as u64;
        if !self.ready && (self.served.served() >= ready_at || ended) {
            self.ready = true;
            self.outputs.push_back(Output::Ready);
        }
        if ended && !self.ended_reported {
            self.ended_reported = true;
            self.outputs.push_back(Output::Ended);
        }
        self.timers[TimerKind::SegmentRetry as usize] = self.queue.next_retry();
    }

    fn serve_fetched(&mut self) {
        while let Some(fetched) = self.queue.pop_fetched() {
            if self
                .config
                .planted
                .has(crate::planted::Bug::HlsSegmentSkipped)
            {
                self.planted_fetched += 1;
                if self.planted_fetched % 7 == 0 && !fetched.discontinuity {
                    continue;
                }
            }
            let bytes = fetched.bytes.len();
            let seq = self.served.push(
                fetched.duration_us,
                fetched.discontinuity,
                fetched.bytes.into(),
                self.config.max_segments.max(1),
                self.config.max_buffer_bytes,
            );
            self.outputs.push_back(Output::SegmentReady { seq, bytes });
        }
    }

    fn is_ended(&self) -> bool {
        self.upstream.ended && self.queue.is_empty()
    }

    fn timer(&self, kind: TimerKind) -> Option<Instant> {
        self.timers[kind as usize]
    }

    fn set(&mut self, kind: TimerKind, at: Instant) {
        self.timers[kind as usize] = Some(at);
    }

    fn clear(&mut self, kind: TimerKind) {
        self.timers[kind as usize] = None;
    }
}

impl crate::machine::Machine for HlsSession {
    type Input = Input;
    type Output = Output;

    fn handle_input(&mut self, now: Instant, input: Input) {
        HlsSession::handle_input(self, now, input);
    }

    fn handle_timeout(&mut self, now: Instant) {
        HlsSession::handle_timeout(self, now);
    }

    fn poll_output(&mut self) -> Option<Output> {
        HlsSession::poll_output(self)
    }

    fn poll_timeout(&self) -> Option<Instant> {
        HlsSession::poll_timeout(self)
    }
}
