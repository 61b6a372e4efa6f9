//! The HLS player routes' side of the proxy: a channel's served playlist and segments,
//! named by the channel's key (so a URI means the same on every instance), and in
//! cluster mode fetched from the instance that owns the channel when that is another.

use std::sync::{Arc, MutexGuard};

use acemux_core::channel::{for_player, RelayFailure, StartFailure};
use acemux_core::cluster::Route;
use acemux_core::hls::SegmentBody;
use tokio::sync::oneshot;

use super::hls_relay::{self, RelayAsk, RelayHandle, RelayReply};
use super::relay::RelayTarget;
use super::{viewers, ChannelKey, ChannelMsg, Client, HlsSource, JoinError, Proxy};
use crate::engine::StreamFormat;
use crate::metrics::ChannelLabels;
use crate::net::Net;

/// Who asks for HLS: a player, or a peer instance relaying for its players (served
/// only from this instance's own channel, never relayed again).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Asker {
    /// A player (or anything without the peer mark).
    Player,
    /// A peer instance (the peer mark was checked).
    Peer,
}

/// Where a player's HLS request is served.
enum Served {
    /// By another instance, which owns the channel: its answer.
    Relayed(RelayReply),
    /// Here. `routed`: the cluster was just asked and said so (the lease is this
    /// instance's now, or is being taken), so the channel must run here, or the lease
    /// be given back.
    Here { routed: bool },
}

