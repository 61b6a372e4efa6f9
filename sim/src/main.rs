//! `acemux-sim`: runs scenarios over random (or given) seeds and prints a summary.
//!
//! ```text
//! cargo run -p acemux-sim --release -- --seeds 100000 --jobs 2 [--scenario NAME] [--seed S]
//! ```

use std::io::Write as _;
use std::process::ExitCode;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use acemux_sim::runner::{Batch, Finished};
use acemux_sim::{by_name, SCENARIOS};
use clap::Parser;

/// Runs acemux simulation scenarios from seeds.
#[derive(Debug, Parser)]
#[command(name = "acemux-sim")]
struct Args {
    /// How many seeds to run (each runs one scenario).
    #[arg(long, default_value_t = 10)]
    seeds: u64,
    /// Only this scenario (default: cycle through all of them).
    #[arg(long)]
    scenario: Option<String>,
    /// Run exactly this seed (replay), instead of random ones. Also read from SIM_SEED.
    #[arg(long, env = "SIM_SEED")]
    seed: Option<u64>,
    /// The seed the random seeds derive from (default: from the clock, printed first).
    /// CI passes one derived from the commit, so that a run of one commit replays.
    #[arg(long, env = "SIM_BASE_SEED")]
    base_seed: Option<u64>,
    /// Seeds run at once, one thread each (default: the machine's cores).
    #[arg(long, env = "SIM_JOBS")]
    jobs: Option<usize>,
    /// No new seed starts after this many seconds; seeds left out fail the batch.
    #[arg(long, value_name = "SECONDS")]
    time_box: Option<u64>,
    /// Print only failures and the summary, not a line per seed.
    #[arg(long)]
    quiet: bool,
    /// Plant this bug in every run, to see the simulation catch it (its self-test;
    /// the names are those of `acemux_core::planted::Bug`, listed by docs/simulation.md
    /// and by an unknown name).
    #[arg(long, value_name = "BUG")]
    plant: Option<String>,
}

fn main() -> ExitCode {
    let args = Args::parse();
    let chosen: Vec<(&'static str, acemux_sim::Scenario)> = match &args.scenario {
        Some(name) => match SCENARIOS.iter().find(|(known, _)| known == name) {
            Some(&(known, _)) => vec![(known, by_name(known).expect("listed"))],
            None => {
                let names: Vec<&str> = SCENARIOS.iter().map(|(name, _)| *name).collect();
                eprintln!("unknown scenario {name:?}; scenarios: {}", names.join(", "));
                return ExitCode::FAILURE;
            }
        },
        None => SCENARIOS.to_vec(),
    };
    let jobs = args.jobs.unwrap_or_else(|| {
        std::thread::available_parallelism().map_or(1, std::num::NonZeroUsize::get)
    });
    let mut batch = match args.seed {
        Some(seed) => Batch::replay(chosen, seed),
        None => {
            // The runner is outside the simulation: reading the clock here only picks
            // which seeds run, and the base is printed first.
            let base = args.base_seed.unwrap_or_else(|| {
                std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map_or(0, |since| since.as_nanos() as u64)
            });
            println!("base seed {base} (replay this batch with --base-seed {base})");
            Batch::random(chosen, base, args.seeds, jobs)
        }
    };
    batch.time_box = args.time_box.map(Duration::from_secs);
    if let Some(name) = &args.plant {
        match acemux_core::planted::Bug::by_name(name) {
            Some(bug) => {
                println!("planted bug: {name} (runs are expected to fail)");
                batch.plant = Some(bug);
            }
            None => {
                let names: Vec<&str> = acemux_core::planted::Bug::ALL
                    .iter()
                    .map(|bug| bug.name())
                    .collect();
                eprintln!("unknown bug {name:?}; bugs: {}", names.join(", "));
                return ExitCode::FAILURE;
            }
        }
    }
    let total = batch.runs.len();
    let done = AtomicUsize::new(0);
    let failed = AtomicUsize::new(0);
    let quiet = args.quiet;
    let summary = batch.run(&|finished: &Finished| {
        let count = done.fetch_add(1, Ordering::SeqCst) + 1;
        let line = match &finished.result {
            Ok(summary) if !quiet => Some(format!(
                "SIM_SEED={} {}: ok in {:.2}s real, {:?} simulated: {summary}",
                finished.seed,
                finished.scenario,
                finished.real.as_secs_f64(),
                finished.simulated
            )),
            Ok(_) => None,
            Err(failure) => {
                failed.fetch_add(1, Ordering::SeqCst);
                Some(format!("SIM_SEED={} FAILED: {failure}", finished.seed))
            }
        };
        let mut out = std::io::stdout().lock();
        if let Some(line) = line {
            let _ = writeln!(out, "{line}");
        }
        drop(out);
        progress(count, total, failed.load(Ordering::SeqCst));
    });
    eprintln!();
    print!("{}", summary.report());
    if summary.passed() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

/// A one-line progress bar on stderr.
fn progress(done: usize, total: usize, failed: usize) {
    const WIDTH: usize = 30;
    let filled = WIDTH * done / total.max(1);
    eprint!(
        "\r[{}{}] {done}/{total} seeds, {failed} failed",
        "#".repeat(filled),
        " ".repeat(WIDTH - filled)
    );
    let _ = std::io::stderr().flush();
}
