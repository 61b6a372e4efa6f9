//! Bugs planted on purpose, for the simulation to prove that it catches them.
//!
//! A check that never fails proves nothing, and a faster simulation is only worth
//! having if it still finds what it should. So each bug here is a small, realistic
//! mistake, switched on at run time through the configuration of the machine it lives
//! in ([`Planted`] fields default to none). Nothing but the simulation's own self-test
//! sets them: no flag, variable or file of the product reaches them. The simulation
//! must fail a run with each bug planted within a stated number of seeds (see
//! `sim/tests/planted.rs`).

/// One planted bug.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Bug {
    /// Every stop of an engine session is sent twice.
    StopSentTwice,
    /// A session an engine grants after its request timed out (or after its channel
    /// ended) is left running instead of stopped.
    LateSessionLeftRunning,
    /// The fan-out hands new media to no viewer while any viewer still writes its last
    /// delivery: one slow viewer holds up the whole channel.
    ChannelWaitsForSlowestViewer,
    /// Every seventh HLS segment (fetched from the engine, or cut from the TS) is
    /// skipped without a discontinuity.
    HlsSegmentSkipped,
    /// On start, the streams a killed run left started are forgotten: never ended, their
    /// engine sessions never stopped.
    LeftoversForgotten,
    /// The event store answers an append as committed (and raises its commit
    /// watermark) before it is durable, as with `synchronous=OFF`: a slow or failing
    /// disk then lets a 200 stand for an event a crash loses.
    CommitAcknowledgedEarly,
    /// On start, the restored streams come back as they started: an end recorded
    /// before the restart is forgotten, so the restarted process ends them again.
    EndsForgottenOnRestart,
    /// Cluster mode: the renewal of a channel's lease is never scheduled once the lease
    /// is taken, so the lease expires while its channel runs and another instance takes
    /// the channel and opens a second engine session of it.
    LeaseNotRenewed,
    /// Cluster mode: the instance that takes a channel over acts on the session record
    /// of an older fencing number without the claim's guard: a record another instance
    /// already handled (its owner ended it, or another claimer did) is stopped and
    /// ended (`owner_lost`) again.
    OrphanEndedUnguarded,
}

impl Bug {
    /// Every planted bug.
    pub const ALL: [Bug; 9] = [
        Bug::StopSentTwice,
        Bug::LateSessionLeftRunning,
        Bug::ChannelWaitsForSlowestViewer,
        Bug::HlsSegmentSkipped,
        Bug::LeftoversForgotten,
        Bug::CommitAcknowledgedEarly,
        Bug::EndsForgottenOnRestart,
        Bug::LeaseNotRenewed,
        Bug::OrphanEndedUnguarded,
    ];

    /// A stable name, for runners and reports.
    pub fn name(self) -> &'static str {
        match self {
            Bug::StopSentTwice => "stop_sent_twice",
            Bug::LateSessionLeftRunning => "late_session_left_running",
            Bug::ChannelWaitsForSlowestViewer => "channel_waits_for_slowest_viewer",
            Bug::HlsSegmentSkipped => "hls_segment_skipped",
            Bug::LeftoversForgotten => "leftovers_forgotten",
            Bug::CommitAcknowledgedEarly => "commit_acknowledged_early",
            Bug::EndsForgottenOnRestart => "ends_forgotten_on_restart",
            Bug::LeaseNotRenewed => "lease_not_renewed",
            Bug::OrphanEndedUnguarded => "orphan_ended_unguarded",
        }
    }

    /// The bug named `name`.
    pub fn by_name(name: &str) -> Option<Bug> {
        Bug::ALL.into_iter().find(|bug| bug.name() == name)
    }

    fn bit(self) -> u32 {
        1 << (self as u32)
    }
}

/// The set of planted bugs a machine runs with; empty unless the simulation's
/// self-test plants one.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct Planted(u32);

impl Planted {
    /// No bug: the product.
    pub const NONE: Planted = Planted(0);

    /// Just `bug`.
    pub fn only(bug: Bug) -> Planted {
        Planted(bug.bit())
    }

    /// Whether `bug` is planted.
    #[inline]
    pub fn has(self, bug: Bug) -> bool {
        self.0 & bug.bit() != 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nothing_is_planted_by_default_and_each_bug_alone() {
        for bug in Bug::ALL {
            assert!(!Planted::default().has(bug));
            assert!(Planted::only(bug).has(bug));
            assert_eq!(Bug::by_name(bug.name()), Some(bug));
            for other in Bug::ALL.into_iter().filter(|other| *other != bug) {
                assert!(!Planted::only(bug).has(other));
            }
        }
    }
}
