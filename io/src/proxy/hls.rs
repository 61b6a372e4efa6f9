//! The HLS channel task: the [`Channel`](acemux_core::channel::Channel) machine keeps the
//! engine session (its playback is the playlist poll), the [`HlsSession`] machine
//! fetches every segment and builds the served playlist, and a snapshot of that
//! playlist is published for requests to read without waiting for this task.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use acemux_core::channel::{ChannelConfig, Input, Output, StartFailure};
use acemux_core::hls::{self, HlsSession, HlsSnapshot, UpstreamPlaylist, UpstreamSegment};
use acemux_core::playlist::Playlist;
use acemux_core::Instant;
use tokio::sync::{mpsc, oneshot, watch};

use super::session::SessionDriver;
use super::{ChannelKey, ChannelMsg, Proxy};
use crate::engine::FetchError;
use crate::net::Net;

/// Fetch answers held at most; the machine bounds fetches in flight, so this never fills.
const FETCH_EVENTS: usize = 16;
/// Largest playlist read from an engine.
const MAX_PLAYLIST_BYTES: usize = 1024 * 1024;
/// Waiters for a channel's first playlist held at most; one more is dropped, and its
/// request answered 503 `capacity`.
const MAX_WAITERS: usize = 1024;

/// HLS requests to an HLS channel task.
pub(crate) enum HlsMsg {
    /// A player (by token) requested the playlist or a segment.
    Activity { viewer: String },
    /// Answer once the channel is ready (or could not start).
    WaitReady {
        reply: oneshot::Sender<Result<(), StartFailure>>,
    },
}

struct Task<N: Net> {
    driver: SessionDriver<N>,
    hls: HlsSession,
    fetches: mpsc::Sender<hls::Input>,
    /// Players by token, with the time of their last request.
    viewers: BTreeMap<String, Instant>,
    idle_timeout: Duration,
    waiters: Vec<oneshot::Sender<Result<(), StartFailure>>>,
    failure: Option<StartFailure>,
    snapshot: watch::Sender<Arc<HlsSnapshot>>,
    published_segments: u64,
    /// The playlist being polled.
    open_url: Option<String>,
}

pub(super) async fn run<N: Net>(
    proxy: Proxy<N>,
    id: u64,
    key: ChannelKey,
    mut inbox: mpsc::Receiver<ChannelMsg>,
    stream_id: watch::Sender<Option<String>>,
    snapshot: watch::Sender<Arc<HlsSnapshot>>,
) {
    let clock = proxy.0.lifecycle.clock();
    let hls = HlsSession::new(proxy.0.config.hls.clone());
    let idle_timeout = proxy.0.config.hls_idle_timeout;
    // A playlist advances one segment at a time: silence is judged on its own bound.
    let config = ChannelConfig {
        upstream_stall_timeout: proxy.0.config.hls_stall_timeout,
        ..proxy.0.config.channel.clone()
    };
    let (driver, mut session_rx) = SessionDriver::new(proxy, key, config, stream_id);
    let (fetches, mut fetch_rx) = mpsc::channel(FETCH_EVENTS);
    let mut task = Task {
        driver,
        hls,
        fetches,
        viewers: BTreeMap::new(),
        idle_timeout,
        waiters: Vec::new(),
        failure: None,
        snapshot,
        published_segments: 0,
        open_url: None,
    };
    loop {
        task.drain();
        if task.driver.channel.is_ended() {
            break;
        }
        let expiry = if task.waiters.is_empty() {
            task.viewers
                .values()
                .min()
                .map(|seen| *seen + task.idle_timeout)
        } else {
            None
        };
        let sleep = clock.sleep_until_earliest([
            task.driver.channel.poll_timeout(),
            task.hls.poll_timeout(),
            expiry,
        ]);
        tokio::select! {
            biased;
            Some(input) = fetch_rx.recv() => task.on_fetched(input),
            Some(event) = session_rx.recv() => task.driver.on_session(event),
            message = inbox.recv() => match message {
                Some(message) => task.on_message(message),
                None => task.driver.channel.handle_input(clock.now(), Input::Stop("unreachable".into())),
            },
            () = sleep => {
                let now = clock.now();
                task.driver.channel.handle_timeout(now);
                task.hls.handle_timeout(now);
                task.expire_viewers(now);
            }
        }
    }
    let failure = task.failure.clone().unwrap_or(StartFailure::Timeout);
    for waiter in task.waiters.drain(..) {
        let _ = waiter.send(Err(failure.clone()));
    }
    task.driver.finish(id, session_rx).await;
}

