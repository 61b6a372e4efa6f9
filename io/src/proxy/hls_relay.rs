//! Cluster mode: the HLS of a channel another instance owns. One task per relayed
//! channel drives core's [`HlsRelay`]: it fetches the owner's playlist and segments
//! (marked with the peer header, so the owner serves them only while it owns the
//! channel and never relays them again) and answers this instance's players. The
//! owner sees this instance as one player (`t=peer-<instance id>`).

use std::collections::BTreeMap;

use acemux_core::channel::{
    HlsRelay, RelayConfig, RelayFailure, RelayInput, RelayOutput, WaiterId,
};
use bytes::Bytes;
use tokio::sync::{mpsc, oneshot};

use super::relay::RelayTarget;
use super::{ChannelKey, Proxy};
use crate::metrics::HlsRelayFetchLabels;
use crate::net::Net;

/// Requests a relay's mailbox holds at most; more are refused at once.
const MAILBOX: usize = 1024;
/// Fetch answers waiting for the relay task at most.
const COMPLETIONS: usize = 64;

/// A player's answer: the owner's bytes, or why not.
pub(super) type RelayReply = Result<Bytes, RelayFailure>;

/// What a player asks a relay for.
#[derive(Clone, Copy, Debug)]
pub(super) enum RelayAsk {
    Playlist,
    Segment(u64),
}

pub(super) struct RelayMsg {
    ask: RelayAsk,
    reply: oneshot::Sender<RelayReply>,
}

/// A relayed channel in the proxy's directory of relays.
pub(super) struct RelayHandle {
    pub(super) id: u64,
    mailbox: mpsc::Sender<RelayMsg>,
}

impl RelayHandle {
    /// Hands `ask` to the relay (under the relays lock, so a relay that ends has either
    /// taken it or is gone from the directory); the answer comes on the receiver.
    /// `None` when its mailbox is full.
    pub(super) fn ask(&self, ask: RelayAsk) -> Option<oneshot::Receiver<RelayReply>> {
        let (reply, answer) = oneshot::channel();
        self.mailbox.try_send(RelayMsg { ask, reply }).ok()?;
        Some(answer)
    }
}

/// The path of segment `seq` of `key`'s HLS: the channel named by its key (the same
/// on every instance), the engine parameters in the query.
pub(super) fn segment_path(key: &ChannelKey, seq: u64) -> String {
    let params = key.params.query();
    let query = params
        .strip_prefix('&')
        .map(|params| format!("?{params}"))
        .unwrap_or_default();
    format!(
        "/ace/hls/{}/{}/{seq}.ts{query}",
        key.key_type.as_str(),
        crate::engine::percent_encode(&key.key)
    )
}

/// `uri` with one more query pair.
pub(super) fn with_pair(uri: &str, pair: &str) -> String {
    let separator = if uri.contains('?') { '&' } else { '?' };
    format!("{uri}{separator}{pair}")
}

/// Starts relaying `key` from `target`.
pub(super) fn spawn<N: Net>(
    proxy: &Proxy<N>,
    id: u64,
    key: &ChannelKey,
    target: RelayTarget,
    instance: &str,
) -> RelayHandle {
    let (mailbox, inbox) = mpsc::channel(MAILBOX);
    let config = &proxy.0.config;
    let relay = HlsRelay::new(
        proxy.0.lifecycle.clock().now(),
        RelayConfig {
            max_segments: config.hls.max_segments,
            max_bytes: config.hls.max_buffer_bytes,
            idle_timeout: config.hls_idle_timeout,
            ..RelayConfig::default()
        },
    );
    let token = format!(
        "t={}",
        crate::engine::percent_encode(&format!("peer-{instance}"))
    );
    tracing::info!(channel = %key, owner = %target.base, "relaying the channel's HLS from the instance that owns it");
    proxy.0.metrics.cluster_relays.inc();
    let task = RelayTask {
        proxy: proxy.clone(),
        id,
        key: key.clone(),
        playlist_url: format!(
            "{}/ace/manifest.m3u8?{}={}{}&{token}",
            target.base,
            key.key_type.as_str(),
            crate::engine::percent_encode(&key.key),
            key.params.query()
        ),
        token,
        target,
        relay,
        replies: BTreeMap::new(),
        next_waiter: 1,
        completions: mpsc::channel(COMPLETIONS),
    };
    tokio::spawn(task.run(inbox));
    RelayHandle { id, mailbox }
}

struct RelayTask<N: Net> {
    proxy: Proxy<N>,
    id: u64,
    key: ChannelKey,
    target: RelayTarget,
    playlist_url: String,
    /// The query pair naming this instance to the owner.
    token: String,
    relay: HlsRelay,
    replies: BTreeMap<WaiterId, oneshot::Sender<RelayReply>>,
    next_waiter: u64,
    completions: (mpsc::Sender<RelayInput>, mpsc::Receiver<RelayInput>),
}

