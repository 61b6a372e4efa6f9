//! A fake clock around one machine, in the manner of quinn-proto's test `Pair`: inputs
//! are fed at the harness's `now`, `advance` moves the clock firing every deadline on its
//! own instant, and everything drained is also kept in a log for "exactly once" checks.

use super::Machine;
use crate::time::{Duration, Instant};

/// Most deadlines one [`Harness::advance`] may fire; more means the machine livelocks
/// (it keeps arming timers that are already due).
pub const MAX_STEPS_PER_ADVANCE: usize = 100_000;

/// One machine on a fake clock.
#[derive(Debug)]
pub struct Harness<M: Machine> {
    /// The machine under test.
    pub machine: M,
    /// The harness clock; never goes backwards.
    pub now: Instant,
    /// Every output drained so far, in order.
    pub log: Vec<M::Output>,
}

impl<M: Machine> Harness<M>
where
    M::Output: Clone,
{
    /// Wraps `machine`, whose clock reads `now`. Outputs it already holds are left for
    /// the first [`drain`](Self::drain).
    pub fn new(machine: M, now: Instant) -> Self {
        Harness {
            machine,
            now,
            log: Vec::new(),
        }
    }

    /// Drains every pending output (also into the log).
    pub fn drain(&mut self) -> Vec<M::Output> {
        let mut outputs = Vec::new();
        while let Some(output) = self.machine.poll_output() {
            outputs.push(output);
        }
        self.log.extend(outputs.iter().cloned());
        outputs
    }

    /// Feeds `input` now and drains what it caused.
    pub fn input(&mut self, input: M::Input) -> Vec<M::Output> {
        self.machine.handle_input(self.now, input);
        self.drain()
    }

    /// Calls `handle_timeout` once at `now` (due or not) and drains.
    pub fn wake(&mut self) -> Vec<M::Output> {
        self.machine.handle_timeout(self.now);
        self.drain()
    }

    /// Moves the clock by `by`, firing every deadline on its own instant, and drains.
    ///
    /// # Panics
    ///
    /// When more than [`MAX_STEPS_PER_ADVANCE`] deadlines fall in the interval: the
    /// machine livelocks.
    pub fn advance(&mut self, by: Duration) -> Vec<M::Output> {
        let target = self.now + by;
        let mut outputs = self.drain();
        let mut steps = 0;
        while let Some(deadline) = self.machine.poll_timeout() {
            if deadline > target {
                break;
            }
            steps += 1;
            assert!(
                steps <= MAX_STEPS_PER_ADVANCE,
                "livelock: more than {MAX_STEPS_PER_ADVANCE} deadlines up to {target}"
            );
            self.now = self.now.max(deadline);
            self.machine.handle_timeout(self.now);
            outputs.extend(self.drain());
        }
        self.now = target;
        outputs
    }

    /// Moves the clock by `by` and wakes the machine once, late (a busy driver).
    pub fn jump(&mut self, by: Duration) -> Vec<M::Output> {
        self.now = self.now + by;
        self.wake()
    }

    /// Moves the clock to the machine's next deadline (if any) and fires it.
    pub fn step(&mut self) -> Option<Vec<M::Output>> {
        let deadline = self.machine.poll_timeout()?;
        self.now = self.now.max(deadline);
        Some(self.wake())
    }
}
