//! Property test: random reports and clock moves, with the machine's promises
//! checked after every step.

use std::collections::{BTreeMap, BTreeSet};

use proptest::prelude::*;

use super::*;

/// Engines the random driver names; few, so that failures repeat engines.
const PORTS: std::ops::Range<u16> = 1..4;

#[derive(Clone, Debug)]
enum Op {
    /// A session is granted (requested or not: late grants must be stopped too).
    Ready {
        port: u16,
    },
    Failed {
        port: u16,
        error: SessionError,
    },
    NoEngine,
    Opened,
    PlaybackFailed,
    PlaybackEnded,
    Data {
        bytes: usize,
    },
    Viewers(usize),
    Stop,
    /// Time passes and the driver fires every deadline on its instant.
    Advance {
        millis: u64,
    },
    /// Time passes and the driver wakes once, late (a busy runtime).
    Jump {
        millis: u64,
    },
    /// An early wake-up: `handle_timeout` with nothing due.
    Wake,
}

fn session_error() -> impl Strategy<Value = SessionError> {
    prop_oneof![
        Just(SessionError::Refused("refused".into())),
        Just(SessionError::Failed("failed".into())),
        Just(SessionError::Timeout),
    ]
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        3 => PORTS.prop_map(|port| Op::Ready { port }),
        1 => (PORTS, session_error()).prop_map(|(port, error)| Op::Failed { port, error }),
        1 => Just(Op::NoEngine),
        2 => Just(Op::Opened),
        1 => Just(Op::PlaybackFailed),
        1 => Just(Op::PlaybackEnded),
        8 => (0usize..3).prop_map(|bytes| Op::Data { bytes }),
        4 => (0usize..3).prop_map(Op::Viewers),
        1 => Just(Op::Stop),
        8 => (0u64..5_000).prop_map(|millis| Op::Advance { millis }),
        1 => (0u64..60_000).prop_map(|millis| Op::Advance { millis }),
        1 => (0u64..60_000).prop_map(|millis| Op::Jump { millis }),
        1 => Just(Op::Wake),
    ]
}

/// Any timing with non-zero durations (a zero stall timeout lets a reopen re-arm the
/// stall timer at `now`, so `handle_timeout` would leave a deadline due); counts
/// include zero.
fn config() -> impl Strategy<Value = ChannelConfig> {
    (
        (1u64..40_000, 1u64..15_000, 1u64..70_000, 1u64..20_000),
        (1u64..2_000, 1u64..8_000, 0u32..5, 0u32..5),
    )
        .prop_map(
            |((start, stall, recovery, idle), (initial, max, reconnects, attempts))| {
                ChannelConfig {
                    start_timeout: ms(start),
                    upstream_stall_timeout: ms(stall),
                    initial_backoff: ms(initial),
                    max_backoff: ms(max),
                    reconnects_per_session: reconnects,
                    session_attempts: attempts,
                    recovery_timeout: ms(recovery),
                    idle_grace: ms(idle),
                }
            },
        )
}

/// What the outputs so far promise about the ones to come.
#[derive(Default)]
struct Invariants {
    /// Command URL of every session granted before the end, by playback URL.
    granted: BTreeMap<String, String>,
    stopped: BTreeSet<String>,
    started: BTreeSet<String>,
    session_ended: BTreeSet<String>,
    start_failed: bool,
    ended: bool,
    /// Whether the driver holds a playback connection: from `OpenPlayback` to
    /// `ClosePlayback` or a reported end or failure of the connection.
    playback_open: bool,
}

impl Invariants {
    fn check(&mut self, output: &Output) -> Result<(), TestCaseError> {
        prop_assert!(!self.ended, "{output:?} after Ended");
        match output {
            Output::RequestSession { .. } => {}
            Output::ClosePlayback => {
                prop_assert!(self.playback_open, "closed a playback that is not open");
                self.playback_open = false;
            }
            Output::OpenPlayback { url } => {
                prop_assert!(!self.playback_open, "opened a second playback");
                self.playback_open = true;
                let command_url = self.granted.get(url);
                prop_assert!(command_url.is_some(), "opened unknown {url}");
                let stopped = command_url.is_some_and(|url| self.stopped.contains(url));
                prop_assert!(!stopped, "opened the stopped session's {url}");
            }
            Output::StopSession { command_url, .. } => {
                let known = self.granted.values().any(|granted| granted == command_url);
                prop_assert!(known, "stopped unknown {command_url}");
                prop_assert!(
                    self.stopped.insert(command_url.clone()),
                    "{command_url} stopped twice"
                );
            }
            Output::SessionStarted(session) => {
                let command_url = &session.session.command_url;
                prop_assert!(
                    !self.stopped.contains(command_url),
                    "started after its stop"
                );
                prop_assert!(
                    self.started.insert(command_url.clone()),
                    "{command_url} started twice"
                );
            }
            Output::SessionEnded { session, .. } => {
                let command_url = &session.session.command_url;
                prop_assert!(self.started.contains(command_url), "ended before its start");
                prop_assert!(self.stopped.contains(command_url), "ended but not stopped");
                prop_assert!(
                    self.session_ended.insert(command_url.clone()),
                    "{command_url} ended twice"
                );
            }
            Output::StartFailed(_) => {
                prop_assert!(self.started.is_empty(), "start failed after a start");
                prop_assert!(!self.start_failed, "start failed twice");
                self.start_failed = true;
            }
            Output::Ended { .. } => {
                prop_assert!(!self.playback_open, "ended with the playback open");
                self.ended = true;
            }
        }
        Ok(())
    }

