//! The simulation's self-test: each planted bug (see `acemux_core::planted`) must make
//! a run fail, with the failure that names it, within a stated number of seeds of the
//! scenario that exercises it, in the fast configuration the random batches use. A
//! check that cannot fail would pass here and fail this test.

use acemux_core::planted::Bug;
use acemux_sim::runner::Batch;
use acemux_sim::{by_name, SCENARIOS};

/// Seeds tried per bug; each must be caught within this many.
const WITHIN_SEEDS: u64 = 3;

/// The bug, the scenario that exercises it, and what its failure must say (one of).
const CASES: &[(Bug, &str, &[&str])] = &[
    (
        Bug::StopSentTwice,
        "viewer_churn",
        &["was told to stop 2 times"],
    ),
    (
        Bug::LateSessionLeftRunning,
        "single_worker_self_post",
        &["runs unrecorded", "sessions of seed for"],
    ),
    (
        Bug::ChannelWaitsForSlowestViewer,
        "slow_viewers",
        &["no media for"],
    ),
    (
        Bug::HlsSegmentSkipped,
        "viewer_churn",
        &["no discontinuity separates them"],
    ),
    (
        Bug::LeftoversForgotten,
        "acemux_restart",
        &["started while one is active", "still active"],
    ),
    (
        Bug::CommitAcknowledgedEarly,
        "acemux_restart",
        &["the commit watermark is"],
    ),
    (
        Bug::EndsForgottenOnRestart,
        "acemux_restart",
        &["stream_ended twice"],
    ),
    (
        Bug::LeaseNotRenewed,
        "cluster",
        // Two owners at once; or, the engine cap holding, the new owner finds every
        // slot taken by the old owner's session and its viewers are refused; or the
        // new owner stops the old owner's session and the old owner's viewers go on
        // with the new owner's stream (its channel renews its lease before opening
        // another session, finds it taken and relays): a jump no fault explains.
        &[
            "engine sessions of",
            "runs 2 sessions of",
            "answered 503 with no fault in effect",
            "jumped in the engine stream with no fault",
        ],
    ),
    (
        Bug::OrphanEndedUnguarded,
        "cluster",
        &[
            "stream_ended twice",
            "whose stream_started another instance recorded",
            "was told to stop",
        ],
    ),
];

#[test]
fn every_planted_bug_has_a_case() {
    for bug in Bug::ALL {
        assert!(
            CASES.iter().any(|(planted, _, _)| *planted == bug),
            "{} has no case",
            bug.name()
        );
    }
}

#[test]
fn every_planted_bug_is_caught() {
    let mut report = Vec::new();
    for &(bug, scenario, expected) in CASES {
        let (name, _) = *SCENARIOS
            .iter()
            .find(|(known, _)| *known == scenario)
            .expect("a listed scenario");
        let run = by_name(name).expect("listed");
        let mut batch = Batch::random(vec![(name, run)], 0x5eed, WITHIN_SEEDS, 1);
        batch.plant = Some(bug);
        let mut caught = None;
        for (index, &(_, seed)) in batch.runs.iter().enumerate() {
            let one = Batch {
                runs: vec![(0, seed)],
                ..batch.clone()
            };
            let summary = one.run(&|_| {});
            if let Some(failure) = summary.failures().first() {
                assert!(
                    expected.iter().any(|text| failure.message.contains(text)),
                    "{} in {scenario} seed {seed} failed for another reason: {}",
                    bug.name(),
                    failure.message
                );
                caught = Some(index + 1);
                break;
            }
        }
        let Some(seeds) = caught else {
            panic!(
                "{} planted: {scenario} passed {WITHIN_SEEDS} seeds; the simulation missed it",
                bug.name()
            );
        };
        report.push(format!(
            "{}: caught by {scenario} within {seeds} seed(s)",
            bug.name()
        ));
    }
    println!("{}", report.join("\n"));
}
