//! `acemux-sim`: runs scenarios over random (or given) seeds and prints a summary.
//!
//! ```text
//! cargo run -p acemux-sim --release -- --seeds 20 [--scenario NAME] [--seed S]
//! ```

use std::io::Write as _;
use std::process::ExitCode;
use std::time::Duration;

use acemux_core::rng::mix;
use acemux_sim::{by_name, replay_command, Failure, SCENARIOS};
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
    #[arg(long)]
    base_seed: Option<u64>,
}

fn main() -> ExitCode {
    let args = Args::parse();
    let chosen: Vec<(&str, acemux_sim::Scenario)> = match &args.scenario {
        Some(name) => match by_name(name) {
            Some(scenario) => vec![(
                SCENARIOS
                    .iter()
                    .find(|(n, _)| n == name)
                    .map_or("", |(n, _)| *n),
                scenario,
            )],
            None => {
                let names: Vec<&str> = SCENARIOS.iter().map(|(name, _)| *name).collect();
                eprintln!("unknown scenario {name:?}; scenarios: {}", names.join(", "));
                return ExitCode::FAILURE;
            }
        },
        None => SCENARIOS.to_vec(),
    };
    // The runner itself is outside the simulation: reading the clock here only picks
    // which seeds to run, and each one is printed before it runs.
    let base_seed = args.base_seed.unwrap_or_else(|| {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |since| since.as_nanos() as u64)
    });
    let runs: Vec<(usize, u64)> = match args.seed {
        Some(seed) => (0..chosen.len()).map(|index| (index, seed)).collect(),
        None => {
            println!("base seed {base_seed} (replay this batch with --base-seed {base_seed})");
            (0..args.seeds)
                .map(|n| ((n as usize) % chosen.len(), mix(base_seed ^ mix(n))))
                .collect()
        }
    };
    let started = std::time::Instant::now();
    let mut simulated = Duration::ZERO;
    let mut failures: Vec<Failure> = Vec::new();
    let total = runs.len();
    for (done, (index, seed)) in runs.into_iter().enumerate() {
        let (name, scenario) = chosen[index];
        println!("SIM_SEED={seed} scenario {name}");
        let run_started = std::time::Instant::now();
        let result = scenario(seed);
        match result {
            Ok(outcome) => {
                simulated += outcome.simulated;
                println!(
                    "  ok in {:.1}s real, {:?} simulated, trace {:016x}: {}",
                    run_started.elapsed().as_secs_f64(),
                    outcome.simulated,
                    outcome.trace_hash,
                    outcome.summary
                );
            }
            Err(failure) => {
                simulated += failure.at;
                println!("  FAILED: {failure}");
                failures.push(failure);
            }
        }
        progress(done + 1, total, failures.len());
    }
    let real = started.elapsed();
    eprintln!();
    println!("seeds run: {total}");
    println!("failures: {}", failures.len());
    for failure in &failures {
        println!(
            "  {} seed {}: {}",
            failure.scenario, failure.seed, failure.message
        );
        println!(
            "    replay: {}",
            replay_command(failure.scenario, failure.seed)
        );
    }
    println!("simulated time: {:.1}s", simulated.as_secs_f64());
    println!("real time: {:.1}s", real.as_secs_f64());
    println!(
        "speed-up over real time: {:.1}x; {:.3} seeds/s",
        simulated.as_secs_f64() / real.as_secs_f64().max(1e-9),
        total as f64 / real.as_secs_f64().max(1e-9)
    );
    if failures.is_empty() {
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
