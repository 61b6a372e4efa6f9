//! The channel task: owns one channel's [`Channel`] and [`Fanout`] machines and is
//! the only thing that mutates them. Engine calls and the playback reader run as
//! helper tasks that report back as events.

use std::collections::BTreeMap;

use acemux_core::channel::{Channel, EngineSession, Input, Output, SessionError};
use acemux_core::fanout::{self, Fanout, ViewerId};
use acemux_core::lifecycle::{self, EngineAddr, StreamEnded, StreamKey, StreamStarted};
use bytes::Bytes;
use http_body_util::BodyExt;
use tokio::sync::{mpsc, oneshot, watch};
use tokio::task::JoinHandle;

use super::viewer::ViewerMsg;
use super::{ChannelKey, ChannelMsg, Proxy};
use crate::metrics::{ChannelLabels, DropLabels};
use crate::net::Net;
use crate::server::ConnectionKill;

/// Events from helper tasks held at most; the playback reader waits when it is full,
/// which is the backpressure towards the engine.
const EVENTS: usize = 64;

enum TaskEvent {
    SessionReady(EngineSession),
    SessionFailed(EngineAddr, SessionError),
    Playback { generation: u64, event: Playback },
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
    proxy: Proxy<N>,
    key: ChannelKey,
    labels: ChannelLabels,
    channel: Channel,
    fanout: Fanout,
    viewers: BTreeMap<ViewerId, ViewerSlot>,
    events: mpsc::Sender<TaskEvent>,
    playback: Option<JoinHandle<()>>,
    generation: u64,
    stream_id: watch::Sender<Option<String>>,
    lifecycle: mpsc::UnboundedSender<lifecycle::Input>,
    stop_waiters: Vec<oneshot::Sender<()>>,
}

