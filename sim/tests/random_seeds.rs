//! A batch of random seeds over every scenario: `SIM_SEEDS` seeds (default 5) on
//! `SIM_JOBS` threads (default 2), derived from `SIM_BASE_SEED` (default: the clock),
//! or exactly `SIM_SEED` (with `SIM_SCENARIO`, one scenario; else every scenario).
//! Failures print their replay commands. CI runs its large batch with the release
//! binary instead (`acemux-sim --seeds 1000 --jobs 2`, see `scripts/test.sh`).

use acemux_sim::runner::Batch;
use acemux_sim::{by_name, env_seed, SCENARIOS};

fn env_number(name: &str) -> Option<u64> {
    std::env::var(name).ok()?.trim().parse().ok()
}

#[test]
fn random_seeds() {
    let scenarios: Vec<_> = match std::env::var("SIM_SCENARIO").ok() {
        Some(name) => {
            let (known, _) = *SCENARIOS
                .iter()
                .find(|(known, _)| *known == name)
                .unwrap_or_else(|| panic!("unknown scenario {name:?}"));
            vec![(known, by_name(known).expect("listed"))]
        }
        None => SCENARIOS.to_vec(),
    };
    let jobs = env_number("SIM_JOBS").unwrap_or(2).max(1) as usize;
    let batch = match env_seed() {
        Some(seed) => Batch::replay(scenarios, seed),
        None => {
            // Outside the simulation: the clock only picks the seeds, printed first.
            let base = env_number("SIM_BASE_SEED").unwrap_or_else(|| {
                std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map_or(0, |since| since.as_nanos() as u64)
            });
            println!("base seed {base}");
            Batch::random(scenarios, base, env_number("SIM_SEEDS").unwrap_or(5), jobs)
        }
    };
    let summary = batch.run(&|finished| match &finished.result {
        Ok(_) => println!(
            "SIM_SEED={} {}: ok, {:?} simulated",
            finished.seed, finished.scenario, finished.simulated
        ),
        Err(failure) => println!("SIM_SEED={} FAILED: {failure}", finished.seed),
    });
    println!("{}", summary.report());
    assert!(summary.passed(), "{}", summary.report());
}
