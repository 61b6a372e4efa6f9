//! The `acemux` binary.

use std::process::ExitCode;
use std::sync::Arc;

use acemux::cli::{Cli, Command, LogFormat, ServeArgs};
use acemux::clock::unix_micros_now;
use acemux::net::{Net, TokioNet};
use acemux::server::ServerLimits;
use acemux::store::{EventStore, SqliteStore};
use acemux::webhook::{DeliveryPolicy, WebhookTarget};
use acemux::ServeOptions;
use acemux_core::lifecycle::RegistryConfig;
use clap::Parser;
use tracing_subscriber::EnvFilter;

fn main() -> ExitCode {
    let cli = Cli::parse();
    if let Err(error) = init_logging(cli.log_format, &cli.log) {
        eprintln!("acemux: invalid --log filter: {error}");
        return ExitCode::from(2);
    }
    match cli.command {
        Command::Serve(args) => run(args),
    }
}

fn init_logging(format: LogFormat, filter: &str) -> Result<(), String> {
    let filter = EnvFilter::try_new(filter).map_err(|error| error.to_string())?;
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Human => builder.init(),
        LogFormat::Json => builder.json().init(),
    }
    Ok(())
}

fn runtime(worker_threads: usize) -> std::io::Result<tokio::runtime::Runtime> {
    match worker_threads {
        1 => tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build(),
        0 => tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build(),
        n => tokio::runtime::Builder::new_multi_thread()
            .worker_threads(n)
            .enable_all()
            .build(),
    }
}

fn run(args: ServeArgs) -> ExitCode {
    let runtime = match runtime(args.worker_threads) {
        Ok(runtime) => runtime,
        Err(error) => {
            tracing::error!(%error, "cannot start the async runtime");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(serve(args)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            tracing::error!("{message}");
            ExitCode::FAILURE
        }
    }
}

async fn serve(args: ServeArgs) -> Result<(), String> {
    let webhooks = args
        .event_webhooks
        .iter()
        .filter(|url| !url.trim().is_empty())
        .map(|url| WebhookTarget::parse(url.trim()))
        .collect::<Result<Vec<_>, _>>()
        .map_err(|error| error.to_string())?;
    let origin = unix_micros_now();
    let seed = args
        .seed
        .unwrap_or_else(|| origin ^ (u64::from(std::process::id()) << 32));
    let store: Arc<dyn EventStore> =
        SqliteStore::open(&args.db, webhooks.iter().map(|w| w.base.clone()).collect())
            .map_err(|error| format!("cannot open database {}: {error}", args.db.display()))?;
    let listener = TokioNet
        .bind(args.listen)
        .await
        .map_err(|error| format!("cannot listen on {}: {error}", args.listen))?;
    let options = ServeOptions {
        api_key: args.api_key.filter(|key| !key.is_empty()),
        webhooks,
        delivery: DeliveryPolicy {
            api_key: args.event_webhook_api_key,
            attempt_timeout: args.webhook_timeout,
            initial_backoff: args.webhook_initial_backoff,
            max_backoff: args.webhook_max_backoff,
        },
        server: ServerLimits {
            max_connections: args.max_connections,
            header_read_timeout: args.header_read_timeout,
            shutdown_timeout: args.shutdown_timeout,
        },
        max_body_bytes: args.max_body_bytes,
        commit_timeout: args.commit_timeout,
        registry: RegistryConfig {
            seed,
            max_active_streams: args.max_active_streams,
            max_ended_streams: args.max_ended_streams,
            ended_retention: args.ended_retention,
            ..RegistryConfig::default()
        },
        clock_origin_unix_micros: origin,
    };
    let running = acemux::start(TokioNet, listener, store, options)
        .await
        .map_err(|error| error.to_string())?;
    shutdown_signal().await;
    tracing::info!("shutting down: no new connections, finishing in-flight requests");
    running.shutdown().await;
    Ok(())
}

async fn shutdown_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        match signal(SignalKind::terminate()) {
            Ok(mut terminate) => {
                tokio::select! {
                    _ = tokio::signal::ctrl_c() => {}
                    _ = terminate.recv() => {}
                }
            }
            Err(error) => {
                tracing::warn!(%error, "cannot watch SIGTERM; only Ctrl-C stops acemux");
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}
