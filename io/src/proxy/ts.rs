//! The MPEG-TS channel task: owns one channel's [`Channel`](acemux_core::channel::Channel)
//! and [`Fanout`] machines and is the only thing that mutates them. Engine calls and the
//! playback reader run as helper tasks that report back as events.

use std::collections::BTreeMap;

use acemux_core::channel::{Input, Output};
use acemux_core::fanout::{self, Fanout, ViewerId};
use bytes::Bytes;
use http_body_util::BodyExt;
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;

use super::session::SessionDriver;
use super::viewer::ViewerMsg;
use super::{ChannelKey, ChannelMsg, Proxy};
use crate::metrics::DropLabels;
use crate::net::Net;
use crate::server::ConnectionKill;

/// Playback events held at most; the playback reader waits when it is full, which is
/// the backpressure towards the engine.
const PLAYBACK_EVENTS: usize = 64;

struct PlaybackEvent {
    generation: u64,
    event: Playback,
}

enum Playback {
    Opened,
    Data(Bytes),
    Failed(String),
    Ended,
}

struct ViewerSlot {
    tx: mpsc::Sender<ViewerMsg>,
    kill: Option<ConnectionKill>,
    has_media: bool,
}

struct Task<N: Net> {
    driver: SessionDriver<N>,
    fanout: Fanout,
    viewers: BTreeMap<ViewerId, ViewerSlot>,
    playback_events: mpsc::Sender<PlaybackEvent>,
    playback: Option<JoinHandle<()>>,
    generation: u64,
    /// Whether non-TS bytes from the engine were already logged for this channel.
    warned_not_ts: bool,
}

pub(super) async fn run<N: Net>(
    proxy: Proxy<N>,
    id: u64,
    key: ChannelKey,
    mut inbox: mpsc::Receiver<ChannelMsg>,
    stream_id: watch::Sender<Option<String>>,
) {
    let clock = proxy.0.lifecycle.clock();
    let fanout = Fanout::new(proxy.0.config.fanout.clone());
    let config = proxy.0.config.channel.clone();
    let (driver, mut session_rx) = SessionDriver::new(proxy, key, config, stream_id);
    let (playback_events, mut playback_rx) = mpsc::channel(PLAYBACK_EVENTS);
    let mut task = Task {
        driver,
        fanout,
        viewers: BTreeMap::new(),
        playback_events,
        playback: None,
        generation: 0,
        warned_not_ts: false,
    };
    loop {
        task.drain();
        if task.driver.channel.is_ended() {
            break;
        }
        let sleep = clock.sleep_until_earliest([
            task.driver.channel.poll_timeout(),
            task.fanout.poll_timeout(),
        ]);
        tokio::select! {
            biased;
            Some(event) = playback_rx.recv() => task.on_playback(event),
            Some(event) = session_rx.recv() => task.driver.on_session(event),
            message = inbox.recv() => match message {
                Some(message) => task.on_message(message),
                // Nobody can reach this channel any more.
                None => task.driver.channel.handle_input(clock.now(), Input::Stop("unreachable".into())),
            },
            () = sleep => {
                let now = clock.now();
                task.driver.channel.handle_timeout(now);
                task.fanout.handle_timeout(now);
            }
        }
    }
    task.close_playback();
    for (_, slot) in std::mem::take(&mut task.viewers) {
        if slot
            .tx
            .try_send(ViewerMsg::Closed("channel_ended"))
            .is_err()
        {
            if let Some(kill) = slot.kill {
                kill.kill();
            }
        }
    }
    task.driver.finish(id, session_rx).await;
}

