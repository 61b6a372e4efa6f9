//! One seed, run twice, gives the same trace byte for byte (every host's log events
//! with their simulated times, every player's answers and bytes, the event log);
//! another seed differs.

use acemux_sim::scenarios::{slow_gluetun, viewer_churn};

#[test]
fn a_seed_replays_to_the_same_trace_and_another_seed_does_not() {
    let first = viewer_churn(11).unwrap_or_else(|failure| panic!("{failure}"));
    let again = viewer_churn(11).unwrap_or_else(|failure| panic!("{failure}"));
    assert_eq!(first, again, "seed 11 did not replay identically");
    let other = viewer_churn(12).unwrap_or_else(|failure| panic!("{failure}"));
    assert_ne!(
        first.trace_hash, other.trace_hash,
        "seeds 11 and 12 gave one trace"
    );
}

#[test]
fn a_seed_with_faults_replays_to_the_same_trace() {
    let first = slow_gluetun(21).unwrap_or_else(|failure| panic!("{failure}"));
    let again = slow_gluetun(21).unwrap_or_else(|failure| panic!("{failure}"));
    assert_eq!(first, again, "seed 21 did not replay identically");
}
