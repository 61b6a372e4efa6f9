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
    /// Whether every handle call must leave no deadline at or before `now` (a machine
    /// that does leaves work for a driver that already woke).
    strict: bool,
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
            strict: false,
        }
    }

    /// [`new`](Self::new), checking after every handle call that no deadline is left
    /// at or before `now`.
    pub fn strict(machine: M, now: Instant) -> Self {
        Harness {
            strict: true,
            ..Harness::new(machine, now)
        }
    }

    /// The machine's next deadline.
    pub fn deadline(&self) -> Option<Instant> {
        self.machine.poll_timeout()
    }

    #[track_caller]
    fn check_settled(&self) {
        if !self.strict {
            return;
        }
        if let Some(deadline) = self.machine.poll_timeout() {
            assert!(
                deadline > self.now,
                "deadline {deadline} left due at {}",
                self.now
            );
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
    #[track_caller]
    pub fn input(&mut self, input: M::Input) -> Vec<M::Output> {
        self.machine.handle_input(self.now, input);
        let outputs = self.drain();
        self.check_settled();
        outputs
    }

    /// Calls `handle_timeout` once at `now` (due or not) and drains.
    #[track_caller]
    pub fn wake(&mut self) -> Vec<M::Output> {
        self.machine.handle_timeout(self.now);
        let outputs = self.drain();
        self.check_settled();
        outputs
    }

    /// Moves the clock by `by`, firing every deadline on its own instant, and drains.
    ///
    /// # Panics
    ///
    /// When more than [`MAX_STEPS_PER_ADVANCE`] deadlines fall in the interval: the
    /// machine livelocks.
    #[track_caller]
    pub fn advance(&mut self, by: Duration) -> Vec<M::Output> {
        let mut outputs = self.drain();
        self.advance_each(by, |_, _, fired| outputs.extend_from_slice(fired));
        outputs
    }

    /// [`advance`](Self::advance), calling `each` with the machine, the clock and the
    /// outputs of every deadline fired, as it fires (for checks of the state in between).
    #[track_caller]
    pub fn advance_each(&mut self, by: Duration, mut each: impl FnMut(&M, Instant, &[M::Output])) {
        let target = self.now + by;
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
            let outputs = self.step().unwrap_or_default();
            each(&self.machine, self.now, &outputs);
        }
        self.now = target;
    }

    /// Moves the clock by `by` and wakes the machine once, late (a busy driver).
    pub fn jump(&mut self, by: Duration) -> Vec<M::Output> {
        self.now = self.now + by;
        self.wake()
    }

    /// Moves the clock to the machine's next deadline (if any) and fires it.
    #[track_caller]
    pub fn step(&mut self) -> Option<Vec<M::Output>> {
        let deadline = self.machine.poll_timeout()?;
        if self.strict {
            assert!(
                deadline > self.now,
                "deadline {deadline} is not after now {}",
                self.now
            );
        }
        self.now = self.now.max(deadline);
        Some(self.wake())
    }
}
