//! A batch of random seeds over every scenario: `SIM_SEEDS` seeds (default 5), or
//! exactly `SIM_SEED`. Failures print their replay commands.

use acemux_core::rng::mix;
use acemux_sim::{env_seed, SCENARIOS};

#[test]
fn random_seeds() {
    let seeds: Vec<u64> = match env_seed() {
        Some(seed) => vec![seed],
        None => {
            let count: u64 = std::env::var("SIM_SEEDS")
                .ok()
                .and_then(|text| text.parse().ok())
                .unwrap_or(5);
            // Outside the simulation: the clock only picks the seeds, printed first.
            let base = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |since| since.as_nanos() as u64);
            println!("base seed {base}");
            (0..count).map(|n| mix(base ^ mix(n))).collect()
        }
    };
    let mut failures = Vec::new();
    for (n, seed) in seeds.iter().enumerate() {
        let (name, scenario) = SCENARIOS[n % SCENARIOS.len()];
        println!("SIM_SEED={seed} scenario {name}");
        if let Err(failure) = scenario(*seed) {
            println!("  FAILED: {failure}");
            failures.push(failure.to_string());
        }
    }
    assert!(
        failures.is_empty(),
        "{} failed:\n{}",
        failures.len(),
        failures.join("\n")
    );
}
