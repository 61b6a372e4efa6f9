//! The proxy: one channel task per stream key, each owning its channel and fan-out
//! machines; viewers are their own tasks talking to the channel with small messages.

mod hls;
mod session;
mod ts;
mod viewer;

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use acemux_core::channel::{ChannelConfig, EnginePool, StartFailure};
use acemux_core::fanout::{FanoutConfig, ViewerId};
use acemux_core::hls::{HlsConfig, HlsSnapshot};
use acemux_core::lifecycle::{EngineAddr, Input, KeyType, StreamEnded};
use thiserror::Error;
use tokio::sync::{mpsc, oneshot, watch};

use crate::engine::{EngineClient, StreamFormat};
use crate::lifecycle::{ApplyError, Lifecycle};
use crate::metrics::Metrics;
use crate::net::Net;
use crate::server::ConnectionKill;

pub use viewer::ViewerStream;

use hls::HlsMsg;

/// Messages a channel task's mailbox holds at most; senders wait (viewers) or fail
/// (joins answer 503) instead of growing an unbounded queue.
const MAILBOX: usize = 1024;

/// Bounds of the proxy.
#[derive(Clone, Debug)]
pub struct ProxyConfig {
    /// Timing of each channel.
    pub channel: ChannelConfig,
    /// Ring and viewer bounds of each channel.
    pub fanout: FanoutConfig,
    /// Channels at once; more get 503 `capacity`.
    pub max_channels: usize,
    /// Bound on each engine request (session, stop) up to its answer.
    pub engine_request_timeout: Duration,
    /// Sessions per engine.
    pub max_streams_per_engine: usize,
    /// How long an engine that keeps failing is skipped.
    pub engine_cooldown: Duration,
    /// Fetch loop and buffer of HLS channels.
    pub hls: HlsConfig,
    /// An HLS player that requests nothing this long no longer counts as a viewer.
    pub hls_idle_timeout: Duration,
    /// An engine playlist that brings no new segment this long is reopened (then the
    /// session replaced), like a silent TS playback.
    pub hls_stall_timeout: Duration,
    /// Largest segment read from an engine; a larger one is cut off and becomes a
    /// discontinuity.
    pub hls_max_segment_bytes: usize,
}

impl Default for ProxyConfig {
    fn default() -> Self {
        ProxyConfig {
            channel: ChannelConfig::default(),
            fanout: FanoutConfig::default(),
            max_channels: 256,
            engine_request_timeout: Duration::from_secs(10),
            max_streams_per_engine: 16,
            engine_cooldown: Duration::from_secs(10),
            hls: HlsConfig::default(),
            hls_idle_timeout: Duration::from_secs(30),
            hls_stall_timeout: Duration::from_secs(30),
            hls_max_segment_bytes: 32 * 1024 * 1024,
        }
    }
}

/// What identifies a channel: the stream key and format as requested.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ChannelKey {
    /// MPEG-TS or HLS: each has its own engine session.
    pub format: StreamFormat,
    /// `id=` or `infohash=`.
    pub key_type: KeyType,
    /// The key.
    pub key: String,
}

impl std::fmt::Display for ChannelKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.format {
            StreamFormat::Ts => write!(f, "{}:{}", self.key_type.as_str(), self.key),
            StreamFormat::Hls => write!(f, "hls:{}:{}", self.key_type.as_str(), self.key),
        }
    }
}

/// Why a viewer could not join.
#[derive(Debug, Error)]
pub enum JoinError {
    /// The channel could not start.
    #[error("{}", describe(.0))]
    Start(StartFailure),
    /// Too many channels or viewers.
    #[error("{0}")]
    Capacity(String),
    /// The channel ended while the viewer was joining.
    #[error("the stream ended before it could be joined")]
    Ended,
}

fn describe(failure: &StartFailure) -> String {
    match failure {
        StartFailure::NoEngine => "no engine can take the stream now".into(),
        StartFailure::Engine(message) => format!("engine error: {message}"),
        StartFailure::Timeout => "the engine sent nothing in time".into(),
        _ => "the stream could not start".into(),
    }
}

enum ChannelMsg {
    Join {
        viewer: ViewerId,
        tx: mpsc::Sender<viewer::ViewerMsg>,
        kill: Option<ConnectionKill>,
    },
    Ready(ViewerId),
    Leave(ViewerId),
    Stop {
        reason: String,
        done: oneshot::Sender<()>,
    },
    Hls(HlsMsg),
}

