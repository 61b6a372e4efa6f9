//! The HLS half of a channel: the engine session's playback is the playlist poll of an
//! [`HlsSession`]; players are present while they request, and players waiting for a
//! new channel's first playlist are answered once enough is held (or why not).

use bytes::Bytes;
use thiserror::Error;

use super::composed::{ComposedChannel, Context, Media, MediaCommand};
use super::players::Players;
use super::vocab::{Notice, WaiterId};
use super::{SessionInput as ChannelInput, StartFailure};
use crate::hls::{self, Gap, HlsConfig, HlsSession, HlsSnapshot, UpstreamPlaylist};
use crate::machine::Deadlines;
use crate::time::{Duration, Instant};

/// An HLS channel: engine session, engine calls, fetch loop and players.
pub type HlsChannel = ComposedChannel<HlsMedia>;

/// Why a fetch from the engine failed.
#[derive(Clone, Debug, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum FetchError {
    /// The engine could not be reached or the connection broke.
    #[error("{0}")]
    Unreachable(String),
    /// The engine answered with a status other than 2xx.
    #[error("{url} answered {status}")]
    Status {
        /// What was fetched.
        url: String,
        /// The status code.
        status: u16,
    },
    /// No complete answer within the engine request timeout.
    #[error("{url}: no complete answer in time")]
    Timeout {
        /// What was fetched.
        url: String,
    },
    /// The body was larger than allowed; it was cut off.
    #[error("{url}: body larger than {limit} bytes; cut off")]
    TooLarge {
        /// What was fetched.
        url: String,
        /// The bound.
        limit: usize,
    },
    /// The body was empty.
    #[error("{url} answered an empty body")]
    Empty {
        /// What was fetched.
        url: String,
    },
    /// The body was not a usable playlist (or named a URI off the engine).
    #[error("{0}")]
    Invalid(String),
}

impl FetchError {
    /// A stable name for logs and metric labels.
    pub fn as_str(&self) -> &'static str {
        match self {
            FetchError::Unreachable(_) => "unreachable",
            FetchError::Status { .. } => "status",
            FetchError::Timeout { .. } => "timeout",
            FetchError::TooLarge { .. } => "too_large",
            FetchError::Empty { .. } => "empty",
            FetchError::Invalid(_) => "invalid",
        }
    }
}

/// Why a player waiting for the first playlist is answered without it.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum WaitFailure {
    /// The channel could not start, or was not ready within the start timeout.
    Start(StartFailure),
    /// Too many players are waiting already.
    Full {
        /// The bound.
        limit: usize,
    },
}

/// Bounds of the HLS half of a channel.
#[derive(Clone, Debug)]
pub struct HlsMediaConfig {
    /// The fetch loop and buffer.
    pub hls: HlsConfig,
    /// A player that requests nothing this long no longer counts as a viewer.
    pub idle_timeout: Duration,
    /// Longest wait for the first playlist (the channel's start timeout).
    pub first_playlist_timeout: Duration,
    /// Players waiting for the first playlist at once; one more is answered
    /// [`WaitFailure::Full`].
    pub max_waiters: usize,
    /// Players told apart at once; more are served but not tracked (they count as
    /// present through the others).
    pub max_players: usize,
}

impl Default for HlsMediaConfig {
    fn default() -> Self {
        HlsMediaConfig {
            hls: HlsConfig::default(),
            idle_timeout: Duration::from_secs(30),
            first_playlist_timeout: Duration::from_secs(30),
            max_waiters: 1024,
            max_players: 1000,
        }
    }
}

/// What the driver reports about HLS players and fetches.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum HlsInput {
    /// A player (by token) requested the playlist or a segment.
    PlayerSeen(String),
    /// A player waits for the first playlist; answer it with [`HlsOutput::Answer`].
    WaitReady(WaiterId),
    /// The answer to [`HlsOutput::FetchPlaylist`].
    PlaylistFetched {
        /// The request's generation.
        generation: u64,
        /// The parsed playlist, or why there is none.
        result: Result<UpstreamPlaylist, FetchError>,
    },
    /// The answer to [`HlsOutput::FetchSegment`].
    SegmentFetched {
        /// The request's generation.
        generation: u64,
        /// The segment's upstream number.
        upstream_seq: u64,
        /// The body, or why there is none.
        result: Result<Bytes, FetchError>,
    },
}

