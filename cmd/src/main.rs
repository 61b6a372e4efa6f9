//! The `acemux` binary.

use std::process::ExitCode;
use std::sync::Arc;

use acemux::cli::{LogFormat, ServeArgs};
use acemux::clock::unix_micros_now;
use acemux::net::{Net, TokioNet};
use acemux::playlists::{run_rewrite, M3uArgs, M3uCommand};
use acemux::store::{EventStore, SqliteStore};
use acemux_cmd::{Cli, Command};
use acemux_testkit::cli::{DemoArgs, EmulateEngineArgs, RelayArgs};
use acemux_testkit::demo::Demo;
use acemux_testkit::emulator::{faults_from_flags, Emulator, EmulatorConfig, MediaLoop};
use clap::Parser;
use tracing_subscriber::EnvFilter;

fn main() -> ExitCode {
    let cli = Cli::parse();
    // Every connection is a descriptor: the soft limit is raised before anything opens.
    // What runs no server needs neither that nor logging.
    let connections = match &cli.command {
        Command::Serve(args) => args.max_connections,
        Command::EmulateEngine(_) | Command::Demo(_) | Command::Relay(_) => {
            acemux::server::ServerLimits::default().max_connections
        }
        Command::Health(args) => return acemux_cmd::health::run(args),
        // A filter of stdin to stdout: no connections, logging only.
        Command::M3u(args) => {
            if let Err(error) = init_logging(cli.log_format, &cli.log) {
                eprintln!("acemux: invalid --log filter: {error}");
                return ExitCode::from(2);
            }
            return run_m3u(args);
        }
        Command::ConfigDocs => {
            print!("{}", acemux_cmd::config_docs::reference());
            return ExitCode::SUCCESS;
        }
    };
    if let Err(error) = init_logging(cli.log_format, &cli.log) {
        eprintln!("acemux: invalid --log filter: {error}");
        return ExitCode::from(2);
    }
    acemux::fd_limit::raise().log(connections);
    match cli.command {
        Command::Serve(args) => run(args),
        Command::EmulateEngine(args) => run_emulator(args),
        Command::Demo(args) => run_demo(args),
        Command::Relay(args) => run_relay(args),
        Command::Health(_) | Command::ConfigDocs | Command::M3u(_) => {
            unreachable!("answered above")
        }
    }
}

fn run_m3u(args: &M3uArgs) -> ExitCode {
    match &args.command {
        M3uCommand::Rewrite(args) => {
            match run_rewrite(args, std::io::stdin().lock(), std::io::stdout().lock()) {
                Ok(summary) => {
                    tracing::info!(
                        lines = summary.lines,
                        rewritten = summary.rewritten,
                        base = %args.base,
                        "playlist rewritten"
                    );
                    ExitCode::SUCCESS
                }
                Err(message) => {
                    tracing::error!("{message}");
                    ExitCode::FAILURE
                }
            }
        }
    }
}

fn run_relay(args: RelayArgs) -> ExitCode {
    let config = match args.config() {
        Ok(config) => config,
        Err(message) => {
            tracing::error!("{message}");
            return ExitCode::from(2);
        }
    };
    // Two threads: a relay under test must not compete with what it tests.
    let runtime = match runtime(2) {
        Ok(runtime) => runtime,
        Err(error) => {
            tracing::error!(%error, "cannot start the async runtime");
            return ExitCode::FAILURE;
        }
    };
    let served = runtime.block_on(async move {
        let listener = TokioNet
            .bind(args.listen, acemux::net::DEFAULT_BACKLOG)
            .await
            .map_err(|error| format!("cannot listen on {}: {error}", args.listen))?;
        let control = match args.control {
            Some(addr) => Some(
                TokioNet
                    .bind(addr, acemux::net::DEFAULT_BACKLOG)
                    .await
                    .map_err(|error| format!("cannot listen on {addr}: {error}"))?,
            ),
            None => None,
        };
        tracing::info!(
            listen = %args.listen,
            upstream = %config.upstream,
            control = ?args.control,
            rules = ?config.plan.texts(),
            seed = config.seed,
            "fault relay listening"
        );
        let relay = acemux_testkit::relay::Relay::new(TokioNet, config);
        acemux_testkit::relay::run(&relay, listener, control, shutdown_signal()).await;
        tracing::info!("fault relay stopped");
        Ok::<(), String>(())
    });
    match served {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            tracing::error!("{message}");
            ExitCode::FAILURE
        }
    }
}