struct ChannelHandle {
    id: u64,
    mailbox: mpsc::Sender<ChannelMsg>,
    /// The served playlist of an HLS channel, readable without asking its task.
    snapshot: Option<watch::Receiver<Arc<HlsSnapshot>>>,
    /// The stream id of the channel's current session, once it has started.
    stream_id: watch::Receiver<Option<String>>,
}

struct Shared<N: Net> {
    config: ProxyConfig,
    engines: EngineClient<N>,
    pool: Mutex<EnginePool>,
    channels: Mutex<BTreeMap<ChannelKey, ChannelHandle>>,
    lifecycle: Arc<Lifecycle>,
    metrics: Arc<Metrics>,
    next_id: AtomicU64,
    pid_prefix: u64,
    /// Timed-out session requests still watched for a late answer.
    late_sessions: session::LateSessions,
}

/// The proxy's entry point, cheap to clone.
pub struct Proxy<N: Net>(Arc<Shared<N>>);

impl<N: Net> Clone for Proxy<N> {
    fn clone(&self) -> Self {
        Proxy(self.0.clone())
    }
}

impl<N: Net> Proxy<N> {
    /// A proxy over `engines`. `pid_prefix` keeps player ids unique across restarts.
    pub fn new(
        config: ProxyConfig,
        engine_addrs: Vec<EngineAddr>,
        engines: EngineClient<N>,
        lifecycle: Arc<Lifecycle>,
        metrics: Arc<Metrics>,
        pid_prefix: u64,
    ) -> Self {
        let pool = EnginePool::new(
            engine_addrs,
            config.max_streams_per_engine,
            config.engine_cooldown,
        );
        Proxy(Arc::new(Shared {
            config,
            engines,
            pool: Mutex::new(pool),
            channels: Mutex::new(BTreeMap::new()),
            lifecycle,
            metrics,
            next_id: AtomicU64::new(1),
            pid_prefix,
            late_sessions: session::LateSessions::new(),
        }))
    }

