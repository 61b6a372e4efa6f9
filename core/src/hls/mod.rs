//! HLS session: the fetch loop that turns an engine's live HLS into a stable playlist.
//!
//! An [`HlsSession`] decides *when* to poll the engine's media playlist, *which*
//! segments to fetch, and *what* is served: a bounded buffer of fetched segments, the
//! sliding window of them that the served playlist lists, and that playlist's media
//! sequence and discontinuity sequence. The driver performs the HTTP requests, parses
//! the upstream m3u8 into an [`UpstreamPlaylist`] (with the
//! [`playlist`](crate::playlist) reader, resolving every URI), and publishes
//! [`HlsSession::snapshot`] for players to read.
//!
//! The engine session (which engine, reconnects, failover, idle) is the
//! [`Channel`](crate::channel::Channel) machine's job: its `OpenPlayback { url }` becomes
//! [`Input::Open`] here, its `ClosePlayback` becomes [`Input::Close`], and every
//! [`Output::SegmentReady`] is fed back to it as `Data(bytes)`, so that its stall,
//! reconnect and idle logic applies to HLS unchanged.
//!
//! # What the session promises
//!
//! - **Polling.** The playlist is fetched at once on [`Input::Open`], then every target
//!   duration × [`HlsConfig::poll_factor_permille`] ‰ (at least
//!   [`HlsConfig::min_poll_interval`]) after each answer; never two at once. A failed
//!   fetch or an invalid playlist (see [`UpstreamPlaylist::validate`]) backs off from
//!   [`HlsConfig::error_backoff_initial`], doubling up to
//!   [`HlsConfig::error_backoff_max`], and says why in [`Output::Backoff`]. Polling stops
//!   once upstream announced its end (`#EXT-X-ENDLIST`).
//! - **Every segment, in order.** The first playlist after an `Open` starts
//!   [`HlsConfig::start_segments`] from its live edge; from then on every new upstream
//!   segment is fetched, oldest first, at most [`HlsConfig::max_concurrent_fetches`] at
//!   a time, and served in upstream order whatever order the fetches finish in.
//! - **No silent gap.** Whenever media is missing between two served segments, the
//!   later one is marked `discontinuity` (`#EXT-X-DISCONTINUITY`), and an
//!   [`Output::Gap`] says why: a segment failed [`HlsConfig::segment_attempts`] times,
//!   upstream skipped media-sequence numbers (or moved past segments before they were
//!   fetched), upstream restarted its numbering, or too many segments waited to be
//!   fetched. A new `Open` after something was served, and upstream's own
//!   `#EXT-X-DISCONTINUITY`, mark one too.
//! - **Stable served numbering.** Served sequence numbers start at 0 and grow by one
//!   per served segment across reconnects and upstream renumbering; the served media
//!   sequence and discontinuity sequence never go backwards. See [`HlsSnapshot`].
//! - **Bounded.** Served segments are held up to [`HlsConfig::max_segments`] and
//!   [`HlsConfig::max_buffer_bytes`] (oldest evicted first; the newest is always kept),
//!   and at most `max_segments` upstream segments wait to be fetched or served.
//!
//! Drive order: after every [`HlsSession::handle_input`] or
//! [`HlsSession::handle_timeout`] call, drain [`HlsSession::poll_output`], then read
//! [`HlsSession::poll_timeout`] and call `handle_timeout` no later than that. `now`
//! never goes backwards; early `handle_timeout` calls are harmless. Every fetch the
//! session asks for must be answered, with an error if it timed out; answers carry the
//! `generation` of the request, and answers of an older generation (fetches that were
//! in flight at a [`Input::Close`]) are ignored.
//!
//! ```
//! use acemux_core::hls::{HlsConfig, HlsSession, Input, Output, UpstreamPlaylist, UpstreamSegment};
//! use acemux_core::Instant;
//! use bytes::Bytes;
//!
//! let mut hls = HlsSession::new(HlsConfig::default());
//! let now = Instant::ZERO;
//! hls.handle_input(now, Input::Open { playlist_url: "http://engine/live.m3u8".into() });
//! let Some(Output::FetchPlaylist { generation, url }) = hls.poll_output() else {
//!     unreachable!("an open fetches the playlist at once")
//! };
//! // The driver fetches `url` and parses it.
//! let _ = url;
//! let segment = |n: u64| UpstreamSegment {
//!     duration_us: 2_000_000,
//!     uri: format!("http://engine/{n}.ts"),
//!     discontinuity: false,
//! };
//! let playlist = UpstreamPlaylist {
//!     target_duration_s: 2,
//!     media_sequence: 7,
//!     segments: vec![segment(7), segment(8)],
//!     ended: false,
//! };
//! hls.handle_input(now, Input::PlaylistFetched { generation, result: Ok(playlist) });
//! while let Some(output) = hls.poll_output() {
//!     match output {
//!         Output::FetchSegment { generation, upstream_seq, url } => {
//!             // Fetch `url`, then report the body (or the error).
//!             let _ = url;
//!             let result = Ok(Bytes::from_static(b"\x47 media"));
//!             hls.handle_input(now, Input::SegmentFetched { generation, upstream_seq, result });
//!         }
//!         Output::SegmentReady { seq, bytes } => {
//!             // Feed `Data(bytes)` to the channel; publish a new snapshot.
//!             let _ = (seq, bytes);
//!         }
//!         _ => {}
//!     }
//! }
//! let snapshot = hls.snapshot();
//! assert_eq!(snapshot.segments.len(), 2);
//! let text = snapshot.render(|seq| format!("/ace/hls/abc/{seq}.ts"));
//! assert!(text.ends_with("#EXTINF:2.000000,\n/ace/hls/abc/1.ts\n"));
//! // Sleep until `hls.poll_timeout()`, then call `hls.handle_timeout(now)`: the next poll.
//! assert!(hls.poll_timeout().is_some());
//! ```

