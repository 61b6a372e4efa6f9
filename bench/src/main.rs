//! `acemux-bench`: benchmarks of acemux that anyone can rerun with one command.
//!
//! `cargo run --release -p acemux-bench -- all` runs every scenario and rewrites
//! `docs/benchmarks.md`; `-- <scenario> [--viewers N --seconds S …]` runs one. Each
//! scenario starts what it needs on loopback (engine emulator, acemux, a plain
//! baseline sender: child processes of this binary), drives them from an async load
//! generator on one thread, and reports acemux as a ratio to the baseline measured in
//! the same run. Progress goes to stderr, the tables to stdout, JSON to `--json`.

mod baseline;
mod load;
mod procs;
mod report;
mod scenarios;
mod serve;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};
use serde_json::json;

use report::ScenarioReport;
use scenarios::Scenario;

#[derive(Debug, Parser)]
#[command(
    name = "acemux-bench",
    about = "Benchmarks of acemux against a plain sender, on loopback"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Every scenario; rewrites docs/benchmarks.md.
    All(Options),
    /// N viewers of one channel at the stream's rate: per-viewer rate, egress, CPU, memory.
    Fanout(Options),
    /// Unpaced: the egress acemux sustains to 200 viewers, against the plain sender's.
    FanoutMax(Options),
    /// Time to first byte: viewers joining a running channel, and a channel's first viewer.
    Join(Options),
    /// HLS playlist and segment latency under load while other channels start and stall.
    Hls(Options),
    /// Latency of unrelated requests while a channel starts against a very slow engine.
    Isolation(Options),
    /// A crowd (5,000 viewers) opening one channel within 100 ms: all served, how fast.
    JoinStorm(Options),
    /// 10,000 viewers of a 1 Mbit/s channel: per-viewer rate, memory, CPU.
    C10k(Options),
    /// Two instances sharing a redis-server, one channel, viewers split across both:
    /// the owner's egress towards the peer stays one stream.
    Cluster(Options),
    /// Runs one server under test (used by the scenarios).
    #[command(hide = true)]
    Serve(serve::ServeArgs),
}

/// Options of every scenario; each has its own defaults.
#[derive(Clone, Debug, Default, Args)]
pub struct Options {
    /// Viewers (fanout: 1000; fanout-max, hls: 200; join: joining viewers, 200;
    /// join-storm: 5000; c10k: 10000; cluster: 200, split across two instances).
    #[arg(long)]
    pub viewers: Option<usize>,
    /// Seconds measured (per trial in fanout-max; the bound of the slow start in isolation).
    #[arg(long)]
    pub seconds: Option<f64>,
    /// Stream bitrate of fanout, join and cluster, bit/s.
    #[arg(long)]
    pub bitrate_bps: Option<u64>,
    /// Requests per second (hls: playlist requests in all; isolation: unrelated requests).
    #[arg(long)]
    pub rate: Option<f64>,
    /// Trials (join: first viewers of new channels; fanout-max: rate search steps).
    #[arg(long)]
    pub trials: Option<usize>,
    /// Where to write the JSON results.
    #[arg(long)]
    pub json: Option<PathBuf>,
    /// Where `all` writes its Markdown (default: docs/benchmarks.md of this checkout).
    #[arg(long)]
    pub docs: Option<PathBuf>,
    /// `all` does not write the Markdown.
    #[arg(long)]
    pub no_docs: bool,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    // Every viewer is a descriptor in the load generator and in the server (which
    // inherits the limit): raise the soft limit to the hard one before anything starts.
    let fd_limit = acemux::fd_limit::raise();
    if let Some(error) = &fd_limit.error {
        eprintln!("acemux-bench: cannot raise the file descriptor limit ({error}): {fd_limit:?}");
    }
    let (scenarios, options, all) = match cli.command {
        Command::Serve(args) => {
            return match serve::run(args) {
                Ok(()) => ExitCode::SUCCESS,
                Err(error) => {
                    eprintln!("acemux-bench serve: {error}");
                    ExitCode::FAILURE
                }
            }
        }
        Command::All(options) => (Scenario::ALL.to_vec(), options, true),
        Command::Fanout(options) => (vec![Scenario::Fanout], options, false),
        Command::FanoutMax(options) => (vec![Scenario::FanoutMax], options, false),
        Command::Join(options) => (vec![Scenario::Join], options, false),
        Command::Hls(options) => (vec![Scenario::Hls], options, false),
        Command::Isolation(options) => (vec![Scenario::Isolation], options, false),
        Command::JoinStorm(options) => (vec![Scenario::JoinStorm], options, false),
        Command::C10k(options) => (vec![Scenario::C10k], options, false),
        Command::Cluster(options) => (vec![Scenario::Cluster], options, false),
    };
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("acemux-bench: cannot start the runtime: {error}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(scenarios, &options, all)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("acemux-bench: {error}");
            ExitCode::FAILURE
        }
    }
}

async fn run(scenarios: Vec<Scenario>, options: &Options, all: bool) -> Result<(), String> {
    let load_at_start = report::load_average();
    let mut reports: Vec<ScenarioReport> = Vec::new();
    for scenario in scenarios {
        eprintln!("== {} ==", scenario.name());
        let report = scenario.run(options).await?;
        println!("{}", report.markdown());
        reports.push(report);
    }
    let results = json!({
        "date": report::today(),
        "machine": report::machine(),
        "load_average": {
            "start": report::finite(load_at_start),
            "end": report::finite(report::load_average()),
        },
        "scenarios": reports.iter().map(ScenarioReport::to_json).collect::<Vec<_>>(),
    });
    let text = serde_json::to_string_pretty(&results).map_err(|error| error.to_string())?;
    match &options.json {
        Some(path) => std::fs::write(path, &text)
            .map_err(|error| format!("cannot write {}: {error}", path.display()))?,
        None => println!("{text}"),
    }
    if all && !options.no_docs {
        let path = options.docs.clone().unwrap_or_else(|| {
            PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../docs/benchmarks.md")
        });
        report::write_docs(&path, &reports, &results)
            .map_err(|error| format!("cannot write {}: {error}", path.display()))?;
        eprintln!("wrote {}", path.display());
    }
    Ok(())
}
