//! The MPEG-TS half of a channel: the playback body feeds a [`Fanout`], whose
//! deliveries go to the viewers. A joining viewer awaits its first media (the driver
//! answers its request only then) for at most the start timeout.
//!
//! With [`TsMedia::with_hls`] the same bytes are also cut into HLS segments (see
//! [`crate::ts::segmenter`]): HLS players are viewers of the channel too, so one engine
//! session serves both formats, and the channel stays while either kind is present.

use bytes::Bytes;

use super::composed::{ComposedChannel, Context, Media, MediaCommand};
use super::cut::{CutEvents, CutHls, CutHlsConfig};
use super::hls::WaitFailure;
use super::vocab::{CloseReason, Notice, PlaybackId, WaiterId};
use super::{SessionInput as ChannelInput, StartFailure};
use crate::fanout::{self, Fanout, FanoutConfig, FanoutError, ViewerId};
use crate::hls::HlsSnapshot;
use crate::machine::Deadlines;
use crate::time::{Duration, Instant};
use crate::ts::segmenter::SegmenterStats;

/// A TS channel: engine session, engine calls, fan-out and viewers.
pub type TsChannel = ComposedChannel<TsMedia>;

/// What the driver reports about TS viewers and the playback body.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TsInput {
    /// A viewer wants the stream; it gets [`TsOutput::Deliver`] with `first: true` (then
    /// its response head goes out) or [`TsOutput::Close`].
    Join(ViewerId),
    /// The viewer wrote everything handed to it and wants more.
    Ready(ViewerId),
    /// The viewer went away (its client closed, or its queue could not take a
    /// delivery).
    Leave(ViewerId),
    /// The playback URL answered with a success status.
    PlaybackOpened(PlaybackId),
    /// Bytes of the playback body.
    PlaybackData(PlaybackId, Bytes),
    /// The playback request or body failed.
    PlaybackFailed(PlaybackId, String),
    /// The playback body ended.
    PlaybackEnded(PlaybackId),
    /// An HLS player (by token) requested the playlist or a segment (a channel that
    /// cuts HLS; ignored otherwise).
    PlayerSeen(String),
    /// An HLS player waits for the first playlist; answered with [`TsOutput::Answer`].
    WaitReady(WaiterId),
}

/// What a TS channel asks of its driver.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TsOutput {
    /// Open the playback URL; report its events with this id.
    OpenPlayback {
        /// Its id.
        playback: PlaybackId,
        /// The URL.
        url: String,
    },
    /// Close that playback connection; events still coming from it are ignored.
    ClosePlayback(PlaybackId),
    /// Write `chunks` to the viewer, then report [`TsInput::Ready`]. `first`: the
    /// viewer's first media, so its response head goes out with it.
    Deliver {
        /// Whom to write to.
        viewer: ViewerId,
        /// Zero-copy slices of the ring.
        chunks: Vec<Bytes>,
        /// Whether this is the viewer's first media.
        first: bool,
    },
    /// Write these null packets to a viewer that has had nothing for a while, then
    /// report [`TsInput::Ready`].
    Keepalive {
        /// Whom to write to.
        viewer: ViewerId,
        /// The packets.
        chunk: Bytes,
    },
    /// The viewer is removed; answer or close its connection.
    Close {
        /// Who.
        viewer: ViewerId,
        /// Why.
        reason: CloseReason,
    },
    /// The cut HLS playlist changed: publish this snapshot for requests to read.
    Publish(HlsSnapshot),
    /// Answer a player waiting for the first playlist: it can be read now, or why not.
    Answer {
        /// Who.
        waiter: WaiterId,
        /// The answer.
        result: Result<(), WaitFailure>,
    },
    /// The cut HLS holds enough segments for players to start.
    HlsReady,
    /// A segment was cut from the stream (for logs and metrics).
    SegmentCut {
        /// It starts at a random-access point (a keyframe), as players want.
        random_access: bool,
        /// It follows a discontinuity (a new playback, a timestamp jump).
        discontinuity: bool,
        /// Its duration in µs.
        duration_us: u64,
    },
    /// Upstream bytes that are not MPEG-TS packets were discarded.
    Discarded {
        /// How many bytes this time.
        bytes: u64,
        /// Whether these are the channel's first.
        first: bool,
    },
}

