//! HLS cut from a TS channel's own stream: the segmenter, the served segments, the HLS
//! players (viewers of the channel like its TS viewers) and the players waiting for
//! the first playlist. One engine session serves both formats.
//!
//! Every TS channel cuts, watched by HLS players or not, so that a new HLS player is
//! answered at once from a playlist that already lists segments. Segments share the
//! memory of the chunks the fan-out ring holds, so those within the ring's reach cost
//! little; older ones would keep old chunks alive. So while no HLS player is present
//! (none seen yet, or all gone idle) the channel holds only the playlist's window and
//! [`UNWATCHED_MARGIN_SEGMENTS`] more; once a player asks, up to
//! [`CutHlsConfig::max_segments`] are held again (from the next cut on, the older ones
//! come back as they are cut).

use bytes::Bytes;

use super::hls::{ChannelState, WaitFailure};
use super::players::Players;
use super::vocab::WaiterId;
use super::StartFailure;
use crate::hls::{HlsSnapshot, ServedBuffer};
use crate::machine::Deadlines;
use crate::time::{Duration, Instant};
use crate::ts::segmenter::{Segmenter, SegmenterConfig, SegmenterStats};

/// Segments held beyond the playlist's window while no HLS player is present: a
/// player that read the playlist just before a cut is counted a little later (its
/// request reaches the channel after the segments it names were cut past), and still
/// finds the oldest segments it was given.
pub const UNWATCHED_MARGIN_SEGMENTS: usize = 2;

/// Bounds of the HLS a TS channel cuts.
#[derive(Clone, Debug)]
pub struct CutHlsConfig {
    /// How segments are cut (`--hls-segment-target`).
    pub segmenter: SegmenterConfig,
    /// Most segments held while HLS players are present (0 is taken as 1); without any,
    /// at most the window and [`UNWATCHED_MARGIN_SEGMENTS`] (see the [module
    /// docs](self)).
    pub max_segments: usize,
    /// Most bytes of segments held; the newest segment is always held.
    pub max_buffer_bytes: usize,
    /// Segments the playlist lists (0 is taken as 1).
    pub window_segments: usize,
    /// Segments cut before a new channel answers its first players
    /// (`--hls-ready-segments`; capped by `max_segments`, at least 1).
    pub ready_segments: usize,
    /// A player that requests nothing this long no longer counts as a viewer.
    pub idle_timeout: Duration,
    /// Longest wait for the first playlist (the channel's start timeout).
    pub first_playlist_timeout: Duration,
    /// Players waiting for the first playlist at once.
    pub max_waiters: usize,
    /// Players told apart at once.
    pub max_players: usize,
    /// The first segment's sequence number (see [`crate::hls::first_sequence`]).
    pub first_seq: u64,
    /// Bugs planted for the simulation's self-test; none in the product.
    pub planted: crate::planted::Planted,
}

impl Default for CutHlsConfig {
    fn default() -> Self {
        CutHlsConfig {
            segmenter: SegmenterConfig::default(),
            max_segments: 30,
            max_buffer_bytes: 64 * 1024 * 1024,
            window_segments: 6,
            ready_segments: 3,
            idle_timeout: Duration::from_secs(30),
            first_playlist_timeout: Duration::from_secs(30),
            max_waiters: 1024,
            max_players: 1000,
            first_seq: 0,
            planted: crate::planted::Planted::NONE,
        }
    }
}

/// What the cut HLS tells the TS half after an input.
#[derive(Debug, Default)]
pub(super) struct CutEvents {
    /// Waiters to answer.
    pub(super) answers: Vec<(WaiterId, Result<(), WaitFailure>)>,
    /// The player count changed.
    pub(super) players_changed: bool,
    /// Enough segments are held for players to start (once).
    pub(super) ready: bool,
    /// Segments cut, oldest first: whether each starts at a random-access point,
    /// follows a discontinuity, and its duration.
    pub(super) cut: Vec<(bool, bool, u64)>,
}

/// The HLS half of a TS channel; see the [module docs](self).
#[derive(Debug)]
pub(super) struct CutHls {
    config: CutHlsConfig,
    segmenter: Segmenter,
    served: ServedBuffer,
    players: Players,
    waiters: Deadlines<WaiterId>,
    ready: bool,
    failure: Option<StartFailure>,
    ended: bool,
    published_segments: u64,
    published_ready: bool,
    /// Segments cut, counted only with a planted bug (see [`crate::planted`]).
    planted_cut: u64,
}

impl CutHls {
    pub(super) fn new(config: CutHlsConfig) -> Self {
        let served = ServedBuffer::starting_at(config.first_seq);
        CutHls {
            segmenter: Segmenter::new(config.segmenter.clone()),
            config,
            served,
            players: Players::default(),
            waiters: Deadlines::default(),
            ready: false,
            failure: None,
            ended: false,
            published_segments: 0,
            published_ready: false,
            planted_cut: 0,
        }
    }

    pub(super) fn players(&self) -> usize {
        self.players.len()
    }

    pub(super) fn waiters(&self) -> usize {
        self.waiters.len()
    }

    pub(super) fn segmenter_stats(&self) -> SegmenterStats {
        self.segmenter.stats()
    }

    /// Segments cut so far.
    pub(super) fn segments_cut(&self) -> u64 {
        self.served.served()
    }

