//! What every channel task shares, whatever its media format: the [`Channel`]
//! machine's engine-session outputs (requests, stops, lifecycle events), the
//! per-channel lifecycle applier, and the clean-up when the channel ends.

use acemux_core::channel::{Channel, ChannelConfig, EngineSession, Input, Output, SessionError};
use acemux_core::lifecycle::{self, EngineAddr, StreamEnded, StreamKey, StreamStarted};
use acemux_core::Instant;
use tokio::sync::{mpsc, oneshot, watch};
use tokio::task::JoinHandle;

use super::{ChannelKey, Proxy};
use crate::metrics::ChannelLabels;
use crate::net::Net;

/// Session answers held at most; one request is in flight per channel at a time.
const SESSION_EVENTS: usize = 8;

/// An engine's answer to a session request.
pub(super) enum SessionEvent {
    Ready(EngineSession),
    Failed(EngineAddr, SessionError),
}

/// The engine-session half of a channel task.
pub(super) struct SessionDriver<N: Net> {
    pub(super) proxy: Proxy<N>,
    pub(super) key: ChannelKey,
    pub(super) labels: ChannelLabels,
    pub(super) channel: Channel,
    pub(super) stop_waiters: Vec<oneshot::Sender<()>>,
    sessions: mpsc::Sender<SessionEvent>,
    stream_id: watch::Sender<Option<String>>,
    lifecycle: mpsc::UnboundedSender<lifecycle::Input>,
    applier: JoinHandle<()>,
}

impl<N: Net> SessionDriver<N> {
    /// A driver for a channel created now; the receiver yields the session answers.
    pub(super) fn new(
        proxy: Proxy<N>,
        key: ChannelKey,
        config: ChannelConfig,
        stream_id: watch::Sender<Option<String>>,
    ) -> (Self, mpsc::Receiver<SessionEvent>) {
        let shared = proxy.0.clone();
        let (sessions, session_rx) = mpsc::channel(SESSION_EVENTS);
        // Lifecycle changes of one channel are applied in order by one task, off the
        // channel's loop: a slow commit never holds up the media. At most two per
        // engine session, and sessions are bounded by the channel's retry rules, so
        // this queue stays small.
        let (lifecycle, mut lifecycle_rx) = mpsc::unbounded_channel::<lifecycle::Input>();
        let registry = shared.lifecycle.clone();
        let applier = tokio::spawn(async move {
            while let Some(input) = lifecycle_rx.recv().await {
                if let Err(error) = registry.apply(input, None).await {
                    tracing::error!(%error, "lifecycle change of a proxied stream was not applied");
                }
            }
        });
        shared.metrics.channels.inc();
        let channel = Channel::new(shared.lifecycle.clock().now(), config);
        let driver = SessionDriver {
            labels: ChannelLabels::new(&key),
            proxy,
            key,
            channel,
            stop_waiters: Vec::new(),
            sessions,
            stream_id,
            lifecycle,
            applier,
        };
        (driver, session_rx)
    }

    pub(super) fn now(&self) -> Instant {
        self.proxy.0.lifecycle.clock().now()
    }

