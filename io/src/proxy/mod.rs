//! The proxy: one channel task per stream key, each owning its channel and fan-out
//! machines; viewers are their own tasks talking to the channel with small messages.

mod calls;
mod hls;
mod hls_relay;
mod hls_routes;
mod pump;
mod relay;
mod status;
mod streams;
mod ts;
mod viewer;
mod viewers;

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use acemux_core::channel::{
    EngineCallConfig, EnginePool, EngineSource, EngineStats, FetchError, ListedEngine, StartFailure,
};
use acemux_core::fanout::ViewerId;
use acemux_core::hls::HlsSnapshot;
use acemux_core::lifecycle::{EndReason, EngineAddr, KeyType};
use thiserror::Error;
use tokio::sync::{mpsc, oneshot, watch};

use crate::engine::{EngineClient, EngineParams, StreamFormat};
use crate::lifecycle::{ApplyError, Lifecycle};
use crate::metrics::Metrics;
use crate::net::Net;
use crate::server::ConnectionKill;

pub use crate::config::{HlsSource, ProxyConfig};
pub use hls_routes::Asker;
pub use status::{ChannelSummary, ViewerSummary};
pub use streams::Streams;
pub use viewer::ViewerStream;
pub use viewers::Client;

/// Stat polls in flight at once over every channel; more wait their turn (within the
/// engine request timeout, then the poll counts as failed).
const MAX_STAT_FETCHES: usize = 32;

/// Messages a channel task's mailbox holds at most; senders wait for room (joins for
/// the start timeout at most) instead of growing an unbounded queue.
const MAILBOX: usize = 1024;

/// What identifies a channel: the stream key and format as requested.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ChannelKey {
    /// MPEG-TS or HLS: each has its own engine session.
    pub format: StreamFormat,
    /// What the player named: a content id, an infohash, a torrent URL or a magnet.
    pub key_type: KeyType,
    /// The key.
    pub key: String,
    /// Player parameters handed on to the engine.
    pub params: EngineParams,
}

impl std::fmt::Display for ChannelKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.format == StreamFormat::Hls {
            write!(f, "hls:")?;
        }
        write!(f, "{}:{}", self.key_type.as_str(), self.key)?;
        if !self.params.is_empty() {
            write!(f, "[{}]", self.params)?;
        }
        Ok(())
    }
}

/// What stopping a stream did on its engine.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum EngineStop {
    /// acemux's own channel, which stopped its engine session as it always does.
    Channel,
    /// The engine was told to stop the session (`command_url?method=stop`).
    Stopped,
    /// Telling the engine failed; the record is ended anyway.
    Failed(String),
    /// Nothing was sent to an engine, and why.
    NotSent(&'static str),
}

/// The answer to stopping a stream.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StopOutcome {
    /// Whether this ended the stream (false: it had already ended).
    pub updated: bool,
    /// What happened on its engine.
    pub engine: EngineStop,
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

/// What a waiting HLS player is answered: the channel's id (for segment URIs) and
/// its ready snapshot, or why not.
type WaitAnswer = Result<(u64, Arc<HlsSnapshot>), JoinError>;

/// What requests tell a channel task.
enum ChannelMsg {
    /// A TS viewer joins.
    Join {
        viewer: ViewerId,
        slot: Arc<viewer::Slot>,
        kill: Option<ConnectionKill>,
    },
    /// A TS viewer wrote what it was handed.
    Ready(ViewerId),
    /// A TS viewer went away.
    Leave(ViewerId),
    /// An HLS player (by token) requested something.
    Seen { token: String },
    /// An HLS player waits for the first playlist.
    WaitReady { reply: oneshot::Sender<WaitAnswer> },
    /// Stop the channel; `done` is answered once its `stream_ended` is applied.
    Stop {
        reason: EndReason,
        done: oneshot::Sender<()>,
    },
}