mod body;
mod machine;
mod queue;
mod served;

use bytes::Bytes;
use thiserror::Error;

use crate::time::{Duration, Instant};

pub use body::SegmentBody;
pub use machine::HlsSession;
pub(crate) use served::ServedBuffer;
pub use served::{HlsSnapshot, ServedSegment};

/// Longest target duration accepted from upstream; a live playlist announcing more is
/// broken, and polling it that rarely would look like a dead stream.
pub const MAX_TARGET_DURATION_S: u64 = 3600;

/// Longest segment duration accepted from upstream, in µs (one hour).
pub const MAX_SEGMENT_DURATION_US: u64 = MAX_TARGET_DURATION_S * 1_000_000;

/// Timing and limits of an [`HlsSession`].
#[derive(Clone, Debug)]
pub struct HlsConfig {
    /// Poll interval as a fraction of the upstream target duration, in thousandths
    /// (500: every half target duration, so that a new segment waits at most half a
    /// segment before it is seen).
    pub poll_factor_permille: u32,
    /// Shortest interval between two playlist polls (also the floor for a tiny or
    /// zero `poll_factor_permille`).
    pub min_poll_interval: Duration,
    /// Longest interval between two playlist polls, whatever target duration the
    /// engine declares (an absurd one would otherwise stop polling for days). The
    /// floors above win over it.
    pub max_poll_interval: Duration,
    /// Delay before the first retry after a failed playlist fetch; doubles per
    /// consecutive failure.
    pub error_backoff_initial: Duration,
    /// Longest delay between playlist retries.
    pub error_backoff_max: Duration,
    /// Most segment fetches in flight at once (0 is taken as 1).
    pub max_concurrent_fetches: usize,
    /// Tries per segment before it is given up and becomes a discontinuity (0 is taken
    /// as 1).
    pub segment_attempts: u32,
    /// Delay before a failed segment fetch is tried again.
    pub segment_retry_delay: Duration,
    /// Most served segments held (0 is taken as 1); also the most upstream segments
    /// waiting to be fetched or served.
    pub max_segments: usize,
    /// Most bytes of served segments held. The newest segment is always held, even when
    /// it alone is larger.
    pub max_buffer_bytes: usize,
    /// Segments taken from the live edge of the first playlist after an
    /// [`Input::Open`]. Older ones are not fetched: after a reconnect they were most
    /// likely served already, and starting near live keeps the delay short.
    pub start_segments: usize,
    /// Served segments after which [`Output::Ready`] is emitted (capped by
    /// `max_segments`). Common players (ffmpeg, VLC, hls.js) start three target
    /// durations behind the live edge of a playlist, so with three segments held a
    /// player can start at once and play without stalling on its first segments.
    pub ready_segments: usize,
    /// Segments listed by the served playlist (its sliding window; 0 is taken as 1).
    /// Older held segments can still be fetched by players that read an older playlist.
    pub window_segments: usize,
    /// The sequence number of the first segment served, and the discontinuity
    /// sequence the playlist starts with: [`first_sequence`] of the channel's start,
    /// so that a channel started again for the same players continues their numbers.
    pub first_seq: u64,
    /// Bugs planted for the simulation's self-test; none in the product.
    pub planted: crate::planted::Planted,
}

