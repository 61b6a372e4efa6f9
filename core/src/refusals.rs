//! Refusals at configured bounds, tallied for the log: a crowd that meets a limit must
//! not write one line per refused connection, and an operator must still learn of every
//! refusal. Each bound's refusals are counted over a window that opens with its first
//! refusal; when the window closes, one summary with the count is due. A bound that is
//! hit again opens a new window.
//!
//! ```
//! use acemux_core::refusals::{RefusalTally, Summary};
//! use acemux_core::machine::Machine;
//! use acemux_core::{Duration, Instant};
//!
//! let mut tally = RefusalTally::new(Duration::from_secs(1));
//! let start = Instant::from_micros(1_000_000);
//! for _ in 0..500 {
//!     tally.handle_input(start, "connections");
//! }
//! assert_eq!(tally.poll_output(), None);
//! let closes = tally.poll_timeout().expect("a window is open");
//! tally.handle_timeout(closes);
//! assert_eq!(
//!     tally.poll_output(),
//!     Some(Summary { limit: "connections", count: 500, window: Duration::from_secs(1) })
//! );
//! ```

use std::collections::{BTreeMap, VecDeque};

use crate::machine::Machine;
use crate::time::{Duration, Instant};

/// Bounds tallied at most at once; refusals of further bound names (which only a bug
/// could invent) are counted under [`OTHER`].
pub const MAX_BOUNDS: usize = 64;

/// The bound name refusals beyond [`MAX_BOUNDS`] distinct names are tallied under.
pub const OTHER: &str = "other";

/// One window's refusals at one bound.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Summary {
    /// The bound (as `acemux_limit_hits_total{limit}` names it).
    pub limit: &'static str,
    /// Refusals in the window.
    pub count: u64,
    /// How long the window was open.
    pub window: Duration,
}

#[derive(Clone, Copy, Debug)]
struct Open {
    since: Instant,
    count: u64,
}

/// The tally: input a bound's name at each refusal; output one [`Summary`] per bound
/// and window.
#[derive(Clone, Debug)]
pub struct RefusalTally {
    window: Duration,
    open: BTreeMap<&'static str, Open>,
    due: VecDeque<Summary>,
}

impl RefusalTally {
    /// A tally that sums each bound's refusals over `window` (at least 1 µs).
    pub fn new(window: Duration) -> Self {
        RefusalTally {
            window: window.max(Duration::from_micros(1)),
            open: BTreeMap::new(),
            due: VecDeque::new(),
        }
    }

    /// Refusals counted but not yet summarised, per bound.
    pub fn pending(&self) -> impl Iterator<Item = (&'static str, u64)> + '_ {
        self.open.iter().map(|(limit, open)| (*limit, open.count))
    }

    /// Closes every open window now (at shutdown: nothing counted is left unsaid).
    pub fn flush(&mut self, now: Instant) {
        for (limit, open) in std::mem::take(&mut self.open) {
            self.due.push_back(Summary {
                limit,
                count: open.count,
                window: now.saturating_duration_since(open.since),
            });
        }
    }
}

impl Machine for RefusalTally {
    /// The name of the bound a refusal was at.
    type Input = &'static str;
    type Output = Summary;

    fn handle_input(&mut self, now: Instant, limit: &'static str) {
        // A window due by now closes before the new refusal opens the next.
        self.handle_timeout(now);
        let limit = if self.open.contains_key(limit) || self.open.len() < MAX_BOUNDS {
            limit
        } else {
            OTHER
        };
        self.open
            .entry(limit)
            .or_insert(Open {
                since: now,
                count: 0,
            })
            .count += 1;
    }

    fn handle_timeout(&mut self, now: Instant) {
        let window = self.window;
        let closing: Vec<&'static str> = self
            .open
            .iter()
            .filter(|(_, open)| open.since + window <= now)
            .map(|(limit, _)| *limit)
            .collect();
        for limit in closing {
            if let Some(open) = self.open.remove(limit) {
                self.due.push_back(Summary {
                    limit,
                    count: open.count,
                    window,
                });
            }
        }
    }

