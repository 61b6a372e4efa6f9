//! The HLS format of the channel task: players waiting for the first playlist, the
//! published snapshot, and the fetches behind an
//! [`HlsChannel`](acemux_core::channel::HlsChannel).

use std::collections::BTreeMap;
use std::sync::Arc;

use acemux_core::channel::{
    FetchError, HlsInput, HlsMedia, HlsMediaConfig, HlsOutput, Input, WaitFailure, WaiterId,
};
use acemux_core::hls::{HlsSnapshot, UpstreamPlaylist, UpstreamSegment};
use acemux_core::playlist::Playlist;
use tokio::sync::{oneshot, watch};

use super::pump::{Env, Format};
use super::{ChannelMsg, JoinError, Proxy, WaitAnswer};
use crate::net::Net;

/// Largest playlist read from an engine.
const MAX_PLAYLIST_BYTES: usize = 1024 * 1024;

/// The io side of an HLS channel.
pub(super) struct HlsIo {
    id: u64,
    snapshot: watch::Sender<Arc<HlsSnapshot>>,
    waiters: BTreeMap<WaiterId, oneshot::Sender<WaitAnswer>>,
    next_waiter: u64,
}

impl HlsIo {
    pub(super) fn new(id: u64, snapshot: watch::Sender<Arc<HlsSnapshot>>) -> Self {
        HlsIo {
            id,
            snapshot,
            waiters: BTreeMap::new(),
            next_waiter: 1,
        }
    }
}

impl<N: Net> Format<N> for HlsIo {
    type Media = HlsMedia;

    fn media(&self, proxy: &Proxy<N>) -> HlsMedia {
        let config = &proxy.0.config;
        HlsMedia::new(HlsMediaConfig {
            hls: config.hls.clone(),
            idle_timeout: config.hls_idle_timeout,
            first_playlist_timeout: config.channel.start_timeout,
            ..HlsMediaConfig::default()
        })
    }

    fn message(&mut self, message: ChannelMsg) -> Option<HlsInput> {
        match message {
            ChannelMsg::Seen { token } => Some(HlsInput::PlayerSeen(token)),
            ChannelMsg::WaitReady { reply } => {
                let waiter = WaiterId(self.next_waiter);
                self.next_waiter += 1;
                self.waiters.insert(waiter, reply);
                Some(HlsInput::WaitReady(waiter))
            }
            // TS viewers never reach an HLS channel (the key's format differs).
            ChannelMsg::Join { tx, .. } => {
                let _ = tx.try_send(super::viewer::ViewerMsg::Closed("wrong_format"));
                None
            }
            ChannelMsg::Ready(_) | ChannelMsg::Leave(_) | ChannelMsg::Stop { .. } => None,
        }
    }

    fn completed(&mut self, env: &Env<N, HlsInput>, input: &HlsInput) {
        if let HlsInput::SegmentFetched {
            result: Ok(bytes), ..
        } = input
        {
            env.proxy
                .0
                .metrics
                .channel_bytes_in
                .get_or_create(&env.labels)
                .inc_by(bytes.len() as u64);
        }
    }

    fn perform(
        &mut self,
        env: &Env<N, HlsInput>,
        output: HlsOutput,
        _feedback: &mut Vec<HlsInput>,
    ) {
        let shared = env.proxy.0.clone();
        match output {
            HlsOutput::FetchPlaylist { generation, url } => {
                let completions = env.completions.clone();
                tokio::spawn(async move {
                    let result = fetch_playlist(&shared, &url).await;
                    let fetched = HlsInput::PlaylistFetched { generation, result };
                    let _ = completions.send(Input::Media(fetched)).await;
                });
            }
            HlsOutput::FetchSegment {
                generation,
                upstream_seq,
                url,
            } => {
                let completions = env.completions.clone();
                tokio::spawn(async move {
                    let max_bytes = shared.config.hls_max_segment_bytes;
                    let result = shared.engines.fetch_bounded(&url, max_bytes).await;
                    if let Err(FetchError::TooLarge { .. }) = result {
                        shared.metrics.limit_hit("hls_segment_bytes");
                    }
                    let fetched = HlsInput::SegmentFetched {
                        generation,
                        upstream_seq,
                        result,
                    };
                    let _ = completions.send(Input::Media(fetched)).await;
                });
            }
            HlsOutput::Publish(snapshot) => {
                self.snapshot.send_replace(Arc::new(snapshot));
            }
            HlsOutput::Answer { waiter, result } => {
                let Some(reply) = self.waiters.remove(&waiter) else {
                    return;
                };
                let answer = match result {
                    Ok(()) => Ok((self.id, self.snapshot.borrow().clone())),
                    Err(WaitFailure::Start(failure)) => Err(JoinError::Start(failure)),
                    Err(WaitFailure::Full { limit }) => {
                        shared.metrics.limit_hit("hls_start_waiters");
                        Err(JoinError::Capacity(format!(
                            "too many players are waiting for channel {} to start (limit {limit})",
                            env.key
                        )))
                    }
                    Err(_) => Err(JoinError::Ended),
                };
                let _ = reply.send(answer);
            }
            HlsOutput::Ready => tracing::info!(channel = %env.key, "HLS channel ready"),
            HlsOutput::Gap(gap) => {
                tracing::warn!(channel = %env.key, ?gap, "media missing; marked as a discontinuity");
            }
            HlsOutput::PlaylistBackoff { reason, retry_in } => {
                shared
                    .metrics
                    .hls_playlist_errors
                    .get_or_create(&env.labels)
                    .inc();
                tracing::warn!(channel = %env.key, %reason, ?retry_in, "engine playlist poll failed");
            }
            HlsOutput::UpstreamEnded => tracing::info!(channel = %env.key, "engine playlist ended"),
        }
    }

    fn ended(&mut self) {}
}

/// Fetches and parses a media playlist (following one master-playlist hop); every URI
/// is resolved against the playlist and kept on the engine's own address.
async fn fetch_playlist<N: Net>(
    shared: &super::Shared<N>,
    url: &str,
) -> Result<UpstreamPlaylist, FetchError> {
    let mut url = url.to_owned();
    // One master-playlist hop, then a media playlist: a fixed shape, not a retry.
    for _ in 0..2 {
        let body = shared
            .engines
            .fetch_bounded(&url, MAX_PLAYLIST_BYTES)
            .await?;
        let mut playlist = Playlist::parse(&body)
            .map_err(|error| FetchError::Invalid(format!("invalid playlist: {error}")))?;
        playlist
            .resolve_uris(&url)
            .map_err(|error| FetchError::Invalid(format!("invalid playlist URI: {error}")))?;
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
                            uri: crate::engine::same_origin(&url, &segment.uri)
                                .map_err(FetchError::Invalid)?,
                            discontinuity: segment.discontinuity,
                        })
                    })
                    .collect::<Result<Vec<_>, FetchError>>()?;
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
                let variant = master.pick_variant().ok_or_else(|| {
                    FetchError::Invalid("master playlist without variants".into())
                })?;
                url =
                    crate::engine::same_origin(&url, &variant.uri).map_err(FetchError::Invalid)?;
            }
            _ => return Err(FetchError::Invalid("unsupported playlist kind".into())),
        }
    }
    Err(FetchError::Invalid(
        "master playlist points at another master playlist".into(),
    ))
}
