//! Performing the outputs every channel shares: engine calls, the shared engine pool,
//! lifecycle changes, and the notices that become logs and metrics.

use std::sync::Arc;

use acemux_core::channel::{
    EngineSession, EngineStats, Input, Notice, PoolChange, RequestId, StatPollId, StopId,
};
use acemux_core::lifecycle::{self, EndReason, EngineAddr, StreamEnded, StreamKey, StreamStarted};
use acemux_core::Instant;
use futures::stream::{FuturesOrdered, StreamExt};
use tokio::sync::{mpsc, oneshot};
use tokio::task::{AbortHandle, JoinHandle};

use super::pump::Env;
use super::{ChannelKey, Proxy};
use crate::lifecycle::Lifecycle;
use crate::net::Net;

/// Sends a session request; its answer comes back as a completion. Returns the handle
/// that abandons it.
pub(super) fn request_session<N: Net, I: Send + 'static>(
    env: &Env<N, I>,
    request: RequestId,
    engine: EngineAddr,
) -> AbortHandle {
    let shared = env.proxy.0.clone();
    let key = env.key.clone();
    let pid = env.proxy.pid();
    let completions = env.completions.clone();
    tracing::info!(channel = %key, %engine, %pid, %request, "requesting engine session");
    let task = tokio::spawn(async move {
        let result = shared
            .engines
            .session_request(
                &engine,
                key.format,
                key.key_type,
                &key.key,
                &key.params,
                &pid,
            )
            .await;
        // The channel task outlives every request it has not abandoned.
        let _ = completions
            .send(Input::SessionAnswer { request, result })
            .await;
    });
    task.abort_handle()
}

/// Sends one stop attempt; its answer comes back as a completion.
pub(super) fn stop_session<N: Net, I: Send + 'static>(
    env: &Env<N, I>,
    stop: StopId,
    attempt: u32,
    engine: EngineAddr,
    command_url: String,
) {
    let shared = env.proxy.0.clone();
    let completions = env.completions.clone();
    if attempt == 1 {
        shared.metrics.engine_stops.inc();
        tracing::info!(channel = %env.key, %engine, "stopping engine session");
    } else {
        tracing::info!(channel = %env.key, %engine, attempt, "stopping engine session again");
    }
    tokio::spawn(async move {
        let result = shared.engines.stop(&command_url).await;
        let _ = completions.send(Input::StopAnswer { stop, result }).await;
    });
}

/// Polls a session's stats (waiting for a turn among every channel's polls, both
/// bounded by the engine request timeout); the answer always comes back.
pub(super) fn fetch_stats<N: Net, I: Send + 'static>(
    env: &Env<N, I>,
    poll: StatPollId,
    url: String,
) {
    let shared = env.proxy.0.clone();
    let completions = env.completions.clone();
    tokio::spawn(async move {
        let bound = shared.config.engine_request_timeout;
        let result = match tokio::time::timeout(bound, shared.stat_fetches.acquire()).await {
            Ok(Ok(_turn)) => shared.engines.stats(&url).await,
            Ok(Err(_)) => Err("stat polls are closed".to_owned()),
            Err(_) => {
                shared.metrics.limit_hit("stat_fetches");
                Err(format!(
                    "no turn among the stat polls in flight within {bound:?}"
                ))
            }
        };
        let _ = completions.send(Input::StatsAnswer { poll, result }).await;
    });
}

/// Publishes the latest figures of the channel's session `stream_id` (`None`: the
/// session is over).
pub(super) fn publish_stats<N: Net, I>(
    env: &Env<N, I>,
    stream_id: &str,
    stats: Option<EngineStats>,
) {
    let metrics = &env.proxy.0.metrics.session_stats;
    let mut published = env.proxy.session_stats();
    match stats {
        Some(stats) => {
            metrics.set(&env.labels, &stats);
            published.insert(stream_id.to_owned(), stats);
        }
        None => {
            metrics.remove(&env.labels);
            published.remove(stream_id);
        }
    }
}