/// The first sequence number of a channel's HLS started at `now`: tenths of a second
/// since the Unix epoch. A player that polls one URL across a channel's end and a new
/// start (its engine idle-stopped while the player stalled, acemux restarted) then sees
/// its media and discontinuity sequences only grow, as RFC 8216 requires, as long as
/// segments last 0.1 s or more and the clock does not go back.
pub fn first_sequence(now: Instant) -> u64 {
    now.as_micros() / 100_000
}

impl Default for HlsConfig {
    fn default() -> Self {
        HlsConfig {
            poll_factor_permille: 500,
            min_poll_interval: Duration::from_millis(250),
            max_poll_interval: Duration::from_secs(10),
            error_backoff_initial: Duration::from_secs(1),
            error_backoff_max: Duration::from_secs(8),
            max_concurrent_fetches: 2,
            segment_attempts: 3,
            segment_retry_delay: Duration::from_millis(500),
            max_segments: 30,
            max_buffer_bytes: 64 * 1024 * 1024,
            start_segments: 3,
            ready_segments: 3,
            window_segments: 6,
            first_seq: 0,
            planted: crate::planted::Planted::NONE,
        }
    }
}

/// An upstream media playlist, as the driver parsed it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct UpstreamPlaylist {
    /// `#EXT-X-TARGETDURATION`, in seconds.
    pub target_duration_s: u64,
    /// `#EXT-X-MEDIA-SEQUENCE` (0 when absent): the upstream number of the first segment.
    pub media_sequence: u64,
    /// The segments, oldest first.
    pub segments: Vec<UpstreamSegment>,
    /// Whether the playlist has `#EXT-X-ENDLIST`.
    pub ended: bool,
}

/// One segment of an [`UpstreamPlaylist`].
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct UpstreamSegment {
    /// `#EXTINF` duration, in µs.
    pub duration_us: u64,
    /// Absolute URI, resolved and checked by the driver.
    pub uri: String,
    /// Whether `#EXT-X-DISCONTINUITY` precedes the segment.
    pub discontinuity: bool,
}

impl UpstreamPlaylist {
    /// Checks what the session relies on; a playlist failing this is treated like a
    /// failed fetch (backoff, then a new poll).
    pub fn validate(&self) -> Result<(), InvalidPlaylist> {
        if self.target_duration_s == 0 {
            return Err(InvalidPlaylist::ZeroTargetDuration);
        }
        if self.target_duration_s > MAX_TARGET_DURATION_S {
            return Err(InvalidPlaylist::TargetDurationTooLong(
                self.target_duration_s,
            ));
        }
        let count = u64::try_from(self.segments.len()).unwrap_or(u64::MAX);
        if self.media_sequence.checked_add(count).is_none() {
            return Err(InvalidPlaylist::SequenceOverflow);
        }
        for (index, segment) in (0u64..).zip(&self.segments) {
            // Cannot overflow: checked just above.
            let upstream_seq = self.media_sequence + index;
            if segment.duration_us == 0 || segment.duration_us > MAX_SEGMENT_DURATION_US {
                return Err(InvalidPlaylist::SegmentDuration {
                    upstream_seq,
                    duration_us: segment.duration_us,
                });
            }
            if segment.uri.is_empty() {
                return Err(InvalidPlaylist::EmptyUri { upstream_seq });
            }
        }
        Ok(())
    }
}

/// Why an [`UpstreamPlaylist`] was refused.
#[derive(Clone, Debug, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum InvalidPlaylist {
    /// `#EXT-X-TARGETDURATION` is 0 (or missing).
    #[error("target duration is 0")]
    ZeroTargetDuration,
    /// `#EXT-X-TARGETDURATION` is above [`MAX_TARGET_DURATION_S`].
    #[error("target duration of {0} s is longer than an hour")]
    TargetDurationTooLong(u64),
    /// The media sequence plus the segment count overflows.
    #[error("media sequence overflows")]
    SequenceOverflow,
    /// A segment lasts 0 µs or more than [`MAX_SEGMENT_DURATION_US`].
    #[error("segment {upstream_seq} has an invalid duration of {duration_us} us")]
    SegmentDuration {
        /// The segment's upstream number.
        upstream_seq: u64,
        /// Its `#EXTINF` duration.
        duration_us: u64,
    },
    /// A segment has no URI.
    #[error("segment {upstream_seq} has no uri")]
    EmptyUri {
        /// The segment's upstream number.
        upstream_seq: u64,
    },
}

