//! The `acemux` command line: the flags of every subcommand (one definition for
//! `--help`, the binary and `docs/config.md`), the version line, and the subcommands
//! that run no server (`health`, `config-docs`).

pub mod config_docs;
pub mod health;

use acemux::cli::{LogFormat, ServeArgs};
use acemux::playlists::M3uArgs;
use acemux_testkit::cli::{DemoArgs, EmulateEngineArgs, RelayArgs};
use clap::{Parser, Subcommand};

use crate::health::HealthArgs;

/// The commit the binary was built from (12 hex digits), or `unknown` when it was built
/// without git and without `ACEMUX_BUILD_COMMIT` (see `cmd/build.rs`).
pub const COMMIT: &str = env!("ACEMUX_COMMIT");

/// What `acemux --version` prints after the name: `0.1.0 (commit 1a2b3c4d5e6f)`.
pub const VERSION: &str = concat!(
    env!("CARGO_PKG_VERSION"),
    " (commit ",
    env!("ACEMUX_COMMIT"),
    ")"
);

/// acemux: an AceStream stream proxy with exact stream lifecycle events.
#[derive(Debug, Parser)]
#[command(name = "acemux", version = VERSION, about, propagate_version = true)]
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

/// Subcommands.
#[derive(Debug, Subcommand)]
// Parsed once at start-up: the size of the largest variant does not matter.
#[allow(clippy::large_enum_variant)]
pub enum Command {
    /// Run the proxy and its event API.
    Serve(ServeArgs),
    /// Run an AceStream engine emulator (HTTP API + paced MPEG-TS) for demos and tests.
    EmulateEngine(EmulateEngineArgs),
    /// Run the proxy with a built-in engine emulator and print a URL to open in a player.
    Demo(DemoArgs),
    /// Run a TCP fault relay (latency, throttle, stalls, cuts, resets, refusals) in
    /// front of an upstream, for testing acemux against a slow or failing network.
    Relay(RelayArgs),
    /// M3U playlists for media servers (`m3u rewrite`: point an AceStream playlist at
    /// acemux).
    M3u(M3uArgs),
    /// Check that a running `acemux serve` answers `/health`: exits 0 when it answers
    /// 2xx in time, 1 otherwise (for container health checks and scripts).
    Health(HealthArgs),
    /// Print the configuration reference (`docs/config.md`) generated from these flags.
    #[command(hide = true)]
    ConfigDocs,
}

/// Every environment variable the `acemux` binary reads for its flags (global options
/// and every subcommand's), sorted, each once.
pub fn variables() -> Vec<String> {
    use clap::CommandFactory;
    let command = Cli::command();
    let mut names: Vec<String> = std::iter::once(&command)
        .chain(command.get_subcommands())
        .flat_map(|command| command.get_arguments())
        .filter_map(|arg| arg.get_env())
        .map(|name| name.to_string_lossy().into_owned())
        .collect();
    names.sort();
    names.dedup();
    names
}
