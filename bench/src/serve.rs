//! `acemux-bench serve <role>`: one server under test, in this process, on its own
//! runtime. It prints `listening <addr>` once it accepts connections and stops when
//! its standard input closes (the benchmark ended or died).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use acemux::cluster::redis::RedisTarget;
use acemux::cluster::ClusterOptions;
use acemux::net::{Net, TokioNet};
use acemux::proxy::{HlsSource, ProxyConfig};
use acemux::server::ServerLimits;
use acemux::store::{EventStore, SqliteStore};
use acemux::ServeOptions;
use acemux_core::channel::ChannelConfig;
use acemux_core::fanout::FanoutConfig;
use acemux_core::lifecycle::EngineAddr;
use acemux_testkit::emulator::{Emulator, EmulatorConfig};
use clap::{Args, ValueEnum};

use crate::baseline;

/// Which server.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Role {
    /// acemux in front of `--engine`.
    Acemux,
    /// The AceStream engine emulator.
    Engine,
    /// The plain sender every scenario compares acemux with.
    Baseline,
}

/// Options of `serve`.
#[derive(Debug, Args)]
pub struct ServeArgs {
    /// Which server.
    #[arg(value_enum)]
    pub role: Role,
    /// The engine acemux uses.
    #[arg(long)]
    pub engine: Option<SocketAddr>,
    /// Runtime worker threads (1: a current-thread runtime).
    #[arg(long, default_value_t = 2)]
    pub workers: usize,
    /// acemux's ring of recent media per channel.
    #[arg(long, default_value_t = 16 * 1024 * 1024)]
    pub ring_bytes: usize,
    /// How much media the engine holds when a session starts (burst, HLS window).
    #[arg(long, default_value_t = 6000)]
    pub engine_prebuffer_ms: u64,
    /// Where acemux's HLS players' segments come from (as `acemux serve`).
    #[arg(long, value_enum, default_value_t = HlsSource::Ts)]
    pub hls_source: HlsSource,
    /// Cluster mode: acemux's Redis (`redis://host:port`).
    #[arg(long)]
    pub redis: Option<String>,
    /// Cluster mode: acemux's instance id.
    #[arg(long, default_value = "bench")]
    pub instance_id: String,
}

/// The cluster secret of the benchmark's instances.
const CLUSTER_SECRET: &str = "acemux-bench-cluster";

/// Runs the server until standard input closes.
pub fn run(args: ServeArgs) -> Result<(), String> {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(
            std::env::var("ACEMUX_BENCH_LOG").unwrap_or_else(|_| "warn,acemux=warn".into()),
        )
        .with_writer(std::io::stderr)
        .try_init();
    let runtime = match args.workers {
        0 | 1 => tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build(),
        workers => tokio::runtime::Builder::new_multi_thread()
            .worker_threads(workers)
            .enable_all()
            .build(),
    }
    .map_err(|error| format!("runtime: {error}"))?;
    runtime.block_on(serve(args))
}

async fn serve(args: ServeArgs) -> Result<(), String> {
    let any_port: SocketAddr = "127.0.0.1:0".parse().expect("a valid address");
    let listener = TokioNet
        .bind(any_port, acemux::net::DEFAULT_BACKLOG)
        .await
        .map_err(|error| format!("bind: {error}"))?;
    let addr = listener
        .local_addr()
        .map_err(|error| format!("local address: {error}"))?;
    let limits = ServerLimits {
        // Above every scenario's crowd, below the 20,000 descriptors a process may hold here.
        max_connections: 19_000,
        shutdown_timeout: Duration::from_secs(2),
        ..ServerLimits::default()
    };
    match args.role {
        Role::Engine => {
            let config = EmulatorConfig {
                prebuffer: Duration::from_millis(args.engine_prebuffer_ms),
                max_sessions: 10_000,
                max_playbacks: 10_000,
                server: limits,
                ..EmulatorConfig::default()
            };
            let emulator = Emulator::new(config);
            println!("listening {addr}");
            emulator.serve(listener, stdin_closed()).await;
        }
        Role::Baseline => {
            println!("listening {addr}");
            tokio::select! {
                () = baseline::serve(listener) => {}
                () = stdin_closed() => {}
            }
        }
        Role::Acemux => {
            let engine = args.engine.ok_or("acemux needs --engine")?;
            let dir = tempfile::tempdir().map_err(|error| format!("temp dir: {error}"))?;
            let store: Arc<dyn EventStore> =
                SqliteStore::open(&dir.path().join("events.db"), Vec::new())
                    .map_err(|error| format!("event store: {error}"))?;
            let cluster = match &args.redis {
                None => None,
                Some(url) => Some(ClusterOptions {
                    redis: RedisTarget::parse(url)?,
                    instance: Some(args.instance_id.clone()),
                    advertise: format!("http://{addr}"),
                    secret: CLUSTER_SECRET.to_owned(),
                    lease_ttl: Duration::from_secs(10),
                    redis_timeout: Duration::from_secs(1),
                    redis_wait: Duration::from_secs(2),
                    publish_every: Duration::from_secs(5),
                }),
            };
            let options = ServeOptions {
                cluster,
                engines: vec![EngineAddr {
                    host: engine.ip().to_string(),
                    port: engine.port(),
                }],
                server: limits,
                proxy: ProxyConfig {
                    hls_source: args.hls_source,
                    ..proxy_config(args.ring_bytes)
                },
                ..ServeOptions::default()
            };
            let running = acemux::start(TokioNet, listener, store, options)
                .await
                .map_err(|error| format!("acemux: {error}"))?;
            println!("listening {addr}");
            stdin_closed().await;
            running.shutdown().await;
        }
    }
    Ok(())
}

/// acemux's defaults, with room for the benchmark's viewers and channels, and a short
/// idle grace so that a scenario's finished channels stop before the next one.
fn proxy_config(ring_bytes: usize) -> ProxyConfig {
    let defaults = ProxyConfig::default();
    ProxyConfig {
        fanout: FanoutConfig {
            ring_capacity_bytes: ring_bytes,
            max_viewers: 19_000,
            ..FanoutConfig::default()
        },
        channel: ChannelConfig {
            idle_grace: Duration::from_secs(1),
            ..defaults.channel.clone()
        },
        max_channels: 1024,
        max_streams_per_engine: 1024,
        ..defaults
    }
}

/// Resolves once standard input reaches its end (or fails). A plain thread blocks on
/// the read: standard input has nothing to do with the sockets under test.
async fn stdin_closed() {
    let (closed, on_closed) = tokio::sync::oneshot::channel::<()>();
    std::thread::spawn(move || {
        let mut buffer = [0u8; 64];
        let mut stdin = std::io::stdin();
        while let Ok(read) = std::io::Read::read(&mut stdin, &mut buffer) {
            if read == 0 {
                break;
            }
        }
        let _ = closed.send(());
    });
    let _ = on_closed.await;
}