/// Applies a change to the shared engine pool.
pub(super) fn pool_change<N: Net>(proxy: &Proxy<N>, now: Instant, change: PoolChange) {
    let mut pool = proxy.pool();
    match change {
        PoolChange::Opened(engine) => pool.session_opened(&engine),
        PoolChange::Closed(engine) => pool.session_closed(&engine),
        PoolChange::Failed {
            engine,
            unreachable,
        } => {
            if let Some(before) = pool.failed(now, &engine, unreachable) {
                tracing::warn!(%engine, was = before.as_str(),
                    "engine down: a session request failed; no new sessions until its version API answers");
            }
        }
    }
}

/// Logs and counts a notice.
pub(super) fn notice<N: Net, I>(env: &Env<N, I>, notice: Notice) {
    let metrics = &env.proxy.0.metrics;
    let channel = &env.key;
    let now = env.proxy.0.lifecycle.clock().now();
    // Each arm also notes, where it is one, the channel's last error for the status
    // page.
    match notice {
        Notice::NoEngine => tracing::warn!(%channel, "no engine available"),
        Notice::SessionFailed { engine, error } => {
            tracing::warn!(%channel, %engine, ?error, "engine did not grant a session");
            env.status.error(
                now,
                format!("engine {engine} did not grant a session: {error:?}"),
            );
        }
        Notice::LateSession { engine, session_id } => {
            tracing::warn!(%channel, %engine, session = %session_id, "engine granted a session after its request timed out; stopping it");
            metrics.engine_late_session(&engine);
        }
        Notice::RequestWatched {
            request,
            engine,
            for_at_most,
        } => {
            tracing::info!(%channel, %engine, %request, ?for_at_most, "session request timed out; watching it for a late answer");
        }
        Notice::RequestAbandoned {
            request,
            engine,
            limit,
        } => {
            if limit {
                tracing::warn!(%channel, %engine, %request, "too many timed-out session requests watched; dropping this one");
                metrics.limit_hit("late_session_requests");
            } else {
                tracing::warn!(%channel, %engine, %request, "timed-out session request still unanswered; giving up on it");
            }
        }
        Notice::StopFailed {
            engine,
            attempt,
            error,
            retry_in,
        } => match retry_in {
            Some(retry_in) => {
                tracing::warn!(%channel, %engine, %error, attempt, ?retry_in, "engine did not confirm the stop");
            }
            None => {
                tracing::warn!(%channel, %engine, %error, attempt, "engine did not confirm the stop; giving up");
            }
        },
        Notice::StartFailed(failure) => {
            tracing::warn!(%channel, code = failure.code(), ?failure, "channel could not start");
            env.status
                .error(now, format!("could not start: {}", failure.code()));
        }
        Notice::UpstreamStalled => {
            tracing::warn!(%channel, "engine stopped sending; closing the playback to reopen it (--upstream-stall-timeout)");
            env.status.update(|state| state.phase = "recovering");
            env.status.error(now, "the engine stopped sending".into());
            metrics
                .channel_upstream_stalls
                .get_or_create(&env.labels)
                .inc();
        }
        Notice::Reconnecting => {
            tracing::info!(%channel, "reopening the playback after an outage; viewers stay connected");
            metrics.channel_reconnects.get_or_create(&env.labels).inc();
        }
        Notice::StatsFailed {
            engine,
            error,
            consecutive,
        } => {
            metrics
                .channel_stat_failures
                .get_or_create(&env.labels)
                .inc();
            // One line when polls start failing; the rest are counted.
            if consecutive == 1 {
                tracing::warn!(%channel, %engine, %error, "engine stats unavailable; showing the last figures");
                env.status
                    .error(now, format!("engine {engine} stats unavailable: {error}"));
            } else {
                tracing::debug!(%channel, %engine, %error, consecutive, "engine stats still unavailable");
            }
        }
        Notice::NoPeers {
            engine,
            for_at_least,
        } => {
            metrics.channel_no_peers.get_or_create(&env.labels).inc();
            tracing::warn!(%channel, %engine, ?for_at_least, "engine reports no peers and no download progress; replacing the session (--no-peers-timeout)");
            env.status.error(
                now,
                format!("engine {engine} reported no peers and no progress; replaced"),
            );
        }
        Notice::Viewers(count) => {
            metrics
                .channel_viewers
                .get_or_create(&env.labels)
                .set(i64::try_from(count).unwrap_or(i64::MAX));
        }
        _ => tracing::debug!(%channel, ?notice, "channel notice"),
    }
}

