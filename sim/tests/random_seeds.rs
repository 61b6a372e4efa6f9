//! A batch of random seeds over every scenario: `SIM_SEEDS` seeds (default 5) on
//! `SIM_THREADS` threads (default 2), or exactly `SIM_SEED` (with `SIM_SCENARIO`, one
//! scenario; else every scenario). Failures print their replay commands.

use acemux_core::rng::mix;
use acemux_sim::{by_name, env_seed, SCENARIOS};

fn env_number(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|text| text.trim().parse().ok())
        .unwrap_or(default)
}

#[test]
fn random_seeds() {
    let only = std::env::var("SIM_SCENARIO").ok();
    let scenarios: Vec<_> = match &only {
        Some(name) => {
            let scenario = by_name(name).unwrap_or_else(|| panic!("unknown scenario {name:?}"));
            vec![(
                SCENARIOS.iter().find(|(n, _)| n == name).expect("listed").0,
                scenario,
            )]
        }
        None => SCENARIOS.to_vec(),
    };
    let runs: Vec<(usize, u64)> = match env_seed() {
        Some(seed) => (0..scenarios.len()).map(|index| (index, seed)).collect(),
        None => {
            // Outside the simulation: the clock only picks the seeds, printed first.
            let base = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |since| since.as_nanos() as u64);
            println!("base seed {base}");
            (0..env_number("SIM_SEEDS", 5))
                .map(|n| ((n as usize) % scenarios.len(), mix(base ^ mix(n))))
                .collect()
        }
    };
    let threads = env_number("SIM_THREADS", 2).max(1) as usize;
    let next = std::sync::atomic::AtomicUsize::new(0);
    let failures = std::sync::Mutex::new(Vec::new());
    std::thread::scope(|scope| {
        for _ in 0..threads {
            scope.spawn(|| loop {
                let index = next.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                let Some(&(scenario, seed)) = runs.get(index) else {
                    return;
                };
                let (name, run) = scenarios[scenario];
                match run(seed) {
                    Ok(outcome) => println!(
                        "SIM_SEED={seed} {name}: ok, {:?} simulated",
                        outcome.simulated
                    ),
                    Err(failure) => {
                        println!("SIM_SEED={seed} {name}: FAILED: {failure}");
                        failures
                            .lock()
                            .unwrap_or_else(|p| p.into_inner())
                            .push(failure.to_string());
                    }
                }
            });
        }
    });
    let failures = failures.into_inner().unwrap_or_else(|p| p.into_inner());
    assert!(
        failures.is_empty(),
        "{} of {} runs failed:\n{}",
        failures.len(),
        runs.len(),
        failures.join("\n")
    );
}