impl<N: Net> Task<N> {
    fn on_message(&mut self, message: ChannelMsg) {
        let now = self.driver.now();
        match message {
            ChannelMsg::Join { viewer, tx, kill } => {
                match self.fanout.handle_input(now, fanout::Input::Join(viewer)) {
                    Ok(()) => {
                        let _ = self.fanout.handle_input(now, fanout::Input::Ready(viewer));
                        self.viewers.insert(
                            viewer,
                            ViewerSlot {
                                tx,
                                kill,
                                has_media: false,
                            },
                        );
                        self.viewers_changed();
                    }
                    Err(error) => {
                        if let fanout::FanoutError::Capacity { .. } = error {
                            self.driver.proxy.0.metrics.limit_hit("viewers_per_channel");
                        }
                        let _ = tx.try_send(ViewerMsg::Refused(error.to_string()));
                    }
                }
            }
            ChannelMsg::Ready(viewer) => {
                // Unknown viewers were dropped meanwhile; nothing to do.
                let _ = self.fanout.handle_input(now, fanout::Input::Ready(viewer));
            }
            ChannelMsg::Leave(viewer) => {
                let _ = self.fanout.handle_input(now, fanout::Input::Leave(viewer));
                if self.viewers.remove(&viewer).is_some() {
                    self.viewers_changed();
                }
            }
            ChannelMsg::Stop { reason, done } => {
                self.driver.stop_waiters.push(done);
                self.driver.channel.handle_input(now, Input::Stop(reason));
            }
            // HLS requests never reach a TS channel (the key's format differs).
            ChannelMsg::Hls(_) => {}
        }
    }