/// What an HLS channel asks of its driver, or tells it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum HlsOutput {
    /// Fetch and parse the engine's media playlist.
    FetchPlaylist {
        /// Echo it in the answer.
        generation: u64,
        /// The URL.
        url: String,
    },
    /// Fetch a segment.
    FetchSegment {
        /// Echo it in the answer.
        generation: u64,
        /// Echo it in the answer.
        upstream_seq: u64,
        /// The URL.
        url: String,
    },
    /// The served playlist changed: publish this snapshot for requests to read.
    Publish(HlsSnapshot),
    /// Answer a waiting player: the first playlist can be read now, or why not.
    Answer {
        /// Who.
        waiter: WaiterId,
        /// The answer.
        result: Result<(), WaitFailure>,
    },
    /// The channel holds enough for players to start.
    Ready,
    /// Media is missing before the next served segment (a discontinuity).
    Gap(Gap),
    /// A playlist poll failed; the next one is in `retry_in`.
    PlaylistBackoff {
        /// Why.
        reason: String,
        /// When.
        retry_in: Duration,
    },
    /// Upstream ended its playlist.
    UpstreamEnded,
}

/// The HLS half of a channel.
#[derive(Debug)]
pub struct HlsMedia {
    config: HlsMediaConfig,
    hls: HlsSession,
    open_url: Option<String>,
    players: Players,
    waiters: Deadlines<WaiterId>,
    failure: Option<StartFailure>,
    published_segments: u64,
    published_ready: bool,
    ended: bool,
}

impl HlsMedia {
    /// The HLS half, with `config` bounds.
    pub fn new(config: HlsMediaConfig) -> Self {
        HlsMedia {
            hls: HlsSession::new(config.hls.clone()),
            config,
            open_url: None,
            players: Players::default(),
            waiters: Deadlines::default(),
            failure: None,
            published_segments: 0,
            published_ready: false,
            ended: false,
        }
    }

    /// The fetch loop, to read its stats and snapshot.
    pub fn session(&self) -> &HlsSession {
        &self.hls
    }

    /// Players present now.
    pub fn players(&self) -> usize {
        self.players.len()
    }

    /// Players waiting for the first playlist.
    pub fn waiters(&self) -> usize {
        self.waiters.len()
    }

    fn seen(&mut self, token: String, now: Instant) -> bool {
        self.players.seen(token, now, self.config.max_players)
    }

    fn players_changed(&mut self, now: Instant, cx: &mut Context<'_, HlsOutput>) {
        let count = self.players.len();
        cx.notice(Notice::Viewers(count));
        cx.feed(now, ChannelInput::Viewers(count));
    }

    /// When the oldest player expires; none while players wait for the first playlist
    /// (they are watching, not idle).
    fn expiry(&self) -> Option<Instant> {
        if !self.waiters.is_empty() || self.ended {
            return None;
        }
        self.players.expiry(self.config.idle_timeout)
    }

    fn answer_all(&mut self, result: Result<(), WaitFailure>, cx: &mut Context<'_, HlsOutput>) {
        let waiters: Vec<WaiterId> = self.waiters.ids().collect();
        self.waiters.clear();
        for waiter in waiters {
            cx.emit(HlsOutput::Answer {
                waiter,
                result: result.clone(),
            });
        }
    }

    fn publish(&mut self, cx: &mut Context<'_, HlsOutput>) {
        let snapshot = self.hls.snapshot();
        self.published_segments = self.hls.stats().segments_served;
        self.published_ready = snapshot.ready;
        cx.emit(HlsOutput::Publish(snapshot));
    }

    fn drain_hls(&mut self, now: Instant, cx: &mut Context<'_, HlsOutput>) {
        while let Some(output) = self.hls.poll_output() {
            match output {
                hls::Output::FetchPlaylist { generation, url } => {
                    cx.emit(HlsOutput::FetchPlaylist { generation, url });
                }
                hls::Output::FetchSegment {
                    generation,
                    upstream_seq,
                    url,
                } => cx.emit(HlsOutput::FetchSegment {
                    generation,
                    upstream_seq,
                    url,
                }),
                hls::Output::SegmentReady { bytes, .. } => {
                    cx.feed(now, ChannelInput::Data(bytes));
                }
                hls::Output::Ready => {
                    cx.emit(HlsOutput::Ready);
                    // The players that waited start their idle clock now.
                    self.players.refresh_all(now);
                    // Published before the waiters are answered: they read it at once.
                    self.publish(cx);
                    self.answer_all(Ok(()), cx);
                }
                hls::Output::Ended => cx.emit(HlsOutput::UpstreamEnded),
                hls::Output::Gap(gap) => cx.emit(HlsOutput::Gap(gap)),
                hls::Output::Backoff { reason, retry_in } => {
                    cx.emit(HlsOutput::PlaylistBackoff { reason, retry_in });
                }
            }
        }
    }
}

impl Media for HlsMedia {
    type Input = HlsInput;
    type Output = HlsOutput;

