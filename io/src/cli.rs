//! Command-line configuration. Every flag has an `ACEMUX_*` environment variable;
//! `acemux --help` and `acemux serve --help` are the configuration reference.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand, ValueEnum};

/// acemux: an AceStream stream proxy with exact stream lifecycle events.
#[derive(Debug, Parser)]
#[command(name = "acemux", version, about, propagate_version = true)]
pub struct Cli {
    /// Log format.
    #[arg(long, global = true, env = "ACEMUX_LOG_FORMAT", value_enum, default_value_t = LogFormat::Human)]
    pub log_format: LogFormat,

    /// Log filter (tracing `EnvFilter` syntax), e.g. `info` or `acemux=debug`.
    #[arg(long, global = true, env = "ACEMUX_LOG", default_value = "info")]
    pub log: String,

    /// What to run.
    #[command(subcommand)]
    pub command: Command,
}

/// Log output format.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines.
    Human,
    /// One JSON object per line.
    Json,
}

/// Subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the proxy and its event API.
    Serve(ServeArgs),
}

fn duration(text: &str) -> Result<Duration, String> {
    humantime::parse_duration(text).map_err(|error| format!("{error} (examples: 500ms, 10s, 2m)"))
}

/// `acemux serve` options.
#[derive(Debug, Args)]
pub struct ServeArgs {
    /// Address to listen on.
    #[arg(long, env = "ACEMUX_LISTEN", default_value = "127.0.0.1:6880")]
    pub listen: SocketAddr,

    /// Bearer API key required by the event routes. Without one they are open.
    #[arg(long, env = "ACEMUX_API_KEY", hide_env_values = true)]
    pub api_key: Option<String>,

    /// SQLite database of the event log (`:memory:` for a throw-away one).
    #[arg(long, env = "ACEMUX_DB", default_value = "acemux.db")]
    pub db: PathBuf,

    /// Base URL that receives every event as `POST <URL>/events/<type>`. Repeatable;
    /// comma-separated in the environment.
    #[arg(
        long = "event-webhook",
        env = "ACEMUX_EVENT_WEBHOOKS",
        value_delimiter = ','
    )]
    pub event_webhooks: Vec<String>,

    /// Bearer key sent to webhook receivers.
    #[arg(long, env = "ACEMUX_EVENT_WEBHOOK_API_KEY", hide_env_values = true)]
    pub event_webhook_api_key: Option<String>,

    /// Bound on one webhook delivery attempt.
    #[arg(long, env = "ACEMUX_WEBHOOK_TIMEOUT", default_value = "10s", value_parser = duration)]
    pub webhook_timeout: Duration,

    /// First delay before retrying a failed webhook delivery; doubles per failure.
    #[arg(long, env = "ACEMUX_WEBHOOK_INITIAL_BACKOFF", default_value = "500ms", value_parser = duration)]
    pub webhook_initial_backoff: Duration,

    /// Longest delay between webhook delivery retries.
    #[arg(long, env = "ACEMUX_WEBHOOK_MAX_BACKOFF", default_value = "60s", value_parser = duration)]
    pub webhook_max_backoff: Duration,

    /// Connections served at once; more get 503 `capacity`.
    #[arg(long, env = "ACEMUX_MAX_CONNECTIONS", default_value_t = 4096)]
    pub max_connections: usize,

    /// Time a client has to send its request headers.
    #[arg(long, env = "ACEMUX_HEADER_READ_TIMEOUT", default_value = "10s", value_parser = duration)]
    pub header_read_timeout: Duration,

    /// Largest accepted request body, in bytes (413 beyond).
    #[arg(long, env = "ACEMUX_MAX_BODY_BYTES", default_value_t = 64 * 1024)]
    pub max_body_bytes: usize,

    /// Time in-flight requests get to finish at shutdown.
    #[arg(long, env = "ACEMUX_SHUTDOWN_TIMEOUT", default_value = "10s", value_parser = duration)]
    pub shutdown_timeout: Duration,

    /// Bound on waiting for an event to be committed to the database (503 beyond).
    #[arg(long, env = "ACEMUX_COMMIT_TIMEOUT", default_value = "5s", value_parser = duration)]
    pub commit_timeout: Duration,

    /// Streams active at once in the registry (503 `capacity` beyond).
    #[arg(long, env = "ACEMUX_MAX_ACTIVE_STREAMS", default_value_t = 10_000)]
    pub max_active_streams: usize,

    /// Ended streams remembered in memory (the database keeps them all).
    #[arg(long, env = "ACEMUX_MAX_ENDED_STREAMS", default_value_t = 10_000)]
    pub max_ended_streams: usize,

    /// How long an ended stream stays in memory.
    #[arg(long, env = "ACEMUX_ENDED_RETENTION", default_value = "24h", value_parser = duration)]
    pub ended_retention: Duration,

    /// Seed for event ids of a new database (default: from the clock and process id).
    /// An existing database keeps its own seed.
    #[arg(long, env = "ACEMUX_SEED")]
    pub seed: Option<u64>,

    /// Async worker threads; 1 runs everything on one thread, 0 uses one per core.
    #[arg(long, env = "ACEMUX_WORKER_THREADS", default_value_t = 0)]
    pub worker_threads: usize,
}