    fn on_playback(&mut self, event: PlaybackEvent) {
        if event.generation != self.generation {
            return;
        }
        let now = self.driver.now();
        let channel = &mut self.driver.channel;
        match event.event {
            Playback::Opened => channel.handle_input(now, Input::PlaybackOpened),
            Playback::Data(bytes) => {
                let metrics = self.driver.proxy.0.metrics.clone();
                let len = bytes.len();
                metrics
                    .channel_bytes_in
                    .get_or_create(&self.driver.labels)
                    .inc_by(len as u64);
                let discarded_before = self.fanout.stats().discarded_bytes;
                let _ = self.fanout.handle_input(now, fanout::Input::Data(bytes));
                let discarded = self
                    .fanout
                    .stats()
                    .discarded_bytes
                    .saturating_sub(discarded_before);
                if discarded > 0 {
                    metrics
                        .ts_discarded_bytes
                        .get_or_create(&self.driver.labels)
                        .inc_by(discarded);
                    if !self.warned_not_ts {
                        self.warned_not_ts = true;
                        tracing::warn!(channel = %self.driver.key, discarded,
                            "engine sent bytes that are not MPEG-TS packets; discarded (counted in acemux_ts_discarded_bytes_total)");
                    }
                }
                // Only media counts as upstream activity: an engine that sends nothing
                // but junk is as silent as one that sends nothing.
                let media = len.saturating_sub(usize::try_from(discarded).unwrap_or(usize::MAX));
                if media > 0 {
                    channel.handle_input(now, Input::Data(media));
                }
            }
            Playback::Failed(reason) => {
                tracing::warn!(channel = %self.driver.key, %reason, "playback failed");
                self.playback = None;
                channel.handle_input(now, Input::PlaybackFailed(reason));
            }
            Playback::Ended => {
                tracing::warn!(channel = %self.driver.key, "playback body ended");
                self.playback = None;
                channel.handle_input(now, Input::PlaybackEnded);
            }
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

    /// Performs every pending output of both machines (outputs can cause inputs, so
    /// loop until both are quiet).
    fn drain(&mut self) {
        loop {
            let mut progressed = false;
            while let Some(output) = self.driver.channel.poll_output() {
                progressed = true;
                if let Some(media) = self.driver.perform(output) {
                    self.perform_media(media);
                }
            }
            while let Some(output) = self.fanout.poll_output() {
                progressed = true;
                self.deliver(output);
            }
            if !progressed {
                return;
            }
        }
    }

    fn perform_media(&mut self, output: Output) {
        let shared = self.driver.proxy.0.clone();
        let labels = self.driver.labels.clone();
        let labels = &labels;
        match output {
            Output::OpenPlayback { url } => {
                self.close_playback();
                if self.driver.channel.has_started() {
                    shared
                        .metrics
                        .channel_reconnects
                        .get_or_create(labels)
                        .inc();
                }
                let generation = self.generation;
                let events = self.playback_events.clone();
                tracing::info!(channel = %self.driver.key, %url, "opening playback");
                self.playback = Some(tokio::spawn(read_playback(shared, url, generation, events)));
            }
            Output::ClosePlayback => {
                shared
                    .metrics
                    .channel_upstream_stalls
                    .get_or_create(labels)
                    .inc();
                self.close_playback();
            }
            Output::StartFailed(failure) => {
                tracing::warn!(channel = %self.driver.key, code = failure.code(), ?failure, "channel could not start");
                for slot in self.viewers.values() {
                    let _ = slot.tx.try_send(ViewerMsg::Failed(failure.clone()));
                }
            }
            _ => {}
        }
    }

    fn deliver(&mut self, output: fanout::Output) {
        let now = self.driver.now();
        match output {
            fanout::Output::Deliver { viewer, chunks, .. } => {
                let Some(slot) = self.viewers.get_mut(&viewer) else {
                    return;
                };
                slot.has_media = true;
                if slot.tx.try_send(ViewerMsg::Data(chunks)).is_err() {
                    self.drop_viewer(viewer, "gone");
                }
            }
            fanout::Output::Keepalive { viewer, chunk } => {
                let Some(slot) = self.viewers.get(&viewer) else {
                    return;
                };
                if !slot.has_media {
                    // Before its first media a viewer has no response yet: nothing to keep
                    // alive, it waits for the start (bounded by the start timeout).
                    let _ = self.fanout.handle_input(now, fanout::Input::Ready(viewer));
                    return;
                }
                if slot.tx.try_send(ViewerMsg::Data(vec![chunk])).is_err() {
                    self.drop_viewer(viewer, "gone");
                }
            }
            fanout::Output::Drop { viewer, reason } => {
                tracing::info!(channel = %self.driver.key, %viewer, reason = reason.as_str(), "dropping viewer");
                // A viewer that fell out of the ring hit --ring-bytes; one that stopped
                // reading hit --viewer-stall-timeout.
                let limit = match reason {
                    fanout::DropReason::FellBehind => "ring_bytes",
                    _ => "viewer_stall_timeout",
                };
                self.driver.proxy.0.metrics.limit_hit(limit);
                self.driver
                    .proxy
                    .0
                    .metrics
                    .viewer_drops
                    .get_or_create(&DropLabels {
                        channel: self.driver.labels.channel.clone(),
                        reason: reason.as_str().to_owned(),
                    })
                    .inc();
                if let Some(slot) = self.viewers.remove(&viewer) {
                    let _ = slot.tx.try_send(ViewerMsg::Closed(reason.as_str()));
                    if let Some(kill) = slot.kill {
                        kill.kill();
                    }
                    self.viewers_changed();
                }
            }
        }
    }

    fn drop_viewer(&mut self, viewer: ViewerId, reason: &'static str) {
        let now = self.driver.now();
        let _ = self.fanout.handle_input(now, fanout::Input::Leave(viewer));
        if let Some(slot) = self.viewers.remove(&viewer) {
            let _ = slot.tx.try_send(ViewerMsg::Closed(reason));
            self.viewers_changed();
        }
    }

    fn close_playback(&mut self) {
        if let Some(reader) = self.playback.take() {
            reader.abort();
        }
        // Late events of the closed reader are recognised by their old generation.
        self.generation += 1;
    }
}

async fn read_playback<N: Net>(
    shared: std::sync::Arc<super::Shared<N>>,
    url: String,
    generation: u64,
    events: mpsc::Sender<PlaybackEvent>,
) {
    let send = |event| {
        let events = events.clone();
        async move {
            events
                .send(PlaybackEvent { generation, event })
                .await
                .is_ok()
        }
    };
    let mut body = match shared.engines.open_playback(&url).await {
        Ok(body) => body,
        Err(reason) => {
            send(Playback::Failed(reason)).await;
            return;
        }
    };
    if !send(Playback::Opened).await {
        return;
    }
    loop {
        match body.frame().await {
            Some(Ok(frame)) => {
                if let Ok(data) = frame.into_data() {
                    if !data.is_empty() && !send(Playback::Data(data)).await {
                        return;
                    }
                }
            }
            Some(Err(error)) => {
                send(Playback::Failed(error.to_string())).await;
                return;
            }
            None => {
                send(Playback::Ended).await;
                return;
            }
        }
    }
}