/// A channel in the directory.
struct ChannelHandle {
    id: u64,
    mailbox: mpsc::Sender<ChannelMsg>,
    /// The served playlist of an HLS channel, readable without asking its task.
    snapshot: Option<watch::Receiver<Arc<HlsSnapshot>>>,
    /// The stream id of the channel's current session, once it has started.
    stream_id: watch::Receiver<Option<String>>,
    /// Its state, bytes and viewers, as its task and viewers report them.
    status: Arc<viewers::ChannelStatus>,
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
    /// Turns for stat polls.
    stat_fetches: tokio::sync::Semaphore,
    /// The latest figures of each playing session acemux polls, by stream id.
    session_stats: Mutex<BTreeMap<String, EngineStats>>,
    /// Cluster mode: where channels ask who owns them.
    cluster: std::sync::OnceLock<crate::cluster::Cluster>,
    /// Cluster mode: the HLS of channels other instances own, relayed for players here.
    relays: Mutex<BTreeMap<ChannelKey, hls_relay::RelayHandle>>,
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
            stat_fetches: tokio::sync::Semaphore::new(MAX_STAT_FETCHES),
            session_stats: Mutex::new(BTreeMap::new()),
            cluster: std::sync::OnceLock::new(),
            relays: Mutex::new(BTreeMap::new()),
        }))
    }

    /// Turns cluster mode on: from now on each new channel asks `cluster` who owns it
    /// before an engine is picked, and HLS players' requests for a channel another
    /// instance owns are relayed from it. Set once, before any viewer comes.
    pub fn set_cluster(&self, cluster: crate::cluster::Cluster) {
        let _ = self.0.cluster.set(cluster);
    }

    /// Cluster mode: whether a peer instance's relay of `key` is served here: only
    /// while this instance holds the channel's lease (so a relayed request is never
    /// relayed again).
    pub fn serves_peer(&self, key: &ChannelKey) -> bool {
        let key = self.hls_channel_key(key.clone());
        self.0
            .cluster
            .get()
            .is_some_and(|cluster| cluster.holds(&key.to_string()))
    }

    /// Cluster mode: another instance owns `channel` (as named in logs) now: the
    /// channel here is stopped (its viewers reconnect and are relayed from the owner).
    /// Each of its sessions is stopped and its end recorded here unless the newer owner
    /// claimed that session's record (the slot machine answers per session: one opened
    /// while the loss was being decided was never claimed, and is stopped here).
    pub async fn lease_lost(&self, channel: &str) {
        let mailbox = self
            .channels()
            .iter()
            .find(|(key, _)| key.to_string() == channel)
            .map(|(_, handle)| handle.mailbox.clone());
        let Some(mailbox) = mailbox else {
            return;
        };
        let (done, stopped) = oneshot::channel();
        let stop = ChannelMsg::Stop {
            reason: EndReason::from("lease_lost"),
            done,
        };
        if mailbox.send(stop).await.is_ok() {
            let _ = stopped.await;
        }
    }

    fn channels(&self) -> MutexGuard<'_, BTreeMap<ChannelKey, ChannelHandle>> {
        self.0
            .channels
            .lock()
            .unwrap_or_else(|poison| poison.into_inner())
    }

    fn session_stats(&self) -> MutexGuard<'_, BTreeMap<String, EngineStats>> {
        self.0
            .session_stats
            .lock()
            .unwrap_or_else(|poison| poison.into_inner())
    }

    fn pool(&self) -> MutexGuard<'_, EnginePool> {
        self.0
            .pool
            .lock()
            .unwrap_or_else(|poison| poison.into_inner())
    }

    /// Replaces the engines the list `name` names (see [`EnginePool::set_list`]).
    pub fn set_engine_list(&self, name: &str, source: EngineSource, engines: &[ListedEngine]) {
        self.pool().set_list(name, source, engines);
    }

    /// Runs the version probes of the pool's engines, every `interval` per engine
    /// (later after failures, as the pool decides), until `stopped`; logs each change
    /// of an engine's health.
    pub async fn probe_engines(
        &self,
        interval: std::time::Duration,
        mut stopped: watch::Receiver<bool>,
    ) {
        use futures::StreamExt as _;
        /// Probes in flight at once.
        const CONCURRENT_PROBES: usize = 16;
        let clock = self.0.lifecycle.clock();
        // From now on a probe can bring back an engine a failed request marks down.
        self.pool().set_probing(true);
        loop {
            let (due, next) = self.pool().take_due_probes(clock.now());
            let probes = futures::stream::iter(due)
                .map(|engine| async move {
                    let answer = self.0.engines.probe_version(&engine).await;
                    (engine, answer)
                })
                .buffer_unordered(CONCURRENT_PROBES)
                .collect::<Vec<_>>();
            let answers = tokio::select! {
                biased;
                _ = stopped.wait_for(|stopped| *stopped) => return,
                answers = probes => answers,
            };
            for (engine, answer) in answers {
                let changed = self
                    .pool()
                    .probed(clock.now(), &engine, answer.is_ok(), interval);
                match (changed, answer) {
                    (Some(before), Err(error)) => tracing::warn!(
                        %engine, %error, was = before.as_str(),
                        "engine down: its version API failed; no new sessions until it answers"
                    ),
                    (Some(before), Ok(())) => {
                        tracing::info!(%engine, was = before.as_str(), "engine up");
                    }
                    (None, _) => {}
                }
            }
            // New engines are due at once: look again an interval later at the latest.
            let latest = clock.now() + interval;
            tokio::select! {
                biased;
                _ = stopped.wait_for(|stopped| *stopped) => return,
                () = clock.sleep_until_earliest([next, Some(latest)]) => {}
            }
        }
    }

    /// GETs `url` whole (at most `max_bytes`) through the engine client, bounded by
    /// the engine request timeout.
    pub async fn fetch(&self, url: &str, max_bytes: usize) -> Result<bytes::Bytes, FetchError> {
        self.0.engines.fetch_bounded(url, max_bytes).await
    }

    fn next_id(&self) -> u64 {
        self.0.next_id.fetch_add(1, Ordering::Relaxed)
    }

    /// Joins (creating if needed) the channel of `key`; resolves with the viewer's
    /// stream once its first media is in hand, or with why it cannot be. The channel
    /// answers every viewer it takes, by its start timeout at the latest.
    pub async fn join(
        &self,
        key: ChannelKey,
        kill: Option<ConnectionKill>,
        client: Client,
    ) -> Result<ViewerStream, JoinError> {
        let viewer = ViewerId(self.next_id());
        let slot = Arc::new(viewer::Slot::default());
        let join = ChannelMsg::Join {
            viewer,
            slot: slot.clone(),
            kill,
        };
        let (mailbox, _) = self.send(&key, join).await?;
        let mut stream = viewer::first_media(slot, viewer, mailbox, &self.0.metrics, &key).await?;
        // Listed with the channel serving it now (a successor, if the one it joined
        // ended meanwhile).
        let status = self
            .channels()
            .get(&key)
            .map(|handle| handle.status.clone());
        if let Some(status) = status {
            stream.register(status.join_ts(viewer.0, client, self.0.lifecycle.clock()));
        }
        Ok(stream)
    }

    /// Hands `message` to `key`'s channel, started if needed, and returns that
    /// channel's mailbox and id. Handed over under the directory lock, so a channel
    /// that ends meanwhile has either received the message (and hands it on to its
    /// successor) or is gone from the directory (and a new channel receives it).
    ///
    /// A full mailbox is waited on, in turn with every other sender (a join storm
    /// queues instead of being refused), for the start timeout at most: a channel that
    /// cannot take a message for that long is refused at the `join_wait` bound.
    async fn send(
        &self,
        key: &ChannelKey,
        message: ChannelMsg,
    ) -> Result<(mpsc::Sender<ChannelMsg>, u64), JoinError> {
        let deadline = tokio::time::Instant::now() + self.0.config.channel.start_timeout;
        let mut message = message;
        loop {
            let (mailbox, id) = {
                let mut channels = self.channels();
                let handle = self.channel_locked(&mut channels, key)?;
                match handle.mailbox.try_send(message) {
                    Ok(()) => return Ok((handle.mailbox.clone(), handle.id)),
                    // Closed only as the channel leaves the directory, under this lock.
                    Err(
                        mpsc::error::TrySendError::Full(back)
                        | mpsc::error::TrySendError::Closed(back),
                    ) => message = back,
                }
                (handle.mailbox.clone(), handle.id)
            };
            let permit = match tokio::time::timeout_at(deadline, mailbox.reserve()).await {
                Ok(Ok(permit)) => permit,
                // The channel ended while this waited: its successor takes the message.
                Ok(Err(_)) => continue,
                Err(_) => {
                    self.0.metrics.refused("join_wait");
                    return Err(JoinError::Capacity(format!(
                        "channel {key} is too busy to take a viewer now"
                    )));
                }
            };
            let channels = self.channels();
            if channels.get(key).is_some_and(|handle| handle.id == id) {
                // Still in the directory, so its mailbox is open.
                permit.send(message);
                return Ok((mailbox, id));
            }
        }
    }

    /// `key`'s channel in the (locked) directory, started if needed.
    fn channel_locked<'a>(
        &self,
        channels: &'a mut BTreeMap<ChannelKey, ChannelHandle>,
        key: &ChannelKey,
    ) -> Result<&'a ChannelHandle, JoinError> {
        if !channels.contains_key(key) {
            if channels.len() >= self.0.config.max_channels {
                self.0.metrics.refused("channels");
                return Err(JoinError::Capacity(format!(
                    "too many channels (limit {})",
                    self.0.config.max_channels
                )));
            }
            let handle = self.spawn_channel(key);
            channels.insert(key.clone(), handle);
        }
        Ok(channels
            .get(key)
            .expect("present: found or inserted just above"))
    }

    fn spawn_channel(&self, key: &ChannelKey) -> ChannelHandle {
        let (mailbox, inbox) = mpsc::channel(MAILBOX);
        let (stream_id_tx, stream_id) = watch::channel(None);
        let id = self.next_id();
        tracing::info!(channel = %key, "starting channel");
        let status = Arc::new(viewers::ChannelStatus::new(self.0.lifecycle.clock().now()));
        let snapshot = match key.format {
            StreamFormat::Ts if self.0.config.cut_hls().is_some() => {
                let (snapshot_tx, snapshot) = watch::channel(Arc::new(HlsSnapshot::default()));
                let cut = ts::CutIo::new(id, snapshot_tx);
                let format = ts::TsIo::new(mailbox.clone(), Some(cut));
                self.run_channel(id, key, stream_id_tx, status.clone(), inbox, format);
                Some(snapshot)
            }
            StreamFormat::Ts => {
                let format = ts::TsIo::new(mailbox.clone(), None);
                self.run_channel(id, key, stream_id_tx, status.clone(), inbox, format);
                None
            }
            StreamFormat::Hls => {
                let (snapshot_tx, snapshot) = watch::channel(Arc::new(HlsSnapshot::default()));
                let format = hls::HlsIo::new(id, snapshot_tx);
                self.run_channel(id, key, stream_id_tx, status.clone(), inbox, format);
                Some(snapshot)
            }
        };
        ChannelHandle {
            id,
            mailbox,
            snapshot,
            stream_id,
            status,
        }
    }

    /// Runs channel `id`'s task in `format`.
    fn run_channel<F: pump::Format<N>>(
        &self,
        id: u64,
        key: &ChannelKey,
        stream_id: watch::Sender<Option<String>>,
        status: Arc<viewers::ChannelStatus>,
        inbox: mpsc::Receiver<ChannelMsg>,
        format: F,
    ) {
        let task = pump::ChannelTask::new(self.clone(), id, key.clone(), stream_id, status, format);
        tokio::spawn(task.run(inbox));
    }

    /// Takes channel `id` of `key` out of the directory as it ends, and hands the
    /// messages still in its mailbox on: joins and HLS requests to a successor channel
    /// (started at once), stop requests back to the caller (answered once the ended
    /// channel's events are applied). Nothing reaches the mailbox afterwards.
    fn retire(
        &self,
        key: &ChannelKey,
        id: u64,
        inbox: &mut mpsc::Receiver<ChannelMsg>,
    ) -> Vec<oneshot::Sender<()>> {
        let mut channels = self.channels();
        if channels.get(key).is_some_and(|handle| handle.id == id) {
            channels.remove(key);
        }
        inbox.close();
        let mut stops = Vec::new();
        let mut successor: Option<Result<mpsc::Sender<ChannelMsg>, JoinError>> = None;
        while let Ok(message) = inbox.try_recv() {
            match message {
                ChannelMsg::Stop { done, .. } => stops.push(done),
                // Its viewers are closed already.
                ChannelMsg::Ready(_) | ChannelMsg::Leave(_) => {}
                message => {
                    let mailbox = successor.get_or_insert_with(|| {
                        self.channel_locked(&mut channels, key)
                            .map(|handle| handle.mailbox.clone())
                    });
                    match mailbox {
                        // Room for everything: a new mailbox is as large as this one.
                        Ok(mailbox) => {
                            let _ = mailbox.try_send(message);
                        }
                        Err(error) => refuse(message, error),
                    }
                }
            }
        }
        stops
    }

    /// Stops the stream `stream_id`: a proxied channel is stopped (viewers closed,
    /// engine stopped, one `stream_ended`, answered once that is applied); any other
    /// registered stream is ended in the registry.
    pub async fn stop_stream(
        &self,
        stream_id: &str,
        reason: &str,
    ) -> Result<StopOutcome, ApplyError> {
        let mailbox = self
            .channels()
            .values()
            .find(|handle| handle.stream_id.borrow().as_deref() == Some(stream_id))
            .map(|handle| handle.mailbox.clone());
        let reason = EndReason::from(reason);
        if let Some(mailbox) = mailbox {
            let (done, stopped) = oneshot::channel();
            if mailbox
                .send(ChannelMsg::Stop { reason, done })
                .await
                .is_ok()
            {
                // Answered once the end is applied (the store's commit timeout bounds
                // that); a channel that ended meanwhile answers as it retires.
                let _ = stopped.await;
            }
            return Ok(StopOutcome {
                updated: true,
                engine: EngineStop::Channel,
            });
        }
        // A stream registered through the event API: its record is ended, and its
        // engine told to stop the session when it is one acemux uses (the command URL
        // re-pointed at that engine, as for its own sessions; never fetched as given).
        let known = self.0.lifecycle.stream(stream_id);
        let updated = self.0.lifecycle.end_stream(stream_id, reason).await?;
        let engine = match known {
            _ if !updated => EngineStop::NotSent("the stream had already ended"),
            None => EngineStop::NotSent("unknown stream"),
            Some(stream) if !self.pool().contains(&stream.engine) => {
                EngineStop::NotSent("its engine is not one acemux uses (--engine, --engines-from)")
            }
            Some(stream) => {
                let stopped =
                    match crate::engine::on_engine(&stream.engine, &stream.session.command_url) {
                        Ok(url) => self.0.engines.stop(&url).await,
                        Err(error) => Err(format!("{error:?}")),
                    };
                match stopped {
                    Ok(()) => {
                        tracing::info!(stream = %stream_id, engine = %stream.engine, "stopped the session on its engine");
                        EngineStop::Stopped
                    }
                    Err(error) => {
                        tracing::warn!(stream = %stream_id, engine = %stream.engine, %error, "could not stop the session on its engine");
                        EngineStop::Failed(error)
                    }
                }
            }
        };
        Ok(StopOutcome { updated, engine })
    }

    /// Stops every channel (at shutdown) and waits until each has applied its
    /// `stream_ended`; their engine calls end on their own bounds (a session granted
    /// meanwhile is still stopped; no request is watched for a late answer any more).
    pub async fn stop_all(&self) {
        let mailboxes: Vec<_> = self
            .channels()
            .values()
            .map(|handle| handle.mailbox.clone())
            .collect();
        let mut waits = Vec::new();
        for mailbox in mailboxes {
            let (done, stopped) = oneshot::channel();
            let stop = ChannelMsg::Stop {
                reason: EndReason::Shutdown,
                done,
            };
            if mailbox.send(stop).await.is_ok() {
                waits.push(stopped);
            }
        }
        futures::future::join_all(waits).await;
    }

    /// Channels running now.
    pub fn channel_count(&self) -> usize {
        self.channels().len()
    }

    fn pid(&self) -> String {
        format!("acemux-{:x}-{}", self.0.pid_prefix, self.next_id())
    }

    /// Timing and bounds of each channel's engine calls.
    fn engine_calls(&self) -> EngineCallConfig {
        EngineCallConfig {
            request_timeout: self.0.config.engine_request_timeout,
            stats: self.0.config.stats,
            planted: self.0.config.planted,
            ..EngineCallConfig::default()
        }
    }
}

/// Answers a message that no channel can take.
fn refuse(message: ChannelMsg, error: &JoinError) {
    let reason = error.to_string();
    match message {
        ChannelMsg::Join { slot, .. } => {
            slot.end(viewer::End::Refused(reason));
        }
        ChannelMsg::WaitReady { reply } => {
            let _ = reply.send(Err(JoinError::Capacity(reason)));
        }
        ChannelMsg::Stop { done, .. } => {
            let _ = done.send(());
        }
        ChannelMsg::Ready(_) | ChannelMsg::Leave(_) | ChannelMsg::Seen { .. } => {}
    }
}