    /// Drains the channel, checking each output, then the state it leaves.
    fn drain(&mut self, channel: &mut Channel, now: Instant) -> Result<(), TestCaseError> {
        while let Some(output) = channel.poll_output() {
            self.check(&output)?;
        }
        if self.start_failed {
            prop_assert!(self.ended, "a start failure ends the channel at once");
        }
        prop_assert_eq!(channel.is_ended(), self.ended);
        if self.ended {
            prop_assert_eq!(channel.poll_timeout(), None);
        }
        if let Some(deadline) = channel.poll_timeout() {
            prop_assert!(deadline > now, "deadline {} due at {}", deadline, now);
        }
        Ok(())
    }
}

fn run(config: ChannelConfig, ops: Vec<Op>) -> Result<(), TestCaseError> {
    let mut now = T0;
    let mut channel = Channel::new(now, config);
    let mut invariants = Invariants::default();
    invariants.drain(&mut channel, now)?;
    for (index, op) in ops.into_iter().enumerate() {
        let input = match op {
            Op::Ready { port } => {
                let granted = session(port, &format!("s{index}"));
                if !channel.is_ended() {
                    invariants.granted.insert(
                        granted.playback_url.clone(),
                        granted.session.command_url.clone(),
                    );
                }
                Some(Input::SessionReady(granted))
            }
            Op::Failed { port, error } => Some(failed(port, error)),
            Op::NoEngine => Some(Input::NoEngine),
            Op::Opened => Some(Input::PlaybackOpened),
            Op::PlaybackFailed => {
                invariants.playback_open = false;
                Some(Input::PlaybackFailed("502".into()))
            }
            Op::PlaybackEnded => {
                invariants.playback_open = false;
                Some(Input::PlaybackEnded)
            }
            Op::Data { bytes } => Some(Input::Data(bytes)),
            Op::Viewers(count) => Some(Input::Viewers(count)),
            Op::Stop => Some(Input::Stop("deleted".into())),
            Op::Advance { millis } => {
                let until = now + ms(millis);
                for _ in 0..MAX_STEPS_PER_ADVANCE {
                    match channel.poll_timeout() {
                        Some(deadline) if deadline <= until => {
                            now = deadline;
                            channel.handle_timeout(now);
                            invariants.drain(&mut channel, now)?;
                        }
                        _ => break,
                    }
                }
                prop_assert!(
                    channel
                        .poll_timeout()
                        .is_none_or(|deadline| deadline > until),
                    "livelock before {}",
                    until
                );
                now = until;
                None
            }
            Op::Jump { millis } => {
                now = now + ms(millis);
                channel.handle_timeout(now);
                None
            }
            Op::Wake => {
                channel.handle_timeout(now);
                None
            }
        };
        if let Some(input) = input {
            channel.handle_input(now, input);
        }
        invariants.drain(&mut channel, now)?;
    }
    // Liveness of the stop: however the run went, once the channel is over every
    // session it was granted has been stopped, each exactly once.
    channel.handle_input(now, Input::Stop("test over".into()));
    invariants.drain(&mut channel, now)?;
    prop_assert!(invariants.ended);
    let granted: BTreeSet<String> = invariants.granted.values().cloned().collect();
    prop_assert_eq!(&invariants.stopped, &granted);
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: 3000,
        failure_persistence: None,
        ..ProptestConfig::default()
    })]

    #[test]
    fn random_drives_keep_the_channel_invariants(
        config in config(),
        ops in proptest::collection::vec(op(), 0..80),
    ) {
        run(config, ops)?;
    }
}