    fn pool(&self) -> std::sync::MutexGuard<'_, acemux_core::channel::EnginePool> {
        self.proxy
            .0
            .pool
            .lock()
            .unwrap_or_else(|poison| poison.into_inner())
    }

    /// Feeds an engine's answer to the channel machine.
    pub(super) fn on_session(&mut self, event: SessionEvent) {
        let now = self.now();
        match event {
            SessionEvent::Ready(session) => {
                self.pool().session_opened(&session.engine);
                self.channel.handle_input(now, Input::SessionReady(session));
            }
            SessionEvent::Failed(engine, error) => {
                tracing::warn!(channel = %self.key, %engine, ?error, "engine did not grant a session");
                self.pool().failed(now, &engine);
                self.channel
                    .handle_input(now, Input::SessionFailed { engine, error });
            }
        }
    }

    /// Performs an output of the channel machine; hands back the ones about media
    /// (`OpenPlayback`, `ClosePlayback`, `StartFailed`), which depend on the format.
    pub(super) fn perform(&mut self, output: Output) -> Option<Output> {
        let shared = self.proxy.0.clone();
        match output {
            Output::RequestSession { exclude } => {
                let now = self.now();
                let engine = self.pool().pick(now, &exclude);
                let Some(engine) = engine else {
                    tracing::warn!(channel = %self.key, "no engine available");
                    self.channel.handle_input(now, Input::NoEngine);
                    return None;
                };
                let sessions = self.sessions.clone();
                let key = self.key.clone();
                let pid = self.proxy.pid();
                tracing::info!(channel = %key, %engine, %pid, "requesting engine session");
                tokio::spawn(async move {
                    let result = shared
                        .engines
                        .request_session(&engine, key.format, key.key_type, &key.key, &pid)
                        .await;
                    let event = match result {
                        Ok(session) => SessionEvent::Ready(session),
                        Err(error) => SessionEvent::Failed(engine, error),
                    };
                    if let Err(mpsc::error::SendError(SessionEvent::Ready(session))) =
                        sessions.send(event).await
                    {
                        // The channel ended while the engine was answering: nobody will
                        // read this session, so stop it instead of leaving it open.
                        stop_orphan(shared, session).await;
                    }
                });
                None
            }
            Output::StopSession {
                engine,
                command_url,
            } => {
                self.pool().session_closed(&engine);
                shared.metrics.engine_stops.inc();
                tracing::info!(channel = %self.key, %engine, "stopping engine session");
                tokio::spawn(
                    async move { stop_until_confirmed(&shared, &engine, &command_url).await },
                );
                None
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
                None
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
                None
            }
            Output::Ended { reason } => {
                tracing::info!(channel = %self.key, %reason, "channel ended");
                None
            }
            media => Some(media),
        }
    }

    /// Forgets the channel, stops sessions granted after its end, and tells stop
    /// waiters once its `stream_ended` is applied.
    pub(super) async fn finish(self, id: u64, mut session_rx: mpsc::Receiver<SessionEvent>) {
        let SessionDriver {
            proxy,
            key,
            labels,
            stop_waiters,
            lifecycle,
            applier,
            ..
        } = self;
        let shared = proxy.0.clone();
        shared.metrics.channels.dec();
        shared.metrics.channel_viewers.remove(&labels);
        proxy.remove(&key, id);
        session_rx.close();
        while let Ok(event) = session_rx.try_recv() {
            if let SessionEvent::Ready(session) = event {
                tokio::spawn(stop_orphan(shared.clone(), session));
            }
        }
        drop(lifecycle);
        if let Err(error) = applier.await {
            tracing::error!(%error, "lifecycle task of a channel failed");
        }
        for waiter in stop_waiters {
            let _ = waiter.send(());
        }
    }
}

async fn stop_orphan<N: Net>(shared: std::sync::Arc<super::Shared<N>>, session: EngineSession) {
    tracing::info!(engine = %session.engine, "stopping a session granted after its channel ended");
    shared.metrics.engine_stops.inc();
    stop_until_confirmed(&shared, &session.engine, &session.session.command_url).await;
}

/// Stop attempts per session: an engine cut off for a while (a partitioned VPN hop)
/// still gets its stop once it is reachable again, instead of keeping the session
/// open for ever.
const STOP_ATTEMPTS: u32 = 6;
/// Delay before the first repeated stop; doubles per attempt (1 + 2 + … + 16 s ≈ 30 s).
const STOP_RETRY_INITIAL: std::time::Duration = std::time::Duration::from_secs(1);

/// Sends the stop command until the engine confirms it, up to [`STOP_ATTEMPTS`].
async fn stop_until_confirmed<N: Net>(
    shared: &super::Shared<N>,
    engine: &EngineAddr,
    command_url: &str,
) {
    let mut delay = STOP_RETRY_INITIAL;
    for attempt in 1..=STOP_ATTEMPTS {
        match shared.engines.stop(command_url).await {
            Ok(()) => return,
            Err(error) if attempt < STOP_ATTEMPTS => {
                tracing::warn!(%engine, %error, attempt, retry_in = ?delay, "engine did not confirm the stop");
                tokio::time::sleep(delay).await;
                delay *= 2;
            }
            Err(error) => {
                tracing::warn!(%engine, %error, attempt, "engine did not confirm the stop; giving up");
            }
        }
    }
}

/// The registry id of a proxied session, as the event API derives it.
fn stream_id(key: &ChannelKey, session: &EngineSession) -> String {
    format!("{}|{}", key.key, session.session.playback_session_id)
}
