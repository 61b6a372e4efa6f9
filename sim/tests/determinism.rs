//! One seed, run twice, gives the same trace byte for byte (every host's log events
//! with their simulated times, every player's answers and bytes, the event log), for
//! every scenario, in one process and in two separate ones; another seed differs.
//!
//! Two runs in one process share whatever a process draws once (tokio's thread random
//! number generators are seeded per process), so the cross-process check catches what
//! the in-process one cannot.

use std::path::PathBuf;
use std::process::Command;

use acemux_sim::scenarios::viewer_churn;
use acemux_sim::{by_name, SCENARIOS};

/// Set in a child process: "<scenario> <seed>" to run once, its trace going to
/// `SIM_TRACE_FILE`.
const CHILD: &str = "ACEMUX_SIM_DETERMINISM_CHILD";

/// Runs `name` with `seed` twice and asserts the outcomes are equal.
fn replays(name: &str, seed: u64) -> u64 {
    let scenario = by_name(name).unwrap_or_else(|| panic!("unknown scenario {name:?}"));
    let first = scenario(seed).unwrap_or_else(|failure| panic!("{failure}"));
    let again = scenario(seed).unwrap_or_else(|failure| panic!("{failure}"));
    assert_eq!(
        first, again,
        "{name} seed {seed} did not replay identically"
    );
    first.trace_hash
}

#[test]
fn every_scenario_is_pinned_below() {
    let pinned = [
        "single_worker_self_post",
        "slow_gluetun",
        "viewer_churn",
        "slow_viewers",
        "engine_death_failover",
        "orchestrator_churn",
        "mixed_players",
        "acemux_restart",
        "swarm",
        "cluster",
    ];
    let listed: Vec<&str> = SCENARIOS.iter().map(|(name, _)| *name).collect();
    assert_eq!(listed, pinned, "a scenario without a determinism test");
}

#[test]
fn swarm_replays_its_drawn_faults() {
    // Seed 6 draws faults of most kinds, acemux crashes among them.
    replays("swarm", 6);
}

#[test]
fn acemux_restart_replays() {
    replays("acemux_restart", 4);
}

#[test]
fn orchestrator_churn_replays() {
    replays("orchestrator_churn", 3);
}

#[test]
fn single_worker_self_post_replays() {
    replays("single_worker_self_post", 5);
}

#[test]
fn slow_gluetun_replays_with_its_faults() {
    replays("slow_gluetun", 21);
}

#[test]
fn slow_viewers_replays() {
    replays("slow_viewers", 31);
}

#[test]
fn engine_death_failover_replays() {
    replays("engine_death_failover", 41);
}

#[test]
fn cluster_replays() {
    // Every seed crashes an instance, splits the cluster and restarts Redis.
    replays("cluster", 61);
}

#[test]
fn mixed_players_replays() {
    replays("mixed_players", 51);
}

#[test]
fn a_seed_replays_to_the_same_trace_and_another_seed_does_not() {
    let first = replays("viewer_churn", 11);
    let other = viewer_churn(12).unwrap_or_else(|failure| panic!("{failure}"));
    assert_ne!(first, other.trace_hash, "seeds 11 and 12 gave one trace");
}

/// This test's own binary, run as a child that runs `name` with `seed` once and
/// writes its trace to a file; returns the file's bytes.
fn trace_of_a_child_process(name: &str, seed: u64, run: u32) -> Vec<u8> {
    let path: PathBuf = std::env::temp_dir().join(format!(
        "acemux-sim-determinism-{}-{name}-{seed}-{run}.trace",
        std::process::id()
    ));
    let output = Command::new(std::env::current_exe().expect("test binary path"))
        .args([
            "a_seed_replays_byte_for_byte_in_another_process",
            "--exact",
            "--test-threads=1",
        ])
        .env(CHILD, format!("{name} {seed}"))
        .env("SIM_TRACE_FILE", &path)
        .env_remove("SIM_LOG")
        .output()
        .expect("cannot run the test binary");
    assert!(
        output.status.success(),
        "child run {run} of {name} seed {seed} failed: {}\n{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    let trace = std::fs::read(&path)
        .unwrap_or_else(|error| panic!("no trace file {}: {error}", path.display()));
    let _ = std::fs::remove_file(&path);
    trace
}

#[test]
fn a_seed_replays_byte_for_byte_in_another_process() {
    if let Ok(job) = std::env::var(CHILD) {
        // The child: one run; the parent compares the trace files.
        let (name, seed) = job.split_once(' ').expect("\"<scenario> <seed>\"");
        let seed: u64 = seed.parse().expect("a seed");
        let scenario = by_name(name).unwrap_or_else(|| panic!("unknown scenario {name:?}"));
        scenario(seed).unwrap_or_else(|failure| panic!("{failure}"));
        return;
    }
    // The scenario whose webhook workers share the store's commit notice.
    let (name, seed) = ("single_worker_self_post", 7);
    let first = trace_of_a_child_process(name, seed, 1);
    let again = trace_of_a_child_process(name, seed, 2);
    assert!(
        first.iter().filter(|&&byte| byte == b'\n').count() > 100,
        "the trace file holds too little to compare"
    );
    if first != again {
        let first = String::from_utf8_lossy(&first);
        let again = String::from_utf8_lossy(&again);
        let (line, (a, b)) = first
            .lines()
            .zip(again.lines())
            .enumerate()
            .find(|(_, (a, b))| a != b)
            .unwrap_or((0, ("(one trace is a prefix of the other)", "")));
        panic!(
            "{name} seed {seed} gave different traces in two processes; line {}:\n{a}\n{b}",
            line + 1
        );
    }
}
