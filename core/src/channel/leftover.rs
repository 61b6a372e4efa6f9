//! Engine sessions a previous run left running: when acemux stops without ending its
//! streams (killed, power lost), its engine sessions keep running on the engines and
//! hold their slots. On start, each is stopped through its command URL, retried like
//! every stop ([`EngineCallConfig`]'s attempts and backoff), until confirmed or given up.

use std::collections::VecDeque;
use std::convert::Infallible;

use super::engine::EngineCalls;
use super::vocab::{EngineCallConfig, Output, StopId};
use crate::lifecycle::{EngineAddr, StreamState, StreamStatus};
use crate::machine::Machine;
use crate::time::{Duration, Instant};

/// How long after its stream ended a session is stopped again when acemux starts: a run
/// killed while a stop was still being retried (or before it went out, or while it
/// cleaned up after an earlier run) leaves the session running with its stream already
/// ended, and nothing else would ever stop it. A second stop of a stopped session is
/// harmless; a leaked one holds an engine slot for ever.
pub const RESTOP_WINDOW: Duration = Duration::from_secs(600);

/// Most sessions stopped again on one start (the newest ends first).
pub const MAX_RESTOPS: usize = 256;

/// What a start finds that a previous run left.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Leftovers<'a> {
    /// Streams still `started`: each is ended (reason `restarted`) and its session
    /// stopped.
    pub to_end: Vec<&'a StreamState>,
    /// Streams ended within [`RESTOP_WINDOW`] before `now`: their sessions are stopped
    /// again, no event recorded.
    pub to_stop_again: Vec<&'a StreamState>,
}

/// Sorts the streams this proxy played (`ours`) into what a start must clean up.
pub fn leftovers<'a>(
    streams: &'a [StreamState],
    now: Instant,
    ours: impl Fn(&StreamState) -> bool,
) -> Leftovers<'a> {
    let mut found = Leftovers::default();
    for stream in streams.iter().filter(|stream| ours(stream)) {
        match (stream.status, stream.ended_at) {
            (StreamStatus::Started, _) => found.to_end.push(stream),
            // An end stamped after `now` (a clock set back) counts as recent.
            (StreamStatus::Ended, Some(ended))
                if now.saturating_duration_since(ended) <= RESTOP_WINDOW =>
            {
                found.to_stop_again.push(stream);
            }
            (StreamStatus::Ended, _) => {}
        }
    }
    found
        .to_stop_again
        .sort_by_key(|stream| std::cmp::Reverse(stream.ended_at));
    found.to_stop_again.truncate(MAX_RESTOPS);
    found
}

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

    #[test]
    fn stop_retries_double_up_to_their_cap() {
        let config = EngineCallConfig {
            stop_attempts: 6,
            stop_retry_initial: Duration::from_secs(1),
            stop_retry_max: Duration::from_secs(3),
            ..EngineCallConfig::default()
        };
        let mut harness = Harness::new(LeftoverStops::new(config), Instant::from_micros(0));
        let first = stops(&harness.input(LeftoverInput::Stop {
            engine: engine(),
            command_url: "http://engine:6878/ace/cmd/x".into(),
        }));
        let stop = first[0].0;
        let mut delays = Vec::new();
        for _ in 0..6 {
            let outputs = harness.input(LeftoverInput::Answer {
                stop,
                result: Err("engine unreachable".into()),
            });
            for output in &outputs {
                if let Output::Notice(Notice::StopFailed { retry_in, .. }) = output {
                    delays.push(*retry_in);
                }
            }
            if let Some(Some(delay)) = delays.last() {
                let _ = harness.advance(*delay);
            }
        }
        let secs = |n| Some(Duration::from_secs(n));
        assert_eq!(delays, [secs(1), secs(2), secs(3), secs(3), secs(3), None]);
    }

    fn stream(id: &str, ended_at: Option<u64>) -> StreamState {
        use crate::lifecycle::{KeyType, SessionInfo, StreamKey};
        StreamState {
            id: id.into(),
            status: if ended_at.is_some() {
                StreamStatus::Ended
            } else {
                StreamStatus::Started
            },
            container_id: None,
            engine: engine(),
            stream: StreamKey {
                key_type: KeyType::ContentId,
                key: id.into(),
            },
            session: SessionInfo {
                playback_session_id: id.into(),
                stat_url: String::new(),
                command_url: format!("http://engine:6878/ace/cmd/{id}"),
                is_live: true,
            },
            labels: std::collections::BTreeMap::new(),
            started_at: Instant::from_micros(0),
            ended_at: ended_at.map(|secs| Instant::from_micros(secs * 1_000_000)),
            end_reason: None,
            last_event_seq: 0,
        }
    }

    #[test]
    fn started_streams_are_ended_and_recently_ended_ones_stopped_again() {
        let now = Instant::from_micros(10_000 * 1_000_000);
        let streams = vec![
            stream("running", None),
            stream("just-ended", Some(9_990)),
            stream(
                "ended-at-the-window",
                Some(10_000 - RESTOP_WINDOW.as_secs()),
            ),
            stream("long-ended", Some(10_000 - RESTOP_WINDOW.as_secs() - 1)),
            stream("stamped-ahead", Some(10_050)),
            stream("not-ours", None),
        ];
        let found = leftovers(&streams, now, |stream| stream.id != "not-ours");
        let ids = |list: &[&StreamState]| list.iter().map(|s| s.id.clone()).collect::<Vec<_>>();
        assert_eq!(ids(&found.to_end), ["running"]);
        assert_eq!(
            ids(&found.to_stop_again),
            ["stamped-ahead", "just-ended", "ended-at-the-window"]
        );
    }

    #[test]
    fn sessions_stopped_again_are_bounded_newest_first() {
        let now = Instant::from_micros(10_000 * 1_000_000);
        let streams: Vec<StreamState> = (0..MAX_RESTOPS as u64 + 10)
            .map(|n| stream(&format!("s{n}"), Some(9_500 + n)))
            .collect();
        let found = leftovers(&streams, now, |_| true);
        assert_eq!(found.to_stop_again.len(), MAX_RESTOPS);
        assert_eq!(found.to_stop_again[0].id, format!("s{}", MAX_RESTOPS + 9));
    }
}