    fn channels(&self) -> MutexGuard<'_, BTreeMap<ChannelKey, ChannelHandle>> {
        self.0
            .channels
            .lock()
            .unwrap_or_else(|poison| poison.into_inner())
    }

    fn next_id(&self) -> u64 {
        self.0.next_id.fetch_add(1, Ordering::Relaxed)
    }

    /// Joins (creating if needed) the channel of `key`; resolves with the viewer's
    /// stream once its first media is in hand, or with why it cannot be.
    pub async fn join(
        &self,
        key: ChannelKey,
        kill: Option<ConnectionKill>,
    ) -> Result<ViewerStream, JoinError> {
        // A channel that is ending refuses the join; one more try gets a fresh channel.
        for _ in 0..3 {
            let viewer = ViewerId(self.next_id());
            let (tx, rx) = mpsc::channel(viewer::VIEWER_QUEUE);
            let mailbox = self.channel_for(&key)?;
            let join = ChannelMsg::Join {
                viewer,
                tx,
                kill: kill.clone(),
            };
            if mailbox.try_send(join).is_err() {
                if mailbox.is_closed() {
                    continue;
                }
                self.0.metrics.limit_hit("channel_mailbox");
                return Err(JoinError::Capacity(format!("channel {key} is overloaded")));
            }
            let bound = self.0.config.channel.start_timeout + Duration::from_secs(1);
            match viewer::first_media(rx, viewer, mailbox, self.0.metrics.clone(), &key, bound)
                .await
            {
                Err(JoinError::Ended) => continue,
                other => return other,
            }
        }
        Err(JoinError::Ended)
    }

    fn channel_for(&self, key: &ChannelKey) -> Result<mpsc::Sender<ChannelMsg>, JoinError> {
        self.channel_handle(key).map(|(mailbox, _, _)| mailbox)
    }

    /// The mailbox, HLS snapshot and id of `key`'s channel, started if needed.
    #[allow(clippy::type_complexity)]
    fn channel_handle(
        &self,
        key: &ChannelKey,
    ) -> Result<
        (
            mpsc::Sender<ChannelMsg>,
            Option<watch::Receiver<Arc<HlsSnapshot>>>,
            u64,
        ),
        JoinError,
    > {
        let mut channels = self.channels();
        if let Some(handle) = channels.get(key) {
            if !handle.mailbox.is_closed() {
                return Ok((handle.mailbox.clone(), handle.snapshot.clone(), handle.id));
            }
            channels.remove(key);
        }
        if channels.len() >= self.0.config.max_channels {
            drop(channels);
            self.0.metrics.limit_hit("channels");
            return Err(JoinError::Capacity(format!(
                "too many channels (limit {})",
                self.0.config.max_channels
            )));
        }
        let (mailbox, inbox) = mpsc::channel(MAILBOX);
        let (stream_id_tx, stream_id) = watch::channel(None);
        let id = self.next_id();
        let (snapshot_tx, snapshot) = match key.format {
            StreamFormat::Ts => (None, None),
            StreamFormat::Hls => {
                let (tx, rx) = watch::channel(Arc::new(HlsSnapshot::default()));
                (Some(tx), Some(rx))
            }
        };
        channels.insert(
            key.clone(),
            ChannelHandle {
                id,
                mailbox: mailbox.clone(),
                snapshot: snapshot.clone(),
                stream_id,
            },
        );
        drop(channels);
        tracing::info!(channel = %key, "starting channel");
        match snapshot_tx {
            None => {
                tokio::spawn(ts::run(self.clone(), id, key.clone(), inbox, stream_id_tx));
            }
            Some(snapshot_tx) => {
                tokio::spawn(hls::run(
                    self.clone(),
                    id,
                    key.clone(),
                    inbox,
                    stream_id_tx,
                    snapshot_tx,
                ));
            }
        }
        Ok((mailbox, snapshot, id))
    }

    /// The served playlist of `key`'s HLS channel for player `viewer`, started if
    /// needed; a new channel's first answer waits (bounded) until it is ready.
    pub async fn hls_playlist(&self, key: ChannelKey, viewer: String) -> Result<String, JoinError> {
        for _ in 0..3 {
            let (mailbox, snapshot, id) = self.channel_handle(&key)?;
            let Some(mut snapshot) = snapshot else {
                return Err(JoinError::Ended);
            };
            let activity = ChannelMsg::Hls(HlsMsg::Activity {
                viewer: viewer.clone(),
            });
            if mailbox.try_send(activity).is_err() && mailbox.is_closed() {
                continue;
            }
            if !snapshot.borrow().ready {
                let (reply, ready) = oneshot::channel();
                if mailbox
                    .send(ChannelMsg::Hls(HlsMsg::WaitReady { reply }))
                    .await
                    .is_err()
                {
                    continue;
                }
                let bound = self.0.config.channel.start_timeout + Duration::from_secs(1);
                match tokio::time::timeout(bound, ready).await {
                    Ok(Ok(Ok(()))) => {}
                    Ok(Ok(Err(failure))) => return Err(JoinError::Start(failure)),
                    // The channel answers every waiter it keeps, even as it ends; one
                    // dropped while the channel runs was over the bound of waiters.
                    Ok(Err(_)) if !mailbox.is_closed() => {
                        self.0.metrics.limit_hit("hls_start_waiters");
                        return Err(JoinError::Capacity(format!(
                            "too many players are waiting for channel {key} to start"
                        )));
                    }
                    Ok(Err(_)) => continue,
                    Err(_) => return Err(JoinError::Start(StartFailure::Timeout)),
                }
            }
            let current = snapshot.borrow_and_update().clone();
            let token = crate::engine::percent_encode(&viewer);
            return Ok(current.render(|seq| format!("/ace/hls/{id}/{seq}.ts?t={token}")));
        }
        Err(JoinError::Ended)
    }

    /// Segment `seq` of HLS channel `id`, if it is held; counts as activity of `viewer`.
    pub fn hls_segment(&self, id: u64, seq: u64, viewer: String) -> Option<bytes::Bytes> {
        let (mailbox, snapshot) = self
            .channels()
            .values()
            .find(|handle| handle.id == id)
            .map(|handle| (handle.mailbox.clone(), handle.snapshot.clone()))?;
        let _ = mailbox.try_send(ChannelMsg::Hls(HlsMsg::Activity { viewer }));
        let snapshot = snapshot?;
        let current = snapshot.borrow();
        current.segment(seq).map(|segment| segment.bytes.clone())
    }

    /// Forgets channel `id` under `key` (called by the channel task as it ends).
    fn remove(&self, key: &ChannelKey, id: u64) {
        let mut channels = self.channels();
        if channels.get(key).is_some_and(|handle| handle.id == id) {
            channels.remove(key);
        }
    }

    /// Stops the stream `stream_id`: a proxied channel is stopped (viewers closed,
    /// engine stopped, one `stream_ended`); any other registered stream is ended in
    /// the registry.
    pub async fn stop_stream(&self, stream_id: &str, reason: &str) -> Result<bool, ApplyError> {
        let mailbox = self
            .channels()
            .values()
            .find(|handle| handle.stream_id.borrow().as_deref() == Some(stream_id))
            .map(|handle| handle.mailbox.clone());
        if let Some(mailbox) = mailbox {
            let (done, stopped) = oneshot::channel();
            let stop = ChannelMsg::Stop {
                reason: reason.to_owned(),
                done,
            };
            if mailbox.send(stop).await.is_ok() {
                let _ = tokio::time::timeout(Duration::from_secs(10), stopped).await;
            }
            return Ok(true);
        }
        let ended = StreamEnded {
            container_id: None,
            stream_id: Some(stream_id.to_owned()),
            reason: Some(reason.to_owned()),
        };
        self.0
            .lifecycle
            .apply(Input::Ended(ended), None)
            .await
            .map(|applied| applied.outcome.updated)
    }

    /// Stops every channel (at shutdown), each with `reason`, then ends the watches of
    /// timed-out session requests.
    pub async fn stop_all(&self, reason: &str) {
        let mailboxes: Vec<_> = self
            .channels()
            .values()
            .map(|h| h.mailbox.clone())
            .collect();
        let mut waits = Vec::new();
        for mailbox in mailboxes {
            let (done, stopped) = oneshot::channel();
            let stop = ChannelMsg::Stop {
                reason: reason.to_owned(),
                done,
            };
            if mailbox.send(stop).await.is_ok() {
                waits.push(stopped);
            }
        }
        let all = futures::future::join_all(waits);
        let _ = tokio::time::timeout(Duration::from_secs(10), all).await;
        self.0.late_sessions.shut_down().await;
    }

    /// Channels running now.
    pub fn channel_count(&self) -> usize {
        self.channels().len()
    }

    fn pid(&self) -> String {
        format!("acemux-{:x}-{}", self.0.pid_prefix, self.next_id())
    }
}

