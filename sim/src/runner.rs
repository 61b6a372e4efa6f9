//! Runs a batch of seeds over scenarios on several threads, within a time box, and
//! sums it up. Used by the `acemux-sim` binary and the `random_seeds` test.
//!
//! Each seed runs one whole world on one thread (turmoil is single-threaded), so the
//! batch parallelises over seeds. Which seeds run is decided before anything runs (from
//! the base seed), so a batch replays exactly whatever the thread count; only the order
//! of the printed lines depends on the threads.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::Duration;

use acemux_core::planted::Bug;
use acemux_core::rng::mix;

use crate::scenarios::Scenario;
use crate::world::Failure;

/// Real time after which a seed that has not finished is taken to be stuck (a seed
/// takes well under a second in release builds, some seconds unoptimised).
pub const STUCK_AFTER: Duration = Duration::from_secs(120);

/// A batch: which scenarios, which seeds, how many threads, how long at most.
#[derive(Clone, Debug)]
pub struct Batch {
    /// The scenarios, by name; seed `n` of the batch runs scenario `n mod len`.
    pub scenarios: Vec<(&'static str, Scenario)>,
    /// The seeds to run, with the scenario (index into `scenarios`) each runs.
    pub runs: Vec<(usize, u64)>,
    /// Threads running seeds at once.
    pub jobs: usize,
    /// No new seed starts after this much real time; `None`: no bound.
    pub time_box: Option<Duration>,
    /// A bug planted in every run (the simulation's self-test); `None` for the product.
    pub plant: Option<Bug>,
}

impl Batch {
    /// `count` seeds derived from `base`, cycling through `scenarios`.
    pub fn random(
        scenarios: Vec<(&'static str, Scenario)>,
        base: u64,
        count: u64,
        jobs: usize,
    ) -> Batch {
        let len = scenarios.len().max(1);
        Batch {
            runs: (0..count)
                .map(|n| ((n as usize) % len, mix(base ^ mix(n))))
                .collect(),
            scenarios,
            jobs,
            time_box: None,
            plant: None,
        }
    }

    /// Exactly `seed`, once per scenario.
    pub fn replay(scenarios: Vec<(&'static str, Scenario)>, seed: u64) -> Batch {
        Batch {
            runs: (0..scenarios.len()).map(|index| (index, seed)).collect(),
            scenarios,
            jobs: 1,
            time_box: None,
            plant: None,
        }
    }

    /// Runs the batch; `report` sees each finished seed (from the worker threads).
    ///
    /// A seed whose simulated time stops advancing (a host that loops without ever
    /// yielding holds the whole simulation at one instant) cannot fail by itself: a
    /// watchdog ends the process once a seed has run [`STUCK_AFTER`] of real time,
    /// printing its replay command.
    pub fn run(&self, report: &(dyn Fn(&Finished) + Sync)) -> Summary {
        let started = std::time::Instant::now();
        let next = AtomicUsize::new(0);
        let finished: Mutex<Vec<Finished>> = Mutex::new(Vec::new());
        let running: Mutex<Vec<(&'static str, u64, std::time::Instant)>> = Mutex::new(Vec::new());
        let all_done = std::sync::atomic::AtomicBool::new(false);
        std::thread::scope(|scope| {
            scope.spawn(|| {
                while !all_done.load(Ordering::SeqCst) {
                    std::thread::sleep(Duration::from_millis(200));
                    let running = running.lock().unwrap_or_else(|p| p.into_inner());
                    if let Some((scenario, seed, since)) = running
                        .iter()
                        .find(|(_, _, since)| since.elapsed() >= STUCK_AFTER)
                    {
                        eprintln!(
                            "\nscenario {scenario} seed {seed} made no progress for {:?} of real time: a host loops without yielding, so simulated time cannot advance\n  replay: {}",
                            since.elapsed(),
                            crate::world::replay_command(scenario, *seed)
                        );
                        std::process::exit(3);
                    }
                }
            });
            let mut workers = Vec::new();
            for _ in 0..self.jobs.max(1) {
                workers.push(scope.spawn(|| loop {
                    crate::world::plant_on_this_thread(self.plant);
                    if self
                        .time_box
                        .is_some_and(|bound| started.elapsed() >= bound)
                    {
                        return;
                    }
                    let index = next.fetch_add(1, Ordering::SeqCst);
                    let Some(&(scenario, seed)) = self.runs.get(index) else {
                        return;
                    };
                    let (name, run) = self.scenarios[scenario];
                    let run_started = std::time::Instant::now();
                    running.lock().unwrap_or_else(|p| p.into_inner()).push((
                        name,
                        seed,
                        run_started,
                    ));
                    let result = run(seed);
                    running.lock().unwrap_or_else(|p| p.into_inner()).retain(
                        |(_, running_seed, since)| (*running_seed, *since) != (seed, run_started),
                    );
                    let done = Finished {
                        scenario: name,
                        seed,
                        real: run_started.elapsed(),
                        simulated: match &result {
                            Ok(outcome) => outcome.simulated,
                            Err(failure) => failure.at,
                        },
                        result: result.map(|outcome| outcome.summary),
                    };
                    report(&done);
                    finished
                        .lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .push(done);
                }));
            }
            for worker in workers {
                let _ = worker.join();
            }
            all_done.store(true, Ordering::SeqCst);
        });
        let mut finished = finished.into_inner().unwrap_or_else(|p| p.into_inner());
        finished.sort_by_key(|done| (done.scenario, done.seed));
        Summary {
            asked: self.runs.len(),
            finished,
            real: started.elapsed(),
            jobs: self.jobs.max(1),
        }
    }
}

/// One seed's run.
#[derive(Clone, Debug)]
pub struct Finished {
    /// The scenario.
    pub scenario: &'static str,
    /// The seed.
    pub seed: u64,
    /// Real time it took.
    pub real: Duration,
    /// Simulated time it ran.
    pub simulated: Duration,
    /// Its summary line, or its failure.
    pub result: Result<String, Failure>,
}

/// What a batch did.
#[derive(Clone, Debug)]
pub struct Summary {
    /// Seeds the batch asked for.
    pub asked: usize,
    /// Seeds that ran, sorted by scenario and seed.
    pub finished: Vec<Finished>,
    /// Real time of the whole batch.
    pub real: Duration,
    /// Threads it ran on.
    pub jobs: usize,
}

impl Summary {
    /// The failed runs.
    pub fn failures(&self) -> Vec<&Failure> {
        self.finished
            .iter()
            .filter_map(|done| done.result.as_ref().err())
            .collect()
    }

    /// Whether every asked seed ran and none failed.
    pub fn passed(&self) -> bool {
        self.finished.len() == self.asked && self.failures().is_empty()
    }

    /// Seeds per second per thread, over the busy time of the threads.
    pub fn seeds_per_core_second(&self) -> f64 {
        let busy: f64 = self
            .finished
            .iter()
            .map(|done| done.real.as_secs_f64())
            .sum();
        self.finished.len() as f64 / busy.max(1e-9)
    }

    /// The closing report: counts, per-scenario speed, every failure with its replay
    /// command.
    pub fn report(&self) -> String {
        use std::fmt::Write as _;
        let mut out = String::new();
        let simulated: f64 = self
            .finished
            .iter()
            .map(|done| done.simulated.as_secs_f64())
            .sum();
        let _ = writeln!(
            out,
            "seeds run: {} of {} on {} threads",
            self.finished.len(),
            self.asked,
            self.jobs
        );
        let failures = self.failures();
        let _ = writeln!(out, "failures: {}", failures.len());
        for failure in &failures {
            let _ = writeln!(
                out,
                "  {} seed {} at {:?} simulated: {}\n    replay: {}",
                failure.scenario,
                failure.seed,
                failure.at,
                failure.message,
                failure.replay_command()
            );
        }
        if self.finished.len() < self.asked {
            let _ = writeln!(
                out,
                "the time box ended the batch: {} seeds did not run",
                self.asked - self.finished.len()
            );
        }
        let mut per_scenario: std::collections::BTreeMap<&str, (usize, f64)> =
            std::collections::BTreeMap::new();
        for done in &self.finished {
            let entry = per_scenario.entry(done.scenario).or_default();
            entry.0 += 1;
            entry.1 += done.real.as_secs_f64();
        }
        for (scenario, (count, busy)) in per_scenario {
            let _ = writeln!(
                out,
                "  {scenario}: {count} seeds, {:.1} seeds/s per core",
                count as f64 / busy.max(1e-9)
            );
        }
        let _ = writeln!(
            out,
            "simulated time: {simulated:.1}s; real time: {:.1}s; {:.1} seeds/s per core ({:.1} seeds/s overall)",
            self.real.as_secs_f64(),
            self.seeds_per_core_second(),
            self.finished.len() as f64 / self.real.as_secs_f64().max(1e-9)
        );
        out
    }
}