    fn handle_input(&mut self, now: Instant, input: HlsInput, cx: &mut Context<'_, HlsOutput>) {
        match input {
            HlsInput::PlayerSeen(token) => {
                if !self.ended && self.seen(token, now) {
                    self.players_changed(now, cx);
                }
            }
            HlsInput::WaitReady(waiter) => {
                let state = ChannelState {
                    ready: self.hls.snapshot_ready(),
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
                    cx.emit(HlsOutput::Answer { waiter, result });
                }
            }
            HlsInput::PlaylistFetched { generation, result } => {
                let result = result.map_err(|error| error.to_string());
                self.hls
                    .handle_input(now, hls::Input::PlaylistFetched { generation, result });
            }
            HlsInput::SegmentFetched {
                generation,
                upstream_seq,
                result,
            } => {
                let result = result.map_err(|error| error.to_string());
                self.hls.handle_input(
                    now,
                    hls::Input::SegmentFetched {
                        generation,
                        upstream_seq,
                        result,
                    },
                );
            }
        }
        self.drain_hls(now, cx);
    }

    fn command(&mut self, now: Instant, command: MediaCommand, cx: &mut Context<'_, HlsOutput>) {
        match command {
            MediaCommand::OpenPlayback { url } => {
                if cx.channel().has_started() {
                    cx.notice(Notice::Reconnecting);
                }
                // Reopening the same playlist would re-serve what is already served and
                // count as fresh media; its polling never stopped, so only a new session's
                // playlist is opened (with a discontinuity).
                if self.open_url.as_deref() != Some(url.as_str()) {
                    self.open_url = Some(url.clone());
                    self.hls
                        .handle_input(now, hls::Input::Open { playlist_url: url });
                }
                // Polling is the playback: it is open as soon as it starts.
                cx.feed(now, ChannelInput::PlaybackOpened);
            }
            MediaCommand::ClosePlayback { stalled } => {
                // The playlist stopped advancing: keep polling it (with the fetch loop's
                // own backoff) until the channel gives up on the session and opens another.
                if stalled {
                    cx.notice(Notice::UpstreamStalled);
                }
            }
            MediaCommand::StartFailed(failure) => {
                self.failure = Some(failure.clone());
                self.answer_all(Err(WaitFailure::Start(failure)), cx);
            }
            MediaCommand::Ended(_) => {
                self.ended = true;
                self.hls.handle_input(now, hls::Input::Close);
                let failure = self.failure.clone().unwrap_or(StartFailure::Timeout);
                self.answer_all(Err(WaitFailure::Start(failure)), cx);
                self.players.clear();
                cx.notice(Notice::Viewers(0));
            }
        }
        self.drain_hls(now, cx);
    }

    fn handle_timeout(&mut self, now: Instant, cx: &mut Context<'_, HlsOutput>) {
        if self.ended {
            return;
        }
        self.hls.handle_timeout(now);
        self.drain_hls(now, cx);
        while let Some(waiter) = self.waiters.pop_due(now) {
            cx.emit(HlsOutput::Answer {
                waiter,
                result: Err(WaitFailure::Start(StartFailure::Timeout)),
            });
        }
        if self.expiry().is_some_and(|at| at <= now) {
            self.players.expire(now, self.config.idle_timeout);
            self.players_changed(now, cx);
        }
    }

    fn poll_timeout(&self) -> Option<Instant> {
        if self.ended {
            return None;
        }
        [self.hls.poll_timeout(), self.waiters.next(), self.expiry()]
            .into_iter()
            .flatten()
            .min()
    }

    fn settled(&mut self, _now: Instant, cx: &mut Context<'_, HlsOutput>) {
        let served = self.hls.stats().segments_served;
        if served != self.published_segments || self.hls.snapshot_ready() != self.published_ready {
            self.publish(cx);
        }
    }
}

/// Where a channel stands, for a player that waits for its first playlist.
pub(super) struct ChannelState<'a> {
    /// Enough segments are held for players to start.
    pub(super) ready: bool,
    /// Why it could not start, once it could not.
    pub(super) failure: Option<&'a StartFailure>,
    /// It ended.
    pub(super) ended: bool,
}

impl ChannelState<'_> {
    /// The answer a waiting player gets at once (ready, failed, ended, or too many
    /// waiting), or `None` after registering it in `waiters` until `deadline`.
    pub(super) fn answer_or_wait(
        &self,
        waiters: &mut Deadlines<WaiterId>,
        waiter: WaiterId,
        max_waiters: usize,
        deadline: Instant,
    ) -> Option<Result<(), WaitFailure>> {
        if self.ready {
            Some(Ok(()))
        } else if let Some(failure) = self.failure {
            Some(Err(WaitFailure::Start(failure.clone())))
        } else if self.ended {
            Some(Err(WaitFailure::Start(StartFailure::Timeout)))
        } else if waiters.len() >= max_waiters {
            Some(Err(WaitFailure::Full { limit: max_waiters }))
        } else {
            waiters.set(waiter, deadline);
            None
        }
    }
}