/// Answers `GET /ace/getstream` and `DELETE /streams/{id}`; object-safe so routes need
/// not know the network type.
pub trait Streams: Send + Sync + 'static {
    /// See [`Proxy::join`].
    fn join(
        &self,
        key: ChannelKey,
        kill: Option<ConnectionKill>,
    ) -> futures::future::BoxFuture<'static, Result<ViewerStream, JoinError>>;

    /// See [`Proxy::stop_stream`].
    fn stop_stream(
        &self,
        stream_id: String,
        reason: String,
    ) -> futures::future::BoxFuture<'static, Result<bool, ApplyError>>;

    /// See [`Proxy::stop_all`].
    fn stop_all(&self, reason: String) -> futures::future::BoxFuture<'static, ()>;

    /// See [`Proxy::hls_playlist`].
    fn hls_playlist(
        &self,
        key: ChannelKey,
        viewer: String,
    ) -> futures::future::BoxFuture<'static, Result<String, JoinError>>;

    /// See [`Proxy::hls_segment`].
    fn hls_segment(&self, id: u64, seq: u64, viewer: String) -> Option<bytes::Bytes>;
}

impl<N: Net> Streams for Proxy<N> {
    fn join(
        &self,
        key: ChannelKey,
        kill: Option<ConnectionKill>,
    ) -> futures::future::BoxFuture<'static, Result<ViewerStream, JoinError>> {
        let proxy = self.clone();
        Box::pin(async move { proxy.join(key, kill).await })
    }

    fn stop_stream(
        &self,
        stream_id: String,
        reason: String,
    ) -> futures::future::BoxFuture<'static, Result<bool, ApplyError>> {
        let proxy = self.clone();
        Box::pin(async move { proxy.stop_stream(&stream_id, &reason).await })
    }

    fn stop_all(&self, reason: String) -> futures::future::BoxFuture<'static, ()> {
        let proxy = self.clone();
        Box::pin(async move { proxy.stop_all(&reason).await })
    }

    fn hls_playlist(
        &self,
        key: ChannelKey,
        viewer: String,
    ) -> futures::future::BoxFuture<'static, Result<String, JoinError>> {
        let proxy = self.clone();
        Box::pin(async move { proxy.hls_playlist(key, viewer).await })
    }

    fn hls_segment(&self, id: u64, seq: u64, viewer: String) -> Option<bytes::Bytes> {
        Proxy::hls_segment(self, id, seq, viewer)
    }
}