impl<N: Net> RelayTask<N> {
    async fn run(mut self, mut inbox: mpsc::Receiver<RelayMsg>) {
        let clock = self.proxy.0.lifecycle.clock();
        loop {
            if self.drain() {
                self.retire(&mut inbox);
                return;
            }
            let sleep = clock.sleep_until_earliest([self.relay.poll_timeout()]);
            tokio::select! {
                biased;
                Some(input) = self.completions.1.recv() => {
                    self.relay.handle_input(clock.now(), input);
                }
                message = inbox.recv() => match message {
                    Some(RelayMsg { ask, reply }) => {
                        let waiter = WaiterId(self.next_waiter);
                        self.next_waiter += 1;
                        self.replies.insert(waiter, reply);
                        let input = match ask {
                            RelayAsk::Playlist => RelayInput::Playlist { waiter },
                            RelayAsk::Segment(seq) => RelayInput::Segment { waiter, seq },
                        };
                        self.relay.handle_input(clock.now(), input);
                    }
                    // The directory holds a sender until the relay retires.
                    None => return,
                },
                () = sleep => self.relay.handle_timeout(clock.now()),
            }
        }
    }

    /// Performs every pending output; says whether the relay ended.
    fn drain(&mut self) -> bool {
        while let Some(output) = self.relay.poll_output() {
            match output {
                RelayOutput::FetchPlaylist => {
                    let url = self.playlist_url.clone();
                    self.fetch(
                        "playlist",
                        url,
                        crate::engine::MAX_PLAYLIST_BYTES,
                        |result| RelayInput::PlaylistFetched { result },
                    );
                }
                RelayOutput::FetchSegment { seq } => {
                    let path = segment_path(&self.key, seq);
                    let url = with_pair(&format!("{}{path}", self.target.base), &self.token);
                    let max = self.proxy.0.config.hls_max_segment_bytes;
                    self.fetch("segment", url, max, move |result| {
                        RelayInput::SegmentFetched { seq, result }
                    });
                }
                RelayOutput::Playlist { waiter, result }
                | RelayOutput::Segment { waiter, result } => {
                    if let Some(reply) = self.replies.remove(&waiter) {
                        let _ = reply.send(result);
                    }
                }
                RelayOutput::Ended { reason } => {
                    tracing::info!(channel = %self.key, owner = %self.target.base, reason = reason.as_str(), "HLS relay ended");
                    return true;
                }
            }
        }
        false
    }

    /// GETs `url` from the owner (with the peer mark), the answer made into an input.
    fn fetch(
        &self,
        kind: &'static str,
        url: String,
        max_bytes: usize,
        input: impl FnOnce(Result<Bytes, acemux_core::channel::FetchError>) -> RelayInput
            + Send
            + 'static,
    ) {
        let shared = self.proxy.0.clone();
        let header = self.target.header_for(&url);
        let completions = self.completions.0.clone();
        tokio::spawn(async move {
            let result = shared
                .engines
                .fetch_bounded_with(&url, max_bytes, header)
                .await;
            let labels = HlsRelayFetchLabels {
                kind,
                result: if result.is_ok() { "ok" } else { "error" },
            };
            shared
                .metrics
                .cluster_hls_relay_fetches
                .get_or_create(&labels)
                .inc();
            if let Err(error) = &result {
                tracing::debug!(%url, %error, "HLS fetch from the owning instance failed");
            }
            let _ = completions.send(input(result)).await;
        });
    }

    /// Takes the relay out of the directory and answers what is still in its mailbox:
    /// those requests ask the cluster again.
    fn retire(&mut self, inbox: &mut mpsc::Receiver<RelayMsg>) {
        let mut relays = self.proxy.relays();
        if relays
            .get(&self.key)
            .is_some_and(|handle| handle.id == self.id)
        {
            relays.remove(&self.key);
        }
        inbox.close();
        while let Ok(RelayMsg { reply, .. }) = inbox.try_recv() {
            let _ = reply.send(Err(RelayFailure::Ended));
        }
        for (_, reply) in std::mem::take(&mut self.replies) {
            let _ = reply.send(Err(RelayFailure::Ended));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::{EngineParams, StreamFormat};
    use acemux_core::lifecycle::KeyType;

    #[test]
    fn a_segment_is_named_by_its_channels_key_and_parameters() {
        let mut key = ChannelKey {
            format: StreamFormat::Hls,
            key_type: KeyType::Url,
            key: "http://x/a b.torrent".into(),
            params: EngineParams::default(),
        };
        assert_eq!(
            segment_path(&key, 7),
            "/ace/hls/url/http%3A%2F%2Fx%2Fa%20b.torrent/7.ts"
        );
        key.key_type = KeyType::ContentId;
        key.key = "abc".into();
        key.params.file_indexes = Some("1".into());
        assert_eq!(
            segment_path(&key, 7),
            "/ace/hls/content_id/abc/7.ts?file_indexes=1"
        );
        assert_eq!(
            with_pair(&segment_path(&key, 7), "t=x"),
            "/ace/hls/content_id/abc/7.ts?file_indexes=1&t=x"
        );
    }
}