fn log_unconfirmed(result: Result<lifecycle::Outcome, crate::lifecycle::ApplyError>) {
    if let Err(error) = result {
        tracing::error!(%error, "lifecycle change of a proxied stream was not applied");
    }
}

/// The registry id of a proxied session, as the event API derives it.
pub(super) fn stream_id(key: &ChannelKey, session: &EngineSession) -> String {
    format!("{}|{}", key.key, session.session.playback_session_id)
}

enum Job {
    Apply(lifecycle::Input),
    Notify(oneshot::Sender<()>),
}

/// Applies one channel's lifecycle changes in order, off the channel's loop (a slow
/// commit never holds up the media), and answers stop waiters once everything before
/// them is durable. Each change is applied to the registry as soon as it comes, not
/// after the commit of the one before: with a slow store, a channel's `stream_ended`
/// must still be numbered before the `stream_started` of the channel that replaces it.
/// At most two changes per engine session, and sessions are bounded by the channel's
/// retry rules, so its queue stays small.
/// The `stream_started` of `session` of the channel `key`; in cluster mode (`cluster`)
/// labelled with the channel's name, which names its session record in Redis.
pub(super) fn stream_started(
    key: &ChannelKey,
    session: EngineSession,
    cluster: bool,
) -> StreamStarted {
    let mut labels: std::collections::BTreeMap<String, String> =
        [("source".to_owned(), "acemux".to_owned())].into();
    if cluster {
        labels.insert(crate::cluster::CHANNEL_LABEL.to_owned(), key.to_string());
    }
    StreamStarted {
        container_id: None,
        engine: session.engine,
        stream: StreamKey {
            key_type: key.key_type,
            key: key.key.clone(),
        },
        session: session.session,
        labels,
    }
}

pub(super) struct LifecycleApplier {
    jobs: mpsc::UnboundedSender<Job>,
    task: JoinHandle<()>,
}

impl LifecycleApplier {
    pub(super) fn spawn(registry: Arc<Lifecycle>) -> Self {
        let (jobs, mut rx) = mpsc::unbounded_channel::<Job>();
        let task = tokio::spawn(async move {
            let mut confirming = FuturesOrdered::new();
            loop {
                tokio::select! {
                    biased;
                    Some(result) = confirming.next(), if !confirming.is_empty() => log_unconfirmed(result),
                    job = rx.recv() => match job {
                        None => break,
                        Some(Job::Apply(input)) => match registry.stage(input).await {
                            Ok(staged) => {
                                let registry = registry.clone();
                                confirming.push_back(async move { registry.confirm(staged).await });
                            }
                            Err(error) => log_unconfirmed(Err(error)),
                        },
                        Some(Job::Notify(done)) => {
                            while let Some(result) = confirming.next().await {
                                log_unconfirmed(result);
                            }
                            let _ = done.send(());
                        }
                    },
                }
            }
            while let Some(result) = confirming.next().await {
                log_unconfirmed(result);
            }
        });
        LifecycleApplier { jobs, task }
    }

    pub(super) fn started(&self, started: StreamStarted) {
        let _ = self
            .jobs
            .send(Job::Apply(lifecycle::Input::Started(started)));
    }

    pub(super) fn ended(&self, stream_id: String, reason: EndReason) {
        let ended = StreamEnded {
            container_id: None,
            stream_id: Some(stream_id),
            reason: Some(reason),
        };
        let _ = self.jobs.send(Job::Apply(lifecycle::Input::Ended(ended)));
    }

    /// Answers `done` once every change sent before is applied.
    pub(super) fn notify(&self, done: oneshot::Sender<()>) {
        if let Err(mpsc::error::SendError(Job::Notify(done))) = self.jobs.send(Job::Notify(done)) {
            let _ = done.send(());
        }
    }

    /// Waits until every change is applied.
    pub(super) async fn finish(self) {
        drop(self.jobs);
        if let Err(error) = self.task.await {
            tracing::error!(%error, "lifecycle task of a channel failed");
        }
    }
}