/// The TS half of a channel.
#[derive(Debug)]
pub struct TsMedia {
    fanout: Fanout,
    /// Viewers awaiting their first media, by deadline.
    awaiting: Deadlines<ViewerId>,
    first_media_timeout: Duration,
    playback: Option<PlaybackId>,
    next_playback: u64,
    discarded_any: bool,
    ended: bool,
    hls: Option<CutHls>,
}

impl TsMedia {
    /// A fan-out with `fanout` limits; a joining viewer waits at most
    /// `first_media_timeout` for its first media.
    pub fn new(fanout: FanoutConfig, first_media_timeout: Duration) -> Self {
        TsMedia {
            fanout: Fanout::new(fanout),
            awaiting: Deadlines::default(),
            first_media_timeout,
            playback: None,
            next_playback: 1,
            discarded_any: false,
            ended: false,
            hls: None,
        }
    }

    /// Cuts HLS from the stream too, within `config`.
    #[must_use]
    pub fn with_hls(mut self, config: CutHlsConfig) -> Self {
        self.hls = Some(CutHls::new(config));
        self
    }

    /// Whether the channel cuts HLS.
    pub fn cuts_hls(&self) -> bool {
        self.hls.is_some()
    }

    /// HLS players present now.
    pub fn hls_players(&self) -> usize {
        self.hls.as_ref().map_or(0, CutHls::players)
    }

    /// HLS players waiting for the first playlist.
    pub fn hls_waiters(&self) -> usize {
        self.hls.as_ref().map_or(0, CutHls::waiters)
    }

    /// Segments cut so far.
    pub fn hls_segments_cut(&self) -> u64 {
        self.hls.as_ref().map_or(0, CutHls::segments_cut)
    }

    /// Cut segments held now.
    pub fn hls_segments_held(&self) -> usize {
        self.hls.as_ref().map_or(0, CutHls::held)
    }

    /// The segmenter's counters.
    pub fn segmenter_stats(&self) -> Option<SegmenterStats> {
        self.hls.as_ref().map(CutHls::segmenter_stats)
    }

    /// The cut HLS playlist now.
    pub fn hls_snapshot(&self) -> Option<HlsSnapshot> {
        self.hls.as_ref().map(CutHls::snapshot)
    }

    /// Emits what the cut HLS reported: the ready playlist before the answers (the
    /// answered players read it at once), and the viewer count when it changed.
    fn cut_events(&mut self, now: Instant, events: CutEvents, cx: &mut Context<'_, TsOutput>) {
        for (random_access, discontinuity, duration_us) in events.cut {
            cx.emit(TsOutput::SegmentCut {
                random_access,
                discontinuity,
                duration_us,
            });
        }
        if events.ready {
            cx.emit(TsOutput::HlsReady);
            if let Some(snapshot) = self.hls.as_mut().and_then(CutHls::changed_snapshot) {
                cx.emit(TsOutput::Publish(snapshot));
            }
        }
        for (waiter, result) in events.answers {
            cx.emit(TsOutput::Answer { waiter, result });
        }
        if events.players_changed {
            self.viewers_changed(now, cx);
        }
    }

    /// The fan-out, to read its stats.
    pub fn fanout(&self) -> &Fanout {
        &self.fanout
    }

    /// Viewers awaiting their first media.
    pub fn awaiting(&self) -> usize {
        self.awaiting.len()
    }

    /// The open playback connection.
    pub fn playback(&self) -> Option<PlaybackId> {
        self.playback
    }

    fn viewers_changed(&mut self, now: Instant, cx: &mut Context<'_, TsOutput>) {
        let count = self.fanout.viewer_count() + self.hls_players();
        cx.notice(Notice::Viewers(count));
        cx.feed(now, ChannelInput::Viewers(count));
    }

    fn close(
        &mut self,
        now: Instant,
        viewer: ViewerId,
        reason: CloseReason,
        cx: &mut Context<'_, TsOutput>,
    ) {
        let _ = self.fanout.handle_input(now, fanout::Input::Leave(viewer));
        self.awaiting.remove(viewer);
        cx.emit(TsOutput::Close { viewer, reason });
    }

    fn close_playback(&mut self, cx: &mut Context<'_, TsOutput>) {
        if let Some(playback) = self.playback.take() {
            cx.emit(TsOutput::ClosePlayback(playback));
        }
    }

