//! The proxy: one channel task per stream key, each owning its channel and fan-out
//! machines; viewers are their own tasks talking to the channel with small messages.

mod channel;
mod viewer;

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use acemux_core::channel::{ChannelConfig, EnginePool, StartFailure};
use acemux_core::fanout::{FanoutConfig, ViewerId};
use acemux_core::lifecycle::{EngineAddr, Input, KeyType, StreamEnded};
use thiserror::Error;
use tokio::sync::{mpsc, oneshot, watch};

use crate::engine::EngineClient;
use crate::lifecycle::{ApplyError, Lifecycle};
use crate::metrics::Metrics;
use crate::net::Net;
use crate::server::ConnectionKill;

pub use viewer::ViewerStream;

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
        }
    }
}

/// What identifies a channel: the stream key as requested.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ChannelKey {
    /// `id=` or `infohash=`.
    pub key_type: KeyType,
    /// The key.
    pub key: String,
}

impl std::fmt::Display for ChannelKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:{}", self.key_type.as_str(), self.key)
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
}

struct ChannelHandle {
    id: u64,
    mailbox: mpsc::Sender<ChannelMsg>,
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
        let mut channels = self.channels();
        if let Some(handle) = channels.get(key) {
            if !handle.mailbox.is_closed() {
                return Ok(handle.mailbox.clone());
            }
            channels.remove(key);
        }
        if channels.len() >= self.0.config.max_channels {
            return Err(JoinError::Capacity(format!(
                "too many channels (limit {})",
                self.0.config.max_channels
            )));
        }
        let (mailbox, inbox) = mpsc::channel(MAILBOX);
        let (stream_id_tx, stream_id) = watch::channel(None);
        let id = self.next_id();
        channels.insert(
            key.clone(),
            ChannelHandle {
                id,
                mailbox: mailbox.clone(),
                stream_id,
            },
        );
        drop(channels);
        tracing::info!(channel = %key, "starting channel");
        tokio::spawn(channel::run(
            self.clone(),
            id,
            key.clone(),
            inbox,
            stream_id_tx,
        ));
        Ok(mailbox)
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

    /// Stops every channel (at shutdown), each with `reason`.
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
}
