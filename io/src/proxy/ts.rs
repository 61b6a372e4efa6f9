//! The MPEG-TS format of the channel task: viewers' queues and the playback reader
//! behind the ids of a [`TsChannel`](acemux_core::channel::TsChannel).

use std::collections::BTreeMap;
use std::sync::Arc;

use acemux_core::channel::{
    CloseReason, Input, PlaybackId, TsInput, TsMedia, TsOutput, WaitFailure, WaiterId,
};
use acemux_core::fanout::ViewerId;
use acemux_core::hls::HlsSnapshot;
use http_body_util::BodyExt;
use tokio::sync::{mpsc, oneshot, watch};
use tokio::task::AbortHandle;

use super::pump::{Env, Format};
use super::viewer::{End, Slot};
use super::{ChannelMsg, JoinError, Proxy, WaitAnswer};
use crate::metrics::{CutLabels, DropLabels};
use crate::net::Net;
use crate::server::ConnectionKill;

struct ViewerSlot {
    slot: Arc<Slot>,
    kill: Option<ConnectionKill>,
}

/// The HLS a TS channel cuts: its published playlist and the players waiting for the
/// first one.
pub(super) struct CutIo {
    id: u64,
    snapshot: watch::Sender<Arc<HlsSnapshot>>,
    waiters: BTreeMap<WaiterId, oneshot::Sender<WaitAnswer>>,
    next_waiter: u64,
}

impl CutIo {
    pub(super) fn new(id: u64, snapshot: watch::Sender<Arc<HlsSnapshot>>) -> Self {
        CutIo {
            id,
            snapshot,
            waiters: BTreeMap::new(),
            next_waiter: 1,
        }
    }
}

/// The io side of a TS channel.
pub(super) struct TsIo {
    /// This channel's own mailbox, handed to each viewer with its first media.
    mailbox: mpsc::Sender<ChannelMsg>,
    /// The HLS it cuts, with `--hls-source ts`.
    cut: Option<CutIo>,
    viewers: BTreeMap<ViewerId, ViewerSlot>,
    playbacks: BTreeMap<PlaybackId, AbortHandle>,
    /// The channel ended: its per-channel series are gone and stay gone.
    ended: bool,
    /// A segment was cut without a keyframe, and said so (once per channel).
    warned_no_keyframe: bool,
}

impl TsIo {
    pub(super) fn new(mailbox: mpsc::Sender<ChannelMsg>, cut: Option<CutIo>) -> Self {
        TsIo {
            mailbox,
            cut,
            viewers: BTreeMap::new(),
            playbacks: BTreeMap::new(),
            ended: false,
            warned_no_keyframe: false,
        }
    }

    /// Hands `chunks` to `viewer` (with this channel's mailbox when they are its
    /// first); a viewer whose slot cannot take them is gone.
    fn send(
        &mut self,
        viewer: ViewerId,
        chunks: Vec<bytes::Bytes>,
        first: bool,
        feedback: &mut Vec<TsInput>,
    ) {
        let Some(slot) = self.viewers.get(&viewer) else {
            return;
        };
        let serving = first.then(|| self.mailbox.clone());
        if !slot.slot.deliver(chunks, serving) {
            self.viewers.remove(&viewer);
            feedback.push(TsInput::Leave(viewer));
        }
    }
}

impl<N: Net> Format<N> for TsIo {
    type Media = TsMedia;

    fn media(&self, proxy: &Proxy<N>) -> TsMedia {
        let config = &proxy.0.config;
        let media = TsMedia::new(config.fanout.clone(), config.channel.start_timeout);
        match (&self.cut, config.cut_hls()) {
            (Some(_), Some(mut cut)) => {
                cut.first_seq = acemux_core::hls::first_sequence(proxy.0.lifecycle.clock().now());
                media.with_hls(cut)
            }
            _ => media,
        }
    }