    fn data(&mut self, now: Instant, bytes: Bytes, cx: &mut Context<'_, TsOutput>) {
        let len = bytes.len();
        let discarded_before = self.fanout.stats().discarded_bytes;
        // The fan-out aligns the bytes once; the segments cut are slices of the very
        // chunks its ring holds, not copies.
        let aligned = self.fanout.push_data(now, bytes);
        let discarded = self
            .fanout
            .stats()
            .discarded_bytes
            .saturating_sub(discarded_before);
        if let Some(hls) = &mut self.hls {
            let mut events = CutEvents::default();
            hls.data(now, aligned, &mut events);
            self.cut_events(now, events, cx);
        }
        if discarded > 0 {
            cx.emit(TsOutput::Discarded {
                bytes: discarded,
                first: !std::mem::replace(&mut self.discarded_any, true),
            });
        }
        // Only media counts as upstream activity: an engine that sends nothing but junk
        // is as silent as one that sends nothing.
        let media = len.saturating_sub(usize::try_from(discarded).unwrap_or(usize::MAX));
        if media > 0 {
            cx.feed(now, ChannelInput::Data(media));
        }
    }

    /// Routes the fan-out's outputs.
    fn drain_fanout(&mut self, now: Instant, cx: &mut Context<'_, TsOutput>) {
        let mut changed = false;
        while let Some(output) = self.fanout.poll_output() {
            match output {
                fanout::Output::Deliver { viewer, chunks, .. } => {
                    let first = self.awaiting.remove(viewer).is_some();
                    cx.emit(TsOutput::Deliver {
                        viewer,
                        chunks,
                        first,
                    });
                }
                fanout::Output::Keepalive { viewer, chunk } => {
                    cx.emit(TsOutput::Keepalive { viewer, chunk });
                }
                fanout::Output::Drop { viewer, reason } => {
                    self.awaiting.remove(viewer);
                    cx.emit(TsOutput::Close {
                        viewer,
                        reason: CloseReason::Dropped(reason),
                    });
                    changed = true;
                }
            }
        }
        if changed {
            self.viewers_changed(now, cx);
        }
    }
}

impl Media for TsMedia {
    type Input = TsInput;
    type Output = TsOutput;

    fn handle_input(&mut self, now: Instant, input: TsInput, cx: &mut Context<'_, TsOutput>) {
        match input {
            TsInput::Join(viewer) => {
                if self.ended {
                    let reason =
                        CloseReason::ChannelEnded(crate::lifecycle::EndReason::Unreachable);
                    cx.emit(TsOutput::Close { viewer, reason });
                    return;
                }
                match self
                    .fanout
                    .handle_input(now, fanout::Input::JoinAwaiting(viewer))
                {
                    Ok(()) => {
                        self.awaiting.set(viewer, now + self.first_media_timeout);
                        self.viewers_changed(now, cx);
                    }
                    Err(FanoutError::Capacity { limit }) => {
                        cx.emit(TsOutput::Close {
                            viewer,
                            reason: CloseReason::Full { limit },
                        });
                    }
                    // A duplicate id is a driver bug; the viewer already there is kept.
                    Err(_) => {}
                }
            }
            TsInput::Ready(viewer) => {
                // Unknown viewers were dropped meanwhile; nothing to do.
                let _ = self.fanout.handle_input(now, fanout::Input::Ready(viewer));
            }
            TsInput::Leave(viewer) => {
                self.awaiting.remove(viewer);
                if self
                    .fanout
                    .handle_input(now, fanout::Input::Leave(viewer))
                    .is_ok()
                {
                    self.viewers_changed(now, cx);
                }
            }
            TsInput::PlaybackOpened(playback) if self.playback == Some(playback) => {
                cx.feed(now, ChannelInput::PlaybackOpened);
            }
            TsInput::PlaybackData(playback, bytes) if self.playback == Some(playback) => {
                self.data(now, bytes, cx);
            }
            TsInput::PlaybackFailed(playback, error) if self.playback == Some(playback) => {
                self.playback = None;
                cx.feed(now, ChannelInput::PlaybackFailed(error));
            }
            TsInput::PlaybackEnded(playback) if self.playback == Some(playback) => {
                self.playback = None;
                cx.feed(now, ChannelInput::PlaybackEnded);
            }
            TsInput::PlayerSeen(token) => {
                if let Some(hls) = &mut self.hls {
                    let mut events = CutEvents::default();
                    hls.seen(now, token, &mut events);
                    self.cut_events(now, events, cx);
                }
            }
            TsInput::WaitReady(waiter) => {
                let mut events = CutEvents::default();
                match &mut self.hls {
                    Some(hls) => hls.wait(now, waiter, &mut events),
                    // A channel that cuts no HLS has no playlist to wait for.
                    None => events
                        .answers
                        .push((waiter, Err(WaitFailure::Start(StartFailure::Timeout)))),
                }
                self.cut_events(now, events, cx);
            }
            // Events of a playback connection closed meanwhile.
            TsInput::PlaybackOpened(_)
            | TsInput::PlaybackData(..)
            | TsInput::PlaybackFailed(..)
            | TsInput::PlaybackEnded(_) => {}
        }
        self.drain_fanout(now, cx);
    }

