//! The HLS format of the channel task: players waiting for the first playlist, the
//! published snapshot, and the fetches behind an
//! [`HlsChannel`](acemux_core::channel::HlsChannel).

use std::collections::BTreeMap;
use std::sync::Arc;

use acemux_core::channel::{
    FetchError, HlsInput, HlsMedia, HlsMediaConfig, HlsOutput, Input, WaitFailure, WaiterId,
};
use acemux_core::hls::HlsSnapshot;
use tokio::sync::{oneshot, watch};

use super::pump::{Env, Format};
use super::{ChannelMsg, JoinError, Proxy, WaitAnswer};
use crate::net::Net;

/// The io side of an HLS channel.
pub(super) struct HlsIo {
    id: u64,
    snapshot: watch::Sender<Arc<HlsSnapshot>>,
    waiters: BTreeMap<WaiterId, oneshot::Sender<WaitAnswer>>,
    next_waiter: u64,
    /// The channel ended: its per-channel series are gone and stay gone.
    ended: bool,
}

impl HlsIo {
    pub(super) fn new(id: u64, snapshot: watch::Sender<Arc<HlsSnapshot>>) -> Self {
        HlsIo {
            id,
            snapshot,
            waiters: BTreeMap::new(),
            next_waiter: 1,
            ended: false,
        }
    }
}

impl<N: Net> Format<N> for HlsIo {
    type Media = HlsMedia;

    fn media(&self, proxy: &Proxy<N>) -> HlsMedia {
        let config = &proxy.0.config;
        let first_seq = acemux_core::hls::first_sequence(proxy.0.lifecycle.clock().now());
        HlsMedia::new(HlsMediaConfig {
            hls: acemux_core::hls::HlsConfig {
                first_seq,
                ..config.hls.clone()
            },
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
            ChannelMsg::Join { slot, .. } => {
                slot.end(super::viewer::End::Closed("wrong_format"));
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
            if self.ended {
                return;
            }
            env.proxy
                .0
                .metrics
                .channel_bytes_in
                .get_or_create(&env.labels)
                .inc_by(bytes.len() as u64);
            let now = env.proxy.0.lifecycle.clock().now();
            env.status.media_in(now, bytes.len() as u64);
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
                    let result = shared.engines.fetch_playlist(&url).await;
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
                        shared.metrics.refused("hls_start_waiters");
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

    fn ended(&mut self) {
        self.ended = true;
    }
}