    fn poll_output(&mut self) -> Option<Summary> {
        self.due.pop_front()
    }

    fn poll_timeout(&self) -> Option<Instant> {
        self.open
            .values()
            .map(|open| open.since + self.window)
            .min()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::machine::Harness;
    use proptest::prelude::*;

    const SECOND: Duration = Duration::from_secs(1);

    fn harness() -> Harness<RefusalTally> {
        Harness::strict(RefusalTally::new(SECOND), Instant::from_micros(1_000_000))
    }

    #[test]
    fn one_summary_per_bound_and_window() {
        let mut harness = harness();
        for _ in 0..3 {
            assert!(harness.input("connections").is_empty());
        }
        harness.advance(Duration::from_millis(400));
        harness.input("viewers_per_channel");
        harness.input("connections");
        assert_eq!(
            harness.advance(Duration::from_millis(600)),
            vec![Summary {
                limit: "connections",
                count: 4,
                window: SECOND
            }]
        );
        assert_eq!(
            harness.advance(Duration::from_millis(400)),
            vec![Summary {
                limit: "viewers_per_channel",
                count: 1,
                window: SECOND
            }]
        );
        assert_eq!(harness.deadline(), None);
    }

    #[test]
    fn a_late_refusal_closes_the_old_window_first() {
        let mut harness = harness();
        harness.input("channels");
        // The driver was busy: the next refusal comes long after the window closed.
        harness.now = harness.now + Duration::from_secs(10);
        assert_eq!(
            harness.input("channels"),
            vec![Summary {
                limit: "channels",
                count: 1,
                window: SECOND
            }]
        );
        assert_eq!(
            harness.machine.pending().collect::<Vec<_>>(),
            vec![("channels", 1)]
        );
    }

    #[test]
    fn flush_says_what_is_pending() {
        let mut harness = harness();
        harness.input("join_wait");
        harness.now = harness.now + Duration::from_millis(250);
        let now = harness.now;
        harness.machine.flush(now);
        assert_eq!(
            harness.drain(),
            vec![Summary {
                limit: "join_wait",
                count: 1,
                window: Duration::from_millis(250)
            }]
        );
        assert_eq!(harness.deadline(), None);
    }

    #[test]
    fn invented_bound_names_are_bounded() {
        let mut harness = harness();
        let names: Vec<&'static str> = (0..MAX_BOUNDS + 10)
            .map(|n| &*Box::leak(format!("bound{n}").into_boxed_str()))
            .collect();
        for name in names {
            harness.input(name);
        }
        assert_eq!(harness.machine.pending().count(), MAX_BOUNDS + 1);
        assert_eq!(
            harness.machine.pending().find(|(limit, _)| *limit == OTHER),
            Some((OTHER, 10))
        );
    }

    proptest! {
        /// Every refusal is reported exactly once, in windows no longer than the
        /// tally's, each summary at its window's end.
        #[test]
        fn every_refusal_is_summarised_once(
            steps in proptest::collection::vec((0u64..3_000_000, 0usize..3), 1..200)
        ) {
            const LIMITS: [&str; 3] = ["connections", "channels", "join_wait"];
            let mut harness = harness();
            let mut refused = [0u64; 3];
            for (gap, limit) in steps {
                harness.advance(Duration::from_micros(gap));
                harness.input(LIMITS[limit]);
                refused[limit] += 1;
            }
            harness.advance(Duration::from_secs(2));
            let mut reported = [0u64; 3];
            for summary in &harness.log {
                prop_assert_eq!(summary.window, SECOND);
                let index = LIMITS.iter().position(|l| *l == summary.limit).expect("known");
                reported[index] += summary.count;
            }
            prop_assert_eq!(refused, reported);
            prop_assert_eq!(harness.deadline(), None);
        }
    }
}