impl<N: Net> Proxy<N> {
    pub(super) fn relays(
        &self,
    ) -> MutexGuard<'_, std::collections::BTreeMap<ChannelKey, RelayHandle>> {
        self.0
            .relays
            .lock()
            .unwrap_or_else(|poison| poison.into_inner())
    }

    /// The channel that serves `key`'s HLS here: with `--hls-source ts` the content's
    /// TS channel, which cuts the segments from its own stream.
    pub fn hls_channel_key(&self, key: ChannelKey) -> ChannelKey {
        match (key.format, self.0.config.hls_source) {
            (StreamFormat::Hls, HlsSource::Ts) => ChannelKey {
                format: StreamFormat::Ts,
                ..key
            },
            _ => key,
        }
    }

    /// The served playlist of `key`'s HLS for player `token`. Here: the channel,
    /// started if needed; a new channel's first answer waits until it is ready (the
    /// channel answers by its start timeout at the latest). In cluster mode, for a
    /// player, when another instance owns the channel: that instance's playlist,
    /// unchanged but for the player's token. A peer's playlist names no token (the
    /// peer puts its players' own on).
    pub async fn hls_playlist(
        &self,
        key: ChannelKey,
        token: String,
        client: Client,
        asker: Asker,
    ) -> Result<String, JoinError> {
        let hls_key = key.clone();
        let key = self.hls_channel_key(key);
        let pair = match asker {
            Asker::Player => format!("t={}", crate::engine::percent_encode(&token)),
            Asker::Peer => String::new(),
        };
        if let Served::Relayed(reply) = self.ask_owner(&key, RelayAsk::Playlist, asker).await? {
            let text = reply.map_err(|failure| relay_error(&key, failure))?;
            let text = String::from_utf8_lossy(&text);
            return Ok(for_player(&text, &pair));
        }
        let ready = {
            let mut channels = self.channels();
            let handle = self.channel_or_release(&mut channels, &key)?;
            self.hls_player(&handle.status, &token, client);
            // Presence only: a full mailbox loses one sighting of a player who keeps
            // asking.
            let _ = handle.mailbox.try_send(ChannelMsg::Seen {
                token: token.clone(),
            });
            let snapshot = handle.snapshot.as_ref().map(|rx| rx.borrow().clone());
            snapshot.filter(|snapshot| snapshot.ready)
        };
        let snapshot = match ready {
            Some(snapshot) => snapshot,
            None => {
                let (reply, ready) = oneshot::channel();
                self.send(&key, ChannelMsg::WaitReady { reply }).await?;
                ready.await.map_err(|_| JoinError::Ended)??.1
            }
        };
        Ok(snapshot.render(|seq| {
            let path = hls_relay::segment_path(&hls_key, seq);
            if pair.is_empty() {
                path
            } else {
                hls_relay::with_pair(&path, &pair)
            }
        }))
    }

    /// Segment `seq` of `key`'s HLS (`None`: not held); counts as activity of `token`.
    /// In cluster mode, for a player, when another instance owns the channel: that
    /// instance's segment, fetched once and held for every player here.
    pub async fn hls_segment_of(
        &self,
        key: ChannelKey,
        seq: u64,
        token: String,
        client: Client,
        asker: Asker,
    ) -> Result<Option<SegmentBody>, JoinError> {
        let key = self.hls_channel_key(key);
        let routed = match self.ask_owner(&key, RelayAsk::Segment(seq), asker).await? {
            Served::Here { routed } => routed,
            Served::Relayed(reply) => {
                return match reply {
                    Ok(bytes) => Ok(Some(bytes.into())),
                    Err(RelayFailure::Fetch(acemux_core::channel::FetchError::Status {
                        status: 404,
                        ..
                    })) => Ok(None),
                    Err(failure) => Err(relay_error(&key, failure)),
                }
            }
        };
        let found = {
            let mut channels = self.channels();
            let found = channels
                .get(&key)
                .map(|handle| (handle.id, handle.snapshot.clone()));
            if found.is_none() && routed {
                // This instance has just become the owner (the last one went): the
                // channel starts for the player, whose next playlist names its segments.
                let handle = self.channel_or_release(&mut channels, &key)?;
                let _ = handle.mailbox.try_send(ChannelMsg::Seen {
                    token: token.clone(),
                });
            }
            found
        };
        let Some((id, Some(_))) = found else {
            return Ok(None);
        };
        Ok(self.hls_segment(id, seq, token, client))
    }

    /// `key`'s channel in the (locked) directory, started if needed; one that cannot
    /// start gives back the lease the cluster may have given it.
    fn channel_or_release<'a>(
        &self,
        channels: &'a mut std::collections::BTreeMap<ChannelKey, super::ChannelHandle>,
        key: &ChannelKey,
    ) -> Result<&'a super::ChannelHandle, JoinError> {
        let exists = channels.contains_key(key);
        let handle = self.channel_locked(channels, key);
        if handle.is_err() && !exists {
            if let Some(cluster) = self.0.cluster.get() {
                cluster.finished(&key.to_string());
            }
        }
        handle
    }

    /// Cluster mode, a player's request for `key`'s HLS: when another instance owns
    /// the channel, `ask` goes to this instance's relay of it (started if needed) and
    /// its answer is returned; otherwise the channel is served here (owned here, no
    /// cluster, a peer's request, or Redis unreachable). A relay that ended (its owner
    /// went) is replaced once, after asking the cluster again.
    async fn ask_owner(
        &self,
        key: &ChannelKey,
        ask: RelayAsk,
        asker: Asker,
    ) -> Result<Served, JoinError> {
        let here = Served::Here { routed: false };
        let Some(cluster) = self.0.cluster.get() else {
            return Ok(here);
        };
        if asker == Asker::Peer {
            return Ok(here);
        }
        let channel = key.to_string();
        for _ in 0..2 {
            if cluster.holds(&channel) {
                return Ok(here);
            }
            let asked = self.relays().get(key).map(|handle| handle.ask(ask));
            let answer = match asked {
                Some(Some(answer)) => answer,
                Some(None) => return Err(relay_busy(key)),
                None => match cluster.route(&channel).await {
                    Route::Own { .. } | Route::Local => return Ok(Served::Here { routed: true }),
                    Route::Relay(owner) => {
                        let Some(target) = RelayTarget::new(&owner.advertise, cluster.secret())
                        else {
                            tracing::warn!(channel = %key, owner = %owner.instance, advertise = %owner.advertise,
                                "the channel's owner advertises an unusable address");
                            return Err(JoinError::Start(StartFailure::NoEngine));
                        };
                        let mut relays = self.relays();
                        let handle = relays.entry(key.clone()).or_insert_with(|| {
                            hls_relay::spawn(self, self.next_id(), key, target, cluster.instance())
                        });
                        handle.ask(ask).ok_or_else(|| relay_busy(key))?
                    }
                },
            };
            match answer.await {
                // The relay ended (its owner went, or it was idle): ask again.
                Ok(Err(RelayFailure::Ended)) | Err(_) => continue,
                Ok(reply) => return Ok(Served::Relayed(reply)),
            }
        }
        Err(JoinError::Ended)
    }

    /// Segment `seq` of HLS channel `id`, if it is held; counts as activity of `token`.
    pub fn hls_segment(
        &self,
        id: u64,
        seq: u64,
        token: String,
        client: Client,
    ) -> Option<SegmentBody> {
        let (mailbox, snapshot, status, labels) = self
            .channels()
            .iter()
            .find(|(_, handle)| handle.id == id)
            .map(|(key, handle)| {
                (
                    handle.mailbox.clone(),
                    handle.snapshot.clone(),
                    handle.status.clone(),
                    ChannelLabels::new(key),
                )
            })?;
        let player = self.hls_player(&status, &token, client);
        let _ = mailbox.try_send(ChannelMsg::Seen { token });
        let snapshot = snapshot?;
        // The segment's parts: handles on memory the channel holds anyway, not a copy.
        let body = snapshot.borrow().segment(seq)?.body.clone();
        let now = self.0.lifecycle.clock().now();
        if let Some(player) = player {
            player.sent(now, body.len() as u64);
        }
        status.bytes_out.add(now, body.len() as u64);
        self.0
            .metrics
            .channel_bytes_out
            .get_or_create(&labels)
            .inc_by(body.len() as u64);
        Some(body)
    }

    /// The record of HLS player `token` of a channel (bounded by the channel's viewer
    /// bound; quiet players are forgotten after the HLS idle timeout).
    pub(super) fn hls_player(
        &self,
        status: &viewers::ChannelStatus,
        token: &str,
        client: Client,
    ) -> Option<Arc<viewers::ViewerRecord>> {
        status.hls_player(
            token,
            || client,
            || self.next_id(),
            self.0.lifecycle.clock().now(),
            self.0.config.hls_idle_timeout,
            self.0.config.fanout.max_viewers,
        )
    }
}

fn relay_busy(key: &ChannelKey) -> JoinError {
    JoinError::Capacity(format!(
        "too many requests wait for channel {key} from the instance that owns it"
    ))
}

/// What a player is told when the owner's answer did not come.
fn relay_error(key: &ChannelKey, failure: RelayFailure) -> JoinError {
    match failure {
        RelayFailure::Full { limit } => JoinError::Capacity(format!(
            "too many requests wait for channel {key} from the instance that owns it (limit {limit})"
        )),
        RelayFailure::Fetch(error) => JoinError::Start(StartFailure::Engine(format!(
            "the instance that owns the channel: {error}"
        ))),
        RelayFailure::Ended => JoinError::Ended,
    }
}
