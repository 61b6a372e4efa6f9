//! Cluster mode's instance directory: the driver of
//! [`acemux_core::cluster::directory::Directory`].
//!
//! The driver task owns the machine. It publishes this instance's record (its id,
//! address and the channels it owns, gathered from the lifecycle and the proxy when the
//! record is written), enrolls the instance in the list of instances, and answers
//! directory reads (`GET /streams`, `GET /cluster`) within the machine's wait bound.
//! Each Redis command sequence runs on a task of its own, bounded by the machine's
//! timeout, over the lease driver's kind of connections ([`RedisClient`]).

use std::sync::Arc;
use std::time::Duration;

use acemux_core::cluster::directory::{
    decode_list, encode_list, next_list, ChannelRecord, DirCommand, DirInput, DirNotice, DirOutput,
    DirReply, Directory, DirectoryAnswer, DirectoryConfig, Freshness, InstanceRecord,
};
use acemux_core::cluster::{OpId, TicketId};
use acemux_core::lifecycle::StreamStatus;
use acemux_core::machine::Machine as _;
use redis::aio::MultiplexedConnection;
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;

use super::redis::{millis, RedisClient, RedisTarget};
use crate::clock::{rfc3339, Clock};
use crate::lifecycle::Lifecycle;
use crate::metrics::{DirectoryReadLabels, Metrics, RedisCallLabels};
use crate::net::Net;
use crate::proxy::Streams;

/// The list of instance ids.
pub const INSTANCES_KEY: &str = "acemux:instances";

/// The record of instance `id`.
pub fn instance_key(id: &str) -> String {
    format!("acemux:instance:{id}")
}

/// Largest record or list value read; a larger one is skipped (and logged).
const MAX_VALUE_BYTES: usize = 1 << 20;

/// Where the channels of this instance's record come from.
#[derive(Clone)]
pub struct RecordSource {
    /// The lifecycle: the streams this instance started.
    pub lifecycle: Arc<Lifecycle>,
    /// The proxy, for each channel's format and viewers (none: no proxy).
    pub streams: Option<Arc<dyn Streams>>,
}

impl RecordSource {
    /// The channels this instance owns now: its started streams (a relayed channel
    /// records no stream here; its owner does).
    pub fn channels(&self) -> Vec<ChannelRecord> {
        let summaries = self
            .streams
            .as_ref()
            .map(|streams| streams.channel_summaries())
            .unwrap_or_default();
        self.lifecycle
            .streams(Some(StreamStatus::Started))
            .iter()
            .map(|stream| {
                let channel = summaries
                    .iter()
                    .find(|summary| summary.stream_id.as_deref() == Some(stream.id.as_str()));
                ChannelRecord {
                    stream_id: stream.id.clone(),
                    key_type: stream.stream.key_type.as_str().to_owned(),
                    key: stream.stream.key.clone(),
                    format: channel
                        .map(|channel| match channel.key.format {
                            crate::engine::StreamFormat::Ts => "ts",
                            crate::engine::StreamFormat::Hls => "hls",
                        })
                        .unwrap_or("unknown")
                        .to_owned(),
                    viewers: channel.map_or(0, |channel| channel.viewers.len() as u64),
                    started_at: rfc3339(stream.started_at),
                    container_id: stream.container_id.clone(),
                }
            })
            .collect()
    }
}

enum Msg {
    Read {
        reply: oneshot::Sender<DirectoryAnswer>,
    },
    Shutdown {
        done: oneshot::Sender<()>,
    },
}

/// The directory as routes see it; cheap to clone.
#[derive(Clone, Debug)]
pub struct ClusterDirectory {
    messages: mpsc::UnboundedSender<Msg>,
}

impl ClusterDirectory {
    /// Starts the driver for instance `instance` at `advertise`, publishing every
    /// `publish_every` what `source` shows; Redis calls bounded by `redis_timeout`.
    #[allow(clippy::too_many_arguments)]
    pub fn start<N: Net>(
        net: N,
        redis: RedisTarget,
        instance: String,
        advertise: String,
        publish_every: Duration,
        redis_timeout: Duration,
        source: RecordSource,
        clock: Clock,
        metrics: Arc<Metrics>,
    ) -> (ClusterDirectory, JoinHandle<()>) {
        let mut config = DirectoryConfig::new(instance.clone(), publish_every);
        config.redis_timeout = config.redis_timeout.min(redis_timeout);
        tracing::info!(
            every = ?config.publish_every,
            ttl = ?config.ttl,
            "cluster directory: publishing this instance's channels in Redis"
        );
        let (messages, inbox) = mpsc::unbounded_channel();
        let driver = Driver {
            machine: Directory::new(config, clock.now()),
            redis: Arc::new(RedisClient::new(net, redis)),
            instance,
            advertise,
            source,
            clock,
            metrics,
            tickets: std::collections::BTreeMap::new(),
            next_ticket: 1,
        };
        (
            ClusterDirectory { messages },
            tokio::spawn(driver.run(inbox)),
        )
    }