    fn message(&mut self, message: ChannelMsg) -> Option<TsInput> {
        match message {
            ChannelMsg::Join { viewer, slot, kill } => {
                self.viewers.insert(viewer, ViewerSlot { slot, kill });
                Some(TsInput::Join(viewer))
            }
            ChannelMsg::Ready(viewer) => Some(TsInput::Ready(viewer)),
            ChannelMsg::Leave(viewer) => {
                self.viewers.remove(&viewer);
                Some(TsInput::Leave(viewer))
            }
            ChannelMsg::WaitReady { reply } => match &mut self.cut {
                Some(cut) => {
                    let waiter = WaiterId(cut.next_waiter);
                    cut.next_waiter += 1;
                    cut.waiters.insert(waiter, reply);
                    Some(TsInput::WaitReady(waiter))
                }
                // A TS channel that cuts no HLS gets no HLS request (the key's format
                // differs).
                None => {
                    let _ = reply.send(Err(JoinError::Ended));
                    None
                }
            },
            ChannelMsg::Seen { token } if self.cut.is_some() => Some(TsInput::PlayerSeen(token)),
            ChannelMsg::Seen { .. } | ChannelMsg::Stop { .. } => None,
        }
    }

    fn completed(&mut self, env: &Env<N, TsInput>, input: &TsInput) {
        match input {
            TsInput::PlaybackData(_, bytes) if !self.ended => {
                env.proxy
                    .0
                    .metrics
                    .channel_bytes_in
                    .get_or_create(&env.labels)
                    .inc_by(bytes.len() as u64);
                let now = env.proxy.0.lifecycle.clock().now();
                env.status.media_in(now, bytes.len() as u64);
            }
            TsInput::PlaybackFailed(playback, reason)
                if self.playbacks.remove(playback).is_some() =>
            {
                tracing::warn!(channel = %env.key, %reason, "playback failed");
            }
            TsInput::PlaybackEnded(playback) if self.playbacks.remove(playback).is_some() => {
                tracing::warn!(channel = %env.key, "playback body ended");
            }
            _ => {}
        }
    }

