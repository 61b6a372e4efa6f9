//! The acemux instances of a world: one host named `acemux`, or a cluster of hosts
//! `acemux1`..`acemuxN` sharing channels through a simulated Redis (host `redis`),
//! each with its own event store and metrics.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use acemux::cluster::redis::RedisTarget;
use acemux::cluster::ClusterOptions;
use acemux::metrics::Metrics;
use acemux::store::{EventStore, MemoryStore};
use acemux::ServeOptions;

use crate::net::TurmoilNet;
use crate::redis::{redis_server, RedisView, REDIS_PORT};
use acemux::server::ServerLimits;
use acemux::webhook::WebhookTarget;
use acemux_core::lifecycle::{EngineAddr, RegistryConfig};

use crate::world::{
    WorldConfig, ACEMUX_PORT, CLOCK_ORIGIN_UNIX_MICROS, GLUETUN_BASE_PORT, ORCHESTRATOR_PORT,
};

/// The simulated Redis host of a cluster world.
pub const REDIS_HOST: &str = "redis";

/// A cluster world's setup: how many instances, and their shared options.
#[derive(Clone, Debug)]
pub struct ClusterSetup {
    /// Instances, hosts `acemux1`..`acemuxN`.
    pub instances: usize,
    /// `--cluster-lease-ttl`.
    pub lease_ttl: Duration,
    /// `--cluster-secret`.
    pub secret: String,
}

impl ClusterSetup {
    /// `instances` instances with 3 s leases (the least the documented bounds make
    /// useful: renewed every second, a Redis call bounded by a second).
    pub fn new(instances: usize) -> Self {
        ClusterSetup {
            instances,
            lease_ttl: Duration::from_secs(3),
            secret: "sim-cluster-secret".into(),
        }
    }

    /// Cluster options for instance host `host`.
    fn options(&self, host: &str) -> ClusterOptions {
        ClusterOptions {
            redis: RedisTarget::parse(&format!("redis://{REDIS_HOST}:{REDIS_PORT}"))
                .expect("the simulated Redis URL parses"),
            instance: Some(host.to_owned()),
            advertise: format!("http://{host}:{ACEMUX_PORT}"),
            secret: self.secret.clone(),
            lease_ttl: self.lease_ttl,
            redis_timeout: Duration::from_secs(1).min(self.lease_ttl / 3),
            redis_wait: Duration::from_secs(2),
            publish_every: Duration::from_secs(1),
        }
    }
}

/// One acemux instance: its host, its event store and its metrics (once it runs).
#[derive(Clone)]
pub struct Instance {
    /// Host name.
    pub host: String,
    /// Its event store.
    pub store: Arc<MemoryStore>,
    /// Its metrics, once it runs (a restarted one replaces them).
    pub metrics: Arc<Mutex<Option<Arc<Metrics>>>>,
}

impl Instance {
    /// Its whole event log so far (the in-memory store answers at once); empty if it
    /// cannot be read.
    pub fn events(&self) -> Vec<acemux_core::lifecycle::Event> {
        all_events(&self.store)
    }
}

/// The whole event log of `store` so far; empty if it cannot be read.
pub fn all_events(store: &MemoryStore) -> Vec<acemux_core::lifecycle::Event> {
    use futures::FutureExt as _;
    store
        .events(acemux::store::EventQuery {
            after: 0,
            limit: 1_000_000,
            stream_id: None,
        })
        .now_or_never()
        .and_then(Result::ok)
        .unwrap_or_default()
}

/// The instance hosts of a world: `acemux` alone, or `acemux1`..`acemuxN`.
pub fn instance_hosts(cluster: Option<&ClusterSetup>) -> Vec<String> {
    match cluster {
        None => vec!["acemux".to_owned()],
        Some(setup) => (1..=setup.instances)
            .map(|index| format!("acemux{index}"))
            .collect(),
    }
}

/// The host name of a player's target (`host:port`).
pub fn target_host(target: &str) -> &str {
    target.split(':').next().unwrap_or(target)
}

/// Starts the Redis host of a cluster world; what it holds is seen through the view.
pub(crate) fn spawn_redis(sim: &mut turmoil::Sim<'_>) -> RedisView {
    let view = RedisView::default();
    let host_view = view.clone();
    sim.host(REDIS_HOST, move || redis_server(None, host_view.clone()));
    view
}

/// Starts acemux on host `host` with `store`; `options` gain the cluster options of
/// `cluster` (if any) and a wall clock that keeps running across restarts.
pub(crate) fn spawn_acemux(
    sim: &mut turmoil::Sim<'_>,
    host: &str,
    store: Arc<MemoryStore>,
    metrics: Arc<Mutex<Option<Arc<Metrics>>>>,
    mut options: ServeOptions,
    cluster: Option<&ClusterSetup>,
    clock_origin_unix_micros: u64,
) {
    options.cluster = cluster.map(|setup| setup.options(host));
    sim.host(host, move || {
        let store = store.clone();
        let mut options = options.clone();
        // The wall clock keeps running across a restart, as a real one does.
        options.clock_origin_unix_micros = clock_origin_unix_micros
            + u64::try_from(crate::observe::sim_now().as_micros()).unwrap_or(u64::MAX);
        let metrics = metrics.clone();
        async move {
            let listener = TurmoilNet::listen(ACEMUX_PORT).await?;
            let store: Arc<dyn EventStore> = store;
            let running = acemux::start(TurmoilNet, listener, store, options).await?;
            *metrics.lock().unwrap_or_else(|p| p.into_inner()) = Some(running.metrics());
            std::future::pending::<()>().await;
            drop(running);
            Ok(())
        }
    });
}

/// The options of an instance of the world `config` builds: webhooks to `webhooks`,
/// the engines behind the relay (or the orchestrator's list), its registry seeded with
/// `registry_seed`.
pub(crate) fn serve_options(
    config: &WorldConfig,
    webhooks: &[String],
    registry_seed: u64,
) -> ServeOptions {
    ServeOptions {
        webhooks: webhooks
            .iter()
            .map(|url| WebhookTarget::parse(url).expect("the simulation's webhook URLs parse"))
            .collect(),
        delivery: config.delivery.clone(),
        server: ServerLimits {
            max_connections: 4096,
            shutdown_timeout: Duration::from_secs(5),
            ..ServerLimits::default()
        },
        registry: RegistryConfig {
            seed: registry_seed,
            ..RegistryConfig::default()
        },
        clock_origin_unix_micros: CLOCK_ORIGIN_UNIX_MICROS,
        engines: if config.orchestrator_list.is_some() {
            Vec::new()
        } else {
            (0..config.engines)
                .map(|index| EngineAddr {
                    host: "gluetun".into(),
                    port: GLUETUN_BASE_PORT + index as u16,
                })
                .collect()
        },
        engine_lists: config
            .orchestrator_list
            .iter()
            .map(|_| format!("http://orchestrator:{ORCHESTRATOR_PORT}/engines"))
            .collect(),
        engine_list_interval: Duration::from_secs(2),
        proxy: config.proxy.clone(),
        ..ServeOptions::default()
    }
}