    /// The cluster's records, as the machine answers (within its wait bound); should
    /// the driver be gone (shutting down), unavailable.
    pub async fn read(&self) -> DirectoryAnswer {
        let unavailable = || DirectoryAnswer {
            freshness: Freshness::Unavailable,
            records: Vec::new(),
            read_at: None,
        };
        let (reply, answer) = oneshot::channel();
        if self.messages.send(Msg::Read { reply }).is_err() {
            return unavailable();
        }
        answer.await.unwrap_or_else(|_| unavailable())
    }

    /// Deletes this instance's record (bounded by one Redis call), then stops the
    /// driver.
    pub async fn shutdown(&self) {
        let (done, finished) = oneshot::channel();
        if self.messages.send(Msg::Shutdown { done }).is_ok() {
            let _ = finished.await;
        }
    }
}

type Replies = mpsc::UnboundedSender<(OpId, Result<DirReply, String>)>;

struct Driver<N: Net> {
    machine: Directory,
    redis: Arc<RedisClient<N>>,
    instance: String,
    advertise: String,
    source: RecordSource,
    clock: Clock,
    metrics: Arc<Metrics>,
    tickets: std::collections::BTreeMap<TicketId, oneshot::Sender<DirectoryAnswer>>,
    next_ticket: u64,
}

impl<N: Net> Driver<N> {
    async fn run(mut self, mut inbox: mpsc::UnboundedReceiver<Msg>) {
        let (replies_tx, mut replies) = mpsc::unbounded_channel();
        let mut shutdown: Option<(oneshot::Sender<()>, acemux_core::Instant)> = None;
        loop {
            self.perform(&replies_tx);
            if shutdown.is_some() && self.machine.is_idle() {
                break;
            }
            let deadline = shutdown.as_ref().map(|(_, at)| *at);
            let sleep = self
                .clock
                .sleep_until_earliest([self.machine.poll_timeout(), deadline]);
            tokio::select! {
                biased;
                Some((op, result)) = replies.recv() => {
                    self.machine.handle_input(self.clock.now(), DirInput::Reply { op, result });
                }
                message = inbox.recv(), if shutdown.is_none() => match message {
                    Some(Msg::Read { reply }) => {
                        let ticket = TicketId(self.next_ticket);
                        self.next_ticket += 1;
                        self.tickets.insert(ticket, reply);
                        self.machine.read(self.clock.now(), ticket);
                    }
                    Some(Msg::Shutdown { done }) => {
                        self.machine.withdraw();
                        let bound = self.machine.config().redis_timeout * 2;
                        shutdown = Some((done, self.clock.now() + bound));
                    }
                    None => break,
                },
                () = sleep => {
                    let now = self.clock.now();
                    if deadline.is_some_and(|at| at <= now) {
                        tracing::warn!("this instance's directory record not deleted in time at shutdown; it expires by itself");
                        break;
                    }
                    self.machine.handle_timeout(now);
                }
            }
        }
        if let Some((done, _)) = shutdown {
            let _ = done.send(());
        }
    }

    fn perform(&mut self, replies: &Replies) {
        while let Some(output) = self.machine.poll_output() {
            match output {
                DirOutput::Redis {
                    op,
                    command,
                    timeout,
                } => {
                    let record =
                        matches!(command, DirCommand::Publish { .. }).then(|| InstanceRecord {
                            id: self.instance.clone(),
                            advertise: self.advertise.clone(),
                            published_at: rfc3339(self.clock.now()),
                            channels: self.source.channels(),
                        });
                    let (redis, replies) = (self.redis.clone(), replies.clone());
                    let instance = self.instance.clone();
                    tokio::spawn(async move {
                        let call = redis.with_connection(timeout, |connection| {
                            Box::pin(run(connection, command, instance, record))
                        });
                        let _ = replies.send((op, call.await));
                    });
                }
                DirOutput::Answer { ticket, answer } => {
                    self.metrics
                        .cluster_directory_reads
                        .get_or_create(&DirectoryReadLabels {
                            result: freshness_name(answer.freshness).to_owned(),
                        })
                        .inc();
                    if let Some(reply) = self.tickets.remove(&ticket) {
                        let _ = reply.send(answer);
                    }
                }
                DirOutput::Notice(DirNotice::RedisFailed { call, error }) => {
                    tracing::warn!(call, %error, "cluster directory: Redis call failed");
                    self.metrics
                        .cluster_redis_failures
                        .get_or_create(&RedisCallLabels {
                            call: format!("directory_{call}"),
                        })
                        .inc();
                }
                DirOutput::Notice(DirNotice::Degraded { freshness }) => {
                    tracing::debug!(
                        freshness = freshness_name(freshness),
                        "cluster directory read answered without Redis"
                    );
                }
            }
        }
    }
}