    fn perform(&mut self, env: &Env<N, TsInput>, output: TsOutput, feedback: &mut Vec<TsInput>) {
        let metrics = &env.proxy.0.metrics;
        match output {
            TsOutput::OpenPlayback { playback, url } => {
                tracing::info!(channel = %env.key, %url, "opening playback");
                let shared = env.proxy.0.clone();
                let completions = env.completions.clone();
                let peer = env.relay.as_ref().and_then(|relay| relay.header_for(&url));
                let reader = tokio::spawn(read_playback(shared, url, peer, playback, completions));
                self.playbacks.insert(playback, reader.abort_handle());
            }
            TsOutput::ClosePlayback(playback) => {
                if let Some(reader) = self.playbacks.remove(&playback) {
                    reader.abort();
                }
            }
            TsOutput::Deliver {
                viewer,
                chunks,
                first,
            } => self.send(viewer, chunks, first, feedback),
            TsOutput::Keepalive { viewer, chunk } => {
                self.send(viewer, vec![chunk], false, feedback);
            }
            TsOutput::Close { viewer, reason } => {
                let Some(slot) = self.viewers.remove(&viewer) else {
                    return;
                };
                let end = match &reason {
                    CloseReason::StartFailed(failure) => End::Failed(failure.clone()),
                    CloseReason::Full { limit } => {
                        metrics.refused("viewers_per_channel");
                        End::Refused(format!("too many viewers (limit {limit})"))
                    }
                    CloseReason::Dropped(drop) => {
                        tracing::info!(channel = %env.key, %viewer, reason = drop.as_str(), "dropping viewer");
                        // A viewer that fell out of the ring hit --ring-bytes; one that
                        // stopped reading hit --viewer-stall-timeout.
                        let limit = match drop {
                            acemux_core::fanout::DropReason::FellBehind => "ring_bytes",
                            _ => "viewer_stall_timeout",
                        };
                        metrics.limit_hit(limit);
                        metrics
                            .viewer_drops
                            .get_or_create(&DropLabels {
                                channel: env.labels.channel.clone(),
                                reason: drop.as_str().to_owned(),
                            })
                            .inc();
                        slot.slot.end(End::Dropped(drop.as_str()));
                        // Its writes may be stuck: close the connection itself.
                        if let Some(kill) = slot.kill {
                            kill.kill();
                        }
                        return;
                    }
                    _ => End::Closed("channel_ended"),
                };
                if !slot.slot.end(end) {
                    if let Some(kill) = slot.kill {
                        kill.kill();
                    }
                }
            }
            TsOutput::Publish(snapshot) => {
                if let Some(cut) = &self.cut {
                    cut.snapshot.send_replace(Arc::new(snapshot));
                }
            }
            TsOutput::Answer { waiter, result } => {
                let Some(cut) = &mut self.cut else {
                    return;
                };
                let Some(reply) = cut.waiters.remove(&waiter) else {
                    return;
                };
                let answer = match result {
                    Ok(()) => Ok((cut.id, cut.snapshot.borrow().clone())),
                    Err(WaitFailure::Start(failure)) => Err(JoinError::Start(failure)),
                    Err(WaitFailure::Full { limit }) => {
                        metrics.refused("hls_start_waiters");
                        Err(JoinError::Capacity(format!(
                            "too many players are waiting for channel {} to start (limit {limit})",
                            env.key
                        )))
                    }
                    Err(_) => Err(JoinError::Ended),
                };
                let _ = reply.send(answer);
            }
            TsOutput::HlsReady => {
                tracing::info!(channel = %env.key, "HLS cut from the stream is ready");
            }
            TsOutput::SegmentCut {
                random_access,
                discontinuity,
                duration_us,
            } => {
                if self.ended {
                    return;
                }
                let start = match (random_access, discontinuity) {
                    (true, _) => "keyframe",
                    (false, true) => "discontinuity",
                    (false, false) => "bound",
                };
                metrics
                    .hls_cut_segments
                    .get_or_create(&CutLabels {
                        channel: env.labels.channel.clone(),
                        start: start.to_owned(),
                    })
                    .inc();
                if start == "bound" && !std::mem::replace(&mut self.warned_no_keyframe, true) {
                    tracing::warn!(channel = %env.key, duration_us,
                        "no keyframe within the HLS segment bound (3 × --hls-segment-target): \
                         segments are cut there and start without one, so players may show \
                         artefacts (counted in acemux_hls_cut_segments_total{{start=\"bound\"}})");
                }
            }
            TsOutput::Discarded { bytes, first } => {
                metrics
                    .ts_discarded_bytes
                    .get_or_create(&env.labels)
                    .inc_by(bytes);
                if first {
                    tracing::warn!(channel = %env.key, discarded = bytes,
                        "engine sent bytes that are not MPEG-TS packets; discarded (counted in acemux_ts_discarded_bytes_total)");
                }
            }
        }
    }

    fn ended(&mut self) {
        self.ended = true;
        for (_, reader) in std::mem::take(&mut self.playbacks) {
            reader.abort();
        }
    }
}

/// Reads a playback body and reports its events as completions.
async fn read_playback<N: Net>(
    shared: std::sync::Arc<super::Shared<N>>,
    url: String,
    peer: Option<(&'static str, String)>,
    playback: PlaybackId,
    completions: mpsc::Sender<Input<TsInput>>,
) {
    let send = |event| {
        let completions = completions.clone();
        async move { completions.send(Input::Media(event)).await.is_ok() }
    };
    let mut body = match shared.engines.open_playback(&url, peer).await {
        Ok(body) => body,
        Err(reason) => {
            send(TsInput::PlaybackFailed(playback, reason)).await;
            return;
        }
    };
    if !send(TsInput::PlaybackOpened(playback)).await {
        return;
    }
    loop {
        match body.frame().await {
            Some(Ok(frame)) => {
                if let Ok(data) = frame.into_data() {
                    if !data.is_empty() && !send(TsInput::PlaybackData(playback, data)).await {
                        return;
                    }
                }
            }
            Some(Err(error)) => {
                send(TsInput::PlaybackFailed(playback, error.to_string())).await;
                return;
            }
            None => {
                send(TsInput::PlaybackEnded(playback)).await;
                return;
            }
        }
    }
}