pub(super) async fn run<N: Net>(
    proxy: Proxy<N>,
    id: u64,
    key: ChannelKey,
    mut inbox: mpsc::Receiver<ChannelMsg>,
    stream_id: watch::Sender<Option<String>>,
) {
    let shared = proxy.0.clone();
    let clock = shared.lifecycle.clock();
    let (events, mut event_rx) = mpsc::channel(EVENTS);
    // Lifecycle changes of one channel are applied in order by one task, off this loop:
    // a slow commit never holds up the media. At most two per engine session, and
    // sessions are bounded by the channel's retry rules, so this queue stays small.
    let (lifecycle_tx, mut lifecycle_rx) = mpsc::unbounded_channel::<lifecycle::Input>();
    let registry = shared.lifecycle.clone();
    let applier = tokio::spawn(async move {
        while let Some(input) = lifecycle_rx.recv().await {
            if let Err(error) = registry.apply(input, None).await {
                tracing::error!(%error, "lifecycle change of a proxied stream was not applied");
            }
        }
    });
    let labels = ChannelLabels::new(&key);
    shared.metrics.channels.inc();
    let mut task = Task {
        channel: Channel::new(clock.now(), shared.config.channel.clone()),
        fanout: Fanout::new(shared.config.fanout.clone()),
        proxy,
        key,
        labels,
        viewers: BTreeMap::new(),
        events,
        playback: None,
        generation: 0,
        stream_id,
        lifecycle: lifecycle_tx,
        stop_waiters: Vec::new(),
    };
    loop {
        task.drain();
        if task.channel.is_ended() {
            break;
        }
        let deadline = [task.channel.poll_timeout(), task.fanout.poll_timeout()]
            .into_iter()
            .flatten()
            .min();
        let sleep = async {
            match deadline {
                Some(at) => tokio::time::sleep_until(clock.deadline(at)).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            biased;
            Some(event) = event_rx.recv() => task.on_event(event),
            message = inbox.recv() => match message {
                Some(message) => task.on_message(message),
                // Nobody can reach this channel any more.
                None => task.channel.handle_input(clock.now(), Input::Stop("unreachable".into())),
            },
            () = sleep => {
                let now = clock.now();
                task.channel.handle_timeout(now);
                task.fanout.handle_timeout(now);
            }
        }
    }
    let waiters = task.finish(id);
    // Sessions granted after the end are stopped, not leaked on the engine.
    event_rx.close();
    while let Ok(event) = event_rx.try_recv() {
        if let TaskEvent::SessionReady(session) = event {
            tokio::spawn(stop_orphan(shared.clone(), session));
        }
    }
    // Stop waiters (and shutdown) learn of the end once its `stream_ended` is applied.
    if let Err(error) = applier.await {
        tracing::error!(%error, "lifecycle task of a channel failed");
    }
    for waiter in waiters {
        let _ = waiter.send(());
    }
}

impl<N: Net> Task<N> {
    fn now(&self) -> acemux_core::Instant {
        self.proxy.0.lifecycle.clock().now()
    }

    fn on_message(&mut self, message: ChannelMsg) {
        let now = self.now();
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
                self.stop_waiters.push(done);
                self.channel.handle_input(now, Input::Stop(reason));
            }
        }
    }

    fn on_event(&mut self, event: TaskEvent) {
        let now = self.now();
        match event {
            TaskEvent::SessionReady(session) => {
                self.pool().session_opened(&session.engine);
                self.channel.handle_input(now, Input::SessionReady(session));
            }
            TaskEvent::SessionFailed(engine, error) => {
                tracing::warn!(channel = %self.key, %engine, ?error, "engine did not grant a session");
                self.pool().failed(now, &engine);
                self.channel
                    .handle_input(now, Input::SessionFailed { engine, error });
            }
            TaskEvent::Playback { generation, event } => {
                if generation != self.generation {
                    return;
                }
                match event {
                    Playback::Opened => self.channel.handle_input(now, Input::PlaybackOpened),
                    Playback::Data(bytes) => {
                        self.proxy
                            .0
                            .metrics
                            .channel_bytes_in
                            .get_or_create(&self.labels)
                            .inc_by(bytes.len() as u64);
                        self.channel.handle_input(now, Input::Data(bytes.len()));
                        let _ = self.fanout.handle_input(now, fanout::Input::Data(bytes));
                    }
                    Playback::Failed(reason) => {
                        tracing::warn!(channel = %self.key, %reason, "playback failed");
                        self.playback = None;
                        self.channel
                            .handle_input(now, Input::PlaybackFailed(reason));
                    }
                    Playback::Ended => {
                        tracing::warn!(channel = %self.key, "playback body ended");
                        self.playback = None;
                        self.channel.handle_input(now, Input::PlaybackEnded);
                    }
                }
            }
        }
    }

    fn pool(&self) -> std::sync::MutexGuard<'_, acemux_core::channel::EnginePool> {
        self.proxy
            .0
            .pool
            .lock()
            .unwrap_or_else(|poison| poison.into_inner())
    }

    fn viewers_changed(&mut self) {
        let count = self.viewers.len();
        self.proxy
            .0
            .metrics
            .channel_viewers
            .get_or_create(&self.labels)
            .set(i64::try_from(count).unwrap_or(i64::MAX));
        let now = self.now();
        self.channel.handle_input(now, Input::Viewers(count));
    }

    /// Performs every pending output of both machines (outputs can cause inputs, so
    /// loop until both are quiet).
    fn drain(&mut self) {
        loop {
            let mut progressed = false;
            while let Some(output) = self.channel.poll_output() {
                progressed = true;
                self.perform(output);
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

    fn perform(&mut self, output: Output) {
        let shared = self.proxy.0.clone();
        match output {
            Output::RequestSession { exclude } => {
                let now = self.now();
                let engine = self.pool().pick(now, &exclude);
                let Some(engine) = engine else {
                    tracing::warn!(channel = %self.key, "no engine available");
                    self.channel.handle_input(now, Input::NoEngine);
                    return;
                };
                let events = self.events.clone();
                let key = self.key.clone();
                let pid = self.proxy.pid();
                tracing::info!(channel = %key, %engine, %pid, "requesting engine session");
                tokio::spawn(async move {
                    let result = shared
                        .engines
                        .request_session(&engine, key.key_type, &key.key, &pid)
                        .await;
                    let event = match result {
                        Ok(session) => TaskEvent::SessionReady(session),
                        Err(error) => TaskEvent::SessionFailed(engine, error),
                    };
                    if let Err(mpsc::error::SendError(TaskEvent::SessionReady(session))) =
                        events.send(event).await
                    {
                        // The channel ended while the engine was answering: nobody will
                        // read this session, so stop it instead of leaving it open.
                        stop_orphan(shared, session).await;
                    }
                });
            }
            Output::OpenPlayback { url } => {
                self.close_playback();
                self.generation += 1;
                if self.channel.has_started() {
                    shared
                        .metrics
                        .channel_reconnects
                        .get_or_create(&self.labels)
                        .inc();
                }
                let generation = self.generation;
                let events = self.events.clone();
                tracing::info!(channel = %self.key, %url, "opening playback");
                self.playback = Some(tokio::spawn(read_playback(shared, url, generation, events)));
            }
            Output::ClosePlayback => {
                shared
                    .metrics
                    .channel_upstream_stalls
                    .get_or_create(&self.labels)
                    .inc();
                self.close_playback();
            }
            Output::StopSession {
                engine,
                command_url,
            } => {
                self.pool().session_closed(&engine);
                shared.metrics.engine_stops.inc();
                tracing::info!(channel = %self.key, %engine, "stopping engine session");
                tokio::spawn(async move {
                    if let Err(error) = shared.engines.stop(&command_url).await {
                        tracing::warn!(%engine, %error, "engine did not confirm the stop");
                    }
                });
            }
            Output::SessionStarted(session) => {
                let id = stream_id(&self.key, &session);
                tracing::info!(channel = %self.key, stream = %id, engine = %session.engine, "stream started");
                self.stream_id.send_replace(Some(id));
                let started = StreamStarted {
                    container_id: None,
                    engine: session.engine,
                    stream: StreamKey {
                        key_type: self.key.key_type,
                        key: self.key.key.clone(),
                    },
                    session: session.session,
                    labels: [("source".to_owned(), "acemux".to_owned())].into(),
                };
                let _ = self.lifecycle.send(lifecycle::Input::Started(started));
            }
            Output::SessionEnded { session, reason } => {
                let id = stream_id(&self.key, &session);
                tracing::info!(channel = %self.key, stream = %id, %reason, "stream ended");
                self.stream_id.send_replace(None);
                let ended = StreamEnded {
                    container_id: None,
                    stream_id: Some(id),
                    reason: Some(reason),
                };
                let _ = self.lifecycle.send(lifecycle::Input::Ended(ended));
            }
            Output::StartFailed(failure) => {
                tracing::warn!(channel = %self.key, code = failure.code(), ?failure, "channel could not start");
                for slot in self.viewers.values() {
                    let _ = slot.tx.try_send(ViewerMsg::Failed(failure.clone()));
                }
            }
            Output::Ended { reason } => {
                tracing::info!(channel = %self.key, %reason, "channel ended");
            }
        }
    }

    fn deliver(&mut self, output: fanout::Output) {
        let now = self.now();
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
                tracing::info!(channel = %self.key, %viewer, reason = reason.as_str(), "dropping viewer");
                self.proxy
                    .0
                    .metrics
                    .viewer_drops
                    .get_or_create(&DropLabels {
                        channel: self.labels.channel.clone(),
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
        let now = self.now();
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

    fn finish(mut self, id: u64) -> Vec<oneshot::Sender<()>> {
        self.close_playback();
        for (_, slot) in std::mem::take(&mut self.viewers) {
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
        let metrics = &self.proxy.0.metrics;
        metrics.channels.dec();
        metrics.channel_viewers.remove(&self.labels);
        self.proxy.remove(&self.key, id);
        std::mem::take(&mut self.stop_waiters)
    }
}

async fn stop_orphan<N: Net>(shared: std::sync::Arc<super::Shared<N>>, session: EngineSession) {
    tracing::info!(engine = %session.engine, "stopping a session granted after its channel ended");
    shared.metrics.engine_stops.inc();
    if let Err(error) = shared.engines.stop(&session.session.command_url).await {
        tracing::warn!(engine = %session.engine, %error, "engine did not confirm the stop");
    }
}

/// The registry id of a proxied session, as the event API derives it.
fn stream_id(key: &ChannelKey, session: &EngineSession) -> String {
    format!("{}|{}", key.key, session.session.playback_session_id)
}

async fn read_playback<N: Net>(
    shared: std::sync::Arc<super::Shared<N>>,
    url: String,
    generation: u64,
    events: mpsc::Sender<TaskEvent>,
) {
    let send = |event| {
        let events = events.clone();
        async move {
            events
                .send(TaskEvent::Playback { generation, event })
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