impl<N: Net> Task<N> {
    fn on_message(&mut self, message: ChannelMsg) {
        let now = self.driver.now();
        match message {
            ChannelMsg::Hls(HlsMsg::Activity { viewer }) => {
                if self.viewers.insert(viewer, now).is_none() {
                    self.viewers_changed();
                }
            }
            ChannelMsg::Hls(HlsMsg::WaitReady { reply }) => {
                if self.snapshot.borrow().ready {
                    let _ = reply.send(Ok(()));
                } else if self.waiters.len() < MAX_WAITERS {
                    self.waiters.push(reply);
                }
            }
            ChannelMsg::Stop { reason, done } => {
                self.driver.stop_waiters.push(done);
                self.driver.channel.handle_input(now, Input::Stop(reason));
            }
            // TS viewers never reach an HLS channel (the key's format differs).
            ChannelMsg::Join { .. } | ChannelMsg::Ready(_) | ChannelMsg::Leave(_) => {}
        }
    }

    fn expire_viewers(&mut self, now: Instant) {
        if !self.waiters.is_empty() {
            // Players waiting for the first playlist are watching, not idle.
            return;
        }
        let idle_timeout = self.idle_timeout;
        let before = self.viewers.len();
        self.viewers.retain(|_, seen| *seen + idle_timeout > now);
        if self.viewers.len() != before {
            self.viewers_changed();
        }
    }

    fn viewers_changed(&mut self) {
        let count = self.viewers.len();
        self.driver
            .proxy
            .0
            .metrics
            .channel_viewers
            .get_or_create(&self.driver.labels)
            .set(i64::try_from(count).unwrap_or(i64::MAX));
        let now = self.driver.now();
        self.driver.channel.handle_input(now, Input::Viewers(count));
    }

    fn on_fetched(&mut self, input: hls::Input) {
        let now = self.driver.now();
        self.hls.handle_input(now, input);
    }

    fn drain(&mut self) {
        loop {
            let mut progressed = false;
            while let Some(output) = self.driver.channel.poll_output() {
                progressed = true;
                if let Some(media) = self.driver.perform(output) {
                    self.perform_media(media);
                }
            }
            while let Some(output) = self.hls.poll_output() {
                progressed = true;
                self.perform_hls(output);
            }
            if !progressed {
                break;
            }
        }
        let served = self.hls.stats().segments_served;
        let ready = self.hls.snapshot().ready;
        if served != self.published_segments || ready != self.snapshot.borrow().ready {
            self.published_segments = served;
            self.snapshot.send_replace(Arc::new(self.hls.snapshot()));
        }
    }

    fn perform_media(&mut self, output: Output) {
        let now = self.driver.now();
        match output {
            Output::OpenPlayback { url } => {
                if self.driver.channel.has_started() {
                    self.driver
                        .proxy
                        .0
                        .metrics
                        .channel_reconnects
                        .get_or_create(&self.driver.labels)
                        .inc();
                }
                // Reopening the same playlist would re-serve what is already served and
                // count as fresh media; its polling never stopped, so only a new session's
                // playlist is opened (with a discontinuity).
                if self.open_url.as_deref() != Some(url.as_str()) {
                    tracing::info!(channel = %self.driver.key, %url, "polling engine playlist");
                    self.open_url = Some(url.clone());
                    self.hls
                        .handle_input(now, hls::Input::Open { playlist_url: url });
                }
                // Polling is the playback: it is open as soon as it starts.
                self.driver.channel.handle_input(now, Input::PlaybackOpened);
            }
            Output::ClosePlayback => {
                self.driver
                    .proxy
                    .0
                    .metrics
                    .channel_upstream_stalls
                    .get_or_create(&self.driver.labels)
                    .inc();
                // The playlist stopped advancing: keep polling it (with the machine's own
                // backoff) until the channel gives up on the session and opens another.
            }
            Output::StartFailed(failure) => {
                tracing::warn!(channel = %self.driver.key, code = failure.code(), ?failure, "channel could not start");
                for waiter in self.waiters.drain(..) {
                    let _ = waiter.send(Err(failure.clone()));
                }
                self.failure = Some(failure);
            }
            _ => {}
        }
    }

