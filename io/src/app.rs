//! Wiring: restore the registry, start the server, the webhook workers and the timers,
//! and stop them in order.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use acemux_core::channel_list::BaseUrl;
use acemux_core::lifecycle::{EngineAddr, Registry, RegistryConfig};
use thiserror::Error;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::clock::Clock;
use crate::cluster::{instance_id_from_seed, Cluster, ClusterOptions};
use crate::engine::EngineClient;
use crate::http::{router, AppInner, AppState, DirectStreams, PlayerRules, StreamMode};
use crate::lifecycle::Lifecycle;
use crate::metrics::Metrics;
use crate::net::{http_client, Net, NetListener};
use crate::playlists::Playlists;
use crate::proxy::{Proxy, ProxyConfig, Streams};
use crate::server::{serve, ServerLimits};
use crate::store::{EventStore, StoreError};
use crate::webhook::{deliver, DeliveryPolicy, WebhookFormat, WebhookTarget};

/// Everything `acemux serve` needs, independent of where it came from (CLI or a test).
#[derive(Clone, Debug)]
pub struct ServeOptions {
    /// Bearer key for write routes.
    pub api_key: Option<String>,
    /// The rules of the player routes (cross-origin answers, sources, stream mode).
    pub player: PlayerRules,
    /// acemux's address as players reach it (`--public-url`), for the URLs it hands
    /// out; `None`: each request's `Host`.
    pub public_url: Option<BaseUrl>,
    /// The channel list and the bound of the playlist routes.
    pub playlists: Playlists,
    /// Webhook receivers.
    pub webhooks: Vec<WebhookTarget>,
    /// How webhooks are delivered.
    pub delivery: DeliveryPolicy,
    /// HTTP server bounds.
    pub server: ServerLimits,
    /// Largest request body.
    pub max_body_bytes: usize,
    /// Bound on receiving a request body whole.
    pub body_read_timeout: Duration,
    /// Bound on waiting for an event to be committed.
    pub commit_timeout: Duration,
    /// Registry limits. Its seed is used only for a new database.
    pub registry: RegistryConfig,
    /// The wall-clock time at which this process's clock starts, in µs since the epoch.
    pub clock_origin_unix_micros: u64,
    /// Engines the proxy may use (with `engine_lists`; neither disables the player
    /// routes).
    pub engines: Vec<EngineAddr>,
    /// Orchestrators' engine lists polled for more engines (`--engines-from`).
    pub engine_lists: Vec<String>,
    /// How often each engine list is polled.
    pub engine_list_interval: Duration,
    /// How often each engine's version API is probed; `None`: never.
    pub engine_health_interval: Option<Duration>,
    /// Proxy bounds.
    pub proxy: ProxyConfig,
    /// Cluster mode (`--redis`); `None`: this instance alone.
    pub cluster: Option<ClusterOptions>,
}

impl Default for ServeOptions {
    /// The defaults of `acemux serve`, with no API key, no webhooks and the clock's
    /// origin at the Unix epoch (callers that show dates set it).
    fn default() -> Self {
        ServeOptions {
            api_key: None,
            player: PlayerRules::default(),
            public_url: None,
            playlists: Playlists::default(),
            webhooks: Vec::new(),
            delivery: DeliveryPolicy {
                format: WebhookFormat::OrchestratorPy,
                api_key: None,
                attempt_timeout: Duration::from_secs(10),
                initial_backoff: Duration::from_millis(500),
                max_backoff: Duration::from_secs(60),
                max_attempts: 10_000,
                max_pending: 100_000,
            },
            server: ServerLimits::default(),
            max_body_bytes: 64 * 1024,
            body_read_timeout: Duration::from_secs(10),
            commit_timeout: Duration::from_secs(5),
            registry: RegistryConfig::default(),
            clock_origin_unix_micros: 0,
            engines: Vec::new(),
            engine_lists: Vec::new(),
            engine_list_interval: Duration::from_secs(10),
            // Off here; `acemux serve` probes every 10 s by default.
            engine_health_interval: None,
            proxy: ProxyConfig::default(),
            cluster: None,
        }
    }
}