    /// Media bytes of the playback: cut what they complete.
    pub(super) fn data(&mut self, now: Instant, bytes: Bytes, events: &mut CutEvents) {
        if self.ended {
            return;
        }
        self.segmenter.push(now, bytes);
        self.take_segments(now, events);
    }

    /// A new playback opens (a reconnect, another engine session): what follows is a
    /// discontinuity.
    pub(super) fn new_playback(&mut self, now: Instant, events: &mut CutEvents) {
        self.segmenter.discontinuity(now);
        self.take_segments(now, events);
    }

    fn take_segments(&mut self, now: Instant, events: &mut CutEvents) {
        while let Some(segment) = self.segmenter.poll_segment() {
            events.cut.push((
                segment.random_access,
                segment.discontinuity,
                segment.duration_us,
            ));
            if self
                .config
                .planted
                .has(crate::planted::Bug::HlsSegmentSkipped)
            {
                self.planted_cut += 1;
                if self.planted_cut % 7 == 0 && !segment.discontinuity {
                    continue;
                }
            }
            self.served.push(
                segment.duration_us,
                segment.discontinuity,
                segment.body,
                self.held_segments(),
                self.config.max_buffer_bytes,
            );
        }
        let ready_at = self
            .config
            .ready_segments
            .clamp(1, self.config.max_segments.max(1));
        if !self.ready && self.served.served() >= ready_at as u64 {
            self.ready = true;
            events.ready = true;
            // The players that waited start their idle clock now.
            self.players.refresh_all(now);
            let waiters: Vec<WaiterId> = self.waiters.ids().collect();
            self.waiters.clear();
            events
                .answers
                .extend(waiters.into_iter().map(|waiter| (waiter, Ok(()))));
        }
    }

    /// How many segments are held now: all that the bounds allow while HLS players
    /// are present or waiting, else only what the live playlist needs.
    fn held_segments(&self) -> usize {
        let max = self.config.max_segments.max(1);
        if self.players.len() > 0 || !self.waiters.is_empty() {
            max
        } else {
            max.min(self.config.window_segments.max(1) + UNWATCHED_MARGIN_SEGMENTS)
        }
    }

    /// Segments held now.
    pub(super) fn held(&self) -> usize {
        self.served.len()
    }

    /// Player `token` requested the playlist or a segment.
    pub(super) fn seen(&mut self, now: Instant, token: String, events: &mut CutEvents) {
        if !self.ended && self.players.seen(token, now, self.config.max_players) {
            events.players_changed = true;
        }
    }

    /// A player waits for the first playlist: answered now, or once ready (or why not).
    pub(super) fn wait(&mut self, now: Instant, waiter: WaiterId, events: &mut CutEvents) {
        let state = ChannelState {
            ready: self.ready,
            failure: self.failure.as_ref(),
            ended: self.ended,
        };
        let result = state.answer_or_wait(
            &mut self.waiters,
            waiter,
            self.config.max_waiters,
            now + self.config.first_playlist_timeout,
        );
        if let Some(result) = result {
            events.answers.push((waiter, result));
        }
    }

    fn answer_all(&mut self, failure: StartFailure, events: &mut CutEvents) {
        let waiters: Vec<WaiterId> = self.waiters.ids().collect();
        self.waiters.clear();
        events.answers.extend(
            waiters
                .into_iter()
                .map(|waiter| (waiter, Err(WaitFailure::Start(failure.clone())))),
        );
    }

    pub(super) fn start_failed(&mut self, failure: StartFailure, events: &mut CutEvents) {
        self.failure = Some(failure.clone());
        self.answer_all(failure, events);
    }

    pub(super) fn ended(&mut self, events: &mut CutEvents) {
        self.ended = true;
        let failure = self.failure.clone().unwrap_or(StartFailure::Timeout);
        self.answer_all(failure, events);
        self.players.clear();
    }

    /// When the quietest player expires; none while players wait for the first
    /// playlist (they are watching, not idle).
    fn expiry(&self) -> Option<Instant> {
        if !self.waiters.is_empty() || self.ended {
            return None;
        }
        self.players.expiry(self.config.idle_timeout)
    }

    pub(super) fn handle_timeout(&mut self, now: Instant, events: &mut CutEvents) {
        if self.ended {
            return;
        }
        while let Some(waiter) = self.waiters.pop_due(now) {
            events
                .answers
                .push((waiter, Err(WaitFailure::Start(StartFailure::Timeout))));
        }
        if self.expiry().is_some_and(|at| at <= now)
            && self.players.expire(now, self.config.idle_timeout)
        {
            events.players_changed = true;
        }
    }

    pub(super) fn poll_timeout(&self) -> Option<Instant> {
        if self.ended {
            return None;
        }
        [self.waiters.next(), self.expiry()]
            .into_iter()
            .flatten()
            .min()
    }

    /// The served playlist, when it changed since the last call.
    pub(super) fn changed_snapshot(&mut self) -> Option<HlsSnapshot> {
        let served = self.served.served();
        if served == self.published_segments && self.ready == self.published_ready {
            return None;
        }
        self.published_segments = served;
        self.published_ready = self.ready;
        Some(self.snapshot())
    }

    /// The served playlist now.
    pub(super) fn snapshot(&self) -> HlsSnapshot {
        self.served
            .snapshot(self.config.window_segments.max(1), false, self.ready)
    }
}