    fn perform_hls(&mut self, output: hls::Output) {
        let now = self.driver.now();
        let shared = self.driver.proxy.0.clone();
        match output {
            hls::Output::FetchPlaylist { generation, url } => {
                let fetches = self.fetches.clone();
                tokio::spawn(async move {
                    let result = fetch_playlist(&shared, &url).await;
                    let _ = fetches
                        .send(hls::Input::PlaylistFetched { generation, result })
                        .await;
                });
            }
            hls::Output::FetchSegment {
                generation,
                upstream_seq,
                url,
            } => {
                let fetches = self.fetches.clone();
                tokio::spawn(async move {
                    let max_bytes = shared.config.hls_max_segment_bytes;
                    let result =
                        shared
                            .engines
                            .fetch_bounded(&url, max_bytes)
                            .await
                            .map_err(|error| {
                                if let FetchError::TooLarge(_) = error {
                                    shared.metrics.limit_hit("hls_segment_bytes");
                                }
                                error.to_string()
                            });
                    let _ = fetches
                        .send(hls::Input::SegmentFetched {
                            generation,
                            upstream_seq,
                            result,
                        })
                        .await;
                });
            }
            hls::Output::SegmentReady { bytes, .. } => {
                shared
                    .metrics
                    .channel_bytes_in
                    .get_or_create(&self.driver.labels)
                    .inc_by(bytes as u64);
                self.driver.channel.handle_input(now, Input::Data(bytes));
            }
            hls::Output::Ready => {
                tracing::info!(channel = %self.driver.key, "HLS channel ready");
                // The players that waited for this start their idle clock now.
                for seen in self.viewers.values_mut() {
                    *seen = now;
                }
                self.snapshot.send_replace(Arc::new(self.hls.snapshot()));
                for waiter in self.waiters.drain(..) {
                    let _ = waiter.send(Ok(()));
                }
            }
            hls::Output::Ended => {
                tracing::info!(channel = %self.driver.key, "engine playlist ended");
            }
            hls::Output::Gap(gap) => {
                tracing::warn!(channel = %self.driver.key, ?gap, "media missing; marked as a discontinuity");
            }
            hls::Output::Backoff { reason, retry_in } => {
                shared
                    .metrics
                    .hls_playlist_errors
                    .get_or_create(&self.driver.labels)
                    .inc();
                tracing::warn!(channel = %self.driver.key, %reason, ?retry_in, "engine playlist poll failed");
            }
        }
    }
}

/// Fetches and parses a media playlist (following one master-playlist hop); every URI
/// is resolved against the playlist and kept on the engine's own address.
async fn fetch_playlist<N: Net>(
    shared: &super::Shared<N>,
    url: &str,
) -> Result<UpstreamPlaylist, String> {
    let mut url = url.to_owned();
    for _ in 0..2 {
        let body = shared.engines.fetch(&url, MAX_PLAYLIST_BYTES).await?;
        let mut playlist =
            Playlist::parse(&body).map_err(|error| format!("invalid playlist: {error}"))?;
        playlist
            .resolve_uris(&url)
            .map_err(|error| format!("invalid playlist URI: {error}"))?;
        match playlist {
            Playlist::Media(media) => {
                let longest_us = media
                    .segments
                    .iter()
                    .map(|s| s.duration_us)
                    .max()
                    .unwrap_or(0);
                let segments = media
                    .segments
                    .iter()
                    .map(|segment| {
                        Ok(UpstreamSegment {
                            duration_us: segment.duration_us,
                            uri: crate::engine::same_origin(&url, &segment.uri)?,
                            discontinuity: segment.discontinuity,
                        })
                    })
                    .collect::<Result<Vec<_>, String>>()?;
                return Ok(UpstreamPlaylist {
                    target_duration_s: media
                        .target_duration_s
                        .unwrap_or_else(|| longest_us.div_ceil(1_000_000).max(1)),
                    media_sequence: media.media_sequence,
                    segments,
                    ended: media.ended,
                });
            }
            Playlist::Master(master) => {
                let variant = master
                    .pick_variant()
                    .ok_or("master playlist without variants")?;
                url = crate::engine::same_origin(&url, &variant.uri)?;
            }
            _ => return Err("unsupported playlist kind".into()),
        }
    }
    Err("master playlist points at another master playlist".into())
}