/// Why acemux could not start.
#[derive(Debug, Error)]
pub enum StartError {
    /// The event store could not be read.
    #[error("cannot restore from the event store: {0}")]
    Store(#[from] StoreError),
    /// The listening address is unusable.
    #[error("cannot use the listening socket: {0}")]
    Listen(#[from] std::io::Error),
}

/// A running acemux server.
pub struct Running {
    local_addr: SocketAddr,
    stop: watch::Sender<bool>,
    server: JoinHandle<()>,
    workers: Vec<JoinHandle<()>>,
    store: Arc<dyn EventStore>,
    metrics: Arc<Metrics>,
    streams: Option<Arc<dyn Streams>>,
    cluster: Option<Cluster>,
    directory: Option<crate::cluster::directory::ClusterDirectory>,
}

impl Running {
    /// The address the server listens on.
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// The metrics of this server.
    pub fn metrics(&self) -> Arc<Metrics> {
        self.metrics.clone()
    }

    /// Stops accepting, lets in-flight requests finish, stops the workers, then
    /// flushes and closes the store.
    pub async fn shutdown(self) {
        let _ = self.stop.send(true);
        if let Some(streams) = &self.streams {
            // Ends viewer bodies (so connections can finish), stops engine sessions and
            // records their `stream_ended` before the store closes.
            streams.stop_all().await;
        }
        if let Some(directory) = &self.directory {
            // Other instances stop showing this one's channels at once.
            directory.shutdown().await;
        }
        if let Some(cluster) = &self.cluster {
            // The stopped channels' leases are given back, so other instances take
            // them over at once instead of after the lease time to live.
            cluster.shutdown().await;
        }
        if let Err(error) = self.server.await {
            tracing::error!(%error, "server task failed");
        }
        for worker in self.workers {
            if let Err(error) = worker.await {
                tracing::error!(%error, "worker task failed");
            }
        }
        if let Err(error) = self.store.close().await {
            tracing::error!(%error, "event store did not close cleanly");
        }
        tracing::info!("stopped");
    }
}

/// Starts acemux on an already bound `listener`.
pub async fn start<N: Net>(
    net: N,
    listener: N::Listener,
    store: Arc<dyn EventStore>,
    options: ServeOptions,
) -> Result<Running, StartError> {
    let local_addr = listener.local_addr()?;
    let mut restored = store
        .restore(options.registry.max_ended_streams, options.registry.seed)
        .await?;
    if options
        .proxy
        .planted
        .has(acemux_core::planted::Bug::EndsForgottenOnRestart)
    {
        for stream in &mut restored.streams {
            stream.status = acemux_core::lifecycle::StreamStatus::Started;
            stream.ended_at = None;
            stream.end_reason = None;
        }
    }
    let registry_config = RegistryConfig {
        seed: restored.seed,
        ..options.registry.clone()
    };
    let active = restored
        .streams
        .iter()
        .filter(|stream| stream.status == acemux_core::lifecycle::StreamStatus::Started)
        .count();
    tracing::info!(
        active_streams = active,
        remembered_streams = restored.streams.len(),
        last_event_seq = restored.last_seq,
        "restored lifecycle state"
    );
    let restored_seed = restored.seed;
    let registry = Registry::restore(registry_config, restored.streams, restored.last_seq);
    let metrics = Arc::new(Metrics::new());
    let clock = Clock::new(options.clock_origin_unix_micros);
    let lifecycle = Arc::new(Lifecycle::new(
        registry,
        store.clone(),
        clock,
        metrics.clone(),
        options.commit_timeout,
    ));
    if options.api_key.is_none() {
        tracing::warn!(
            "no API key configured: the event API accepts writes from anyone who can reach it"
        );
    }
    let (stop, stopped) = watch::channel(false);
    let mut workers = Vec::new();
    let client = http_client(net.clone());
    let instance = options.cluster.as_ref().map(|cluster_options| {
        cluster_options
            .instance
            .clone()
            .unwrap_or_else(|| instance_id_from_seed(restored_seed))
    });
    // What stops sessions outside a channel (leftovers, a dead owner's) uses.
    let stop_engines = || EngineClient::new(client.clone(), options.proxy.engine_request_timeout);
    let stop_config = || acemux_core::channel::EngineCallConfig {
        request_timeout: options.proxy.engine_request_timeout,
        planted: options.proxy.planted,
        ..Default::default()
    };
    let leftover_check =
        options
            .cluster
            .as_ref()
            .zip(instance.clone())
            .map(|(cluster_options, instance)| {
                crate::cluster::LeftoverCheck::new(net.clone(), cluster_options, instance)
            });
    let mut leftovers = crate::leftovers::stage_leftovers(
        &lifecycle,
        options.proxy.planted,
        leftover_check.as_ref(),
    )
    .await;
    let (cluster, lost) = match (&options.cluster, instance) {
        (Some(cluster_options), Some(instance)) => {
            let (lost, lost_rx) = tokio::sync::mpsc::unbounded_channel();
            let (orphans, orphans_rx) = tokio::sync::mpsc::unbounded_channel();
            let (cluster, task) = Cluster::start(
                net.clone(),
                cluster_options,
                instance,
                lifecycle.clock(),
                metrics.clone(),
                crate::cluster::ClusterSinks { lost, orphans },
                options.proxy.max_streams_per_engine,
                options.proxy.planted,
            );
            workers.push(task);
            for (stream, _) in &leftovers.deferred {
                if let Some(channel) = crate::cluster::LeftoverCheck::<N>::channel_of(stream) {
                    cluster.hold_back(channel);
                }
            }
            workers.push(tokio::spawn(crate::cluster::orphans::handle_orphans(
                lifecycle.clone(),
                orphans_rx,
                stop_engines(),
                stop_config(),
                metrics.clone(),
                stopped.clone(),
            )));
            (Some(cluster), Some(lost_rx))
        }
        _ => (None, None),
    };
    if let (Some(cluster), Some(check)) = (&cluster, leftover_check) {
        let deferred = std::mem::take(&mut leftovers.deferred);
        if !deferred.is_empty() {
            workers.push(tokio::spawn(crate::leftovers::resolve_deferred(
                lifecycle.clone(),
                (check, cluster.clone()),
                deferred,
                stop_engines(),
                stop_config(),
                metrics.clone(),
                stopped.clone(),
            )));
        }
    }
    workers.push(tokio::spawn(crate::leftovers::end_leftovers(
        lifecycle.clone(),
        leftovers,
        stop_engines(),
        stop_config(),
        metrics.clone(),
        stopped.clone(),
    )));
    let streams: Option<Arc<dyn Streams>> = if options.engines.is_empty()
        && options.engine_lists.is_empty()
    {
        tracing::warn!(
            "no engines configured: /ace/getstream answers 503 until --engine or \
                 --engines-from is given"
        );
        None
    } else {
        let engines = EngineClient::new(client.clone(), options.proxy.engine_request_timeout);
        let pid_prefix = options.clock_origin_unix_micros ^ options.registry.seed;
        let proxy = Proxy::new(
            options.proxy.clone(),
            options.engines.clone(),
            engines,
            lifecycle.clone(),
            metrics.clone(),
            pid_prefix,
        );
        if let (Some(cluster), Some(mut lost)) = (cluster.clone(), lost) {
            proxy.set_cluster(cluster);
            let (proxy, mut stopped) = (proxy.clone(), stopped.clone());
            workers.push(tokio::spawn(async move {
                loop {
                    let channel = tokio::select! {
                        biased;
                        _ = stopped.wait_for(|stopped| *stopped) => None,
                        channel = lost.recv() => channel,
                    };
                    match channel {
                        Some(channel) => proxy.lease_lost(&channel).await,
                        None => return,
                    }
                }
            }));
        }
        for url in &options.engine_lists {
            tracing::info!(list = %url, every = ?options.engine_list_interval, "polling engine list");
            workers.push(tokio::spawn(crate::discovery::poll_engine_list(
                proxy.clone(),
                url.clone(),
                options.engine_list_interval,
                metrics.clone(),
                stopped.clone(),
            )));
        }
        // Names among the --engine values are looked up as often as lists are polled.
        workers.push(tokio::spawn(crate::discovery::resolve_engine_names(
            proxy.clone(),
            net.clone(),
            options.engines.clone(),
            options.engine_list_interval,
            stopped.clone(),
        )));
        if let Some(interval) = options.engine_health_interval {
            let (proxy, stopped) = (proxy.clone(), stopped.clone());
            workers.push(tokio::spawn(async move {
                proxy.probe_engines(interval, stopped).await;
            }));
        }
        Some(Arc::new(proxy))
    };
    let directory = match (&options.cluster, &cluster) {
        (Some(cluster_options), Some(cluster)) => {
            let source = crate::cluster::directory::RecordSource {
                lifecycle: lifecycle.clone(),
                streams: streams.clone(),
            };
            let (directory, task) = crate::cluster::directory::ClusterDirectory::start(
                net.clone(),
                cluster_options.redis.clone(),
                cluster.instance().to_owned(),
                cluster.advertise().to_owned(),
                cluster_options.publish_every,
                cluster_options.redis_timeout,
                source,
                lifecycle.clock(),
                metrics.clone(),
            );
            workers.push(task);
            Some(directory)
        }
        _ => None,
    };
    let webhook_board = Arc::new(crate::webhook::WebhookBoard::new(
        options.webhooks.iter().map(|target| target.base.as_str()),
    ));
    for target in options.webhooks {
        tracing::info!(webhook = %target.base, "delivering events to webhook");
        workers.push(tokio::spawn(deliver(
            target,
            options.delivery.clone(),
            client.clone(),
            store.clone(),
            metrics.clone(),
            webhook_board.clone(),
            lifecycle.clock(),
            stopped.clone(),
        )));
    }
    {
        let metrics = metrics.clone();
        let stopped = stopped.clone();
        workers.push(tokio::spawn(async move {
            metrics.refusals.run(stopped).await;
        }));
    }
    {
        let lifecycle = lifecycle.clone();
        let stopped = stopped.clone();
        workers.push(tokio::spawn(
            async move { lifecycle.run_timers(stopped).await },
        ));
    }
    if let Some(channels) = &options.playlists.channels {
        tracing::info!(
            channels = channels.len(),
            public_url = options.public_url.as_ref().map(|url| url.as_str()),
            "serving the channel list at /playlist.m3u"
        );
        if channels.is_empty() {
            tracing::warn!("the --channels list holds no channels: /playlist.m3u lists none");
        }
    }
    // In HLS stream mode `/ace/getstream` is a redirect, answered by the router.
    let ts_viewers = streams.is_some() && options.player.stream_mode == StreamMode::Ts;
    let state = AppState::new(AppInner {
        lifecycle,
        store: store.clone(),
        metrics: metrics.clone(),
        api_key: options.api_key,
        player: options.player,
        streams: streams.clone(),
        public_url: options.public_url,
        playlists: options.playlists,
        webhooks: webhook_board,
        cluster: cluster.clone(),
        directory: directory.clone(),
    });
    let direct = ts_viewers
        .then(|| DirectStreams::new(state.clone(), options.proxy.fanout.viewer_stall_timeout));
    let app = router(state, options.max_body_bytes, options.body_read_timeout);
    let mut server_stopped = stopped;
    let server = tokio::spawn(serve(
        listener,
        app,
        direct,
        options.server,
        metrics.clone(),
        async move {
            let _ = server_stopped.wait_for(|stop| *stop).await;
        },
    ));
    tracing::info!(%local_addr, "acemux listening");
    Ok(Running {
        local_addr,
        stop,
        server,
        workers,
        store,
        metrics,
        streams,
        cluster,
        directory,
    })
}
