//! Engine sessions a previous run left running: when acemux stops without ending its
//! streams (killed, power lost), its engine sessions keep running on the engines and
//! hold their slots. On start, each is stopped through its command URL, retried like
//! every stop ([`EngineCallConfig`]'s attempts and backoff), until confirmed or given up.

use std::collections::VecDeque;
use std::convert::Infallible;

use super::engine::EngineCalls;
use super::vocab::{EngineCallConfig, Output, StopId};
use crate::lifecycle::EngineAddr;
use crate::machine::Machine;
use crate::time::Instant;

/// What the driver reports.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum LeftoverInput {
    /// Stop this session.
    Stop {
        /// Its engine.
        engine: EngineAddr,
        /// Its command URL.
        command_url: String,
    },
    /// The answer to one [`Output::StopSession`] attempt.
    Answer {
        /// The stop.
        stop: StopId,
        /// Whether the engine confirmed it; the error for logs.
        result: Result<(), String>,
    },
}

/// Stops of sessions a previous run left. Its outputs are [`Output::StopSession`]
/// (perform, then answer) and [`Output::Notice`] (log).
#[derive(Debug)]
pub struct LeftoverStops {
    calls: EngineCalls,
    outputs: VecDeque<Output<Infallible>>,
}

impl LeftoverStops {
    /// Stops retried as `config` says.
    pub fn new(config: EngineCallConfig) -> Self {
        LeftoverStops {
            calls: EngineCalls::new(config),
            outputs: VecDeque::new(),
        }
    }

    /// Whether every stop was confirmed or given up.
    pub fn is_done(&self) -> bool {
        self.calls.is_idle() && self.outputs.is_empty()
    }
}

impl Machine for LeftoverStops {
    type Input = LeftoverInput;
    type Output = Output<Infallible>;

    fn handle_input(&mut self, now: Instant, input: LeftoverInput) {
        match input {
            LeftoverInput::Stop {
                engine,
                command_url,
            } => self.calls.stop(engine, command_url, &mut self.outputs),
            LeftoverInput::Answer { stop, result } => {
                self.calls.stop_answer(now, stop, result, &mut self.outputs);
            }
        }
    }

    fn handle_timeout(&mut self, now: Instant) {
        // No session requests here: nothing for a channel comes back.
        let _ = self.calls.handle_timeout(now, &mut self.outputs);
    }

    fn poll_output(&mut self) -> Option<Output<Infallible>> {
        self.outputs.pop_front()
    }

    fn poll_timeout(&self) -> Option<Instant> {
        self.calls.poll_timeout()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::channel::Notice;
    use crate::machine::Harness;
    use crate::time::Duration;

    fn engine() -> EngineAddr {
        EngineAddr {
            host: "engine".into(),
            port: 6878,
        }
    }

    fn stops(outputs: &[Output<Infallible>]) -> Vec<(StopId, u32)> {
        outputs
            .iter()
            .filter_map(|output| match output {
                Output::StopSession { stop, attempt, .. } => Some((*stop, *attempt)),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn each_leftover_is_stopped_and_failed_stops_are_retried_until_given_up() {
        let config = EngineCallConfig {
            stop_attempts: 3,
            stop_retry_initial: Duration::from_secs(1),
            ..EngineCallConfig::default()
        };
        let t0 = Instant::from_micros(1_000_000_000);
        let mut harness = Harness::new(LeftoverStops::new(config), t0);
        let mut started = Vec::new();
        for n in 0..2 {
            started.extend(harness.input(LeftoverInput::Stop {
                engine: engine(),
                command_url: format!("http://engine:6878/ace/cmd/{n}"),
            }));
        }
        let first = stops(&started);
        assert_eq!(first.len(), 2, "one attempt each at once");
        // The first is confirmed; the second fails every time.
        harness.input(LeftoverInput::Answer {
            stop: first[0].0,
            result: Ok(()),
        });
        let failing = first[1].0;
        let mut attempts = vec![1];
        for _ in 0..4 {
            let outputs = harness.input(LeftoverInput::Answer {
                stop: failing,
                result: Err("connection refused".into()),
            });
            let given_up = outputs.iter().any(|output| {
                matches!(
                    output,
                    Output::Notice(Notice::StopFailed { retry_in: None, .. })
                )
            });
            if given_up {
                break;
            }
            let retried = harness.advance(Duration::from_secs(8));
            attempts.extend(stops(&retried).iter().map(|(_, attempt)| *attempt));
        }
        assert_eq!(attempts, [1, 2, 3], "three attempts, then given up");
        assert!(harness.machine.is_done());
        assert_eq!(harness.machine.poll_timeout(), None);
    }
}