/// What the driver reports to the session.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Input {
    /// Start polling this playlist URL (the channel's `OpenPlayback`). While open, this
    /// reopens: as a [`Input::Close`] followed by an `Open`.
    Open {
        /// The engine's media playlist URL.
        playlist_url: String,
    },
    /// Stop polling (the channel's `ClosePlayback`). Segments already fetched are
    /// served; unfetched ones are dropped, and answers to fetches still in flight are
    /// ignored. The served playlist stays as it is.
    Close,
    /// The answer to an [`Output::FetchPlaylist`]: the parsed playlist, or why the fetch
    /// or the parse failed.
    PlaylistFetched {
        /// The request's generation.
        generation: u64,
        /// The playlist, or the error.
        result: Result<UpstreamPlaylist, String>,
    },
    /// The answer to an [`Output::FetchSegment`]: the whole body, or why the fetch
    /// failed. An empty body counts as a failure.
    SegmentFetched {
        /// The request's generation.
        generation: u64,
        /// The request's upstream segment number.
        upstream_seq: u64,
        /// The body, or the error.
        result: Result<Bytes, String>,
    },
}

/// What the session asks of the driver, or tells it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Output {
    /// Fetch and parse the media playlist; answer with [`Input::PlaylistFetched`].
    FetchPlaylist {
        /// Echo it in the answer.
        generation: u64,
        /// The playlist URL.
        url: String,
    },
    /// Fetch a segment; answer with [`Input::SegmentFetched`].
    FetchSegment {
        /// Echo it in the answer.
        generation: u64,
        /// Echo it in the answer.
        upstream_seq: u64,
        /// The segment URI.
        url: String,
    },
    /// A new segment is served, next in served order: feed the channel `Data(bytes)`
    /// and publish a new snapshot (once per batch of outputs is enough).
    SegmentReady {
        /// Its served sequence number.
        seq: u64,
        /// Its size.
        bytes: usize,
    },
    /// Enough is held for players to start ([`HlsConfig::ready_segments`], or everything
    /// once upstream ended). Emitted once per session.
    Ready,
    /// Upstream ended (`#EXT-X-ENDLIST`) and everything it listed is served or given up:
    /// the snapshot now ends with `#EXT-X-ENDLIST`. Emitted once per `Open`.
    Ended,
    /// Media is missing before the next served segment, which is marked a
    /// discontinuity. For logs and metrics.
    Gap(Gap),
    /// A playlist fetch failed or its playlist was invalid; the next poll is in
    /// `retry_in`. For logs.
    Backoff {
        /// What went wrong.
        reason: String,
        /// Delay until the next poll.
        retry_in: Duration,
    },
}

/// Why media is missing (see [`Output::Gap`]).
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Gap {
    /// A segment failed every one of its [`HlsConfig::segment_attempts`] tries.
    SegmentFailed {
        /// Its upstream number.
        upstream_seq: u64,
        /// The last error.
        error: String,
    },
    /// Upstream segments were never fetched: the playlist's media sequence jumped past
    /// them, or more segments waited than [`HlsConfig::max_segments`].
    Skipped {
        /// Upstream number of the first one skipped.
        first_upstream_seq: u64,
        /// How many.
        count: u64,
    },
    /// Upstream's media sequence went backwards: it restarted its numbering. Segments
    /// of the old numbering not fetched yet are dropped.
    SequenceReset {
        /// The media sequence of the previous playlist.
        previous: u64,
        /// The new one.
        media_sequence: u64,
    },
}

/// Counters and levels of an [`HlsSession`], for metrics, the status page and tests.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct HlsStats {
    /// The current generation (see [`Output::FetchPlaylist`]).
    pub generation: u64,
    /// Playlists received and accepted.
    pub playlists_fetched: u64,
    /// Playlist fetches that failed or returned an invalid playlist.
    pub playlist_errors: u64,
    /// Segment fetches that returned a body.
    pub segments_fetched: u64,
    /// Segment fetches that failed (each try counts).
    pub segment_errors: u64,
    /// Upstream segments given up or skipped (each is part of an [`Output::Gap`]); not
    /// counting unfetched ones dropped by a `Close` or an upstream renumbering.
    pub segments_missed: u64,
    /// Segments served so far (the next served sequence number).
    pub segments_served: u64,
    /// Segment fetches in flight.
    pub fetches_in_flight: usize,
    /// Upstream segments waiting to be fetched or served.
    pub pending_segments: usize,
    /// Served segments held.
    pub held_segments: usize,
    /// Bytes of the served segments held.
    pub held_bytes: usize,
}

#[cfg(test)]
mod tests;
