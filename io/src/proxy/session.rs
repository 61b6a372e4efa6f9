//! What every channel task shares, whatever its media format: the [`Channel`]
//! machine's engine-session outputs (requests, stops, lifecycle events), the
//! per-channel lifecycle applier, and the clean-up when the channel ends.

use acemux_core::channel::{Channel, ChannelConfig, EngineSession, Input, Output, SessionError};
use acemux_core::lifecycle::{self, EngineAddr, StreamEnded, StreamKey, StreamStarted};
use acemux_core::Instant;
use futures::future::BoxFuture;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{mpsc, oneshot, watch, Semaphore};
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
                    let mut request = Box::pin(shared.engines.session_request(
                        &engine,
                        key.format,
                        key.key_type,
                        &key.key,
                        &pid,
                    ));
                    let result = tokio::select! {
                        biased;
                        result = &mut request => result,
                        () = tokio::time::sleep(shared.config.engine_request_timeout) => {
                            // The channel moves on (retry, failover); the engine may still
                            // open the session, so the request is watched for a late answer.
                            shared.late_sessions.watch(&shared, &key, &engine, request);
                            Err(SessionError::Timeout)
                        }
                    };
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

/// Timed-out session requests watched for a late answer at once; beyond, a request is
/// dropped as before (logged and counted as `limit="late_session_requests"`).
const MAX_LATE_SESSION_REQUESTS: usize = 256;
/// A timed-out session request is watched for this many engine request timeouts more…
const LATE_ANSWER_FACTOR: u32 = 6;
/// …but at least this long: engines that take long to open a session (a slow
/// peer-to-peer start) must not leave it running for ever.
const LATE_ANSWER_MIN: Duration = Duration::from_secs(60);

/// How long a timed-out session request is still watched for a late answer:
/// `max(engine_request_timeout × 6, 60 s)`.
fn late_answer_bound(engine_request_timeout: Duration) -> Duration {
    engine_request_timeout
        .saturating_mul(LATE_ANSWER_FACTOR)
        .max(LATE_ANSWER_MIN)
}

/// A session request whose caller stopped waiting.
type PendingSession = BoxFuture<'static, Result<EngineSession, SessionError>>;

/// Session requests that timed out, kept running in the background so that a session
/// an engine grants late is stopped instead of running on the engine for ever. The
/// channel that asked never sees the late answer: it has already retried or failed.
pub(super) struct LateSessions {
    /// One permit per watched request; all of them back means none is running.
    permits: Arc<Semaphore>,
    shutdown: watch::Sender<bool>,
}

impl LateSessions {
    pub(super) fn new() -> Self {
        LateSessions {
            permits: Arc::new(Semaphore::new(MAX_LATE_SESSION_REQUESTS)),
            shutdown: watch::channel(false).0,
        }
    }

    /// Watches `request`, which `channel` gave up on, for [`late_answer_bound`]; a
    /// session granted meanwhile is stopped at once.
    fn watch<N: Net>(
        &self,
        shared: &Arc<super::Shared<N>>,
        channel: &ChannelKey,
        engine: &EngineAddr,
        request: impl std::future::Future<Output = Result<EngineSession, SessionError>> + Send + 'static,
    ) {
        if *self.shutdown.borrow() {
            tracing::warn!(%channel, %engine, "shutting down: a timed-out session request is not watched for a late answer");
            return;
        }
        let Ok(permit) = self.permits.clone().try_acquire_owned() else {
            tracing::warn!(%channel, %engine, limit = MAX_LATE_SESSION_REQUESTS, "too many timed-out session requests watched; dropping this one");
            shared.metrics.limit_hit("late_session_requests");
            return;
        };
        let bound = late_answer_bound(shared.config.engine_request_timeout);
        let mut shutdown = self.shutdown.subscribe();
        let shared = shared.clone();
        let channel = channel.clone();
        let engine = engine.clone();
        let request: PendingSession = Box::pin(request);
        tokio::spawn(async move {
            tokio::select! {
                biased;
                _ = shutdown.wait_for(|stop| *stop) => {
                    tracing::warn!(%channel, %engine, "shutting down: no longer watching a timed-out session request");
                }
                () = stop_late_session(&shared, &channel, &engine, request, bound) => {}
            }
            drop(permit);
        });
    }

    /// Ends every watch (at shutdown, once the channels have stopped) and waits, bounded,
    /// until they have ended; no request is watched afterwards.
    pub(super) async fn shut_down(&self) {
        self.shutdown.send_replace(true);
        let all = self.permits.acquire_many(MAX_LATE_SESSION_REQUESTS as u32);
        if tokio::time::timeout(Duration::from_secs(5), all)
            .await
            .is_err()
        {
            tracing::warn!("timed-out session requests still watched at shutdown");
        }
        self.permits.close();
    }
}

/// Waits up to `bound` for `request`'s answer; a session is stopped at once.
async fn stop_late_session<N: Net>(
    shared: &super::Shared<N>,
    channel: &ChannelKey,
    engine: &EngineAddr,
    request: PendingSession,
    bound: Duration,
) {
    match tokio::time::timeout(bound, request).await {
        Ok(Ok(session)) => {
            tracing::warn!(%channel, %engine, session = %session.session.playback_session_id, "engine granted a session after its request timed out; stopping it");
            shared.metrics.engine_late_session(engine);
            shared.metrics.engine_stops.inc();
            stop_until_confirmed(shared, engine, &session.session.command_url).await;
        }
        Ok(Err(error)) => {
            tracing::info!(%channel, %engine, ?error, "timed-out session request ended without a session");
        }
        Err(_) => {
            tracing::warn!(%channel, %engine, ?bound, "timed-out session request still unanswered; giving up on it");
        }
    }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn late_answers_are_watched_six_request_timeouts_and_at_least_a_minute() {
        assert_eq!(
            late_answer_bound(Duration::from_secs(1)),
            Duration::from_secs(60)
        );
        assert_eq!(
            late_answer_bound(Duration::from_secs(10)),
            Duration::from_secs(60)
        );
        assert_eq!(
            late_answer_bound(Duration::from_secs(30)),
            Duration::from_secs(180)
        );
        assert_eq!(late_answer_bound(Duration::MAX), Duration::MAX);
    }
}