fn run_demo(args: DemoArgs) -> ExitCode {
    let runtime = match runtime(0) {
        Ok(runtime) => runtime,
        Err(error) => {
            tracing::error!(%error, "cannot start the async runtime");
            return ExitCode::FAILURE;
        }
    };
    runtime.block_on(async {
        let demo = match Demo::start(args.listen).await {
            Ok(demo) => demo,
            Err(message) => {
                tracing::error!("{message}");
                return ExitCode::FAILURE;
            }
        };
        let url = demo.stream_url();
        println!();
        println!("acemux demo: the proxy in front of a built-in AceStream engine emulator.");
        println!();
        println!("  Watch:   vlc {url}");
        println!("           ffplay {url}");
        println!(
            "  Status:  http://{}/  (a page to keep open)",
            demo.acemux.local_addr()
        );
        println!("  Streams: http://{}/streams", demo.acemux.local_addr());
        println!("  Events:  http://{}/events", demo.acemux.local_addr());
        println!("  Metrics: http://{}/metrics", demo.acemux.local_addr());
        println!();
        println!("Every viewer of the URL shares one engine session. Press Ctrl-C to stop.");
        shutdown_signal().await;
        tracing::info!("shutting down the demo");
        demo.shutdown().await;
        ExitCode::SUCCESS
    })
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
    let origin = unix_micros_now();
    let seed = origin ^ (u64::from(std::process::id()) << 32);
    let options = args.options(origin, seed)?;
    let webhooks = options.webhooks.iter().map(|w| w.base.clone()).collect();
    let store: Arc<dyn EventStore> = SqliteStore::open(&args.db, webhooks)
        .map_err(|error| format!("cannot open database {}: {error}", args.db.display()))?;
    let listener = TokioNet
        .bind(args.listen, args.listen_backlog)
        .await
        .map_err(|error| format!("cannot listen on {}: {error}", args.listen))?;
    let running = acemux::start(TokioNet, listener, store, options)
        .await
        .map_err(|error| error.to_string())?;
    shutdown_signal().await;
    tracing::info!("shutting down: no new connections, finishing in-flight requests");
    running.shutdown().await;
    Ok(())
}

fn run_emulator(args: EmulateEngineArgs) -> ExitCode {
    let config = match emulator_config(&args) {
        Ok(config) => config,
        Err(message) => {
            tracing::error!("{message}");
            return ExitCode::from(2);
        }
    };
    let runtime = match runtime(args.worker_threads) {
        Ok(runtime) => runtime,
        Err(error) => {
            tracing::error!(%error, "cannot start the async runtime");
            return ExitCode::FAILURE;
        }
    };
    let listen = args.listen;
    let served = runtime.block_on(async move {
        let listener = TokioNet
            .bind(listen, acemux::net::DEFAULT_BACKLOG)
            .await
            .map_err(|error| format!("cannot listen on {listen}: {error}"))?;
        let local_addr = acemux::net::NetListener::local_addr(&listener)
            .map_err(|error| format!("cannot read the listening address: {error}"))?;
        let emulator = Emulator::new(config);
        let media = emulator.media();
        tracing::info!(
            %local_addr,
            bitrate_bps = media.bitrate_bps(),
            loop_duration = ?media.loop_duration(),
            "engine emulator listening"
        );
        emulator.serve(listener, shutdown_signal()).await;
        tracing::info!("engine emulator stopped");
        Ok::<(), String>(())
    });
    match served {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            tracing::error!("{message}");
            ExitCode::FAILURE
        }
    }
}

fn emulator_config(args: &EmulateEngineArgs) -> Result<EmulatorConfig, String> {
    let faults = faults_from_flags(&args.faults).map_err(|error| error.to_string())?;
    let mut config = EmulatorConfig {
        prebuffer: args.prebuffer,
        faults,
        max_sessions: args.max_sessions,
        max_playbacks: args.max_playbacks,
        ..EmulatorConfig::default()
    };
    config.server.max_connections = args.max_connections;
    if let Some(path) = &args.media {
        let bytes = std::fs::read(path)
            .map_err(|error| format!("cannot read media {}: {error}", path.display()))?;
        config.media = MediaLoop::new(bytes.into())
            .map_err(|error| format!("cannot loop media {}: {error}", path.display()))?;
    }
    Ok(config)
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