    fn command(&mut self, now: Instant, command: MediaCommand, cx: &mut Context<'_, TsOutput>) {
        match command {
            MediaCommand::OpenPlayback { url } => {
                self.close_playback(cx);
                // Each playback is a stream of its own: whatever partial packet the
                // last one left must not swallow this one's first packets (its PAT).
                let _ = self.fanout.handle_input(now, fanout::Input::NewStream);
                if cx.channel().has_started() {
                    cx.notice(Notice::Reconnecting);
                }
                if let Some(hls) = &mut self.hls {
                    // Another playback: what it brings follows a discontinuity.
                    let mut events = CutEvents::default();
                    hls.new_playback(now, &mut events);
                    self.cut_events(now, events, cx);
                }
                let playback = PlaybackId(self.next_playback);
                self.next_playback += 1;
                self.playback = Some(playback);
                cx.emit(TsOutput::OpenPlayback { playback, url });
            }
            MediaCommand::ClosePlayback { stalled } => {
                if stalled {
                    cx.notice(Notice::UpstreamStalled);
                }
                self.close_playback(cx);
            }
            MediaCommand::StartFailed(failure) => {
                let waiting: Vec<ViewerId> = self.awaiting.ids().collect();
                for viewer in waiting {
                    self.close(now, viewer, CloseReason::StartFailed(failure.clone()), cx);
                }
                if let Some(hls) = &mut self.hls {
                    let mut events = CutEvents::default();
                    hls.start_failed(failure, &mut events);
                    self.cut_events(now, events, cx);
                }
                self.viewers_changed(now, cx);
            }
            MediaCommand::Ended(reason) => {
                self.ended = true;
                self.close_playback(cx);
                for viewer in self.fanout.viewer_ids() {
                    self.close(now, viewer, CloseReason::ChannelEnded(reason.clone()), cx);
                }
                if let Some(hls) = &mut self.hls {
                    let mut events = CutEvents::default();
                    hls.ended(&mut events);
                    for (waiter, result) in events.answers {
                        cx.emit(TsOutput::Answer { waiter, result });
                    }
                }
                cx.notice(Notice::Viewers(0));
            }
        }
        self.drain_fanout(now, cx);
    }

    fn handle_timeout(&mut self, now: Instant, cx: &mut Context<'_, TsOutput>) {
        self.fanout.handle_timeout(now);
        self.drain_fanout(now, cx);
        let mut changed = false;
        while let Some(viewer) = self.awaiting.pop_due(now) {
            // The channel sent no media in time for this viewer (it joined a start that
            // drags on, or a recovery): it gets the start timeout's answer.
            self.close(
                now,
                viewer,
                CloseReason::StartFailed(StartFailure::Timeout),
                cx,
            );
            changed = true;
        }
        if changed {
            self.viewers_changed(now, cx);
        }
        if let Some(hls) = &mut self.hls {
            let mut events = CutEvents::default();
            hls.handle_timeout(now, &mut events);
            self.cut_events(now, events, cx);
        }
    }

    fn poll_timeout(&self) -> Option<Instant> {
        [
            self.fanout.poll_timeout(),
            self.awaiting.next(),
            self.hls.as_ref().and_then(CutHls::poll_timeout),
        ]
        .into_iter()
        .flatten()
        .min()
    }

    fn settled(&mut self, _now: Instant, cx: &mut Context<'_, TsOutput>) {
        if let Some(snapshot) = self.hls.as_mut().and_then(CutHls::changed_snapshot) {
            cx.emit(TsOutput::Publish(snapshot));
        }
    }
}