/// `ok`, `stale` or `unavailable`.
pub fn freshness_name(freshness: Freshness) -> &'static str {
    match freshness {
        Freshness::Ok => "ok",
        Freshness::Stale => "stale",
        Freshness::Unavailable => "unavailable",
    }
}

/// Runs `command`; returns the reply and whether the connection is clean for reuse (no
/// key left watched).
async fn run(
    connection: &mut MultiplexedConnection,
    command: DirCommand,
    instance: String,
    record: Option<InstanceRecord>,
) -> redis::RedisResult<(DirReply, bool)> {
    match command {
        DirCommand::Publish { ttl } => {
            let value = record.map(|record| record.encode()).unwrap_or_default();
            redis::cmd("SET")
                .arg(instance_key(&instance))
                .arg(value)
                .arg("PX")
                .arg(millis(ttl))
                .query_async::<()>(connection)
                .await?;
            Ok((DirReply::Done, true))
        }
        DirCommand::Withdraw => {
            redis::cmd("DEL")
                .arg(instance_key(&instance))
                .query_async::<()>(connection)
                .await?;
            Ok((DirReply::Done, true))
        }
        DirCommand::Read { max_instances } => {
            let value: Option<String> = redis::cmd("GET")
                .arg(INSTANCES_KEY)
                .query_async(connection)
                .await?;
            let listed = list(value);
            let records = records(connection, &listed, max_instances).await?;
            Ok((DirReply::Records(records), true))
        }
        DirCommand::Enroll { max_instances } => {
            redis::cmd("WATCH")
                .arg(INSTANCES_KEY)
                .query_async::<()>(connection)
                .await?;
            let value: Option<String> = redis::cmd("GET")
                .arg(INSTANCES_KEY)
                .query_async(connection)
                .await?;
            let listed = list(value);
            let records = records(connection, &listed, max_instances).await?;
            let present: Vec<String> = records.iter().map(|record| record.id.clone()).collect();
            let Some(next) = next_list(&listed, &instance, &present, max_instances) else {
                // Still watching: the connection is not reused.
                return Ok((DirReply::Records(records), false));
            };
            let done: Option<(String,)> = redis::pipe()
                .atomic()
                .cmd("SET")
                .arg(INSTANCES_KEY)
                .arg(encode_list(&next))
                .query_async(connection)
                .await?;
            match done {
                Some(_) => Ok((DirReply::Records(records), true)),
                None => Err(redis::RedisError::from((
                    redis::ErrorKind::Client,
                    "transaction aborted",
                    "the list of instances changed meanwhile".to_owned(),
                ))),
            }
        }
    }
}

/// The ids in the list's `value` (none when absent, too large or not a list).
fn list(value: Option<String>) -> Vec<String> {
    match value {
        Some(value) if value.len() > MAX_VALUE_BYTES => {
            tracing::warn!(
                bytes = value.len(),
                "cluster directory: the list of instances is too large; read as empty"
            );
            Vec::new()
        }
        Some(value) => decode_list(&value),
        None => Vec::new(),
    }
}

/// The records of the first `max` of `ids` that are still in Redis and readable.
async fn records(
    connection: &mut MultiplexedConnection,
    ids: &[String],
    max: usize,
) -> redis::RedisResult<Vec<InstanceRecord>> {
    let mut records = Vec::new();
    for id in ids.iter().take(max) {
        let value: Option<String> = redis::cmd("GET")
            .arg(instance_key(id))
            .query_async(connection)
            .await?;
        let Some(value) = value else { continue };
        let record = (value.len() <= MAX_VALUE_BYTES)
            .then(|| InstanceRecord::decode(&value))
            .flatten()
            .filter(|record| record.id == *id);
        match record {
            Some(record) => records.push(record),
            None => tracing::warn!(
                instance = %id,
                bytes = value.len(),
                "cluster directory: an instance's record is not readable; skipped"
            ),
        }
    }
    Ok(records)
}
